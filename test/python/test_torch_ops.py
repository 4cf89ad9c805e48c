"""attnc kernels as torch.library custom operators, eager and under
torch.compile. Skipped (with the reason) when torch is not installed;
scripts/test.sh installs it. Reference values come from the attnc kernel
called directly on NumPy arrays, which test_attnc.py checks against NumPy
definitions; here the question is whether the operator wiring (dtypes, bf16
views, optional inputs, several results, fake shapes, dynamic shapes) is
right, so outputs must be bit-identical.
"""

import os
import pathlib

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed; the torch.library integration is not tested")
if not hasattr(torch.library, "custom_op"):
    pytest.skip(f"torch {torch.__version__} has no torch.library.custom_op (needs >= 2.4)", allow_module_level=True)

import attnc  # noqa: E402

EXAMPLES = pathlib.Path(os.environ.get("ATTNC_EXAMPLES", pathlib.Path(__file__).parents[2] / "examples"))
BF16 = np.dtype(ml_dtypes.bfloat16)


def bf16_tensor(gen, shape):
    return torch.empty(shape).uniform_(-1, 1, generator=gen).to(torch.bfloat16)


def as_numpy(tensor):
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(BF16)
    return tensor.numpy()


def assert_same(actual, expected):
    assert actual.dtype == (torch.bfloat16 if expected.dtype == BF16 else torch.from_numpy(expected).dtype)
    np.testing.assert_array_equal(as_numpy(actual).astype(np.float64), np.asarray(expected, np.float64))


def alibi_inputs(seed, n=37, m=45):
    gen = torch.Generator().manual_seed(seed)
    q = bf16_tensor(gen, (2, 4, n, 64))
    k = bf16_tensor(gen, (2, 2, m, 64))
    v = bf16_tensor(gen, (2, 2, m, 64))
    slope = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    return q, k, v, slope


def test_cpu_operator_matches_the_kernel():
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn")
    op = kernel.torch_op()
    assert op is kernel.torch_op()
    assert kernel.torch_op("alibi_cpu_test") is not op
    schema = torch.ops.attnc.alibi_cpu_test.default._schema
    assert [a.name for a in schema.arguments] == ["q", "k", "v", "slope"]
    assert len(schema.returns) == 2
    q, k, v, slope = alibi_inputs(1)
    o, lse = op(q, k, v, slope)
    eo, e_lse = kernel(as_numpy(q), as_numpy(k), as_numpy(v), slope.numpy())
    assert o.shape == (2, 4, 37, 64) and lse.shape == (2, 4, 37)
    assert_same(o, eo)
    assert_same(lse, e_lse)
    # the same operator through torch.ops
    o2, _ = torch.ops.attnc.alibi_cpu_test(q, k, v, slope)
    assert torch.equal(o, o2)


def test_kernels_compiled_with_other_options_get_their_own_operators():
    # Same spec and target, other tile sizes: a distinct kernel, so a
    # distinct default operator (one name for both would collide).
    plain = attnc.compile(EXAMPLES / "alibi_gqa.attn")
    tuned = attnc.compile(EXAMPLES / "alibi_gqa.attn", block_q=16, block_k=32)
    assert tuned is not plain
    plain_op, tuned_op = plain.torch_op(), tuned.torch_op()
    assert plain_op is not tuned_op
    assert plain_op._qualname != tuned_op._qualname
    q, k, v, slope = alibi_inputs(11)
    for kernel, op in ((plain, plain_op), (tuned, tuned_op)):
        o, lse = op(q, k, v, slope)
        eo, e_lse = kernel(as_numpy(q), as_numpy(k), as_numpy(v), slope.numpy())
        assert_same(o, eo)
        assert_same(lse, e_lse)


def test_optional_inputs_and_non_contiguous_tensors():
    kernel = attnc.compile(EXAMPLES / "gla.attn")
    op = kernel.torch_op()
    gen = torch.Generator().manual_seed(2)
    # [B, H, T, D] storage permuted to the spec's [B, T, H, D]: strided views
    q, k = (bf16_tensor(gen, (1, 2, 19, 64)).transpose(1, 2) for _ in range(2))
    v = bf16_tensor(gen, (1, 19, 2, 128))
    g = -torch.rand(1, 19, 2, 64, generator=gen)
    h0 = torch.rand(1, 2, 64, 128, generator=gen)
    for initial in (None, h0):
        o, state = op(q, k, v, g, initial)
        eo, es = kernel(
            as_numpy(q), as_numpy(k), as_numpy(v), g.numpy(), h0=None if initial is None else initial.numpy()
        )
        assert_same(o, eo)
        assert_same(state, es)


def test_opcheck():
    # schema, fake vs real implementation, and the dispatcher paths
    op = attnc.compile(EXAMPLES / "alibi_gqa.attn").torch_op()
    torch.library.opcheck(op, alibi_inputs(3))
    gla = attnc.compile(EXAMPLES / "varlen_gla.attn").torch_op()
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.rand(30, 2, 32, generator=gen) for _ in range(3))
    g = -torch.rand(30, 2, 32, generator=gen)
    cu = torch.tensor([0, 7, 7, 30], dtype=torch.int32)
    torch.library.opcheck(gla, (q, k, v, g, cu, None))


def test_torch_compile_keeps_the_operator_in_one_graph():
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn")
    op = kernel.torch_op()

    def block(q, k, v, slope):
        o, lse = op(q * 2, k, v, slope)
        return o.float().sum(dim=-1) + lse

    compiled = torch.compile(block, fullgraph=True, dynamic=True)
    for seed, n, m in ((5, 37, 45), (6, 20, 70), (7, 1, 3)):
        inputs = alibi_inputs(seed, n, m)
        torch.testing.assert_close(compiled(*inputs), block(*inputs), rtol=0, atol=0)


def test_packed_final_state_shape_follows_the_sequences():
    # hT has one entry per sequence: a result dim no input carries
    kernel = attnc.compile(EXAMPLES / "varlen_gla.attn")
    op = kernel.torch_op()
    compiled = torch.compile(lambda *a: op(*a)[1] * 1, fullgraph=True)
    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.rand(40, 2, 32, generator=gen) for _ in range(3))
    g = -torch.rand(40, 2, 32, generator=gen)
    for offsets in ([0, 40], [0, 3, 3, 25, 40]):
        cu = torch.tensor(offsets, dtype=torch.int32)
        state = compiled(q, k, v, g, cu, None)
        assert state.shape == (len(offsets) - 1, 2, 32, 32)
        _, expected = kernel(q.numpy(), k.numpy(), v.numpy(), g.numpy(), cu.numpy())
        assert_same(state, expected)


def test_tracing_reports_bad_shapes_and_dtypes_by_name():
    op = attnc.compile(EXAMPLES / "alibi_gqa.attn").torch_op()
    q, k, v, slope = alibi_inputs(9)
    with pytest.raises(Exception, match="'v'"):
        torch.compile(op, fullgraph=True)(q, k, v[..., :32], slope)
    with pytest.raises(Exception, match="'slope'.*f32"):
        torch.compile(op, fullgraph=True)(q, k, v, slope.double())
    with pytest.raises(ValueError, match="'v'"):  # eager: the kernel's own check
        op(q, k, v[..., :32], slope)


def test_spec_errors_at_launch_still_raise():
    op = attnc.compile(EXAMPLES / "varlen_gla.attn").torch_op()
    q = torch.rand(10, 2, 32)
    g = -torch.rand(10, 2, 32)
    with pytest.raises(ValueError, match="offsets must start at 0, be non-decreasing"):
        op(q, q, q, g, torch.tensor([0, 8, 4], dtype=torch.int32), None)


def test_gpu_operator_registers_without_a_gpu():
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="sm_80")
    op = kernel.torch_op("alibi_sm80_test")
    assert torch.ops.attnc.alibi_sm80_test.default._schema.returns[0].type.kind() == "TensorType"
    with pytest.raises(Exception):  # only a CUDA implementation is registered
        op(*alibi_inputs(10))


def test_names_must_be_identifiers():
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn")
    with pytest.raises(ValueError, match="must be an identifier"):
        kernel.torch_op("not a name")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the GPU operator is not run")
def test_gpu_operator_matches_the_cpu_kernel():
    gpu = attnc.compile(EXAMPLES / "alibi_gqa.attn", target="cuda").torch_op()
    cpu = attnc.compile(EXAMPLES / "alibi_gqa.attn").torch_op()
    inputs = alibi_inputs(11, 300, 300)
    o, lse = torch.compile(gpu, fullgraph=True)(*(t.cuda() for t in inputs))
    eo, e_lse = cpu(*inputs)
    torch.testing.assert_close(o.cpu().float(), eo.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(lse.cpu(), e_lse, rtol=1e-3, atol=1e-3)


def test_backward_is_refused_not_wrong():
    # Block lists whose 64-row key blocks outgrow the GPU backward's CTA of a
    # 32-row query block: the forward runs, the backward says why it cannot.
    spec = """kernel lists(q: bf16[B, H, N, 64], k: bf16[B, H, M, 64], v: bf16[B, H, M, 64],
             counts: i32[B, H, QB], indices: i32[B, H, QB, W]) -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { block_q = 32; block_k = 64; kv_num_blocks = counts; kv_indices = indices }
}
"""
    op = attnc.compile(spec, target="gpu-emulator").torch_op()
    q = torch.rand(1, 1, 32, 64, dtype=torch.bfloat16, requires_grad=True)
    kv = torch.rand(1, 1, 64, 64, dtype=torch.bfloat16)
    counts = torch.ones(1, 1, 1, dtype=torch.int32)
    indices = torch.zeros(1, 1, 1, 1, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="has no backward: .*computes a tile of 64 rows, more than the 32 block rows"):
        op(q, kv, kv, counts, indices).float().sum().backward()
