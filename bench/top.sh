#!/usr/bin/env bash
# What watching costs: CPU used by `corral top` (full-screen, in tmux) and `corral monitor`
# at a 1 s interval on a 64-core simulated device whose every core holds a busy instance.
# Figures: each tool's CPU as a percentage of one CPU over the same window.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup >/dev/null
corral=$PWD/target/release/corral
work=$(mktemp -d)
trap 'tmux -S "$work/tmux" kill-server 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export CORRAL_LOCK_DIR=$work/locks
mkdir -p "$work/repo/tick"
cat > "$work/repo/tick/config.toml" <<'TOML'
platform = "sim"
[placement]
count = 64
[sim]
latency_ms = 5
[[input]]
name = "x"
datatype = "FP32"
shape = [1]
[[output]]
name = "y"
datatype = "FP32"
shape = [1]
TOML
window=${1:-20}
"$corral" bench --model-repository "$work/repo" --device sim:64 --threads 64 --duration $((window + 15)) >/dev/null &
sleep 3
tmux -S "$work/tmux" new-session -d -s top -x 200 -y 90 "CORRAL_LOCK_DIR=$CORRAL_LOCK_DIR $corral top --device sim:64 --interval 1"
"$corral" monitor --device sim:64 --period 1 >/dev/null &
monitor=$!
sleep 3
top_pid=$(pgrep -f "corral top --device sim:64" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$top_pid"); m0=$(ticks "$monitor"); s0=$(date +%s.%N)
sleep "$window"
t1=$(ticks "$top_pid"); m1=$(ticks "$monitor"); s1=$(date +%s.%N)
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); 64 busy simulated cores, interval 1 s, ${window} s window"
awk -v a="$t0" -v b="$t1" -v c="$m0" -v d="$m1" -v s0="$s0" -v s1="$s1" -v hz="$hz" 'BEGIN {
  w = s1 - s0
  printf "corral top (terminal UI)   %.2f%% of one CPU   goal < 2%%\n", (b - a) / hz / w * 100
  printf "corral monitor             %.2f%% of one CPU\n", (d - c) / hz / w * 100
}'
tmux -S "$work/tmux" capture-pane -p -t top | head -12
