#!/usr/bin/env bash
# The runtime's figures in one run, one table: dispatch overhead, ORT parity on 3 real models,
# replica scaling, the simulator, switching vs FIFO, and the autopilot vs fixed layouts.
# Optional argument: a figure's name (dispatch, parity, scaling, sim, switch, autopilot-shift,
# autopilot-cpu, autopilot-cost; or a part of one, as autopilot) to run only those.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo bench -q -p corral-cli --bench runtime -- "$@" 2>/dev/null
