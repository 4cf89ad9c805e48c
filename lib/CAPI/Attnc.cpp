//===- Attnc.cpp - The attnc C API ----------------------------------------===//
//
// A thin layer over the front end and the CPU executor: opaque objects own
// the C++ ones, strings handed out stay valid until the next call that
// replaces them, and nothing throws or aborts on bad input.
//
//===----------------------------------------------------------------------===//

#include "attnc-c/attnc.h"

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Frontend/MLIRGen.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <memory>
#include <string>
#include <vector>

using namespace attnc;

struct attnc_context {
  mlir::MLIRContext mlir;
  std::string lastError;
  std::vector<Diagnostic> diagnostics;
  std::vector<attnc_diagnostic> views;
};

struct attnc_kernel {
  attnc_context *context;
  std::unique_ptr<CpuKernel> cpu;
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
  const KernelSignature &signature = kernel->cpu->signature();
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
  if (targetName == "cpu")
    options.path = CpuPath::Tiled;
  else if (targetName == "cpu-reference")
    options.path = CpuPath::Reference;
  else
    return fail(context, ATTNC_ERROR_TARGET,
                "unknown target '" + targetName +
                    "'; targets: cpu, cpu-reference (GPU targets come with "
                    "the NVIDIA backend)");

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
  std::unique_ptr<CpuKernel> cpu = CpuKernel::compile(
      *module, kernelName ? kernelName : "", options, error);
  if (!cpu)
    return fail(context, ATTNC_ERROR_TARGET, error);
  *kernel = new attnc_kernel{context, std::move(cpu)};
  return ATTNC_OK;
}

void attnc_kernel_destroy(attnc_kernel *kernel) { delete kernel; }

const char *attnc_kernel_name(const attnc_kernel *kernel) {
  return kernel ? kernel->cpu->signature().name.c_str() : nullptr;
}

size_t attnc_kernel_num_params(const attnc_kernel *kernel) {
  return kernel ? kernel->cpu->signature().params.size() : 0;
}

size_t attnc_kernel_num_results(const attnc_kernel *kernel) {
  return kernel ? kernel->cpu->signature().results.size() : 0;
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

attnc_status attnc_kernel_output_shape(attnc_kernel *kernel,
                                       const attnc_tensor *inputs, size_t index,
                                       int64_t *shape) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  const KernelSignature &signature = kernel->cpu->signature();
  if (index >= signature.results.size() || !shape ||
      (!inputs && !signature.params.empty()))
    return fail(kernel->context, ATTNC_ERROR_ARGUMENT,
                "attnc_kernel_output_shape needs the inputs, a result index "
                "below " + std::to_string(signature.results.size()) +
                    " and room for the shape");
  std::vector<TensorView> views;
  std::vector<std::vector<int64_t>> shapes;
  std::string error;
  if (!toViews(inputs, signature.params, views, error) ||
      !kernel->cpu->outputShapes(pointers(views), shapes, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  std::copy(shapes[index].begin(), shapes[index].end(), shape);
  return ATTNC_OK;
}

attnc_status attnc_launch(attnc_kernel *kernel, const attnc_tensor *inputs,
                          const attnc_tensor *outputs, void *stream) {
  if (!kernel)
    return ATTNC_ERROR_ARGUMENT;
  const KernelSignature &signature = kernel->cpu->signature();
  if (stream)
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
  if (!kernel->cpu->run(pointers(inputViews), outputPointers, error))
    return fail(kernel->context, ATTNC_ERROR_LAUNCH, error);
  return ATTNC_OK;
}

} // extern "C"
