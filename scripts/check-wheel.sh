#!/usr/bin/env bash
# `pip install ./python` works: builds the wheel (scikit-build-core, the
# project's own CMake build), installs it into a scratch directory and runs a
# kernel from the installed package. Run by CTest as `python_wheel`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m pip wheel --no-build-isolation --no-deps -q -w "$scratch/wheel" "$root/python"
python3 -m pip install --no-deps -q --target "$scratch/site" "$scratch"/wheel/attnc-*.whl
cd "$scratch"
PYTHONPATH="$scratch/site" python3 - "$root/examples/retnet.attn" <<'PY'
import sys
import numpy as np
import attnc
assert attnc.__file__.startswith(sys.path[0]) or "site" in attnc.__file__, attnc.__file__
kernel = attnc.compile(sys.argv[1])
q = np.random.default_rng(0).standard_normal((1, 2, 5, 64)).astype(np.float32)
o = kernel(q, q, q)
assert o.shape == (1, 2, 5, 64) and np.isfinite(o).all()
import importlib.util
if importlib.util.find_spec("torch"):  # the torch integration is packaged too
    import torch
    op = kernel.torch_op()
    assert torch.equal(op(*[torch.from_numpy(q)] * 3), torch.from_numpy(o))
print("installed wheel ran", kernel)
PY
