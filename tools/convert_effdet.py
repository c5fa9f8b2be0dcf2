"""Convert effdet PyTorch checkpoints (.pth) to safetensors, with the Python standard library only.

Two torch.save formats exist and the released effdet weights use the older one:
  * zip (torch >= 1.6 default): <prefix>/data.pkl plus one <prefix>/data/<key> entry per storage;
  * legacy: five pickles in a row (magic number, protocol version, sys_info, the object,
    the list of storage keys) followed by each storage's bytes, each preceded by its
    element count as a little-endian int64.
A pickle can call any importable function, so the unpickler below resolves only the handful
of globals a state dict needs and refuses everything else.

The architecture is given (--name, --config) or inferred (release file name, else the
tensors), and every tensor is checked against the engine's own list for it (effdet-detect
--describe-config - --tensors) before anything is written.
"""

import collections
import hashlib
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import zipfile

# The legacy format starts with this pickled integer (torch/serialization.py MAGIC_NUMBER).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class ConvertError(Exception):
    """A problem with the user's input: reported as one line, exit status 1."""


# ---------------------------------------------------------------- tensors and storages

# torch storage class -> (safetensors dtype, element size, struct code for narrowing or None)
STORAGE_TYPES = {
    "FloatStorage": ("F32", 4),
    "HalfStorage": ("F16", 2),
    "BFloat16Storage": ("BF16", 2),
    "DoubleStorage": ("F64", 8),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2),
    "CharStorage": ("I8", 1),
    "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
}


class StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype, self.itemsize = STORAGE_TYPES[name]


class Storage:
    """A flat typed buffer; `data` is filled in once the bytes have been located."""

    def __init__(self, stype, key, numel):
        self.stype = stype
        self.key = key
        self.numel = numel
        self.data = None


class StorageView:
    """Legacy checkpoints may reference a slice of another storage (view_metadata)."""

    def __init__(self, root, offset, numel):
        self.root = root
        self.offset = offset
        self.numel = numel
        self.stype = root.stype
        self.key = root.key

    @property
    def data(self):
        if self.root.data is None:
            return None
        size = self.stype.itemsize
        return self.root.data[self.offset * size : (self.offset + self.numel) * size]


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage = storage
        self.offset = offset
        self.shape = tuple(shape)
        self.stride = tuple(stride)

    @property
    def dtype(self):
        return self.storage.stype.dtype

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def contiguous_bytes(self, name):
        """The tensor's elements in C order, gathered through its strides when needed."""
        data = self.storage.data
        size = self.storage.stype.itemsize
        if data is None:
            raise ConvertError("tensor '%s': its storage %s was never written" % (name, self.storage.key))
        n = self.numel()
        if n == 0:
            return b""
        if any(d < 0 for d in self.shape) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ConvertError("tensor '%s': negative size, stride or offset" % name)
        last = self.offset + sum((d - 1) * s for d, s in zip(self.shape, self.stride))
        if last * size + size > len(data):
            raise ConvertError(
                "tensor '%s': shape %s stride %s offset %d reaches past its storage (%d elements)"
                % (name, list(self.shape), list(self.stride), self.offset, len(data) // size)
            )
        if self.stride == c_order_strides(self.shape):
            return bytes(data[self.offset * size : (self.offset + n) * size])
        return gather_strided(data, size, self.offset, self.shape, self.stride)


def c_order_strides(shape):
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def gather_strided(data, size, offset, shape, stride):
    """Copy a non-contiguous view element by element (rare in checkpoints: transposed or
    sliced parameters saved without .contiguous())."""
    out = bytearray()
    index = [0] * len(shape)
    for _ in range(_product(shape)):
        pos = offset + sum(i * s for i, s in zip(index, stride))
        out += data[pos * size : (pos + 1) * size]
        for axis in range(len(shape) - 1, -1, -1):
            index[axis] += 1
            if index[axis] < shape[axis]:
                break
            index[axis] = 0
    return bytes(out)


def _product(xs):
    n = 1
    for x in xs:
        n *= x
    return n


# ---------------------------------------------------------------- restricted unpickling


def _rebuild_tensor(storage, storage_offset, size, stride):
    return Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


# Everything a state dict can name. Any other global is refused: a checkpoint is data, and
# pickle would otherwise import and call whatever the file asks for.
SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}
for _name in STORAGE_TYPES:
    SAFE_GLOBALS[("torch", _name)] = StorageType(_name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only SAFE_GLOBALS and turns persistent ids into Storage
    objects (shared per key, so views and several tensors on one storage work)."""

    def __init__(self, file, storages):
        super().__init__(file, encoding="utf-8")
        self.storages = storages  # key -> Storage, filled as ids are seen

    def find_class(self, module, name):
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise ConvertError("refusing to unpickle global %s.%s (not part of a state dict)" % (module, name))

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ConvertError("unsupported persistent id %r" % (pid,))
        stype, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(stype, StorageType):
            raise ConvertError("storage %s has no known storage type" % key)
        if not isinstance(numel, int) or numel < 0:
            raise ConvertError("storage %s has an invalid element count" % key)
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = Storage(stype, key, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            # legacy: (view_key, offset, view_size) into the root storage
            _view_key, offset, view_numel = view
            return StorageView(root, offset, view_numel)
        return root


def _unpickle(stream, storages, what):
    try:
        return RestrictedUnpickler(stream, storages).load()
    except ConvertError:
        raise
    except (EOFError, pickle.UnpicklingError, struct.error, ValueError, TypeError, IndexError,
            AttributeError, KeyError, MemoryError) as e:
        raise ConvertError("%s: %s" % (what, e or type(e).__name__))


# ---------------------------------------------------------------- the two file formats


def load_zip_checkpoint(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise ConvertError("%s: zip archive without a single <dir>/data.pkl (not a torch.save file)" % path)
            prefix = pkl[0][: -len("data.pkl")]
            byteorder = prefix + "byteorder"
            if byteorder in names and z.read(byteorder).strip() != b"little":
                raise ConvertError("%s: big-endian checkpoints are not supported" % path)
            storages = {}
            obj = _unpickle(io.BytesIO(z.read(pkl[0])), storages, "%s: data.pkl" % path)
            for key, st in storages.items():
                entry = prefix + "data/" + key
                if entry not in names:
                    raise ConvertError("%s: storage %s is missing from the archive" % (path, key))
                st.data = z.read(entry)
                if len(st.data) < st.numel * st.stype.itemsize:
                    raise ConvertError("%s: storage %s is %d bytes, expected %d" %
                                       (path, key, len(st.data), st.numel * st.stype.itemsize))
            return obj
    except zipfile.BadZipFile as e:
        raise ConvertError("%s: corrupt or truncated zip archive (%s)" % (path, e))
    except (EOFError, OSError, zipfile.LargeZipFile) as e:
        raise ConvertError("%s: cannot read the zip archive (%s)" % (path, e))


def load_legacy_checkpoint(path):
    with open(path, "rb") as f:
        storages = {}
        magic = _unpickle(f, storages, "%s: magic number" % path)
        if magic != LEGACY_MAGIC:
            raise ConvertError("%s: not a PyTorch checkpoint (bad magic number)" % path)
        protocol = _unpickle(f, storages, "%s: protocol version" % path)
        if protocol != LEGACY_PROTOCOL:
            raise ConvertError("%s: unsupported legacy protocol version %r" % (path, protocol))
        sys_info = _unpickle(f, storages, "%s: sys_info" % path)
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            raise ConvertError("%s: big-endian checkpoints are not supported" % path)
        obj = _unpickle(f, storages, "%s: state dict pickle" % path)
        keys = _unpickle(f, storages, "%s: storage key list" % path)
        if not isinstance(keys, list):
            raise ConvertError("%s: storage key list is not a list" % path)
        for key in keys:
            st = storages.get(str(key))
            if st is None:
                raise ConvertError("%s: storage %s is listed but never referenced" % (path, key))
            header = f.read(8)
            if len(header) != 8:
                raise ConvertError("%s: truncated: storage %s is missing" % (path, key))
            (numel,) = struct.unpack("<q", header)
            if numel != st.numel:
                raise ConvertError("%s: storage %s holds %d elements, the pickle says %d" %
                                   (path, key, numel, st.numel))
            want = numel * st.stype.itemsize
            st.data = f.read(want)
            if len(st.data) != want:
                raise ConvertError("%s: truncated: storage %s has %d of its %d bytes" %
                                   (path, key, len(st.data), want))
        return obj


def load_checkpoint(path):
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    if zipfile.is_zipfile(path):
        return load_zip_checkpoint(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":
        return load_legacy_checkpoint(path)
    if head == b"PK":
        raise ConvertError("%s: corrupt or truncated zip archive" % path)
    raise ConvertError("%s: not a PyTorch checkpoint (neither zip nor legacy pickle format)" % path)


# ---------------------------------------------------------------- state dict clean-up

# effdet/timm training checkpoints wrap the weights. Like timm's load_checkpoint (which
# effdet's create_model calls with use_ema=checkpoint_ema, default False) take the plain
# weights unless the EMA copy is asked for.
WRAPPER_KEYS = ("state_dict", "model")
EMA_WRAPPER_KEYS = ("state_dict_ema", "model_ema")
STRIP_PREFIXES = ("module.", "model.")


def extract_state_dict(obj, path, use_ema=False):
    """The tensors of the checkpoint, keyed as effdet names them, in file order."""
    keys = EMA_WRAPPER_KEYS + WRAPPER_KEYS if use_ema else WRAPPER_KEYS
    while isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in keys if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            raise ConvertError("%s: no state dict found (top-level keys: %s)" % (path, ", ".join(map(str, obj))))
        obj = inner
    if not isinstance(obj, dict):
        raise ConvertError("%s: checkpoint holds a %s, not a state dict" % (path, type(obj).__name__))
    out = collections.OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ConvertError("%s: state dict key %r is not a string" % (path, key))
        name = key
        while name.startswith(STRIP_PREFIXES):
            name = name.split(".", 1)[1]
        # BatchNorm's step counter: training bookkeeping, not a weight.
        if name.endswith("num_batches_tracked"):
            continue
        if not isinstance(value, Tensor):
            raise ConvertError("%s: entry '%s' is a %s, not a tensor" % (path, key, type(value).__name__))
        if name in out:
            raise ConvertError("%s: tensor '%s' appears twice (after removing prefixes)" % (path, name))
        out[name] = value
    return out


def narrow_to_f32(x):
    """float64 -> float32 bytes, rounding to nearest like torch's .float(); values beyond
    float32's range become +-inf (struct refuses them)."""
    try:
        return struct.pack("<f", x)
    except OverflowError:
        return struct.pack("<f", float("inf") if x > 0 else float("-inf"))


def tensor_payload(name, t):
    """(safetensors dtype, bytes). F64 is narrowed to F32, integer tensors are refused."""
    data = t.contiguous_bytes(name)
    if t.dtype in ("F32", "F16", "BF16"):
        return t.dtype, data
    if t.dtype == "F64":
        n = len(data) // 8
        return "F32", b"".join(narrow_to_f32(x) for x in struct.unpack("<%dd" % n, data))
    raise ConvertError("tensor '%s' has dtype %s; only floating-point weights are supported" % (name, t.dtype))


# ---------------------------------------------------------------- model configs

# The metadata config a named model's file carries, field for field as the fixtures carry it
# (effdet/config/model_config.py: backbone, input size, BiFPN width, BiFPN cells, head
# repeats; D6/D7 fuse by plain sum; D7 has larger anchors). The engine reads these fields
# (lib/model/arch_metadata.c) and derives every tensor from them; tests/integration/test_convert.py
# checks that for every name the engine's reading of this config is its own named
# architecture.
NAMED_MODELS = {
    "tf_efficientdet_d0": ("tf_efficientnet_b0", 512, 64, 3, 3),
    "tf_efficientdet_d1": ("tf_efficientnet_b1", 640, 88, 4, 3),
    "tf_efficientdet_d2": ("tf_efficientnet_b2", 768, 112, 5, 3),
    "tf_efficientdet_d3": ("tf_efficientnet_b3", 896, 160, 6, 4),
    "tf_efficientdet_d4": ("tf_efficientnet_b4", 1024, 224, 7, 4),
    "tf_efficientdet_d5": ("tf_efficientnet_b5", 1280, 288, 7, 4),
    "tf_efficientdet_d6": ("tf_efficientnet_b6", 1280, 384, 8, 5),
    "tf_efficientdet_d7": ("tf_efficientnet_b6", 1536, 384, 8, 5),
    "efficientdet_d0": ("efficientnet_b0", 512, 64, 3, 3),
    "efficientdet_d1": ("efficientnet_b1", 640, 88, 4, 3),
}

# effdet's released checkpoints (release v0.1 of rwightman/efficientdet-pytorch). The one
# list: tools/fetch-model.sh asks `effdet-convert --release-url NAME`, `--list` prints it,
# and a checkpoint keeping its released file name is recognised by it. Each name ends in
# the first 8 hex digits of the file's SHA-256.
RELEASE_URL = "https://github.com/rwightman/efficientdet-pytorch/releases/download/v0.1"
RELEASE_FILES = {
    "tf_efficientdet_d0": "tf_efficientdet_d0_34-f153e0cf.pth",
    "tf_efficientdet_d1": "tf_efficientdet_d1_40-a30f94af.pth",
    "tf_efficientdet_d2": "tf_efficientdet_d2_43-8107aa99.pth",
    "tf_efficientdet_d3": "tf_efficientdet_d3_47-0b525f35.pth",
    "tf_efficientdet_d4": "tf_efficientdet_d4_49-f56376d9.pth",
    "tf_efficientdet_d5": "tf_efficientdet_d5_51-c79f9be6.pth",
    "tf_efficientdet_d6": "tf_efficientdet_d6_52-4eda3773.pth",
    "tf_efficientdet_d7": "tf_efficientdet_d7_53-6d1d7a95.pth",
    "efficientdet_d0": "efficientdet_d0-f3276ba8.pth",
    "efficientdet_d1": "efficientdet_d1-bb7e98fe.pth",
}


def name_from_file_name(path):
    """The named model a checkpoint's file name announces: effdet's release names and
    their variants start with it (tf_efficientdet_d3_47-0b525f35.pth, efficientdet_d1-bb7e98fe.pth,
    tf_efficientdet_d0.pth). None for any other name."""
    m = re.match(r"((?:tf_)?efficientdet_d\d+)(?:[_.\-]|$)", os.path.basename(path))
    return m.group(1) if m and m.group(1) in NAMED_MODELS else None


def named_config(name, num_classes=None):
    """The metadata config of a named model, field for field as the fixtures carry it."""
    if name not in NAMED_MODELS:
        raise ConvertError("unknown model '%s' (known: %s)" % (name, ", ".join(NAMED_MODELS)))
    backbone, size, fpn_ch, fpn_cells, head_reps = NAMED_MODELS[name]
    tf = name.startswith("tf_")
    sum_fusion = name in ("tf_efficientdet_d6", "tf_efficientdet_d7")
    return collections.OrderedDict([
        ("name", name),
        ("requested", name),
        ("num_classes", 90 if num_classes is None else num_classes),
        ("image_size", [size, size]),
        ("backbone_name", backbone),
        ("fpn_channels", fpn_ch),
        ("fpn_cell_repeats", fpn_cells),
        ("box_class_repeats", head_reps),
        ("min_level", 3),
        ("max_level", 7),
        ("num_scales", 3),
        ("aspect_ratios", [[1.0, 1.0], [1.4, 0.7], [0.7, 1.4]]),
        ("anchor_scale", 5.0 if name == "tf_efficientdet_d7" else 4.0),
        ("fpn_name", "bifpn_sum" if sum_fusion else "bifpn_fa"),
        ("act_type", "swish"),
        # The pt variant (efficientdet_d0/d1) was trained with PyTorch's symmetric padding,
        # no conv biases in front of BN, and timm's default BN eps in the backbone.
        ("padding", "tf_same" if tf else "symmetric"),
        ("pad_type", "same" if tf else ""),
        ("redundant_bias", tf),
        ("separable_conv", True),
        ("apply_resample_bn", True),
        ("downsample_type", "max"),
        ("upsample_type", "nearest"),
        ("fpn_bn_eps", 0.001),
        ("backbone_bn_eps", 0.001 if tf else 1e-05),
        ("max_detection_points", 5000),
        ("max_det_per_image", 100),
        ("soft_nms", False),
        ("backbone_multipliers", None),
        ("backbone_act", "SiLU"),
    ])


def load_custom_config(path, num_classes=None):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f, object_pairs_hook=collections.OrderedDict)
    except OSError as e:
        raise ConvertError("%s: cannot read: %s" % (path, e.strerror))
    except ValueError as e:
        raise ConvertError("%s: not valid JSON (%s)" % (path, e))
    if not isinstance(cfg, dict):
        raise ConvertError("%s: the config must be a JSON object" % path)
    if not isinstance(cfg.get("name"), str) or not cfg["name"]:
        raise ConvertError("%s: the config needs a 'name' string" % path)
    if num_classes is not None:
        cfg["num_classes"] = num_classes
    if not isinstance(cfg.get("num_classes"), int) or cfg["num_classes"] < 1:
        raise ConvertError("%s: 'num_classes' must be a positive integer" % path)
    return cfg


def read_labels(path, num_classes):
    """One label per line, or `id label` lines with 1-based ids; '#' starts a comment.
    Returns exactly num_classes labels (index = 0-based class); ids not given are named
    class<id>, as the engine's label parser does."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConvertError("%s: cannot read: %s" % (path, e.strerror))
    except UnicodeDecodeError:
        raise ConvertError("%s: not UTF-8 text" % path)
    entries = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")]
    with_ids = bool(entries) and all(ln.split(None, 1)[0].isdigit() and len(ln.split(None, 1)) == 2
                                     for _, ln in entries)
    if not with_ids:
        if len(entries) != num_classes:
            raise ConvertError("%s: %d labels for a model with %d classes" % (path, len(entries), num_classes))
        return [ln for _, ln in entries]
    labels = [None] * num_classes
    for lineno, ln in entries:
        ident, label = ln.split(None, 1)
        cls = int(ident)
        if not 1 <= cls <= num_classes:
            raise ConvertError("%s:%d: class id %d outside 1..%d" % (path, lineno, cls, num_classes))
        if labels[cls - 1] is not None:
            raise ConvertError("%s:%d: class id %d given twice" % (path, lineno, cls))
        labels[cls - 1] = label.strip()
    return [lab if lab is not None else "class%d" % (i + 1) for i, lab in enumerate(labels)]


def check_num_classes(tensors, cfg, path):
    """The class head's last bias has anchors x classes entries; a mismatch means the wrong
    --num-classes (or a checkpoint fine-tuned on another data set)."""
    bias = tensors.get("class_net.predict.conv_pw.bias")
    if bias is None or len(bias.shape) != 1:
        return
    anchors = cfg.get("num_scales", 3) * len(cfg.get("aspect_ratios", [0, 0, 0]))
    if anchors and bias.shape[0] != anchors * cfg["num_classes"]:
        raise ConvertError("%s: the class head predicts %d values per location = %d anchors x %d classes, "
                           "but the config says num_classes %d (use --num-classes %d)"
                           % (path, bias.shape[0], anchors, bias.shape[0] // anchors, cfg["num_classes"],
                              bias.shape[0] // anchors))


# ---------------------------------------------------------------- the engine's tensor lists

# Which tensors an architecture has, and their shapes, is the engine's knowledge: its loader
# walks the architecture asking for each tensor by name and shape. effdet-detect runs that
# walk without weights (--describe-config FILE --tensors) and this converter checks every
# checkpoint against the result before writing, so it never writes a file the engine
# rejects and the rules exist once.
ENGINE_ENV = "EFFDET_DETECT"


def find_engine():
    """effdet-detect: $EFFDET_DETECT, else next to this tool, else the checkout's build/."""
    env = os.environ.get(ENGINE_ENV)
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise ConvertError("%s=%s is not an executable file" % (ENGINE_ENV, env))
        return env
    here = os.path.dirname(os.path.realpath(__file__))
    for path in (os.path.join(here, "effdet-detect"), os.path.join(here, "..", "build", "effdet-detect")):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.normpath(path)
    raise ConvertError("effdet-detect is not built (the converter checks tensors against the engine): "
                       "run make first, or set %s=/path/to/effdet-detect" % ENGINE_ENV)


class Engine:
    """effdet-detect's reading of model configs: info and the tensors it would load."""

    def __init__(self, path=None):
        self.path = path or find_engine()
        self._tensors = {}
        self._named = {}

    def _run(self, args, stdin=None, where=None):
        try:
            p = subprocess.run([self.path] + args, input=stdin, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConvertError("%s: cannot run: %s" % (self.path, getattr(e, "strerror", None) or e))
        lines = p.stderr.strip().splitlines()
        if p.returncode != 0:
            if "unrecognized option" in p.stderr:
                raise ConvertError("%s is older than this converter (no %s): run make" % (self.path, args[0]))
            msg = lines[0] if lines else "%s exited with status %d" % (self.path, p.returncode)
            msg = msg[len("effdet-detect: "):] if msg.startswith("effdet-detect: ") else msg
            if where and msg.startswith("-: "):
                msg = where + ": " + msg[3:]
            raise ConvertError(msg)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise ConvertError("%s: output is not JSON (an older build? run make)" % self.path)

    def known_models(self):
        """The engine's named architectures, each as --describe prints it."""
        return self._run(["--list-models"])

    def named_tensors(self, num_classes):
        """{name: [(tensor, shape)]} of every named model with this class count (one run)."""
        if num_classes not in self._named:
            out = self._run(["--list-models", "--tensors", "--num-classes", str(num_classes)])
            self._named[num_classes] = collections.OrderedDict(
                (m["name"], [(t["name"], t["shape"]) for t in m["tensors"]]) for m in out)
        return self._named[num_classes]

    def tensors(self, config, where):
        """[(name, shape)] of every tensor a file with this metadata config must hold, in the
        loader's order; ConvertError with the engine's message if it refuses the config."""
        text = json.dumps(config)
        if text not in self._tensors:
            out = self._run(["--describe-config", "-", "--tensors"], stdin=text, where=where)
            self._tensors[text] = [(t["name"], t["shape"]) for t in out["tensors"]]
        return self._tensors[text]


def shape_text(shape):
    return "[%s]" % ", ".join(str(d) for d in shape)


def first_mismatch(expected, shapes, what):
    """The first difference between an expected tensor list and a checkpoint's {name: shape},
    in the loader's order, as words; None when they are the same set."""
    for name, shape in expected:
        have = shapes.get(name)
        if have is None:
            return "tensor '%s' %s, which %s expects, is missing" % (name, shape_text(shape), what)
        if have != shape:
            return "tensor '%s' has shape %s but %s expects %s" % (name, shape_text(have), what, shape_text(shape))
    names = {name for name, _ in expected}
    for name in shapes:
        if name not in names:
            return "tensor '%s' is not part of %s" % (name, what)
    return None


def _indices(shapes, pattern):
    """{first group: set of second groups} over the names matching `pattern`."""
    out = collections.OrderedDict()
    for name in shapes:
        m = re.match(pattern, name)
        if m:
            out.setdefault(int(m.group(1)), set()).add(int(m.group(2)) if m.lastindex > 1 else 0)
    return out


def head_geometry(shapes):
    """(anchors per location, classes) read off the heads' last convs; None where unclear."""
    box = shapes.get("box_net.predict.conv_pw.bias")
    cls = shapes.get("class_net.predict.conv_pw.bias")
    anchors = box[0] // 4 if box and len(box) == 1 and box[0] % 4 == 0 and box[0] else None
    classes = cls[0] // anchors if anchors and cls and len(cls) == 1 and cls[0] % anchors == 0 else None
    return anchors, classes


def summarize(shapes):
    """What the tensors say about the architecture, in a few words (for error messages)."""
    parts = []
    stem = shapes.get("backbone.conv_stem.weight")
    if stem:
        parts.append("stem %d channels" % stem[0])
    stages = _indices(shapes, r"backbone\.blocks\.(\d+)\.(\d+)\.")
    if stages:
        widths = []
        for s in sorted(stages):
            last = "backbone.blocks.%d.%d." % (s, max(stages[s]))
            w = shapes.get(last + "conv_pwl.weight") or shapes.get(last + "conv_pw.weight")
            widths.append(str(w[0]) if w else "?")
        parts.append("blocks per stage %s, widths %s" % ("-".join(str(len(stages[s])) for s in sorted(stages)),
                                                        "-".join(widths)))
    cells = _indices(shapes, r"fpn\.cell\.(\d+)\.")
    fpn = shapes.get("fpn.cell.0.fnode.0.after_combine.conv.conv_dw.weight")
    if cells:
        fusion = "fast-attention" if any(n.endswith("combine.edge_weights") for n in shapes) else "sum"
        parts.append("fpn %s channels x %d cells (%s fusion)" % (fpn[0] if fpn else "?", len(cells), fusion))
    reps = _indices(shapes, r"class_net\.conv_rep\.(\d+)\.")
    if reps:
        parts.append("head %d repeats" % len(reps))
    anchors, classes = head_geometry(shapes)
    if classes:
        parts.append("%d classes (%d anchors)" % (classes, anchors))
    elif "class_net.predict.conv_pw.bias" in shapes:
        parts.append("class head of %d outputs" % shapes["class_net.predict.conv_pw.bias"][0])
    if cells or reps:
        tf = any(n.endswith("after_combine.conv.conv_pw.bias")
                 or re.match(r"class_net\.conv_rep\.\d+\.conv_pw\.bias$", n) for n in shapes)
        parts.append("TF-style (biases before BN: tf_ models, TF padding)" if tf
                     else "PyTorch-style (no biases before BN: efficientdet_ models, symmetric padding)")
    return ", ".join(parts) if parts else "no effdet tensors (%d others)" % len(shapes)


def class_count(shapes, num_classes=None):
    """The class count to match named models with: the user's, else the class head's, else
    (or when outside the engine's 1..10000, which no named model fits) effdet's 90."""
    n = num_classes or head_geometry(shapes)[1] or 90
    return n if 1 <= n <= 10000 else 90


def fitting_models(engine, shapes, num_classes=None):
    """(named models whose tensors the checkpoint's equal, (nearest name, its first difference)).
    The class count comes from num_classes, else from the class head."""
    fits, best = [], None
    for name, expected in engine.named_tensors(class_count(shapes, num_classes)).items():
        if name not in NAMED_MODELS:  # a name the engine knows and the converter cannot write
            continue
        diff = first_mismatch(expected, shapes, name)
        if diff is None:
            fits.append(name)
            continue
        # "Nearest" only when most tensors agree: a checkpoint that is one model with a
        # detail changed, not a different network altogether.
        same = sum(1 for n, shape in expected if shapes.get(n) == shape)
        if 2 * same > max(len(expected), len(shapes)) and (best is None or same > best[0]):
            best = (same, name, diff)
    return fits, (best[1], best[2]) if best else None


def fit_advice(fits, nearest, shapes, have_config=False):
    """How to go on, given which named models fit the tensors."""
    if len(fits) == 1:
        return "the tensors fit %s (pass --name %s)" % (fits[0], fits[0])
    if fits:
        return ("the tensors fit %s alike (same tensors; they differ only in settings the weights do not "
                "record, such as input size and anchor scale): pass --name %s"
                % (" and ".join(fits), " or --name ".join(fits)))
    near = " (nearest %s: %s)" % nearest if nearest else ""
    if have_config:
        return "the tensors say %s: no named model fits%s; fix the config to match them" % (summarize(shapes), near)
    return ("the tensors say %s: no named model fits%s; for a custom model pass --config CONFIG.json "
            "(docs/models.md), or --name MODEL to check against one (effdet-convert --list)"
            % (summarize(shapes), near))


def infer_model(engine, path, shapes, num_classes=None):
    """The one named model a checkpoint is, from its release file name (checked against the
    tensors) or else from its tensors alone; ConvertError when none or several fit."""
    fits, nearest = fitting_models(engine, shapes, num_classes)
    announced = name_from_file_name(path)
    if announced:
        if announced in fits:
            return announced, "file name"
        diff = first_mismatch(engine.named_tensors(class_count(shapes, num_classes))[announced], shapes, announced)
        raise ConvertError("%s: the file name says %s, but %s; %s"
                           % (path, announced, diff, fit_advice(fits, nearest, shapes)))
    if len(fits) == 1:
        return fits[0], "tensors"
    raise ConvertError("%s: %s" % (path, fit_advice(fits, nearest, shapes)))


# ---------------------------------------------------------------- safetensors writer


def write_safetensors(out_path, tensors, config):
    """safetensors layout: u64 LE header length, compact JSON header padded with spaces to a
    multiple of 8, then the tensors back to back in state-dict order. The file is written
    next to out_path and renamed into place, so a reader never sees half a file."""
    header = collections.OrderedDict()
    header["__metadata__"] = collections.OrderedDict([("format", "pt"), ("config", json.dumps(config))])
    payloads, offset = [], 0
    for name, t in tensors.items():
        dtype, data = tensor_payload(name, t)
        header[name] = collections.OrderedDict([
            ("dtype", dtype), ("shape", list(t.shape)), ("data_offsets", [offset, offset + len(data)])])
        payloads.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".effdet-convert-", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for data in payloads:
                f.write(data)
        # mkstemp creates the file 0600; give the model the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_hex(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- command line

USAGE = """usage: effdet-convert CHECKPOINT.pth OUT.safetensors [--name MODEL | --config CONFIG.json]
                      [--num-classes N] [--labels LABELS.txt] [--ema]
       effdet-convert --list
       effdet-convert --release-url MODEL

Converts an effdet checkpoint (torch.save zip or legacy format) into the safetensors file
effdetd loads, after checking every tensor's name and shape against the architecture as
the engine (effdet-detect, built by make) reads it: it never writes a file the engine
would refuse.

Which architecture:
  (neither option)  inferred: from an effdet release file name (tf_efficientdet_d3_47-0b525f35.pth,
                    efficientdet_d1-...; checked against the tensors), else from the tensors
                    alone (backbone widths and depth, BiFPN width and cells, head repeats,
                    class count, TF- or PyTorch-style biases). It fails, saying what the
                    tensors are, when no named model or several fit (tf_efficientdet_d6 and
                    d7 have the same tensors: those need the file name or --name).
  --name MODEL      a named model: tf_efficientdet_d0..d7, efficientdet_d0, efficientdet_d1
  --config FILE     a custom model's settings (JSON object, see docs/models.md)
Options:
  --num-classes N   class count (default: 90 with --name, the config's with --config, the
                    class head's when inferred)
  --labels FILE     class names, one per line or `id label` lines
  --ema             take a training checkpoint's state_dict_ema instead of its state_dict
  --list            the known model names, their input sizes and release files
  --release-url M   the download URL of model M's released checkpoint (for fetch-model.sh)
The engine is $EFFDET_DETECT, else effdet-detect next to this tool, else build/effdet-detect."""


def parse_args(argv):
    opts = {"name": None, "config": None, "num_classes": None, "labels": None, "ema": False}
    positional = []
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if arg == "--ema":
            opts["ema"] = True
            continue
        if arg in ("--name", "--config", "--num-classes", "--labels"):
            value = next(it, None)
            if value is None:
                raise ConvertError("%s needs a value" % arg)
            key = arg[2:].replace("-", "_")
            if key == "num_classes":
                if not value.isdigit() or int(value) < 1:
                    raise ConvertError("--num-classes must be a positive integer, not '%s'" % value)
                value = int(value)
            opts[key] = value
        elif arg.startswith("-"):
            raise ConvertError("unknown option %s (see --help)" % arg)
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise ConvertError("expected CHECKPOINT.pth and OUT.safetensors (see --help)")
    if opts["name"] and opts["config"]:
        raise ConvertError("give --name or --config, not both")
    if opts["name"] and opts["name"] not in NAMED_MODELS:
        raise ConvertError("unknown model '%s' (known: %s)" % (opts["name"], ", ".join(NAMED_MODELS)))
    return positional[0], positional[1], opts


def convert(checkpoint, out_path, name=None, config=None, num_classes=None, labels=None, ema=False,
            engine=None):
    """Convert, check, write. Returns (tensor count, model name, where the name came from)."""
    engine = engine or Engine()
    cfg = load_custom_config(config, num_classes) if config else None
    tensors = extract_state_dict(load_checkpoint(checkpoint), checkpoint, use_ema=ema)
    shapes = collections.OrderedDict((n, list(t.shape)) for n, t in tensors.items())
    if cfg is not None:
        source, what = "--config", "the config %s" % config
    elif name:
        source, what = "--name", name
        cfg = named_config(name, num_classes)
    else:
        if num_classes:  # a wrong --num-classes, said plainly rather than as "no model fits"
            check_num_classes(tensors, {"num_classes": num_classes}, checkpoint)
        name, source = infer_model(engine, checkpoint, shapes, num_classes)
        what = name
        cfg = named_config(name, class_count(shapes, num_classes))
    if labels:
        cfg["labels"] = read_labels(labels, cfg["num_classes"])
    check_num_classes(tensors, cfg, checkpoint)
    diff = first_mismatch(engine.tensors(cfg, config or cfg["name"]), shapes, what)
    if diff:
        fits, nearest = fitting_models(engine, shapes)
        raise ConvertError("%s: %s; %s" % (checkpoint, diff, fit_advice(fits, nearest, shapes, config is not None)))
    write_safetensors(out_path, tensors, cfg)
    return len(tensors), cfg["name"], source


def list_models(engine=None):
    """--list: the engine's named models with their input sizes and release files."""
    engine = engine or Engine()
    rows = [("name", "input", "BiFPN", "params", "release file")]
    for info in engine.known_models():
        size = info["input_size"]
        rows.append((info["name"], "%dx%d" % (size[1], size[0]),
                     "%d x %d" % (info["fpn_channels"], info["fpn_cell_repeats"]), "{:,}".format(info["params"]),
                     RELEASE_FILES.get(info["name"], "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def release_url(name):
    if name not in RELEASE_FILES:
        raise ConvertError("no released checkpoint for '%s' (released: %s)" % (name, ", ".join(RELEASE_FILES)))
    return "%s/%s" % (RELEASE_URL, RELEASE_FILES[name])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv == ["--list"]:
            list_models()
            return 0
        if argv[:1] == ["--release-url"]:
            if len(argv) != 2:
                raise ConvertError("--release-url takes one model name")
            print(release_url(argv[1]))
            return 0
        checkpoint, out_path, opts = parse_args(argv)
        n, name, source = convert(checkpoint, out_path, **opts)
    except ConvertError as e:
        print("effdet-convert: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("effdet-convert: %s: %s" % (e.filename or "", e.strerror), file=sys.stderr)
        return 1
    how = {"file name": "from the file name", "tensors": "inferred from the tensors"}.get(source, "from " + source)
    print("effdet-convert: wrote %s (%d tensors, %s %s)" % (out_path, n, name, how))
    return 0
