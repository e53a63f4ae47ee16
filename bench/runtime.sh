#!/usr/bin/env bash
# The runtime's figures in one run, one table: dispatch overhead, ORT parity on 3 real models,
# replica scaling, the simulator, and switching vs FIFO. Optional argument: a figure's name
# (dispatch, parity, scaling, sim, switch) to run only that one.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo bench -q -p corral-cli --bench runtime -- "$@" 2>/dev/null
