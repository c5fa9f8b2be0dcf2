#!/usr/bin/env bash
# Runs every test from the repository root, each suite printing its own summary, and
# prints the total last ("suites: N passed, N failed, N skipped": CI reads that line).
#
#   tests/unit/test_X.c          Check tests, built by make as $BUILD/tests/test_X
#   tests/integration/test_*.py  Python (stdlib unittest or a script), run with python3
#   tests/integration/test_*.sh  scripts with their own logic, run with bash
#   tests/integration/daemon/    effdetd's unittest suite (harness.py starts real daemons)
#
# The kernels exist once per ISA level (mk/kernels.mk): test_kernels_<level> runs where
# the CPU has that level (and is reported as skipped elsewhere), and the parity and
# detection tests run once per level the CPU supports, with EFFDET_ISA forcing it.
# The unit binaries run are the ones tests/unit/ has sources for (a missing one fails),
# so a stale binary left in $BUILD/tests by an older tree is never run.
set -u
BUILD=${BUILD:-build}
export BUILD
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0
levels=$(env -u EFFDET_ISA "$BUILD"/effdet-detect --cpu |
  python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["supported_levels"]))') || levels=""
[ -n "$levels" ] || { echo "run-tests: effdet-detect --cpu failed; cannot tell the CPU's kernel levels" >&2; exit 1; }
echo "kernel levels this CPU runs: $levels"

run() { # run NAME COMMAND...
  local name=$1
  shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

# ------------------------------------------------------------------ unit (Check)
# The levels test_kernels is built for: make check passes KERNEL_ISAS (mk/kernels.mk);
# run alone, the binaries that are there.
isas=${KERNEL_ISAS:-$(for b in "$BUILD"/tests/test_kernels_*; do [ -x "$b" ] && echo "${b##*_}"; done)}
for src in tests/unit/test_*.c; do
  t=$BUILD/tests/$(basename "$src" .c)
  case $t in
  */test_kernels)
    for level in $isas; do
      if [[ " $levels " == *" $level "* ]]; then run "${t}_$level" "${t}_$level"; else
        echo "== ${t}_$level: skipped (this CPU has no $level)"; skipped=$((skipped + 1)); fi
    done ;;
  */test_parity | */test_detect)
    for level in $levels; do run "EFFDET_ISA=$level $t" env EFFDET_ISA="$level" "$t"; done ;;
  *) run "$t" "$t" ;;
  esac
done

# ------------------------------------------------------------------ integration
# LeakSanitizer runs at exit: a leak makes a sanitized effdetd exit non-zero, which the
# tests see.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in tests/integration/test_*; do
  case $t in
  *.py) run "$t" python3 -B "$t" ;;
  *.sh) run "$t" bash "$t" ;;
  esac
done
daemon_suite() {
  [ -x "$BUILD/effdetd" ] || { echo "run-tests: $BUILD/effdetd is missing (make $BUILD/effdetd)" >&2; return 1; }
  python3 -B -m unittest discover -s tests/integration/daemon -p 'test_*.py' -v 2>&1
}
run tests/integration/daemon daemon_suite

echo "suites: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
