#!/usr/bin/env bash
# D0 forward at every kernel level this CPU runs (EFFDET_ISA=baseline|avx2|avx512), on
# the fixture image, at 1 and 2 threads; interleaved rounds (the machine may be shared),
# median over the rounds of each run's median, and each level's time relative to the
# baseline level's. Wall time, and at 1 thread also the process's CPU time (what the
# pass costs when the machine is loaded; see bench/vs-ort.sh).
#
#   bench/levels.sh [RUNS] [ROUNDS]     (default 10 runs after 3 warm-up runs, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
ROUNDS=${2:-3}
SHARED=${EFFDET_SHARED:-../shared/reference}
MODEL=$SHARED/d0/weights.safetensors
INPUT=$SHARED/d0/input.f32
make -s build/effdet-bench build/effdet-detect
cpu=$(env -u EFFDET_ISA build/effdet-detect --cpu | tr -d '\n')
levels=$(echo "$cpu" | sed -n 's/.*"supported_levels":\[\([^]]*\)\].*/\1/p' | tr -d '" ' | tr ',' ' ')
brand=$(echo "$cpu" | sed -n 's/.*"brand":"\([^"]*\)".*/\1/p')
echo "machine: $(nproc) cores, $brand, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "D0 forward on d0/input.f32, $RUNS runs per measurement, $ROUNDS interleaved rounds; medians in ms"
declare -A T C
for r in $(seq "$ROUNDS"); do
  for t in 1 2; do
    for l in $levels; do
      out=$(EFFDET_ISA=$l build/effdet-bench --model "$MODEL" --runs "$RUNS" --threads "$t" --input "$INPUT")
      T[$l,$t]="${T[$l,$t]:-} $(echo "$out" | sed -n 's/^forward.*median \([0-9.]*\) ms.*/\1/p')"
      C[$l,$t]="${C[$l,$t]:-} $(echo "$out" | sed -n 's/.*cpu time: median \([0-9.]*\) ms.*/\1/p')"
    done
  done
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-9s %12s %12s %14s %14s %12s %12s\n' level "1 thread" "2 threads" "1T vs base" "2T vs base" "1T cpu" "cpu vs base"
b1=$(echo "${T[baseline,1]}" | med)
b2=$(echo "${T[baseline,2]}" | med)
bc=$(echo "${C[baseline,1]}" | med)
for l in $levels; do
  a1=$(echo "${T[$l,1]}" | med)
  a2=$(echo "${T[$l,2]}" | med)
  c1=$(echo "${C[$l,1]}" | med)
  awk -v l="$l" -v a1="$a1" -v a2="$a2" -v b1="$b1" -v b2="$b2" -v c1="$c1" -v bc="$bc" \
    'BEGIN { printf "%-9s %12.2f %12.2f %13.2fx %13.2fx %12.2f %11.2fx\n", l, a1, a2, a1 / b1, a2 / b2, c1, c1 / bc }'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
