//===- CallingConvention.cpp - Kernel parameters and functions ------------===//

#include "attnc/Conversion/KernelLowering/CallingConvention.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

mlir::MemRefType attnc::lowering::getParamMemRefType(AttnTensorType type) {
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  if (element.isInteger(1))
    element = IntegerType::get(type.getContext(), 8);
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(type.getContext(), ShapedType::kDynamic,
                                       strides);
  return MemRefType::get(shape, element, layout);
}

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
