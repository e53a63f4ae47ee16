#!/usr/bin/env bash
# Measures how many of Triton's python_backend examples/ (add_sub, auto_complete, BLS, decoupled,
# BLS decoupled, custom metrics, ...) run unchanged against `corral serve`: the pass count. The
# examples are read at measurement time from a python_backend checkout or git directory (default
# the local mirror) and never copied into this project; bench/python_backend_examples.py says how.
# Arguments go to it: --python-backend DIR, --corral PATH (default target/debug/corral), --out FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python bench/python_backend_examples.py "$@"
