"""Chaos test: three effdetd replicas behind nginx (deploy/nginx/effdetd.conf, as
deploy/cluster.sh writes it) on loopback, under sustained load from a bounded client
(THREADS Python threads, one request at a time each), while in turn one replica is
SIGKILLed, one is drained (SIGTERM), one reloads (SIGHUP with a new model file), and
all three are restarted one after the other.

Passes when every request got an answer, every answer was 200 (or a 503 that every
replica it was tried on gave), no reset, no 502/504, and every 200 is in a replica's
access log under the request's X-Request-Id. Prints requests, status counts and p50/p99
per phase, and writes them to $BUILD/chaos/result.json (docs/scaling.md quotes them).

Usage: python3 tests/integration/test_chaos.py [--model PATH] [--threads N] [--scale S]
"""
import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")
EFFDETD = os.path.join(ROOT, BUILD, "effdetd")
SHARED = os.environ.get("EFFDET_SHARED", os.path.join(ROOT, "..", "shared", "reference"))
D0 = os.path.join(SHARED, "d0", "weights.safetensors")
TINY = os.path.join(ROOT, "tests", "fixtures", "weights.safetensors")
FRAMES = os.path.join(SHARED, "frames")
SANITIZED = "san" in BUILD
SLOW = 6.0 if SANITIZED else 1.0


def free_ports(n):
    """n distinct free loopback ports (bound, read, released): tests can run in parallel."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Replica:
    def __init__(self, index, port, model, workdir, args):
        self.index, self.port, self.model, self.args = index, port, model, args
        self.log_path = os.path.join(workdir, "replica-%d.log" % index)
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")  # append: a restart keeps the earlier access log
        cmd = [EFFDETD, "--model", self.model, "--listen", "127.0.0.1:%d" % self.port,
               "--instance", "replica-%d" % self.index] + self.args
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        log.close()

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("replica %d exited %s:\n%s" % (self.index, self.proc.returncode, self.log()))
            try:
                if get(self.port, "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("replica %d not ready:\n%s" % (self.index, self.log()))

    def busy(self):
        """Jobs running or queued, from its /metrics."""
        try:
            text = get(self.port, "/metrics")[1].decode()
        except OSError:
            return 0
        n = 0
        for name in ("effdetd_workers_busy", "effdetd_queue_depth"):
            m = re.search(r"^%s\{[^}]*\} (\d+)" % name, text, re.M)
            n += int(m.group(1)) if m else 0
        return n

    def wait_busy(self, timeout=10):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline and self.busy() == 0:
            time.sleep(0.005)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout * SLOW)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Load:
    """THREADS clients, one request in flight each, on keep-alive connections to nginx."""

    def __init__(self, port, images, threads):
        self.port, self.images, self.threads = port, images, threads
        self.phase = "start"
        self.results = []  # (phase, status or error text, seconds, rid)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for w in self.workers:
            w.start()

    def run(self, i):
        conn, k = None, i
        while not self.stopping.is_set():
            phase, rid = self.phase, uuid.uuid4().hex
            img = self.images[k % len(self.images)]
            k += self.threads
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60 * SLOW)
                conn.request("POST", "/detect", body=img,
                             headers={"Content-Type": "image/jpeg", "X-Request-Id": rid})
                r = conn.getresponse()
                r.read()
                outcome = r.status
                if r.getheader("X-Request-Id") != rid:
                    outcome = "X-Request-Id %r" % r.getheader("X-Request-Id")
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                outcome = "%s: %s" % (type(e).__name__, e)
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.results.append((phase, outcome, time.monotonic() - t0, rid))
            if outcome == 503:
                time.sleep(0.1)  # a client that honours Retry-After, a little
        if conn:
            conn.close()

    def stop(self):
        self.stopping.set()
        for w in self.workers:
            w.join(120 * SLOW)


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else 0.0


def nginx_log(path):
    """rid -> (client status, [upstream statuses])."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.search(r'" (\d{3}) \d+ rid=(\S+) upstream=.* upstream_status=(.*?) rt=', line)
            if m:
                ups = [s.strip() for s in re.split(r"[,:]", m.group(3)) if s.strip()]
                out[m.group(2)] = (int(m.group(1)), ups)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.environ.get("CHAOS_MODEL"))
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every phase's duration")
    ap.add_argument("--out", default=os.path.join(ROOT, BUILD, "chaos", "result.json"))
    a = ap.parse_args()
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        print("NOTICE: nginx not installed; skipping the chaos test (apt-get install nginx)")
        return 0
    # D0 by default: a job lasts long enough that a SIGKILL or SIGTERM finds some in
    # flight. The sanitizer build is several times slower: the tiny model there.
    model = a.model or (TINY if SANITIZED or not os.path.exists(D0) else D0)
    frames = sorted(os.path.join(FRAMES, f) for f in os.listdir(FRAMES) if f.endswith(".jpg")) \
        if os.path.isdir(FRAMES) else []
    images = [open(p, "rb").read() for p in (frames[:8] or [os.path.join(ROOT, "tests", "fixtures", "input.jpg")])]
    work = tempfile.mkdtemp(prefix="effdetd-chaos-")
    ports = free_ports(4)
    nginx_port, rports = ports[0], ports[1:]
    # Replica 3 serves a copy of the model, so its SIGHUP loads and warms up a new file.
    hup_model = os.path.join(work, "hup.safetensors")
    shutil.copy(model, hup_model)
    args = ["--workers", "1", "--queue-size", "8", "--drain-timeout-ms", "30000"]
    replicas = [Replica(i + 1, p, model if i < 2 else hup_model, work, args) for i, p in enumerate(rports)]
    ngx_dir = os.path.join(work, "nginx")
    cmd = subprocess.run([os.path.join(ROOT, "deploy", "cluster.sh"), "conf", ngx_dir,
                          "127.0.0.1:%d" % nginx_port] + [str(p) for p in rports],
                         capture_output=True, text=True, check=True).stdout.strip()
    nginx = None
    load = None
    failures = []
    phases = []
    t_phase = {}

    def phase(name):
        load.phase = name
        phases.append(name)
        t_phase[name] = time.monotonic()
        print("-- %s" % name, flush=True)

    def hold(seconds):
        time.sleep(seconds * a.scale)

    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        nginx = subprocess.Popen(shlex.split(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while True:
            try:
                if get(nginx_port, "/nginx-healthz")[0] == 200:
                    break
            except OSError:
                pass
            if nginx.poll() is not None or time.time() > deadline:
                raise AssertionError("nginx did not start: %s" % nginx.stderr.read().decode())
            time.sleep(0.05)
        a_, b_, c_ = replicas
        load = Load(nginx_port, images, a.threads)
        phase("steady")
        load.start()
        hold(5)

        phase("sigkill")
        a_.wait_busy()
        a_.proc.send_signal(signal.SIGKILL)
        a_.proc.wait()
        hold(3)
        a_.start()
        a_.wait_ready()
        hold(2)

        phase("sigterm")
        b_.wait_busy()
        rc = b_.stop(signal.SIGTERM)
        if rc != 0:
            failures.append("replica 2 exited %s after SIGTERM" % rc)
        b_.start()
        b_.wait_ready()
        hold(2)

        phase("sighup")
        tmp = hup_model + ".new"
        shutil.copy(model, tmp)
        os.rename(tmp, hup_model)  # a new inode: the reload loads and warms it up
        before = c_.log().count("reloaded:")
        c_.wait_busy()
        c_.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60 * SLOW
        while c_.log().count("reloaded:") == before and time.time() < deadline:
            time.sleep(0.05)
        if c_.log().count("reloaded:") == before:
            failures.append("replica 3 did not reload")
        hold(2)

        # Every replica full: THREADS x 8 clients for a moment, more than the replicas'
        # workers and queues hold. Only here may 503s come back.
        phase("overload")
        burst = Load(nginx_port, images, 7 * a.threads)
        burst.phase = "overload"
        burst.start()
        hold(3)
        burst.stop()
        load.results.extend(burst.results)
        # nginx may have marked every replica down for their 503s (max_fails): it
        # answers 503 itself until fail_timeout (2 s) has passed. Still "overload".
        time.sleep(3)

        phase("rolling")
        for r in replicas:
            r.wait_busy()
            rc = r.stop(signal.SIGTERM)
            if rc != 0:
                failures.append("replica %d exited %s after SIGTERM (rolling)" % (r.index, rc))
            r.start()
            r.wait_ready()
            hold(1)
        hold(1)
    finally:
        if load:
            load.stop()
        if nginx:
            nginx.send_signal(signal.SIGQUIT)  # graceful: flushes the access log
            try:
                nginx.wait(20)
            except subprocess.TimeoutExpired:
                nginx.kill()
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                rc = r.stop(signal.SIGTERM)
                if rc != 0:
                    failures.append("replica %d exited %s at the end" % (r.index, rc))

    # ------------------------------------------------------------------ verdict
    res = load.results
    ngx = nginx_log(os.path.join(ngx_dir, "logs", "access.log"))
    served = {}
    for r in replicas:
        for m in re.finditer(r"POST /detect (\d{3}) .* rid=(\S+)", r.log()):
            served.setdefault(m.group(2), []).append(int(m.group(1)))
    summary = {"model": os.path.basename(os.path.dirname(model)) if model == D0 else os.path.basename(model),
               "threads": a.threads, "replicas": 3, "workers_per_replica": 1, "phases": []}
    retried = 0
    for name in phases:
        rows = [x for x in res if x[0] == name]
        counts = {}
        for _, outcome, _, _ in rows:
            counts[str(outcome)] = counts.get(str(outcome), 0) + 1
        lat = [x[2] for x in rows if x[1] == 200]
        chains = [" ".join(ngx[x[3]][1]) for x in rows if len(ngx.get(x[3], (0, []))[1]) > 1]
        tried_twice = len(chains)
        retried += tried_twice
        summary["phases"].append({"phase": name, "requests": len(rows), "status": counts,
                                  "retried_by_nginx": tried_twice,
                                  "retry_upstream_statuses": sorted(set(chains)),
                                  "p50_ms": round(1e3 * percentile(lat, 0.5), 1),
                                  "p99_ms": round(1e3 * percentile(lat, 0.99), 1)})
    for ph, outcome, _, rid in res:
        if outcome == 200:
            if 200 not in served.get(rid, []):
                failures.append("%s: rid %s got 200 but no replica logged it" % (ph, rid))
        elif outcome == 503:
            # From full replicas: every one nginx tried said 503. Under overload nginx
            # may also have marked them all down (max_fails counts their 503s): its own
            # "no live upstreams" (502 in $upstream_status), which the config turns
            # into 503 + Retry-After.
            ups = ngx.get(rid, (0, []))[1]
            if ph == "overload":
                ok = ups and all(u in ("503", "502") for u in ups) and ups[-1] in ("503", "502")
            else:
                ok = ups and all(u == "503" for u in ups) and len(ups) == 3
            if not ok:
                failures.append("%s: rid %s got 503 not from full replicas (upstream %s)" % (ph, rid, ups))
        else:
            failures.append("%s: rid %s: %s (nginx upstream %s)" % (ph, rid, outcome, ngx.get(rid)))
    missing = [rid for _, _, _, rid in res if rid not in ngx]
    if missing:
        failures.append("%d request(s) missing from nginx's access log" % len(missing))
    # A request is filed under the phase it started in: one killed at the SIGKILL may
    # have started in "steady".
    kill_retries = sum(1 for p in summary["phases"] if p["phase"] in ("steady", "sigkill")
                       for ch in p["retry_upstream_statuses"] if "502" in ch.split())
    if kill_retries == 0:
        # With D0 a job takes ~100+ ms and the kill waits for one to run: a retry must
        # show. The tiny model's jobs may all finish between the check and the kill.
        msg = "sigkill: no request was retried on another replica (nothing in flight was killed?)"
        if model == D0:
            failures.append(msg)
        else:
            print("NOTICE:", msg)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
    print("%-8s %8s %8s %8s  %s" % ("phase", "requests", "p50 ms", "p99 ms", "status counts (retried by nginx)"))
    for p in summary["phases"]:
        print("%-8s %8d %8.1f %8.1f  %s (%d)" % (p["phase"], p["requests"], p["p50_ms"], p["p99_ms"],
                                                 json.dumps(p["status"], sort_keys=True), p["retried_by_nginx"]))
        if p["retry_upstream_statuses"]:
            print("%-8s retried requests' upstream statuses: %s" % ("", ", ".join(p["retry_upstream_statuses"])))
    print("chaos: %d requests, model %s, %d client threads" % (len(res), summary["model"], a.threads))
    if failures:
        for x in failures[:30]:
            print("FAIL:", x)
        print("logs kept in", work)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("chaos: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
