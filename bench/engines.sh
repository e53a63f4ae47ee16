#!/usr/bin/env bash
# OpenVINO against ONNX Runtime, one run side by side: `corral bench` on one pinned single-core
# instance per model, CORRAL_ONNX_ENGINE=onnxruntime and =openvino alternating, 5 rounds each;
# medians of throughput, OpenVINO's ratio, and the geometric mean of the ratios. Optional
# argument: seconds per round (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/engines.py "$@"
