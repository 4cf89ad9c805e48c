#!/usr/bin/env bash
# GPU-machine half of the GPU proof (issue 6): runs every case that
# prepare.sh bundled, for both targets, with the LLVM-free attnc-gpu-run;
# prints a table and writes results.csv (into $OUT when set, for the device
# tool). Runs compute-sanitizer memcheck and racecheck on one kernel of each
# family when the toolkit is present, and the PyTorch peers (SDPA,
# FlexAttention, flash-linear-attention) when torch is importable.
# Usage: bash build/gpu-proof/run.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=${OUT:-$here}
runner="$here/attnc-gpu-run"
csv="$dest/results.csv"
errors=$(mktemp -d)   # per-case stderr; only the tables go to $dest
if [ ! -f "$here/cases.txt" ]; then
  echo "no GPU proof kit in $here: run scripts/gpu-proof/prepare.sh, then build/gpu-proof/run.sh" >&2
  exit 2
fi
# Without a GPU there is nothing to prove: say so and skip.
probe=$("$runner" "$(ls "$here"/images/*.img | head -1)" --load-only 2>&1)
if [[ $probe == *"no CUDA driver"* || $probe == *"no CUDA device"* ]]; then
  echo "no GPU here (${probe#attnc-gpu-run: error: }): the GPU proof is skipped;"
  echo "run it on a GPU machine (docs/gpu.md, 'The GPU proof')"
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /' || true
echo "commit: $(cat "$here/commit")   date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "case,target,status,max_abs_err,mismatches,ms,tflops" > "$csv"
failures=0
while read -r kind label spec third rest; do
  dims=()
  for d in $rest; do dims+=(--dim "$d"); done
  for target in sm_80 sm_90a; do
    image="$here/images/$spec.$target.img"
    # wgmma images exist for sm_90a only.
    [[ $target = sm_80 && ( $spec = *_wg* || $spec = *_ws* ) && ! -f $image ]] && continue
    if [ "$kind" = check ]; then
      expected="$here/expected/$label"
      # A case on another image may share a case's outputs (prepare.sh).
      [ -f "$expected.same" ] && expected="$here/expected/$(cat "$expected.same")"
      expects=()
      for f in "$expected"/*.npy; do
        expects+=(--expect "$(basename "$f" .npy)=$f")
      done
      line=$("$runner" "$image" --seed "$third" "${dims[@]}" "${expects[@]}" \
             --label "$label" </dev/null 2>"$errors/$label.$target.err") || failures=$((failures + 1))
    else
      line=$("$runner" "$image" --seed 0 "${dims[@]}" --repeat 20 \
             --flops "$third" --label "$label" </dev/null 2>"$errors/$label.$target.err") || failures=$((failures + 1))
    fi
    [ -n "$line" ] || line="$label,ERROR,,,,"
    echo "${line%%,*},$target,${line#*,}" | tee -a "$csv"
    [ -s "$errors/$label.$target.err" ] && sed 's/^/    /' "$errors/$label.$target.err" | head -5
  done
done < "$here/cases.txt"

# The driver's PTX JIT per image (on top of attnc's compile time), cold.
echo "image,target,load_ms" > "$dest/load.csv"
for image in "$here"/images/*.img; do
  name=$(basename "$image" .img)
  line=$(CUDA_CACHE_DISABLE=1 "$runner" "$image" --load-only --label "${name%.*}" \
         </dev/null 2>&1) || failures=$((failures + 1))
  echo "${line%%,*},${name##*.},${line#*,}" >> "$dest/load.csv"
done
echo "PTX JIT load (ms), cold driver cache:"
sed 1d "$dest/load.csv" | sort -t, -k3 -n | awk -F, '{printf "  %-24s %-7s %s\n", $1, $2, $3}'

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
  # One kernel of each family, small shapes (racecheck is slow).
  while read -r spec dims; do
    args=()
    for d in $dims; do args+=(--dim "$d"); done
    for tool in memcheck racecheck; do
      if report=$("$sanitizer" --tool "$tool" --error-exitcode 3 "$runner" \
                  "$here/images/$spec.sm_90a.img" --seed 1 "${args[@]}" </dev/null 2>&1); then
        echo "compute-sanitizer $tool $spec: $(echo "$report" | tail -1)"
      else
        failures=$((failures + 1))
        echo "compute-sanitizer $tool $spec: FAILED"
        echo "$report" | head -20 | sed 's/^/    /'
      fi
    done
  done <<'CASES'
causal_d64 B=1 Hq=2 Hk=1 N=300 M=300
causal_d64_wg B=1 Hq=2 Hk=1 N=300 M=300
causal_d128_wg8 B=1 Hq=2 Hk=1 N=300 M=300
causal_d64_ws B=1 Hq=2 Hk=1 N=300 M=300
causal_d128_ws8 B=1 Hq=2 Hk=1 N=300 M=300
dense_d128_split B=1 Hq=2 Hk=1 N=3 M=3000
dense_d128_auto B=1 Hq=2 Hk=1 N=3 M=3000
dense_d128_pack_auto B=1 Hq=8 Hk=2 N=3 M=3000
chunk_d64 B=1 H=1 N=200
block_sparse B=1 H=1 N=300 NB=10 MB=10
topk_select B=1 Hq=2 Hk=1 N=300
kv_index_lists_bf16 B=1 H=1 N=100 M=200 QB=7 W=4
gla B=1 H=1 T=200
ssd_d64 B=1 H=1 T=200
varlen_gla_bf16 T=300 H=1 S1=4 S=3
gla_seg1 B=1 H=1 T=200
varlen_gla_bf16_seg1 T=300 H=1 S1=4 S=3
CASES
else
  echo "compute-sanitizer not found: memcheck/racecheck skipped"
fi
# The Python package on CUDA tensors: the runtime-only build (no LLVM here),
# made from the working tree that the device tool copies next to this kit.
if [ -f "$here/../../scripts/check-runtime-only.sh" ] && [ -d "$here/runtime-kit" ]; then
  if ATTNC_RUNTIME_ONLY_BUILD="$(mktemp -d)/runtime-only" \
     bash "$here/../../scripts/check-runtime-only.sh" --kit "$here/runtime-kit" 2>&1 | sed 's/^/python: /'; then
    :
  else
    failures=$((failures + 1))
  fi
fi
if python3 -c "import torch" 2>/dev/null; then
  python3 "$here/peers.py" --csv "$dest/peers.csv" --png "$dest/tflops.png" --results "$csv" || true
else
  echo "torch is not importable: PyTorch SDPA/FlexAttention comparison skipped"
fi
echo "failures: $failures"
exit $((failures > 0))
