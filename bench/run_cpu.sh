#!/usr/bin/env bash
# Builds attnc and prints the CPU benchmark of the tiled path against the
# reference (table on stdout, CSV in build/bench-cpu.csv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" > /dev/null
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$root/build/bin/attnc-bench-cpu" --csv "$root/build/bench-cpu.csv" \
  --commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$@"
