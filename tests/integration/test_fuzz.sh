#!/usr/bin/env bash
# libFuzzer runs of every parser that reads outside bytes (mk/daemon.mk lists the
# targets): FUZZ_SECONDS each (default 8) from the seeds in fuzz/corpus/<target>, two at
# a time (CI has 2 cores). In CI (CI=true) each target runs 60 s, once: in the
# SANITIZE=address,undefined pass of `make check` (the plain pass skips, loudly), so
# fuzzing adds about 3 minutes plus the build. `make fuzz FUZZ_SECONDS=600` runs longer.
# Skipped (loudly) when clang cannot build libFuzzer targets.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
secs=${FUZZ_SECONDS:-8}
if [ "${CI:-}" = true ]; then
  case "$BUILD" in
    *san*) secs=${FUZZ_SECONDS:-60} ;;
    *) echo "NOTICE: CI: the fuzz targets run in the SANITIZE pass of make check"; exit 0 ;;
  esac
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$probe/p.c"
if ! command -v clang >/dev/null || ! clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>/dev/null; then
  echo "NOTICE: clang with libFuzzer (apt-get install clang libclang-rt-14-dev) not found; skipping fuzz runs"
  exit 0
fi
make --no-print-directory -s -j2 fuzz-build >"$probe/build.log" 2>&1 || { tail -30 "$probe/build.log"; exit 1; }
targets="multipart params config jpeg safetensors http coco_annotations" # FUZZ_TARGETS of mk/daemon.mk

run() {
  local t=$1 extra=""
  [ "$t" = http ] && extra=-detect_leaks=0 # worker threads' allocations outlive an input
  mkdir -p "$probe/corpus-$t"
  build/fuzz/fuzz_$t -max_total_time="$secs" -max_len=65536 -print_final_stats=1 $extra \
    -artifact_prefix="$probe/crash-$t-" "$probe/corpus-$t" fuzz/corpus/$t >"$probe/log-$t" 2>&1
}

failed=0
set -- $targets
while [ $# -gt 0 ]; do
  a=$1; shift
  b=${1:-}; [ $# -gt 0 ] && shift
  echo "== fuzz_$a${b:+ and fuzz_$b} for ${secs} s"
  ra=0 rb=0
  run "$a" & pa=$!
  if [ -n "$b" ]; then run "$b" & pb=$!; fi
  wait $pa || ra=$?
  if [ -n "$b" ]; then wait $pb || rb=$?; fi
  for t in $a $b; do
    printf '%s: ' "$t"
    grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec' "$probe/log-$t" | tr '\n' ' '
    echo
  done
  for pair in "$a:$ra" "$b:$rb"; do
    t=${pair%%:*} rc=${pair#*:}
    [ -n "$t" ] && [ "$rc" -ne 0 ] || continue
    echo "fuzz_$t failed (exit $rc):"
    tail -40 "$probe/log-$t"
    ls "$probe"/crash-$t-* 2>/dev/null && cp "$probe"/crash-$t-* "$BUILD/" 2>/dev/null || true
    failed=1
  done
done
exit $failed
