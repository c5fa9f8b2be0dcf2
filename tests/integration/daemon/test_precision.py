"""effdetd's precision options: `precision` (global, also --precision) and
`model_precision` (per model name), reported per model by GET /v1/models, applied again
on SIGHUP (an unchanged file whose precision changed is reloaded), and a bf16 model that
this CPU (or a forced EFFDET_ISA level) cannot run refused with a log line naming
AVX512_BF16. The bf16-serving tests need a CPU with AVX512_BF16 and say so when skipped."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import EFFDETD, ROOT, SLOW, TINY_IMAGE, TINY_MODEL, Daemon, check, read

IMAGE = read(TINY_IMAGE)
JPEG = {"Content-Type": "image/jpeg"}
DETECT = os.path.join(ROOT, os.environ.get("BUILD", "build"), "effdet-detect")


def cpu():
    env = dict(os.environ)
    env.pop("EFFDET_ISA", None)
    return json.loads(subprocess.run([DETECT, "--cpu"], capture_output=True, text=True, check=True, env=env).stdout)


def bf16_cpu():
    c = cpu()
    return c["features"].get("avx512_bf16", False) and "avx512" in c["supported_levels"]


class Precision(unittest.TestCase):
    def test_bf16_refused_at_a_lower_level(self):
        level = "avx2" if "avx2" in cpu()["supported_levels"] else "baseline"
        env = dict(os.environ, EFFDET_ISA=level)
        p = subprocess.run([EFFDETD, "--model", TINY_MODEL, "--listen", "127.0.0.1:0", "--precision", "bf16"],
                           capture_output=True, text=True, timeout=60 * SLOW, env=env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("AVX512_BF16", p.stderr)
        self.assertIn("cannot start", p.stderr)

    def test_bad_values(self):
        for args, msg in ((["--precision", "fp16"], "precision"),
                          (["--model-precision", "cam=bf16,yard"], "model_precision: 'yard'")):
            p = subprocess.run([EFFDETD, "--check-config", "--model", TINY_MODEL] + args, capture_output=True,
                               text=True, timeout=60 * SLOW)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(msg, p.stderr)

    def models(self, d):
        status, h, body = d.request("GET", "/v1/models")
        doc = check("/v1/models", "GET", status, h, body)
        return {m["name"]: m["precision"] for m in doc["models"]}

    def test_per_model_and_reload(self):
        if not bf16_cpu():
            self.skipTest("this CPU lacks AVX512_BF16: bf16 models cannot be served")
        tmp = tempfile.mkdtemp()
        try:
            for name in ("cam", "yard"):
                shutil.copy(TINY_MODEL, os.path.join(tmp, name + ".safetensors"))
            conf = os.path.join(tmp, "effdetd.conf")
            with open(conf, "w") as f:
                f.write("models_dir %s\nmodel_precision yard=bf16\n" % tmp)
            with Daemon(config=conf, model=None) as d:
                self.assertEqual(self.models(d), {"cam": "fp32", "yard": "bf16"})
                for name in ("cam", "yard"):
                    status, _, body = d.request("POST", "/detect?model=" + name, IMAGE, JPEG)
                    self.assertEqual(status, 200, body)
                with open(conf, "w") as f:
                    f.write("models_dir %s\nprecision bf16\nmodel_precision yard=fp32\n" % tmp)
                d.signal(signal.SIGHUP)
                deadline = time.time() + 30 * SLOW
                while self.models(d) != {"cam": "bf16", "yard": "fp32"} and time.time() < deadline:
                    time.sleep(0.05)
                self.assertEqual(self.models(d), {"cam": "bf16", "yard": "fp32"}, d.stderr())
                self.assertEqual(d.request("POST", "/detect?model=cam", IMAGE, JPEG)[0], 200)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
