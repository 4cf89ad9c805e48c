//===- SoftmaxKernelBuilder.cpp - The softmax kernel's driver -------------===//
//
// SoftmaxKernelBuilder's phases in the order they build the kernel: what
// the family op asks for, the thread's and the CTA's place in the grid, the
// sequences' bounds; then, for a CTA whose rows exist, the key splits, top-k
// selection, the mbarriers, the prologue, the compute warps (and the
// producer) and the combination of the splits.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

#include "llvm/Support/MathExtras.h"

#include <limits>
#include <tuple>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

void SoftmaxKernelBuilder::buildKernel(ValueRange results,
                                       std::optional<int64_t> chunk) {
  setUpFamily(results, chunk);
  locateCta();

  q = withUnitInnerStride(operands.q);
  k = withUnitInnerStride(operands.k);
  v = withUnitInnerStride(operands.v);

  layOutSharedMemory();
  boundSequences();
  // The grid covers the longest sequence; CTAs past this one's end exit
  // (uniformly, so the barriers inside stay CTA-wide).
  rb.ifThen(lessThan(p0, rowCount), [&] { buildQueryBlock(); });
}

void SoftmaxKernelBuilder::setUpFamily(ValueRange results,
                                       std::optional<int64_t> chunk) {
  operands = getAttentionOperands(familyOp, rb);
  layout = operands.layout;
  o = results[0];
  // Results: out, lse (softmax), topk_blocks (a top-k training forward).
  auto sparse = dyn_cast<SparseSoftmaxOp>(familyOp);
  bool hasLse = sparse ? bool(sparse.getLse()) : results.size() > 1;
  lse = hasLse ? results[1] : Value();
  topkBlocks = sparse && sparse.getTopkBlocks() ? results.back() : Value();
  scale = rb.softmaxScale(givenScale, idx(shape.dimK));
  online = normalizer == Normalizer::softmax;
  band = analyzeMask(*maskRegion);
  chunkSize = chunk ? idx(*chunk) : Value();
  negInf = rb.f32(-std::numeric_limits<double>::infinity());
  log2e = rb.f32(llvm::numbers::log2e);
  // With no score expression and a positive scale (as FlashAttention-2
  // does), the scale folds into each weight's exponent FMA: the scores
  // stay raw dot products, the row max is scaled once per row (a positive
  // scale keeps the max), and a weight is exp2(s scale log2e - m log2e).
  // Not with 32 rows per warp: there ptxas then needs more than 255
  // registers (causal d64 on sm_90a: 254 registers become 255 and 20
  // bytes of spills).
  foldScale = online && scoreRegion->empty() && shape.rowsPerWarp == 16 &&
              (!givenScale ||
               (givenScale->isFiniteNonZero() && !givenScale->isNegative()));
  weightExponentScale = foldScale ? rb.mul(scale, log2e) : log2e;
}

void SoftmaxKernelBuilder::locateCta() {
  threadId = threadIndex();
  warp = arith::DivUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  lane = arith::RemUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  group = arith::DivUIOp::create(b, lane, idx(4));
  inGroup = arith::RemUIOp::create(b, lane, idx(4));
  // With key splits grid x is (query block, split), splits minor, so the
  // CTAs of one query block run side by side. A split walks blocksPerSplit
  // key blocks.
  //
  // Grid y is the query head, or with packed GQA groups the kv head, whose
  // problem has N * G rows (G = groupSize): row p is query p / G of query
  // head headK * G + p % G.
  packed = shape.packGqa;
  groupSize = operands.groupSize;
  if (shape.splitKeys) {
    splitGrid();
  } else {
    queryBlock = blockIndex(gpu::Dimension::x);
  }
  gridHead = blockIndex(gpu::Dimension::y);
  batch = blockIndex(gpu::Dimension::z);
  headK = packed ? gridHead : arith::DivUIOp::create(b, gridHead, groupSize);
}

Value SoftmaxKernelBuilder::queryOfRow(Value row) {
  return packed ? arith::DivUIOp::create(b, row, groupSize) : row;
}

Value SoftmaxKernelBuilder::headOfRow(Value row) {
  if (!packed)
    return gridHead;
  return rb.add(rb.mul(headK, groupSize),
                arith::RemUIOp::create(b, row, groupSize));
}

void SoftmaxKernelBuilder::boundSequences() {
  std::tie(startQ, n) =
      sequenceBounds(rb, operands.cuQ, batch, operands.lengthQ);
  std::tie(startK, m) =
      sequenceBounds(rb, operands.cuK, batch, operands.lengthK);
  checkSequence(rb, operands.cuQ, batch, startQ, n, operands.lengthQ);
  checkSequence(rb, operands.cuK, batch, startK, m, operands.lengthK);
  bq = idx(shape.blockQ);
  bk = idx(shape.blockK);
  // The CTA's rows [p0, p0 + rows) of the rowCount rows, and the queries
  // [i0, iLast] they belong to.
  rowCount = packed ? rb.mul(n, groupSize) : n;
  p0 = rb.mul(queryBlock, bq);
}

void SoftmaxKernelBuilder::buildQueryBlock() {
  rows = minIndex(bq, rb.sub(rowCount, p0));
  i0 = queryOfRow(p0);
  iLast = queryOfRow(rb.add(p0, rb.sub(rows, idx(1))));
  Value jBegin, jEnd;
  std::tie(jBegin, jEnd) =
      visibleKeyRange(rb, band, chunkSize, i0, iLast, n, m);
  keyBlockBegin = arith::DivUIOp::create(b, jBegin, bk);
  keyBlockEnd = arith::CeilDivUIOp::create(b, jEnd, bk);
  // Key splits: the CTA walks the band's blocks inside its split. Only
  // the splitCount splits from firstSplit that meet the band run (at
  // least one, which stores o = 0 and lse = -inf for rows without keys);
  // the rest of the body is built inside that condition.
  OpBuilder::InsertionGuard participantsOnly(b);
  if (split) {
    joinParticipatingSplits();
    locateSplitStates();
  }
  if (auto sparse = dyn_cast<SparseSoftmaxOp>(familyOp); sparse && shape.topk)
    restrictToSelectedBlocks(sparse);
  // Loads of user tensors that do not depend on (s, i, j), like slope[h],
  // once per CTA instead of once per score (packed: per row, see
  // setUpRowSlots).
  if (!packed)
    rb.hoistSoftmaxInvariantLoads(*scoreRegion, *maskRegion, batch, gridHead, n,
                                  m, startQ, startK);

  if (shape.specialized())
    initMBarriers();
  prologue();

  if (!shape.specialized())
    consume();
  else
    specializeWarps();
  if (split)
    combineSplits();
}

void SoftmaxKernelBuilder::consume() {
  // This warp's rows: `rowTiles` mma row tiles of 16 from warpRow0.
  warpRow0 = rb.mul(warp, idx(shape.rowsPerWarp));
  holdQueryFragments();
  setUpRowSlots();
  ValueRange finalState = walkKeyBlocks();
  storeOutputs(finalState);
}
