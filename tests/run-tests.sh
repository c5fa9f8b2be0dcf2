#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests and every tests/*.test.sh script from the
# repository root. Each prints its own summary; this prints the total last.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
passed=0 failed=0
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== $t"
  if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $t"; fi
done
for s in tests/*.test.sh; do
  [ -f "$s" ] || continue
  echo "== $s"
  if BUILD=$BUILD bash "$s"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $s"; fi
done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
