#!/usr/bin/env bash
# The engine choice through corral serve, one run: inception_v1 at c16 on both cores with
# CORRAL_ONNX_ENGINE=auto (the default) beside =onnxruntime, and against the raw ceiling of
# the engine auto chose (its Python API, one pinned one-thread process per CPU); then the time
# a 16-model repository takes to be ready on each engine. Optional argument: seconds per
# perf_analyzer window (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo build --release -q -p corral-cli
exec .venv/bin/python bench/engines_serve.py "$@"
