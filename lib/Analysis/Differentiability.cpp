//===- Differentiability.cpp - Which expressions have derivatives ---------===//

#include "attnc/Analysis/Differentiability.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

static bool isFloat(Value value) { return isa<FloatType>(value.getType()); }

bool attnc::hasDerivative(Operation *op) {
  if (llvm::none_of(op->getOperands(), isFloat))
    return true;
  return isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp,
             arith::RemFOp, arith::NegFOp, arith::MinimumFOp, arith::MaximumFOp,
             arith::SelectOp, arith::CmpFOp, arith::ExtFOp, arith::TruncFOp,
             math::ExpOp, math::Exp2Op, math::LogOp, math::Log2Op, math::SqrtOp,
             math::TanhOp, math::AbsFOp, attn::YieldOp>(op);
}

LogicalResult attnc::checkDifferentiable(Region &expression, StringRef what) {
  bool ok = true;
  expression.walk([&](Operation *op) {
    if (hasDerivative(op))
      return;
    op->emitError() << "'" << op->getName() << "' has no derivative: " << what
                    << " cannot be differentiated through it (differentiable: "
                       "+ - * / %, exp, exp2, log, log2, sqrt, tanh, abs, "
                       "min, max, where, sigmoid)";
    ok = false;
  });
  return success(ok);
}
