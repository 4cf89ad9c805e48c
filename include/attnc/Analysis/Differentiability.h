//===- Differentiability.h - Which expressions have derivatives -*- C++ -*-===//
//
// The ops of an attn expression region that the backward can differentiate
// (docs/semantics.md section 8); the rules themselves are
// lib/Conversion/KernelLowering/ExpressionGradient.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_DIFFERENTIABILITY_H
#define ATTNC_ANALYSIS_DIFFERENTIABILITY_H

#include "mlir/IR/Operation.h"
#include "mlir/IR/Region.h"
#include "llvm/ADT/StringRef.h"

namespace attnc {

/// Whether `op` of an expression region has a derivative rule (ops without
/// floating-point operands have nothing to differentiate).
bool hasDerivative(mlir::Operation *op);

/// Reports, at its location, every op of `expression` through which a
/// floating-point value would have to be differentiated but that has no
/// derivative rule. `what` names the expression ("the score expression").
mlir::LogicalResult checkDifferentiable(mlir::Region &expression,
                                        llvm::StringRef what);

} // namespace attnc

#endif // ATTNC_ANALYSIS_DIFFERENTIABILITY_H
