//===- Layouts.h - Indices of q, k, v, o and lse ----------------*- C++ -*-===//
//
// Where an element of q, k, v or o, and the lse of a query row, lives
// in the tensors of a kernel, by layout.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_LAYOUTS_H
#define ATTNC_CONVERSION_KERNELLOWERING_LAYOUTS_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

namespace attnc::lowering {

/// Index list for q/k/v/o: (batch, head, position, feature) in the layout.
SmallVector<Value> layoutIndices(Layout layout, Value batch, Value head,
                                 Value position, Value feature);

/// layoutIndices without the feature: where a row block of q/k/v/o starts,
/// the position of attn_tile loads and stores.
SmallVector<Value> rowLayoutIndices(Layout layout, Value batch, Value head,
                                    Value position);

/// Where lse of query `row` lives: [head, start + row] for packed sequences
/// (`offsets` non-null), else [batch, head, row].
SmallVector<Value> lseIndices(Value offsets, Value batch, Value head,
                              Value packedRow, Value row);

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_LAYOUTS_H
