#!/usr/bin/env bash
# Issue 31's pipeline figures (bench/pipelines.py says what each measures): Python overhead,
# BLS, an ensemble against its steps, scaling of a CPU-bound model.py, memory. Optional
# arguments: rounds (default 3), seconds per perf_analyzer point (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo build --release -q -p corral-cli
exec .venv-clients/bin/python bench/pipelines.py "$@"
