#!/usr/bin/env bash
# Triton's QA ensemble cases (qa/L0_model_config/autofill_noplatform{,_success}/ensemble) against
# corral serve: how many fail to load with Triton's expected error, or load, as Triton's do.
# Triton's cases are read at measurement time from its repository (--triton, default the local
# mirror) and never copied into this project. Paths given are taken from the repository root.
# Options: bench/triton_ensemble_qa.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/triton_ensemble_qa.py "$@"
