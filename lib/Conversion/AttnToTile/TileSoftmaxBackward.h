//===- TileSoftmaxBackward.h - The backward's tile program ------*- C++ -*-===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOTILE_TILESOFTMAXBACKWARD_H
#define ATTNC_LIB_CONVERSION_ATTNTOTILE_TILESOFTMAXBACKWARD_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

namespace attnc::lowering {

/// The shape of a backward tile program.
struct BackwardTiling {
  /// Query rows and keys per tile (block-sparse kernels use their blocks).
  int64_t blockQ = 64, blockK = 64;
  /// Top-k: keys per tile, dividing the key blocks (0: the key blocks).
  int64_t topkKeyTile = 0;
  /// The most accumulator columns (dK's plus dV's) one pass over a key
  /// block's query blocks carries; above it, dV and dK take a pass each
  /// (S is recomputed once more). 0: no limit.
  int64_t keySumColumns = 0;
};

/// Builds the tile program of `op` (TileSoftmaxBackward.cpp) into the
/// kernel function that `rb` builds, writing the gradients `results`: dq,
/// dk, dv, then the partial copies of the gradients of the float tensors
/// the score reads.
void buildSoftmaxBackwardProgram(attn::SoftmaxBackwardOp op,
                                 LoweringBuilder &rb, mlir::ValueRange results,
                                 const BackwardTiling &tiling);

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOTILE_TILESOFTMAXBACKWARD_H
