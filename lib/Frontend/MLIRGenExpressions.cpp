//===- MLIRGenExpressions.cpp - Expressions as scalar ops -----------------===//
//
// The expression language of the regions: int, float and bool scalars,
// names of the region's scope, operators, builtin functions and tensor
// reads (attn.load), emitted as arith/math ops with their types checked;
// int converts to float implicitly.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"

#include <cmath>

using namespace mlir;
using namespace attnc;
using namespace attnc::mlirgen;
using llvm::SMLoc;
using llvm::StringRef;

namespace {

struct Builtin {
  StringRef name;
  unsigned arity;
};
constexpr Builtin kBuiltins[] = {
    {"exp", 1},  {"exp2", 1}, {"log", 1},  {"log2", 1}, {"sqrt", 1},
    {"tanh", 1}, {"sigmoid", 1}, {"relu", 1}, {"elu", 1}, {"abs", 1},
    {"min", 2},  {"max", 2},  {"where", 3}};

std::string builtinList() {
  std::string names;
  for (const Builtin &builtin : kBuiltins) {
    if (!names.empty())
      names += ", ";
    names += builtin.name;
  }
  return names;
}

} // namespace

LogicalResult MLIRGenImpl::emitYield(const ast::Expr &expr, Scope &scope,
                                     ScalarKind expected) {
  FailureOr<Typed> value = emitExpr(expr, scope);
  if (failed(value))
    return failure();
  FailureOr<Value> converted = convert(*value, expected, expr.loc,
                                       scope.regionName);
  if (failed(converted))
    return failure();
  attn::YieldOp::create(builder, loc(expr.loc), *converted);
  return success();
}

FailureOr<Value> MLIRGenImpl::convert(Typed value, ScalarKind expected,
                                      SMLoc at, StringRef what) {
  if (value.kind == expected)
    return value.value;
  if (value.kind == ScalarKind::Int && expected == ScalarKind::Float)
    return toFloat(value, at);
  error(at, what + " must be " +
                (expected == ScalarKind::Bool ? "a bool" : "a number") +
                " expression, got " + toString(value.kind),
        expected == ScalarKind::Bool
            ? "compare values, e.g. j <= i"
            : "turn a condition into a number with where(cond, 1.0, 0.0)");
  return failure();
}

Value MLIRGenImpl::toFloat(Typed value, SMLoc at) {
  if (value.kind == ScalarKind::Float)
    return value.value;
  Location l = loc(at);
  Value wide = arith::IndexCastOp::create(builder, l, builder.getI64Type(),
                                          value.value);
  return arith::SIToFPOp::create(builder, l, builder.getF32Type(), wide);
}

FailureOr<Typed> MLIRGenImpl::emitExpr(const ast::Expr &expr, Scope &scope) {
  Location l = loc(expr.loc);
  switch (expr.getKind()) {
  case ast::Expr::Kind::Number: {
    auto &number = llvm::cast<ast::NumberExpr>(expr);
    if (number.isInteger)
      return Typed{arith::ConstantIndexOp::create(builder, l,
                                                  number.intValue),
                   ScalarKind::Int};
    if (!std::isfinite(static_cast<float>(number.value))) {
      error(expr.loc, "number out of the range of f32",
            "f32 holds magnitudes up to about 3.4e38");
      return failure();
    }
    return Typed{arith::ConstantFloatOp::create(
                     builder, l, builder.getF32Type(),
                     APFloat(static_cast<float>(number.value))),
                 ScalarKind::Float};
  }
  case ast::Expr::Kind::Bool:
    return Typed{arith::ConstantIntOp::create(
                     builder, l, builder.getI1Type(),
                     llvm::cast<ast::BoolExpr>(expr).value),
                 ScalarKind::Bool};
  case ast::Expr::Kind::Name:
    return emitName(llvm::cast<ast::NameExpr>(expr), scope);
  case ast::Expr::Kind::Unary:
    return emitUnary(llvm::cast<ast::UnaryExpr>(expr), scope);
  case ast::Expr::Kind::Binary:
    return emitBinary(llvm::cast<ast::BinaryExpr>(expr), scope);
  case ast::Expr::Kind::Call:
    return emitCall(llvm::cast<ast::CallExpr>(expr), scope);
  case ast::Expr::Kind::Index:
    return emitIndex(llvm::cast<ast::IndexExpr>(expr), scope);
  }
  llvm_unreachable("unknown expression kind");
}

FailureOr<Typed> MLIRGenImpl::emitName(const ast::NameExpr &name,
                                       Scope &scope) {
  if (std::optional<Typed> value = scope.lookup(name.name))
    return *value;
  if (params.count(name.name)) {
    error(name.loc, "'" + name.name + "' is a tensor, not a scalar",
          "read one element with brackets, e.g. " + name.name + "[" +
              indexHint(name.name) + "]");
    return failure();
  }
  error(name.loc, "unknown name '" + name.name + "' in the " +
                      scope.regionName + " expression",
        "names available here: " + scope.list() +
            "; tensors are read with brackets, e.g. slope[h]");
  return failure();
}

std::string MLIRGenImpl::indexHint(StringRef tensor) {
  auto it = paramDecls.find(tensor);
  size_t rank = it == paramDecls.end() ? 1 : it->second->dims.size();
  static constexpr StringRef guesses[] = {"b", "h", "i", "j"};
  SmallVector<StringRef> parts;
  for (size_t index = 0; index < rank; ++index)
    parts.push_back(index < 4 ? guesses[index] : "0");
  return llvm::join(parts, ", ");
}

FailureOr<Typed> MLIRGenImpl::emitUnary(const ast::UnaryExpr &unary,
                                        Scope &scope) {
  FailureOr<Typed> operand = emitExpr(*unary.operand, scope);
  if (failed(operand))
    return failure();
  Location l = loc(unary.loc);
  if (unary.op == ast::UnaryOp::Not) {
    if (operand->kind != ScalarKind::Bool) {
      error(unary.loc, "'!' needs a bool operand, got " +
                           toString(operand->kind),
            "compare first, e.g. !(x == 0)");
      return failure();
    }
    Value one = arith::ConstantIntOp::create(builder, l, builder.getI1Type(), 1);
    return Typed{arith::XOrIOp::create(builder, l, operand->value, one),
                 ScalarKind::Bool};
  }
  switch (operand->kind) {
  case ScalarKind::Float:
    return Typed{arith::NegFOp::create(builder, l, operand->value),
                 ScalarKind::Float};
  case ScalarKind::Int: {
    Value zero = arith::ConstantIndexOp::create(builder, l, 0);
    return Typed{arith::SubIOp::create(builder, l, zero, operand->value),
                 ScalarKind::Int};
  }
  case ScalarKind::Bool:
    error(unary.loc, "'-' needs a number, got bool",
          "use '!' to negate a condition");
    return failure();
  }
  llvm_unreachable("unknown scalar kind");
}

FailureOr<Typed> MLIRGenImpl::emitBinary(const ast::BinaryExpr &binary,
                                         Scope &scope) {
  FailureOr<Typed> lhs = emitExpr(*binary.lhs, scope);
  if (failed(lhs))
    return failure();
  FailureOr<Typed> rhs = emitExpr(*binary.rhs, scope);
  if (failed(rhs))
    return failure();
  Location l = loc(binary.opLoc);
  StringRef spelling = ast::toString(binary.op);
  using ast::BinaryOp;

  if (binary.op == BinaryOp::And || binary.op == BinaryOp::Or) {
    for (auto [side, value] : {std::pair{binary.lhs.get(), *lhs},
                               {binary.rhs.get(), *rhs}})
      if (value.kind != ScalarKind::Bool) {
        error(side->loc, "'" + spelling + "' needs bool operands, got " +
                             toString(value.kind),
              "compare first, e.g. x != 0");
        return failure();
      }
    Value result =
        binary.op == BinaryOp::And
            ? Value(arith::AndIOp::create(builder, l, lhs->value, rhs->value))
            : Value(arith::OrIOp::create(builder, l, lhs->value, rhs->value));
    return Typed{result, ScalarKind::Bool};
  }

  bool comparison = binary.op == BinaryOp::Lt || binary.op == BinaryOp::Le ||
                    binary.op == BinaryOp::Gt || binary.op == BinaryOp::Ge ||
                    binary.op == BinaryOp::Eq || binary.op == BinaryOp::Ne;
  bool equality = binary.op == BinaryOp::Eq || binary.op == BinaryOp::Ne;
  if (lhs->kind == ScalarKind::Bool || rhs->kind == ScalarKind::Bool) {
    if (equality && lhs->kind == rhs->kind) {
      auto predicate = binary.op == BinaryOp::Eq ? arith::CmpIPredicate::eq
                                                 : arith::CmpIPredicate::ne;
      return Typed{arith::CmpIOp::create(builder, l, predicate, lhs->value,
                                         rhs->value),
                   ScalarKind::Bool};
    }
    error(binary.opLoc, "type mismatch: '" + spelling + "' between " +
                            toString(lhs->kind) + " and " +
                            toString(rhs->kind),
          comparison ? "compare numbers with numbers and bools with bools"
                     : "arithmetic needs numbers; pick a number with "
                       "where(cond, a, b)");
    return failure();
  }

  if (lhs->kind == ScalarKind::Int && rhs->kind == ScalarKind::Int)
    return emitIntBinary(binary, l, lhs->value, rhs->value);
  Value a = toFloat(*lhs, binary.lhs->loc), b = toFloat(*rhs, binary.rhs->loc);
  if (comparison) {
    arith::CmpFPredicate predicate;
    switch (binary.op) {
    case BinaryOp::Lt:
      predicate = arith::CmpFPredicate::OLT;
      break;
    case BinaryOp::Le:
      predicate = arith::CmpFPredicate::OLE;
      break;
    case BinaryOp::Gt:
      predicate = arith::CmpFPredicate::OGT;
      break;
    case BinaryOp::Ge:
      predicate = arith::CmpFPredicate::OGE;
      break;
    case BinaryOp::Eq:
      predicate = arith::CmpFPredicate::OEQ;
      break;
    default:
      predicate = arith::CmpFPredicate::UNE;
      break;
    }
    return Typed{arith::CmpFOp::create(builder, l, predicate, a, b),
                 ScalarKind::Bool};
  }
  Value result;
  switch (binary.op) {
  case BinaryOp::Add:
    result = arith::AddFOp::create(builder, l, a, b);
    break;
  case BinaryOp::Sub:
    result = arith::SubFOp::create(builder, l, a, b);
    break;
  case BinaryOp::Mul:
    result = arith::MulFOp::create(builder, l, a, b);
    break;
  case BinaryOp::Div:
    result = arith::DivFOp::create(builder, l, a, b);
    break;
  default:
    result = arith::RemFOp::create(builder, l, a, b);
    break;
  }
  return Typed{result, ScalarKind::Float};
}

FailureOr<Typed> MLIRGenImpl::emitIntBinary(const ast::BinaryExpr &binary,
                                            Location l, Value a, Value b) {
  using ast::BinaryOp;
  if (binary.op == BinaryOp::Div || binary.op == BinaryOp::Rem)
    if (auto *number = llvm::dyn_cast<ast::NumberExpr>(binary.rhs.get());
        number && number->isInteger && number->intValue == 0) {
      error(binary.rhs->loc, "integer division by zero");
      return failure();
    }
  auto compare = [&](arith::CmpIPredicate predicate) {
    return Typed{arith::CmpIOp::create(builder, l, predicate, a, b),
                 ScalarKind::Bool};
  };
  switch (binary.op) {
  case BinaryOp::Add:
    return Typed{arith::AddIOp::create(builder, l, a, b), ScalarKind::Int};
  case BinaryOp::Sub:
    return Typed{arith::SubIOp::create(builder, l, a, b), ScalarKind::Int};
  case BinaryOp::Mul:
    return Typed{arith::MulIOp::create(builder, l, a, b), ScalarKind::Int};
  case BinaryOp::Div:
    return Typed{arith::FloorDivSIOp::create(builder, l, a, b),
                 ScalarKind::Int};
  case BinaryOp::Rem: { // a - floor(a / b) * b
    Value quotient = arith::FloorDivSIOp::create(builder, l, a, b);
    Value product = arith::MulIOp::create(builder, l, quotient, b);
    return Typed{arith::SubIOp::create(builder, l, a, product),
                 ScalarKind::Int};
  }
  case BinaryOp::Lt:
    return compare(arith::CmpIPredicate::slt);
  case BinaryOp::Le:
    return compare(arith::CmpIPredicate::sle);
  case BinaryOp::Gt:
    return compare(arith::CmpIPredicate::sgt);
  case BinaryOp::Ge:
    return compare(arith::CmpIPredicate::sge);
  case BinaryOp::Eq:
    return compare(arith::CmpIPredicate::eq);
  case BinaryOp::Ne:
    return compare(arith::CmpIPredicate::ne);
  case BinaryOp::And:
  case BinaryOp::Or:
    break;
  }
  llvm_unreachable("logical operators are handled by the caller");
}

FailureOr<Typed> MLIRGenImpl::emitCall(const ast::CallExpr &call,
                                       Scope &scope) {
  const Builtin *builtin = llvm::find_if(kBuiltins, [&](const Builtin &b) {
    return b.name == call.callee;
  });
  if (builtin == std::end(kBuiltins)) {
    if (call.callee == "topk")
      error(call.loc, "topk(...) is only valid as the select option",
            "write select = topk(n, block = size) in the option block");
    else if (params.count(call.callee))
      error(call.loc, "'" + call.callee + "' is a tensor, not a function",
            "read an element with brackets: " + call.callee + "[...]");
    else
      error(call.loc, "unknown function '" + call.callee + "'",
            "functions: " + builtinList());
    return failure();
  }
  if (call.args.size() != builtin->arity) {
    error(call.loc, "'" + call.callee + "' takes " +
                        std::to_string(builtin->arity) + " argument" +
                        (builtin->arity == 1 ? "" : "s") + ", got " +
                        std::to_string(call.args.size()));
    return failure();
  }
  SmallVector<Typed> args;
  for (const ast::Arg &arg : call.args) {
    if (arg.isNamed()) {
      error(arg.loc, "'" + call.callee + "' takes no named arguments");
      return failure();
    }
    FailureOr<Typed> value = emitExpr(*arg.value, scope);
    if (failed(value))
      return failure();
    args.push_back(*value);
  }
  Location l = loc(call.loc);
  StringRef name = call.callee;

  if (name == "where") {
    if (args[0].kind != ScalarKind::Bool) {
      error(call.args[0].loc, "the condition of where must be a bool, got " +
                                  toString(args[0].kind));
      return failure();
    }
    Typed a = args[1], b = args[2];
    if (a.kind == ScalarKind::Bool || b.kind == ScalarKind::Bool) {
      if (a.kind != b.kind) {
        error(call.loc, "where needs two values of one type, got " +
                            toString(a.kind) + " and " + toString(b.kind));
        return failure();
      }
    } else if (a.kind != b.kind) {
      a = {toFloat(a, call.args[1].loc), ScalarKind::Float};
      b = {toFloat(b, call.args[2].loc), ScalarKind::Float};
    }
    return Typed{arith::SelectOp::create(builder, l, args[0].value, a.value,
                                         b.value),
                 a.kind};
  }
  for (auto [arg, value] : llvm::zip(call.args, args))
    if (value.kind == ScalarKind::Bool) {
      error(arg.loc, "'" + name + "' needs a number, got bool",
            "turn a condition into a number with where(cond, 1.0, 0.0)");
      return failure();
    }
  bool allInt = llvm::all_of(
      args, [](const Typed &t) { return t.kind == ScalarKind::Int; });
  if (allInt && (name == "min" || name == "max" || name == "abs")) {
    if (name == "min")
      return Typed{arith::MinSIOp::create(builder, l, args[0].value,
                                          args[1].value),
                   ScalarKind::Int};
    if (name == "max")
      return Typed{arith::MaxSIOp::create(builder, l, args[0].value,
                                          args[1].value),
                   ScalarKind::Int};
    Value zero = arith::ConstantIndexOp::create(builder, l, 0);
    Value negated = arith::SubIOp::create(builder, l, zero, args[0].value);
    return Typed{arith::MaxSIOp::create(builder, l, args[0].value, negated),
                 ScalarKind::Int};
  }
  SmallVector<Value> x;
  for (auto [arg, value] : llvm::zip(call.args, args))
    x.push_back(toFloat(value, arg.loc));
  FloatType f32 = builder.getF32Type();
  auto constant = [&](float value) {
    return arith::ConstantFloatOp::create(builder, l, f32, APFloat(value));
  };
  Value result;
  if (name == "exp")
    result = math::ExpOp::create(builder, l, x[0]);
  else if (name == "exp2")
    result = math::Exp2Op::create(builder, l, x[0]);
  else if (name == "log")
    result = math::LogOp::create(builder, l, x[0]);
  else if (name == "log2")
    result = math::Log2Op::create(builder, l, x[0]);
  else if (name == "sqrt")
    result = math::SqrtOp::create(builder, l, x[0]);
  else if (name == "tanh")
    result = math::TanhOp::create(builder, l, x[0]);
  else if (name == "abs")
    result = math::AbsFOp::create(builder, l, x[0]);
  else if (name == "min")
    result = arith::MinimumFOp::create(builder, l, x[0], x[1]);
  else if (name == "max")
    result = arith::MaximumFOp::create(builder, l, x[0], x[1]);
  else if (name == "sigmoid") { // 1 / (1 + exp(-x))
    Value e = math::ExpOp::create(builder, l,
                                  arith::NegFOp::create(builder, l, x[0]));
    result = arith::DivFOp::create(
        builder, l, constant(1), arith::AddFOp::create(builder, l, constant(1), e));
  } else if (name == "relu") {
    result = arith::MaximumFOp::create(builder, l, x[0], constant(0));
  } else { // elu: x > 0 ? x : exp(x) - 1
    Value positive = arith::CmpFOp::create(builder, l, arith::CmpFPredicate::OGT,
                                           x[0], constant(0));
    Value negative = arith::SubFOp::create(
        builder, l, math::ExpOp::create(builder, l, x[0]), constant(1));
    result = arith::SelectOp::create(builder, l, positive, x[0], negative);
  }
  return Typed{result, ScalarKind::Float};
}

FailureOr<Typed> MLIRGenImpl::emitIndex(const ast::IndexExpr &index,
                                        Scope &scope) {
  auto it = params.find(index.base);
  if (it == params.end()) {
    if (scope.lookup(index.base))
      error(index.loc, "'" + index.base + "' is a scalar and cannot be "
                                          "indexed");
    else
      error(index.loc, "unknown tensor '" + index.base + "'",
            "kernel parameters: " + parameterList());
    return failure();
  }
  const ast::TensorDecl &decl = *paramDecls.lookup(index.base);
  if (decl.optional) {
    error(index.loc, "optional parameter '" + index.base +
                         "' cannot be read in an expression",
          "it may be absent at launch; make it required");
    return failure();
  }
  if (index.indices.size() != decl.dims.size()) {
    error(index.loc, "'" + index.base + "' has rank " +
                         std::to_string(decl.dims.size()) +
                         " but is indexed with " +
                         std::to_string(index.indices.size()) + " indices",
          "declared as " + index.base + ": " +
              ast::toString(decl.dtype).str() + "[" +
              llvm::join(llvm::map_range(decl.dims,
                                         [](const ast::Dim &dim) {
                                           return dim.isSymbolic()
                                                      ? dim.symbol
                                                      : std::to_string(
                                                            dim.value);
                                         }),
                         ", ") +
              "]");
    return failure();
  }
  SmallVector<Value> indices;
  for (const ast::ExprPtr &expr : index.indices) {
    FailureOr<Typed> value = emitExpr(*expr, scope);
    if (failed(value))
      return failure();
    if (value->kind != ScalarKind::Int) {
      error(expr->loc, "tensor indices must be integers, got " +
                           toString(value->kind),
            "index with integer expressions such as h or i / 64");
      return failure();
    }
    indices.push_back(value->value);
  }
  ScalarKind kind = decl.dtype == ast::DType::Bool ? ScalarKind::Bool
                    : decl.dtype == ast::DType::I32 ||
                            decl.dtype == ast::DType::I8
                        ? ScalarKind::Int
                        : ScalarKind::Float;
  Type resultType = kind == ScalarKind::Bool    ? builder.getI1Type()
                    : kind == ScalarKind::Int ? Type(builder.getIndexType())
                                              : builder.getF32Type();
  return Typed{attn::LoadOp::create(builder, loc(index.loc), resultType,
                                    it->second, indices),
               kind};
}
