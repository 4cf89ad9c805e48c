//===- MaskStructure.cpp - What a mask expression allows ------------------===//

#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace attnc;

namespace {

/// a_i * i + a_j * j + constant + a_n * n + a_m * m over the mask's block
/// arguments; `unsignedSafe` is false once a subtraction took part, since an
/// unsigned comparison of a possibly negative value is not a band.
struct IndexAffine {
  int64_t i = 0, j = 0;
  LengthAffine rest;
  bool unsignedSafe = true;

  IndexAffine operator-(const IndexAffine &o) const {
    return {i - o.i, j - o.j,
            {rest.constant - o.rest.constant, rest.nCoeff - o.rest.nCoeff,
             rest.mCoeff - o.rest.mCoeff},
            false};
  }
  IndexAffine operator+(const IndexAffine &o) const {
    return {i + o.i, j + o.j,
            {rest.constant + o.rest.constant, rest.nCoeff + o.rest.nCoeff,
             rest.mCoeff + o.rest.mCoeff},
            unsignedSafe && o.unsignedSafe};
  }
};

std::optional<IndexAffine> asAffine(Value value, Block &mask) {
  if (auto arg = dyn_cast<BlockArgument>(value)) {
    if (arg.getOwner() != &mask)
      return std::nullopt;
    IndexAffine form;
    switch (arg.getArgNumber()) {
    case attn::mask_arg::I:
      form.i = 1;
      return form;
    case attn::mask_arg::J:
      form.j = 1;
      return form;
    case attn::mask_arg::N:
      form.rest.nCoeff = 1;
      return form;
    case attn::mask_arg::M:
      form.rest.mCoeff = 1;
      return form;
    default:
      return std::nullopt;
    }
  }
  APInt constant;
  if (matchPattern(value, m_ConstantInt(&constant))) {
    IndexAffine form;
    form.rest.constant = constant.getSExtValue();
    return form;
  }
  Operation *op = value.getDefiningOp();
  if (!op || op->getNumOperands() != 2)
    return std::nullopt;
  std::optional<IndexAffine> lhs = asAffine(op->getOperand(0), mask);
  std::optional<IndexAffine> rhs = asAffine(op->getOperand(1), mask);
  if (!lhs || !rhs)
    return std::nullopt;
  if (isa<arith::AddIOp>(op))
    return *lhs + *rhs;
  if (isa<arith::SubIOp>(op))
    return *lhs - *rhs;
  return std::nullopt;
}

/// Adds the band constraint of `lhs pred rhs` if it is one; false otherwise.
bool addBound(arith::CmpIOp cmp, Block &mask, MaskStructure &structure) {
  std::optional<IndexAffine> lhs = asAffine(cmp.getLhs(), mask);
  std::optional<IndexAffine> rhs = asAffine(cmp.getRhs(), mask);
  if (!lhs || !rhs)
    return false;
  using P = arith::CmpIPredicate;
  P predicate = cmp.getPredicate();
  bool isUnsigned = predicate == P::ult || predicate == P::ule ||
                    predicate == P::ugt || predicate == P::uge;
  if (isUnsigned && !(lhs->unsignedSafe && rhs->unsignedSafe))
    return false;
  // Normalise to diff <= 0 or diff == 0.
  IndexAffine diff = *lhs - *rhs;
  int64_t strict = 0;
  switch (predicate) {
  case P::slt:
  case P::ult:
    strict = 1;
    break;
  case P::sle:
  case P::ule:
  case P::eq:
    break;
  case P::sgt:
  case P::ugt:
    strict = 1;
    diff = IndexAffine() - diff;
    break;
  case P::sge:
  case P::uge:
    diff = IndexAffine() - diff;
    break;
  default:
    return false;
  }
  // diff = a_i * i + a_j * j + rest; a band needs (a_i, a_j) = -/+(1, -1).
  const LengthAffine &rest = diff.rest;
  LengthAffine negated{-rest.constant, -rest.nCoeff, -rest.mCoeff};
  if (diff.i == -1 && diff.j == 1) { // j - i <= -rest - strict
    LengthAffine bound = negated;
    bound.constant -= strict;
    structure.upper.push_back(bound);
    if (predicate == P::eq)
      structure.lower.push_back(negated);
    return true;
  }
  if (diff.i == 1 && diff.j == -1) { // j - i >= rest + strict
    LengthAffine bound = rest;
    bound.constant += strict;
    structure.lower.push_back(bound);
    if (predicate == P::eq)
      structure.upper.push_back(rest);
    return true;
  }
  return false;
}

void collect(Value condition, Block &mask, MaskStructure &structure) {
  if (auto conjunction = condition.getDefiningOp<arith::AndIOp>()) {
    collect(conjunction.getLhs(), mask, structure);
    collect(conjunction.getRhs(), mask, structure);
    return;
  }
  APInt constant;
  if (matchPattern(condition, m_ConstantInt(&constant)) && constant.isOne())
    return;
  auto cmp = condition.getDefiningOp<arith::CmpIOp>();
  if (!cmp || !addBound(cmp, mask, structure))
    structure.exact = false;
}

std::string describeAffine(const LengthAffine &affine) {
  std::string text;
  auto term = [&](int64_t coeff, const char *name) {
    if (!coeff)
      return;
    text += coeff < 0 ? (text.empty() ? "-" : " - ") : (text.empty() ? "" : " + ");
    if (coeff != 1 && coeff != -1)
      text += std::to_string(std::abs(coeff)) + " * ";
    text += name;
  };
  term(affine.mCoeff, "m");
  term(affine.nCoeff, "n");
  if (affine.constant || text.empty())
    text += text.empty() ? std::to_string(affine.constant)
                         : (affine.constant < 0 ? " - " : " + ") +
                               std::to_string(std::abs(affine.constant));
  return text;
}

} // namespace

MaskStructure attnc::analyzeMask(Region &mask) {
  MaskStructure structure;
  if (mask.empty())
    return structure;
  Block &block = mask.front();
  collect(cast<attn::YieldOp>(block.getTerminator()).getValue(), block,
          structure);
  return structure;
}

std::string MaskStructure::describe() const {
  std::string text;
  for (const LengthAffine &bound : upper)
    text += "j - i <= " + describeAffine(bound) + ", ";
  for (const LengthAffine &bound : lower)
    text += "j - i >= " + describeAffine(bound) + ", ";
  return text + (exact ? "exact" : "inexact");
}
