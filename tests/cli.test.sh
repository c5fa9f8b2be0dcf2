#!/usr/bin/env bash
# effdet-detect end to end (stdlib unittest); prints "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
exec python3 -B tests/cli_test.py
