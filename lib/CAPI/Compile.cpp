//===- Compile.cpp - The attnc C API: compiling specs ---------------------===//
//
// attnc_compile's work, done by compileSpec (attnc/Execution/Compiler.h):
// the front end, the kernel cache and the three backends (CPU JIT, PTX,
// warp emulator). Only the full build has it; the runtime-only build links
// NoCompiler.cpp instead.
//
//===----------------------------------------------------------------------===//

#include "CApiObjects.h"

#include "attnc/Execution/Compiler.h"

#include "mlir/IR/MLIRContext.h"

using namespace attnc;
using attnc::capi::fail;

static_assert(static_cast<int>(KernelPart::Forward) == ATTNC_PART_FORWARD &&
              static_cast<int>(KernelPart::TrainingForward) ==
                  ATTNC_PART_TRAINING_FORWARD &&
              static_cast<int>(KernelPart::Backward) == ATTNC_PART_BACKWARD);

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
                                  attnc_kernel_part part,
                                  attnc_kernel **kernel) {
  MLIRCompilerState &compiler = compilerOf(context);
  CompileRequest request;
  request.spec = llvm::StringRef(spec, specLength);
  request.sourceName = sourceName ? sourceName : "";
  request.kernel = kernelName ? kernelName : "";
  request.target = target;
  request.options = optionText;
  request.cache = &compiler.cache;
  request.part = static_cast<KernelPart>(part);
  CompiledKernel compiled;
  std::string error;
  CompileFailure failure =
      compileSpec(compiler.mlir, request, compiled, error);
  for (const Diagnostic &diag : compiled.diagnostics)
    context->diagnostics.push_back({static_cast<attnc_severity>(diag.severity),
                                    diag.file, diag.line, diag.col,
                                    diag.message, diag.hint});
  switch (failure) {
  case CompileFailure::None:
    break;
  case CompileFailure::Spec:
    return fail(context, ATTNC_ERROR_SPEC, error);
  case CompileFailure::Target:
    return fail(context, ATTNC_ERROR_TARGET, error);
  case CompileFailure::Argument:
    return fail(context, ATTNC_ERROR_ARGUMENT, error);
  }
  std::unique_ptr<capi::HostKernel> host;
  if (compiled.cpu)
    host = std::make_unique<CpuHostKernel>(std::move(compiled.cpu));
  else if (compiled.emulated)
    host = std::make_unique<EmulatorHostKernel>(std::move(compiled.emulated));
  *kernel = newKernel(context, compiled.target, std::move(compiled.image),
                      std::move(host), compiled.fromCache);
  return ATTNC_OK;
}

extern "C" int attnc_has_compiler(void) { return 1; }
