"""effdetd against hostile clients and faults: the regressions of a red-team run
(issue #10). Each test failed before its fix."""
import json
import os
import signal
import socket
import time
import unittest

from harness import (SANITIZED, SLOW, TINY_IMAGE, TINY_MODEL, Daemon, check, flat_jpeg, prom_value, read)

IMAGE = read(TINY_IMAGE)
JPEG = {"Content-Type": "image/jpeg"}


def raw_post(port, body, path="/detect", extra=b""):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n%s\r\n"
              % (path.encode(), len(body), extra) + body)
    return s


def read_all(s, timeout=10):
    """Everything the server sends until it closes (or the timeout)."""
    s.settimeout(timeout * SLOW)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


class Shutdown(unittest.TestCase):
    def test_sigterm_with_queued_big_jobs_exits_cleanly(self):
        """--workers 1 --drain-timeout-ms 1 and five 6000x6000 JPEGs queued: SIGTERM exits
        at once with 0. Before the fix, evhttp_free called the close callback of jobs
        already freed (ASan: heap-use-after-free in close_cb; release builds could hang)."""
        big = flat_jpeg(6000, 6000)
        with Daemon("--drain-timeout-ms", "1", "--queue-size", "16", workers=1) as d:
            socks = [raw_post(d.port, big) for _ in range(5)]
            deadline = time.time() + 20 * SLOW
            while time.time() < deadline:  # one running, some queued
                text = d.request("GET", "/metrics")[2].decode()
                if (prom_value(text, "effdetd_queue_depth") or 0) >= 2:
                    break
                time.sleep(0.01)
            d.signal(signal.SIGTERM)
            try:
                code = d.proc.wait(timeout=20 * SLOW)
            except Exception:
                d.proc.kill()
                raise AssertionError("effdetd hung at shutdown:\n" + d.stderr())
            for s in socks:
                s.close()
            self.assertEqual(code, 0, d.stderr()[-3000:])
            self.assertNotIn("AddressSanitizer", d.stderr())


def parse_replies(data, heads=0):
    """[(status line, headers dict lower-case, body)] of consecutive HTTP/1.1 replies,
    framed by Content-Length only (as a keep-alive client must); the first `heads`
    answer HEAD requests: no body whatever their Content-Length."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:200]
        lines = head.decode("latin-1").split("\r\n")
        h = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            h[k.strip().lower()] = v.strip()
        n = int(h.get("content-length", "-1"))
        assert n >= 0, "no Content-Length: %r" % head
        if len(out) < heads:
            n = 0
        out.append((lines[0], h, rest[:n]))
        data = rest[n:]
    return out


def exchange(port, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    out = read_all(s, timeout)
    s.close()
    return out


class Protocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--timeout-s", "30")
        cls.d.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)

    def test_head_has_length_and_no_body(self):
        """HEAD then GET on one connection: the HEAD reply has the GET's Content-Length and
        no body, so the GET's reply is read correctly (the body used to be sent)."""
        for path in ("/", "/healthz", "/metrics", "/v1/models", "/detect"):
            get = self.d.request("GET", path)
            data = exchange(self.d.port, b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
            replies = parse_replies(data, heads=1)
            self.assertEqual(len(replies), 2, (path, data[:300]))
            (line, h, body), (line2, _, body2) = replies
            self.assertEqual(body, b"", path)
            self.assertIn(str(get[0]), line, path)
            if path != "/metrics":  # the metrics text changes between the two requests
                self.assertEqual(int(h["content-length"]), len(get[2]), path)
            self.assertIn("200", line2)
            self.assertEqual(body2, b'{"status":"ok"}')

    def test_conflicting_content_length_is_refused_and_closed(self):
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for headers in (b"Content-Length: 3\r\nContent-Length: 10\r\n", b"Content-Length: +3\r\n",
                        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                        b"Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n"):
            t0 = time.time()
            data = exchange(self.d.port, b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n" +
                            headers + b"\r\nabc" + smuggled)
            replies = parse_replies(data)
            self.assertEqual(len(replies), 1, (headers, data))  # nothing answered the smuggled GET
            line, h, body = replies[0]
            self.assertIn("400", line, headers)
            self.assertEqual(h.get("connection"), "close")
            if h["content-type"] == "application/json":  # libevent itself refuses some TE cases
                self.assertEqual(check("/detect", "POST", 400, h, body)["error"]["code"], "bad_request")
            self.assertLess(time.time() - t0, 3 * SLOW)  # closed, not left to the timeout

    def test_connect_and_trace_are_answered_and_closed(self):
        for req in (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                    b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n"):
            t0 = time.time()
            replies = parse_replies(exchange(self.d.port, req, timeout=10))
            self.assertEqual(len(replies), 1)
            self.assertIn("501", replies[0][0])
            self.assertEqual(json.loads(replies[0][2])["error"]["code"], "not_implemented")
            self.assertLess(time.time() - t0, 3 * SLOW, req)

    def test_security_headers(self):
        for path, csp in (("/", "script-src"), ("/healthz", "default-src 'none'"), ("/v1/models", "default-src 'none'"),
                          ("/nope", "default-src 'none'")):
            _, h, _ = self.d.request("GET", path)
            self.assertEqual(h.get("x-content-type-options"), "nosniff", path)
            self.assertEqual(h.get("x-frame-options"), "DENY", path)
            self.assertIn("frame-ancestors 'none'", h.get("content-security-policy", ""), path)
            self.assertIn(csp, h["content-security-policy"], path)
            self.assertEqual(h.get("cache-control"), "no-store", path)
        _, h, _ = self.d.request("POST", "/detect", IMAGE, JPEG)
        self.assertEqual(h.get("x-content-type-options"), "nosniff")

    def test_access_log_escapes_control_bytes(self):
        exchange(self.d.port, b"GET /x\x1b[31mred\x01\x7f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.1)
        log = self.d.stderr()
        self.assertNotIn("\x1b[31m", log)
        self.assertIn("/x\\x1b[31mred\\x01\\x7f", log)

    def test_wide_thin_jpeg_is_detected(self):
        """16000x8 letterboxes to 128 x 0.064 rows: one row is kept (was 400 "shrinks to 128x0")."""
        status, h, data = self.d.request("POST", "/detect", flat_jpeg(16000, 8), JPEG)
        self.assertEqual(status, 200, data)
        self.assertEqual(check("/detect", "POST", 200, h, data)["image"], {"width": 16000, "height": 8})


class ApiKey(unittest.TestCase):
    def test_401_comes_before_other_errors(self):
        with Daemon("--api-key", "s3cret") as d:
            for path, body, ctype in (("/detect?threshold=7", IMAGE, "image/jpeg"), ("/detect", IMAGE, "text/plain"),
                                      ("/detect", b"", "image/jpeg"), ("/v1/vision/detection", b"junk",
                                                                       "multipart/form-data; boundary=x")):
                status, h, data = d.request("POST", path, body, {"Content-Type": ctype})
                self.assertEqual(status, 401, (path, ctype, data))
            # with the key, the same requests get their own errors
            ok = {"Authorization": "Bearer s3cret"}
            self.assertEqual(d.request("POST", "/detect?threshold=7", IMAGE, dict(ok, **JPEG))[0], 400)
            self.assertEqual(d.request("POST", "/detect", IMAGE, dict(ok, **{"Content-Type": "text/plain"}))[0], 415)

    def test_query_key_on_models(self):
        with Daemon("--api-key", "s3cret") as d:
            self.assertEqual(d.request("GET", "/v1/models?api_key=s3cret")[0], 200)
            self.assertEqual(d.request("GET", "/v1/models?api_key=wrong")[0], 401)
            self.assertEqual(d.request("POST", "/v1/vision/custom/list?api_key=s3cret")[0], 200)

    def test_key_from_environment_and_file(self):
        with Daemon(env={"EFFDETD_API_KEY": "fromenv"}) as d:
            self.assertEqual(d.request("GET", "/v1/models")[0], 401)
            self.assertEqual(d.request("GET", "/v1/models", headers={"Authorization": "Bearer fromenv"})[0], 200)
            with open(os.path.join(d.tmp, "cmdline")) if False else open("/proc/%d/cmdline" % d.proc.pid, "rb") as f:
                self.assertNotIn(b"fromenv", f.read())
        import tempfile
        tmp = tempfile.mkdtemp()
        try:
            keyf = os.path.join(tmp, "key")
            with open(keyf, "w") as f:
                f.write("fromfile\n")
            with Daemon("--api-key-file", keyf, env={"EFFDETD_API_KEY": "fromenv"}) as d:
                self.assertEqual(d.request("GET", "/v1/models", headers={"Authorization": "Bearer fromfile"})[0], 200)
                self.assertEqual(d.request("GET", "/v1/models", headers={"Authorization": "Bearer fromenv"})[0], 401)
                with open(keyf, "w") as f:  # rotated with a reload
                    f.write("rotated\n")
                d.signal(signal.SIGHUP)
                deadline = time.time() + 20 * SLOW
                while time.time() < deadline and d.request(
                        "GET", "/v1/models", headers={"Authorization": "Bearer rotated"})[0] != 200:
                    time.sleep(0.05)
                self.assertEqual(d.request("GET", "/v1/models", headers={"Authorization": "Bearer rotated"})[0], 200)
            p = __import__("subprocess").run([__import__("harness").EFFDETD, "--model", TINY_MODEL, "--api-key-file",
                                              os.path.join(tmp, "absent"), "--check-config"], capture_output=True)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"api_key_file", p.stderr)
        finally:
            __import__("shutil").rmtree(tmp, ignore_errors=True)


class Reload(unittest.TestCase):
    @unittest.skipIf(SANITIZED, "RSS under ASan measures the allocator's quarantine, not leaks")
    def test_idle_reloads_free_retired_contexts(self):
        """Six SIGHUPs with no traffic, the model file touched each time (a new model):
        RSS stays near its start. Retired contexts used to be freed only by the next job
        (d0, 2 workers: +144 MB per reload)."""
        import shutil
        import tempfile
        from harness import D0_MODEL, have_shared
        if not have_shared():
            self.skipTest("shared fixtures absent")
        tmp = tempfile.mkdtemp()
        try:
            model = os.path.join(tmp, "d0.safetensors")
            shutil.copy(D0_MODEL, model)
            with Daemon(model=model, workers=2) as d:
                start = d.rss_kib()
                for i in range(6):
                    os.utime(model, (time.time() + i + 1, time.time() + i + 1))
                    d.signal(signal.SIGHUP)
                    deadline = time.time() + 60 * SLOW
                    while time.time() < deadline:
                        text = d.request("GET", "/metrics")[2].decode()
                        if prom_value(text, "effdetd_reloads_total", {"result": "ok"}) == i + 1:
                            break
                        time.sleep(0.05)
                    self.assertEqual(prom_value(text, "effdetd_reloads_total", {"result": "ok"}), i + 1)
                deadline = time.time() + 5
                while d.rss_kib() - start > 80 * 1024 and time.time() < deadline:
                    time.sleep(0.1)
                self.assertLess(d.rss_kib() - start, 80 * 1024, "RSS %d -> %d KiB" % (start, d.rss_kib()))
                self.assertEqual(d.request("POST", "/detect", IMAGE, JPEG)[0], 200)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class SlowClients(unittest.TestCase):
    def test_slow_headers_cannot_starve_others(self):
        """20 sockets, each sending one header byte every 0.3 s, fill max_connections 20:
        /healthz is still answered (the slowest are closed to make room), and every one of
        them is closed by header_timeout_s (the per-read timeout never fired: each byte
        reset it)."""
        import threading
        with Daemon("--max-connections", "20", "--header-timeout-s", "2", "--timeout-s", "30") as d:
            socks = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(20)]
            stop = threading.Event()
            req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

            def trickle():
                for i in range(len(req)):
                    for s in socks:
                        try:
                            s.send(req[i:i + 1])
                        except OSError:
                            pass
                    if stop.wait(0.3):
                        return
            t = threading.Thread(target=trickle)
            t.start()
            try:
                time.sleep(1.0)  # older than CONN_MIN_AGE_MS
                for _ in range(3):
                    t0 = time.time()
                    self.assertEqual(d.request("GET", "/healthz", timeout=5)[0], 200)
                    self.assertLess(time.time() - t0, 2 * SLOW)
                time.sleep(2.5)  # header_timeout_s 2
                closed = 0
                for s in socks:
                    s.settimeout(0.5)
                    try:
                        closed += s.recv(100) == b""
                    except ConnectionResetError:
                        closed += 1
                    except socket.timeout:
                        pass
                self.assertEqual(closed, 20)
            finally:
                stop.set()
                t.join()
                for s in socks:
                    s.close()
            text = d.request("GET", "/metrics")[2].decode()
            self.assertGreater(prom_value(text, "effdetd_connections_dropped_total", {"reason": "cap"}), 0, text)
            self.assertGreater(prom_value(text, "effdetd_connections_dropped_total", {"reason": "header_timeout"}), 0)

    def test_body_budget_and_body_rate(self):
        """body_budget_bytes 1m: a stalled 700 kB upload holds 700 kB of it; a second 700 kB
        request is answered 503 + Retry-After before its body is sent; the stalled one is
        closed by min_body_rate; then the budget is free again."""
        with Daemon("--body-budget-bytes", "1m", "--header-timeout-s", "1", "--min-body-rate", "100k",
                    "--max-body-bytes", "2m") as d:
            a = socket.create_connection(("127.0.0.1", d.port))
            a.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 700000\r\n\r\n"
                      + b"x" * 100000)
            time.sleep(0.2)
            text = d.request("GET", "/metrics")[2].decode()
            self.assertEqual(prom_value(text, "effdetd_body_bytes_held"), 700000)
            b = socket.create_connection(("127.0.0.1", d.port))
            b.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 700000\r\n\r\n")
            reply = read_all(b, timeout=5)
            b.close()
            replies = parse_replies(reply)
            self.assertIn("503", replies[0][0])
            self.assertEqual(replies[0][1].get("retry-after"), "1")
            self.assertEqual(json.loads(replies[0][2])["error"]["code"], "busy")
            t0 = time.time()
            self.assertEqual(read_all(a, timeout=10), b"")  # closed without a reply
            self.assertLess(time.time() - t0, 5 * SLOW)
            a.close()
            time.sleep(0.1)
            text = d.request("GET", "/metrics")[2].decode()
            self.assertEqual(prom_value(text, "effdetd_body_bytes_held"), 0)
            self.assertEqual(prom_value(text, "effdetd_connections_dropped_total", {"reason": "body_rate"}), 1)
            self.assertEqual(prom_value(text, "effdetd_body_budget_rejected_total"), 1)
            self.assertEqual(d.request("POST", "/detect", IMAGE, JPEG)[0], 200)


if __name__ == "__main__":
    unittest.main()
