#!/usr/bin/env bash
# Builds the libFuzzer target (tools/attnc-fuzz: clang-22, AddressSanitizer,
# every attnc library instrumented) in build-fuzz/ and runs it on a corpus
# seeded with examples/ and the language's dictionary.
#
#   scripts/fuzz.sh [SECONDS] [libFuzzer flags...]
#
# SECONDS defaults to 60 (what CI runs); 0 runs until stopped. A crash,
# abort, hang (-timeout) or runaway memory (-rss_limit_mb) stops the run,
# writes the input to build-fuzz/fuzz-artifacts/ and exits non-zero.
# docs/fuzzing.md says how to reproduce a finding and run longer.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ATTNC_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${1:-60}
shift || true

"$root/scripts/install-deps.sh" --fuzz
if [[ ! -f $build/build.ninja ]]; then
  cmake -G Ninja -S "$root" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DATTNC_FUZZ=ON
fi
cmake --build "$build" --target attnc-fuzz -j "${ATTNC_JOBS:-2}"

corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
# LLVM's BumpPtrAllocator poisons a new slab's free bytes when it is compiled
# with ASan, as attnc's code is here; libMLIR is not instrumented, so its
# allocations from a slab that attnc's code started (the storage of an attn
# attribute or type) would be reported as use-after-poison. Manual poisoning
# is off; overflows, use-after-free and leaks of the heap are still caught.
export ASAN_OPTIONS="allow_user_poisoning=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# New inputs go to the first directory; examples/ only seeds.
exec "$build/bin/attnc-fuzz" "$corpus" "$root/examples" \
  -dict="$root/tools/attnc-fuzz/attn.dict" \
  -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$@"
