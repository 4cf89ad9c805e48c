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
// steps (secondary chunking, as the forward). For sub-tile I from step p
// to l = p + s - 1, with dP = dO V^T:
//   dq_r = scale exp(B_r - B_p) o sum_{u < p} dP[r][u] (k_u o exp(B_p - B_u))
//          + sum_{u in I, u <= r} scale dP[r][u] k_u o exp(B_r - B_u)
//   dk_u = scale exp(B_l - B_u) o sum_{r > l} dP[r][u] (q_r o exp(B_r - B_l))
//          + sum_{r in I, r >= u} scale dP[r][u] q_r o exp(B_r - B_u)
//   dv_u = sum_{r > l} A[r][u] dO_r + sum_{r in I, r >= u} A[r][u] dO_r
// where every exponent is <= 0: the pivots B_p and B_l lie between the
// two steps; the sub-tile's own pairs are a decay_combine (dq, dk) and a
// decay_dot (A). The gates' pair terms (see perKeyDimGateGradients) are
// sum_{s >= t} (q_s o dq_s - k_s o dk_s) over these intra-chunk parts, by
// sub-tiles last to first with the later ones' sum carried.
void LinearBackwardProgram::perKeyDimIntra(const Chunk &c) {
  Value size = rb.index(subTile);
  auto subKeyType = tileType(subTile, dimK);
  auto subValueType = tileType(subTile, dimV);
  auto subScoreType = tileType(subTile, subTile);
  auto stripType = tileType(subTile, chunk);
  auto rowType = tileType(1, dimK);
  auto rowsOf = [&](Value tile, Value first) -> Value {
    auto type = cast<RankedTensorType>(tile.getType());
    return tile::SliceOp::create(
        b,
        RankedTensorType::get({subTile, type.getDimSize(1)},
                              type.getElementType()),
        tile, first, size);
  };
  // lhs rhs^T into a tile of static shape.
  auto product = [&](RankedTensorType type, Value lhs, Value rhs) {
    return dot(type, lhs, rhs, zeros(type), false, /*transposeRhs=*/true);
  };
  // Queries after `boundary` times exp(B_r - pivot) (`later`), or keys
  // before it times exp(pivot - B_u), else 0: exponents <= 0 where kept.
  auto towardPivot = [&](Value x, Value pivot, Value boundary, bool later) {
    return buildMap(b, cast<RankedTensorType>(x.getType()), {x, c.gates, pivot},
                    [&](ValueRange at, ValueRange e) -> Value {
      Value exponent = later ? arith::SubFOp::create(b, e[1], e[2])
                             : arith::SubFOp::create(b, e[2], e[1]);
      Value side = arith::CmpIOp::create(
          b, later ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::ult,
          at[0], boundary);
      return arith::SelectOp::create(
          b, side, rb.mul(e[0], math::ExpOp::create(b, exponent)),
          rb.f32(0));
    });
  };
  Value numSubTiles = arith::CeilDivUIOp::create(b, c.rows, size);
  rb.loop(zero, numSubTiles, {zeros(rowType, shape.dimK)},
          [&](Value reversed, ValueRange carry) -> SmallVector<Value> {
    Value first =
        rb.mul(rb.sub(rb.sub(numSubTiles, one), reversed), size);
    Value last = rb.add(first, rb.index(subTile - 1));
    Value queries = rowsOf(c.queries, first), keys = rowsOf(c.keys, first);
    Value values = rowsOf(c.values, first), dOut = rowsOf(c.dOut, first);
    Value gates = rowsOf(c.gates, first);
    Value queryPivot =
        tile::SliceOp::create(b, rowType, c.gates, first, one);
    Value keyPivot = tile::SliceOp::create(b, rowType, c.gates, last, one);
    // scale dP of the sub-tile's own pairs u < r, and of u = r (a step
    // pairs with itself in dq and dk but not in the gate terms).
    Value own = scaled(product(subScoreType, dOut, values));
    auto ownPart = [&](arith::CmpIPredicate keep) {
      return buildMap(b, subScoreType, {own},
                      [&](ValueRange at, ValueRange e) -> Value {
                        return arith::SelectOp::create(
                            b, arith::CmpIOp::create(b, keep, at[1], at[0]),
                            e[0], rb.f32(0));
                      });
    };
    Value ownStrict = ownPart(arith::CmpIPredicate::ult);
    Value diagonal = tile::ReduceOp::create(
        b, RankedTensorType::get({subTile}, f32), tile::ReduceKind::add,
        ownPart(arith::CmpIPredicate::eq));
    // x + diagonal[r] y[r], the pair of a step with itself.
    auto withDiagonal = [&](Value x, Value y) {
      return buildMap(b, subKeyType, {x, y, diagonal},
                      [&](ValueRange, ValueRange e) -> Value {
                        return math::FmaOp::create(b, e[2], e[1], e[0]);
                      });
    };
    Value zeroKeys = zeros(subKeyType, shape.dimK);
    // dq from the earlier keys, then from the sub-tile's own.
    Value earlierKeys = towardPivot(c.keys, queryPivot, first, false);
    Value dQuery = scaled(decayed(
        dot(subKeyType, product(stripType, dOut, c.values), earlierKeys,
            zeroKeys),
        gates, queryPivot));
    dQuery = tile::DecayCombineOp::create(b, subKeyType, ownStrict, keys,
                                          gates, gates, dQuery,
                                          /*lower_triangular=*/true,
                                          /*upper_triangular=*/false);
    storeScratchRows(withDiagonal(dQuery, keys), dqScratch, first, size);
    // dk from the later queries, then from the sub-tile's own: the decay
    // exp(B_r - B_u) is exp(-B_u - (-B_r)).
    Value laterQueries = towardPivot(c.queries, keyPivot, last, true);
    Value dKey = scaled(decayed(
        dot(subKeyType, product(stripType, values, c.dOut), laterQueries,
            zeroKeys),
        keyPivot, gates));
    Value negated = buildMap(b, subKeyType, {gates},
                             [&](ValueRange, ValueRange e) -> Value {
                               return arith::NegFOp::create(b, e[0]);
                             });
    dKey = tile::DecayCombineOp::create(
        b, subKeyType, tile::TransposeOp::create(b, subScoreType, ownStrict),
        queries, negated, negated, dKey, /*lower_triangular=*/false,
        /*upper_triangular=*/true);
    // dv: A^T's rows of the sub-tile's keys times dO.
    Value laterScores = scaled(product(
        stripType, decayed(keys, keyPivot, gates), laterQueries));
    Value ownScores = scaled(tile::DecayDotOp::create(
        b, subScoreType, queries, keys, gates, gates, zeros(subScoreType),
        /*lower_triangular=*/true));
    Value dValue =
        dot(subValueType, ownScores, dOut,
            dot(subValueType, laterScores, c.dOut, zeros(subValueType, shape.dimV)),
            /*transposeLhs=*/true);
    storeScratchRows(add(scratchRows(dkScratch, first, size, subKeyType),
                         withDiagonal(dKey, queries)),
                     dkScratch, first, size);
    storeScratchRows(
        add(scratchRows(dvScratch, first, size, subValueType), dValue),
        dvScratch, first, size);
    // Pair terms: sum_{s >= t} (a_s - b_s), a = q o dq, b = k o dk
    // without the diagonal, whose terms would only cancel (rounding).
    Value terms = buildMap(b, subKeyType, {queries, dQuery, keys, dKey},
                           [&](ValueRange, ValueRange e) -> Value {
                             return arith::SubFOp::create(
                                 b, rb.mul(e[0], e[1]), rb.mul(e[2], e[3]));
                           });
    Value fromHere = scanSums(terms, /*reverse=*/true);
    storeScratchRows(buildMap(b, subKeyType, {fromHere, carry[0]},
                              [&](ValueRange, ValueRange e) -> Value {
                                return rb.add(e[0], e[1]);
                              }),
                     dgScratch, first, size);
    return {add(carry[0], tile::SliceOp::create(b, rowType, fromHere, zero,
                                                one))};
  });
}

// dg_t[d] as gateGradients' terms per key dim: the pairs (from
// dgScratch), sum_{r >= t} X_r + sum_{u < t} Y_u with X = q o fromState,
// Y = k o toState, and exp(B_L) sum_v H[d][v] dH[d][v].
Value LinearBackwardProgram::perKeyDimGateGradients(const Chunk &c,
                                                    Value fromState,
                                                    Value toState, Value state,
                                                    Value dState) {
  auto multiply = [&](Value x, Value y) {
    return buildMap(b, keyType, {x, y},
                    [&](ValueRange, ValueRange e) -> Value {
                      return rb.mul(e[0], e[1]);
                    });
  };
  Value fromStart = multiply(c.queries, fromState);
  Value toEnd = multiply(c.keys, toState);
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
      {scratchRows(dgScratch, zero, rb.index(chunk), keyType),
       scanSums(fromStart, /*reverse=*/true),
       scanSums(toEnd, /*reverse=*/false, /*exclusive=*/true), throughRow},
      [&](ValueRange, ValueRange e) -> Value {
        return rb.add(rb.add(e[0], e[1]), rb.add(e[2], e[3]));
      });
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
          loadGradient(number, gateType, c.rows, {c.gates, dg}, gradientAt));
    else
      scatterLoad(number, gateType, c.rows, {c.gates, dg}, gradientAt);
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
