//===- Passes.td - attnc passes within one level ----------*- tablegen -*-===//

#ifndef ATTNC_TRANSFORMS_PASSES_TD
#define ATTNC_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def ExpandFloatConversions
    : Pass<"attnc-expand-float-conversions", "::mlir::ModuleOp"> {
  let summary = "Compute bf16/f16 conversions and arithmetic with integer "
                "and f32 ops";
  let description = [{
    Makes JIT-compiled code independent of the host CPU's floating-point
    features. Without native conversions (F16C for f16, AVX512-BF16 for
    bf16), LLVM lowers `fptrunc` and `fpext` of half-precision types to calls
    of compiler-runtime builtins (`__truncsfbf2`, `__truncsfhf2`,
    `__extendhfsf2`, ...) that a host's libgcc may not provide; Debian 12's
    has none for bf16.

    First, arithmetic and comparisons on bf16 and f16 values are rewritten to
    extend their operands to f32, compute in f32 and truncate the result
    (upstream `arith-emulate-unsupported-floats`). Then every `arith.extf`
    and `arith.truncf` whose source or result is bf16 or f16 (from or to f32
    or f64, scalars and vectors) becomes integer arithmetic on the bit
    patterns:

    - extension is exact: the exponent is rebiased and the mantissa shifted;
      subnormal f16 values are normalised with `math.ctlz`;
    - truncation rounds to nearest, ties to even, directly from the source
      (no double rounding through f32): values past the largest finite
      result become infinity, values in the target's subnormal range are
      rounded to its subnormals, and NaNs stay NaNs of the same sign with
      the quiet bit set and the payload's leading bits kept.

    Conversions with an explicit rounding mode are left alone (attnc emits
    none). Runs in `attnc-lower-to-llvm` before the arith lowering.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::math::MathDialect"
  ];
}

def DeriveBackward : Pass<"attn-derive-backward", "::mlir::ModuleOp"> {
  let summary = "Adds the backward kernel of attention kernels";
  let description = [{
    For each `attn.kernel @f` (or only the one named by `kernel`), adds
    `attn.kernel @f_backward` that computes the gradients of docs/semantics.md
    section 8. Its parameters are f's, then f's outputs (`o`, and `lse`,
    which the softmax normalizer needs: its type follows q's layout when f
    does not return it), then the upstream gradients `d_o` and, when f
    returns lse, `d_lse`. Its results are `d_q`, `d_k`, `d_v` and `d_<name>`
    for each floating-point tensor the score expression reads, each of its
    input's type. The body is one `attn.softmax_backward` with f's
    attributes and regions (and, for an attn.chunk_softmax, its chunk; for
    a block-sparse attn.sparse_softmax, its block sizes and block mask or
    lists; for top-k, `topk`, `block_k` and the saved selection
    `topk_blocks`, a parameter after lse).

    An attn.linear kernel's backward takes f's parameters, then `d_<o>`
    and, when f returns its final state, `d_<state>`; it returns `d_q`,
    `d_k`, `d_v`, `d_<initial state>` (when f takes one) and `d_<name>`
    for each float tensor the gate and feature expressions read, from one
    `attn.linear_backward`.

    The score, gate and feature expressions must be differentiable (an op
    without a derivative is reported at its location).
  }];
  let options = [
    Option<"kernel", "kernel", "std::string", /*default=*/"\"\"",
           "The kernel to differentiate (all when empty)">,
  ];
  let dependentDialects = ["::attnc::attn::AttnDialect"];
}

#endif // ATTNC_TRANSFORMS_PASSES_TD
