#!/usr/bin/env bash
# D0 forward: libeffdet vs ONNX Runtime (onnxruntime-node, same graph and weights) on the
# same input tensors: the fixture image (d0/input.f32), a black frame (every pixel 0,
# normalised like the engine's preprocessing) and uniform noise in [-2, 2] (fixed
# seed), at 1 and 2 threads. Both peers read the same .f32 files (made once by
# effdet-bench --make-inputs in build/bench-inputs/).
#
#   bench/vs-ort.sh [RUNS] [ROUNDS]     (default 10 runs after 3 warm-up runs, 3 rounds)
#   BF16=1 bench/vs-ort.sh ...          also ours in the bf16 precision mode (a third peer,
#                                       run in the same rounds; needs AVX512_BF16), with
#                                       tables bf16 / ORT and bf16 / fp32
#
# The machine may be shared: every round runs each (input, threads) pair for both peers
# back to back, so load changes hit both alike; a figure is the median over the rounds
# of each run's median, and the ratio is ours / ORT (< 1: we are faster), per round
# and its median. A second table gives the same for CPU time (the process's, every
# thread): at 1 thread it is what the pass costs whatever the load (time spent waiting
# for a core is not in it); at 2 threads it includes the pools' spin-waits, so it is not
# a speed figure there. EFFDET_ISA applies to ours as usual (the level is printed).
#
# onnxruntime-node is installed under bench/node_modules on first use. Its install script
# would download GPU binaries from an unreachable host, so it is skipped; the bundled CPU
# library is what runs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
ROUNDS=${2:-3}
SHARED=${EFFDET_SHARED:-../shared/reference}
MODEL=$SHARED/d0/weights.safetensors
ONNX=$SHARED/d0/d0.onnx
FIXTURE=$SHARED/d0/input.f32
for f in "$MODEL" "$ONNX" "$FIXTURE"; do
  [ -f "$f" ] || { echo "vs-ort: $f not found (set EFFDET_SHARED)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "vs-ort: node not found (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -d bench/node_modules/onnxruntime-node ]; then
  (cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install --ignore-scripts --no-audit --no-fund --silent)
fi
make -s build/effdet-bench build/effdet-detect
INPUTS=build/bench-inputs
mkdir -p "$INPUTS"
build/effdet-bench --model "$MODEL" --make-inputs "$INPUTS" >/dev/null

cpu=$(build/effdet-detect --cpu | tr -d '\n')
level=$(echo "$cpu" | sed -n 's/.*"selected":"\([a-z0-9]*\)".*/\1/p')
brand=$(echo "$cpu" | sed -n 's/.*"brand":"\([^"]*\)".*/\1/p')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($brand)," \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, effdet kernels: $level, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$RUNS runs per measurement, $ROUNDS interleaved rounds; medians in ms"

declare -A OURS ORT OURS_CPU ORT_CPU BF BF_CPU
names=(fixture black noise)
declare -A FILE=([fixture]=$FIXTURE [black]=$INPUTS/black.f32 [noise]=$INPUTS/noise.f32)
for r in $(seq "$ROUNDS"); do
  for t in 1 2; do
    for name in "${names[@]}"; do
      a=$(build/effdet-bench --model "$MODEL" --runs "$RUNS" --threads "$t" --input "${FILE[$name]}")
      b=$(node bench/ort-bench.mjs "$ONNX" "${FILE[$name]}" "$t" "$RUNS" 3)
      OURS[$name,$t]="${OURS[$name,$t]:-} $(echo "$a" | sed -n 's/^forward.*median \([0-9.]*\) ms.*/\1/p')"
      OURS_CPU[$name,$t]="${OURS_CPU[$name,$t]:-} $(echo "$a" | sed -n 's/.*cpu time: median \([0-9.]*\) ms.*/\1/p')"
      if [ "${BF16:-0}" = 1 ]; then
        c=$(build/effdet-bench --model "$MODEL" --precision bf16 --runs "$RUNS" --threads "$t" --input "${FILE[$name]}")
        BF[$name,$t]="${BF[$name,$t]:-} $(echo "$c" | sed -n 's/^forward.*median \([0-9.]*\) ms.*/\1/p')"
        BF_CPU[$name,$t]="${BF_CPU[$name,$t]:-} $(echo "$c" | sed -n 's/.*cpu time: median \([0-9.]*\) ms.*/\1/p')"
      fi
      ORT[$name,$t]="${ORT[$name,$t]:-} $(echo "$b" | sed -n 's/.*"median_ms":\([0-9.]*\).*/\1/p')"
      ORT_CPU[$name,$t]="${ORT_CPU[$name,$t]:-} $(echo "$b" | sed -n 's/.*"cpu_median_ms":\([0-9.]*\).*/\1/p')"
    done
  done
  echo "round $r/$ROUNDS done" >&2
done

# median of a space-separated list
med() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# table TITLE OURS-ARRAY ORT-ARRAY
table() {
  local -n A=$2 B=$3
  echo "$1"
  printf '%-8s %7s %10s %10s %8s %-22s %12s\n' input threads effdet ORT ratio "ratio per round" "vs fixture"
  for t in 1 2; do
    local fix
    fix=$(echo "${A[fixture,$t]}" | med)
    for name in "${names[@]}"; do
      local a b rounds ratio
      a=$(echo "${A[$name,$t]}" | med)
      b=$(echo "${B[$name,$t]}" | med)
      rounds=$(paste -d' ' <(echo "${A[$name,$t]}" | tr ' ' '\n' | grep .) <(echo "${B[$name,$t]}" | tr ' ' '\n' | grep .) |
        awk '{ printf "%s%.2f", (NR > 1 ? "," : ""), $1 / $2 }')
      ratio=$(paste -d' ' <(echo "${A[$name,$t]}" | tr ' ' '\n' | grep .) <(echo "${B[$name,$t]}" | tr ' ' '\n' | grep .) |
        awk '{ print $1 / $2 }' | tr '\n' ' ' | med)
      awk -v n="$name" -v t="$t" -v a="$a" -v b="$b" -v r="$ratio" -v rr="$rounds" -v f="$fix" \
        'BEGIN { printf "%-8s %7d %10.2f %10.2f %8.2f %-22s %11.2fx\n", n, t, a, b, r, rr, a / f }'
    done
  done
}
table "wall time (ms)" OURS ORT
table "CPU time (ms, every thread of the process)" OURS_CPU ORT_CPU
if [ "${BF16:-0}" = 1 ]; then
  table "bf16 wall time (ms): effdet = ours in bf16, ORT = ONNX Runtime fp32" BF ORT
  table "bf16 / fp32 wall time (ms): effdet = ours in bf16, ORT column = ours in fp32" BF OURS
  table "bf16 / fp32 CPU time (ms): effdet = ours in bf16, ORT column = ours in fp32" BF_CPU OURS_CPU
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
