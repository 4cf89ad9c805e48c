//===- Compiler.h - The one entry point of compilation ----------*- C++ -*-===//
//
// Spec text, a target and option text in; a kernel for that target out.
// The attnc driver, the C API (and through it Python) compile through
// compileSpec, so that every caller gets the same targets, options, cache
// and errors.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_COMPILER_H
#define ATTNC_EXECUTION_COMPILER_H

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Execution/KernelCache.h"
#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Pipelines/Pipelines.h"
#include "attnc/Runtime/GpuImage.h"

#include "mlir/IR/MLIRContext.h"

#include <memory>
#include <string>

namespace attnc {

/// Which kernel of a spec's kernel a compilation makes (docs/semantics.md
/// section 8).
enum class KernelPart {
  /// The kernel as the spec writes it.
  Forward,
  /// The forward that training runs: a softmax kernel also returns the
  /// log-sum-exp ("lse") and a top-k kernel its selection ("topk_blocks")
  /// that its backward takes (see addTrainingResults).
  TrainingForward,
  /// The backward (attn-derive-backward): kernel `<kernel>_backward`.
  Backward,
};

/// What a compilation asks for.
struct CompileRequest {
  llvm::StringRef spec;
  /// The name diagnostics give the spec ("<spec>" when empty).
  llvm::StringRef sourceName;
  /// The kernel to compile; the first when empty.
  llvm::StringRef kernel;
  /// cpu, cpu-reference, sm_80, sm_90a, cuda (the GPU present) or
  /// gpu-emulator.
  llvm::StringRef target;
  /// NAME=VALUE pairs and flags of compileOptions() for the target.
  llvm::StringRef options;
  /// GPU images are looked up and stored here when given.
  KernelCache *cache = nullptr;
  /// Front-end diagnostics are printed here as they are found (when given).
  llvm::raw_ostream *diagnosticStream = nullptr;
  /// The forward, its training variant or its backward; the backward
  /// compiles for the CPU targets only so far.
  KernelPart part = KernelPart::Forward;
  /// GPU targets: keep the module after the GPU lowering (NVVM dialect) in
  /// CompiledKernel::loweredIR; the cache is bypassed.
  bool keepLoweredIR = false;
};

/// What a compilation gives: exactly one of the CPU kernel, the emulated
/// kernel or a GPU image to load, by target.
struct CompiledKernel {
  /// The target compiled for: "cuda" becomes sm_80 or sm_90a.
  std::string target;
  std::unique_ptr<CpuKernel> cpu;
  std::unique_ptr<EmulatedGpuKernel> emulated;
  /// The PTX image of a GPU target, or the emulator's launch facts.
  GpuImage image;
  /// The image came from the cache.
  bool fromCache = false;
  /// Who each parameter is (sequence offsets, block lists, ...), for
  /// callers that make inputs.
  ParamRoles roles;
  /// The front end's diagnostics, errors and warnings.
  std::vector<Diagnostic> diagnostics;
  /// See CompileRequest::keepLoweredIR.
  std::string loweredIR;
};

/// Why a compilation failed.
enum class CompileFailure {
  None,
  /// The spec has errors (CompiledKernel::diagnostics lists them).
  Spec,
  /// No such target, or the kernel cannot run on it (the feature is named).
  Target,
  /// The options are malformed or do not go together.
  Argument,
};

/// Resolves the target "cuda" to the present GPU's (sm_80 or sm_90a);
/// other names pass through. False, with `error`, without a usable GPU.
bool resolveTarget(llvm::StringRef target, std::string &resolved,
                   std::string &error);

/// Compiles `request` in `context`; on failure returns why with a one-line
/// `error`.
CompileFailure compileSpec(mlir::MLIRContext &context,
                           const CompileRequest &request, CompiledKernel &out,
                           std::string &error);

} // namespace attnc

#endif // ATTNC_EXECUTION_COMPILER_H
