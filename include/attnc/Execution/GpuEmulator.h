//===- GpuEmulator.h - Run the GPU kernels on the CPU ----------*- C++ -*-===//
//
// Checks the NVIDIA strategy's logic without a GPU. attn-gpu-tile-softmax with
// `emulate` builds the same kernel code as for the GPU, with the warp
// primitives as calls (attnc_emu_*); this runs it with one fiber per GPU thread
// of a CTA (switched at barriers and warp collectives), CTAs one after another,
// shared memory per CTA, and ldmatrix, mma.sync.m16n8k16 and xor shuffles
// emulated across each warp's 32 threads, and wgmma.mma_async.m64nNk16 across
// each warpgroup's 128 (operands read through their descriptors), from the
// fragment and shared layouts of attnc/Target/NVVM/MmaLayout.h (which are
// tested against the PTX ISA tables). cp.async is a plain copy; wgmma completes
// at once but its shared operands must stay unchanged until the wait that
// retires it; mbarriers complete phases and block waiters. Every memref index,
// and every shared address of ldmatrix and wgmma, is checked against the memref
// or the declared shared memory: an access outside stops the run with the
// thread, the access and the index. What it cannot show: NVPTX code generation,
// timing, races the schedule does not provoke. Slow (a test tool), but exact
// about indices.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_GPUEMULATOR_H
#define ATTNC_EXECUTION_GPUEMULATOR_H

#include "attnc/Runtime/GpuImage.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mlir {
class ExecutionEngine;
} // namespace mlir

namespace attnc {

class EmulatedGpuKernel {
public:
  ~EmulatedGpuKernel();

  /// Compiles kernel `name` (the first when empty) of `module` (cloned) with
  /// the GPU strategy in emulation mode, JIT-compiled for this CPU.
  /// `plant`, when given, may change the kernel after the strategy and
  /// before the accesses are guarded: tests plant faults with it.
  static std::unique_ptr<EmulatedGpuKernel>
  compile(mlir::ModuleOp module, llvm::StringRef name,
          const GpuPipelineOptions &options, std::string &error,
          const std::function<void(mlir::ModuleOp)> &plant = nullptr);

  /// The launch facts, as for a real GPU image (no code bytes).
  const GpuImage &image() const { return launch; }

  /// Checks the inputs like GpuKernel::launch and runs the grid on host
  /// memory: into the caller's output views, or into outputs it allocates.
  bool run(const std::vector<const TensorView *> &inputs,
           const std::vector<TensorView *> &outputs, std::string &error);
  bool run(const std::vector<const TensorView *> &inputs,
           std::vector<HostTensor> &outputs, std::string &error);

  /// How the CTA's threads (fibers) take turns. Round-robin: each runs
  /// until it blocks, in thread order, so a warp-specialised producer
  /// (the last threads) runs whenever the consumers block, as early as
  /// possible. Lowest-first: after any barrier opens or phase completes
  /// the lowest-numbered thread runs again, so the producer runs only
  /// once every consumer is blocked, as late as possible: a consumer that
  /// reads a stage without waiting for it reads stale data.
  enum class Schedule { RoundRobin, LowestFirst };
  void setSchedule(Schedule value) { schedule = value; }

  /// CTAs run one after another, by default x fastest from block (0, 0, 0);
  /// reversed, from the last block, so a kernel that assumes which of its
  /// CTAs finishes last (rather than counting) goes wrong.
  void setReverseCtaOrder(bool value) { reverseCtaOrder = value; }

  /// How many CTAs the emulated GPU holds at once, which sizes the splits
  /// of split-keys=auto kernels; by default an H100's 132 multiprocessors
  /// with one CTA each.
  void setResidentCtas(int64_t value) { resident = value; }
  int64_t residentCtas() const { return resident; }

  /// A memref access the kernel checks (attnc-guard-emulated-accesses):
  /// what it touches, e.g. "memref.load of input 'q'", and its rank.
  struct AccessSite {
    std::string what;
    size_t rank = 0;
  };

private:
  EmulatedGpuKernel() = default;
  GpuImage launch;
  std::unique_ptr<mlir::ExecutionEngine> engine;
  void (*entry)(void **) = nullptr;
  Schedule schedule = Schedule::RoundRobin;
  bool reverseCtaOrder = false;
  int64_t resident = 132;
  std::vector<AccessSite> accessSites;
};

} // namespace attnc

#endif // ATTNC_EXECUTION_GPUEMULATOR_H
