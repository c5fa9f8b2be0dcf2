"""config/effdetd.conf and effdetd.conf(5) document every option of the daemon's
option table (as `effdetd --help` prints it) with the same default."""
import os
import re
import subprocess
import unittest

from harness import EFFDETD, ROOT


def options_from_help():
    out = subprocess.run([EFFDETD, "--help"], capture_output=True, check=True).stdout.decode()
    opts = {}
    for m in re.finditer(r"^  --([a-z0-9-]+)\s+\(default: (.*?)\) ", out, re.M):
        if m.group(1) not in ("config", "check-config"):
            opts[m.group(1).replace("-", "_")] = m.group(2)
    return opts


class ConfigDocs(unittest.TestCase):
    def test_conf_file_lists_every_option_with_its_default(self):
        opts = options_from_help()
        self.assertGreater(len(opts), 20)
        text = open(os.path.join(ROOT, "config", "effdetd.conf")).read()
        listed = dict(re.findall(r"^# ([a-z_]+) (\S+)$", text, re.M))
        for name, default in opts.items():
            self.assertIn(name, listed, "config/effdetd.conf lacks %s" % name)
            self.assertEqual(listed[name], default, name)

    def test_man_page_lists_every_option(self):
        opts = options_from_help()
        man = open(os.path.join(ROOT, "man", "effdetd.conf.5")).read()
        for name, default in opts.items():
            self.assertRegex(man, r"\.B %s\b" % re.escape(name).replace("_", r"\\?_"), name)

    def test_shipped_conf_parses(self):
        p = subprocess.run([EFFDETD, "--config", os.path.join(ROOT, "config", "effdetd.conf"), "--check-config",
                            "--model", os.path.join(ROOT, "tests", "fixtures", "weights.safetensors")],
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
