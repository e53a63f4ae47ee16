#!/usr/bin/env bash
# Weights once per process: corral serve's RSS with 1 and 2 instances and the elastic session of light_resnet50 and
# rapidocr's recogniser on ONNX Runtime, one session shared by the instances (the default)
# beside a session per instance (CORRAL_ORT_SHARED_SESSION=0) and OpenVINO, read after every instance has
# answered >= 100 calls under perf_analyzer at c16; and the c16 throughput of each. Optional
# argument: seconds per perf_analyzer window (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo build --release -q -p corral-cli
exec .venv/bin/python bench/weights.py "$@"
