"""End to end: effdetd's detections equal the reference PyTorch implementation's
(detections.json, `detections_image`: original-image pixels, clipped before NMS) for
the tiny fixture model and, when the shared fixtures are present, for d0."""
import json
import os
import sys
import unittest

from harness import D0_MODEL, FIXTURES, ROOT, SHARED, TINY_MODEL, Daemon, check, have_shared, multipart, read

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from detmatch import SCORE_TOL_FP32, mismatches  # noqa: E402  (tests/integration/detmatch.py)

JPEG = {"Content-Type": "image/jpeg"}


def compare(test, got, ref, n):
    """Top-n detections: the same set as the reference's top n, in order up to near-ties
    (tests/integration/detmatch.py: any CPU's rounding passes, nothing else does)."""
    test.assertGreaterEqual(len(got), n)
    test.assertEqual(mismatches(got[:n], ref[:n]), [])


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
            # Reference rows clearly above the threshold, each matched to a distinct
            # prediction (the order of near-ties is any CPU's; integer boxes within 1 px).
            want = [r for r in ref["detections_image"] if r["score"] >= 0.5 + SCORE_TOL_FP32][:20]
            self.assertGreaterEqual(len(preds), len(want))
            free = list(preds)
            for r in want:
                hit = [p for p in free if abs(p["confidence"] - r["score"]) <= SCORE_TOL_FP32
                       and abs(p["x_min"] - r["x1"]) <= 1 and abs(p["y_max"] - r["y2"]) <= 1]
                self.assertTrue(hit, (r, preds))
                free.remove(hit[0])

    def test_tiny_matches_reference(self):
        self.run_model(TINY_MODEL, FIXTURES, 20)

    def test_d0_matches_reference(self):
        if not have_shared():
            self.skipTest("shared fixtures absent")
        self.run_model(D0_MODEL, os.path.join(SHARED, "d0"), 20)


if __name__ == "__main__":
    unittest.main()
