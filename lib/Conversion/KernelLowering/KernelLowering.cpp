//===- KernelLowering.cpp - Shared pieces of the kernel lowerings ---------===//

#include "attnc/Conversion/KernelLowering/KernelLowering.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

SmallVector<Type> attnc::lowering::getCallingConventionTypes(KernelOp kernel) {
  FunctionType signature = kernel.getFunctionType();
  SmallVector<Type> argTypes;
  for (Type type : signature.getInputs())
    argTypes.push_back(getParamMemRefType(cast<AttnTensorType>(type)));
  for (Type type : signature.getResults())
    argTypes.push_back(getParamMemRefType(cast<AttnTensorType>(type)));
  argTypes.push_back(MemRefType::get({ShapedType::kDynamic},
                                     IntegerType::get(kernel.getContext(), 64)));
  return argTypes;
}

void attnc::lowering::lowerKernelBody(
    KernelOp kernel, Block *entry, bool clearStatus,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily,
    ValueRange workRange) {
  FunctionType signature = kernel.getFunctionType();
  IRMapping params;
  Block &body = kernel.getBody().front();
  for (auto [param, arg] : llvm::zip(body.getArguments(), entry->getArguments()))
    params.map(param, arg);
  ValueRange results =
      entry->getArguments().slice(signature.getNumInputs(),
                                  signature.getNumResults());
  Value status = entry->getArgument(signature.getNumInputs() +
                                    signature.getNumResults());

  Operation *familyOp = kernel.getFamilyOp();
  auto ret = cast<ReturnOp>(body.getTerminator());
  // The verifier guarantees that the kernel returns each result of the
  // family op exactly once.
  SmallVector<Value> familyResults(familyOp->getNumResults());
  for (auto [returned, buffer] : llvm::zip(ret.getResults(), results))
    familyResults[cast<OpResult>(returned).getResultNumber()] = buffer;

  ImplicitLocOpBuilder b(familyOp->getLoc(), entry, entry->end());
  LoweringBuilder rb(b, params, status);
  if (!workRange.empty()) {
    rb.workBegin = workRange[0];
    rb.workEnd = workRange[1];
    rb.workRowBlocks = workRange[2];
  }
  if (clearStatus)
    memref::StoreOp::create(
        b, arith::ConstantIntOp::create(b, b.getI64Type(), 0), status,
        rb.index(0));
  lowerFamily(familyOp, rb, familyResults);
}

namespace {
/// Replaces `kernel` by a func.func of the same name taking the calling
/// convention and fills it in; `withWorkRange` adds the CPU's three work
/// range arguments and clears the status buffer on entry.
func::FuncOp replaceKernelByFunc(
    KernelOp kernel, bool withWorkRange,
    llvm::function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily) {
  OpBuilder builder(kernel);
  SmallVector<Type> argTypes = getCallingConventionTypes(kernel);
  if (withWorkRange)
    argTypes.append(3, builder.getIndexType());
  auto func = func::FuncOp::create(builder, kernel.getLoc(),
                                   kernel.getSymName(),
                                   builder.getFunctionType(argTypes, {}));
  Block *entry = func.addEntryBlock();
  if (withWorkRange)
    func->setAttr("llvm.emit_c_interface", builder.getUnitAttr());
  lowerKernelBody(kernel, entry, /*clearStatus=*/withWorkRange, lowerFamily,
                  withWorkRange ? entry->getArguments().take_back(3)
                                : ValueRange());
  builder.setInsertionPointToEnd(entry);
  func::ReturnOp::create(builder, kernel.getLoc());
  kernel.erase();
  return func;
}
} // namespace

func::FuncOp attnc::lowering::lowerKernelToFunc(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily) {
  return replaceKernelByFunc(kernel, /*withWorkRange=*/true, lowerFamily);
}

func::FuncOp attnc::lowering::lowerKernelToProgram(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily) {
  return replaceKernelByFunc(kernel, /*withWorkRange=*/false, lowerFamily);
}

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
