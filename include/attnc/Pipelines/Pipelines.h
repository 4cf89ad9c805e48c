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
  bool fromTilePrograms = false;
  /// Softmax kernels pack the query heads of a GQA group into a CTA's rows
  /// (attn-gpu-tile-softmax's pack-gqa).
  bool packGqa = false;

  /// The options that change the generated code, as the kernel cache's
  /// options string ("warps=4 block-k=64 ...").
  std::string cacheKey() const;

  /// Sets the options named in `text`: NAME=VALUE pairs separated by spaces
  /// or commas, with the names cacheKey prints (warps, block-k,
  /// rows-per-warp, block-v, segment-chunks, split-keys (a number or auto),
  /// mma), and the flags
  /// warp-specialize, pack-gqa and from-tile-programs. Fails with a one-line
  /// message naming the bad pair.
  bool parse(llvm::StringRef text, std::string &error);

  /// Checks what no single pass sees: mma's value, that warp-specialize
  /// needs wgmma, and that from-tile-programs builds mma.sync kernels with
  /// 16 rows per warp, no key splits and no packed query heads.
  bool verify(std::string &error) const;
};

/// Adds the passes that turn attn kernels into GPU kernels for `options`:
/// the softmax strategy, then attn-gpu-chunk-linear.
void addGpuStrategies(mlir::OpPassManager &pm,
                      const GpuPipelineOptions &options);

/// The dynamic shared memory a CTA may use on `chip`: 227 KiB on sm_90,
/// else 163 KiB (the A100's; sm_86/sm_89 GPUs allow 99 KiB, which the
/// runtime checks at launch).
int64_t maxSharedBytesFor(llvm::StringRef chip);

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

/// Registers every attnc pass and the named pipelines
/// (attnc-reference-pipeline: attn -> LLVM dialect).
void registerAttncPassesAndPipelines();

} // namespace attnc

#endif // ATTNC_PIPELINES_PIPELINES_H
