//===- MaskStructure.h - What a mask expression allows -----------*- C++ -*-===//
//
// Reads the band structure out of a softmax mask region: conjuncts of the
// form `j - i <= U` or `j - i >= L`, where U and L are affine in the sequence
// lengths n and m (causal is j - i <= m - n; a window of W is j - i > -W).
// Tiled strategies use it to visit only key blocks that can hold an allowed
// key and to skip the mask on blocks where every key is allowed.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_MASKSTRUCTURE_H
#define ATTNC_ANALYSIS_MASKSTRUCTURE_H

#include "mlir/IR/Region.h"
#include "llvm/ADT/SmallVector.h"

#include <string>

namespace attnc {

/// constant + nCoeff * n + mCoeff * m.
struct LengthAffine {
  int64_t constant = 0, nCoeff = 0, mCoeff = 0;
  bool operator==(const LengthAffine &other) const {
    return constant == other.constant && nCoeff == other.nCoeff &&
           mCoeff == other.mCoeff;
  }
};

struct MaskStructure {
  /// j - i <= each of these (the allowed band's upper diagonals).
  llvm::SmallVector<LengthAffine, 2> upper;
  /// j - i >= each of these (lower diagonals).
  llvm::SmallVector<LengthAffine, 2> lower;
  /// True when the mask is exactly the conjunction of the bounds, so a block
  /// inside the band needs no mask evaluation. False when some conjunct was
  /// not understood (the bounds then still limit the blocks, conservatively).
  bool exact = true;

  /// "j - i <= m - n, j - i >= -4095, exact" (for tests and remarks).
  std::string describe() const;
};

/// Analyses a mask region of the softmax family (block arguments as in
/// attnc::attn::mask_arg). An empty region allows everything (exact, no
/// bounds).
MaskStructure analyzeMask(mlir::Region &mask);

} // namespace attnc

#endif // ATTNC_ANALYSIS_MASKSTRUCTURE_H
