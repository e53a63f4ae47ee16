#!/usr/bin/env bash
# Ray Serve + corral (2 replicas x 1 core, pinned, exclusive) vs Ray Serve + plain onnxruntime
# (2 replicas, 1 intra-op thread each, unpinned) on squeezenet, through the deployment handle
# at concurrency 1, 4 and 16 (bench/on_ray.py). Optional argument: seconds per point.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/on_ray.py "$@"
