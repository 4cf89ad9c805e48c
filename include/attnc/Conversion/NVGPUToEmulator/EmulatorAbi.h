//===- EmulatorAbi.h - Calls of the warp emulator's runtime -----*- C++ -*-===//

#ifndef ATTNC_CONVERSION_NVGPUTOEMULATOR_EMULATORABI_H
#define ATTNC_CONVERSION_NVGPUTOEMULATOR_EMULATORABI_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace attnc {

/// The type of emulator function `name` (EmulatorAbi.def); null for a name
/// the ABI does not have.
mlir::FunctionType getEmulatorFunctionType(mlir::MLIRContext *context,
                                           llvm::StringRef name);

/// Declares emulator function `name` in `module` (once) and returns it.
mlir::func::FuncOp declareEmulatorFunction(mlir::ModuleOp module,
                                           llvm::StringRef name);

/// Calls emulator function `name` (declared in the enclosing module) with
/// `args`, whose types must be the ABI's; returns its result or null.
mlir::Value callEmulatorFunction(mlir::OpBuilder &builder, mlir::Location loc,
                                 llvm::StringRef name, mlir::ValueRange args);

} // namespace attnc

#endif // ATTNC_CONVERSION_NVGPUTOEMULATOR_EMULATORABI_H
