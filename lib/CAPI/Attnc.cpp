//===- Attnc.cpp - The attnc C API ----------------------------------------===//
//
// A thin layer over the front end and the CPU executor: opaque objects own
// the C++ ones, strings handed out stay valid until the next call that
// replaces them, and nothing throws or aborts on bad input.
//
//===----------------------------------------------------------------------===//

#include "attnc-c/attnc.h"

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Execution/KernelCache.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Runtime/CudaRuntime.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <array>
#include <memory>
#include <string>
#include <vector>

using namespace attnc;

struct attnc_context {
  mlir::MLIRContext mlir;
  KernelCache cache;
  std::string lastError;
  std::vector<Diagnostic> diagnostics;
  std::vector<attnc_diagnostic> views;
};

struct attnc_kernel {
  attnc_context *context;
  std::string target;
  std::unique_ptr<CpuKernel> cpu;
  /// GPU targets: the compiled image, loaded onto the device at the first
  /// launch (compiling needs no GPU).
  GpuImage gpuImage;
  std::unique_ptr<GpuKernel> gpu;
  bool fromCache = false;
  /// Target "gpu-emulator": the GPU tile program on the CPU warp emulator
  /// (gpuImage holds its launch facts).
  std::unique_ptr<EmulatedGpuKernel> emulated;

  const KernelSignature &signature() const {
    return cpu ? cpu->signature() : gpuImage.signature;
  }
};

namespace {

attnc_status fail(attnc_context *context, attnc_status status,
                  std::string message) {
  if (context)
    context->lastError = std::move(message);
  return status;
}

attnc_dtype toC(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return ATTNC_F32;
  case ElementType::F16:
    return ATTNC_F16;
  case ElementType::BF16:
    return ATTNC_BF16;
  case ElementType::I32:
    return ATTNC_I32;
  case ElementType::I8:
    return ATTNC_I8;
  case ElementType::Bool:
    return ATTNC_BOOL;
  }
  return ATTNC_F32;
}

bool fromC(attnc_dtype dtype, ElementType &type) {
  switch (dtype) {
  case ATTNC_F32:
    type = ElementType::F32;
    return true;
  case ATTNC_F16:
    type = ElementType::F16;
    return true;
  case ATTNC_BF16:
    type = ElementType::BF16;
    return true;
  case ATTNC_I32:
    type = ElementType::I32;
    return true;
  case ATTNC_I8:
    type = ElementType::I8;
    return true;
  case ATTNC_BOOL:
    type = ElementType::Bool;
    return true;
  }
  return false;
}

/// Views of caller tensors; a null `data` is an omitted input.
bool toViews(const attnc_tensor *tensors, const std::vector<TensorSpec> &specs,
             std::vector<TensorView> &views, std::string &error) {
  views.assign(specs.size(), TensorView());
  for (size_t index = 0; index < specs.size(); ++index) {
    const attnc_tensor &tensor = tensors[index];
    const std::string &name = specs[index].name;
    if (!tensor.data)
      continue;
    TensorView &view = views[index];
    view.data = tensor.data;
    if (!fromC(tensor.dtype, view.type)) {
      error = "'" + name + "' has an unknown dtype code " +
              std::to_string(static_cast<int>(tensor.dtype));
      return false;
    }
    if (tensor.rank < 0 || (tensor.rank > 0 && !tensor.shape)) {
      error = "'" + name + "' needs a non-negative rank and a shape";
      return false;
    }
    view.shape.assign(tensor.shape, tensor.shape + tensor.rank);
    view.strides.assign(tensor.rank, 1);
    if (tensor.strides)
      view.strides.assign(tensor.strides, tensor.strides + tensor.rank);
    else
      for (int dim = tensor.rank - 2; dim >= 0; --dim)
        view.strides[dim] = view.strides[dim + 1] * view.shape[dim + 1];
  }
  return true;
}

std::vector<const TensorView *> pointers(const std::vector<TensorView> &views) {
  std::vector<const TensorView *> result;
  for (const TensorView &view : views)
    result.push_back(view.data ? &view : nullptr);
  return result;
}

const TensorSpec *specAt(const attnc_kernel *kernel, int isResult,
                         size_t index) {
  if (!kernel)
    return nullptr;
  const KernelSignature &signature = kernel->signature();
  const std::vector<TensorSpec> &list =
      isResult ? signature.results : signature.params;
  return index < list.size() ? &list[index] : nullptr;
}

attnc_status describe(const attnc_kernel *kernel, int isResult, size_t index,
                      attnc_tensor_info *info) {
  const TensorSpec *spec = specAt(kernel, isResult, index);
  if (!spec || !info)
    return fail(kernel ? kernel->context : nullptr, ATTNC_ERROR_ARGUMENT,
                std::string(isResult ? "result" : "parameter") + " index " +
                    std::to_string(index) + " is out of range");
  info->name = spec->name.c_str();
  info->dtype = toC(spec->type);
  info->rank = static_cast<int32_t>(spec->dims.size());
  info->optional = spec->optional;
  return ATTNC_OK;
}

} // namespace

extern "C" {

attnc_context *attnc_context_create(void) { return new attnc_context(); }

void attnc_context_destroy(attnc_context *context) { delete context; }

const char *attnc_last_error(const attnc_context *context) {
  return context ? context->lastError.c_str() : "no context";
}

size_t attnc_diagnostic_count(const attnc_context *context) {
  return context ? context->views.size() : 0;
}

const attnc_diagnostic *attnc_diagnostic_get(const attnc_context *context,
                                             size_t index) {
  if (!context || index >= context->views.size())
    return nullptr;
  return &context->views[index];
}

attnc_status attnc_compile(attnc_context *context, const char *spec,
                           size_t specLength, const char *sourceName,
                           const char *kernelName, const char *target,
                           attnc_kernel **kernel) {
  if (!context)
    return ATTNC_ERROR_ARGUMENT;
  if (!spec || !kernel || !target)
    return fail(context, ATTNC_ERROR_ARGUMENT,
                "attnc_compile needs spec text, a target and a kernel pointer");
  *kernel = nullptr;
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
  std::string cacheKey;
  if (gpuTarget) {
    cacheKey = KernelCache::key(
        std::string(spec, specLength), kernelName ? kernelName : "",
        gpuOptions.cacheKey(), targetName);
    GpuImage image;
    std::string note;
    if (context->cache.lookup(cacheKey, image, note)) {
      context->diagnostics.clear();
      context->views.clear();
      *kernel = new attnc_kernel{context, targetName, nullptr, std::move(image),
                                 nullptr, true, nullptr};
      return ATTNC_OK;
    }
  }

  llvm::SourceMgr sourceMgr;
  unsigned buffer = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(spec, specLength),
          sourceName ? sourceName : "<spec>"),
      llvm::SMLoc());
  DiagnosticEngine diags(sourceMgr, /*os=*/nullptr);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileSpecToMLIR(buffer, context->mlir, diags);
  context->diagnostics = diags.diagnostics();
  context->views.clear();
  for (const Diagnostic &diag : context->diagnostics)
    context->views.push_back(
        {static_cast<attnc_severity>(diag.severity), diag.file.c_str(),
         diag.line, diag.col, diag.message.c_str(), diag.hint.c_str()});
  if (!module) {
    const Diagnostic *first =
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
    *kernel = new attnc_kernel{context, targetName, nullptr, std::move(image),
                               nullptr, false, std::move(emulated)};
    return ATTNC_OK;
  }
  if (gpuTarget) {
    GpuImage image;
    if (!compileToPtx(*module, kernelName ? kernelName : "", gpuOptions, image,
                      error))
      return fail(context, ATTNC_ERROR_TARGET, error);
    std::string storeError; // a read-only cache only costs recompilation
    context->cache.store(cacheKey, image, storeError);
    *kernel = new attnc_kernel{context, targetName, nullptr, std::move(image),
                               nullptr, false, nullptr};
    return ATTNC_OK;
  }
  std::unique_ptr<CpuKernel> cpu = CpuKernel::compile(
      *module, kernelName ? kernelName : "", options, error);
  if (!cpu)
    return fail(context, ATTNC_ERROR_TARGET, error);
  *kernel = new attnc_kernel{context, targetName, std::move(cpu), GpuImage(),
                             nullptr, false, nullptr};
  return ATTNC_OK;
}

attnc_status attnc_context_set_cache_dir(attnc_context *context,
                                         const char *directory) {
  if (!context)
    return ATTNC_ERROR_ARGUMENT;
  context->cache = directory && *directory ? KernelCache(directory)
                                           : KernelCache::disabled();
  return ATTNC_OK;
}

const char *attnc_context_cache_dir(const attnc_context *context) {
  return context ? context->cache.directory().c_str() : "";
}

attnc_status attnc_kernel_set_cpu_threads(attnc_kernel *kernel, int threads) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if (!kernel->cpu)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "kernel for target '" + kernel->target +
                    "' does not run on host threads; only CPU kernels do");
  if (threads < 0)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "the thread count must be positive (or 0 for the default), "
                "got " + std::to_string(threads));
  kernel->cpu->setThreads(threads);
  return ATTNC_OK;
}

int attnc_kernel_cpu_threads(const attnc_kernel *kernel) {
  return kernel && kernel->cpu ? static_cast<int>(kernel->cpu->getThreads())
                               : 0;
}

const char *attnc_kernel_target(const attnc_kernel *kernel) {
  return kernel ? kernel->target.c_str() : nullptr;
}

int attnc_kernel_from_cache(const attnc_kernel *kernel) {
  return kernel && kernel->fromCache;
}

const char *attnc_kernel_image(const attnc_kernel *kernel, size_t *size) {
  if (!kernel || kernel->cpu || kernel->emulated)
    return nullptr;
  if (size)
    *size = kernel->gpuImage.bytes.size();
  return kernel->gpuImage.bytes.c_str();
}

attnc_status attnc_kernel_launch_config(attnc_kernel *kernel,
                                        const attnc_tensor *inputs,
                                        int64_t grid[3], int64_t block[3],
                                        int64_t *sharedBytes) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if (kernel->cpu)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "CPU kernels have no launch grid");
  const KernelSignature &signature = kernel->signature();
  if ((!inputs && !signature.params.empty()) || !grid || !block ||
      !sharedBytes)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "attnc_kernel_launch_config needs the inputs and room for "
                "grid, block and shared bytes");
  std::vector<TensorView> views;
  std::string error;
  if (!toViews(inputs, signature.params, views, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  std::vector<std::vector<int64_t>> shapes;
  for (const TensorView &view : views)
    shapes.push_back(view.data ? view.shape : std::vector<int64_t>());
  std::array<int64_t, 3> dims = kernel->gpuImage.gridFor(shapes);
  for (int axis = 0; axis < 3; ++axis) {
    grid[axis] = dims[axis];
    block[axis] = axis == 0 ? kernel->gpuImage.threads : 1;
  }
  *sharedBytes = kernel->gpuImage.sharedBytes;
  return ATTNC_OK;
}

attnc_status attnc_synchronize(attnc_kernel *kernel, void *stream) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if (kernel->cpu || kernel->emulated)
    return ATTNC_OK;
  if (!kernel->gpu)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "the kernel was never launched");
  std::string error;
  if (!kernel->gpu->synchronize(stream, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  return ATTNC_OK;
}

void attnc_kernel_destroy(attnc_kernel *kernel) { delete kernel; }

const char *attnc_kernel_name(const attnc_kernel *kernel) {
  return kernel ? kernel->signature().name.c_str() : nullptr;
}

size_t attnc_kernel_num_params(const attnc_kernel *kernel) {
  return kernel ? kernel->signature().params.size() : 0;
}

size_t attnc_kernel_num_results(const attnc_kernel *kernel) {
  return kernel ? kernel->signature().results.size() : 0;
}

attnc_status attnc_kernel_param(const attnc_kernel *kernel, size_t index,
                                attnc_tensor_info *info) {
  return describe(kernel, 0, index, info);
}

attnc_status attnc_kernel_result(const attnc_kernel *kernel, size_t index,
                                 attnc_tensor_info *info) {
  return describe(kernel, 1, index, info);
}

const char *attnc_kernel_dim(const attnc_kernel *kernel, int isResult,
                             size_t index, int32_t dim, int64_t *size) {
  const TensorSpec *spec = specAt(kernel, isResult, index);
  if (!spec || dim < 0 || static_cast<size_t>(dim) >= spec->dims.size())
    return nullptr;
  const DimSpec &dimSpec = spec->dims[dim];
  if (dimSpec.isSymbolic())
    return dimSpec.symbol.c_str();
  if (size)
    *size = dimSpec.size;
  return nullptr;
}

/// Result `index`'s shape for `inputs`; with `readValues` false only the
/// shapes and dtypes of the inputs are read (data pointers mark presence).
static attnc_status outputShape(attnc_kernel *kernel,
                                const attnc_tensor *inputs, size_t index,
                                int64_t *shape, bool readValues) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  const KernelSignature &signature = kernel->signature();
  if (index >= signature.results.size() || !shape ||
      (!inputs && !signature.params.empty()))
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "the output shape needs the inputs, a result index below " +
                    std::to_string(signature.results.size()) +
                    " and room for the shape");
  std::vector<TensorView> views;
  std::vector<std::vector<int64_t>> shapes;
  std::string error;
  if (!toViews(inputs, signature.params, views, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  if (kernel->cpu) {
    if (!kernel->cpu->outputShapes(pointers(views), shapes, error, readValues))
      return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  } else {
    DimBindings bindings;
    shapes.resize(signature.results.size());
    if (!bindInputShapes(signature, pointers(views), bindings, error) ||
        (readValues &&
         !checkGpuLaunch(kernel->gpuImage, pointers(views), error)) ||
        !kernel->gpuImage.outputShapes(pointers(views), bindings, shapes, error))
      return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  }
  std::copy(shapes[index].begin(), shapes[index].end(), shape);
  return ATTNC_OK;
}

attnc_status attnc_kernel_output_shape(attnc_kernel *kernel,
                                       const attnc_tensor *inputs, size_t index,
                                       int64_t *shape) {
  return outputShape(kernel, inputs, index, shape, /*readValues=*/true);
}

attnc_status attnc_kernel_infer_output_shape(attnc_kernel *kernel,
                                             const attnc_tensor *inputs,
                                             size_t index, int64_t *shape) {
  return outputShape(kernel, inputs, index, shape, /*readValues=*/false);
}

attnc_status attnc_launch(attnc_kernel *kernel, const attnc_tensor *inputs,
                          const attnc_tensor *outputs, void *stream) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  const KernelSignature &signature = kernel->signature();
  if (stream && (kernel->cpu || kernel->emulated))
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "a CPU kernel takes no stream; pass NULL");
  if ((!inputs && !signature.params.empty()) || !outputs)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "attnc_launch needs one tensor per parameter and per result");
  std::vector<TensorView> inputViews, outputViews;
  std::string error;
  if (!toViews(inputs, signature.params, inputViews, error) ||
      !toViews(outputs, signature.results, outputViews, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  std::vector<TensorView *> outputPointers;
  for (size_t index = 0; index < outputViews.size(); ++index) {
    if (!outputViews[index].data)
      return fail(kernel->context, ATTNC_ERROR_LAUNCH,
                  "output '" + signature.results[index].name +
                      "' has no data pointer");
    outputPointers.push_back(&outputViews[index]);
  }
  if (kernel->emulated) {
    if (!kernel->emulated->run(pointers(inputViews), outputPointers, error))
      return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
    return ATTNC_OK;
  }
  if (!kernel->cpu) {
    if (!kernel->gpu && !(kernel->gpu = GpuKernel::load(kernel->gpuImage, error)))
      return fail(kernel->context, ATTNC_ERROR_LAUNCH,
                  "cannot launch the " + kernel->target + " kernel: " + error);
    if (!kernel->gpu->launch(pointers(inputViews), outputPointers, stream, error))
      return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
    return ATTNC_OK;
  }
  if (!kernel->cpu->run(pointers(inputViews), outputPointers, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  return ATTNC_OK;
}

} // extern "C"
