//===- Bands.cpp - Key ranges under a band mask ---------------------------===//

#include "attnc/Conversion/KernelLowering/Bands.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

Value attnc::lowering::evaluateLength(LoweringBuilder &rb,
                                      const LengthAffine &affine, Value n,
                                      Value m) {
  Value value = rb.index(affine.constant);
  if (affine.nCoeff)
    value = rb.add(value, rb.mul(rb.index(affine.nCoeff), n));
  if (affine.mCoeff)
    value = rb.add(value, rb.mul(rb.index(affine.mCoeff), m));
  return value;
}

std::pair<Value, Value>
attnc::lowering::visibleKeyRange(LoweringBuilder &rb, const MaskStructure &band,
                                 Value chunkSize, Value i0, Value iLast,
                                 Value n, Value m) {
  ImplicitLocOpBuilder &b = rb.b;
  Value zero = rb.index(0);
  // j - i in [lower, upper] for some i in [i0, iLast].
  Value jBegin = zero, jEnd = m;
  for (const LengthAffine &lower : band.lower)
    jBegin = arith::MaxSIOp::create(b, jBegin,
                                    rb.add(i0, evaluateLength(rb, lower, n, m)));
  for (const LengthAffine &upper : band.upper)
    jEnd = arith::MinSIOp::create(
        b, jEnd,
        rb.add(rb.add(iLast, evaluateLength(rb, upper, n, m)), rb.index(1)));
  if (chunkSize) {
    Value first =
        rb.mul(arith::DivUIOp::create(b, i0, chunkSize), chunkSize);
    Value last =
        rb.mul(arith::DivUIOp::create(b, iLast, chunkSize), chunkSize);
    jBegin = arith::MaxSIOp::create(b, jBegin, first);
    jEnd = arith::MinSIOp::create(b, jEnd, rb.add(last, chunkSize));
  }
  jEnd = arith::MaxSIOp::create(b, jEnd, zero);
  jBegin = arith::MinSIOp::create(b, jBegin, jEnd);
  return {jBegin, jEnd};
}

Value attnc::lowering::blockInsideBand(LoweringBuilder &rb,
                                       const MaskStructure &band,
                                       Value chunkSize, Value i0, Value iLast,
                                       Value j0, Value jLast, Value n,
                                       Value m) {
  ImplicitLocOpBuilder &b = rb.b;
  Value full = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
  auto both = [&](Value condition) {
    full = arith::AndIOp::create(b, full, condition);
  };
  for (const LengthAffine &upper : band.upper)
    both(arith::CmpIOp::create(b, arith::CmpIPredicate::sle, jLast,
                               rb.add(i0, evaluateLength(rb, upper, n, m))));
  for (const LengthAffine &lower : band.lower)
    both(arith::CmpIOp::create(b, arith::CmpIPredicate::sge, j0,
                               rb.add(iLast, evaluateLength(rb, lower, n, m))));
  if (chunkSize) {
    auto sameChunk = [&](Value x, Value y) {
      return arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                   arith::DivUIOp::create(b, x, chunkSize),
                                   arith::DivUIOp::create(b, y, chunkSize));
    };
    both(sameChunk(i0, iLast));
    both(sameChunk(i0, j0));
    both(sameChunk(i0, jLast));
  }
  return full;
}

BandBounds attnc::lowering::evaluateBand(LoweringBuilder &rb,
                                         const MaskStructure &band, Value n,
                                         Value m) {
  BandBounds bounds;
  for (const LengthAffine &lower : band.lower)
    bounds.lower.push_back(evaluateLength(rb, lower, n, m));
  for (const LengthAffine &upper : band.upper)
    bounds.upper.push_back(evaluateLength(rb, upper, n, m));
  return bounds;
}

Value attnc::lowering::rowMeetsBlock(LoweringBuilder &rb,
                                     const BandBounds &bounds, Value i,
                                     Value j0, Value jLast) {
  ImplicitLocOpBuilder &b = rb.b;
  Value lo = j0, hi = jLast;
  for (Value lower : bounds.lower)
    lo = arith::MaxSIOp::create(b, lo, rb.add(i, lower));
  for (Value upper : bounds.upper)
    hi = arith::MinSIOp::create(b, hi, rb.add(i, upper));
  return arith::CmpIOp::create(b, arith::CmpIPredicate::sle, lo, hi);
}
