#!/usr/bin/env bash
# The planner's figures, one run: (1) prediction error, `corral plan --predict` against
# `corral bench --rate` with the same seed, on sim:inf1.6xlarge (the seeds' good and bad FlexEG
# layouts and an optimised one, CV 1 and 4) and on this machine's cores (squeezenet and magika,
# profiled first); (2) SLO attainment of optimised layouts against random ones and the time to
# a layout (`cargo bench -p corral-plan --bench plan`). Optional argument: seconds per measured
# run (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
.venv/bin/python bench/plan.py "${1:-20}"
cargo bench -q -p corral-plan --bench plan 2>/dev/null
