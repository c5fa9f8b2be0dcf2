#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests and every tests/*.test.sh script from the
# repository root. Each prints its own summary; this prints the total last.
#
# The kernels exist once per ISA level (mk/kernels.mk): test_ops_<level> runs where
# the CPU has that level (and is reported as skipped elsewhere), and the parity and
# detection tests run once per level the CPU supports, with EFFDET_ISA forcing it.
set -u
BUILD=${BUILD:-build}
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

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  case $(basename "$t") in
  test_ops_*)
    level=${t##*/test_ops_}
    if [[ " $levels " == *" $level "* ]]; then run "$t" "$t"; else
      echo "== $t: skipped (this CPU has no $level)"; skipped=$((skipped + 1)); fi ;;
  test_parity | test_detect)
    for level in $levels; do run "EFFDET_ISA=$level $t" env EFFDET_ISA="$level" "$t"; done ;;
  *) run "$t" "$t" ;;
  esac
done
for s in tests/*.test.sh; do
  [ -f "$s" ] || continue
  run "$s" env BUILD="$BUILD" bash "$s"
done
echo "suites: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
