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
#include <sstream>

using namespace attnc;

namespace {

int fail(const std::string &message) {
  std::fprintf(stderr, "attnc-gpu-run: error: %s\n", message.c_str());
  return 1;
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

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || std::string(argv[1]) == "--help")
    return std::printf("usage: attnc-gpu-run IMAGE [--input NAME=FILE.npy]... "
                       "[--dim SYMBOL=SIZE]... [--seed S] [--expect "
                       "NAME=FILE.npy]... [--atol A] [--rtol R] [--repeat N] "
                       "[--flops F] [--label TEXT]\n       attnc-gpu-run IMAGE "
                       "--load-only [--label TEXT]\n"),
           argc < 2;
  std::string imagePath = argv[1], label = imagePath;
  std::vector<std::pair<std::string, std::string>> inputFiles, expectFiles;
  DimBindings bindings;
  uint64_t seed = 0;
  double atol = -1, rtol = -1, flops = 0;
  int repeat = 0;
  bool loadOnly = false;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--load-only") {
      loadOnly = true;
      continue;
    }
    if (i + 1 >= argc)
      return fail("option " + flag + " needs a value");
    std::string value = argv[++i], name, rest;
    if (flag == "--input" || flag == "--expect" || flag == "--dim") {
      if (!split(value, name, rest))
        return fail(flag + " expects NAME=VALUE, got '" + value + "'");
      if (flag == "--input")
        inputFiles.emplace_back(name, rest);
      else if (flag == "--expect")
        expectFiles.emplace_back(name, rest);
      else
        bindings[name] = std::atoll(rest.c_str());
    } else if (flag == "--seed") {
      seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--atol") {
      atol = std::atof(value.c_str());
    } else if (flag == "--rtol") {
      rtol = std::atof(value.c_str());
    } else if (flag == "--repeat") {
      repeat = std::atoi(value.c_str());
    } else if (flag == "--flops") {
      flops = std::atof(value.c_str());
    } else if (flag == "--label") {
      label = value;
    } else {
      return fail("unknown option " + flag);
    }
  }

  std::ifstream file(imagePath, std::ios::binary);
  if (!file)
    return fail("cannot read " + imagePath);
  std::stringstream data;
  data << file.rdbuf();
  GpuImage image;
  std::string error;
  if (!deserialize(data.str(), image, error))
    return fail(imagePath + ": " + error);
  const KernelSignature &signature = image.signature;
  // f32 q, k and v are split into bf16 pairs (about 16 mantissa bits).
  bool f32Operands =
      !image.copiedParams.empty() &&
      signature.params[image.copiedParams[0]].type == ElementType::F32;
  double defaultTolerance = f32Operands ? 1e-4 : 2e-2;
  if (atol < 0)
    atol = defaultTolerance;
  if (rtol < 0)
    rtol = defaultTolerance;
  if (loadOnly) {
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

  std::vector<HostTensor> tensors(signature.params.size());
  std::vector<bool> present(signature.params.size(), false);
  for (auto &[name, path] : inputFiles) {
    int index = paramIndex(signature, name, false);
    if (index < 0)
      return fail("kernel '" + signature.name + "' has no parameter '" + name +
                  "'");
    NpyArray array;
    if (!readNpy(path, array, error) ||
        !npyToTensor(array, signature.params[index].type, name, tensors[index],
                     error))
      return fail(error);
    present[index] = true;
    const TensorSpec &spec = signature.params[index];
    for (size_t d = 0; d < spec.dims.size() && d < array.shape.size(); ++d)
      if (spec.dims[d].isSymbolic())
        bindings.emplace(spec.dims[d].symbol, array.shape[d]);
  }
  if (!fillMissingInputs(signature, image.roles, bindings, seed, tensors,
                         present, error))
    return fail(error);

  std::unique_ptr<GpuKernel> kernel = GpuKernel::load(image, error);
  if (!kernel)
    return fail(error);
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<TensorView> inputViews(tensors.size());
  std::vector<const TensorView *> inputs, hostInputs;
  std::vector<TensorView> hostViews(tensors.size());
  for (size_t p = 0; p < tensors.size(); ++p) {
    if (!present[p]) {
      inputs.push_back(nullptr);
      hostInputs.push_back(nullptr);
      continue;
    }
    hostViews[p] = tensors[p].view();
    hostInputs.push_back(&hostViews[p]);
    uint64_t bytes = 0;
    storageBytes(tensors[p].type(), tensors[p].shape(), bytes);
    auto buffer = DeviceBuffer::allocate(bytes, error);
    if (!buffer || !buffer->upload(tensors[p].data(), error))
      return fail(error);
    inputViews[p] = hostViews[p];
    inputViews[p].data = buffer->data();
    inputs.push_back(&inputViews[p]);
    buffers.push_back(std::move(buffer));
  }
  DimBindings bound;
  if (!bindInputShapes(signature, hostInputs, bound, error))
    return fail(error);
  std::vector<HostTensor> outputs;
  std::vector<TensorView> outputViews(signature.results.size());
  std::vector<TensorView *> outputPointers;
  std::vector<DeviceBuffer *> outputBuffers;
  std::vector<std::vector<int64_t>> shapes;
  if (!image.outputShapes(hostInputs, bound, shapes, error))
    return fail(error);
  for (size_t r = 0; r < signature.results.size(); ++r) {
    const std::vector<int64_t> &shape = shapes[r];
    outputs.emplace_back(signature.results[r].type, shape);
    uint64_t bytes = 0;
    storageBytes(signature.results[r].type, shape, bytes);
    auto buffer = DeviceBuffer::allocate(bytes, error);
    if (!buffer)
      return fail(error);
    outputViews[r] = outputs.back().view();
    outputViews[r].data = buffer->data();
    outputPointers.push_back(&outputViews[r]);
    outputBuffers.push_back(buffer.get());
    buffers.push_back(std::move(buffer));
  }
  if (!kernel->launch(inputs, outputPointers, nullptr, error) ||
      !kernel->synchronize(nullptr, error))
    return fail(error);
  // What split-keys=auto chose on this GPU, for the record.
  if (image.splitsAtLaunch) {
    std::array<int64_t, 3> grid =
        image.gridFor(hostInputs, kernel->residentCtas());
    std::fprintf(stderr, "%s: grid %lldx%lldx%lld for %lld resident CTAs\n",
                 label.c_str(), static_cast<long long>(grid[0]),
                 static_cast<long long>(grid[1]),
                 static_cast<long long>(grid[2]),
                 static_cast<long long>(kernel->residentCtas()));
  }
  for (size_t r = 0; r < outputs.size(); ++r)
    if (!outputBuffers[r]->download(outputs[r].data(), error))
      return fail(error);

  // Comparison with the expected outputs.
  double maxError = 0;
  int64_t mismatches = 0;
  for (auto &[name, path] : expectFiles) {
    int index = paramIndex(signature, name, true);
    if (index < 0)
      return fail("kernel '" + signature.name + "' has no output '" + name + "'");
    NpyArray array;
    HostTensor expected;
    if (!readNpy(path, array, error) ||
        !npyToTensor(array, ElementType::F32, name, expected, error))
      return fail(error);
    const HostTensor &actual = outputs[index];
    if (expected.shape() != actual.shape())
      return fail("expected '" + name + "' has shape " +
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

  double msPerLaunch = 0;
  if (repeat > 0) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < repeat; ++i)
      if (!kernel->launch(inputs, outputPointers, nullptr, error))
        return fail(error);
    if (!kernel->synchronize(nullptr, error))
      return fail(error);
    msPerLaunch = std::chrono::duration<double, std::milli>(
                      std::chrono::steady_clock::now() - start)
                      .count() /
                  repeat;
  }
  double tflops = msPerLaunch > 0 && flops > 0 ? flops / msPerLaunch / 1e9 : 0;
  std::printf("%s,%s,%.3g,%lld,%.4f,%.1f\n", label.c_str(),
              mismatches ? "FAIL" : "ok", maxError,
              static_cast<long long>(mismatches), msPerLaunch, tflops);
  return mismatches ? 1 : 0;
}
