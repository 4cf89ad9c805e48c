#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then runs CTest, which
# holds the GoogleTest suites, the lit suite, pytest and the wheel check.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh" --with-torch
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure -j "${ATTNC_JOBS:-2}"
