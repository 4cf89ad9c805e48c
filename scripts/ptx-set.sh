#!/usr/bin/env bash
# Writes the PTX and ptxas's register/spill report of every example for
# sm_80 and sm_90a under every tuning option docs/gpu.md lists, plus f32
# copies of the bf16 examples (their operands take the bf16x3 path), into
# OUTDIR: one NAME.ptx and NAME.ptxas per case, and failures as NAME.err
# (an option a spec refuses is a case too; its message must stay the same).
# Two sets made before and after a change compare with `diff -r`.
#
#   bash scripts/ptx-set.sh OUTDIR [ATTNC]   (ATTNC: build/bin/attnc)
set -u
out=${1:?usage: ptx-set.sh OUTDIR [ATTNC]}
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

variants_sm_80=("default:" "rows32:--rows-per-warp=32" "split256:--split-keys=256"
  "splitauto:--split-keys=auto" "packgqa:--pack-gqa" "tileprog:--from-tile-program"
  "warps8:--warps=8" "blockk32:--block-k=32")
variants_sm_90a=("${variants_sm_80[@]}" "wgmma:--mma=wgmma"
  "wgmma_ws:--mma=wgmma --warp-specialize" "wgmma_split:--mma=wgmma --split-keys=256"
  "wgmma_packgqa:--mma=wgmma --pack-gqa")

for spec in "$out"/specs/*.attn; do
  name=$(basename "$spec" .attn)
  for target in sm_80 sm_90a; do
    declare -n variants="variants_$target"
    for variant in "${variants[@]}"; do
      tag=${variant%%:*}
      flags=${variant#*:}
      case="$out/$name.$target.$tag"
      # shellcheck disable=SC2086
      if "$attnc" compile "$spec" --target=$target --emit=ptx -o "$case.ptx" \
          $flags 2> "$case.err"; then
        rm -f "$case.err"
        ptxas -arch=$target -v "$case.ptx" -o /dev/null 2>&1 |
          grep -E "registers|spill" > "$case.ptxas"
      else
        sed -i "s|$out/specs/||g" "$case.err"
      fi
    done
  done
done
echo "$(ls "$out"/*.ptx | wc -l) PTX files, $(ls "$out"/*.err 2>/dev/null | wc -l) refusals in $out"
