//===- GpuEmulator.h - Run the GPU kernels on the CPU ----------*- C++ -*-===//
//
// Checks the NVIDIA strategy's logic without a GPU. attn-gpu-tile-softmax
// with `emulate` builds the same kernel code as for the GPU, with the warp
// primitives as calls (attnc_emu_*); this runs it with one OS thread per
// GPU thread of a CTA, CTAs one after another, shared memory per CTA, and
// ldmatrix, mma.sync.m16n8k16 and xor shuffles emulated across each warp's
// 32 threads, and wgmma.mma_async.m64nNk16 across each warpgroup's 128
// (operands read through their descriptors), from the fragment and shared
// layouts of attnc/Target/NVVM/MmaLayout.h (which are tested against the
// PTX ISA tables). cp.async is a plain copy; wgmma completes at once but
// its shared operands must stay unchanged until the wait that retires it;
// mbarriers complete phases and block waiters. What it cannot show: NVPTX
// code generation, timing, races the schedule does not provoke. Slow (a
// test tool), but exact about indices.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_GPUEMULATOR_H
#define ATTNC_EXECUTION_GPUEMULATOR_H

#include "attnc/Runtime/GpuImage.h"
#include "attnc/Transforms/Passes.h"

#include "mlir/IR/BuiltinOps.h"

#include <memory>
#include <string>

namespace mlir {
class ExecutionEngine;
} // namespace mlir

namespace attnc {

class EmulatedGpuKernel {
public:
  ~EmulatedGpuKernel();

  /// Compiles kernel `name` (the first when empty) of `module` (cloned) with
  /// the GPU strategy in emulation mode, JIT-compiled for this CPU.
  static std::unique_ptr<EmulatedGpuKernel>
  compile(mlir::ModuleOp module, llvm::StringRef name,
          const GpuPipelineOptions &options, std::string &error);

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

private:
  EmulatedGpuKernel() = default;
  GpuImage launch;
  std::unique_ptr<mlir::ExecutionEngine> engine;
  void (*entry)(void **) = nullptr;
  Schedule schedule = Schedule::RoundRobin;
  bool reverseCtaOrder = false;
  int64_t resident = 132;
};

} // namespace attnc

#endif // ATTNC_EXECUTION_GPUEMULATOR_H
