#!/usr/bin/env bash
# The autopilot's figures (SPEC §11) in one run, each beside a fixed layout under the same
# load: a shifting hot model on sim:inf2.24xlarge and uniform load there, squeezenet and
# magika taking turns on this machine's cores, and the controller's cost. About 4 minutes.
set -euo pipefail
exec "$(dirname "$0")/runtime.sh" autopilot
