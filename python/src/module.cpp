//===- module.cpp - The attnc Python extension -----------------------------===//
//
// A thin nanobind layer over the C API (include/attnc-c/attnc.h). Tensors
// cross as (data pointer, dtype code, shape, strides in elements); the Python
// package (attnc/__init__.py) turns NumPy and DLPack arrays into that form.
// Launches release the GIL.
//
//===----------------------------------------------------------------------===//

#include "attnc-c/attnc.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace nb = nanobind;

namespace {

/// (data pointer, dtype code, shape, strides); pointer 0 = omitted input.
using TensorArg =
    std::tuple<uintptr_t, int, std::vector<int64_t>, std::vector<int64_t>>;

class SpecError : public std::exception {
public:
  explicit SpecError(std::string message) : message(std::move(message)) {}
  const char *what() const noexcept override { return message.c_str(); }
  std::string message;
};

class Kernel {
public:
  Kernel(const std::string &spec, const std::string &sourceName,
         std::optional<std::string> kernelName, const std::string &target,
         const std::string &options, int part)
      : context(attnc_context_create()) {
    attnc_status status = attnc_compile_part(
        context, spec.data(), spec.size(), sourceName.c_str(),
        kernelName ? kernelName->c_str() : nullptr, target.c_str(),
        options.c_str(), static_cast<attnc_kernel_part>(part), &kernel);
    if (status == ATTNC_OK)
      return;
    for (size_t index = 0; index < attnc_diagnostic_count(context); ++index) {
      const attnc_diagnostic *diag = attnc_diagnostic_get(context, index);
      diagnostics.emplace_back(std::string(diag->file), diag->line, diag->col,
                               std::string(diag->message),
                               std::string(diag->hint),
                               static_cast<int>(diag->severity));
    }
    compileStatus = status;
    compileError = attnc_last_error(context);
  }
  /// A GPU kernel from image bytes (attnc_kernel_load): no compiler needed.
  explicit Kernel(const nb::bytes &image) : context(attnc_context_create()) {
    attnc_status status =
        attnc_kernel_load(context, image.c_str(), image.size(), &kernel);
    if (status == ATTNC_OK)
      return;
    compileStatus = status;
    compileError = attnc_last_error(context);
  }
  ~Kernel() {
    attnc_kernel_destroy(kernel);
    attnc_context_destroy(context);
  }
  Kernel(const Kernel &) = delete;
  Kernel &operator=(const Kernel &) = delete;

  bool ok() const { return kernel != nullptr; }

  /// [(name, dtype code, dims (str symbol or int size), optional)] for the
  /// parameters (isResult = false) or the results.
  std::vector<std::tuple<std::string, int,
                         std::vector<std::variant<std::string, int64_t>>, bool>>
  tensors(bool isResult) const {
    std::vector<std::tuple<std::string, int,
                           std::vector<std::variant<std::string, int64_t>>,
                           bool>>
        result;
    size_t count = isResult ? attnc_kernel_num_results(kernel)
                            : attnc_kernel_num_params(kernel);
    for (size_t index = 0; index < count; ++index) {
      attnc_tensor_info info;
      if (isResult)
        attnc_kernel_result(kernel, index, &info);
      else
        attnc_kernel_param(kernel, index, &info);
      std::vector<std::variant<std::string, int64_t>> dims;
      for (int32_t dim = 0; dim < info.rank; ++dim) {
        int64_t size = 0;
        const char *symbol = attnc_kernel_dim(kernel, isResult, index, dim, &size);
        if (symbol)
          dims.emplace_back(std::string(symbol));
        else
          dims.emplace_back(size);
      }
      result.emplace_back(info.name, static_cast<int>(info.dtype), dims,
                          info.optional != 0);
    }
    return result;
  }

  std::vector<std::vector<int64_t>>
  outputShapes(const std::vector<TensorArg> &inputs, bool readValues) {
    std::vector<attnc_tensor> tensors = toC(inputs);
    std::vector<std::vector<int64_t>> shapes;
    for (size_t index = 0; index < attnc_kernel_num_results(kernel); ++index) {
      attnc_tensor_info info;
      attnc_kernel_result(kernel, index, &info);
      std::vector<int64_t> shape(info.rank);
      attnc_status status =
          readValues ? attnc_kernel_output_shape(kernel, tensors.data(), index,
                                                 shape.data())
                     : attnc_kernel_infer_output_shape(kernel, tensors.data(),
                                                       index, shape.data());
      if (status != ATTNC_OK)
        throw nb::value_error(attnc_last_error(context));
      shapes.push_back(shape);
    }
    return shapes;
  }

  /// The device memory a launch on inputs of these shapes allocates for
  /// itself (attnc_kernel_workspace_bytes).
  int64_t workspaceBytes(const std::vector<TensorArg> &inputs) {
    std::vector<attnc_tensor> tensors = toC(inputs);
    int64_t bytes = 0;
    if (attnc_kernel_workspace_bytes(kernel, tensors.data(), &bytes) !=
        ATTNC_OK)
      throw nb::value_error(attnc_last_error(context));
    return bytes;
  }

  /// `stream` is a CUstream (0: the default stream) for GPU kernels and
  /// must be 0 for the CPU.
  void launch(const std::vector<TensorArg> &inputs,
              const std::vector<TensorArg> &outputs, uintptr_t stream) {
    std::vector<attnc_tensor> in = toC(inputs), out = toC(outputs);
    attnc_status status;
    {
      nb::gil_scoped_release release;
      status = attnc_launch(kernel, in.data(), out.data(),
                            reinterpret_cast<void *>(stream));
    }
    if (status != ATTNC_OK)
      throw nb::value_error(attnc_last_error(context));
  }

  /// Waits for `stream`; raises what the last GPU launch found wrong.
  void synchronize(uintptr_t stream) {
    attnc_status status;
    {
      nb::gil_scoped_release release;
      status = attnc_synchronize(kernel, reinterpret_cast<void *>(stream));
    }
    if (status != ATTNC_OK)
      throw nb::value_error(attnc_last_error(context));
  }

  std::string target() const { return attnc_kernel_target(kernel); }
  std::string name() const { return attnc_kernel_name(kernel); }
  int cpuThreads() const { return attnc_kernel_cpu_threads(kernel); }
  // Any Python int is accepted here, so that out-of-range counts get a
  // message rather than nanobind's conversion TypeError.
  void setCpuThreads(nb::int_ threads) {
    int64_t count = 0;
    if (!nb::try_cast(threads, count) ||
        count < std::numeric_limits<int>::min() ||
        count > std::numeric_limits<int>::max())
      throw nb::value_error(
          ("the thread count must be between 0 (the default) and " +
           std::to_string(std::numeric_limits<int>::max()) + ", got " +
           nb::str(threads).c_str())
              .c_str());
    if (attnc_kernel_set_cpu_threads(kernel, static_cast<int>(count)) !=
        ATTNC_OK)
      throw nb::value_error(attnc_last_error(context));
  }
  bool fromCache() const { return attnc_kernel_from_cache(kernel) != 0; }
  /// The PTX of a GPU kernel; empty for the CPU.
  nb::bytes image() const {
    size_t size = 0;
    const char *data = attnc_kernel_image(kernel, &size);
    return data ? nb::bytes(data, size) : nb::bytes("", 0);
  }

  nb::bytes serialize() {
    size_t size = 0;
    const char *data = attnc_kernel_serialize(kernel, &size);
    return data ? nb::bytes(data, size) : nb::bytes("", 0);
  }

  std::vector<std::tuple<std::string, unsigned, unsigned, std::string,
                         std::string, int>>
      diagnostics;
  int compileStatus = ATTNC_OK;
  std::string compileError;

private:
  /// C views of the arguments; the vectors in `args` own shapes and strides.
  std::vector<attnc_tensor> toC(const std::vector<TensorArg> &args) {
    std::vector<attnc_tensor> tensors;
    for (const TensorArg &arg : args) {
      const auto &[pointer, dtype, shape, strides] = arg;
      tensors.push_back({reinterpret_cast<void *>(pointer),
                         static_cast<attnc_dtype>(dtype),
                         static_cast<int32_t>(shape.size()), shape.data(),
                         strides.empty() ? nullptr : strides.data()});
    }
    return tensors;
  }

  attnc_context *context;
  attnc_kernel *kernel = nullptr;
};

} // namespace

NB_MODULE(_attnc, m) {
  m.doc() = "attnc: compile attention specs and run the kernels (low level)";
  // Kernels registered as torch operators stay referenced by torch's
  // operator registry until after this module is torn down at exit.
  nb::set_leak_warnings(false);
  nb::class_<Kernel>(m, "_Kernel")
      .def(nb::init<const std::string &, const std::string &,
                    std::optional<std::string>, const std::string &,
                    const std::string &, int>(),
           nb::arg("spec"), nb::arg("source"), nb::arg("kernel").none(),
           nb::arg("target"), nb::arg("options"),
           nb::arg("part") = static_cast<int>(ATTNC_PART_FORWARD))
      .def(nb::init<const nb::bytes &>())
      .def_prop_ro("ok", &Kernel::ok)
      .def_ro("diagnostics", &Kernel::diagnostics)
      .def_ro("compile_status", &Kernel::compileStatus)
      .def_ro("compile_error", &Kernel::compileError)
      .def("tensors", &Kernel::tensors)
      .def("output_shapes", &Kernel::outputShapes, nb::arg("inputs"),
           nb::arg("read_values") = true)
      .def("workspace_bytes", &Kernel::workspaceBytes)
      .def("launch", &Kernel::launch)
      .def("synchronize", &Kernel::synchronize)
      .def_prop_ro("target", &Kernel::target)
      .def_prop_ro("name", &Kernel::name)
      .def_prop_rw("cpu_threads", &Kernel::cpuThreads, &Kernel::setCpuThreads)
      .def_prop_ro("from_cache", &Kernel::fromCache)
      .def("image", &Kernel::image)
      .def("serialize", &Kernel::serialize);
  m.attr("STATUS_SPEC_ERROR") = static_cast<int>(ATTNC_ERROR_SPEC);
  m.attr("PART_FORWARD") = static_cast<int>(ATTNC_PART_FORWARD);
  m.attr("PART_TRAINING_FORWARD") =
      static_cast<int>(ATTNC_PART_TRAINING_FORWARD);
  m.attr("PART_BACKWARD") = static_cast<int>(ATTNC_PART_BACKWARD);
  m.attr("HAS_COMPILER") = attnc_has_compiler() != 0;
}
