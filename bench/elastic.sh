#!/usr/bin/env bash
# Elastic instances vs fixed single-core replicas, one run side by side: `corral bench` on this
# machine's cores (one single-core replica per core), squeezenet and magika, 1, 2, 4 and 16
# calling threads; p50 and throughput of each, and their ratios. Optional argument: seconds per
# point (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/elastic.py "$@"
