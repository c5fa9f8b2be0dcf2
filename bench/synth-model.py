#!/usr/bin/env python3
"""Write a named architecture's weights file with made-up values, for timing.

    bench/synth-model.py NAME OUT.safetensors

No released checkpoint beyond D0 can be fetched on an offline machine, and the forward
pass's speed and memory do not depend on what the weights are. The tensor names and
shapes come from the engine itself (effdet-detect --describe NAME --tensors), the values
from a fixed pseudo-random pattern scaled by 1/sqrt(fan-in) so that activations stay in
a normal range through every layer (BN: weight 1, bias 0, mean 0, variance 1). The
detections of such a model are meaningless; only its speed and arena are of use."""
import json
import math
import os
import random
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, os.environ.get("BUILD", "build"), "effdet-detect")
BLOCK = 4099  # floats in the repeating pattern (prime, so it does not line up with channels)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench/synth-model.py NAME OUT.safetensors")
    name, out = sys.argv[1], sys.argv[2]
    try:
        desc = subprocess.run([TOOL, "--describe", name, "--tensors"], capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit(f"synth-model: {TOOL} not found (run make first)")
    if desc.returncode != 0:
        sys.exit(f"synth-model: {desc.stderr.strip() or 'effdet-detect --describe failed'}")
    tensors = json.loads(desc.stdout)["tensors"]
    rng = random.Random(12345)
    pattern = [rng.uniform(-1.0, 1.0) for _ in range(BLOCK)]
    header, off = {}, 0
    for t in tensors:
        n = math.prod(t["shape"]) * 4
        header[t["name"]] = {"dtype": "F32", "shape": t["shape"], "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"config": json.dumps({"name": name, "num_classes": 90})}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in tensors:
            f.write(tensor_bytes(t["name"], t["shape"], pattern))
    print(out)


def tensor_bytes(name, shape, pattern):
    n = math.prod(shape)
    if name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
        return struct.pack("<f", 1.0) * n  # BN scale and variance
    if len(shape) == 1:
        return bytes(4 * n)  # biases, BN shifts and means
    fan_in = math.prod(shape[1:])
    scale = 1.0 / math.sqrt(fan_in)
    block = struct.pack(f"<{BLOCK}f", *(v * scale for v in pattern))
    reps, rest = divmod(n, BLOCK)
    return block * reps + block[: 4 * rest]


if __name__ == "__main__":
    main()
