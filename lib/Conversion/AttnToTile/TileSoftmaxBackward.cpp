//===- TileSoftmaxBackward.cpp - FlashAttention-2's backward as tiles -----===//
//
// The tile program of attn.softmax_backward (docs/tile.md): the weights P
// are recomputed from q, k and the forward's lse one block_q x block_k tile
// at a time, then, with D = rowsum(dO o O) per query row,
//   dV_j += P^T dO_i,  dP = dO_i V_j^T,
//   dS = P (dP - D + dlse) | dP p (1 - p) | dP     (softmax | sigmoid | none),
//   dR = scale * dS * d score / d s                (the score expression's
//                                                   derivative, ExpressionGradient.h)
//   dK_j += dR^T Q_i,  dQ_i += dR K_j.
// dK and dV are summed per key block over the query blocks that see it, dQ
// per query block over its key blocks in a second sweep, instead of atomic
// adds: every sum has one order, so the gradients do not depend on the
// thread count. Instances are (query block x, kv head, batch entry), doing
// dQ of block x and dK, dV of key blocks x, x + X, ... (X = query blocks);
// a score that reads float inputs makes them whole sequences instead (one
// partial copy of those gradients per instance). Nothing of size N x M
// exists.
//
//===----------------------------------------------------------------------===//

#include "TileSoftmaxBackward.h"
#include "TileBuilding.h"
#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"
#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Conversion/Passes.h"

#include <limits>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

/// The tiles of one query block of one head that both sweeps use.
struct QueryTiles {
  Value head, i0, rows, iLast;
  Value q, dOut;
  /// Per row: lse (softmax), dlse (when the forward returns lse) and
  /// D = rowsum(dO o O) (softmax); null otherwise.
  Value lse, dLse, delta;
};

/// The tiles of one key block of one kv head. `k` feeds only Q K^T (a CPU
/// lowering stages it transposed); the query sweep loads `kRows` again for
/// dR K.
struct KeyTiles {
  Value j0, cols, k, v, kRows;
};

class BackwardProgram {
public:
  BackwardProgram(SoftmaxBackwardOp op, LoweringBuilder &rb,
                  const BackwardTiling &tiling)
      : op(op), rb(rb), b(rb.b), shape(getAttentionOperands(op, rb)),
        band(analyzeMask(op.getMask())), normalizer(op.getNormalizer()),
        // Block-sparse: the tiles are the sparsity blocks; top-k: key tiles
        // lie in one key block each.
        blockQ(op.getBlockQ() ? int64_t(*op.getBlockQ()) : tiling.blockQ),
        blockK(op.getTopk() && tiling.topkKeyTile ? tiling.topkKeyTile
               : op.getBlockK()                   ? int64_t(*op.getBlockK())
                                                  : tiling.blockK) {
    Type f32 = b.getF32Type();
    int64_t dimK = tileHeadDim(op.getQ()), dimV = tileHeadDim(op.getV());
    // An open head dim counts as over any limit.
    separateKeySums =
        tiling.keySumColumns > 0 &&
        (ShapedType::isDynamic(dimK) || ShapedType::isDynamic(dimV) ||
         dimK + dimV > tiling.keySumColumns);
    int64_t dynamic = ShapedType::kDynamic;
    queryType = RankedTensorType::get({dynamic, dimK}, elementTypeOf(shape.q));
    gradOutType = RankedTensorType::get(
        {dynamic, dimV}, elementTypeOf(rb.params.lookup(op.getDOut())));
    outType = RankedTensorType::get(
        {dynamic, dimV}, elementTypeOf(rb.params.lookup(op.getOut())));
    keyType = RankedTensorType::get({blockK, dimK}, elementTypeOf(shape.k));
    valueType = RankedTensorType::get({blockK, dimV}, elementTypeOf(shape.v));
    scoreType = RankedTensorType::get({dynamic, blockK}, f32);
    rowType = RankedTensorType::get({dynamic}, f32);
    queryAccType = RankedTensorType::get({dynamic, dimK}, f32);
    keyAccType = RankedTensorType::get({blockK, dimK}, f32);
    valueAccType = RankedTensorType::get({blockK, dimV}, f32);
    scale = rb.softmaxScale(op.getScale(), shape.dimK);
    if (std::optional<uint64_t> chunk = op.getChunk())
      chunkSize = rb.index(*chunk);
    if (!op.getScore().empty())
      for (LoadOp load : op.getScore().front().getOps<LoadOp>())
        if (load.getType().isF32())
          floatLoads.push_back(load);
    if (Value saved = op.getTopkBlocks())
      selection = rb.params.lookup(saved);
  }

  void build(ValueRange results);

private:
  /// A tile of `type` filled with `value`; `rows` sizes a dynamic row
  /// count, and the head dim of its columns is q's or v's by `type`.
  Value splat(double value, RankedTensorType type, Value rows) {
    Value cols = type == queryAccType || type == keyAccType ? shape.dimK
                                                            : shape.dimV;
    return splatTile(b, rb.f32(value), type, rows, cols);
  }
  SmallVector<Value> rowPosition(Value head, Value row) {
    return rowLayoutIndices(shape.layout, batch, head, row);
  }
  /// The tiles of a query block; `onlyWeights` (the dV pass, which needs
  /// just P) leaves out O, D and dlse.
  QueryTiles loadQueryTiles(Value head, Value queryBlock,
                            bool onlyWeights = false);
  KeyTiles loadKeyTiles(Value headK, Value keyBlock, bool withRows);
  /// The sweeps over the (query block, key block) tiles: for dV alone
  /// (only P), for dK (and dV), for dQ.
  enum class Sweep { Values, Keys, Queries };
  /// dR = dL/ds of one tile (0 where masked). With `useWeights`, the
  /// weights P go to it before dP exists (fewer tiles live at once); the
  /// value sweep stops there (returns null). The query sweep scatter-adds
  /// the gradients of the score's float inputs into their partial copies.
  /// `keeps` (top-k): per row, 1 when the row kept the key block, else 0.
  Value scoreGradients(Value head, const QueryTiles &rows,
                       const KeyTiles &keys, Sweep sweep, Value keeps,
                       llvm::function_ref<void(Value)> useWeights = nullptr);
  /// Top-k: per row of the query block's rows [i0, i0 + rows), whether its
  /// saved selection names the key block that key tile `keyBlock` lies in
  /// (1 or 0). The entries are read as
  /// one column (a 1-D tile) at a time.
  Value rowKeeps(Value head, Value i0, Value rows, Value keyBlock);
  /// Top-k: reports the first entry of the query block's selection that
  /// names no key block.
  void checkSelection(Value head, Value i0, Value rows);
  /// Whether a row of `keeps` is 1.
  Value anyRowKeeps(Value keeps);
  /// Block-sparse: whether query block `queryBlock` of `head` visits key
  /// block `keyBlock` (its block mask, or its list names it); true when
  /// the op is dense.
  Value blockVisited(Value head, Value queryBlock, Value keyBlock);
  /// dQ of one query block: the sum over the key blocks of [begin, end)
  /// that it visits, in order, of visit(keyBlock, keeps, dQ) (`keeps`:
  /// top-k's rowKeeps of `rows`, else null).
  Value sumOverKeyBlocks(const QueryTiles &rows, Value queryBlock, Value begin,
                         Value end, Value init,
                         llvm::function_ref<Value(Value, Value, Value)> visit);
  /// Whether key j of row i is allowed, and the key expressions see
  /// (clamped to the last key).
  std::pair<Value, Value> allowedKey(Value head, Value i, Value j);

  SoftmaxBackwardOp op;
  LoweringBuilder &rb;
  ImplicitLocOpBuilder &b;
  AttentionOperands shape;
  MaskStructure band;
  Normalizer normalizer;
  int64_t blockQ, blockK;
  /// dV and dK in a pass each (BackwardTiling::keySumColumns).
  bool separateKeySums = false;
  RankedTensorType queryType, gradOutType, outType, keyType, valueType,
      scoreType, rowType, queryAccType, keyAccType, valueAccType;
  Value scale, chunkSize;
  /// Top-k: the saved selection.
  Value selection;
  /// The attn.loads of float tensors in the score, in region order (as
  /// ExpressionGradient lists them), and the partial copy of each input's
  /// gradient.
  SmallVector<LoadOp> floatLoads;
  SmallVector<Value> inputGradients;
  // Bound per program instance.
  Value batch, startQ, n, startK, m;
};

QueryTiles BackwardProgram::loadQueryTiles(Value head, Value queryBlock,
                                           bool onlyWeights) {
  QueryTiles tiles;
  tiles.head = head;
  tiles.i0 = rb.mul(queryBlock, rb.index(blockQ));
  tiles.rows = arith::MinUIOp::create(b, rb.index(blockQ), rb.sub(n, tiles.i0));
  tiles.iLast = rb.add(tiles.i0, rb.sub(tiles.rows, rb.index(1)));
  SmallVector<Value> at = rowPosition(head, rb.add(startQ, tiles.i0));
  int64_t rowDim = shape.dims.seq;
  tiles.q = tile::LoadOp::create(b, queryType, shape.q, at, tiles.rows, rowDim);
  IRMapping &params = rb.params;
  tiles.dOut = tile::LoadOp::create(b, gradOutType,
                                    params.lookup(op.getDOut()), at,
                                    tiles.rows, rowDim);
  if (normalizer != Normalizer::softmax)
    return tiles;
  SmallVector<Value> lseAt =
      lseIndices(shape.cuQ, batch, head, rb.add(startQ, tiles.i0), tiles.i0);
  int64_t lseRowDim = lseAt.size() - 1;
  tiles.lse = tile::LoadOp::create(b, rowType, params.lookup(op.getLse()),
                                   lseAt, tiles.rows, lseRowDim);
  if (onlyWeights)
    return tiles;
  if (op.getDLse())
    tiles.dLse = tile::LoadOp::create(b, rowType, params.lookup(op.getDLse()),
                                      lseAt, tiles.rows, lseRowDim);
  Value out = tile::LoadOp::create(b, outType, params.lookup(op.getOut()), at,
                                   tiles.rows, rowDim);
  Value products = buildMap(
      b, RankedTensorType::get(outType.getShape(), b.getF32Type()),
      {tiles.dOut, out}, [&](ValueRange, ValueRange x) -> Value {
        auto widen = [&](Value v) -> Value {
          return v.getType().isF32() ? v
                                     : arith::ExtFOp::create(b, b.getF32Type(), v);
        };
        return rb.mul(widen(x[0]), widen(x[1]));
      });
  tiles.delta =
      tile::ReduceOp::create(b, rowType, tile::ReduceKind::add, products);
  return tiles;
}

KeyTiles BackwardProgram::loadKeyTiles(Value headK, Value keyBlock,
                                       bool withRows) {
  KeyTiles tiles;
  Value bk = rb.index(blockK);
  tiles.j0 = rb.mul(keyBlock, bk);
  tiles.cols = arith::MinUIOp::create(b, bk, rb.sub(m, tiles.j0));
  SmallVector<Value> at = rowPosition(headK, rb.add(startK, tiles.j0));
  tiles.k = tile::LoadOp::create(b, keyType, shape.k, at, tiles.cols,
                                 shape.dims.seq);
  tiles.v = tile::LoadOp::create(b, valueType, shape.v, at, tiles.cols,
                                 shape.dims.seq);
  if (withRows)
    tiles.kRows = tile::LoadOp::create(b, keyType, shape.k, at, tiles.cols,
                                       shape.dims.seq);
  return tiles;
}

std::pair<Value, Value> BackwardProgram::allowedKey(Value head, Value i,
                                                    Value j) {
  // Keys past the end are masked; expressions see the last key.
  return lowering::allowedKey(
      rb, op.getMask(),
      {batch, head, n, m, startQ, startK, rb.sub(m, rb.index(1)), chunkSize},
      i, j);
}

Value BackwardProgram::rowKeeps(Value head, Value i0, Value rows,
                                Value keyBlock) {
  // The selection's block of the tile's keys.
  Value number = rb.indexToF32(arith::DivUIOp::create(
      b, rb.mul(keyBlock, rb.index(blockK)), rb.index(*op.getBlockK())));
  SmallVector<Value> row =
      lseIndices(shape.cuQ, batch, head, rb.add(startQ, i0), i0);
  return rb.loop(rb.index(0), rb.index(*op.getTopk()),
                 {splat(0, rowType, rows)},
                 [&](Value entry, ValueRange keeps) -> SmallVector<Value> {
                   SmallVector<Value> at(row);
                   at.push_back(entry);
                   Value column = tile::LoadOp::create(
                       b, rowType, selection, at, rows, at.size() - 2);
                   return {buildMap(
                       b, rowType, {keeps[0], column},
                       [&](ValueRange, ValueRange x) -> Value {
                         return arith::SelectOp::create(
                             b,
                             arith::CmpFOp::create(
                                 b, arith::CmpFPredicate::OEQ, x[1], number),
                             rb.f32(1), x[0]);
                       })};
                 })[0];
}

Value BackwardProgram::anyRowKeeps(Value keeps) {
  Value any =
      tile::ReduceOp::create(b, b.getF32Type(), tile::ReduceKind::max, keeps);
  return arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, any, rb.f32(0));
}

void BackwardProgram::checkSelection(Value head, Value i0, Value rows) {
  Value keyBlocks =
      arith::CeilDivUIOp::create(b, m, rb.index(*op.getBlockK()));
  rb.loop(rb.index(0), rows, [&](Value r) {
    Value i = rb.add(i0, r);
    SmallVector<Value> row =
        lseIndices(shape.cuQ, batch, head, rb.add(startQ, i), i);
    rb.checkSelectionRow(selection, row, *op.getTopk(), keyBlocks, batch,
                         head, i);
  });
}

Value BackwardProgram::scoreGradients(
    Value head, const QueryTiles &rows, const KeyTiles &keys, Sweep sweep,
    Value keeps, llvm::function_ref<void(Value)> useWeights) {
  Type f32 = b.getF32Type();
  Value zeros = splat(0, scoreType, rows.rows);
  Value dots = tile::DotOp::create(b, scoreType, rows.q, keys.k, zeros,
                                   /*transpose_lhs=*/false,
                                   /*transpose_rhs=*/true);
  auto scoreArgs = [&](Value dot, Value i, Value key) -> SmallVector<Value> {
    return {rb.mul(scale, dot), batch, head, i, key, n, m, startQ, startK};
  };
  // p from the score: exp(score - lse), sigmoid(score) or score.
  auto weightOf = [&](Value score, Value lse) -> Value {
    switch (normalizer) {
    case Normalizer::softmax:
      return math::ExpOp::create(b, arith::SubFOp::create(b, score, lse));
    case Normalizer::sigmoid:
      return sigmoidOf(rb, score);
    case Normalizer::none:
      return score;
    }
    llvm_unreachable("unknown normalizer");
  };
  // A map over `inputs` of `element(i, key, x)` at allowed elements,
  // `otherwise` at the others.
  // With top-k, `keeps` is the last input.
  auto maskedMap = [&](ValueRange elementInputs, double otherwise,
                       llvm::function_ref<Value(Value, Value, ValueRange)>
                           element) {
    SmallVector<Value> inputs(elementInputs);
    if (keeps)
      inputs.push_back(keeps);
    return buildMap(
        b, scoreType, inputs, [&](ValueRange at, ValueRange x) -> Value {
          Value i = rb.add(rows.i0, at[0]);
          Value allowed, key;
          std::tie(allowed, key) =
              allowedKey(head, i, rb.add(keys.j0, at[1]));
          if (keeps)
            allowed = arith::AndIOp::create(
                b, allowed,
                arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, x.back(),
                                      rb.f32(0)));
          return rb.ifThen(
              allowed, {f32},
              [&]() -> SmallVector<Value> { return {element(i, key, x)}; },
              [&]() -> SmallVector<Value> { return {rb.f32(otherwise)}; })[0];
        });
  };
  if (useWeights) {
    SmallVector<Value> inputs = {dots};
    if (rows.lse)
      inputs.push_back(rows.lse);
    useWeights(maskedMap(
        inputs, 0, [&](Value i, Value key, ValueRange x) -> Value {
          SmallVector<Value> args = scoreArgs(x[0], i, key);
          return weightOf(rb.inlineExpression(op.getScore(), args, args[0]),
                          rows.lse ? x[1] : Value());
        }));
  }
  if (sweep == Sweep::Values)
    return Value();
  Value dWeights = tile::DotOp::create(b, scoreType, rows.dOut, keys.v, zeros,
                                       /*transpose_lhs=*/false,
                                       /*transpose_rhs=*/true);
  // Map inputs: the dots, dP, then the row values that exist.
  SmallVector<Value> inputs = {dots, dWeights};
  for (Value row : {rows.lse, rows.delta, rows.dLse})
    if (row)
      inputs.push_back(row);
  // The derivatives of the score at an allowed element, seeded with dS.
  auto gradientAt = [&](Value i, Value key, ValueRange x) {
    SmallVector<Value> args = scoreArgs(x[0], i, key);
    Value p = weightOf(rb.inlineExpression(op.getScore(), args, args[0]),
                       rows.lse ? x[2] : Value());
    Value dp = x[1];
    Value dScore;
    switch (normalizer) {
    case Normalizer::softmax: { // P (dP - D + dlse)
      Value shifted = arith::SubFOp::create(b, dp, x[3]);
      if (rows.dLse)
        shifted = rb.add(shifted, x[4]);
      dScore = rb.mul(p, shifted);
      break;
    }
    case Normalizer::sigmoid: // dP p (1 - p)
      dScore = rb.mul(rb.mul(dp, p), arith::SubFOp::create(b, rb.f32(1), p));
      break;
    case Normalizer::none:
      dScore = dp;
      break;
    }
    return inlineExpressionGradient(rb, op.getScore(), args, dScore);
  };
  Value dRaw =
      maskedMap(inputs, 0, [&](Value i, Value key, ValueRange x) -> Value {
        ExpressionGradient gradient = gradientAt(i, key, x);
        return rb.mul(scale, gradient.arguments[0] ? gradient.arguments[0]
                                                   : rb.f32(0));
      });
  if (sweep == Sweep::Keys)
    return dRaw;
  // The score's float inputs: each load's gradient goes to the input's
  // partial copy at the indices it read (-1 where masked: skipped).
  for (auto [number, load] : llvm::enumerate(floatLoads)) {
    Value gradient = maskedMap(
        inputs, 0, [&, number = number](Value i, Value key, ValueRange x) {
          return gradientAt(i, key, x).loads[number].gradient;
        });
    SmallVector<Value> positions;
    for (size_t dim = 0; dim < load.getIndices().size(); ++dim)
      positions.push_back(maskedMap(
          inputs, -1, [&, number = number](Value i, Value key, ValueRange x) {
            return rb.indexToF32(gradientAt(i, key, x).loads[number].indices[dim]);
          }));
    auto input = llvm::find(op.getInputs(), load.getTensor());
    // At the spec's load, which a backend that cannot scatter names.
    tile::ScatterAddOp::create(
        b, load.getLoc(), gradient, positions,
        inputGradients[input - op.getInputs().begin()]);
  }
  return dRaw;
}

Value BackwardProgram::blockVisited(Value head, Value queryBlock,
                                    Value keyBlock) {
  IRMapping &params = rb.params;
  if (Value blockMask = op.getBlockMask())
    return rb.blockPresent(params.lookup(blockMask), batch, head, queryBlock,
                           keyBlock);
  if (!op.getKvIndices())
    return arith::ConstantIntOp::create(b, b.getI1Type(), 1);
  // Listed among the first `count` entries (the query sweep reports bad
  // counts and entries).
  Value lists = params.lookup(op.getKvIndices());
  Value count =
      rb.checkedBlockCount(params.lookup(op.getKvNumBlocks()), batch, head,
                           queryBlock, rb.dim(lists, 3));
  return rb.blockListed(lists, count, batch, head, queryBlock, keyBlock);
}

Value BackwardProgram::sumOverKeyBlocks(
    const QueryTiles &rows, Value queryBlock, Value begin, Value end,
    Value init, llvm::function_ref<Value(Value, Value, Value)> visit) {
  Value head = rows.head;
  Value bk = rb.index(blockK);
  Value first = arith::DivUIOp::create(b, begin, bk);
  Value last = arith::CeilDivUIOp::create(b, end, bk);
  auto step = [&](Value keyBlock, ValueRange sum) -> SmallVector<Value> {
    return {visit(keyBlock, Value(), sum[0])};
  };
  if (selection) // the key blocks that a row of the block kept
    return rb.loop(first, last, {init},
                   [&](Value keyBlock, ValueRange sum) -> SmallVector<Value> {
                     Value keeps =
                         rowKeeps(head, rows.i0, rows.rows, keyBlock);
                     return llvm::to_vector(rb.ifThen(
                         anyRowKeeps(keeps), {init.getType()},
                         [&]() -> SmallVector<Value> {
                           return {visit(keyBlock, keeps, sum[0])};
                         },
                         [&] { return SmallVector<Value>{sum[0]}; }));
                   })[0];
  if (Value lists = op.getKvIndices())
    return visitListedKeyBlocks(
        rb, rb.params.lookup(op.getKvNumBlocks()), rb.params.lookup(lists),
        batch, head, queryBlock, arith::CeilDivUIOp::create(b, m, bk), first,
        last, {init}, step)[0];
  return rb.loop(first, last, {init},
                 [&](Value keyBlock, ValueRange sum) -> SmallVector<Value> {
                   if (!op.getBlockMask())
                     return step(keyBlock, sum);
                   return llvm::to_vector(rb.ifThen(
                       blockVisited(head, queryBlock, keyBlock),
                       {init.getType()}, [&] { return step(keyBlock, sum); },
                       [&] { return SmallVector<Value>{sum[0]}; }));
                 })[0];
}

void BackwardProgram::build(ValueRange results) {
  Value dq = results[0], dk = results[1], dv = results[2];
  // The gradients of float inputs are partial copies in f32.
  inputGradients = usePartialResults(b, results.drop_front(3));
  // Instances are (query block, kv head, batch entry); scatter-adds go to
  // one partial copy per instance, so with float inputs an instance takes
  // a whole sequence instead (B x Hk copies).
  bool perSequence = !floatLoads.empty();
  tile::GridOp grid = createProgramGrid(b, shape, shape.headsK, blockQ,
                                        perSequence);
  OpBuilder::InsertionGuard gridGuard(b);
  b.setInsertionPoint(grid.getBody().front().getTerminator());
  Value headK = grid.getHead();
  batch = grid.getBatch();
  std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
  std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
  checkSequence(rb, shape.cuQ, batch, startQ, n, shape.lengthQ);
  checkSequence(rb, shape.cuK, batch, startK, m, shape.lengthK);
  rb.hoistedLoads.clear();

  Value zero = rb.index(0), one = rb.index(1);
  Value queryBlocks = arith::CeilDivUIOp::create(b, n, rb.index(blockQ));
  Value keyBlocks = arith::CeilDivUIOp::create(b, m, rb.index(blockK));
  Value firstHead = rb.mul(headK, shape.groupSize);
  // The keys [begin, end) that query block `queryBlock` can see.
  auto visibleKeys = [&](Value queryBlock) {
    Value i0 = rb.mul(queryBlock, rb.index(blockQ));
    Value rows = arith::MinUIOp::create(b, rb.index(blockQ), rb.sub(n, i0));
    return visibleKeyRange(rb, band, chunkSize, i0,
                           rb.add(i0, rb.sub(rows, one)), n, m);
  };

  // dK and dV of a key block: over the group's heads and the query blocks
  // that see it, in order; in one pass, or one per sum when the program
  // may not carry both.
  auto keyBlockGradients = [&](Value keyBlock) {
    KeyTiles keys = loadKeyTiles(headK, keyBlock, /*withRows=*/false);
    Value jEnd = rb.add(keys.j0, keys.cols);
    // Sums `types` over the visiting tiles: visit(rows, keeps, sums) -> new
    // sums (`keeps`: top-k's rowKeeps, else null).
    auto sumOverQueryBlocks =
        [&](SmallVector<Type> types, bool onlyWeights,
            llvm::function_ref<SmallVector<Value>(const QueryTiles &, Value,
                                                  ValueRange)>
                visit) {
          SmallVector<Value> zeros = llvm::map_to_vector(types, [&](Type t) {
            return splat(0, cast<RankedTensorType>(t), Value());
          });
          return llvm::to_vector(rb.loop(
              zero, shape.groupSize, zeros, [&](Value g, ValueRange sums) {
                Value head = rb.add(firstHead, g);
                return llvm::to_vector(rb.loop(
                    zero, queryBlocks, sums,
                    [&](Value queryBlock,
                        ValueRange sums) -> SmallVector<Value> {
                      Value begin, end;
                      std::tie(begin, end) = visibleKeys(queryBlock);
                      Value meets = arith::AndIOp::create(
                          b,
                          arith::CmpIOp::create(b, arith::CmpIPredicate::ult,
                                                begin, jEnd),
                          arith::CmpIOp::create(b, arith::CmpIPredicate::ugt,
                                                end, keys.j0));
                      if (op.getBlockQ())
                        meets = arith::AndIOp::create(
                            b, meets, blockVisited(head, queryBlock, keyBlock));
                      auto unchanged = [&]() -> SmallVector<Value> {
                        return llvm::to_vector(sums);
                      };
                      auto visitRows = [&](Value keeps) {
                        return visit(
                            loadQueryTiles(head, queryBlock, onlyWeights),
                            keeps, sums);
                      };
                      return llvm::to_vector(rb.ifThen(
                          meets, types,
                          [&]() -> SmallVector<Value> {
                            if (!selection)
                              return visitRows(Value());
                            // Top-k: when a row kept the key block.
                            Value i0 = rb.mul(queryBlock, rb.index(blockQ));
                            Value rows = arith::MinUIOp::create(
                                b, rb.index(blockQ), rb.sub(n, i0));
                            Value keeps = rowKeeps(head, i0, rows, keyBlock);
                            return llvm::to_vector(rb.ifThen(
                                anyRowKeeps(keeps), types,
                                [&] { return visitRows(keeps); }, unchanged));
                          },
                          unchanged));
                    }));
              }));
        };
    auto valueSum = [&](const QueryTiles &rows, Value dV, Value weights) {
      return tile::DotOp::create(b, valueAccType, weights, rows.dOut, dV,
                                 /*transpose_lhs=*/true,
                                 /*transpose_rhs=*/false);
    };
    auto keySum = [&](const QueryTiles &rows, Value dK, Value dRaw) {
      return tile::DotOp::create(b, keyAccType, dRaw, rows.q, dK,
                                 /*transpose_lhs=*/true,
                                 /*transpose_rhs=*/false);
    };
    Value dK, dV;
    if (separateKeySums) {
      dV = sumOverQueryBlocks(
          {valueAccType}, /*onlyWeights=*/true,
          [&](const QueryTiles &rows, Value keeps, ValueRange sums) {
            Value sum;
            scoreGradients(rows.head, rows, keys, Sweep::Values, keeps,
                           [&](Value weights) {
                             sum = valueSum(rows, sums[0], weights);
                           });
            return SmallVector<Value>{sum};
          })[0];
      dK = sumOverQueryBlocks(
          {keyAccType}, /*onlyWeights=*/false,
          [&](const QueryTiles &rows, Value keeps, ValueRange sums) {
            return SmallVector<Value>{keySum(
                rows, sums[0],
                scoreGradients(rows.head, rows, keys, Sweep::Keys, keeps))};
          })[0];
    } else {
      SmallVector<Value> sums = sumOverQueryBlocks(
          {keyAccType, valueAccType}, /*onlyWeights=*/false,
          [&](const QueryTiles &rows, Value keeps, ValueRange sums) {
            Value newDV;
            Value dRaw = scoreGradients(
                rows.head, rows, keys, Sweep::Keys, keeps, [&](Value weights) {
                  newDV = valueSum(rows, sums[1], weights);
                });
            return SmallVector<Value>{keySum(rows, sums[0], dRaw), newDV};
          });
      dK = sums[0];
      dV = sums[1];
    }
    SmallVector<Value> at = rowPosition(headK, rb.add(startK, keys.j0));
    tile::StoreOp::create(b, dK, dk, at, keys.cols, shape.dims.seq);
    tile::StoreOp::create(b, dV, dv, at, keys.cols, shape.dims.seq);
  };

  // dQ of a query block of a head, over the key blocks it sees.
  auto queryBlockGradients = [&](Value head, Value queryBlock) {
    QueryTiles rows = loadQueryTiles(head, queryBlock);
    Value begin, end;
    std::tie(begin, end) = visibleKeys(queryBlock);
    if (selection) // each query block is checked here, once
      checkSelection(head, rows.i0, rows.rows);
    Value dQ = sumOverKeyBlocks(
        rows, queryBlock, begin, end, splat(0, queryAccType, rows.rows),
        [&](Value keyBlock, Value keeps, Value sum) -> Value {
          KeyTiles keys = loadKeyTiles(headK, keyBlock, /*withRows=*/true);
          Value dRaw =
              scoreGradients(head, rows, keys, Sweep::Queries, keeps);
          return tile::DotOp::create(b, queryAccType, dRaw, keys.kRows, sum);
        });
    tile::StoreOp::create(b, dQ, dq, rowPosition(head, rb.add(startQ, rows.i0)),
                          rows.rows, shape.dims.seq);
  };
  auto groupHead = [&](Value g) { return rb.add(firstHead, g); };

  if (perSequence) {
    rb.loop(zero, keyBlocks, keyBlockGradients);
    rb.loop(zero, shape.groupSize, [&](Value g) {
      rb.loop(zero, queryBlocks, [&](Value queryBlock) {
        queryBlockGradients(groupHead(g), queryBlock);
      });
    });
    return;
  }
  // Instance x: dQ of query block x (each head of the group), then dK and
  // dV of key blocks x, x + X, x + 2X, ... (X: the launcher's query blocks,
  // enough for every sequence), so that every key block has one instance.
  Value x = grid.getQueryBlock();
  rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, x, queryBlocks),
            [&] {
              rb.loop(zero, shape.groupSize,
                      [&](Value g) { queryBlockGradients(groupHead(g), x); });
            });
  Value stride = tile::QueryBlocksOp::create(b, b.getIndexType());
  rb.loop(
      x, keyBlocks, {},
      [&](Value keyBlock, ValueRange) {
        keyBlockGradients(keyBlock);
        return SmallVector<Value>();
      },
      stride);
}

} // namespace

void attnc::lowering::buildSoftmaxBackwardProgram(
    SoftmaxBackwardOp op, LoweringBuilder &rb, ValueRange results,
    const BackwardTiling &tiling) {
  BackwardProgram(op, rb, tiling).build(results);
}
