"""effdet-detect as a user runs it: --describe, --raw-input/--dump against the reference
fixtures, images to JSON, --draw, filters, and one-line errors with the documented exit
codes. Expected values come from the fixtures, never from the tool itself."""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

from detmatch import mismatches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
TOOL = os.path.join(ROOT, BUILD, "effdet-detect")
FIX = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.environ.get("EFFDET_SHARED", os.path.join(ROOT, "..", "shared", "reference"))
TINY = os.path.join(FIX, "weights.safetensors")

PARAMS = {
    "tf_efficientdet_d0": 3880067, "tf_efficientdet_d1": 6625898, "tf_efficientdet_d2": 8097039,
    "tf_efficientdet_d3": 12032296, "tf_efficientdet_d4": 20723675, "tf_efficientdet_d5": 33653315,
    "tf_efficientdet_d6": 51871782, "tf_efficientdet_d7": 51871782, "efficientdet_d0": 3877763,
}


def run(*args, check=True):
    p = subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"effdet-detect {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def floats(path):
    with open(path, "rb") as f:
        b = f.read()
    return struct.unpack(f"<{len(b) // 4}f", b)


def rel_err(a, b):
    assert len(a) == len(b), (len(a), len(b))
    m = max(abs(x) for x in b) or 1.0
    return max(abs(x - y) for x, y in zip(a, b)) / m


def shared_dir():
    if os.path.isdir(SHARED):
        return SHARED
    print(f"\n*** shared reference fixtures NOT FOUND at {SHARED} ***", file=sys.stderr)
    if os.environ.get("EFFDET_SKIP_SHARED") == "1":
        return None
    raise AssertionError(f"shared fixtures missing at {SHARED} (EFFDET_SKIP_SHARED=1 skips)")


class DetMatch(unittest.TestCase):
    """tests/integration/detmatch.py itself: what it lets through and what it does not."""
    REF = [{"cls": c, "score": s, "x1": 10.0 * i, "y1": 0.0, "x2": 10.0 * i + 5, "y2": 5.0}
           for i, (c, s) in enumerate([(1, 0.9), (2, 0.5), (3, 0.49995), (4, 0.3), (5, 0.1), (6, 0.09995)])]
    SPARE = {"cls": 7, "score": 0.09990, "x1": 99.0, "y1": 0.0, "x2": 104.0, "y2": 5.0}

    def test_rules(self):
        ref = self.REF
        self.assertEqual(mismatches(ref, ref), [])
        self.assertEqual(mismatches([ref[0], ref[2], ref[1]] + ref[3:], ref), [])  # near-tie swapped
        self.assertNotEqual(mismatches([ref[1], ref[0]] + ref[2:], ref), [])  # 0.9 / 0.5: not a tie
        self.assertEqual(mismatches(ref[:5] + [self.SPARE], ref), [])  # the last row's tie replaces it
        self.assertNotEqual(mismatches(ref[:3] + [self.SPARE] + ref[4:], ref), [])  # 0.3 is no tie of the last
        shifted = [dict(r, score=r["score"] + 3e-4) for r in ref]
        self.assertNotEqual(mismatches(shifted, ref), [])
        moved = [dict(ref[0], x2=ref[0]["x2"] + 1)] + ref[1:]
        self.assertNotEqual(mismatches(moved, ref), [])
        self.assertNotEqual(mismatches(ref[:5], ref), [])


class Describe(unittest.TestCase):
    def test_parameter_counts(self):
        for name, params in PARAMS.items():
            j = json.loads(run("--describe", name).stdout)
            self.assertEqual(j["params"], params, name)
            self.assertEqual(j["name"], name)

    def test_d0_shape(self):
        j = json.loads(run("--describe", "tf_efficientdet_d0").stdout)
        self.assertEqual(j["input_size"], [512, 512])
        self.assertEqual([lv["size"] for lv in j["levels"]], [[64, 64], [32, 32], [16, 16], [8, 8], [4, 4]])
        self.assertEqual(sum(lv["anchors"] for lv in j["levels"]), 49104)

    def test_unknown_model(self):
        p = run("--describe", "tf_efficientdet_d8", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("tf_efficientdet_d8", p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1)


class Dump(unittest.TestCase):
    NAMES = (["feat_0", "feat_1", "feat_2", "fpn_in_P6", "fpn_in_P7"]
             + [f"{k}_P{l}" for k in ("fpn", "class", "box") for l in range(3, 8)])

    def check_dir(self, model, ref_dir, image_size):
        with tempfile.TemporaryDirectory() as out:
            run("--model", model, "--raw-input", os.path.join(ref_dir, "input.f32"), "--dump", out,
                "--image-size", image_size)
            for name in self.NAMES:
                ref = os.path.join(ref_dir, name + ".f32")
                if not os.path.exists(ref):  # alt dirs omit class logits
                    continue
                e = rel_err(floats(os.path.join(out, name + ".f32")), floats(ref))
                self.assertLessEqual(e, 1e-3, f"{ref_dir} {name}: {e}")
            dets = json.load(open(os.path.join(out, "detections.json")))
            ref = json.load(open(os.path.join(ref_dir, "detections.json")))
            for frame in ("detections_network", "detections_image"):
                # the same set, in order up to near-ties (tests/integration/detmatch.py)
                self.assertEqual(mismatches(dets[frame], ref[frame]), [], f"{ref_dir} {frame}")
            n = len(floats(os.path.join(out, "topk_logit.f32")))
            self.assertEqual(n, 5000)

    def test_tiny(self):
        self.check_dir(TINY, FIX, "%dx%d" % tuple(json.load(open(os.path.join(FIX, "detections.json")))["orig_size_wh"]))

    def test_d0(self):
        s = shared_dir()
        if s:
            d = os.path.join(s, "d0")
            self.check_dir(os.path.join(d, "weights.safetensors"), d, "640x480")

    def test_wrong_input_size(self):
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            f.write(b"\0" * 100)
            f.flush()
            p = run("--model", TINY, "--raw-input", f.name, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("1x3x128x128", p.stderr)


class Images(unittest.TestCase):
    def test_reference_image_end_to_end(self):
        s = shared_dir()
        if not s:
            return
        with tempfile.TemporaryDirectory() as out:
            drawn = os.path.join(out, "out.jpg")
            p = run(os.path.join(s, "images", "coco_000000000257.jpg"), "--model",
                    os.path.join(s, "d0", "weights.safetensors"), "--draw", drawn)
            j = json.loads(p.stdout)
            ref = json.load(open(os.path.join(s, "d0", "detections.json")))["detections_image"]
            self.assertEqual((j["width"], j["height"]), (640, 480))
            # the same set as the reference, in order up to near-ties (tests/integration/detmatch.py);
            # and as the float64 evaluation, within 2x PyTorch fp32's own score distance
            self.assertEqual(mismatches(j["detections"], ref), [])
            ref64 = json.load(open(os.path.join(s, "d0", "detections64.json")))["detections_image"]
            torch = max(abs(a["score"] - b["score"]) for a, b in zip(ref, ref64))
            self.assertEqual(mismatches(j["detections"], ref64, score_tol=2 * torch), [])
            # labels come from the COCO map: class 1 is person, 90 toothbrush
            self.assertTrue(all(d["label"] for d in j["detections"]))
            desk = [d for d in j["detections"] if d["class_id"] == 69]
            self.assertTrue(desk and all(d["label"] == "desk" for d in desk))
            with open(drawn, "rb") as f:
                head = f.read(3)
            self.assertEqual(head, b"\xff\xd8\xff")

    def test_filters(self):
        img = os.path.join(FIX, "input.jpg")
        full = json.loads(run(img, "--model", TINY).stdout)["detections"]
        self.assertEqual(len(full), 100)
        t = full[10]["score"]
        some = json.loads(run(img, "--model", TINY, "-t", repr(t)).stdout)["detections"]
        self.assertEqual(some, [d for d in full if d["score"] >= t])
        capped = json.loads(run(img, "--model", TINY, "-n", "5").stdout)["detections"]
        self.assertEqual(capped, full[:5])
        label = full[0]["label"]
        only = json.loads(run(img, "--model", TINY, "-c", label).stdout)["detections"]
        self.assertTrue(only and all(d["label"] == label for d in only))
        soft = json.loads(run(img, "--model", TINY, "--nms", "soft").stdout)["detections"]
        self.assertTrue(soft)
        self.assertEqual(soft[0]["score"], full[0]["score"])  # the first pick is never decayed

    def test_bad_files_and_exit_codes(self):
        with tempfile.TemporaryDirectory() as d:
            empty = os.path.join(d, "empty.jpg")
            open(empty, "wb").close()
            png = os.path.join(d, "x.png")
            with open(png, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
            trunc = os.path.join(d, "trunc.jpg")
            with open(os.path.join(FIX, "input.jpg"), "rb") as f:
                data = f.read()
            with open(trunc, "wb") as f:
                f.write(data[: len(data) // 2])
            good = os.path.join(FIX, "input.jpg")
            p = run(empty, png, trunc, "/nonexistent.jpg", d, good, "--model", TINY, check=False)
            self.assertEqual(p.returncode, 1)
            lines = p.stderr.strip().split("\n")
            self.assertEqual(len(lines), 5, p.stderr)
            for path, line in zip([empty, png, trunc, "/nonexistent.jpg", d], lines):
                self.assertTrue(line.startswith(f"effdet-detect: {path}: "), line)
            self.assertIn("PNG", lines[1])
            self.assertEqual(len(p.stdout.strip().split("\n")), 1)  # the good image still ran
        for args, msg in [(["-t", "2"], "--threshold"), (["-n", "0"], "--max-detections"),
                          (["--nms", "x"], "--nms"), (["-j", "0"], "--threads")]:
            p = run(*args, os.path.join(FIX, "input.jpg"), "--model", TINY, check=False)
            self.assertEqual(p.returncode, 2)
            self.assertIn(msg, p.stderr)
        p = run(os.path.join(FIX, "input.jpg"), "--model", "/nonexistent.safetensors", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("/nonexistent.safetensors", p.stderr)
        p = run(os.path.join(FIX, "input.jpg"), "--model", TINY, "-c", "unicorn", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unicorn", p.stderr)


class JsonFormat(unittest.TestCase):
    """Output as the daemon writes it: paths as given (json-c escapes '/' by default) and
    milliseconds to 3 decimals (not a double's 15+ digits)."""

    def test_paths_and_timings(self):
        img = os.path.join(FIX, "input.jpg")
        for pretty in ([], ["--pretty"]):
            p = run(img, "--model", TINY, "-n", "1", *pretty)
            self.assertNotIn("\\/", p.stdout)
            self.assertIn('"%s"' % img, p.stdout)
            self.assertEqual(json.loads(p.stdout)["image"], img)
            raw = re.findall(r'"(decode|preprocess|forward|postprocess)": ?([^,}\s]+)', p.stdout)
            self.assertEqual(sorted(k for k, _ in raw), ["decode", "forward", "postprocess", "preprocess"])
            for key, text in raw:
                self.assertRegex(text, r"^[0-9]+\.[0-9]{3}$", key)

    def test_describe_tensors_is_json(self):
        out = json.loads(run("--describe", "tf_efficientdet_d0", "--tensors").stdout)
        self.assertEqual(out["tensors"][0], {"name": "backbone.conv_stem.weight", "shape": [32, 3, 3, 3]})
        names = [t["name"] for t in out["tensors"]]
        self.assertEqual(len(names), len(set(names)))
        p = run("--tensors", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--tensors needs --describe", p.stderr)
        listed = json.loads(run("--list-models").stdout)
        self.assertEqual({m["name"]: m["params"] for m in listed if m["name"] in PARAMS}, PARAMS)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
