"""What a replica behind a load balancer needs: a drain that keeps answering (503 on
/readyz and new work, 200 for the jobs it holds), the X-Request-Id echoed and logged,
and the `instance` name on every metric and in /v1/models."""
import re
import signal
import subprocess
import threading
import time
import unittest

from harness import D0_MODEL, EFFDETD, SLOW, TINY_MODEL, Daemon, have_shared, read, TINY_IMAGE

IMAGE = read(TINY_IMAGE)
JPEG = {"Content-Type": "image/jpeg"}


def held(metrics_text):
    """Jobs the daemon holds: queued plus running."""
    total = 0
    for name in ("effdetd_queue_depth", "effdetd_workers_busy"):
        m = re.search(r"^%s\{[^}]*\} (\d+)" % name, metrics_text, re.M)
        total += int(m.group(1)) if m else 0
    return total


class Drain(unittest.TestCase):
    def test_sigterm_keeps_listening_and_finishes_held_jobs(self):
        # D0 on one worker: each job takes long enough that three are held at SIGTERM.
        model = D0_MODEL if have_shared() else TINY_MODEL
        with Daemon("--queue-size", "8", model=model, workers=1) as d:
            results = []

            def one():
                results.append(d.request("POST", "/detect", IMAGE, JPEG, timeout=120)[0])

            threads = [threading.Thread(target=one) for _ in range(3)]
            for t in threads:
                t.start()
            deadline = time.time() + 20 * SLOW
            # All three held (running or queued) before the signal: a request still on
            # its way when SIGTERM lands is rightly refused, and would fail the test.
            while time.time() < deadline:
                if held(d.request("GET", "/metrics")[2].decode()) >= 3:
                    break
                time.sleep(0.005)
            d.signal(signal.SIGTERM)
            # New connections still reach the daemon: readiness fails, liveness holds,
            # new work is refused with 503 + Retry-After and Connection: close.
            saw_draining = False
            while d.proc.poll() is None:
                try:
                    status, h, body = d.request("GET", "/readyz", timeout=5)
                except OSError:
                    break  # exited between poll() and connect
                if status == 503:
                    saw_draining = True
                    self.assertIn(b"shutting_down", body)
                    self.assertEqual(h.get("connection"), "close")
                    st, h2, _ = d.request("POST", "/detect", IMAGE, JPEG, timeout=5)
                    self.assertEqual(st, 503)
                    self.assertEqual(h2.get("retry-after"), "1")
                    self.assertEqual(d.request("GET", "/healthz", timeout=5)[0], 200)
                    break
                time.sleep(0.005)
            for t in threads:
                t.join(120 * SLOW)
            self.assertEqual(d.proc.wait(60 * SLOW), 0, d.stderr())
            self.assertTrue(saw_draining, "no 503 from /readyz while draining:\n" + d.stderr())
            self.assertEqual(results, [200, 200, 200], d.stderr())


class RequestId(unittest.TestCase):
    def test_echoed_and_logged(self):
        with Daemon() as d:
            st, h, _ = d.request("POST", "/detect", IMAGE, dict(JPEG, **{"X-Request-Id": "4f2a-9e.cam1"}))
            self.assertEqual(st, 200)
            self.assertEqual(h.get("x-request-id"), "4f2a-9e.cam1")
            st, h, _ = d.request("GET", "/nope", headers={"X-Request-Id": "r404"})
            self.assertEqual((st, h.get("x-request-id")), (404, "r404"))
            # Anything that could forge a log line or a header is dropped, not echoed.
            for bad in ("has space", "x" * 129, "a\"b", "\u00e9t\u00e9"):
                st, h, _ = d.request("GET", "/healthz", headers={"X-Request-Id": bad.encode("utf-8")})
                self.assertEqual(st, 200)
                self.assertNotIn("x-request-id", h, bad)
            st, h, _ = d.request("GET", "/healthz")
            self.assertNotIn("x-request-id", h)
            d.stop()
            log = d.stderr()
            self.assertRegex(log, r"POST /detect 200 .* rid=4f2a-9e\.cam1\n")
            self.assertRegex(log, r"GET /nope 404 .* rid=r404\n")
            self.assertRegex(log, r"GET /healthz 200 .* rid=-\n")


def samples(text):
    return [l for l in text.splitlines() if l and not l.startswith("#")]


class Instance(unittest.TestCase):
    def test_default_is_hostname_and_port(self):
        import socket
        with Daemon() as d:
            want = "%s:%d" % (socket.gethostname(), d.port)
            st, _, body = d.json("GET", "/v1/models")
            self.assertEqual(body["instance"], want)
            text = d.request("GET", "/metrics")[2].decode()
            lines = samples(text)
            self.assertGreater(len(lines), 20)
            for l in lines:
                self.assertIn('{instance="%s"' % want, l)

    def test_configured_name_on_every_sample(self):
        with Daemon("--instance", "cam-rack-2") as d:
            self.assertEqual(d.json("GET", "/v1/models")[2]["instance"], "cam-rack-2")
            text = d.request("GET", "/metrics")[2].decode()
            for l in samples(text):
                name = re.match(r"[a-z_]+", l).group(0)
                self.assertTrue(l.startswith(name + '{instance="cam-rack-2"'), l)
            # Labels that were there stay: one series per endpoint and status.
            self.assertRegex(text, r'effdetd_requests_total\{instance="cam-rack-2",endpoint="/v1/models",'
                                   r'status="200"\} 1\n')
            self.assertRegex(text, r'effdetd_ready\{instance="cam-rack-2"\} 1\n')

    def test_unsafe_name_is_refused(self):
        for bad in ('a"b', "a b", "a\\b"):
            p = subprocess.run([EFFDETD, "--model", TINY_MODEL, "--instance", bad, "--check-config"],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1, bad)
            self.assertIn(b"instance:", p.stderr)


if __name__ == "__main__":
    unittest.main()
