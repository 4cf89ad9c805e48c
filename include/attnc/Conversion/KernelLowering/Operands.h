//===- Operands.h - The memrefs and sizes of a family op --------*- C++ -*-===//
//
// What every lowering of a family op starts from (its memrefs, layout
// and sizes), and the recurrent state of the linear family.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_OPERANDS_H
#define ATTNC_CONVERSION_KERNELLOWERING_OPERANDS_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

namespace attnc::lowering {

/// The memrefs and sizes that every lowering of a family op starts from.
struct AttentionOperands {
  Layout layout;
  LayoutDims dims;
  Value q, k, v;
  /// Offsets of packed sequences for queries and keys (both the op's
  /// cu_seqlens for the linear family); null when dense.
  Value cuQ, cuK;
  /// Batch entries (or sequences), heads, GQA group size, stored lengths
  /// (packed: total tokens) and head dims.
  Value numBatches, headsQ, headsK, groupSize, lengthQ, lengthK, dimK, dimV;
};
AttentionOperands getAttentionOperands(Operation *familyOp,
                                       LoweringBuilder &rb);

/// initial[batch, head, d, e] when `initial` is given and present, else 0.
Value initialStateAt(LoweringBuilder &rb, Value initial, Value hasInitial,
                     Value batch, Value head, Value d, Value e);
/// state[d, e] = initial[batch, head, d, e] when `initial` is given and
/// present, else 0.
void initializeState(LoweringBuilder &rb, Value state, Value initial,
                     Value hasInitial, Value batch, Value head,
                     const AttentionOperands &shape);
/// finalState[batch, head, d, e] = state[d, e].
void storeState(LoweringBuilder &rb, Value state, Value finalState, Value batch,
                Value head, const AttentionOperands &shape);

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_OPERANDS_H
