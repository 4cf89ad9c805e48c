//===- CApiObjects.h - The objects behind the C API's handles ---*- C++ -*-===//
//
// attnc_context and attnc_kernel, shared by the part of the C API that only
// loads and launches (Attnc.cpp, no LLVM or MLIR) and the compiler
// (Compile.cpp, or NoCompiler.cpp in the runtime-only build).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CAPI_CAPIOBJECTS_H
#define ATTNC_LIB_CAPI_CAPIOBJECTS_H

#include "attnc-c/attnc.h"

#include "attnc/Runtime/CudaRuntime.h"
#include "attnc/Runtime/GpuImage.h"
#include "attnc/Runtime/Tensor.h"

#include <memory>
#include <string>
#include <vector>

namespace attnc::capi {

/// What the compiler keeps per context (the MLIR context, the kernel cache);
/// defined by Compile.cpp.
class CompilerState {
public:
  virtual ~CompilerState() = default;
};

/// A kernel that runs on this machine instead of a GPU: a JIT-compiled CPU
/// kernel, or a GPU kernel on the warp emulator. Only the compiler
/// makes them.
class HostKernel {
public:
  virtual ~HostKernel() = default;
  /// CPU kernels have their own signature; the emulator's is its image's
  /// (null here).
  virtual const KernelSignature *signature() const = 0;
  /// Whether this is a CPU kernel (host threads, its own output shapes).
  virtual bool isCpu() const = 0;
  virtual void setThreads(int threads) = 0;
  virtual int threads() const = 0;
  /// The emulator: the CTAs its GPU holds at once (sizes split-keys=auto
  /// grids); 0 for the CPU.
  virtual int64_t residentCtas() const = 0;
  virtual bool outputShapes(const std::vector<const TensorView *> &inputs,
                            std::vector<std::vector<int64_t>> &shapes,
                            std::string &error, bool readValues) const = 0;
  virtual bool run(const std::vector<const TensorView *> &inputs,
                   const std::vector<TensorView *> &outputs,
                   std::string &error) = 0;
};

/// attnc_compile's work after its argument checks; the runtime-only build
/// refuses.
attnc_status compile(attnc_context *context, const char *spec,
                     size_t specLength, const char *sourceName,
                     const char *kernelName, const std::string &target,
                     const std::string &options, attnc_kernel_part part,
                     attnc_kernel **kernel);

/// The kernel cache directory of `context` ("" when disabled or absent);
/// setCacheDirectory fails in the runtime-only build.
const std::string &cacheDirectory(attnc_context *context);
attnc_status setCacheDirectory(attnc_context *context, const char *directory);

attnc_status fail(attnc_context *context, attnc_status status,
                  const std::string &message);

/// One diagnostic of the last compile, owning the strings that
/// attnc_diagnostic points into.
struct DiagnosticRecord {
  attnc_severity severity;
  std::string file;
  unsigned line = 0, col = 0;
  std::string message, hint;
};

} // namespace attnc::capi

struct attnc_context {
  std::unique_ptr<attnc::capi::CompilerState> compiler;
  std::string lastError;
  std::vector<attnc::capi::DiagnosticRecord> diagnostics;
  std::vector<attnc_diagnostic> views;
};

struct attnc_kernel {
  attnc_kernel(attnc_context *context, std::string target,
               attnc::GpuImage gpuImage)
      : context(context), target(std::move(target)),
        gpuImage(std::move(gpuImage)) {}

  attnc_context *context;
  std::string target;
  /// GPU targets: the image, loaded onto the device at the first launch
  /// (compiling needs no GPU). The emulator keeps its launch facts here.
  attnc::GpuImage gpuImage;
  std::unique_ptr<attnc::GpuKernel> gpu;
  /// CPU and gpu-emulator targets.
  std::unique_ptr<attnc::capi::HostKernel> host;
  bool fromCache = false;
  /// attnc_kernel_serialize's buffer.
  std::string serialized;

  bool isCpu() const { return host && host->isCpu(); }
  bool isEmulated() const { return host && !host->isCpu(); }
  const attnc::KernelSignature &signature() const {
    const attnc::KernelSignature *own = host ? host->signature() : nullptr;
    return own ? *own : gpuImage.signature;
  }
};

#endif // ATTNC_LIB_CAPI_CAPIOBJECTS_H
