#!/usr/bin/env bash
# GPU-machine half of the GPU proof (issue 6): runs every case that
# prepare.sh bundled, for both targets, with the LLVM-free attnc-gpu-run;
# prints a table and writes results.csv (into $OUT when set, for the device
# tool). Runs compute-sanitizer memcheck and racecheck on one kernel when
# the toolkit is present, and the PyTorch peers (SDPA, FlexAttention) when
# torch is importable. Usage: bash build/gpu-proof/run.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=${OUT:-$here}
runner="$here/attnc-gpu-run"
csv="$dest/results.csv"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /' || true
echo "commit: $(cat "$here/commit")   date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "case,target,status,max_abs_err,mismatches,ms,tflops" > "$csv"
failures=0
while read -r kind label spec third rest; do
  dims=()
  for d in $rest; do dims+=(--dim "$d"); done
  for target in sm_80 sm_90a; do
    image="$here/images/$spec.$target.img"
    if [ "$kind" = check ]; then
      expects=()
      for f in "$here/expected/$label"/*.npy; do
        expects+=(--expect "$(basename "$f" .npy)=$f")
      done
      line=$("$runner" "$image" --seed "$third" "${dims[@]}" "${expects[@]}" \
             --label "$label" 2>"$dest/$label.$target.err") || failures=$((failures + 1))
    else
      line=$("$runner" "$image" --seed 0 "${dims[@]}" --repeat 20 \
             --flops "$third" --label "$label" 2>"$dest/$label.$target.err") || failures=$((failures + 1))
    fi
    [ -n "$line" ] || line="$label,ERROR,,,,"
    echo "${line%%,*},$target,${line#*,}" | tee -a "$csv"
    [ -s "$dest/$label.$target.err" ] && sed 's/^/    /' "$dest/$label.$target.err" | head -5
  done
done < "$here/cases.txt"

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    echo "compute-sanitizer --tool $tool (causal_d64, sm_90a):"
    "$sanitizer" --tool "$tool" --error-exitcode 3 "$runner" \
      "$here/images/causal_d64.sm_90a.img" --dim B=1 --dim Hq=2 --dim Hk=1 \
      --dim N=300 --dim M=300 2>&1 | tail -3 || failures=$((failures + 1))
  done
else
  echo "compute-sanitizer not found: memcheck/racecheck skipped"
fi
if python3 -c "import torch" 2>/dev/null; then
  python3 "$here/peers.py" --csv "$dest/peers.csv" --results "$csv" || true
else
  echo "torch is not importable: PyTorch SDPA/FlexAttention comparison skipped"
fi
echo "failures: $failures"
exit $((failures > 0))
