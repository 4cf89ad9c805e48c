//===- GpuEmulator.cpp - Run the GPU kernels on the CPU ------------------===//

#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/Inputs.h"
#include "attnc/Runtime/CudaRuntime.h"
#include "attnc/Runtime/HalfFloat.h"
#include "attnc/Target/NVVM/MmaLayout.h"

#include "FiberSwitch.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ExecutionEngine/Orc/Mangling.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>
#include <deque>
#include <map>
#include <type_traits>

using namespace mlir;
using namespace attnc;

namespace {

/// The GPU threads of a CTA are fibers on one OS thread, switched only at
/// barriers and warp collectives: cheap switches, and a deterministic
/// schedule.
struct Fiber;
struct Scheduler {
  FiberContext context;
  Fiber *current = nullptr;
  /// Bumped whenever a barrier opens or a fiber ends; a full round of the
  /// fibers without progress is a deadlock (a divergent collective).
  int64_t progress = 0;
};
thread_local Scheduler scheduler;

void yieldToScheduler();

/// A reusable barrier for `count` fibers.
class Barrier {
public:
  explicit Barrier(int count) : count(count) {}
  void wait() {
    int64_t generation = phase;
    if (++arrived == count) {
      arrived = 0;
      ++phase;
      ++scheduler.progress;
      return;
    }
    while (phase == generation)
      yieldToScheduler();
  }

private:
  int count, arrived = 0;
  int64_t phase = 0;
};

constexpr int kLanes = nvvm::kWarpSize;

/// What the 32 threads of one warp exchange in a collective.
struct Warp {
  Barrier barrier{kLanes};
  int64_t addresses[kLanes];
  float values[kLanes];
  uint32_t a[kLanes][4], b[kLanes][2];
  float c[kLanes][4];
};

constexpr int kWarpgroupThreads = nvvm::kWarpgroupWarps * kLanes;

/// What the 128 threads of one warpgroup exchange in a wgmma: the A
/// operand when it comes from registers.
struct Warpgroup {
  Barrier barrier{kWarpgroupThreads};
  uint32_t a[kWarpgroupThreads][4];
};

/// The shared-memory elements some wgmma read when it was issued, with
/// their bits then. The emulator computes a wgmma at once, but the GPU may
/// read its operands until the wgmma.wait_group that retires it: a change
/// before then is a race the emulator's results would not show.
struct WgmmaGroup {
  std::vector<std::pair<int64_t, uint16_t>> reads;
  int issued = 0;
};

/// An mbarrier: `count` arrivals complete a phase.
struct MBarrier {
  int count = 0, pending = 0;
  int64_t completedPhases = 0;
};

struct Cta {
  explicit Cta(int threads, int64_t sharedBytes)
      : shared(sharedBytes, 0), barrier(threads), warps(threads / kLanes),
        warpgroups((threads + kWarpgroupThreads - 1) / kWarpgroupThreads) {}
  std::vector<uint8_t> shared;
  Barrier barrier;
  std::vector<Warp> warps;
  std::vector<Warpgroup> warpgroups;
  int64_t block[3] = {0, 0, 0}, grid[3] = {1, 1, 1};
  bool bf16 = true;
  std::map<int32_t, MBarrier> mbarriers;
  /// The first misuse of wgmma (see WgmmaGroup) or of an mbarrier found,
  /// reported after the CTA.
  std::string hazard;
  /// Why a thread stopped the CTA (stopCta); the run ends with it.
  std::string fault;
};

struct Lane {
  Cta *cta = nullptr;
  int thread = 0;
  uint32_t matrices[4];
  float d[4];
  /// This thread's wgmma accumulators (m64nNk16: N / 2 registers).
  float wgmmaAccumulators[128];
  /// wgmma issued since the last commit, and the committed groups that no
  /// wait has retired yet, oldest first.
  WgmmaGroup uncommitted;
  std::deque<WgmmaGroup> inFlight;
  Warp &warp() const { return cta->warps[thread / kLanes]; }
  int lane() const { return thread % kLanes; }
};

struct Fiber {
  FiberContext context;
  /// Left uninitialised: only the pages the thread touches are mapped.
  std::unique_ptr<char[]> stack;
  Lane lane;
  bool done = false;
};

/// The state of the running fiber.
Lane &current() { return scheduler.current->lane; }

void yieldToScheduler() {
  switchFiber(scheduler.current->context, scheduler.context);
}

/// Ends the run at once: records `message` for the running thread and
/// leaves its fiber for good (run() reports the fault and abandons the
/// CTA), so the faulty access is never made.
[[noreturn]] void stopCta(const std::string &message) {
  Lane &self = current();
  Cta &cta = *self.cta;
  if (cta.fault.empty())
    cta.fault = "thread " + std::to_string(self.thread) + " of CTA (" +
                std::to_string(cta.block[0]) + ", " +
                std::to_string(cta.block[1]) + ", " +
                std::to_string(cta.block[2]) + "): " + message;
  yieldToScheduler();
  llvm_unreachable("a stopped CTA is never resumed");
}

/// The 16-bit shared-memory element at `byte`, which `what` reads.
uint16_t sharedBits(int64_t byte, const char *what) {
  const std::vector<uint8_t> &shared = current().cta->shared;
  if (byte < 0 || byte + 2 > static_cast<int64_t>(shared.size()))
    stopCta(std::string(what) + " reads shared byte " + std::to_string(byte) +
            ", outside the " + std::to_string(shared.size()) +
            " bytes the kernel declares");
  uint16_t bits;
  std::memcpy(&bits, &shared[byte], 2);
  return bits;
}

/// The running kernel's guarded accesses, for attnc_emu_check_access.
thread_local const std::vector<EmulatedGpuKernel::AccessSite> *runningSites;

/// Called before each guarded access; `outside` when an index is outside
/// its memref.
extern "C" void attnc_emu_check_access(int32_t outside, int32_t site,
                                       int64_t i0, int64_t i1, int64_t i2,
                                       int64_t i3, int64_t i4, int64_t i5,
                                       int64_t i6, int64_t i7, int64_t s0,
                                       int64_t s1, int64_t s2, int64_t s3,
                                       int64_t s4, int64_t s5, int64_t s6,
                                       int64_t s7) {
  if (!outside)
    return;
  static_assert(kMaxGuardedRank == 8, "the hook takes 8 indices and sizes");
  const EmulatedGpuKernel::AccessSite &access = (*runningSites)[site];
  std::vector<int64_t> indices = {i0, i1, i2, i3, i4, i5, i6, i7};
  std::vector<int64_t> sizes = {s0, s1, s2, s3, s4, s5, s6, s7};
  indices.resize(access.rank);
  sizes.resize(access.rank);
  stopCta(access.what + " at " + shapeString(indices) + ", outside its shape " +
          shapeString(sizes));
}

float toFloat(uint16_t bits, bool bf16) {
  return bf16 ? bfloat16ToFloat(bits) : halfToFloat(bits);
}

extern "C" int64_t attnc_emu_thread_id() { return current().thread; }
extern "C" int64_t attnc_emu_block_id(int64_t axis) {
  return current().cta->block[axis];
}
extern "C" int64_t attnc_emu_grid_dim(int64_t axis) {
  return current().cta->grid[axis];
}
extern "C" void attnc_emu_barrier() { current().cta->barrier.wait(); }

extern "C" float attnc_emu_shfl_xor(float value, int32_t offset) {
  Warp &warp = current().warp();
  warp.values[current().lane()] = value;
  warp.barrier.wait();
  float other = warp.values[current().lane() ^ offset];
  warp.barrier.wait();
  return other;
}

/// ldmatrix.x{count}[.trans]: each lane gives the byte offset of one row;
/// register m of a lane holds two 16-bit elements of matrix m.
extern "C" int32_t attnc_emu_ldmatrix(int64_t address, int32_t count,
                                      int32_t transpose, int32_t reg) {
  if (reg == 0) {
    Warp &warp = current().warp();
    warp.addresses[current().lane()] = address;
    warp.barrier.wait();
    for (int matrix = 0; matrix < count; ++matrix) {
      uint32_t packed = 0;
      for (int element = 0; element < 2; ++element) {
        nvvm::MatrixCoord at =
            nvvm::ldmatrixElement(current().lane(), element, transpose != 0);
        int64_t rowAddress = warp.addresses[matrix * 8 + at.row];
        uint16_t bits = sharedBits(rowAddress + 2 * at.col, "ldmatrix");
        packed |= static_cast<uint32_t>(bits) << (16 * element);
      }
      current().matrices[matrix] = packed;
    }
    warp.barrier.wait();
  }
  return static_cast<int32_t>(current().matrices[reg]);
}

/// mma.sync.m16n8k16 with f32 accumulators; `which` selects d[r][e] as
/// 2r + e. The warp collective happens on which == 0.
extern "C" float attnc_emu_mma(int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                               int32_t b0, int32_t b1, float c0, float c1,
                               float c2, float c3, int32_t bf16,
                               int32_t which) {
  if (which == 0) {
    Warp &warp = current().warp();
    int lane = current().lane();
    uint32_t a[4] = {uint32_t(a0), uint32_t(a1), uint32_t(a2), uint32_t(a3)};
    std::copy(a, a + 4, warp.a[lane]);
    warp.b[lane][0] = uint32_t(b0);
    warp.b[lane][1] = uint32_t(b1);
    float c[4] = {c0, c1, c2, c3};
    std::copy(c, c + 4, warp.c[lane]);
    warp.barrier.wait();
    float A[16][16], B[16][8], C[16][8];
    for (int other = 0; other < kLanes; ++other)
      for (int e = 0; e < 2; ++e) {
        for (int r = 0; r < nvvm::kARegisters; ++r) {
          nvvm::MatrixCoord at = nvvm::mmaACoord(other, r, e);
          A[at.row][at.col] = toFloat(warp.a[other][r] >> (16 * e), bf16);
        }
        for (int r = 0; r < nvvm::kBRegisters; ++r) {
          nvvm::MatrixCoord at = nvvm::mmaBCoord(other, r, e);
          B[at.row][at.col] = toFloat(warp.b[other][r] >> (16 * e), bf16);
        }
        for (int r = 0; r < nvvm::kCRegisters; ++r) {
          nvvm::MatrixCoord at = nvvm::mmaCCoord(other, r, e);
          C[at.row][at.col] = warp.c[other][2 * r + e];
        }
      }
    for (int r = 0; r < nvvm::kCRegisters; ++r)
      for (int e = 0; e < 2; ++e) {
        nvvm::MatrixCoord at = nvvm::mmaCCoord(lane, r, e);
        float sum = C[at.row][at.col];
        for (int k = 0; k < nvvm::kMmaK; ++k)
          sum += A[at.row][k] * B[k][at.col];
        current().d[2 * r + e] = sum;
      }
    warp.barrier.wait();
  }
  return current().d[which];
}

extern "C" void attnc_emu_wgmma_set(int32_t reg, float value) {
  current().wgmmaAccumulators[reg] = value;
}
extern "C" float attnc_emu_wgmma_get(int32_t reg) {
  return current().wgmmaAccumulators[reg];
}

void reportHazard(const std::string &what, const std::string &message) {
  Lane &self = current();
  if (self.cta->hazard.empty())
    self.cta->hazard =
        what + ": thread " + std::to_string(self.thread) + ": " + message;
}
void reportWgmmaHazard(const std::string &message) {
  reportHazard("misuses wgmma", message);
}

extern "C" void attnc_emu_wgmma_commit() {
  Lane &self = current();
  self.inFlight.push_back(std::move(self.uncommitted));
  self.uncommitted = WgmmaGroup();
}

/// wgmma.wait_group `pending`: retires all but the `pending` newest groups,
/// checking that the shared memory they read is unchanged.
extern "C" void attnc_emu_wgmma_wait(int32_t pending) {
  Lane &self = current();
  if (self.uncommitted.issued)
    reportWgmmaHazard("wgmma.wait_group with uncommitted wgmma (a missing "
                      "wgmma.commit_group)");
  while (self.inFlight.size() > static_cast<size_t>(pending)) {
    for (auto [byte, bits] : self.inFlight.front().reads) {
      uint16_t now;
      std::memcpy(&now, &self.cta->shared[byte], 2);
      if (now != bits) {
        reportWgmmaHazard("shared byte " + std::to_string(byte) +
                          ", an operand of an in-flight wgmma, changed "
                          "before the wgmma.wait_group that retires it");
        break;
      }
    }
    self.inFlight.pop_front();
  }
}

/// An mbarrier, for reports (ids are bytes in shared memory).
std::string mbarrierName(int32_t id) {
  return "misuses the mbarrier at shared byte " + std::to_string(id);
}

extern "C" void attnc_emu_mbarrier_init(int32_t id, int32_t count) {
  MBarrier &barrier = current().cta->mbarriers[id];
  if (barrier.count)
    reportHazard(mbarrierName(id), "initialised twice");
  barrier.count = barrier.pending = count;
}

MBarrier *initialisedMBarrier(int32_t id) {
  auto &barriers = current().cta->mbarriers;
  auto found = barriers.find(id);
  if (found != barriers.end())
    return &found->second;
  reportHazard(mbarrierName(id), "used before mbarrier.init");
  return nullptr;
}

extern "C" void attnc_emu_mbarrier_arrive(int32_t id) {
  MBarrier *barrier = initialisedMBarrier(id);
  if (!barrier || --barrier->pending > 0)
    return;
  barrier->pending = barrier->count;
  ++barrier->completedPhases;
  ++scheduler.progress;
}

/// mbarrier.try_wait.parity in a loop: returns once the phase with this
/// parity has completed, i.e. the current phase has the other parity.
extern "C" void attnc_emu_mbarrier_wait(int32_t id, int32_t parity) {
  MBarrier *barrier = initialisedMBarrier(id);
  if (!barrier)
    return;
  while ((barrier->completedPhases & 1) == parity)
    yieldToScheduler();
}

/// wgmma.mma_async.m64n{n}k16 with f32 accumulators (the ones set by
/// attnc_emu_wgmma_set), completed at once: A from registers a0-a3 when
/// `aFromRegisters`, else through `descA` (K-major); B through `descB`,
/// K-major or, with `transB`, MN-major. A warpgroup collective.
extern "C" void attnc_emu_wgmma(int64_t descA, int32_t a0, int32_t a1,
                                int32_t a2, int32_t a3, int32_t aFromRegisters,
                                int64_t descB, int32_t n, int32_t transB,
                                int32_t bf16) {
  Lane &self = current();
  int thread = self.thread % kWarpgroupThreads;
  Warpgroup &group = self.cta->warpgroups[self.thread / kWarpgroupThreads];
  uint32_t registers[4] = {uint32_t(a0), uint32_t(a1), uint32_t(a2),
                           uint32_t(a3)};
  std::copy(registers, registers + 4, group.a[thread]);
  group.barrier.wait();
  ++self.uncommitted.issued;
  // Operand reads, recorded for the race check by one thread per distinct
  // read: lane 0 of each warp for A's rows, threads 0-3 for B's columns.
  auto read = [&](int64_t byte, bool record) {
    uint16_t bits = sharedBits(byte, "wgmma");
    if (record)
      self.uncommitted.reads.push_back({byte, bits});
    return toFloat(bits, bf16);
  };
  // The 16 rows of A that this thread's warp holds of D.
  int rowBase = thread / kLanes * nvvm::kMmaM;
  float A[nvvm::kMmaM][nvvm::kWgmmaK];
  if (aFromRegisters) {
    for (int lane = 0; lane < kLanes; ++lane) {
      int other = rowBase / nvvm::kMmaM * kLanes + lane;
      for (int r = 0; r < 4; ++r)
        for (int e = 0; e < 2; ++e) {
          nvvm::MatrixCoord at = nvvm::wgmmaACoord(other, r, e);
          A[at.row - rowBase][at.col] =
              toFloat(group.a[other][r] >> (16 * e), bf16);
        }
    }
  } else {
    nvvm::DescriptorFields fields = nvvm::decodeWgmmaDescriptor(descA);
    nvvm::SharedOperand operand{nvvm::Majorness::K, 2, fields.leadingBytes,
                                fields.strideBytes};
    for (int row = 0; row < nvvm::kMmaM; ++row)
      for (int k = 0; k < nvvm::kWgmmaK; ++k)
        A[row][k] = read(fields.start + operand.offset(rowBase + row, k),
                         self.lane() == 0);
  }
  nvvm::DescriptorFields fields = nvvm::decodeWgmmaDescriptor(descB);
  nvvm::SharedOperand operand{transB ? nvvm::Majorness::MN : nvvm::Majorness::K,
                              2, fields.leadingBytes, fields.strideBytes};
  for (int reg = 0; reg < n / 2; ++reg) {
    nvvm::MatrixCoord at = nvvm::wgmmaDCoord(thread, reg);
    float sum = self.wgmmaAccumulators[reg];
    for (int k = 0; k < nvvm::kWgmmaK; ++k)
      sum += A[at.row - rowBase][k] *
             read(fields.start + operand.offset(at.col, k), thread < 4);
    self.wgmmaAccumulators[reg] = sum;
  }
  group.barrier.wait();
}

/// The wait of a segmented kernel for its predecessor's state: CTAs run in
/// ticket order here, so an unset flag is a bug in the kernel, not a race.
extern "C" void attnc_emu_expect_published(int32_t flag) {
  if (flag == 0)
    stopCta("awaits a segment state that no earlier CTA published");
}

/// A pointer to a function of EmulatorAbi.def: RESULT(*)(ARGUMENTS...).
template <typename Result, typename... Args>
using AbiFunction = Result (*)(Args...);

/// Memref descriptor fields of a view: pointers, offset, sizes, strides.
std::vector<int64_t> descriptorOf(void *data, const std::vector<int64_t> &shape,
                                  const std::vector<int64_t> &strides) {
  std::vector<int64_t> descriptor = {reinterpret_cast<int64_t>(data),
                                     reinterpret_cast<int64_t>(data), 0};
  descriptor.insert(descriptor.end(), shape.begin(), shape.end());
  if (strides.empty()) {
    std::vector<int64_t> contiguous(shape.size(), 1);
    for (size_t d = shape.size(); d-- > 1;)
      contiguous[d - 1] = contiguous[d] * shape[d];
    descriptor.insert(descriptor.end(), contiguous.begin(), contiguous.end());
  } else {
    descriptor.insert(descriptor.end(), strides.begin(), strides.end());
  }
  return descriptor;
}

/// The accesses that attnc-guard-emulated-accesses guarded in `func`, named
/// for reports: the kernel's tensors by name, shared tiles by offset.
std::vector<EmulatedGpuKernel::AccessSite>
describeAccessSites(func::FuncOp func, const GpuImage &launch) {
  const KernelSignature &signature = launch.signature;
  size_t params = signature.params.size();
  size_t results = signature.results.size();
  size_t shared = func.getNumArguments() - 1;
  auto sites = func->getAttrOfType<ArrayAttr>(kAccessSitesAttrName);
  std::vector<EmulatedGpuKernel::AccessSite> described;
  for (auto site : sites.getAsRange<DictionaryAttr>()) {
    std::string what = cast<StringAttr>(site.get("op")).str() + " of ";
    auto type = cast<MemRefType>(cast<TypeAttr>(site.get("type")).getValue());
    auto argument = dyn_cast_or_null<IntegerAttr>(site.get("argument"));
    auto byte = dyn_cast_or_null<IntegerAttr>(site.get("byte"));
    size_t number = argument ? argument.getInt() : 0;
    if (!argument)
      what += site.get("local") ? "a thread-local buffer" : "a memref";
    else if (number < params)
      what += "input '" + signature.params[number].name + "'";
    else if (number < params + results)
      what += "output '" + signature.results[number - params].name + "'";
    else if (number == shared)
      what += "shared memory";
    else if (number == params + results)
      what += "the status buffer";
    else
      what += "the workspace";
    if (byte)
      what += " (tile at byte " + std::to_string(byte.getInt()) + ")";
    if (type.hasStaticShape()) // dynamic sizes are in the report
      llvm::raw_string_ostream(what) << " " << type;
    described.push_back({what, static_cast<size_t>(type.getRank())});
  }
  return described;
}

} // namespace

EmulatedGpuKernel::~EmulatedGpuKernel() = default;

std::unique_ptr<EmulatedGpuKernel> EmulatedGpuKernel::compile(
    ModuleOp module, llvm::StringRef name, const GpuPipelineOptions &options,
    std::string &error, const std::function<void(ModuleOp)> &plant) {
  OwningOpRef<ModuleOp> clone = module.clone();
  attn::KernelOp kernel = keepOnlyKernel(*clone, name, error);
  if (!kernel)
    return nullptr;
  std::unique_ptr<EmulatedGpuKernel> result(new EmulatedGpuKernel());
  GpuImage &launch = result->launch;
  launch.target = "emulator";
  launch.signature = getKernelSignature(kernel);
  launch.roles = getParamRoles(kernel);

  MLIRContext *context = module.getContext();
  std::string diagnostics;
  ScopedDiagnosticHandler handler(context, [&](Diagnostic &diag) {
    diagnostics += diag.str() + "\n";
    return success();
  });
  PassManager tile(context);
  addEmulatorStrategies(tile, options);
  if (failed(tile.run(*clone))) {
    error = diagnostics.empty() ? "the GPU strategy failed" : diagnostics;
    return nullptr;
  }
  func::FuncOp func = clone->lookupSymbol<func::FuncOp>(launch.signature.name);
  readLaunchAttributes(func, launch);
  if (plant)
    plant(*clone);
  PassManager guard(context);
  guard.addPass(createGuardEmulatedAccesses());
  if (failed(guard.run(*clone))) {
    error = "guarding the emulated kernel's accesses failed: " + diagnostics;
    return nullptr;
  }
  result->accessSites = describeAccessSites(func, launch);

  PassManager lower(context);
  buildLowerToLLVMPipeline(lower);
  if (failed(lower.run(*clone))) {
    error = "lowering the emulated kernel failed: " + diagnostics;
    return nullptr;
  }
  // Unoptimised: the kernels spend their time in the attnc_emu_* calls, and
  // a test compiles many of them for a few short runs each.
  result->engine = jitCompile(*clone, /*optLevel=*/0, error);
  if (!result->engine)
    return nullptr;
  result->engine->registerSymbols([](llvm::orc::MangleAndInterner interner) {
    llvm::orc::SymbolMap symbols;
    auto add = [&](const char *symbol, auto *function) {
      symbols[interner(symbol)] = {llvm::orc::ExecutorAddr::fromPtr(function),
                                   llvm::JITSymbolFlags::Exported};
    };
#define ATTNC_EMULATOR_FUNCTION(NAME, ...)                                     \
  static_assert(std::is_same_v<decltype(&NAME), AbiFunction<__VA_ARGS__>>,     \
                #NAME " differs from EmulatorAbi.def");                        \
  add(#NAME, &NAME);
#include "attnc/Conversion/NVGPUToEmulator/EmulatorAbi.def"
#undef ATTNC_EMULATOR_FUNCTION
    return symbols;
  });
  auto entry =
      result->engine->lookupPacked("_mlir_ciface_" + launch.signature.name);
  if (!entry) {
    error = "the emulated kernel has no entry: " +
            llvm::toString(entry.takeError());
    return nullptr;
  }
  result->entry = *entry;
  return result;
}

bool EmulatedGpuKernel::run(const std::vector<const TensorView *> &inputs,
                            std::vector<HostTensor> &outputs,
                            std::string &error) {
  const KernelSignature &signature = launch.signature;
  DimBindings bindings;
  std::vector<std::vector<int64_t>> shapes;
  if (inputs.size() != signature.params.size()) {
    error = "kernel '" + signature.name + "' takes " +
            std::to_string(signature.params.size()) + " inputs";
    return false;
  }
  if (!bindInputShapes(signature, inputs, bindings, error) ||
      !launch.outputShapes(inputs, bindings, shapes, error))
    return false;
  outputs.clear();
  for (size_t r = 0; r < shapes.size(); ++r)
    outputs.emplace_back(signature.results[r].type, shapes[r]);
  std::vector<TensorView> views;
  for (HostTensor &output : outputs)
    views.push_back(output.view());
  std::vector<TensorView *> pointers;
  for (TensorView &view : views)
    pointers.push_back(&view);
  return run(inputs, pointers, error);
}

bool EmulatedGpuKernel::run(const std::vector<const TensorView *> &inputs,
                            const std::vector<TensorView *> &outputs,
                            std::string &error) {
  const KernelSignature &signature = launch.signature;
  if (!checkGpuLaunch(launch, inputs, outputs, error))
    return false;

  std::vector<std::vector<int64_t>> descriptors;
  for (size_t p = 0; p < inputs.size(); ++p) {
    size_t rank = signature.params[p].dims.size();
    if (inputs[p])
      descriptors.push_back(
          descriptorOf(inputs[p]->data, inputs[p]->shape, inputs[p]->strides));
    else
      descriptors.push_back(descriptorOf(nullptr, std::vector<int64_t>(rank, 0),
                                         std::vector<int64_t>(rank, 0)));
  }
  for (TensorView *output : outputs)
    descriptors.push_back(
        descriptorOf(output->data, output->shape, output->strides));
  int64_t status[kStatusWords] = {};
  descriptors.push_back(descriptorOf(status, {kStatusWords}, {1}));
  std::array<int64_t, 3> grid = launch.gridFor(inputs, resident);
  // Partial results are sums over the CTAs; with none they are zero.
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0)
    for (int64_t result : launch.partialResults)
      zeroElements(*outputs[result]);
  // CTAs run one after another in ticket order, so every flag a CTA awaits
  // is already set (attnc_emu_expect_published).
  std::vector<int32_t> workspace;
  if (launch.usesWorkspace()) {
    std::vector<std::vector<int64_t>> resultShapes;
    for (TensorView *output : outputs)
      resultShapes.push_back(output->shape);
    workspace.assign(
        launchWorkspace(launch, grid, argumentShapes(inputs, resultShapes))
                .totalBytes /
            4,
        0);
    // As words, and again as the f32 scratch of kernels that have one.
    for (int view = 0; view < (launch.scratchWords.empty() ? 1 : 2); ++view)
      descriptors.push_back(descriptorOf(
          workspace.data(), {static_cast<int64_t>(workspace.size())}, {1}));
  }
  size_t sharedSlot = descriptors.size();
  descriptors.push_back({});

  // Fibers and their stacks are reused by every CTA. The unoptimised
  // kernels of the tests use up to 68 KiB (the softmax backward at head dim
  // 128).
  constexpr size_t kStackBytes = 256 * 1024;
  std::vector<Fiber> fibers(launch.threads);
  for (Fiber &fiber : fibers)
    fiber.stack.reset(new char[kStackBytes]);
  runningSites = &accessSites;
  static thread_local void **packedArgs;
  static thread_local void (*kernelEntry)(void **);
  kernelEntry = entry;
  int64_t ctas = grid[0] * grid[1] * grid[2];
  for (int64_t position = 0; position < ctas; ++position) {
    int64_t linear = reverseCtaOrder ? ctas - 1 - position : position;
    Cta cta(static_cast<int>(launch.threads), launch.sharedBytes);
    cta.block[0] = linear % grid[0];
    cta.block[1] = linear / grid[0] % grid[1];
    cta.block[2] = linear / grid[0] / grid[1];
    std::copy(grid.begin(), grid.end(), cta.grid);
    descriptors[sharedSlot] =
        descriptorOf(cta.shared.data(), {launch.sharedBytes}, {1});
    std::vector<void *> pointers, packed;
    for (std::vector<int64_t> &descriptor : descriptors)
      pointers.push_back(descriptor.data());
    for (void *&pointer : pointers)
      packed.push_back(&pointer);
    packedArgs = packed.data();
    for (int t = 0; t < launch.threads; ++t) {
      Fiber &fiber = fibers[t];
      fiber.lane = Lane();
      fiber.lane.cta = &cta;
      fiber.lane.thread = t;
      fiber.done = false;
      prepareFiber(
          fiber.context, fiber.stack.get(), kStackBytes, +[] {
            kernelEntry(packedArgs);
            scheduler.current->done = true;
            ++scheduler.progress;
            yieldToScheduler();
            llvm_unreachable("a finished thread is never resumed");
          });
    }
    int remaining = static_cast<int>(launch.threads);
    while (remaining > 0) {
      int64_t before = scheduler.progress;
      for (Fiber &fiber : fibers) {
        if (fiber.done)
          continue;
        int64_t last = scheduler.progress;
        scheduler.current = &fiber;
        switchFiber(scheduler.context, fiber.context);
        if (!cta.fault.empty()) {
          error = "the emulated kernel stopped: " + cta.fault;
          return false;
        }
        if (fiber.done)
          --remaining;
        if (schedule == Schedule::LowestFirst && scheduler.progress != last)
          break; // start again from thread 0
      }
      if (remaining > 0 && scheduler.progress == before) {
        error = "the emulated kernel deadlocked: threads wait at barriers "
                "or warp collectives that others never reach, or for "
                "mbarrier phases that never complete";
        return false;
      }
    }
    for (Fiber &fiber : fibers)
      if (!fiber.lane.inFlight.empty() || fiber.lane.uncommitted.issued) {
        scheduler.current = &fiber;
        reportWgmmaHazard("exited with wgmma not retired by a "
                          "wgmma.wait_group");
      }
    // Every phase begun must be completed: a partial one means the
    // arrivals and the count disagree.
    for (auto &[id, barrier] : cta.mbarriers)
      if (barrier.pending != barrier.count && cta.hazard.empty())
        cta.hazard = mbarrierName(id) + ": the CTA ended with " +
                     std::to_string(barrier.count - barrier.pending) + " of " +
                     std::to_string(barrier.count) + " arrivals of a phase";
    if (!cta.hazard.empty()) {
      error = "the emulated kernel " + cta.hazard;
      return false;
    }
  }
  return checkKernelStatus(signature, status, error);
}
