#!/usr/bin/env bash
# Triton's extensions on corral serve, one table: perf_analyzer at concurrency 16 on
# squeezenet over HTTP and gRPC, plain, streaming and with system shared memory, with the
# server's per-request time split into decode, queue, compute and encode, and its threads'
# CPU per request against the loopback floor (bench/floor.py). Optional arguments: seconds per
# point (default 4), rounds (default 1; medians). CORRAL_BEFORE=<an older corral binary>
# measures it too, alternately, on its own server; EXT_CASES=name,name picks cases.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv/bin/python bench/extensions.py "$@"
