#!/usr/bin/env bash
# Chaos test (tests/chaos_test.py): 3 replicas behind nginx on loopback under load;
# SIGKILL, SIGTERM (drain), SIGHUP, rolling restart; every request must get 200 (or a
# 503 from full replicas), none reset or lost. ~35 s with D0 on 2 cores. Skipped with
# a notice when nginx is not installed (apt-get install nginx).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec python3 -B tests/chaos_test.py "$@"
