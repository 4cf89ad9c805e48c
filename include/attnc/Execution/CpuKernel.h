//===- CpuKernel.h - Run attn kernels on the CPU ----------------*- C++ -*-===//
//
// Compiles one attn.kernel through a lowering pipeline to LLVM, JIT-compiles
// it with the MLIR ExecutionEngine and runs it on host tensors.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_CPUKERNEL_H
#define ATTNC_EXECUTION_CPUKERNEL_H

#include "attnc/Execution/Jit.h"
#include "attnc/Pipelines/Pipelines.h"
#include "attnc/Runtime/Tensor.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringRef.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace mlir {
class ExecutionEngine;
} // namespace mlir

namespace attnc {
namespace attn {
class KernelOp;
} // namespace attn

/// The parameter list of a kernel, for callers that know no MLIR.
KernelSignature getKernelSignature(attn::KernelOp kernel);

/// Erases every kernel of `module` but kernel `name` (the first when empty)
/// and returns it; null with `error` set when there is none.
attn::KernelOp keepOnlyKernel(mlir::ModuleOp module, llvm::StringRef name,
                              std::string &error);

class CpuKernel {
public:
  ~CpuKernel();

  /// Compiles kernel `name` of `module` (the first kernel when `name` is
  /// empty). The module is cloned; the caller keeps ownership. Returns null
  /// with `error` set on failure.
  static std::unique_ptr<CpuKernel> compile(mlir::ModuleOp module,
                                            llvm::StringRef name,
                                            const CpuOptions &options,
                                            std::string &error);

  const KernelSignature &signature() const { return kernelSignature; }

  /// Host threads of later runs (0: the default of CpuOptions::threads).
  void setThreads(int64_t count);
  int64_t getThreads() const { return threads; }

  /// Computes the output shapes for the given inputs (one per parameter, null
  /// for an omitted optional one), checking every shape rule that can only be
  /// checked at launch. With `readValues` false the inputs' data is not read
  /// (the checks of cu_seqlens contents wait for run()).
  bool outputShapes(const std::vector<const TensorView *> &inputs,
                    std::vector<std::vector<int64_t>> &shapes,
                    std::string &error, bool readValues = true) const;

  /// Runs the kernel; `outputs` must have the shapes outputShapes() gives.
  bool run(const std::vector<const TensorView *> &inputs,
           const std::vector<TensorView *> &outputs, std::string &error);

  /// Allocates the outputs (refusing any that cannot fit in memory) and runs.
  bool run(const std::vector<const TensorView *> &inputs,
           std::vector<HostTensor> &outputs, std::string &error);

private:
  CpuKernel() = default;
  bool checkLaunch(const std::vector<const TensorView *> &inputs,
                   bool readValues, std::string &error) const;

  KernelSignature kernelSignature;
  /// Launch-time facts about the family op: parameter positions (-1 when
  /// absent) and the layout's head/sequence dims.
  struct LaunchInfo {
    int q = -1, k = -1, cuQ = -1, cuK = -1, initial = -1;
    /// The batch dim is -1 in the packed layout, where cu_seqlens counts
    /// the sequences.
    int batchDim = 0, headDim = 1, seqDim = 2;
    bool packed = false;
    /// Result whose leading dim is the number of sequences (packed final
    /// state), or -1.
    int perSequenceResult = -1;
    /// Query rows per grid item when the strategy splits heads into row
    /// blocks (kCpuRowBlockAttrName), else 0.
    int64_t rowBlock = 0;
    /// Results that each item scatter-adds into (kPartialResultsAttrName).
    std::vector<int> partialResults;
  } launch;
  /// A partial result's f32 copies, one per item.
  struct PartialSums {
    int result;
    int64_t elements;
    std::vector<float> copies;
  };
  /// Zeroed copies of every partial result for `items` items; false (with
  /// `error`) when they cannot exist.
  bool preparePartialSums(const std::vector<std::vector<int64_t>> &shapes,
                          int64_t items, std::vector<PartialSums> &partials,
                          std::string &error) const;
  /// output = the sum of the copies in item order, in output's dtype.
  static void sumPartials(const PartialSums &partial, int64_t items,
                          TensorView &output);
  std::unique_ptr<mlir::ExecutionEngine> engine;
  std::atomic<int64_t> threads{1};
};

} // namespace attnc

#endif // ATTNC_EXECUTION_CPUKERNEL_H
