//===- FakeCudaDriver.cpp - A CUDA driver stand-in for runtime tests
//-------===//
//
// The driver ABI as the runtime uses it: results are ints (0 = success),
// handles are pointers, device pointers are 64-bit integers. Every call that
// touches memory checks that the range lies in a live allocation; a launch
// checks its geometry and that each parameter the PTX marks `.ptr` holds
// null or a live allocation, which catches arguments shifted by a slot.
//
//===----------------------------------------------------------------------===//

#include "FakeCudaDriver.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>

namespace {

constexpr int kSuccess = 0, kInvalidValue = 1, kOutOfMemory = 2,
              kInvalidPtx = 218, kNotFound = 500;

struct Entry {
  std::vector<unsigned> paramBytes;
  std::vector<bool> paramIsPointer;
  int maxDynamicShared = 48 * 1024;
};

struct Module {
  std::map<std::string, Entry> entries;
};

struct State {
  std::recursive_mutex mutex;
  int major = 9, minor = 0, sharedOptin = 227 * 1024, multiprocessors = 132;
  std::map<uint64_t, size_t> allocations;
  std::map<std::string, int> failures;
  std::vector<fake_cuda::Launch> launches;
  std::vector<std::string> log;
  std::function<void(const fake_cuda::Launch &)> hook;
  std::string violation;
  void *context = nullptr;
  int primaryContext = 0;
};

State &state() {
  static State instance;
  return instance;
}

/// The injected failure of `entryPoint`, once.
int injected(const char *entryPoint) {
  State &s = state();
  auto found = s.failures.find(entryPoint);
  if (found == s.failures.end())
    return kSuccess;
  int result = found->second;
  s.failures.erase(found);
  return result;
}

int refuse(const std::string &why) {
  state().violation = why;
  return kInvalidValue;
}

std::string hex(uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

void record(const std::string &call, void *stream, uint64_t address) {
  state().log.push_back(call +
                        " stream=" + hex(reinterpret_cast<uintptr_t>(stream)) +
                        " ptr=" + hex(address));
}

/// True when [address, address + bytes) lies in one live allocation.
bool inAllocation(uint64_t address, size_t bytes) {
  const auto &allocations = state().allocations;
  auto next = allocations.upper_bound(address);
  if (next == allocations.begin())
    return false;
  auto owner = std::prev(next);
  return address + bytes <= owner->first + owner->second;
}

int allocate(uint64_t *address, size_t bytes) {
  void *memory = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (!memory)
    return kOutOfMemory;
  // Junk, as device memory holds, so that a launch relying on zeroes it
  // did not write is caught.
  std::memset(memory, 0xA5, bytes);
  *address = reinterpret_cast<uintptr_t>(memory);
  state().allocations[*address] = bytes;
  return kSuccess;
}

int release(uint64_t address) {
  State &s = state();
  auto found = s.allocations.find(address);
  if (found == s.allocations.end())
    return refuse("free of " + hex(address) + ", which is not allocated");
  std::free(reinterpret_cast<void *>(address));
  s.allocations.erase(found);
  return kSuccess;
}

/// The `.entry` declarations of a PTX module: each parameter's size and
/// whether it is declared `.ptr`.
bool parseEntries(const std::string &ptx, Module &module) {
  size_t at = 0;
  while ((at = ptx.find(".entry ", at)) != std::string::npos) {
    at += 7;
    size_t open = ptx.find('(', at), close = ptx.find(')', open);
    if (open == std::string::npos || close == std::string::npos)
      return false;
    std::string name = ptx.substr(at, open - at);
    while (!name.empty() && name.back() == ' ')
      name.pop_back();
    Entry &entry = module.entries[name];
    std::istringstream params(ptx.substr(open + 1, close - open - 1));
    std::string param;
    while (std::getline(params, param, ',')) {
      if (param.find(".param") == std::string::npos)
        continue;
      unsigned bytes = 0;
      for (const char *type : {".u64", ".s64", ".b64", ".f64"})
        if (param.find(type) != std::string::npos)
          bytes = 8;
      for (const char *type : {".u32", ".s32", ".b32", ".f32"})
        if (param.find(type) != std::string::npos)
          bytes = 4;
      if (!bytes)
        return false;
      entry.paramBytes.push_back(bytes);
      entry.paramIsPointer.push_back(param.find(".ptr") != std::string::npos);
    }
  }
  return !module.entries.empty();
}

} // namespace

namespace fake_cuda {

void reset() {
  State &s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  s.launches.clear();
  s.log.clear();
  s.failures.clear();
  s.hook = nullptr;
  s.violation.clear();
  s.multiprocessors = 132;
}

void setDevice(int major, int minor, int sharedBytesOptin) {
  State &s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  s.major = major;
  s.minor = minor;
  s.sharedOptin = sharedBytesOptin;
}

void setMultiprocessors(int count) {
  std::lock_guard<std::recursive_mutex> lock(state().mutex);
  state().multiprocessors = count;
}

void failNext(const std::string &entryPoint, int result) {
  std::lock_guard<std::recursive_mutex> lock(state().mutex);
  state().failures[entryPoint] = result;
}

void onLaunch(std::function<void(const Launch &)> hook) {
  std::lock_guard<std::recursive_mutex> lock(state().mutex);
  state().hook = std::move(hook);
}

const std::vector<Launch> &launches() { return state().launches; }
const std::vector<std::string> &callLog() { return state().log; }

size_t allocationBytes(uint64_t address) {
  std::lock_guard<std::recursive_mutex> lock(state().mutex);
  auto found = state().allocations.find(address);
  return found == state().allocations.end() ? 0 : found->second;
}

size_t liveAllocations() {
  std::lock_guard<std::recursive_mutex> lock(state().mutex);
  return state().allocations.size();
}

const std::string &lastViolation() { return state().violation; }

} // namespace fake_cuda

#define FAKE_ENTRY(name)                                                       \
  std::lock_guard<std::recursive_mutex> lock(state().mutex);                   \
  if (int result = injected(name))                                             \
    return result;

extern "C" {

int cuInit(unsigned) {
  FAKE_ENTRY("cuInit");
  return kSuccess;
}

int cuDeviceGet(int *device, int ordinal) {
  FAKE_ENTRY("cuDeviceGet");
  if (ordinal != 0)
    return refuse("only device 0 exists");
  *device = 0;
  return kSuccess;
}

int cuDeviceGetAttribute(int *value, int attribute, int) {
  FAKE_ENTRY("cuDeviceGetAttribute");
  switch (attribute) {
  case 75: // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    *value = state().major;
    return kSuccess;
  case 76: // ..._MINOR
    *value = state().minor;
    return kSuccess;
  case 97: // ..._MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    *value = state().sharedOptin;
    return kSuccess;
  case 16: // ..._MULTIPROCESSOR_COUNT
    *value = state().multiprocessors;
    return kSuccess;
  }
  return refuse("device attribute " + std::to_string(attribute) +
                " is not faked");
}

int cuDevicePrimaryCtxRetain(void **context, int) {
  FAKE_ENTRY("cuDevicePrimaryCtxRetain");
  *context = &state().primaryContext;
  return kSuccess;
}

int cuCtxSetCurrent(void *context) {
  FAKE_ENTRY("cuCtxSetCurrent");
  state().context = context;
  return kSuccess;
}

int cuCtxGetCurrent(void **context) {
  FAKE_ENTRY("cuCtxGetCurrent");
  *context = state().context;
  return kSuccess;
}

int cuModuleLoadData(void **module, const void *image) {
  FAKE_ENTRY("cuModuleLoadData");
  auto *loaded = new Module();
  if (!parseEntries(static_cast<const char *>(image), *loaded)) {
    delete loaded;
    state().violation = "the image is not PTX with .entry declarations";
    return kInvalidPtx;
  }
  *module = loaded;
  return kSuccess;
}

int cuModuleUnload(void *module) {
  FAKE_ENTRY("cuModuleUnload");
  delete static_cast<Module *>(module);
  return kSuccess;
}

int cuModuleGetFunction(void **function, void *module, const char *name) {
  FAKE_ENTRY("cuModuleGetFunction");
  auto &entries = static_cast<Module *>(module)->entries;
  auto found = entries.find(name);
  if (found == entries.end())
    return kNotFound;
  *function = &*found;
  return kSuccess;
}

int cuFuncSetAttribute(void *function, int attribute, int value) {
  FAKE_ENTRY("cuFuncSetAttribute");
  if (attribute != 8) // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    return refuse("function attribute " + std::to_string(attribute) +
                  " is not faked");
  if (value > state().sharedOptin)
    return refuse("dynamic shared memory " + std::to_string(value) +
                  " exceeds the device's opt-in limit");
  static_cast<std::pair<const std::string, Entry> *>(function)
      ->second.maxDynamicShared = value;
  return kSuccess;
}

/// A multiprocessor of 2048 threads and 228 KiB of shared memory (1 KiB of
/// it reserved per CTA), registers ignored.
int cuOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, void *function,
                                                int blockSize,
                                                size_t dynamicSharedBytes) {
  FAKE_ENTRY("cuOccupancyMaxActiveBlocksPerMultiprocessor");
  const Entry &entry =
      static_cast<std::pair<const std::string, Entry> *>(function)->second;
  if (blockSize <= 0)
    return refuse("occupancy of an empty block");
  if (dynamicSharedBytes > static_cast<size_t>(entry.maxDynamicShared))
    return refuse("occupancy with more dynamic shared memory than the "
                  "function allows");
  *blocks =
      std::min<int>(2048 / blockSize, 228 * 1024 / (dynamicSharedBytes + 1024));
  return kSuccess;
}

int cuLaunchKernel(void *function, unsigned gridX, unsigned gridY,
                   unsigned gridZ, unsigned blockX, unsigned blockY,
                   unsigned blockZ, unsigned sharedBytes, void *stream,
                   void **params, void **extra) {
  FAKE_ENTRY("cuLaunchKernel");
  auto &[name, entry] =
      *static_cast<std::pair<const std::string, Entry> *>(function);
  if (extra)
    return refuse("launch with `extra` arguments");
  if (!gridX || !gridY || !gridZ || gridY > 65535 || gridZ > 65535)
    return refuse("bad grid");
  if (!blockX || blockX * blockY * blockZ > 1024)
    return refuse("bad CTA size");
  if (static_cast<int>(sharedBytes) > entry.maxDynamicShared)
    return refuse(std::to_string(sharedBytes) +
                  " bytes of dynamic shared memory without the function "
                  "attribute that allows them");
  fake_cuda::Launch launch{name,
                           {gridX, gridY, gridZ},
                           {blockX, blockY, blockZ},
                           sharedBytes,
                           stream,
                           {}};
  for (size_t index = 0; index < entry.paramBytes.size(); ++index) {
    uint64_t value = 0;
    std::memcpy(&value, params[index], entry.paramBytes[index]);
    if (entry.paramIsPointer[index] && value && !inAllocation(value, 1))
      return refuse("parameter " + std::to_string(index) +
                    " is a pointer but holds " + hex(value) +
                    ", which is not device memory");
    launch.params.push_back(value);
  }
  record("cuLaunchKernel", stream, 0);
  state().launches.push_back(launch);
  if (state().hook)
    state().hook(state().launches.back());
  return kSuccess;
}

int cuMemAlloc_v2(uint64_t *address, size_t bytes) {
  FAKE_ENTRY("cuMemAlloc_v2");
  int result = allocate(address, bytes);
  if (result == kSuccess)
    record("cuMemAlloc", nullptr, *address);
  return result;
}

int cuMemFree_v2(uint64_t address) {
  FAKE_ENTRY("cuMemFree_v2");
  record("cuMemFree", nullptr, address);
  return release(address);
}

int cuMemAllocAsync(uint64_t *address, size_t bytes, void *stream) {
  FAKE_ENTRY("cuMemAllocAsync");
  int result = allocate(address, bytes);
  if (result == kSuccess)
    record("cuMemAllocAsync", stream, *address);
  return result;
}

int cuMemFreeAsync(uint64_t address, void *stream) {
  FAKE_ENTRY("cuMemFreeAsync");
  record("cuMemFreeAsync", stream, address);
  return release(address);
}

int cuMemsetD8Async(uint64_t address, unsigned char value, size_t bytes,
                    void *stream) {
  FAKE_ENTRY("cuMemsetD8Async");
  if (!inAllocation(address, bytes))
    return refuse("memset outside device memory");
  record("cuMemsetD8Async", stream, address);
  std::memset(reinterpret_cast<void *>(address), value, bytes);
  return kSuccess;
}

int cuMemcpyDtoH_v2(void *host, uint64_t address, size_t bytes) {
  FAKE_ENTRY("cuMemcpyDtoH_v2");
  if (!inAllocation(address, bytes))
    return refuse("copy from outside device memory");
  std::memcpy(host, reinterpret_cast<const void *>(address), bytes);
  return kSuccess;
}

int cuMemcpyHtoD_v2(uint64_t address, const void *host, size_t bytes) {
  FAKE_ENTRY("cuMemcpyHtoD_v2");
  if (!inAllocation(address, bytes))
    return refuse("copy to outside device memory");
  std::memcpy(reinterpret_cast<void *>(address), host, bytes);
  return kSuccess;
}

int cuStreamSynchronize(void *stream) {
  FAKE_ENTRY("cuStreamSynchronize");
  record("cuStreamSynchronize", stream, 0);
  return kSuccess;
}

int cuGetErrorString(int result, const char **text) {
  switch (result) {
  case kInvalidValue:
    *text = "CUDA_ERROR_INVALID_VALUE (fake)";
    return kSuccess;
  case kOutOfMemory:
    *text = "CUDA_ERROR_OUT_OF_MEMORY (fake)";
    return kSuccess;
  case kInvalidPtx:
    *text = "CUDA_ERROR_INVALID_PTX (fake)";
    return kSuccess;
  case kNotFound:
    *text = "CUDA_ERROR_NOT_FOUND (fake)";
    return kSuccess;
  }
  *text = nullptr;
  return kInvalidValue;
}

} // extern "C"
