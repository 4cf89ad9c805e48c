//===- SoftmaxBackward.cpp - The gradients of softmax, literally ----------===//
//
// The reference lowering of attn.softmax_backward (docs/semantics.md
// section 8): per query row, the scores and weights are materialised again
// from q and k, then
//   dp_j  = dO_i . v_j,   D = sum_j P_j dp_j,
//   dS_j  = P_j (dp_j - D + dlse_i) | dp_j p_j (1 - p_j) | dp_j,
// dS flows back through the score expression (ExpressionGradient.h) to the
// raw score s = scale q_i . k_j and to the tensors it reads, and
//   dq_i += scale ds_j k_j,  dk_j += scale ds_j q_i,  dv_j += w_j dO_i.
// It is the oracle of the backward: it does not use the forward's o and
// lse (a top-k kernel's rows attend over the blocks of the saved
// selection, topk_blocks), and it runs serially (one work item does everything, the others
// nothing), so that every sum has one order and no two rows race on dk,
// dv or a shared bias table. Sums go to f32 buffers first, then to the
// gradients in their dtypes.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxBackward.h"
#include "GradientBuffers.h"

#include "attnc/Conversion/KernelLowering/KernelLowering.h"

#include <limits>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;


void attnc::lowering::lowerSoftmaxBackward(SoftmaxBackwardOp op,
                                           LoweringBuilder &rb,
                                           ValueRange results) {
  ImplicitLocOpBuilder &b = rb.b;
  IRMapping &params = rb.params;
  AttentionOperands shape = getAttentionOperands(op, rb);
  Normalizer normalizer = op.getNormalizer();
  Value zero = rb.index(0);
  Value scale = rb.softmaxScale(op.getScale(), shape.dimK);
  Value dOut = params.lookup(op.getDOut());
  Value dLse = op.getDLse() ? params.lookup(op.getDLse()) : Value();
  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  Value negInf = rb.f32(-std::numeric_limits<double>::infinity());

  inFirstWorkItem(rb, [&] {
    SmallVector<Accumulator> accs;
    for (Value gradient : results)
      accs.push_back(zeroAccumulator(rb, gradient));
    auto buffer = [&](Type element) {
      return memref::AllocOp::create(
                 b, MemRefType::get({ShapedType::kDynamic}, element),
                 ValueRange{shape.lengthK})
          .getResult();
    };
    // Per key of the row: its score then weight, dp, and whether allowed.
    Value weights = buffer(f32), dps = buffer(f32), allowedFlags = buffer(i8);
    Value byteZero = arith::ConstantIntOp::create(b, i8, 0);

    rb.loop(zero, shape.numBatches, [&](Value batch) {
      Value startQ, n, startK, m;
      std::tie(startQ, n) = sequenceBounds(rb, shape.cuQ, batch, shape.lengthQ);
      std::tie(startK, m) = sequenceBounds(rb, shape.cuK, batch, shape.lengthK);
      rb.loop(zero, shape.headsQ, [&](Value head) {
        Value headK = arith::DivUIOp::create(b, head, shape.groupSize);
        rb.loop(zero, n, [&](Value i) {
          Value rowQ = rb.add(startQ, i);
          auto qIndices = [&](Value d) {
            return layoutIndices(shape.layout, batch, head, rowQ, d);
          };
          auto kvIndices = [&](Value j, Value d) {
            return layoutIndices(shape.layout, batch, headK, rb.add(startK, j),
                                 d);
          };
          auto rawScore = [&](Value j) { // scale * q_i . k_j
            Value dot = rb.loop(
                zero, shape.dimK, {rb.f32(0)}, [&](Value d, ValueRange sum) {
                  return SmallVector<Value>{rb.add(
                      sum[0], rb.mul(rb.loadF32(shape.q, qIndices(d)),
                                     rb.loadF32(shape.k, kvIndices(j, d))))};
                })[0];
            return rb.mul(scale, dot);
          };
          SmallVector<Value> scoreArgs = {Value(), batch,  head,  i, Value(), n,
                                          m,       startQ, startK};
          auto allowedAt = [&](Value j) {
            return arith::CmpIOp::create(
                b, arith::CmpIPredicate::ne,
                memref::LoadOp::create(b, allowedFlags, j), byteZero);
          };

          // Block-sparse: whether key j's block is present for row i.
          Value queryBlock, listCount, lists;
          if (std::optional<uint64_t> blockQ = op.getBlockQ())
            queryBlock = arith::DivUIOp::create(b, i, rb.index(*blockQ));
          if (Value counts = op.getKvNumBlocks()) {
            lists = params.lookup(op.getKvIndices());
            listCount = rb.checkedBlockCount(params.lookup(counts), batch,
                                             head, queryBlock,
                                             rb.dim(lists, 3));
            Value keyBlocks =
                arith::CeilDivUIOp::create(b, m, rb.index(*op.getBlockK()));
            rb.loop(zero, listCount, [&](Value entry) {
              rb.checkListedBlock(lists, batch, head, queryBlock, entry,
                                  rb.listedBlock(lists, batch, head,
                                              queryBlock, entry),
                                  keyBlocks);
            });
          }
          // Top-k: the row's saved selection (bad entries reported).
          SmallVector<Value> selectionRow;
          Value selection;
          if (Value saved = op.getTopkBlocks()) {
            selection = params.lookup(saved);
            selectionRow = lseIndices(shape.cuQ, batch, head, rowQ, i);
            rb.checkSelectionRow(
                selection, selectionRow, *op.getTopk(),
                arith::CeilDivUIOp::create(b, m, rb.index(*op.getBlockK())),
                batch, head, i);
          }
          auto blockPresent = [&](Value j) -> Value {
            Value keyBlock =
                arith::DivUIOp::create(b, j, rb.index(*op.getBlockK()));
            if (selection) {
              Value number = rb.indexToF32(keyBlock);
              return rb.loop(
                  zero, rb.index(*op.getTopk()),
                  {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
                  [&](Value entry, ValueRange found) {
                    SmallVector<Value> at(selectionRow);
                    at.push_back(entry);
                    Value named = arith::CmpFOp::create(
                        b, arith::CmpFPredicate::OEQ,
                        rb.loadF32(selection, at), number);
                    return SmallVector<Value>{
                        arith::OrIOp::create(b, found[0], named)};
                  })[0];
            }
            if (Value blockMask = op.getBlockMask())
              return rb.blockPresent(params.lookup(blockMask), batch, head,
                                     queryBlock, keyBlock);
            return rb.blockListed(lists, listCount, batch, head, queryBlock,
                                  keyBlock);
          };

          // Scores of allowed keys and their maximum.
          Value rowMax =
              rb.loop(zero, m, {negInf}, [&](Value j, ValueRange max) {
                Value allowed = rb.inlineExpression(
                    op.getMask(), {batch, head, i, j, n, m, startQ, startK},
                    arith::ConstantIntOp::create(b, b.getI1Type(), 1));
                if (std::optional<uint64_t> chunk = op.getChunk()) {
                  Value size = rb.index(*chunk);
                  allowed = arith::AndIOp::create(
                      b, allowed,
                      arith::CmpIOp::create(
                          b, arith::CmpIPredicate::eq,
                          arith::DivUIOp::create(b, i, size),
                          arith::DivUIOp::create(b, j, size)));
                }
                if (op.getBlockK())
                  allowed = arith::AndIOp::create(b, allowed, blockPresent(j));
                memref::StoreOp::create(
                    b, arith::ExtUIOp::create(b, i8, allowed), allowedFlags, j);
                return SmallVector<Value>(rb.ifThen(
                    allowed, {f32},
                    [&]() -> SmallVector<Value> {
                      scoreArgs[0] = rawScore(j);
                      scoreArgs[4] = j;
                      Value s = rb.inlineExpression(op.getScore(), scoreArgs,
                                                    scoreArgs[0]);
                      memref::StoreOp::create(b, s, weights, j);
                      return {arith::MaximumFOp::create(b, max[0], s)};
                    },
                    [&]() -> SmallVector<Value> { return {max[0]}; }));
              })[0];
          // Weights w_j: P_j (softmax, normalised), sigmoid(s_j) or s_j;
          // 0 for keys that are not allowed.
          Value rowLive = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
                                                rowMax, negInf);
          Value sum =
              rb.loop(zero, m, {rb.f32(0)}, [&](Value j, ValueRange acc) {
                Value s = memref::LoadOp::create(b, weights, j);
                Value allowed = allowedAt(j), w;
                switch (normalizer) {
                case Normalizer::softmax:
                  allowed = arith::AndIOp::create(b, allowed, rowLive);
                  w = math::ExpOp::create(b,
                                          arith::SubFOp::create(b, s, rowMax));
                  break;
                case Normalizer::sigmoid:
                  w = arith::DivFOp::create(
                      b, rb.f32(1),
                      rb.add(rb.f32(1), math::ExpOp::create(
                                            b, arith::NegFOp::create(b, s))));
                  break;
                case Normalizer::none:
                  w = s;
                  break;
                }
                w = arith::SelectOp::create(b, allowed, w, rb.f32(0));
                memref::StoreOp::create(b, w, weights, j);
                return SmallVector<Value>{rb.add(acc[0], w)};
              })[0];
          Value hasWeight = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE,
                                                  sum, rb.f32(0));
          // dp_j = dO_i . v_j, and D = sum_j P_j dp_j (softmax).
          Value dDot =
              rb.loop(zero, m, {rb.f32(0)}, [&](Value j, ValueRange acc) {
                Value w = memref::LoadOp::create(b, weights, j);
                if (normalizer == Normalizer::softmax) {
                  w = arith::SelectOp::create(b, hasWeight,
                                              arith::DivFOp::create(b, w, sum),
                                              rb.f32(0));
                  memref::StoreOp::create(b, w, weights, j);
                }
                Value dp = rb.loop(
                    zero, shape.dimV, {rb.f32(0)},
                    [&](Value e, ValueRange dot) {
                      return SmallVector<Value>{
                          rb.add(dot[0],
                                 rb.mul(rb.loadF32(dOut, qIndices(e)),
                                        rb.loadF32(shape.v, kvIndices(j, e))))};
                    })[0];
                memref::StoreOp::create(b, dp, dps, j);
                return SmallVector<Value>{rb.add(acc[0], rb.mul(w, dp))};
              })[0];
          Value dlse = dLse ? rb.loadF32(dLse, lseIndices(shape.cuQ, batch,
                                                          head, rowQ, i))
                            : rb.f32(0);

          rb.loop(zero, m, [&](Value j) {
            rb.ifThen(allowedAt(j), [&] {
              Value w = memref::LoadOp::create(b, weights, j);
              Value dp = memref::LoadOp::create(b, dps, j);
              Value dS;
              switch (normalizer) {
              case Normalizer::softmax: // P (dp - D + dlse)
                dS =
                    rb.mul(w, rb.add(arith::SubFOp::create(b, dp, dDot), dlse));
                break;
              case Normalizer::sigmoid: // dp p (1 - p)
                dS = rb.mul(rb.mul(dp, w),
                            arith::SubFOp::create(b, rb.f32(1), w));
                break;
              case Normalizer::none:
                dS = dp;
                break;
              }
              scoreArgs[0] = rawScore(j);
              scoreArgs[4] = j;
              ExpressionGradient gradient =
                  inlineExpressionGradient(rb, op.getScore(), scoreArgs, dS);
              Value ds =
                  gradient.arguments[0] ? gradient.arguments[0] : rb.f32(0);
              Value scaled = rb.mul(scale, ds);
              rb.loop(zero, shape.dimK, [&](Value d) {
                accumulate(
                    rb, accs[0], qIndices(d),
                    rb.mul(scaled, rb.loadF32(shape.k, kvIndices(j, d))));
                accumulate(rb, accs[1], kvIndices(j, d),
                           rb.mul(scaled, rb.loadF32(shape.q, qIndices(d))));
              });
              rb.loop(zero, shape.dimV, [&](Value e) {
                accumulate(rb, accs[2], kvIndices(j, e),
                           rb.mul(w, rb.loadF32(dOut, qIndices(e))));
              });
              for (LoadGradient &load : gradient.loads) {
                auto input = llvm::find(op.getInputs(), load.load.getTensor());
                accumulate(rb, accs[3 + (input - op.getInputs().begin())],
                           load.indices, load.gradient);
              }
            });
          });
        });
      });
    });
    for (Value buffer : {weights, dps, allowedFlags})
      memref::DeallocOp::create(b, buffer);
    for (const Accumulator &acc : accs)
      finish(rb, acc);
  });
}
