//===- ChunkLinear.cpp - Chunkwise-parallel linear attention --------------===//
//
// The intra-chunk quadratic form with the decay matrix plus the inter-chunk
// state, for every gate kind; see the pass description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "KernelLowering.h"
#include "attnc/Transforms/Passes.h"

#include "llvm/Support/MathExtras.h"

namespace attnc {
#define GEN_PASS_DEF_CHUNKLINEAR
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
namespace vector = mlir::vector;

namespace {

void chunkLinear(LinearOp op, LoweringBuilder &rb, ValueRange results) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Value o = results[0];
  Value finalState = results.size() > 1 ? results[1] : Value();
  Value initial =
      op.getInitialState() ? params.lookup(op.getInitialState()) : Value();
  bool gated = !op.getGate().empty();
  Value zero = rb.index(0), one = rb.index(1);
  Value scale = rb.f32(op.getScale().convertToDouble());
  int64_t chunk = op.getChunk();
  Value chunkSize = rb.index(chunk);

  // Chunk-sized buffers and the state. The matmuls run on vectors of kLanes
  // f32 along Dv (outputs, state update) or along the chunk's keys (the
  // intra-chunk scores, keys staged transposed); widths are padded to whole
  // vectors with zeros, which padded lanes only ever multiply.
  // Loops over Dv carry kValueGroup independent vectors (see
  // vectorDotLoops); Dv is padded to whole groups.
  constexpr int64_t kLanes = LoweringBuilder::kLanes;
  constexpr int64_t kValueGroup = LoweringBuilder::kValueGroup;
  int64_t paddedChunk = llvm::alignTo(chunk, kLanes);
  Value paddedDimV = rb.paddedToValueGroups(shape.dimV);
  Type f32 = b.getF32Type();
  auto buffer = [&](int64_t rows, Value cols) {
    return memref::AllocOp::create(
        b, MemRefType::get({rows, ShapedType::kDynamic}, f32), ValueRange{cols});
  };
  Value gates = buffer(chunk, shape.dimK);   // G[r][d], cumulative in the chunk
  Value queries = buffer(chunk, shape.dimK); // phi(q_r), times exp(G_r) once gated
  Value keys = buffer(chunk, shape.dimK);    // phi(k_u)
  Value keysT = memref::AllocOp::create(     // phi(k_u) as [d][u]
      b, MemRefType::get({ShapedType::kDynamic, paddedChunk}, f32),
      ValueRange{shape.dimK});
  Value values = buffer(chunk, paddedDimV);  // v_u
  // Per-key-dimension gates: one query scaled to its sub-tile's first row.
  constexpr int64_t kSubTile = 16;
  Value subTileQuery = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, f32), ValueRange{shape.dimK});
  Value scores = memref::AllocOp::create(b, MemRefType::get({chunk, paddedChunk}, f32));
  Value state = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32),
      ValueRange{shape.dimK, paddedDimV});
  rb.zeroFill(keysT);
  rb.zeroFill(values);
  rb.zeroFill(state);
  Value hasInitial = initial ? rb.isPresent(initial) : Value();
  bool perKeyDim = op.getGateKind() == GateKind::per_key_dim;

  auto phi = [&](Value x) {
    return rb.inlineExpression(op.getFeature(), {x}, x);
  };
  auto load2 = [&](Value buffer, Value r, Value c) {
    return memref::LoadOp::create(b, buffer, ValueRange{r, c});
  };
  auto store2 = [&](Value value, Value buffer, Value r, Value c) {
    memref::StoreOp::create(b, value, buffer, ValueRange{r, c});
  };
  auto expDiff = [&](Value x, Value y) {
    return math::ExpOp::create(b, arith::SubFOp::create(b, x, y));
  };
  Value groups =
      arith::DivUIOp::create(b, paddedDimV, rb.index(kLanes * kValueGroup));
  // for each group of kValueGroup vectors of kLanes columns of Dv:
  // body(first column of each vector)
  auto forEachVectorGroup =
      [&](llvm::function_ref<void(ArrayRef<Value>)> body) {
        rb.loop(zero, groups, [&](Value group) {
          Value e0 = rb.mul(group, rb.index(kLanes * kValueGroup));
          SmallVector<Value> columns;
          for (int64_t k = 0; k < kValueGroup; ++k)
            columns.push_back(rb.add(e0, rb.index(k * kLanes)));
          body(columns);
        });
      };

  rb.gridLoop(shape.numBatches, shape.headsQ, [&](Value batch, Value head) {
    Value start, steps;
    std::tie(start, steps) =
        sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
    Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
    auto at = [&](Value memref, Value h, Value t, Value d) {
      return rb.loadF32(
          memref, layoutIndices(shape.layout, batch, h, rb.add(start, t), d));
    };

    // S = S_0 (or 0)
    initializeState(rb, state, initial, hasInitial, batch, head, shape);

    Value numChunks = arith::CeilDivUIOp::create(b, steps, chunkSize);
    // Loads the chunk's features, values and cumulative gates; returns its
    // length.
    auto loadChunk = [&](Value chunkIndex) -> Value {
      Value t0 = rb.mul(chunkIndex, chunkSize);
      Value rows = arith::MinUIOp::create(b, chunkSize, rb.sub(steps, t0));
      rb.loop(zero, rows, [&](Value r) {
        Value t = rb.add(t0, r);
        rb.loop(zero, shape.dimK, [&](Value d) {
          store2(phi(at(shape.q, head, t, d)), queries, r, d);
          Value key = phi(at(shape.k, headK, t, d));
          store2(key, keys, r, d);
          store2(key, keysT, d, r);
          if (!gated)
            return;
          // G_r = G_{r-1} + g_t
          Value g = rb.checkedGate(
              rb.inlineExpression(op.getGate(), {batch, head, t, d, start},
                                  rb.f32(0)),
              {batch, head, t, d});
          Value previous = rb.ifThen(
              arith::CmpIOp::create(b, arith::CmpIPredicate::eq, r, zero),
              {f32}, [&]() -> SmallVector<Value> { return {rb.f32(0)}; },
              [&]() -> SmallVector<Value> {
                return {load2(gates, rb.sub(r, one), d)};
              })[0];
          store2(rb.add(previous, g), gates, r, d);
        });
        rb.loop(zero, shape.dimV, [&](Value e) {
          store2(at(shape.v, headK, t, e), values, r, e);
        });
      });
      return rows;
    };
    // S = exp(G_L) * S + sum_u (exp(G_L - G_u) * phi(k_u))^T v_u; the decayed
    // keys overwrite `keys` (the scores have been computed by then).
    auto updateState = [&](Value rows) {
      Value last = rb.sub(rows, one);
      if (gated)
        rb.loop(zero, rows, [&](Value u) {
          rb.loop(zero, shape.dimK, [&](Value d) {
            store2(rb.mul(load2(keys, u, d),
                          expDiff(load2(gates, last, d), load2(gates, u, d))),
                   keys, u, d);
          });
        });
      rb.loop(zero, shape.dimK, [&](Value d) {
        Value decay = gated ? Value(math::ExpOp::create(b, load2(gates, last, d)))
                            : rb.f32(1);
        Value decayLanes = vector::BroadcastOp::create(b, rb.lanes(), decay);
        forEachVectorGroup([&](ArrayRef<Value> columns) {
          SmallVector<Value> decayed;
          for (Value e0 : columns)
            decayed.push_back(arith::MulFOp::create(
                b, rb.loadLanes(state, {d, e0}), decayLanes));
          SmallVector<Value> updated =
              rb.vectorDotLoops(zero, rows, decayed, [&](Value u) {
                SmallVector<Value> rowValues;
                for (Value e0 : columns)
                  rowValues.push_back(rb.loadLanes(values, {u, e0}));
                return std::make_pair(load2(keys, u, d), rowValues);
              });
          for (auto [value, e0] : llvm::zip_equal(updated, columns))
            vector::StoreOp::create(b, value, state, ValueRange{d, e0});
        });
      });
    };
    // o_r = scale * ((phi(q_r) o exp(G_r)) S [+ sum_{u <= r} A[r][u] v_u])
    auto emitOutputs = [&](Value t0, Value rows, bool intra) {
      if (intra && perKeyDim) {
        // A[r][u] = sum_d phi(q_r)_d phi(k_u)_d exp(G_r,d - G_u,d), u <= r,
        // by sub-tiles of kSubTile rows starting at p (secondary chunking):
        // for keys before p the decay splits into exp(G_r - G_p) on the
        // query and exp(G_p - G_u) on the key, both <= 1, and the dot
        // products run on vectors along u; keys of the row's own sub-tile
        // keep the decay inside the sum.
        Value subTile = rb.index(kSubTile);
        rb.loop(zero, arith::CeilDivUIOp::create(b, rows, subTile),
                [&](Value tileIndex) {
          Value p = rb.mul(tileIndex, subTile);
          // keysT[d][u] = phi(k_u)_d exp(G_p,d - G_u,d), u < p
          rb.loop(zero, p, [&](Value u) {
            rb.loop(zero, shape.dimK, [&](Value d) {
              store2(rb.mul(load2(keys, u, d),
                            expDiff(load2(gates, p, d), load2(gates, u, d))),
                     keysT, d, u);
            });
          });
          Value end = arith::MinUIOp::create(b, rb.add(p, subTile), rows);
          rb.loop(p, end, [&](Value r) {
            rb.loop(zero, shape.dimK, [&](Value d) {
              memref::StoreOp::create(
                  b,
                  rb.mul(load2(queries, r, d),
                         expDiff(load2(gates, r, d), load2(gates, p, d))),
                  subTileQuery, d);
            });
            rb.loop(zero, arith::DivUIOp::create(b, p, rb.index(kLanes)),
                    [&](Value vectorIndex) {
              Value u0 = rb.mul(vectorIndex, rb.index(kLanes));
              Value dots = rb.vectorDotLoop(
                  zero, shape.dimK, rb.zeroLanes(), [&](Value d) {
                    return std::make_pair(
                        Value(memref::LoadOp::create(b, subTileQuery, d)),
                        rb.loadLanes(keysT, {d, u0}));
                  });
              vector::StoreOp::create(b, dots, scores, ValueRange{r, u0});
            });
            rb.loop(p, rb.add(r, one), [&](Value u) {
              Value a = rb.loop(
                  zero, shape.dimK, {rb.f32(0)}, [&](Value d, ValueRange sum) {
                    Value product = rb.mul(
                        rb.mul(load2(queries, r, d), load2(keys, u, d)),
                        expDiff(load2(gates, r, d), load2(gates, u, d)));
                    return SmallVector<Value>{rb.add(sum[0], product)};
                  })[0];
              store2(a, scores, r, u);
            });
          });
        });
      } else if (intra) {
        // A[r][u] = exp(G_r - G_u) phi(q_r) . phi(k_u), kLanes keys at a
        // time; only u <= r is read.
        rb.loop(zero, rows, [&](Value r) {
          rb.rowTimesTransposed(
              shape.dimK, [&](Value d) -> Value { return load2(queries, r, d); },
              keysT, paddedChunk, scores, {r});
          if (gated)
            rb.loop(zero, rb.add(r, one), [&](Value u) {
              store2(rb.mul(load2(scores, r, u),
                            expDiff(load2(gates, r, zero),
                                    load2(gates, u, zero))),
                     scores, r, u);
            });
        });
      }
      // Inter-chunk queries: phi(q_r) o exp(G_r), in place (the scores are
      // done with the plain queries).
      if (gated)
        rb.loop(zero, rows, [&](Value r) {
          rb.loop(zero, shape.dimK, [&](Value d) {
            store2(rb.mul(load2(queries, r, d),
                          math::ExpOp::create(b, load2(gates, r, d))),
                   queries, r, d);
          });
        });
      rb.loop(zero, rows, [&](Value r) {
        Value t = rb.add(start, rb.add(t0, r));
        forEachVectorGroup([&](ArrayRef<Value> columns) {
          auto rowsOf = [&](Value buffer, Value row) {
            SmallVector<Value> lanes;
            for (Value e0 : columns)
              lanes.push_back(rb.loadLanes(buffer, {row, e0}));
            return lanes;
          };
          SmallVector<Value> out = rb.vectorDotLoops(
              zero, shape.dimK,
              SmallVector<Value>(columns.size(), rb.zeroLanes()),
              [&](Value d) {
                return std::make_pair(load2(queries, r, d), rowsOf(state, d));
              });
          if (intra)
            out = rb.vectorDotLoops(zero, rb.add(r, one), out, [&](Value u) {
              return std::make_pair(load2(scores, r, u), rowsOf(values, u));
            });
          Value scaleLanes = vector::BroadcastOp::create(b, rb.lanes(), scale);
          for (auto [sum, e0] : llvm::zip_equal(out, columns)) {
            Value scaled = arith::MulFOp::create(b, sum, scaleLanes);
            for (int64_t lane = 0; lane < kLanes; ++lane) {
              Value e = rb.add(e0, rb.index(lane));
              rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, e,
                                              shape.dimV),
                        [&] {
                          rb.storeF32(
                              vector::ExtractOp::create(b, scaled, lane), o,
                              layoutIndices(shape.layout, batch, head, t, e));
                        });
            }
          }
        });
      });
    };

    if (op.getCausal()) {
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        Value rows = loadChunk(chunkIndex);
        Value t0 = rb.mul(chunkIndex, chunkSize);
        emitOutputs(t0, rows, /*intra=*/true);
        updateState(rows);
      });
    } else {
      // S = S_0 + sum_t phi(k_t)^T v_t over every chunk, then o = phi(q) S.
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        updateState(loadChunk(chunkIndex));
      });
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        Value rows = loadChunk(chunkIndex);
        emitOutputs(rb.mul(chunkIndex, chunkSize), rows, /*intra=*/false);
      });
    }
    if (finalState)
      storeState(rb, state, finalState, batch, head, shape);
  });
  for (Value buffer :
       {gates, queries, keys, keysT, values, subTileQuery, scores, state})
    memref::DeallocOp::create(b, buffer);
}

struct ChunkLinearPass
    : public attnc::impl::ChunkLinearBase<ChunkLinearPass> {
  void runOnOperation() override {
    for (KernelOp kernel :
         llvm::make_early_inc_range(getOperation().getOps<KernelOp>())) {
      if (!isa<LinearOp>(kernel.getFamilyOp()))
        continue;
      lowerKernelToFunc(kernel, [](Operation *familyOp, LoweringBuilder &rb,
                                   ValueRange results) {
        chunkLinear(cast<LinearOp>(familyOp), rb, results);
      });
    }
  }
};

} // namespace
