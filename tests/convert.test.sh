#!/usr/bin/env bash
# effdet-convert and fetch-model.sh tests (stdlib unittest); prints "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
exec python3 -B tests/convert_test.py
