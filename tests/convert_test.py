"""Tests for tools/effdet-convert and tools/fetch-model.sh (Python standard library only).

Run from the repository root via tests/convert.test.sh. The expected outputs are the
reference fixtures' weights.safetensors; the hand-made checkpoints below are written by a
small torch.save replica in this file (legacy and zip layouts as torch/serialization.py
writes them), not by the converter.
"""

import collections
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import types
import unittest
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERT = os.path.join(ROOT, "tools", "effdet-convert")
FETCH = os.path.join(ROOT, "tools", "fetch-model.sh")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.environ.get("EFFDET_SHARED") or os.path.join(ROOT, "..", "shared", "reference")

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.dont_write_bytecode = True
import convert_effdet  # noqa: E402


# ---------------------------------------------------------------- safetensors reading (independent of the tool)


def read_safetensors(path):
    """(header dict without __metadata__, metadata dict, {name: bytes})."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n], object_pairs_hook=collections.OrderedDict)
    meta = header.pop("__metadata__", {})
    data = blob[8 + n :]
    tensors = collections.OrderedDict(
        (k, data[v["data_offsets"][0] : v["data_offsets"][1]]) for k, v in header.items()
    )
    return header, meta, tensors


def fixture_config(path):
    return json.loads(read_safetensors(path)[1]["config"])


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- a tiny torch.save replica


def _fake_torch_modules():
    """Module objects named like torch's, so pickle records the same GLOBAL opcodes a real
    checkpoint carries (torch FloatStorage, torch._utils _rebuild_tensor_v2, ...)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "HalfStorage", "LongStorage", "DoubleStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    return torch, utils


class FakeStorage:
    def __init__(self, kind, key, values):
        self.kind, self.key, self.values = kind, key, values  # kind: "FloatStorage", ...

    def raw(self):
        code = {"FloatStorage": "f", "HalfStorage": "e", "LongStorage": "q", "DoubleStorage": "d"}[self.kind]
        return struct.pack("<%d%s" % (len(self.values), code), *self.values)


_REBUILD = []  # the fake torch._utils._rebuild_tensor_v2 while torch_save runs


class FakeTensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        return (_REBUILD[0], (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False,
                                collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def __init__(self, f, torch, legacy):
        super().__init__(f, protocol=2)
        self.torch, self.legacy = torch, legacy

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            cls = getattr(self.torch, obj.kind)
            pid = ("storage", cls, obj.key, "cpu", len(obj.values))
            return pid + (None,) if self.legacy else pid
        return None


def torch_save(obj, path, legacy, storages):
    """Write obj the way torch.save does (protocol 2 pickles, storages by persistent id)."""
    torch, utils = _fake_torch_modules()
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    _REBUILD[:] = [utils._rebuild_tensor_v2]
    try:
        buf = io.BytesIO()
        _Pickler(buf, torch, legacy).dump(obj)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    if legacy:
        with open(path, "wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001,
                           {"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}):
                pickle.dump(header, f, protocol=2)
            f.write(buf.getvalue())
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                f.write(struct.pack("<q", len(s.values)))
                f.write(s.raw())
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            z.writestr("archive/byteorder", "little")
            for s in storages:
                z.writestr("archive/data/%s" % s.key, s.raw())
            z.writestr("archive/version", "3\n")


# ---------------------------------------------------------------- tests


class ConverterFixtures(unittest.TestCase):
    """Converting the fixture checkpoints must reproduce the fixture safetensors."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="effdet_convert_")
        self.tiny_st = os.path.join(FIXTURES, "weights.safetensors")
        self.tiny_cfg = os.path.join(self.tmp, "tiny.json")
        with open(self.tiny_cfg, "w") as f:
            f.write(read_safetensors(self.tiny_st)[1]["config"])

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def assert_same_safetensors(self, got_path, want_path):
        got_h, got_meta, got_t = read_safetensors(got_path)
        want_h, want_meta, want_t = read_safetensors(want_path)
        self.assertEqual(list(got_t), list(want_t), "tensor names and order")
        for name in want_t:
            self.assertEqual(got_h[name]["dtype"], want_h[name]["dtype"], name)
            self.assertEqual(got_h[name]["shape"], want_h[name]["shape"], name)
            self.assertEqual(got_t[name], want_t[name], "bytes of " + name)
        self.assertEqual(json.loads(got_meta["config"]), json.loads(want_meta["config"]))

    def convert_tiny(self, source):
        out = os.path.join(self.tmp, "out.safetensors")
        r = run([CONVERT, os.path.join(FIXTURES, source), out, "--config", self.tiny_cfg])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_same_safetensors(out, self.tiny_st)
        with open(out, "rb") as a, open(self.tiny_st, "rb") as b:
            self.assertEqual(a.read(), b.read(), "whole file byte-identical")

    def test_tiny_zip(self):
        self.convert_tiny("weights.pth")

    def test_tiny_legacy(self):
        self.convert_tiny("weights_legacy.pth")

    def test_d0_legacy_named(self):
        src = os.path.join(SHARED, "d0", "weights_legacy.pth")
        if not os.path.exists(src):
            self.skipTest("shared d0 fixtures not present")
        out = os.path.join(self.tmp, "d0.safetensors")
        r = run([CONVERT, src, out, "--name", "tf_efficientdet_d0"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_same_safetensors(out, os.path.join(SHARED, "d0", "weights.safetensors"))

    def test_labels_plain_and_with_ids(self):
        plain = os.path.join(self.tmp, "plain.txt")
        with open(plain, "w") as f:
            f.write("# four classes\ncar\ntraffic light\n\nbus\nperson\n")
        out = os.path.join(self.tmp, "l.safetensors")
        r = run([CONVERT, os.path.join(FIXTURES, "weights.pth"), out, "--config", self.tiny_cfg, "--labels", plain])
        self.assertEqual(r.returncode, 0, r.stderr)
        cfg = json.loads(read_safetensors(out)[1]["config"])
        self.assertEqual(cfg["labels"], ["car", "traffic light", "bus", "person"])
        ids = os.path.join(self.tmp, "ids.txt")
        with open(ids, "w") as f:
            f.write("3 bus stop\n1 car\n")
        r = run([CONVERT, os.path.join(FIXTURES, "weights.pth"), out, "--config", self.tiny_cfg, "--labels", ids])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(read_safetensors(out)[1]["config"])["labels"],
                         ["car", "class2", "bus stop", "class4"])

    def test_label_count_mismatch(self):
        bad = os.path.join(self.tmp, "bad.txt")
        with open(bad, "w") as f:
            f.write("car\nbus\n")
        r = run([CONVERT, os.path.join(FIXTURES, "weights.pth"), os.path.join(self.tmp, "x.safetensors"),
                 "--config", self.tiny_cfg, "--labels", bad])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("2 labels for a model with 4 classes", r.stderr)

    def test_num_classes_checked_against_the_head(self):
        out = os.path.join(self.tmp, "x.safetensors")
        r = run([CONVERT, os.path.join(FIXTURES, "weights.pth"), out, "--config", self.tiny_cfg,
                 "--num-classes", "90"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("9 anchors x 4 classes", r.stderr)
        self.assertFalse(os.path.exists(out))
        # a named model defaults to 90 classes; the tiny head has 4
        r = run([CONVERT, os.path.join(FIXTURES, "weights.pth"), out, "--name", "tf_efficientdet_d0"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--num-classes 4", r.stderr)


class ConverterRefuses(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="effdet_convert_")
        self.out = os.path.join(self.tmp, "out.safetensors")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def assert_refused(self, args, needle):
        r = run([CONVERT] + args)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn(needle, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, "one-line error: " + r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertFalse(os.path.exists(self.out), "no output on failure")
        self.assertEqual([n for n in os.listdir(self.tmp) if n.endswith(".tmp")], [], "temp file left behind")

    def evil_pickle(self, marker):
        """A protocol-2 pickle of {name: os.system('touch marker')}, opcode by opcode
        (pickle.dumps would spell the global posix.system)."""

        def unicode(s):
            b = s.encode()
            return b"X" + struct.pack("<I", len(b)) + b

        return (b"\x80\x02}" + unicode("backbone.conv_stem.weight") + b"cos\nsystem\n" +
                unicode("touch %s" % marker) + b"\x85Rs.")

    def test_refuses_os_system_in_zip(self):
        marker = os.path.join(self.tmp, "pwned")
        path = os.path.join(self.tmp, "evil.pth")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", self.evil_pickle(marker))
            z.writestr("archive/version", "3\n")
        self.assert_refused([path, self.out], "refusing to unpickle global os.system")
        self.assertFalse(os.path.exists(marker))

    def test_refuses_os_system_in_legacy(self):
        marker = os.path.join(self.tmp, "pwned")
        path = os.path.join(self.tmp, "evil.pth")
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump({"little_endian": True}, f, protocol=2)
            f.write(self.evil_pickle(marker))
        self.assert_refused([path, self.out], "refusing to unpickle global os.system")
        self.assertFalse(os.path.exists(marker))

    def test_refuses_other_globals(self):
        path = os.path.join(self.tmp, "g.pth")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps({"x": collections.Counter()}, protocol=2))
        self.assert_refused([path, self.out], "refusing to unpickle global collections.Counter")

    def test_truncated_zip(self):
        with open(os.path.join(FIXTURES, "weights.pth"), "rb") as f:
            blob = f.read()
        for cut in (len(blob) // 2, len(blob) - 30):
            path = os.path.join(self.tmp, "trunc%d.pth" % cut)
            with open(path, "wb") as f:
                f.write(blob[:cut])
            self.assert_refused([path, self.out], "zip archive")

    def test_truncated_legacy(self):
        with open(os.path.join(FIXTURES, "weights_legacy.pth"), "rb") as f:
            blob = f.read()
        for cut in (5, 40, 30000, len(blob) - 1):
            path = os.path.join(self.tmp, "trunc%d.pth" % cut)
            with open(path, "wb") as f:
                f.write(blob[:cut])
            self.assert_refused([path, self.out], path)

    def test_unknown_name(self):
        self.assert_refused([os.path.join(FIXTURES, "weights.pth"), self.out, "--name", "tf_efficientdet_d9"],
                            "unknown model 'tf_efficientdet_d9'")

    def test_missing_file(self):
        missing = os.path.join(self.tmp, "nope.pth")
        self.assert_refused([missing, self.out], missing + ": no such file")

    def test_not_a_checkpoint(self):
        path = os.path.join(self.tmp, "text.pth")
        with open(path, "w") as f:
            f.write("hello")
        self.assert_refused([path, self.out], "not a PyTorch checkpoint")


class ConverterStructure(unittest.TestCase):
    """Hand-made checkpoints: wrappers, prefixes, strides, dtypes, dropped counters."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="effdet_convert_")
        self.cfg = os.path.join(self.tmp, "cfg.json")
        with open(self.cfg, "w") as f:
            json.dump({"name": "toy", "num_classes": 2}, f)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def build(self, legacy):
        floats = FakeStorage("FloatStorage", "0", [float(i) for i in range(12)])
        halves = FakeStorage("HalfStorage", "1", [0.5, -2.0, 6.103515625e-05, 5.960464477539063e-08])
        longs = FakeStorage("LongStorage", "2", [7])
        doubles = FakeStorage("DoubleStorage", "3", [0.1, 1e300, -3.5])
        state = collections.OrderedDict()
        # a 3x4 matrix transposed without .contiguous(): shape (4, 3), stride (1, 4)
        state["module.model.a.weight"] = FakeTensor(floats, 0, (4, 3), (1, 4))
        state["module.model.a.bias"] = FakeTensor(floats, 5, (3,), (1,))  # storage offset
        state["module.model.bn.num_batches_tracked"] = FakeTensor(longs, 0, (), ())
        state["module.model.h"] = FakeTensor(halves, 0, (2, 2), (2, 1))
        state["module.model.d"] = FakeTensor(doubles, 0, (3,), (1,))
        wrapped = {"epoch": 3, "state_dict": {"ignored": FakeTensor(floats, 0, (1,), (1,))},
                   "state_dict_ema": state}
        path = os.path.join(self.tmp, "toy_legacy.pth" if legacy else "toy_zip.pth")
        torch_save(wrapped, path, legacy, [floats, halves, longs, doubles])
        return path

    def check(self, legacy):
        src = self.build(legacy)
        out = os.path.join(self.tmp, "toy.safetensors")
        # by default the plain weights, as effdet's create_model(checkpoint_ema=False)
        r = run([CONVERT, src, out, "--config", self.cfg])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(list(read_safetensors(out)[0]), ["ignored"])
        r = run([CONVERT, src, out, "--config", self.cfg, "--ema"])
        self.assertEqual(r.returncode, 0, r.stderr)
        header, meta, tensors = read_safetensors(out)
        self.assertEqual(list(header), ["a.weight", "a.bias", "h", "d"])
        self.assertEqual(header["a.weight"]["shape"], [4, 3])
        want = [float(r * 4 + c) for c in range(4) for r in range(3)]  # element (i, j) = storage[i + 4 j]
        self.assertEqual(list(struct.unpack("<12f", tensors["a.weight"])), want)
        self.assertEqual(list(struct.unpack("<3f", tensors["a.bias"])), [5.0, 6.0, 7.0])
        self.assertEqual(header["h"]["dtype"], "F16")
        self.assertEqual(list(struct.unpack("<4e", tensors["h"])), [0.5, -2.0, 6.103515625e-05, 5.960464477539063e-08])
        self.assertEqual(header["d"]["dtype"], "F32")
        self.assertEqual(list(struct.unpack("<3f", tensors["d"])),
                         [struct.unpack("<f", struct.pack("<f", 0.1))[0], float("inf"), -3.5])
        self.assertEqual(json.loads(meta["config"]), {"name": "toy", "num_classes": 2})
        with open(out, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        self.assertEqual(n % 8, 0)

    def test_legacy_structure(self):
        self.check(legacy=True)

    def test_zip_structure(self):
        self.check(legacy=False)

    def test_named_configs(self):
        d7 = convert_effdet.named_config("tf_efficientdet_d7")
        self.assertEqual((d7["backbone_name"], d7["image_size"], d7["fpn_channels"], d7["fpn_cell_repeats"],
                          d7["box_class_repeats"], d7["anchor_scale"], d7["fpn_name"]),
                         ("tf_efficientnet_b6", [1536, 1536], 384, 8, 5, 5.0, "bifpn_sum"))
        pt = convert_effdet.named_config("efficientdet_d1")
        self.assertEqual((pt["backbone_name"], pt["padding"], pt["pad_type"], pt["redundant_bias"],
                          pt["backbone_bn_eps"], pt["fpn_bn_eps"]),
                         ("efficientnet_b1", "symmetric", "", False, 1e-05, 0.001))
        d0_path = os.path.join(SHARED, "d0", "weights.safetensors")
        if os.path.exists(d0_path):
            self.assertEqual(json.dumps(convert_effdet.named_config("tf_efficientdet_d0")),
                             read_safetensors(d0_path)[1]["config"])


class FetchModel(unittest.TestCase):
    """Everything `make model` does except the download (this machine has no internet)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="effdet_fetch_")
        self.cfg = os.path.join(self.tmp, "tiny.json")
        with open(self.cfg, "w") as f:
            f.write(read_safetensors(os.path.join(FIXTURES, "weights.safetensors"))[1]["config"])
        src = os.path.join(FIXTURES, "weights_legacy.pth")
        with open(src, "rb") as f:
            self.sha8 = hashlib.sha256(f.read()).hexdigest()[:8]
        self.good = os.path.join(self.tmp, "tiny_1-%s.pth" % self.sha8)
        shutil.copy(src, self.good)
        wrong = "00000000" if self.sha8 != "00000000" else "11111111"
        self.bad = os.path.join(self.tmp, "tiny_1-%s.pth" % wrong)
        shutil.copy(src, self.bad)
        self.models = os.path.join(self.tmp, "models")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def fetch(self, name, checkpoint, via_env=False):
        args = [FETCH, name, self.models]
        env = dict(os.environ)
        if via_env:
            env["FETCH_FROM"] = checkpoint
        else:
            args += ["--from", checkpoint]
        return run(args + ["--", "--config", self.cfg], env=env)

    def test_hash_prefix_mismatch_refused(self):
        r = self.fetch("tiny", self.bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SHA-256 starts with %s" % self.sha8, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.models, "tiny.safetensors")))
        self.assertEqual(os.listdir(self.models), [], "nothing left in the output dir")

    def test_name_without_hash_refused(self):
        plain = os.path.join(self.tmp, "weights.pth")
        shutil.copy(self.good, plain)
        r = self.fetch("tiny", plain)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no -<8 hex digits>.pth hash", r.stderr)

    def test_correct_prefix_converted_into_place(self):
        r = self.fetch("tiny", self.good, via_env=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = os.path.join(self.models, "tiny.safetensors")
        self.assertEqual(os.listdir(self.models), ["tiny.safetensors"], "only the model, no temp files")
        with open(out, "rb") as a, open(os.path.join(FIXTURES, "weights.safetensors"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_existing_output_skips_everything(self):
        os.makedirs(self.models)
        out = os.path.join(self.models, "tiny.safetensors")
        with open(out, "w") as f:
            f.write("sentinel")
        # even a checkpoint with a bad hash is not looked at
        r = self.fetch("tiny", self.bad)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("already exists", r.stdout)
        with open(out) as f:
            self.assertEqual(f.read(), "sentinel")

    def test_make_model_wiring(self):
        os.makedirs(self.models)
        with open(os.path.join(self.models, "tf_efficientdet_d3.safetensors"), "w") as f:
            f.write("sentinel")
        r = run(["make", "--no-print-directory", "-s", "model", "MODEL_NAME=tf_efficientdet_d3",
                 "MODELS_DIR=" + self.models], cwd=ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tf_efficientdet_d3.safetensors already exists", r.stdout)

    def test_unknown_model_without_file(self):
        r = run([FETCH, "tf_efficientdet_d9", self.models])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unknown model 'tf_efficientdet_d9'", r.stderr)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
