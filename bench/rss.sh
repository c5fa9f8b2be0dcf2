#!/usr/bin/env bash
# bench/rss.sh — effdetd's resident memory after N requests: starts the daemon (loopback,
# port 0), posts the JPEGs of a directory round robin to POST /detect from C concurrent
# clients until N requests have been answered 200, and prints VmRSS (and the peak,
# VmHWM) after start-up and warm-up, after the first round of images, and after all N.
#
#   bench/rss.sh [--model W.safetensors] [--images DIR] [--requests N] [--workers W]
#                [--threads-per-worker T] [--clients C] [-- EXTRA effdetd FLAGS]
#
# Defaults: the d0 fixture weights, ../shared/reference/images, 100 requests, 2 workers,
# 1 thread each, 2 clients. The issue's target (issue 9): D0 with 2 workers <= 100 MB
# after 100 requests. Extra flags go to effdetd (e.g. -- --allow-dct-scaling yes).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
model=../shared/reference/d0/weights.safetensors
images=../shared/reference/images
requests=100
workers=2
threads=1
clients=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --threads-per-worker) threads=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--model W] [--images DIR] [--requests N] [--workers W] [--threads-per-worker T] [--clients C] [-- effdetd flags]" >&2; exit 2 ;;
  esac
done
[ -n "${EFFDETD:-}" ] || make --no-print-directory -s "$BUILD/effdetd"
EFFDETD=${EFFDETD:-$BUILD/effdetd}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$EFFDETD" --listen 127.0.0.1:0 --port-file "$tmp/port" --model "$model" --workers "$workers" \
  --threads-per-worker "$threads" --access-log no "$@" 2>"$tmp/log" &
pid=$!
RSS_PID=$pid RSS_DIR=$tmp RSS_IMAGES=$images RSS_N=$requests RSS_CLIENTS=$clients \
RSS_LABEL="$(basename "$model") workers=$workers threads-per-worker=$threads clients=$clients" python3 - <<'PY'
import glob, http.client, os, sys, threading, time

pid, tmp = int(os.environ["RSS_PID"]), os.environ["RSS_DIR"]
n, clients = int(os.environ["RSS_N"]), int(os.environ["RSS_CLIENTS"])
files = sorted(glob.glob(os.path.join(os.environ["RSS_IMAGES"], "*.jpg")))
if not files:
    sys.exit("rss.sh: no *.jpg in " + os.environ["RSS_IMAGES"])
images = [open(f, "rb").read() for f in files]

def status_kb(field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit("rss.sh: no %s for pid %d" % (field, pid))

port = None
for _ in range(600):
    try:
        port = int(open(tmp + "/port").read())
        break
    except (OSError, ValueError):
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            sys.exit("effdetd exited: " + open(tmp + "/log").read())
        time.sleep(0.05)
else:
    sys.exit("effdetd did not start: " + open(tmp + "/log").read())

def ready():
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/readyz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False

for _ in range(1200):
    if ready():
        break
    time.sleep(0.1)
else:
    sys.exit("effdetd never became ready: " + open(tmp + "/log").read())

def report(what):
    print("%-34s VmRSS %7.1f MB   VmHWM %7.1f MB" % (what, status_kb("VmRSS") / 1024, status_kb("VmHWM") / 1024),
          flush=True)

print("effdetd " + os.environ["RSS_LABEL"] + ", %d images from %s" % (len(images), os.environ["RSS_IMAGES"]))
report("ready (after warm-up)")
lock = threading.Lock()
state = {"next": 0, "ok": 0, "bad": []}

def client():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while True:
        with lock:
            i = state["next"]
            if i >= n:
                break
            state["next"] += 1
        c.request("POST", "/detect", body=images[i % len(images)], headers={"Content-Type": "image/jpeg"})
        r = c.getresponse()
        r.read()
        with lock:
            if r.status == 200:
                state["ok"] += 1
            else:
                state["bad"].append(r.status)
        if i == len(images) - 1:
            report("after %d requests (one round)" % len(images))
    c.close()

threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
report("after %d requests" % n)
if state["bad"]:
    sys.exit("rss.sh: %d requests failed (statuses %s)" % (len(state["bad"]), sorted(set(state["bad"]))))
PY
