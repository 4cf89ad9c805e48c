#!/usr/bin/env bash
# Writes the CPU IR of every example and of an f32 copy of each bf16 one
# into OUTDIR: NAME.loops.mlir (the tile programs lowered to loops, the
# tiled CPU path) and NAME.reference.mlir (the reference lowering). Two sets
# made before and after a change to the CPU lowerings compare with
# `diff -r`; scripts/ptx-set.sh does the same for the GPU.
#
#   bash scripts/loops-set.sh OUTDIR [ATTNC]   (ATTNC: build/bin/attnc)
set -eu
out=${1:?usage: loops-set.sh OUTDIR [ATTNC]}
attnc=${2:-build/bin/attnc}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out/specs"
for spec in "$root"/examples/*.attn; do
  name=$(basename "$spec" .attn)
  cp "$spec" "$out/specs/$name.attn"
  if grep -q bf16 "$spec"; then
    sed 's/bf16/f32/g' "$spec" > "$out/specs/${name}_f32.attn"
  fi
done
for spec in "$out"/specs/*.attn; do
  name=$(basename "$spec" .attn)
  for stage in loops reference; do
    "$attnc" emit "$spec" --stage=$stage -o "$out/$name.$stage.mlir"
  done
done
echo "$(ls "$out"/*.mlir | wc -l) files in $out"
