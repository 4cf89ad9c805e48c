//===- AttnOps.td - Attention dialect operations -----------*- tablegen -*-===//

#ifndef ATTNC_DIALECT_ATTN_ATTNOPS_TD
#define ATTNC_DIALECT_ATTN_ATTNOPS_TD

include "attnc/Dialect/Attn/IR/AttnDialect.td"
include "attnc/Dialect/Attn/IR/AttnAttrs.td"
include "attnc/Dialect/Attn/IR/AttnTypes.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Kernel structure
//===----------------------------------------------------------------------===//

def Attn_KernelOp : Attn_Op<"kernel", [
    IsolatedFromAbove, Symbol, SingleBlock,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "an attention kernel: named tensor parameters, results, one family op";
  let description = [{
    The unit that attnc compiles. Block arguments are the tensor parameters,
    in order; a `?` after a parameter's type marks an optional input (the
    caller may omit it, e.g. an initial state). The result list names the
    outputs, which `attn.return` yields in the same order.

    ```mlir
    attn.kernel @causal(%q: !attn.tensor<f32[B, H, N, 64]>,
                        %k: !attn.tensor<f32[B, H, M, 64]>,
                        %v: !attn.tensor<f32[B, H, M, 64]>)
        -> (o: !attn.tensor<f32[B, H, N, 64]>) {
      %o = attn.softmax %q, %k, %v : ... score {} mask { ... }
      attn.return %o : !attn.tensor<f32[B, H, N, 64]>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<FunctionType>:$function_type,
                       StrArrayAttr:$param_names,
                       StrArrayAttr:$result_names,
                       DenseBoolArrayAttr:$optional_params);
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool isOptionalParam(unsigned index) { return getOptionalParams()[index]; }
    /// The single family op of the body.
    ::mlir::Operation *getFamilyOp();
  }];
}

def Attn_ReturnOp : Attn_Op<"return", [Pure, Terminator, HasParent<"KernelOp">]> {
  let summary = "yields the kernel's results";
  let description = [{
    ```mlir
    attn.return %o, %lse : !attn.tensor<bf16[B, H, N, 64]>, !attn.tensor<f32[B, H, N]>
    ```
  }];
  let arguments = (ins Variadic<Attn_Tensor>:$results);
  let assemblyFormat = "attr-dict ($results^ `:` type($results))?";
}

//===----------------------------------------------------------------------===//
// Expression regions
//===----------------------------------------------------------------------===//

def Attn_LoadOp : Attn_Op<"load", [Pure]> {
  let summary = "reads one element of a kernel parameter inside an expression";
  let description = [{
    Reads `tensor[indices]`. Floating-point tensors load as `f32` (f16 and
    bf16 are extended), integer tensors as `index`, bool tensors as `i1`.
    The CPU lowerings check every index against the tensor's shape and report
    the first out-of-bounds read as an error (the read yields 0).

    ```mlir
    %slope = attn.load %slopes[%h] : !attn.tensor<f32[H]> -> f32
    ```
  }];
  let arguments = (ins Attn_Tensor:$tensor, Variadic<Index>:$indices);
  let results = (outs AnyTypeOf<[F32, Index, I1]>:$result);
  let assemblyFormat = [{
    $tensor `[` $indices `]` attr-dict `:` type($tensor) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_YieldOp : Attn_Op<"yield", [Pure, Terminator, ParentOneOf<[
    "SoftmaxOp", "ChunkSoftmaxOp", "SparseSoftmaxOp", "SoftmaxBackwardOp",
    "LinearOp", "LinearBackwardOp"]>]> {
  let summary = "yields the value of an expression region";
  let arguments = (ins AnyTypeOf<[F32, I1]>:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

//===----------------------------------------------------------------------===//
// Softmax family
//===----------------------------------------------------------------------===//

defvar SoftmaxCommonDescription = [{
    Shapes (layout `bhnd`; `bnhd` swaps the head and sequence dims; `thd` is
    a packed batch [total, heads, dim] with `cu_seqlens_q`/`cu_seqlens_k`):
    q [B, Hq, N, Dk], k [B, Hk, M, Dk], v [B, Hk, M, Dv], Hq = G * Hk and
    query head h reads kv head h / G. Scores accumulate in f32:
    s = scale * dot(q_i, k_j) (scale defaults to 1/sqrt(Dk)), then the
    `score` region maps s to the final score; the `mask` region says whether
    key j is allowed for query i. An empty region means the identity score
    and an all-true mask.

    Region arguments: score (s: f32, b, h, i, j, n, m, qstart, kstart: index)
    and mask (b, h, i, j, n, m, qstart, kstart: index), where i and j count
    from the start of the sequence, n and m are its query and key lengths and
    qstart/kstart its offsets in packed tensors (0 unless `thd`).

    Normalizers: `softmax` gives o_i = sum_j softmax(s)_ij v_j over allowed j
    and the optional lse_i = log sum_j exp(s_ij) (f32 [B, Hq, N], or [Hq, T]
    when packed); a row with no allowed key gives o_i = 0 and lse_i = -inf.
    `sigmoid` weights by sigmoid(s), `none` by s itself; both have no lse.
}];

defvar SoftmaxCommonArgs = (ins
    Attn_Tensor:$q, Attn_Tensor:$k, Attn_Tensor:$v,
    Optional<Attn_Tensor>:$cu_seqlens_q, Optional<Attn_Tensor>:$cu_seqlens_k,
    OptionalAttr<F32Attr>:$scale,
    DefaultValuedAttr<Attn_NormalizerAttr, "::attnc::attn::Normalizer::softmax">:$normalizer,
    DefaultValuedAttr<Attn_LayoutAttr, "::attnc::attn::Layout::bhnd">:$layout);

class Attn_SoftmaxFamilyOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<mnemonic, !listconcat(traits, [AttrSizedOperandSegments,
        DeclareOpInterfaceMethods<OpAsmOpInterface,
                                  ["getAsmBlockArgumentNames", "getAsmResultNames"]>])> {
  let results = (outs Attn_Tensor:$out, Optional<Attn_Tensor>:$lse);
  let regions = (region AnyRegion:$score, AnyRegion:$mask);
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

def Attn_SoftmaxOp : Attn_SoftmaxFamilyOp<"softmax"> {
  let summary = "softmax attention with score and mask expressions";
  let description = !strconcat([{
    Dense softmax attention (FlashAttention/FlexAttention territory): causal,
    windows, ALiBi, softcapping, document masks and so on are all score and
    mask expressions.

    ```mlir
    %o = attn.softmax %q, %k, %v : (...) -> !attn.tensor<bf16[B, H, N, 64]>
    score {
    ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index,
         %m: index, %qs: index, %ks: index):
      %c = arith.constant 3.000000e+01 : f32
      %x = arith.divf %s, %c : f32
      %t = math.tanh %x : f32
      %y = arith.mulf %c, %t : f32
      attn.yield %y : f32
    } mask {
    }
    ```
  }], SoftmaxCommonDescription);
  let arguments = SoftmaxCommonArgs;
  let assemblyFormat = [{
    $q `,` $k `,` $v
    (`cu_seqlens_q` `(` $cu_seqlens_q^ `)`)?
    (`cu_seqlens_k` `(` $cu_seqlens_k^ `)`)?
    attr-dict `:` functional-type(operands, results)
    `score` $score `mask` $mask
  }];
}

def Attn_ChunkSoftmaxOp : Attn_SoftmaxFamilyOp<"chunk_softmax"> {
  let summary = "chunk-local (block-diagonal) softmax attention";
  let description = !strconcat([{
    Softmax attention where query i may only see keys of its own chunk:
    allowed(b, h, i, j) = (i / chunk == j / chunk) && mask(b, h, i, j).
    The block-diagonal structure is explicit so that tiled strategies visit
    diagonal chunks only.

    ```mlir
    %o = attn.chunk_softmax %q, %k, %v {chunk = 64 : i64} : (...) -> (...)
    score {} mask {}
    ```
  }], SoftmaxCommonDescription);
  let arguments = !con(SoftmaxCommonArgs, (ins ConfinedAttr<I64Attr, [IntPositive]>:$chunk));
  let assemblyFormat = [{
    $q `,` $k `,` $v
    (`cu_seqlens_q` `(` $cu_seqlens_q^ `)`)?
    (`cu_seqlens_k` `(` $cu_seqlens_k^ `)`)?
    attr-dict `:` functional-type(operands, results)
    `score` $score `mask` $mask
  }];
}

def Attn_SparseSoftmaxOp : Attn_SoftmaxFamilyOp<"sparse_softmax"> {
  let summary = "block-sparse softmax attention";
  let description = !strconcat([{
    Softmax attention restricted to (block_q x block_k) tiles chosen by one
    of three sources:
    - `block_mask`: a dense [B, Hq, ceil(N/block_q), ceil(M/block_k)] bool
      (or integer, non-zero = present) tensor;
    - `kv_num_blocks` [B, Hq, NQB] and `kv_indices` [B, Hq, NQB, MAXB]
      (i32): query block qb visits the first kv_num_blocks[b, h, qb] entries
      of kv_indices[b, h, qb, :] (a block listed twice once); a count
      outside [0, MAXB] or a visited entry outside [0, ceil(M/block_k)) is
      bad input, reported at run time;
    - `topk`: NSA-style selection per query i and kv head g of the `topk`
      blocks of `block_k` keys with the highest
      scale * sum_{h in g} dot(q_{h,i}, mean of the block's keys), among the
      blocks holding at least one allowed key (ties: lower block first).
    The element mask still applies inside selected blocks.

    Results: `out`, then `lse` (softmax normalizer only) when asked for,
    then, with `topk`, optionally `topk_blocks`: f32 with lse's dims
    ([B, Hq, N] or [Hq, T] when packed) and one more of size `topk`, each
    row's kept block numbers best first, -1 for an empty entry (the
    training forward saves it for the backward).

    ```mlir
    %o = attn.sparse_softmax %q, %k, %v block_mask(%blocks)
        {block_q = 128 : i64, block_k = 128 : i64} : (...) -> (...)
    score {} mask {}
    ```
  }], SoftmaxCommonDescription);
  let arguments = !con(SoftmaxCommonArgs, (ins
      Optional<Attn_Tensor>:$block_mask,
      Optional<Attn_Tensor>:$kv_num_blocks,
      Optional<Attn_Tensor>:$kv_indices,
      // Limits: kMaxBlockSize and kMaxTopk in AttnOps.h.
      ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>:$block_q,
      ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>:$block_k,
      OptionalAttr<ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>>:$topk));
  let results = (outs Attn_Tensor:$out, Variadic<Attn_Tensor>:$saved);
  let extraClassDeclaration = [{
    /// The optional results in `saved`: lse (softmax normalizer), then the
    /// top-k selection; null when absent.
    ::mlir::Value getLse();
    ::mlir::Value getTopkBlocks();
  }];
  let assemblyFormat = [{
    $q `,` $k `,` $v
    (`cu_seqlens_q` `(` $cu_seqlens_q^ `)`)?
    (`cu_seqlens_k` `(` $cu_seqlens_k^ `)`)?
    (`block_mask` `(` $block_mask^ `)`)?
    (`kv_num_blocks` `(` $kv_num_blocks^ `)`)?
    (`kv_indices` `(` $kv_indices^ `)`)?
    attr-dict `:` functional-type(operands, results)
    `score` $score `mask` $mask
  }];
}

def Attn_SoftmaxBackwardOp : Attn_Op<"softmax_backward", [
    AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "the gradients of attn.softmax";
  let description = [{
    The backward of an `attn.softmax` with the same operands, attributes
    and regions (docs/semantics.md section 8): given the forward's output
    `out` (and `lse`, which the softmax normalizer needs) and the upstream
    gradients `d_out` (and `d_lse` when the forward returned lse; absent
    means 0), it yields dq, dk, dv and the gradient of each floating-point
    tensor the score expression reads, listed as `inputs` in the order the
    score region first loads them. Each gradient has its input's type.
    Masks carry no gradient; a row with no allowed key contributes none.
    With `chunk`, it is the backward of an `attn.chunk_softmax` of that
    chunk: keys of other chunks take no part. With `block_q`, `block_k`
    and `block_mask` or `kv_num_blocks` with `kv_indices`, it is the
    backward of that block-sparse `attn.sparse_softmax`: keys of absent
    blocks take no part. With `topk` and `block_k`, it is the backward of
    a top-k `attn.sparse_softmax` whose selection is `topk_blocks` (the
    forward's saved result): row i sees the blocks its row lists.

    ```mlir
    %dq, %dk, %dv, %dslope = attn.softmax_backward %q, %k, %v
        out(%o) lse(%lse) d_out(%do) inputs(%slope) : (...) -> (...)
    score { ... } mask { ... }
    ```
  }];
  let arguments = !con(SoftmaxCommonArgs, (ins
      Attn_Tensor:$out, Optional<Attn_Tensor>:$lse, Attn_Tensor:$d_out,
      Optional<Attn_Tensor>:$d_lse, Variadic<Attn_Tensor>:$inputs,
      Optional<Attn_Tensor>:$block_mask, Optional<Attn_Tensor>:$kv_num_blocks,
      Optional<Attn_Tensor>:$kv_indices, Optional<Attn_Tensor>:$topk_blocks,
      OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$chunk,
      OptionalAttr<ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>>:$block_q,
      OptionalAttr<ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>>:$block_k,
      OptionalAttr<ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>>:$topk));
  let results = (outs Attn_Tensor:$dq, Attn_Tensor:$dk, Attn_Tensor:$dv,
                      Variadic<Attn_Tensor>:$d_inputs);
  let regions = (region AnyRegion:$score, AnyRegion:$mask);
  let assemblyFormat = [{
    $q `,` $k `,` $v
    (`cu_seqlens_q` `(` $cu_seqlens_q^ `)`)?
    (`cu_seqlens_k` `(` $cu_seqlens_k^ `)`)?
    `out` `(` $out `)` (`lse` `(` $lse^ `)`)?
    `d_out` `(` $d_out `)` (`d_lse` `(` $d_lse^ `)`)?
    (`inputs` `(` $inputs^ `)`)?
    (`block_mask` `(` $block_mask^ `)`)?
    (`kv_num_blocks` `(` $kv_num_blocks^ `)`)?
    (`kv_indices` `(` $kv_indices^ `)`)?
    (`topk_blocks` `(` $topk_blocks^ `)`)?
    attr-dict `:` functional-type(operands, results)
    `score` $score `mask` $mask
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Linear family
//===----------------------------------------------------------------------===//

def Attn_LinearOp : Attn_Op<"linear", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "linear and gated linear attention";
  let description = [{
    Recurrent definition with a state S in R^{Dk x Dv} per (batch, query
    head), starting from `initial_state` (or 0):
      S_t = diag(exp(g_t)) S_{t-1} + phi(k_t)^T v_t,  o_t = scale * phi(q_t) S_t
    with the log-space gate g_t (<= 0) given by the `gate` region
    (b, h, t, d, tstart: index) -> f32 and the feature map phi by the
    `feature` region (x: f32) -> f32 (empty: identity). `gate_kind` records
    which indices the gate depends on: `none` (empty region),
    `constant_per_head` (h only: RetNet, Lightning), `per_head` (b, h, t:
    Mamba2/SSD) or `per_key_dim` (also d: GLA). Non-causal linear attention
    sums phi(k)^T v over the whole sequence and takes no gate. The optional
    second result is the final state, f32 [B, Hq, Dk, Dv] (one per sequence
    when packed). `chunk` is the chunk size of the chunkwise strategy.

    Positive or non-finite gate values are rejected at run time: the kernel
    reports the first offending position instead of returning NaN or inf.

    ```mlir
    %o, %state = attn.linear %q, %k, %v initial_state(%h0)
        {gate_kind = #attn.gate_kind<per_key_dim>} : (...) -> (...)
    gate {
    ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
      %g = attn.load %gates[%b, %t, %h, %d] : !attn.tensor<f32[B, T, H, 128]> -> f32
      attn.yield %g : f32
    } feature {
    }
    ```
  }];
  let arguments = (ins
      Attn_Tensor:$q, Attn_Tensor:$k, Attn_Tensor:$v,
      Optional<Attn_Tensor>:$cu_seqlens,
      Optional<Attn_Tensor>:$initial_state,
      DefaultValuedAttr<F32Attr, "1.0f">:$scale,
      DefaultValuedAttr<Attn_GateKindAttr, "::attnc::attn::GateKind::none">:$gate_kind,
      DefaultValuedAttr<BoolAttr, "true">:$causal,
      // kMaxBlockSize in AttnOps.h.
      DefaultValuedAttr<ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>, "64">:$chunk,
      DefaultValuedAttr<Attn_LayoutAttr, "::attnc::attn::Layout::bhnd">:$layout);
  let results = (outs Attn_Tensor:$out, Optional<Attn_Tensor>:$final_state);
  let regions = (region AnyRegion:$gate, AnyRegion:$feature);
  let assemblyFormat = [{
    $q `,` $k `,` $v
    (`cu_seqlens` `(` $cu_seqlens^ `)`)?
    (`initial_state` `(` $initial_state^ `)`)?
    attr-dict `:` functional-type(operands, results)
    `gate` $gate `feature` $feature
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

def Attn_LinearBackwardOp : Attn_Op<"linear_backward", [
    AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "the gradients of attn.linear";
  let description = [{
    The backward of an `attn.linear` with the same operands, attributes
    and regions (docs/semantics.md section 8): given the upstream gradients
    `d_out` and `d_final_state` (when the forward returned its final state;
    absent means 0), it yields dq, dk, dv, then `rest`: the gradient of
    the initial state (when the forward takes one), then the gradient of
    each floating-point tensor the gate and feature expressions read,
    listed as `inputs` in the order the gate region, then the feature
    region, first load them. Each gradient has its input's type. The
    backward is the recurrence's, through time: the states are recomputed
    from q, k, v and the gates.

    ```mlir
    %dq, %dk, %dv, %dh0, %dg = attn.linear_backward %q, %k, %v
        initial_state(%h0) d_out(%do) inputs(%g) : (...) -> (...)
    gate { ... } feature { ... }
    ```
  }];
  let arguments = (ins
      Attn_Tensor:$q, Attn_Tensor:$k, Attn_Tensor:$v,
      Optional<Attn_Tensor>:$cu_seqlens,
      Optional<Attn_Tensor>:$initial_state,
      Attn_Tensor:$d_out, Optional<Attn_Tensor>:$d_final_state,
      Variadic<Attn_Tensor>:$inputs,
      DefaultValuedAttr<F32Attr, "1.0f">:$scale,
      DefaultValuedAttr<Attn_GateKindAttr, "::attnc::attn::GateKind::none">:$gate_kind,
      DefaultValuedAttr<BoolAttr, "true">:$causal,
      DefaultValuedAttr<ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<4096>]>, "64">:$chunk,
      DefaultValuedAttr<Attn_LayoutAttr, "::attnc::attn::Layout::bhnd">:$layout);
  let results = (outs Attn_Tensor:$dq, Attn_Tensor:$dk, Attn_Tensor:$dv,
                      Variadic<Attn_Tensor>:$rest);
  let regions = (region AnyRegion:$gate, AnyRegion:$feature);
  let extraClassDeclaration = [{
    /// The gradient of the initial state (null without one), then those
    /// of `inputs`.
    ::mlir::Value getDInitialState();
    ::mlir::ValueRange getDInputs();
  }];
  let assemblyFormat = [{
    $q `,` $k `,` $v
    (`cu_seqlens` `(` $cu_seqlens^ `)`)?
    (`initial_state` `(` $initial_state^ `)`)?
    `d_out` `(` $d_out `)` (`d_final_state` `(` $d_final_state^ `)`)?
    (`inputs` `(` $inputs^ `)`)?
    attr-dict `:` functional-type(operands, results)
    `gate` $gate `feature` $feature
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

#endif // ATTNC_DIALECT_ATTN_ATTNOPS_TD
