//===- LinearBackward.h - The gradients of linear attention -----*- C++ -*-===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_LINEARBACKWARD_H
#define ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_LINEARBACKWARD_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

namespace attnc::lowering {

/// Fills `results` (dq, dk, dv, the initial state's gradient when `op`
/// takes one, then the inputs' gradients) with the gradients `op` defines,
/// by the recurrence's backward through time.
void lowerLinearBackward(LinearBackwardOp op, LoweringBuilder &rb,
                         ValueRange results);

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_LINEARBACKWARD_H
