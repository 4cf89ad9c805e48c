#!/usr/bin/env bash
# GPU-machine half of the GPU proof (issue 6): runs the cases that
# prepare.sh bundled with the LLVM-free attnc-gpu-run, prints a table and
# writes results.csv (into $OUT when set, for the device tool). Phases, in
# this order:
#   check     correctness cases against the CPU reference's outputs, several
#             at a time (they only compete for the GPU, not for its timing);
#   time      timing cases, one at a time;
#   load      the driver's PTX JIT per image, cold (load.csv);
#   sanitize  compute-sanitizer memcheck and racecheck on one kernel of each
#             family (sm_90a), when the toolkit has it;
#   python    the runtime-only Python package on CUDA tensors;
#   peers     PyTorch SDPA, FlexAttention and flash-linear-attention on the
#             timing shapes, against this call's sm_90a timings.
# All of them take more than one call of the device tool may run (600 s),
# so they can be run in parts (docs/gpu.md, "The GPU proof"):
#   --phases LIST    comma-separated phases (default: all of them)
#   --targets LIST   comma-separated, of sm_80,sm_90a (default: both)
#   --match REGEX    only the cases (check, time), images (load) and kernels
#                    (sanitize) whose name matches this extended regex
#   --deadline SECS  start no case after this many seconds; the ones left
#                    are counted and the run ends with status 4
#   --jobs N         correctness cases at a time (default: CPUs, at most 8)
# Exit status: 0 all passed, 1 a failure, 2 no kit, 4 cases left by the
# deadline (and none failed).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=${OUT:-$here}
runner="$here/attnc-gpu-run"
csv="$dest/results.csv"

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
phases=check,time,load,sanitize,python,peers
targets=sm_80,sm_90a
match=
deadline=
jobs=$(nproc 2>/dev/null || echo 4)
((jobs > 8)) && jobs=8
while (($#)); do
  case $1 in
    --phases) phases=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --match) match=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
done
for phase in ${phases//,/ }; do
  case $phase in
    check|time|load|sanitize|python|peers) ;;
    *) echo "run.sh: unknown phase '$phase' (check, time, load, sanitize, python, peers)" >&2; exit 2 ;;
  esac
done
for target in ${targets//,/ }; do
  case $target in
    sm_80|sm_90a) ;;
    *) echo "run.sh: unknown target '$target' (sm_80, sm_90a)" >&2; exit 2 ;;
  esac
done
if [[ -n $deadline && ! $deadline =~ ^[0-9]+$ ]] || [[ ! $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: --deadline takes whole seconds and --jobs a positive count" >&2
  exit 2
fi
wants() { [[ ,$phases, == *,$1,* ]]; }
targetWanted() { [[ ,$targets, == *,$1,* ]]; }
matches() { [[ -z $match || $1 =~ $match ]]; }
# True while new cases may start.
inTime() { [[ -z $deadline ]] || ((SECONDS < deadline)); }

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
echo "commit: $(cat "$here/commit")   date: $(date -u +%Y-%m-%dT%H:%MZ)   phases: $phases   targets: $targets${match:+   match: $match}"
work=$(mktemp -d)   # per-case output and stderr; only the tables go to $dest
failures=0
left=0

# The runs of one phase's cases: "LABEL TARGET IMAGE ARGS..." lines.
caseRuns() {
  local want=$1 kind label spec third rest target image d
  while read -r kind label spec third rest; do
    [ "$kind" = "$want" ] && matches "$label" || continue
    for target in ${targets//,/ }; do
      image="$here/images/$spec.$target.img"
      # wgmma images exist for sm_90a only.
      [[ $target = sm_80 && ( $spec = *_wg* || $spec = *_ws* ) && ! -f $image ]] && continue
      local args=()
      for d in $rest; do
        case $d in
          atol=*) args+=(--atol "${d#atol=}") ;;  # a case's own tolerance
          *) args+=(--dim "$d") ;;
        esac
      done
      if [ "$kind" = check ]; then
        local expected="$here/expected/$label" f
        # A case on another image may share a case's outputs (prepare.sh).
        [ -f "$expected.same" ] && expected="$here/expected/$(cat "$expected.same")"
        for f in "$expected"/*.npy; do
          args+=(--expect "$(basename "$f" .npy)=$f")
        done
        # Inputs that are not seeded (the backward's o and lse).
        if [ -d "$here/inputs/$label" ]; then
          for f in "$here/inputs/$label"/*.npy; do
            args+=(--input "$(basename "$f" .npy)=$f")
          done
        fi
        args+=(--seed "$third")
      else
        args+=(--seed 0 --repeat 20 --flops "$third")
      fi
      echo "$label $target $image ${args[*]}"
    done
  done < "$here/cases.txt"
}
# Runs one case: appends its CSV row to the table (as soon as it ends, so
# that a run cut short keeps what finished) and prints it with the first
# lines of its stderr, in one write.
runCase() {
  local n=$1 label=$2 target=$3 image=$4; shift 4
  local line errors
  line=$("$runner" "$image" "$@" --label "$label" </dev/null 2>"$work/$n.err") ||
    touch "$work/$n.failed"
  [ -n "$line" ] || line="$label,ERROR,,,,"
  line="${line%%,*},$target,${line#*,}"
  echo "$line" >> "$csv"
  errors=$(sed 's/^/    /' "$work/$n.err" | head -5)
  printf '%s\n%s' "$line" "${errors:+$errors
}"
}
# runPhase KIND PARALLEL: the phase's cases, PARALLEL at a time.
runPhase() {
  local kind=$1 parallel=$2 n=0 running=0 label target image args runs run
  # Listed first, so that `wait -n` waits only for cases.
  mapfile -t runs < <(caseRuns "$kind")
  for run in "${runs[@]}"; do
    read -r label target image args <<< "$run"
    if ! inTime; then
      left=$((left + 1))
      continue
    fi
    # Word splitting of args is intended: file names have no spaces.
    # shellcheck disable=SC2086
    runCase "$n" "$label" "$target" "$image" $args &
    n=$((n + 1))
    running=$((running + 1))
    if ((running >= parallel)); then
      wait -n
      running=$((running - 1))
    fi
  done
  wait
}

[ -f "$csv" ] || echo "case,target,status,max_abs_err,mismatches,ms,tflops" > "$csv"
wants check && runPhase check "$jobs"
wants time && runPhase time 1

if wants load; then
  # The driver's PTX JIT per image (on top of attnc's compile time), cold.
  [ -f "$dest/load.csv" ] || echo "image,target,load_ms" > "$dest/load.csv"
  for image in "$here"/images/*.img; do
    name=$(basename "$image" .img)
    targetWanted "${name##*.}" && matches "${name%.*}" || continue
    if ! inTime; then
      left=$((left + 1))
      continue
    fi
    line=$(CUDA_CACHE_DISABLE=1 "$runner" "$image" --load-only --label "${name%.*}" \
           </dev/null 2>&1) || failures=$((failures + 1))
    echo "${line%%,*},${name##*.},${line#*,}" >> "$dest/load.csv"
  done
  echo "PTX JIT load (ms), cold driver cache:"
  sed 1d "$dest/load.csv" | sort -t, -k3 -n | awk -F, '{printf "  %-24s %-7s %s\n", $1, $2, $3}'
fi

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if wants sanitize && [ -z "$sanitizer" ]; then
  echo "compute-sanitizer not found: memcheck/racecheck skipped"
elif wants sanitize; then
  # One kernel of each family, small shapes (racecheck is slow).
  while read -r spec dims; do
    matches "$spec" || continue
    args=()
    for d in $dims; do args+=(--dim "$d"); done
    for tool in memcheck racecheck; do
      if ! inTime; then
        left=$((left + 1))
        continue
      fi
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
fi

# The Python package on CUDA tensors: the runtime-only build (no LLVM here),
# made from the working tree that the device tool copies next to this kit.
if wants python && [ -f "$here/../../scripts/check-runtime-only.sh" ] && [ -d "$here/runtime-kit" ]; then
  if ! ATTNC_RUNTIME_ONLY_BUILD="$(mktemp -d)/runtime-only" \
     bash "$here/../../scripts/check-runtime-only.sh" --kit "$here/runtime-kit" 2>&1 | sed 's/^/python: /'; then
    failures=$((failures + 1))
  fi
fi
if wants peers && python3 -c "import torch" 2>/dev/null; then
  python3 "$here/peers.py" --csv "$dest/peers.csv" --png "$dest/tflops.png" --results "$csv" || true
elif wants peers; then
  echo "torch is not importable: PyTorch SDPA/FlexAttention comparison skipped"
fi
failures=$((failures + $(find "$work" -name '*.failed' | wc -l)))
rm -rf "$work"
echo "failures: $failures"
if ((left > 0)); then
  echo "incomplete: $left runs not started by the deadline of ${deadline}s"
fi
((failures > 0)) && exit 1
((left > 0)) && exit 4
exit 0
