//===- LinearBackward.cpp - The gradients of linear attention, literally --===//
//
// The reference lowering of attn.linear_backward (docs/semantics.md
// section 8): the recurrence's backward through time. Per (sequence, query
// head), the states S_0 .. S_T are recomputed and kept (T + 1 states of
// Dk x Dv), then, from dS = dS_T (the final state's upstream gradient, or
// 0), for t = T - 1 down to 0 (causal):
//   dS    += scale phi(q_t)^T dO_t                  (o_t = scale phi(q_t) S_t)
//   dq_t   = phi'(q_t) * scale (dO_t S_t^T)
//   dk_t  += phi'(k_t) * (dS v_t)                   (S_t = f_t S_{t-1} +
//   phi(k_t)^T v_t, dv_t  += phi(k_t) dS                             f_t =
//   exp(g_t), per row d) dg_t   = f_t * rowsum(S_{t-1} o dS)             (into
//   the gate expression) dS     = f_t * dS                               (now
//   dL/dS_{t-1})
// and dS_0 is the initial state's gradient. Non-causal: S = S_0 +
// sum_t phi(k_t)^T v_t, dS = dS_T + scale sum_t phi(q_t)^T dO_t. dk and dv
// sum over the query heads of a group. It is the oracle of the linear
// backward: serial, one work item, every sum in f32 in one order.
//
//===----------------------------------------------------------------------===//

#include "LinearBackward.h"
#include "GradientBuffers.h"

#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"
#include "attnc/Conversion/KernelLowering/KernelLowering.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

void attnc::lowering::lowerLinearBackward(LinearBackwardOp op,
                                          LoweringBuilder &rb,
                                          ValueRange results) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Value zero = rb.index(0), one = rb.index(1);
  Value scale = rb.f32(op.getScale().convertToDouble());
  Type f32 = b.getF32Type();
  Value initial =
      op.getInitialState() ? params.lookup(op.getInitialState()) : Value();
  Value hasInitial = initial ? rb.isPresent(initial) : Value();
  Value dOut = params.lookup(op.getDOut());
  Value dFinal =
      op.getDFinalState() ? params.lookup(op.getDFinalState()) : Value();
  bool gated = op.getCausal() && !op.getGate().empty();

  inFirstWorkItem(rb, [&] {
    SmallVector<Accumulator> accs;
    for (Value gradient : results)
      accs.push_back(zeroAccumulator(rb, gradient));
    const Accumulator &dq = accs[0], &dk = accs[1], &dv = accs[2];
    // The gradients of the gate's and feature map's float inputs.
    size_t firstInput = initial ? 4 : 3;
    auto accumulateLoads = [&](MutableArrayRef<LoadGradient> loads) {
      for (LoadGradient &load : loads) {
        auto input = llvm::find(op.getInputs(), load.load.getTensor());
        accumulate(rb, accs[firstInput + (input - op.getInputs().begin())],
                   load.indices, load.gradient);
      }
    };
    // States S_0 .. S_T of a sequence, and dS.
    Value dimK = shape.dimK, dimV = shape.dimV;
    Value stateSize = rb.mul(dimK, dimV);
    Value states = memref::AllocOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, f32),
        ValueRange{rb.mul(rb.add(shape.lengthQ, one), stateSize)});
    Value dState = memref::AllocOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, f32), ValueRange{stateSize});
    auto at = [&](Value step, Value d, Value e) {
      return rb.add(rb.mul(step, stateSize), rb.add(rb.mul(d, dimV), e));
    };
    auto stateAt = [&](Value step, Value d, Value e) {
      return memref::LoadOp::create(b, states, at(step, d, e)).getResult();
    };
    auto dStateAt = [&](Value d, Value e) {
      return memref::LoadOp::create(b, dState, at(zero, d, e)).getResult();
    };
    auto setDState = [&](Value d, Value e, Value value) {
      memref::StoreOp::create(b, value, dState, at(zero, d, e));
    };

    rb.loop(zero, shape.numBatches, [&](Value batch) {
      Value start, steps;
      std::tie(start, steps) =
          sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
      rb.loop(zero, shape.headsQ, [&](Value head) {
        Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
        auto rowAt = [&](Value h, Value t, Value d) {
          return layoutIndices(shape.layout, batch, h, rb.add(start, t), d);
        };
        auto load = [&](Value memref, Value h, Value t, Value d) {
          return rb.loadF32(memref, rowAt(h, t, d));
        };
        auto phi = [&](Value x) {
          return rb.inlineExpression(op.getFeature(), {x}, x);
        };
        // f_t[d] = exp(g_t[d]), checked as the forward does.
        auto factor = [&](Value t, Value d) -> Value {
          if (!gated)
            return rb.f32(1);
          Value gate = rb.inlineExpression(
              op.getGate(), {batch, head, t, d, start}, rb.f32(0));
          return math::ExpOp::create(b,
                                     rb.checkedGate(gate, {batch, head, t, d}));
        };
        // S_{step + 1} = f S_step + phi(k_t)^T v_t (f = 1: no decay).
        auto update = [&](Value step, Value t, bool decay) {
          rb.loop(zero, dimK, [&](Value d) {
            Value f = decay ? factor(t, d) : rb.f32(1);
            Value key = phi(load(shape.k, headK, t, d));
            rb.loop(zero, dimV, [&](Value e) {
              Value next = rb.add(rb.mul(f, stateAt(step, d, e)),
                                  rb.mul(key, load(shape.v, headK, t, e)));
              memref::StoreOp::create(b, next, states,
                                      at(rb.add(step, one), d, e));
            });
          });
        };
        // dq_t = phi'(q_t) * scale (dO_t S^T), with S = S_{step}.
        auto queryGradient = [&](Value step, Value t) {
          rb.loop(zero, dimK, [&](Value d) {
            Value dPhi =
                rb.loop(zero, dimV, {rb.f32(0)}, [&](Value e, ValueRange sum) {
                  return SmallVector<Value>{
                      rb.add(sum[0], rb.mul(load(dOut, head, t, e),
                                            stateAt(step, d, e)))};
                })[0];
            ExpressionGradient gradient = inlineExpressionGradient(
                rb, op.getFeature(), {load(shape.q, head, t, d)},
                rb.mul(scale, dPhi));
            if (gradient.arguments[0])
              accumulate(rb, dq, rowAt(head, t, d), gradient.arguments[0]);
            accumulateLoads(gradient.loads);
          });
        };
        // dk_t and dv_t from dS = dL/dS_t.
        auto keyValueGradients = [&](Value t) {
          rb.loop(zero, dimK, [&](Value d) {
            Value dPhi =
                rb.loop(zero, dimV, {rb.f32(0)}, [&](Value e, ValueRange sum) {
                  return SmallVector<Value>{
                      rb.add(sum[0], rb.mul(dStateAt(d, e),
                                            load(shape.v, headK, t, e)))};
                })[0];
            Value keyIn = load(shape.k, headK, t, d);
            ExpressionGradient gradient =
                inlineExpressionGradient(rb, op.getFeature(), {keyIn}, dPhi);
            if (gradient.arguments[0])
              accumulate(rb, dk, rowAt(headK, t, d), gradient.arguments[0]);
            accumulateLoads(gradient.loads);
            Value key = phi(keyIn);
            rb.loop(zero, dimV, [&](Value e) {
              accumulate(rb, dv, rowAt(headK, t, e),
                         rb.mul(key, dStateAt(d, e)));
            });
          });
        };
        // dS += scale phi(q_t)^T dO_t.
        auto addOutputGradient = [&](Value t) {
          rb.loop(zero, dimK, [&](Value d) {
            Value query = rb.mul(scale, phi(load(shape.q, head, t, d)));
            rb.loop(zero, dimV, [&](Value e) {
              setDState(d, e,
                        rb.add(dStateAt(d, e),
                               rb.mul(query, load(dOut, head, t, e))));
            });
          });
        };

        // S_0, then dS = dS_T.
        rb.loop(zero, dimK, [&](Value d) {
          rb.loop(zero, dimV, [&](Value e) {
            memref::StoreOp::create(
                b, initialStateAt(rb, initial, hasInitial, batch, head, d, e),
                states, at(zero, d, e));
            setDState(d, e,
                      dFinal ? rb.loadF32(dFinal, {batch, head, d, e})
                             : rb.f32(0));
          });
        });
        if (op.getCausal()) {
          rb.loop(zero, steps, [&](Value t) { update(t, t, /*decay=*/true); });
          rb.loop(zero, steps, [&](Value r) {
            Value t = rb.sub(rb.sub(steps, one), r);
            Value next = rb.add(t, one); // S_t is states[t + 1]
            addOutputGradient(t);
            queryGradient(next, t);
            keyValueGradients(t);
            rb.loop(zero, dimK, [&](Value d) {
              Value f = factor(t, d);
              if (gated) { // dg_t[d] = f_t[d] sum_e S_{t-1}[d, e] dS[d, e]
                Value dot = rb.loop(
                    zero, dimV, {rb.f32(0)}, [&](Value e, ValueRange sum) {
                      return SmallVector<Value>{rb.add(
                          sum[0], rb.mul(stateAt(t, d, e), dStateAt(d, e)))};
                    })[0];
                accumulateLoads(inlineExpressionGradient(
                                    rb, op.getGate(),
                                    {batch, head, t, d, start}, rb.mul(f, dot))
                                    .loads);
              }
              rb.loop(zero, dimV, [&](Value e) {
                setDState(d, e, rb.mul(f, dStateAt(d, e)));
              });
            });
          });
        } else {
          // One state for every step: S_1 = S_0 + sum_t phi(k_t)^T v_t.
          rb.loop(zero, dimK, [&](Value d) {
            rb.loop(zero, dimV, [&](Value e) {
              memref::StoreOp::create(b, stateAt(zero, d, e), states,
                                      at(one, d, e));
            });
          });
          rb.loop(zero, steps, [&](Value t) {
            rb.loop(zero, dimK, [&](Value d) {
              Value key = phi(load(shape.k, headK, t, d));
              rb.loop(zero, dimV, [&](Value e) {
                memref::StoreOp::create(
                    b,
                    rb.add(stateAt(one, d, e),
                           rb.mul(key, load(shape.v, headK, t, e))),
                    states, at(one, d, e));
              });
            });
          });
          rb.loop(zero, steps, addOutputGradient);
          rb.loop(zero, steps, [&](Value t) {
            queryGradient(one, t);
            keyValueGradients(t);
          });
        }
        if (initial) // dS_0 (also for an omitted initial state: it is 0)
          rb.loop(zero, dimK, [&](Value d) {
            rb.loop(zero, dimV, [&](Value e) {
              accumulate(rb, accs[3], {batch, head, d, e}, dStateAt(d, e));
            });
          });
      });
    });
    memref::DeallocOp::create(b, states);
    memref::DeallocOp::create(b, dState);
    for (const Accumulator &acc : accs)
      finish(rb, acc);
  });
}
