#!/usr/bin/env bash
# Chaos figures (bench/chaos.py): racing acquisitions with SIGKILLs checked against the
# kernel's lock table, corral serve under traffic with loads, unloads and reloads, and lock
# folders the system refuses. Optional arguments: acquisitions (1000), requests (100000).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/chaos.py "$@"
