#!/usr/bin/env bash
# Short libFuzzer runs of the daemon's parsers (multipart, query/form parameters):
# FUZZ_SECONDS each (default 8) from the seed corpus in fuzz/corpus. `make fuzz` runs
# them longer. Skipped (loudly) when clang cannot build libFuzzer targets.
set -eu
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-8}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$probe/p.c"
if ! command -v clang >/dev/null || ! clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>/dev/null; then
  echo "NOTICE: clang with libFuzzer (apt-get install clang libclang-rt-14-dev) not found; skipping fuzz runs"
  exit 0
fi
make --no-print-directory -s fuzz-build
for t in multipart params coco_annotations; do
  work="$probe/corpus-$t"
  mkdir -p "$work"
  echo "== fuzz_$t for ${secs} s"
  rc=0
  build/fuzz/fuzz_$t -max_total_time="$secs" -max_len=16384 -print_final_stats=1 \
    -artifact_prefix="$probe/" "$work" fuzz/corpus/$t >"$probe/log-$t" 2>&1 || rc=$?
  grep -E 'stat::number_of_executed_units|stat::new_units_added' "$probe/log-$t" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz_$t failed (exit $rc):"
    tail -40 "$probe/log-$t"
    exit 1
  fi
done
