"""effdetd against hostile clients and faults: the regressions of a red-team run
(issue #10). Each test failed before its fix."""
import os
import signal
import socket
import time
import unittest

from harness import (SANITIZED, SLOW, TINY_IMAGE, TINY_MODEL, Daemon, check, flat_jpeg, prom_value, read)

IMAGE = read(TINY_IMAGE)
JPEG = {"Content-Type": "image/jpeg"}


def raw_post(port, body, path="/detect", extra=b""):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n%s\r\n"
              % (path.encode(), len(body), extra) + body)
    return s


def read_all(s, timeout=10):
    """Everything the server sends until it closes (or the timeout)."""
    s.settimeout(timeout * SLOW)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


class Shutdown(unittest.TestCase):
    def test_sigterm_with_queued_big_jobs_exits_cleanly(self):
        """--workers 1 --drain-timeout-ms 1 and five 6000x6000 JPEGs queued: SIGTERM exits
        at once with 0. Before the fix, evhttp_free called the close callback of jobs
        already freed (ASan: heap-use-after-free in close_cb; release builds could hang)."""
        big = flat_jpeg(6000, 6000)
        with Daemon("--drain-timeout-ms", "1", "--queue-size", "16", workers=1) as d:
            socks = [raw_post(d.port, big) for _ in range(5)]
            deadline = time.time() + 20 * SLOW
            while time.time() < deadline:  # one running, some queued
                text = d.request("GET", "/metrics")[2].decode()
                if (prom_value(text, "effdetd_queue_depth") or 0) >= 2:
                    break
                time.sleep(0.01)
            d.signal(signal.SIGTERM)
            try:
                code = d.proc.wait(timeout=20 * SLOW)
            except Exception:
                d.proc.kill()
                raise AssertionError("effdetd hung at shutdown:\n" + d.stderr())
            for s in socks:
                s.close()
            self.assertEqual(code, 0, d.stderr()[-3000:])
            self.assertNotIn("AddressSanitizer", d.stderr())


if __name__ == "__main__":
    unittest.main()
