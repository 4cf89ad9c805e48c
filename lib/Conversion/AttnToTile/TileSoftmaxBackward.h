//===- TileSoftmaxBackward.h - The backward's tile program ------*- C++ -*-===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOTILE_TILESOFTMAXBACKWARD_H
#define ATTNC_LIB_CONVERSION_ATTNTOTILE_TILESOFTMAXBACKWARD_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

namespace attnc::lowering {

/// Builds the tile program of `op` (TileSoftmaxBackward.cpp) into the
/// kernel function that `rb` builds, writing the gradients `results`
/// (dq, dk, dv): query blocks of `blockQ` rows, key blocks of `blockK`
/// keys. The score must read no float tensor (their gradients are not
/// computed here).
void buildSoftmaxBackwardProgram(attn::SoftmaxBackwardOp op,
                                 LoweringBuilder &rb, mlir::ValueRange results,
                                 int64_t blockQ, int64_t blockK);

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOTILE_TILESOFTMAXBACKWARD_H
