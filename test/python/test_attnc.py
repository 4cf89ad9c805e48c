"""The Python package against NumPy implementations written here.

Every example in examples/ is compiled and run on the CPU (tiled path and the
reference) and compared with a float64 NumPy transcription of its
definition. Tolerances: f32 outputs 1e-4, f16 5e-3, bf16 2e-2 (relative to the
largest magnitude, plus the same absolute amount).
"""

import os
import pathlib
import tempfile

import ml_dtypes
import numpy as np
import pytest

# GPU kernels are cached on disk: keep this run's cache out of $HOME.
os.environ.setdefault("ATTNC_CACHE_DIR", tempfile.mkdtemp(prefix="attnc-pytest-cache-"))

import attnc  # noqa: E402

EXAMPLES = pathlib.Path(os.environ.get("ATTNC_EXAMPLES", pathlib.Path(__file__).parents[2] / "examples"))
BF16 = np.dtype(ml_dtypes.bfloat16)
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float16): 5e-3, BF16: 2e-2}


def check(actual, expected, seed, operands=None):
    """`operands`: the dtype the values passed through, when coarser than the
    output's (GPU kernels feed f32 states through bf16/f16 tensor cores)."""
    tolerance = TOLERANCE.get(np.dtype(operands) if operands is not None else actual.dtype, 1e-4)
    a = np.asarray(actual, dtype=np.float64)
    bad = ~np.isclose(a, expected, rtol=tolerance, atol=tolerance, equal_nan=False)
    bad &= ~(np.isneginf(a) & np.isneginf(expected))
    assert not bad.any(), f"seed {seed}: {bad.sum()} elements differ, e.g. {a[bad][:3]} vs {expected[bad][:3]}"


# ---------------------------------------------------------------------------
# NumPy definitions (bhnd layout, float64)


def softmax_ref(q, k, v, *, score=None, mask=None, scale=None, select=None):
    """o, lse of softmax attention; mask(b, h, i, j, n, m) and score(s, b, h, i, j)."""
    B, Hq, N, Dk = q.shape
    Hk, M = k.shape[1], k.shape[2]
    G = Hq // Hk
    scale = 1 / np.sqrt(Dk) if scale is None else scale
    o = np.zeros((B, Hq, N, v.shape[3]))
    lse = np.full((B, Hq, N), -np.inf)
    for b in range(B):
        for h in range(Hq):
            kv = h // G
            for i in range(N):
                s = scale * k[b, kv] @ q[b, h, i]
                if score is not None:
                    s = np.array([score(s[j], b, h, i, j) for j in range(M)])
                allowed = np.array([mask(b, h, i, j, N, M) if mask else True for j in range(M)], dtype=bool)
                if select is not None:
                    allowed &= select(b, kv, i, allowed)
                if not allowed.any():
                    continue
                row = s[allowed]
                top = row.max()
                p = np.exp(row - top)
                o[b, h, i] = p @ v[b, kv][allowed] / p.sum()
                lse[b, h, i] = top + np.log(p.sum())
    return o, lse


def topk_selector(q, k, n, block, scale):
    """NSA-style block selection (docs/semantics.md)."""
    Hq, Hk = q.shape[1], k.shape[1]
    G = Hq // Hk
    M = k.shape[2]

    def select(b, g, i, allowed):
        blocks = range(0, M, block)
        means = [k[b, g, j0 : j0 + block].mean(axis=0) for j0 in blocks]
        qsum = q[b, g * G : (g + 1) * G, i].sum(axis=0)
        scores = [scale * qsum @ mean for mean in means]
        eligible = [allowed[j0 : j0 + block].any() for j0 in blocks]
        order = sorted((J for J in range(len(means)) if eligible[J]), key=lambda J: (-scores[J], J))
        kept = np.zeros(M, dtype=bool)
        for J in order[:n]:
            kept[J * block : (J + 1) * block] = True
        return kept

    return select


def linear_ref(q, k, v, *, gate=None, phi=None, scale=1.0, causal=True, h0=None):
    """o, final state of (gated) linear attention; gate(b, h, t) -> [Dk] log gates."""
    B, Hq, T, Dk = q.shape
    Hk, Dv = k.shape[1], v.shape[3]
    G = Hq // Hk
    phi = (lambda x: x) if phi is None else phi
    o = np.zeros((B, Hq, T, Dv))
    states = np.zeros((B, Hq, Dk, Dv))
    for b in range(B):
        for h in range(Hq):
            kv = h // G
            S = np.zeros((Dk, Dv)) if h0 is None else h0[b, h].astype(np.float64).copy()
            if causal:
                for t in range(T):
                    decay = np.exp(gate(b, h, t)) if gate else np.ones(Dk)
                    S = decay[:, None] * S + np.outer(phi(k[b, kv, t]), v[b, kv, t])
                    o[b, h, t] = scale * phi(q[b, h, t]) @ S
            else:
                S = S + phi(k[b, kv]).T @ v[b, kv]
                o[b, h] = scale * phi(q[b, h]) @ S
            states[b, h] = S
    return o, states


def alibi_ref(q, k, v, slope):
    """examples/alibi_gqa.attn: ALiBi with per-head slopes, bottom-right causal."""
    return softmax_ref(
        f64(q), f64(k), f64(v),
        score=lambda s, b, h, i, j: s - float(slope[h]) * (i - j),
        mask=lambda b, h, i, j, n, m: j <= i + (m - n),
    )


def rand(rng, shape, dtype, low=-1.0, high=1.0):
    return rng.uniform(low, high, shape).astype(dtype)


def f64(x):
    return np.asarray(x, dtype=np.float64)


PATHS = ["cpu", "cpu-reference"]
# The examples the GPU strategies accept (f16/bf16) also run on the
# CPU warp emulator: the GPU tile program against the NumPy definitions.
GPU_PATHS = PATHS + ["gpu-emulator"]


# ---------------------------------------------------------------------------
# Every example


@pytest.mark.parametrize("target", GPU_PATHS)
def test_alibi_gqa(target):
    rng = np.random.default_rng(1)
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn", target=target)
    q, k, v = rand(rng, (2, 4, 9, 64), BF16), rand(rng, (2, 2, 13, 64), BF16), rand(rng, (2, 2, 13, 64), BF16)
    slope = rand(rng, (4,), np.float32, 0, 1)
    o, lse = kernel(q, k, v, slope=slope)
    eo, else_ = alibi_ref(q, k, v, slope)
    check(o, eo, 1)
    check(lse, else_, 1)
    # bf16 given as uint16 bit patterns (documented for callers without ml_dtypes)
    o_bits, _ = kernel(q.view(np.uint16), k.view(np.uint16), v.view(np.uint16), slope=slope)
    np.testing.assert_array_equal(o_bits.view(np.uint16), o.view(np.uint16))


@pytest.mark.parametrize("target", GPU_PATHS)
def test_softcap_window(target):
    rng = np.random.default_rng(2)
    kernel = attnc.compile(EXAMPLES / "softcap_window.attn", target=target)
    q, k, v = (rand(rng, (1, 300, 2, 128), np.float16) for _ in range(3))
    o = kernel(q, k, v)
    t = lambda x: f64(x).transpose(0, 2, 1, 3)
    eo, _ = softmax_ref(
        t(q), t(k), t(v),
        score=lambda s, b, h, i, j: 50 * np.tanh(s / 50),
        mask=lambda b, h, i, j, n, m: j <= i and i - j < 256,
    )
    check(o, eo.transpose(0, 2, 1, 3), 2)


@pytest.mark.parametrize("target", PATHS)
def test_chunk_local(target):
    rng = np.random.default_rng(3)
    kernel = attnc.compile(EXAMPLES / "chunk_local.attn", target=target)
    q, k, v = (rand(rng, (1, 2, 150, 64), np.float32) for _ in range(3))
    eo, _ = softmax_ref(f64(q), f64(k), f64(v), mask=lambda b, h, i, j, n, m: i // 64 == j // 64 and j <= i)
    check(kernel(q, k, v), eo, 3)


@pytest.mark.parametrize("target", GPU_PATHS)
def test_block_sparse(target):
    rng = np.random.default_rng(4)
    kernel = attnc.compile(EXAMPLES / "block_sparse.attn", target=target)
    q, k, v = (rand(rng, (1, 2, 70, 64), BF16) for _ in range(3))
    blocks = rng.random((1, 2, 3, 3)) < 0.6
    eo, _ = softmax_ref(
        f64(q), f64(k), f64(v),
        mask=lambda b, h, i, j, n, m: bool(blocks[b, h, i // 32, j // 32]) and j <= i,
    )
    check(kernel(q, k, v, blocks=blocks), eo, 4)


@pytest.mark.parametrize("target", PATHS)
def test_kv_index_lists(target):
    rng = np.random.default_rng(5)
    kernel = attnc.compile(EXAMPLES / "kv_index_lists.attn", target=target)
    q, k, v = rand(rng, (1, 2, 40, 64), np.float32), rand(rng, (1, 2, 50, 64), np.float32), rand(rng, (1, 2, 50, 64), np.float32)
    counts = rng.integers(0, 4, (1, 2, 3)).astype(np.int32)
    indices = rng.integers(0, 4, (1, 2, 3, 3)).astype(np.int32)
    listed = lambda b, h, i, j: (j // 16) in indices[b, h, i // 16, : min(counts[b, h, i // 16], 3)]
    eo, _ = softmax_ref(f64(q), f64(k), f64(v), mask=lambda b, h, i, j, n, m: listed(b, h, i, j))
    check(kernel(q, k, v, counts=counts, indices=indices), eo, 5)


@pytest.mark.parametrize("target", GPU_PATHS)
def test_topk_select(target):
    rng = np.random.default_rng(6)
    kernel = attnc.compile(EXAMPLES / "topk_select.attn", target=target)
    q, k, v = rand(rng, (1, 4, 40, 64), BF16), rand(rng, (1, 2, 40, 64), BF16), rand(rng, (1, 2, 40, 64), BF16)
    select = topk_selector(f64(q), f64(k), 4, 16, 1 / 8)
    eo, _ = softmax_ref(f64(q), f64(k), f64(v), mask=lambda b, h, i, j, n, m: j <= i, select=select)
    check(kernel(q, k, v), eo, 6)


@pytest.mark.parametrize("target", GPU_PATHS)
def test_varlen_causal(target):
    rng = np.random.default_rng(7)
    kernel = attnc.compile(EXAMPLES / "varlen_causal.attn", target=target)
    cu = np.array([0, 7, 7, 30, 41], dtype=np.int32)  # an empty sequence too
    q, k, v = (rand(rng, (41, 2, 64), BF16) for _ in range(3))
    o, lse = kernel(q, k, v, cu=cu)
    for s in range(len(cu) - 1):
        a, b = cu[s], cu[s + 1]
        if a == b:
            continue
        part = lambda x: f64(x[a:b]).transpose(1, 0, 2)[None]
        eo, else_ = softmax_ref(part(q), part(k), part(v), mask=lambda bb, h, i, j, n, m: j <= i)
        check(o[a:b], eo[0].transpose(1, 0, 2), 7)
        check(lse[:, a:b], else_[0], 7)


@pytest.mark.parametrize("target", GPU_PATHS)
def test_gla_with_and_without_initial_state(target):
    rng = np.random.default_rng(8)
    kernel = attnc.compile(EXAMPLES / "gla.attn", target=target)
    q, k = rand(rng, (1, 21, 2, 64), BF16), rand(rng, (1, 21, 2, 64), BF16)
    v = rand(rng, (1, 21, 2, 128), BF16)
    g = rand(rng, (1, 21, 2, 64), np.float32, -1, 0)
    h0 = rand(rng, (1, 2, 64, 128), np.float32)
    t = lambda x: f64(x).transpose(0, 2, 1, 3)
    for initial in (None, h0):
        o, state = kernel(q, k, v, g, h0=initial) if initial is not None else kernel(q, k, v, g)
        eo, es = linear_ref(t(q), t(k), t(v), gate=lambda b, h, s: f64(g[b, s, h]), h0=initial)
        check(o, eo.transpose(0, 2, 1, 3), 8)
        check(state, es, 8, BF16 if target == "gpu-emulator" else None)


@pytest.mark.parametrize("target", PATHS)
def test_retnet(target):
    rng = np.random.default_rng(9)
    kernel = attnc.compile(EXAMPLES / "retnet.attn", target=target)
    q, k, v = (rand(rng, (1, 3, 30, 64), np.float32) for _ in range(3))
    gate = lambda b, h, t: np.full(64, np.log(1 - 2.0 ** (-5 - h)))
    eo, _ = linear_ref(f64(q), f64(k), f64(v), gate=gate, scale=0.125)
    check(kernel(q, k, v), eo, 9)


@pytest.mark.parametrize("target", GPU_PATHS)
def test_mamba2_decay(target):
    rng = np.random.default_rng(10)
    kernel = attnc.compile(EXAMPLES / "mamba2_decay.attn", target=target)
    q, k, v = (rand(rng, (1, 2, 25, 64), np.float16) for _ in range(3))
    a = rand(rng, (1, 2, 25), np.float32, -1, 0)
    o, state = kernel(q, k, v, a)
    eo, es = linear_ref(f64(q), f64(k), f64(v), gate=lambda b, h, t: np.full(64, a[b, h, t]))
    check(o, eo, 10)
    check(state, es, 10, np.float16 if target == "gpu-emulator" else None)


@pytest.mark.parametrize("target", PATHS)
def test_linear_elu(target):
    rng = np.random.default_rng(11)
    kernel = attnc.compile(EXAMPLES / "linear_elu.attn", target=target)
    q, k, v = (rand(rng, (1, 2, 17, 32), np.float32) for _ in range(3))
    phi = lambda x: np.where(x > 0, x + 1, np.exp(x))
    eo, _ = linear_ref(f64(q), f64(k), f64(v), phi=phi, causal=False)
    check(kernel(q, k, v), eo, 11)


@pytest.mark.parametrize("target", PATHS)
def test_varlen_gla(target):
    rng = np.random.default_rng(12)
    kernel = attnc.compile(EXAMPLES / "varlen_gla.attn", target=target)
    cu = np.array([0, 0, 9, 20], dtype=np.int32)
    q, k, v = (rand(rng, (20, 2, 32), np.float32) for _ in range(3))
    g = rand(rng, (20, 2, 32), np.float32, -1, 0)
    o, state = kernel(q, k, v, g, cu)
    assert state.shape == (3, 2, 32, 32)
    for s in range(3):
        a, b = cu[s], cu[s + 1]
        part = lambda x: f64(x[a:b]).transpose(1, 0, 2)[None]
        eo, es = linear_ref(part(q), part(k), part(v), gate=lambda bb, h, t: f64(g[a + t, h]))
        if b > a:
            check(o[a:b], eo[0].transpose(1, 0, 2), 12)
        check(state[s], es[0], 12)


# ---------------------------------------------------------------------------
# Errors, caching, inputs


def test_spec_errors_carry_diagnostics():
    with pytest.raises(attnc.SpecError) as error:
        attnc.compile("kernel k(q: f32[B, H, N, 8], k: f32[B, H, N, 8], v: f32[B, H, N, 8])\n"
                      "    -> (o: f32[B, H, N, 8]) {\n  o = softmax(q, k, v) { score = s * w }\n}")
    diagnostic = error.value.diagnostics[0]
    assert (diagnostic.file, diagnostic.line, diagnostic.col) == ("<string>", 3, 38)
    assert "unknown name 'w'" in diagnostic.message
    assert "names available here" in diagnostic.hint
    assert str(error.value).startswith("<string>:3:38: unknown name 'w'")


def test_unknown_target_and_kernel():
    with pytest.raises(ValueError, match="unknown target 'sm_75'"):
        attnc.compile(EXAMPLES / "retnet.attn", target="sm_75")
    with pytest.raises(ValueError, match="no kernel named 'nope'"):
        attnc.compile(EXAMPLES / "retnet.attn", kernel="nope")


def test_compiling_twice_hits_the_cache():
    first = attnc.compile(EXAMPLES / "retnet.attn")
    assert attnc.compile(EXAMPLES / "retnet.attn") is first
    assert attnc.compile(EXAMPLES / "retnet.attn", target="cpu-reference") is not first


def test_bad_inputs_name_the_tensor():
    kernel = attnc.compile(EXAMPLES / "retnet.attn")
    q = np.zeros((1, 2, 5, 64), np.float32)
    with pytest.raises(TypeError, match="input 'k' must be f32 \\(f32\\[B, H, T, 64\\]\\), got float64"):
        kernel(q, q.astype(np.float64), q)
    with pytest.raises(ValueError, match="input 'k' must have shape f32\\[B, H, T, 64\\], got \\[1, 2, 6, 64\\]"):
        kernel(q, np.zeros((1, 2, 6, 64), np.float32), q)
    with pytest.raises(TypeError, match="missing input 'v'"):
        kernel(q, q)
    with pytest.raises(TypeError, match="unknown input 'x'"):
        kernel(q, q, q, x=q)
    with pytest.raises(TypeError, match="input 'q' is given twice"):
        kernel(q, q, q, q=q)
    with pytest.raises(ValueError, match="input 'q' must have shape"):
        kernel(np.zeros((2, 5, 64), np.float32), q, q)


def test_bad_gates_raise():
    kernel = attnc.compile(EXAMPLES / "mamba2_decay.attn")
    q = np.zeros((1, 1, 4, 64), np.float16)
    a = np.zeros((1, 1, 4), np.float32)
    a[0, 0, 2] = 0.5
    with pytest.raises(ValueError, match="gate value 0.5 at b=0, h=0, t=2"):
        kernel(q, q, q, a)


def test_non_contiguous_and_dlpack_inputs():
    kernel = attnc.compile(EXAMPLES / "chunk_local.attn")
    rng = np.random.default_rng(13)
    flash = rand(rng, (1, 70, 2, 64), np.float32)  # [B, N, H, D] data
    view = flash.transpose(0, 2, 1, 3)              # a strided [B, H, N, D] view
    k, v = rand(rng, (1, 2, 70, 64), np.float32), rand(rng, (1, 2, 70, 64), np.float32)
    expected = kernel(np.ascontiguousarray(view), k, v)
    np.testing.assert_array_equal(kernel(view, k, v), expected)

    class DLPackOnly:  # any object with __dlpack__ on the CPU
        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    np.testing.assert_array_equal(kernel(DLPackOnly(np.ascontiguousarray(view)), k, v), expected)


def test_cpu_threads_do_not_change_results():
    rng = np.random.default_rng(21)
    kernel = attnc.compile(EXAMPLES / "retnet.attn")
    q, k, v = (rand(rng, (2, 3, 40, 64), np.float32) for _ in range(3))
    kernel.threads = 1
    assert kernel.threads == 1
    serial = kernel(q, k, v)
    kernel.threads = 4
    assert kernel.threads == 4
    np.testing.assert_array_equal(kernel(q, k, v), serial)
    kernel.threads = 0
    assert kernel.threads >= 1
    with pytest.raises(ValueError, match="thread count must be positive"):
        kernel.threads = -3
    for huge in (2**31, 2**70):
        with pytest.raises(ValueError, match="thread count must be between 0 .* got " + str(huge)):
            kernel.threads = huge
    gpu = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_80")
    assert gpu.threads == 0
    with pytest.raises(ValueError, match="only CPU kernels"):
        gpu.threads = 2


def test_torch_tensors_when_available():
    torch = pytest.importorskip("torch", reason="torch is not installed; the torch path is not tested")
    kernel = attnc.compile(EXAMPLES / "chunk_local.attn")
    q = torch.rand(1, 2, 10, 64)
    out = kernel(q, q, q)
    assert out.shape == (1, 2, 10, 64)
    # bf16 tensors, which NumPy cannot hold, are read as their bits: the
    # same result as from their ml_dtypes copies.
    bf16 = attnc.compile(EXAMPLES / "alibi_gqa.attn")
    gen = torch.Generator().manual_seed(3)
    qkv = [torch.randn(shape, generator=gen).to(torch.bfloat16) for shape in ((1, 4, 9, 64), (1, 2, 9, 64), (1, 2, 9, 64))]
    slope = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    o, lse = bf16(*qkv, slope)
    copies = [x.view(torch.int16).numpy().view(ml_dtypes.bfloat16) for x in qkv]
    o_copy, lse_copy = bf16(*copies, slope.numpy())
    np.testing.assert_array_equal(np.asarray(o, np.float32), np.asarray(o_copy, np.float32))
    np.testing.assert_array_equal(lse, lse_copy)
    # A tensor that is not in CPU memory is refused, naming the input (a
    # stand-in: torch without CUDA cannot make one).

    class OnDevice:
        def __dlpack__(self, stream=None):
            raise AssertionError("not read")

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA

    with pytest.raises(TypeError, match="input 'q' is not in CPU memory"):
        kernel(OnDevice(), q, q)


# ---------------------------------------------------------------------------
# GPU targets: compiling needs no GPU; running needs one (and PyTorch).


def test_gpu_targets_compile_without_a_gpu():
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_90a")
    assert kernel.is_gpu and kernel.target == "sm_90a"
    assert ".target sm_90a" in kernel.ptx
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in kernel.ptx
    assert [p.name for p in kernel.params] == ["q", "k", "v", "slope"]
    # f32 linear kernels split their operands into bf16 pairs.
    retnet = attnc.compile(EXAMPLES / "retnet.attn", target="sm_80")
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in retnet.ptx
    chunk128 = (
        "kernel c(q: bf16[B, H, T, 64], k: bf16[B, H, T, 64], v: bf16[B, H, T, 64])\n"
        "    -> (o: bf16[B, H, T, 64]) {\n"
        "  o = linear(q, k, v) { chunk = 128 }\n}\n"
    )
    with pytest.raises(ValueError, match="the chunk must be a multiple of 16 up to 64 on the GPU"):
        attnc.compile(chunk128, target="sm_80")


def test_workspace_bytes_from_shapes():
    # GLA over 300 tokens and 2 heads: one segment, 2 blocks of 64 value
    # columns x 2 heads = 4 CTAs, a header of 1 + 4 words padded to 8, then
    # a 64 x 64 f32 state per CTA.
    shapes = dict(q=(1, 300, 2, 64), k=(1, 300, 2, 64), v=(1, 300, 2, 128), g=(1, 300, 2, 64))
    gla = attnc.compile(EXAMPLES / "gla.attn", target="sm_80")
    assert gla.workspace_bytes(**shapes) == 8 * 4 + 4 * 64 * 64 * 4
    assert gla.workspace_bytes(*(np.empty(s, np.float32) for s in shapes.values())) == 8 * 4 + 4 * 64 * 64 * 4
    # No split, or the CPU: none.
    decode = [(1, 4, 1, 64), (1, 2, 5000, 64), (1, 2, 5000, 64), (4,)]
    assert attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_80").workspace_bytes(*decode) == 0
    assert attnc.compile(EXAMPLES / "gla.attn").workspace_bytes(**shapes) == 0
    # Key splits of 1024: 5 splits x 4 heads, 64 rows x (64 + 1) floats each.
    split = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_80", split_keys=1024)
    assert split.workspace_bytes(*decode) == 24 * 4 + 20 * 64 * 65 * 4
    with pytest.raises(ValueError, match="input 'v' must have shape bf16\\[B, T, H, 128\\]"):
        gla.workspace_bytes(**dict(shapes, v=(1, 300, 2, 64)))


@pytest.mark.parametrize(
    "target, options",
    [
        ("cpu", {"block_q": 16, "block_k": 32}),
        ("gpu-emulator", {"mma": "wgmma"}),
        ("gpu-emulator", {"mma": "wgmma", "warp_specialize": True}),
        ("gpu-emulator", {"warps": 2, "block_k": 32, "rows_per_warp": 32}),
        ("gpu-emulator", {"block_k": 32, "split_keys": 32}),
        ("gpu-emulator", {"block_k": 32, "split_keys": "auto"}),
        ("gpu-emulator", {"pack_gqa": True, "split_keys": "auto"}),
    ],
)
def test_tuning_options_keep_results(target, options):
    rng = np.random.default_rng(3)
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn", target=target, **options)
    assert kernel is not attnc.compile(EXAMPLES / "alibi_gqa.attn", target=target)
    q, k, v = rand(rng, (1, 4, 70, 64), BF16), rand(rng, (1, 2, 75, 64), BF16), rand(rng, (1, 2, 75, 64), BF16)
    slope = rand(rng, (4,), np.float32, 0, 1)
    o, lse = kernel(q, k, v, slope=slope)
    eo, else_ = alibi_ref(q, k, v, slope)
    check(o, eo, 1)
    check(lse, else_, 1)


def test_tuning_options_reach_the_ptx_and_bad_ones_raise():
    spec = EXAMPLES / "alibi_gqa.attn"
    tuned = attnc.compile(spec, target="sm_90a", mma="wgmma", warps=8)
    assert "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16" in tuned.ptx
    assert attnc.compile(spec, target="sm_90a", warps=8, mma="wgmma") is tuned
    assert "wgmma" not in attnc.compile(spec, target="sm_90a").ptx
    with pytest.raises(ValueError, match="unknown GPU option 'tile=4'"):
        attnc.compile(spec, target="sm_80", tile=4)
    with pytest.raises(ValueError, match="GPU option 'warps=four' needs a non-negative integer"):
        attnc.compile(spec, target="sm_80", warps="four")
    with pytest.raises(ValueError, match="mma=wgmma needs the sm_90a target"):
        attnc.compile(spec, target="sm_80", mma="wgmma")
    specialized = attnc.compile(spec, target="sm_90a", mma="wgmma", warp_specialize=True)
    assert "cp.async.mbarrier.arrive.noinc" in specialized.ptx
    with pytest.raises(ValueError, match="warp-specialize builds wgmma kernels; add mma=wgmma"):
        attnc.compile(spec, target="sm_90a", warp_specialize=True)
    assert "atom.global.add.u32" in attnc.compile(spec, target="sm_80", split_keys=1024).ptx
    # split-keys=auto reads the number of splits the launch chose from the grid.
    assert "%nctaid.x" in attnc.compile(spec, target="sm_80", split_keys="auto").ptx
    with pytest.raises(ValueError, match="GPU option 'split-keys=many' needs a non-negative number of keys or auto"):
        attnc.compile(spec, target="sm_80", split_keys="many")
    with pytest.raises(ValueError, match="split-keys \\(100\\) must be a multiple of the key tile \\(64 keys\\)"):
        attnc.compile(spec, target="sm_80", split_keys=100)
    # pack-gqa: one CTA per kv head (and split) holds the group's 2 query
    # heads: 5 splits x 2 kv heads, a header of 1 + 10 words padded to 12.
    decode = [(1, 4, 1, 64), (1, 2, 5000, 64), (1, 2, 5000, 64), (4,)]
    packed = attnc.compile(spec, target="sm_80", pack_gqa=True, split_keys=1024)
    assert packed.workspace_bytes(*decode) == 12 * 4 + 10 * 64 * 65 * 4
    with pytest.raises(ValueError, match="pack-gqa packs the query heads of dense and chunk-local kernels only"):
        attnc.compile(EXAMPLES / "block_sparse.attn", target="sm_80", pack_gqa=True)
    with pytest.raises(ValueError, match="unknown CPU option 'warps=8'"):
        attnc.compile(spec, target="cpu", warps=8)
    with pytest.raises(ValueError, match="target cpu-reference takes no options"):
        attnc.compile(spec, target="cpu-reference", block_q=16)
    with pytest.raises(TypeError, match="option warps takes an int or a str, got float"):
        attnc.compile(spec, target="sm_80", warps=4.0)


def test_gpu_images_load_without_compiling(tmp_path):
    assert attnc.HAS_COMPILER
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_80")
    image = kernel.image()
    loaded = attnc.load(image)
    assert loaded.target == "sm_80" and loaded.name == kernel.name
    assert loaded.params == kernel.params and loaded.results == kernel.results
    assert loaded.ptx == kernel.ptx
    path = tmp_path / "alibi.img"
    path.write_bytes(image)
    assert attnc.load(path).params == kernel.params
    assert attnc.compile(EXAMPLES / "alibi_gqa.attn").image() == b""
    damaged = bytearray(image)
    damaged[-10] ^= 1
    for bad in (bytes(damaged), image[: len(image) // 2], b"hello"):
        with pytest.raises(ValueError, match="not a usable attnc GPU image"):
            attnc.load(bad)
    q = np.zeros((1, 4, 8, 64), BF16)
    with pytest.raises(TypeError, match="input 'q' is not on a CUDA device"):
        loaded(q, q[:, :2], q[:, :2], slope=np.zeros(4, np.float32))


def test_gpu_kernels_refuse_host_arrays():
    kernel = attnc.compile(EXAMPLES / "varlen_causal.attn", target="sm_80")
    q = np.zeros((8, 2, 64), BF16)
    cu = np.array([0, 8], np.int32)
    with pytest.raises(TypeError, match="input 'q' is not on a CUDA device"):
        kernel(q, q, q, cu)
    with pytest.raises(TypeError, match="input 'q' is a list, not a DLPack tensor"):
        kernel([0], q, q, cu)


def test_dlpack_views_read_shape_strides_and_offset():
    base = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    view = base[:, 1:, ::2]  # offset and non-unit strides
    dl = attnc._dlpack_view(view, "x")
    pointer, code, shape, strides = dl.arg
    assert dl.device == (1, 0) and dl.library == "numpy"
    assert attnc._DTYPE_NAMES[code] == "f32"
    assert shape == [2, 2, 2] and strides == [12, 4, 2]
    assert pointer == base.ctypes.data + 4 * 4
    half = attnc._dlpack_view(np.zeros((3,), np.float16), "h")
    assert attnc._DTYPE_NAMES[half.arg[1]] == "f16"


def test_cuda_target_needs_a_gpu_to_pick_the_architecture():
    try:
        kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="cuda")
    except ValueError as error:
        assert "name sm_80 or sm_90a to compile without a GPU" in str(error)
    else:  # a GPU machine: the architecture it found
        assert kernel.target in ("sm_80", "sm_90a")


def test_gpu_matches_numpy_when_a_gpu_is_present():
    torch = pytest.importorskip("torch", reason="torch is not installed; GPU tensors are not tested")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch")
    kernels = {
        "default": attnc.compile(EXAMPLES / "alibi_gqa.attn", target="cuda"),
        "split keys": attnc.compile(EXAMPLES / "alibi_gqa.attn", target="cuda", block_k=32, split_keys=32),
        "split keys auto": attnc.compile(EXAMPLES / "alibi_gqa.attn", target="cuda", block_k=32, split_keys="auto"),
    }
    if torch.cuda.get_device_capability() == (9, 0):
        # Hopper also runs the wgmma kernel, one and two warpgroups per CTA,
        # with and without a producer warpgroup.
        for warps in (4, 8):
            for specialize in (False, True):
                kernels[f"wgmma, {warps} warps, warp_specialize={specialize}"] = attnc.compile(
                    EXAMPLES / "alibi_gqa.attn", target="sm_90a", mma="wgmma", warps=warps,
                    warp_specialize=specialize,
                )
    rng = np.random.default_rng(5)
    q, k, v = rand(rng, (2, 4, 130, 64), BF16), rand(rng, (2, 2, 77, 64), BF16), rand(rng, (2, 2, 77, 64), BF16)
    slope = rand(rng, (4,), np.float32, 0, 1)

    def cuda(x):
        if x.dtype == BF16:
            return torch.from_numpy(x.view(np.uint16).astype(np.int32)).to(torch.int16).view(torch.bfloat16).cuda()
        return torch.from_numpy(x).cuda()

    eo, else_ = alibi_ref(q, k, v, slope)
    for name, kernel in kernels.items():
        o, lse = kernel(cuda(q), cuda(k), cuda(v), slope=cuda(slope))
        check(o.float().cpu().numpy(), eo, f"5 ({name})")
        check(lse.cpu().numpy(), else_, f"5 ({name})")
