#!/usr/bin/env bash
# Prints ptxas's registers, spills and the shared memory of the sm_80
# linear backward kernels of bench/specs/linear_backward (bf16, chunk 64,
# Dk = Dv = 64 and 128) as the rows of docs/gpu.md's table. Needs a built
# tree (scripts/build.sh) and ptxas (CUDA_HOME or /usr/local/cuda).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
attnc="$root/build/bin/attnc"
echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), sm_80"
echo "| spec | registers | spill stores / loads (bytes) | shared memory (bytes) |"
echo "|---|---|---|---|"
for spec in "$root"/bench/specs/linear_backward/*.attn; do
  info=$("$attnc" compile --backward --target=sm_80 --ptxas-info -o /dev/null "$spec" 2>&1)
  registers=$(grep -o 'Used [0-9]* registers' <<< "$info" | grep -o '[0-9]*' | head -1)
  spills=$(grep -o '[0-9]* bytes spill stores, [0-9]* bytes spill loads' <<< "$info" |
           head -1 | sed 's/ bytes spill stores, / \/ /; s/ bytes spill loads//')
  shared=$("$attnc" compile --backward --target=sm_80 --emit=image -o - "$spec" |
           grep -a -o 'shared_bytes [0-9]*' | grep -o '[0-9]*' | head -1)
  echo "| $(basename "$spec" .attn) | ${registers:-?} | ${spills:-?} | ${shared:-?} |"
done
