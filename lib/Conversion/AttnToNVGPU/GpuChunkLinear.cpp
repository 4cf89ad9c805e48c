//===- GpuChunkLinear.cpp - Chunkwise linear attention on tensor cores ----===//
//
// One CTA per (batch or sequence, query head) walks the sequence in chunks
// of C steps with the state S (Dk x Dv, f32) in shared memory. Per chunk,
// with cumulative scalar log gates G_r (G = 0 without a gate):
//
//   A     = (phi(Q) phi(K)^T) o D,    D[r][u] = exp(G_r - G_u) for u <= r
//   O     = scale * (A V + exp(G_r) * (phi(Q) S))
//   S'    = exp(G_last) * S + (phi(K) o exp(G_last - G_u))^T V
//
// Q K^T, A V, Q S and K~^T V are mma.sync.m16n8k16 (f16/bf16 operands, f32
// accumulators; f32 q, k and v stay f32 in shared memory and each operand
// splits into bf16 pairs, three mma per product); warp w computes the output
// rows [16w, 16w + 16) of the chunk and the state rows [16w', ...) for w' = w,
// w + warps, ... Every exponent is G_a - G_b with b <= a, or G itself, so none
// overflows. Non-causal kernels sum the state over all chunks first, then
// compute every output from it.
//
// The value columns split across CTAs (grid x): a CTA owns `blockV` columns
// of V, S and O and recomputes Q K^T. Causal kernels also split each
// sequence into segments of `segmentChunks` chunks on different CTAs: a
// segment sums what its chunks add to a zero state (S_own, with the log
// decay of the whole segment), takes the state S_start that its predecessor
// ends with from the workspace, hands on exp(decay) S_start + S_own, and
// only then walks its chunks from S_start. The chain between segments is
// one short step each; everything else runs in parallel, which is what
// fills the GPU when batch x heads is small and sequences are long.
//
// This file holds the pass, its option checks and the launch facts; the
// CTA is LinearKernelBuilder (LinearKernelBuilder.h lists its files).
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "llvm/Support/FormatVariadic.h"

namespace attnc {
#define GEN_PASS_DEF_GPUCHUNKLINEAR
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

/// Value columns per CTA when the pipeline leaves it open.
int64_t defaultBlockV(int64_t dimV) { return std::min<int64_t>(dimV, 64); }

std::string unsupportedReason(LinearOp op, LinearTileShape &shape,
                              int64_t maxSharedBytes) {
  shape.perKeyDim = op.getGateKind() == GateKind::per_key_dim;
  int64_t chunk = op.getChunk();
  int64_t requestedBlockV = shape.blockV;
  if (chunk % 16 || chunk > 16 * shape.warps)
    return llvm::formatv("the chunk must be a multiple of 16 up to {0} on the "
                         "GPU (got {1})",
                         16 * shape.warps, chunk)
        .str();
  shape.chunk = chunk;
  std::string reason = checkTensorCoreOperands(op, /*maxHeadDim=*/128, shape,
                                               shape.dimK, shape.dimV);
  if (!reason.empty())
    return reason;
  shape.blockV = requestedBlockV ? requestedBlockV : defaultBlockV(shape.dimV);
  if (shape.blockV % 16 || shape.dimV % shape.blockV)
    return llvm::formatv("block-v must be a multiple of 16 that divides the "
                         "value head dim {0} (got {1})",
                         shape.dimV, shape.blockV)
        .str();
  if (shape.segmentChunks < 0)
    return llvm::formatv("segment-chunks must be 0 or more (got {0})",
                         shape.segmentChunks)
        .str();
  if (!op.getCausal())
    shape.segmentChunks = 0; // every output needs the whole sum
  // When the pipeline left block-v open, fewer value columns per CTA until
  // the tiles fit (f32 tiles take twice the space).
  while (!requestedBlockV && shape.sharedBytes() > maxSharedBytes &&
         shape.blockV % 32 == 0)
    shape.blockV /= 2;
  if (shape.sharedBytes() > maxSharedBytes)
    return llvm::formatv("chunks of {0} steps with head dims {1} and {2} need "
                         "{3} bytes of shared memory with block-v {4}, more "
                         "than the {5} a CTA may use; use a smaller chunk{6}",
                         chunk, shape.dimK, shape.dimV, shape.sharedBytes(),
                         shape.blockV, maxSharedBytes,
                         shape.blockV > 16 ? " or block-v" : "")
        .str();
  return "";
}

struct GpuChunkLinearPass
    : public attnc::impl::GpuChunkLinearBase<GpuChunkLinearPass> {
  using GpuChunkLinearBase::GpuChunkLinearBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    gpu::GPUModuleOp gpuModule;
    for (KernelOp kernel : llvm::make_early_inc_range(module.getOps<KernelOp>())) {
      auto op = dyn_cast<LinearOp>(kernel.getFamilyOp());
      if (!op)
        continue;
      LinearTileShape shape;
      shape.warps = warps;
      shape.blockV = blockV;
      shape.segmentChunks = segmentChunks;
      std::string reason = unsupportedReason(op, shape, maxSharedBytes);
      if (!reason.empty()) {
        kernel.emitError() << "kernel '" << kernel.getSymName()
                           << "' cannot run on the GPU: " << reason;
        return signalPassFailure();
      }
      if (failed(lowerToKernelFunction(
              kernel, shape, gpuModule, launchFacts(op, shape),
              [&](Operation *familyOp, LoweringBuilder &rb, ValueRange results,
                  Value workspace) {
                LinearKernelBuilder builder(rb, shape, workspace);
                builder.build(cast<LinearOp>(familyOp), results);
              })))
        return signalPassFailure();
    }
  }

  /// One CTA per (block of value columns, query head, batch entry or
  /// sequence).
  LaunchFacts launchFacts(LinearOp op, const LinearTileShape &shape) {
    LayoutDims dims = getLayoutDims(op.getLayout());
    int64_t q = paramIndex(op.getQ());
    LaunchFacts facts;
    facts.threads = shape.threads();
    facts.sharedBytes = shape.sharedBytes();
    Value cu = op.getCuSeqlens();
    facts.grid = {{{paramIndex(op.getV()), dims.feature, shape.blockV, 0},
                   {q, dims.head, 1, 0},
                   cu ? std::array<int64_t, 4>{paramIndex(cu), 0, 1, 1}
                      : std::array<int64_t, 4>{q, dims.batch, 1, 0}}};
    if (cu)
      facts.offsetParams.push_back(paramIndex(cu));
    // A packed kernel's final state has one entry per sequence.
    if (cu && op.getFinalState())
      for (OpOperand &use : op.getFinalState().getUses())
        if (isa<ReturnOp>(use.getOwner()))
          facts.sequenceResult = use.getOperandNumber();
    facts.headDim = dims.head;
    facts.copiedParams = {q, paramIndex(op.getK()), paramIndex(op.getV())};
    if (shape.segmentChunks) {
      facts.segments = {q, dims.seq, shape.chunk * shape.segmentChunks, 0};
      facts.segmentStateBytes = shape.dimK * shape.blockV * 4;
    }
    return facts;
  }
};

} // namespace
