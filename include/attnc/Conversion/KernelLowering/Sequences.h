//===- Sequences.h - Bounds of packed sequences -----------------*- C++ -*-===//
//
// Where each sequence of packed (varlen) q, k and v starts and how long
// it is, read from the cu_seqlens offsets and checked.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_SEQUENCES_H
#define ATTNC_CONVERSION_KERNELLOWERING_SEQUENCES_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

#include <utility>

namespace attnc::lowering {

/// Sequence bounds of batch entry `b`: its start in the packed tensor and its
/// length; (0, dense length) when not packed.
std::pair<Value, Value> sequenceBounds(LoweringBuilder &rb, Value offsets,
                                       Value batch, Value denseLength);

/// Checks the bounds sequenceBounds read. cu_seqlens may live on a device,
/// where the host cannot check them: a sequence that is decreasing or
/// leaves the `total` packed tokens is recorded (3, parameter, batch,
/// start, end) and gets length 0, so that nothing reads or writes outside
/// the packed tensors.
void checkSequence(LoweringBuilder &rb, Value offsets, Value batch, Value start,
                   Value &length, Value total);

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_SEQUENCES_H
