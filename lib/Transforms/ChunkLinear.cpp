//===- ChunkLinear.cpp - Chunkwise-parallel linear attention --------------===//
//
// The intra-chunk quadratic form with the decay matrix plus the inter-chunk
// state, for every gate kind; see the pass description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "KernelLowering.h"
#include "attnc/Transforms/Passes.h"

namespace attnc {
#define GEN_PASS_DEF_CHUNKLINEAR
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

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

  // Chunk-sized buffers and the state.
  Type f32 = b.getF32Type();
  auto chunkByDim = [&](Value dim) {
    return memref::AllocOp::create(
        b, MemRefType::get({chunk, ShapedType::kDynamic}, f32), ValueRange{dim});
  };
  Value gates = chunkByDim(shape.dimK); // G[r][d], cumulative within the chunk
  Value queries = chunkByDim(shape.dimK); // phi(q_r)
  Value keys = chunkByDim(shape.dimK);    // phi(k_r)
  Value scores = memref::AllocOp::create(b, MemRefType::get({chunk, chunk}, f32));
  Value state = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32),
      ValueRange{shape.dimK, shape.dimV});
  Value hasInitial = initial ? rb.isPresent(initial) : Value();

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
    // Loads the chunk's features and cumulative gates; returns its length.
    auto loadChunk = [&](Value chunkIndex) -> Value {
      Value t0 = rb.mul(chunkIndex, chunkSize);
      Value rows = arith::MinUIOp::create(b, chunkSize, rb.sub(steps, t0));
      rb.loop(zero, rows, [&](Value r) {
        Value t = rb.add(t0, r);
        rb.loop(zero, shape.dimK, [&](Value d) {
          store2(phi(at(shape.q, head, t, d)), queries, r, d);
          store2(phi(at(shape.k, headK, t, d)), keys, r, d);
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
      });
      return rows;
    };
    // S = exp(G_L) * S + sum_u (exp(G_L - G_u) * phi(k_u))^T v_u
    auto updateState = [&](Value t0, Value rows) {
      Value last = rb.sub(rows, one);
      rb.loop(zero, shape.dimK, [&](Value d) {
        Value total = gated ? load2(gates, last, d) : Value();
        Value decay = gated ? Value(math::ExpOp::create(b, total)) : rb.f32(1);
        rb.loop(zero, shape.dimV, [&](Value e) {
          Value update = rb.loop(zero, rows, {rb.f32(0)}, [&](Value u,
                                                              ValueRange sum) {
            Value key = load2(keys, u, d);
            if (gated)
              key = rb.mul(key, expDiff(total, load2(gates, u, d)));
            Value value = at(shape.v, headK, rb.add(t0, u), e);
            return SmallVector<Value>{rb.add(sum[0], rb.mul(key, value))};
          })[0];
          store2(rb.add(rb.mul(decay, load2(state, d, e)), update), state, d,
                 e);
        });
      });
    };
    // o_r = scale * (phi(q_r) * exp(G_r)) S [+ intra-chunk part]
    auto emitOutputs = [&](Value t0, Value rows, bool intra) {
      if (intra) {
        // A[r][u] = sum_d phi(q_r)_d phi(k_u)_d exp(G_r,d - G_u,d), u <= r
        rb.loop(zero, rows, [&](Value r) {
          rb.loop(zero, rb.add(r, one), [&](Value u) {
            Value a = rb.loop(
                zero, shape.dimK, {rb.f32(0)}, [&](Value d, ValueRange sum) {
                  Value product =
                      rb.mul(load2(queries, r, d), load2(keys, u, d));
                  if (gated)
                    product = rb.mul(product, expDiff(load2(gates, r, d),
                                                      load2(gates, u, d)));
                  return SmallVector<Value>{rb.add(sum[0], product)};
                })[0];
            store2(a, scores, r, u);
          });
        });
      }
      rb.loop(zero, rows, [&](Value r) {
        Value t = rb.add(t0, r);
        rb.loop(zero, shape.dimV, [&](Value e) {
          Value inter = rb.loop(
              zero, shape.dimK, {rb.f32(0)}, [&](Value d, ValueRange sum) {
                Value query = load2(queries, r, d);
                if (gated)
                  query = rb.mul(query,
                                 math::ExpOp::create(b, load2(gates, r, d)));
                return SmallVector<Value>{
                    rb.add(sum[0], rb.mul(query, load2(state, d, e)))};
              })[0];
          Value total = inter;
          if (intra)
            total = rb.loop(
                zero, rb.add(r, one), {inter}, [&](Value u, ValueRange sum) {
                  Value value = at(shape.v, headK, rb.add(t0, u), e);
                  return SmallVector<Value>{
                      rb.add(sum[0], rb.mul(load2(scores, r, u), value))};
                })[0];
          rb.storeF32(
              rb.mul(scale, total), o,
              layoutIndices(shape.layout, batch, head, rb.add(start, t), e));
        });
      });
    };

    if (op.getCausal()) {
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        Value rows = loadChunk(chunkIndex);
        Value t0 = rb.mul(chunkIndex, chunkSize);
        emitOutputs(t0, rows, /*intra=*/true);
        updateState(t0, rows);
      });
    } else {
      // S = S_0 + sum_t phi(k_t)^T v_t over every chunk, then o = phi(q) S.
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        Value rows = loadChunk(chunkIndex);
        updateState(rb.mul(chunkIndex, chunkSize), rows);
      });
      rb.loop(zero, numChunks, [&](Value chunkIndex) {
        Value rows = loadChunk(chunkIndex);
        emitOutputs(rb.mul(chunkIndex, chunkSize), rows, /*intra=*/false);
      });
    }
    if (finalState)
      storeState(rb, state, finalState, batch, head, shape);
  });
  for (Value buffer : {gates, queries, keys, scores, state})
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
