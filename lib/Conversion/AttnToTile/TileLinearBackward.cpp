//===- TileLinearBackward.cpp - Chunkwise linear backward as tiles --------===//
//
// The tile program of attn.linear_backward (docs/tile.md, "The linear
// backward"). With q, k the feature-mapped q and k, B the chunk's
// cumulative log gates (B_L the last step's), H the state at the chunk's
// start and dH the gradient of the state at its end, for scalar gates:
//
//   A   = scale (Q K^T o D),  dA = scale (dO V^T o D),
//         D[r][u] = exp(B_r - B_u) for u <= r, else 0
//   dq  = dA K + scale exp(B) o (dO H^T)
//   dk  = dA^T Q + exp(B_L - B) o (V dH^T)
//   dv  = A^T dO + (exp(B_L - B) o K) dH
//   dH' = exp(B_L) dH + scale (exp(B) o Q)^T dO    (dH at the chunk's start)
//
// and each step's log-gate gradient exp(g_t) <S_{t-1}, dS_t> from the same
// products (gateGradients). Gates per key dimension keep the state terms
// and take the intra-chunk ones by sub-tiles (perKeyDimIntra,
// TileLinearBackwardGates.cpp). Every exponent is a difference that is
// <= 0.
// One instance per (kv head, sequence): a sweep forward per query head of
// the group stores the chunks' start states in scratch (G (T / C + 1) Dk
// Dv floats per thread: recomputed, not saved by the forward), then one
// sweep backward over the chunks visits the group's heads in order twice
// for each chunk (dq and dk, then dv and dH; A is computed in both), each
// head's dH kept in scratch, so dk and dv sum over the group in f32 in one
// order. Gradients of the gate's and feature map's
// float inputs are stored where each step reads its own element of a gate
// tensor (directRowDim), else scatter-added into the instance's partial
// copies: the result does not depend on the threads.
//
//===----------------------------------------------------------------------===//

#include "TileLinearBackward.h"
#include "LinearBackwardProgram.h"
#include "attnc/Conversion/KernelLowering/KernelLowering.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

Value LinearBackwardProgram::loadRows(Value source, Value h, const Chunk &c,
                                      int64_t cols, Value column) {
  return tile::LoadOp::create(
      b, RankedTensorType::get({chunk, cols}, elementTypeOf(source)), source,
      atColumn(rowPosition(h, c.t0), column), c.rows, shape.dims.seq);
}

Value LinearBackwardProgram::features(Value loaded, Value rows) {
  // Without a feature map a tile is its own phi (rows past the end are
  // loaded as zeros); 16-bit tiles stay 16-bit (on the GPU they stay in
  // shared memory, not registers; maps and the decay ops widen their
  // elements).
  if (op.getFeature().empty())
    return loaded;
  return buildMap(
      b, asF32(loaded), {loaded}, [&](ValueRange at, ValueRange x) -> Value {
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
  if (wholeKeys) {
    c.keysIn = loadRows(shape.k, headK, c, dimK);
    c.keys = features(c.keysIn, c.rows);
  }
  if (wholeValues)
    c.values = loadRows(shape.v, headK, c, dimV);
  return c;
}

void LinearBackwardProgram::loadQueries(Chunk &c, Value head, bool withRows) {
  if (withRows) {
    if (wholeKeys) {
      c.queriesIn = loadRows(shape.q, head, c, dimK);
      c.queries = features(c.queriesIn, c.rows);
    }
    if (wholeValues)
      c.dOut = loadRows(dOut, head, c, dimV);
  }
  if (!gated)
    return;
  // B = cumulative sum of the checked gates; steps past the end have gate
  // 0, so their B is the last step's.
  Value lastRow = rb.sub(c.rows, one);
  Value raw = buildMap(
      b, gateType, {zeros(gateType, shape.dimK)},
      [&](ValueRange at, ValueRange) -> Value {
        Value t = rb.add(c.t0, arith::MinUIOp::create(b, at[0], lastRow));
        Value d = perKeyDim ? at[1] : zero;
        Value gate = rb.checkedGate(
            rb.inlineExpression(op.getGate(), {batch, head, t, d, start},
                                rb.f32(0)),
            {batch, head, t, d});
        return arith::SelectOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ult, at[0], c.rows),
            gate, rb.f32(0));
      });
  c.gates = tile::ScanOp::create(b, gateType, tile::ReduceKind::add, raw);
  int64_t gateCols = gateType.getDimSize(1);
  c.lastGate =
      tile::SliceOp::create(b, tileType(1, gateCols), c.gates, lastRow, one);
  c.lastGateColumn =
      perKeyDim ? Value(tile::TransposeOp::create(b, tileType(gateCols, 1),
                                                  c.lastGate))
                : c.lastGate;
  if (perKeyDim && withRows) {
    storeScratchRows(c.gates, gateScratch, zero, rb.index(chunk));
    c.gatesStored = true;
  }
}

Value LinearBackwardProgram::stateTile(Value memref, Value h, Value row,
                                       Value column) {
  auto load = [&]() -> SmallVector<Value> {
    return {tile::LoadOp::create(b, stateBlockType, memref,
                                 atColumn({batch, h, row ? row : zero}, column),
                                 stateBlockRows, /*row_dim=*/2)};
  };
  if (!memref)
    return zeroStateBlock();
  if (memref != initial)
    return load()[0];
  return ifAbsent(
      rb, memref, stateBlockType, [&] { return zeroStateBlock(); },
      [&] { return load()[0]; });
}

Value LinearBackwardProgram::scratchState(Value memref, Value index, Value row,
                                          Value column) {
  return tile::LoadOp::create(b, stateBlockType, memref,
                              atColumn({index, row ? row : zero}, column),
                              stateBlockRows, /*row_dim=*/1);
}

void LinearBackwardProgram::storeScratchState(Value state, Value memref,
                                              Value index, Value row,
                                              Value column) {
  tile::StoreOp::create(b, state, memref,
                        atColumn({index, row ? row : zero}, column),
                        stateBlockRows, /*row_dim=*/1);
}

Value LinearBackwardProgram::scores(const Chunk &c, Value head) {
  return overKeyBlocks({zeros(scoreType)},
                       [&](Value column, ValueRange sum) -> SmallVector<Value> {
                         return {dot(scoreType, keyRows(c, column, head).second,
                                     keyRows(c, column).second, sum[0], false,
                                     /*transposeRhs=*/true)};
                       })[0];
}

void LinearBackwardProgram::chunkStartStates(Value head, Value member) {
  Value first = rb.mul(member, chunkSlots);
  overStateBlocks([&](Value row, Value column) {
    Value initialState = stateTile(initial, head, row, column);
    storeScratchState(initialState, starts, first, row, column);
    rb.loop(zero, numChunks, {initialState},
            [&](Value chunkIndex, ValueRange carried) {
              Chunk c = loadKeys(chunkIndex);
              loadQueries(c, head, /*withRows=*/false);
              // S' = exp(B_L) S + (exp(B_L - B) o K)^T V
              Value keys = keyRows(c, row).second, state = carried[0];
              if (gated) {
                keys = decayed(keys, c.lastGate, c.gates);
                state = decayed(state, c.lastGateColumn);
              }
              Value next = dot(stateBlockType, keys, valueRows(c, column),
                               state, /*transposeLhs=*/true);
              storeScratchState(next, starts,
                                rb.add(first, rb.add(chunkIndex, one)), row,
                                column);
              return SmallVector<Value>{next};
            });
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
    overStateBlocks([&](Value row, Value column) {
      storeScratchState(stateTile(dFinal, head, row, column), dStates, member,
                        row, column);
    });
  });
  // Chunks last to first; per chunk the group's heads in order, twice: dq,
  // dk and the gates' gradients, then dv and dH moved to the chunk's start.
  // Two sweeps keep fewer tiles alive at once (each holds one sum over the
  // group); the second recomputes A. By key blocks, dk's sum over the
  // group goes through dkScratch.
  rb.loop(zero, numChunks, [&](Value reversed) {
    Value chunkIndex = rb.sub(rb.sub(numChunks, one), reversed);
    Chunk c = loadKeys(chunkIndex);
    Value chunkRows = rb.index(chunk);
    if (perKeyDim) {
      storeScratchRows(zeros(keyType, shape.dimK), dkScratch, zero, chunkRows);
      storeScratchRows(zeros(valueType, shape.dimV), dvScratch, zero,
                       chunkRows);
    }
    if (!wholeKeys)
      overKeyBlocks([&](Value column) {
        storeScratchRows(zeros(keyBlockType), dkScratch, zero, chunkRows,
                         column);
      });
    // `term(head, member, sums)` summed over the group's heads in order,
    // each head's gates, queries and dO loaded into `c` first.
    auto sumOverHeads =
        [&](ValueRange init,
            function_ref<SmallVector<Value>(Value, Value, ValueRange)> term) {
          return rb.loop(zero, group, init, [&](Value member, ValueRange sums) {
            Value head = rb.add(firstHead, member);
            hoistGateLoads(head);
            loadQueries(c, head);
            return term(head, member, sums);
          });
        };
    // dk's sum over the group: carried by the loop with whole keys and
    // scalar gates, else in dkScratch.
    bool carriesKeySum = wholeKeys && !perKeyDim;
    SmallVector<Value> dKeySum = sumOverHeads(
        carriesKeySum ? SmallVector<Value>{zeros(keyType, shape.dimK)}
                      : SmallVector<Value>{},
        [&](Value head, Value member, ValueRange acc) -> SmallVector<Value> {
          Value slot = rb.add(rb.mul(member, chunkSlots), chunkIndex);
          // Gates per key dim decay the columns (d) of the products through
          // the states: scale exp(B) o (dO H^T) of dq, exp(B_L - B) o
          // (V dH^T) of dk.
          if (perKeyDim) {
            // The states are loaded after the sub-tiles (not alive through
            // them), and each product through them is used up (stored, its
            // gate terms added to dgScratch) before the next exists.
            perKeyDimIntra(c);
            Value fromState =
                scaled(dot(keyType, c.dOut, scratchState(starts, slot),
                           zeros(keyType, shape.dimK), false,
                           /*transposeRhs=*/true),
                       gatesOf(c));
            if (gateReadsFloats)
              addStateGateTerms(c.queries, fromState, /*queries=*/true);
            storeRows(throughFeatures(
                          c.queriesIn,
                          add(scratchRows(dqScratch, zero, chunkRows, keyType),
                              fromState),
                          c),
                      dq, head, c);
            Value dKey =
                decayed(dot(keyType, c.values, scratchState(dStates, member),
                            zeros(keyType, shape.dimK), false,
                            /*transposeRhs=*/true),
                        c.lastGate, gatesOf(c));
            if (gateReadsFloats)
              addStateGateTerms(c.keys, dKey, /*queries=*/false);
            storeScratchRows(
                add(scratchRows(dkScratch, zero, chunkRows, keyType), dKey),
                dkScratch, zero, chunkRows);
            if (gateReadsFloats)
              gateInputGradients(
                  head, c,
                  perKeyDimGateGradients(c, scratchState(starts, slot),
                                         scratchState(dStates, member)));
            return {};
          }
          // Scalar gates decay rows: dq = dA K + scale exp(B) o (dO H^T)
          // and dk += dA^T Q + (exp(B_L - B) o V) dH^T, by key blocks (and
          // each product through the states summed over the value blocks
          // in place), dq's block stored before dk's products exist, and
          // with gate gradients each term reduced to one value per step
          // as soon as it exists.
          Value products = overValueBlocks(
              {zeros(scoreType)},
              [&](Value column, ValueRange sum) -> SmallVector<Value> {
                return {dot(scoreType, valueRows(c, column, head),
                            valueRows(c, column), sum[0], false,
                            /*transposeRhs=*/true)};
              })[0];
          // W = A o dP = dA o (Q K^T): dP is dead once dA exists.
          Value dAttention = causalDecay(products, c.gates);
          Value pairs;
          if (gateReadsFloats)
            pairs = gatePairTerms(dAttention, scores(c, head));
          // Carried over the key blocks: dk's sum (whole keys), then with
          // gate gradients the row sums of q o fromState and k o toState,
          // and those of exp(B_L) H o dH.
          SmallVector<Value> init(acc);
          if (gateReadsFloats)
            init.append(
                {zeros(stepType), zeros(stepType),
                 splatTile(b, rb.f32(0), RankedTensorType::get({keyCols}, f32),
                           shape.dimK, Value())});
          SmallVector<Value> sums = overKeyBlocks(
              init,
              [&](Value keyColumn, ValueRange carried) -> SmallVector<Value> {
                ValueRange gateSums;
                if (gateReadsFloats)
                  gateSums = carried.take_back(3);
                auto [queriesIn, queries] = keyRows(c, keyColumn, head);
                auto [keysIn, keys] = keyRows(c, keyColumn);
                // (scale exp(B) o dO) H^T = scale exp(B) o (dO H^T): dO
                // stays in its own type, the rows scaled once.
                Value fromState = scaled(
                    overValueBlocks(
                        {zeros(keyBlockType, shape.dimK)},
                        [&](Value column,
                            ValueRange sum) -> SmallVector<Value> {
                          return {
                              dot(keyBlockType, valueRows(c, column, head),
                                  scratchState(starts, slot, keyColumn, column),
                                  sum[0], false, /*transposeRhs=*/true)};
                        })[0],
                    c.gates);
                Value fromStart;
                if (gateReadsFloats)
                  fromStart = add(gateSums[0], rowSums(queries, fromState));
                Value dQuery = dot(keyBlockType, dAttention, keys, fromState);
                storeRows(throughFeatures(queriesIn, dQuery, c), dq, head, c,
                          keyColumn);
                Value dKey =
                    dot(keyBlockType, dAttention, queries,
                        wholeKeys ? carried[0]
                                  : scratchRows(dkScratch, zero, chunkRows,
                                                keyBlockType, keyColumn),
                        /*transposeLhs=*/true);
                auto toEnd = [&](Value column, Value dState, Value sum) {
                  Value values = valueRows(c, column);
                  if (gated)
                    values = decayed(values, c.lastGate, c.gates);
                  return dot(keyBlockType, values, dState, sum, false,
                             /*transposeRhs=*/true);
                };
                SmallVector<Value> next;
                if (!gateReadsFloats) {
                  dKey = overValueBlocks({dKey}, [&](Value column,
                                                     ValueRange sum) {
                    return SmallVector<Value>{
                        toEnd(column,
                              scratchState(dStates, member, keyColumn, column),
                              sum[0])};
                  })[0];
                } else {
                  // (exp(B_L - B) o V) dH^T apart, and the row sums of
                  // exp(B_L) H o dH for the gates' state term.
                  SmallVector<Value> ends = overValueBlocks(
                      {zeros(keyBlockType, shape.dimK), gateSums[2]},
                      [&](Value column, ValueRange sum) -> SmallVector<Value> {
                        Value dState =
                            scratchState(dStates, member, keyColumn, column);
                        Value product = buildMap(
                            b, stateBlockType,
                            {scratchState(starts, slot, keyColumn, column),
                             dState, c.lastGate},
                            [&](ValueRange, ValueRange e) -> Value {
                              return rb.mul(rb.mul(e[0], e[1]),
                                            math::ExpOp::create(b, e[2]));
                            });
                        return {
                            toEnd(column, dState, sum[0]),
                            add(sum[1], tile::ReduceOp::create(
                                            b, sum[1].getType(),
                                            tile::ReduceKind::add, product))};
                      });
                  dKey = add(dKey, ends[0]);
                  next = {fromStart, add(gateSums[1], rowSums(keys, ends[0])),
                          ends[1]};
                }
                if (!wholeKeys) {
                  storeScratchRows(dKey, dkScratch, zero, chunkRows, keyColumn);
                  return next;
                }
                next.insert(next.begin(), dKey);
                return next;
              });
          if (gateReadsFloats) {
            ValueRange gateSums = ValueRange(sums).take_back(3);
            gateGradients(head, c, pairs, gateSums[0], gateSums[1],
                          gateSums[2]);
          }
          return carriesKeySum ? SmallVector<Value>{sums[0]}
                               : SmallVector<Value>{};
        });
    if (perKeyDim) {
      storeRows(
          throughFeatures(c.keysIn,
                          scratchRows(dkScratch, zero, chunkRows, keyType), c),
          dk, headK, c);
    } else if (wholeKeys) {
      storeRows(throughFeatures(c.keysIn, dKeySum[0], c), dk, headK, c);
    } else {
      overKeyBlocks([&](Value column) {
        Value dKey =
            scratchRows(dkScratch, zero, chunkRows, keyBlockType, column);
        storeRows(throughFeatures(keyRows(c, column).first, dKey, c), dk, headK,
                  c, column);
      });
    }
    // By value blocks: dv's block and dH's columns of it. dv's sum over
    // the group: carried by the loop with scalar gates, else in dvScratch
    // (after the sub-tiles' terms).
    overValueBlocks([&](Value column) {
      SmallVector<Value> dValueSum = sumOverHeads(
          perKeyDim ? SmallVector<Value>{}
                    : SmallVector<Value>{zeros(valueBlockType, shape.dimV)},
          [&](Value head, Value member, ValueRange acc) -> SmallVector<Value> {
            Value dOutRows = valueRows(c, column, head);
            if (perKeyDim) {
              // dv = (exp(B_L - B) o K) dH (+ the sub-tiles' terms)
              // dH' = exp(B_L) dH + scale (exp(B) o Q)^T dO
              Value dState = scratchState(dStates, member, Value(), column);
              storeScratchRows(
                  add(scratchRows(dvScratch, zero, chunkRows, valueType),
                      dot(valueType, decayed(c.keys, c.lastGate, gatesOf(c)),
                          dState, zeros(valueType, shape.dimV))),
                  dvScratch, zero, chunkRows);
              storeScratchState(dot(stateBlockType,
                                    scaled(c.queries, gatesOf(c)), dOutRows,
                                    decayed(dState, c.lastGateColumn),
                                    /*transposeLhs=*/true),
                                dStates, member, Value(), column);
              return {};
            }
            // Scalar gates decay rows: dv = A^T dO + exp(B_L - B) o (K dH)
            // and dH' = exp(B_L) dH + Q^T (scale exp(B) o dO), so that K
            // and Q stay in their own type; K dH and dH' by key blocks.
            Value dValue = overKeyBlocks(
                {gated ? zeros(valueBlockType, shape.dimV) : acc[0]},
                [&](Value row, ValueRange sum) -> SmallVector<Value> {
                  return {dot(valueBlockType, keyRows(c, row).second,
                              scratchState(dStates, member, row, column),
                              sum[0])};
                })[0];
            if (gated)
              dValue = buildMap(b, valueBlockType,
                                {acc[0], dValue, c.lastGate, gatesOf(c)},
                                [&](ValueRange, ValueRange e) -> Value {
                                  Value decay = math::ExpOp::create(
                                      b, arith::SubFOp::create(b, e[2], e[3]));
                                  return rb.add(e[0], rb.mul(e[1], decay));
                                });
            Value attention = causalDecay(scores(c, head), c.gates);
            dValue = dot(valueBlockType, attention, dOutRows, dValue,
                         /*transposeLhs=*/true);
            overKeyBlocks([&](Value row) {
              Value dState = scratchState(dStates, member, row, column);
              if (gated)
                dState = decayed(dState, c.lastGateColumn);
              storeScratchState(dot(stateBlockType,
                                    keyRows(c, row, head).second,
                                    scaled(dOutRows, c.gates), dState,
                                    /*transposeLhs=*/true),
                                dStates, member, row, column);
            });
            return {dValue};
          });
      storeRows(perKeyDim ? scratchRows(dvScratch, zero, chunkRows, valueType)
                          : dValueSum[0],
                dv, headK, c, column);
    });
  });
  if (dInitial)
    rb.loop(zero, group, [&](Value member) {
      overStateBlocks([&](Value row, Value column) {
        tile::StoreOp::create(
            b, scratchState(dStates, member, row, column), dInitial,
            atColumn({batch, rb.add(firstHead, member), row ? row : zero},
                     column),
            stateBlockRows, /*row_dim=*/2);
      });
    });
}

void LinearBackwardProgram::nonCausalGradients(Value firstHead) {
  Value group = shape.groupSize;
  // Scratch state 0 holds KV, 1 the group's summed dS, by state blocks.
  Value keysValuesSlot = zero, dStateSlot = one;
  // KV = sum_t k_t^T v_t (shared by the group).
  overStateBlocks([&](Value row, Value column) {
    Value keysValues =
        rb.loop(zero, numChunks, {zeroStateBlock()},
                [&](Value chunkIndex, ValueRange acc) {
                  Chunk c = loadKeys(chunkIndex);
                  return SmallVector<Value>{dot(stateBlockType,
                                                keyRows(c, row).second,
                                                valueRows(c, column), acc[0],
                                                /*transposeLhs=*/true)};
                })[0];
    storeScratchState(keysValues, stateSums, keysValuesSlot, row, column);
  });
  // Per head: dq = scale dO (S_0 + KV)^T, by key blocks, each summed over
  // the value blocks.
  rb.loop(zero, group, [&](Value member) {
    Value head = rb.add(firstHead, member);
    rb.loop(zero, numChunks, [&](Value chunkIndex) {
      Chunk c = loadKeys(chunkIndex, /*withKeys=*/false);
      loadQueries(c, head);
      overKeyBlocks([&](Value row) {
        Value dQuery = overValueBlocks(
            {zeros(keyBlockType, shape.dimK)},
            [&](Value column, ValueRange acc) -> SmallVector<Value> {
              Value state =
                  add(stateTile(initial, head, row, column),
                      scratchState(stateSums, keysValuesSlot, row, column));
              return {dot(keyBlockType, valueRows(c, column, head), state,
                          acc[0], false, /*transposeRhs=*/true)};
            })[0];
        storeRows(
            throughFeatures(keyRows(c, row, head).first, scaled(dQuery), c), dq,
            head, c, row);
      });
    });
  });
  // Per head (after dq's sweep, so that KV and dS are not held at once):
  // dS = dS_T + sum_t q_t^T (scale dO_t) (also d_h0), summed over the
  // group for dk and dv.
  overStateBlocks([&](Value row, Value column) {
    Value dStateSum =
        rb.loop(zero, group, {zeroStateBlock()},
                [&](Value member, ValueRange acc) -> SmallVector<Value> {
                  Value head = rb.add(firstHead, member);
                  Value dState = rb.loop(
                      zero, numChunks, {stateTile(dFinal, head, row, column)},
                      [&](Value chunkIndex, ValueRange sum) {
                        Chunk c = loadKeys(chunkIndex, /*withKeys=*/false);
                        loadQueries(c, head);
                        return SmallVector<Value>{
                            dot(stateBlockType, keyRows(c, row, head).second,
                                scaled(valueRows(c, column, head)), sum[0],
                                /*transposeLhs=*/true)};
                      })[0];
                  if (dInitial)
                    tile::StoreOp::create(
                        b, dState, dInitial,
                        atColumn({batch, head, row ? row : zero}, column),
                        stateBlockRows, /*row_dim=*/2);
                  return {add(acc[0], dState)};
                })[0];
    storeScratchState(dStateSum, stateSums, dStateSlot, row, column);
  });
  // dk = v dS^T by key blocks summed over the value blocks, dv = k dS by
  // value blocks summed over the key blocks.
  rb.loop(zero, numChunks, [&](Value chunkIndex) {
    Chunk c = loadKeys(chunkIndex);
    overKeyBlocks([&](Value row) {
      Value dKey = overValueBlocks(
          {zeros(keyBlockType, shape.dimK)},
          [&](Value column, ValueRange acc) -> SmallVector<Value> {
            return {dot(keyBlockType, valueRows(c, column),
                        scratchState(stateSums, dStateSlot, row, column),
                        acc[0], false, /*transposeRhs=*/true)};
          })[0];
      storeRows(throughFeatures(keyRows(c, row).first, dKey, c), dk, headK, c,
                row);
    });
    overValueBlocks([&](Value column) {
      Value dValue = overKeyBlocks(
          {zeros(valueBlockType, shape.dimV)},
          [&](Value row, ValueRange acc) -> SmallVector<Value> {
            return {dot(valueBlockType, keyRows(c, row).second,
                        scratchState(stateSums, dStateSlot, row, column),
                        acc[0])};
          })[0];
      storeRows(dValue, dv, headK, c, column);
    });
  });
}

Value LinearBackwardProgram::loadGradient(
    size_t number, RankedTensorType type, Value rows, ValueRange inputs,
    llvm::function_ref<ExpressionGradient(ValueRange, ValueRange)> gradientAt,
    SmallVector<Value> *positions) {
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
  if (positions)
    for (size_t dim = 0; dim < load.getIndices().size(); ++dim)
      positions->push_back(evaluate(-1, [&](ExpressionGradient &g) {
        return rb.indexToF32(g.loads[inRegion].indices[dim]);
      }));
  return evaluate(
      0, [&](ExpressionGradient &g) { return g.loads[inRegion].gradient; });
}

void LinearBackwardProgram::scatterLoad(
    size_t number, RankedTensorType type, Value rows, ValueRange inputs,
    llvm::function_ref<ExpressionGradient(ValueRange, ValueRange)> gradientAt) {
  LoadOp load = floatLoads[number].first;
  SmallVector<Value> positions;
  Value gradient =
      loadGradient(number, type, rows, inputs, gradientAt, &positions);
  tile::ScatterAddOp::create(b, load.getLoc(), gradient, positions,
                             inputGradient(load));
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
  auto type = asF32(upstream);
  for (size_t number = 0; number < floatLoads.size(); ++number)
    if (floatLoads[number].second == &op.getFeature())
      scatterLoad(number, type, c.rows, {loaded, upstream}, gradientAt);
  return buildMap(b, type, {loaded, upstream},
                  [&](ValueRange at, ValueRange x) -> Value {
                    Value d = gradientAt(at, x).arguments[0];
                    return d ? d : rb.f32(0);
                  });
}

void LinearBackwardProgram::build(ValueRange results) {
  dq = results[0];
  dk = results[1];
  dv = results[2];
  size_t next = 3;
  if (initial)
    dInitial = results[next++];
  // Gradients that every instance writes at its own elements are stored;
  // the others are scatter-adds into partial copies.
  SmallVector<Value> scattered;
  for (auto [input, gradient] :
       llvm::zip_equal(op.getInputs(), results.drop_front(next))) {
    inputGradients.push_back(gradient);
    bool stored = false;
    for (auto &[load, region] : floatLoads)
      stored |= load.getTensor() == input && directRowDim(load);
    if (!stored)
      scattered.push_back(gradient);
  }
  usePartialResults(b, scattered);
  zero = rb.index(0);
  one = rb.index(1);
  scale = rb.f32(op.getScale().convertToDouble());
  stateType = tileType(dimK, dimV);
  keyType = tileType(chunk, dimK);
  valueType = tileType(chunk, dimV);
  stateBlockType = tileType(keyCols, valueCols);
  valueBlockType = tileType(chunk, valueCols);
  keyBlockType = tileType(chunk, keyCols);
  scoreType = tileType(chunk, chunk);
  stepType = RankedTensorType::get({chunk}, f32);
  gateType = tileType(chunk, perKeyDim ? dimK : 1);
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
  } else {
    stateSums = memref::AllocOp::create(
        b, MemRefType::get({2, dimK, dimV}, f32), scratchSizes(Value()));
  }
  auto rowsScratch = [&](int64_t dim, Value size) -> Value {
    SmallVector<Value> sizes;
    if (ShapedType::isDynamic(dim))
      sizes.push_back(size);
    return memref::AllocOp::create(b, MemRefType::get({chunk, dim}, f32),
                                   sizes);
  };
  if (perKeyDim) {
    dqScratch = rowsScratch(dimK, shape.dimK);
    dgScratch = rowsScratch(dimK, shape.dimK);
    dvScratch = rowsScratch(dimV, shape.dimV);
    gateScratch = rowsScratch(dimK, shape.dimK);
  }
  if (perKeyDim || !wholeKeys)
    dkScratch = rowsScratch(dimK, shape.dimK);
  // Block rows cover a chunk's rows and a state block's (Dk when whole).
  int64_t blockRows =
      ShapedType::isDynamic(keyCols) ? chunk : std::max(chunk, keyCols);
  auto grid = createProgramGrid(b, shape, shape.headsK, blockRows,
                                /*perSequence=*/true);
  {
    OpBuilder::InsertionGuard afterGrid(b);
    b.setInsertionPointAfter(grid);
    for (Value buffer : {starts, dStates, stateSums, dqScratch, dgScratch,
                         dkScratch, dvScratch, gateScratch})
      if (buffer)
        memref::DeallocOp::create(b, buffer);
  }
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(grid.getBody().front().getTerminator());
  batch = grid.getBatch();
  headK = grid.getHead();
  stateBlockRows = wholeKeys ? shape.dimK : rb.index(keyCols);
  std::tie(start, steps) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
  checkSequence(rb, shape.cuQ, batch, start, steps, shape.lengthQ);
  numChunks = arith::CeilDivUIOp::create(b, steps, rb.index(chunk));
  Value firstHead = rb.mul(headK, shape.groupSize);
  if (op.getCausal())
    causalGradients(firstHead);
  else
    nonCausalGradients(firstHead);
}

void attnc::lowering::buildLinearBackwardProgram(LinearBackwardOp op,
                                                 LoweringBuilder &rb,
                                                 ValueRange results,
                                                 int64_t subTile,
                                                 int64_t stateBlock) {
  LinearBackwardProgram(op, rb, subTile, stateBlock).build(results);
}
