//===- CudaRuntime.h - Load and launch attnc GPU images ---------*- C++ -*-===//
//
// The small runtime that applications (and GPU machines without LLVM) embed
// to run compiled kernels: the CUDA driver is loaded with dlopen at run time,
// so nothing here needs the CUDA toolkit to build, and a machine without a
// driver gets a clear error instead of a link failure. No MLIR or LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_CUDARUNTIME_H
#define ATTNC_RUNTIME_CUDARUNTIME_H

#include "attnc/Runtime/GpuImage.h"
#include "attnc/Runtime/Tensor.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace attnc {

/// Compute capability of the current CUDA device as major * 10 + minor;
/// 0 with `error` set when there is no driver or no device.
int cudaComputeCapability(std::string &error);

/// The attnc target for a compute capability: sm_90a on Hopper (9.0),
/// sm_80 on Ampere and later otherwise; "" (with `error`) below 8.0.
std::string gpuTargetFor(int computeCapability, std::string &error);

class CudaDriver;

/// One image loaded into the current device's primary context.
class GpuKernel {
public:
  ~GpuKernel();

  /// Loads the image (PTX is compiled by the driver). Null with `error` set
  /// when the driver, the device or the load fails.
  static std::unique_ptr<GpuKernel> load(const GpuImage &image,
                                         std::string &error);

  const GpuImage &image() const { return gpuImage; }
  /// How many CTAs of this kernel the device runs at once (multiprocessors
  /// times the CTAs each holds); known for split-keys=auto kernels, whose
  /// launches size their splits by it, else 0.
  int64_t residentCtas() const { return resident; }

  /// Enqueues the kernel on `stream` (a CUstream; null: the default stream)
  /// with device pointers in the views. Segmented kernels get a workspace
  /// allocated and freed in stream order (cuMemAllocAsync) for this launch.
  /// Shapes, dtypes and layout requirements (unit inner stride and 16-byte
  /// aligned rows of q, k and v) are checked first and reported naming the
  /// tensor.
  bool launch(const std::vector<const TensorView *> &inputs,
              const std::vector<TensorView *> &outputs, void *stream,
              std::string &error);

  /// Waits for `stream` and reports the first bad input (out-of-bounds
  /// index reads, bad cu_seqlens) that the launches on `stream` since its
  /// last synchronize found, as the CPU path does; the report clears it.
  /// Launches on other streams neither hide nor add to it.
  bool synchronize(void *stream, std::string &error);

private:
  GpuKernel() = default;
  CudaDriver *driver = nullptr;
  GpuImage gpuImage;
  void *module = nullptr, *function = nullptr;
  int64_t resident = 0;
  /// The device buffer of status words (docs/pipeline.md) that launches on
  /// `stream` write, allocated and zeroed on the stream's first launch.
  unsigned long long statusWordsFor(void *stream, std::string &error);
  std::mutex statusMutex;
  std::map<void *, unsigned long long> statusByStream;
};

/// Device memory in the current device's primary context, for tests,
/// benchmarks and the command line (applications bring their own).
class DeviceBuffer {
public:
  ~DeviceBuffer();
  static std::unique_ptr<DeviceBuffer> allocate(size_t bytes,
                                                std::string &error);
  void *data() const { return reinterpret_cast<void *>(address); }
  size_t size() const { return bytes; }
  bool upload(const void *host, std::string &error);
  bool download(void *host, std::string &error) const;

private:
  DeviceBuffer() = default;
  CudaDriver *driver = nullptr;
  unsigned long long address = 0;
  size_t bytes = 0;
};

/// Runs `kernel` on host tensors: uploads the inputs (null: omitted), allocates
/// and downloads the outputs, and synchronizes (reporting bad input). For
/// tools and tests; applications launch on their own device memory.
bool runWithHostTensors(GpuKernel &kernel,
                        const std::vector<const TensorView *> &inputs,
                        std::vector<HostTensor> &outputs, std::string &error);

/// The checks of GpuKernel::launch beyond shapes and dtypes, on their own
/// (no driver needed): query heads a multiple of kv heads, cu_seqlens sizes,
/// and q/k/v views that can be copied in 16-byte rows. False with a message
/// naming the tensor.
bool checkGpuLaunch(const GpuImage &image,
                    const std::vector<const TensorView *> &inputs,
                    std::string &error);

/// Every check of a launch: the counts, the input shapes and dtypes (as
/// bindInputShapes), the checks above, and the outputs' shapes and dtypes.
bool checkGpuLaunch(const GpuImage &image,
                    const std::vector<const TensorView *> &inputs,
                    const std::vector<TensorView *> &outputs,
                    std::string &error);

} // namespace attnc

#endif // ATTNC_RUNTIME_CUDARUNTIME_H
