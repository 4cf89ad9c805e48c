//===- TileSoftmax.cpp - FlashAttention-2 tiling of softmax kernels -------===//
//
// Query blocks x visited key blocks with the online softmax; the N x M score
// matrix never exists, only one block_q x block_k tile of it.
//
//===----------------------------------------------------------------------===//

#include "KernelLowering.h"
#include "TileBuilding.h"
#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"
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

/// The tile program of a softmax-family kernel (docs/tile.md): one program
/// instance per (query block of `blockQ` rows, head, batch entry) loads its
/// Q tile and visits the key blocks of `blockK` keys that can hold an
/// allowed key with the online softmax of FlashAttention-2,
///   m' = max(m, rowmax(S)), P = exp(S - m'), l' = l exp(m - m') + rowsum(P),
///   acc' = acc exp(m - m') + P V,
/// then stores o = acc / l and lse = m + log l. Only tiles exist; nothing of
/// size N x M. Tiles of query rows have the block's row count (dynamic, at
/// most `blockQ`), so a short last block costs what it holds; key tiles are
/// whole `blockK` tiles: keys past the sequence end are zero-filled by the
/// loads and masked, and expressions see them clamped to the last key, so
/// they never read user tensors out of bounds.
template <typename OpTy>
void buildSoftmaxProgram(OpTy op, LoweringBuilder &rb, ValueRange results,
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
  Value chunkSize = chunk ? rb.index(*chunk) : Value();
  Value negInf = rb.f32(-std::numeric_limits<double>::infinity());

  // Tile types: head dims are static when the spec fixes them.
  Type f32 = b.getF32Type();
  int64_t dimK = tileHeadDim(op->getOperand(0)),
          dimV = tileHeadDim(op->getOperand(2));
  // Tiles of query rows have the block's row count.
  int64_t rowsOfBlock = ShapedType::kDynamic;
  auto queryType =
      RankedTensorType::get({rowsOfBlock, dimK}, elementTypeOf(shape.q));
  auto keyType = RankedTensorType::get({blockK, dimK}, elementTypeOf(shape.k));
  auto valueType = RankedTensorType::get({blockK, dimV}, elementTypeOf(shape.v));
  auto scoreType = RankedTensorType::get({rowsOfBlock, blockK}, f32);
  auto accType = RankedTensorType::get({rowsOfBlock, dimV}, f32);
  auto rowType = RankedTensorType::get({rowsOfBlock}, f32);
  // A tile of query rows, given the block's row count.
  auto splat = [&](Value value, RankedTensorType type, Value rows) -> Value {
    SmallVector<Value> sizes = {rows};
    if (type.getRank() == 2 && type.isDynamicDim(1))
      sizes.push_back(shape.dimV);
    return tensor::SplatOp::create(b, value, type, sizes);
  };
  auto rowPosition = [&](Value batch, Value head, Value row) {
    return rowLayoutIndices(shape.layout, batch, head, row);
  };
  int64_t rowDim = shape.dims.seq;

  auto grid = tile::GridOp::create(b, shape.headsQ, shape.numBatches, blockQ);
  OpBuilder::InsertionGuard gridGuard(b);
  b.setInsertionPoint(grid.getBody().front().getTerminator());
  Value queryBlock = grid.getQueryBlock(), head = grid.getHead(),
        batch = grid.getBatch();

  Value startQ, n, startK, m;
  std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
  std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
  Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
  // Loads that do not depend on (s, i, j), like slope[h], once per program.
  rb.hoistedLoads.clear();
  rb.hoistSoftmaxInvariantLoads(op.getScore(), op.getMask(), batch, head, n,
                                m, startQ, startK);
  Value bq = rb.index(blockQ), bk = rb.index(blockK);
  Value numQueryBlocks = arith::CeilDivUIOp::create(b, n, bq);
  rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, queryBlock,
                                  numQueryBlocks),
            [&] {
    Value i0 = rb.mul(queryBlock, bq);
    Value rows = arith::MinUIOp::create(b, bq, rb.sub(n, i0));
    Value iLast = rb.add(i0, rb.sub(rows, one));
    Value lastKey = rb.sub(m, one);
    Value q = tile::LoadOp::create(
        b, queryType, shape.q, rowPosition(batch, head, rb.add(startQ, i0)),
        rows, rowDim);

    Value jBegin, jEnd;
    std::tie(jBegin, jEnd) =
        visibleKeyRange(rb, band, chunkSize, i0, iLast, n, m);
    Value keyBlockBegin = arith::DivUIOp::create(b, jBegin, bk);
    Value keyBlockEnd = arith::CeilDivUIOp::create(b, jEnd, bk);

    // Loop state: m, l and acc (softmax), or acc alone.
    SmallVector<Value> init;
    if (online)
      init = {splat(negInf, rowType, rows), splat(rb.f32(0), rowType, rows)};
    init.push_back(splat(rb.f32(0), accType, rows));
    SmallVector<Type> stateTypes = llvm::to_vector(
        llvm::map_range(init, [](Value v) { return v.getType(); }));

    auto visitKeyBlock = [&](Value keyBlock,
                             ValueRange state) -> SmallVector<Value> {
      Value j0 = rb.mul(keyBlock, bk);
      Value cols = arith::MinUIOp::create(b, bk, rb.sub(m, j0));
      SmallVector<Value> keyRow =
          rowPosition(batch, headK, rb.add(startK, j0));
      Value k = tile::LoadOp::create(b, keyType, shape.k, keyRow, cols, rowDim);
      Value v =
          tile::LoadOp::create(b, valueType, shape.v, keyRow, cols, rowDim);
      Value s = tile::DotOp::create(b, scoreType, q, k,
                                    splat(rb.f32(0), scoreType, rows),
                                    /*transpose_lhs=*/false,
                                    /*transpose_rhs=*/true);

      // Scores (masked or not) become weights, then the online update.
      auto update = [&](bool applyMask) -> SmallVector<Value> {
        Value w = buildMap(b, scoreType, {s}, [&](ValueRange at,
                                                  ValueRange dot) -> Value {
          Value i = rb.add(i0, at[0]);
          Value j = rb.add(j0, at[1]);
          auto weight = [&](Value key) -> Value {
            Value scaled = rb.mul(scale, dot[0]);
            Value score = rb.inlineExpression(
                op.getScore(),
                {scaled, batch, head, i, key, n, m, startQ, startK}, scaled);
            if (normalizer == Normalizer::sigmoid)
              score = arith::DivFOp::create(
                  b, rb.f32(1),
                  rb.add(rb.f32(1), math::ExpOp::create(
                                        b, arith::NegFOp::create(b, score))));
            return score;
          };
          if (!applyMask)
            return weight(j);
          // Keys past the end are masked; expressions see the last key.
          Value key = arith::MinUIOp::create(b, j, lastKey);
          Value allowed = arith::AndIOp::create(
              b,
              arith::CmpIOp::create(b, arith::CmpIPredicate::ult, j, m),
              rb.inlineExpression(
                  op.getMask(), {batch, head, i, key, n, m, startQ, startK},
                  arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
          if (chunk)
            allowed = arith::AndIOp::create(
                b, allowed,
                arith::CmpIOp::create(
                    b, arith::CmpIPredicate::eq,
                    arith::DivUIOp::create(b, i, chunkSize),
                    arith::DivUIOp::create(b, key, chunkSize)));
          // Softmax: -inf for a masked key; sigmoid and none: weight 0.
          return rb.ifThen(
              allowed, {f32}, [&]() -> SmallVector<Value> { return {weight(key)}; },
              [&]() -> SmallVector<Value> {
                return {online ? negInf : rb.f32(0)};
              })[0];
        });
        if (!online) // acc' = acc + W V
          return {tile::DotOp::create(b, accType, w, v, state[0])};

        Value oldMax = state[0], oldSum = state[1], acc = state[2];
        Value tileMax = tile::ReduceOp::create(b, rowType,
                                               tile::ReduceKind::max, w);
        Value newMax = buildMap(b, rowType, {oldMax, tileMax},
                                [&](ValueRange, ValueRange x) -> Value {
                                  return arith::MaximumFOp::create(b, x[0], x[1]);
                                });
        // A row with no allowed key so far keeps m = -inf; its exponents are
        // taken relative to 0, so they are exp(-inf) = 0 and nothing is NaN.
        Value offset = buildMap(
            b, rowType, {newMax}, [&](ValueRange, ValueRange x) -> Value {
              Value live = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                                 x[0], negInf);
              return arith::SelectOp::create(b, live, x[0], rb.f32(0));
            });
        auto expMinus = [&](ValueRange, ValueRange x) -> Value {
          return math::ExpOp::create(b, arith::SubFOp::create(b, x[0], x[1]));
        };
        Value alpha = buildMap(b, rowType, {oldMax, offset}, expMinus);
        Value p = buildMap(b, scoreType, {w, offset}, expMinus);
        Value tileSum = tile::ReduceOp::create(b, rowType,
                                               tile::ReduceKind::add, p);
        Value newSum = buildMap(
            b, rowType, {oldSum, alpha, tileSum},
            [&](ValueRange, ValueRange x) -> Value {
              return rb.add(rb.mul(x[0], x[1]), x[2]);
            });
        Value scaled = buildMap(b, accType, {acc, alpha},
                                [&](ValueRange, ValueRange x) -> Value {
                                  return rb.mul(x[0], x[1]);
                                });
        return {newMax, newSum,
                tile::DotOp::create(b, accType, p, v, scaled)};
      };

      if (!band.exact)
        return update(/*applyMask=*/true);
      // A block wholly inside the band (and the chunk) whose keys all exist
      // needs no mask.
      Value jLast = rb.add(j0, rb.index(blockK - 1));
      Value full = arith::AndIOp::create(
          b, blockInsideBand(rb, band, chunkSize, i0, iLast, j0, jLast, n, m),
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, jLast, m));
      return llvm::to_vector(rb.ifThen(
          full, stateTypes, [&] { return update(/*applyMask=*/false); },
          [&] { return update(/*applyMask=*/true); }));
    };

    // The visited key blocks: the band's; for block-sparse kernels the
    // band's blocks that the block mask marks present, or the listed ones.
    auto visitIf = [&](Value condition, Value keyBlock, ValueRange state) {
      return llvm::to_vector(rb.ifThen(
          condition, stateTypes, [&] { return visitKeyBlock(keyBlock, state); },
          [&] { return SmallVector<Value>(state.begin(), state.end()); }));
    };
    auto sparse = dyn_cast<SparseSoftmaxOp>(op.getOperation());
    ValueRange final;
    if (!sparse) {
      final = rb.loop(keyBlockBegin, keyBlockEnd, init, visitKeyBlock);
    } else if (Value blockMask = sparse.getBlockMask()) {
      final = rb.loop(keyBlockBegin, keyBlockEnd, init,
                      [&](Value keyBlock, ValueRange state) {
        Value raw = rb.checkedLoad(params.lookup(blockMask),
                                   {batch, head, queryBlock, keyBlock});
        Value present = arith::CmpIOp::create(
            b, arith::CmpIPredicate::ne, raw,
            arith::ConstantIntOp::create(b, raw.getType(), 0));
        return visitIf(present, keyBlock, state);
      });
    } else {
      // The first min(count, width) entries, each once, if it names a block
      // of the band.
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
      final = rb.loop(zero, count, init, [&](Value entry, ValueRange state) {
        Value keyBlock = entryAt(entry);
        Value inBand = arith::AndIOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::sge, keyBlock,
                                  keyBlockBegin),
            arith::CmpIOp::create(b, arith::CmpIPredicate::slt, keyBlock,
                                  keyBlockEnd));
        Value repeated = rb.loop(
            zero, entry, {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
            [&](Value earlier, ValueRange seen) {
              Value same = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                                 entryAt(earlier), keyBlock);
              return SmallVector<Value>{arith::OrIOp::create(b, seen[0], same)};
            })[0];
        Value fresh = arith::XOrIOp::create(
            b, repeated, arith::ConstantIntOp::create(b, b.getI1Type(), 1));
        return visitIf(arith::AndIOp::create(b, inBand, fresh), keyBlock,
                       state);
      });
    }

    // o = acc / l (softmax; 0 for a row without weight), lse = m + log l.
    Value acc = final.back();
    Value output = acc;
    if (online)
      output = buildMap(b, accType, {acc, final[1]},
                        [&](ValueRange, ValueRange x) -> Value {
                          Value hasWeight = arith::CmpFOp::create(
                              b, arith::CmpFPredicate::OGT, x[1], rb.f32(0));
                          return arith::SelectOp::create(
                              b, hasWeight, arith::DivFOp::create(b, x[0], x[1]),
                              rb.f32(0));
                        });
    tile::StoreOp::create(b, output, o,
                          rowPosition(batch, head, rb.add(startQ, i0)), rows,
                          rowDim);
    if (lse) {
      Value logSumExp =
          online ? buildMap(b, rowType, {final[0], final[1]},
                            [&](ValueRange, ValueRange x) -> Value {
                              Value hasWeight = arith::CmpFOp::create(
                                  b, arith::CmpFPredicate::OGT, x[1], rb.f32(0));
                              return rb.logSumExp(hasWeight, x[0], x[1]);
                            })
                 : splat(negInf, rowType, rows);
      SmallVector<Value> at =
          lseIndices(shape.cuQ, batch, head, rb.add(startQ, i0), i0);
      int64_t lseRowDim = at.size() - 1;
      tile::StoreOp::create(b, logSumExp, lse, at, rows, lseRowDim);
    }
  });
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
      if (sparse && sparse.getTopk()) {
        // Top-k selection walks whole kv heads, as loops for the CPU.
        lowerKernelToFunc(kernel, [&](Operation *, LoweringBuilder &rb,
                                      ValueRange results) {
          tileTopkSelection(sparse, rb, results);
        });
        continue;
      }
      lowerKernelToProgram(kernel, [&](Operation *familyOp,
                                       LoweringBuilder &rb,
                                       ValueRange results) {
        if (auto softmax = dyn_cast<SoftmaxOp>(familyOp))
          buildSoftmaxProgram(softmax, rb, results, blockQ, blockK,
                              std::nullopt);
        else if (auto chunked = dyn_cast<ChunkSoftmaxOp>(familyOp))
          buildSoftmaxProgram(chunked, rb, results, blockQ, blockK,
                              chunked.getChunk());
        else // Tiles are the sparsity blocks, so a tile is present or absent.
          buildSoftmaxProgram(sparse, rb, results, sparse.getBlockQ(),
                              sparse.getBlockK(), std::nullopt);
      });
    }
  }
};

} // namespace
