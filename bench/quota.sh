#!/usr/bin/env bash
# corral under a CPU quota: squeezenet at concurrency 4 in a cgroup with a 1.5-CPU quota over
# 2 CPUs, corral's default (capped to what the quota feeds) against the same server forced
# onto both cores; then the device plugin's ListAndWatch reaction to a core taken or freed.
# Run as root (it makes cgroups). Optional arguments: seconds per point (default 5), rounds
# (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv-clients/bin/python bench/quota.py "$@"
