//===- CudaRuntime.cpp - Load and launch attnc GPU images -----------------===//

#include "attnc/Runtime/CudaRuntime.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>

using namespace attnc;

namespace attnc {

/// The driver API entry points attnc uses, resolved from libcuda.so.1. The
/// types are the driver ABI's (handles are pointers, results ints), so no
/// CUDA header is needed.
class CudaDriver {
public:
  using Result = int;
  Result (*init)(unsigned);
  Result (*deviceGet)(int *, int);
  Result (*deviceGetAttribute)(int *, int, int);
  Result (*primaryCtxRetain)(void **, int);
  Result (*ctxSetCurrent)(void *);
  Result (*ctxGetCurrent)(void **);
  Result (*moduleLoadData)(void **, const void *);
  Result (*moduleUnload)(void *);
  Result (*moduleGetFunction)(void **, void *, const char *);
  Result (*funcSetAttribute)(void *, int, int);
  Result (*occupancyMaxActiveBlocksPerMultiprocessor)(int *, void *, int,
                                                      size_t);
  Result (*launchKernel)(void *, unsigned, unsigned, unsigned, unsigned,
                         unsigned, unsigned, unsigned, void *, void **,
                         void **);
  Result (*memAlloc)(unsigned long long *, size_t);
  Result (*memFree)(unsigned long long);
  Result (*memsetD8Async)(unsigned long long, unsigned char, size_t, void *);
  Result (*memcpyDtoH)(void *, unsigned long long, size_t);
  Result (*memcpyHtoD)(unsigned long long, const void *, size_t);
  Result (*streamSynchronize)(void *);
  Result (*memAllocAsync)(unsigned long long *, size_t, void *);
  Result (*memFreeAsync)(unsigned long long, void *);
  Result (*getErrorString)(Result, const char **);

  /// The process-wide driver, loaded and initialised once; null with
  /// `error` set when there is no driver or no device.
  static CudaDriver *get(std::string &error);

  /// "cuLaunchKernel failed: CUDA_ERROR_...: message" when `result` != 0.
  bool check(Result result, const char *what, std::string &error) const {
    if (result == 0)
      return true;
    const char *text = nullptr;
    if (getErrorString)
      getErrorString(result, &text);
    error = std::string(what) + " failed: " +
            (text ? text : "CUDA error " + std::to_string(result));
    return false;
  }

  /// Makes the primary context of device 0 current unless one is.
  bool makeContextCurrent(std::string &error) {
    void *current = nullptr;
    if (ctxGetCurrent(&current) == 0 && current)
      return true;
    int device = 0;
    void *context = nullptr;
    return check(deviceGet(&device, 0), "cuDeviceGet", error) &&
           check(primaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain",
                 error) &&
           check(ctxSetCurrent(context), "cuCtxSetCurrent", error);
  }
};

} // namespace attnc

CudaDriver *CudaDriver::get(std::string &error) {
  static std::once_flag once;
  static CudaDriver driver;
  static std::string loadError;
  static bool loaded = false;
  std::call_once(once, [] {
    const char *name = std::getenv("ATTNC_LIBCUDA");
    void *library = dlopen(name ? name : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      loadError = std::string("no CUDA driver: cannot load ") +
                  (name ? name : "libcuda.so.1") + " (" + dlerror() +
                  "); GPU kernels can be compiled here but not launched";
      return;
    }
    bool missing = false;
    auto resolve = [&](auto &slot, const char *symbol) {
      slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(
          dlsym(library, symbol));
      if (!slot && !missing) {
        missing = true;
        loadError = std::string("the CUDA driver lacks ") + symbol;
      }
    };
    resolve(driver.init, "cuInit");
    resolve(driver.deviceGet, "cuDeviceGet");
    resolve(driver.deviceGetAttribute, "cuDeviceGetAttribute");
    resolve(driver.primaryCtxRetain, "cuDevicePrimaryCtxRetain");
    resolve(driver.ctxSetCurrent, "cuCtxSetCurrent");
    resolve(driver.ctxGetCurrent, "cuCtxGetCurrent");
    resolve(driver.moduleLoadData, "cuModuleLoadData");
    resolve(driver.moduleUnload, "cuModuleUnload");
    resolve(driver.moduleGetFunction, "cuModuleGetFunction");
    resolve(driver.funcSetAttribute, "cuFuncSetAttribute");
    resolve(driver.occupancyMaxActiveBlocksPerMultiprocessor,
            "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    resolve(driver.launchKernel, "cuLaunchKernel");
    resolve(driver.memAlloc, "cuMemAlloc_v2");
    resolve(driver.memFree, "cuMemFree_v2");
    resolve(driver.memsetD8Async, "cuMemsetD8Async");
    resolve(driver.memcpyDtoH, "cuMemcpyDtoH_v2");
    resolve(driver.memcpyHtoD, "cuMemcpyHtoD_v2");
    resolve(driver.streamSynchronize, "cuStreamSynchronize");
    resolve(driver.memAllocAsync, "cuMemAllocAsync");
    resolve(driver.memFreeAsync, "cuMemFreeAsync");
    resolve(driver.getErrorString, "cuGetErrorString");
    if (missing)
      return;
    std::string initError;
    if (!driver.check(driver.init(0), "cuInit", initError)) {
      loadError = "no usable CUDA device: " + initError;
      return;
    }
    loaded = true;
  });
  if (!loaded) {
    error = loadError;
    return nullptr;
  }
  return &driver;
}

int attnc::cudaComputeCapability(std::string &error) {
  CudaDriver *driver = CudaDriver::get(error);
  if (!driver)
    return 0;
  int device = 0, major = 0, minor = 0;
  if (!driver->check(driver->deviceGet(&device, 0), "cuDeviceGet", error) ||
      !driver->check(driver->deviceGetAttribute(&major, 75, device),
                     "cuDeviceGetAttribute", error) ||
      !driver->check(driver->deviceGetAttribute(&minor, 76, device),
                     "cuDeviceGetAttribute", error))
    return 0;
  return major * 10 + minor;
}

std::string attnc::gpuTargetFor(int computeCapability, std::string &error) {
  if (computeCapability == 90)
    return "sm_90a";
  if (computeCapability >= 80)
    return "sm_80";
  error = "compute capability " + std::to_string(computeCapability / 10) + "." +
          std::to_string(computeCapability % 10) +
          " is below 8.0; attnc's GPU kernels need Ampere or later";
  return "";
}

bool attnc::checkGpuLaunch(const GpuImage &image,
                           const std::vector<const TensorView *> &inputs,
                           const std::vector<TensorView *> &outputs,
                           std::string &error) {
  const KernelSignature &signature = image.signature;
  if (inputs.size() != signature.params.size() ||
      outputs.size() != signature.results.size()) {
    error = "kernel '" + signature.name + "' takes " +
            std::to_string(signature.params.size()) + " inputs and " +
            std::to_string(signature.results.size()) + " outputs";
    return false;
  }
  DimBindings bindings;
  std::vector<std::vector<int64_t>> shapes;
  if (!bindInputShapes(signature, inputs, bindings, error) ||
      !checkGpuLaunch(image, inputs, error) ||
      !image.outputShapes(inputs, bindings, shapes, error))
    return false;
  for (size_t r = 0; r < outputs.size(); ++r)
    if (!outputs[r] || outputs[r]->shape != shapes[r] ||
        outputs[r]->type != signature.results[r].type) {
      error = "output '" + signature.results[r].name + "' must be " +
              toString(signature.results[r].type) + shapeString(shapes[r]);
      return false;
    }
  for (int64_t result : image.partialResults)
    if (!checkScatterPositions(signature.results[result].name, shapes[result],
                               "run this backward on the CPU reference",
                               error))
      return false;
  return true;
}

bool attnc::checkGpuLaunch(const GpuImage &image,
                           const std::vector<const TensorView *> &inputs,
                           std::string &error) {
  if (image.copiedParams.size() >= 2) {
    const TensorView *q = inputs[image.copiedParams[0]];
    const TensorView *k = inputs[image.copiedParams[1]];
    size_t dim = static_cast<size_t>(image.headDim);
    if (q && k && dim < q->shape.size() && dim < k->shape.size()) {
      int64_t headsQ = q->shape[dim], headsK = k->shape[dim];
      if (headsK == 0 || headsQ % headsK != 0) {
        error = "'" + image.signature.params[image.copiedParams[0]].name +
                "' has " + std::to_string(headsQ) + " heads and '" +
                image.signature.params[image.copiedParams[1]].name +
                "' has " + std::to_string(headsK) +
                "; the query heads must be a positive multiple of the kv heads";
        return false;
      }
    }
  }
  for (size_t which = 0; which < image.offsetParams.size(); ++which) {
    int64_t param = image.offsetParams[which];
    const TensorView *offsets = inputs[param];
    // Packed tokens of q (first offsets) or k (second), dim 0 in `thd`.
    const TensorView *tokens =
        which < image.copiedParams.size() ? inputs[image.copiedParams[which]]
                                          : nullptr;
    int64_t count =
        tokens && !tokens->shape.empty() ? tokens->shape[0] : 0;
    if (offsets && !checkOffsetCount(image.signature.params[param].name,
                                     *offsets, count, error))
      return false;
  }
  if (image.offsetParams.size() == 2 && inputs[image.offsetParams[0]] &&
      inputs[image.offsetParams[1]] &&
      inputs[image.offsetParams[0]]->shape != inputs[image.offsetParams[1]]->shape) {
    error = "cu_seqlens_q and cu_seqlens_k must describe the same number of "
            "sequences";
    return false;
  }
  for (int64_t param : image.copiedParams) {
    if (param >= static_cast<int64_t>(inputs.size()) || !inputs[param])
      continue;
    const TensorView &view = *inputs[param];
    const std::string &name = image.signature.params[param].name;
    size_t bytes = elementSize(view.type);
    if (!view.strides.empty() && view.strides.back() != 1) {
      error = "input '" + name + "' must be contiguous in its last dim on the "
              "GPU (stride " + std::to_string(view.strides.back()) + ")";
      return false;
    }
    for (size_t d = 0; d + 1 < view.strides.size(); ++d)
      if ((view.strides[d] * static_cast<int64_t>(bytes)) % 16 != 0 &&
          view.shape[d] > 1) {
        error = "input '" + name + "' has stride " +
                std::to_string(view.strides[d]) + " in dim " +
                std::to_string(d) + "; the GPU needs 16-byte aligned rows";
        return false;
      }
    if (reinterpret_cast<uintptr_t>(view.data) % 16 != 0) {
      error = "input '" + name + "' is not 16-byte aligned on the GPU";
      return false;
    }
  }
  return true;
}

GpuKernel::~GpuKernel() {
  if (!driver)
    return;
  for (auto &entry : statusByStream)
    driver->memFree(entry.second);
  if (module)
    driver->moduleUnload(module);
}

std::unique_ptr<GpuKernel> GpuKernel::load(const GpuImage &image,
                                           std::string &error) {
  CudaDriver *driver = CudaDriver::get(error);
  if (!driver || !driver->makeContextCurrent(error))
    return nullptr;
  std::unique_ptr<GpuKernel> kernel(new GpuKernel());
  kernel->driver = driver;
  kernel->gpuImage = image;
  // PTX must be NUL-terminated for the driver's JIT.
  std::string bytes = image.bytes;
  if (image.format == "ptx")
    bytes.push_back('\0');
  if (!driver->check(driver->moduleLoadData(&kernel->module, bytes.data()),
                     "cuModuleLoadData", error) ||
      !driver->check(driver->moduleGetFunction(&kernel->function,
                                               kernel->module,
                                               image.signature.name.c_str()),
                     "cuModuleGetFunction", error))
    return nullptr;
  if (image.sharedBytes > 48 * 1024) {
    int device = 0, limit = 0;
    if (driver->deviceGet(&device, 0) == 0 &&
        driver->deviceGetAttribute(&limit, 97, device) == 0 &&
        image.sharedBytes > limit) {
      error = "kernel '" + image.signature.name + "' needs " +
              std::to_string(image.sharedBytes) +
              " bytes of shared memory per CTA; this GPU allows " +
              std::to_string(limit) +
              " (a smaller chunk, block or head dim needs less)";
      return nullptr;
    }
  }
  if (image.sharedBytes > 48 * 1024 &&
      !driver->check(driver->funcSetAttribute(kernel->function, 8,
                                              static_cast<int>(image.sharedBytes)),
                     "cuFuncSetAttribute(max dynamic shared memory)", error))
    return nullptr;
  if (image.splitsAtLaunch) {
    int device = 0, multiprocessors = 0, perMultiprocessor = 0;
    if (!driver->check(driver->deviceGet(&device, 0), "cuDeviceGet", error) ||
        !driver->check(driver->deviceGetAttribute(&multiprocessors, 16, device),
                       "cuDeviceGetAttribute(multiprocessor count)", error) ||
        !driver->check(driver->occupancyMaxActiveBlocksPerMultiprocessor(
                           &perMultiprocessor, kernel->function,
                           static_cast<int>(image.threads),
                           static_cast<size_t>(image.sharedBytes)),
                       "cuOccupancyMaxActiveBlocksPerMultiprocessor", error))
      return nullptr;
    kernel->resident =
        std::max<int64_t>(1, int64_t{multiprocessors} * perMultiprocessor);
  }
  return kernel;
}

unsigned long long GpuKernel::statusWordsFor(void *stream, std::string &error) {
  std::lock_guard<std::mutex> lock(statusMutex);
  auto found = statusByStream.find(stream);
  if (found != statusByStream.end())
    return found->second;
  unsigned long long words = 0;
  if (!driver->check(driver->memAlloc(&words, kStatusBytes), "cuMemAlloc",
                     error))
    return 0;
  if (!driver->check(driver->memsetD8Async(words, 0, kStatusBytes, stream),
                     "cuMemsetD8Async", error)) {
    driver->memFree(words);
    return 0;
  }
  statusByStream.emplace(stream, words);
  return words;
}

namespace {
/// The flattened fields of one memref descriptor, as the kernel's
/// parameters expect them: allocated and aligned pointer, offset, sizes,
/// strides.
struct Descriptor {
  void *allocated = nullptr, *aligned = nullptr;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;

  Descriptor(void *data, const std::vector<int64_t> &shape,
             const std::vector<int64_t> &givenStrides)
      : allocated(data), aligned(data), sizes(shape), strides(givenStrides) {
    if (strides.empty()) {
      strides.assign(shape.size(), 1);
      for (size_t d = shape.size(); d-- > 1;)
        strides[d - 1] = strides[d] * shape[d];
    }
  }
  void append(std::vector<void *> &args) {
    args.push_back(&allocated);
    args.push_back(&aligned);
    args.push_back(&offset);
    for (int64_t &size : sizes)
      args.push_back(&size);
    for (int64_t &stride : strides)
      args.push_back(&stride);
  }
};
} // namespace

bool GpuKernel::launch(const std::vector<const TensorView *> &inputs,
                       const std::vector<TensorView *> &outputs, void *stream,
                       std::string &error) {
  const KernelSignature &signature = gpuImage.signature;
  if (!checkGpuLaunch(gpuImage, inputs, outputs, error))
    return false;

  std::vector<Descriptor> descriptors;
  for (size_t p = 0; p < inputs.size(); ++p) {
    const TensorView *view = inputs[p];
    size_t rank = signature.params[p].dims.size();
    if (view)
      descriptors.emplace_back(view->data, view->shape, view->strides);
    else // an omitted optional input: null pointer, zero sizes
      descriptors.emplace_back(nullptr, std::vector<int64_t>(rank, 0),
                               std::vector<int64_t>(rank, 0));
  }
  std::array<int64_t, 3> grid = gpuImage.gridFor(inputs, resident);
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0) {
    // Nothing to compute; partial results are sums over no CTA: zero.
    for (int64_t result : gpuImage.partialResults) {
      const TensorView &view = *outputs[result];
      int64_t elements = view.numElements();
      if (elements == 0)
        continue;
      if (!isContiguous(view)) {
        error = "'" + signature.results[result].name +
                "' must be contiguous when the launch has no work (it is "
                "then zeroed in one memset)";
        return false;
      }
      if (!driver->check(
              driver->memsetD8Async(reinterpret_cast<uintptr_t>(view.data), 0,
                                    elements * elementSize(view.type), stream),
              "cuMemsetD8Async", error))
        return false;
    }
    return true;
  }
  // The kernel records only the first error it finds in the words, so the
  // words of a stream keep what an earlier launch found until synchronize
  // reports it.
  unsigned long long status = statusWordsFor(stream, error);
  if (!status)
    return false;
  for (TensorView *view : outputs)
    descriptors.emplace_back(view->data, view->shape, view->strides);
  descriptors.emplace_back(reinterpret_cast<void *>(status),
                           std::vector<int64_t>{kStatusWords},
                           std::vector<int64_t>{1});
  // A segmented kernel's workspace belongs to this launch alone, allocated
  // and freed in stream order: launches on other streams cannot zero the
  // flags that its CTAs wait for.
  std::vector<std::vector<int64_t>> resultShapes;
  for (TensorView *view : outputs)
    resultShapes.push_back(view->shape);
  LaunchWorkspace layout = launchWorkspace(
      gpuImage, grid, argumentShapes(inputs, resultShapes));
  unsigned long long workspace = 0;
  if (gpuImage.usesWorkspace()) {
    if (!driver->check(
            driver->memAllocAsync(&workspace, layout.totalBytes, stream),
            "cuMemAllocAsync", error))
      return false;
    // As words, and again as the f32 scratch of kernels that have one.
    for (int view = 0; view < (gpuImage.scratchWords.empty() ? 1 : 2); ++view)
      descriptors.emplace_back(reinterpret_cast<void *>(workspace),
                               std::vector<int64_t>{layout.totalBytes / 4},
                               std::vector<int64_t>{1});
  }
  std::vector<void *> args;
  for (Descriptor &descriptor : descriptors)
    descriptor.append(args);
  bool launched =
      (!workspace ||
       driver->check(driver->memsetD8Async(workspace, 0, layout.zeroedBytes,
                                           stream),
                     "cuMemsetD8Async", error)) &&
      driver->check(
          driver->launchKernel(function, static_cast<unsigned>(grid[0]),
                               static_cast<unsigned>(grid[1]),
                               static_cast<unsigned>(grid[2]),
                               static_cast<unsigned>(gpuImage.threads), 1, 1,
                               static_cast<unsigned>(gpuImage.sharedBytes),
                               stream, args.data(), nullptr),
          "cuLaunchKernel", error);
  std::string freeError;
  if (workspace &&
      !driver->check(driver->memFreeAsync(workspace, stream), "cuMemFreeAsync",
                     freeError) &&
      launched) {
    error = freeError;
    return false;
  }
  return launched;
}

bool GpuKernel::synchronize(void *stream, std::string &error) {
  if (!driver->check(driver->streamSynchronize(stream), "cuStreamSynchronize",
                     error))
    return false;
  unsigned long long status;
  {
    std::lock_guard<std::mutex> lock(statusMutex);
    auto found = statusByStream.find(stream);
    if (found == statusByStream.end())
      return true; // nothing was launched on this stream
    status = found->second;
  }
  int64_t words[kStatusWords] = {};
  if (!driver->check(driver->memcpyDtoH(words, status, kStatusBytes),
                     "cuMemcpyDtoH", error))
    return false;
  if (checkKernelStatus(gpuImage.signature, words, error))
    return true;
  std::string clearError;
  if (!driver->check(driver->memsetD8Async(status, 0, kStatusBytes, stream),
                     "cuMemsetD8Async", clearError))
    error += "; clearing the report failed too: " + clearError;
  return false;
}

DeviceBuffer::~DeviceBuffer() {
  if (driver && address)
    driver->memFree(address);
}

std::unique_ptr<DeviceBuffer> DeviceBuffer::allocate(size_t bytes,
                                                     std::string &error) {
  CudaDriver *driver = CudaDriver::get(error);
  if (!driver || !driver->makeContextCurrent(error))
    return nullptr;
  std::unique_ptr<DeviceBuffer> buffer(new DeviceBuffer());
  buffer->driver = driver;
  buffer->bytes = bytes;
  if (bytes && !driver->check(driver->memAlloc(&buffer->address, bytes),
                              "cuMemAlloc", error))
    return nullptr;
  return buffer;
}

bool DeviceBuffer::upload(const void *host, std::string &error) {
  return !bytes || driver->check(driver->memcpyHtoD(address, host, bytes),
                                 "cuMemcpyHtoD", error);
}

bool DeviceBuffer::download(void *host, std::string &error) const {
  return !bytes || driver->check(driver->memcpyDtoH(host, address, bytes),
                                 "cuMemcpyDtoH", error);
}

bool attnc::runWithHostTensors(GpuKernel &kernel,
                               const std::vector<const TensorView *> &inputs,
                               std::vector<HostTensor> &outputs,
                               std::string &error) {
  const KernelSignature &signature = kernel.image().signature;
  DimBindings bindings;
  if (inputs.size() != signature.params.size()) {
    error = "kernel '" + signature.name + "' takes " +
            std::to_string(signature.params.size()) + " inputs";
    return false;
  }
  if (!bindInputShapes(signature, inputs, bindings, error))
    return false;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<TensorView> deviceInputs(inputs.size());
  std::vector<const TensorView *> deviceInputPointers;
  for (size_t p = 0; p < inputs.size(); ++p) {
    if (!inputs[p]) {
      deviceInputPointers.push_back(nullptr);
      continue;
    }
    // Uploaded contiguously: the device copy has row-major strides.
    HostTensor contiguous(inputs[p]->type, inputs[p]->shape);
    size_t bytes = elementSize(inputs[p]->type);
    std::vector<int64_t> index(inputs[p]->shape.size(), 0);
    for (int64_t flat = 0; flat < contiguous.numElements(); ++flat) {
      int64_t offset = 0;
      for (size_t d = 0; d < index.size(); ++d)
        offset += index[d] * (inputs[p]->strides.empty() ? 0 : inputs[p]->strides[d]);
      if (inputs[p]->strides.empty())
        offset = flat;
      std::memcpy(static_cast<char *>(contiguous.data()) + flat * bytes,
                  static_cast<const char *>(inputs[p]->data) + offset * bytes,
                  bytes);
      for (size_t d = index.size(); d-- > 0;) {
        if (++index[d] < inputs[p]->shape[d])
          break;
        index[d] = 0;
      }
    }
    uint64_t total = 0;
    storageBytes(contiguous.type(), contiguous.shape(), total);
    auto buffer = DeviceBuffer::allocate(total, error);
    if (!buffer || !buffer->upload(contiguous.data(), error))
      return false;
    deviceInputs[p] = contiguous.view();
    deviceInputs[p].data = buffer->data();
    deviceInputPointers.push_back(&deviceInputs[p]);
    buffers.push_back(std::move(buffer));
  }
  outputs.clear();
  std::vector<TensorView> deviceOutputs(signature.results.size());
  std::vector<TensorView *> deviceOutputPointers;
  std::vector<DeviceBuffer *> outputBuffers;
  std::vector<std::vector<int64_t>> shapes;
  if (!kernel.image().outputShapes(inputs, bindings, shapes, error))
    return false;
  for (size_t r = 0; r < signature.results.size(); ++r) {
    const std::vector<int64_t> &shape = shapes[r];
    outputs.emplace_back(signature.results[r].type, shape);
    uint64_t total = 0;
    storageBytes(signature.results[r].type, shape, total);
    auto buffer = DeviceBuffer::allocate(total, error);
    if (!buffer)
      return false;
    deviceOutputs[r] = outputs.back().view();
    deviceOutputs[r].data = buffer->data();
    deviceOutputPointers.push_back(&deviceOutputs[r]);
    outputBuffers.push_back(buffer.get());
    buffers.push_back(std::move(buffer));
  }
  if (!kernel.launch(deviceInputPointers, deviceOutputPointers, nullptr, error) ||
      !kernel.synchronize(nullptr, error))
    return false;
  for (size_t r = 0; r < outputs.size(); ++r)
    if (!outputBuffers[r]->download(outputs[r].data(), error))
      return false;
  return true;
}
