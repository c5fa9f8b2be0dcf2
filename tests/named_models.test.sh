#!/usr/bin/env bash
# Named architectures beyond D0 through the loader and forward pass; prints "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
exec python3 -B tests/named_models_test.py
