#!/usr/bin/env bash
# OpenVINO against ONNX Runtime, one run side by side: `corral bench` on one pinned single-core
# instance per model, CORRAL_ONNX_ENGINE=onnxruntime, =openvino and =auto alternating, 3
# rounds each; medians of throughput, OpenVINO's ratio, auto's (the timed choice) to the
# faster; geometric means. Optional argument: seconds per round (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/engines.py "$@"
