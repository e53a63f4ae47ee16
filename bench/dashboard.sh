#!/usr/bin/env bash
# The live page's figures, one run (bench/dashboard.py says what each is): the server's CPU
# with 0, 1 and 5 pages open, c16 throughput with 0 and 5, the delay from an autopilot move to
# the page showing it in Chromium, and one Firefox ESR screenshot (Debian's firefox-esr,
# installed here when missing: the test suite needs only Chromium). Optional arguments:
# seconds per idle window (default 60), throughput rounds (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup --tests >/dev/null
if ! dpkg-query -W -f='${Status}' firefox-esr 2>/dev/null | grep -q "install ok installed"; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends firefox-esr >/dev/null
fi
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
cargo build --release -q -p corral-cli
exec .venv-clients/bin/python bench/dashboard.py "$@"
