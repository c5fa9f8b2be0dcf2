"""Tests for tools/effdet-convert and tools/fetch-model.sh (Python standard library only).

Run from the repository root: python3 -B tests/integration/test_convert.py. The expected outputs are the
reference fixtures' weights.safetensors; the hand-made checkpoints below are written by a
small torch.save replica in this file (legacy and zip layouts as torch/serialization.py
writes them), not by the converter.
"""

import collections
import hashlib
import io
import json
import math
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERT = os.path.join(ROOT, "tools", "effdet-convert")
FETCH = os.path.join(ROOT, "tools", "fetch-model.sh")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.environ.get("EFFDET_SHARED") or os.path.join(ROOT, "..", "shared", "reference")

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
# The converter checks tensors against this build's engine (the sanitizer build's under
# `make SANITIZE=... check`); subprocesses inherit it.
ENGINE = os.path.join(ROOT, os.environ.get("BUILD", "build"), "effdet-detect")
os.environ.setdefault("EFFDET_DETECT", ENGINE)
import convert_effdet  # noqa: E402
import test_named_models as named_models  # noqa: E402  (independent state-dict derivation for named models)


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


class ZeroStorage(FakeStorage):
    """A storage of numel zeros without a Python list of them (synthesised big models)."""

    def __init__(self, kind, key, numel):
        super().__init__(kind, key, None)
        self.numel = numel

    def raw(self):
        return bytes(self.numel * {"FloatStorage": 4, "HalfStorage": 2}[self.kind])


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
            numel = obj.numel if isinstance(obj, ZeroStorage) else len(obj.values)
            pid = ("storage", cls, obj.key, "cpu", numel)
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
                raw = s.raw()
                f.write(struct.pack("<q", len(raw) // {"FloatStorage": 4, "HalfStorage": 2, "LongStorage": 8,
                                                        "DoubleStorage": 8}[s.kind]))
                f.write(raw)
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

    def write(self, src, out, ema):
        """The reading and writing half of the converter (the toy state dict is no
        architecture, so the CLI refuses it: see test_cli_refuses_the_toy)."""
        tensors = convert_effdet.extract_state_dict(convert_effdet.load_checkpoint(src), src, use_ema=ema)
        convert_effdet.write_safetensors(out, tensors, convert_effdet.load_custom_config(self.cfg))

    def check(self, legacy):
        src = self.build(legacy)
        out = os.path.join(self.tmp, "toy.safetensors")
        # by default the plain weights, as effdet's create_model(checkpoint_ema=False)
        self.write(src, out, ema=False)
        self.assertEqual(list(read_safetensors(out)[0]), ["ignored"])
        self.write(src, out, ema=True)
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

    def test_cli_refuses_the_toy(self):
        src, out = self.build(legacy=False), os.path.join(self.tmp, "toy.safetensors")
        r = run([CONVERT, src, out, "--config", self.cfg])
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.cfg + ": metadata field 'backbone_name': missing", r.stderr)
        self.assertFalse(os.path.exists(out))
        r = run([CONVERT, src, out])
        self.assertEqual(r.returncode, 1)
        self.assertIn("no effdet tensors", r.stderr)
        self.assertIn("--config", r.stderr)

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


def synthesised_checkpoint(path, name, legacy=True, num_classes=90, kind="HalfStorage"):
    """A torch.save file with a named model's tensor names and shapes (zeros), derived by
    tests/named_models.py independently of the engine."""
    b, _image, fpn, cells, head, fusion, tf, _params = named_models.MODELS[name]
    shapes = named_models.state_dict_shapes(b, fpn, cells, head, fusion, tf, num_classes)
    state, storages = collections.OrderedDict(), []
    for i, (k, shape) in enumerate(shapes.items()):
        st = ZeroStorage(kind, str(i), max(1, math.prod(shape)))
        storages.append(st)
        state[k] = FakeTensor(st, 0, tuple(shape), convert_effdet.c_order_strides(tuple(shape)))
    torch_save(state, path, legacy, storages)
    return shapes


class ConverterInfers(unittest.TestCase):
    """Without --name/--config the converter picks the one named model the checkpoint is,
    by its release file name or its tensors, and refuses to guess otherwise."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="effdet_convert_")
        self.out = os.path.join(self.tmp, "out.safetensors")
        self.d0 = os.path.join(SHARED, "d0", "weights_legacy.pth")
        self.engine = convert_effdet.Engine(ENGINE)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def need_shared(self):
        if not os.path.exists(self.d0):
            self.skipTest("shared fixtures not present")

    def renamed(self, src, name):
        path = os.path.join(self.tmp, name)
        os.symlink(os.path.abspath(src), path)
        return path

    def refused(self, args, *needles):
        r = run([CONVERT] + args)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, "one-line error: " + r.stderr)
        for n in needles:
            self.assertIn(n, r.stderr)
        self.assertFalse(os.path.exists(self.out), "no output on failure")
        return r.stderr

    def test_d0_from_tensors(self):
        self.need_shared()
        r = run([CONVERT, self.d0, self.out])  # weights_legacy.pth: no recognisable name
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tf_efficientdet_d0 inferred from the tensors", r.stdout)
        with open(self.out, "rb") as a, open(os.path.join(SHARED, "d0", "weights.safetensors"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_d0_from_release_file_name(self):
        self.need_shared()
        src = self.renamed(self.d0, convert_effdet.RELEASE_FILES["tf_efficientdet_d0"])
        r = run([CONVERT, src, self.out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tf_efficientdet_d0 from the file name", r.stdout)

    def test_file_name_contradicted_by_tensors(self):
        self.need_shared()
        src = self.renamed(self.d0, convert_effdet.RELEASE_FILES["tf_efficientdet_d1"])
        self.refused([src, self.out], "the file name says tf_efficientdet_d1, but tensor '",
                     "the tensors fit tf_efficientdet_d0 (pass --name tf_efficientdet_d0)")

    def test_wrong_name_names_the_tensor_and_the_fit(self):
        self.need_shared()
        err = self.refused([self.d0, self.out, "--name", "tf_efficientdet_d3"],
                           "but tf_efficientdet_d3 expects", "pass --name tf_efficientdet_d0")
        self.assertRegex(err, r"tensor '[a-z_.0-9]+' has shape \[")
        # the PyTorch variant has no biases in front of BN: the first extra one is named
        self.refused([self.d0, self.out, "--name", "efficientdet_d0"],
                     "tensor 'fpn.resample.3.conv.conv.bias' is not part of efficientdet_d0",
                     "pass --name tf_efficientdet_d0")

    def test_custom_fixtures_need_their_config(self):
        cases = [(os.path.join(FIXTURES, "weights.pth"), "4 classes"),
                 (os.path.join(FIXTURES, "weights_legacy.pth"), "4 classes"),
                 (os.path.join(SHARED, "shapes", "weights_legacy.pth"), "3 classes")]
        for src, classes in cases:
            if not os.path.exists(src):
                continue
            self.refused([src, self.out], "stem 8 channels", "fpn 16 channels x 2 cells", "head 2 repeats",
                         classes, "TF-style", "no named model fits", "--config CONFIG.json")

    def test_shapes_with_the_config_of_its_metadata(self):
        src = os.path.join(SHARED, "shapes", "weights_legacy.pth")
        if not os.path.exists(src):
            self.skipTest("shared fixtures not present")
        ref = os.path.join(SHARED, "shapes", "weights.safetensors")
        cfg = os.path.join(self.tmp, "shapes.json")
        with open(cfg, "w") as f:
            f.write(read_safetensors(ref)[1]["config"])
        r = run([CONVERT, src, self.out, "--config", cfg])
        self.assertEqual(r.returncode, 0, r.stderr)
        ConverterFixtures.assert_same_safetensors(self, self.out, ref)

    def test_config_that_does_not_fit(self):
        cfg = os.path.join(self.tmp, "wide.json")
        tiny = json.loads(read_safetensors(os.path.join(FIXTURES, "weights.safetensors"))[1]["config"])
        tiny["fpn_channels"] = 24
        with open(cfg, "w") as f:
            json.dump(tiny, f)
        self.refused([os.path.join(FIXTURES, "weights.pth"), self.out, "--config", cfg],
                     "has shape [16, 80, 1, 1] but the config %s expects [24, 80, 1, 1]" % cfg,
                     "no named model fits", "fix the config")

    def test_synthesised_d1_legacy_inferred_and_loadable(self):
        """The issue's case: a d1 checkpoint without --name used to become a 'd0' file."""
        src = os.path.join(self.tmp, "renamed.pth")
        synthesised_checkpoint(src, "tf_efficientdet_d1")
        r = run([CONVERT, src, self.out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tf_efficientdet_d1 inferred from the tensors", r.stdout)
        # the engine loads it: an empty raw input is refused only after model load
        empty = os.path.join(self.tmp, "empty.f32")
        open(empty, "wb").close()
        p = run([ENGINE, "--model", self.out, "--raw-input", empty])
        self.assertIn("0 bytes, but tf_efficientdet_d1 needs 1x3x640x640 float32", p.stderr)

    def test_synthesised_zip_d3_with_other_class_count(self):
        src = os.path.join(self.tmp, "finetuned.pth")
        synthesised_checkpoint(src, "tf_efficientdet_d3", legacy=False, num_classes=20)
        r = run([CONVERT, src, self.out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tf_efficientdet_d3 inferred from the tensors", r.stdout)
        cfg = json.loads(read_safetensors(self.out)[1]["config"])
        self.assertEqual((cfg["name"], cfg["num_classes"]), ("tf_efficientdet_d3", 20))
        r = run([CONVERT, src, self.out, "--num-classes", "80"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("9 anchors x 20 classes, but the config says num_classes 80 (use --num-classes 20)", r.stderr)
        # with --name the class count is the user's to state (default 90)
        os.unlink(self.out)
        self.refused([src, self.out, "--name", "tf_efficientdet_d3"], "--num-classes 20")

    def shapes_of(self, name, num_classes=90):
        b, _image, fpn, cells, head, fusion, tf, _params = named_models.MODELS[name]
        return named_models.state_dict_shapes(b, fpn, cells, head, fusion, tf, num_classes)

    def test_d6_and_d7_need_the_file_name_or_name(self):
        shapes = self.shapes_of("tf_efficientdet_d6")
        with self.assertRaises(convert_effdet.ConvertError) as cm:
            convert_effdet.infer_model(self.engine, "/tmp/checkpoint.pth", shapes)
        msg = str(cm.exception)
        self.assertIn("fit tf_efficientdet_d6 and tf_efficientdet_d7 alike", msg)
        self.assertIn("pass --name tf_efficientdet_d6 or --name tf_efficientdet_d7", msg)
        for name in ("tf_efficientdet_d6", "tf_efficientdet_d7"):
            path = "/tmp/" + convert_effdet.RELEASE_FILES[name]
            self.assertEqual(convert_effdet.infer_model(self.engine, path, shapes), (name, "file name"))

    def test_pytorch_variant_from_tensors(self):
        shapes = self.shapes_of("efficientdet_d0")
        self.assertEqual(convert_effdet.infer_model(self.engine, "x.pth", shapes), ("efficientdet_d0", "tensors"))
        self.assertIn("PyTorch-style", convert_effdet.summarize(shapes))

    def test_summary_says_what_the_tensors_say(self):
        s = convert_effdet.summarize(self.shapes_of("tf_efficientdet_d1"))
        for part in ("stem 32 channels", "blocks per stage 2-3-3-4-4-5-2", "widths 16-24-40-80-112-192-320",
                     "fpn 88 channels x 4 cells (fast-attention fusion)", "head 3 repeats", "90 classes",
                     "TF-style"):
            self.assertIn(part, s)
        self.assertIn("(sum fusion)", convert_effdet.summarize(self.shapes_of("tf_efficientdet_d6")))


class ConverterEngine(unittest.TestCase):
    """The converter's knowledge of architectures is the engine's."""

    def test_named_configs_read_by_the_engine_as_its_named_models(self):
        """The config the converter writes for a name is, to the engine, that named model:
        same description, same tensors (the converter matches checkpoints against the
        engine's named lists, then checks the file against the config it writes)."""
        named = json.loads(run([ENGINE, "--list-models", "--tensors", "--num-classes", "20"]).stdout)
        self.assertEqual([m["name"] for m in named], list(convert_effdet.NAMED_MODELS))
        self.assertEqual(sorted(convert_effdet.RELEASE_FILES), sorted(convert_effdet.NAMED_MODELS))
        for want in named:
            p = subprocess.run([ENGINE, "--describe-config", "-", "--tensors"], capture_output=True, text=True,
                               check=True, input=json.dumps(convert_effdet.named_config(want["name"], 20)))
            self.assertEqual(json.loads(p.stdout), want, want["name"])

    def test_list(self):
        r = run([CONVERT, "--list"])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        for name, release in convert_effdet.RELEASE_FILES.items():
            self.assertTrue(any(ln.split()[0] == name and ln.split()[-1] == release for ln in lines), name)
        r = run([CONVERT, "--release-url", "tf_efficientdet_d3"])
        self.assertEqual(r.stdout.strip(), convert_effdet.RELEASE_URL + "/tf_efficientdet_d3_47-0b525f35.pth")
        r = run([CONVERT, "--release-url", "tf_efficientdet_d9"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("no released checkpoint for 'tf_efficientdet_d9'", r.stderr)

    def test_engine_not_built(self):
        with tempfile.TemporaryDirectory() as d:
            for f in ("effdet-convert", "convert_effdet.py"):
                shutil.copy(os.path.join(ROOT, "tools", f), d)
            env = {k: v for k, v in os.environ.items() if k != "EFFDET_DETECT"}
            r = run([os.path.join(d, "effdet-convert"), os.path.join(FIXTURES, "weights.pth"),
                     os.path.join(d, "out.safetensors")], env=env)
            self.assertEqual(r.returncode, 1)
            self.assertIn("effdet-detect is not built", r.stderr)
            self.assertIn("run make first", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)
            env["EFFDET_DETECT"] = os.path.join(d, "nope")
            r = run([os.path.join(d, "effdet-convert"), "--list"], env=env)
            self.assertIn("EFFDET_DETECT=%s is not an executable file" % env["EFFDET_DETECT"], r.stderr)


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
