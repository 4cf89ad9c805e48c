//===- Compiler.cpp - The one entry point of compilation ------------------===//

#include "attnc/Execution/Compiler.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/Inputs.h"
#include "attnc/Transforms/DeriveBackward.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Runtime/CudaRuntime.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

using namespace attnc;

bool attnc::resolveTarget(llvm::StringRef target, std::string &resolved,
                          std::string &error) {
  resolved = target.str();
  if (target != "cuda")
    return true;
  std::string why;
  int capability = cudaComputeCapability(why);
  if (capability)
    resolved = gpuTargetFor(capability, why);
  if (capability && !resolved.empty())
    return true;
  error = "target 'cuda' picks the GPU's architecture, but " + why +
          "; name sm_80 or sm_90a to compile without a GPU";
  return false;
}

namespace {

/// The target's options from the request's text.
CompileFailure parseTargetOptions(const std::string &target,
                                  llvm::StringRef text, CompileOptions &options,
                                  std::string &error) {
  bool gpu = isGpuTarget(target) || target == "gpu-emulator";
  if (target == "cpu") {
    options.cpu.path = CpuPath::Tiled;
  } else if (target == "cpu-reference") {
    options.cpu.path = CpuPath::Reference;
    if (!text.trim(" ,\t\n").empty()) {
      error = "target cpu-reference takes no options, got '" + text.str() + "'";
      return CompileFailure::Argument;
    }
    return CompileFailure::None;
  } else if (!gpu) {
    error = "unknown target '" + target +
            "'; targets: cpu, cpu-reference, sm_80, sm_90a, cuda (the GPU "
            "present), gpu-emulator";
    return CompileFailure::Target;
  }
  options.gpu.chip = target;
  bool parsed = gpu ? options.gpu.parse(text, error)
                    : parseCompileOptions(text, kCpuOption, options, error);
  return parsed ? CompileFailure::None : CompileFailure::Argument;
}

} // namespace

CompileFailure attnc::compileSpec(mlir::MLIRContext &context,
                                  const CompileRequest &request,
                                  CompiledKernel &out, std::string &error) {
  if (!resolveTarget(request.target, out.target, error))
    return CompileFailure::Target;
  CompileOptions options;
  if (CompileFailure failure =
          parseTargetOptions(out.target, request.options, options, error);
      failure != CompileFailure::None)
    return failure;

  bool gpuTarget = isGpuTarget(out.target);
  std::string cacheKey;
  KernelCache *cache = request.keepLoweredIR ? nullptr : request.cache;
  if (gpuTarget && cache) {
    // Parts other than the forward key as "<kernel>#<part>".
    std::string kernelKey = request.kernel.str();
    if (request.part != KernelPart::Forward)
      kernelKey += "#" + std::to_string(static_cast<int>(request.part));
    cacheKey = KernelCache::key(request.spec.str(), kernelKey,
                                options.gpu.cacheKey(), out.target);
    std::string note;
    if (cache->lookup(cacheKey, out.image, note)) {
      out.fromCache = true;
      out.roles = out.image.roles;
      return CompileFailure::None;
    }
    if (!note.empty())
      KernelCache::report(note);
  }

  llvm::SourceMgr sourceMgr;
  unsigned buffer = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          request.spec,
          request.sourceName.empty() ? "<spec>" : request.sourceName),
      llvm::SMLoc());
  DiagnosticEngine diags(sourceMgr, request.diagnosticStream);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileSpecToMLIR(buffer, context, diags);
  out.diagnostics = diags.diagnostics();
  if (!module) {
    auto first = llvm::find_if(out.diagnostics, [](const Diagnostic &diag) {
      return diag.severity == Severity::Error;
    });
    error = first != out.diagnostics.end()
                ? first->file + ":" + std::to_string(first->line) + ":" +
                      std::to_string(first->col) + ": " + first->message
                : "the spec has errors";
    return CompileFailure::Spec;
  }
  attn::KernelOp kernel = keepOnlyKernel(*module, request.kernel, error);
  if (!kernel)
    return CompileFailure::Target;
  if (request.part == KernelPart::TrainingForward &&
      failed(addTrainingResults(kernel))) {
    error = "kernel '" + kernel.getSymName().str() +
            "' cannot return what its backward needs for training (lse, "
            "and topk_blocks for top-k): it already has a tensor of that "
            "name";
    return CompileFailure::Target;
  }
  if (request.part == KernelPart::Backward) {
    mlir::FailureOr<attn::KernelOp> derived =
        deriveBackwardKernel(kernel, error);
    if (failed(derived)) // the spec's line:col is in `error`
      return CompileFailure::Target;
    kernel.erase();
    kernel = *derived;
  }
  out.roles = getParamRoles(kernel);
  std::string kernelName = kernel.getSymName().str();

  if (out.target == "gpu-emulator") {
    out.emulated =
        EmulatedGpuKernel::compile(*module, kernelName, options.gpu, error);
    if (!out.emulated)
      return CompileFailure::Target;
    out.image = out.emulated->image();
    return CompileFailure::None;
  }
  if (gpuTarget) {
    if (!compileToPtx(*module, kernelName, options.gpu, out.image, error,
                      request.keepLoweredIR ? &out.loweredIR : nullptr))
      return CompileFailure::Target;
    // A read-only cache only costs recompilation; say so once.
    std::string storeError;
    if (cache && !cache->store(cacheKey, out.image, storeError))
      KernelCache::report(storeError + "; GPU kernels are not cached");
    return CompileFailure::None;
  }
  out.cpu = CpuKernel::compile(*module, kernelName, options.cpu, error);
  return out.cpu ? CompileFailure::None : CompileFailure::Target;
}
