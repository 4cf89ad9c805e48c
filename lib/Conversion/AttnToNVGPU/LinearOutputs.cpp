//===- LinearOutputs.cpp - The outputs of a chunk -------------------------===//
//
// O = scale * (exp(G_r) (phi(Q) S) + A V) for the chunk's rows: warp w
// computes rows [16w, 16w + 16), Q S from the state operand and, in causal
// kernels, the weights A = (phi(Q) phi(K)^T) o D over the chunk's keys
// (with per-key-dim gates, the keys of the warp's own tile summed
// elementwise by diagonalWeights).
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

void LinearKernelBuilder::emitOutputs(Value t0, Value rows, bool intra) {
  Value r0 = rb.mul(warp, idx(16));
  rb.ifThen(lessThan(r0, idx(C)), [&] {
    // Per key dim, the decays scale the operands' elements as they are
    // loaded, each exponent G_a - G_b with b <= a, or G_a: Q S takes
    // q[r][d] exp(G[r][d]); Q K^T takes q[r][d] exp(G[r][d] - G[r0][d])
    // against k[u][d] exp(G[r0][d] - G[u][d]) for the keys u < r0 (those
    // of the warp's own tile are summed by diagonalWeights).
    auto gateAt = [&](Value r, Value d) -> Value {
      return memref::LoadOp::create(b, gateTable, ValueRange{r, d});
    };
    auto interScaled = [&](Value x, Value r, Value d) -> Value {
      return arith::MulFOp::create(b, x, exp2(gateAt(r, d)));
    };
    auto intraScaled = [&](Value x, Value r, Value d) -> Value {
      return arith::MulFOp::create(
          b, x, exp2(arith::SubFOp::create(b, gateAt(r, d), gateAt(r0, d))));
    };
    auto keyScaled = [&](Value x, Value u, Value d) -> Value {
      return arith::MulFOp::create(
          b, x, exp2(arith::SubFOp::create(b, gateAt(r0, d), gateAt(u, d))));
    };
    // Plain 16-bit fragments of Q (ldmatrix) serve both products; the
    // others (split, or scaled per key dim) are loaded where they are used.
    bool elementwise = shape.splitF32 || perKeyDim;
    SmallVector<MmaOperand> heldQueries;
    if (!elementwise)
      for (int64_t kk = 0; kk < dimK / 16; ++kk)
        heldQueries.push_back(rowFragment(queryTile, r0, kk));
    auto queries = [&](int64_t kk) {
      if (!elementwise)
        return heldQueries[kk];
      return rowFragment(queryTile, r0, kk,
                         perKeyDim ? ElementTransform(intraScaled) : nullptr);
    };
    auto interQueries = [&](int64_t kk) {
      return rowFragment(queryTile, r0, kk, interScaled);
    };
    Value rowOf[2];
    for (int half = 0; half < 2; ++half)
      rowOf[half] = rb.add(r0, rb.add(group, idx(8 * half)));
    // acc = exp(G_r) (Q S), then A V accumulates onto it: one set of
    // output registers instead of two. Per key dim the decay is already
    // in the scaled queries.
    SmallVector<Value> acc(sliceV / 8 * 4, rb.f32(0));
    accumulateTimesRows(perKeyDim ? FragmentAt(interQueries)
                                  : FragmentAt(queries),
                        dimK / 16, stateOperand, sliceV, acc);
    if (gated && !perKeyDim)
      for (int half = 0; half < 2; ++half) {
        Value decay = exp2(cumulativeAt(rowOf[half]));
        for (int64_t et = 0; et < sliceV / 8; ++et)
          for (int e = 0; e < 2; ++e) {
            Value &value = acc[et * 4 + 2 * half + e];
            value = arith::MulFOp::create(b, value, decay);
          }
      }
    if (intra) {
      // A = (Q K^T) o D over the chunk's keys, then acc = A V.
      SmallVector<Value> weights = intraChunkWeights(
          r0, rowOf, rows, queries, keyScaled, elementwise);
      // The weights' A fragment of keys [16kk, 16kk + 16): their n-tiles
      // 2kk and 2kk + 1.
      auto weightFragment = [&](int64_t kk) {
        return operandFromAccumulators(
            ArrayRef<Value>(weights).slice(kk * 8, 8));
      };
      accumulateTimesRows(weightFragment, C / 16, valueTile, sliceV, acc);
    }
    for (int half = 0; half < 2; ++half) {
      Value r = rowOf[half];
      rb.ifThen(lessThan(r, rows), [&] {
        Value t = rb.add(rb.add(start, t0), r);
        for (int64_t et = 0; et < sliceV / 8; ++et)
          for (int e = 0; e < 2; ++e) {
            Value col = rb.add(col0, rb.add(idx(et * 8 + e),
                                            rb.mul(inGroup, idx(2))));
            rb.storeF32(
                arith::MulFOp::create(b, scale, acc[et * 4 + 2 * half + e]),
                o, layoutIndices(layout, batch, head, t, col));
          }
      });
    }
  });
  barrier();
}

SmallVector<Value> LinearKernelBuilder::intraChunkWeights(
    Value r0, Value rowOf[2], Value rows, FragmentAt queries,
    ElementTransform keyScaled, bool elementwise) {
  Value keyRow = arith::RemUIOp::create(b, lane, idx(8));
  Value keyCol = rb.mul(arith::DivUIOp::create(b, lane, idx(8)), idx(8));
  Value keyColX2 = rb.mul(
      arith::RemUIOp::create(b, arith::DivUIOp::create(b, lane, idx(8)),
                             idx(2)),
      idx(8));
  // Only keys before `keyEnd` weigh on the warp's rows: later ones
  // follow them (per key dim, the keys of the warp's own tile come
  // from diagonalWeights). The other score tiles are skipped, by a
  // branch that the whole warp takes alike; their weights are 0.
  Value keyEnd = perKeyDim ? r0 : rb.add(r0, idx(16));
  SmallVector<Type> fourFloats(4, f32);
  auto ifKeysNeeded = [&](int64_t nt, ArrayRef<Value> skipped,
                          llvm::function_ref<SmallVector<Value>()> body) {
    return llvm::to_vector(
        rb.ifThen(lessThan(idx(nt * 8), keyEnd), fourFloats, body,
                  [&] { return SmallVector<Value>(skipped); }));
  };
  // Elementwise operands: Q K^T one step of Dk at a time, so that only
  // that step's query fragment is live (B[d][u] = K[u][d], the key
  // tile transposed).
  SmallVector<Value> scores(C / 8 * 4, rb.f32(0));
  if (elementwise)
    for (int64_t kk = 0; kk < dimK / 16; ++kk) {
      MmaOperand query = queries(kk);
      for (int64_t nt = 0; nt < C / 8; ++nt) {
        MutableArrayRef<Value> c(&scores[nt * 4], 4);
        llvm::copy(ifKeysNeeded(
                       nt, c,
                       [&] {
                         MmaOperand keys = loadElementwiseOperand(
                             keyTile, {}, lane, idx(nt * 8), idx(kk * 16),
                             nvvm::kBRegisters, nvvm::mmaBCoord,
                             /*transposed=*/true,
                             perKeyDim ? ElementTransform(keyScaled)
                                       : nullptr);
                         return mma(query, keys, c);
                       }),
                   c.begin());
      }
    }
  SmallVector<Value> weights;
  for (int64_t nt = 0; nt < C / 8; ++nt) {
    SmallVector<Value> zeros(4, rb.f32(0));
    llvm::append_range(
        weights, ifKeysNeeded(nt, zeros, [&] {
          SmallVector<Value> c(&scores[nt * 4], &scores[nt * 4 + 4]);
          Value row = rb.add(keyRow, idx(nt * 8));
          // 16-bit: per 8 keys, one ldmatrix.x4 yields the B operands of
          // two 16-column steps.
          if (!elementwise)
            for (int64_t kk = 0; kk < dimK / 16; kk += 2) {
              bool pair = kk + 1 < dimK / 16;
              SmallVector<Value> regs =
                  ldmatrix(keyTile, {}, row,
                           rb.add(idx(kk * 16), pair ? keyCol : keyColX2),
                           pair ? 4 : 2, /*transpose=*/false);
              c = mma(queries(kk).hi, {regs[0], regs[1]}, c);
              if (pair)
                c = mma(queries(kk + 1).hi, {regs[2], regs[3]}, c);
            }
          SmallVector<Value> tileWeights;
          for (int64_t reg = 0; reg < 4; ++reg) {
            Value r = rowOf[reg / 2];
            Value u =
                rb.add(idx(nt * 8 + reg % 2), rb.mul(inGroup, idx(2)));
            Value allowed = arith::AndIOp::create(
                b,
                arith::CmpIOp::create(b, arith::CmpIPredicate::ule, u, r),
                lessThan(u, rows));
            Value weight = c[reg];
            if (gated && !perKeyDim) {
              weight = arith::MulFOp::create(
                  b, weight,
                  exp2(arith::SubFOp::create(
                      b,
                      cumulativeAt(
                          arith::MinUIOp::create(b, r, idx(C - 1))),
                      cumulativeAt(u))));
            }
            tileWeights.push_back(
                arith::SelectOp::create(b, allowed, weight, rb.f32(0)));
          }
          return tileWeights;
        }));
  }
  if (perKeyDim) {
    // Keys of the warp's own 16-row tile (columns [16w, 16w + 16)):
    // the elementwise sum over d, as exp(G_r - G_u) only stays bounded
    // for u <= r. The lane's 8 weights there share 2 rows and 4 keys,
    // so one loop over d loads each operand once and keeps 8
    // independent sums; they replace the mma weights of tile w.
    SmallVector<Value> diagonal = diagonalWeights(warp, rowOf, rows);
    for (int64_t tile = 0; tile < C / 16; ++tile) {
      Value own = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                        idx(tile), warp);
      for (int64_t j = 0; j < 8; ++j) {
        Value &weight = weights[tile * 8 + j];
        weight = arith::SelectOp::create(b, own, diagonal[j], weight);
      }
    }
  }
  return weights;
}

SmallVector<Value> LinearKernelBuilder::diagonalWeights(Value warp,
                                                        Value rowOf[2],
                                                        Value rows) {
  SmallVector<Value> keyOf; // 4 keys: n-tile half, then register parity
  for (int64_t half = 0; half < 2; ++half)
    for (int64_t parity = 0; parity < 2; ++parity)
      keyOf.push_back(rb.add(rb.mul(warp, idx(16)),
                             rb.add(idx(half * 8 + parity),
                                    rb.mul(inGroup, idx(2)))));
  constexpr int64_t kUnroll = 4;
  SmallVector<Value> init(8, rb.f32(0));
  SmallVector<Value> sums = llvm::to_vector(rb.loop(
      idx(0), idx(dimK / kUnroll), init, [&](Value step, ValueRange acc) {
        SmallVector<Value> next(acc.begin(), acc.end());
        for (int64_t i = 0; i < kUnroll; ++i) {
          Value d = rb.add(rb.mul(step, idx(kUnroll)), idx(i));
          Value query[2], queryGate[2], key[4], keyGate[4];
          for (int row = 0; row < 2; ++row) {
            query[row] = loadF32(queryTile, {rowOf[row], d});
            queryGate[row] = cumulativeAt(rowOf[row], d);
          }
          for (int u = 0; u < 4; ++u) {
            key[u] = loadF32(keyTile, {keyOf[u], d});
            keyGate[u] = cumulativeAt(keyOf[u], d);
          }
          for (int64_t j = 0; j < 8; ++j) {
            int row = (j % 4) / 2, u = (j / 4) * 2 + j % 2;
            // Keys of the tile's second half follow its first rows.
            if (row == 0 && u >= 2)
              continue;
            // G_r - G_u <= 0 for u <= r (prefix sums of gates <= 0 never
            // grow); the sums of later keys may overflow, and are dropped.
            Value decay =
                exp2(arith::SubFOp::create(b, queryGate[row], keyGate[u]));
            next[j] = math::FmaOp::create(
                b, arith::MulFOp::create(b, query[row], key[u]), decay,
                next[j]);
          }
        }
        return next;
      }));
  for (int64_t j = 0; j < 8; ++j) {
    Value r = rowOf[(j % 4) / 2], u = keyOf[(j / 4) * 2 + j % 2];
    Value allowed = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ule, u, r),
        lessThan(u, rows));
    sums[j] = arith::SelectOp::create(b, allowed, sums[j], rb.f32(0));
  }
  return sums;
}
