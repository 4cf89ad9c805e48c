//===- TileLinearBackward.cpp - Chunkwise linear backward as tiles --------===//
//
// The tile program of attn.linear_backward (docs/tile.md, "The linear
// backward") for kernels without a gate or with one gate per step (per
// head). With q, k the feature-mapped q and k, B the chunk's cumulative
// log gates (B_L the last step's), H the state at the chunk's start and dH
// the gradient of the state at its end:
//
//   A   = scale (Q K^T o D),  dA = scale (dO V^T o D),
//         D[r][u] = exp(B_r - B_u) for u <= r, else 0
//   dq  = dA K + scale exp(B) o (dO H^T)
//   dk  = dA^T Q + exp(B_L - B) o (V dH^T)
//   dv  = A^T dO + (exp(B_L - B) o K) dH
//   dH' = exp(B_L) dH + scale (exp(B) o Q)^T dO    (dH at the chunk's start)
//
// and each step's log-gate gradient exp(g_t) <S_{t-1}, dS_t> from the same
// products (gateGradients). Every exponent is a difference that is <= 0.
// One instance per (kv head, sequence): a sweep forward per query head of
// the group stores the chunks' start states in scratch (G (T / C + 1) Dk
// Dv floats per thread: recomputed, not saved by the forward), then one
// sweep backward over the chunks visits the group's heads in order for
// each chunk, each head's dH kept in scratch, so dk and dv sum over the
// group in f32 in one order. Gradients of the gate's and feature map's
// float inputs go to the instance's partial copies: the result does not
// depend on the threads.
//
//===----------------------------------------------------------------------===//

#include "TileLinearBackward.h"
#include "TileBuilding.h"
#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"
#include "attnc/Conversion/KernelLowering/KernelLowering.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

class LinearBackwardProgram {
public:
  LinearBackwardProgram(LinearBackwardOp op, LoweringBuilder &rb)
      : op(op), rb(rb), b(rb.b), shape(getAttentionOperands(op, rb)),
        chunk(op.getChunk()) {
    f32 = b.getF32Type();
    dimK = tileHeadDim(op.getQ());
    dimV = tileHeadDim(op.getV());
    gated = op.getCausal() && !op.getGate().empty();
    if (op.getInitialState())
      initial = rb.params.lookup(op.getInitialState());
    if (op.getDFinalState())
      dFinal = rb.params.lookup(op.getDFinalState());
    dOut = rb.params.lookup(op.getDOut());
    for (Region *region : {&op.getGate(), &op.getFeature()})
      if (!region->empty())
        region->walk([&](LoadOp load) {
          if (load.getType().isF32())
            floatLoads.push_back({load, region});
        });
  }

  void build(ValueRange results);

private:
  /// One chunk's tiles, all of C rows (rows past the sequence end are
  /// zero); `queriesIn`/`keysIn` are before the feature map.
  struct Chunk {
    Value t0, rows;
    Value queriesIn, queries, keysIn, keys, values, dOut;
    /// Cumulative log gates (C x 1), the last step's (1 x 1).
    Value gates, lastGate;
  };

  RankedTensorType tileType(int64_t rows, int64_t cols) {
    return RankedTensorType::get({rows, cols}, f32);
  }
  /// Zeros of a tile of C rows and `cols` columns (when dynamic).
  Value zeros(RankedTensorType type, Value cols = Value()) {
    return splatTile(b, rb.f32(0), type, Value(), cols);
  }
  Value zeroState() {
    return splatTile(b, rb.f32(0), stateType, shape.dimK, shape.dimV);
  }
  Value dot(RankedTensorType type, Value lhs, Value rhs, Value acc,
            bool transposeLhs = false, bool transposeRhs = false) {
    return tile::DotOp::create(b, type, lhs, rhs, acc, transposeLhs,
                               transposeRhs);
  }
  /// x * exp(a - bTile) (or x * exp(a)), broadcasting the gate tiles.
  Value decayed(Value x, Value a, Value bTile = Value()) {
    SmallVector<Value> inputs = {x, a};
    if (bTile)
      inputs.push_back(bTile);
    return buildMap(b, cast<RankedTensorType>(x.getType()), inputs,
                    [&](ValueRange, ValueRange e) -> Value {
                      Value exponent =
                          bTile ? Value(arith::SubFOp::create(b, e[1], e[2]))
                                : e[1];
                      return rb.mul(e[0], math::ExpOp::create(b, exponent));
                    });
  }
  Value scaled(Value x) {
    return buildMap(
        b, cast<RankedTensorType>(x.getType()), {x},
        [&](ValueRange, ValueRange e) -> Value { return rb.mul(scale, e[0]); });
  }
  SmallVector<Value> rowPosition(Value h, Value t) {
    return rowLayoutIndices(shape.layout, batch, h, rb.add(start, t));
  }

  /// Chunk `chunkIndex`'s steps and, unless `withKeys` is false, its keys
  /// and values (shared by the group).
  Chunk loadKeys(Value chunkIndex, bool withKeys = true);
  /// Adds the gates of query head `head` to `c` and, unless `withRows` is
  /// false, its queries and dO.
  void loadQueries(Chunk &c, Value head, bool withRows = true);
  /// Whole C-row tile of `source` at the chunk's rows of head `h`.
  Value loadRows(Value source, Value h, const Chunk &c, int64_t cols);
  /// phi of a loaded tile, rows past the chunk's end zero.
  Value features(Value loaded, Value rows);
  /// The state at the start of each chunk of query head `head` (the
  /// group's `member`) into `starts`.
  void chunkStartStates(Value head, Value member);
  /// scale (x o D), zero above the diagonal: D[r][u] = exp(B_r - B_u).
  Value causalDecay(Value x, Value gates);
  /// The causal gradients: the sweep backward over the chunks.
  void causalGradients(Value firstHead);
  /// The gradients of the gate's inputs at one head's chunk, from its
  /// products (see the definition).
  void gateGradients(Value head, const Chunk &c, Value attention,
                     Value products, Value fromState, Value toState,
                     Value state, Value dState);
  /// hoistInvariantLoads of the gate for query head `head`.
  void hoistGateLoads(Value head);
  /// The sizes of a [count, Dk, Dv] scratch memref's dynamic dims.
  SmallVector<Value> scratchSizes(Value count) {
    SmallVector<Value> sizes = {count};
    if (ShapedType::isDynamic(dimK))
      sizes.push_back(shape.dimK);
    if (ShapedType::isDynamic(dimV))
      sizes.push_back(shape.dimV);
    return sizes;
  }
  /// The non-causal gradients (S = S_0 + sum_t k_t^T v_t, no gates).
  void nonCausalGradients(Value firstHead);
  /// d phi(x) / dx times `upstream`, and the feature map's float inputs'
  /// gradients scatter-added.
  Value throughFeatures(Value loaded, Value upstream, const Chunk &c);
  /// The gradients of the gate's float inputs at the chunk's steps, given
  /// each step's dg.
  void gateInputGradients(Value head, const Chunk &c, Value dg);
  /// Stores `value` at the chunk's rows of `dest` (head `h`).
  void storeRows(Value value, Value dest, Value h, const Chunk &c) {
    tile::StoreOp::create(b, value, dest, rowPosition(h, c.t0), c.rows,
                          shape.dims.seq);
  }
  /// scatter_add of float load `number`'s gradient over a tile of `type`
  /// whose first `rows` rows are the chunk's steps: `gradientAt` gives the
  /// expression's gradient at a position from the map's inputs there.
  void scatterLoad(
      size_t number, RankedTensorType type, Value rows, ValueRange inputs,
      llvm::function_ref<ExpressionGradient(ValueRange at, ValueRange x)>
          gradientAt);
  /// The [B, H, Dk, Dv] tile of head `h` of `memref`; an omitted
  /// optional one reads as zeros.
  Value stateTile(Value memref, Value h);
  /// Scratch state `index` of `memref` ([?, Dk, Dv]).
  Value scratchState(Value memref, Value index);
  void storeScratchState(Value state, Value memref, Value index);
  Value add(Value x, Value y) {
    return buildMap(
        b, cast<RankedTensorType>(x.getType()), {x, y},
        [&](ValueRange, ValueRange e) -> Value { return rb.add(e[0], e[1]); });
  }

  LinearBackwardOp op;
  LoweringBuilder &rb;
  ImplicitLocOpBuilder &b;
  AttentionOperands shape;
  int64_t chunk;
  Type f32;
  int64_t dimK, dimV;
  bool gated = false;
  Value initial, dFinal, dOut;
  /// The float loads of the gate and feature regions (the op's `inputs`
  /// order), and each input's partial copy.
  SmallVector<std::pair<LoadOp, Region *>> floatLoads;
  SmallVector<Value> inputGradients;
  Value dq, dk, dv, dInitial;
  Value zero, one, scale, batch, headK, start, steps, numChunks;
  /// Causal scratch: chunk start states ([G x chunkSlots, Dk, Dv], head
  /// `member`'s from member x chunkSlots) and each head's dH ([G, Dk, Dv]).
  Value starts, dStates, chunkSlots;
  RankedTensorType stateType, keyType, valueType, scoreType, gateType;
};

Value LinearBackwardProgram::loadRows(Value source, Value h, const Chunk &c,
                                      int64_t cols) {
  return tile::LoadOp::create(
      b, RankedTensorType::get({chunk, cols}, elementTypeOf(source)), source,
      rowPosition(h, c.t0), c.rows, shape.dims.seq);
}

Value LinearBackwardProgram::features(Value loaded, Value rows) {
  // Without a feature map an f32 tile is its own phi (rows past the end
  // are loaded as zeros).
  if (op.getFeature().empty() && elementTypeOf(loaded).isF32())
    return loaded;
  return buildMap(
      b, tileType(chunk, dimK), {loaded},
      [&](ValueRange at, ValueRange x) -> Value {
        Value value = x[0];
        if (!value.getType().isF32())
          value = arith::ExtFOp::create(b, f32, value);
        Value feature = rb.inlineExpression(op.getFeature(), {value}, value);
        return arith::SelectOp::create(
            b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[0], rows),
            feature, rb.f32(0));
      });
}

LinearBackwardProgram::Chunk LinearBackwardProgram::loadKeys(Value chunkIndex,
                                                             bool withKeys) {
  Chunk c;
  c.t0 = rb.mul(chunkIndex, rb.index(chunk));
  c.rows = arith::MinUIOp::create(b, rb.index(chunk), rb.sub(steps, c.t0));
  if (!withKeys)
    return c;
  c.keysIn = loadRows(shape.k, headK, c, dimK);
  c.keys = features(c.keysIn, c.rows);
  c.values = loadRows(shape.v, headK, c, dimV);
  return c;
}

void LinearBackwardProgram::loadQueries(Chunk &c, Value head, bool withRows) {
  if (withRows) {
    c.queriesIn = loadRows(shape.q, head, c, dimK);
    c.queries = features(c.queriesIn, c.rows);
    c.dOut = loadRows(dOut, head, c, dimV);
  }
  if (!gated)
    return;
  // B = cumulative sum of the checked gates; steps past the end have gate
  // 0, so their B is the last step's.
  Value lastRow = rb.sub(c.rows, one);
  Value raw = buildMap(
      b, gateType, {zeros(gateType)}, [&](ValueRange at, ValueRange) -> Value {
        Value t = rb.add(c.t0, arith::MinUIOp::create(b, at[0], lastRow));
        Value gate = rb.checkedGate(
            rb.inlineExpression(op.getGate(), {batch, head, t, zero, start},
                                rb.f32(0)),
            {batch, head, t, zero});
        return arith::SelectOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[0], c.rows),
            gate, rb.f32(0));
      });
  c.gates = tile::ScanOp::create(b, gateType, tile::ReduceKind::add, raw);
  c.lastGate = tile::SliceOp::create(b, tileType(1, 1), c.gates, lastRow, one);
}

Value LinearBackwardProgram::stateTile(Value memref, Value h) {
  auto load = [&]() -> SmallVector<Value> {
    return {tile::LoadOp::create(b, stateType, memref,
                                 ValueRange{batch, h, zero}, shape.dimK,
                                 /*row_dim=*/2)};
  };
  if (!memref)
    return zeroState();
  if (memref != initial)
    return load()[0];
  return ifAbsent(
      rb, memref, stateType, [&] { return zeroState(); },
      [&] { return load()[0]; });
}

Value LinearBackwardProgram::scratchState(Value memref, Value index) {
  return tile::LoadOp::create(b, stateType, memref, ValueRange{index, zero},
                              shape.dimK, /*row_dim=*/1);
}

void LinearBackwardProgram::storeScratchState(Value state, Value memref,
                                              Value index) {
  tile::StoreOp::create(b, state, memref, ValueRange{index, zero}, shape.dimK,
                        /*row_dim=*/1);
}

void LinearBackwardProgram::chunkStartStates(Value head, Value member) {
  Value first = rb.mul(member, chunkSlots);
  Value initialState = stateTile(initial, head);
  storeScratchState(initialState, starts, first);
  rb.loop(zero, numChunks, {initialState},
          [&](Value chunkIndex, ValueRange carried) {
            Chunk c = loadKeys(chunkIndex);
            loadQueries(c, head, /*withRows=*/false);
            // S' = exp(B_L) S + (exp(B_L - B) o K)^T V
            Value keys = c.keys, state = carried[0];
            if (gated) {
              keys = decayed(c.keys, c.lastGate, c.gates);
              state = decayed(state, c.lastGate);
            }
            Value next = dot(stateType, keys, c.values, state,
                             /*transposeLhs=*/true);
            storeScratchState(next, starts,
                              rb.add(first, rb.add(chunkIndex, one)));
            return SmallVector<Value>{next};
          });
}

Value LinearBackwardProgram::causalDecay(Value x, Value gates) {
  SmallVector<Value> inputs = {x};
  if (gates) {
    inputs.push_back(gates);
    inputs.push_back(tile::TransposeOp::create(b, tileType(1, chunk), gates));
  }
  return buildMap(
      b, scoreType, inputs, [&](ValueRange at, ValueRange e) -> Value {
        Value value = rb.mul(scale, e[0]);
        if (gates)
          value = rb.mul(value, math::ExpOp::create(
                                    b, arith::SubFOp::create(b, e[1], e[2])));
        return arith::SelectOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ule, at[1], at[0]),
            value, rb.f32(0));
      });
}

void LinearBackwardProgram::hoistGateLoads(Value head) {
  if (!gated)
    return;
  rb.hoistedLoads.clear();
  rb.hoistInvariantLoads(
      op.getGate(),
      {{gate_arg::B, batch}, {gate_arg::H, head}, {gate_arg::TStart, start}});
}

void LinearBackwardProgram::causalGradients(Value firstHead) {
  Value group = shape.groupSize;
  // Per head: the chunks' start states, and dS_T as its dH.
  rb.loop(zero, group, [&](Value member) {
    Value head = rb.add(firstHead, member);
    hoistGateLoads(head);
    chunkStartStates(head, member);
    storeScratchState(stateTile(dFinal, head), dStates, member);
  });
  // Chunks last to first; per chunk the group's heads in order.
  rb.loop(zero, numChunks, [&](Value reversed) {
    Value chunkIndex = rb.sub(rb.sub(numChunks, one), reversed);
    Chunk c = loadKeys(chunkIndex);
    SmallVector<Value> sums = rb.loop(
        zero, group, {zeros(keyType, shape.dimK), zeros(valueType, shape.dimV)},
        [&](Value member, ValueRange acc) -> SmallVector<Value> {
          Value head = rb.add(firstHead, member);
          hoistGateLoads(head);
          loadQueries(c, head);
          Value gates = gated ? c.gates : Value();
          Value state = scratchState(
              starts, rb.add(rb.mul(member, chunkSlots), chunkIndex));
          Value dState = scratchState(dStates, member);
          Value attention = causalDecay(
              dot(scoreType, c.queries, c.keys, zeros(scoreType), false, true),
              gates);
          Value products =
              dot(scoreType, c.dOut, c.values, zeros(scoreType), false, true);
          Value dAttention = causalDecay(products, gates);
          // dq = dA K + scale exp(B) o (dO H^T)
          Value fromState = scaled(dot(
              keyType, c.dOut, state, zeros(keyType, shape.dimK), false, true));
          if (gated)
            fromState = decayed(fromState, c.gates);
          Value dQuery = dot(keyType, dAttention, c.keys, fromState);
          // dk of this head: dA^T Q + exp(B_L - B) o (V dH^T)
          Value toState = dot(keyType, c.values, dState,
                              zeros(keyType, shape.dimK), false, true);
          if (gated)
            toState = decayed(toState, c.lastGate, c.gates);
          Value dKey = dot(keyType, dAttention, c.queries, toState,
                           /*transposeLhs=*/true);
          if (gated)
            gateGradients(head, c, attention, products, fromState, toState,
                          state, dState);
          // dv += A^T dO + (exp(B_L - B) o K) dH
          Value keys = gated ? decayed(c.keys, c.lastGate, c.gates) : c.keys;
          Value dValue = dot(valueType, attention, c.dOut,
                             dot(valueType, keys, dState, acc[1]),
                             /*transposeLhs=*/true);
          // dH' = exp(B_L) dH + scale (exp(B) o Q)^T dO
          Value queries =
              scaled(gated ? decayed(c.queries, c.gates) : c.queries);
          Value carried = gated ? decayed(dState, c.lastGate) : dState;
          storeScratchState(dot(stateType, queries, c.dOut, carried,
                                /*transposeLhs=*/true),
                            dStates, member);
          storeRows(throughFeatures(c.queriesIn, dQuery, c), dq, head, c);
          return {add(acc[0], dKey), dValue};
        });
    storeRows(throughFeatures(c.keysIn, sums[0], c), dk, headK, c);
    storeRows(sums[1], dv, headK, c);
  });
  if (dInitial)
    rb.loop(zero, group, [&](Value member) {
      tile::StoreOp::create(b, scratchState(dStates, member), dInitial,
                            ValueRange{batch, rb.add(firstHead, member), zero},
                            shape.dimK, /*row_dim=*/2);
    });
}

// dg_t = exp(g_t) <S_{t-1}, dS_t>, the gradient of step t's log gate, by
// the chunk's terms: with W = A o dP below the diagonal (dP = dO V^T),
// X_r = q_r . (scale exp(B_r) dO_r H^T) and Y_u = k_u . (exp(B_L - B_u)
// v_u dH^T),
//   dg_t = sum_{r >= t > u} W[r][u] + sum_{r >= t} X_r + sum_{u < t} Y_u
//          + exp(B_L) <H, dH>.
// Each term is one pair of steps' contribution (decays <= 1). The shorter
// identity dg_t = sum_{s >= t} (q_s . dq_s - k_s . dk_s) adds terms that
// cancel (a step's own product appears in both), which under strong decay
// leaves rounding errors larger than the gradient (1e-4 of it in
// test_linear_gradients.py's strong SSD case; this form stays within
// the test's 1e-5).
void LinearBackwardProgram::gateGradients(Value head, const Chunk &c,
                                          Value attention, Value products,
                                          Value fromState, Value toState,
                                          Value state, Value dState) {
  auto stepType = RankedTensorType::get({chunk}, f32);
  auto rowSums = [&](Value x, Value y) {
    return tile::ReduceOp::create(
        b, stepType, tile::ReduceKind::add,
        buildMap(b, cast<RankedTensorType>(x.getType()), {x, y},
                 [&](ValueRange, ValueRange e) -> Value {
                   return rb.mul(e[0], e[1]);
                 }));
  };
  auto scan = [&](Value x) {
    return tile::ScanOp::create(b, stepType, tile::ReduceKind::add, x);
  };
  // The pairs u < t <= r: column sums of W's rows from t on, by a scan of
  // W^T over u (row t of it holds sum_{u <= t} W[r][u] per r).
  Value weights = buildMap(
      b, scoreType, {attention, products},
      [&](ValueRange at, ValueRange e) -> Value {
        return arith::SelectOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[1], at[0]),
            rb.mul(e[0], e[1]), rb.f32(0));
      });
  Value transposed = tile::TransposeOp::create(b, scoreType, weights);
  Value upTo =
      tile::ScanOp::create(b, scoreType, tile::ReduceKind::add, transposed);
  Value pairs = tile::ReduceOp::create(
      b, stepType, tile::ReduceKind::add,
      buildMap(b, scoreType, {upTo, transposed},
               [&](ValueRange at, ValueRange e) -> Value {
                 return arith::SelectOp::create(
                     b,
                     arith::CmpIOp::create(b, arith::CmpIPredicate::uge, at[1],
                                           at[0]),
                     arith::SubFOp::create(b, e[0], e[1]), rb.f32(0));
               }));
  Value fromStart = rowSums(c.queries, fromState);
  Value toEnd = rowSums(c.keys, toState);
  Value fromStartTotal =
      tile::ReduceOp::create(b, f32, tile::ReduceKind::add, fromStart);
  Value through = tile::ReduceOp::create(
      b, f32, tile::ReduceKind::add,
      tile::ReduceOp::create(
          b, RankedTensorType::get({dimK}, f32), tile::ReduceKind::add,
          buildMap(b, stateType, {state, dState, c.lastGate},
                   [&](ValueRange, ValueRange e) -> Value {
                     return rb.mul(rb.mul(e[0], e[1]),
                                   math::ExpOp::create(b, e[2]));
                   })));
  Value dGate = buildMap(
      b, stepType, {pairs, fromStart, scan(fromStart), toEnd, scan(toEnd)},
      [&](ValueRange, ValueRange e) -> Value {
        Value later =
            rb.add(arith::SubFOp::create(b, fromStartTotal, e[2]), e[1]);
        Value earlier = arith::SubFOp::create(b, e[4], e[3]);
        return rb.add(rb.add(e[0], later), rb.add(earlier, through));
      });
  gateInputGradients(head, c, dGate);
}

void LinearBackwardProgram::nonCausalGradients(Value firstHead) {
  Value group = shape.groupSize;
  // KV = sum_t k_t^T v_t (shared by the group).
  Value keysValues = rb.loop(
      zero, numChunks, {zeroState()}, [&](Value chunkIndex, ValueRange acc) {
        Chunk c = loadKeys(chunkIndex);
        return SmallVector<Value>{dot(stateType, c.keys, c.values, acc[0],
                                      /*transposeLhs=*/true)};
      })[0];
  // Per head: dS = dS_T + scale sum_t q_t^T dO_t (also d_h0) and dq = scale
  // dO (S_0 + KV)^T; dS summed over the group for dk and dv.
  Value dStateSum = rb.loop(
      zero, group, {zeroState()},
      [&](Value member, ValueRange acc) -> SmallVector<Value> {
        Value head = rb.add(firstHead, member);
        Value state = add(stateTile(initial, head), keysValues);
        Value dState = rb.loop(zero, numChunks, {stateTile(dFinal, head)},
                               [&](Value chunkIndex, ValueRange sum) {
                                 Chunk c =
                                     loadKeys(chunkIndex, /*withKeys=*/false);
                                 loadQueries(c, head);
                                 return SmallVector<Value>{
                                     dot(stateType, scaled(c.queries), c.dOut,
                                         sum[0], /*transposeLhs=*/true)};
                               })[0];
        if (dInitial)
          tile::StoreOp::create(b, dState, dInitial,
                                ValueRange{batch, head, zero}, shape.dimK,
                                /*row_dim=*/2);
        rb.loop(zero, numChunks, [&](Value chunkIndex) {
          Chunk c = loadKeys(chunkIndex, /*withKeys=*/false);
          loadQueries(c, head);
          Value dQuery = scaled(dot(keyType, c.dOut, state,
                                    zeros(keyType, shape.dimK), false, true));
          storeRows(throughFeatures(c.queriesIn, dQuery, c), dq, head, c);
        });
        return {add(acc[0], dState)};
      })[0];
  // dk = v dS^T, dv = k dS.
  rb.loop(zero, numChunks, [&](Value chunkIndex) {
    Chunk c = loadKeys(chunkIndex);
    Value dKey = dot(keyType, c.values, dStateSum, zeros(keyType, shape.dimK),
                     false, true);
    storeRows(throughFeatures(c.keysIn, dKey, c), dk, headK, c);
    storeRows(dot(valueType, c.keys, dStateSum, zeros(valueType, shape.dimV)),
              dv, headK, c);
  });
}

void LinearBackwardProgram::scatterLoad(
    size_t number, RankedTensorType type, Value rows, ValueRange inputs,
    llvm::function_ref<ExpressionGradient(ValueRange, ValueRange)> gradientAt) {
  LoadOp load = floatLoads[number].first;
  // The load's place among its region's float loads (ExpressionGradient
  // lists a region's loads in order).
  size_t inRegion = 0;
  for (size_t earlier = 0; earlier < number; ++earlier)
    inRegion += floatLoads[earlier].second == floatLoads[number].second;
  // A map of `pick` at the chunk's rows, `otherwise` past its end.
  auto evaluate = [&](double otherwise,
                      llvm::function_ref<Value(ExpressionGradient &)> pick) {
    return buildMap(b, type, inputs, [&](ValueRange at, ValueRange x) -> Value {
      return rb.ifThen(
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[0], rows),
          {f32},
          [&]() -> SmallVector<Value> {
            ExpressionGradient gradient = gradientAt(at, x);
            return {pick(gradient)};
          },
          [&]() -> SmallVector<Value> { return {rb.f32(otherwise)}; })[0];
    });
  };
  Value gradient = evaluate(
      0, [&](ExpressionGradient &g) { return g.loads[inRegion].gradient; });
  SmallVector<Value> positions;
  for (size_t dim = 0; dim < load.getIndices().size(); ++dim)
    positions.push_back(evaluate(-1, [&](ExpressionGradient &g) {
      return rb.indexToF32(g.loads[inRegion].indices[dim]);
    }));
  auto input = llvm::find(op.getInputs(), load.getTensor());
  tile::ScatterAddOp::create(b, load.getLoc(), gradient, positions,
                             inputGradients[input - op.getInputs().begin()]);
}

Value LinearBackwardProgram::throughFeatures(Value loaded, Value upstream,
                                             const Chunk &c) {
  if (op.getFeature().empty())
    return upstream;
  auto gradientAt = [&](ValueRange, ValueRange x) {
    Value value = x[0];
    if (!value.getType().isF32())
      value = arith::ExtFOp::create(b, f32, value);
    return inlineExpressionGradient(rb, op.getFeature(), {value}, x[1]);
  };
  auto type = tileType(chunk, dimK);
  for (size_t number = 0; number < floatLoads.size(); ++number)
    if (floatLoads[number].second == &op.getFeature())
      scatterLoad(number, type, c.rows, {loaded, upstream}, gradientAt);
  return buildMap(b, type, {loaded, upstream},
                  [&](ValueRange at, ValueRange x) -> Value {
                    Value d = gradientAt(at, x).arguments[0];
                    return d ? d : rb.f32(0);
                  });
}

void LinearBackwardProgram::gateInputGradients(Value head, const Chunk &c,
                                               Value dg) {
  for (size_t number = 0; number < floatLoads.size(); ++number)
    if (floatLoads[number].second == &op.getGate())
      scatterLoad(number, gateType, c.rows, {c.gates, dg},
                  [&](ValueRange at, ValueRange x) {
                    return inlineExpressionGradient(
                        rb, op.getGate(),
                        {batch, head, rb.add(c.t0, at[0]), zero, start}, x[1]);
                  });
}

void LinearBackwardProgram::build(ValueRange results) {
  dq = results[0];
  dk = results[1];
  dv = results[2];
  size_t next = 3;
  if (initial)
    dInitial = results[next++];
  inputGradients = usePartialResults(b, results.drop_front(next));
  zero = rb.index(0);
  one = rb.index(1);
  scale = rb.f32(op.getScale().convertToDouble());
  stateType = tileType(dimK, dimV);
  keyType = tileType(chunk, dimK);
  valueType = tileType(chunk, dimV);
  scoreType = tileType(chunk, chunk);
  gateType = tileType(chunk, 1);
  // Causal scratch, allocated once per call (per thread) and reused by its
  // instances: room for the longest sequence's chunks.
  if (op.getCausal()) {
    int64_t dynamic = ShapedType::kDynamic;
    auto stateScratch = MemRefType::get({dynamic, dimK, dimV}, f32);
    chunkSlots = rb.add(
        arith::CeilDivUIOp::create(b, shape.lengthQ, rb.index(chunk)), one);
    starts = memref::AllocOp::create(
        b, stateScratch, scratchSizes(rb.mul(shape.groupSize, chunkSlots)));
    dStates =
        memref::AllocOp::create(b, stateScratch, scratchSizes(shape.groupSize));
  }
  auto grid = tile::GridOp::create(b, shape.headsK, shape.numBatches, chunk,
                                   /*perSequence=*/true);
  if (op.getCausal()) {
    OpBuilder::InsertionGuard afterGrid(b);
    b.setInsertionPointAfter(grid);
    for (Value buffer : {starts, dStates})
      memref::DeallocOp::create(b, buffer);
  }
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(grid.getBody().front().getTerminator());
  batch = grid.getBatch();
  headK = grid.getHead();
  std::tie(start, steps) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
  checkSequence(rb, shape.cuQ, batch, start, steps, shape.lengthQ);
  numChunks = arith::CeilDivUIOp::create(b, steps, rb.index(chunk));
  Value firstHead = rb.mul(headK, shape.groupSize);
  if (op.getCausal())
    causalGradients(firstHead);
  else
    nonCausalGradients(firstHead);
}

} // namespace

void attnc::lowering::buildLinearBackwardProgram(LinearBackwardOp op,
                                                 LoweringBuilder &rb,
                                                 ValueRange results) {
  LinearBackwardProgram(op, rb).build(results);
}
