#!/usr/bin/env bash
# corral serve (with and without elastic instances) vs its ceiling (raw onnxruntime, one
# pinned process per CPU) and vs a Python KServe server, perf_analyzer over HTTP and gRPC at
# concurrency 1, 2, 4 and 16, for light_squeezenet and magika: one table. Optional argument:
# seconds per point (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/serve.py "$@"
