//===- KernelLowering.cpp - Shared pieces of the kernel lowerings ---------===//

#include "KernelLowering.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

void attnc::lowering::lowerKernelToFunc(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily) {
  FunctionType signature = kernel.getFunctionType();
  SmallVector<Type> argTypes;
  for (Type type : signature.getInputs())
    argTypes.push_back(getParamMemRefType(cast<AttnTensorType>(type)));
  for (Type type : signature.getResults())
    argTypes.push_back(getParamMemRefType(cast<AttnTensorType>(type)));
  auto statusType = MemRefType::get({ShapedType::kDynamic},
                                    IntegerType::get(kernel.getContext(), 64));
  argTypes.push_back(statusType);

  OpBuilder builder(kernel);
  auto func = func::FuncOp::create(builder, kernel.getLoc(),
                                   kernel.getSymName(),
                                   builder.getFunctionType(argTypes, {}));
  func->setAttr("llvm.emit_c_interface", builder.getUnitAttr());
  Block *entry = func.addEntryBlock();

  IRMapping params;
  Block &body = kernel.getBody().front();
  for (auto [param, arg] : llvm::zip(body.getArguments(), entry->getArguments()))
    params.map(param, arg);
  ValueRange results =
      entry->getArguments().slice(signature.getNumInputs(),
                                  signature.getNumResults());
  Value status = entry->getArguments().back();

  Operation *familyOp = kernel.getFamilyOp();
  auto ret = cast<ReturnOp>(body.getTerminator());
  // The verifier guarantees that the kernel returns each result of the
  // family op exactly once.
  SmallVector<Value> familyResults(familyOp->getNumResults());
  for (auto [returned, buffer] : llvm::zip(ret.getResults(), results))
    familyResults[cast<OpResult>(returned).getResultNumber()] = buffer;

  ImplicitLocOpBuilder b(familyOp->getLoc(), entry, entry->begin());
  LoweringBuilder rb(b, params, status);
  memref::StoreOp::create(b, arith::ConstantIntOp::create(b, b.getI64Type(), 0),
                          status, rb.index(0));
  lowerFamily(familyOp, rb, familyResults);
  func::ReturnOp::create(b);
  kernel.erase();
}


AttentionOperands attnc::lowering::getAttentionOperands(Operation *familyOp,
                                                       LoweringBuilder &rb) {
  IRMapping &params = rb.params;
  auto lookup = [&](Value value) {
    return value ? params.lookup(value) : Value();
  };
  AttentionOperands shape;
  Value cuQ, cuK;
  if (auto linear = dyn_cast<LinearOp>(familyOp)) {
    shape.layout = linear.getLayout();
    cuQ = cuK = linear.getCuSeqlens();
  } else {
    shape.layout =
        familyOp->getAttrOfType<LayoutAttr>("layout").getValue();
    if (auto op = dyn_cast<SoftmaxOp>(familyOp))
      cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
    else if (auto op = dyn_cast<ChunkSoftmaxOp>(familyOp))
      cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
    else if (auto op = dyn_cast<SparseSoftmaxOp>(familyOp))
      cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
  }
  shape.dims = getLayoutDims(shape.layout);
  shape.q = lookup(familyOp->getOperand(0));
  shape.k = lookup(familyOp->getOperand(1));
  shape.v = lookup(familyOp->getOperand(2));
  shape.cuQ = lookup(cuQ);
  shape.cuK = cuK ? lookup(cuK) : shape.cuQ;

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

void attnc::lowering::initializeState(LoweringBuilder &rb, Value state,
                                      Value initial, Value hasInitial,
                                      Value batch, Value head,
                                      const AttentionOperands &shape) {
  Value zero = rb.index(0);
  Type f32 = rb.b.getF32Type();
  rb.loop(zero, shape.dimK, [&](Value d) {
    rb.loop(zero, shape.dimV, [&](Value e) {
      Value init = rb.f32(0);
      if (initial)
        init = rb.ifThen(
            hasInitial, {f32},
            [&]() -> SmallVector<Value> {
              return {rb.loadF32(initial, {batch, head, d, e})};
            },
            [&]() -> SmallVector<Value> { return {rb.f32(0)}; })[0];
      memref::StoreOp::create(rb.b, init, state, ValueRange{d, e});
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
