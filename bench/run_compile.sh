#!/usr/bin/env bash
# Builds attnc and prints the compile latency of every example for the CPU
# and both GPU targets, cold and on a kernel-cache hit (CSV in
# build/bench-compile.csv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" > /dev/null
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$root/build/bin/attnc-bench-compile" --csv "$root/build/bench-compile.csv" \
  --commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
