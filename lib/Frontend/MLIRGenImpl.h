//===- MLIRGenImpl.h - The translator of .attn specs ------------*- C++ -*-===//
//
// Private to MLIRGen: the scalar types and name scopes of expressions, and
// MLIRGenImpl, which translates a spec. Its parts live in files by concern:
//
//   MLIRGen.cpp             kernels, signatures and diagnostics
//   MLIRGenStatements.cpp   statements: family, arguments, options
//   MLIRGenFamilies.cpp     the family ops (softmax and linear) and their
//                           regions, with the mask's structure
//   MLIRGenExpressions.cpp  expressions, as scalar arith/math ops
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_FRONTEND_MLIRGENIMPL_H
#define ATTNC_LIB_FRONTEND_MLIRGENIMPL_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Diagnostics.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/ErrorHandling.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace attnc::mlirgen {

/// The three scalar types of the expression language.
enum class ScalarKind { Int, Float, Bool };

inline llvm::StringRef toString(ScalarKind kind) {
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
  mlir::Value value;
  ScalarKind kind;
};

/// Names an expression may use: implicit values (block arguments, or values
/// derived from them on first use, such as `causal`).
class Scope {
public:
  explicit Scope(llvm::StringRef regionName) : regionName(regionName) {}

  void add(llvm::StringRef name, ScalarKind kind, mlir::Value value) {
    names.push_back(name.str());
    values[name] = {value, kind};
  }
  void addLazy(llvm::StringRef name, std::function<Typed()> make) {
    names.push_back(name.str());
    lazy[name] = std::move(make);
  }
  std::optional<Typed> lookup(llvm::StringRef name) {
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

/// A mask conjunct `P[b, h, i / BQ, j / BK]` (MLIRGenFamilies.cpp).
struct BlockMaskMatch {
  std::string tensor;
  int64_t blockQ, blockK;
};

class MLIRGenImpl {
public:
  MLIRGenImpl(mlir::MLIRContext &context, attnc::DiagnosticEngine &diags)
      : builder(&context), diags(diags) {}

  mlir::OwningOpRef<mlir::ModuleOp> generate(const ast::Module &module);

private:
  //===--------------------------------------------------------------------===//
  // Locations and errors (MLIRGen.cpp)
  //===--------------------------------------------------------------------===//

  mlir::Location loc(llvm::SMLoc smloc);

  void error(llvm::SMLoc at, const llvm::Twine &message,
             const llvm::Twine &hint = "") {
    diags.error(at, message, hint);
  }
  mlir::LogicalResult fail(llvm::SMLoc at, const llvm::Twine &message,
                           const llvm::Twine &hint = "") {
    diags.error(at, message, hint);
    return mlir::failure();
  }

  /// Runs the verifier; its diagnostics are reported at the spec location
  /// that the failing op carries.
  mlir::LogicalResult verifyReportingToSpec(mlir::ModuleOp module);

  void report(mlir::Diagnostic &diag);

  //===--------------------------------------------------------------------===//
  // Kernels (MLIRGen.cpp)
  //===--------------------------------------------------------------------===//

  mlir::Type elementType(ast::DType dtype);

  attn::AttnTensorType tensorType(const ast::TensorDecl &decl);

  mlir::LogicalResult generateKernel(const ast::Kernel &kernel);

  static mlir::SmallVector<const ast::TensorDecl *>
  declsOf(const ast::Kernel &kernel);

  //===--------------------------------------------------------------------===//
  // Statements: family, arguments, options (MLIRGenStatements.cpp)
  //===--------------------------------------------------------------------===//

  mlir::FailureOr<mlir::Value> paramArgument(const ast::Expr &expr,
                                             llvm::StringRef role);

  std::string parameterList();

  mlir::FailureOr<attn::Layout> layoutArgument(const ast::Expr &expr);

  mlir::FailureOr<int64_t> positiveInteger(const ast::Option &option,
                                           int64_t limit = INT64_MAX);

  /// Folds a constant expression (numbers, + - * /, sqrt, exp, log).
  std::optional<double> evaluateConstant(const ast::Expr &expr);

  mlir::FailureOr<mlir::FloatAttr> scaleOption(const ast::Option &option);

  mlir::FailureOr<bool> boolOption(const ast::Option &option);

  mlir::FailureOr<mlir::Operation *>
  generateStatement(const ast::Statement &statement,
                    mlir::ArrayRef<mlir::Type> resultTypes);

  //===--------------------------------------------------------------------===//
  // Softmax (MLIRGenFamilies.cpp)
  //===--------------------------------------------------------------------===//

  mlir::FailureOr<mlir::Operation *>
  generateSoftmax(mlir::Location opLoc, const ast::Statement &statement,
                  mlir::ArrayRef<mlir::Value> qkv, mlir::Value cuQ,
                  mlir::Value cuK, attn::Layout layout,
                  llvm::StringMap<const ast::Option *> &options,
                  mlir::ArrayRef<mlir::Type> resultTypes);

  /// Structure from the mask: its chunk-local (`chunk`) and block-mask
  /// (`blockMask`) conjuncts, the `remaining` ones, and the chunk option.
  mlir::LogicalResult
  softmaxMaskStructure(llvm::StringMap<const ast::Option *> &options,
                       std::optional<int64_t> &chunk,
                       std::optional<BlockMaskMatch> &blockMask,
                       std::vector<const ast::Expr *> &remaining);

  /// Sparsity sources: block mask, index lists, or top-k selection; checks
  /// that they and their block sizes go together (and not with `chunk`).
  mlir::LogicalResult
  softmaxSparsity(const ast::Statement &statement,
                  llvm::StringMap<const ast::Option *> &options,
                  const std::optional<int64_t> &chunk,
                  const std::optional<BlockMaskMatch> &blockMask,
                  std::optional<int64_t> &topk,
                  std::optional<int64_t> &blockQ,
                  std::optional<int64_t> &blockK, mlir::Value &numBlocks,
                  mlir::Value &indices, bool &sparse);

  mlir::Block *createRegionBlock(mlir::Region &region,
                                 mlir::ArrayRef<mlir::Type> types,
                                 mlir::Location at);

  /// b, h, i, j, n, m, qstart, kstart (block arguments from `offset` on) and
  /// causal = j <= i + (m - n), written j + n <= i + m to stay non-negative.
  void addSoftmaxIndices(Scope &scope, mlir::Block *block, unsigned offset);

  mlir::FailureOr<Typed>
  emitConjunction(mlir::ArrayRef<const ast::Expr *> conjuncts, Scope &scope);

  //===--------------------------------------------------------------------===//
  // Linear (MLIRGenFamilies.cpp)
  //===--------------------------------------------------------------------===//

  mlir::FailureOr<mlir::Operation *>
  generateLinear(mlir::Location opLoc, mlir::ArrayRef<mlir::Value> qkv,
                 mlir::Value cu, mlir::Value initial, attn::Layout layout,
                 llvm::StringMap<const ast::Option *> &options,
                 mlir::ArrayRef<mlir::Type> resultTypes);

  //===--------------------------------------------------------------------===//
  // Expressions (MLIRGenExpressions.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult emitYield(const ast::Expr &expr, Scope &scope,
                                ScalarKind expected);

  /// Int converts to Float implicitly; nothing converts to or from Bool.
  mlir::FailureOr<mlir::Value> convert(Typed value, ScalarKind expected,
                                       llvm::SMLoc at, llvm::StringRef what);

  mlir::Value toFloat(Typed value, llvm::SMLoc at);

  mlir::FailureOr<Typed> emitExpr(const ast::Expr &expr, Scope &scope);

  mlir::FailureOr<Typed> emitName(const ast::NameExpr &name, Scope &scope);

  std::string indexHint(llvm::StringRef tensor);

  mlir::FailureOr<Typed> emitUnary(const ast::UnaryExpr &unary, Scope &scope);

  mlir::FailureOr<Typed> emitBinary(const ast::BinaryExpr &binary,
                                    Scope &scope);

  /// Integer arithmetic; `/` and `%` round toward minus infinity.
  mlir::FailureOr<Typed> emitIntBinary(const ast::BinaryExpr &binary,
                                       mlir::Location l, mlir::Value a,
                                       mlir::Value b);

  mlir::FailureOr<Typed> emitCall(const ast::CallExpr &call, Scope &scope);

  mlir::FailureOr<Typed> emitIndex(const ast::IndexExpr &index, Scope &scope);

  mlir::OpBuilder builder;
  attnc::DiagnosticEngine &diags;
  llvm::StringMap<mlir::Value> params;
  llvm::StringMap<const ast::TensorDecl *> paramDecls;
};

} // namespace attnc::mlirgen

#endif // ATTNC_LIB_FRONTEND_MLIRGENIMPL_H
