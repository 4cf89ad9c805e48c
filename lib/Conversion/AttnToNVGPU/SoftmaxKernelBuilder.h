//===- SoftmaxKernelBuilder.h - The GPU softmax kernel builder --*- C++ -*-===//
//
// Private to lib/Conversion/AttnToNVGPU: the tile shape of the
// FlashAttention-2 softmax kernels (GpuTileShape) and the builder of their
// bodies (SoftmaxKernelBuilder), whose phases live in one file per concern:
//
//   GpuTileSoftmax.cpp         the pass: option checks, launch facts
//   SoftmaxKernelBuilder.cpp   the driver: the CTA's rows, phase by phase
//   SoftmaxSchedule.cpp        shared memory, the key-block schedule and loop
//   SoftmaxTile.cpp            one key block's softmax, the rows' output
//   SoftmaxMmaSync.cpp         S = Q K^T and P V with mma.sync (sm_80)
//   SoftmaxWgmma.cpp           S = Q K^T and P V with wgmma (sm_90a)
//   SoftmaxWarpSpecialize.cpp  producer and consumer warpgroups, mbarriers
//   SoftmaxKeySplits.cpp       several CTAs per query block (split-keys)
//   SoftmaxTopk.cpp            top-k block selection
//
// The kernel's state (tiles, row slots, the schedule, ...) lives in members
// that the phases set in the order the driver calls them.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTONVGPU_SOFTMAXKERNELBUILDER_H
#define ATTNC_LIB_CONVERSION_ATTNTONVGPU_SOFTMAXKERNELBUILDER_H

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Target/NVVM/MmaLayout.h"
#include "attnc/Target/NVVM/WarpBuilder.h"

#include <array>
#include <functional>
#include <optional>
#include <utility>

namespace attnc::lowering::gpu_softmax {

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

/// Key blocks per sequence that top-k selection handles: the CTA marks the
/// blocks its rows keep in a bitmap of this many bits in shared memory.
constexpr int64_t kTopkBlockCapacity = 32768;

/// The static facts of one GPU kernel; also what the runtime needs to launch
/// it (attributes on the gpu.func, see docs/pipeline.md).
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
  int64_t meanKeyOffset() const {
    return querySumsOffset() + blockQ * dimK * 4;
  }
  int64_t keptScoresOffset() const { return meanKeyOffset() + dimK * 4; }
  int64_t keptBlocksOffset() const {
    return keptScoresOffset() + blockQ * topk * 4;
  }
  int64_t keptCountOffset() const {
    return keptBlocksOffset() + blockQ * topk * 4;
  }
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

/// Builds the body of one kernel. Values named after the paper: m (row max),
/// l (row sum), acc (unnormalised output).
class SoftmaxKernelBuilder : public WarpBuilder {
public:
  SoftmaxKernelBuilder(LoweringBuilder &rb, const GpuTileShape &shape,
                       Value workspace)
      : WarpBuilder(rb, shape), shape(shape), workspace(workspace),
        rowTiles(shape.rowTiles()), depthSteps(shape.dimK / 16),
        rowSlots(2 * shape.rowTiles()), scoreTiles(shape.blockK / nvvm::kMmaN),
        outputTiles(shape.dimV / nvvm::kMmaN),
        scoreCount(shape.rowTiles() * (shape.blockK / nvvm::kMmaN) * 4),
        consumerThreads(shape.warps * nvvm::kWarpSize),
        producerThreads(shape.producerWarps * nvvm::kWarpSize) {}

  /// The body for `op`, a SoftmaxOp, ChunkSoftmaxOp or SparseSoftmaxOp with
  /// result buffers `results`; `chunk` is the chunk of chunk-local softmax.
  template <typename OpTy>
  void build(OpTy op, ValueRange results, std::optional<int64_t> chunk) {
    familyOp = op.getOperation();
    scoreRegion = &op.getScore();
    maskRegion = &op.getMask();
    scoreMayFail = scoreRegion->walk([](Operation *nested) {
                                 return isa<LoadOp, arith::FloorDivSIOp>(nested)
                                            ? mlir::WalkResult::interrupt()
                                            : mlir::WalkResult::advance();
                               })
                       .wasInterrupted();
    givenScale = op.getScale();
    normalizer = op.getNormalizer();
    buildKernel(results, chunk);
  }

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

  //===--- The driver (SoftmaxKernelBuilder.cpp) --------------------------===//

  /// The kernel body, once build has read the family op.
  void buildKernel(ValueRange results, std::optional<int64_t> chunk);
  /// The operands, results, scale, normalizer and band of the family op.
  void setUpFamily(ValueRange results, std::optional<int64_t> chunk);
  /// The thread's warp and lane, and the CTA's query block, head and batch
  /// entry.
  void locateCta();
  /// Pack-GQA: the query and query head of row `row` of the CTA's problem.
  Value queryOfRow(Value row);
  Value headOfRow(Value row);
  /// The sequences' bounds and the CTA's first row p0 of rowCount.
  void boundSequences();
  /// The body of a CTA whose rows exist.
  void buildQueryBlock();
  /// The warps that compute: S, the softmax, P V and the output.
  void consume();

  //===--- Shared memory and the key schedule (SoftmaxSchedule.cpp) -------===//

  /// The Q tile, then two stages of K and of V.
  void layOutSharedMemory();
  /// A loop over the schedule's cursors carrying `init`: `visit(cursor,
  /// carried)` runs for visited cursors, the others pass `carried` on.
  ValueRange loopOverVisited(
      const KeySchedule &schedule, ValueRange init,
      llvm::function_ref<SmallVector<Value>(Value, ValueRange)> visit);
  KeySchedule keySchedule(Value keyBlockBegin, Value keyBlockEnd,
                          Value keyBlocks, Value queryBlock, Value batch,
                          Value head);
  /// The first c >= from with c == end or visited(c) (uniform per CTA).
  Value scanForward(Value from, Value end,
                    const std::function<Value(Value)> &visited);
  /// cp.async copies of key block `keyBlock` into `stage` of the key or
  /// value tiles.
  SmallVector<Value> copyKeys(Value keyBlock, Value stage);
  SmallVector<Value> copyValues(Value keyBlock, Value stage);
  void copyKeysAndValues(Value keyBlock, Value stage);
  /// Q and (unless a producer copies them) the first key block.
  void prologue();
  /// The loop over the visited key blocks; returns m, l and acc.
  ValueRange walkKeyBlocks();
  /// One key block (the visit at cursor `cursor`).
  SmallVector<Value> visit(Value cursor, Value position, ValueRange carried);

  //===--- One key block and the rows' output (SoftmaxTile.cpp) -----------===//

  /// The rows of this lane's row slots.
  void setUpRowSlots();
  /// The loop state's index of acc for row tile t and output tile et.
  int64_t accIndex(int64_t t, int64_t et) const {
    return 2 * rowSlots + (t * outputTiles + et) * 4;
  }
  /// Register `reg` (0..3) of a C fragment belongs to row slot 2t + reg / 2.
  int64_t scoreIndex(int64_t t, int64_t nt) const {
    return (t * scoreTiles + nt) * 4;
  }
  /// One key block's tile: S, P, the online softmax and acc += P V.
  SmallVector<Value> emitTile(Value keyBlock, Value stage, ValueRange state,
                              bool applyMask, ValueRange aheadScores);
  /// The weights P of `scores`: scale, score expression, mask.
  SmallVector<Value> scoresToWeights(Value keyBlock, Value j0,
                                     ArrayRef<Value> scores, bool applyMask);
  /// The online softmax: new row maxima and sums in `next`, acc rescaled,
  /// the weights `p` exponentiated.
  void rescaleOnline(MutableArrayRef<Value> p, ValueRange state,
                     MutableArrayRef<Value> next);
  /// The element pairs of the A fragment of keys [16kk, 16kk + 16) of row
  /// tile t in `p`, in register order.
  std::array<std::pair<Value, Value>, 4> weightPairs(ArrayRef<Value> p,
                                                     int64_t t, int64_t kk);
  /// That A fragment as operand registers.
  SmallVector<Value> weightRegisters(ArrayRef<Value> p, int64_t t, int64_t kk);
  /// o = acc / l and lse, or a split's partial state.
  void storeOutputs(ValueRange finalState);

  //===--- mma.sync (SoftmaxMmaSync.cpp) ----------------------------------===//

  SmallVector<Value> loadQueryFragment(int64_t t, int64_t kk);
  MmaOperand loadSplitQueryFragment(int64_t t, int64_t kk);
  /// Loads the Q fragments a warp keeps in registers, if it does.
  void holdQueryFragments();
  SmallVector<Value> queryFragment(int64_t t, int64_t kk);
  MmaOperand splitQueryFragment(int64_t t, int64_t kk);
  /// S = Q K^T with ldmatrix and mma.sync, onto `scores`.
  void scoresMmaSync(Value stage, MutableArrayRef<Value> scores);
  /// S = Q K^T from split f32 operands, onto `scores`.
  void scoresSplit(Value stage, MutableArrayRef<Value> scores);
  /// acc += P V with ldmatrix.trans and mma.sync, on the acc of `next`.
  void accumulateValuesMmaSync(Value stage, ArrayRef<Value> p,
                               MutableArrayRef<Value> next);
  /// acc += P V from split f32 operands.
  void accumulateValuesSplit(Value stage, ArrayRef<Value> p,
                             MutableArrayRef<Value> next);

  //===--- wgmma (SoftmaxWgmma.cpp) ---------------------------------------===//

  /// The shared address of `stage` of double-buffered key or value tiles
  /// of `width` elements per row.
  Value stageAddress(Value tiles, Value stage, int64_t width);
  /// S = Q K^T for the 64 rows of `warp`'s warpgroup from the key tiles'
  /// `stage`: Dk / 16 wgmma with Q and K in shared memory (both K-major),
  /// accumulated onto `scores`, the m64n{block-k} D fragment (8-key tile j
  /// in registers 4j .. 4j + 3, laid out as mma.sync's C tiles). Without
  /// `wait` the wgmma are committed and left in flight: the registers are
  /// valid after the caller's next wgmmaWait.
  SmallVector<Value> wgmmaScores(Value queryTile, Value keyTiles, Value warp,
                                 Value stage, ArrayRef<Value> scores,
                                 bool wait);
  /// acc += P V for the warpgroup from the value tiles' `stage`: per 16 keys
  /// one wgmma with P from registers (`weights[kk]`, A fragments) and V
  /// from shared memory (MN-major: the value columns are contiguous).
  void wgmmaWeightedValues(Value valueTiles, Value stage,
                           ArrayRef<SmallVector<Value>> weights,
                           MutableArrayRef<Value> acc);
  /// acc += P V of one key block, on the acc of `next`.
  void accumulateValuesWgmma(Value stage, ArrayRef<Value> p,
                             MutableArrayRef<Value> next);
  /// The first visited block's scores, computed before the key loop.
  ValueRange firstBlockScores();

  //===--- Warp specialisation (SoftmaxWarpSpecialize.cpp) ----------------===//

  /// The mbarrier of `kind` for `stage`.
  Value barrierOf(MBarrierKind kind, Value stage);
  /// The stage of the visit-th visited block, and the parity of the phase
  /// its barriers complete for it.
  Value stageOf(Value visit);
  Value parityOf(Value visit);
  /// Waits until the producer's copies for the visit-th block have landed.
  void awaitFilled(MBarrierKind kind, Value visit);
  /// Thread 0 sets the mbarriers up.
  void initMBarriers();
  /// The producer warpgroup's copies.
  void produce();
  /// Consumer and producer warpgroups, each with its registers.
  void specializeWarps();

  //===--- Key splits (SoftmaxKeySplits.cpp) ------------------------------===//

  /// Grid x as (query block, split).
  void splitGrid();
  /// Restricts the key blocks to the CTA's split and builds the rest of the
  /// body for the participating splits only (leaves the insertion point
  /// inside that condition).
  void joinParticipatingSplits();
  /// Where the query tile's partial states lie in the workspace.
  void locateSplitStates();
  /// The first word of split `splitIndex`'s partial state.
  Value splitState(Value splitIndex);
  /// A split's weight exp(lse_s - offset) as one ex2.approx.
  Value splitWeight(Value splitLse, Value offset);
  /// Split `s`'s lse of row `r`.
  Value partialLse(Value s, Value r);
  /// A loop over the splits [firstSplit, splitEnd).
  ValueRange
  sumOverSplits(ValueRange init,
                llvm::function_ref<SmallVector<Value>(Value, ValueRange)> body);
  /// The last split of a query tile combines the splits' partial states.
  void combineSplits();
  void combinePartialStates();
  /// Row `r`'s largest partial lse and sum of weights, into `rowFacts`.
  void combineRowStatistics(Value rowFacts, Value r);
  /// Element `element` of the query tile's output.
  void combineOutput(Value rowFacts, Value element);

  //===--- Top-k selection (SoftmaxTopk.cpp) ------------------------------===//

  /// Checks that the bitmap has room for the sequence's blocks and selects
  /// the band's blocks (selectBlocks).
  void restrictToSelectedBlocks(SparseSoftmaxOp op);
  /// Top-k selection (docs/semantics.md) for the CTA's rows [i0, i0 +
  /// rows): scores every block of the band [keyBlockBegin, keyBlockEnd)
  /// against each row, keeps each row's `topk` best eligible blocks (ties:
  /// lower index) in shared memory and marks the union in the bitmap that
  /// the key schedule reads. The mean keys are recomputed per CTA from one
  /// pass over the band's keys.
  void selectBlocks(SparseSoftmaxOp op);
  /// Whether keys [j0, jLast] (`count` keys) hold one that query `i` may
  /// see.
  Value blockEligible(SparseSoftmaxOp op, Value i, Value j0, Value jLast,
                      Value count, Value firstHead);
  /// Inserts block `block` into row `r`'s kept blocks if it scores high
  /// enough.
  void keepBlock(Value r, Value block);
  /// Marks the rows' kept blocks in the CTA's bitmap.
  void markKeptBlocks();
  /// Whether some row of the CTA kept key block `block` (uniform).
  Value isKept(Value block);
  /// Whether row `localRow` of the CTA kept key block `block`.
  Value rowKeeps(Value localRow, Value block);

  //===--- State ----------------------------------------------------------===//

  const GpuTileShape &shape;
  /// Split kernels' workspace (GpuImage.h, launchWorkspace), else null.
  Value workspace;

  // Counts that follow from the shape. `rowTiles` mma row tiles of 16 rows
  // per warp, two row slots (rows g and g + 8) per row tile and lane;
  // `depthSteps` steps of 16 columns of Dk; 8-key score tiles and 8-column
  // output tiles; the score registers of a key block (4 per row tile and
  // 8-key tile); the threads of the consumers and of the producer.
  const int64_t rowTiles, depthSteps, rowSlots, scoreTiles, outputTiles,
      scoreCount, consumerThreads, producerThreads;

  // The family op and what the kernel reads of it.
  Operation *familyOp = nullptr;
  Region *scoreRegion = nullptr, *maskRegion = nullptr;
  /// Whether the score reads tensors or divides (checked ops that must not
  /// run at masked keys).
  bool scoreMayFail = false;
  std::optional<APFloat> givenScale;
  Normalizer normalizer = Normalizer::softmax;
  AttentionOperands operands;
  /// The result buffers (lse and the top-k selection null when absent).
  Value o, lse, topkBlocks;
  Value scale;
  bool online = true;
  MaskStructure band;
  Value chunkSize, negInf, log2e;
  /// Whether the scale folds into each weight's exponent (setUpFamily), and
  /// the factor of the scores in that exponent.
  bool foldScale = false;
  Value weightExponentScale;

  // The thread and the CTA.
  Value warp, lane, group, inGroup;
  bool packed = false;
  Value groupSize;
  Value queryBlock, split, splits, blocksPerSplit, queryBlocks;
  Value gridHead, batch, headK;
  /// q, k and v with unit inner strides.
  Value q, k, v;

  // Shared memory.
  Value sharedMemory, queryTile, keyTiles, valueTiles;

  // Sequences and rows: the CTA's rows [p0, p0 + rows) of the rowCount rows,
  // the queries [i0, iLast] they belong to, and the key blocks
  // [keyBlockBegin, keyBlockEnd) they visit.
  Value startQ, n, startK, m, bq, bk, rowCount, p0;
  Value rows, i0, iLast, keyBlockBegin, keyBlockEnd;

  // Key splits: the splitCount splits from firstSplit that run; where the
  // query tile's partial states lie.
  Value firstSplit, splitCount, splitEnd, headAndBatch, tileStates;

  // The key schedule and its first visited cursor.
  KeySchedule schedule;
  Value firstCursor;

  // The compute warps: the warp's first row, its held Q fragments
  // ([t * depthSteps + kk]), and per row slot the row in the tile, the row
  // of the problem, the query and head its expressions see, and (packed)
  // the hoisted loads of its head. The types of m, l and acc.
  Value warpRow0;
  SmallVector<SmallVector<Value>> heldQuery;
  SmallVector<MmaOperand> heldSplitQuery;
  SmallVector<Value> tileRow, laneRow, exprRow, slotHead;
  SmallVector<IRMapping> slotLoads;
  SmallVector<Type> stateTypes;

  /// Top-k selection's tiles in shared memory: per row the sum of the
  /// group's query heads, the mean key of the block being scored, per row
  /// the kept blocks' scores, the kept blocks and their count, and the
  /// CTA's bitmap of kept blocks.
  Value querySums, meanKey, keptScores, keptBlocks, keptCount, keptBitmap;
};

} // namespace attnc::lowering::gpu_softmax

#endif // ATTNC_LIB_CONVERSION_ATTNTONVGPU_SOFTMAXKERNELBUILDER_H
