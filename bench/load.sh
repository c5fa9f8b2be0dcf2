#!/usr/bin/env bash
# bench/load.sh — effdetd under load with wrk: throughput and p50/p99 latency at 1, 2,
# 4 and 8 connections, with 1 worker and with 2 workers, against the raw engine time
# of the same images (effdet-bench, same model, 1 thread).
#
#   bench/load.sh [--model W.safetensors] [--images DIR] [--duration S] [--workers "1 2"]
#
# Defaults: the d0 fixture weights and the 24 frames of ../shared/reference. Each
# request posts the next frame (round robin) as image/jpeg to POST /detect. On a shared
# machine run it when nothing else is: every figure is wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
model=../shared/reference/d0/weights.safetensors
images=../shared/reference/frames
duration=10
workers_list="1 2"
conns_list="1 2 4 8"
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --workers) workers_list=$2; shift 2 ;;
    --connections) conns_list=$2; shift 2 ;;
    *) echo "usage: $0 [--model W] [--images DIR] [--duration S] [--workers \"1 2\"] [--connections \"1 2 4 8\"]" >&2; exit 2 ;;
  esac
done
# EFFDETD, EFFDET_BENCH and WRK name prebuilt binaries (e.g. on a machine without the
# build dependencies); by default they are built here.
WRK=${WRK:-wrk}
command -v "$WRK" >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
if [ -z "${EFFDETD:-}" ]; then
  make --no-print-directory -s "$BUILD/effdetd" "$BUILD/effdet-bench"
fi
EFFDETD=${EFFDETD:-$BUILD/effdetd}
EFFDET_BENCH=${EFFDET_BENCH:-$BUILD/effdet-bench}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

files=$(ls "$images"/*.jpg | sort)
# GET /readyz answers 200 (bash's /dev/tcp: no curl needed).
ready() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
  read -r line <&3 || true
  exec 3<&-
  case "$line" in *" 200 "*) return 0 ;; *) return 1 ;; esac
}

# Raw engine: median end-to-end time (decode + letterbox + forward + post-process) of
# the same photos, one thread, no HTTP.
"$EFFDET_BENCH" --model "$model" --runs 3 --warmup 1 --threads 1 --images "$images" >"$tmp/engine.txt" 2>&1
raw=$(grep -E '\.jpg .* total ' "$tmp/engine.txt" | sed -n 's/.*total *\([0-9.]*\) ms.*/\1/p' | sort -n |
  awk '{v[NR]=$1} END {if (NR) print (NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2)}')
echo "raw engine (effdet-bench, 1 thread, median over $(echo "$files" | wc -l) images): ${raw} ms/image"
printf '\n%-8s %-6s %10s %9s %9s %8s %9s\n' workers conns "req/s" "p50 ms" "p99 ms" non-2xx "p50/raw"
for w in $workers_list; do
  rm -f "$tmp/port"
  "$EFFDETD" --model "$model" --listen 127.0.0.1:0 --port-file "$tmp/port" --workers "$w" \
    --queue-size 64 --access-log no >"$tmp/effdetd-$w.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do [ -s "$tmp/port" ] && ready "$(cat "$tmp/port")" && break; sleep 0.1; done
  port=$(cat "$tmp/port")
  for c in $conns_list; do
    t=$((c < 2 ? 1 : 2))
    # shellcheck disable=SC2086
    "$WRK" -t "$t" -c "$c" -d "${duration}s" --latency -s bench/post-images.lua "http://127.0.0.1:$port" -- $files >"$tmp/wrk.txt" 2>&1
    rps=$(awk '/^Requests\/sec/ {print $2}' "$tmp/wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$tmp/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$tmp/wrk.txt")
    bad=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.txt")
    ms() { case "$1" in *us) echo "${1%us}" | awk '{print $1/1000}' ;; *ms) echo "${1%ms}" ;; *s) echo "${1%s}" | awk '{print $1*1000}' ;; *) echo 0 ;; esac; }
    p50ms=$(ms "$p50"); p99ms=$(ms "$p99")
    ratio=$(awk -v a="$p50ms" -v b="$raw" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
    printf '%-8s %-6s %10s %9s %9s %8s %9s\n' "$w" "$c" "$rps" "$p50ms" "$p99ms" "${bad:-0}" "$ratio"
    echo "$w $c $rps" >>"$tmp/rps.txt"
  done
  kill -TERM "$pid"; wait "$pid" || true; pid=
done
echo
awk '{best[$1] = ($3 > best[$1] ? $3 : best[$1])} END {
  if (best[1] > 0 && best[2] > 0) printf "best throughput: 1 worker %.2f req/s, 2 workers %.2f req/s: %.2fx\n", best[1], best[2], best[2] / best[1]
}' "$tmp/rps.txt"
