//===- MLIRGen.cpp - .attn AST to the attn dialect ------------------------===//
//
// Resolves names, checks types and options, and emits one attn.kernel per
// spec kernel. Expressions become scalar arith/math ops in the regions of the
// family op; three spellings are recognised as structure: a conjunct
// `i / C == j / C` of the mask (chunk-local softmax), a conjunct
// `blocks[b, h, i / BQ, j / BK]` with a bool tensor (run-time block mask) and
// the option `select = topk(n, block = BK)` (top-k block selection).
//
//===----------------------------------------------------------------------===//

#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Frontend/Parser.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <functional>

using namespace mlir;
using namespace attnc;
using llvm::SMLoc;
using llvm::StringRef;

namespace {

/// The three scalar types of the expression language.
enum class ScalarKind { Int, Float, Bool };

StringRef toString(ScalarKind kind) {
  switch (kind) {
  case ScalarKind::Int:
    return "int";
  case ScalarKind::Float:
    return "float";
  case ScalarKind::Bool:
    return "bool";
  }
  llvm_unreachable("unknown scalar kind");
}

struct Typed {
  Value value;
  ScalarKind kind;
};

/// Names an expression may use: implicit values (block arguments, or values
/// derived from them on first use, such as `causal`).
class Scope {
public:
  explicit Scope(StringRef regionName) : regionName(regionName) {}

  void add(StringRef name, ScalarKind kind, Value value) {
    names.push_back(name.str());
    values[name] = {value, kind};
  }
  void addLazy(StringRef name, std::function<Typed()> make) {
    names.push_back(name.str());
    lazy[name] = std::move(make);
  }
  std::optional<Typed> lookup(StringRef name) {
    if (auto it = values.find(name); it != values.end())
      return it->second;
    if (auto it = lazy.find(name); it != lazy.end()) {
      Typed typed = it->second();
      values[name] = typed;
      return typed;
    }
    return std::nullopt;
  }
  std::string list() const { return llvm::join(names, ", "); }

  std::string regionName;

private:
  std::vector<std::string> names;
  llvm::StringMap<Typed> values;
  llvm::StringMap<std::function<Typed()>> lazy;
};

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

/// Flattens `a && b && c` into its conjuncts.
void collectConjuncts(const ast::Expr *expr,
                      std::vector<const ast::Expr *> &conjuncts) {
  if (auto *binary = llvm::dyn_cast<ast::BinaryExpr>(expr);
      binary && binary->op == ast::BinaryOp::And) {
    collectConjuncts(binary->lhs.get(), conjuncts);
    collectConjuncts(binary->rhs.get(), conjuncts);
    return;
  }
  conjuncts.push_back(expr);
}

bool isName(const ast::Expr *expr, StringRef name) {
  auto *nameExpr = llvm::dyn_cast<ast::NameExpr>(expr);
  return nameExpr && nameExpr->name == name;
}

/// Matches `index / C` with a positive integer literal C.
std::optional<int64_t> matchDivByConstant(const ast::Expr *expr,
                                          StringRef index) {
  auto *div = llvm::dyn_cast<ast::BinaryExpr>(expr);
  if (!div || div->op != ast::BinaryOp::Div || !isName(div->lhs.get(), index))
    return std::nullopt;
  auto *number = llvm::dyn_cast<ast::NumberExpr>(div->rhs.get());
  if (!number || !number->isInteger || number->intValue <= 0)
    return std::nullopt;
  return number->intValue;
}

/// Matches `i / C == j / C` and returns C.
std::optional<int64_t> matchChunkConjunct(const ast::Expr *expr) {
  auto *eq = llvm::dyn_cast<ast::BinaryExpr>(expr);
  if (!eq || eq->op != ast::BinaryOp::Eq)
    return std::nullopt;
  std::optional<int64_t> lhs = matchDivByConstant(eq->lhs.get(), "i");
  std::optional<int64_t> rhs = matchDivByConstant(eq->rhs.get(), "j");
  if (!lhs || !rhs || *lhs != *rhs)
    return std::nullopt;
  return lhs;
}

struct BlockMaskMatch {
  std::string tensor;
  int64_t blockQ, blockK;
};

/// Matches `P[b, h, i / BQ, j / BK]`.
std::optional<BlockMaskMatch> matchBlockMaskConjunct(const ast::Expr *expr) {
  auto *index = llvm::dyn_cast<ast::IndexExpr>(expr);
  if (!index || index->indices.size() != 4 ||
      !isName(index->indices[0].get(), "b") ||
      !isName(index->indices[1].get(), "h"))
    return std::nullopt;
  std::optional<int64_t> blockQ =
      matchDivByConstant(index->indices[2].get(), "i");
  std::optional<int64_t> blockK =
      matchDivByConstant(index->indices[3].get(), "j");
  if (!blockQ || !blockK)
    return std::nullopt;
  return BlockMaskMatch{index->base, *blockQ, *blockK};
}

class MLIRGenImpl {
public:
  MLIRGenImpl(MLIRContext &context, attnc::DiagnosticEngine &diags)
      : builder(&context), diags(diags) {}

  OwningOpRef<ModuleOp> generate(const ast::Module &module) {
    OwningOpRef<ModuleOp> result = ModuleOp::create(builder.getUnknownLoc());
    llvm::StringSet<> kernelNames;
    for (const ast::Kernel &kernel : module.kernels) {
      if (!kernelNames.insert(kernel.name).second) {
        diags.error(kernel.nameLoc, "kernel '" + kernel.name +
                                        "' is defined more than once",
                    "give each kernel of a file its own name");
        return nullptr;
      }
      builder.setInsertionPointToEnd(result->getBody());
      if (failed(generateKernel(kernel)))
        return nullptr;
    }
    if (failed(verifyReportingToSpec(*result)))
      return nullptr;
    return result;
  }

private:
  //===--------------------------------------------------------------------===//
  // Locations and errors
  //===--------------------------------------------------------------------===//

  Location loc(SMLoc smloc) {
    llvm::SourceMgr &mgr = diags.sourceMgr();
    unsigned buffer = mgr.FindBufferContainingLoc(smloc);
    if (!buffer)
      return builder.getUnknownLoc();
    auto [line, col] = mgr.getLineAndColumn(smloc, buffer);
    return FileLineColLoc::get(
        builder.getStringAttr(
            mgr.getMemoryBuffer(buffer)->getBufferIdentifier()),
        line, col);
  }

  void error(SMLoc at, const llvm::Twine &message,
             const llvm::Twine &hint = "") {
    diags.error(at, message, hint);
  }
  LogicalResult fail(SMLoc at, const llvm::Twine &message,
                     const llvm::Twine &hint = "") {
    diags.error(at, message, hint);
    return failure();
  }

  /// Runs the verifier; its diagnostics are reported at the spec location
  /// that the failing op carries.
  LogicalResult verifyReportingToSpec(ModuleOp module) {
    ScopedDiagnosticHandler handler(
        module.getContext(), [&](mlir::Diagnostic &diag) {
          report(diag);
          return success();
        });
    return verify(module);
  }

  void report(mlir::Diagnostic &diag) {
    SMLoc at;
    if (auto fileLoc = diag.getLocation()->findInstanceOf<FileLineColLoc>()) {
      llvm::SourceMgr &mgr = diags.sourceMgr();
      for (unsigned buffer = 1; buffer <= mgr.getNumBuffers(); ++buffer)
        if (mgr.getMemoryBuffer(buffer)->getBufferIdentifier() ==
            fileLoc.getFilename().getValue())
          at = mgr.FindLocForLineAndColumn(buffer, fileLoc.getLine(),
                                           fileLoc.getColumn());
    }
    // Spec authors know the statement, not the op it became: drop the
    // "'attn.softmax' op " prefix and the dump of the generic op.
    std::string message = diag.str();
    if (StringRef(message).starts_with("'attn.")) {
      size_t prefixEnd = message.find("' op ");
      if (prefixEnd != std::string::npos)
        message = message.substr(prefixEnd + 5);
    }
    if (diag.getSeverity() == DiagnosticSeverity::Note) {
      if (!StringRef(message).starts_with("see current operation"))
        diags.note(at, message);
    } else {
      diags.error(at, message);
    }
    for (mlir::Diagnostic &note : diag.getNotes())
      report(note);
  }

  //===--------------------------------------------------------------------===//
  // Kernels
  //===--------------------------------------------------------------------===//

  Type elementType(ast::DType dtype) {
    switch (dtype) {
    case ast::DType::F32:
      return builder.getF32Type();
    case ast::DType::F16:
      return builder.getF16Type();
    case ast::DType::BF16:
      return builder.getBF16Type();
    case ast::DType::I32:
      return builder.getI32Type();
    case ast::DType::I8:
      return builder.getI8Type();
    case ast::DType::Bool:
      return builder.getI1Type();
    }
    llvm_unreachable("unknown dtype");
  }

  attn::AttnTensorType tensorType(const ast::TensorDecl &decl) {
    SmallVector<Attribute> dims;
    for (const ast::Dim &dim : decl.dims)
      dims.push_back(dim.isSymbolic()
                         ? Attribute(builder.getStringAttr(dim.symbol))
                         : Attribute(builder.getI64IntegerAttr(dim.value)));
    return attn::AttnTensorType::get(builder.getContext(),
                                     elementType(decl.dtype),
                                     builder.getArrayAttr(dims));
  }

  LogicalResult generateKernel(const ast::Kernel &kernel) {
    params.clear();
    paramDecls.clear();
    llvm::StringSet<> names;
    for (const ast::TensorDecl *decl : declsOf(kernel)) {
      if (!names.insert(decl->name).second)
        return fail(decl->loc, "'" + decl->name + "' is declared twice",
                     "parameters and results share one namespace");
      if (decl->name == "s" || decl->name == "b" || decl->name == "h" ||
          decl->name == "i" || decl->name == "j" || decl->name == "t" ||
          decl->name == "d" || decl->name == "x" || decl->name == "n" ||
          decl->name == "m")
        return fail(decl->loc,
                     "'" + decl->name + "' is an implicit index name",
                     "choose another name for this tensor");
      for (const ast::Dim &dim : decl->dims)
        if (!dim.isSymbolic() && dim.value == 0)
          return fail(dim.loc, "a fixed dimension size must be positive",
                       "a tensor with a dimension of 0 holds nothing; name "
                       "sizes that vary at launch (e.g. N)");
    }
    size_t tensors = kernel.params.size() + kernel.results.size();
    if (tensors > static_cast<size_t>(attn::kMaxKernelTensors))
      return fail(kernel.nameLoc,
                   "kernel '" + kernel.name + "' passes " +
                       std::to_string(tensors) + " tensors, above the limit of " +
                       std::to_string(attn::kMaxKernelTensors),
                   "pack parameters into fewer tensors, e.g. one [H, K] table "
                   "instead of K [H] vectors");
    for (const ast::TensorDecl &result : kernel.results)
      if (result.optional)
        return fail(result.loc, "result '" + result.name +
                                     "' cannot be optional",
                     "only inputs may be marked with '?'");

    SmallVector<Type> paramTypes, resultTypes;
    SmallVector<Attribute> paramNames, resultNames;
    SmallVector<bool> optional;
    for (const ast::TensorDecl &param : kernel.params) {
      paramTypes.push_back(tensorType(param));
      paramNames.push_back(builder.getStringAttr(param.name));
      optional.push_back(param.optional);
    }
    for (const ast::TensorDecl &result : kernel.results) {
      resultTypes.push_back(tensorType(result));
      resultNames.push_back(builder.getStringAttr(result.name));
    }
    if (kernel.results.empty())
      return fail(kernel.nameLoc, "kernel '" + kernel.name +
                                       "' has no results",
                   "declare the outputs after '->', e.g. -> (o: f32[B, H, N, 64])");

    auto kernelOp = attn::KernelOp::create(
        builder, loc(kernel.loc), builder.getStringAttr(kernel.name),
        TypeAttr::get(builder.getFunctionType(paramTypes, resultTypes)),
        builder.getArrayAttr(paramNames), builder.getArrayAttr(resultNames),
        builder.getDenseBoolArrayAttr(optional));
    Block *body = builder.createBlock(&kernelOp.getBody());
    for (auto [decl, type] : llvm::zip(kernel.params, paramTypes)) {
      params[decl.name] = body->addArgument(type, loc(decl.loc));
      paramDecls[decl.name] = &decl;
    }

    if (kernel.body.size() != 1)
      return fail(kernel.body.empty() ? kernel.nameLoc
                                       : kernel.body[1].loc,
                   "a kernel holds exactly one attention statement, found " +
                       std::to_string(kernel.body.size()),
                   "write one statement such as o = softmax(q, k, v) { ... }");
    const ast::Statement &statement = kernel.body.front();

    // Targets name the kernel's results: o, then lse or the final state.
    llvm::StringMap<unsigned> targetIndex;
    for (auto [index, target] : llvm::enumerate(statement.targets)) {
      const std::string &targetName = target.name;
      if (!llvm::any_of(kernel.results, [&](const ast::TensorDecl &result) {
            return result.name == targetName;
          }))
        return fail(target.loc,
                     "'" + target.name + "' is not a result of kernel '" +
                         kernel.name + "'",
                     "assign to the results declared after '->'");
      if (!targetIndex.try_emplace(target.name, index).second)
        return fail(target.loc, "'" + target.name + "' is assigned twice");
    }
    for (const ast::TensorDecl &result : kernel.results)
      if (!targetIndex.count(result.name))
        return fail(result.loc, "result '" + result.name +
                                     "' is never assigned",
                     "list it on the left of the statement, e.g. o, " +
                         result.name + " = softmax(...)");

    SmallVector<Type> familyResultTypes(statement.targets.size());
    for (auto [decl, type] : llvm::zip(kernel.results, resultTypes))
      familyResultTypes[targetIndex[decl.name]] = type;

    FailureOr<Operation *> familyOp =
        generateStatement(statement, familyResultTypes);
    if (failed(familyOp))
      return failure();
    SmallVector<Value> returned;
    for (const ast::TensorDecl &result : kernel.results)
      returned.push_back((*familyOp)->getResult(targetIndex[result.name]));
    attn::ReturnOp::create(builder, loc(kernel.loc), returned);
    builder.setInsertionPointAfter(kernelOp);
    return success();
  }

  static SmallVector<const ast::TensorDecl *> declsOf(const ast::Kernel &kernel) {
    SmallVector<const ast::TensorDecl *> decls;
    for (const ast::TensorDecl &decl : kernel.params)
      decls.push_back(&decl);
    for (const ast::TensorDecl &decl : kernel.results)
      decls.push_back(&decl);
    return decls;
  }

  //===--------------------------------------------------------------------===//
  // Statements: family, arguments, options
  //===--------------------------------------------------------------------===//

  FailureOr<Value> paramArgument(const ast::Expr &expr, StringRef role) {
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

  std::string parameterList() {
    std::vector<std::string> names;
    for (auto &entry : params)
      names.push_back(entry.getKey().str());
    llvm::sort(names);
    return llvm::join(names, ", ");
  }

  FailureOr<attn::Layout> layoutArgument(const ast::Expr &expr) {
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

  FailureOr<int64_t> positiveInteger(const ast::Option &option,
                                     int64_t limit = INT64_MAX) {
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

  /// Folds a constant expression (numbers, + - * /, sqrt, exp, log).
  std::optional<double> evaluateConstant(const ast::Expr &expr) {
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

  FailureOr<FloatAttr> scaleOption(const ast::Option &option) {
    std::optional<double> value = evaluateConstant(*option.value);
    if (!value || !std::isfinite(*value)) {
      error(option.value->loc, "scale must be a finite constant",
            "e.g. scale = 0.125 or scale = 1 / sqrt(128)");
      return failure();
    }
    return builder.getF32FloatAttr(static_cast<float>(*value));
  }

  FailureOr<bool> boolOption(const ast::Option &option) {
    if (auto *value = llvm::dyn_cast<ast::BoolExpr>(option.value.get()))
      return value->value;
    error(option.value->loc,
          "option '" + option.name + "' must be true or false");
    return failure();
  }

  FailureOr<Operation *> generateStatement(const ast::Statement &statement,
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

  //===--------------------------------------------------------------------===//
  // Softmax
  //===--------------------------------------------------------------------===//

  FailureOr<Operation *>
  generateSoftmax(Location opLoc, const ast::Statement &statement,
                  ArrayRef<Value> qkv, Value cuQ, Value cuK,
                  attn::Layout layout,
                  llvm::StringMap<const ast::Option *> &options,
                  ArrayRef<Type> resultTypes) {
    FloatAttr scale;
    if (const ast::Option *option = options.lookup("scale")) {
      FailureOr<FloatAttr> parsed = scaleOption(*option);
      if (failed(parsed))
        return failure();
      scale = *parsed;
    }
    attn::Normalizer normalizer = attn::Normalizer::softmax;
    if (const ast::Option *option = options.lookup("normalizer")) {
      auto *name = llvm::dyn_cast<ast::NameExpr>(option->value.get());
      std::optional<attn::Normalizer> parsed =
          name ? attn::symbolizeNormalizer(name->name) : std::nullopt;
      if (!parsed) {
        error(option->value->loc, "unknown normalizer",
              "normalizers: softmax, sigmoid, none");
        return failure();
      }
      normalizer = *parsed;
    }

    // Structure from the mask: chunk-local and block-mask conjuncts.
    std::vector<const ast::Expr *> conjuncts;
    if (const ast::Option *mask = options.lookup("mask"))
      collectConjuncts(mask->value.get(), conjuncts);
    std::optional<int64_t> chunk;
    std::optional<BlockMaskMatch> blockMask;
    std::vector<const ast::Expr *> remaining;
    for (const ast::Expr *conjunct : conjuncts) {
      if (!blockMask) {
        if (std::optional<BlockMaskMatch> match =
                matchBlockMaskConjunct(conjunct)) {
          auto decl = paramDecls.find(match->tensor);
          if (decl != paramDecls.end() &&
              decl->second->dtype == ast::DType::Bool) {
            if (std::max(match->blockQ, match->blockK) > attn::kMaxBlockSize) {
              error(conjunct->loc,
                    "block mask blocks of " + std::to_string(match->blockQ) +
                        " x " + std::to_string(match->blockK) +
                        " exceed the limit of " +
                        std::to_string(attn::kMaxBlockSize),
                    "use blocks of at most " +
                        std::to_string(attn::kMaxBlockSize) +
                        " positions (docs/language.md, \"Limits\")");
              return failure();
            }
            blockMask = match;
            continue;
          }
        }
      }
      if (!chunk)
        if ((chunk = matchChunkConjunct(conjunct)))
          continue;
      remaining.push_back(conjunct);
    }
    if (const ast::Option *option = options.lookup("chunk")) {
      FailureOr<int64_t> value = positiveInteger(*option);
      if (failed(value))
        return failure();
      if (chunk && *chunk != *value) {
        error(option->loc, "chunk = " + std::to_string(*value) +
                               " contradicts the mask's i / " +
                               std::to_string(*chunk) + " == j / " +
                               std::to_string(*chunk));
        return failure();
      }
      chunk = *value;
    }

    // Sparsity sources: block mask, index lists, or top-k selection.
    std::optional<int64_t> topk, blockQ, blockK;
    if (const ast::Option *option = options.lookup("select")) {
      auto *call = llvm::dyn_cast<ast::CallExpr>(option->value.get());
      if (!call || call->callee != "topk" || call->args.size() != 2 ||
          call->args[0].isNamed() || call->args[1].name != "block") {
        error(option->value->loc, "select must be topk(n, block = size)",
              "e.g. select = topk(16, block = 64)");
        return failure();
      }
      auto *n = llvm::dyn_cast<ast::NumberExpr>(call->args[0].value.get());
      auto *size = llvm::dyn_cast<ast::NumberExpr>(call->args[1].value.get());
      if (!n || !n->isInteger || n->intValue <= 0 || !size ||
          !size->isInteger || size->intValue <= 0) {
        error(option->value->loc,
              "topk needs a positive number of blocks and a positive block "
              "size",
              "e.g. select = topk(16, block = 64)");
        return failure();
      }
      if (n->intValue > attn::kMaxTopk ||
          size->intValue > attn::kMaxBlockSize) {
        bool count = n->intValue > attn::kMaxTopk;
        error(count ? n->loc : size->loc,
              count ? "topk selects " + std::to_string(n->intValue) +
                          " blocks, above the limit of " +
                          std::to_string(attn::kMaxTopk)
                    : "topk blocks of " + std::to_string(size->intValue) +
                          " exceed the limit of " +
                          std::to_string(attn::kMaxBlockSize),
              "docs/language.md, \"Limits\", says why sizes are bounded");
        return failure();
      }
      topk = n->intValue;
      blockQ = blockK = size->intValue;
    }
    for (StringRef name : {"block_q", "block_k"})
      if (const ast::Option *option = options.lookup(name)) {
        FailureOr<int64_t> value =
            positiveInteger(*option, attn::kMaxBlockSize);
        if (failed(value))
          return failure();
        (name == "block_q" ? blockQ : blockK) = *value;
      }
    Value numBlocks, indices;
    for (StringRef name : {"kv_num_blocks", "kv_indices"})
      if (const ast::Option *option = options.lookup(name)) {
        FailureOr<Value> tensor = paramArgument(*option->value, name);
        if (failed(tensor))
          return failure();
        (name == "kv_num_blocks" ? numBlocks : indices) = *tensor;
      }
    bool indexLists = numBlocks || indices;
    if (indexLists && (!blockQ || !blockK)) {
      error(statement.familyLoc,
            "kv_num_blocks/kv_indices need the block sizes",
            "add block_q = 128; block_k = 128 (or your sizes)");
      return failure();
    }
    if (blockMask) {
      if (topk || indexLists) {
        error(statement.familyLoc,
              "a block-mask conjunct cannot be combined with select or "
              "kv_indices");
        return failure();
      }
      blockQ = blockMask->blockQ;
      blockK = blockMask->blockK;
    }
    bool sparse = blockMask || topk || indexLists;
    if (!sparse && (options.lookup("block_q") || options.lookup("block_k"))) {
      error((options.lookup("block_q") ? options.lookup("block_q")
                                       : options.lookup("block_k"))
                ->loc,
            "block sizes need a source of block sparsity",
            "add kv_num_blocks and kv_indices, select = topk(...), or a "
            "blocks[b, h, i / BQ, j / BK] conjunct in the mask");
      return failure();
    }
    if (sparse && chunk) {
      error(options.lookup("chunk") ? options.lookup("chunk")->loc
                                    : options.lookup("mask")->loc,
            "chunk-local attention cannot be combined with block sparsity",
            "express one of them in the mask instead");
      return failure();
    }

    Type f32 = builder.getF32Type(), index = builder.getIndexType();
    SmallVector<Type> resultTypesVec(resultTypes);
    Operation *op;
    Region *scoreRegion, *maskRegion;
    if (sparse) {
      Value maskTensor = blockMask ? params.lookup(blockMask->tensor) : Value();
      auto sparseOp = attn::SparseSoftmaxOp::create(
          builder, opLoc, resultTypesVec[0],
          resultTypesVec.size() > 1 ? resultTypesVec[1] : Type(), qkv[0],
          qkv[1], qkv[2], cuQ, cuK, scale,
          attn::NormalizerAttr::get(builder.getContext(), normalizer),
          attn::LayoutAttr::get(builder.getContext(), layout), maskTensor,
          numBlocks, indices,
          builder.getI64IntegerAttr(*blockQ), builder.getI64IntegerAttr(*blockK),
          topk ? builder.getI64IntegerAttr(*topk) : IntegerAttr());
      op = sparseOp;
      scoreRegion = &sparseOp.getScore();
      maskRegion = &sparseOp.getMask();
    } else if (chunk) {
      auto chunkOp = attn::ChunkSoftmaxOp::create(
          builder, opLoc, resultTypesVec[0],
          resultTypesVec.size() > 1 ? resultTypesVec[1] : Type(), qkv[0],
          qkv[1], qkv[2], cuQ, cuK, scale,
          attn::NormalizerAttr::get(builder.getContext(), normalizer),
          attn::LayoutAttr::get(builder.getContext(), layout),
          builder.getI64IntegerAttr(*chunk));
      op = chunkOp;
      scoreRegion = &chunkOp.getScore();
      maskRegion = &chunkOp.getMask();
    } else {
      auto softmaxOp = attn::SoftmaxOp::create(
          builder, opLoc, resultTypesVec[0],
          resultTypesVec.size() > 1 ? resultTypesVec[1] : Type(), qkv[0],
          qkv[1], qkv[2], cuQ, cuK, scale,
          attn::NormalizerAttr::get(builder.getContext(), normalizer),
          attn::LayoutAttr::get(builder.getContext(), layout));
      op = softmaxOp;
      scoreRegion = &softmaxOp.getScore();
      maskRegion = &softmaxOp.getMask();
    }
    OpBuilder::InsertionGuard guard(builder);

    if (const ast::Option *option = options.lookup("score")) {
      SmallVector<Type> argTypes(attn::score_arg::Count, index);
      argTypes[attn::score_arg::S] = f32;
      Block *block = createRegionBlock(*scoreRegion, argTypes, opLoc);
      Scope scope("score");
      scope.add("s", ScalarKind::Float, block->getArgument(attn::score_arg::S));
      addSoftmaxIndices(scope, block, /*offset=*/1);
      if (failed(emitYield(*option->value, scope, ScalarKind::Float)))
        return failure();
    }
    if (!remaining.empty()) {
      SmallVector<Type> argTypes(attn::mask_arg::Count, index);
      Block *block = createRegionBlock(*maskRegion, argTypes, opLoc);
      Scope scope("mask");
      addSoftmaxIndices(scope, block, /*offset=*/0);
      FailureOr<Typed> value = emitConjunction(remaining, scope);
      if (failed(value))
        return failure();
      attn::YieldOp::create(builder, value->value.getLoc(), value->value);
    }
    return op;
  }

  Block *createRegionBlock(Region &region, ArrayRef<Type> types, Location at) {
    SmallVector<Location> locs(types.size(), at);
    return builder.createBlock(&region, {}, types, locs);
  }

  /// b, h, i, j, n, m, qstart, kstart (block arguments from `offset` on) and
  /// causal = j <= i + (m - n), written j + n <= i + m to stay non-negative.
  void addSoftmaxIndices(Scope &scope, Block *block, unsigned offset) {
    static constexpr StringRef names[] = {"b", "h", "i", "j",
                                          "n", "m", "qstart", "kstart"};
    for (auto [position, name] : llvm::enumerate(names))
      scope.add(name, ScalarKind::Int, block->getArgument(offset + position));
    scope.addLazy("causal", [this, block, offset]() {
      auto arg = [&](unsigned position) {
        return block->getArgument(offset + position);
      };
      Location at = arg(0).getLoc();
      Value lhs = arith::AddIOp::create(builder, at, arg(3), arg(4));
      Value rhs = arith::AddIOp::create(builder, at, arg(2), arg(5));
      return Typed{arith::CmpIOp::create(builder, at, arith::CmpIPredicate::ule,
                                         lhs, rhs),
                   ScalarKind::Bool};
    });
  }

  FailureOr<Typed> emitConjunction(ArrayRef<const ast::Expr *> conjuncts,
                                   Scope &scope) {
    FailureOr<Typed> result = failure();
    for (const ast::Expr *conjunct : conjuncts) {
      FailureOr<Typed> value = emitExpr(*conjunct, scope);
      if (failed(value))
        return failure();
      if (value->kind != ScalarKind::Bool) {
        error(conjunct->loc,
              "the mask must be a bool expression, got " +
                  toString(value->kind),
              "compare values, e.g. j <= i, or use causal");
        return failure();
      }
      result = succeeded(result)
                   ? Typed{arith::AndIOp::create(builder, loc(conjunct->loc),
                                                 result->value, value->value),
                           ScalarKind::Bool}
                   : *value;
    }
    return result;
  }

  LogicalResult emitYield(const ast::Expr &expr, Scope &scope,
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

  /// Int converts to Float implicitly; nothing converts to or from Bool.
  FailureOr<Value> convert(Typed value, ScalarKind expected, SMLoc at,
                           StringRef what) {
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

  Value toFloat(Typed value, SMLoc at) {
    if (value.kind == ScalarKind::Float)
      return value.value;
    Location l = loc(at);
    Value wide = arith::IndexCastOp::create(builder, l, builder.getI64Type(),
                                            value.value);
    return arith::SIToFPOp::create(builder, l, builder.getF32Type(), wide);
  }

  //===--------------------------------------------------------------------===//
  // Linear
  //===--------------------------------------------------------------------===//

  FailureOr<Operation *>
  generateLinear(Location opLoc, ArrayRef<Value> qkv, Value cu, Value initial,
                 attn::Layout layout,
                 llvm::StringMap<const ast::Option *> &options,
                 ArrayRef<Type> resultTypes) {
    FloatAttr scale = builder.getF32FloatAttr(1.0f);
    if (const ast::Option *option = options.lookup("scale")) {
      FailureOr<FloatAttr> parsed = scaleOption(*option);
      if (failed(parsed))
        return failure();
      scale = *parsed;
    }
    bool causal = true;
    if (const ast::Option *option = options.lookup("causal")) {
      FailureOr<bool> parsed = boolOption(*option);
      if (failed(parsed))
        return failure();
      causal = *parsed;
    }
    int64_t chunk = 64;
    if (const ast::Option *option = options.lookup("chunk")) {
      FailureOr<int64_t> parsed = positiveInteger(*option, attn::kMaxBlockSize);
      if (failed(parsed))
        return failure();
      chunk = *parsed;
    }
    const ast::Option *gateOption = options.lookup("gate");
    if (!causal && gateOption) {
      error(gateOption->loc, "non-causal linear attention takes no gate",
            "decay needs an order of time steps; drop the gate or causal");
      return failure();
    }

    auto op = attn::LinearOp::create(
        builder, opLoc, resultTypes[0],
        resultTypes.size() > 1 ? resultTypes[1] : Type(), qkv[0], qkv[1],
        qkv[2], cu, initial, scale,
        attn::GateKindAttr::get(builder.getContext(), attn::GateKind::none),
        builder.getBoolAttr(causal), builder.getI64IntegerAttr(chunk),
        attn::LayoutAttr::get(builder.getContext(), layout));
    OpBuilder::InsertionGuard guard(builder);
    Type f32 = builder.getF32Type(), index = builder.getIndexType();

    if (gateOption) {
      SmallVector<Type> argTypes(attn::gate_arg::Count, index);
      Block *block = createRegionBlock(op.getGate(), argTypes, opLoc);
      Scope scope("gate");
      scope.add("b", ScalarKind::Int, block->getArgument(attn::gate_arg::B));
      scope.add("h", ScalarKind::Int, block->getArgument(attn::gate_arg::H));
      scope.add("t", ScalarKind::Int, block->getArgument(attn::gate_arg::T));
      scope.add("d", ScalarKind::Int, block->getArgument(attn::gate_arg::D));
      scope.add("tstart", ScalarKind::Int,
                block->getArgument(attn::gate_arg::TStart));
      if (failed(emitYield(*gateOption->value, scope, ScalarKind::Float)))
        return failure();
      // The gate's kind follows from the indices it reads.
      auto used = [&](unsigned arg) {
        return !block->getArgument(arg).use_empty();
      };
      attn::GateKind kind = attn::GateKind::constant_per_head;
      if (used(attn::gate_arg::D))
        kind = attn::GateKind::per_key_dim;
      else if (used(attn::gate_arg::B) || used(attn::gate_arg::T) ||
               used(attn::gate_arg::TStart))
        kind = attn::GateKind::per_head;
      op.setGateKind(kind);
    }
    if (const ast::Option *option = options.lookup("feature")) {
      Block *block = createRegionBlock(op.getFeature(), {f32}, opLoc);
      Scope scope("feature");
      scope.add("x", ScalarKind::Float, block->getArgument(0));
      if (failed(emitYield(*option->value, scope, ScalarKind::Float)))
        return failure();
    }
    return op.getOperation();
  }

  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  FailureOr<Typed> emitExpr(const ast::Expr &expr, Scope &scope) {
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

  FailureOr<Typed> emitName(const ast::NameExpr &name, Scope &scope) {
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

  std::string indexHint(StringRef tensor) {
    auto it = paramDecls.find(tensor);
    size_t rank = it == paramDecls.end() ? 1 : it->second->dims.size();
    static constexpr StringRef guesses[] = {"b", "h", "i", "j"};
    SmallVector<StringRef> parts;
    for (size_t index = 0; index < rank; ++index)
      parts.push_back(index < 4 ? guesses[index] : "0");
    return llvm::join(parts, ", ");
  }

  FailureOr<Typed> emitUnary(const ast::UnaryExpr &unary, Scope &scope) {
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

  FailureOr<Typed> emitBinary(const ast::BinaryExpr &binary, Scope &scope) {
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

  /// Integer arithmetic; `/` and `%` round toward minus infinity.
  FailureOr<Typed> emitIntBinary(const ast::BinaryExpr &binary, Location l,
                                 Value a, Value b) {
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

  FailureOr<Typed> emitCall(const ast::CallExpr &call, Scope &scope) {
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

  FailureOr<Typed> emitIndex(const ast::IndexExpr &index, Scope &scope) {
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

  OpBuilder builder;
  attnc::DiagnosticEngine &diags;
  llvm::StringMap<Value> params;
  llvm::StringMap<const ast::TensorDecl *> paramDecls;
};

} // namespace

void attnc::loadSpecDialects(MLIRContext &context) {
  context.loadDialect<attn::AttnDialect, arith::ArithDialect,
                      math::MathDialect>();
}

OwningOpRef<ModuleOp> attnc::generateMLIR(const ast::Module &module,
                                          MLIRContext &context,
                                          attnc::DiagnosticEngine &diags) {
  loadSpecDialects(context);
  return MLIRGenImpl(context, diags).generate(module);
}

OwningOpRef<ModuleOp> attnc::compileSpecToMLIR(unsigned bufferId,
                                               MLIRContext &context,
                                               attnc::DiagnosticEngine &diags) {
  std::optional<ast::Module> module = parseSpec(bufferId, diags);
  if (!module)
    return nullptr;
  return generateMLIR(*module, context, diags);
}
