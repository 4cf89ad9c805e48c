//===- Pipelines.h - attnc's pass pipelines, by target ----------*- C++ -*-===//
//
// The pipelines from attn kernels to LLVM for each target, and the options
// of GPU compilation.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PIPELINES_PIPELINES_H
#define ATTNC_PIPELINES_PIPELINES_H

#include "attnc/Conversion/Passes.h"
#include "attnc/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"

#include <string>

namespace attnc {

/// Adds the passes that take the output of attn-lower-to-reference (or any
/// scf/memref/arith/math program) to the LLVM dialect.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);

/// Reads a split-keys value: "auto" (kAutoSplitKeys) or a non-negative
/// number of keys; false for anything else.
bool parseSplitKeys(llvm::StringRef text, int64_t &splitKeys);
/// The split-keys value as parseSplitKeys reads it.
std::string splitKeysText(int64_t splitKeys);

/// Which code path the CPU target compiles.
enum class CpuPath {
  /// The direct definition (attn-lower-to-reference): the oracle.
  Reference,
  /// The tile programs (attn-tile-softmax, attn-tile-linear) lowered by
  /// attn-tile-to-loops.
  Tiled,
};

/// How kernels are compiled for the CPU.
struct CpuOptions {
  CpuPath path = CpuPath::Tiled;
  int64_t blockQ = 64, blockK = 64;
  /// Host threads that share the (batch, head) grid of a run; 0 for
  /// $ATTNC_NUM_THREADS, else one per hardware thread. Not a compile
  /// option: the kernel's runs take it.
  int64_t threads = 0;

  /// Sets the CPU options named in `text` (parseCompileOptions): block-q=N
  /// and block-k=N. Fails with a one-line message naming the bad pair.
  bool parse(llvm::StringRef text, std::string &error);
};

/// How kernels are compiled for an NVIDIA GPU.
struct GpuPipelineOptions {
  /// "sm_80", "sm_90a", ...
  std::string chip = "sm_80";
  int64_t warps = 4, blockK = 64;
  /// Query rows per warp of softmax kernels (16 or 32).
  int64_t rowsPerWarp = 16;
  /// Tensor-core instruction of softmax kernels: "sync" (mma.sync) or
  /// "wgmma" (sm_90a only).
  std::string mma = "sync";
  /// With mma=wgmma: a producer warpgroup copies K and V for the others.
  bool warpSpecialize = false;
  /// Value columns per CTA of linear kernels (0: the pass's default).
  int64_t blockV = 0;
  /// Chunks per segment of causal linear kernels (0: no segments).
  int64_t segmentChunks = 16;
  /// Keys per split of softmax kernels, whose splits run on different CTAs
  /// and are combined by the last (0: one CTA per query block;
  /// kAutoSplitKeys: the launch chooses).
  int64_t splitKeys = 0;
  /// Build softmax kernels from their tile programs (attn-tile-softmax,
  /// then attn-tile-to-nvgpu) instead of attn-gpu-tile-softmax's kernel.
  /// Dense and chunk-local softmax only; 16 rows per warp.
  bool fromTileProgram = false;
  /// Softmax kernels pack the query heads of a GQA group into a CTA's rows
  /// (attn-gpu-tile-softmax's pack-gqa).
  bool packGqa = false;

  /// The options that change the generated code, as the kernel cache's
  /// options string ("warps=4 block-k=64 ..."; compileOptionsKey).
  std::string cacheKey() const;

  /// Sets the GPU options named in `text` (parseCompileOptions) and
  /// verifies them. Fails with a one-line message naming the bad pair.
  bool parse(llvm::StringRef text, std::string &error);

  /// Checks what no single pass sees: mma's value, that warp-specialize
  /// needs wgmma, and that from-tile-program builds mma.sync kernels with
  /// 16 rows per warp, no key splits and no packed query heads.
  bool verify(std::string &error) const;
};

/// Every tuning option of every target, as one value: the table of
/// compileOptions() reads and prints it.
struct CompileOptions {
  CpuOptions cpu;
  GpuPipelineOptions gpu;
};

/// The targets an option tunes (a mask).
enum CompileOptionTargets : unsigned {
  kCpuOption = 1,
  kGpuOption = 2,
};

/// One tuning option: its name is the CLI flag (--NAME), the C API's and
/// Python's NAME=VALUE (a flag is NAME alone) and the kernel cache key's.
/// It sets the field of each target it tunes.
struct CompileOption {
  llvm::StringLiteral name;
  /// What the option does (the CLI's help).
  llvm::StringLiteral help;
  /// The value's form: "N" (an integer: positive on the CPU, non-negative
  /// on the GPU), "N|auto" (split-keys), "sync|wgmma" (text, checked by
  /// GpuPipelineOptions::verify), or "" for a flag.
  llvm::StringLiteral value;
  unsigned targets;
  int64_t CpuOptions::*cpuInteger = nullptr;
  int64_t GpuPipelineOptions::*gpuInteger = nullptr;
  std::string GpuPipelineOptions::*gpuText = nullptr;
  bool GpuPipelineOptions::*gpuFlag = nullptr;
};

/// The table of every tuning option, in the cache key's order.
llvm::ArrayRef<CompileOption> compileOptions();

/// Sets the options named in `text`, NAME=VALUE pairs and flag NAMEs
/// separated by spaces or commas, that tune one of `targets`. Fails with a
/// one-line message naming the bad pair (and the option meant, for a
/// misspelt name).
bool parseCompileOptions(llvm::StringRef text, unsigned targets,
                         CompileOptions &options, std::string &error);

/// The options of `targets` as parseCompileOptions reads them, every
/// valued option included: the kernel cache's options string.
std::string compileOptionsKey(const CompileOptions &options, unsigned targets);

/// Adds the passes that turn attn kernels into their target-neutral tile
/// programs (attn-tile-softmax, attn-tile-linear).
void addTileStrategies(mlir::OpPassManager &pm, const CpuOptions &options);

/// Adds the passes that turn attn kernels into CPU loops for `options`:
/// the tile strategies and attn-tile-to-loops, or the reference lowering.
/// buildLowerToLLVMPipeline follows.
void addCpuStrategies(mlir::OpPassManager &pm, const CpuOptions &options);

/// The emulator's kernels: the GPU strategies, then
/// attnc-nvgpu-to-emulator (before its accesses are guarded and it is
/// lowered to LLVM).
void addEmulatorStrategies(mlir::OpPassManager &pm,
                           const GpuPipelineOptions &options);

/// Adds the passes that turn attn kernels into GPU kernels for `options`:
/// the softmax strategy, then attn-gpu-chunk-linear.
void addGpuStrategies(mlir::OpPassManager &pm,
                      const GpuPipelineOptions &options);

/// The dynamic shared memory a CTA may use on `chip`: 227 KiB on sm_90,
/// else 163 KiB (the A100's; sm_86/sm_89 GPUs allow 99 KiB, which the
/// runtime checks at launch).
int64_t maxSharedBytesFor(llvm::StringRef chip);

/// GPU backward kernels: tiles of 16 rows and keys (a CTA of one warp),
/// and dK and dV summed in one pass only up to head dims of 64 (128
/// accumulator columns, 64 registers a lane): with 64-bit indexing, larger
/// tiles or sums spill at head dim 128 (docs/gpu.md, "The backward").
inline constexpr int64_t kGpuBackwardBlock = 16;
inline constexpr int64_t kGpuBackwardKeySumColumns = 128;

/// The PTX ISA features that `chip` needs ("+ptx80").
std::string ptxFeaturesFor(llvm::StringRef chip);

/// attn kernels -> a gpu.module with the NVVM target attached, lowered to
/// the LLVM and NVVM dialects (ready for gpu-module-to-binary): the tile
/// strategy, then buildGpuModuleLoweringPipeline.
void buildGpuLoweringPipeline(mlir::OpPassManager &pm,
                              const GpuPipelineOptions &options);
/// The part after the tile strategy: attach the target for `chip` and lower
/// gpu/nvgpu/scf/vector/memref inside gpu.modules to LLVM and NVVM.
void buildGpuModuleLoweringPipeline(mlir::OpPassManager &pm,
                                    llvm::StringRef chip);

/// Registers what GPU compilation needs beyond the dialects: the
/// ConvertToLLVM interfaces that convert-gpu-to-nvvm collects, the NVVM
/// target and the translations to LLVM IR.
void registerGpuCompilation(mlir::DialectRegistry &registry);

/// Registers every attnc pass and the named pipelines, which take the
/// options of compileOptions() for their target (attnc-opt
/// --pass-pipeline='builtin.module(attnc-gpu-pipeline{chip=sm_90a
/// mma=wgmma})'): attnc-cpu-pipeline and attnc-reference-pipeline (attn ->
/// LLVM dialect), attnc-cpu-strategies (-> loops), attnc-gpu-strategies (->
/// gpu.module), attnc-gpu-pipeline (-> NVVM dialect) and
/// attnc-emulator-strategies (-> host functions of the warp emulator).
void registerAttncPassesAndPipelines();

} // namespace attnc

#endif // ATTNC_PIPELINES_PIPELINES_H
