//===- Passes.td - attnc transformation passes -------------*- tablegen -*-===//

#ifndef ATTNC_TRANSFORMS_PASSES_TD
#define ATTNC_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def LowerToReference : Pass<"attn-lower-to-reference", "::mlir::ModuleOp"> {
  let summary = "Lower attn kernels to their direct definition on memrefs";
  let description = [{
    Rewrites every `attn.kernel` into a `func.func` of the same name that
    computes the definition of its family op literally, with scf loops over
    memrefs: for the softmax family one row of scores per query is
    materialised (score and mask expressions inlined), then normalised; the
    linear family runs the recurrence step by step with the state in an f32
    buffer. This is the oracle that every optimised path is tested against,
    so it favours obviousness over speed.

    Calling convention of the generated function (with
    `llvm.emit_c_interface`): every parameter, then every result, as a
    strided memref of the tensor's rank with dynamic sizes, strides and
    offset (bool tensors as i8), then a `memref<?xi64>` status buffer of at
    least 6 elements. An optional parameter that the caller omits is passed
    with a null aligned pointer. The status buffer is zero on success. The
    first bad input of a run is recorded there and leaves the outputs
    unspecified: a gate value that is positive or not finite writes 1, the
    position (b, h, t, d) and the value's f64 bits; an out-of-bounds read of
    a parameter writes 2, the parameter's position, the dim, the index and
    the dim's size (the read itself yields 0).

    Before:
    ```mlir
    attn.kernel @k(%q: !attn.tensor<f32[B, H, N, 64]>, ...) -> (o: ...) {
      %o = attn.softmax %q, %k, %v : ... score {} mask {}
      attn.return %o : ...
    }
    ```
    After:
    ```mlir
    func.func @k(%q: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
                 ..., %status: memref<?xi64>) attributes {llvm.emit_c_interface} {
      scf.for %b = ... { scf.for %h = ... { scf.for %i = ... { ... } } }
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

#endif // ATTNC_TRANSFORMS_PASSES_TD
