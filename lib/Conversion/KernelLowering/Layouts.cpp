//===- Layouts.cpp - Indices of q, k, v, o and lse ------------------------===//

#include "attnc/Conversion/KernelLowering/Layouts.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

SmallVector<Value> attnc::lowering::layoutIndices(Layout layout, Value batch,
                                                  Value head, Value position,
                                                  Value feature) {
  switch (layout) {
  case Layout::bhnd:
    return {batch, head, position, feature};
  case Layout::bnhd:
    return {batch, position, head, feature};
  case Layout::thd:
    return {position, head, feature};
  }
  llvm_unreachable("unknown layout");
}

SmallVector<Value> attnc::lowering::rowLayoutIndices(Layout layout, Value batch,
                                                     Value head,
                                                     Value position) {
  SmallVector<Value> at =
      layoutIndices(layout, batch, head, position, Value());
  at.pop_back();
  return at;
}

SmallVector<Value> attnc::lowering::lseIndices(Value offsets, Value batch,
                                               Value head, Value packedRow,
                                               Value row) {
  if (offsets)
    return {head, packedRow};
  return {batch, head, row};
}
