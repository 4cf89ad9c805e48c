//===- TileLinearBackward.h - The linear backward's tile program -*- C++ -*-===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOTILE_TILELINEARBACKWARD_H
#define ATTNC_LIB_CONVERSION_ATTNTOTILE_TILELINEARBACKWARD_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

namespace attnc::lowering {

/// Builds the chunkwise tile program of `op` (TileLinearBackward.cpp) into
/// the kernel function that `rb` builds, writing `results`: dq, dk, dv, the
/// initial state's gradient (when the forward takes one), then the partial
/// copies of the gradients of the gate's and feature map's float inputs.
/// Gates per key dimension go by sub-tiles of at most `subTile` steps (the
/// largest that divides the chunk); kernels with scalar or no gates take
/// v, dO, dv and the states' columns by blocks of `stateBlock` value
/// columns when Dv is a larger static multiple of it, and q, k, dq, dk
/// and the states' rows by blocks of `stateBlock` key columns when Dk is
/// (0: whole rows).
void buildLinearBackwardProgram(attn::LinearBackwardOp op, LoweringBuilder &rb,
                                mlir::ValueRange results, int64_t subTile,
                                int64_t stateBlock);

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOTILE_TILELINEARBACKWARD_H
