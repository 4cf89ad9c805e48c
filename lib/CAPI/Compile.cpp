//===- Compile.cpp - The attnc C API: compiling specs ---------------------===//
//
// attnc_compile's work: the front end, the kernel cache and the three
// backends (CPU JIT, PTX, warp emulator). Only the full build has it; the
// runtime-only build links NoCompiler.cpp instead.
//
//===----------------------------------------------------------------------===//

#include "CApiObjects.h"

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Execution/KernelCache.h"
#include "attnc/Frontend/MLIRGen.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

using namespace attnc;
using attnc::capi::fail;

namespace {

struct MLIRCompilerState : capi::CompilerState {
  mlir::MLIRContext mlir;
  KernelCache cache;
};

MLIRCompilerState &compilerOf(attnc_context *context) {
  if (!context->compiler)
    context->compiler = std::make_unique<MLIRCompilerState>();
  return static_cast<MLIRCompilerState &>(*context->compiler);
}

class CpuHostKernel : public capi::HostKernel {
public:
  explicit CpuHostKernel(std::unique_ptr<CpuKernel> kernel)
      : kernel(std::move(kernel)) {}
  const KernelSignature *signature() const override {
    return &kernel->signature();
  }
  bool isCpu() const override { return true; }
  void setThreads(int threads) override { kernel->setThreads(threads); }
  int threads() const override {
    return static_cast<int>(kernel->getThreads());
  }
  int64_t residentCtas() const override { return 0; }
  bool outputShapes(const std::vector<const TensorView *> &inputs,
                    std::vector<std::vector<int64_t>> &shapes,
                    std::string &error, bool readValues) const override {
    return kernel->outputShapes(inputs, shapes, error, readValues);
  }
  bool run(const std::vector<const TensorView *> &inputs,
           const std::vector<TensorView *> &outputs,
           std::string &error) override {
    return kernel->run(inputs, outputs, error);
  }

private:
  std::unique_ptr<CpuKernel> kernel;
};

/// The warp emulator; its signature and output shapes come from the image
/// the attnc_kernel holds, as for a GPU kernel.
class EmulatorHostKernel : public capi::HostKernel {
public:
  explicit EmulatorHostKernel(std::unique_ptr<EmulatedGpuKernel> kernel)
      : kernel(std::move(kernel)) {}
  const KernelSignature *signature() const override { return nullptr; }
  bool isCpu() const override { return false; }
  void setThreads(int) override {}
  int threads() const override { return 0; }
  int64_t residentCtas() const override { return kernel->residentCtas(); }
  bool outputShapes(const std::vector<const TensorView *> &,
                    std::vector<std::vector<int64_t>> &, std::string &error,
                    bool) const override {
    error = "the emulator's output shapes come from its image";
    return false;
  }
  bool run(const std::vector<const TensorView *> &inputs,
           const std::vector<TensorView *> &outputs,
           std::string &error) override {
    return kernel->run(inputs, outputs, error);
  }

private:
  std::unique_ptr<EmulatedGpuKernel> kernel;
};

attnc_kernel *newKernel(attnc_context *context, const std::string &target,
                        GpuImage image, std::unique_ptr<capi::HostKernel> host,
                        bool fromCache) {
  attnc_kernel *kernel = new attnc_kernel(context, target, std::move(image));
  kernel->host = std::move(host);
  kernel->fromCache = fromCache;
  return kernel;
}

} // namespace

const std::string &attnc::capi::cacheDirectory(attnc_context *context) {
  return compilerOf(context).cache.directory();
}

attnc_status attnc::capi::setCacheDirectory(attnc_context *context,
                                            const char *directory) {
  compilerOf(context).cache = directory && *directory
                                  ? KernelCache(directory)
                                  : KernelCache::disabled();
  return ATTNC_OK;
}

attnc_status attnc::capi::compile(attnc_context *context, const char *spec,
                                  size_t specLength, const char *sourceName,
                                  const char *kernelName,
                                  const std::string &target,
                                  const std::string &optionText,
                                  attnc_kernel **kernel) {
  MLIRCompilerState &compiler = compilerOf(context);
  CpuOptions options;
  std::string targetName = target;
  if (targetName == "cuda") {
    std::string error;
    int capability = cudaComputeCapability(error);
    if (capability)
      targetName = gpuTargetFor(capability, error);
    if (!capability || targetName.empty())
      return fail(context, ATTNC_ERROR_TARGET,
                  "target 'cuda' picks the GPU's architecture, but " + error +
                      "; name sm_80 or sm_90a to compile without a GPU");
  }
  bool gpuTarget = isGpuTarget(targetName);
  bool emulatorTarget = targetName == "gpu-emulator";
  if (targetName == "cpu")
    options.path = CpuPath::Tiled;
  else if (targetName == "cpu-reference")
    options.path = CpuPath::Reference;
  else if (!gpuTarget && !emulatorTarget)
    return fail(context, ATTNC_ERROR_TARGET,
                "unknown target '" + targetName +
                    "'; targets: cpu, cpu-reference, sm_80, sm_90a, cuda (the "
                    "GPU present), gpu-emulator");

  GpuPipelineOptions gpuOptions;
  gpuOptions.chip = targetName;
  std::string optionError;
  bool optionsOk;
  if (targetName == "cpu-reference") {
    optionsOk = llvm::StringRef(optionText).trim(" ,\t\n").empty();
    optionError =
        "target cpu-reference takes no options, got '" + optionText + "'";
  } else if (gpuTarget || emulatorTarget) {
    optionsOk = gpuOptions.parse(optionText, optionError);
  } else {
    optionsOk = options.parse(optionText, optionError);
  }
  if (!optionsOk)
    return fail(context, ATTNC_ERROR_ARGUMENT, optionError);
  std::string cacheKey;
  if (gpuTarget) {
    cacheKey = KernelCache::key(std::string(spec, specLength),
                                kernelName ? kernelName : "",
                                gpuOptions.cacheKey(), targetName);
    GpuImage image;
    std::string note;
    if (compiler.cache.lookup(cacheKey, image, note)) {
      *kernel = newKernel(context, targetName, std::move(image), nullptr,
                          /*fromCache=*/true);
      return ATTNC_OK;
    }
    if (!note.empty())
      KernelCache::report(note);
  }

  llvm::SourceMgr sourceMgr;
  unsigned buffer = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(spec, specLength),
          sourceName ? sourceName : "<spec>"),
      llvm::SMLoc());
  DiagnosticEngine diags(sourceMgr, /*os=*/nullptr);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileSpecToMLIR(buffer, compiler.mlir, diags);
  for (const Diagnostic &diag : diags.diagnostics())
    context->diagnostics.push_back({static_cast<attnc_severity>(diag.severity),
                                    diag.file, diag.line, diag.col,
                                    diag.message, diag.hint});
  if (!module) {
    const capi::DiagnosticRecord *first =
        context->diagnostics.empty() ? nullptr : &context->diagnostics.front();
    return fail(context, ATTNC_ERROR_SPEC,
                first ? first->file + ":" + std::to_string(first->line) + ":" +
                            std::to_string(first->col) + ": " + first->message
                      : "the spec has errors");
  }
  std::string error;
  if (emulatorTarget) {
    std::unique_ptr<EmulatedGpuKernel> emulated = EmulatedGpuKernel::compile(
        *module, kernelName ? kernelName : "", gpuOptions, error);
    if (!emulated)
      return fail(context, ATTNC_ERROR_TARGET, error);
    GpuImage image = emulated->image();
    *kernel = newKernel(context, targetName, std::move(image),
                        std::make_unique<EmulatorHostKernel>(std::move(emulated)),
                        false);
    return ATTNC_OK;
  }
  if (gpuTarget) {
    GpuImage image;
    if (!compileToPtx(*module, kernelName ? kernelName : "", gpuOptions, image,
                      error))
      return fail(context, ATTNC_ERROR_TARGET, error);
    // A read-only cache only costs recompilation; say so once.
    std::string storeError;
    if (!compiler.cache.store(cacheKey, image, storeError))
      KernelCache::report(storeError + "; GPU kernels are not cached");
    *kernel = newKernel(context, targetName, std::move(image), nullptr, false);
    return ATTNC_OK;
  }
  std::unique_ptr<CpuKernel> cpu = CpuKernel::compile(
      *module, kernelName ? kernelName : "", options, error);
  if (!cpu)
    return fail(context, ATTNC_ERROR_TARGET, error);
  *kernel = newKernel(context, targetName, GpuImage(),
                      std::make_unique<CpuHostKernel>(std::move(cpu)), false);
  return ATTNC_OK;
}

extern "C" int attnc_has_compiler(void) { return 1; }
