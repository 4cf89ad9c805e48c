//===- SoftmaxBackward.h - The gradients of softmax, literally --*- C++ -*-===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_SOFTMAXBACKWARD_H
#define ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_SOFTMAXBACKWARD_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

namespace attnc::lowering {

/// Fills `results` (dq, dk, dv, then the inputs' gradients) with the
/// gradients `op` defines, by the chain rule written out.
void lowerSoftmaxBackward(SoftmaxBackwardOp op, LoweringBuilder &rb,
                          ValueRange results);

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_SOFTMAXBACKWARD_H
