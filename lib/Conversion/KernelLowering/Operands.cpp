//===- Operands.cpp - The memrefs and sizes of a family op ----------------===//

#include "attnc/Conversion/KernelLowering/Operands.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

AttentionOperands attnc::lowering::getAttentionOperands(Operation *familyOp,
                                                       LoweringBuilder &rb) {
  IRMapping &params = rb.params;
  auto lookup = [&](Value value) {
    return value ? params.lookup(value) : Value();
  };
  AttentionOperands shape;
  shape.layout = familyOp->getAttrOfType<LayoutAttr>("layout").getValue();
  auto [cuQ, cuK] = getSequenceOffsets(familyOp);
  shape.dims = getLayoutDims(shape.layout);
  shape.q = lookup(familyOp->getOperand(0));
  shape.k = lookup(familyOp->getOperand(1));
  shape.v = lookup(familyOp->getOperand(2));
  shape.cuQ = lookup(cuQ);
  shape.cuK = lookup(cuK);

  ImplicitLocOpBuilder &b = rb.b;
  const LayoutDims &dims = shape.dims;
  shape.numBatches = shape.cuQ ? rb.sub(rb.dim(shape.cuQ, 0), rb.index(1))
                               : rb.dim(shape.q, dims.batch);
  shape.headsQ = rb.dim(shape.q, dims.head);
  shape.headsK = rb.dim(shape.k, dims.head);
  shape.groupSize = arith::DivUIOp::create(b, shape.headsQ, shape.headsK);
  shape.lengthQ = rb.dim(shape.q, dims.seq);
  shape.lengthK = rb.dim(shape.k, dims.seq);
  shape.dimK = rb.dim(shape.q, dims.feature);
  shape.dimV = rb.dim(shape.v, dims.feature);
  return shape;
}

Value attnc::lowering::initialStateAt(LoweringBuilder &rb, Value initial,
                                      Value hasInitial, Value batch,
                                      Value head, Value d, Value e) {
  if (!initial)
    return rb.f32(0);
  return rb.ifThen(
      hasInitial, {rb.b.getF32Type()},
      [&]() -> SmallVector<Value> {
        return {rb.loadF32(initial, {batch, head, d, e})};
      },
      [&]() -> SmallVector<Value> { return {rb.f32(0)}; })[0];
}

void attnc::lowering::initializeState(LoweringBuilder &rb, Value state,
                                      Value initial, Value hasInitial,
                                      Value batch, Value head,
                                      const AttentionOperands &shape) {
  Value zero = rb.index(0);
  rb.loop(zero, shape.dimK, [&](Value d) {
    rb.loop(zero, shape.dimV, [&](Value e) {
      memref::StoreOp::create(
          rb.b, initialStateAt(rb, initial, hasInitial, batch, head, d, e),
          state, ValueRange{d, e});
    });
  });
}

void attnc::lowering::storeState(LoweringBuilder &rb, Value state,
                                 Value finalState, Value batch, Value head,
                                 const AttentionOperands &shape) {
  Value zero = rb.index(0);
  rb.loop(zero, shape.dimK, [&](Value d) {
    rb.loop(zero, shape.dimV, [&](Value e) {
      memref::StoreOp::create(
          rb.b, memref::LoadOp::create(rb.b, state, ValueRange{d, e}),
          finalState, ValueRange{batch, head, d, e});
    });
  });
}
