//===- TileSoftmax.cpp - FlashAttention-2 tiling of softmax kernels -------===//
//
// Query blocks x visited key blocks with the online softmax; the N x M score
// matrix never exists, only one block_q x block_k tile of it.
//
//===----------------------------------------------------------------------===//

#include "KernelLowering.h"
#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Transforms/Passes.h"

#include "llvm/Support/MathExtras.h"

#include <limits>

namespace attnc {
#define GEN_PASS_DEF_TILESOFTMAX
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
namespace vector = mlir::vector;

namespace {

template <typename OpTy>
void tileSoftmaxFamily(OpTy op, LoweringBuilder &rb, ValueRange results,
                       int64_t blockQ, int64_t blockK,
                       std::optional<int64_t> chunk) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Value o = results[0];
  Value lse = results.size() > 1 ? results[1] : Value();
  Value zero = rb.index(0), one = rb.index(1);
  Value scale = rb.softmaxScale(op.getScale(), shape.dimK);
  Normalizer normalizer = op.getNormalizer();
  bool online = normalizer == Normalizer::softmax;
  MaskStructure band = analyzeMask(op.getMask());

  // Per query block: one score tile, the accumulator and the row statistics.
  Type f32 = b.getF32Type();
  Value tile = memref::AllocOp::create(b, MemRefType::get({blockQ, blockK}, f32));
  // Q, K and V tiles staged as f32 once per block, so the inner loops read
  // contiguous f32 instead of converting strided elements again and again.
  auto stagingTile = [&](int64_t rows, Value cols) {
    return memref::AllocOp::create(
        b, MemRefType::get({rows, ShapedType::kDynamic}, f32), ValueRange{cols});
  };
  // The matmuls run on vectors of kLanes f32 along the keys (Q K^T, K staged
  // transposed) and along Dv (P V): no reduction crosses lanes, so each
  // lane sums in the scalar order. Widths are padded to whole vectors and
  // the padding is zero, so padded lanes compute finite values nobody reads.
  constexpr int64_t kLanes = LoweringBuilder::kLanes;
  constexpr int64_t kValueGroup = LoweringBuilder::kValueGroup;
  int64_t paddedBlockK = llvm::alignTo(blockK, kLanes);
  // Dv padded to whole groups (the padding is zero and never stored).
  Value paddedDimV = rb.paddedToValueGroups(shape.dimV);
  Value queryTile = stagingTile(blockQ, shape.dimK);
  Value keyTileT = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic, paddedBlockK}, f32),
      ValueRange{shape.dimK});
  Value valueTile = stagingTile(blockK, paddedDimV);
  // One row's raw dot products q_r . k_c.
  Value rowDots = memref::AllocOp::create(
      b, MemRefType::get({paddedBlockK}, f32));
  rb.zeroFill(keyTileT);
  rb.zeroFill(valueTile);
  // tile[r, d] = memref[row0 + r, d] (converted to f32), r < rows
  auto stage = [&](Value tile, Value memref, Value batch, Value head,
                   Value row0, Value rows, Value width) {
    rb.loop(zero, rows, [&](Value r) {
      rb.loop(zero, width, [&](Value d) {
        memref::StoreOp::create(
            b,
            rb.loadF32(memref, layoutIndices(shape.layout, batch, head,
                                             rb.add(row0, r), d)),
            tile, ValueRange{r, d});
      });
    });
  };
  Value acc = memref::AllocOp::create(
      b, MemRefType::get({blockQ, ShapedType::kDynamic}, f32),
      ValueRange{paddedDimV});
  rb.zeroFill(acc);
  Value rowMax = memref::AllocOp::create(b, MemRefType::get({blockQ}, f32));
  Value rowSum = memref::AllocOp::create(b, MemRefType::get({blockQ}, f32));
  Value negInf = rb.f32(-std::numeric_limits<double>::infinity());
  Value bq = rb.index(blockQ), bk = rb.index(blockK);
  Value chunkSize = chunk ? rb.index(*chunk) : Value();
  auto sameChunk = [&](Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                 arith::DivUIOp::create(b, x, chunkSize),
                                 arith::DivUIOp::create(b, y, chunkSize));
  };

  // Grid items are query blocks of one (batch, head): threads share long
  // sequences too.
  rb.rowBlockGridLoop(shape.numBatches, shape.headsQ, [&](Value batch,
                                                         Value head,
                                                         Value queryBlock) {
    Value startQ, n, startK, m;
    std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
    std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
    Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
    // Loads that do not depend on (s, i, j), like slope[h], once per item.
    rb.hoistedLoads.clear();
    rb.hoistInvariantLoads(
        op.getScore(),
        {{score_arg::B, batch}, {score_arg::H, head}, {score_arg::N, n},
         {score_arg::M, m}, {score_arg::QStart, startQ},
         {score_arg::KStart, startK}});
    Value numQueryBlocks = arith::CeilDivUIOp::create(b, n, bq);
    rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, queryBlock,
                                    numQueryBlocks),
              [&] {
      Value i0 = rb.mul(queryBlock, bq);
      Value rows = arith::MinUIOp::create(b, bq, rb.sub(n, i0));
      Value iLast = rb.add(i0, rb.sub(rows, one));

      stage(queryTile, shape.q, batch, head, rb.add(startQ, i0), rows,
            shape.dimK);

      // m = -inf, l = 0, acc = 0
      rb.loop(zero, rows, [&](Value r) {
        memref::StoreOp::create(b, negInf, rowMax, r);
        memref::StoreOp::create(b, rb.f32(0), rowSum, r);
        rb.loop(zero, shape.dimV, [&](Value e) {
          memref::StoreOp::create(b, rb.f32(0), acc, ValueRange{r, e});
        });
      });

      Value jBegin, jEnd;
      std::tie(jBegin, jEnd) =
          visibleKeyRange(rb, band, chunkSize, i0, iLast, n, m);
      Value keyBlockBegin = arith::DivUIOp::create(b, jBegin, bk);
      Value keyBlockEnd = arith::CeilDivUIOp::create(b, jEnd, bk);

      auto visitKeyBlock = [&](Value keyBlock) {
        Value j0 = rb.mul(keyBlock, bk);
        Value cols = arith::MinUIOp::create(b, bk, rb.sub(m, j0));
        Value jLast = rb.add(j0, rb.sub(cols, one));
        // keyTileT[d, c] = k[j0 + c, d]
        rb.loop(zero, cols, [&](Value c) {
          rb.loop(zero, shape.dimK, [&](Value d) {
            memref::StoreOp::create(
                b,
                rb.loadF32(shape.k,
                           layoutIndices(shape.layout, batch, headK,
                                         rb.add(startK, rb.add(j0, c)), d)),
                keyTileT, ValueRange{d, c});
          });
        });
        stage(valueTile, shape.v, batch, headK, rb.add(startK, j0), cols,
              shape.dimV);

        // One tile: scores (masked or not), then the online update.
        auto emitTile = [&](bool applyMask) {
          rb.loop(zero, rows, [&](Value r) {
            Value i = rb.add(i0, r);
            // rowDots[c] = q_r . k_c
            rb.rowTimesTransposed(
                shape.dimK,
                [&](Value d) -> Value {
                  return memref::LoadOp::create(b, queryTile, ValueRange{r, d});
                },
                keyTileT, paddedBlockK, rowDots, {});
            Value tileMax = rb.loop(zero, cols, {negInf}, [&](Value c,
                                                              ValueRange max) {
              Value j = rb.add(j0, c);
              Value allowed = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
              if (applyMask) {
                allowed = rb.inlineExpression(
                    op.getMask(), {batch, head, i, j, n, m, startQ, startK},
                    allowed);
                if (chunk)
                  allowed = arith::AndIOp::create(b, allowed, sameChunk(i, j));
              }
              // Stored: s (or -inf) for softmax, the weight (or 0) otherwise.
              Value stored = rb.ifThen(
                  allowed, {f32},
                  [&]() -> SmallVector<Value> {
                    Value dot = memref::LoadOp::create(b, rowDots, c);
                    Value s = rb.mul(scale, dot);
                    s = rb.inlineExpression(
                        op.getScore(),
                        {s, batch, head, i, j, n, m, startQ, startK}, s);
                    if (normalizer == Normalizer::sigmoid)
                      s = arith::DivFOp::create(
                          b, rb.f32(1),
                          rb.add(rb.f32(1), math::ExpOp::create(
                                                b, arith::NegFOp::create(b, s))));
                    return {s};
                  },
                  [&]() -> SmallVector<Value> {
                    return {online ? negInf : rb.f32(0)};
                  })[0];
              memref::StoreOp::create(b, stored, tile, ValueRange{r, c});
              return SmallVector<Value>{
                  arith::MaximumFOp::create(b, max[0], stored)};
            })[0];

            Value alpha = rb.f32(1);
            if (online) {
              // m' = max(m, rowmax(S)); P = exp(S - m');
              // l' = l * exp(m - m') + rowsum(P)
              Value oldMax = memref::LoadOp::create(b, rowMax, r);
              Value newMax = arith::MaximumFOp::create(b, oldMax, tileMax);
              Value live = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                                 newMax, negInf);
              alpha = arith::SelectOp::create(
                  b, live,
                  math::ExpOp::create(b, arith::SubFOp::create(b, oldMax, newMax)),
                  rb.f32(1));
              Value sum = rb.loop(zero, cols, {rb.f32(0)}, [&](Value c,
                                                                ValueRange acc) {
                Value s = memref::LoadOp::create(b, tile, ValueRange{r, c});
                Value p = arith::SelectOp::create(
                    b, live,
                    math::ExpOp::create(b, arith::SubFOp::create(b, s, newMax)),
                    rb.f32(0));
                memref::StoreOp::create(b, p, tile, ValueRange{r, c});
                return SmallVector<Value>{rb.add(acc[0], p)};
              })[0];
              Value oldSum = memref::LoadOp::create(b, rowSum, r);
              memref::StoreOp::create(b, rb.add(rb.mul(oldSum, alpha), sum),
                                      rowSum, r);
              memref::StoreOp::create(b, newMax, rowMax, r);
            }
            // acc' = acc * alpha + P V, kValueGroup vectors of kLanes
            // columns of Dv per loop over the keys.
            Value groups = arith::DivUIOp::create(
                b, paddedDimV, rb.index(kLanes * kValueGroup));
            Value alphaLanes = vector::BroadcastOp::create(b, rb.lanes(), alpha);
            rb.loop(zero, groups, [&](Value group) {
              Value e0 = rb.mul(group, rb.index(kLanes * kValueGroup));
              auto column = [&](int64_t k) {
                return rb.add(e0, rb.index(k * kLanes));
              };
              SmallVector<Value> scaled;
              for (int64_t k = 0; k < kValueGroup; ++k)
                scaled.push_back(arith::MulFOp::create(
                    b, rb.loadLanes(acc, {r, column(k)}), alphaLanes));
              SmallVector<Value> updated =
                  rb.vectorDotLoops(zero, cols, scaled, [&](Value c) {
                    SmallVector<Value> values;
                    for (int64_t k = 0; k < kValueGroup; ++k)
                      values.push_back(rb.loadLanes(valueTile, {c, column(k)}));
                    return std::make_pair(
                        Value(memref::LoadOp::create(b, tile,
                                                     ValueRange{r, c})),
                        values);
                  });
              for (int64_t k = 0; k < kValueGroup; ++k)
                vector::StoreOp::create(b, updated[k], acc,
                                        ValueRange{r, column(k)});
            });
          });
        };

        if (!band.exact) {
          emitTile(/*applyMask=*/true);
          return;
        }
        // A block wholly inside the band (and the chunk) needs no mask.
        Value full = blockInsideBand(rb, band, chunkSize, i0, iLast, j0,
                                     jLast, n, m);
        rb.ifThen(
            full, {},
            [&] {
              emitTile(/*applyMask=*/false);
              return SmallVector<Value>{};
            },
            [&] {
              emitTile(/*applyMask=*/true);
              return SmallVector<Value>{};
            });
      };

      auto sparse = dyn_cast<SparseSoftmaxOp>(op.getOperation());
      if (!sparse) {
        rb.loop(keyBlockBegin, keyBlockEnd, visitKeyBlock);
      } else if (Value blockMask = sparse.getBlockMask()) {
        // Blocks of the band that the run-time block mask marks present.
        rb.loop(keyBlockBegin, keyBlockEnd, [&](Value keyBlock) {
          Value raw = rb.checkedLoad(params.lookup(blockMask),
                                     {batch, head, queryBlock, keyBlock});
          rb.ifThen(arith::CmpIOp::create(
                        b, arith::CmpIPredicate::ne, raw,
                        arith::ConstantIntOp::create(b, raw.getType(), 0)),
                    [&] { visitKeyBlock(keyBlock); });
        });
      } else {
        // Only the listed blocks: the first min(count, width) entries,
        // each once, if it names a block of the band.
        Value counts = params.lookup(sparse.getKvNumBlocks());
        Value lists = params.lookup(sparse.getKvIndices());
        Value width = rb.dim(lists, 3);
        Value count = arith::MinSIOp::create(
            b,
            arith::IndexCastOp::create(
                b, b.getIndexType(),
                rb.checkedLoad(counts, {batch, head, queryBlock})),
            width);
        auto entryAt = [&](Value entry) -> Value {
          return arith::IndexCastOp::create(
              b, b.getIndexType(),
              rb.checkedLoad(lists, {batch, head, queryBlock, entry}));
        };
        rb.loop(zero, count, [&](Value entry) {
          Value keyBlock = entryAt(entry);
          Value inBand = arith::AndIOp::create(
              b,
              arith::CmpIOp::create(b, arith::CmpIPredicate::sge, keyBlock,
                                    keyBlockBegin),
              arith::CmpIOp::create(b, arith::CmpIPredicate::slt, keyBlock,
                                    keyBlockEnd));
          Value repeated = rb.loop(
              zero, entry,
              {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
              [&](Value earlier, ValueRange seen) {
                Value same = arith::CmpIOp::create(
                    b, arith::CmpIPredicate::eq, entryAt(earlier), keyBlock);
                return SmallVector<Value>{
                    arith::OrIOp::create(b, seen[0], same)};
              })[0];
          Value fresh = arith::XOrIOp::create(
              b, repeated, arith::ConstantIntOp::create(b, b.getI1Type(), 1));
          rb.ifThen(arith::AndIOp::create(b, inBand, fresh),
                    [&] { visitKeyBlock(keyBlock); });
        });
      }

      // o = acc / l (softmax; 0 for a row without weight), lse = m + log l
      rb.loop(zero, rows, [&](Value r) {
        Value i = rb.add(i0, r);
        Value rowQ = rb.add(startQ, i);
        Value sum = memref::LoadOp::create(b, rowSum, r);
        Value hasWeight = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                                sum, rb.f32(0));
        rb.loop(zero, shape.dimV, [&](Value e) {
          Value value = memref::LoadOp::create(b, acc, ValueRange{r, e});
          if (online)
            value = arith::SelectOp::create(
                b, hasWeight, arith::DivFOp::create(b, value, sum), rb.f32(0));
          rb.storeF32(value, o,
                      layoutIndices(shape.layout, batch, head, rowQ, e));
        });
        if (lse) {
          Value max = memref::LoadOp::create(b, rowMax, r);
          memref::StoreOp::create(
              b, rb.logSumExp(hasWeight, max, sum), lse,
              lseIndices(shape.cuQ, batch, head, rowQ, i));
        }
      });
    });
  });
  for (Value buffer :
       {tile, queryTile, keyTileT, valueTile, rowDots, acc, rowMax, rowSum})
    memref::DeallocOp::create(b, buffer);
}

/// NSA-style top-k selection, one query row at a time (each row selects its
/// own blocks). Per (batch, kv head) the mean key of every block is computed
/// once; per row the block scores are
///   scale * sum_{h in group} dot(q_{h,i}, mean key of block J),
/// a block is eligible when it holds an allowed key (from the band when the
/// mask is exactly a band, else by evaluating the mask), the best `topk`
/// eligible blocks are kept (ties: lower J), and each head of the group runs
/// the online softmax over the kept blocks only.
void tileTopkSelection(SparseSoftmaxOp op, LoweringBuilder &rb,
                       ValueRange results) {
  ImplicitLocOpBuilder &b = rb.b;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Value o = results[0];
  Value lse = results.size() > 1 ? results[1] : Value();
  Value zero = rb.index(0), one = rb.index(1);
  Value scale = rb.softmaxScale(op.getScale(), shape.dimK);
  MaskStructure band = analyzeMask(op.getMask());
  int64_t blockK = op.getBlockK();
  Value bk = rb.index(blockK);
  Value topk = rb.index(*op.getTopk());

  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  Value maxBlocks = arith::CeilDivUIOp::create(b, shape.lengthK, bk);
  Value means = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32),
      ValueRange{maxBlocks, shape.dimK});
  Value blockScores = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, f32), ValueRange{maxBlocks});
  Value candidate = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, i8), ValueRange{maxBlocks});
  Value kept = memref::AllocOp::create(
      b, MemRefType::get({static_cast<int64_t>(*op.getTopk())}, b.getIndexType()));
  Value tile = memref::AllocOp::create(b, MemRefType::get({blockK}, f32));
  // sum over the group's query heads of q[h, i, :], once per row
  Value querySums = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, f32), ValueRange{shape.dimK});
  Value acc = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, f32), ValueRange{shape.dimV});
  Value negInf = rb.f32(-std::numeric_limits<double>::infinity());
  Value byteZero = arith::ConstantIntOp::create(b, i8, 0);
  Value none = rb.index(-1);

  rb.gridLoop(shape.numBatches, shape.headsK, [&](Value batch, Value headK) {
    Value startQ, n, startK, m;
    std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
    std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
    Value numBlocks = arith::CeilDivUIOp::create(b, m, bk);
    auto keyAt = [&](Value headK, Value j, Value d) {
      return rb.loadF32(shape.k, layoutIndices(shape.layout, batch, headK,
                                               rb.add(startK, j), d));
    };
    auto blockEnd = [&](Value block) {
      return arith::MinUIOp::create(b, rb.add(rb.mul(block, bk), bk), m);
    };
    Value firstHead = rb.mul(headK, shape.groupSize);
    // mean key of each block
    rb.loop(zero, numBlocks, [&](Value block) {
      Value begin = rb.mul(block, bk), end = blockEnd(block);
      Value count = arith::UIToFPOp::create(
          b, f32,
          arith::IndexCastUIOp::create(b, b.getI64Type(), rb.sub(end, begin)));
      rb.loop(zero, shape.dimK, [&](Value d) {
        Value sum = rb.loop(begin, end, {rb.f32(0)}, [&](Value j,
                                                        ValueRange acc) {
          return SmallVector<Value>{rb.add(acc[0], keyAt(headK, j, d))};
        })[0];
        memref::StoreOp::create(b, arith::DivFOp::create(b, sum, count),
                                means, ValueRange{block, d});
      });
    });

    rb.loop(zero, n, [&](Value i) {
      Value rowQ = rb.add(startQ, i);
      auto queryAt = [&](Value head, Value d) {
        return rb.loadF32(shape.q,
                          layoutIndices(shape.layout, batch, head, rowQ, d));
      };
      auto maskAt = [&](Value head, Value j) {
        return rb.inlineExpression(
            op.getMask(), {batch, head, i, j, n, m, startQ, startK},
            arith::ConstantIntOp::create(b, b.getI1Type(), 1));
      };
      rb.loop(zero, shape.dimK, [&](Value d) {
        Value sum = rb.loop(zero, shape.groupSize, {rb.f32(0)},
                            [&](Value g, ValueRange acc) {
                              return SmallVector<Value>{rb.add(
                                  acc[0], queryAt(rb.add(firstHead, g), d))};
                            })[0];
        memref::StoreOp::create(b, sum, querySums, d);
      });
      // Block scores and eligibility.
      rb.loop(zero, numBlocks, [&](Value block) {
        Value begin = rb.mul(block, bk), end = blockEnd(block);
        Value eligible;
        if (band.exact) { // the block meets the band [i + L, i + U]
          Value lo = begin, hi = rb.sub(end, one);
          for (const LengthAffine &lower : band.lower)
            lo = arith::MaxSIOp::create(b, lo,
                                        rb.add(i, evaluateLength(rb, lower, n, m)));
          for (const LengthAffine &upper : band.upper)
            hi = arith::MinSIOp::create(b, hi,
                                        rb.add(i, evaluateLength(rb, upper, n, m)));
          eligible =
              arith::CmpIOp::create(b, arith::CmpIPredicate::sle, lo, hi);
        } else { // the mask does not read h (verified)
          eligible = rb.loop(begin, end, {arith::ConstantIntOp::create(
                                             b, b.getI1Type(), 0)},
                             [&](Value j, ValueRange any) {
                               return SmallVector<Value>{arith::OrIOp::create(
                                   b, any[0], maskAt(firstHead, j))};
                             })[0];
        }
        memref::StoreOp::create(b, arith::ExtUIOp::create(b, i8, eligible),
                                candidate, block);
        Value score = rb.loop(
            zero, shape.dimK, {rb.f32(0)}, [&](Value d, ValueRange acc) {
              Value querySum = memref::LoadOp::create(b, querySums, d);
              Value mean =
                  memref::LoadOp::create(b, means, ValueRange{block, d});
              return SmallVector<Value>{
                  rb.add(acc[0], rb.mul(querySum, mean))};
            })[0];
        memref::StoreOp::create(b, rb.mul(scale, score), blockScores, block);
      });
      // Keep the best topk candidates, each taken out once chosen.
      Value keptCount = rb.loop(zero, topk, {zero}, [&](Value,
                                                       ValueRange count) {
        ValueRange best = rb.loop(
            zero, numBlocks, {none, rb.f32(0)},
            [&](Value block, ValueRange acc) {
              Value open = arith::CmpIOp::create(
                  b, arith::CmpIPredicate::ne,
                  memref::LoadOp::create(b, candidate, block), byteZero);
              Value score = memref::LoadOp::create(b, blockScores, block);
              Value better = arith::OrIOp::create(
                  b,
                  arith::CmpIOp::create(b, arith::CmpIPredicate::eq, acc[0],
                                        none),
                  arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, score,
                                        acc[1]));
              Value take = arith::AndIOp::create(b, open, better);
              return SmallVector<Value>{
                  arith::SelectOp::create(b, take, block, acc[0]),
                  arith::SelectOp::create(b, take, score, acc[1])};
            });
        Value found =
            arith::CmpIOp::create(b, arith::CmpIPredicate::ne, best[0], none);
        return SmallVector<Value>{rb.ifThen(
            found, {b.getIndexType()},
            [&]() -> SmallVector<Value> {
              memref::StoreOp::create(b, byteZero, candidate, best[0]);
              memref::StoreOp::create(b, best[0], kept, count[0]);
              return {rb.add(count[0], one)};
            },
            [&]() -> SmallVector<Value> { return {count[0]}; })[0]};
      })[0];

      // Each head of the group: online softmax over the kept blocks.
      rb.loop(zero, shape.groupSize, [&](Value g) {
        Value head = rb.add(firstHead, g);
        rb.loop(zero, shape.dimV, [&](Value e) {
          memref::StoreOp::create(b, rb.f32(0), acc, e);
        });
        ValueRange stats = rb.loop(
            zero, keptCount, {negInf, rb.f32(0)},
            [&](Value entry, ValueRange running) {
              Value block = memref::LoadOp::create(b, kept, entry);
              Value begin = rb.mul(block, bk), end = blockEnd(block);
              Value cols = rb.sub(end, begin);
              Value blockMax = rb.loop(zero, cols, {negInf}, [&](Value c,
                                                                ValueRange max) {
                Value j = rb.add(begin, c);
                Value s = rb.ifThen(
                    maskAt(head, j), {f32},
                    [&]() -> SmallVector<Value> {
                      Value dot =
                          rb.loop(zero, shape.dimK, {rb.f32(0)},
                                  [&](Value d, ValueRange sum) {
                                    return SmallVector<Value>{rb.add(
                                        sum[0], rb.mul(queryAt(head, d),
                                                       keyAt(headK, j, d)))};
                                  })[0];
                      Value scaled = rb.mul(scale, dot);
                      return {rb.inlineExpression(
                          op.getScore(),
                          {scaled, batch, head, i, j, n, m, startQ, startK},
                          scaled)};
                    },
                    [&]() -> SmallVector<Value> { return {negInf}; })[0];
                memref::StoreOp::create(b, s, tile, c);
                return SmallVector<Value>{
                    arith::MaximumFOp::create(b, max[0], s)};
              })[0];
              // m' = max(m, blockmax); l' = l e^(m - m') + sum e^(s - m')
              Value newMax = arith::MaximumFOp::create(b, running[0], blockMax);
              Value live = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                                 newMax, negInf);
              Value alpha = arith::SelectOp::create(
                  b, live,
                  math::ExpOp::create(
                      b, arith::SubFOp::create(b, running[0], newMax)),
                  rb.f32(1));
              Value sum = rb.loop(zero, cols, {rb.f32(0)}, [&](Value c,
                                                               ValueRange acc) {
                Value s = memref::LoadOp::create(b, tile, c);
                Value p = arith::SelectOp::create(
                    b, live,
                    math::ExpOp::create(b, arith::SubFOp::create(b, s, newMax)),
                    rb.f32(0));
                memref::StoreOp::create(b, p, tile, c);
                return SmallVector<Value>{rb.add(acc[0], p)};
              })[0];
              rb.loop(zero, shape.dimV, [&](Value e) {
                Value pv = rb.loop(zero, cols, {rb.f32(0)}, [&](Value c,
                                                                ValueRange s) {
                  Value p = memref::LoadOp::create(b, tile, c);
                  Value value = rb.loadF32(
                      shape.v,
                      layoutIndices(shape.layout, batch, headK,
                                    rb.add(startK, rb.add(begin, c)), e));
                  return SmallVector<Value>{rb.add(s[0], rb.mul(p, value))};
                })[0];
                Value old = memref::LoadOp::create(b, acc, e);
                memref::StoreOp::create(b, rb.add(rb.mul(old, alpha), pv),
                                        acc, e);
              });
              return SmallVector<Value>{
                  newMax, rb.add(rb.mul(running[1], alpha), sum)};
            });
        Value rowMax = stats[0], rowSum = stats[1];
        Value hasWeight = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                                rowSum, rb.f32(0));
        rb.loop(zero, shape.dimV, [&](Value e) {
          Value value = arith::SelectOp::create(
              b, hasWeight,
              arith::DivFOp::create(b, memref::LoadOp::create(b, acc, e),
                                    rowSum),
              rb.f32(0));
          rb.storeF32(value, o,
                      layoutIndices(shape.layout, batch, head, rowQ, e));
        });
        if (lse) {
          memref::StoreOp::create(
              b, rb.logSumExp(hasWeight, rowMax, rowSum), lse,
              lseIndices(shape.cuQ, batch, head, rowQ, i));
        }
      });
    });
  });
  for (Value buffer :
       {means, blockScores, candidate, kept, tile, querySums, acc})
    memref::DeallocOp::create(b, buffer);
}

struct TileSoftmaxPass
    : public attnc::impl::TileSoftmaxBase<TileSoftmaxPass> {
  using TileSoftmaxBase::TileSoftmaxBase;

  void runOnOperation() override {
    if (blockQ <= 0 || blockK <= 0) {
      getOperation().emitError("attn-tile-softmax needs positive block sizes");
      return signalPassFailure();
    }
    for (KernelOp kernel :
         llvm::make_early_inc_range(getOperation().getOps<KernelOp>())) {
      Operation *family = kernel.getFamilyOp();
      auto sparse = dyn_cast<SparseSoftmaxOp>(family);
      if (!isa<SoftmaxOp, ChunkSoftmaxOp>(family) && !sparse)
        continue;
      // Rows per grid item; top-k selection walks whole kv heads.
      std::optional<int64_t> rowBlock;
      if (!sparse)
        rowBlock = blockQ;
      else if (!sparse.getTopk())
        rowBlock = sparse.getBlockQ();
      func::FuncOp func = lowerKernelToFunc(kernel, [&](Operation *familyOp,
                                                        LoweringBuilder &rb,
                                                        ValueRange results) {
        if (auto softmax = dyn_cast<SoftmaxOp>(familyOp))
          tileSoftmaxFamily(softmax, rb, results, blockQ, blockK, std::nullopt);
        else if (auto chunked = dyn_cast<ChunkSoftmaxOp>(familyOp))
          tileSoftmaxFamily(chunked, rb, results, blockQ, blockK,
                            chunked.getChunk());
        else if (sparse.getTopk())
          tileTopkSelection(sparse, rb, results);
        else // Tiles are the sparsity blocks, so a tile is present or absent.
          tileSoftmaxFamily(sparse, rb, results, sparse.getBlockQ(),
                            sparse.getBlockK(), std::nullopt);
      });
      if (rowBlock)
        func->setAttr(kCpuRowBlockAttrName,
                      OpBuilder(func).getI64IntegerAttr(*rowBlock));
    }
  }
};

} // namespace
