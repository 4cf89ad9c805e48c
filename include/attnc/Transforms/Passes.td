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

#endif // ATTNC_TRANSFORMS_PASSES_TD
