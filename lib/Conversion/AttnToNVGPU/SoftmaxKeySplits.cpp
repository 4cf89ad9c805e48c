//===- SoftmaxKeySplits.cpp - Several CTAs per query block (split-keys) ---===//
//
// With split-keys, grid x is (query block, split): the splits of a query
// block walk disjoint ranges of its key blocks, each leaves its partial
// output and log-sum-exp in the workspace (GpuImage.h, launchWorkspace),
// and the last to finish combines them into o and lse.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

void SoftmaxKernelBuilder::splitGrid() {
  queryBlocks = arith::CeilDivUIOp::create(
      b, packed ? rb.mul(operands.lengthQ, groupSize) : operands.lengthQ,
      idx(shape.blockQ));
  if (shape.splitsAtLaunch()) {
    splits =
        arith::DivUIOp::create(b, gridSize(gpu::Dimension::x), queryBlocks);
    // At least 1: with no keys a single split stores o = 0, lse = -inf.
    blocksPerSplit = arith::MaxUIOp::create(
        b, idx(1),
        arith::CeilDivUIOp::create(
            b,
            arith::CeilDivUIOp::create(b, operands.lengthK, idx(shape.blockK)),
            splits));
  } else {
    splits = arith::MaxUIOp::create(
        b, idx(1),
        arith::CeilDivUIOp::create(b, operands.lengthK, idx(shape.splitKeys)));
    blocksPerSplit = idx(shape.splitKeys / shape.blockK);
  }
  Value x = blockIndex(gpu::Dimension::x);
  queryBlock = arith::DivUIOp::create(b, x, splits);
  split = arith::RemUIOp::create(b, x, splits);
}

// The rest of the body is built inside the condition that the split
// participates; the caller's insertion guard leaves it.
void SoftmaxKernelBuilder::joinParticipatingSplits() {
  firstSplit =
      minIndex(arith::DivUIOp::create(b, keyBlockBegin, blocksPerSplit),
               rb.sub(splits, idx(1)));
  Value endSplit = arith::MaxUIOp::create(
      b, arith::CeilDivUIOp::create(b, keyBlockEnd, blocksPerSplit),
      firstSplit);
  splitCount = arith::MaxUIOp::create(b, idx(1), rb.sub(endSplit, firstSplit));
  Value participates = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::uge, split, firstSplit),
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

// Split kernels' workspace (GpuImage.h, launchWorkspace): a header of
// one word plus one per CTA, padded to 4 words, then each CTA's partial
// state; header word 1 + t counts the finished splits of query tile t.
// A query block's splits are consecutive CTAs (grid x, splits minor).
void SoftmaxKernelBuilder::locateSplitStates() {
  const int64_t stateWords = shape.splitStateBytes() / 4;
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

Value SoftmaxKernelBuilder::splitState(Value splitIndex) {
  const int64_t stateWords = shape.splitStateBytes() / 4;
  return rb.add(tileStates, rb.mul(splitIndex, idx(stateWords)));
}

Value SoftmaxKernelBuilder::splitWeight(Value splitLse, Value offset) {
  return math::Exp2Op::create(
      b, arith::MulFOp::create(b, arith::SubFOp::create(b, splitLse, offset),
                               log2e));
}

Value SoftmaxKernelBuilder::partialLse(Value s, Value r) {
  return loadWordF32(
      workspace,
      rb.add(splitState(s), rb.add(idx(shape.blockQ * shape.dimV), r)));
}

ValueRange SoftmaxKernelBuilder::sumOverSplits(
    ValueRange init,
    llvm::function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  return rb.loop(firstSplit, splitEnd, init, body);
}

// The last split of a query tile to finish combines the partial states
// of all its splits (every thread of the CTA takes part):
//   lse = log sum_s exp(lse_s),  o = sum_s exp(lse_s - lse) o_s;
// sigmoid and unnormalised weights just add up. Each thread's release
// fence orders its partial state before the barrier, after which one
// thread counts the split done; the last one's threads acquire before
// reading the others' states.
void SoftmaxKernelBuilder::combineSplits() {
  LLVM::FenceOp::create(b, LLVM::AtomicOrdering::release, "device");
  barrier();
  // Q's tile is free now: its first word passes the count around.
  Value arrived = sharedTile(sharedMemory, 0, {1}, b.getI32Type());
  Value counter =
      rb.add(idx(1), rb.add(rb.mul(headAndBatch, queryBlocks), queryBlock));
  rb.ifThen(
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)),
      [&] {
        Value before =
            memref::AtomicRMWOp::create(b, arith::AtomicRMWKind::addi, i32(1),
                                        workspace, ValueRange{counter});
        memref::StoreOp::create(b, before, arrived, ValueRange{idx(0)});
      });
  barrier();
  Value finishedBefore = arith::IndexCastOp::create(
      b, b.getIndexType(),
      memref::LoadOp::create(b, arrived, ValueRange{idx(0)}));
  Value last = arith::CmpIOp::create(
      b, arith::CmpIPredicate::eq, finishedBefore, rb.sub(splitCount, idx(1)));
  rb.ifThen(last, [&] { combinePartialStates(); });
}

void SoftmaxKernelBuilder::combinePartialStates() {
  LLVM::FenceOp::create(b, LLVM::AtomicOrdering::acquire, "device");
  splitEnd = rb.add(firstSplit, splitCount);
  // Per row, once: the largest partial lse (the offset; 0 for a row
  // no split saw a key for) and the sum of the splits' weights
  // exp(lse_s - offset), after the count in Q's free tile.
  Value rowFacts = sharedTile(sharedMemory, 16, {2, shape.blockQ}, f32);
  if (online) {
    forEachElement(shape.blockQ,
                   [&](Value r) { combineRowStatistics(rowFacts, r); });
    barrier();
  }
  forEachElement(shape.blockQ * shape.dimV,
                 [&](Value element) { combineOutput(rowFacts, element); });
}

void SoftmaxKernelBuilder::combineRowStatistics(Value rowFacts, Value r) {
  rb.ifThen(lessThan(r, rows), [&] {
    Value maxLse = sumOverSplits({negInf}, [&](Value s, ValueRange acc) {
      return SmallVector<Value>{
          arith::MaximumFOp::create(b, acc[0], partialLse(s, r))};
    })[0];
    Value hasWeight =
        arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, maxLse, negInf);
    Value offset = arith::SelectOp::create(b, hasWeight, maxLse, rb.f32(0));
    Value sum = sumOverSplits({rb.f32(0)}, [&](Value s, ValueRange acc) {
      return SmallVector<Value>{
          rb.add(acc[0], splitWeight(partialLse(s, r), offset))};
    })[0];
    memref::StoreOp::create(b, offset, rowFacts, ValueRange{idx(0), r});
    memref::StoreOp::create(b, sum, rowFacts, ValueRange{idx(1), r});
    if (lse) {
      Value row = rb.add(p0, r), query = queryOfRow(row);
      memref::StoreOp::create(b, rb.logSumExp(hasWeight, offset, sum), lse,
                              lseIndices(operands.cuQ, batch, headOfRow(row),
                                         rb.add(startQ, query), query));
    }
  });
}

void SoftmaxKernelBuilder::combineOutput(Value rowFacts, Value element) {
  Value r = arith::DivUIOp::create(b, element, idx(shape.dimV));
  Value col = arith::RemUIOp::create(b, element, idx(shape.dimV));
  rb.ifThen(lessThan(r, rows), [&] {
    Value row = rb.add(p0, r);
    Value query = queryOfRow(row), head = headOfRow(row);
    Value rowQ = rb.add(startQ, query);
    auto partial = [&](Value s) {
      return loadWordF32(
          workspace,
          rb.add(splitState(s), rb.add(rb.mul(r, idx(shape.dimV)), col)));
    };
    if (!online) {
      Value sum = sumOverSplits({rb.f32(0)}, [&](Value s, ValueRange acc) {
        return SmallVector<Value>{rb.add(acc[0], partial(s))};
      })[0];
      rb.storeF32(sum, o, layoutIndices(layout, batch, head, rowQ, col));
      return;
    }
    Value offset = memref::LoadOp::create(b, rowFacts, ValueRange{idx(0), r});
    Value sum = memref::LoadOp::create(b, rowFacts, ValueRange{idx(1), r});
    Value weighted = sumOverSplits({rb.f32(0)}, [&](Value s, ValueRange acc) {
      return SmallVector<Value>{math::FmaOp::create(
          b, splitWeight(partialLse(s, r), offset), partial(s), acc[0])};
    })[0];
    // A row no split saw a key for has no weight: o = 0 (no NaN);
    // a NaN sum stays NaN.
    Value hasWeight =
        arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, sum, rb.f32(0));
    Value value = arith::SelectOp::create(
        b, hasWeight, arith::DivFOp::create(b, weighted, sum), rb.f32(0));
    rb.storeF32(value, o, layoutIndices(layout, batch, head, rowQ, col));
  });
}
