#!/usr/bin/env bash
# D0 forward: libeffdet vs ONNX Runtime (onnxruntime-node, same graph and weights), in one
# run, 1 and 2 threads; prints both medians and the ratio (ours / ORT: < 1 means faster).
#
#   bench/vs-ort.sh [RUNS]        (default 30 runs after 3 warm-up runs)
#
# onnxruntime-node is installed under bench/node_modules on first use. Its install script
# would download GPU binaries from an unreachable host, so it is skipped; the bundled CPU
# library is what runs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
SHARED=${EFFDET_SHARED:-../shared/reference}
MODEL=$SHARED/d0/weights.safetensors
ONNX=$SHARED/d0/d0.onnx
for f in "$MODEL" "$ONNX"; do
  [ -f "$f" ] || { echo "vs-ort: $f not found (set EFFDET_SHARED)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "vs-ort: node not found (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -d bench/node_modules/onnxruntime-node ]; then
  (cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install --ignore-scripts --no-audit --no-fund --silent)
fi
make -s build/effdet-bench

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
for t in 1 2; do
  ours=$(build/effdet-bench --model "$MODEL" --runs "$RUNS" --threads "$t" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
  ort=$(node bench/ort-bench.mjs "$ONNX" "$t" "$RUNS" 3 | sed -n 's/.*"median_ms":\([0-9.]*\).*/\1/p')
  awk -v t="$t" -v a="$ours" -v b="$ort" \
    'BEGIN { printf "threads %d: effdet %.2f ms  onnxruntime %.2f ms  ratio %.2f\n", t, a, b, a / b }'
done
