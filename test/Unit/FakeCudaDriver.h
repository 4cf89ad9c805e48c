//===- FakeCudaDriver.h - A CUDA driver stand-in for runtime tests -*- C++
//-*-===//
//
// libAttncFakeCuda exports the driver entry points the runtime resolves from
// libcuda.so.1; tests point ATTNC_LIBCUDA at it to check the runtime's side
// of the driver protocol without a GPU: allocations and frees, stream order,
// kernel arguments against the PTX entry's parameter list, status words and
// every driver failure. Device memory is host memory and kernels do not run:
// a launch is recorded, checked and handed to an optional hook.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TEST_FAKECUDADRIVER_H
#define ATTNC_TEST_FAKECUDADRIVER_H

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fake_cuda {

/// One cuLaunchKernel call, its parameters read at the sizes the PTX entry
/// declares.
struct Launch {
  std::string function;
  unsigned grid[3], block[3], sharedBytes;
  void *stream;
  std::vector<uint64_t> params;
};

/// Forgets launches, the call log, injected failures and the multiprocessor
/// count; keeps allocations.
void reset();
/// The device: compute capability and the opt-in shared memory per CTA.
void setDevice(int major, int minor, int sharedBytesOptin);
/// The device's multiprocessor count (132 until set).
void setMultiprocessors(int count);
/// The next call of `entryPoint` ("cuMemAllocAsync", ...) returns `result`.
void failNext(const std::string &entryPoint, int result);
/// Called for each accepted launch with its parameters; may write device
/// memory (host memory here), as a kernel would.
void onLaunch(std::function<void(const Launch &)> hook);

const std::vector<Launch> &launches();
/// "cuMemAllocAsync stream=0x1 ptr=0x..." per memory or launch call, in
/// order, for checking stream order.
const std::vector<std::string> &callLog();
/// Bytes of a live allocation starting at `address`; 0 when there is none.
size_t allocationBytes(uint64_t address);
size_t liveAllocations();
/// Why the fake refused the last call it refused ("" when none).
const std::string &lastViolation();

} // namespace fake_cuda

/// The driver's own free, for memory a failed call leaked.
extern "C" int cuMemFree_v2(uint64_t address);

#endif // ATTNC_TEST_FAKECUDADRIVER_H
