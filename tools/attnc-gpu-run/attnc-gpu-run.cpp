//===- attnc-gpu-run.cpp - Run a compiled GPU kernel image ----------------===//
//
// attnc-gpu-run IMAGE [--input NAME=FILE.npy]... [--dim SYMBOL=SIZE]...
//               [--seed S] [--expect NAME=FILE.npy]... [--atol A] [--rtol R]
//               [--repeat N] [--flops F] [--label TEXT]
// attnc-gpu-run IMAGE --load-only [--label TEXT]
//
// Loads an image from `attnc compile --emit=image`, gives absent inputs the
// random data `attnc run --seed S` would give them, runs the kernel once and
// compares outputs with expected .npy files (from `attnc run
// --output-dir` on the build machine) as the test suite does,
// |a - e| <= atol * max(1, max |e|) + rtol * |e| (by default 2e-2 for
// f16/bf16 q, k and v, 1e-4 for f32 ones); then, with --repeat, times N
// launches and reports milliseconds and, with --flops, TFLOP/s. Prints one CSV
// line:
//   label,status,max_abs_err,mismatches,ms_per_launch,tflops
// With --load-only it loads the image into a fresh context and prints
// `label,load_ms`: the driver's PTX JIT (set CUDA_CACHE_DISABLE=1 to
// measure it cold), which comes on top of attnc's compile time.
// This tool links only the attnc runtime (no LLVM or MLIR), so it runs on
// GPU machines that have a driver and nothing else.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/CudaRuntime.h"
#include "attnc/Runtime/GpuImage.h"
#include "attnc/Runtime/Npy.h"
#include "attnc/Runtime/RandomInputs.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using namespace attnc;

namespace {

int fail(const std::string &message) {
  std::fprintf(stderr, "attnc-gpu-run: error: %s\n", message.c_str());
  return 1;
}

/// fail() for the steps below, which return whether they succeeded.
bool failed(const std::string &message) {
  fail(message);
  return false;
}

bool split(const std::string &text, std::string &name, std::string &value) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    return false;
  name = text.substr(0, eq);
  value = text.substr(eq + 1);
  return true;
}

int paramIndex(const KernelSignature &signature, const std::string &name,
               bool result) {
  const std::vector<TensorSpec> &list =
      result ? signature.results : signature.params;
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i].name == name)
      return static_cast<int>(i);
  return -1;
}

/// The command line.
struct Options {
  std::string imagePath, label;
  std::vector<std::pair<std::string, std::string>> inputFiles, expectFiles;
  /// --dim bindings, to which the input files add their sizes.
  DimBindings bindings;
  uint64_t seed = 0;
  /// Negative: the default tolerance for the kernel's operands.
  double atol = -1, rtol = -1, flops = 0;
  int repeat = 0;
  bool loadOnly = false;
};

/// Reads the command line into `options`; the exit status when the tool
/// stops here (usage, or an error it reported), else nothing.
std::optional<int> parseArguments(int argc, char **argv, Options &options) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::printf("usage: attnc-gpu-run IMAGE [--input NAME=FILE.npy]... "
                "[--dim SYMBOL=SIZE]... [--seed S] [--expect "
                "NAME=FILE.npy]... [--atol A] [--rtol R] [--repeat N] "
                "[--flops F] [--label TEXT]\n       attnc-gpu-run IMAGE "
                "--load-only [--label TEXT]\n");
    return argc < 2 ? 1 : 0;
  }
  options.imagePath = argv[1];
  options.label = options.imagePath;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--load-only") {
      options.loadOnly = true;
      continue;
    }
    if (i + 1 >= argc)
      return fail("option " + flag + " needs a value");
    std::string value = argv[++i], name, rest;
    if (flag == "--input" || flag == "--expect" || flag == "--dim") {
      if (!split(value, name, rest))
        return fail(flag + " expects NAME=VALUE, got '" + value + "'");
      if (flag == "--input")
        options.inputFiles.emplace_back(name, rest);
      else if (flag == "--expect")
        options.expectFiles.emplace_back(name, rest);
      else
        options.bindings[name] = std::atoll(rest.c_str());
    } else if (flag == "--seed") {
      options.seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--atol") {
      options.atol = std::atof(value.c_str());
    } else if (flag == "--rtol") {
      options.rtol = std::atof(value.c_str());
    } else if (flag == "--repeat") {
      options.repeat = std::atoi(value.c_str());
    } else if (flag == "--flops") {
      options.flops = std::atof(value.c_str());
    } else if (flag == "--label") {
      options.label = value;
    } else {
      return fail("unknown option " + flag);
    }
  }
  return std::nullopt;
}

/// Reads the image at `imagePath`; false once it has reported why not.
bool readImage(const std::string &imagePath, GpuImage &image,
               std::string &error) {
  std::ifstream file(imagePath, std::ios::binary);
  if (!file)
    return failed("cannot read " + imagePath);
  std::stringstream data;
  data << file.rdbuf();
  if (!deserialize(data.str(), image, error))
    return failed(imagePath + ": " + error);
  return true;
}

/// --load-only: loads the image into a fresh context and prints
/// `label,load_ms`; the exit status.
int reportLoadTime(const GpuImage &image, const std::string &label,
                   std::string &error) {
  // A first allocation creates the context, so the timing is the load.
  if (!DeviceBuffer::allocate(16, error))
    return fail(error);
  auto start = std::chrono::steady_clock::now();
  if (!GpuKernel::load(image, error))
    return fail(error);
  std::printf("%s,%.1f\n", label.c_str(),
              std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - start)
                  .count());
  return 0;
}

/// The parameters from the input files, whose sizes it binds in
/// `options.bindings`, then random data for the absent ones; false once it
/// has reported why not.
bool prepareInputs(Options &options, const GpuImage &image,
                   std::vector<HostTensor> &tensors, std::vector<bool> &present,
                   std::string &error) {
  const KernelSignature &signature = image.signature;
  DimBindings &bindings = options.bindings;
  for (auto &[name, path] : options.inputFiles) {
    int index = paramIndex(signature, name, false);
    if (index < 0)
      return failed("kernel '" + signature.name + "' has no parameter '" +
                    name + "'");
    NpyArray array;
    if (!readNpy(path, array, error) ||
        !npyToTensor(array, signature.params[index].type, name, tensors[index],
                     error))
      return failed(error);
    present[index] = true;
    const TensorSpec &spec = signature.params[index];
    for (size_t d = 0; d < spec.dims.size() && d < array.shape.size(); ++d)
      if (spec.dims[d].isSymbolic())
        bindings.emplace(spec.dims[d].symbol, array.shape[d]);
  }
  if (!fillMissingInputs(signature, image.roles, bindings, options.seed,
                         tensors, present, error))
    return failed(error);
  return true;
}

/// The kernel's tensors on the device and the views a launch takes.
/// `inputs` and `hostInputs` point into the views, which point into the
/// buffers and into the host tensors.
struct DeviceTensors {
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<TensorView> inputViews;
  std::vector<const TensorView *> inputs, hostInputs;
  std::vector<TensorView> hostViews;
  std::vector<HostTensor> outputs;
  std::vector<TensorView> outputViews;
  std::vector<TensorView *> outputPointers;
  std::vector<DeviceBuffer *> outputBuffers;
};

/// Copies the present inputs to the device; false once it has reported why
/// not.
bool uploadInputs(std::vector<HostTensor> &tensors,
                  const std::vector<bool> &present, DeviceTensors &device,
                  std::string &error) {
  device.inputViews.resize(tensors.size());
  device.hostViews.resize(tensors.size());
  for (size_t p = 0; p < tensors.size(); ++p) {
    if (!present[p]) {
      device.inputs.push_back(nullptr);
      device.hostInputs.push_back(nullptr);
      continue;
    }
    device.hostViews[p] = tensors[p].view();
    device.hostInputs.push_back(&device.hostViews[p]);
    uint64_t bytes = 0;
    storageBytes(tensors[p].type(), tensors[p].shape(), bytes);
    auto buffer = DeviceBuffer::allocate(bytes, error);
    if (!buffer || !buffer->upload(tensors[p].data(), error))
      return failed(error);
    device.inputViews[p] = device.hostViews[p];
    device.inputViews[p].data = buffer->data();
    device.inputs.push_back(&device.inputViews[p]);
    device.buffers.push_back(std::move(buffer));
  }
  return true;
}

/// Host tensors and device buffers for the outputs, shaped by the inputs;
/// false once it has reported why not.
bool allocateOutputs(const GpuImage &image, DeviceTensors &device,
                     std::string &error) {
  const KernelSignature &signature = image.signature;
  DimBindings bound;
  if (!bindInputShapes(signature, device.hostInputs, bound, error))
    return failed(error);
  device.outputViews.resize(signature.results.size());
  std::vector<std::vector<int64_t>> shapes;
  if (!image.outputShapes(device.hostInputs, bound, shapes, error))
    return failed(error);
  for (size_t r = 0; r < signature.results.size(); ++r) {
    const std::vector<int64_t> &shape = shapes[r];
    device.outputs.emplace_back(signature.results[r].type, shape);
    uint64_t bytes = 0;
    storageBytes(signature.results[r].type, shape, bytes);
    auto buffer = DeviceBuffer::allocate(bytes, error);
    if (!buffer)
      return failed(error);
    device.outputViews[r] = device.outputs.back().view();
    device.outputViews[r].data = buffer->data();
    device.outputPointers.push_back(&device.outputViews[r]);
    device.outputBuffers.push_back(buffer.get());
    device.buffers.push_back(std::move(buffer));
  }
  return true;
}

/// The largest difference from the expected outputs and how many elements
/// are outside the tolerance.
struct Comparison {
  double maxError = 0;
  int64_t mismatches = 0;
};

/// Compares `outputs` with the --expect files; false once it has reported
/// why it could not.
bool compareOutputs(const Options &options, const KernelSignature &signature,
                    const std::vector<HostTensor> &outputs,
                    Comparison &comparison, std::string &error) {
  double &maxError = comparison.maxError;
  int64_t &mismatches = comparison.mismatches;
  double atol = options.atol, rtol = options.rtol;
  const std::string &label = options.label;
  for (auto &[name, path] : options.expectFiles) {
    int index = paramIndex(signature, name, true);
    if (index < 0)
      return failed("kernel '" + signature.name + "' has no output '" + name +
                    "'");
    NpyArray array;
    HostTensor expected;
    if (!readNpy(path, array, error) ||
        !npyToTensor(array, ElementType::F32, name, expected, error))
      return failed(error);
    const HostTensor &actual = outputs[index];
    if (expected.shape() != actual.shape())
      return failed("expected '" + name + "' has shape " +
                    shapeString(expected.shape()) + ", the kernel gave " +
                    shapeString(actual.shape()));
    // Rounding errors of a sum follow the size of its terms, so the absolute
    // tolerance scales with the tensor's largest value (see expectClose).
    double scale = 1;
    for (int64_t i = 0; i < expected.numElements(); ++i)
      if (std::isfinite(expected.get(i)))
        scale = std::max(scale, std::fabs(expected.get(i)));
    for (int64_t i = 0; i < actual.numElements(); ++i) {
      double a = actual.get(i), e = expected.get(i);
      if (std::isinf(a) && std::isinf(e) && (a < 0) == (e < 0))
        continue;
      double diff = std::fabs(a - e);
      if (!(diff <= atol * scale + rtol * std::fabs(e))) {
        if (mismatches < 5)
          std::fprintf(stderr,
                       "%s: %s[%lld] = %g, expected %g (tensor scale %g)\n",
                       label.c_str(), name.c_str(), static_cast<long long>(i),
                       a, e, scale);
        ++mismatches;
      }
      if (std::isfinite(diff) && diff > maxError)
        maxError = diff;
      else if (!std::isfinite(diff))
        maxError = INFINITY;
    }
  }
  return true;
}

/// With `repeat` > 0, the milliseconds per launch over `repeat` launches
/// (else 0); false once it has reported a failed launch.
bool timeLaunches(GpuKernel &kernel, const DeviceTensors &device, int repeat,
                  double &msPerLaunch, std::string &error) {
  msPerLaunch = 0;
  if (repeat > 0) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < repeat; ++i)
      if (!kernel.launch(device.inputs, device.outputPointers, nullptr, error))
        return failed(error);
    if (!kernel.synchronize(nullptr, error))
      return failed(error);
    msPerLaunch = std::chrono::duration<double, std::milli>(
                      std::chrono::steady_clock::now() - start)
                      .count() /
                  repeat;
  }
  return true;
}

} // namespace

int main(int argc, char **argv) {
  Options options;
  if (std::optional<int> status = parseArguments(argc, argv, options))
    return *status;

  GpuImage image;
  std::string error;
  if (!readImage(options.imagePath, image, error))
    return 1;
  const KernelSignature &signature = image.signature;
  // f32 q, k and v are split into bf16 pairs (about 16 mantissa bits).
  bool f32Operands =
      !image.copiedParams.empty() &&
      signature.params[image.copiedParams[0]].type == ElementType::F32;
  double defaultTolerance = f32Operands ? 1e-4 : 2e-2;
  if (options.atol < 0)
    options.atol = defaultTolerance;
  if (options.rtol < 0)
    options.rtol = defaultTolerance;
  if (options.loadOnly)
    return reportLoadTime(image, options.label, error);

  std::vector<HostTensor> tensors(signature.params.size());
  std::vector<bool> present(signature.params.size(), false);
  if (!prepareInputs(options, image, tensors, present, error))
    return 1;

  std::unique_ptr<GpuKernel> kernel = GpuKernel::load(image, error);
  if (!kernel)
    return fail(error);
  DeviceTensors device;
  if (!uploadInputs(tensors, present, device, error) ||
      !allocateOutputs(image, device, error))
    return 1;
  if (!kernel->launch(device.inputs, device.outputPointers, nullptr, error) ||
      !kernel->synchronize(nullptr, error))
    return fail(error);
  // What split-keys=auto chose on this GPU, for the record.
  if (image.splitsAtLaunch) {
    std::array<int64_t, 3> grid =
        image.gridFor(device.hostInputs, kernel->residentCtas());
    std::fprintf(stderr, "%s: grid %lldx%lldx%lld for %lld resident CTAs\n",
                 options.label.c_str(), static_cast<long long>(grid[0]),
                 static_cast<long long>(grid[1]),
                 static_cast<long long>(grid[2]),
                 static_cast<long long>(kernel->residentCtas()));
  }
  for (size_t r = 0; r < device.outputs.size(); ++r)
    if (!device.outputBuffers[r]->download(device.outputs[r].data(), error))
      return fail(error);

  Comparison comparison;
  if (!compareOutputs(options, signature, device.outputs, comparison, error))
    return 1;
  double msPerLaunch = 0;
  if (!timeLaunches(*kernel, device, options.repeat, msPerLaunch, error))
    return 1;
  double tflops =
      msPerLaunch > 0 && options.flops > 0 ? options.flops / msPerLaunch / 1e9
                                           : 0;
  std::printf("%s,%s,%.3g,%lld,%.4f,%.1f\n", options.label.c_str(),
              comparison.mismatches ? "FAIL" : "ok", comparison.maxError,
              static_cast<long long>(comparison.mismatches), msPerLaunch,
              tflops);
  return comparison.mismatches ? 1 : 0;
}
