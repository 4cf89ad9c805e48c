#!/usr/bin/env bash
# Installs everything attnc needs from Debian's packages and PyPI. Idempotent:
# packages that are already installed are left alone, and apt is not touched
# at all when nothing is missing. --with-torch also installs PyPI's torch (for
# the torch.library tests; about 3 GB with its CUDA libraries), unless
# ATTNC_NO_TORCH is set; --fuzz adds clang's compiler-rt for the fuzz target.
set -euo pipefail

packages=(
  cmake ninja-build ccache clang-22
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  libgtest-dev python3
)

with_torch="" with_fuzzer=""
for argument in "$@"; do
  case $argument in
  --with-torch) with_torch=1 ;;
  --fuzz) with_fuzzer=1 ;;
  esac
done
# The libFuzzer target needs clang's compiler-rt (scripts/fuzz.sh).
[[ -n $with_fuzzer ]] && packages+=(libclang-rt-22-dev)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done

if ((${#missing[@]})); then
  echo "attnc: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python: the extension's build tools and the test tools, from PyPI.
if ! python3 -c "import nanobind, scikit_build_core, numpy, ml_dtypes, pytest" 2>/dev/null; then
  echo "attnc: installing Python packages (nanobind, scikit-build-core, numpy, ml_dtypes, pytest)"
  python3 -m pip install -q --disable-pip-version-check \
    "nanobind>=2.0" "scikit-build-core>=0.10" numpy ml_dtypes pytest
fi

if [[ -n $with_torch && -z "${ATTNC_NO_TORCH:-}" ]] &&
  ! python3 -c "import torch" 2>/dev/null; then
  echo "attnc: installing torch for the torch.library tests (ATTNC_NO_TORCH=1 skips them)"
  python3 -m pip install -q --disable-pip-version-check torch
fi
