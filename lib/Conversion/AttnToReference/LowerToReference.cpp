//===- LowerToReference.cpp - attn kernels to their direct definition -----===//
//
// The reference lowering: each family op becomes loops that compute its
// definition (docs/semantics.md) literally. It is the oracle for every
// optimised path, so clarity wins over speed everywhere in this file.
//
//===----------------------------------------------------------------------===//

#include "LinearBackward.h"
#include "SoftmaxBackward.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Conversion/KernelLowering/KernelLowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <limits>

namespace attnc {
#define GEN_PASS_DEF_LOWERTOREFERENCE
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

template <typename QAt, typename KAt, typename MaskAt>
void selectTopkBlocks(SparseSoftmaxOp op, LoweringBuilder &rb, uint64_t topk,
                      Value numBlocks, Value blockK, Value m, Value headK,
                      Value groupSize, Value scale, QAt qAt, KAt kAt,
                      MaskAt maskAt, Value kept, Value blockScores,
                      Value eligible, Value selection,
                      ArrayRef<Value> selectionRow);

//===----------------------------------------------------------------------===//
// Softmax family
//===----------------------------------------------------------------------===//

/// What lowerSoftmaxFamily creates once, before its loops: constants and
/// the buffers of one row.
struct SoftmaxScratch {
  Value zero, scale, byteZero, byteOne, negInf;
  /// Per key: its score, then its weight; whether it is allowed.
  Value scores, allowedFlags;
  /// Sparse ops only: the key block size and, per key block, whether the row
  /// keeps it, its selection score and whether it holds an allowed key.
  Value blockK, keptBlocks, blockScores, eligible;
};

/// Query row i of (batch, head): its sequences' bounds and its kv head.
struct SoftmaxRow {
  Value batch, head, i, rowQ, startQ, n, startK, m, headK;
};

/// Pass 1 of a softmax-family row: the scores of allowed keys (stored in
/// `scores`, with `allowedFlags` marking the allowed keys) and their maximum,
/// which it returns.
template <typename OpTy, typename QAt, typename KAt, typename MaskAt>
Value lowerSoftmaxScores(OpTy op, LoweringBuilder &rb,
                         const AttentionOperands &shape,
                         const SoftmaxScratch &scratch, const SoftmaxRow &row,
                         QAt qAt, KAt kAt, MaskAt maskAt) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  auto sparse = dyn_cast<SparseSoftmaxOp>(op.getOperation());
  Value zero = scratch.zero, scale = scratch.scale,
        byteZero = scratch.byteZero, negInf = scratch.negInf;
  Value scores = scratch.scores, allowedFlags = scratch.allowedFlags;
  Value blockK = scratch.blockK, keptBlocks = scratch.keptBlocks;
  Value batch = row.batch, head = row.head, i = row.i, startQ = row.startQ,
        n = row.n, startK = row.startK, m = row.m;

  // Pass 1: scores of allowed keys and their maximum.
  return rb.loop(zero, m, {negInf}, [&](Value j, ValueRange acc) {
    Value allowed = maskAt(head, j);
    if (auto chunked = dyn_cast<ChunkSoftmaxOp>(op.getOperation())) {
      Value chunk = rb.index(chunked.getChunk());
      Value sameChunk = arith::CmpIOp::create(
          b, arith::CmpIPredicate::eq,
          arith::DivUIOp::create(b, i, chunk),
          arith::DivUIOp::create(b, j, chunk));
      allowed = arith::AndIOp::create(b, allowed, sameChunk);
    }
    if (sparse) {
      Value keyBlock = arith::DivUIOp::create(b, j, blockK);
      Value present;
      if (Value blockMask = sparse.getBlockMask()) {
        Value queryBlock = arith::DivUIOp::create(
            b, i, rb.index(sparse.getBlockQ()));
        present = rb.blockPresent(params.lookup(blockMask), batch, head,
                                  queryBlock, keyBlock);
      } else {
        present = arith::CmpIOp::create(
            b, arith::CmpIPredicate::ne,
            memref::LoadOp::create(b, keptBlocks, keyBlock), byteZero);
      }
      allowed = arith::AndIOp::create(b, allowed, present);
    }
    memref::StoreOp::create(
        b, arith::ExtUIOp::create(b, i8, allowed), allowedFlags, j);
    ValueRange newMax = rb.ifThen(
        allowed, {f32},
        [&]() -> SmallVector<Value> {
          // s = scale * dot(q_i, k_j)
          Value dot = rb.loop(zero, shape.dimK, {rb.f32(0)},
                              [&](Value d, ValueRange sum) {
                                return SmallVector<Value>{rb.add(
                                    sum[0], rb.mul(qAt(head, d),
                                                   kAt(j, d)))};
                              })[0];
          Value s = rb.mul(scale, dot);
          // s = score(s, b, h, i, j, n, m, qstart, kstart)
          s = rb.inlineExpression(
              op.getScore(),
              {s, batch, head, i, j, n, m, startQ, startK}, s);
          memref::StoreOp::create(b, s, scores, j);
          return {arith::MaximumFOp::create(b, acc[0], s)};
        },
        [&]() -> SmallVector<Value> { return {acc[0]}; });
    return SmallVector<Value>{newMax[0]};
  })[0];
}

/// Passes 2 and 3 of a softmax-family row whose scores and maximum pass 1
/// left: the weights and their sum, then o_i (and lse_i when `lse` is set).
void lowerSoftmaxOutput(LoweringBuilder &rb, const AttentionOperands &shape,
                        const SoftmaxScratch &scratch, const SoftmaxRow &row,
                        Normalizer normalizer, Value rowMax, Value o,
                        Value lse) {
  ImplicitLocOpBuilder &b = rb.b;
  Value zero = scratch.zero, byteZero = scratch.byteZero,
        negInf = scratch.negInf;
  Value scores = scratch.scores, allowedFlags = scratch.allowedFlags;
  Value batch = row.batch, head = row.head, i = row.i, rowQ = row.rowQ,
        startK = row.startK, m = row.m, headK = row.headK;

  // Pass 2: weights p_j in place of the scores, and their sum. With
  // softmax, a row whose maximum is -inf has no weight at all; a NaN or
  // +inf maximum (a NaN score, an overflow) makes the row NaN.
  Value rowLive = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
                                        rowMax, negInf);
  Value rowSum = rb.loop(zero, m, {rb.f32(0)}, [&](Value j, ValueRange acc) {
    Value allowed = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ne,
        memref::LoadOp::create(b, allowedFlags, j), byteZero);
    Value s = memref::LoadOp::create(b, scores, j);
    Value p;
    switch (normalizer) {
    case Normalizer::softmax:
      allowed = arith::AndIOp::create(b, allowed, rowLive);
      p = math::ExpOp::create(b, arith::SubFOp::create(b, s, rowMax));
      break;
    case Normalizer::sigmoid: // 1 / (1 + exp(-s))
      p = arith::DivFOp::create(
          b, rb.f32(1),
          rb.add(rb.f32(1),
                 math::ExpOp::create(b, arith::NegFOp::create(b, s))));
      break;
    case Normalizer::none:
      p = s;
      break;
    }
    p = arith::SelectOp::create(b, allowed, p, rb.f32(0));
    memref::StoreOp::create(b, p, scores, j);
    return SmallVector<Value>{rb.add(acc[0], p)};
  })[0];

  // Pass 3: o_i = sum_j p_j v_j, divided by sum_j p_j for softmax; an
  // empty row gives 0, a NaN sum NaN.
  Value hasWeight = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
                                          rowSum, rb.f32(0));
  rb.loop(zero, shape.dimV, [&](Value e) {
    Value acc = rb.loop(zero, m, {rb.f32(0)}, [&](Value j, ValueRange sum) {
      Value p = memref::LoadOp::create(b, scores, j);
      Value value =
          rb.loadF32(shape.v, layoutIndices(shape.layout, batch, headK,
                                            rb.add(startK, j), e));
      return SmallVector<Value>{rb.add(sum[0], rb.mul(p, value))};
    })[0];
    if (normalizer == Normalizer::softmax)
      acc = arith::SelectOp::create(
          b, hasWeight, arith::DivFOp::create(b, acc, rowSum), rb.f32(0));
    rb.storeF32(acc, o,
                layoutIndices(shape.layout, batch, head, rowQ, e));
  });
  if (lse) {
    // lse_i = max + log(sum), -inf for an empty row.
    memref::StoreOp::create(
        b, rb.logSumExp(hasWeight, rowMax, rowSum), lse,
        lseIndices(shape.cuQ, batch, head, rowQ, i));
  }
}

/// Lowers attn.softmax / chunk_softmax / sparse_softmax. For each (b, h, i)
/// one row of scores is materialised:
///   s_j = score(scale * q_i . k_j) for allowed j, then
///   p_j = exp(s_j - max_j s_j) (softmax) | sigmoid(s_j) | s_j,
///   o_i = sum_j p_j v_j [/ sum_j p_j], lse_i = max + log(sum_j p_j).
template <typename OpTy>
void lowerSoftmaxFamily(OpTy op, LoweringBuilder &rb, ValueRange results) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Value o = results[0];
  Value lse = op.getLse() ? results[1] : Value();
  Value zero = rb.index(0);
  Value scale = rb.softmaxScale(op.getScale(), shape.dimK);
  Normalizer normalizer = op.getNormalizer();
  auto sparse = dyn_cast<SparseSoftmaxOp>(op.getOperation());
  Value selection = sparse && sparse.getTopkBlocks() ? results.back() : Value();

  // Row buffers: scores, allowed flags and, for sparse ops, a flag per key block.
  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  Value scores =
      memref::AllocOp::create(b, MemRefType::get({ShapedType::kDynamic}, f32),
                              ValueRange{shape.lengthK});
  Value allowedFlags =
      memref::AllocOp::create(b, MemRefType::get({ShapedType::kDynamic}, i8),
                              ValueRange{shape.lengthK});
  Value blockK, keptBlocks, blockScores, eligible;
  if (sparse) {
    blockK = rb.index(sparse.getBlockK());
    Value maxBlocks = arith::CeilDivUIOp::create(b, shape.lengthK, blockK);
    keptBlocks = memref::AllocOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, i8), ValueRange{maxBlocks});
    blockScores = memref::AllocOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, f32), ValueRange{maxBlocks});
    eligible = memref::AllocOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, i8), ValueRange{maxBlocks});
  }
  Value byteZero = arith::ConstantIntOp::create(b, i8, 0);
  Value byteOne = arith::ConstantIntOp::create(b, i8, 1);
  Value negInf = rb.f32(-std::numeric_limits<double>::infinity());
  SoftmaxScratch scratch{zero,   scale,  byteZero, byteOne,
                         negInf, scores, allowedFlags,
                         blockK, keptBlocks, blockScores, eligible};

  rb.gridLoop(shape.numBatches, shape.headsQ, [&](Value batch, Value head) {
    Value startQ, n;
    std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
    Value startK, m;
    std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
    Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
    rb.loop(zero, n, [&](Value i) {
      Value rowQ = rb.add(startQ, i);
      auto qAt = [&](Value h, Value d) {
        return rb.loadF32(shape.q,
                          layoutIndices(shape.layout, batch, h, rowQ, d));
      };
      auto kAt = [&](Value j, Value d) {
        return rb.loadF32(shape.k, layoutIndices(shape.layout, batch, headK,
                                                 rb.add(startK, j), d));
      };
      auto maskAt = [&](Value h, Value j) {
        return rb.inlineExpression(
            op.getMask(), {batch, h, i, j, n, m, startQ, startK},
            arith::ConstantIntOp::create(b, b.getI1Type(), 1));
      };

      // Which key blocks this row may visit (sparse ops only).
      Value numBlocks;
      if (sparse) {
        numBlocks = arith::CeilDivUIOp::create(b, m, blockK);
        if (std::optional<uint64_t> topk = sparse.getTopk())
          selectTopkBlocks(sparse, rb, *topk, numBlocks, blockK, m, headK,
                           shape.groupSize, scale, qAt, kAt, maskAt,
                           keptBlocks, blockScores, eligible, selection,
                           lseIndices(shape.cuQ, batch, head, rowQ, i));
        else if (Value numList = sparse.getKvNumBlocks()) {
          Value queryBlock = arith::DivUIOp::create(
              b, i, rb.index(sparse.getBlockQ()));
          rb.loop(zero, numBlocks, [&](Value block) {
            memref::StoreOp::create(b, byteZero, keptBlocks, block);
          });
          Value indices = params.lookup(sparse.getKvIndices());
          Value counts = params.lookup(numList);
          Value count = rb.checkedBlockCount(counts, batch, head, queryBlock,
                                             rb.dim(indices, 3));
          rb.loop(zero, count, [&](Value entry) {
            Value block =
                rb.listedBlock(indices, batch, head, queryBlock, entry);
            rb.checkListedBlock(indices, batch, head, queryBlock, entry, block,
                                numBlocks);
            // A reported entry names no block; skip it.
            Value inRange = rb.inRange(block, zero, numBlocks);
            rb.ifThen(inRange, [&] {
              memref::StoreOp::create(b, byteOne, keptBlocks, block);
            });
          });
        }
      }

      SoftmaxRow row{batch, head, i, rowQ, startQ, n, startK, m, headK};
      Value rowMax =
          lowerSoftmaxScores(op, rb, shape, scratch, row, qAt, kAt, maskAt);
      lowerSoftmaxOutput(rb, shape, scratch, row, normalizer, rowMax, o, lse);
    });
  });
  for (Value buffer : {scores, allowedFlags, keptBlocks, blockScores, eligible})
    if (buffer)
      memref::DeallocOp::create(b, buffer);
}

/// NSA-style selection for query i of kv head g: mark in `kept` the `topk`
/// eligible key blocks J with the highest
///   scale * sum_{h in group g} dot(q_{h,i}, mean of the keys of block J),
/// where a block is eligible when it holds an allowed key; ties keep the
/// lower J. With `selection`, the kept blocks also go to its row at
/// `selectionRow`, best first (f32 block numbers, -1 past the last).
template <typename QAt, typename KAt, typename MaskAt>
void selectTopkBlocks(SparseSoftmaxOp op, LoweringBuilder &rb, uint64_t topk,
                      Value numBlocks, Value blockK, Value m, Value headK,
                      Value groupSize, Value scale, QAt qAt, KAt kAt,
                      MaskAt maskAt, Value kept, Value blockScores,
                      Value eligible, Value selection,
                      ArrayRef<Value> selectionRow) {
  ImplicitLocOpBuilder &b = rb.b;
  Value zero = rb.index(0);
  Type i8 = b.getI8Type();
  Value byteZero = arith::ConstantIntOp::create(b, i8, 0);
  Value dimK = rb.dim(rb.params.lookup(op.getQ()),
                      getLayoutDims(op.getLayout()).feature);
  Value firstHead = rb.mul(headK, groupSize);
  rb.loop(zero, numBlocks, [&](Value block) {
    memref::StoreOp::create(b, byteZero, kept, block);
    Value begin = rb.mul(block, blockK);
    Value end = arith::MinUIOp::create(b, rb.add(begin, blockK), m);
    Value count = rb.indexToF32(rb.sub(end, begin));
    // The mask does not depend on h (verified), so any head of the group
    // decides eligibility.
    Value anyAllowed = rb.loop(begin, end, {arith::ConstantIntOp::create(
                                               b, b.getI1Type(), 0)},
                               [&](Value j, ValueRange acc) {
                                 return SmallVector<Value>{arith::OrIOp::create(
                                     b, acc[0], maskAt(firstHead, j))};
                               })[0];
    memref::StoreOp::create(b, arith::ExtUIOp::create(b, i8, anyAllowed),
                            eligible, block);
    Value score = rb.loop(zero, dimK, {rb.f32(0)}, [&](Value d, ValueRange acc) {
      Value keySum = rb.loop(begin, end, {rb.f32(0)}, [&](Value j, ValueRange s) {
        return SmallVector<Value>{rb.add(s[0], kAt(j, d))};
      })[0];
      Value mean = arith::DivFOp::create(b, keySum, count);
      Value querySum = rb.loop(zero, groupSize, {rb.f32(0)},
                               [&](Value g, ValueRange s) {
                                 return SmallVector<Value>{rb.add(
                                     s[0], qAt(rb.add(firstHead, g), d))};
                               })[0];
      return SmallVector<Value>{rb.add(acc[0], rb.mul(querySum, mean))};
    })[0];
    memref::StoreOp::create(b, rb.mul(scale, score), blockScores, block);
  });
  // topk rounds of "take the best eligible block not yet kept".
  Value none = rb.index(-1);
  rb.loop(zero, rb.index(topk), [&](Value round) {
    ValueRange best = rb.loop(
        zero, numBlocks, {none, rb.f32(0)}, [&](Value block, ValueRange acc) {
          Value candidate = arith::AndIOp::create(
              b,
              arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                    memref::LoadOp::create(b, eligible, block),
                                    byteZero),
              arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                    memref::LoadOp::create(b, kept, block),
                                    byteZero));
          Value score = memref::LoadOp::create(b, blockScores, block);
          Value better = arith::OrIOp::create(
              b,
              arith::CmpIOp::create(b, arith::CmpIPredicate::eq, acc[0], none),
              arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, score,
                                    acc[1]));
          Value take = arith::AndIOp::create(b, candidate, better);
          return SmallVector<Value>{
              arith::SelectOp::create(b, take, block, acc[0]),
              arith::SelectOp::create(b, take, score, acc[1])};
        });
    Value found =
        arith::CmpIOp::create(b, arith::CmpIPredicate::ne, best[0], none);
    rb.ifThen(found, [&] {
      memref::StoreOp::create(b, arith::ConstantIntOp::create(b, i8, 1), kept,
                              best[0]);
    });
    if (selection) {
      SmallVector<Value> at(selectionRow);
      at.push_back(round);
      rb.storeF32(arith::SelectOp::create(b, found, rb.indexToF32(best[0]),
                                          rb.f32(-1)),
                  selection, at);
    }
  });
}

//===----------------------------------------------------------------------===//
// Linear family
//===----------------------------------------------------------------------===//

/// Lowers attn.linear with the recurrence, per (b, h) and state S [Dk, Dv]:
///   causal:     S = diag(exp(g_t)) S + phi(k_t)^T v_t; o_t = scale * phi(q_t) S
///   non-causal: S = S_0 + sum_t phi(k_t)^T v_t;       o_t = scale * phi(q_t) S
void lowerLinear(LinearOp op, LoweringBuilder &rb, ValueRange results) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Value o = results[0];
  Value finalState = results.size() > 1 ? results[1] : Value();
  Value initial =
      op.getInitialState() ? params.lookup(op.getInitialState()) : Value();
  Value zero = rb.index(0);
  Value scale = rb.f32(op.getScale().convertToDouble());
  Type f32 = b.getF32Type();
  Value state = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32),
      ValueRange{shape.dimK, shape.dimV});
  Value hasInitial = initial ? rb.isPresent(initial) : Value();

  auto phi = [&](Value x) {
    return rb.inlineExpression(op.getFeature(), {x}, x);
  };

  rb.gridLoop(shape.numBatches, shape.headsQ, [&](Value batch, Value head) {
    Value start, steps;
    std::tie(start, steps) =
        sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
    Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
    auto qkvAt = [&](Value memref, Value h, Value t, Value d) {
      return rb.loadF32(
          memref, layoutIndices(shape.layout, batch, h, rb.add(start, t), d));
    };
    // S = S_0 (or 0)
    initializeState(rb, state, initial, hasInitial, batch, head, shape);

    // S = diag(exp(g_t)) S + phi(k_t)^T v_t
    auto accumulate = [&](Value t, bool decay) {
      rb.loop(zero, shape.dimK, [&](Value d) {
        Value factor = rb.f32(1);
        if (decay && !op.getGate().empty()) {
          Value gate = rb.inlineExpression(op.getGate(),
                                           {batch, head, t, d, start},
                                           rb.f32(0));
          factor = math::ExpOp::create(
              b, rb.checkedGate(gate, {batch, head, t, d}));
        }
        Value key = phi(qkvAt(shape.k, headK, t, d));
        rb.loop(zero, shape.dimV, [&](Value e) {
          Value old = memref::LoadOp::create(b, state, ValueRange{d, e});
          Value update = rb.mul(key, qkvAt(shape.v, headK, t, e));
          memref::StoreOp::create(b, rb.add(rb.mul(factor, old), update),
                                  state, ValueRange{d, e});
        });
      });
    };
    // o_t = scale * phi(q_t) S
    auto emitOutput = [&](Value t) {
      rb.loop(zero, shape.dimV, [&](Value e) {
        Value acc = rb.loop(
            zero, shape.dimK, {rb.f32(0)}, [&](Value d, ValueRange sum) {
              Value query = phi(qkvAt(shape.q, head, t, d));
              Value s = memref::LoadOp::create(b, state, ValueRange{d, e});
              return SmallVector<Value>{rb.add(sum[0], rb.mul(query, s))};
            })[0];
        rb.storeF32(
            rb.mul(scale, acc), o,
            layoutIndices(shape.layout, batch, head, rb.add(start, t), e));
      });
    };
    if (op.getCausal()) {
      rb.loop(zero, steps, [&](Value t) {
        accumulate(t, /*decay=*/true);
        emitOutput(t);
      });
    } else {
      rb.loop(zero, steps, [&](Value t) { accumulate(t, /*decay=*/false); });
      rb.loop(zero, steps, [&](Value t) { emitOutput(t); });
    }
    if (finalState)
      storeState(rb, state, finalState, batch, head, shape);
  });
  memref::DeallocOp::create(b, state);
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

void lowerKernel(KernelOp kernel) {
  lowerKernelToFunc(kernel, [](Operation *familyOp, LoweringBuilder &rb,
                               ValueRange results) {
    if (auto softmax = dyn_cast<SoftmaxOp>(familyOp))
      lowerSoftmaxFamily(softmax, rb, results);
    else if (auto chunked = dyn_cast<ChunkSoftmaxOp>(familyOp))
      lowerSoftmaxFamily(chunked, rb, results);
    else if (auto sparse = dyn_cast<SparseSoftmaxOp>(familyOp))
      lowerSoftmaxFamily(sparse, rb, results);
    else if (auto backward = dyn_cast<SoftmaxBackwardOp>(familyOp))
      lowerSoftmaxBackward(backward, rb, results);
    else if (auto backward = dyn_cast<LinearBackwardOp>(familyOp))
      lowerLinearBackward(backward, rb, results);
    else
      lowerLinear(cast<LinearOp>(familyOp), rb, results);
  });
}

struct LowerToReferencePass
    : public attnc::impl::LowerToReferenceBase<LowerToReferencePass> {
  void runOnOperation() override {
    for (KernelOp kernel :
         llvm::make_early_inc_range(getOperation().getOps<KernelOp>()))
      lowerKernel(kernel);
  }
};

} // namespace
