"""Gradients of attnc's torch operators against torch autograd on float64
eager implementations written here (docs/semantics.md section 8): dQ, dK,
dV and the gradients of the score's float inputs (slopes, bias tables), for
GQA, windows, softcapping, the bnhd layout on strided views, document
masks with empty rows, block-sparse
masks and lists (a repeated entry, a block row without keys), top-k
selection (the saved selection against a float64 one), varlen, sigmoid and
no normalizer, N != M, and lse in the loss; torch.compile with
fullgraph=True over forward and backward; the NumPy entry kernel.backward;
the GPU backward through the same operator on the warp emulator; and the
refusal (linear). Tolerances: f32
kernels 2e-5 relative to the largest gradient (the kernels sum in f32),
bf16 kernels 2e-2 (o and the gradients are rounded to bf16). Every case prints its seed when
it fails.
"""

import math
import os
import pathlib

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed; torch autograd is not tested")
if not hasattr(torch.library, "custom_op"):
    pytest.skip(f"torch {torch.__version__} has no torch.library.custom_op (needs >= 2.4)", allow_module_level=True)

import attnc  # noqa: E402

EXAMPLES = pathlib.Path(os.environ.get("ATTNC_EXAMPLES", pathlib.Path(__file__).parents[2] / "examples"))
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def attention_f64(q, k, v, score, allowed, normalizer="softmax"):
    """[B, H, N, D] float64 attention by definition; kv heads repeat for GQA.
    ``score(s, h, i, j)`` maps the scaled scores, ``allowed(i, j)`` is the
    [N, M] mask. Returns o and lse (softmax; rows without a key: o = 0 and
    lse = -inf)."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    n, m = q.shape[2], k.shape[2]
    i, j = torch.arange(n)[:, None], torch.arange(m)[None, :]
    h = torch.arange(q.shape[1])[:, None, None]
    s = score(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), h, i, j)
    mask = allowed(i, j).expand(n, m)
    if normalizer == "softmax":
        s = s.masked_fill(~mask, -math.inf)
        lse = torch.logsumexp(s, -1)
        p = torch.exp(s - torch.where(torch.isinf(lse), 0, lse)[..., None])
        return p @ v, lse
    p = torch.sigmoid(s) if normalizer == "sigmoid" else s
    return p.masked_fill(~mask, 0) @ v, None


def leaves(gen, shapes, dtype):
    return [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for shape in shapes]


def check_gradients(op, inputs, reference, seed, weights_gen, use_lse):
    """Runs the loss sum(o * W) (+ sum(lse * W') with use_lse) through the
    operator and through ``reference`` on float64 copies; compares every
    input's gradient."""
    outputs = op(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    weights = [torch.randn(o.shape, generator=weights_gen, dtype=torch.float64) for o in outputs]
    loss = (outputs[0].double() * weights[0]).sum()
    if use_lse:
        loss = loss + (torch.where(torch.isinf(outputs[1]), 0, outputs[1]).double() * weights[1]).sum()
    loss.backward()

    exact = [None if x is None else x.detach().double().requires_grad_(x.requires_grad) for x in inputs]
    o, lse = reference(*exact)
    expected = (o * weights[0]).sum()
    if use_lse:
        expected = expected + (torch.where(torch.isinf(lse), 0, lse) * weights[1]).sum()
    expected.backward()
    tolerance = TOLERANCE[inputs[0].dtype]  # bf16 q, k, v: o is rounded to bf16 too
    for index, (x, e) in enumerate(zip(inputs, exact)):
        if x is None or not x.requires_grad:
            continue
        assert x.grad is not None, f"seed {seed}: input {index} got no gradient"
        assert x.grad.dtype == x.dtype and x.grad.shape == x.shape
        assert torch.isfinite(x.grad).all(), f"seed {seed}: input {index} has a non-finite gradient"
        scale = max(e.grad.abs().max().item(), 1e-3)
        error = (x.grad.double() - e.grad).abs().max().item() / scale
        assert error <= tolerance, f"seed {seed}: input {index}: relative error {error:.3g}"


def dense_spec(name, params, body, q="q", results="o: f32[B, Hq, N, D], lse: f32[B, Hq, N]", outputs="o, lse",
               dtype="f32"):
    return (f"kernel {name}(q: {dtype}[B, Hq, N, D], k: {dtype}[B, Hk, M, D], v: {dtype}[B, Hk, M, D]{params})"
            f" -> ({results.replace('f32[B, Hq, N, D]', dtype + '[B, Hq, N, D]')}) {{\n"
            f"  {outputs} = softmax(q, k, v) {{ {body} }}\n}}\n")


CASES = {
    # name: (spec params, body, extra input shapes, score(s, h, i, j, *extras), allowed(i, j, n, m), (B, Hq, Hk, N, M))
    "alibi_gqa_window": (", slope: f32[Hq]", "score = s - slope[h] * (i - j); mask = causal && i - j < 4",
                         [("Hq",)], lambda s, h, i, j, slope: s - slope[h] * (i - j),
                         lambda i, j, n, m: (j <= i + (m - n)) & (i - (j - (m - n)) < 4), (2, 4, 2, 9, 9)),
    "softcap_n_ne_m": ("", "score = 5 * tanh(s / 5); mask = causal", [],
                       lambda s, h, i, j: 5 * torch.tanh(s / 5), lambda i, j, n, m: j <= i + (m - n), (1, 2, 2, 6, 11)),
    "relative_bias_table": (", rel: f32[Hq, 17]", "score = s + rel[h, i - j + 8]; mask = i - j <= 8 && j <= i",
                            [("Hq", 17)], lambda s, h, i, j, rel: s + rel[h, (i - j + 8).clamp(0, 16)],
                            lambda i, j, n, m: (i - j <= 8) & (j <= i), (2, 3, 3, 13, 13)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("use_lse", [False, True])
def test_gradients_match_float64_autograd(name, use_lse):
    params, body, extra, score, allowed, (b, hq, hk, n, m) = CASES[name]
    d = 8
    kernel = attnc.compile(dense_spec(name, params, body) if use_lse else
                           dense_spec(name, params, body, results="o: f32[B, Hq, N, D]", outputs="o"))
    assert kernel.backward_kernel.target == "cpu"  # the tiled backward
    op = kernel.torch_op()
    seed = 1000 + sorted(CASES).index(name) * 2 + use_lse
    gen = torch.Generator().manual_seed(seed)
    sizes = {"Hq": hq}
    tensors = leaves(gen, [(b, hq, n, d), (b, hk, m, d), (b, hk, m, d)]
                     + [tuple(sizes.get(s, s) for s in shape) for shape in extra], torch.float32)

    def reference(q, k, v, *extras):
        return attention_f64(q, k, v, lambda s, h, i, j: score(s, h, i, j, *extras),
                             lambda i, j: allowed(i, j, n, m))

    check_gradients(op, tensors, reference, seed, gen, use_lse)


def test_document_mask_with_empty_rows():
    spec = ("kernel doc(q: f32[B, H, N, D], k: f32[B, H, M, D], v: f32[B, H, M, D], docq: i32[N], dock: i32[M])"
            " -> (o: f32[B, H, N, D], lse: f32[B, H, N]) {\n"
            "  o, lse = softmax(q, k, v) { mask = docq[i] == dock[j] }\n}\n")
    op = attnc.compile(spec).torch_op()
    seed = 2001
    gen = torch.Generator().manual_seed(seed)
    q, k, v = leaves(gen, [(2, 2, 6, 8), (2, 2, 7, 8), (2, 2, 7, 8)], torch.float32)
    docq = torch.tensor([0, 0, 2, 1, 1, 5], dtype=torch.int32)  # rows 2 and 5 see no key
    dock = torch.tensor([0, 1, 1, 0, 3, 1, 0], dtype=torch.int32)

    def reference(q, k, v, docq_, dock_):
        return attention_f64(q, k, v, lambda s, h, i, j: s, lambda i, j: docq[i] == dock[j])

    check_gradients(op, [q, k, v, docq, dock], reference, seed, gen, use_lse=True)
    for x in (q, k, v):
        x.grad = None
    o, _ = op(q, k, v, docq, dock)
    o.sum().backward()
    assert (q.grad[:, :, [2, 5]] == 0).all()


@pytest.mark.parametrize("normalizer", ["sigmoid", "none"])
def test_sigmoid_and_no_normalizer(normalizer):
    spec = dense_spec("norm", "", f"normalizer = {normalizer}; mask = causal",
                      results="o: f32[B, Hq, N, D]", outputs="o")
    op = attnc.compile(spec).torch_op()
    seed = 3001 + (normalizer == "none")
    gen = torch.Generator().manual_seed(seed)
    tensors = leaves(gen, [(1, 2, 7, 8), (1, 1, 7, 8), (1, 1, 7, 8)], torch.float32)

    def reference(q, k, v):
        return attention_f64(q, k, v, lambda s, h, i, j: s, lambda i, j: j <= i, normalizer)

    check_gradients(op, tensors, reference, seed, gen, use_lse=False)


def test_varlen_packed_sequences():
    spec = ("kernel packed(q: f32[T, Hq, D], k: f32[T, Hk, D], v: f32[T, Hk, D], cu: i32[S])"
            " -> (o: f32[T, Hq, D], lse: f32[Hq, T]) {\n"
            "  o, lse = softmax(q, k, v, layout = thd, cu_seqlens = cu) { mask = causal }\n}\n")
    op = attnc.compile(spec).torch_op()
    seed = 4001
    gen = torch.Generator().manual_seed(seed)
    q, k, v = leaves(gen, [(9, 4, 8), (9, 2, 8), (9, 2, 8)], torch.float32)
    cu = torch.tensor([0, 4, 4, 9], dtype=torch.int32)  # the second sequence is empty

    def reference(q, k, v, cu_):
        outputs, lses = [], []
        for start, end in zip(cu.tolist(), cu.tolist()[1:]):
            if start == end:
                continue
            o, lse = attention_f64(*(x[start:end].transpose(0, 1)[None] for x in (q, k, v)),
                                   lambda s, h, i, j: s, lambda i, j: j <= i)
            outputs.append(o[0].transpose(0, 1))
            lses.append(lse[0])
        return torch.cat(outputs), torch.cat(lses, dim=1)

    check_gradients(op, [q, k, v, cu], reference, seed, gen, use_lse=True)


def test_bnhd_layout_with_strided_inputs():
    spec = ("kernel fa(q: f32[B, N, Hq, D], k: f32[B, M, Hk, D], v: f32[B, M, Hk, D])"
            " -> (o: f32[B, N, Hq, D], lse: f32[B, Hq, N]) {\n"
            "  o, lse = softmax(q, k, v, layout = bnhd) { score = 4 * tanh(s / 4); mask = causal }\n}\n")
    op = attnc.compile(spec).torch_op()
    seed = 4501
    gen = torch.Generator().manual_seed(seed)
    # [B, H, N, D] leaves seen as [B, N, H, D] views: strided inputs.
    q, k, v = leaves(gen, [(2, 4, 9, 8), (2, 2, 12, 8), (2, 2, 12, 8)], torch.float32)

    def bnhd(*tensors):
        return [t.transpose(1, 2) for t in tensors]

    def operator(q, k, v):
        return op(*bnhd(q, k, v))

    def reference(q, k, v):
        o, lse = attention_f64(q, k, v, lambda s, h, i, j: 4 * torch.tanh(s / 4), lambda i, j: j <= i + 3)
        return o.transpose(1, 2), lse

    check_gradients(operator, [q, k, v], reference, seed, gen, use_lse=True)


def test_bf16_example_alibi_gqa():
    op = attnc.compile(EXAMPLES / "alibi_gqa.attn").torch_op()
    seed = 5001
    gen = torch.Generator().manual_seed(seed)
    q, k, v = leaves(gen, [(1, 4, 10, 64), (1, 2, 10, 64), (1, 2, 10, 64)], torch.bfloat16)
    slope = torch.tensor([0.5, 0.25, 0.125, 0.0625], requires_grad=True)

    def reference(q, k, v, slope):
        return attention_f64(q, k, v, lambda s, h, i, j: s - slope[h] * (i - j), lambda i, j: j <= i)

    check_gradients(op, [q, k, v, slope], reference, seed, gen, use_lse=True)


@pytest.mark.parametrize("source", ["mask", "lists"])
def test_block_sparse(source):
    if source == "mask":
        spec = ("kernel bs(q: f32[B, H, N, D], k: f32[B, H, M, D], v: f32[B, H, M, D], blocks: bool[B, H, NB, MB])"
                " -> (o: f32[B, H, N, D], lse: f32[B, H, N]) {\n"
                "  o, lse = softmax(q, k, v) { mask = blocks[b, h, i / 4, j / 4] && causal }\n}\n")
    else:
        spec = ("kernel bs(q: f32[B, H, N, D], k: f32[B, H, M, D], v: f32[B, H, M, D], counts: i32[B, H, QB],"
                " indices: i32[B, H, QB, W]) -> (o: f32[B, H, N, D], lse: f32[B, H, N]) {\n"
                "  o, lse = softmax(q, k, v) { block_q = 4; block_k = 4; kv_num_blocks = counts; kv_indices = indices }\n}\n")
    kernel = attnc.compile(spec)
    assert kernel.backward_kernel.target == "cpu"
    op = kernel.torch_op()
    seed = 8001 + (source == "lists")
    gen = torch.Generator().manual_seed(seed)
    b, h, n, m, d = 2, 2, 11, 14, 8
    q, k, v = leaves(gen, [(b, h, n, d), (b, h, m, d), (b, h, m, d)], torch.float32)
    blocks = torch.rand(b, h, 3, 4, generator=gen) < 0.6
    blocks[0, 1, 2] = False  # a query block without keys
    blocks[0, 0, 0, 0] = True  # the lists repeat an entry of this list
    if source == "mask":
        sparsity = [blocks]
        present = blocks
    else:  # the same blocks as lists, highest first, with a repeat
        counts = blocks.sum(-1, dtype=torch.int32)
        indices = torch.zeros(b, h, 3, 5, dtype=torch.int32)
        for index in blocks.nonzero().tolist():
            *at, block = index
            indices[tuple(at)][blocks[tuple(at)].sum() - 1 - blocks[tuple(at)][:block].sum()] = block
        counts[0, 0, 0] += 1  # repeat the last listed block
        indices[0, 0, 0, counts[0, 0, 0] - 1] = indices[0, 0, 0, 0]
        sparsity = [counts, indices]
        present = blocks

    def reference(q, k, v, *_):
        i, j = torch.arange(n)[:, None], torch.arange(m)[None, :]
        causal = (j <= i + (m - n)) if source == "mask" else torch.ones(n, m, dtype=torch.bool)
        mask = present[:, :, i // 4, j // 4] & causal
        s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, -math.inf)
        lse = torch.logsumexp(s, -1)
        p = torch.exp(s - torch.where(torch.isinf(lse), 0, lse)[..., None])
        return p @ v, lse

    check_gradients(op, [q, k, v, *sparsity], reference, seed, gen, use_lse=True)


def topk_selection_f64(q, k, topk, block, allowed):
    """docs/semantics.md's top-k selection in float64: per query and kv head,
    the `topk` eligible key blocks with the highest scale * (sum of the
    group's q) . (mean key of the block), best first, -1 past the eligible
    ones; [B, Hq, N, topk] (the heads of a group share it)."""
    b, hq, n, d = q.shape
    hk, m = k.shape[1], k.shape[2]
    blocks = -(-m // block)
    query_sums = q.reshape(b, hk, hq // hk, n, d).sum(2)
    means = torch.stack([k[:, :, J * block:(J + 1) * block].mean(2) for J in range(blocks)], 2)
    scores = query_sums @ means.transpose(-1, -2) / math.sqrt(d)
    i, j = torch.arange(n)[:, None], torch.arange(m)[None, :]
    mask = allowed(i, j).expand(n, m)
    eligible = torch.stack([mask[:, J * block:(J + 1) * block].any(-1) for J in range(blocks)], -1)
    scores = scores.masked_fill(~eligible, -math.inf)
    best, order = torch.sort(scores, stable=True, dim=-1, descending=True)  # ties: the lower block
    selection = torch.where(torch.isinf(best), -1, order)[..., :topk]
    if selection.shape[-1] < topk:
        selection = torch.cat([selection, selection.new_full((*selection.shape[:-1], topk - blocks), -1)], -1)
    return selection.repeat_interleave(hq // hk, 1)


@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid"])
def test_top_k(normalizer):
    """Top-k selection (2 of the blocks of 4 keys per query, GQA, causal):
    the training forward saves the selection, which matches the float64
    definition, and the gradients flow through the attention over it."""
    topk, block = 2, 4
    softmax = normalizer == "softmax"
    body = f"select = topk({topk}, block = {block}); normalizer = {normalizer}; mask = causal"
    spec = (dense_spec("topk", "", body) if softmax else
            dense_spec("topk", "", body, results="o: f32[B, Hq, N, D]", outputs="o"))
    kernel = attnc.compile(spec)
    assert kernel.backward_kernel.target == "cpu"
    assert [p.name for p in kernel.backward_kernel.params][3:5] == (["o", "lse"] if softmax else ["o", "topk_blocks"])
    seed = 8101 + softmax
    gen = torch.Generator().manual_seed(seed)
    b, hq, hk, n, m, d = 2, 4, 2, 13, 13, 8
    q, k, v = leaves(gen, [(b, hq, n, d), (b, hk, m, d), (b, hk, m, d)], torch.float32)
    causal = lambda i, j: j <= i + (m - n)  # noqa: E731
    selection = topk_selection_f64(q.detach().double(), k.detach().double(), topk, block, causal)
    saved = kernel._training_forward()(*(x.detach().numpy() for x in (q, k, v)))[-1]
    np.testing.assert_array_equal(saved, selection.numpy().astype(np.float32), err_msg=f"seed {seed}")

    def reference(q, k, v):
        i, j = torch.arange(n)[:, None], torch.arange(m)[None, :]
        kept = (selection[..., None] == (j // block)[:, None, :]).any(-2)  # [B, Hq, N, M]
        mask = kept & causal(i, j)
        group = hq // hk
        s = q @ k.repeat_interleave(group, 1).transpose(-1, -2) / math.sqrt(d)
        v = v.repeat_interleave(group, 1)
        if not softmax:
            return (torch.sigmoid(s).masked_fill(~mask, 0) @ v), None
        s = s.masked_fill(~mask, -math.inf)
        lse = torch.logsumexp(s, -1)
        return torch.exp(s - torch.where(torch.isinf(lse), 0, lse)[..., None]) @ v, lse

    check_gradients(kernel.torch_op(), [q, k, v], reference, seed, gen, use_lse=softmax)


def test_torch_compile_fullgraph_forward_and_backward():
    kernel = attnc.compile(dense_spec("compiled", ", rel: f32[Hq, 17]", "score = s + rel[h, i - j + 8]; mask = causal",
                                      results="o: f32[B, Hq, N, D]", outputs="o"))
    op = kernel.torch_op()
    gen = torch.Generator().manual_seed(6001)
    q, k, v, rel = leaves(gen, [(1, 2, 9, 8), (1, 2, 9, 8), (1, 2, 9, 8), (2, 17)], torch.float32)
    w = torch.randn(1, 2, 9, 8, generator=gen)

    def loss(q, k, v, rel):
        return (op(q, k, v, rel) * w).sum()

    loss(q, k, v, rel).backward()
    eager = [x.grad.clone() for x in (q, k, v, rel)]
    for x in (q, k, v, rel):
        x.grad = None
    torch.compile(loss, fullgraph=True)(q, k, v, rel).backward()
    for x, expected in zip((q, k, v, rel), eager):
        torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)


def test_numpy_backward_matches_the_operator():
    kernel = attnc.compile(EXAMPLES / "alibi_gqa.attn")
    backward = kernel.backward_kernel
    assert [p.name for p in backward.params] == ["q", "k", "v", "slope", "o", "lse", "d_o", "d_lse"]
    assert [r.name for r in backward.results] == ["d_q", "d_k", "d_v", "d_slope"]
    gen = torch.Generator().manual_seed(7001)
    q, k, v = (x.detach() for x in leaves(gen, [(1, 4, 10, 64), (1, 2, 10, 64), (1, 2, 10, 64)], torch.bfloat16))
    slope = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    arrays = [x.view(torch.int16).numpy().view(ml_dtypes.bfloat16) for x in (q, k, v)] + [slope.numpy()]
    o, lse = kernel(*arrays)
    d_o = np.ones(o.shape, o.dtype)
    d_lse = np.zeros(lse.shape, np.float32)
    grads = kernel.backward(*arrays, o=o, lse=lse, d_o=d_o, d_lse=d_lse)
    assert len(grads) == 4 and grads[3].shape == (4,)
    leaves_ = [x.clone().requires_grad_() for x in (q, k, v, slope)]
    out, _ = kernel.torch_op()(*leaves_)
    out.float().sum().backward()
    for grad, x in zip(grads, leaves_):
        np.testing.assert_array_equal(np.asarray(grad, np.float64), x.grad.double().numpy())


LISTS_SPEC = """kernel lists(q: bf16[B, H, N, 64], k: bf16[B, H, M, 64], v: bf16[B, H, M, 64],
             counts: i32[B, H, QB], indices: i32[B, H, QB, W]) -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { block_q = 32; block_k = 64; kv_num_blocks = counts; kv_indices = indices }
}
"""


def test_kernels_without_a_backward_say_why():
    # Block lists whose key blocks (64 rows) outgrow the GPU backward's CTA
    # of a 32-row query block.
    kernel = attnc.compile(LISTS_SPEC, target="gpu-emulator")
    with pytest.raises(ValueError, match="computes a tile of 64 rows, more than the 32 block rows"):
        kernel.backward_kernel


@pytest.mark.parametrize("name", ["softcap_n_ne_m", "alibi_gqa_window", "relative_bias_table"])
def test_the_gpu_backward_on_the_warp_emulator(name):
    """The GPU backward (the tile program through attn-tile-to-nvgpu: mma.sync,
    P and dS rounded to bf16) through the same torch operator, run by the warp
    emulator, bf16, lse in the loss: softcap with N != M, and the gradients of
    float inputs (ALiBi slopes with GQA, a relative-bias table), which each
    CTA scatter-adds into its own copy and the last CTA sums."""
    params, body, extra, score, allowed, (b, hq, hk, n, m) = CASES[name]
    if name == "softcap_n_ne_m":
        n, m = 21, 40
    spec = dense_spec("gpu_" + name, params, body, dtype="bf16").replace(", D]", ", 16]")
    kernel = attnc.compile(spec, target="gpu-emulator")
    assert kernel.backward_kernel.target == "gpu-emulator"
    seed = 2101 + sorted(CASES).index(name)
    gen = torch.Generator().manual_seed(seed)
    tensors = leaves(gen, [(b, hq, n, 16), (b, hk, m, 16), (b, hk, m, 16)], torch.bfloat16)
    sizes = {"Hq": hq}
    tensors += leaves(gen, [tuple(sizes.get(s, s) for s in shape) for shape in extra], torch.float32)

    def reference(q, k, v, *extras):
        return attention_f64(q, k, v, lambda s, h, i, j: score(s, h, i, j, *extras),
                             lambda i, j: allowed(i, j, n, m))

    check_gradients(kernel.torch_op(), tensors, reference, seed, gen, use_lse=True)
