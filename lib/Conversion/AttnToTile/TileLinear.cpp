//===- TileLinear.cpp - Chunkwise linear attention as tile programs -------===//
//
// The intra-chunk quadratic form with the decay matrix plus the inter-chunk
// state, for every gate kind; see the pass description in Passes.td and
// docs/tile.md.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "TileBuilding.h"
#include "TileLinearBackward.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"
#include "attnc/Conversion/Passes.h"

namespace attnc {
#define GEN_PASS_DEF_TILELINEAR
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

/// Builds the tile program of one attn.linear kernel: one program instance
/// per (head, sequence) walks the sequence in chunks of C steps with the
/// Dk x Dv state S in f32 as the chunk loop's carried tile.
class LinearProgramBuilder {
public:
  LinearProgramBuilder(LinearOp op, LoweringBuilder &rb, ValueRange results,
                       int64_t subTile)
      : op(op), rb(rb), b(rb.b), shape(getAttentionOperands(op, rb)),
        chunk(op.getChunk()), subTile(subTile) {
    o = results[0];
    finalState = results.size() > 1 ? results[1] : Value();
    if (op.getInitialState())
      initial = rb.params.lookup(op.getInitialState());
    gated = !op.getGate().empty();
    perKeyDim = op.getGateKind() == GateKind::per_key_dim;
    f32 = b.getF32Type();
    dimK = tileHeadDim(op.getQ());
    dimV = tileHeadDim(op.getV());
    gateCols = perKeyDim ? dimK : 1;
  }

  void build() {
    zero = rb.index(0);
    one = rb.index(1);
    scale = rb.f32(op.getScale().convertToDouble());
    stateType = RankedTensorType::get({dimK, dimV}, f32);
    auto grid = createProgramGrid(b, shape, shape.headsQ, chunk,
                                  /*perSequence=*/true);
    if (shape.cuQ && finalState) // result 1, one state per sequence
      grid->getParentOp()->setAttr(kSequenceResultAttrName,
                                   b.getI64IntegerAttr(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(grid.getBody().front().getTerminator());
    batch = grid.getBatch();
    head = grid.getHead();
    std::tie(start, steps) =
        sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
    checkSequence(rb, shape.cuQ, batch, start, steps, shape.lengthQ);
    headK = arith::DivUIOp::create(b, head, shape.groupSize);
    // Gate loads that depend only on (b, h), like A[h], once per program.
    rb.hoistedLoads.clear();
    rb.hoistInvariantLoads(op.getGate(), {{gate_arg::B, batch},
                                          {gate_arg::H, head},
                                          {gate_arg::TStart, start}});
    numChunks = arith::CeilDivUIOp::create(b, steps, rb.index(chunk));
    // The shape the gate maps fill.
    if (gated)
      gateShape = zeros(tileType(chunk, gateCols, f32), Value(), shape.dimK);

    Value state = initialState();
    if (op.getCausal()) {
      state = rb.loop(zero, numChunks, {state},
                      [&](Value chunkIndex, ValueRange carried) {
                        return SmallVector<Value>{
                            causalChunk(chunkIndex, carried[0])};
                      })[0];
    } else {
      // S = S_0 + sum_t phi(k_t)^T v_t over every chunk, then o = phi(q) S.
      state = rb.loop(zero, numChunks, {state},
                      [&](Value chunkIndex, ValueRange carried) {
                        Chunk c = loadChunk(chunkIndex, /*withQueries=*/false);
                        return SmallVector<Value>{
                            dot(stateType, c.keys, c.values, carried[0],
                                /*transposeLhs=*/true)};
                      })[0];
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        Chunk c = loadChunk(chunkIndex, /*withQueries=*/true);
        Value out = dot(outType(), c.queries, state, zeroOutputs(c.rows));
        storeOutputs(out, c.t0, c.rows);
      });
    }
    if (finalState)
      tile::StoreOp::create(b, state, finalState,
                            ValueRange{batch, head, zero}, shape.dimK,
                            /*row_dim=*/2);
  }

private:
  /// One chunk's tiles: queries have the chunk's rows, keys and values are
  /// whole C-row tiles whose rows past the sequence end are zero.
  struct Chunk {
    Value t0, rows;
    Value queries, keys, values;
    /// Cumulative log gates G (C x 1, or C x Dk per key dim), the last
    /// step's as a row (1 x ...) and as a column (... x 1).
    Value gates, lastGates, lastGatesColumn;
  };

  RankedTensorType tileType(int64_t rows, int64_t cols, Type element) {
    return RankedTensorType::get({rows, cols}, element);
  }
  RankedTensorType outType() {
    return tileType(ShapedType::kDynamic, dimV, f32);
  }

  /// A tile of zeros; `rows` and `cols` give the sizes of its dynamic
  /// dimensions (a row count, a head dim).
  Value zeros(RankedTensorType type, Value rows, Value cols) {
    return splatTile(b, rb.f32(0), type, rows, cols);
  }
  /// Outputs (or scores) of `rows` query rows.
  Value zeroOutputs(Value rows) { return zeros(outType(), rows, shape.dimV); }
  Value zeroScores(RankedTensorType type, Value rows) {
    return zeros(type, rows, Value());
  }
  Value zeroState() { return zeros(stateType, shape.dimK, shape.dimV); }

  Value dot(RankedTensorType type, Value lhs, Value rhs, Value acc,
            bool transposeLhs = false, bool transposeRhs = false) {
    return tile::DotOp::create(b, type, lhs, rhs, acc, transposeLhs,
                               transposeRhs);
  }

  /// The layout's indices of row `t` of the sequence, without the feature.
  SmallVector<Value> rowPosition(Value h, Value t) {
    return rowLayoutIndices(shape.layout, batch, h, rb.add(start, t));
  }

  /// S_0 when given and present, else 0.
  Value initialState() {
    if (!initial)
      return zeroState();
    return ifAbsent(
        rb, initial, stateType, [&] { return zeroState(); },
        [&]() -> Value {
          return tile::LoadOp::create(b, stateType, initial,
                                      ValueRange{batch, head, zero},
                                      shape.dimK, /*row_dim=*/2);
        });
  }

  /// phi applied to a loaded tile; rows from `rows` on stay zero (phi(0)
  /// need not be 0).
  Value features(Value loaded, Value rows) {
    if (op.getFeature().empty())
      return loaded;
    auto type = cast<RankedTensorType>(loaded.getType());
    auto result = tileType(type.getDimSize(0), type.getDimSize(1), f32);
    bool padded = !type.isDynamicDim(0);
    return buildMap(b, result, {loaded},
                    [&](ValueRange at, ValueRange x) -> Value {
      Value value = x[0];
      if (!value.getType().isF32())
        value = arith::ExtFOp::create(b, f32, value);
      Value feature = rb.inlineExpression(op.getFeature(), {value}, value);
      if (!padded)
        return feature;
      return arith::SelectOp::create(
          b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[0], rows),
          feature, rb.f32(0));
    });
  }

  Chunk loadChunk(Value chunkIndex, bool withQueries) {
    Chunk c;
    c.t0 = rb.mul(chunkIndex, rb.index(chunk));
    c.rows = arith::MinUIOp::create(b, rb.index(chunk), rb.sub(steps, c.t0));
    int64_t rowDim = shape.dims.seq;
    if (withQueries)
      c.queries = features(
          tile::LoadOp::create(
              b, tileType(ShapedType::kDynamic, dimK, elementTypeOf(shape.q)),
              shape.q, rowPosition(head, c.t0), c.rows, rowDim),
          c.rows);
    SmallVector<Value> keyRow = rowPosition(headK, c.t0);
    c.keys = features(tile::LoadOp::create(
                          b, tileType(chunk, dimK, elementTypeOf(shape.k)),
                          shape.k, keyRow, c.rows, rowDim),
                      c.rows);
    c.values = tile::LoadOp::create(
        b, tileType(chunk, dimV, elementTypeOf(shape.v)), shape.v, keyRow, c.rows,
        rowDim);
    if (gated)
      loadGates(c);
    return c;
  }

  /// G = cumulative sum of the checked gates of the chunk's steps; steps
  /// past the sequence end have gate 0, so their G is the last step's.
  void loadGates(Chunk &c) {
    auto gateType = tileType(chunk, gateCols, f32);
    Value lastRow = rb.sub(c.rows, one);
    Value gates = buildMap(
        b, gateType, {gateShape}, [&](ValueRange at, ValueRange) -> Value {
          // Expressions see steps past the end clamped to the last one.
          Value t = rb.add(c.t0, arith::MinUIOp::create(b, at[0], lastRow));
          Value d = perKeyDim ? at[1] : zero;
          Value gate = rb.checkedGate(
              rb.inlineExpression(op.getGate(), {batch, head, t, d, start},
                                  rb.f32(0)),
              {batch, head, t, d});
          return arith::SelectOp::create(
              b,
              arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[0],
                                    c.rows),
              gate, rb.f32(0));
        });
    c.gates = tile::ScanOp::create(b, gates.getType(), tile::ReduceKind::add,
                                   gates);
    c.lastGates = tile::SliceOp::create(b, tileType(1, gateCols, f32), c.gates,
                                        lastRow, one);
    c.lastGatesColumn = tile::TransposeOp::create(
        b, tileType(gateCols, 1, f32), c.lastGates);
  }

  /// x * exp(a - b) (or x * exp(a) without `b`), elementwise over `x`'s
  /// shape, broadcasting the gate tiles.
  Value decayed(Value x, Value a, Value bTile = Value()) {
    auto type = cast<RankedTensorType>(x.getType());
    SmallVector<Value> inputs = {x, a};
    if (bTile)
      inputs.push_back(bTile);
    return buildMap(b, tileType(type.getDimSize(0), type.getDimSize(1), f32),
                    inputs, [&](ValueRange, ValueRange e) -> Value {
      Value value = e[0];
      if (!value.getType().isF32())
        value = arith::ExtFOp::create(b, f32, value);
      Value exponent = bTile ? Value(arith::SubFOp::create(b, e[1], e[2]))
                             : e[1];
      return rb.mul(value, math::ExpOp::create(b, exponent));
    });
  }

  /// Zeroes a score tile above the diagonal (u > r) and, for scalar gates,
  /// multiplies the rest by exp(G_r - G_u).
  Value causalScores(Value scores, Value gates) {
    auto type = cast<RankedTensorType>(scores.getType());
    SmallVector<Value> inputs = {scores};
    if (gates) {
      inputs.push_back(gates);
      inputs.push_back(tile::TransposeOp::create(
          b, tileType(1, chunk, f32), gates));
    }
    return buildMap(b, type, inputs, [&](ValueRange at, ValueRange e) -> Value {
      Value value = e[0];
      if (gates)
        value = rb.mul(value, math::ExpOp::create(
                                  b, arith::SubFOp::create(b, e[1], e[2])));
      return arith::SelectOp::create(
          b, arith::CmpIOp::create(b, arith::CmpIPredicate::ule, at[1], at[0]),
          value, rb.f32(0));
    });
  }

  void storeOutputs(Value out, Value t0, Value rows) {
    Value scaled = buildMap(b, cast<RankedTensorType>(out.getType()), {out},
                            [&](ValueRange, ValueRange e) -> Value {
                              return rb.mul(scale, e[0]);
                            });
    tile::StoreOp::create(b, scaled, o, rowPosition(head, t0), rows,
                          shape.dims.seq);
  }

  /// One chunk of a causal kernel: its outputs from the state and the
  /// intra-chunk scores, then the state after it.
  Value causalChunk(Value chunkIndex, Value state) {
    Chunk c = loadChunk(chunkIndex, /*withQueries=*/true);
    if (perKeyDim) {
      perKeyDimOutputs(c, state);
    } else {
      // o = (phi(q) o exp(G)) S + (A o D) V with D[r][u] = exp(G_r - G_u).
      Value queries = gated ? decayed(c.queries, c.gates) : c.queries;
      Value out = dot(outType(), queries, state, zeroOutputs(c.rows));
      auto scoreType = tileType(ShapedType::kDynamic, chunk, f32);
      Value scores = dot(scoreType, c.queries, c.keys,
                         zeroScores(scoreType, c.rows), false, true);
      scores = causalScores(scores, gated ? c.gates : Value());
      out = dot(outType(), scores, c.values, out);
      storeOutputs(out, c.t0, c.rows);
    }
    // S' = exp(G_L) o S + (exp(G_L - G) o phi(K))^T V
    Value keys = c.keys;
    if (gated) {
      keys = decayed(c.keys, c.lastGates, c.gates);
      state = decayed(state, c.lastGatesColumn);
    }
    return dot(stateType, keys, c.values, state, /*transposeLhs=*/true);
  }

  /// The outputs of a chunk with one gate per key dim, by sub-tiles of
  /// `subTile` steps (secondary chunking). For the queries of the sub-tile
  /// from p, the keys of each earlier sub-tile take exp(G_p - G_u) and the
  /// queries exp(G_r - G_p), both <= 1, so their scores are one dot; keys
  /// of the sub-tile itself keep the decay inside the sum (decay_dot).
  void perKeyDimOutputs(const Chunk &c, Value state) {
    Value size = rb.index(subTile);
    Value numSubTiles = arith::CeilDivUIOp::create(b, c.rows, size);
    auto queryRows = [&](Value tile, Value first, Value rows) -> Value {
      auto type = cast<RankedTensorType>(tile.getType());
      return tile::SliceOp::create(
          b, tileType(ShapedType::kDynamic, type.getDimSize(1),
                      elementTypeOf(tile)),
          tile, first, rows);
    };
    // A whole sub-tile of key rows from `first`; rows past the chunk are 0.
    auto keyRows = [&](Value tile, Value first) -> Value {
      auto type = cast<RankedTensorType>(tile.getType());
      Value rows =
          arith::MinUIOp::create(b, size, rb.sub(rb.index(chunk), first));
      return tile::SliceOp::create(
          b, tileType(subTile, type.getDimSize(1), elementTypeOf(tile)), tile,
          first, rows);
    };
    auto scoreType = tileType(ShapedType::kDynamic, subTile, f32);
    rb.loop(zero, numSubTiles, [&](Value subTileIndex) {
      Value p = rb.mul(subTileIndex, size);
      Value rows = arith::MinUIOp::create(b, size, rb.sub(c.rows, p));
      Value queries = queryRows(c.queries, p, rows);
      Value gates = queryRows(c.gates, p, rows);
      Value pivot = tile::SliceOp::create(b, tileType(1, gateCols, f32),
                                          c.gates, p, one);
      // Inter-chunk: (phi(q) o exp(G)) S.
      Value out =
          dot(outType(), decayed(queries, gates), state, zeroOutputs(rows));
      // Earlier sub-tiles of the chunk.
      Value pivotQueries = decayed(queries, gates, pivot);
      out = rb.loop(zero, subTileIndex, {out},
                    [&](Value earlier, ValueRange partial) {
        Value u0 = rb.mul(earlier, size);
        Value keys = decayed(keyRows(c.keys, u0), pivot, keyRows(c.gates, u0));
        Value scores = dot(scoreType, pivotQueries, keys,
                           zeroScores(scoreType, rows), false, true);
        return SmallVector<Value>{
            dot(outType(), scores, keyRows(c.values, u0), partial[0])};
      })[0];
      // The sub-tile's own keys, u <= r.
      Value own = tile::DecayDotOp::create(
          b, scoreType, queries, keyRows(c.keys, p), gates,
          keyRows(c.gates, p), zeroScores(scoreType, rows),
          /*lower_triangular=*/true);
      out = dot(outType(), own, keyRows(c.values, p), out);
      storeOutputs(out, rb.add(c.t0, p), rows);
    });
  }

  LinearOp op;
  LoweringBuilder &rb;
  ImplicitLocOpBuilder &b;
  AttentionOperands shape;
  int64_t chunk, subTile;
  Value o, finalState, initial;
  bool gated = false, perKeyDim = false;
  Type f32;
  int64_t dimK = ShapedType::kDynamic, dimV = ShapedType::kDynamic,
          gateCols = 1;
  RankedTensorType stateType;
  Value zero, one, scale;
  Value batch, head, headK, start, steps, numChunks, gateShape;
};

struct TileLinearPass
    : public CheckedOptionsPass<TileLinearPass, attnc::impl::TileLinearBase> {
  using CheckedOptionsPass::CheckedOptionsPass;

  std::string optionProblem() const {
    if (subTile <= 0)
      return "attn-tile-linear: sub-tile must be positive, got " +
             std::to_string(subTile);
    if (stateBlock < 0 || stateBlock % 16)
      return "attn-tile-linear: state-block must be 0 or a positive multiple "
             "of 16, got " +
             std::to_string(stateBlock);
    return "";
  }

  void runOnOperation() override {
    if (failedOnBadOptions())
      return;
    for (KernelOp kernel :
         llvm::make_early_inc_range(getOperation().getOps<KernelOp>())) {
      if (auto backward = dyn_cast<LinearBackwardOp>(kernel.getFamilyOp())) {
        lowerKernelToProgram(
            kernel, [&](Operation *, LoweringBuilder &rb, ValueRange results) {
              buildLinearBackwardProgram(backward, rb, results, subTile,
                                         stateBlock);
            });
        continue;
      }
      if (!isa<LinearOp>(kernel.getFamilyOp()))
        continue;
      lowerKernelToProgram(kernel, [&](Operation *familyOp, LoweringBuilder &rb,
                                       ValueRange results) {
        LinearProgramBuilder(cast<LinearOp>(familyOp), rb, results, subTile)
            .build();
      });
    }
  }
};

} // namespace
