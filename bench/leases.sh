#!/usr/bin/env bash
# Acquire + release of 1 and 8 cores through the registry: prints the machine, then a table of
# medians from criterion's estimates (target: median <= 1 ms). Raw numbers stay under
# target/criterion/acquire+release/.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "lock folder: a temporary folder on $(df --output=fstype "${TMPDIR:-/tmp}" | tail -1)"
cargo bench -q -p corral-cores --bench lease -- --noplot >/dev/null 2>&1
python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion/acquire+release")
print(f"{'case':<34} {'median':>10} {'target':>8}")
for est in sorted(root.glob("*/new/estimates.json")):
    name = json.loads((est.parent / "benchmark.json").read_text())["function_id"]
    median_us = json.loads(est.read_text())["median"]["point_estimate"] / 1000
    print(f"{name:<34} {median_us:>8.1f}us {'<=1ms':>8} {'ok' if median_us <= 1000 else 'MISSED'}")
PY
