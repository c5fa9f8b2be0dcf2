"""End to end: effdetd's detections equal the reference PyTorch implementation's
(detections.json, `detections_image`: original-image pixels, clipped before NMS) for
the tiny fixture model and, when the shared fixtures are present, for d0."""
import json
import os
import unittest

from harness import D0_MODEL, FIXTURES, SHARED, TINY_MODEL, Daemon, check, have_shared, multipart, read

JPEG = {"Content-Type": "image/jpeg"}


def compare(test, got, ref, n):
    """Top-n detections: same class, score within 1e-3, box within 0.5 px. Neighbours
    whose reference scores differ by < 1e-4 may swap (float32 noise), so each reference
    row is matched to the nearest-scoring same-class row among a few neighbours."""
    test.assertGreaterEqual(len(got), n)
    for i, r in enumerate(ref[:n]):
        window = got[max(0, i - 3):i + 4]
        best = min(window, key=lambda g: abs(g["score"] - r["score"]) + 10 * (g["class_id"] != r["cls"])
                   + sum(abs(g["box"][k] - r[k]) for k in ("x1", "y1", "x2", "y2")) / 100)
        test.assertEqual(best["class_id"], r["cls"], (i, best, r))
        test.assertAlmostEqual(best["score"], r["score"], delta=1e-3, msg=(i, best, r))
        for k in ("x1", "y1", "x2", "y2"):
            test.assertAlmostEqual(best["box"][k], r[k], delta=0.5, msg=(i, k, best, r))


class Results(unittest.TestCase):
    def run_model(self, model, ref_dir, n):
        ref = json.loads(read(os.path.join(ref_dir, "detections.json")))
        image = read(os.path.join(ref_dir, "input.jpg"))
        with Daemon(model=model, workers=1) as d:
            status, h, body = d.request("POST", "/detect?threshold=0&max_detections=100", image, JPEG)
            self.assertEqual(status, 200, body[:300])
            doc = check("/detect", "POST", status, h, body)
            self.assertEqual([doc["image"]["width"], doc["image"]["height"]], ref["orig_size_wh"])
            self.assertEqual(len(doc["detections"]), 100)
            compare(self, doc["detections"], ref["detections_image"], n)
            # DeepStack route: the same detections above min_confidence, integer boxes.
            body, ctype = multipart([("min_confidence", "0.5")], [("image", image)])
            status, h, data = d.request("POST", "/v1/vision/detection", body, {"Content-Type": ctype})
            preds = check("/v1/vision/detection", "POST", status, h, data)["predictions"]
            want = [r for r in ref["detections_image"] if r["score"] >= 0.5 + 1e-4][:20]
            self.assertGreaterEqual(len(preds), len(want))
            for p, r in zip(preds, want):
                self.assertAlmostEqual(p["confidence"], r["score"], delta=1e-3)
                self.assertLessEqual(abs(p["x_min"] - r["x1"]), 1)
                self.assertLessEqual(abs(p["y_max"] - r["y2"]), 1)

    def test_tiny_matches_reference(self):
        self.run_model(TINY_MODEL, FIXTURES, 20)

    def test_d0_matches_reference(self):
        if not have_shared():
            self.skipTest("shared fixtures absent")
        self.run_model(D0_MODEL, os.path.join(SHARED, "d0"), 20)


if __name__ == "__main__":
    unittest.main()
