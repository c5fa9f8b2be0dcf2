"""effdet-eval end to end on the trained shapes fixture (../shared/reference/shapes):

- the metric: our COCO numbers for the reference's own detections equal pycocotools'
  (report.json, printed to 4 decimals);
- the model: our detections score the reference's AP within 0.003, and agree image by
  image with the reference's detections as the seeded fixtures' do;
- the shipped demo model is that fixture; errors are one line naming the input.
Expected values come from the fixture files, never from the tool itself."""
import collections
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
TOOL = os.path.join(ROOT, BUILD, "effdet-eval")
SHARED = os.environ.get("EFFDET_SHARED", os.path.join(ROOT, "..", "shared", "reference"))
SHAPES = os.path.join(SHARED, "shapes")
VAL = os.path.join(SHAPES, "val")
ANN = os.path.join(VAL, "annotations.json")
STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
# Score tolerance for one detection: the tiny model is shallower than D0 ("a few 1e-4"
# for D0 in ../shared/reference/README.md); the largest difference seen is ~3e-6.
SCORE_TOL = 1e-4


def run(*args, check=True):
    p = subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"effdet-eval {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def have_shapes():
    if os.path.isdir(SHAPES):
        return True
    print(f"\n*** shapes fixture NOT FOUND at {SHAPES} ***", file=sys.stderr)
    if os.environ.get("EFFDET_SKIP_SHARED") == "1":
        return False
    raise AssertionError(f"shared fixtures missing at {SHARED} (EFFDET_SKIP_SHARED=1 skips)")


def reference_metrics():
    with open(os.path.join(SHAPES, "report.json")) as f:
        return json.load(f)["reference_coco_metrics"]


def by_image(dets):
    g = collections.defaultdict(list)
    for d in dets:
        g[d["image_id"]].append(d)
    for v in g.values():
        v.sort(key=lambda d: -d["score"])
    return g


def iou(a, b):
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def same_box(a, b):
    """IoU >= 0.9; boxes clipped to (nearly) zero width or height at the image border, which
    letterboxed non-square images produce by the thousand, have no meaningful IoU: for those
    every edge within half a pixel."""
    if min(a[2], a[3], b[2], b[3]) < 0.5:
        return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[0] + a[2] - b[0] - b[2]),
                   abs(a[1] + a[3] - b[1] - b[3])) <= 0.5
    return iou(a, b) >= 0.9


def unmatched_rows(ref, ours):
    """Rows of `ref` with no row of `ours` of the same class, the same box and a score within
    SCORE_TOL (each row of ours used once). Both lists are sorted by score, so the score
    tolerance also bounds how far a row may move: only near-ties change places. A row tied
    (within SCORE_TOL) with the last one may be replaced by its tie."""
    used = [False] * len(ours)
    missing = []
    last = ref[-1]["score"] if ref else 0
    for r in ref:
        best = None
        for j, o in enumerate(ours):
            if used[j] or o["category_id"] != r["category_id"] or abs(o["score"] - r["score"]) > SCORE_TOL:
                continue
            if same_box(r["bbox"], o["bbox"]) and (
                    best is None or abs(o["score"] - r["score"]) < abs(ours[best]["score"] - r["score"])):
                best = j
        if best is not None:
            used[best] = True
        elif abs(r["score"] - last) > SCORE_TOL:
            missing.append(r)
    return missing


class Metric(unittest.TestCase):
    def test_reference_detections_score_as_pycocotools(self):
        """Our metric on the reference's own detections = pycocotools' (report.json, 4 decimals)."""
        if not have_shapes():
            return
        j = json.loads(run("--annotations", ANN, "--eval-only", os.path.join(VAL, "reference_detections.json")).stdout)
        ref = reference_metrics()
        for k in STATS:
            self.assertLessEqual(abs(j[k] - ref[k]), 5e-5 + 1e-9, f"{k}: ours {j[k]}, pycocotools {ref[k]}")
        self.assertEqual(j["images"], 300)
        self.assertEqual(j["detections"], 30000)
        self.assertEqual([c["name"] for c in j["per_class"]], ["circle", "square", "triangle"])
        self.assertEqual(sum(c["objects"] for c in j["per_class"]), 795)
        # COCO's AP is the mean of the per-class APs (every class has objects here)
        self.assertAlmostEqual(sum(c["AP"] for c in j["per_class"]) / 3, j["AP"], places=12)


class Model(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = None
        if not have_shapes():
            return
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dets_path = os.path.join(cls.tmp.name, "dets.json")
        p = run("--model", os.path.join(SHAPES, "weights.safetensors"), "--annotations", ANN, "--images", VAL,
                "--detections", cls.dets_path, "--threads", "2")
        cls.out = json.loads(p.stdout)
        cls.stderr = p.stderr

    @classmethod
    def tearDownClass(cls):
        if cls.out is not None:
            cls.tmp.cleanup()

    def test_ap_equals_the_reference(self):
        if self.out is None:
            return
        ref = reference_metrics()
        for k in STATS:
            self.assertLessEqual(abs(self.out[k] - ref[k]), 0.003, f"{k}: ours {self.out[k]}, reference {ref[k]}")
        self.assertEqual(self.out["category_mapping"], "label")
        self.assertEqual(self.out["model"], "shapes_tf_efficientdet")
        self.assertEqual(self.out["images"], 300)
        self.assertEqual(self.stderr, "")  # not a TTY: no progress line, and no warnings

    def test_detections_agree_per_image(self):
        if self.out is None:
            return
        with open(self.dets_path) as f:
            ours = by_image(json.load(f))
        with open(os.path.join(VAL, "reference_detections.json")) as f:
            ref = by_image(json.load(f))
        self.assertEqual(sorted(ours), sorted(ref))
        for image_id in ref:
            self.assertEqual(len(ours[image_id]), len(ref[image_id]), f"image {image_id}")
            missing = unmatched_rows(ref[image_id], ours[image_id])
            self.assertEqual(missing, [], f"image {image_id}: reference rows we lack")
            extra = unmatched_rows(ours[image_id], ref[image_id])
            self.assertEqual(extra, [], f"image {image_id}: rows the reference lacks")

    def test_results_file_rescores_identically(self):
        """--detections writes every digit: scoring the file gives the very same numbers."""
        if self.out is None:
            return
        j = json.loads(run("--annotations", ANN, "--eval-only", self.dets_path).stdout)
        for k in STATS:
            self.assertEqual(j[k], self.out[k], k)


class Shipped(unittest.TestCase):
    def test_demo_model_is_the_fixture(self):
        if not have_shapes():
            return
        self.assertTrue(filecmp.cmp(os.path.join(ROOT, "models", "shapes.safetensors"),
                                    os.path.join(SHAPES, "weights.safetensors"), shallow=False))
        samples = os.path.join(ROOT, "models", "samples")
        names = sorted(os.listdir(samples))
        self.assertGreaterEqual(len(names), 3)
        for n in names:
            self.assertTrue(filecmp.cmp(os.path.join(samples, n), os.path.join(VAL, n), shallow=False), n)


class Errors(unittest.TestCase):
    def one_line(self, p, code, needle):
        self.assertEqual(p.returncode, code, p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
        self.assertIn(needle, p.stderr)

    def test_bad_inputs(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "bad.json")
            with open(bad, "w") as f:
                f.write('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": [')
            self.one_line(run("--annotations", bad, "--eval-only", bad, check=False), 1, bad + ": not valid JSON")
            self.one_line(run("--annotations", os.path.join(d, "none.json"), "--eval-only", bad, check=False), 1,
                          "none.json: No such file")
            ann = os.path.join(d, "ann.json")
            with open(ann, "w") as f:
                json.dump({"images": [{"id": 1, "file_name": "missing.jpg"}],
                           "categories": [{"id": 1, "name": "circle"}], "annotations": []}, f)
            model = os.path.join(ROOT, "models", "shapes.safetensors")
            self.one_line(run("--model", model, "--annotations", ann, "--images", d, check=False), 1,
                          os.path.join(d, "missing.jpg"))
            with open(os.path.join(d, "missing.jpg"), "wb") as f:
                f.write(b"not a jpeg")
            self.one_line(run("--model", model, "--annotations", ann, "--images", d, check=False), 1,
                          os.path.join(d, "missing.jpg") + ": ")
            res = os.path.join(d, "res.json")
            with open(res, "w") as f:
                json.dump([{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], f)
            self.one_line(run("--annotations", ann, "--eval-only", res, check=False), 1, "image_id")
            with open(ann, "w") as f:
                json.dump({"images": [{"id": 1, "file_name": "missing.jpg"}],
                           "categories": [{"id": 1, "name": "unicorn"}], "annotations": []}, f)
            p = run("--model", model, "--annotations", ann, "--images", d, check=False)
            self.assertEqual(p.returncode, 2)
            self.assertIn("try --map id", p.stderr)
        self.one_line(run("--annotations", "x.json", check=False), 2, "--model and --images are required")
        self.one_line(run("--annotations", "x.json", "--eval-only", "r.json", "-j", "0", check=False), 2, "--threads")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
