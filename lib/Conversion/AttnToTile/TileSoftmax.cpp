//===- TileSoftmax.cpp - FlashAttention-2 tiling of softmax kernels -------===//
//
// Query blocks x visited key blocks with the online softmax; the N x M score
// matrix never exists, only one block_q x block_k tile of it.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "TileBuilding.h"
#include "TileSoftmaxBackward.h"
#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"
#include "attnc/Conversion/Passes.h"

#include "llvm/Support/MathExtras.h"

#include <limits>

namespace attnc {
#define GEN_PASS_DEF_TILESOFTMAX
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
namespace vector = mlir::vector;

namespace {

/// Block numbers of top-k selection are f32 in tiles: exact up to 2^24.
constexpr int64_t kTopkBlockLimit = int64_t(1) << 24;

/// Top-k block selection (docs/semantics.md) for the query rows
/// [i0, i0 + rows) of a query head of kv head `headK`: returns the rows x
/// topk tile of each row's kept key blocks, best first (block numbers, -1
/// for an empty entry).
/// Every key block of [blockBegin, blockEnd) is scored against each row,
///   scale * sum_d (sum over the GQA group of q[i][d]) * (mean key of J)[d],
/// with the reference's operations in its order, so the same blocks tie,
/// and goes into the row's list with attn_tile.top_k_insert when the row has
/// an allowed key in it (from the band when the mask is exactly one, else
/// by evaluating the mask on the block's keys).
Value buildTopkSelection(SparseSoftmaxOp op, LoweringBuilder &rb,
                         const AttentionOperands &shape,
                         const MaskStructure &band, RankedTensorType queryType,
                         RankedTensorType keyType, Value scale, Value batch,
                         Value headK, Value i0, Value rows, Value n, Value m,
                         Value startQ, Value startK, Value blockBegin,
                         Value blockEnd) {
  ImplicitLocOpBuilder &b = rb.b;
  Type f32 = b.getF32Type();
  int64_t blockK = op.getBlockK(), dimK = queryType.getDimSize(1);
  int64_t rowDim = shape.dims.seq, dynamic = ShapedType::kDynamic;
  auto sumType = RankedTensorType::get({dynamic, dimK}, f32);
  auto meanType = RankedTensorType::get({1, dimK}, f32);
  auto listType = RankedTensorType::get(
      {dynamic, static_cast<int64_t>(*op.getTopk())}, f32);
  auto columnType = RankedTensorType::get({dynamic}, f32);
  Value zero = rb.index(0), one = rb.index(1), bk = rb.index(blockK);
  auto splat = [&](double value, RankedTensorType type, Value rowCount) {
    return splatTile(b, rb.f32(value), type, rowCount, shape.dimK);
  };
  auto add = [&](ValueRange, ValueRange x) -> Value {
    Value y = x[1];
    if (!y.getType().isF32())
      y = arith::ExtFOp::create(b, f32, y);
    return rb.add(x[0], y);
  };

  Value firstHead = rb.mul(headK, shape.groupSize);
  Value querySum = rb.loop(
      zero, shape.groupSize, {splat(0, sumType, rows)},
      [&](Value g, ValueRange sum) {
        Value q = tile::LoadOp::create(b, queryType, shape.q,
                                       rowLayoutIndices(shape.layout, batch,
                                                        rb.add(firstHead, g),
                                                        rb.add(startQ, i0)),
                                       rows, rowDim);
        return SmallVector<Value>{buildMap(b, sumType, {sum[0], q}, add)};
      })[0];
  // The mean key is the block's key sum (a dot with a column of ones) over
  // its key count.
  Value ones = splat(1, RankedTensorType::get({blockK, 1}, f32), Value());
  Value meanZero = splat(0, meanType, Value());
  // Eligibility from the mask is a map over the rows x BK positions.
  Value blockPositions =
      band.exact
          ? Value()
          : splat(0, RankedTensorType::get({dynamic, blockK}, f32), rows);
  BandBounds bounds = evaluateBand(rb, band, n, m);

  ValueRange lists = rb.loop(
      blockBegin, blockEnd,
      {splat(-std::numeric_limits<double>::infinity(), listType, rows),
       splat(-1, listType, rows)},
      [&](Value block, ValueRange lists) {
        Value j0 = rb.mul(block, bk);
        Value count = arith::MinUIOp::create(b, bk, rb.sub(m, j0));
        Value jLast = rb.add(j0, rb.sub(count, one));
        Value keys = tile::LoadOp::create(
            b, keyType, shape.k,
            rowLayoutIndices(shape.layout, batch, headK, rb.add(startK, j0)),
            count, rowDim);
        Value keySum = tile::DotOp::create(b, meanType, ones, keys, meanZero,
                                           /*transpose_lhs=*/true,
                                           /*transpose_rhs=*/false);
        Value keyCount = rb.indexToF32(count);
        Value mean = buildMap(b, meanType, {keySum},
                              [&](ValueRange, ValueRange x) -> Value {
                                return arith::DivFOp::create(b, x[0], keyCount);
                              });
        Value products = buildMap(b, sumType, {querySum, mean},
                                  [&](ValueRange, ValueRange x) -> Value {
                                    return rb.mul(x[0], x[1]);
                                  });
        Value dots = tile::ReduceOp::create(b, columnType,
                                            tile::ReduceKind::add, products);
        Value scores = buildMap(b, columnType, {dots},
                                [&](ValueRange, ValueRange x) -> Value {
                                  return rb.mul(scale, x[0]);
                                });
        // A row's candidate is the block if the row may see one of its keys.
        Value blockNumber = rb.indexToF32(block);
        auto candidate = [&](Value eligible) -> Value {
          return arith::SelectOp::create(b, eligible, blockNumber, rb.f32(-1));
        };
        Value candidates;
        if (band.exact) { // the block meets the row's band [i + L, i + U]
          candidates = buildMap(
              b, columnType, {dots}, [&](ValueRange at, ValueRange) -> Value {
                return candidate(
                    rowMeetsBlock(rb, bounds, rb.add(i0, at[0]), j0, jLast));
              });
        } else { // the mask does not read h (verified)
          Value allowed = buildMap(
              b, cast<RankedTensorType>(blockPositions.getType()),
              {blockPositions}, [&](ValueRange at, ValueRange) -> Value {
                Value i = rb.add(i0, at[0]);
                Value j = rb.add(j0, at[1]);
                Value key = arith::MinUIOp::create(b, j, rb.sub(m, one));
                Value inside = arith::AndIOp::create(
                    b,
                    arith::CmpIOp::create(b, arith::CmpIPredicate::ult, j, m),
                    rb.inlineExpression(
                        op.getMask(),
                        {batch, firstHead, i, key, n, m, startQ, startK},
                        arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
                return arith::SelectOp::create(b, inside, rb.f32(1), rb.f32(0));
              });
          Value anyAllowed = tile::ReduceOp::create(
              b, columnType, tile::ReduceKind::max, allowed);
          candidates =
              buildMap(b, columnType, {anyAllowed},
                       [&](ValueRange, ValueRange x) -> Value {
                         return candidate(arith::CmpFOp::create(
                             b, arith::CmpFPredicate::OGT, x[0], rb.f32(0)));
                       });
        }
        auto inserted = tile::TopKInsertOp::create(
            b, listType, listType, lists[0], lists[1], scores, candidates);
        return SmallVector<Value>{inserted.getBestScores(),
                                  inserted.getBestBlocks()};
      });
  return lists[1];
}

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
  Value lse = op.getLse() ? results[1] : Value();
  Value one = rb.index(1);
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
  auto splat = [&](Value value, RankedTensorType type, Value rows) {
    return splatTile(b, value, type, rows, shape.dimV);
  };
  auto rowPosition = [&](Value batch, Value head, Value row) {
    return rowLayoutIndices(shape.layout, batch, head, row);
  };
  int64_t rowDim = shape.dims.seq;

  tile::GridOp grid = createProgramGrid(b, shape, shape.headsQ, blockQ,
                                        /*perSequence=*/false);
  OpBuilder::InsertionGuard gridGuard(b);
  b.setInsertionPoint(grid.getBody().front().getTerminator());
  Value queryBlock = grid.getQueryBlock(), head = grid.getHead(),
        batch = grid.getBatch();

  Value startQ, n, startK, m;
  std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
  std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
  checkSequence(rb, shape.cuQ, batch, startQ, n, shape.lengthQ);
  checkSequence(rb, shape.cuK, batch, startK, m, shape.lengthK);
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

    // `rowKeeps` (top-k): per row, whether the row kept this block (> 0).
    auto visitKeyBlock = [&](Value keyBlock, ValueRange state,
                             Value rowKeeps = Value()) -> SmallVector<Value> {
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
        SmallVector<Value> inputs = {s};
        if (rowKeeps)
          inputs.push_back(rowKeeps);
        Value w = buildMap(
            b, scoreType, inputs, [&](ValueRange at, ValueRange dot) -> Value {
              Value i = rb.add(i0, at[0]);
              Value j = rb.add(j0, at[1]);
              auto weight = [&](Value key) -> Value {
                Value scaled = rb.mul(scale, dot[0]);
                Value score = rb.inlineExpression(
                    op.getScore(),
                    {scaled, batch, head, i, key, n, m, startQ, startK},
                    scaled);
                return normalizer == Normalizer::sigmoid ? sigmoidOf(rb, score)
                                                         : score;
              };
              if (!applyMask)
                return weight(j);
              // Keys past the end are masked; expressions see the last key.
              Value allowed, key;
              std::tie(allowed, key) = allowedKey(
                  rb, op.getMask(),
                  {batch, head, n, m, startQ, startK, lastKey, chunkSize}, i,
                  j);
              if (rowKeeps) // top-k, which has no chunks
                allowed = arith::AndIOp::create(
                    b, allowed,
                    arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, dot[1],
                                          rb.f32(0)));
              // Softmax: -inf for a masked key; sigmoid and none: weight 0.
              return rb.ifThen(
                  allowed, {f32},
                  [&]() -> SmallVector<Value> { return {weight(key)}; },
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
        // A NaN or +inf maximum is live: the row becomes NaN (as PyTorch).
        Value offset = buildMap(
            b, rowType, {newMax}, [&](ValueRange, ValueRange x) -> Value {
              Value live = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
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

      if (!band.exact || rowKeeps)
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
    auto visitIf = [&](Value condition, Value keyBlock, ValueRange state,
                       Value rowKeeps = Value()) {
      return llvm::to_vector(rb.ifThen(
          condition, stateTypes,
          [&] { return visitKeyBlock(keyBlock, state, rowKeeps); },
          [&] { return SmallVector<Value>(state.begin(), state.end()); }));
    };
    auto sparse = dyn_cast<SparseSoftmaxOp>(op.getOperation());
    ValueRange final;
    SmallVector<Value> listedFinal; // the storage `final` views for lists
    if (!sparse) {
      final = rb.loop(keyBlockBegin, keyBlockEnd, init, visitKeyBlock);
    } else if (std::optional<uint64_t> topk = sparse.getTopk()) {
      // Rows keep blocks of their own: visit the blocks that some row kept,
      // each masked per row. Longer sequences than the block numbers can
      // name are reported (4, k, m, block, limit).
      Value fits = arith::CmpIOp::create(b, arith::CmpIPredicate::ule,
                                         arith::CeilDivUIOp::create(b, m, bk),
                                         rb.index(kTopkBlockLimit));
      rb.ifThen(arith::XOrIOp::create(
                    b, fits, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
                [&] {
                  rb.recordError(
                      4, {rb.index(cast<BlockArgument>(shape.k).getArgNumber()),
                          m, bk, rb.index(kTopkBlockLimit)});
                });
      keyBlockEnd =
          arith::SelectOp::create(b, fits, keyBlockEnd, keyBlockBegin);
      Value kept = buildTopkSelection(
          cast<SparseSoftmaxOp>(op.getOperation()), rb, shape, band, queryType,
          keyType, scale, batch, headK, i0, rows, n, m, startQ, startK,
          keyBlockBegin, keyBlockEnd);
      if (sparse.getTopkBlocks()) { // the training forward saves it
        SmallVector<Value> at =
            lseIndices(shape.cuQ, batch, head, rb.add(startQ, i0), i0);
        tile::StoreOp::create(b, kept, results.back(), at, rows,
                              at.size() - 1);
      }
      auto listType = cast<RankedTensorType>(kept.getType());
      final = rb.loop(
          keyBlockBegin, keyBlockEnd, init,
          [&](Value keyBlock, ValueRange state) {
            Value blockNumber = rb.indexToF32(keyBlock);
            Value keeps = buildMap(
                b, listType, {kept}, [&](ValueRange, ValueRange x) -> Value {
                  return arith::SelectOp::create(
                      b,
                      arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, x[0],
                                            blockNumber),
                      rb.f32(1), rb.f32(0));
                });
            Value rowKeeps = tile::ReduceOp::create(
                b, rowType, tile::ReduceKind::max, keeps);
            Value anyRow =
                tile::ReduceOp::create(b, f32, tile::ReduceKind::max, rowKeeps);
            return visitIf(arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                                 anyRow, rb.f32(0)),
                           keyBlock, state, rowKeeps);
          });
    } else if (Value blockMask = sparse.getBlockMask()) {
      final = rb.loop(keyBlockBegin, keyBlockEnd, init,
                      [&](Value keyBlock, ValueRange state) {
        return visitIf(rb.blockPresent(params.lookup(blockMask), batch, head,
                                       queryBlock, keyBlock),
                       keyBlock, state);
      });
    } else {
      // The listed blocks of the band, each once (bad lists reported).
      final = listedFinal = visitListedKeyBlocks(
          rb, params.lookup(sparse.getKvNumBlocks()),
          params.lookup(sparse.getKvIndices()), batch, head, queryBlock,
          arith::CeilDivUIOp::create(b, m, bk), keyBlockBegin, keyBlockEnd,
          init, visitKeyBlock);
    }

    // o = acc / l (softmax; 0 for a row without weight), lse = m + log l.
    Value acc = final.back();
    Value output = acc;
    if (online)
      output = buildMap(b, accType, {acc, final[1]},
                        [&](ValueRange, ValueRange x) -> Value {
                          Value hasWeight = arith::CmpFOp::create(
                              b, arith::CmpFPredicate::UNE, x[1], rb.f32(0));
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
                                  b, arith::CmpFPredicate::UNE, x[1], rb.f32(0));
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

struct TileSoftmaxPass
    : public CheckedOptionsPass<TileSoftmaxPass, attnc::impl::TileSoftmaxBase> {
  using CheckedOptionsPass::CheckedOptionsPass;

  std::string optionProblem() const {
    return blockQ <= 0 || blockK <= 0 || backwardBlock < 0 ||
                   backwardKeySumColumns < 0
               ? "attn-tile-softmax needs positive block sizes"
               : "";
  }

  void runOnOperation() override {
    if (failedOnBadOptions())
      return;
    for (KernelOp kernel :
         llvm::make_early_inc_range(getOperation().getOps<KernelOp>())) {
      Operation *family = kernel.getFamilyOp();
      if (auto backward = dyn_cast<SoftmaxBackwardOp>(family)) {
        // Top-k tiles of `backward-block` keys each lie in one key block.
        if (backwardBlock && backward.getTopk() &&
            *backward.getBlockK() % backwardBlock) {
          backward.emitOpError("of a top-k kernel needs key blocks that are "
                               "a multiple of the backward's tiles of ")
              << backwardBlock << " keys here, got block = "
              << *backward.getBlockK();
          return signalPassFailure();
        }
        lowerKernelToProgram(kernel, [&](Operation *, LoweringBuilder &rb,
                                         ValueRange results) {
          BackwardTiling tiling;
          tiling.blockQ = backwardBlock ? backwardBlock : blockQ;
          tiling.blockK = backwardBlock ? backwardBlock : blockK;
          tiling.topkKeyTile = backwardBlock;
          tiling.keySumColumns = backwardKeySumColumns;
          buildSoftmaxBackwardProgram(backward, rb, results, tiling);
        });
        continue;
      }
      auto sparse = dyn_cast<SparseSoftmaxOp>(family);
      if (!isa<SoftmaxOp, ChunkSoftmaxOp>(family) && !sparse)
        continue;
      lowerKernelToProgram(kernel, [&](Operation *familyOp,
                                       LoweringBuilder &rb,
                                       ValueRange results) {
        if (auto softmax = dyn_cast<SoftmaxOp>(familyOp))
          buildSoftmaxProgram(softmax, rb, results, blockQ, blockK,
                              std::nullopt);
        else if (auto chunked = dyn_cast<ChunkSoftmaxOp>(familyOp))
          buildSoftmaxProgram(chunked, rb, results, blockQ, blockK,
                              chunked.getChunk());
        else if (sparse.getTopk()) // Rows select blocks of their own.
          buildSoftmaxProgram(sparse, rb, results, blockQ, sparse.getBlockK(),
                              std::nullopt);
        else // Tiles are the sparsity blocks, so a tile is present or absent.
          buildSoftmaxProgram(sparse, rb, results, sparse.getBlockQ(),
                              sparse.getBlockK(), std::nullopt);
      });
    }
  }
};

} // namespace
