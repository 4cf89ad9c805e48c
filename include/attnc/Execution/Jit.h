//===- Jit.h - JIT compilation of kernels for the CPU -----------*- C++ -*-===//
//
// Every CPU path (tiled, reference, the GPU warp emulator) JIT-compiles its
// LLVM-dialect module here, for the host CPU or for the CPU that
// ATTNC_JIT_CPU names.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_JIT_H
#define ATTNC_EXECUTION_JIT_H

#include "mlir/IR/BuiltinOps.h"

#include <memory>
#include <string>
#include <vector>

namespace llvm {
class Module;
class TargetMachine;
} // namespace llvm

namespace mlir {
class ExecutionEngine;
} // namespace mlir

namespace attnc {

/// JIT-compiles a module in the LLVM dialect. With ATTNC_JIT_CPU unset the
/// code targets the host CPU and its features. With ATTNC_JIT_CPU=<cpu>
/// (an LLVM CPU name of the host's architecture: x86-64, x86-64-v2,
/// generic, ...) it targets that CPU's default features only, and the
/// module is refused when its code would call a compiler-runtime builtin
/// that attnc does not provide (see runtimeBuiltinCalls): that mode checks
/// that kernels run on any CPU of the architecture, whatever the host's
/// libgcc provides. attnc provides the half-precision conversion builtins
/// (`__truncsfbf2`, `__extendhfsf2`, ...) to every engine. `optLevel` is
/// LLVM's -O level; at 0 code generation is unoptimised too (fast
/// instruction selection and register allocation: for code that is compiled
/// more often than it runs long, as the emulator's).
std::unique_ptr<mlir::ExecutionEngine>
jitCompile(mlir::ModuleOp module, unsigned optLevel, std::string &error);

/// The compiler-runtime builtins (undefined symbols named `__*`) that
/// `module`'s object code for `target` calls, other than the conversion
/// builtins attnc provides. Libm functions and attnc's hooks are not
/// builtins.
std::vector<std::string> runtimeBuiltinCalls(const llvm::Module &module,
                                             llvm::TargetMachine &target);

} // namespace attnc

#endif // ATTNC_EXECUTION_JIT_H
