#!/usr/bin/env bash
# Build-machine half of the GPU proof (issue 6): compiles every case for
# sm_80 and sm_90a into attnc images, computes the expected outputs of the
# correctness cases with the CPU reference on the same seeded inputs, and
# copies the LLVM-free runner, into build/gpu-proof (small enough to carry to
# the GPU machine). Then, on the GPU machine: bash scripts/gpu-proof/run.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" > /dev/null
attnc="$root/build/bin/attnc"
out="$root/build/gpu-proof"
rm -rf "$out"
mkdir -p "$out/images" "$out/expected" "$out/inputs" "$out/specs"
cp "$root/build/bin/attnc-gpu-run" "$out/"
specs="$root/bench/gpu/specs"
examples="$root/examples"
ssd="$root/test/Target/NVVM/Inputs"
git -C "$root" rev-parse --short HEAD > "$out/commit" 2>/dev/null || echo unknown > "$out/commit"

# check LABEL IMAGE SEED DIMS...: a correctness case (expected outputs from
# the reference lowering; tolerance 2e-2, 1e-4 for f32 q, k and v).
# time LABEL IMAGE FLOPS DIMS...: a timing case (random inputs, no check).
# IMAGE is images/IMAGE.TARGET.img: the spec's name, or the name of a
# variant compiled with other options (IMAGE=... before add_check/add_time).
cases="$out/cases.txt"
: > "$cases"
add_check() {
  local label=$1 spec=$2 seed=$3; shift 3
  local dims=() dim
  for dim in "$@"; do dims+=(--dim "$dim"); done
  "$attnc" run "$spec" --path=reference --seed "$seed" "${dims[@]}" \
    --output-dir "$out/expected/$label" > /dev/null
  echo "check $label ${IMAGE:-$(basename "$spec" .attn)} $seed $*" >> "$cases"
}
add_time() {
  local label=$1 spec=$2 flops=$3; shift 3
  echo "time $label ${IMAGE:-$(basename "$spec" .attn)} $flops $*" >> "$cases"
}

# The f32 examples, with bf16 q, k and v as well: the f32 kernels split
# their operands into bf16 pairs, the bf16 copies time the usual kernels.
for name in chunk_local kv_index_lists linear_elu retnet varlen_gla; do
  sed -E 's/\b(q|k|v): f32/\1: bf16/g' "$examples/$name.attn" > "$out/specs/${name}_bf16.attn"
done

for spec in "$specs"/*.attn "$out"/specs/*.attn "$examples"/alibi_gqa.attn \
            "$examples"/softcap_window.attn "$examples"/varlen_causal.attn \
            "$examples"/block_sparse.attn "$examples"/topk_select.attn \
            "$examples"/mamba2_decay.attn "$examples"/gla.attn \
            "$examples"/chunk_local.attn "$examples"/kv_index_lists.attn \
            "$examples"/linear_elu.attn "$examples"/retnet.attn \
            "$examples"/varlen_gla.attn "$ssd"/ssd_d64.attn "$ssd"/ssd_d128.attn; do
  name=$(basename "$spec" .attn)
  for target in sm_80 sm_90a; do
    "$attnc" compile "$spec" --target="$target" --emit=image \
      -o "$out/images/$name.$target.img"
  done
done

# Softmax warps of 32 query rows (--rows-per-warp=32, two mma row tiles per
# warp): 64-key tiles at head dim 64; at 128, 32-key tiles (no spills) and
# 64-key tiles (a few spilled registers), for timing against the default.
variant() {
  local spec=$1 name=$2; shift 2
  for target in sm_80 sm_90a; do
    "$attnc" compile "$spec" --target="$target" --emit=image "$@" \
      -o "$out/images/$name.$target.img"
  done
}
for mask in dense causal; do
  variant "$specs/${mask}_d64.attn" "${mask}_d64_r32" --rows-per-warp=32
  variant "$specs/${mask}_d128.attn" "${mask}_d128_r32" --rows-per-warp=32 --block-k=32
  variant "$specs/${mask}_d128.attn" "${mask}_d128_r32k64" --rows-per-warp=32
done

# Softmax kernels built from their tile programs (--from-tile-program:
# attn-tile-softmax, then attn-tile-to-nvgpu), checked and timed beside the
# default kernels as IMAGE_tp.
for spec in "$specs"/dense_d64.attn "$specs"/causal_d64.attn \
            "$specs"/dense_d128.attn "$specs"/causal_d128.attn \
            "$specs"/chunk_d64.attn "$examples"/alibi_gqa.attn \
            "$examples"/softcap_window.attn "$examples"/varlen_causal.attn \
            "$examples"/block_sparse.attn; do
  variant "$spec" "$(basename "$spec" .attn)_tp" --from-tile-program
done

# The wgmma kernels for sm_90a (--mma=wgmma; no sm_80 image, run.sh skips
# that target): one warpgroup per CTA (IMAGE_wg) and two (IMAGE_wg8, 128-row
# CTAs), checked on the default's correctness cases and timed beside it.
wgmma_variant() {
  local spec=$1 name=$2; shift 2
  "$attnc" compile "$spec" --target=sm_90a --emit=image --mma=wgmma "$@" \
    -o "$out/images/$name.sm_90a.img"
}
for spec in "$specs"/dense_d64.attn "$specs"/causal_d64.attn \
            "$specs"/dense_d128.attn "$specs"/causal_d128.attn \
            "$specs"/chunk_d64.attn "$examples"/alibi_gqa.attn \
            "$examples"/softcap_window.attn "$examples"/varlen_causal.attn \
            "$examples"/topk_select.attn; do
  wgmma_variant "$spec" "$(basename "$spec" .attn)_wg"
done
for spec in "$specs"/dense_d64.attn "$specs"/causal_d64.attn \
            "$specs"/dense_d128.attn "$specs"/causal_d128.attn; do
  wgmma_variant "$spec" "$(basename "$spec" .attn)_wg8" --warps=8
done
# Warp-specialised (a producer warpgroup, mbarriers): IMAGE_ws with one
# consumer warpgroup, IMAGE_ws8 with two (setmaxnreg).
for spec in "$specs"/dense_d64.attn "$specs"/causal_d64.attn \
            "$specs"/dense_d128.attn "$specs"/causal_d128.attn \
            "$examples"/alibi_gqa.attn "$examples"/softcap_window.attn \
            "$examples"/varlen_causal.attn "$examples"/topk_select.attn; do
  wgmma_variant "$spec" "$(basename "$spec" .attn)_ws" --warp-specialize
done
for spec in "$specs"/dense_d64.attn "$specs"/causal_d64.attn \
            "$specs"/dense_d128.attn "$specs"/causal_d128.attn; do
  wgmma_variant "$spec" "$(basename "$spec" .attn)_ws8" --warps=8 --warp-specialize
done

# Key splits (--split-keys: runs of keys on different CTAs, combined by the
# last), IMAGE_split, for decoding shapes (few queries, long key
# sequences), checked on decode and default cases and timed beside the
# default; IMAGE_wg_split is the wgmma kernel with splits.
for spec in "$specs"/dense_d64.attn "$specs"/dense_d128.attn \
            "$specs"/causal_d64.attn "$specs"/causal_d128.attn; do
  variant "$spec" "$(basename "$spec" .attn)_split" --split-keys=1024
done
variant "$examples/alibi_gqa.attn" alibi_gqa_split --split-keys=512
variant "$examples/varlen_causal.attn" varlen_causal_split --split-keys=512
wgmma_variant "$specs/dense_d128.attn" dense_d128_wg_split --split-keys=1024
# IMAGE_auto: the launch chooses the splits from the GPU's size.
for spec in "$specs"/dense_d128.attn "$specs"/causal_d64.attn; do
  variant "$spec" "$(basename "$spec" .attn)_auto" --split-keys=auto
done
wgmma_variant "$specs/dense_d128.attn" dense_d128_wg_auto --split-keys=auto
# One warp per CTA (16 query rows): decoding fills 1 of 16 rows instead of 1
# of 64, and four times as many CTAs fit on the GPU.
variant "$specs/dense_d128.attn" dense_d128_w1_auto --warps=1 --split-keys=auto
# Packed GQA groups (--pack-gqa): a CTA's rows are the (query, head) pairs
# of a kv head's group, which share its K and V tiles; IMAGE_pack alone,
# with splits chosen at launch (IMAGE_pack_auto), one-warp CTAs
# (IMAGE_w1_pack_auto) and wgmma (IMAGE_wg_pack_auto).
for spec in "$specs"/dense_d128.attn "$specs"/causal_d64.attn \
            "$examples"/alibi_gqa.attn; do
  variant "$spec" "$(basename "$spec" .attn)_pack" --pack-gqa
done
variant "$specs/dense_d128.attn" dense_d128_pack_auto --pack-gqa --split-keys=auto
variant "$specs/dense_d128.attn" dense_d128_w1_pack_auto --pack-gqa --warps=1 --split-keys=auto
wgmma_variant "$specs/dense_d128.attn" dense_d128_wg_pack_auto --pack-gqa --split-keys=auto

# Causal linear kernels split sequences into segments on different CTAs:
# the default (16 chunks per segment) is timed beside one CTA per sequence
# (IMAGE_seg0) and segments of 4 chunks (IMAGE_seg4); segments of one chunk
# (IMAGE_seg1, the longest chains) are checked on the default's cases.
for spec in "$ssd"/ssd_d64.attn "$ssd"/ssd_d128.attn "$examples"/gla.attn; do
  variant "$spec" "$(basename "$spec" .attn)_seg0" --segment-chunks=0
  variant "$spec" "$(basename "$spec" .attn)_seg4" --segment-chunks=4
done
for spec in "$ssd"/ssd_d64.attn "$examples"/gla.attn "$examples"/mamba2_decay.attn \
            "$out"/specs/retnet_bf16.attn "$out"/specs/varlen_gla_bf16.attn; do
  variant "$spec" "$(basename "$spec" .attn)_seg1" --segment-chunks=1
done

# Correctness: lengths that are 1, primes, non-multiples of the 64-row and
# 64-key tiles, N != M both ways (causal rows with no key when N > M), GQA.
for d in 64 128; do
  add_check "dense_d${d}_gqa_1x1" "$specs/dense_d$d.attn" 1 B=2 Hq=4 Hk=2 N=1 M=1
  add_check "dense_d${d}_gqa_127x300" "$specs/dense_d$d.attn" 2 B=2 Hq=4 Hk=2 N=127 M=300
  add_check "causal_d${d}_gqa_1000" "$specs/causal_d$d.attn" 3 B=1 Hq=4 Hk=2 N=1000 M=1000
  add_check "causal_d${d}_300x127" "$specs/causal_d$d.attn" 4 B=1 Hq=2 Hk=2 N=300 M=127
  add_check "causal_d${d}_2048" "$specs/causal_d$d.attn" 5 B=1 Hq=2 Hk=1 N=2048 M=2048
done
for d in 64 128; do
  IMAGE=causal_d${d}_r32 add_check "causal_d${d}_r32_gqa_1000" "$specs/causal_d$d.attn" 3 B=1 Hq=4 Hk=2 N=1000 M=1000
  IMAGE=dense_d${d}_r32 add_check "dense_d${d}_r32_300x127" "$specs/dense_d$d.attn" 4 B=1 Hq=2 Hk=2 N=300 M=127
done
IMAGE=causal_d128_r32k64 add_check causal_d128_r32k64_1000 "$specs/causal_d128.attn" 3 B=1 Hq=4 Hk=2 N=1000 M=1000
add_check chunk_d64_1000 "$specs/chunk_d64.attn" 6 B=1 H=2 N=1000
add_check alibi_gqa_777x1500 "$examples/alibi_gqa.attn" 7 B=1 Hq=4 Hk=2 N=777 M=1500
add_check softcap_window_1500 "$examples/softcap_window.attn" 8 B=2 H=2 N=1500
add_check varlen_causal_3000 "$examples/varlen_causal.attn" 9 T=3000 H=4 S1=6
add_check block_sparse_1000 "$examples/block_sparse.attn" 10 B=1 H=2 N=1000 NB=32 MB=32
add_check topk_select_700 "$examples/topk_select.attn" 15 B=1 Hq=4 Hk=2 N=700
add_check chunk_local_bf16_1000 "$out/specs/chunk_local_bf16.attn" 16 B=1 H=2 N=1000
add_check kv_lists_bf16_300x500 "$out/specs/kv_index_lists_bf16.attn" 17 B=1 H=2 N=300 M=500 QB=19 W=8
# f32 (split into bf16 pairs; attnc-gpu-run checks f32 at 1e-4).
add_check chunk_local_f32_1000 "$examples/chunk_local.attn" 16 B=1 H=2 N=1000
add_check kv_lists_f32_300x500 "$examples/kv_index_lists.attn" 17 B=1 H=2 N=300 M=500 QB=19 W=8
add_check linear_elu_f32_1000 "$examples/linear_elu.attn" 18 B=2 H=2 T=1000
add_check retnet_f32_1000 "$examples/retnet.attn" 19 B=1 H=4 T=1000
add_check varlen_gla_f32_2000 "$examples/varlen_gla.attn" 20 T=2000 H=2 S1=5 S=4
add_check linear_elu_bf16_1000 "$out/specs/linear_elu_bf16.attn" 18 B=2 H=2 T=1000
add_check retnet_bf16_1000 "$out/specs/retnet_bf16.attn" 19 B=1 H=4 T=1000
add_check varlen_gla_bf16_2000 "$out/specs/varlen_gla_bf16.attn" 20 T=2000 H=2 S1=5 S=4
# Long sequences (expected outputs from the tiled CPU path, which the test
# suite checks against the reference; the reference takes minutes here).
add_check_tiled() {
  local label=$1 spec=$2 seed=$3; shift 3
  local dims=() dim
  for dim in "$@"; do dims+=(--dim "$dim"); done
  "$attnc" run "$spec" --seed "$seed" "${dims[@]}" \
    --output-dir "$out/expected/$label" > /dev/null
  echo "check $label $(basename "$spec" .attn) $seed $*" >> "$cases"
}
# same_check LABEL BASE IMAGE: correctness case BASE (its seeded inputs and
# expected outputs) on another image. expected/LABEL.same names BASE's
# outputs instead of a copy (the kit must stay small to carry).
same_check() {
  local label=$1 base=$2 image=$3 line
  echo "$base" > "$out/expected/$label.same"
  line=$(awk -v b="$base" -v l="$label" -v i="$image" \
    '$1 == "check" && $2 == b { $2 = l; $3 = i; print }' "$cases")
  [ -n "$line" ] || { echo "no check case $base" >&2; exit 1; }
  echo "$line" >> "$cases"
}
# same_checks SUFFIX BASE...: each correctness case BASE on the image
# IMAGE_SUFFIX, where IMAGE is BASE's.
same_checks() {
  local suffix=$1 base image; shift
  for base in "$@"; do
    image=$(awk -v b="$base" '$1 == "check" && $2 == b { print $3 }' "$cases")
    same_check "${base}_$suffix" "$base" "${image}_$suffix"
  done
}
add_check_tiled causal_d128_4096 "$specs/causal_d128.attn" 21 B=1 Hq=2 Hk=1 N=4096 M=4096
add_check_tiled causal_d64_16384 "$specs/causal_d64.attn" 22 B=1 Hq=1 Hk=1 N=16384 M=16384
add_check_tiled ssd_d128_16384 "$ssd/ssd_d128.attn" 23 B=1 H=1 T=16384
same_checks tp dense_d64_gqa_1x1 dense_d64_gqa_127x300 causal_d64_gqa_1000 \
            causal_d64_300x127 dense_d128_gqa_127x300 causal_d128_gqa_1000 \
            causal_d128_300x127 causal_d128_4096 chunk_d64_1000 \
            alibi_gqa_777x1500 softcap_window_1500 varlen_causal_3000 \
            block_sparse_1000
same_checks wg dense_d64_gqa_1x1 dense_d64_gqa_127x300 causal_d64_gqa_1000 \
            causal_d64_300x127 dense_d128_gqa_127x300 causal_d128_gqa_1000 \
            causal_d128_300x127 causal_d128_4096 causal_d64_16384 \
            chunk_d64_1000 alibi_gqa_777x1500 softcap_window_1500 \
            varlen_causal_3000 topk_select_700
same_checks wg8 dense_d64_gqa_127x300 causal_d64_gqa_1000 causal_d128_gqa_1000 \
            causal_d128_4096
same_checks ws dense_d64_gqa_1x1 dense_d64_gqa_127x300 causal_d64_gqa_1000 \
            causal_d64_300x127 dense_d128_gqa_127x300 causal_d128_gqa_1000 \
            causal_d128_4096 alibi_gqa_777x1500 softcap_window_1500 \
            varlen_causal_3000 topk_select_700
same_checks ws8 dense_d64_gqa_127x300 causal_d64_gqa_1000 causal_d128_gqa_1000 \
            causal_d128_4096
# Decoding: one or three queries over thousands of keys, GQA.
add_check dense_d128_decode_1x5000 "$specs/dense_d128.attn" 31 B=2 Hq=8 Hk=2 N=1 M=5000
add_check causal_d64_decode_3x3000 "$specs/causal_d64.attn" 32 B=2 Hq=8 Hk=2 N=3 M=3000
same_checks split dense_d128_decode_1x5000 causal_d64_decode_3x3000 \
            dense_d64_gqa_127x300 causal_d128_gqa_1000 causal_d128_300x127 \
            causal_d128_4096 alibi_gqa_777x1500 varlen_causal_3000
same_check dense_d128_decode_1x5000_wg_split dense_d128_decode_1x5000 dense_d128_wg_split
same_check dense_d128_decode_1x5000_auto dense_d128_decode_1x5000 dense_d128_auto
same_check dense_d128_decode_1x5000_wg_auto dense_d128_decode_1x5000 dense_d128_wg_auto
same_check dense_d128_decode_1x5000_w1_auto dense_d128_decode_1x5000 dense_d128_w1_auto
same_check causal_d64_decode_3x3000_auto causal_d64_decode_3x3000 causal_d64_auto
same_check causal_d64_gqa_1000_auto causal_d64_gqa_1000 causal_d64_auto
same_checks pack dense_d128_decode_1x5000 causal_d64_decode_3x3000 \
            dense_d128_gqa_127x300 causal_d64_gqa_1000 alibi_gqa_777x1500
same_checks pack_auto dense_d128_decode_1x5000
same_checks w1_pack_auto dense_d128_decode_1x5000
same_checks wg_pack_auto dense_d128_decode_1x5000
add_check mamba2_decay_1000 "$examples/mamba2_decay.attn" 11 B=1 H=2 T=1000
add_check gla_600 "$examples/gla.attn" 14 B=1 H=2 T=600
add_check ssd_d64_777 "$ssd/ssd_d64.attn" 12 B=2 H=2 T=777
add_check ssd_d128_300 "$ssd/ssd_d128.attn" 13 B=1 H=2 T=300
same_check ssd_d128_16384_seg0 ssd_d128_16384 ssd_d128_seg0
same_checks seg1 gla_600 mamba2_decay_1000 ssd_d64_777 retnet_bf16_1000 \
            varlen_gla_bf16_2000

# The backward (docs/gpu.md, "The backward"): IMAGE_bwd is the kernel's
# <kernel>_backward, built from its tile program. A check runs it on the
# training forward's outputs (o, lse, topk_blocks from the reference,
# carried in inputs/LABEL and passed with --input; q, k, v, d_o and d_lse
# are seeded alike on both sides) against the CPU reference backward,
# within 3e-2 of each gradient's scale (P and dS are bf16 on the tensor
# cores, as in the emulator tests).
backward_image() {
  local spec=$1 target
  for target in sm_80 sm_90a; do
    "$attnc" compile --backward "$spec" --target="$target" --emit=image \
      -o "$out/images/$(basename "$spec" .attn)_bwd.$target.img"
  done
}
add_backward_check() {
  local label=$1 spec=$2 seed=$3; shift 3
  local dims=() dim
  for dim in "$@"; do dims+=(--dim "$dim"); done
  "$attnc" run --training-forward "$spec" --path=reference --seed "$seed" \
    "${dims[@]}" --output-dir "$out/inputs/$label" > /dev/null
  local inputs=() file
  for file in "$out/inputs/$label"/*.npy; do
    inputs+=(--input "$(basename "$file" .npy)=$file")
  done
  "$attnc" run --backward "$spec" --path=reference --seed "$seed" "${dims[@]}" \
    "${inputs[@]}" --output-dir "$out/expected/$label" > /dev/null
  echo "check $label $(basename "$spec" .attn)_bwd $seed $* atol=3e-2" >> "$cases"
}
for spec in "$specs"/dense_d64.attn "$specs"/causal_d64.attn \
            "$specs"/dense_d128.attn "$specs"/causal_d128.attn \
            "$examples"/softcap_window.attn "$examples"/varlen_causal.attn \
            "$examples"/topk_select.attn "$examples"/alibi_gqa.attn; do
  backward_image "$spec"
done
for d in 64 128; do
  add_backward_check "dense_d${d}_bwd_127x300" "$specs/dense_d$d.attn" 41 B=2 Hq=4 Hk=2 N=127 M=300
  add_backward_check "causal_d${d}_bwd_1000" "$specs/causal_d$d.attn" 42 B=1 Hq=4 Hk=2 N=1000 M=1000
  add_backward_check "causal_d${d}_bwd_300x127" "$specs/causal_d$d.attn" 43 B=1 Hq=2 Hk=2 N=300 M=127
done
add_backward_check softcap_window_bwd_700 "$examples/softcap_window.attn" 44 B=1 H=2 N=700
add_backward_check varlen_causal_bwd_1500 "$examples/varlen_causal.attn" 45 T=1500 H=2 S1=5
add_backward_check topk_select_bwd_700 "$examples/topk_select.attn" 46 B=1 Hq=4 Hk=2 N=700
# d_slope: each CTA's copy in the workspace, summed by the last CTA.
add_backward_check alibi_gqa_bwd_500 "$examples/alibi_gqa.attn" 47 B=2 Hq=4 Hk=2 N=500 M=500

# Timing: 16K tokens per batch (B = 16384 / N), 16 heads, FLOPs of QK^T and
# PV (4 B H N M D, halved for causal).
for d in 64 128; do
  for n in 1024 4096 16384; do
    b=$((16384 / n))
    dense=$((4 * b * 16 * n * n * d))
    add_time "dense_d${d}_n$n" "$specs/dense_d$d.attn" "$dense" B=$b Hq=16 Hk=16 N=$n M=$n
    add_time "causal_d${d}_n$n" "$specs/causal_d$d.attn" "$((dense / 2))" B=$b Hq=16 Hk=16 N=$n M=$n
    for variant in r32 $([ "$d" = 128 ] && echo r32k64) tp wg wg8 ws ws8; do
      IMAGE=dense_d${d}_$variant add_time "dense_d${d}_n${n}_$variant" "$specs/dense_d$d.attn" "$dense" B=$b Hq=16 Hk=16 N=$n M=$n
      IMAGE=causal_d${d}_$variant add_time "causal_d${d}_n${n}_$variant" "$specs/causal_d$d.attn" "$((dense / 2))" B=$b Hq=16 Hk=16 N=$n M=$n
    done
  done
done
# The backward on the same shapes: FlashAttention-2's count, 2.5 times the
# forward's FLOPs (five products against two).
for d in 64 128; do
  for n in 1024 4096 16384; do
    b=$((16384 / n))
    dense=$((10 * b * 16 * n * n * d))
    IMAGE=dense_d${d}_bwd add_time "dense_d${d}_n${n}_bwd" "$specs/dense_d$d.attn" "$dense" B=$b Hq=16 Hk=16 N=$n M=$n
    IMAGE=causal_d${d}_bwd add_time "causal_d${d}_n${n}_bwd" "$specs/causal_d$d.attn" "$((dense / 2))" B=$b Hq=16 Hk=16 N=$n M=$n
  done
done
# Decoding (one query row, 32 query heads over 8 kv heads, head dim 128):
# the default kernel (one CTA per query head) against key splits of 1024
# and splits chosen at launch (auto), also with one-warp CTAs (w1) and
# with the 4 query heads of each kv head packed into one CTA (pack).
for m in 4096 16384 65536; do
  for b in 1 8; do
    flops=$((4 * b * 32 * m * 128))
    for variant in "" _split _wg_split _auto _wg_auto _w1_auto _pack \
                   _pack_auto _w1_pack_auto _wg_pack_auto; do
      IMAGE=dense_d128$variant add_time "decode_d128_b${b}_m$m$variant" "$specs/dense_d128.attn" "$flops" B=$b Hq=32 Hk=8 N=1 M=$m
    done
  done
done
# Linear (SSD gates): FLOPs of the chunkwise form per token and head,
# 4 C D (intra: Q K^T and A V) + 4 D D (Q S and the state update).
for d in 64 128; do
  for n in 1024 4096 16384; do
    b=$((16384 / n))
    flops=$((b * 16 * n * (4 * 64 * d + 4 * d * d)))
    add_time "ssd_d${d}_n$n" "$ssd/ssd_d$d.attn" "$flops" B=$b H=16 T=$n
    for variant in seg0 seg4; do
      IMAGE=ssd_d${d}_$variant add_time "ssd_d${d}_n${n}_$variant" "$ssd/ssd_d$d.attn" "$flops" B=$b H=16 T=$n
    done
  done
done
# GLA (gla.attn: Dk 64, Dv 128, chunks of 64), the same count per token
# and head: 2 C (Dk + Dv) + 4 Dk Dv.
for n in 1024 4096 16384; do
  b=$((16384 / n))
  for variant in "" _seg0 _seg4; do
    IMAGE=gla$variant add_time "gla_n$n$variant" "$examples/gla.attn" "$((b * 16 * n * (2 * 64 * 192 + 4 * 64 * 128)))" B=$b H=16 T=$n
  done
done
# The Python package's CUDA path (issue 5), for the runtime-only build that
# run.sh makes on the GPU machine: images, inputs and expected outputs.
PYTHONPATH="$root/build/python" python3 "$root/test/python/runtime_only.py" prepare "$out/runtime-kit"
cp "$root/scripts/gpu-proof/run.sh" "$out/"
cp "$root/bench/gpu/peers.py" "$out/"
echo "prepared $(wc -l < "$cases") cases in $out ($(du -sh "$out" | cut -f1))"
