//===- TileDecayProducts.cpp - decay_dot on the GPU -----------------------===//
//
// The products of gated linear attention with one gate per key dimension,
// whose decay exp(g - h) differs for every term and so cannot go through
// the tensor cores: each lane computes its own result elements, summing
// the terms in order from the operands in shared memory (loaded tiles
// where they are, computed ones copied there by readerOf). They cover a
// sub-tile's own pairs only (16 x 16 results), next to the chunk's mma
// products. (decay_combine, which only the GLA backward uses, waits for
// that backward on the GPU.)
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_nvgpu;
namespace tile = attnc::tile;

namespace {

/// The static size of `value`'s dim `d` (checked to be static).
int64_t staticDim(Value value, int64_t d) {
  return cast<RankedTensorType>(value.getType()).getDimSize(d);
}

} // namespace

LogicalResult ProgramBuilder::lowerDecayedProduct(
    Operation *op, Value lhs, Value rhs, Value lhsGate, Value rhsGate,
    Value acc, int64_t depth,
    function_ref<Value(const DecayedTerms &, Value, Value, Value)> sum) {
  auto type = cast<RankedTensorType>(op->getResult(0).getType());
  FailureOr<Fragment::Kind> kind = registerKind(op, type);
  if (failed(kind))
    return failure();
  if (*kind != Fragment::Accumulator || ShapedType::isDynamic(depth))
    return op->emitOpError("on the GPU needs a 2-D result of columns in "
                           "multiples of 8 and a fixed depth");
  if (tiles[acc].kind != Fragment::Accumulator)
    return op->emitOpError("on the GPU needs a computed accumulator");
  TransientShared scope(*this);
  DecayedTerms terms{readerOf(lhs), readerOf(rhs), readerOf(lhsGate),
                     readerOf(rhsGate), depth};
  Fragment init = tiles[acc];
  int64_t slot = 0;
  tiles[op->getResult(0)] =
      fromElements(type, Fragment::Accumulator, init.rows,
                   [&](Value r, Value c) {
                     return sum(terms, r, c, init.regs[slot++]);
                   });
  return success();
}

LogicalResult ProgramBuilder::lowerDecayDot(tile::DecayDotOp dot) {
  // result[r][c] = acc + sum_d lhs[r][d] rhs[c][d] exp(gl[r][d] - gr[c][d])
  return lowerDecayedProduct(
      dot, dot.getLhs(), dot.getRhs(), dot.getLhsGate(), dot.getRhsGate(),
      dot.getAcc(), staticDim(dot.getLhs(), 1),
      [&](const DecayedTerms &t, Value r, Value c, Value init) -> Value {
        auto terms = [&]() -> SmallVector<Value> {
          return rb.loop(idx(0), idx(t.depth), {init},
                         [&](Value d, ValueRange partial) {
                           Value decay = math::ExpOp::create(
                               b, arith::SubFOp::create(b, t.lhsGate(r, d),
                                                        t.rhsGate(c, d)));
                           return SmallVector<Value>{math::FmaOp::create(
                               b, rb.mul(t.lhs(r, d), t.rhs(c, d)), decay,
                               partial[0])};
                         });
        };
        if (!dot.getLowerTriangular())
          return terms()[0];
        // Only c <= r: the other terms could overflow.
        return rb
            .ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ule, c, r),
                    {b.getF32Type()}, terms,
                    [&]() -> SmallVector<Value> { return {init}; })
            .front();
      });
}
