//===- TileLinearBackwardGates.cpp - The linear backward's gates ----------===//
//
// The gradients of the log gates in the linear backward's tile program
// (docs/tile.md, "The linear backward"), and the intra-chunk terms of
// gates per key dimension (GLA), which go by sub-tiles.
//
//===----------------------------------------------------------------------===//

#include "LinearBackwardProgram.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

// dg_t = exp(g_t) <S_{t-1}, dS_t>, the gradient of step t's log gate, by
// the chunk's terms: with W = A o dP below the diagonal (dP = dO V^T),
// X_r = q_r . (scale exp(B_r) dO_r H^T) and Y_u = k_u . (exp(B_L - B_u)
// v_u dH^T),
//   dg_t = sum_{r >= t > u} W[r][u] + sum_{r >= t} X_r + sum_{u < t} Y_u
//          + exp(B_L) <H, dH>.
// Each term is one pair of steps' contribution (decays <= 1), each sum a
// scan (from t on, or before t), never a difference of sums. The shorter
// identity dg_t = sum_{s >= t} (q_s . dq_s - k_s . dk_s) adds terms that
// cancel (a step's own product appears in both), which under strong decay
// leaves rounding errors larger than the gradient (1e-4 of it in
// test_linear_gradients.py's strong SSD case; this form stays within
// the test's 1e-5).
Value LinearBackwardProgram::rowSums(Value x, Value y) {
  return tile::ReduceOp::create(
      b, stepType, tile::ReduceKind::add,
      buildMap(b, asF32(x), {x, y}, [&](ValueRange, ValueRange e) -> Value {
        return rb.mul(widened(e[0]), e[1]);
      }));
}

Value LinearBackwardProgram::gatePairTerms(Value dAttention, Value scores) {
  // The pairs u < t <= r: column sums of W's rows from t on, by an
  // exclusive scan of W^T over u (row t of it holds sum_{u < t} W[r][u]
  // per r).
  Value weights = buildMap(
      b, scoreType, {dAttention, scores},
      [&](ValueRange at, ValueRange e) -> Value {
        return arith::SelectOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[1], at[0]),
            rb.mul(e[0], e[1]), rb.f32(0));
      });
  Value transposed = tile::TransposeOp::create(b, scoreType, weights);
  Value before = scanSums(transposed, /*reverse=*/false, /*exclusive=*/true);
  return tile::ReduceOp::create(
      b, stepType, tile::ReduceKind::add,
      buildMap(b, scoreType, {before},
               [&](ValueRange at, ValueRange e) -> Value {
                 return arith::SelectOp::create(
                     b,
                     arith::CmpIOp::create(b, arith::CmpIPredicate::uge, at[1],
                                           at[0]),
                     e[0], rb.f32(0));
               }));
}

void LinearBackwardProgram::gateGradients(Value head, const Chunk &c,
                                          Value pairs, Value fromStart,
                                          Value toEnd, Value stateRows) {
  Value through =
      tile::ReduceOp::create(b, f32, tile::ReduceKind::add, stateRows);
  Value dGate = buildMap(
      b, stepType,
      {pairs, scanSums(fromStart, /*reverse=*/true),
       scanSums(toEnd, /*reverse=*/false, /*exclusive=*/true)},
      [&](ValueRange, ValueRange e) -> Value {
        return rb.add(rb.add(e[0], e[1]), rb.add(e[2], through));
      });
  gateInputGradients(head, c, dGate);
}

// With one gate per key dimension the decay exp(B_r[d] - B_u[d]) stays
// inside the sums over d, so the intra-chunk terms go by sub-tiles of s
// steps (secondary chunking, as the forward). Every result has the
// chunk's rows; the pairs of different sub-tiles come one sub-tile of the
// other side at a time, through a pivot step between the two (every
// exponent <= 0), with dP = scale dO V^T:
//   dq_r += exp(B_r - B_l) o sum_{u in J} dP[r][u] (k_u o exp(B_l - B_u))
//           for key sub-tile J ending at l, rows r > l;
//   dk_u += exp(B_p - B_u) o sum_{r in I} dP[r][u] (q_r o exp(B_r - B_p))
//   dv_u += sum_{r in I} A[r][u] dO_r,
//           A[r][u] = scale (k_u o exp(B_p - B_u)) . (q_r o exp(B_r - B_p))
//           for query sub-tile I starting at p, rows u < p.
// The pairs within a sub-tile are a decay_combine (dq, dk) and a decay_dot
// (A) over the chunk's diagonal blocks. The gates' pair terms (see
// perKeyDimGateGradients) are sum_{s >= t} (q_s o dq_s - k_s o dk_s) over
// these intra-chunk parts. On the GPU every warp computes rows of its
// own: the loops run over the 16-step operands, not over the result's rows.
void LinearBackwardProgram::perKeyDimIntra(const Chunk &c) {
  Value size = rb.index(subTile);
  auto stripType = tileType(chunk, subTile);
  auto rowsOf = [&](Value tile, Value first) -> Value {
    auto type = cast<RankedTensorType>(tile.getType());
    return tile::SliceOp::create(
        b,
        RankedTensorType::get({subTile, type.getDimSize(1)},
                              type.getElementType()),
        tile, first, size);
  };
  // The sub-tile's gates' row `row` (a pivot).
  auto rowOf = [&](Value gates, Value row) -> Value {
    return tile::SliceOp::create(b, tileType(1, dimK), gates, row, one);
  };
  // lhs rhs^T into a tile of static shape.
  auto product = [&](RankedTensorType type, Value lhs, Value rhs) {
    return dot(type, lhs, rhs, zeros(type), false, /*transposeRhs=*/true);
  };
  // acc + x o exp(B_r - pivot) on rows after `boundary` (`later`), or
  // acc + x o exp(pivot - B_u) on rows before it; acc elsewhere.
  auto addTowardPivot = [&](Value acc, Value x, Value pivot, Value boundary,
                            bool later) {
    return buildMap(
        b, cast<RankedTensorType>(acc.getType()), {acc, x, gatesOf(c), pivot},
        [&](ValueRange at, ValueRange e) -> Value {
          Value exponent = later ? arith::SubFOp::create(b, e[2], e[3])
                                 : arith::SubFOp::create(b, e[3], e[2]);
          Value side = arith::CmpIOp::create(
              b, later ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::ult,
              at[0], boundary);
          return arith::SelectOp::create(
              b, side,
              math::FmaOp::create(b, widened(e[1]),
                                  math::ExpOp::create(b, exponent), e[0]),
              e[0]);
        });
  };
  // The sub-tile's own pairs of scale dP (dO V^T, or V dO^T = dP^T with
  // `transposed`): u < r within a diagonal block, and u = r.
  auto ownScores = [&](bool transposed) -> std::pair<Value, Value> {
    Value own = transposed ? scaled(product(scoreType, c.values, c.dOut))
                           : scaled(product(scoreType, c.dOut, c.values));
    Value strict = buildMap(
        b, scoreType, {own}, [&](ValueRange at, ValueRange e) -> Value {
          return arith::SelectOp::create(
              b,
              arith::CmpIOp::create(b,
                                    transposed ? arith::CmpIPredicate::ugt
                                               : arith::CmpIPredicate::ult,
                                    at[1], at[0]),
              e[0], rb.f32(0));
        });
    Value diagonal = tile::ReduceOp::create(
        b, stepType, tile::ReduceKind::add,
        buildMap(b, scoreType, {own},
                 [&](ValueRange at, ValueRange e) -> Value {
                   return arith::SelectOp::create(
                       b,
                       arith::CmpIOp::create(b, arith::CmpIPredicate::eq, at[1],
                                             at[0]),
                       e[0], rb.f32(0));
                 }));
    return {strict, diagonal};
  };
  // x + diagonal[r] y[r], the pair of a step with itself.
  auto withDiagonal = [&](Value x, Value y, Value diagonal) {
    return buildMap(b, keyType, {x, y, diagonal},
                    [&](ValueRange, ValueRange e) -> Value {
                      return math::FmaOp::create(b, e[2], widened(e[1]), e[0]);
                    });
  };
  Value numSubTiles = arith::CeilDivUIOp::create(b, c.rows, size);
  Value zeroKeys = zeros(keyType, shape.dimK);
  // dq: each key sub-tile J's pairs with the later rows (pivot B_l, l the
  // last step of J), then the own pairs.
  Value dQuery = rb.loop(
      zero, rb.sub(numSubTiles, one), {zeroKeys},
      [&](Value subTileIndex, ValueRange acc) -> SmallVector<Value> {
        Value first = rb.mul(subTileIndex, size);
        Value last = rb.add(first, rb.index(subTile - 1));
        Value subGates = gateRows(first, subTile);
        Value pivot = rowOf(subGates, rb.index(subTile - 1));
        Value keys = decayed(rowsOf(c.keys, first), pivot, subGates);
        Value strip = product(stripType, c.dOut, rowsOf(c.values, first));
        return {addTowardPivot(acc[0], dot(keyType, strip, keys, zeroKeys),
                               pivot, last, /*later=*/true)};
      })[0];
  auto [dScores, dDiagonal] = ownScores(/*transposed=*/false);
  Value gates = gatesOf(c);
  dQuery = tile::DecayCombineOp::create(
      b, keyType, dScores, c.keys, gates, gates, scaled(dQuery),
      /*lower_triangular=*/true, /*upper_triangular=*/false, subTile);
  storeScratchRows(withDiagonal(dQuery, c.keys, dDiagonal), dqScratch, zero,
                   rb.index(chunk));
  // The gate's pair terms, q o dq (without the diagonal, whose terms would
  // only cancel with dk's) until dk's are subtracted.
  storeScratchRows(buildMap(b, keyType, {c.queries, dQuery},
                            [&](ValueRange, ValueRange e) -> Value {
                              return rb.mul(widened(e[0]), e[1]);
                            }),
                   dgScratch, zero, rb.index(chunk));
  // dk and dv: each query sub-tile I's pairs with the earlier rows (pivot
  // B_p, p the first step of I), then the own pairs. The decay
  // exp(B_r - B_u) of dk's is exp(-B_u - (-B_r)).
  auto laterQueries = [&](Value first, Value subGates, Value pivot) {
    return decayed(rowsOf(c.queries, first), subGates, pivot);
  };
  Value dKey = rb.loop(
      one, numSubTiles, {zeroKeys},
      [&](Value subTileIndex, ValueRange acc) -> SmallVector<Value> {
        Value first = rb.mul(subTileIndex, size);
        Value subGates = gateRows(first, subTile);
        Value pivot = rowOf(subGates, zero);
        Value strip = product(stripType, c.values, rowsOf(c.dOut, first));
        return {addTowardPivot(
            acc[0],
            dot(keyType, strip, laterQueries(first, subGates, pivot), zeroKeys),
            pivot, first, /*later=*/false)};
      })[0];
  auto [dScoresT, dDiagonalT] = ownScores(/*transposed=*/true);
  Value negated = buildMap(b, keyType, {gatesOf(c)},
                           [&](ValueRange, ValueRange e) -> Value {
                             return arith::NegFOp::create(b, e[0]);
                           });
  dKey = tile::DecayCombineOp::create(
      b, keyType, dScoresT, c.queries, negated, negated, scaled(dKey),
      /*lower_triangular=*/false, /*upper_triangular=*/true, subTile);
  storeScratchRows(add(scratchRows(dkScratch, zero, rb.index(chunk), keyType),
                       withDiagonal(dKey, c.queries, dDiagonalT)),
                   dkScratch, zero, rb.index(chunk));
  Value terms = buildMap(
      b, keyType,
      {scratchRows(dgScratch, zero, rb.index(chunk), keyType), c.keys, dKey},
      [&](ValueRange, ValueRange e) -> Value {
        return arith::SubFOp::create(b, e[0], rb.mul(widened(e[1]), e[2]));
      });
  storeScratchRows(scanSums(terms, /*reverse=*/true), dgScratch, zero,
                   rb.index(chunk));
  Value zeroValues = zeros(valueType, shape.dimV);
  Value dValue =
      rb.loop(one, numSubTiles, {zeroValues},
              [&](Value subTileIndex, ValueRange acc) -> SmallVector<Value> {
                Value first = rb.mul(subTileIndex, size);
                Value subGates = gateRows(first, subTile);
                Value pivot = rowOf(subGates, zero);
                // A^T's columns of the sub-tile's queries (unscaled).
                Value strip =
                    product(stripType,
                            addTowardPivot(zeroKeys, c.keys, pivot, first,
                                           /*later=*/false),
                            laterQueries(first, subGates, pivot));
                return {dot(valueType, strip, rowsOf(c.dOut, first), acc[0])};
              })[0];
  gates = gatesOf(c);
  Value ownAttention = scaled(tile::DecayDotOp::create(
      b, scoreType, c.queries, c.keys, gates, gates, zeros(scoreType),
      /*lower_triangular=*/true, subTile));
  dValue = dot(valueType, ownAttention, c.dOut, scaled(dValue),
               /*transposeLhs=*/true);
  storeScratchRows(
      add(scratchRows(dvScratch, zero, rb.index(chunk), valueType), dValue),
      dvScratch, zero, rb.index(chunk));
}

// dg_t[d] as gateGradients' terms per key dim: the pairs,
// sum_{r >= t} X_r + sum_{u < t} Y_u with X = q o fromState,
// Y = k o toState (each added to dgScratch by addStateGateTerms as soon as
// it exists), and exp(B_L) sum_v H[d][v] dH[d][v].
void LinearBackwardProgram::addStateGateTerms(Value keysOrQueries,
                                              Value stateTerm, bool queries) {
  Value terms = buildMap(b, keyType, {keysOrQueries, stateTerm},
                         [&](ValueRange, ValueRange e) -> Value {
                           return rb.mul(widened(e[0]), e[1]);
                         });
  Value rows = rb.index(chunk);
  storeScratchRows(
      add(scratchRows(dgScratch, zero, rows, keyType),
          queries ? scanSums(terms, /*reverse=*/true)
                  : scanSums(terms, /*reverse=*/false, /*exclusive=*/true)),
      dgScratch, zero, rows);
}

Value LinearBackwardProgram::perKeyDimGateGradients(const Chunk &c, Value state,
                                                    Value dState) {
  Value through = tile::ReduceOp::create(
      b, RankedTensorType::get({dimK}, f32), tile::ReduceKind::add,
      buildMap(b, stateType, {state, dState, c.lastGateColumn},
               [&](ValueRange, ValueRange e) -> Value {
                 return rb.mul(rb.mul(e[0], e[1]),
                               math::ExpOp::create(b, e[2]));
               }));
  // The per-row sums as a row: a column by row broadcast, transposed.
  auto columnType = tileType(dimK, 1);
  Value throughRow = tile::TransposeOp::create(
      b, tileType(1, dimK),
      buildMap(b, columnType,
               {splatTile(b, rb.f32(0), columnType, shape.dimK, Value()),
                through},
               [&](ValueRange, ValueRange e) -> Value { return e[1]; }));
  return buildMap(
      b, keyType,
      {scratchRows(dgScratch, zero, rb.index(chunk), keyType), throughRow},
      [&](ValueRange, ValueRange e) -> Value { return rb.add(e[0], e[1]); });
}

void LinearBackwardProgram::gateInputGradients(Value head, const Chunk &c,
                                               Value dg) {
  for (size_t number = 0; number < floatLoads.size(); ++number) {
    if (floatLoads[number].second != &op.getGate())
      continue;
    auto gradientAt = [&](ValueRange at, ValueRange x) {
      return inlineExpressionGradient(rb, op.getGate(),
                                      {batch, head, rb.add(c.t0, at[0]),
                                       perKeyDim ? at[1] : zero, start},
                                      x[1]);
    };
    if (directRowDim(floatLoads[number].first))
      storeGateInputGradient(
          number, head, c,
          loadGradient(number, gateType, c.rows, {gatesOf(c), dg}, gradientAt));
    else
      scatterLoad(number, gateType, c.rows, {gatesOf(c), dg}, gradientAt);
  }
}

std::optional<unsigned> LinearBackwardProgram::directRowDim(LoadOp load) {
  if (!gated || load->getParentRegion() != &op.getGate() ||
      llvm::count_if(floatLoads, [&](auto floatLoad) {
        return floatLoad.first.getTensor() == load.getTensor();
      }) != 1)
    return std::nullopt;
  Block &body = op.getGate().front();
  auto isArg = [&](Value value, unsigned number) {
    return value == body.getArgument(number);
  };
  auto tensor = cast<AttnTensorType>(load.getTensor().getType());
  auto query = cast<AttnTensorType>(op.getQ().getType());
  LayoutDims dims = getLayoutDims(op.getLayout());
  bool packed = static_cast<bool>(shape.cuQ);
  // Each index: the gate argument it is and the dim of q it walks.
  std::optional<unsigned> rowDim;
  SmallVector<unsigned> seen;
  for (auto [position, index] : llvm::enumerate(load.getIndices())) {
    std::optional<unsigned> kind;
    int queryDim = -1;
    if (isArg(index, gate_arg::B) && dims.batch >= 0 && !packed) {
      kind = gate_arg::B;
      queryDim = dims.batch;
    } else if (isArg(index, gate_arg::H)) {
      kind = gate_arg::H;
      queryDim = dims.head;
    } else if (isArg(index, gate_arg::D) && perKeyDim &&
               position + 1 == load.getIndices().size()) {
      kind = gate_arg::D;
      queryDim = dims.feature;
    } else if (isArg(index, gate_arg::T) && !packed) {
      kind = gate_arg::T;
      queryDim = dims.seq;
    } else if (auto sum = index.getDefiningOp<arith::AddIOp>();
               sum && ((isArg(sum.getLhs(), gate_arg::TStart) &&
                        isArg(sum.getRhs(), gate_arg::T)) ||
                       (isArg(sum.getLhs(), gate_arg::T) &&
                        isArg(sum.getRhs(), gate_arg::TStart)))) {
      kind = gate_arg::T;
      queryDim = dims.seq;
    }
    if (!kind || llvm::is_contained(seen, *kind) ||
        !tensor.sameDim(position, query, queryDim))
      return std::nullopt;
    seen.push_back(*kind);
    if (*kind == gate_arg::T)
      rowDim = position;
  }
  bool covered = llvm::is_contained(seen, unsigned(gate_arg::H)) &&
                 rowDim &&
                 (packed || dims.batch < 0 ||
                  llvm::is_contained(seen, unsigned(gate_arg::B))) &&
                 perKeyDim == llvm::is_contained(seen, unsigned(gate_arg::D));
  return covered ? rowDim : std::nullopt;
}

void LinearBackwardProgram::storeGateInputGradient(size_t number, Value head,
                                                   const Chunk &c,
                                                   Value gradient) {
  LoadOp load = floatLoads[number].first;
  unsigned rowDim = *directRowDim(load);
  Block &body = op.getGate().front();
  // The element of the chunk's first step: b, h, tstart + t0 (or t0), d
  // the tile's columns.
  SmallVector<Value> position;
  for (Value index : load.getIndices()) {
    if (index == body.getArgument(gate_arg::B))
      position.push_back(batch);
    else if (index == body.getArgument(gate_arg::H))
      position.push_back(head);
    else if (index == body.getArgument(gate_arg::D))
      continue; // the columns
    else if (index == body.getArgument(gate_arg::T))
      position.push_back(c.t0);
    else
      position.push_back(rb.add(start, c.t0));
  }
  if (!perKeyDim) // a value per step: the 1-D tile of the single column
    gradient =
        tile::ReduceOp::create(b, stepType, tile::ReduceKind::add, gradient);
  tile::StoreOp::create(b, gradient, inputGradient(load), position, c.rows,
                        rowDim);
}
