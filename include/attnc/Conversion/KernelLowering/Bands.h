//===- Bands.h - Key ranges under a band mask -------------------*- C++ -*-===//
//
// The keys a block of query rows can see under a band mask (and
// chunks), whether a block lies wholly inside the band, and whether a row
// meets a block.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_BANDS_H
#define ATTNC_CONVERSION_KERNELLOWERING_BANDS_H

#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

#include <utility>

namespace attnc::lowering {

/// constant + nCoeff * n + mCoeff * m at run time.
Value evaluateLength(LoweringBuilder &rb, const LengthAffine &affine, Value n,
                     Value m);

/// The keys [jBegin, jEnd) that query rows [i0, iLast] can see under the
/// band (and the chunk of `chunkSize` when non-null); jBegin == jEnd when
/// none, both in [0, m].
std::pair<Value, Value> visibleKeyRange(LoweringBuilder &rb,
                                        const MaskStructure &band,
                                        Value chunkSize, Value i0, Value iLast,
                                        Value n, Value m);

/// True when every (i, j) with i in [i0, iLast] and j in [j0, jLast] lies
/// inside the band (and one chunk), so the block needs no mask. Only
/// meaningful when the band is exact.
Value blockInsideBand(LoweringBuilder &rb, const MaskStructure &band,
                      Value chunkSize, Value i0, Value iLast, Value j0,
                      Value jLast, Value n, Value m);

/// The band's diagonals at run time: j - i >= each of `lower`, j - i <=
/// each of `upper`.
struct BandBounds {
  SmallVector<Value, 2> lower, upper;
};
BandBounds evaluateBand(LoweringBuilder &rb, const MaskStructure &band, Value n,
                        Value m);

/// Whether query row i may see a key of [j0, jLast] under the band: the
/// keys [max(j0, i + lower), min(jLast, i + upper)] are not empty. Top-k
/// selection scores only such blocks.
Value rowMeetsBlock(LoweringBuilder &rb, const BandBounds &bounds, Value i,
                    Value j0, Value jLast);

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_BANDS_H
