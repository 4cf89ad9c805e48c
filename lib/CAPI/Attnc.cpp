//===- Attnc.cpp - The attnc C API: kernels, tensors, launches ------------===//
//
// The part of the C API that needs no compiler: kernel signatures, tensors,
// GPU images and launches. It links lib/Runtime only, so the runtime-only
// build (ATTNC_RUNTIME_ONLY, no LLVM or MLIR) is this file and
// NoCompiler.cpp. Opaque objects own the C++ ones, strings handed out stay
// valid until the next call that replaces them, and nothing throws or
// aborts on bad input.
//
//===----------------------------------------------------------------------===//

#include "CApiObjects.h"

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

using namespace attnc;
using attnc::capi::fail;

attnc_status attnc::capi::fail(attnc_context *context, attnc_status status,
                               const std::string &message) {
  if (context)
    context->lastError = message;
  return status;
}

namespace {

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

/// The grid a launch of GPU `kernel` on `inputs` (shapes only, checked
/// against the signature) uses.
/// The grid of a launch on `inputs`, and with `resultShapes` its results'
/// shapes.
attnc_status
launchGrid(attnc_kernel *kernel, const attnc_tensor *inputs,
           std::array<int64_t, 3> &grid,
           std::vector<std::vector<int64_t>> *argShapes = nullptr) {
  const KernelSignature &signature = kernel->signature();
  std::vector<TensorView> views;
  std::string error;
  DimBindings bindings;
  std::vector<std::vector<int64_t>> resultShapes;
  if (!toViews(inputs, signature.params, views, error) ||
      !bindInputShapes(signature, pointers(views), bindings, error) ||
      (argShapes && !kernel->gpuImage.outputShapes(
                        pointers(views), bindings, resultShapes, error)))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  if (argShapes)
    *argShapes = argumentShapes(pointers(views), resultShapes);
  // split-keys=auto kernels size their grid for the device they run on.
  int64_t residentCtas = 0;
  if (kernel->gpuImage.splitsAtLaunch) {
    if (kernel->host) {
      residentCtas = kernel->host->residentCtas();
    } else {
      if (!kernel->gpu &&
          !(kernel->gpu = GpuKernel::load(kernel->gpuImage, error)))
        return fail(kernel->context, ATTNC_ERROR_LAUNCH,
                    "the grid of a split-keys=auto kernel depends on the "
                    "GPU, and the " +
                        kernel->target + " kernel cannot be loaded: " + error);
      residentCtas = kernel->gpu->residentCtas();
    }
  }
  grid = kernel->gpuImage.gridFor(pointers(views), residentCtas);
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
  return attnc_compile_with_options(context, spec, specLength, sourceName,
                                    kernelName, target, nullptr, kernel);
}

attnc_status attnc_compile_with_options(attnc_context *context,
                                        const char *spec, size_t specLength,
                                        const char *sourceName,
                                        const char *kernelName,
                                        const char *target, const char *options,
                                        attnc_kernel **kernel) {
  return attnc_compile_part(context, spec, specLength, sourceName, kernelName,
                            target, options, ATTNC_PART_FORWARD, kernel);
}

attnc_status attnc_compile_part(attnc_context *context, const char *spec,
                                size_t specLength, const char *sourceName,
                                const char *kernelName, const char *target,
                                const char *options, attnc_kernel_part part,
                                attnc_kernel **kernel) {
  if (!context)
    return ATTNC_ERROR_ARGUMENT;
  if (!spec || !kernel || !target)
    return fail(context, ATTNC_ERROR_ARGUMENT,
                "attnc_compile needs spec text, a target and a kernel pointer");
  if (part < ATTNC_PART_FORWARD || part > ATTNC_PART_BACKWARD)
    return fail(context, ATTNC_ERROR_ARGUMENT,
                "attnc_compile_part: unknown part " +
                    std::to_string(static_cast<int>(part)));
  *kernel = nullptr;
  context->diagnostics.clear();
  context->views.clear();
  attnc_status status =
      capi::compile(context, spec, specLength, sourceName, kernelName, target,
                    options ? options : "", part, kernel);
  for (const capi::DiagnosticRecord &diag : context->diagnostics)
    context->views.push_back({diag.severity, diag.file.c_str(), diag.line,
                              diag.col, diag.message.c_str(),
                              diag.hint.c_str()});
  return status;
}

attnc_status attnc_kernel_load(attnc_context *context, const void *image,
                               size_t size, attnc_kernel **kernel) {
  if (!context)
    return ATTNC_ERROR_ARGUMENT;
  if (!image || !kernel)
    return fail(context, ATTNC_ERROR_ARGUMENT,
                "attnc_kernel_load needs image bytes and a kernel pointer");
  *kernel = nullptr;
  GpuImage loaded;
  std::string error;
  if (!deserialize(std::string(static_cast<const char *>(image), size), loaded,
                   error))
    return fail(context, ATTNC_ERROR_ARGUMENT,
                "not a usable attnc GPU image: " + error);
  std::string target = loaded.target;
  *kernel = new attnc_kernel(context, target, std::move(loaded));
  return ATTNC_OK;
}

attnc_status attnc_context_set_cache_dir(attnc_context *context,
                                         const char *directory) {
  if (!context)
    return ATTNC_ERROR_ARGUMENT;
  return capi::setCacheDirectory(context, directory);
}

const char *attnc_context_cache_dir(const attnc_context *context) {
  return context ? capi::cacheDirectory(const_cast<attnc_context *>(context))
                       .c_str()
                 : "";
}

attnc_status attnc_kernel_set_cpu_threads(attnc_kernel *kernel, int threads) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if (!kernel->isCpu())
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "kernel for target '" + kernel->target +
                    "' does not run on host threads; only CPU kernels do");
  if (threads < 0)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "the thread count must be positive (or 0 for the default), "
                "got " + std::to_string(threads));
  kernel->host->setThreads(threads);
  return ATTNC_OK;
}

int attnc_kernel_cpu_threads(const attnc_kernel *kernel) {
  return kernel && kernel->isCpu() ? kernel->host->threads() : 0;
}

const char *attnc_kernel_target(const attnc_kernel *kernel) {
  return kernel ? kernel->target.c_str() : nullptr;
}

int attnc_kernel_from_cache(const attnc_kernel *kernel) {
  return kernel && kernel->fromCache;
}

const char *attnc_kernel_image(const attnc_kernel *kernel, size_t *size) {
  if (!kernel || kernel->host)
    return nullptr;
  if (size)
    *size = kernel->gpuImage.bytes.size();
  return kernel->gpuImage.bytes.c_str();
}

const char *attnc_kernel_serialize(attnc_kernel *kernel, size_t *size) {
  if (!kernel || kernel->host)
    return nullptr;
  kernel->serialized = serialize(kernel->gpuImage);
  if (size)
    *size = kernel->serialized.size();
  return kernel->serialized.data();
}

attnc_status attnc_kernel_launch_config(attnc_kernel *kernel,
                                        const attnc_tensor *inputs,
                                        int64_t grid[3], int64_t block[3],
                                        int64_t *sharedBytes) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if (kernel->isCpu())
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "CPU kernels have no launch grid");
  if ((!inputs && !kernel->signature().params.empty()) || !grid || !block ||
      !sharedBytes)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "attnc_kernel_launch_config needs the inputs and room for "
                "grid, block and shared bytes");
  std::array<int64_t, 3> dims;
  if (attnc_status status = launchGrid(kernel, inputs, dims))
    return status;
  for (int axis = 0; axis < 3; ++axis) {
    grid[axis] = dims[axis];
    block[axis] = axis == 0 ? kernel->gpuImage.threads : 1;
  }
  *sharedBytes = kernel->gpuImage.sharedBytes;
  return ATTNC_OK;
}

attnc_status attnc_kernel_workspace_bytes(attnc_kernel *kernel,
                                          const attnc_tensor *inputs,
                                          int64_t *bytes) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if ((!inputs && !kernel->signature().params.empty()) || !bytes)
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "attnc_kernel_workspace_bytes needs the inputs and room for "
                "the byte count");
  *bytes = 0;
  if (kernel->isCpu())
    return ATTNC_OK;
  std::array<int64_t, 3> grid;
  std::vector<std::vector<int64_t>> argShapes;
  if (attnc_status status = launchGrid(kernel, inputs, grid, &argShapes))
    return status;
  // A launch with an empty grid computes nothing and allocates nothing.
  if (grid[0] && grid[1] && grid[2])
    *bytes = launchWorkspace(kernel->gpuImage, grid, argShapes).totalBytes;
  return ATTNC_OK;
}

attnc_status attnc_synchronize(attnc_kernel *kernel, void *stream) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  if (kernel->host)
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
  if (kernel->isCpu()) {
    if (!kernel->host->outputShapes(pointers(views), shapes, error, readValues))
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
  if (stream && kernel->host)
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
  if (kernel->host) {
    if (!kernel->host->run(pointers(inputViews), outputPointers, error))
      return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
    return ATTNC_OK;
  }
  if (!kernel->gpu && !(kernel->gpu = GpuKernel::load(kernel->gpuImage, error)))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH,
                "cannot launch the " + kernel->target + " kernel: " + error);
  if (!kernel->gpu->launch(pointers(inputViews), outputPointers, stream, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  return ATTNC_OK;
}

} // extern "C"
