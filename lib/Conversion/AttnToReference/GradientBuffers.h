//===- GradientBuffers.h - f32 sums of the reference backwards --*- C++ -*-===//
//
// The reference backwards (SoftmaxBackward.cpp, LinearBackward.cpp) run
// serially in one work item and sum every gradient in an f32 buffer of its
// shape, written to the gradient in its dtype at the end.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_GRADIENTBUFFERS_H
#define ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_GRADIENTBUFFERS_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

namespace attnc::lowering {

/// An f32 buffer with the shape of a gradient, flattened row-major.
struct Accumulator {
  Value gradient, buffer;
  SmallVector<Value> dims;
};

inline Value flatIndex(LoweringBuilder &rb, const Accumulator &acc,
                       ValueRange indices) {
  Value flat = rb.index(0);
  for (auto [index, dim] : llvm::zip(indices, acc.dims))
    flat = rb.add(rb.mul(flat, dim), index);
  return flat;
}

/// for every index tuple of `dims`: body(indices).
inline void forEachIndex(LoweringBuilder &rb, ArrayRef<Value> dims,
                         SmallVector<Value> &indices,
                         llvm::function_ref<void(ValueRange)> body) {
  if (indices.size() == dims.size())
    return body(indices);
  rb.loop(rb.index(0), dims[indices.size()], [&](Value index) {
    indices.push_back(index);
    forEachIndex(rb, dims, indices, body);
    indices.pop_back();
  });
}

inline Accumulator zeroAccumulator(LoweringBuilder &rb, Value gradient) {
  ImplicitLocOpBuilder &b = rb.b;
  Accumulator acc{gradient, Value(), {}};
  Value size = rb.index(1);
  for (int64_t d = 0; d < cast<MemRefType>(gradient.getType()).getRank(); ++d) {
    acc.dims.push_back(rb.dim(gradient, d));
    size = rb.mul(size, acc.dims.back());
  }
  acc.buffer = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{size});
  rb.loop(rb.index(0), size, [&](Value element) {
    memref::StoreOp::create(b, rb.f32(0), acc.buffer, element);
  });
  return acc;
}

inline void accumulate(LoweringBuilder &rb, const Accumulator &acc,
                       ValueRange indices, Value value) {
  ImplicitLocOpBuilder &b = rb.b;
  Value flat = flatIndex(rb, acc, indices);
  Value sum = rb.add(memref::LoadOp::create(b, acc.buffer, flat), value);
  memref::StoreOp::create(b, sum, acc.buffer, flat);
}

/// Writes the sums into the gradient in its dtype and frees the buffer.
inline void finish(LoweringBuilder &rb, const Accumulator &acc) {
  ImplicitLocOpBuilder &b = rb.b;
  SmallVector<Value> indices;
  forEachIndex(rb, acc.dims, indices, [&](ValueRange at) {
    rb.storeF32(memref::LoadOp::create(b, acc.buffer, flatIndex(rb, acc, at)),
                acc.gradient, at);
  });
  memref::DeallocOp::create(b, acc.buffer);
}

/// Runs `body` in the first work item only (the others do nothing), so
/// that the serial sums have one order.
inline void inFirstWorkItem(LoweringBuilder &rb,
                            llvm::function_ref<void()> body) {
  ImplicitLocOpBuilder &b = rb.b;
  Value zero = rb.index(0);
  Value first = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
  if (rb.workBegin)
    first = arith::AndIOp::create(
        b,
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, rb.workBegin, zero),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, rb.workEnd, zero));
  rb.ifThen(first, body);
}

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOREFERENCE_GRADIENTBUFFERS_H
