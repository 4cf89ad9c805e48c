//===- Passes.h - attnc transformation passes -------------------*- C++ -*-===//

#ifndef ATTNC_TRANSFORMS_PASSES_H
#define ATTNC_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace attnc {

#define GEN_PASS_DECL
#include "attnc/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "attnc/Transforms/Passes.h.inc"

/// Adds the passes that take the output of attn-lower-to-reference (or any
/// scf/memref/arith/math program) to the LLVM dialect.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);

/// Registers every attnc pass and the named pipelines
/// (attnc-reference-pipeline: attn -> LLVM dialect).
void registerAttncPassesAndPipelines();

} // namespace attnc

#endif // ATTNC_TRANSFORMS_PASSES_H
