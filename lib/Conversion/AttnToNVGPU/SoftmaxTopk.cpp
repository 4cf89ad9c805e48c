//===- SoftmaxTopk.cpp - Top-k block selection of sparse softmax ----------===//
//
// NSA-style top-k selection (docs/semantics.md) on the GPU: the CTA takes
// the selection block as its key tile, scores every block of its rows' band
// against the sum of the group's query heads, keeps each row's best blocks
// in shared memory and marks their union in a bitmap; the key schedule
// visits the marked blocks and the mask keeps each row to its own.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

void SoftmaxKernelBuilder::restrictToSelectedBlocks(SparseSoftmaxOp op) {
  // The bitmap of kept blocks has room for kTopkBlockCapacity blocks:
  // longer sequences are reported (4, k, m, block, capacity).
  Value fits = arith::CmpIOp::create(b, arith::CmpIPredicate::ule,
                                     arith::CeilDivUIOp::create(b, m, bk),
                                     idx(kTopkBlockCapacity));
  rb.ifThen(
      arith::XOrIOp::create(b, fits,
                            arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
      [&] {
        rb.recordError(4, {idx(cast<BlockArgument>(operands.k).getArgNumber()),
                           m, bk, idx(kTopkBlockCapacity)});
      });
  keyBlockEnd = arith::SelectOp::create(b, fits, keyBlockEnd, keyBlockBegin);
  selectBlocks(op);
}

void SoftmaxKernelBuilder::selectBlocks(SparseSoftmaxOp op) {
  Value base = sharedBase();
  Type i32Type = b.getI32Type();
  int64_t blockQ = shape.blockQ, dimK = shape.dimK, topk = shape.topk;
  querySums = sharedTile(base, shape.querySumsOffset(), {blockQ, dimK}, f32);
  meanKey = sharedTile(base, shape.meanKeyOffset(), {dimK}, f32);
  keptScores = sharedTile(base, shape.keptScoresOffset(), {blockQ, topk}, f32);
  keptBlocks =
      sharedTile(base, shape.keptBlocksOffset(), {blockQ, topk}, i32Type);
  keptCount = sharedTile(base, shape.keptCountOffset(), {blockQ}, i32Type);
  keptBitmap = sharedTile(base, shape.bitmapOffset(), {kTopkBlockCapacity / 32},
                          i32Type);
  Value blockKeys = idx(shape.blockK);
  Value firstHead = rb.mul(headK, operands.groupSize);

  // Per row, the sum over the group's query heads of q (rows past the
  // sequence read its last row; they keep nothing).
  forEachElement(blockQ * dimK, [&](Value element) {
    Value r = arith::DivUIOp::create(b, element, idx(dimK));
    Value d = arith::RemUIOp::create(b, element, idx(dimK));
    Value row = rb.add(startQ, minIndex(rb.add(i0, r), rb.sub(n, idx(1))));
    Value sum = rb.loop(
        idx(0), operands.groupSize, {rb.f32(0)}, [&](Value g, ValueRange acc) {
          return SmallVector<Value>{rb.add(
              acc[0], rb.loadF32(operands.q,
                                 layoutIndices(layout, batch,
                                               rb.add(firstHead, g), row, d)))};
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
  rb.loop(keyBlockBegin, keyBlockEnd, [&](Value block) {
    Value j0 = rb.mul(block, blockKeys);
    Value valid = rb.sub(m, j0);
    Value count = minIndex(blockKeys, valid);
    commitCopies(copyTile(keyTiles, {idx(0)}, k, batch, headK,
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
      Value eligible = blockEligible(op, i, j0, jLast, count, firstHead);
      rb.ifThen(eligible, [&] { keepBlock(r, block); });
    });
    barrier();
  });

  markKeptBlocks();
}

Value SoftmaxKernelBuilder::blockEligible(SparseSoftmaxOp op, Value i, Value j0,
                                          Value jLast, Value count,
                                          Value firstHead) {
  Value eligible;
  if (band.exact) { // the block meets the row's band [i + L, i + U]
    eligible = rowMeetsBlock(rb, evaluateBand(rb, band, n, m), i, j0, jLast);
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
  return eligible;
}

void SoftmaxKernelBuilder::keepBlock(Value r, Value block) {
  Type i32Type = b.getI32Type();
  int64_t dimK = shape.dimK, topk = shape.topk;
  Value dot =
      rb.loop(idx(0), idx(dimK), {rb.f32(0)}, [&](Value d, ValueRange acc) {
        return SmallVector<Value>{rb.add(
            acc[0],
            rb.mul(memref::LoadOp::create(b, querySums, ValueRange{r, d}),
                   memref::LoadOp::create(b, meanKey, d)))};
      })[0];
  Value score = rb.mul(scale, dot);
  Value kept = arith::IndexCastOp::create(
      b, b.getIndexType(), memref::LoadOp::create(b, keptCount, r));
  // The new entry goes after every entry scoring at least as much.
  Value position =
      rb.loop(idx(0), kept, {idx(0)}, [&](Value entry, ValueRange before) {
        Value atLeast = arith::CmpFOp::create(
            b, arith::CmpFPredicate::OGE,
            memref::LoadOp::create(b, keptScores, ValueRange{r, entry}), score);
        return SmallVector<Value>{arith::SelectOp::create(
            b, atLeast, rb.add(before[0], idx(1)), before[0])};
      })[0];
  rb.ifThen(lessThan(position, idx(topk)), [&] {
    // Shift entries [position, min(kept, topk - 1)) up by one.
    Value last = minIndex(kept, idx(topk - 1));
    rb.loop(idx(0), rb.sub(last, minIndex(position, last)), [&](Value step) {
      Value to = rb.sub(last, step);
      Value from = rb.sub(to, idx(1));
      for (Value list : {keptScores, keptBlocks})
        memref::StoreOp::create(
            b, memref::LoadOp::create(b, list, ValueRange{r, from}), list,
            ValueRange{r, to});
    });
    memref::StoreOp::create(b, score, keptScores, ValueRange{r, position});
    memref::StoreOp::create(b, arith::IndexCastOp::create(b, i32Type, block),
                            keptBlocks, ValueRange{r, position});
    memref::StoreOp::create(
        b,
        arith::IndexCastOp::create(b, i32Type,
                                   minIndex(rb.add(kept, idx(1)), idx(topk))),
        keptCount, r);
  });
}

void SoftmaxKernelBuilder::markKeptBlocks() {
  Type i32Type = b.getI32Type();
  int64_t blockQ = shape.blockQ, topk = shape.topk;
  // The union of the rows' kept blocks.
  forEachIndex(arith::DivUIOp::create(b, keyBlockBegin, idx(32)),
               arith::CeilDivUIOp::create(b, keyBlockEnd, idx(32)),
               [&](Value word) {
                 memref::StoreOp::create(b, i32(0), keptBitmap, word);
               });
  barrier();
  forEachElement(blockQ * topk, [&](Value element) {
    Value r = arith::DivUIOp::create(b, element, idx(topk));
    Value entry = arith::RemUIOp::create(b, element, idx(topk));
    Value kept = arith::IndexCastOp::create(
        b, b.getIndexType(), memref::LoadOp::create(b, keptCount, r));
    if (topkBlocks) // the training forward saves the rows' lists, -1 after
      rb.ifThen(lessThan(r, rows), [&] {
        Value i = rb.add(i0, r);
        SmallVector<Value> at =
            lseIndices(operands.cuQ, batch, gridHead, rb.add(startQ, i), i);
        at.push_back(entry);
        Value block = arith::SIToFPOp::create(
            b, f32, memref::LoadOp::create(b, keptBlocks, ValueRange{r, entry}));
        rb.storeF32(arith::SelectOp::create(b, lessThan(entry, kept), block,
                                            rb.f32(-1)),
                    topkBlocks, at);
      });
    rb.ifThen(lessThan(entry, kept), [&] {
      Value block = arith::IndexCastOp::create(
          b, b.getIndexType(),
          memref::LoadOp::create(b, keptBlocks, ValueRange{r, entry}));
      Value bit = arith::ShLIOp::create(
          b, i32(1),
          arith::IndexCastOp::create(
              b, i32Type, arith::RemUIOp::create(b, block, idx(32))));
      memref::AtomicRMWOp::create(
          b, arith::AtomicRMWKind::ori, bit, keptBitmap,
          ValueRange{arith::DivUIOp::create(b, block, idx(32))});
    });
  });
  barrier();
}

Value SoftmaxKernelBuilder::isKept(Value block) {
  Value word = memref::LoadOp::create(
      b, keptBitmap, ValueRange{arith::DivUIOp::create(b, block, idx(32))});
  Value bit = arith::ShLIOp::create(
      b, i32(1),
      arith::IndexCastOp::create(b, b.getI32Type(),
                                 arith::RemUIOp::create(b, block, idx(32))));
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                               arith::AndIOp::create(b, word, bit), i32(0));
}

Value SoftmaxKernelBuilder::rowKeeps(Value localRow, Value block) {
  Value count = arith::IndexCastOp::create(
      b, b.getIndexType(), memref::LoadOp::create(b, keptCount, localRow));
  return rb.loop(
      idx(0), count, {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
      [&](Value entry, ValueRange found) {
        Value kept = arith::IndexCastOp::create(
            b, b.getIndexType(),
            memref::LoadOp::create(b, keptBlocks, ValueRange{localRow, entry}));
        return SmallVector<Value>{arith::OrIOp::create(
            b, found[0],
            arith::CmpIOp::create(b, arith::CmpIPredicate::eq, kept, block))};
      })[0];
}
