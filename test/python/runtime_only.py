"""The runtime-only build of the attnc package (ATTNC_RUNTIME_ONLY: no LLVM or
MLIR) against the full build, in two steps on possibly different machines:

    python3 runtime_only.py prepare KIT   # full build: images, inputs, expected outputs
    python3 runtime_only.py check KIT     # runtime-only build: load and run

`check` always tests loading (signatures, damaged images, the refusal to
compile); with torch and a CUDA device it also runs each image on CUDA
tensors, directly and as a torch.compile'd torch.library operator, and
compares with the CPU reference of the full build (tolerance below). It is
what scripts/check-runtime-only.sh runs; the GPU machine of docs/gpu.md runs
the same to check the CUDA path of the Python package.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

import attnc

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
# bf16 outputs: |a - e| <= TOL * max(1, max|e|) + TOL * |e| (the GPU suite's).
TOL = 2e-2
TARGETS = ("sm_80", "sm_90a")


def _cases(rng):
    """(name, example, inputs by name); bf16 travels as uint16 bit patterns."""

    def bf16(shape, low=-1.0, high=1.0):
        values = rng.uniform(low, high, shape).astype(np.float32)
        return (values.view(np.uint32) >> 16).astype(np.uint16)

    def f32(shape, low=-1.0, high=1.0):
        return rng.uniform(low, high, shape).astype(np.float32)

    return [
        ("alibi", "alibi_gqa.attn",
         {"q": bf16((2, 4, 130, 64)), "k": bf16((2, 2, 77, 64)), "v": bf16((2, 2, 77, 64)),
          "slope": f32((4,), 0, 1)}),
        ("gla", "gla.attn",
         {"q": bf16((1, 150, 2, 64)), "k": bf16((1, 150, 2, 64)), "v": bf16((1, 150, 2, 128)),
          "g": f32((1, 150, 2, 64), -0.5, -0.01), "h0": f32((1, 2, 64, 128))}),
    ]


def _as_bf16(bits):
    import ml_dtypes

    return bits.view(ml_dtypes.bfloat16)


def prepare(kit: pathlib.Path) -> None:
    kit.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    manifest = []
    for name, example, inputs in _cases(rng):
        reference = attnc.compile(EXAMPLES / example, target="cpu-reference")
        args = {k: (_as_bf16(v) if v.dtype == np.uint16 else v) for k, v in inputs.items()}
        outputs = reference(**args)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        np.savez(kit / f"{name}.inputs.npz", **inputs)
        np.savez(kit / f"{name}.expected.npz",
                 **{r.name: np.asarray(o, dtype=np.float32) for r, o in zip(reference.results, outputs)})
        for target in TARGETS:
            (kit / f"{name}.{target}.img").write_bytes(
                attnc.compile(EXAMPLES / example, target=target).image())
        manifest.append({"name": name, "params": [p.name for p in reference.params],
                         "results": [r.name for r in reference.results]})
    (kit / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"runtime-only kit: {len(manifest)} kernels x {len(TARGETS)} targets in {kit}")


def _close(name, actual, expected):
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    error = np.abs(actual - expected)
    bad = error > TOL * scale + TOL * np.abs(expected)
    if bad.any():
        raise AssertionError(f"{name}: {int(bad.sum())} of {bad.size} elements differ "
                             f"(max |error| {float(error.max()):.3g})")


def check(kit: pathlib.Path) -> None:
    assert not attnc.HAS_COMPILER, "this is the full build; check the runtime-only one"
    try:
        attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_80")
    except ValueError as error:
        assert "runtime-only build" in str(error), error
    else:
        raise AssertionError("the runtime-only build compiled a spec")
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        torch, gpu = None, False
    cuda_target = None
    if gpu:
        major, _ = torch.cuda.get_device_capability()
        cuda_target = "sm_90a" if major == 9 else "sm_80"
    manifest = json.loads((kit / "manifest.json").read_text())
    for case in manifest:
        name = case["name"]
        for target in TARGETS:
            image = (kit / f"{name}.{target}.img").read_bytes()
            kernel = attnc.load(image)
            assert kernel.target == target
            assert [p.name for p in kernel.params] == case["params"], kernel.params
            assert [r.name for r in kernel.results] == case["results"], kernel.results
            assert kernel.image() == image
            try:
                attnc.load(image[: len(image) // 2])
            except ValueError as error:
                assert "not a usable attnc GPU image" in str(error)
            else:
                raise AssertionError("a truncated image loaded")
            print(f"{name} {target}: loaded")
        if not gpu:
            continue
        inputs = np.load(kit / f"{name}.inputs.npz")
        expected = np.load(kit / f"{name}.expected.npz")
        kernel = attnc.load(kit / f"{name}.{cuda_target}.img")
        tensors = {}
        for key in inputs.files:
            array = inputs[key]
            tensor = torch.from_numpy(array.astype(np.int32) if array.dtype == np.uint16 else array)
            if array.dtype == np.uint16:
                tensor = tensor.to(torch.int16).view(torch.bfloat16)
            tensors[key] = tensor.cuda()
        direct = kernel(**tensors)
        direct = direct if isinstance(direct, tuple) else (direct,)
        op = torch.compile(kernel.torch_op(), fullgraph=True)
        ordered = [tensors.get(p) for p in case["params"]]
        compiled = op(*ordered)
        compiled = compiled if isinstance(compiled, tuple) else (compiled,)
        for how, outputs in (("direct", direct), ("torch.compile op", compiled)):
            for result, output in zip(case["results"], outputs):
                _close(f"{name} {cuda_target} {how} {result}",
                       output.float().cpu().numpy(), expected[result])
        print(f"{name} {cuda_target}: CUDA outputs match the CPU reference (direct and torch.compile)")
    if not gpu:
        print("no CUDA device visible to torch (or no torch): loading checked, launches skipped")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "check"):
        sys.exit("usage: runtime_only.py prepare|check KIT_DIR")
    (prepare if sys.argv[1] == "prepare" else check)(pathlib.Path(sys.argv[2]))
