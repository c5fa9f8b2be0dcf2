#!/usr/bin/env bash
# effdetd integration tests: a real daemon on 127.0.0.1 (ephemeral ports), driven by
# Python's standard library (tests/daemon/test_*.py). BUILD selects the binary
# (build/effdetd, or build/san/effdetd under `make SANITIZE=address,undefined check`).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ ! -x "$BUILD/effdetd" ]; then
  echo "daemon.test.sh: $BUILD/effdetd is missing (make $BUILD/effdetd)" >&2
  exit 1
fi
export BUILD
# LeakSanitizer runs at exit: a leak makes effdetd exit non-zero, which the tests see.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec python3 -m unittest discover -s tests/daemon -p 'test_*.py' -v 2>&1
