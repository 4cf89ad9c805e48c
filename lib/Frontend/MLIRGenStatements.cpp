//===- MLIRGenStatements.cpp - Statements: family, arguments, options -----===//
//
// A statement's family, its positional q, k, v and named arguments
// (parameters and the layout), and its options, checked against what the
// family takes; constant options (scale, integers, booleans) are folded
// here, the family's own options in MLIRGenFamilies.cpp.
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

/// The spec's family ops, as far as options and results are concerned.
enum class Family { Softmax, Linear };

constexpr StringRef kSoftmaxOptions[] = {
    "score", "mask", "scale", "normalizer", "chunk", "select",
    "block_q", "block_k", "kv_num_blocks", "kv_indices"};
constexpr StringRef kLinearOptions[] = {"gate", "feature", "scale", "causal",
                                        "chunk"};
constexpr StringRef kSoftmaxArgs[] = {"layout", "cu_seqlens", "cu_seqlens_q",
                                      "cu_seqlens_k"};
constexpr StringRef kLinearArgs[] = {"layout", "cu_seqlens", "initial"};

template <size_t N> std::string joined(const StringRef (&names)[N]) {
  return llvm::join(ArrayRef<StringRef>(names), ", ");
}
template <size_t N> bool contains(const StringRef (&names)[N], StringRef name) {
  return llvm::is_contained(ArrayRef<StringRef>(names), name);
}

} // namespace

FailureOr<Value> MLIRGenImpl::paramArgument(const ast::Expr &expr,
                                            StringRef role) {
  auto *name = llvm::dyn_cast<ast::NameExpr>(&expr);
  if (!name) {
    error(expr.loc, role + " must be a kernel parameter name",
          "pass the parameter itself, e.g. " + role + " = name");
    return failure();
  }
  auto it = params.find(name->name);
  if (it == params.end()) {
    error(expr.loc, "unknown parameter '" + name->name + "'",
          "parameters: " + parameterList());
    return failure();
  }
  return it->second;
}

std::string MLIRGenImpl::parameterList() {
  std::vector<std::string> names;
  for (auto &entry : params)
    names.push_back(entry.getKey().str());
  llvm::sort(names);
  return llvm::join(names, ", ");
}

FailureOr<attn::Layout> MLIRGenImpl::layoutArgument(const ast::Expr &expr) {
  if (auto *name = llvm::dyn_cast<ast::NameExpr>(&expr)) {
    // bthd is the flash-linear-attention spelling of bnhd.
    if (name->name == "bthd")
      return attn::Layout::bnhd;
    if (std::optional<attn::Layout> layout =
            attn::symbolizeLayout(name->name))
      return *layout;
  }
  error(expr.loc, "unknown layout",
        "layouts: bhnd ([B, H, N, D], PyTorch), bnhd or bthd ([B, N, H, D], "
        "FlashAttention), thd (packed [T, H, D] with cu_seqlens)");
  return failure();
}

FailureOr<int64_t> MLIRGenImpl::positiveInteger(const ast::Option &option,
                                                int64_t limit) {
  auto *number = llvm::dyn_cast<ast::NumberExpr>(option.value.get());
  if (!number || !number->isInteger || number->intValue <= 0) {
    error(option.value->loc,
          "option '" + option.name + "' must be a positive integer",
          "e.g. " + option.name + " = 64");
    return failure();
  }
  if (number->intValue > limit) {
    error(option.value->loc,
          "option '" + option.name + "' is " +
              std::to_string(number->intValue) + ", above the limit of " +
              std::to_string(limit),
          "docs/language.md, \"Limits\", says why sizes are bounded");
    return failure();
  }
  return number->intValue;
}

std::optional<double> MLIRGenImpl::evaluateConstant(const ast::Expr &expr) {
  if (auto *number = llvm::dyn_cast<ast::NumberExpr>(&expr))
    return number->value;
  if (auto *unary = llvm::dyn_cast<ast::UnaryExpr>(&expr)) {
    std::optional<double> value = evaluateConstant(*unary->operand);
    if (value && unary->op == ast::UnaryOp::Neg)
      return -*value;
    return std::nullopt;
  }
  if (auto *binary = llvm::dyn_cast<ast::BinaryExpr>(&expr)) {
    std::optional<double> lhs = evaluateConstant(*binary->lhs);
    std::optional<double> rhs = evaluateConstant(*binary->rhs);
    if (!lhs || !rhs)
      return std::nullopt;
    switch (binary->op) {
    case ast::BinaryOp::Add:
      return *lhs + *rhs;
    case ast::BinaryOp::Sub:
      return *lhs - *rhs;
    case ast::BinaryOp::Mul:
      return *lhs * *rhs;
    case ast::BinaryOp::Div:
      return *lhs / *rhs;
    default:
      return std::nullopt;
    }
  }
  if (auto *call = llvm::dyn_cast<ast::CallExpr>(&expr)) {
    if (call->args.size() != 1 || call->args[0].isNamed())
      return std::nullopt;
    std::optional<double> arg = evaluateConstant(*call->args[0].value);
    if (!arg)
      return std::nullopt;
    if (call->callee == "sqrt")
      return std::sqrt(*arg);
    if (call->callee == "exp")
      return std::exp(*arg);
    if (call->callee == "log")
      return std::log(*arg);
  }
  return std::nullopt;
}

FailureOr<FloatAttr> MLIRGenImpl::scaleOption(const ast::Option &option) {
  std::optional<double> value = evaluateConstant(*option.value);
  if (!value || !std::isfinite(*value)) {
    error(option.value->loc, "scale must be a finite constant",
          "e.g. scale = 0.125 or scale = 1 / sqrt(128)");
    return failure();
  }
  return builder.getF32FloatAttr(static_cast<float>(*value));
}

FailureOr<bool> MLIRGenImpl::boolOption(const ast::Option &option) {
  if (auto *value = llvm::dyn_cast<ast::BoolExpr>(option.value.get()))
    return value->value;
  error(option.value->loc,
        "option '" + option.name + "' must be true or false");
  return failure();
}

FailureOr<Operation *>
MLIRGenImpl::generateStatement(const ast::Statement &statement,
                               ArrayRef<Type> resultTypes) {
  Family family;
  if (statement.family == "softmax")
    family = Family::Softmax;
  else if (statement.family == "linear")
    family = Family::Linear;
  else {
    error(statement.familyLoc,
          "unknown attention family '" + statement.family + "'",
          "families: softmax (with chunk, block-mask and top-k variants "
          "chosen by its options) and linear");
    return failure();
  }
  if (statement.targets.size() > 2) {
    error(statement.targets[2].loc,
          family == Family::Softmax
              ? "softmax produces at most two results (o, lse)"
              : "linear produces at most two results (o, final_state)");
    return failure();
  }

  // Positional q, k, v, then named arguments.
  SmallVector<Value, 3> qkv;
  llvm::StringMap<const ast::Arg *> named;
  for (const ast::Arg &arg : statement.args) {
    if (arg.isNamed()) {
      bool known = family == Family::Softmax ? contains(kSoftmaxArgs, arg.name)
                                             : contains(kLinearArgs, arg.name);
      if (!known) {
        error(arg.loc, "unknown argument '" + arg.name + "' of " +
                           statement.family,
              "arguments: q, k, v, then " +
                  (family == Family::Softmax ? joined(kSoftmaxArgs)
                                             : joined(kLinearArgs)));
        return failure();
      }
      if (!named.try_emplace(arg.name, &arg).second) {
        error(arg.loc, "argument '" + arg.name + "' is given twice");
        return failure();
      }
      continue;
    }
    if (!named.empty() || qkv.size() == 3) {
      error(arg.loc, statement.family +
                         " takes exactly three positional arguments (q, k, "
                         "v) before the named ones");
      return failure();
    }
    FailureOr<Value> tensor = paramArgument(*arg.value, "q, k and v");
    if (failed(tensor))
      return failure();
    qkv.push_back(*tensor);
  }
  if (qkv.size() != 3) {
    error(statement.familyLoc,
          statement.family + " needs q, k and v, got " +
              std::to_string(qkv.size()) + " tensors",
          "write " + statement.family + "(q, k, v)");
    return failure();
  }

  attn::Layout layout = attn::Layout::bhnd;
  if (const ast::Arg *arg = named.lookup("layout")) {
    FailureOr<attn::Layout> parsed = layoutArgument(*arg->value);
    if (failed(parsed))
      return failure();
    layout = *parsed;
  }
  auto optionalParam = [&](StringRef name) -> FailureOr<Value> {
    const ast::Arg *arg = named.lookup(name);
    if (!arg)
      return Value();
    return paramArgument(*arg->value, name);
  };

  llvm::StringMap<const ast::Option *> options;
  for (const ast::Option &option : statement.options) {
    bool known = family == Family::Softmax
                     ? contains(kSoftmaxOptions, option.name)
                     : contains(kLinearOptions, option.name);
    if (!known) {
      error(option.loc,
            "unknown option '" + option.name + "' of " + statement.family,
            "options: " + (family == Family::Softmax
                               ? joined(kSoftmaxOptions)
                               : joined(kLinearOptions)));
      return failure();
    }
    if (!options.try_emplace(option.name, &option).second) {
      error(option.loc, "option '" + option.name + "' is given twice");
      return failure();
    }
  }

  Location opLoc = loc(statement.familyLoc);
  if (family == Family::Linear) {
    FailureOr<Value> cu = optionalParam("cu_seqlens");
    FailureOr<Value> initial = optionalParam("initial");
    if (failed(cu) || failed(initial))
      return failure();
    return generateLinear(opLoc, qkv, *cu, *initial, layout, options,
                          resultTypes);
  }
  FailureOr<Value> cuQ = optionalParam("cu_seqlens_q");
  FailureOr<Value> cuK = optionalParam("cu_seqlens_k");
  FailureOr<Value> cuBoth = optionalParam("cu_seqlens");
  if (failed(cuQ) || failed(cuK) || failed(cuBoth))
    return failure();
  if (*cuBoth) {
    if (*cuQ || *cuK) {
      error(named.lookup("cu_seqlens")->loc,
            "cu_seqlens sets both cu_seqlens_q and cu_seqlens_k; give "
            "either it or those two");
      return failure();
    }
    *cuQ = *cuBoth;
  }
  return generateSoftmax(opLoc, statement, qkv, *cuQ, *cuK, layout, options,
                         resultTypes);
}
