//===- SoftmaxSchedule.cpp - Shared memory and the key-block schedule -----===//
//
// Where the softmax kernel's tiles lie in shared memory, which key blocks a
// query block visits (the band's, the block mask's or the block lists',
// or top-k's selection) and how: cp.async copies double-buffered across
// two stages, the prologue, and the loop whose visits prefetch the next
// visited block while this one is consumed.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

void SoftmaxKernelBuilder::layOutSharedMemory() {
  // Shared memory: the Q tile, then two stages of K and of V.
  sharedMemory = sharedBase();
  auto view = [&](int64_t offset, ArrayRef<int64_t> tileShape) {
    return sharedTile(sharedMemory, offset, tileShape,
                      shape.splitF32 ? Type(f32) : shape.element);
  };
  int64_t valueTilesOffset = shape.queryTileBytes() + shape.keyTileBytes();
  if (shape.wgmma) {
    queryTile = coreMatrixTile(sharedMemory, 0, {}, shape.blockQ, shape.dimK,
                               shape.element);
    keyTiles = coreMatrixTile(sharedMemory, shape.queryTileBytes(), {kStages},
                              shape.blockK, shape.dimK, shape.element);
    valueTiles = coreMatrixTile(sharedMemory, valueTilesOffset, {kStages},
                                shape.blockK, shape.dimV, shape.element);
  } else {
    queryTile = view(0, {shape.blockQ, shape.pitchK()});
    keyTiles =
        view(shape.queryTileBytes(), {kStages, shape.blockK, shape.pitchK()});
    valueTiles =
        view(valueTilesOffset, {kStages, shape.blockK, shape.pitchV()});
  }
}

ValueRange SoftmaxKernelBuilder::loopOverVisited(
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

SoftmaxKernelBuilder::KeySchedule
SoftmaxKernelBuilder::keySchedule(Value keyBlockBegin, Value keyBlockEnd,
                                  Value keyBlocks, Value queryBlock,
                                  Value batch, Value head) {
  KeySchedule schedule;
  schedule.begin = keyBlockBegin;
  schedule.end = keyBlockEnd;
  schedule.blockAt = [](Value cursor) { return cursor; };
  auto sparse = dyn_cast<SparseSoftmaxOp>(familyOp);
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
    schedule.end =
        rb.checkedBlockCount(counts, batch, head, queryBlock, rb.dim(lists, 3));
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
      Value inBand = rb.inRange(keyBlock, keyBlockBegin, keyBlockEnd);
      Value repeated = rb.loop(
          idx(0), entry, {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
          [&](Value earlier, ValueRange seen) {
            Value same =
                arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                      schedule.blockAt(earlier), keyBlock);
            return SmallVector<Value>{arith::OrIOp::create(b, seen[0], same)};
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

Value SoftmaxKernelBuilder::scanForward(
    Value from, Value end, const std::function<Value(Value)> &visited) {
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

SmallVector<Value> SoftmaxKernelBuilder::copyKeys(Value keyBlock, Value stage) {
  Value j0 = rb.mul(keyBlock, bk);
  return copyTile(keyTiles, {stage}, k, batch, headK, rb.add(startK, j0),
                  rb.sub(m, j0), shape.blockK, shape.dimK);
}

SmallVector<Value> SoftmaxKernelBuilder::copyValues(Value keyBlock,
                                                    Value stage) {
  Value j0 = rb.mul(keyBlock, bk);
  return copyTile(valueTiles, {stage}, v, batch, headK, rb.add(startK, j0),
                  rb.sub(m, j0), shape.blockK, shape.dimV);
}

void SoftmaxKernelBuilder::copyKeysAndValues(Value keyBlock, Value stage) {
  SmallVector<Value> tokens = copyKeys(keyBlock, stage);
  llvm::append_range(tokens, copyValues(keyBlock, stage));
  commitCopies(tokens);
}

void SoftmaxKernelBuilder::prologue() {
  // Prologue: Q and (unless a producer copies them) the first key block.
  SmallVector<Value> tokens = copyRows(
      queryTile, {}, q,
      [&](Value r, Value col) {
        Value row = rb.add(p0, r);
        return layoutIndices(layout, batch, headOfRow(row),
                             rb.add(startQ, queryOfRow(row)), col);
      },
      rows, shape.blockQ, shape.dimK);
  schedule = keySchedule(keyBlockBegin, keyBlockEnd,
                         arith::CeilDivUIOp::create(b, m, bk), queryBlock,
                         batch, gridHead);
  firstCursor = schedule.nextVisited(schedule.begin);
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
}

ValueRange SoftmaxKernelBuilder::walkKeyBlocks() {
  // Loop state: m of every row slot, l of every row slot, then acc (4
  // floats per row tile and output tile).
  SmallVector<Value> init(rowSlots, negInf);
  init.append(rowSlots, rb.f32(0));
  init.append(rowTiles * outputTiles * 4, rb.f32(0));
  stateTypes.assign(init.size(), f32);

  // Loop state: the stage holding the current block (warp-specialised:
  // the blocks visited so far), then m, l, acc, and for wgmma the
  // block's scores (the first block's computed here).
  SmallVector<Value> loopInit = {idx(0)};
  llvm::append_range(loopInit, init);
  if (shape.wgmma) {
    ValueRange firstScores = firstBlockScores();
    llvm::append_range(loopInit, firstScores);
  }
  ValueRange loopResults = loopOverVisited(
      schedule, loopInit,
      [&](Value cursor, ValueRange carried) -> SmallVector<Value> {
        return visit(cursor, carried[0], carried.drop_front());
      });
  return loopResults.drop_front();
}

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
SmallVector<Value> SoftmaxKernelBuilder::visit(Value cursor, Value position,
                                               ValueRange carried) {
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
        b, blockInsideBand(rb, band, chunkSize, i0, iLast, j0, jLast, n, m),
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
}
