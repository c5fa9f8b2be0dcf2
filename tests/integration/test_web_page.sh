#!/usr/bin/env bash
# End-to-end test of the built-in web page (issue 5) in a real browser: starts effdetd on
# loopback (ephemeral port) with the d0 fixture weights, then drives Debian's chromium
# headless with playwright-core (tests/integration/browser/test_web_page.js; docs/web.md explains it).
#
#   EFFDET_SKIP_BROWSER=1       skip this test (loudly) - the only way it is ever skipped
#   EFFDET_SKIP_SHARED=1        skip it when ../shared/reference is absent (as tests/unit/testutil.c)
#   EFFDET_SHARED=dir           the shared fixtures elsewhere
#   EFFDET_UPDATE_SCREENSHOT=1  also copy the screenshot to docs/screenshot.png
#   CHROMIUM=path               another chromium binary (default /usr/bin/chromium)
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/../.."

fail() {
    echo "*** browser test: $* ***" >&2
    echo "0 passed, 1 failed"
    exit 1
}

if [ "${EFFDET_SKIP_BROWSER:-}" = 1 ]; then
    echo
    echo "*** EFFDET_SKIP_BROWSER=1: SKIPPING the browser test of the web page ***"
    echo
    echo "0 passed, 0 failed"
    exit 0
fi

SHARED=${EFFDET_SHARED:-../shared/reference}
if [ ! -d "$SHARED" ]; then
    echo
    echo "*** shared reference fixtures NOT FOUND at $SHARED ***"
    if [ "${EFFDET_SKIP_SHARED:-}" = 1 ]; then
        echo "*** EFFDET_SKIP_SHARED=1: skipping the browser test, which needs them ***"
        echo
        echo "0 passed, 0 failed"
        exit 0
    fi
    fail "shared fixtures missing at $SHARED (set EFFDET_SHARED, or EFFDET_SKIP_SHARED=1 to skip)"
fi
MODEL=$SHARED/d0/weights.safetensors
TINY=$SHARED/tiny/weights.safetensors
IMAGE=$SHARED/images/coco_000000000257.jpg
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
HINT="install them (apt-get install chromium nodejs npm) or set EFFDET_SKIP_BROWSER=1 to skip"

[ -x "$BUILD/effdetd" ] || fail "$BUILD/effdetd not built (make $BUILD/effdetd)"
[ -f "$MODEL" ] || fail "model $MODEL missing"
[ -f "$TINY" ] || fail "model $TINY missing"
[ -f "$IMAGE" ] || fail "image $IMAGE missing"
command -v node >/dev/null || fail "node not found: $HINT"
[ -x "$CHROMIUM" ] || fail "chromium not found at $CHROMIUM: $HINT"

# playwright-core from npm, at the version pinned in tests/integration/browser/package-lock.json.
if [ ! -f tests/integration/browser/node_modules/playwright-core/package.json ]; then
    command -v npm >/dev/null || fail "npm not found: $HINT"
    echo "installing playwright-core into tests/integration/browser/node_modules (npm)"
    (cd tests/integration/browser && npm install --no-audit --no-fund --loglevel=error) || fail "npm install failed (it needs the npm registry once; EFFDET_SKIP_BROWSER=1 skips this test)"
fi

tmp=$(mktemp -d)
daemon_pids=()
cleanup() {
    for pid in "${daemon_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start_daemon NAME ARGS...: starts effdetd on an ephemeral loopback port with its log in
# $tmp/NAME.log, waits until it listens (loading d0 and the warm-up inference take a few
# seconds, longer under ASan) and prints the port. One worker with one thread: the
# machine is shared, and the test is about the page.
start_daemon() {
    local name=$1
    shift
    "$BUILD/effdetd" --listen 127.0.0.1:0 --port-file "$tmp/$name.port" --workers 1 \
        --threads-per-worker 1 "$@" >"$tmp/$name.log" 2>&1 &
    local pid=$!
    daemon_pids+=("$pid")
    for _ in $(seq 1 600); do
        if [ -s "$tmp/$name.port" ]; then
            echo "effdetd ($name) on 127.0.0.1:$(cat "$tmp/$name.port") (pid $pid, $BUILD/effdetd)" >&2
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "--- effdetd ($name) log ---" >&2
    cat "$tmp/$name.log" >&2
    fail "effdetd ($name) did not start listening"
}

# The main daemon has two models, so that the page's model menu has a choice: d0 (the
# default) and the tiny 4-class fixture model. A second one wants an API key.
mkdir "$tmp/models"
ln -s "$(realpath "$MODEL")" "$tmp/models/d0.safetensors"
ln -s "$(realpath "$TINY")" "$tmp/models/tiny.safetensors"
start_daemon main --models-dir "$tmp/models" --default-model d0
key=browser-test-key-$RANDOM$RANDOM
start_daemon keyed --model "$TINY" --api-key "$key"
# The shipped demo model, as `make run` serves it offline: banner and one-click samples.
DEMO=models/shapes.safetensors
[ -f "$DEMO" ] || fail "demo model $DEMO missing"
start_daemon demo --model "$DEMO"
daemon_names=(main keyed demo)

out_dir=$BUILD/browser
shot_args=()
if [ "${EFFDET_UPDATE_SCREENSHOT:-}" = 1 ]; then shot_args=(--screenshot docs/screenshot.png); fi
CHROMIUM=$CHROMIUM node tests/integration/browser/test_web_page.js --url "http://127.0.0.1:$(cat "$tmp/main.port")" \
    --keyed-url "http://127.0.0.1:$(cat "$tmp/keyed.port")" --api-key "$key" \
    --demo-url "http://127.0.0.1:$(cat "$tmp/demo.port")" \
    --image "$IMAGE" --out-dir "$out_dir" "${shot_args[@]}"
rc=$?
echo "screenshot: $out_dir/screenshot.png"

# Each daemon must have survived, and must stop cleanly: under ASan/UBSan a memory error or
# leak on any path the page took makes its exit status non-zero.
for i in "${!daemon_pids[@]}"; do
    pid=${daemon_pids[$i]}
    name=${daemon_names[$i]}
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "*** effdetd ($name) died during the test ***" >&2
        rc=1
    else
        kill -TERM "$pid"
        wait "$pid"
        daemon_rc=$?
        if [ "$daemon_rc" -ne 0 ]; then
            echo "*** effdetd ($name) exited with status $daemon_rc after SIGTERM ***" >&2
            rc=1
        fi
    fi
    if [ "$rc" -ne 0 ]; then
        echo "--- effdetd ($name) log (last 30 lines) ---" >&2
        tail -n 30 "$tmp/$name.log" >&2
    fi
done
daemon_pids=() # stopped and reaped: nothing left for cleanup to signal
exit "$rc"
