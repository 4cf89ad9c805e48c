//===- Bands.h - Key ranges under a band mask -------------------*- C++ -*-===//
//
// The keys a block of query rows can see under a band mask (and
// chunks), and whether a block lies wholly inside the band.
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

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_BANDS_H
