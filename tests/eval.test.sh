#!/usr/bin/env bash
# effdet-eval end to end on the trained shapes fixture (stdlib unittest); prints "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
exec python3 -B tests/eval_test.py
