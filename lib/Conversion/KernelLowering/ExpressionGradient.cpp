//===- ExpressionGradient.cpp - Derivatives of expression regions ---------===//
//
// The derivative rules (docs/semantics.md, "Gradients"), for an op with
// result r, operands x and y, and adjoint a of r:
//   x + y: a, a          x - y: a, -a          x * y: a y, a x
//   x / y: a / y, -a r / y          x rem y: a, -a trunc(x / y)
//   -x: -a     exp: a r     exp2: a r ln 2     log: a / x
//   log2: a / (x ln 2)      sqrt: a / (2 r)    tanh: a (1 - r^2)
//   abs: a sign(x) (0 at 0)
//   min(x, y), max(x, y): a to x when x is chosen (ties and NaN included),
//                         else to y
//   select(c, x, y): a to the chosen operand     casts between floats: a
// Ops without floating-point operands (indices, comparisons of integers,
// sitofp of an index) and constants pass nothing back.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"

#include "llvm/ADT/DenseMap.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

static bool isFloat(Value value) { return isa<FloatType>(value.getType()); }

namespace {

/// The adjoints of one differentiation: original value -> lowered adjoint.
class Adjoints {
public:
  Adjoints(LoweringBuilder &rb) : rb(rb) {}

  Value of(Value value) const { return adjoints.lookup(value); }

  /// adjoint(value) += contribution, for floating-point values.
  void add(Value value, Value contribution) {
    if (!isFloat(value))
      return;
    Value &adjoint = adjoints[value];
    adjoint = adjoint ? rb.add(adjoint, contribution) : contribution;
  }

private:
  LoweringBuilder &rb;
  llvm::DenseMap<Value, Value> adjoints;
};

/// Passes the adjoint `a` of `op`'s result back to its operands;
/// `lowered` maps original values to the inlined ones.
void propagate(LoweringBuilder &rb, Operation *op, Value a,
               const IRMapping &lowered, Adjoints &adjoints) {
  ImplicitLocOpBuilder &b = rb.b;
  auto in = [&](unsigned index) {
    return lowered.lookup(op->getOperand(index));
  };
  Value r = lowered.lookup(op->getResult(0));
  auto to = [&](unsigned index, Value contribution) {
    adjoints.add(op->getOperand(index), contribution);
  };
  auto neg = [&](Value x) { return arith::NegFOp::create(b, x).getResult(); };
  auto div = [&](Value x, Value y) {
    return arith::DivFOp::create(b, x, y).getResult();
  };
  Value zero = rb.f32(0);
  const double ln2 = llvm::numbers::ln2;
  if (isa<arith::AddFOp>(op)) {
    to(0, a);
    to(1, a);
  } else if (isa<arith::SubFOp>(op)) {
    to(0, a);
    to(1, neg(a));
  } else if (isa<arith::MulFOp>(op)) {
    to(0, rb.mul(a, in(1)));
    to(1, rb.mul(a, in(0)));
  } else if (isa<arith::DivFOp>(op)) {
    to(0, div(a, in(1)));
    to(1, neg(div(rb.mul(a, r), in(1))));
  } else if (isa<arith::RemFOp>(op)) {
    to(0, a);
    to(1, neg(rb.mul(a, math::TruncOp::create(b, div(in(0), in(1))))));
  } else if (isa<arith::NegFOp>(op)) {
    to(0, neg(a));
  } else if (isa<arith::ExtFOp, arith::TruncFOp>(op)) {
    to(0, a);
  } else if (isa<math::ExpOp>(op)) {
    to(0, rb.mul(a, r));
  } else if (isa<math::Exp2Op>(op)) {
    to(0, rb.mul(rb.mul(a, r), rb.f32(ln2)));
  } else if (isa<math::LogOp>(op)) {
    to(0, div(a, in(0)));
  } else if (isa<math::Log2Op>(op)) {
    to(0, div(a, rb.mul(in(0), rb.f32(ln2))));
  } else if (isa<math::SqrtOp>(op)) {
    to(0, div(a, rb.mul(rb.f32(2), r)));
  } else if (isa<math::TanhOp>(op)) {
    to(0, rb.mul(a, arith::SubFOp::create(b, rb.f32(1), rb.mul(r, r))));
  } else if (isa<math::AbsFOp>(op)) {
    Value x = in(0);
    Value positive =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, x, zero);
    Value negative =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OLT, x, zero);
    to(0,
       arith::SelectOp::create(
           b, positive, a, arith::SelectOp::create(b, negative, neg(a), zero)));
  } else if (isa<arith::MinimumFOp, arith::MaximumFOp>(op)) {
    // x is chosen unless y is strictly better (ties and NaN go to x).
    auto predicate = isa<arith::MinimumFOp>(op) ? arith::CmpFPredicate::ULE
                                                : arith::CmpFPredicate::UGE;
    Value first = arith::CmpFOp::create(b, predicate, in(0), in(1));
    to(0, arith::SelectOp::create(b, first, a, zero));
    to(1, arith::SelectOp::create(b, first, zero, a));
  } else if (isa<arith::SelectOp>(op)) {
    Value condition = in(0);
    to(1, arith::SelectOp::create(b, condition, a, zero));
    to(2, arith::SelectOp::create(b, condition, zero, a));
  }
}

} // namespace

ExpressionGradient attnc::lowering::inlineExpressionGradient(
    LoweringBuilder &rb, Region &expression, ValueRange args, Value seed) {
  ExpressionGradient gradient;
  gradient.arguments.resize(args.size());
  if (expression.empty()) { // the identity of the first argument
    gradient.value = args.front();
    gradient.arguments.front() = seed;
    return gradient;
  }
  Block &block = expression.front();
  IRMapping lowered = rb.params;
  for (auto [arg, value] : llvm::zip(block.getArguments(), args))
    lowered.map(arg, value);
  for (Operation &op : block.without_terminator()) {
    if (isa<LoadOp, arith::FloorDivSIOp>(op)) {
      Value hoisted = rb.hoistedLoads.lookupOrNull(op.getResult(0));
      lowered.map(op.getResult(0),
                  hoisted ? hoisted : rb.lowerCheckedOp(op, lowered));
      continue;
    }
    rb.b.clone(op, lowered);
  }
  Value yielded = cast<YieldOp>(block.getTerminator()).getValue();
  gradient.value = lowered.lookup(yielded);

  Adjoints adjoints(rb);
  adjoints.add(yielded, seed);
  for (Operation &op : llvm::reverse(block.without_terminator())) {
    if (op.getNumResults() != 1)
      continue;
    if (Value a = adjoints.of(op.getResult(0)))
      propagate(rb, &op, a, lowered, adjoints);
  }
  for (auto [number, arg] : llvm::enumerate(block.getArguments()))
    gradient.arguments[number] = adjoints.of(arg);
  for (auto load : block.getOps<LoadOp>()) {
    if (!load.getType().isF32())
      continue;
    LoadGradient entry{load, rb.params.lookup(load.getTensor()), {}, {}};
    for (Value index : load.getIndices())
      entry.indices.push_back(lowered.lookup(index));
    Value a = adjoints.of(load.getResult());
    entry.gradient = a ? a : rb.f32(0);
    gradient.loads.push_back(entry);
  }
  return gradient;
}
