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

