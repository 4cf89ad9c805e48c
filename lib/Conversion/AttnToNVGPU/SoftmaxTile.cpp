//===- SoftmaxTile.cpp - One key block's softmax and the rows' output -----===//
//
// What the compute warps do with a key block, whatever the tensor cores:
// S (SoftmaxMmaSync.cpp, SoftmaxWgmma.cpp), the weights P from the scale,
// the score expression and the mask, the online softmax of FlashAttention-2
// (row max m, row sum l, acc rescaled), acc += P V with P reused as the A
// operand; and after the last block o = acc / l and lse = m + log(l) of the
// lane's row slots.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

void SoftmaxKernelBuilder::setUpRowSlots() {
  // The rows of this lane, slot 2t + half: rows g and g + 8 of row tile
  // t, and the query and head each is. Expressions see them clamped to
  // the last row, so rows past the end (whose results are dropped)
  // never read user tensors out of bounds.
  tileRow.assign(rowSlots, Value());
  laneRow.assign(rowSlots, Value());
  exprRow.assign(rowSlots, Value());
  slotHead.assign(rowSlots, Value());
  // Packed: the hoisted loads of each slot's head (see
  // hoistSoftmaxInvariantLoads in buildQueryBlock).
  slotLoads.assign(rowSlots, IRMapping());
  for (int64_t slot = 0; slot < rowSlots; ++slot) {
    tileRow[slot] =
        rb.add(warpRow0, rb.add(group, idx(16 * (slot / 2) + 8 * (slot % 2))));
    laneRow[slot] = rb.add(p0, tileRow[slot]);
    Value clamped = minIndex(laneRow[slot], rb.sub(rowCount, idx(1)));
    exprRow[slot] = queryOfRow(clamped);
    slotHead[slot] = headOfRow(clamped);
    if (packed) {
      rb.hoistedLoads.clear();
      rb.hoistSoftmaxInvariantLoads(*scoreRegion, *maskRegion, batch,
                                    slotHead[slot], n, m, startQ, startK);
      slotLoads[slot] = rb.hoistedLoads;
    }
  }
}

// `aheadScores`: this block's S, computed one visit ahead (wgmma only).
SmallVector<Value> SoftmaxKernelBuilder::emitTile(Value keyBlock, Value stage,
                                                  ValueRange state,
                                                  bool applyMask,
                                                  ValueRange aheadScores) {
  Value j0 = rb.mul(keyBlock, bk);
  // wgmma's scores come computed; mma.sync computes them here.
  SmallVector<Value> scores(aheadScores);
  if (!shape.wgmma)
    scores.assign(scoreCount, rb.f32(0));
  if (shape.splitF32)
    scoresSplit(stage, scores);
  else if (!shape.wgmma)
    scoresMmaSync(stage, scores);

  // Scale, score expression, mask; then the weights P.
  SmallVector<Value> p = scoresToWeights(keyBlock, j0, scores, applyMask);

  SmallVector<Value> next(state.begin(), state.end());
  if (online)
    rescaleOnline(p, state, next);

  // acc += P V: the C fragments of S tiles 2kk and 2kk+1 are the A
  // fragment of keys [16kk, 16kk + 16) (weightPairs).
  if (shape.wgmma) {
    accumulateValuesWgmma(stage, p, next);
    return next;
  }
  if (shape.splitF32) {
    accumulateValuesSplit(stage, p, next);
    return next;
  }
  accumulateValuesMmaSync(stage, p, next);
  return next;
}

SmallVector<Value> SoftmaxKernelBuilder::scoresToWeights(Value keyBlock,
                                                         Value j0,
                                                         ArrayRef<Value> scores,
                                                         bool applyMask) {
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
        Value j =
            rb.add(j0, rb.add(idx(nt * 8 + reg % 2), rb.mul(inGroup, idx(2))));
        Value jExpr = minIndex(j, jLimit);
        Value s = scores[scoreIndex(t, nt) + reg];
        if (!foldScale)
          s = rb.mul(scale, s);
        auto score = [&, slot = slot]() -> Value {
          return rb.inlineExpression(*scoreRegion,
                                     {s, batch, slotHead[slot], exprRow[slot],
                                      jExpr, n, m, startQ, startK},
                                     s);
        };
        Value allowed = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
        if (applyMask) {
          allowed = rb.inlineExpression(
              *maskRegion,
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
        // A score that reads tensors or divides is evaluated at allowed keys
        // only, as the semantics define it: a masked key's read may lie
        // outside the tensor (rel[h, i - j + c] past the window).
        if (applyMask && scoreMayFail)
          s = rb.ifThen(
              allowed, {f32}, [&]() -> SmallVector<Value> { return {score()}; },
              [&]() -> SmallVector<Value> { return {rb.f32(0)}; })[0];
        else
          s = score();
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
  return p;
}

void SoftmaxKernelBuilder::rescaleOnline(MutableArrayRef<Value> p,
                                         ValueRange state,
                                         MutableArrayRef<Value> next) {
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
    Value live =
        arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, newMax, negInf);
    Value offset = arith::MulFOp::create(
        b, arith::SelectOp::create(b, live, newMax, rb.f32(0)), log2e);
    auto exp = [&](Value x, Value toLog2) {
      return math::Exp2Op::create(
          b,
          math::FmaOp::create(b, x, toLog2, arith::NegFOp::create(b, offset)));
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

std::array<std::pair<Value, Value>, 4>
SoftmaxKernelBuilder::weightPairs(ArrayRef<Value> p, int64_t t, int64_t kk) {
  const Value *lo = &p[scoreIndex(t, 2 * kk)],
              *hi = &p[scoreIndex(t, 2 * kk + 1)];
  return std::array<std::pair<Value, Value>, 4>{
      {{lo[0], lo[1]}, {lo[2], lo[3]}, {hi[0], hi[1]}, {hi[2], hi[3]}}};
}

SmallVector<Value> SoftmaxKernelBuilder::weightRegisters(ArrayRef<Value> p,
                                                         int64_t t,
                                                         int64_t kk) {
  SmallVector<Value> registers;
  for (auto [x, y] : weightPairs(p, t, kk))
    registers.push_back(pack(x, y));
  return registers;
}

void SoftmaxKernelBuilder::storeOutputs(ValueRange finalState) {
  // o = acc / l (0 for a row without weight), lse = m + log(l); a
  // split stores both in its partial state, combined by combineSplits.
  Value ownState = split ? splitState(split) : Value();
  for (int64_t slot = 0; slot < rowSlots; ++slot) {
    int64_t t = slot / 2, half = slot % 2;
    Value rowSum = online
                       ? quadReduce(finalState[rowSlots + slot], /*max=*/false)
                       : rb.f32(1);
    Value hasWeight =
        arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, rowSum, rb.f32(0));
    Value inverse = arith::SelectOp::create(
        b, hasWeight, arith::DivFOp::create(b, rb.f32(1), rowSum), rb.f32(0));
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
            storeWordF32(
                value, workspace,
                rb.add(ownState,
                       rb.add(rb.mul(tileRow[slot], idx(shape.dimV)), col)));
          else
            rb.storeF32(value, o,
                        layoutIndices(layout, batch, head, rowQ, col));
        }
      if (lse || (split && online)) {
        Value first =
            arith::CmpIOp::create(b, arith::CmpIPredicate::eq, inGroup, idx(0));
        rb.ifThen(first, [&] {
          Value rowLse = rb.logSumExp(hasWeight, finalState[slot], rowSum);
          if (split)
            storeWordF32(rowLse, workspace,
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
}
