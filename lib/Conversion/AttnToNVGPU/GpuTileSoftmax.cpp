//===- GpuTileSoftmax.cpp - FlashAttention-2 softmax for tensor cores -----===//
//
// The FlashAttention-2 work split on mma.sync.m16n8k16: a CTA of `warps`
// warps owns rowsPerWarp * warps query rows of one (batch, head); each warp
// owns 16 or 32 rows (one or two mma row tiles), keeps its score tile S, P
// (as the A operand of P V) and its output accumulator in registers, its Q
// fragments too when they are small, and reduces row statistics across the
// 4 lanes of a quad with shuffles. With two row tiles every K and V fragment
// read from shared memory feeds two mma. K and V tiles are copied into
// shared memory with cp.async, double-buffered: the copy of the next key
// block is in flight while the current one is consumed. With mma=wgmma
// (sm_90a) a warpgroup computes S and P V with wgmma.mma_async, and the
// next block's S is in flight while this block's softmax runs (see
// SoftmaxKernelBuilder::visit).
//
// This file holds the pass: its option checks, the reasons a kernel has no
// GPU strategy and the launch facts. SoftmaxKernelBuilder.h declares the
// builder of the kernel bodies, whose phases live in the Softmax*.cpp files
// of this directory, one concern each.
//
// Fragment positions follow attnc/Target/NVVM/MmaLayout.h:
//   A (Q, P):  a[r][e] = A[g + 8 (r % 2)][2t + e + 8 (r / 2)]
//   B (K^T, V): b[r][e] = B[2t + e + 8 r][g]
//   C (S, O):  c[r][e] = C[g + 8 r][2t + e]        (g = lane / 4, t = lane % 4)
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Target/NVVM/MmaLayout.h"
#include "attnc/Target/NVVM/WarpBuilder.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include "llvm/Support/FormatVariadic.h"

#include <string>

namespace attnc {
#define GEN_PASS_DEF_GPUTILESOFTMAX
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

namespace {

/// Why `familyOp` has no GPU strategy, or "" when it has one. Halves the key
/// tile of dense and chunk-local kernels while the tiles exceed
/// `maxSharedBytes`.
std::string unsupportedReason(Operation *familyOp, GpuTileShape &shape,
                              int64_t maxSharedBytes) {
  if (auto sparse = dyn_cast<SparseSoftmaxOp>(familyOp);
      sparse && sparse.getTopk()) {
    // Selection is per query row: the CTA keeps its rows and takes the
    // selection block as its key tile.
    int64_t keys = sparse.getBlockK();
    if (keys % 16 || keys > 128)
      return llvm::formatv("top-k selection needs blocks that are a multiple "
                           "of 16 up to 128 on the GPU (got {0})",
                           keys)
          .str();
    shape.blockK = keys;
    shape.topk = *sparse.getTopk();
    shape.rowsPerWarp = nvvm::kMmaM;
    shape.blockQ = shape.warps * shape.rowsPerWarp;
  } else if (sparse) {
    // The CTA's tile is the sparsity block: 16 query rows per warp.
    int64_t rows = sparse.getBlockQ(), keys = sparse.getBlockK();
    if (rows % 16 || rows > 128 || keys % 16 || keys > 128)
      return llvm::formatv("block-sparse kernels need block_q and block_k "
                           "that are multiples of 16 up to 128 on the GPU "
                           "(got {0} and {1})",
                           rows, keys)
          .str();
    shape.warps = rows / 16;
    shape.rowsPerWarp = 16;
    shape.blockQ = rows;
    shape.blockK = keys;
  }
  if (shape.blockK % 16)
    return "block-k must be a multiple of 16";
  if (shape.packGqa && isa<SparseSoftmaxOp>(familyOp))
    return "pack-gqa packs the query heads of dense and chunk-local kernels "
           "only: block-sparse kernels take block_q query rows of one head "
           "(their block masks and lists are per head); drop pack-gqa";
  if (shape.wgmma) {
    // A warpgroup's wgmma covers 64 rows: 16 per warp.
    if (shape.warps % nvvm::kWarpgroupWarps)
      return llvm::formatv("wgmma needs whole warpgroups: a multiple of 4 "
                           "warps of 16 query rows, not {0}{1}",
                           shape.warps,
                           isa<SparseSoftmaxOp>(familyOp)
                               ? " (block_q / 16 for block-sparse kernels)"
                               : "")
          .str();
    if (shape.rowsPerWarp != nvvm::kMmaM)
      return "wgmma kernels take 16 query rows per warp (rows-per-warp=32 is "
             "an mma.sync split)";
  }
  if (shape.specialized()) {
    if (!shape.wgmma)
      return "warp specialisation needs mma=wgmma";
    // A third consumer warpgroup would leave each thread too few registers.
    if (shape.warps > 2 * nvvm::kWarpgroupWarps)
      return llvm::formatv("warp-specialised kernels take one or two "
                           "consumer warpgroups (4 or 8 warps), not {0} warps",
                           shape.warps)
          .str();
  }
  std::string reason = checkTensorCoreOperands(familyOp, /*maxHeadDim=*/256,
                                               shape, shape.dimK, shape.dimV);
  if (!reason.empty())
    return reason;
  if (shape.splitF32 && shape.wgmma)
    return "f32 q, k and v are split into bf16 pairs by the mma.sync "
           "kernels only; drop mma=wgmma";
  bool fixedKeyTile = isa<SparseSoftmaxOp>(familyOp);
  while (!fixedKeyTile && shape.sharedBytes() > maxSharedBytes &&
         shape.blockK % 32 == 0)
    shape.blockK /= 2;
  if (shape.sharedBytes() > maxSharedBytes)
    return llvm::formatv("the Q, K and V tiles ({0} query rows, {1} keys, "
                         "head dims {2} and {3}) need {4} bytes of shared "
                         "memory, more than the {5} a CTA may use",
                         shape.blockQ, shape.blockK, shape.dimK, shape.dimV,
                         shape.sharedBytes(), maxSharedBytes)
        .str();
  if (shape.splitKeys) {
    if (shape.topk)
      return "top-k selection does not split keys (every split would repeat "
             "the selection); drop split-keys";
    if (!shape.splitsAtLaunch() && shape.splitKeys % shape.blockK)
      return llvm::formatv("split-keys ({0}) must be a multiple of the key "
                           "tile ({1} keys)",
                           shape.splitKeys, shape.blockK)
          .str();
    // The splits are combined by every thread once the roles have joined,
    // and a producer that gave its registers away cannot run that code.
    if (shape.specialized() && shape.warps > nvvm::kWarpgroupWarps)
      return "split-keys with warp specialisation takes one consumer "
             "warpgroup (4 warps)";
  }
  return "";
}

struct GpuTileSoftmaxPass
    : public CheckedOptionsPass<GpuTileSoftmaxPass,
                                attnc::impl::GpuTileSoftmaxBase> {
  using CheckedOptionsPass::CheckedOptionsPass;

  /// What is wrong with the option values, or "".
  std::string optionProblem() const {
    if (warps <= 0 || blockK <= 0)
      return "attn-gpu-tile-softmax needs positive warps and block-k";
    if (splitKeys < 0 && splitKeys != kAutoSplitKeys)
      return "attn-gpu-tile-softmax: split-keys must be a non-negative "
             "number of keys or -1 (auto), got " +
             std::to_string(splitKeys);
    if (rowsPerWarp != 16 && rowsPerWarp != 32)
      return "attn-gpu-tile-softmax: rows-per-warp must be 16 or 32 (one or "
             "two mma row tiles), got " +
             std::to_string(rowsPerWarp);
    if (mma != "sync" && mma != "wgmma")
      return "attn-gpu-tile-softmax: mma must be sync or wgmma, got '" + mma +
             "'";
    return "";
  }

  void runOnOperation() override {
    if (failedOnBadOptions())
      return;
    ModuleOp module = getOperation();
    gpu::GPUModuleOp gpuModule;
    for (KernelOp kernel :
         llvm::make_early_inc_range(module.getOps<KernelOp>())) {
      Operation *family = kernel.getFamilyOp();
      if (isa<LinearOp>(family))
        continue; // attn-gpu-chunk-linear
      if (isa<SoftmaxBackwardOp, LinearBackwardOp>(family))
        continue; // attn-tile-softmax/-linear and attn-tile-to-nvgpu
      GpuTileShape shape;
      shape.wgmma = mma == "wgmma";
      shape.producerWarps = warpSpecialize ? nvvm::kWarpgroupWarps : 0;
      shape.warps = warps;
      shape.rowsPerWarp = rowsPerWarp;
      shape.blockQ = warps * rowsPerWarp;
      shape.blockK = blockK;
      shape.splitKeys = splitKeys;
      shape.packGqa = packGqa;
      std::string reason = unsupportedReason(family, shape, maxSharedBytes);
      if (!reason.empty()) {
        kernel.emitError() << "kernel '" << kernel.getSymName()
                           << "' cannot run on the GPU: " << reason;
        return signalPassFailure();
      }
      if (failed(lowerToKernelFunction(
              kernel, shape, gpuModule, launchFacts(kernel, shape),
              [&](Operation *familyOp, LoweringBuilder &rb, ValueRange results,
                  Value workspace) {
                SoftmaxKernelBuilder builder(rb, shape, workspace);
                if (auto softmax = dyn_cast<SoftmaxOp>(familyOp))
                  builder.build(softmax, results, std::nullopt);
                else if (auto chunked = dyn_cast<ChunkSoftmaxOp>(familyOp))
                  builder.build(chunked, results, chunked.getChunk());
                else
                  builder.build(cast<SparseSoftmaxOp>(familyOp), results,
                                std::nullopt);
              })))
        return signalPassFailure();
    }
  }

  /// The launch facts: grid (query blocks, query heads, batch entries);
  /// packed GQA groups: (blocks of query rows times G, kv heads, batch).
  LaunchFacts launchFacts(KernelOp kernel, const GpuTileShape &shape) {
    Operation *family = kernel.getFamilyOp();
    LayoutDims dims =
        getLayoutDims(family->getAttrOfType<LayoutAttr>("layout").getValue());
    int64_t q = paramIndex(family->getOperand(0));
    int64_t k = paramIndex(family->getOperand(1));
    auto [cuQ, cuK] = getSequenceOffsets(family);
    LaunchFacts facts;
    facts.threads = shape.threads();
    facts.sharedBytes = shape.sharedBytes();
    facts.grid = {{{q, dims.seq, shape.blockQ, 0},
                   {shape.packGqa ? k : q, dims.head, 1, 0},
                   cuQ ? std::array<int64_t, 4>{paramIndex(cuQ), 0, 1, 1}
                       : std::array<int64_t, 4>{q, dims.batch, 1, 0}}};
    if (cuQ)
      facts.offsetParams.push_back(paramIndex(cuQ));
    if (cuK && cuK != cuQ)
      facts.offsetParams.push_back(paramIndex(cuK));
    facts.headDim = dims.head;
    facts.packsQueryHeads = shape.packGqa;
    facts.copiedParams = {q, k, paramIndex(family->getOperand(2))};
    // Key splits multiply grid x by ceil(keys / split-keys) (the keys'
    // stored length: all packed tokens for varlen kernels). Chosen at
    // launch, the splits share the ceil(keys / block-k) key blocks.
    if (shape.splitKeys) {
      facts.segments = {paramIndex(family->getOperand(1)), dims.seq,
                        shape.splitsAtLaunch() ? shape.blockK : shape.splitKeys,
                        0};
      facts.segmentStateBytes = shape.splitStateBytes();
      facts.splitsAtLaunch = shape.splitsAtLaunch();
    }
    return facts;
  }
};

} // namespace
