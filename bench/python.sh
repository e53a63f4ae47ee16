#!/usr/bin/env bash
# The Python package's figures (bench/python.py): per-call overhead against onnxruntime's
# Python API on a tiny Add, squeezenet and magika; 2 threads on a multicore model against the
# machine's ceiling and a 2-thread onnxruntime session. Optional argument: seconds per point.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
.venv/bin/python bench/python.py "$@"
