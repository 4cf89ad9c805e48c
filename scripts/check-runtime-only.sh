#!/usr/bin/env bash
# Builds the runtime-only attnc (cmake -DATTNC_RUNTIME_ONLY=ON: libattnc that
# loads and launches GPU images, attnc-gpu-run and the Python package, with
# no LLVM or MLIR) and checks it with test/python/runtime_only.py: images
# made by the full build load with the same signatures, damaged ones are
# refused, compiling is refused with a clear message, and on a machine with
# a CUDA GPU and torch the kernels run on CUDA tensors (directly and as
# torch.compile'd operators) and match the full build's CPU reference.
#
# Usage: scripts/check-runtime-only.sh             (next to a full build in
#                                                   $ATTNC_BUILD_DIR, default build/)
#        scripts/check-runtime-only.sh --kit DIR   (a GPU machine without LLVM:
#                                                   DIR from `runtime_only.py prepare`)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
full=${ATTNC_BUILD_DIR:-$root/build}
build=${ATTNC_RUNTIME_ONLY_BUILD:-$full/runtime-only}
check="$root/test/python/runtime_only.py"
kit=
if [ "${1:-}" = --kit ]; then
  kit=$2
else
  # A fresh kit from the full build's Python package.
  kit="$build/kit"
  rm -rf "$kit"
  PYTHONPATH="$full/python" python3 "$check" prepare "$kit"
fi
for tool in cmake ninja; do
  command -v "$tool" > /dev/null || { echo "check-runtime-only: $tool is needed" >&2; exit 2; }
done
python3 -m nanobind --cmake_dir > /dev/null 2>&1 ||
  { echo "check-runtime-only: the nanobind Python package is needed" >&2; exit 2; }
cmake -G Ninja -S "$root" -B "$build" -DATTNC_RUNTIME_ONLY=ON \
  -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python3)" > "$build.cmake.log" ||
  { cat "$build.cmake.log" >&2; exit 1; }
ninja -C "$build" > "$build.ninja.log" || { tail -30 "$build.ninja.log" >&2; exit 1; }
# Nothing it built links LLVM or MLIR.
if ldd "$build/libattnc.so" "$build"/python/attnc/_attnc*.so "$build/bin/attnc-gpu-run" |
   grep -E 'libLLVM|libMLIR'; then
  echo "check-runtime-only: the runtime-only build links LLVM or MLIR" >&2
  exit 1
fi
echo "runtime-only build in $build: libattnc.so, the Python package and attnc-gpu-run, no LLVM or MLIR"
PYTHONPATH="$build/python" python3 "$check" check "$kit"
