#!/usr/bin/env bash
# `make run` without a network: the COCO fetch fails, so it must say so and serve the
# shipped demo model (models/shapes.safetensors). The failure is made deterministic by
# pointing the fetch at a checkpoint that does not exist (FETCH_FROM), in an empty
# MODELS_DIR, so that this test never downloads anything even where a network exists.
# Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
# make run rebuilds $BUILD/effdetd when it is out of date: with the same flags it was built
# with (run-tests.sh passes BUILD only; build/san is the Makefile's SANITIZE build).
if [ -z "${SANITIZE:-}" ] && [ "$BUILD" = build/san ]; then SANITIZE=address,undefined; fi
tmp=$(mktemp -d)
pgid=""
cleanup() {
    [ -n "$pgid" ] && kill -TERM -- "-$pgid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "*** make run test: $* ***" >&2
    echo "--- make run output ---" >&2
    cat "$tmp/run.log" >&2
    echo "0 passed, 1 failed"
    exit 1
}

# its own process group, so that make, its shell and effdetd stop together
setsid make --no-print-directory run BUILD="$BUILD" SANITIZE="${SANITIZE:-}" MODELS_DIR="$tmp/models" FETCH_FROM="$tmp/none-00000000.pth" \
    RUN_LISTEN=127.0.0.1:0 RUN_ARGS="--port-file $tmp/port --workers 1 --threads-per-worker 1" >"$tmp/run.log" 2>&1 &
pgid=$!
for _ in $(seq 1 900); do
    [ -s "$tmp/port" ] && break
    kill -0 "$pgid" 2>/dev/null || fail "make run exited before listening"
    sleep 0.2
done
[ -s "$tmp/port" ] || fail "effdetd did not start listening"
url="http://127.0.0.1:$(cat "$tmp/port")"
# Listening comes before the model is loaded and warmed up: wait for /readyz, then ask.
python3 - "$url" <<'PY' || fail "effdetd did not serve the demo model"
import json, sys, time, urllib.request
url = sys.argv[1]
for _ in range(900):
    try:
        if urllib.request.urlopen(url + "/readyz", timeout=5).status == 200:
            break
    except OSError:
        time.sleep(0.2)
d = json.load(urllib.request.urlopen(url + "/v1/models", timeout=5))
assert d["default"] == "shapes", d
(m,) = d["models"]
assert m["classes"] == ["circle", "square", "triangle"], m
PY
grep -q "could not fetch the COCO model (no network?): serving the DEMO model models/shapes.safetensors" "$tmp/run.log" ||
    fail "no log line saying the demo model is served"
grep -q "circles, squares and triangles" "$tmp/run.log" || fail "the log does not say what the demo model finds"
[ ! -e "$tmp/models/tf_efficientdet_d0.safetensors" ] || fail "a COCO model appeared"
echo "make run offline: serves the demo model and says so"
echo "1 passed, 0 failed"
