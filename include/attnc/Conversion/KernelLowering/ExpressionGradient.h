//===- ExpressionGradient.h - Derivatives of expression regions -*- C++ -*-===//
//
// Reverse-mode differentiation of the scalar expression regions of the attn
// dialect (scores, gates, feature maps), by the chain rule of
// docs/semantics.md ("Gradients"): the backward lowerings inline the
// forward expression and, after it, the adjoint of every floating-point
// value, from a seed (the upstream gradient of the expression's value) back
// to the region's f32 arguments and to the floating-point tensors it loads.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_EXPRESSIONGRADIENT_H
#define ATTNC_CONVERSION_KERNELLOWERING_EXPRESSIONGRADIENT_H

#include "attnc/Analysis/Differentiability.h"
#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

namespace attnc::lowering {

/// A load of a floating-point tensor in a differentiated expression.
struct LoadGradient {
  LoadOp load;
  /// The lowered memref and indices it read.
  Value tensor;
  SmallVector<Value> indices;
  /// seed * d value / d loaded value.
  Value gradient;
};

struct ExpressionGradient {
  /// The expression's value.
  Value value;
  /// seed * d value / d argument for each block argument (null for those
  /// that are not f32, and for f32 ones the value does not depend on).
  SmallVector<Value> arguments;
  /// One entry per attn.load of a floating-point tensor, in region order.
  SmallVector<LoadGradient> loads;
};

/// Inlines `expression` (as LoweringBuilder::inlineExpression does, loads
/// checked) with its arguments bound to `args`, then its reverse-mode
/// derivative from `seed`. An empty region is the identity of its first
/// argument. The region must pass checkDifferentiable.
ExpressionGradient inlineExpressionGradient(LoweringBuilder &rb,
                                            Region &expression, ValueRange args,
                                            Value seed);

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_EXPRESSIONGRADIENT_H
