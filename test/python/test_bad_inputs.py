"""Bad run-time inputs for every example, each example in its own process.

A worker process compiles one example for the CPU, checks that well-formed
inputs run, then feeds bad ones: shapes, dtypes, NaN/inf values, sequence
offsets, gates and block lists. Each must give a Python exception (or, for
NaN/inf data, a result) and never kill the process: a crash is reported
here with the case that was running, instead of taking the test runner down.
"""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(os.environ.get("ATTNC_EXAMPLES", pathlib.Path(__file__).parents[2] / "examples"))

# Runs in the child: argv[1] is the example. Prints "case NAME" before each
# case so that a crash names it.
WORKER = r'''
import sys
import ml_dtypes
import numpy as np
import attnc

kernel = attnc.compile(sys.argv[1])
rng = np.random.default_rng(0)
DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16,
          "i32": np.int32, "i8": np.int8, "bool": np.bool_}
TOKENS, SEQUENCES = 37, 2
SIZES = {"B": 1, "H": 2, "Hq": 2, "Hk": 1, "N": 37, "M": 37, "T": TOKENS,
         "S1": SEQUENCES + 1, "NB": 2, "MB": 2, "QB": 3, "W": 2}
BLOCKS = 3  # key blocks of 16 over 37 keys
# Gate tensors (log-space decays) of the linear examples.
GATES = {"g", "a"}

def case(name):
    print("case", name, flush=True)

def valid():
    values = {}
    for p in kernel.params:
        if p.optional:
            continue
        shape = [SIZES.get(d, 4) if isinstance(d, str) else d for d in p.dims]
        if p.name.startswith("cu"):
            values[p.name] = np.array([0, 20, TOKENS], np.int32)
        elif p.name == "counts":
            values[p.name] = rng.integers(0, SIZES["W"] + 1, shape).astype(np.int32)
        elif p.name == "indices":
            values[p.name] = rng.integers(0, BLOCKS, shape).astype(np.int32)
        elif p.dtype == "bool":
            values[p.name] = rng.random(shape) < 0.6
        elif p.name in GATES:  # log-space gates
            values[p.name] = -rng.random(shape).astype(np.float32)
        else:
            values[p.name] = rng.uniform(-1, 1, shape).astype(DTYPES[p.dtype])
    return values

def expect_error(name, values, *parts):
    case(name)
    try:
        kernel(**values)
    except (ValueError, TypeError) as error:
        text = str(error)
        for part in parts:
            assert part in text, f"{name}: {part!r} not in {text!r}"
        return
    raise AssertionError(f"{name}: no error")

case("valid")
outputs = kernel(**valid())
for output in outputs if isinstance(outputs, tuple) else (outputs,):
    assert np.isfinite(np.asarray(output, np.float32)).all(), "valid inputs gave non-finite outputs"

float_inputs = [p for p in kernel.params if p.dtype in ("f32", "f16", "bf16") and not p.optional]
first = float_inputs[0].name
values = valid()
values[first] = values[first][..., None]
expect_error("extra dim", values, f"'{first}'")
values = valid()
values[first] = values[first].astype(np.float64)
expect_error("float64", values, f"'{first}'")
values = valid()
values[first] = values[first][..., :1] if values[first].shape[-1] > 1 else values[first]
if values[first].shape != valid()[first].shape:
    expect_error("wrong head dim", values, f"'{first}'")

for bad in (np.nan, np.inf, -np.inf):
    for name in ("q", "k", "v"):
        values = valid()
        values[name].flat[5] = bad
        case(f"{name} holds {bad}")
        kernel(**values)  # a result, NaN or not; no crash

names = {p.name for p in kernel.params}
offsets = [p.name for p in kernel.params if p.name.startswith("cu")]
for name in offsets:
    for label, cu, part in (("start above 0", [3, 20, TOKENS], "must start at 0"),
                            ("end below the tokens", [0, 20, 30], "end at the"),
                            ("past the tokens", [0, 20, TOKENS + 9], "end at the"),
                            ("decreasing", [0, 30, 20], "non-decreasing")):
        values = valid()
        values[name] = np.array(cu, np.int32)
        expect_error(f"{name} {label}", values, f"'{name}'", part)
    values = valid()
    values[name] = np.array([0], np.int32)
    expect_error(f"{name} without sequences", values, "holds no sequence")

for gate in names & GATES:
    for label, bad in (("positive", 0.5), ("NaN", np.nan), ("+inf", np.inf)):
        values = valid()
        values[gate].flat[7] = bad
        expect_error(f"gate {label}", values, "gate value")

if "counts" in names:
    values = valid()
    values["counts"].flat[0] = SIZES["W"] + 1
    expect_error("count above the width", values, "'counts'", "is not a block count")
    values = valid()
    values["counts"].flat[0] = -1
    expect_error("negative count", values, "'counts'", "is not a block count")
    values = valid()
    values["counts"].flat[0] = 1
    values["indices"].flat[0] = BLOCKS
    expect_error("index past the blocks", values, "'indices'", "names no key block")

if "blocks" in names:
    values = valid()
    values["blocks"] = values["blocks"][:, :, :1]
    expect_error("block mask too small", values, "'blocks'")

print("done", flush=True)
'''


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.attn")))
def test_bad_inputs_raise_and_never_crash(example):
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(EXAMPLES / example)],
        capture_output=True, text=True, timeout=300,
    )
    cases = [line[5:] for line in result.stdout.splitlines() if line.startswith("case ")]
    last = cases[-1] if cases else "(compiling)"
    if result.returncode < 0:
        pytest.fail(f"{example}: the process died with signal {-result.returncode} in case '{last}'\n{result.stderr[-2000:]}")
    assert result.returncode == 0, f"{example}: case '{last}' failed\n{result.stderr[-3000:]}"
    assert result.stdout.rstrip().endswith("done"), result.stdout[-500:]
