#!/usr/bin/env bash
# Forward time and arena of D0, D1, D3 and D7 at 1 and 2 threads: D0 on the fixture's
# weights and input, the others on made-up weights of their architecture
# (bench/synth-model.py, written once to build/synth/; speed and memory do not depend on
# the values) and built-in noise. One context per thread count; median of RUNS runs
# after one warm-up (D7 runs max(RUNS / 4, 1): one 1536 px pass is ~70x D0). Also the
# 1-thread CPU time, which is what the pass costs when the machine is shared.
#
#   bench/models.sh [RUNS] [MODELS]     (default 8 runs; models "d0 d1 d3 d7")
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-8}
MODELS=${2:-d0 d1 d3 d7}
SHARED=${EFFDET_SHARED:-../shared/reference}
make -s build/effdet-bench build/effdet-detect
brand=$(build/effdet-detect --cpu | tr -d '\n' | sed -n 's/.*"brand":"\([^"]*\)".*/\1/p')
echo "machine: $(nproc) cores, $brand, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p build/synth
printf '%-20s %10s %11s %12s %12s %12s\n' model input "arena MiB" "1 thread ms" "2 threads ms" "1T cpu ms"
for m in $MODELS; do
  input=()
  if [ "$m" = d0 ]; then
    weights=$SHARED/d0/weights.safetensors
    input=(--input "$SHARED/d0/input.f32")
  else
    weights=build/synth/$m.safetensors
    [ -f "$weights" ] || python3 bench/synth-model.py "tf_efficientdet_$m" "$weights" >/dev/null
  fi
  runs=$RUNS
  [ "$m" = d7 ] && runs=$(( RUNS / 4 > 0 ? RUNS / 4 : 1 ))
  out=$(build/effdet-bench --model "$weights" --runs "$runs" --warmup 1 --threads 1,2 "${input[@]}")
  name=$(echo "$out" | sed -n '1s/^forward \([^ ]*\) \([0-9x]*\),.*/\1/p')
  size=$(echo "$out" | sed -n '1s/^forward \([^ ]*\) \([0-9x]*\),.*/\2/p')
  arena=$(echo "$out" | sed -n 's/.*arena: \([0-9.]*\) MiB.*/\1/p' | head -1)
  t=($(echo "$out" | sed -n 's/^forward.*median \([0-9.]*\) ms.*/\1/p'))
  cpu=$(echo "$out" | sed -n 's/.*cpu time: median \([0-9.]*\) ms.*/\1/p' | head -1)
  printf '%-20s %10s %11s %12s %12s %12s\n' "$name" "$size" "$arena" "${t[0]}" "${t[1]}" "$cpu"
done
