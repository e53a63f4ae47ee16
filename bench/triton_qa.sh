#!/usr/bin/env bash
# Triton's own QA test cases against corral serve: the Python cases of Triton's qa/L0_http,
# L0_input_validation, L0_shared_memory, L0_parameters and L0_grpc, run unchanged, each group
# against a corral serve started with its test.sh's tritonserver flags. Prints per file and in
# total how many pass, fail and cannot run here (with why), every failure with its assertion,
# and writes the raw results as JSON ($OUT, default /tmp/triton_qa.json). Takes a few minutes.
#
#   TRITON_SERVER_REPO=/path/to/triton-inference-server/server [CORRAL=path/to/corral] bench/triton_qa.sh
#
# TRITON_SERVER_REPO: Triton's server repository, a git directory (bare or not; TRITON_REF,
# default HEAD) or a plain checkout; its QA files are read from there at run time, none is kept
# here. CORRAL: the binary to test (default target/release/corral, built by scripts/setup).
# Runs servers on ports 8000-8002, the tests' own. More knobs: bench/triton_qa.py's docstring.
set -euo pipefail
for v in TRITON_SERVER_REPO CORRAL OUT; do  # paths given relative to the caller's folder
  [ -z "${!v:-}" ] || export "$v=$(realpath -m "${!v}")"
done
cd "$(dirname "$0")/.."
for venv in .venv .venv-clients; do
  [ -x "$venv/bin/python" ] || { echo "no $venv: run ./scripts/setup --tests first" >&2; exit 1; }
done
# ONNX Runtime for corral: the library of .venv's onnxruntime wheel unless one is given.
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -1)
  export ORT_DYLIB_PATH
fi
export CORRAL_ONNX_ENGINE=${CORRAL_ONNX_ENGINE:-onnxruntime}
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
exec .venv-clients/bin/python bench/triton_qa.py "$@"
