#!/usr/bin/env bash
# bench/soak.sh — effdetd under a bounded mix of good, bad and slow clients, reloads
# and load, on loopback only. Reports RSS, open descriptors and the status counts at
# the start and the end (and the daemon's own counters), and fails when the daemon
# died, stopped answering /healthz, or leaked descriptors.
#
#   bench/soak.sh [--model W.safetensors] [--duration S] [--workers N]
#
# Defaults: tests/fixtures/weights.safetensors (the tiny model; use the d0 fixture for
# realistic memory figures), 60 s, 2 workers. Every loop is bounded by the duration.
# Clients, all at once:
#   good      4 threads posting valid JPEGs on keep-alive connections (/detect and the
#             DeepStack route, raw and multipart)
#   bad       1 thread: truncated and garbage JPEGs, bad parameters, wrong content
#             types, conflicting Content-Length, CONNECT, HEAD, unknown routes
#   slow      1 thread keeping 20 sockets that send one header byte every 0.5 s, and
#             uploads that stall half-way (header_timeout_s / min_body_rate close them)
#   reloads   SIGHUP every 5 s, the model file touched (a new model each time)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
model=tests/fixtures/weights.safetensors
duration=60
workers=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) echo "usage: $0 [--model W] [--duration S] [--workers N]" >&2; exit 2 ;;
  esac
done
[ -n "${EFFDETD:-}" ] || make --no-print-directory -s "$BUILD/effdetd"
EFFDETD=${EFFDETD:-$BUILD/effdetd}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cp "$model" "$tmp/model.safetensors"
"$EFFDETD" --listen 127.0.0.1:0 --port-file "$tmp/port" --model "$tmp/model.safetensors" \
  --workers "$workers" --access-log no --header-timeout-s 2 --min-body-rate 100k \
  --body-budget-bytes 64m --max-connections 64 2>"$tmp/log" &
pid=$!
SOAK_PID=$pid SOAK_DIR=$tmp SOAK_SECONDS=$duration python3 - <<'EOF'
import http.client, os, random, signal, socket, sys, threading, time
sys.path.insert(0, "tests/integration/daemon")
from harness import flat_jpeg, multipart

pid, tmp, secs = int(os.environ["SOAK_PID"]), os.environ["SOAK_DIR"], float(os.environ["SOAK_SECONDS"])
for _ in range(600):
    try:
        port = int(open(tmp + "/port").read())
        break
    except (OSError, ValueError):
        time.sleep(0.05)
else:
    sys.exit("effdetd did not start: " + open(tmp + "/log").read())

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()

for _ in range(600):
    try:
        if get("/readyz")[0] == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)

def snapshot():
    rss = next(int(l.split()[1]) for l in open("/proc/%d/status" % pid) if l.startswith("VmRSS"))
    fds = len(os.listdir("/proc/%d/fd" % pid))
    metrics = {}
    for line in get("/metrics")[1].decode().splitlines():
        if line.startswith(("effdetd_connections_dropped_total", "effdetd_body_budget_rejected_total",
                            "effdetd_reloads_total", "effdetd_rejected_busy_total", "effdetd_client_disconnects")):
            k, v = line.rsplit(" ", 1)
            metrics[k] = float(v)
    return rss, fds, metrics

start = snapshot()
t_end = time.time() + secs
counts, lock = {}, threading.Lock()
def count(kind, status):
    with lock:
        counts[(kind, status)] = counts.get((kind, status), 0) + 1

image = flat_jpeg(640, 480)
body, ctype = multipart([("min_confidence", "0.3")], [("image", image)])

def good(i):
    c = None
    while time.time() < t_end:
        try:
            c = c or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if i % 2:
                c.request("POST", "/detect?threshold=0.2", image, {"Content-Type": "image/jpeg"})
            else:
                c.request("POST", "/v1/vision/detection", body, {"Content-Type": ctype})
            r = c.getresponse()
            r.read()
            count("good", r.status)
            if r.getheader("Connection", "").lower() == "close":
                c.close(); c = None
        except (OSError, http.client.HTTPException) as e:
            count("good", type(e).__name__)
            if c:
                c.close()
            c = None

BAD = [b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % 100 + image[:100],
       b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nhello",
       b"POST /detect?threshold=7 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
       b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nabcd",
       b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
       b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
       b"GET /nope\x01\x1b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"\x00\xff garbage\r\n\r\n"]

def bad():
    while time.time() < t_end:
        req = random.choice(BAD)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(req)
            reply = s.recv(64)
            count("bad", reply.split(b" ")[1].decode() if reply.startswith(b"HTTP/1.1 ") else "closed")
            s.close()
        except OSError as e:
            count("bad", type(e).__name__)

def slow():
    socks = []
    while time.time() < t_end:
        while len(socks) < 20:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        # one stalled upload each round
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 1000)
            socks.append(s)
        except OSError:
            pass
        for s in list(socks):
            try:
                s.send(b"X")
            except OSError:
                count("slow", "closed by server")
                socks.remove(s)
                s.close()
        time.sleep(0.5)
    for s in socks:
        s.close()

def reloads():
    n = 0
    while time.time() < t_end - 2:
        time.sleep(5)
        os.utime(tmp + "/model.safetensors")
        os.kill(pid, signal.SIGHUP)
        n += 1
    count("reload", "sent %d" % n)

threads = [threading.Thread(target=good, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=bad), threading.Thread(target=slow), threading.Thread(target=reloads)]
for t in threads:
    t.start()
health_fail = 0
while time.time() < t_end:  # /healthz must answer throughout
    try:
        health_fail += get("/healthz")[0] != 200
    except OSError:
        health_fail += 1
    time.sleep(1)
for t in threads:
    t.join(60)
time.sleep(3)  # header_timeout_s: the slow sockets are closed by now
end = snapshot()

def show(name, snap):
    rss, fds, m = snap
    print("%-5s RSS %7.1f MB  fds %4d  %s" % (name, rss / 1024, fds,
          "  ".join("%s=%d" % (k.replace("effdetd_", ""), v) for k, v in sorted(m.items()))))
print("soak: %.0f s on loopback, effdetd pid %d" % (secs, pid))
show("start", start)
show("end", end)
print("client status counts:")
for (kind, status), n in sorted(counts.items(), key=str):
    print("  %-6s %-22s %d" % (kind, status, n))
print("healthz failures during the run: %d" % health_fail)
ok = os.path.exists("/proc/%d" % pid) and health_fail == 0 and end[1] <= start[1] + 4
print("soak: %s" % ("OK" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
