//===- EmulatorAbi.cpp - Calls of the warp emulator's runtime -------------===//

#include "attnc/Conversion/NVGPUToEmulator/EmulatorAbi.h"

#include "llvm/ADT/StringSwitch.h"

#include <cstdint>
#include <type_traits>

using namespace mlir;

namespace {

template <typename T> Type abiType(MLIRContext *context) {
  if constexpr (std::is_same_v<T, float>)
    return Float32Type::get(context);
  else
    return IntegerType::get(context, 8 * sizeof(T));
}

template <typename Result, typename... Args>
FunctionType abiFunctionType(MLIRContext *context) {
  SmallVector<Type> results;
  if constexpr (!std::is_void_v<Result>)
    results.push_back(abiType<Result>(context));
  return FunctionType::get(context, {abiType<Args>(context)...}, results);
}

using TypeBuilder = FunctionType (*)(MLIRContext *);

} // namespace

FunctionType attnc::getEmulatorFunctionType(MLIRContext *context,
                                            StringRef name) {
  auto build = llvm::StringSwitch<TypeBuilder>(name)
#define ATTNC_EMULATOR_FUNCTION(NAME, ...)                                     \
  .Case(#NAME, &abiFunctionType<__VA_ARGS__>)
#include "attnc/Conversion/NVGPUToEmulator/EmulatorAbi.def"
#undef ATTNC_EMULATOR_FUNCTION
                   .Default(nullptr);
  return build ? build(context) : FunctionType();
}

func::FuncOp attnc::declareEmulatorFunction(ModuleOp module, StringRef name) {
  if (auto existing = module.lookupSymbol<func::FuncOp>(name))
    return existing;
  FunctionType type = getEmulatorFunctionType(module.getContext(), name);
  assert(type && "not an emulator function");
  OpBuilder builder = OpBuilder::atBlockBegin(module.getBody());
  auto callee = func::FuncOp::create(builder, module.getLoc(), name, type);
  callee.setPrivate();
  return callee;
}

Value attnc::callEmulatorFunction(OpBuilder &builder, Location loc,
                                  StringRef name, ValueRange args) {
  ModuleOp module =
      builder.getInsertionBlock()->getParentOp()->getParentOfType<ModuleOp>();
  func::FuncOp callee = declareEmulatorFunction(module, name);
  assert(TypeRange(args) == callee.getFunctionType().getInputs() &&
         "arguments that the emulator function does not take");
  auto call = func::CallOp::create(builder, loc, callee, args);
  return call.getNumResults() ? call.getResult(0) : Value();
}
