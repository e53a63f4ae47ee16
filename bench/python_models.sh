#!/usr/bin/env bash
# Triton Python models' overhead per call through corral serve against an ONNX Identity of the
# same shapes (bench/python_models.py says how). Optional arguments: rounds (default 5), calls
# per round (default 400).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo build --release -q -p corral-cli
exec .venv-clients/bin/python bench/python_models.py "$@"
