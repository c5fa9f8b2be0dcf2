#!/usr/bin/env bash
# deploy/capacity.sh — what one replica serves: requests/s, p50/p99, CPU cores used and
# peak RSS of effdetd at saturation, for each model and workers x threads_per_worker
# setting. docs/scaling.md's capacity model comes from this.
#
#   deploy/capacity.sh [--duration S] [--connections C] [--settings "1x1 2x1 1x2"] MODEL...
#
# Each setting WxT runs effdetd with W workers of T threads, C wrk connections (default
# 2 per worker + 2, enough to keep every worker busy) posting the frames of
# ../shared/reference/frames round robin. On a shared machine every figure is
# wall-clock: run it when nothing else does, or compare settings within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
EFFDETD=${EFFDETD:-$BUILD/effdetd}
images=${IMAGES:-../shared/reference/frames}
duration=10
conns=""
settings="1x1 2x1 1x2"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    -*) echo "usage: $0 [--duration S] [--connections C] [--settings \"1x1 2x1\"] MODEL..." >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [options] MODEL.safetensors..." >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x "$EFFDETD" ] || { echo "$EFFDETD is missing (make)" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
# CPU seconds (user + system) of a process so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

printf '%-22s %-4s %8s %8s %8s %7s %8s %8s\n' model WxT "req/s" "p50 ms" "p99 ms" "cores" "req/s/c" "RSS MiB"
for model in "$@"; do
  name=$(basename "$model" .safetensors)
  for s in $settings; do
    w=${s%x*} t=${s#*x}
    c=${conns:-$((2 * w + 2))}
    rm -f "$tmp/port"
    "$EFFDETD" --model "$model" --listen 127.0.0.1:0 --port-file "$tmp/port" --workers "$w" \
      --threads-per-worker "$t" --queue-size 64 --deadline-ms 600000 --access-log no >"$tmp/effdetd.log" 2>&1 &
    pid=$!
    for _ in $(seq 1200); do
      [ -s "$tmp/port" ] && curl -fs -o /dev/null "http://127.0.0.1:$(cat "$tmp/port")/readyz" && break
      sleep 0.1
    done
    port=$(cat "$tmp/port")
    # One pass over the images first: page faults and first-touch allocations out of the figures.
    wrk -t1 -c"$c" -d2s -s bench/post-images.lua "http://127.0.0.1:$port" -- "$images"/*.jpg >/dev/null
    c0=$(cpu_s "$pid")
    t0=$(date +%s.%N)
    wrk -t1 -c"$c" -d"${duration}s" --latency --timeout 60s -s bench/post-images.lua "http://127.0.0.1:$port" \
      -- "$images"/*.jpg >"$tmp/wrk.txt"
    c1=$(cpu_s "$pid")
    t1=$(date +%s.%N)
    rss=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    kill "$pid"
    wait "$pid" || true
    pid=
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.txt")
    ms() { awk -v q="$1" '$1 == q { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
      else if (v ~ /ms$/) sub(/ms$/, "", v); else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; print v }' "$tmp/wrk.txt"; }
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.txt")
    cores=$(awk -v a="$c0" -v b="$c1" -v x="$t0" -v y="$t1" 'BEGIN {printf "%.2f", (b - a) / (y - x)}')
    printf '%-22s %-4s %8.2f %8.1f %8.1f %7s %8.2f %8s%s\n' "$name" "$s" "$rps" "$(ms 50%)" "$(ms 99%)" "$cores" \
      "$(awk -v r="$rps" -v c="$cores" 'BEGIN {print (c > 0 ? r / c : 0)}')" "$rss" \
      "${non2xx:+  (non-2xx: $non2xx)}"
  done
done
