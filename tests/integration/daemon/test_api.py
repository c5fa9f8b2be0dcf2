"""effdetd endpoints against proto/openapi.json: success and error bodies, the three
client styles (Frigate, Home Assistant, raw /detect), and bad requests."""
import json
import os
import socket
import time
import unittest

from harness import (TINY_IMAGE, TINY_MODEL, SLOW, Daemon, check, jpeg_size, jpeg_with_size, multipart, prom_value,
                     read, validate, response_schema)

IMAGE = read(TINY_IMAGE)
LABELS4 = None


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--max-body-bytes", "1m", "--max-header-bytes", "4096", "--timeout-s", "2",
                       "--threshold", "0.05")
        cls.d.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)

    def post(self, path, body, ctype="image/jpeg", headers=None):
        h = {"Content-Type": ctype} if ctype else {}
        h.update(headers or {})
        return self.d.request("POST", path, body, h)

    # ---------------------------------------------------------------- success

    def test_health_ready_models_update_list(self):
        for route, method in [("/healthz", "GET"), ("/readyz", "GET"), ("/v1/models", "GET"),
                              ("/v1/status/updateavailable", "GET"), ("/v1/vision/custom/list", "POST")]:
            status, h, body = self.d.request(method, route)
            self.assertEqual(status, 200, (route, body))
            doc = check(route, method, status, h, body)
            if route == "/v1/models":
                self.assertEqual(doc["default"], "weights")
                (m,) = doc["models"]
                self.assertEqual((m["input"]["width"], m["input"]["height"]), (128, 128))
                self.assertEqual(m["num_classes"], 4)
                self.assertEqual(len(m["classes"]), 4)
                self.assertEqual(m["params"], 188708)  # tests/fixtures manifest: 188,708 params
            if route == "/v1/vision/custom/list":
                self.assertEqual(doc["models"], ["weights"])

    def test_head_healthz(self):
        status, h, body = self.d.request("HEAD", "/healthz")
        self.assertEqual((status, body), (200, b""))

    def test_index_page(self):
        status, h, body = self.d.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertEqual(body, read(os.path.join(os.path.dirname(__file__), "..", "..", "..", "web", "index.html")))

    def test_samples(self):
        """The demo model's sample images, embedded in the daemon, byte for byte."""
        status, h, body = self.d.request("GET", "/samples")
        doc = check("/samples", "GET", status, h, body)
        samples = os.path.join(os.path.dirname(__file__), "..", "..", "..", "models", "samples")
        self.assertEqual(sorted(doc["samples"]), sorted(os.listdir(samples)))
        for name in doc["samples"]:
            status, h, body = self.d.request("GET", "/samples/" + name)
            check("/samples/{name}", "GET", status, h, body)
            self.assertEqual(h["content-type"], "image/jpeg")
            self.assertEqual(body, read(os.path.join(samples, name)))
        for bad in ("/samples/nope.jpg", "/samples/../index.html", "/samples/shapes_0019.jpg.x"):
            status, h, body = self.d.request("GET", bad)
            self.assertEqual(status, 404, bad)
            check("/samples/{name}", "GET", status, h, body)

    def test_raw_detect(self):
        status, h, body = self.post("/detect?threshold=0.05", IMAGE)
        self.assertEqual(status, 200, body)
        doc = check("/detect", "POST", status, h, body)
        self.assertEqual(doc["model"], "weights")
        self.assertEqual((doc["image"]["width"], doc["image"]["height"]), (640, 480))
        self.assertEqual(doc["count"], len(doc["detections"]))
        scores = [d["score"] for d in doc["detections"]]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertTrue(all(s >= 0.05 for s in scores))
        self.assertLessEqual(len(scores), 100)
        t = doc["timings_ms"]
        self.assertGreaterEqual(t["total"], t["inference"])

    def test_dct_scaled_decode_reports_file_pixels(self):
        """With allow_dct_scaling the tiny model (128 px) decodes the 640x480 image at a
        fraction of its size; sizes and boxes must still be the file's pixels (boxes in
        decoded pixels would all end left of 320), and render=jpeg is drawn full size."""
        with Daemon("--allow-dct-scaling", "yes") as d:
            status, h, body = d.request("POST", "/detect?threshold=0&max_detections=100", IMAGE,
                                        {"Content-Type": "image/jpeg"})
            doc = check("/detect", "POST", status, h, body)
            self.assertEqual((doc["image"]["width"], doc["image"]["height"]), (640, 480))
            x2 = [det["box"]["x2"] for det in doc["detections"]]
            self.assertGreater(max(x2), 330)
            self.assertLessEqual(max(x2), 640)
            status, h, body = d.request("POST", "/detect?render=jpeg", IMAGE, {"Content-Type": "image/jpeg"})
            self.assertEqual(status, 200)
            self.assertEqual(jpeg_size(body), (640, 480))

    def test_detect_octet_stream_and_multipart(self):
        a = json.loads(self.post("/detect?threshold=0.2", IMAGE, "application/octet-stream")[2])
        body, ctype = multipart([("threshold", "0.2")], [("image", IMAGE)])
        status, h, data = self.post("/detect", body, ctype)
        self.assertEqual(status, 200, data)
        b = check("/detect", "POST", status, h, data)
        self.assertEqual([d["box"] for d in a["detections"]], [d["box"] for d in b["detections"]])

    def test_detect_params_filter(self):
        _, _, all_ = self.d.json("POST", "/detect?threshold=0&max_detections=50", IMAGE, {"Content-Type": "image/jpeg"})
        self.assertEqual(len(all_["detections"]), 50)
        _, _, top = self.d.json("POST", "/detect?threshold=0&max_detections=3", IMAGE, {"Content-Type": "image/jpeg"})
        self.assertEqual(top["detections"], all_["detections"][:3])
        label = all_["detections"][0]["label"]
        _, _, only = self.d.json("POST", "/detect?threshold=0&max_detections=50&classes=" + label.upper(), IMAGE,
                                 {"Content-Type": "image/jpeg"})
        self.assertTrue(only["detections"])
        self.assertEqual({d["label"] for d in only["detections"]}, {label})
        status, h, soft = self.d.json("POST", "/detect?threshold=0&nms=soft&max_detections=50", IMAGE,
                                      {"Content-Type": "image/jpeg"})
        self.assertEqual(status, 200)

    def test_render_jpeg(self):
        for path, headers in [("/detect?render=jpeg&threshold=0.3", {}),
                              ("/detect?threshold=0.3", {"Accept": "image/jpeg"})]:
            status, h, body = self.post(path, IMAGE, headers=headers)
            self.assertEqual(status, 200, body[:200])
            self.assertEqual(h["content-type"], "image/jpeg")
            self.assertEqual(body[:2], b"\xff\xd8")
            summary = json.loads(h["x-detections"])
            _, _, ref = self.d.json("POST", "/detect?threshold=0.3", IMAGE, {"Content-Type": "image/jpeg"})
            self.assertEqual(summary["count"], ref["count"])
            self.assertEqual([d["label"] for d in summary["detections"]], [d["label"] for d in ref["detections"]][:50])

    def test_frigate_style(self):
        """Frigate's deepstack detector: multipart api_key + image, no min_confidence,
        0.1 s timeout, up to 20 rows, confidence < 0.4 stops the loop."""
        conn = self.d.connect(timeout=0.1 * SLOW if SLOW > 1 else 5)
        body, ctype = multipart([("api_key", "")], [("image", IMAGE)])
        self.d.request("POST", "/v1/vision/detection", body, {"Content-Type": ctype})  # contexts warm
        conn.timeout = 0.1 * SLOW
        for _ in range(3):  # keep-alive: one connection, several requests
            status, h, data = self.d.request("POST", "/v1/vision/detection", body, {"Content-Type": ctype}, conn=conn)
            self.assertEqual(status, 200)
            doc = check("/v1/vision/detection", "POST", status, h, data)
            rows = [[0.0] * 6 for _ in range(20)]
            for i, det in enumerate(doc["predictions"]):  # Frigate indexes a fixed 20-row array
                if det["confidence"] < 0.4:
                    break
                rows[i] = [det["label"], float(det["confidence"]), det["y_min"] / 480, det["x_min"] / 640,
                           det["y_max"] / 480, det["x_max"] / 640]
            self.assertLessEqual(len(doc["predictions"]), 20)
            self.assertTrue(all(p["confidence"] >= 0.4 for p in doc["predictions"]))
        conn.close()

    def test_home_assistant_style(self):
        body, ctype = multipart([("api_key", ""), ("min_confidence", "0.1")], [("image", IMAGE)])
        status, h, data = self.post("/v1/vision/detection", body, ctype)
        self.assertEqual(status, 200)
        doc = check("/v1/vision/detection", "POST", status, h, data)
        self.assertTrue(doc["success"])
        self.assertEqual(doc["count"], len(doc["predictions"]))
        conf = [p["confidence"] for p in doc["predictions"]]
        self.assertEqual(conf, sorted(conf, reverse=True))
        self.assertTrue(all(c >= 0.1 for c in conf))
        for p in doc["predictions"]:
            self.assertTrue(0 <= p["x_min"] <= p["x_max"] <= 640 and 0 <= p["y_min"] <= p["y_max"] <= 480, p)
        # Same boxes as /detect, rounded to integers.
        _, _, ref = self.d.json("POST", "/detect?threshold=0.1&max_detections=20", IMAGE, {"Content-Type": "image/jpeg"})
        self.assertEqual(len(ref["detections"]), len(doc["predictions"]))
        for p, r in zip(doc["predictions"], ref["detections"]):
            self.assertEqual(p["label"], r["label"])
            self.assertAlmostEqual(p["confidence"], r["score"], places=5)
            self.assertLessEqual(abs(p["x_min"] - r["box"]["x1"]), 0.5 + 1e-6)
            self.assertLessEqual(abs(p["y_max"] - r["box"]["y2"]), 0.5 + 1e-6)
        # The custom route with the model's name answers the same.
        status, h, data = self.post("/v1/vision/custom/weights", body, ctype)
        self.assertEqual(json.loads(data)["predictions"], doc["predictions"])

    def test_compat_max_predictions(self):
        body, ctype = multipart([("min_confidence", "0")], [("image", IMAGE)])
        status, h, data = self.post("/v1/vision/detection", body, ctype)
        doc = check("/v1/vision/detection", "POST", status, h, data)
        self.assertEqual(len(doc["predictions"]), 20)

    def test_metrics(self):
        self.d.request("GET", "/healthz")
        status, h, body = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(h["content-type"].startswith("text/plain"))
        text = body.decode()
        self.assertGreaterEqual(prom_value(text, "effdetd_requests_total", {"endpoint": "/healthz", "status": "200"}), 1)
        for hist in ("effdetd_queue_wait_seconds", "effdetd_inference_seconds", "effdetd_request_duration_seconds"):
            self.assertIsNotNone(prom_value(text, hist + "_bucket", {"le": "+Inf"}))
            self.assertEqual(prom_value(text, hist + "_bucket", {"le": "+Inf"}), prom_value(text, hist + "_count"))
            self.assertIsNotNone(prom_value(text, hist + "_sum"))
        self.assertEqual(prom_value(text, "effdetd_workers"), 2)
        self.assertEqual(prom_value(text, "effdetd_queue_capacity"), 8)
        self.assertIsNotNone(prom_value(text, "effdetd_queue_depth"))
        self.assertIsNotNone(prom_value(text, "effdetd_workers_busy"))
        self.assertEqual(prom_value(text, "effdetd_model_info", {"name": "weights", "params": "188708"}), 1)
        for line in text.splitlines():  # every sample line is well-formed
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+$')

    # ----------------------------------------------------------- bad requests

    def expect_error(self, route, status, h, data, want_status, code=None, method="POST", compat=False):
        self.assertEqual(status, want_status, data[:300])
        doc = check(route, method, status, h, data)
        if compat:
            self.assertIs(doc["success"], False)
        elif code:
            self.assertEqual(doc["error"]["code"], code)
        return doc

    def test_no_body(self):
        status, h, data = self.post("/detect", b"")
        self.expect_error("/detect", status, h, data, 400, "no_image")
        status, h, data = self.post("/v1/vision/detection", b"", None)
        self.expect_error("/v1/vision/detection", status, h, data, 400, compat=True)

    def test_wrong_content_type(self):
        status, h, data = self.post("/detect", IMAGE, "application/x-www-form-urlencoded")
        self.expect_error("/detect", status, h, data, 415, "unsupported_media_type")
        status, h, data = self.post("/detect", IMAGE, "text/plain")
        self.expect_error("/detect", status, h, data, 415, "unsupported_media_type")

    def test_bad_multipart(self):
        body, ctype = multipart([], [("image", IMAGE)], boundary="XyZ")
        cases = [
            (body, "multipart/form-data"),  # no boundary
            (body[: len(body) // 2], ctype),  # unterminated
            (multipart([], [("image", IMAGE), ("image", IMAGE)])),  # two image fields
            (multipart([("threshold", "0.5")], [])),  # no image field
            (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\nX: " + b"a" * 5000 + b"\r\n\r\nx\r\n--XyZ--\r\n",
             ctype),  # huge part headers
        ]
        for b, c in cases:
            status, h, data = self.post("/detect", b, c)
            doc = self.expect_error("/detect", status, h, data, 400)
            self.assertIn(doc["error"]["code"], ("bad_multipart", "no_image"))
            status, h, data = self.post("/v1/vision/detection", b, c)
            self.expect_error("/v1/vision/detection", status, h, data, 400, compat=True)

    def test_bad_params(self):
        for q in ("threshold=abc", "threshold=-1", "threshold=NaN", "threshold=2", "max_detections=0",
                  "nms=fast", "classes=unicorn", "bogus=1", "threshold=0.1&threshold=0.2"):
            status, h, data = self.post("/detect?" + q, IMAGE)
            self.expect_error("/detect", status, h, data, 400, "invalid_parameter")
        for v in ("abc", "-1", "NaN", "2"):
            body, ctype = multipart([("min_confidence", v)], [("image", IMAGE)])
            status, h, data = self.post("/v1/vision/detection", body, ctype)
            self.expect_error("/v1/vision/detection", status, h, data, 400, compat=True)

    def test_invalid_and_huge_images(self):
        status, h, data = self.post("/detect", b"\xff\xd8not really a jpeg" * 10)
        self.expect_error("/detect", status, h, data, 400, "invalid_image")
        status, h, data = self.post("/detect", IMAGE[: len(IMAGE) // 3])  # truncated: decodes partially or fails
        self.assertIn(status, (200, 400))
        body, ctype = multipart([], [("image", b"GIF89a....")])
        status, h, data = self.post("/v1/vision/detection", body, ctype)
        self.expect_error("/v1/vision/detection", status, h, data, 400, compat=True)
        big = jpeg_with_size(IMAGE, 10000, 10000)  # 100 M pixels > max_pixels 40 M
        status, h, data = self.post("/detect", big)
        self.expect_error("/detect", status, h, data, 413, "image_too_large")

    def test_unknown_model_route_method(self):
        status, h, data = self.post("/detect?model=nope", IMAGE)
        self.expect_error("/detect", status, h, data, 404, "model_not_found")
        body, ctype = multipart([], [("image", IMAGE)])
        status, h, data = self.post("/v1/vision/custom/nope", body, ctype)
        self.expect_error("/v1/vision/custom/{model}", status, h, data, 404, compat=True)
        status, h, data = self.d.request("GET", "/detect")
        self.expect_error("/detect", status, h, data, 405, "method_not_allowed", method="POST")
        self.assertEqual(h["allow"], "POST")
        status, h, data = self.d.request("GET", "/nowhere")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(data)["error"]["code"], "not_found")

    def test_oversized_body_and_headers(self):
        # Content-Length over max_body_bytes: refused from the headers, before the body.
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.settimeout(10 * SLOW)
        s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  b"Content-Length: %d\r\n\r\n" % (1024 * 1024 + 10) + IMAGE)
        reply = b""
        try:
            while not reply.endswith(b"\r\n\r\n") and len(reply) < 4096:
                chunk = s.recv(1)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
        s.close()
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:100])
        try:
            status, h, data = self.d.request("GET", "/healthz", headers={"X-Big": "a" * 8000})
            self.assertGreaterEqual(status, 400)
        except (ConnectionError, OSError):
            pass  # refusing by closing the connection is fine too
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)

    def test_slowloris_is_cut_off(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")  # never finishes
        t0 = time.time()
        s.settimeout(10 * SLOW)
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)  # others are served meanwhile
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        self.assertLess(time.time() - t0, 8 * SLOW)  # timeout_s 2
        s.close()

    def test_client_disconnects_mid_request(self):
        for partial in (b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
                        + IMAGE[:1000], b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Le"):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(partial)
            s.close()
        # Complete requests whose clients hang up at once: queued jobs are dropped or
        # their results discarded; the daemon keeps serving.
        req = (b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
               % len(IMAGE)) + IMAGE
        socks = []
        for _ in range(12):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(req)
            socks.append(s)
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            s.close()
        time.sleep(0.5 * SLOW)
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.post("/detect", IMAGE)[0], 200)


class Auth(unittest.TestCase):
    def test_api_key(self):
        with Daemon("--api-key", "s3cret") as d:
            body, ctype = multipart([("api_key", "wrong")], [("image", IMAGE)])
            status, h, data = d.request("POST", "/v1/vision/detection", body, {"Content-Type": ctype})
            self.assertEqual(status, 401)
            doc = check("/v1/vision/detection", "POST", status, h, data)
            self.assertIs(doc["success"], False)
            body, ctype = multipart([("api_key", "s3cret")], [("image", IMAGE)])
            self.assertEqual(d.request("POST", "/v1/vision/detection", body, {"Content-Type": ctype})[0], 200)
            status, h, data = d.request("POST", "/detect", IMAGE, {"Content-Type": "image/jpeg"})
            self.assertEqual(status, 401)
            self.assertEqual(check("/detect", "POST", status, h, data)["error"]["code"], "unauthorized")
            ok = {"Content-Type": "image/jpeg", "Authorization": "Bearer s3cret"}
            self.assertEqual(d.request("POST", "/detect", IMAGE, ok)[0], 200)
            self.assertEqual(d.request("POST", "/detect?api_key=s3cret", IMAGE, {"Content-Type": "image/jpeg"})[0], 200)
            self.assertEqual(d.request("GET", "/v1/models")[0], 401)
            self.assertEqual(d.request("GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})[0], 200)
            self.assertEqual(d.request("GET", "/healthz")[0], 200)
            self.assertEqual(d.request("GET", "/metrics")[0], 200)


if __name__ == "__main__":
    unittest.main()
