//===- Sequences.cpp - Bounds of packed sequences -------------------------===//

#include "attnc/Conversion/KernelLowering/Sequences.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

std::pair<Value, Value> attnc::lowering::sequenceBounds(LoweringBuilder &rb,
                                                        Value offsets,
                                                        Value batch,
                                                        Value denseLength) {
  if (!offsets)
    return {rb.index(0), denseLength};
  Value start = rb.loadIndex(offsets, {batch});
  Value end = rb.loadIndex(offsets, {rb.add(batch, rb.index(1))});
  return {start, rb.sub(end, start)};
}

void attnc::lowering::checkSequence(LoweringBuilder &rb, Value offsets,
                                    Value batch, Value start, Value &length,
                                    Value total) {
  if (!offsets)
    return;
  ImplicitLocOpBuilder &b = rb.b;
  using P = arith::CmpIPredicate;
  Value end = rb.add(start, length);
  // The offsets cover the packed tokens: the first sequence starts at 0,
  // the last ends at `total`, each lies within them.
  Value last = rb.sub(rb.dim(offsets, 0), rb.index(2));
  Value startsAtZero = arith::OrIOp::create(
      b, arith::CmpIOp::create(b, P::ne, batch, rb.index(0)),
      arith::CmpIOp::create(b, P::eq, start, rb.index(0)));
  Value endsAtTotal = arith::OrIOp::create(
      b, arith::CmpIOp::create(b, P::ne, batch, last),
      arith::CmpIOp::create(b, P::eq, end, total));
  Value within = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, P::sle, start, end),
      arith::AndIOp::create(
          b, arith::CmpIOp::create(b, P::sge, start, rb.index(0)),
          arith::CmpIOp::create(b, P::sle, end, total)));
  Value valid = arith::AndIOp::create(
      b, within, arith::AndIOp::create(b, startsAtZero, endsAtTotal));
  rb.ifThen(arith::XOrIOp::create(
                b, valid, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
            [&] {
              rb.recordError(
                  3, {rb.index(cast<BlockArgument>(offsets).getArgNumber()),
                      batch, start, end, total});
            });
  length = arith::SelectOp::create(b, valid, length, rb.index(0));
}
