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
// next block's S is in flight while this block's softmax runs (see visit).
//
// Fragment positions follow attnc/Target/NVVM/MmaLayout.h:
//   A (Q, P):  a[r][e] = A[g + 8 (r % 2)][2t + e + 8 (r / 2)]
//   B (K^T, V): b[r][e] = B[2t + e + 8 r][g]
//   C (S, O):  c[r][e] = C[g + 8 r][2t + e]        (g = lane / 4, t = lane % 4)
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Target/NVVM/WarpBuilder.h"
#include "attnc/Target/NVVM/MmaLayout.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MathExtras.h"

#include <functional>
#include <limits>

namespace attnc {
#define GEN_PASS_DEF_GPUTILESOFTMAX
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

constexpr int64_t kStages = 2;

/// The mbarriers of a warp-specialised kernel, per stage: keys or values
/// "full" once the producer's copies into the stage have landed, "empty"
/// once no consumer wgmma reads it any more.
enum MBarrierKind : int64_t {
  kKeysFull = 0,
  kValuesFull = kStages,
  kKeysEmpty = 2 * kStages,
  kValuesEmpty = 3 * kStages,
  kMBarriers = 4 * kStages
};
/// setmaxnreg for two consumer warpgroups and the producer (384 threads
/// start with 168 registers each): 128 x 40 + 256 x 232 <= 64K.
constexpr int64_t kProducerRegisters = 40, kConsumerRegisters = 232;

/// The static facts of one GPU kernel; also what the runtime needs to launch
/// it (attributes on the gpu.func, see docs/pipeline.md).
/// Key blocks per sequence that top-k selection handles: the CTA marks the
/// blocks its rows keep in a bitmap of this many bits in shared memory.
constexpr int64_t kTopkBlockCapacity = 32768;

struct GpuTileShape : WarpConfig {
  int64_t blockQ = 0, blockK = 0, dimK = 0, dimV = 0;
  /// Query rows per warp: 16 or 32.
  int64_t rowsPerWarp = nvvm::kMmaM;
  /// Blocks kept per query row by top-k selection (0: no selection).
  int64_t topk = 0;
  /// Keys per split (0: none; kAutoSplitKeys: chosen at launch): see the
  /// pass description.
  int64_t splitKeys = 0;
  bool splitsAtLaunch() const { return splitKeys == kAutoSplitKeys; }
  /// The CTA's rows are (query, query head) pairs of one GQA group (see the
  /// pass description, pack-gqa).
  bool packGqa = false;
  /// What each CTA of a split kernel leaves in the workspace: its partial
  /// output (blockQ x dimV) and its rows' log-sum-exp, as f32.
  int64_t splitStateBytes() const { return blockQ * (dimV + 1) * 4; }
  /// wgmma tiles are core matrices (no padding; WarpBuilder::coreMatrixTile).
  int64_t pitchK() const { return wgmma ? dimK : dimK + chunkElements(); }
  int64_t pitchV() const { return wgmma ? dimV : dimV + chunkElements(); }
  /// The mma row tiles of one warp.
  int64_t rowTiles() const { return rowsPerWarp / nvvm::kMmaM; }
  /// Whether a warp keeps its Q fragments in registers for the whole key
  /// loop: when they take at most 32 registers per lane. Larger ones would
  /// crowd out the accumulators and are reloaded per key block instead.
  /// wgmma reads Q from shared memory; split f32 takes twice the registers.
  bool queryInRegisters() const {
    return !wgmma && rowsPerWarp * dimK * (splitF32 ? 2 : 1) <= 16 * 128;
  }
  int64_t queryTileBytes() const { return blockQ * pitchK() * elementBytes(); }
  int64_t keyTileBytes() const {
    return kStages * blockK * pitchK() * elementBytes();
  }
  int64_t valueTileBytes() const {
    return kStages * blockK * pitchV() * elementBytes();
  }
  int64_t tileBytes() const {
    return queryTileBytes() + keyTileBytes() + valueTileBytes();
  }
  // Top-k selection, after the tiles: per row the sum of the group's query
  // heads (f32) and its kept blocks (scores, indices, count), the mean key
  // of the block being scored, and the CTA's bitmap of kept blocks.
  int64_t querySumsOffset() const { return tileBytes(); }
  int64_t meanKeyOffset() const { return querySumsOffset() + blockQ * dimK * 4; }
  int64_t keptScoresOffset() const { return meanKeyOffset() + dimK * 4; }
  int64_t keptBlocksOffset() const { return keptScoresOffset() + blockQ * topk * 4; }
  int64_t keptCountOffset() const { return keptBlocksOffset() + blockQ * topk * 4; }
  int64_t bitmapOffset() const { return keptCountOffset() + blockQ * 4; }
  /// Warp-specialised kernels: a producer warpgroup copies K and V for the
  /// `warps` that compute, handing stages over through mbarriers after the
  /// tiles (kMBarriers of 8 bytes).
  bool specialized() const { return producerWarps > 0; }
  int64_t mbarrierOffset() const {
    int64_t end = topk ? bitmapOffset() + kTopkBlockCapacity / 8 : tileBytes();
    return (end + 7) / 8 * 8;
  }
  int64_t sharedBytes() const {
    return mbarrierOffset() + (specialized() ? kMBarriers * 8 : 0);
  }
};

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

/// Builds the body of one kernel. Values named after the paper: m (row max),
/// l (row sum), acc (unnormalised output).
class SoftmaxKernelBuilder : public WarpBuilder {
public:
  SoftmaxKernelBuilder(LoweringBuilder &rb, const GpuTileShape &shape,
                       Value workspace)
      : WarpBuilder(rb, shape), shape(shape),
        workspace(workspace) {}

  template <typename OpTy>
  void build(OpTy op, ValueRange results, std::optional<int64_t> chunk);

private:
  /// The key blocks a query block visits, as a range of cursors: for dense
  /// and chunked kernels the band's blocks; for block-sparse ones the band's
  /// blocks that the block mask marks, or the entries of the block lists
  /// (each listed block once, if in the band).
  struct KeySchedule {
    Value begin, end;
    /// Whether a cursor is visited (null: all are).
    std::function<Value(Value)> visited;
    std::function<Value(Value)> blockAt;
    /// The first visited cursor at or after `from` (`end` when none).
    std::function<Value(Value)> nextVisited;
  };

  /// A loop over the schedule's cursors carrying `init`: `visit(cursor,
  /// carried)` runs for visited cursors, the others pass `carried` on.
  ValueRange loopOverVisited(
      const KeySchedule &schedule, ValueRange init,
      llvm::function_ref<SmallVector<Value>(Value, ValueRange)> visit) {
    return rb.loop(schedule.begin, schedule.end, init,
                   [&](Value cursor, ValueRange carried) -> SmallVector<Value> {
                     if (!schedule.visited)
                       return visit(cursor, carried);
                     ValueRange result = rb.ifThen(
                         schedule.visited(cursor), carried.getTypes(),
                         [&] { return visit(cursor, carried); },
                         [&]() -> SmallVector<Value> {
                           return SmallVector<Value>(carried.begin(),
                                                     carried.end());
                         });
                     return SmallVector<Value>(result.begin(), result.end());
                   });
  }

  template <typename OpTy>
  KeySchedule keySchedule(OpTy op, Value keyBlockBegin, Value keyBlockEnd,
                          Value keyBlocks, Value queryBlock, Value batch,
                          Value head) {
    KeySchedule schedule;
    schedule.begin = keyBlockBegin;
    schedule.end = keyBlockEnd;
    schedule.blockAt = [](Value cursor) { return cursor; };
    auto sparse = dyn_cast<SparseSoftmaxOp>(op.getOperation());
    auto isNonZero = [&](Value raw) -> Value {
      return arith::CmpIOp::create(
          b, arith::CmpIPredicate::ne, raw,
          arith::ConstantIntOp::create(b, raw.getType(), 0));
    };
    if (shape.topk) {
      // The band's blocks that some row of the CTA kept.
      schedule.visited = [this](Value cursor) { return isKept(cursor); };
    } else if (!sparse) {
      schedule.nextVisited = [](Value cursor) { return cursor; };
      return schedule;
    } else if (Value blockMask = sparse.getBlockMask()) {
      Value flags = rb.params.lookup(blockMask);
      schedule.visited = [=](Value cursor) {
        return isNonZero(
            rb.checkedLoad(flags, {batch, head, queryBlock, cursor}));
      };
    } else {
      Value counts = rb.params.lookup(sparse.getKvNumBlocks());
      Value lists = rb.params.lookup(sparse.getKvIndices());
      schedule.begin = idx(0);
      schedule.end = rb.checkedBlockCount(counts, batch, head, queryBlock,
                                          rb.dim(lists, 3));
      schedule.blockAt = [=](Value entry) -> Value {
        return arith::IndexCastOp::create(
            b, b.getIndexType(),
            rb.checkedLoad(lists, {batch, head, queryBlock, entry}));
      };
      // Entries that name no key block are reported once, up front; the
      // band test below skips them.
      rb.loop(idx(0), schedule.end, [&](Value entry) {
        rb.checkListedBlock(lists, batch, head, queryBlock, entry,
                            schedule.blockAt(entry), keyBlocks);
      });
      schedule.visited = [=](Value entry) -> Value {
        Value keyBlock = schedule.blockAt(entry);
        Value inBand = arith::AndIOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::sge, keyBlock,
                                  keyBlockBegin),
            arith::CmpIOp::create(b, arith::CmpIPredicate::slt, keyBlock,
                                  keyBlockEnd));
        Value repeated =
            rb.loop(idx(0), entry,
                    {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
                    [&](Value earlier, ValueRange seen) {
                      Value same = arith::CmpIOp::create(
                          b, arith::CmpIPredicate::eq, schedule.blockAt(earlier),
                          keyBlock);
                      return SmallVector<Value>{
                          arith::OrIOp::create(b, seen[0], same)};
                    })[0];
        return arith::AndIOp::create(
            b, inBand,
            arith::XOrIOp::create(
                b, repeated, arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
      };
    }
    schedule.nextVisited = [this, schedule](Value from) {
      return scanForward(from, schedule.end, schedule.visited);
    };
    return schedule;
  }

  /// The first c >= from with c == end or visited(c) (uniform per CTA).
  Value scanForward(Value from, Value end,
                    const std::function<Value(Value)> &visited) {
    Type index = b.getIndexType();
    auto whileOp = scf::WhileOp::create(
        b, TypeRange{index}, ValueRange{from},
        [&](OpBuilder &nested, Location, ValueRange args) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nested.getInsertionBlock(),
                              nested.getInsertionPoint());
          Value cursor = args[0];
          // Read the cursor's entry only inside the range.
          Value skip = rb.ifThen(
              lessThan(cursor, end), {b.getI1Type()},
              [&]() -> SmallVector<Value> {
                return {arith::XOrIOp::create(
                    b, visited(cursor),
                    arith::ConstantIntOp::create(b, b.getI1Type(), 1))};
              },
              [&]() -> SmallVector<Value> {
                return {arith::ConstantIntOp::create(b, b.getI1Type(), 0)};
              })[0];
          scf::ConditionOp::create(b, skip, ValueRange{cursor});
        },
        [&](OpBuilder &nested, Location, ValueRange args) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nested.getInsertionBlock(),
                              nested.getInsertionPoint());
          scf::YieldOp::create(b, ValueRange{rb.add(args[0], idx(1))});
        });
    return whileOp.getResult(0);
  }

  /// Top-k selection (docs/semantics.md) for the CTA's rows [i0, i0 +
  /// rows): scores every block of the band [blockBegin, blockEnd) against
  /// each row, keeps each row's `topk` best eligible blocks (ties: lower
  /// index) in shared memory and marks the union in the bitmap that the key
  /// schedule reads. The mean keys are recomputed per CTA from one pass over
  /// the band's keys.
  void selectBlocks(SparseSoftmaxOp op, const AttentionOperands &operands,
                    const MaskStructure &band, Value keys, Value keyTiles,
                    Value batch, Value headK, Value i0, Value rows, Value n,
                    Value startQ, Value m, Value startK, Value scale,
                    Value blockBegin, Value blockEnd);

  /// Whether some row of the CTA kept key block `block` (uniform).
  Value isKept(Value block) {
    Value word = memref::LoadOp::create(
        b, keptBitmap, ValueRange{arith::DivUIOp::create(b, block, idx(32))});
    Value bit = arith::ShLIOp::create(
        b, i32(1),
        arith::IndexCastOp::create(b, b.getI32Type(),
                                   arith::RemUIOp::create(b, block, idx(32))));
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                 arith::AndIOp::create(b, word, bit), i32(0));
  }

  /// Whether row `localRow` of the CTA kept key block `block`.
  Value rowKeeps(Value localRow, Value block) {
    Value count = arith::IndexCastOp::create(
        b, b.getIndexType(), memref::LoadOp::create(b, keptCount, localRow));
    return rb.loop(idx(0), count,
                   {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
                   [&](Value entry, ValueRange found) {
                     Value kept = arith::IndexCastOp::create(
                         b, b.getIndexType(),
                         memref::LoadOp::create(b, keptBlocks,
                                                ValueRange{localRow, entry}));
                     return SmallVector<Value>{arith::OrIOp::create(
                         b, found[0],
                         arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                               kept, block))};
                   })[0];
  }

  /// The shared address of `stage` of double-buffered key or value tiles
  /// of `width` elements per row.
  Value stageAddress(Value tiles, Value stage, int64_t width) {
    return rb.add(sharedAddress(tiles),
                  rb.mul(arith::IndexCastOp::create(b, b.getI64Type(), stage),
                         i64(shape.blockK * width * shape.elementBytes())));
  }

  /// S = Q K^T for the 64 rows of `warp`'s warpgroup from the key tiles'
  /// `stage`: Dk / 16 wgmma with Q and K in shared memory (both K-major),
  /// accumulated onto `scores`, the m64n{block-k} D fragment (8-key tile j
  /// in registers 4j .. 4j + 3, laid out as mma.sync's C tiles). Without
  /// `wait` the wgmma are committed and left in flight: the registers are
  /// valid after the caller's next wgmmaWait.
  SmallVector<Value> wgmmaScores(Value queryTile, Value keyTiles, Value warp,
                                 Value stage, ArrayRef<Value> scores,
                                 bool wait) {
    // Q and K rows both hold Dk elements: 8 rows (a row block) are 16 Dk
    // bytes.
    int64_t rowBlockBytes = shape.dimK * 16;
    Value warpgroup = arith::IndexCastOp::create(
        b, b.getI64Type(),
        arith::DivUIOp::create(b, warp, idx(nvvm::kWarpgroupWarps)));
    Value queryAddress =
        rb.add(sharedAddress(queryTile),
               rb.mul(warpgroup, i64(nvvm::kWgmmaM / 8 * rowBlockBytes)));
    Value keyAddress = stageAddress(keyTiles, stage, shape.dimK);
    SmallVector<Value> acc(scores);
    wgmmaFence();
    // Step kk covers Dk columns [16 kk, 16 kk + 16): two core matrices on.
    for (int64_t kk = 0; kk < shape.dimK / 16; ++kk)
      acc = wgmma(wgmmaDescriptor(rb.add(queryAddress, i64(256 * kk)), 128,
                                  rowBlockBytes),
                  {},
                  wgmmaDescriptor(rb.add(keyAddress, i64(256 * kk)), 128,
                                  rowBlockBytes),
                  /*transposeB=*/false, acc);
    if (wait)
      wgmmaCommitAndWait();
    else
      wgmmaCommit();
    return acc;
  }

  /// acc += P V for the warpgroup from the value tiles' `stage`: per 16 keys
  /// one wgmma with P from registers (`weights[kk]`, A fragments) and V
  /// from shared memory (MN-major: the value columns are contiguous).
  void wgmmaWeightedValues(Value valueTiles, Value stage,
                           ArrayRef<SmallVector<Value>> weights,
                           MutableArrayRef<Value> acc) {
    int64_t valueRowBlockBytes = shape.dimV * 16;
    Value valueAddress = stageAddress(valueTiles, stage, shape.dimV);
    SmallVector<Value> out(acc.begin(), acc.end());
    wgmmaFence();
    // Keys [16 kk, 16 kk + 16) are two row blocks of the tile.
    for (auto [kk, a] : llvm::enumerate(weights))
      out = wgmma(Value(), a,
                  wgmmaDescriptor(
                      rb.add(valueAddress, i64(2 * static_cast<int64_t>(kk) *
                                               valueRowBlockBytes)),
                      valueRowBlockBytes, 128),
                  /*transposeB=*/true, out);
    wgmmaCommitAndWait();
    llvm::copy(out, acc.begin());
  }

  const GpuTileShape &shape;
  /// Split kernels' workspace (GpuImage.h, segmentWorkspace), else null.
  Value workspace;
  /// Top-k selection's results in shared memory: per row the kept blocks
  /// and their count, and the CTA's bitmap of kept blocks.
  Value keptBlocks, keptCount, keptBitmap;
};

void SoftmaxKernelBuilder::selectBlocks(
    SparseSoftmaxOp op, const AttentionOperands &operands,
    const MaskStructure &band, Value keys, Value keyTiles, Value batch,
    Value headK, Value i0, Value rows, Value n, Value startQ, Value m,
    Value startK, Value scale, Value blockBegin, Value blockEnd) {
  Value base = sharedBase();
  Type i32Type = b.getI32Type();
  int64_t blockQ = shape.blockQ, dimK = shape.dimK, topk = shape.topk;
  Value querySums =
      sharedTile(base, shape.querySumsOffset(), {blockQ, dimK}, f32);
  Value meanKey = sharedTile(base, shape.meanKeyOffset(), {dimK}, f32);
  Value keptScores =
      sharedTile(base, shape.keptScoresOffset(), {blockQ, topk}, f32);
  keptBlocks =
      sharedTile(base, shape.keptBlocksOffset(), {blockQ, topk}, i32Type);
  keptCount = sharedTile(base, shape.keptCountOffset(), {blockQ}, i32Type);
  keptBitmap = sharedTile(base, shape.bitmapOffset(),
                          {kTopkBlockCapacity / 32}, i32Type);
  Value bk = idx(shape.blockK);
  Value firstHead = rb.mul(headK, operands.groupSize);

  // Per row, the sum over the group's query heads of q (rows past the
  // sequence read its last row; they keep nothing).
  forEachElement(blockQ * dimK, [&](Value element) {
    Value r = arith::DivUIOp::create(b, element, idx(dimK));
    Value d = arith::RemUIOp::create(b, element, idx(dimK));
    Value row = rb.add(startQ, minIndex(rb.add(i0, r), rb.sub(n, idx(1))));
    Value sum = rb.loop(idx(0), operands.groupSize, {rb.f32(0)},
                        [&](Value g, ValueRange acc) {
                          return SmallVector<Value>{rb.add(
                              acc[0],
                              rb.loadF32(operands.q,
                                         layoutIndices(layout, batch,
                                                       rb.add(firstHead, g),
                                                       row, d)))};
                        })[0];
    memref::StoreOp::create(b, sum, querySums, ValueRange{r, d});
  });
  forEachElement(blockQ, [&](Value r) {
    memref::StoreOp::create(b, i32(0), keptCount, r);
  });
  barrier();

  Value selectorThread = arith::CmpIOp::create(
      b, arith::CmpIPredicate::eq, arith::RemUIOp::create(b, threadId, idx(2)),
      idx(0));
  Value selectorRow = arith::DivUIOp::create(b, threadId, idx(2));
  rb.loop(blockBegin, blockEnd, [&](Value block) {
    Value j0 = rb.mul(block, bk);
    Value valid = rb.sub(m, j0);
    Value count = minIndex(bk, valid);
    commitCopies(copyTile(keyTiles, {idx(0)}, keys, batch, headK,
                          rb.add(startK, j0), valid, shape.blockK, dimK));
    waitForCopiesAndBarrier();
    // The block's mean key, summed in key order as the reference does.
    forEachElement(dimK, [&](Value d) {
      Value sum =
          rb.loop(idx(0), count, {rb.f32(0)}, [&](Value u, ValueRange acc) {
            return SmallVector<Value>{
                rb.add(acc[0], loadF32(keyTiles,
                                       tileIndices(keyTiles, {idx(0)}, u, d)))};
          })[0];
      Value keys = rb.indexToF32(count);
      memref::StoreOp::create(b, arith::DivFOp::create(b, sum, keys), meanKey,
                              d);
    });
    barrier();
    // One thread per row: eligibility, score, insertion into the row's
    // list, kept sorted by score (earlier blocks first among equals).
    Value r = selectorRow;
    rb.ifThen(arith::AndIOp::create(b, selectorThread, lessThan(r, rows)), [&] {
      Value i = rb.add(i0, r);
      Value jLast = rb.add(j0, rb.sub(count, idx(1)));
      Value eligible;
      if (band.exact) { // the block meets the row's band [i + L, i + U]
        Value lo = j0, hi = jLast;
        for (const LengthAffine &lower : band.lower)
          lo = arith::MaxSIOp::create(
              b, lo, rb.add(i, evaluateLength(rb, lower, n, m)));
        for (const LengthAffine &upper : band.upper)
          hi = arith::MinSIOp::create(
              b, hi, rb.add(i, evaluateLength(rb, upper, n, m)));
        eligible = arith::CmpIOp::create(b, arith::CmpIPredicate::sle, lo, hi);
      } else { // the mask does not read h (verified)
        eligible = rb.loop(
            j0, rb.add(j0, count),
            {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
            [&](Value j, ValueRange any) {
              Value allowed = rb.inlineExpression(
                  op.getMask(), {batch, firstHead, i, j, n, m, startQ, startK},
                  arith::ConstantIntOp::create(b, b.getI1Type(), 1));
              return SmallVector<Value>{arith::OrIOp::create(b, any[0], allowed)};
            })[0];
      }
      rb.ifThen(eligible, [&] {
        Value dot = rb.loop(idx(0), idx(dimK), {rb.f32(0)},
                            [&](Value d, ValueRange acc) {
                              return SmallVector<Value>{rb.add(
                                  acc[0],
                                  rb.mul(memref::LoadOp::create(
                                             b, querySums, ValueRange{r, d}),
                                         memref::LoadOp::create(b, meanKey, d)))};
                            })[0];
        Value score = rb.mul(scale, dot);
        Value kept = arith::IndexCastOp::create(
            b, b.getIndexType(), memref::LoadOp::create(b, keptCount, r));
        // The new entry goes after every entry scoring at least as much.
        Value position = rb.loop(
            idx(0), kept, {idx(0)}, [&](Value entry, ValueRange before) {
              Value atLeast = arith::CmpFOp::create(
                  b, arith::CmpFPredicate::OGE,
                  memref::LoadOp::create(b, keptScores, ValueRange{r, entry}),
                  score);
              return SmallVector<Value>{arith::SelectOp::create(
                  b, atLeast, rb.add(before[0], idx(1)), before[0])};
            })[0];
        rb.ifThen(lessThan(position, idx(topk)), [&] {
          // Shift entries [position, min(kept, topk - 1)) up by one.
          Value last = minIndex(kept, idx(topk - 1));
          rb.loop(idx(0), rb.sub(last, minIndex(position, last)),
                  [&](Value step) {
                    Value to = rb.sub(last, step);
                    Value from = rb.sub(to, idx(1));
                    for (Value list : {keptScores, keptBlocks})
                      memref::StoreOp::create(
                          b,
                          memref::LoadOp::create(b, list, ValueRange{r, from}),
                          list, ValueRange{r, to});
                  });
          memref::StoreOp::create(b, score, keptScores,
                                  ValueRange{r, position});
          memref::StoreOp::create(
              b, arith::IndexCastOp::create(b, i32Type, block), keptBlocks,
              ValueRange{r, position});
          memref::StoreOp::create(
              b,
              arith::IndexCastOp::create(
                  b, i32Type, minIndex(rb.add(kept, idx(1)), idx(topk))),
              keptCount, r);
        });
      });
    });
    barrier();
  });

  // The union of the rows' kept blocks.
  forEachIndex(arith::DivUIOp::create(b, blockBegin, idx(32)),
               arith::CeilDivUIOp::create(b, blockEnd, idx(32)),
               [&](Value word) {
                 memref::StoreOp::create(b, i32(0), keptBitmap, word);
               });
  barrier();
  forEachElement(blockQ * topk, [&](Value element) {
    Value r = arith::DivUIOp::create(b, element, idx(topk));
    Value entry = arith::RemUIOp::create(b, element, idx(topk));
    Value kept = arith::IndexCastOp::create(
        b, b.getIndexType(), memref::LoadOp::create(b, keptCount, r));
    rb.ifThen(lessThan(entry, kept), [&] {
      Value block = arith::IndexCastOp::create(
          b, b.getIndexType(),
          memref::LoadOp::create(b, keptBlocks, ValueRange{r, entry}));
      Value bit = arith::ShLIOp::create(
          b, i32(1),
          arith::IndexCastOp::create(b, i32Type,
                                     arith::RemUIOp::create(b, block, idx(32))));
      memref::AtomicRMWOp::create(b, arith::AtomicRMWKind::ori, bit, keptBitmap,
                                  ValueRange{arith::DivUIOp::create(b, block,
                                                                    idx(32))});
    });
  });
  barrier();
}

template <typename OpTy>
void SoftmaxKernelBuilder::build(OpTy op, ValueRange results,
                                 std::optional<int64_t> chunk) {
  AttentionOperands operands = getAttentionOperands(op, rb);
  layout = operands.layout;
  Value o = results[0];
  Value lse = results.size() > 1 ? results[1] : Value();
  Value scale = rb.softmaxScale(op.getScale(), idx(shape.dimK));
  Normalizer normalizer = op.getNormalizer();
  bool online = normalizer == Normalizer::softmax;
  MaskStructure band = analyzeMask(op.getMask());
  Value chunkSize = chunk ? idx(*chunk) : Value();
  Value negInf = rb.f32(-std::numeric_limits<double>::infinity());
  Value log2e = rb.f32(llvm::numbers::log2e);
  // With no score expression and a positive scale (as FlashAttention-2
  // does), the scale folds into each weight's exponent FMA: the scores
  // stay raw dot products, the row max is scaled once per row (a positive
  // scale keeps the max), and a weight is exp2(s scale log2e - m log2e).
  // Not with 32 rows per warp: there ptxas then needs more than 255
  // registers (causal d64 on sm_90a: 254 registers become 255 and 20
  // bytes of spills).
  std::optional<APFloat> givenScale = op.getScale();
  bool foldScale = online && op.getScore().empty() && shape.rowsPerWarp == 16 &&
                   (!givenScale || (givenScale->isFiniteNonZero() &&
                                    !givenScale->isNegative()));
  Value weightExponentScale = foldScale ? rb.mul(scale, log2e) : log2e;

  threadId = threadIndex();
  Value warp = arith::DivUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  Value lane = arith::RemUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  Value group = arith::DivUIOp::create(b, lane, idx(4));
  Value inGroup = arith::RemUIOp::create(b, lane, idx(4));
  // With key splits grid x is (query block, split), splits minor, so the
  // CTAs of one query block run side by side. A split walks blocksPerSplit
  // key blocks.
  //
  // Grid y is the query head, or with packed GQA groups the kv head, whose
  // problem has N * G rows (G = groupSize): row p is query p / G of query
  // head headK * G + p % G.
  const bool packed = shape.packGqa;
  Value groupSize = operands.groupSize;
  auto queryOfRow = [&](Value row) -> Value {
    return packed ? arith::DivUIOp::create(b, row, groupSize) : row;
  };
  Value queryBlock, split, splits, blocksPerSplit, queryBlocks;
  if (shape.splitKeys) {
    queryBlocks = arith::CeilDivUIOp::create(
        b, packed ? rb.mul(operands.lengthQ, groupSize) : operands.lengthQ,
        idx(shape.blockQ));
    if (shape.splitsAtLaunch()) {
      splits = arith::DivUIOp::create(b, gridSize(gpu::Dimension::x),
                                      queryBlocks);
      // At least 1: with no keys a single split stores o = 0, lse = -inf.
      blocksPerSplit = arith::MaxUIOp::create(
          b, idx(1),
          arith::CeilDivUIOp::create(
              b,
              arith::CeilDivUIOp::create(b, operands.lengthK,
                                         idx(shape.blockK)),
              splits));
    } else {
      splits = arith::MaxUIOp::create(
          b, idx(1),
          arith::CeilDivUIOp::create(b, operands.lengthK,
                                     idx(shape.splitKeys)));
      blocksPerSplit = idx(shape.splitKeys / shape.blockK);
    }
    Value x = blockIndex(gpu::Dimension::x);
    queryBlock = arith::DivUIOp::create(b, x, splits);
    split = arith::RemUIOp::create(b, x, splits);
  } else {
    queryBlock = blockIndex(gpu::Dimension::x);
  }
  Value gridHead = blockIndex(gpu::Dimension::y);
  Value batch = blockIndex(gpu::Dimension::z);
  Value headK =
      packed ? gridHead : arith::DivUIOp::create(b, gridHead, groupSize);
  auto headOfRow = [&](Value row) -> Value {
    if (!packed)
      return gridHead;
    return rb.add(rb.mul(headK, groupSize),
                  arith::RemUIOp::create(b, row, groupSize));
  };

  Value q = withUnitInnerStride(operands.q);
  Value k = withUnitInnerStride(operands.k);
  Value v = withUnitInnerStride(operands.v);

  // Shared memory: the Q tile, then two stages of K and of V.
  Value base = sharedBase();
  auto view = [&](int64_t offset, ArrayRef<int64_t> tileShape) {
    return sharedTile(base, offset, tileShape,
                      shape.splitF32 ? Type(f32) : shape.element);
  };
  int64_t valueTilesOffset = shape.queryTileBytes() + shape.keyTileBytes();
  Value queryTile, keyTiles, valueTiles;
  if (shape.wgmma) {
    queryTile =
        coreMatrixTile(base, 0, {}, shape.blockQ, shape.dimK, shape.element);
    keyTiles = coreMatrixTile(base, shape.queryTileBytes(), {kStages},
                              shape.blockK, shape.dimK, shape.element);
    valueTiles = coreMatrixTile(base, valueTilesOffset, {kStages}, shape.blockK,
                                shape.dimV, shape.element);
  } else {
    queryTile = view(0, {shape.blockQ, shape.pitchK()});
    keyTiles =
        view(shape.queryTileBytes(), {kStages, shape.blockK, shape.pitchK()});
    valueTiles =
        view(valueTilesOffset, {kStages, shape.blockK, shape.pitchV()});
  }

  Value startQ, n, startK, m;
  std::tie(startQ, n) = sequenceBounds(rb, operands.cuQ, batch, operands.lengthQ);
  std::tie(startK, m) = sequenceBounds(rb, operands.cuK, batch, operands.lengthK);
  checkSequence(rb, operands.cuQ, batch, startQ, n, operands.lengthQ);
  checkSequence(rb, operands.cuK, batch, startK, m, operands.lengthK);
  Value bq = idx(shape.blockQ), bk = idx(shape.blockK);
  // The CTA's rows [p0, p0 + rows) of the rowCount rows, and the queries
  // [i0, iLast] they belong to.
  Value rowCount = packed ? rb.mul(n, groupSize) : n;
  Value p0 = rb.mul(queryBlock, bq);
  // The grid covers the longest sequence; CTAs past this one's end exit
  // (uniformly, so the barriers inside stay CTA-wide).
  rb.ifThen(lessThan(p0, rowCount), [&] {
    Value rows = minIndex(bq, rb.sub(rowCount, p0));
    Value i0 = queryOfRow(p0);
    Value iLast = queryOfRow(rb.add(p0, rb.sub(rows, idx(1))));
    Value jBegin, jEnd;
    std::tie(jBegin, jEnd) =
        visibleKeyRange(rb, band, chunkSize, i0, iLast, n, m);
    Value keyBlockBegin = arith::DivUIOp::create(b, jBegin, bk);
    Value keyBlockEnd = arith::CeilDivUIOp::create(b, jEnd, bk);
    // Key splits: the CTA walks the band's blocks inside its split. Only
    // the splitCount splits from firstSplit that meet the band run (at
    // least one, which stores o = 0 and lse = -inf for rows without keys);
    // the rest of the body is built inside that condition.
    Value firstSplit, splitCount;
    OpBuilder::InsertionGuard participantsOnly(b);
    if (split) {
      firstSplit =
          minIndex(arith::DivUIOp::create(b, keyBlockBegin, blocksPerSplit),
                   rb.sub(splits, idx(1)));
      Value endSplit = arith::MaxUIOp::create(
          b, arith::CeilDivUIOp::create(b, keyBlockEnd, blocksPerSplit),
          firstSplit);
      splitCount =
          arith::MaxUIOp::create(b, idx(1), rb.sub(endSplit, firstSplit));
      Value participates = arith::AndIOp::create(
          b,
          arith::CmpIOp::create(b, arith::CmpIPredicate::uge, split,
                                firstSplit),
          lessThan(split, rb.add(firstSplit, splitCount)));
      Value splitBegin = rb.mul(split, blocksPerSplit);
      keyBlockBegin = arith::MaxUIOp::create(b, keyBlockBegin, splitBegin);
      keyBlockEnd = arith::MaxUIOp::create(
          b, keyBlockBegin,
          minIndex(keyBlockEnd, rb.add(splitBegin, blocksPerSplit)));
      auto onlyParticipants =
          scf::IfOp::create(b, participates, /*withElseRegion=*/false);
      b.setInsertionPoint(onlyParticipants.thenBlock()->getTerminator());
    }
    // Split kernels' workspace (GpuImage.h, segmentWorkspace): a header of
    // one word plus one per CTA, padded to 4 words, then each CTA's partial
    // state; header word 1 + t counts the finished splits of query tile t.
    // A query block's splits are consecutive CTAs (grid x, splits minor).
    Value headAndBatch, tileStates;
    const int64_t stateWords = shape.splitStateBytes() / 4;
    if (split) {
      Value gridHeads = packed ? operands.headsK : operands.headsQ;
      headAndBatch = rb.add(rb.mul(batch, gridHeads), gridHead);
      Value gridX = rb.mul(queryBlocks, splits);
      Value ctas = rb.mul(gridX, rb.mul(gridHeads, operands.numBatches));
      Value header = rb.mul(
          arith::CeilDivUIOp::create(b, rb.add(idx(1), ctas), idx(4)), idx(4));
      Value firstCta =
          rb.add(rb.mul(headAndBatch, gridX), rb.mul(queryBlock, splits));
      tileStates = rb.add(header, rb.mul(firstCta, idx(stateWords)));
    }
    // The first word of split `splitIndex`'s partial state.
    auto splitState = [&](Value splitIndex) {
      return rb.add(tileStates, rb.mul(splitIndex, idx(stateWords)));
    };
    if constexpr (std::is_same_v<OpTy, SparseSoftmaxOp>) {
      if (shape.topk) {
        // The bitmap of kept blocks has room for kTopkBlockCapacity blocks:
        // longer sequences are reported (4, k, m, block, capacity).
        Value fits = arith::CmpIOp::create(
            b, arith::CmpIPredicate::ule, arith::CeilDivUIOp::create(b, m, bk),
            idx(kTopkBlockCapacity));
        rb.ifThen(arith::XOrIOp::create(
                      b, fits, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
                  [&] {
                    rb.recordError(
                        4, {idx(cast<BlockArgument>(operands.k).getArgNumber()),
                            m, bk, idx(kTopkBlockCapacity)});
                  });
        keyBlockEnd = arith::SelectOp::create(b, fits, keyBlockEnd, keyBlockBegin);
        selectBlocks(op, operands, band, k, keyTiles, batch, headK, i0, rows,
                     n, startQ, m, startK, scale, keyBlockBegin, keyBlockEnd);
      }
    }
    // Loads of user tensors that do not depend on (s, i, j), like slope[h],
    // once per CTA instead of once per score (packed: per row, below).
    if (!packed)
      rb.hoistSoftmaxInvariantLoads(op.getScore(), op.getMask(), batch,
                                    gridHead, n, m, startQ, startK);

    auto copyKeys = [&](Value keyBlock, Value stage) {
      Value j0 = rb.mul(keyBlock, bk);
      return copyTile(keyTiles, {stage}, k, batch, headK, rb.add(startK, j0),
                      rb.sub(m, j0), shape.blockK, shape.dimK);
    };
    auto copyValues = [&](Value keyBlock, Value stage) {
      Value j0 = rb.mul(keyBlock, bk);
      return copyTile(valueTiles, {stage}, v, batch, headK, rb.add(startK, j0),
                      rb.sub(m, j0), shape.blockK, shape.dimV);
    };
    auto copyKeysAndValues = [&](Value keyBlock, Value stage) {
      SmallVector<Value> tokens = copyKeys(keyBlock, stage);
      llvm::append_range(tokens, copyValues(keyBlock, stage));
      commitCopies(tokens);
    };

    // Warp-specialised kernels hand stages over through mbarriers: thread
    // 0 sets them up and the prologue's barrier publishes them. The
    // visit-th visited block uses stage visit % 2, whose barriers complete
    // their (visit / 2)-th phase for it.
    const int64_t consumerThreads = shape.warps * nvvm::kWarpSize;
    const int64_t producerThreads = shape.producerWarps * nvvm::kWarpSize;
    auto barrierOf = [&](MBarrierKind kind, Value stage) {
      return rb.add(idx(kind), stage);
    };
    auto stageOf = [&](Value visit) {
      return arith::RemUIOp::create(b, visit, idx(kStages));
    };
    auto parityOf = [&](Value visit) {
      return arith::RemUIOp::create(
          b, arith::DivUIOp::create(b, visit, idx(kStages)), idx(2));
    };
    // Waits until the producer's copies for the visit-th block have landed.
    auto awaitFilled = [&](MBarrierKind kind, Value visit) {
      mbarrierWait(barrierOf(kind, stageOf(visit)), parityOf(visit));
      fenceForWgmma();
    };
    if (shape.specialized()) {
      mbarrierOffset = shape.mbarrierOffset();
      rb.ifThen(
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)),
          [&] {
            for (int64_t stage = 0; stage < kStages; ++stage) {
              mbarrierInit(idx(kKeysFull + stage), producerThreads);
              mbarrierInit(idx(kValuesFull + stage), producerThreads);
              mbarrierInit(idx(kKeysEmpty + stage), consumerThreads);
              mbarrierInit(idx(kValuesEmpty + stage), consumerThreads);
            }
          });
    }

    // Prologue: Q and (unless a producer copies them) the first key block.
    SmallVector<Value> tokens = copyRows(
        queryTile, {}, q,
        [&](Value r, Value col) {
          Value row = rb.add(p0, r);
          return layoutIndices(layout, batch, headOfRow(row),
                               rb.add(startQ, queryOfRow(row)), col);
        },
        rows, shape.blockQ, shape.dimK);
    KeySchedule schedule =
        keySchedule(op, keyBlockBegin, keyBlockEnd,
                    arith::CeilDivUIOp::create(b, m, bk), queryBlock, batch,
                    gridHead);
    Value firstCursor = schedule.nextVisited(schedule.begin);
    rb.ifThen(lessThan(firstCursor, schedule.end), [&] {
      if (shape.specialized())
        return;
      copyKeysAndValues(schedule.blockAt(firstCursor), idx(0));
      // The wgmma loop reads keys a block ahead of values (see visit).
      if (!shape.wgmma)
        return;
      Value second = schedule.nextVisited(rb.add(firstCursor, idx(1)));
      rb.ifThen(lessThan(second, schedule.end), [&] {
        commitCopies(copyKeys(schedule.blockAt(second), idx(1)));
      });
    });
    commitCopies(tokens);
    waitForCopiesAndBarrier();

    // The producer warpgroup: for each visited block, K into its stage once
    // the consumers' S no longer reads the stage, then V once their P V no
    // longer does. Its copies are shared by its 128 threads; each thread's
    // cp.async.mbarrier.arrive counts once the copies it started landed.
    auto produce = [&] {
      copyGroup = {rb.sub(threadId, idx(consumerThreads)), producerThreads};
      loopOverVisited(
          schedule, {idx(0)},
          [&](Value cursor, ValueRange carried) -> SmallVector<Value> {
            Value visit = carried[0], stage = stageOf(visit);
            Value block = schedule.blockAt(cursor);
            // The stage's previous phase of "empty": the one before the
            // first counts as complete.
            Value emptied = rb.sub(idx(1), parityOf(visit));
            mbarrierWait(barrierOf(kKeysEmpty, stage), emptied);
            copyKeys(block, stage);
            mbarrierArriveAfterCopies(barrierOf(kKeysFull, stage));
            mbarrierWait(barrierOf(kValuesEmpty, stage), emptied);
            copyValues(block, stage);
            mbarrierArriveAfterCopies(barrierOf(kValuesFull, stage));
            return {rb.add(visit, idx(1))};
          });
      // No copy outlives the thread.
      waitForCopies();
      copyGroup = {};
    };

    auto consume = [&] {
      // This warp's rows: `rowTiles` mma row tiles of 16 from warpRow0. The A
      // operand of Q for row tile t and the 16 columns from 16 kk comes from
      // one ldmatrix.x4, kept for the whole loop or reloaded per key block.
      const int64_t rowTiles = shape.rowTiles();
      const int64_t depthSteps = shape.dimK / 16;
      Value warpRow0 = rb.mul(warp, idx(shape.rowsPerWarp));
      auto loadQueryFragment = [&](int64_t t, int64_t kk) {
        return loadAOperand(queryTile, lane, rb.add(warpRow0, idx(t * 16)),
                            idx(kk * 16));
      };
      // Split f32: the high and low bf16 parts from the f32 tile.
      auto loadSplitQueryFragment = [&](int64_t t, int64_t kk) {
        return loadElementwiseOperand(
            queryTile, {}, lane, rb.add(warpRow0, idx(t * 16)), idx(kk * 16),
            nvvm::kARegisters, nvvm::mmaACoord,
            /*transposed=*/false);
      };
      SmallVector<SmallVector<Value>> heldQuery; // [t * depthSteps + kk]
      SmallVector<MmaOperand> heldSplitQuery;
      if (shape.queryInRegisters())
        for (int64_t t = 0; t < rowTiles; ++t)
          for (int64_t kk = 0; kk < depthSteps; ++kk) {
            if (shape.splitF32)
              heldSplitQuery.push_back(loadSplitQueryFragment(t, kk));
            else
              heldQuery.push_back(loadQueryFragment(t, kk));
          }
      auto queryFragment = [&](int64_t t, int64_t kk) {
        return shape.queryInRegisters() ? heldQuery[t * depthSteps + kk]
                                        : loadQueryFragment(t, kk);
      };
      auto splitQueryFragment = [&](int64_t t, int64_t kk) {
        return shape.queryInRegisters() ? heldSplitQuery[t * depthSteps + kk]
                                        : loadSplitQueryFragment(t, kk);
      };

      // The rows of this lane, slot 2t + half: rows g and g + 8 of row tile
      // t, and the query and head each is. Expressions see them clamped to
      // the last row, so rows past the end (whose results are dropped)
      // never read user tensors out of bounds.
      const int64_t rowSlots = 2 * rowTiles;
      SmallVector<Value> tileRow(rowSlots), laneRow(rowSlots),
          exprRow(rowSlots), slotHead(rowSlots);
      // Packed: the hoisted loads of each slot's head (see
      // hoistSoftmaxInvariantLoads above).
      SmallVector<IRMapping> slotLoads(rowSlots);
      for (int64_t slot = 0; slot < rowSlots; ++slot) {
        tileRow[slot] = rb.add(
            warpRow0, rb.add(group, idx(16 * (slot / 2) + 8 * (slot % 2))));
        laneRow[slot] = rb.add(p0, tileRow[slot]);
        Value clamped = minIndex(laneRow[slot], rb.sub(rowCount, idx(1)));
        exprRow[slot] = queryOfRow(clamped);
        slotHead[slot] = headOfRow(clamped);
        if (packed) {
          rb.hoistedLoads.clear();
          rb.hoistSoftmaxInvariantLoads(op.getScore(), op.getMask(), batch,
                                        slotHead[slot], n, m, startQ, startK);
          slotLoads[slot] = rb.hoistedLoads;
        }
      }

      int64_t scoreTiles = shape.blockK / nvvm::kMmaN;
      int64_t outputTiles = shape.dimV / nvvm::kMmaN;
      // Loop state: m of every row slot, l of every row slot, then acc (4
      // floats per row tile and output tile).
      SmallVector<Value> init(rowSlots, negInf);
      init.append(rowSlots, rb.f32(0));
      init.append(rowTiles * outputTiles * 4, rb.f32(0));
      SmallVector<Type> stateTypes(init.size(), f32);
      auto accIndex = [&](int64_t t, int64_t et) {
        return 2 * rowSlots + (t * outputTiles + et) * 4;
      };
      // Register `reg` (0..3) of a C fragment belongs to row slot 2t + reg / 2.
      auto scoreIndex = [&](int64_t t, int64_t nt) {
        return (t * scoreTiles + nt) * 4;
      };

      // The score registers of a key block: 4 per row tile and 8-key tile.
      const int64_t scoreCount = rowTiles * scoreTiles * 4;
      // `aheadScores`: this block's S, computed one visit ahead (wgmma only).
      auto emitTile = [&](Value keyBlock, Value stage, ValueRange state,
                          bool applyMask,
                          ValueRange aheadScores) -> SmallVector<Value> {
        Value j0 = rb.mul(keyBlock, bk);
        // wgmma's scores come computed; mma.sync computes them here.
        SmallVector<Value> scores(aheadScores);
        if (!shape.wgmma)
          scores.assign(scoreCount, rb.f32(0));
        if (shape.splitF32) {
          // S = Q K^T, three mma per product of split operands.
          for (int64_t kk = 0; kk < depthSteps; ++kk) {
            SmallVector<MmaOperand> query;
            for (int64_t t = 0; t < rowTiles; ++t)
              query.push_back(splitQueryFragment(t, kk));
            for (int64_t nt = 0; nt < scoreTiles; ++nt) {
              // B[d][j] = K[j][d]: the key tile transposed.
              MmaOperand keys = loadElementwiseOperand(
                  keyTiles, {stage}, lane, idx(nt * 8), idx(kk * 16),
                  nvvm::kBRegisters, nvvm::mmaBCoord, /*transposed=*/true);
              for (int64_t t = 0; t < rowTiles; ++t) {
                MutableArrayRef<Value> c(&scores[scoreIndex(t, nt)], 4);
                llvm::copy(mma(query[t], keys, c), c.begin());
              }
            }
          }
        } else if (!shape.wgmma) {
          // S = Q K^T: per 8 keys, ldmatrix.x4 yields the B operands of two
          // 16-column steps of Dk (x2 for an odd last step), used by every row
          // tile.
          Value keyRow = arith::RemUIOp::create(b, lane, idx(8));
          Value keyCol =
              rb.mul(arith::DivUIOp::create(b, lane, idx(8)), idx(8));
          Value keyColX2 =
              rb.mul(arith::RemUIOp::create(
                         b, arith::DivUIOp::create(b, lane, idx(8)), idx(2)),
                     idx(8));
          for (int64_t kk = 0; kk < depthSteps; kk += 2) {
            bool pair = kk + 1 < depthSteps;
            SmallVector<SmallVector<Value>> first, second;
            for (int64_t t = 0; t < rowTiles; ++t) {
              first.push_back(queryFragment(t, kk));
              if (pair)
                second.push_back(queryFragment(t, kk + 1));
            }
            for (int64_t nt = 0; nt < scoreTiles; ++nt) {
              SmallVector<Value> regs = ldmatrix(
                  keyTiles, {stage}, rb.add(keyRow, idx(nt * 8)),
                  rb.add(idx(kk * 16), pair ? keyCol : keyColX2), pair ? 4 : 2,
                  /*transpose=*/false);
              for (int64_t t = 0; t < rowTiles; ++t) {
                MutableArrayRef<Value> c(&scores[scoreIndex(t, nt)], 4);
                SmallVector<Value> updated =
                    mma(first[t], {regs[0], regs[1]}, c);
                if (pair)
                  updated = mma(second[t], {regs[2], regs[3]}, updated);
                llvm::copy(updated, c.begin());
              }
            }
          }
        }

        // Scale, score expression, mask; then the weights P.
        SmallVector<Value> p(scores.size());
        Value jLimit = rb.sub(m, idx(1));
        // Top-k: whether each of this lane's rows kept the block.
        SmallVector<Value> rowKept(rowSlots);
        if (shape.topk)
          for (int64_t slot = 0; slot < rowSlots; ++slot)
            rowKept[slot] = rowKeeps(tileRow[slot], keyBlock);
        for (int64_t t = 0; t < rowTiles; ++t)
          for (int64_t nt = 0; nt < scoreTiles; ++nt)
            for (int64_t reg = 0; reg < 4; ++reg) {
              int64_t slot = 2 * t + reg / 2;
              if (packed)
                rb.hoistedLoads = slotLoads[slot];
              Value j = rb.add(
                  j0, rb.add(idx(nt * 8 + reg % 2), rb.mul(inGroup, idx(2))));
              Value jExpr = minIndex(j, jLimit);
              Value s = scores[scoreIndex(t, nt) + reg];
              if (!foldScale)
                s = rb.mul(scale, s);
              s = rb.inlineExpression(op.getScore(),
                                      {s, batch, slotHead[slot], exprRow[slot],
                                       jExpr, n, m, startQ, startK},
                                      s);
              Value allowed = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
              if (applyMask) {
                allowed = rb.inlineExpression(
                    op.getMask(),
                    {batch, slotHead[slot], exprRow[slot], jExpr, n, m, startQ,
                     startK},
                    arith::ConstantIntOp::create(b, b.getI1Type(), 1));
                allowed = arith::AndIOp::create(b, allowed, lessThan(j, m));
                if (shape.topk)
                  allowed = arith::AndIOp::create(b, allowed, rowKept[slot]);
                if (chunkSize)
                  allowed = arith::AndIOp::create(
                      b, allowed,
                      arith::CmpIOp::create(
                          b, arith::CmpIPredicate::eq,
                          arith::DivUIOp::create(b, exprRow[slot], chunkSize),
                          arith::DivUIOp::create(b, jExpr, chunkSize)));
              }
              if (normalizer == Normalizer::sigmoid)
                s = arith::DivFOp::create(
                    b, rb.f32(1),
                    arith::AddFOp::create(
                        b, rb.f32(1),
                        math::ExpOp::create(b, arith::NegFOp::create(b, s))));
              // Softmax: -inf for a masked key; sigmoid and none: weight 0.
              p[scoreIndex(t, nt) + reg] =
                  applyMask ? Value(arith::SelectOp::create(
                                  b, allowed, s, online ? negInf : rb.f32(0)))
                            : s;
            }

        SmallVector<Value> next(state.begin(), state.end());
        if (online) {
          for (int64_t slot = 0; slot < rowSlots; ++slot) {
            int64_t t = slot / 2, half = slot % 2;
            Value tileMax = negInf;
            for (int64_t nt = 0; nt < scoreTiles; ++nt)
              for (int e = 0; e < 2; ++e)
                tileMax = arith::MaximumFOp::create(
                    b, tileMax, p[scoreIndex(t, nt) + 2 * half + e]);
            tileMax = quadReduce(tileMax, /*max=*/true);
            if (foldScale)
              tileMax = rb.mul(tileMax, scale);
            Value oldMax = state[slot];
            Value newMax = arith::MaximumFOp::create(b, oldMax, tileMax);
            // A row with no allowed key so far keeps m = -inf; exponents are
            // taken relative to 0 then, so exp(-inf) = 0 and nothing is NaN.
            // A NaN or +inf maximum is live: the row becomes NaN.
            Value live = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
                                               newMax, negInf);
            Value offset = arith::MulFOp::create(
                b, arith::SelectOp::create(b, live, newMax, rb.f32(0)), log2e);
            auto exp = [&](Value x, Value toLog2) {
              return math::Exp2Op::create(
                  b, math::FmaOp::create(b, x, toLog2,
                                         arith::NegFOp::create(b, offset)));
            };
            Value alpha = exp(oldMax, log2e);
            Value sum = rb.f32(0);
            for (int64_t nt = 0; nt < scoreTiles; ++nt)
              for (int e = 0; e < 2; ++e) {
                Value &weight = p[scoreIndex(t, nt) + 2 * half + e];
                weight = exp(weight, weightExponentScale);
                sum = arith::AddFOp::create(b, sum, weight);
              }
            next[slot] = newMax;
            next[rowSlots + slot] =
                math::FmaOp::create(b, state[rowSlots + slot], alpha, sum);
            for (int64_t et = 0; et < outputTiles; ++et)
              for (int e = 0; e < 2; ++e) {
                Value &value = next[accIndex(t, et) + 2 * half + e];
                value = arith::MulFOp::create(b, value, alpha);
              }
          }
        }

        // acc += P V: the C fragments of S tiles 2kk and 2kk+1 are the A
        // fragment of keys [16kk, 16kk + 16).
        // The element pairs of its 4 registers, in register order.
        auto weightPairs = [&](int64_t t, int64_t kk) {
          Value *lo = &p[scoreIndex(t, 2 * kk)],
                *hi = &p[scoreIndex(t, 2 * kk + 1)];
          return std::array<std::pair<Value, Value>, 4>{
              {{lo[0], lo[1]}, {lo[2], lo[3]}, {hi[0], hi[1]}, {hi[2], hi[3]}}};
        };
        auto weights = [&](int64_t t, int64_t kk) {
          SmallVector<Value> registers;
          for (auto [x, y] : weightPairs(t, kk))
            registers.push_back(pack(x, y));
          return registers;
        };
        if (shape.wgmma) {
          SmallVector<SmallVector<Value>> a;
          for (int64_t kk = 0; kk < shape.blockK / 16; ++kk)
            a.push_back(weights(0, kk));
          wgmmaWeightedValues(
              valueTiles, stage, a,
              MutableArrayRef<Value>(&next[accIndex(0, 0)], outputTiles * 4));
          return next;
        }
        if (shape.splitF32) {
          for (int64_t kk = 0; kk < shape.blockK / 16; ++kk) {
            SmallVector<MmaOperand> a(rowTiles);
            for (int64_t t = 0; t < rowTiles; ++t)
              for (auto [x, y] : weightPairs(t, kk))
                appendSplit(x, y, a[t]);
            for (int64_t et = 0; et < outputTiles; ++et) {
              MmaOperand values = loadElementwiseOperand(
                  valueTiles, {stage}, lane, idx(kk * 16), idx(et * 8),
                  nvvm::kBRegisters, nvvm::mmaBCoord, /*transposed=*/false);
              for (int64_t t = 0; t < rowTiles; ++t) {
                MutableArrayRef<Value> acc(&next[accIndex(t, et)], 4);
                llvm::copy(mma(a[t], values, acc), acc.begin());
              }
            }
          }
          return next;
        }
        // V's B operands via ldmatrix.trans, used by every row tile.
        Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
        Value valueRow =
            rb.add(arith::RemUIOp::create(b, lane, idx(8)),
                   rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)), idx(8)));
        Value valueCol =
            rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8));
        for (int64_t kk = 0; kk < shape.blockK / 16; ++kk) {
          SmallVector<SmallVector<Value>> a;
          for (int64_t t = 0; t < rowTiles; ++t)
            a.push_back(weights(t, kk));
          for (int64_t et = 0; et < outputTiles; et += 2) {
            SmallVector<Value> regs =
                ldmatrix(valueTiles, {stage}, rb.add(idx(kk * 16), valueRow),
                         rb.add(idx(et * 8), valueCol), 4, /*transpose=*/true);
            for (int64_t t = 0; t < rowTiles; ++t)
              for (int64_t pairIndex = 0; pairIndex < 2; ++pairIndex) {
                MutableArrayRef<Value> acc(&next[accIndex(t, et + pairIndex)],
                                           4);
                SmallVector<Value> updated = mma(
                    a[t], {regs[2 * pairIndex], regs[2 * pairIndex + 1]}, acc);
                llvm::copy(updated, acc.begin());
              }
          }
        }
        return next;
      };

      // One key block: prefetch the next visited one into the other stage,
      // then the tile (without the mask when the block is inside the band).
      //
      // wgmma pipelines the two matmuls: keys are copied a block ahead of
      // values, and this block's scores come in `carried` (computed by the
      // previous visit, or before the loop). While this block's softmax runs
      // on the CUDA cores, the tensor cores compute the next block's scores
      // from the other key stage; P V's wgmmaWait retires both, before the
      // barrier that lets either stage be refilled. The last visit's look-
      // ahead reads a stale stage and is dropped.
      //
      // Warp-specialised, `position` counts the blocks visited before this
      // one, the consumers copy nothing, and instead of the barrier they
      // wait for the producer's stages (keys before S, values before the
      // softmax) and hand them back once P V's wait retired their reads.
      auto visit = [&](Value cursor, Value position,
                       ValueRange carried) -> SmallVector<Value> {
        Value stage = shape.specialized() ? stageOf(position) : position;
        Value keyBlock = schedule.blockAt(cursor);
        Value nextCursor = schedule.nextVisited(rb.add(cursor, idx(1)));
        Value otherStage = rb.sub(idx(1), stage);
        ValueRange state = carried.take_front(stateTypes.size());
        ValueRange scores = carried.drop_front(stateTypes.size());
        SmallVector<Value> nextScores;
        if (shape.specialized()) {
          rb.ifThen(lessThan(nextCursor, schedule.end),
                    [&] { awaitFilled(kKeysFull, rb.add(position, idx(1))); });
          nextScores = wgmmaScores(queryTile, keyTiles, warp, otherStage,
                                   SmallVector<Value>(scoreCount, rb.f32(0)),
                                   /*wait=*/false);
          awaitFilled(kValuesFull, position);
        } else if (shape.wgmma) {
          rb.ifThen(lessThan(nextCursor, schedule.end), [&] {
            commitCopies(copyValues(schedule.blockAt(nextCursor), otherStage));
            Value afterNext = schedule.nextVisited(rb.add(nextCursor, idx(1)));
            rb.ifThen(lessThan(afterNext, schedule.end), [&] {
              commitCopies(copyKeys(schedule.blockAt(afterNext), stage));
            });
          });
          nextScores = wgmmaScores(queryTile, keyTiles, warp, otherStage,
                                   SmallVector<Value>(scoreCount, rb.f32(0)),
                                   /*wait=*/false);
        } else {
          rb.ifThen(lessThan(nextCursor, schedule.end), [&] {
            copyKeysAndValues(schedule.blockAt(nextCursor), otherStage);
          });
        }
        SmallVector<Value> next;
        Value j0 = rb.mul(keyBlock, bk);
        Value jLast = rb.add(j0, idx(shape.blockK - 1));
        if (!band.exact || shape.topk) { // top-k: rows keep different blocks
          next = emitTile(keyBlock, stage, state, /*applyMask=*/true, scores);
        } else {
          // Inside the band and the keys: no mask. The check uses the
          // CTA's rows; a tile is uniform across the CTA either way.
          Value full = arith::AndIOp::create(
              b,
              blockInsideBand(rb, band, chunkSize, i0, iLast, j0, jLast, n, m),
              lessThan(jLast, m));
          ValueRange chosen = rb.ifThen(
              full, stateTypes,
              [&] { return emitTile(keyBlock, stage, state, false, scores); },
              [&] { return emitTile(keyBlock, stage, state, true, scores); });
          next.assign(chosen.begin(), chosen.end());
        }
        if (shape.specialized()) {
          mbarrierArrive(barrierOf(kValuesEmpty, stage));
          rb.ifThen(lessThan(nextCursor, schedule.end),
                    [&] { mbarrierArrive(barrierOf(kKeysEmpty, otherStage)); });
          next.insert(next.begin(), rb.add(position, idx(1)));
        } else {
          waitForCopiesAndBarrier();
          next.insert(next.begin(), otherStage);
        }
        llvm::append_range(next, nextScores);
        return next;
      };
      // Loop state: the stage holding the current block (warp-specialised:
      // the blocks visited so far), then m, l, acc, and for wgmma the
      // block's scores (the first block's computed here).
      SmallVector<Value> loopInit = {idx(0)};
      llvm::append_range(loopInit, init);
      if (shape.wgmma) {
        SmallVector<Type> scoreTypes(scoreCount, f32);
        SmallVector<Value> zeros(scoreCount, rb.f32(0));
        ValueRange firstScores = rb.ifThen(
            lessThan(firstCursor, schedule.end), scoreTypes,
            [&] {
              if (shape.specialized())
                awaitFilled(kKeysFull, idx(0));
              SmallVector<Value> scores = wgmmaScores(
                  queryTile, keyTiles, warp, idx(0), zeros, /*wait=*/true);
              // Every warpgroup has read stage 0's keys before the first
              // visit refills it.
              if (shape.specialized())
                mbarrierArrive(barrierOf(kKeysEmpty, idx(0)));
              else
                barrier();
              return scores;
            },
            [&] { return zeros; });
        llvm::append_range(loopInit, firstScores);
      }
      ValueRange loopResults = loopOverVisited(
          schedule, loopInit,
          [&](Value cursor, ValueRange carried) -> SmallVector<Value> {
            return visit(cursor, carried[0], carried.drop_front());
          });
      ValueRange finalState = loopResults.drop_front();

      // o = acc / l (0 for a row without weight), lse = m + log(l); a
      // split stores both in its partial state, combined below.
      Value ownState = split ? splitState(split) : Value();
      for (int64_t slot = 0; slot < rowSlots; ++slot) {
        int64_t t = slot / 2, half = slot % 2;
        Value rowSum =
            online ? quadReduce(finalState[rowSlots + slot], /*max=*/false)
                   : rb.f32(1);
        Value hasWeight = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
                                                rowSum, rb.f32(0));
        Value inverse = arith::SelectOp::create(
            b, hasWeight, arith::DivFOp::create(b, rb.f32(1), rowSum),
            rb.f32(0));
        if (!online)
          inverse = rb.f32(1);
        // Recomputed from the row rather than kept live across the loop.
        Value query = queryOfRow(laneRow[slot]);
        Value head = headOfRow(laneRow[slot]);
        Value rowQ = rb.add(startQ, query);
        rb.ifThen(lessThan(laneRow[slot], rowCount), [&] {
          for (int64_t et = 0; et < outputTiles; ++et)
            for (int e = 0; e < 2; ++e) {
              Value col = rb.add(idx(et * 8 + e), rb.mul(inGroup, idx(2)));
              Value value = arith::MulFOp::create(
                  b, finalState[accIndex(t, et) + 2 * half + e], inverse);
              if (split)
                storeWordF32(value, workspace,
                             rb.add(ownState, rb.add(rb.mul(tileRow[slot],
                                                            idx(shape.dimV)),
                                                     col)));
              else
                rb.storeF32(value, o,
                            layoutIndices(layout, batch, head, rowQ, col));
            }
          if (lse || (split && online)) {
            Value first = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                                inGroup, idx(0));
            rb.ifThen(first, [&] {
              Value rowLse = rb.logSumExp(hasWeight, finalState[slot], rowSum);
              if (split)
                storeWordF32(
                    rowLse, workspace,
                    rb.add(ownState, rb.add(idx(shape.blockQ * shape.dimV),
                                            tileRow[slot])));
              else
                memref::StoreOp::create(
                    b, rowLse, lse,
                    lseIndices(operands.cuQ, batch, head, rowQ, query));
            });
          }
        });
      }
    };
    // The last split of a query tile to finish combines the partial states
    // of all its splits (every thread of the CTA takes part):
    //   lse = log sum_s exp(lse_s),  o = sum_s exp(lse_s - lse) o_s;
    // sigmoid and unnormalised weights just add up. Each thread's release
    // fence orders its partial state before the barrier, after which one
    // thread counts the split done; the last one's threads acquire before
    // reading the others' states.
    // A split's weight exp(lse_s - offset) as one ex2.approx.
    auto splitWeight = [&](Value splitLse, Value offset) {
      return math::Exp2Op::create(
          b, arith::MulFOp::create(
                 b, arith::SubFOp::create(b, splitLse, offset), log2e));
    };
    auto combineSplits = [&] {
      LLVM::FenceOp::create(b, LLVM::AtomicOrdering::release, "device");
      barrier();
      // Q's tile is free now: its first word passes the count around.
      Value arrived = sharedTile(base, 0, {1}, b.getI32Type());
      Value counter =
          rb.add(idx(1), rb.add(rb.mul(headAndBatch, queryBlocks), queryBlock));
      rb.ifThen(
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)),
          [&] {
            Value before = memref::AtomicRMWOp::create(
                b, arith::AtomicRMWKind::addi, i32(1), workspace,
                ValueRange{counter});
            memref::StoreOp::create(b, before, arrived, ValueRange{idx(0)});
          });
      barrier();
      Value finishedBefore = arith::IndexCastOp::create(
          b, b.getIndexType(),
          memref::LoadOp::create(b, arrived, ValueRange{idx(0)}));
      Value last =
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq, finishedBefore,
                                rb.sub(splitCount, idx(1)));
      rb.ifThen(last, [&] {
        LLVM::FenceOp::create(b, LLVM::AtomicOrdering::acquire, "device");
        Value splitEnd = rb.add(firstSplit, splitCount);
        auto sumOverSplits =
            [&](ValueRange init,
                llvm::function_ref<SmallVector<Value>(Value, ValueRange)>
                    body) { return rb.loop(firstSplit, splitEnd, init, body); };
        auto partialLse = [&](Value s, Value r) {
          return loadWordF32(
              workspace,
              rb.add(splitState(s), rb.add(idx(shape.blockQ * shape.dimV), r)));
        };
        // Per row, once: the largest partial lse (the offset; 0 for a row
        // no split saw a key for) and the sum of the splits' weights
        // exp(lse_s - offset), after the count in Q's free tile.
        Value rowFacts = sharedTile(base, 16, {2, shape.blockQ}, f32);
        if (online) {
          forEachElement(shape.blockQ, [&](Value r) {
            rb.ifThen(lessThan(r, rows), [&] {
              Value maxLse =
                  sumOverSplits({negInf}, [&](Value s, ValueRange acc) {
                    return SmallVector<Value>{
                        arith::MaximumFOp::create(b, acc[0], partialLse(s, r))};
                  })[0];
              Value hasWeight = arith::CmpFOp::create(
                  b, arith::CmpFPredicate::UNE, maxLse, negInf);
              Value offset =
                  arith::SelectOp::create(b, hasWeight, maxLse, rb.f32(0));
              Value sum =
                  sumOverSplits({rb.f32(0)}, [&](Value s, ValueRange acc) {
                    return SmallVector<Value>{
                        rb.add(acc[0], splitWeight(partialLse(s, r), offset))};
                  })[0];
              memref::StoreOp::create(b, offset, rowFacts,
                                      ValueRange{idx(0), r});
              memref::StoreOp::create(b, sum, rowFacts, ValueRange{idx(1), r});
              if (lse) {
                Value row = rb.add(p0, r), query = queryOfRow(row);
                memref::StoreOp::create(
                    b, rb.logSumExp(hasWeight, offset, sum), lse,
                    lseIndices(operands.cuQ, batch, headOfRow(row),
                               rb.add(startQ, query), query));
              }
            });
          });
          barrier();
        }
        forEachElement(shape.blockQ * shape.dimV, [&](Value element) {
          Value r = arith::DivUIOp::create(b, element, idx(shape.dimV));
          Value col = arith::RemUIOp::create(b, element, idx(shape.dimV));
          rb.ifThen(lessThan(r, rows), [&] {
            Value row = rb.add(p0, r);
            Value query = queryOfRow(row), head = headOfRow(row);
            Value rowQ = rb.add(startQ, query);
            auto partial = [&](Value s) {
              return loadWordF32(
                  workspace, rb.add(splitState(s),
                                    rb.add(rb.mul(r, idx(shape.dimV)), col)));
            };
            if (!online) {
              Value sum =
                  sumOverSplits({rb.f32(0)}, [&](Value s, ValueRange acc) {
                    return SmallVector<Value>{rb.add(acc[0], partial(s))};
                  })[0];
              rb.storeF32(sum, o,
                          layoutIndices(layout, batch, head, rowQ, col));
              return;
            }
            Value offset =
                memref::LoadOp::create(b, rowFacts, ValueRange{idx(0), r});
            Value sum =
                memref::LoadOp::create(b, rowFacts, ValueRange{idx(1), r});
            Value weighted =
                sumOverSplits({rb.f32(0)}, [&](Value s, ValueRange acc) {
                  return SmallVector<Value>{math::FmaOp::create(
                      b, splitWeight(partialLse(s, r), offset), partial(s),
                      acc[0])};
                })[0];
            // A row no split saw a key for has no weight: o = 0 (no NaN);
            // a NaN sum stays NaN.
            Value hasWeight = arith::CmpFOp::create(
                b, arith::CmpFPredicate::UNE, sum, rb.f32(0));
            Value value = arith::SelectOp::create(
                b, hasWeight, arith::DivFOp::create(b, weighted, sum),
                rb.f32(0));
            rb.storeF32(value, o,
                        layoutIndices(layout, batch, head, rowQ, col));
          });
        });
      });
    };

    if (!shape.specialized()) {
      consume();
    } else {
      // Two consumer warpgroups need more registers than 384 threads start
      // with: the producer gives up most of its own.
      bool rebalance = shape.warps > nvvm::kWarpgroupWarps;
      Value consumer = lessThan(threadId, idx(consumerThreads));
      rb.ifThen(consumer, [&] {
        if (rebalance)
          setMaxRegisters(kConsumerRegisters, /*increase=*/true);
        consume();
      });
      rb.ifThen(
          arith::XOrIOp::create(
              b, consumer, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
          [&] {
            if (rebalance)
              setMaxRegisters(kProducerRegisters, /*increase=*/false);
            produce();
          });
    }
    if (split)
      combineSplits();
  });
}

struct GpuTileSoftmaxPass
    : public CheckedOptionsPass<GpuTileSoftmaxPass,
                                attnc::impl::GpuTileSoftmaxBase> {
  using CheckedOptionsPass::CheckedOptionsPass;

  /// What is wrong with the option values, or "".
  std::string optionProblem() const {
    int64_t keysPerSplit = 0;
    if (warps <= 0 || blockK <= 0)
      return "attn-gpu-tile-softmax needs positive warps and block-k";
    if (!parseSplitKeys(splitKeys, keysPerSplit))
      return "attn-gpu-tile-softmax: split-keys must be a non-negative "
             "number of keys or auto, got '" +
             splitKeys + "'";
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
    int64_t keysPerSplit = 0;
    parseSplitKeys(splitKeys, keysPerSplit);
    gpu::GPUModuleOp gpuModule;
    for (KernelOp kernel : llvm::make_early_inc_range(module.getOps<KernelOp>())) {
      Operation *family = kernel.getFamilyOp();
      if (isa<LinearOp>(family))
        continue; // attn-gpu-chunk-linear
      GpuTileShape shape;
      shape.wgmma = mma == "wgmma";
      shape.producerWarps = warpSpecialize ? nvvm::kWarpgroupWarps : 0;
      shape.warps = warps;
      shape.rowsPerWarp = rowsPerWarp;
      shape.blockQ = warps * rowsPerWarp;
      shape.blockK = blockK;
      shape.splitKeys = keysPerSplit;
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
    LayoutDims dims = getLayoutDims(
        family->getAttrOfType<LayoutAttr>("layout").getValue());
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

bool attnc::parseSplitKeys(llvm::StringRef text, int64_t &splitKeys) {
  int64_t keys = kAutoSplitKeys;
  if (text != "auto" && (text.getAsInteger(10, keys) || keys < 0))
    return false;
  splitKeys = keys;
  return true;
}

std::string attnc::splitKeysText(int64_t splitKeys) {
  return splitKeys == kAutoSplitKeys ? "auto" : std::to_string(splitKeys);
}
