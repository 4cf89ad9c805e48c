//===- KernelLowering.h - Shared pieces of the kernel lowerings -*- C++ -*-===//
//
// What the reference lowering and the tiled strategies share: the calling
// convention (memref types, the func skeleton with its status buffer) and a
// builder with helpers for loops, conditions and bounds-checked loads. One
// header per concern, all included here:
//   LoweringBuilder.h    the builder: loops, conditions, arithmetic, vectors
//                        and checked loads (and the namespace's `using`s)
//   Layouts.h            indices of q, k, v, o and lse in their layouts
//   Sequences.h          bounds of packed (varlen) sequences and their checks
//   Operands.h           the memrefs and sizes of a family op; linear state
//   Bands.h              key ranges and unmasked blocks under a band mask
//   CallingConvention.h  parameter memref types and the kernel function
//   PassOptions.h        option checks of the lowering passes
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_KERNELLOWERING_H
#define ATTNC_CONVERSION_KERNELLOWERING_KERNELLOWERING_H

#include "attnc/Conversion/KernelLowering/Bands.h"
#include "attnc/Conversion/KernelLowering/CallingConvention.h"
#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"
#include "attnc/Conversion/KernelLowering/Layouts.h"
#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Conversion/KernelLowering/Operands.h"
#include "attnc/Conversion/KernelLowering/PassOptions.h"
#include "attnc/Conversion/KernelLowering/Sequences.h"

#endif // ATTNC_CONVERSION_KERNELLOWERING_KERNELLOWERING_H
