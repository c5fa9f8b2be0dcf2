"""Shared helpers for the effdetd integration tests (Python 3 standard library only).

Starts a real effdetd on 127.0.0.1 with port 0 (the daemon writes its bound port to a
--port-file), talks HTTP with http.client, encodes multipart bodies the way
python-requests does, and validates JSON replies against proto/openapi.json with a
small JSON-schema validator covering the subset that document uses.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("BUILD", "build")
EFFDETD = os.environ.get("EFFDETD_BIN") or os.path.join(ROOT, BUILD, "effdetd")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TINY_MODEL = os.path.join(FIXTURES, "weights.safetensors")
TINY_IMAGE = os.path.join(FIXTURES, "input.jpg")
SHARED = os.environ.get("EFFDET_SHARED", os.path.join(ROOT, "..", "shared", "reference"))
D0_MODEL = os.path.join(SHARED, "d0", "weights.safetensors")
SANITIZED = "san" in BUILD
# Sanitizer builds run several times slower: stretch every timeout.
SLOW = 6.0 if SANITIZED else 1.0


def read(path):
    with open(path, "rb") as f:
        return f.read()


def have_shared():
    if os.path.exists(D0_MODEL):
        return True
    if os.environ.get("EFFDET_SKIP_SHARED") == "1":
        print("NOTICE: shared reference fixtures absent; skipping d0 tests", flush=True)
        return False
    raise AssertionError("shared reference fixtures not found at %s (set EFFDET_SKIP_SHARED=1 to skip)" % SHARED)


class Daemon:
    """A running effdetd. Use as a context manager; stderr is kept for assertions."""

    def __init__(self, *args, model=TINY_MODEL, env=None, workers=2, ready=True, config=None):
        self.tmp = tempfile.mkdtemp(prefix="effdetd-test-")
        self.port_file = os.path.join(self.tmp, "port")
        self.log_path = os.path.join(self.tmp, "stderr.log")
        cmd = [EFFDETD, "--listen", "127.0.0.1:0", "--port-file", self.port_file, "--workers", str(workers)]
        if config:
            cmd += ["--config", config]
        if model:
            cmd += ["--model", model]
        cmd += list(args)
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("WATCHDOG_USEC", None)
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=full_env, cwd=ROOT)
        self.port = None
        self._wait_port()
        if ready:
            self.wait_ready()

    def _wait_port(self):
        deadline = time.time() + 20 * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("effdetd exited with %s:\n%s" % (self.proc.returncode, self.stderr()))
            try:
                with open(self.port_file) as f:
                    self.port = int(f.read())
                return
            except (OSError, ValueError):
                time.sleep(0.02)
        raise AssertionError("effdetd did not write its port:\n" + self.stderr())

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("effdetd exited with %s:\n%s" % (self.proc.returncode, self.stderr()))
            status, _, _ = self.request("GET", "/readyz")
            if status == 200:
                return
            time.sleep(0.05)
        raise AssertionError("effdetd not ready:\n" + self.stderr())

    def stderr(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def connect(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOW)

    def request(self, method, path, body=None, headers=None, timeout=30, conn=None):
        """(status, headers dict with lower-case names, body bytes)."""
        own = conn is None
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                c.close()

    def json(self, method, path, body=None, headers=None, **kw):
        status, h, data = self.request(method, path, body, headers, **kw)
        assert h.get("content-type", "").startswith("application/json"), (status, h, data[:200])
        return status, h, json.loads(data)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("effdetd did not exit on SIGTERM:\n" + self.stderr())

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if self.proc.poll() is None:
                code = self.stop()
                if exc[0] is None and code != 0:
                    raise AssertionError("effdetd exited with %d:\n%s" % (code, self.stderr()))
        finally:
            self.log.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def multipart(fields, files, boundary=None):
    """Encode like python-requests' encode_files: data fields, then files whose part
    has filename = field name and no Content-Type (what Frigate and the HA integration send)."""
    boundary = boundary or uuid.uuid4().hex
    out = []
    for name, value in fields:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n" % (boundary, name)).encode())
        out.append(value.encode() if isinstance(value, str) else value)
        out.append(b"\r\n")
    for name, data in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n\r\n"
                    % (boundary, name, name)).encode())
        out.append(data)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


# ------------------------------------------------------------ schema validation

with open(os.path.join(ROOT, "proto", "openapi.json")) as _f:
    OPENAPI = json.load(_f)


def _resolve(schema):
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = OPENAPI["components"]["schemas"][name]
    return schema


def validate(value, schema, path="$"):
    """Raise AssertionError when value does not match schema (OpenAPI 3.0 subset)."""
    schema = _resolve(schema)
    if value is None:
        assert schema.get("nullable"), "%s: null not allowed" % path
        return
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t in types:
        assert isinstance(value, types[t]), "%s: %r is not %s" % (path, value, t)
    elif t == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), "%s: %r is not an integer" % (path, value)
    elif t == "number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), "%s: %r is not a number" % (path, value)
    if "enum" in schema:
        assert value in schema["enum"], "%s: %r not in %r" % (path, value, schema["enum"])
    if "minimum" in schema:
        assert value >= schema["minimum"], "%s: %r < %r" % (path, value, schema["minimum"])
    if "maximum" in schema:
        assert value <= schema["maximum"], "%s: %r > %r" % (path, value, schema["maximum"])
    if t == "object":
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            assert k in value, "%s: missing %s" % (path, k)
        for k, v in value.items():
            if k in props:
                validate(v, props[k], path + "." + k)
            else:
                assert schema.get("additionalProperties", True) is not False, "%s: unexpected %s" % (path, k)
    if t == "array" and "items" in schema:
        for i, v in enumerate(value):
            validate(v, schema["items"], "%s[%d]" % (path, i))


def response_schema(route, method, status, content_type="application/json"):
    op = OPENAPI["paths"][route][method.lower()]
    resp = op["responses"].get(str(status))
    assert resp is not None, "%s %s: status %d is not documented" % (method, route, status)
    content = resp.get("content", {})
    assert content_type in content, "%s %s %d: %s not documented" % (method, route, status, content_type)
    return content[content_type]["schema"]


def check(route, method, status, headers, body):
    """Validate a reply against the OpenAPI document; returns the parsed JSON."""
    ctype = headers.get("content-type", "").split(";")[0].strip()
    schema = response_schema(route, method, status, ctype)
    if ctype == "application/json":
        doc = json.loads(body)
        validate(doc, schema)
        return doc
    return body


def parallel(n, fn):
    """Run fn(i) on n threads at once; returns the results (exceptions as values)."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as e:  # the test inspects it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _sof_offset(b):
    """Offset of the SOF0/1/2 marker segment of a JPEG."""
    i = 2
    while i + 3 < len(b):
        marker = b[i + 1]
        seglen = (b[i + 2] << 8) | b[i + 3]
        if marker in (0xC0, 0xC1, 0xC2):
            return i
        i += 2 + seglen
    raise ValueError("no SOF marker")


def jpeg_with_size(data, width, height):
    """Patch the SOF frame size of a baseline JPEG (header-only lie, for max_pixels)."""
    b = bytearray(data)
    i = _sof_offset(b)
    b[i + 5:i + 7] = height.to_bytes(2, "big")
    b[i + 7:i + 9] = width.to_bytes(2, "big")
    return bytes(b)


def jpeg_size(data):
    """(width, height) from a JPEG's SOF segment."""
    i = _sof_offset(data)
    return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")


def prom_value(text, name, labels=None):
    """Value of one Prometheus sample, or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels is None or all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def flat_jpeg(width, height):
    """A valid baseline greyscale JPEG of any size, every 8x8 block flat mid-grey: one
    one-bit Huffman code for DC category 0 and one for EOB, so each block is two zero
    bits. Cheap to make in pure Python, expensive to decode when large."""
    def seg(marker, payload):
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    dqt = seg(0xDB, bytes([0]) + bytes([1] * 64))
    sof = seg(0xC0, bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([1, 1, 0x11, 0]))
    one_code = bytes([1] + [0] * 15) + bytes([0])  # one symbol (0x00) with a 1-bit code
    dht = seg(0xC4, bytes([0x00]) + one_code + bytes([0x10]) + one_code)
    sos = seg(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    nbits = 2 * blocks
    data = bytearray((nbits + 7) // 8)
    if nbits % 8:  # pad the last byte with 1-bits
        data[-1] = (1 << (8 - nbits % 8)) - 1
    return b"\xFF\xD8" + dqt + sof + dht + sos + bytes(data) + b"\xFF\xD9"
