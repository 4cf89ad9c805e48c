//===- TileDecayProducts.cpp - decay_dot and decay_combine on the GPU -----===//
//
// The products of gated linear attention with one gate per key dimension,
// whose decay exp(g - h) differs for every term and so cannot go through
// the tensor cores: each lane computes its own result elements, summing
// the terms in order from the operands in shared memory (loaded tiles
// where they are, computed ones copied there by readerOf). They cover a
// sub-tile's own pairs only (16 x 16 results of decay_dot, 16 x Dk of the
// backward's decay_combine, summing 16 terms; or the chunk's rows with a
// diagonal block, each warp's rows against their own sub-tile), next to
// the chunk's mma products.
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_nvgpu;
namespace tile = attnc::tile;

LogicalResult ProgramBuilder::lowerDecayDot(tile::DecayDotOp dot) {
  // result[r][c] = acc + sum_d lhs[r][d] rhs[c][d] exp(gl[r][d] - gr[c][d])
  auto type = cast<RankedTensorType>(dot.getType());
  FailureOr<Fragment::Kind> kind = registerKind(dot, type);
  if (failed(kind))
    return failure();
  int64_t depth = cast<RankedTensorType>(dot.getLhs().getType()).getDimSize(1);
  if (*kind != Fragment::Accumulator || ShapedType::isDynamic(depth))
    return dot.emitOpError("on the GPU needs a 2-D result of columns in "
                           "multiples of 8 and a fixed depth");
  if (tiles[dot.getAcc()].kind != Fragment::Accumulator)
    return dot.emitOpError("on the GPU needs a computed accumulator");
  TransientShared scope(*this);
  OperandReaders readers(*this);
  std::function<Value(Value, Value)> lhs = readers(dot.getLhs()),
                                     rhs = readers(dot.getRhs()),
                                     lhsGate = readers(dot.getLhsGate()),
                                     rhsGate = readers(dot.getRhsGate());
  Fragment init = tiles[dot.getAcc()];
  int64_t slot = 0;
  tiles[dot] = fromElements(
      type, Fragment::Accumulator, init.rows, [&](Value r, Value c) {
        Value acc = init.regs[slot++];
        auto terms = [&]() -> SmallVector<Value> {
          return rb.loop(idx(0), idx(depth), {acc},
                         [&](Value d, ValueRange partial) {
                           Value decay = math::ExpOp::create(
                               b, arith::SubFOp::create(b, lhsGate(r, d),
                                                        rhsGate(c, d)));
                           return SmallVector<Value>{math::FmaOp::create(
                               b, rb.mul(lhs(r, d), rhs(c, d)), decay,
                               partial[0])};
                         });
        };
        // Only c <= r (the other terms could overflow), and only c in r's
        // diagonal block.
        Value kept;
        auto keep = [&](Value condition) {
          kept = kept ? Value(arith::AndIOp::create(b, kept, condition))
                      : condition;
        };
        if (dot.getLowerTriangular())
          keep(arith::CmpIOp::create(b, arith::CmpIPredicate::ule, c, r));
        if (int64_t block = dot.getDiagonalBlock())
          keep(arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                     arith::DivUIOp::create(b, c, idx(block)),
                                     arith::DivUIOp::create(b, r, idx(block))));
        if (!kept)
          return terms()[0];
        return rb
            .ifThen(kept, {b.getF32Type()}, terms,
                    [&]() -> SmallVector<Value> { return {acc}; })
            .front();
      });
  return success();
}

LogicalResult ProgramBuilder::lowerDecayCombine(tile::DecayCombineOp combine) {
  // result[r][c] = acc + sum_k lhs[r][k] rhs[k][c] exp(g[r][c] - gr[k][c])
  // over k <= r (lower_triangular) or k >= r (upper_triangular).
  auto type = cast<RankedTensorType>(combine.getType());
  FailureOr<Fragment::Kind> kind = registerKind(combine, type);
  if (failed(kind))
    return failure();
  int64_t depth =
      cast<RankedTensorType>(combine.getLhs().getType()).getDimSize(1);
  if (*kind != Fragment::Accumulator || ShapedType::isDynamic(depth))
    return combine.emitOpError("on the GPU needs a 2-D result of columns in "
                               "multiples of 8 and a fixed depth");
  if (tiles[combine.getAcc()].kind != Fragment::Accumulator)
    return combine.emitOpError("on the GPU needs a computed accumulator");
  TransientShared scope(*this);
  OperandReaders readers(*this);
  std::function<Value(Value, Value)> lhs = readers(combine.getLhs()),
                                     rhs = readers(combine.getRhs()),
                                     gate = readers(combine.getGate()),
                                     rhsGate = readers(combine.getRhsGate());
  bool lower = combine.getLowerTriangular();
  Fragment init = tiles[combine.getAcc()];
  int64_t slot = 0;
  tiles[combine] = fromElements(
      type, Fragment::Accumulator, init.rows, [&](Value r, Value c) {
        Value resultGate = gate(r, c);
        // Only the terms of the triangle (the others could overflow),
        // within r's diagonal block.
        Value first = lower ? idx(0) : r;
        Value end = lower ? rb.add(minIndex(r, idx(depth - 1)), idx(1))
                          : idx(depth);
        if (int64_t block = combine.getDiagonalBlock()) {
          Value blockStart =
              rb.mul(arith::DivUIOp::create(b, r, idx(block)), idx(block));
          if (lower)
            first = minIndex(blockStart, end);
          else
            end = minIndex(rb.add(blockStart, idx(block)), end);
        }
        return rb
            .loop(first, end, {init.regs[slot++]},
                  [&](Value k, ValueRange partial) {
                    Value decay = math::ExpOp::create(
                        b, arith::SubFOp::create(b, resultGate,
                                                 rhsGate(k, c)));
                    return SmallVector<Value>{math::FmaOp::create(
                        b, rb.mul(lhs(r, k), rhs(k, c)), decay, partial[0])};
                  })
            .front();
      });
  return success();
}
