//===- AST.h - Abstract syntax tree of .attn specs --------------*- C++ -*-===//
//
// The AST is a direct image of the source: names are not resolved and
// families/options are not checked here. Every node records the location of
// its first character so that later passes can report errors precisely.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_FRONTEND_AST_H
#define ATTNC_FRONTEND_AST_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attnc::ast {

//===----------------------------------------------------------------------===//
// Tensor declarations
//===----------------------------------------------------------------------===//

enum class DType { F32, F16, BF16, I32, I8, Bool };

/// The source spelling: "f32", "bf16", "bool", ...
llvm::StringRef toString(DType dtype);
/// The inverse of toString; std::nullopt for an unknown name.
std::optional<DType> parseDType(llvm::StringRef name);

/// One dimension of a tensor shape: a symbol such as `N` or a fixed size.
struct Dim {
  std::string symbol;
  int64_t value = 0; // meaningful only when the dimension is not symbolic
  llvm::SMLoc loc;

  bool isSymbolic() const { return !symbol.empty(); }
};

/// A kernel parameter or result: `name: dtype[dims]` with an optional `?`.
struct TensorDecl {
  std::string name;
  llvm::SMLoc loc;
  DType dtype = DType::F32;
  llvm::SMLoc dtypeLoc;
  std::vector<Dim> dims;
  bool optional = false;
};

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

class Expr {
public:
  enum class Kind { Number, Bool, Name, Unary, Binary, Call, Index };

  Expr(Kind kind, llvm::SMLoc loc) : loc(loc), kind(kind) {}
  Expr(const Expr &) = delete;
  Expr &operator=(const Expr &) = delete;
  virtual ~Expr();

  Kind getKind() const { return kind; }

  llvm::SMLoc loc;

private:
  const Kind kind;
};

using ExprPtr = std::unique_ptr<Expr>;

/// A numeric literal. Integer literals keep their exact value in `intValue`;
/// `value` holds the literal as a double in both cases.
class NumberExpr : public Expr {
public:
  NumberExpr(llvm::SMLoc loc, int64_t intValue)
      : Expr(Kind::Number, loc), value(static_cast<double>(intValue)),
        intValue(intValue), isInteger(true) {}
  NumberExpr(llvm::SMLoc loc, double value)
      : Expr(Kind::Number, loc), value(value), intValue(0), isInteger(false) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Number; }

  double value;
  int64_t intValue; // 0 unless isInteger
  bool isInteger;
};

class BoolExpr : public Expr {
public:
  BoolExpr(llvm::SMLoc loc, bool value) : Expr(Kind::Bool, loc), value(value) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Bool; }

  bool value;
};

class NameExpr : public Expr {
public:
  NameExpr(llvm::SMLoc loc, std::string name)
      : Expr(Kind::Name, loc), name(std::move(name)) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Name; }

  std::string name;
};

enum class UnaryOp { Neg, Not };

/// "-" or "!".
llvm::StringRef toString(UnaryOp op);

class UnaryExpr : public Expr {
public:
  UnaryExpr(llvm::SMLoc loc, UnaryOp op, ExprPtr operand)
      : Expr(Kind::Unary, loc), op(op), operand(std::move(operand)) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Unary; }

  UnaryOp op;
  ExprPtr operand;
};

enum class BinaryOp {
  Add,
  Sub,
  Mul,
  Div,
  Rem,
  Lt,
  Le,
  Gt,
  Ge,
  Eq,
  Ne,
  And,
  Or
};

/// The source spelling: "+", "&&", ...
llvm::StringRef toString(BinaryOp op);

class BinaryExpr : public Expr {
public:
  BinaryExpr(llvm::SMLoc loc, BinaryOp op, llvm::SMLoc opLoc, ExprPtr lhs,
             ExprPtr rhs)
      : Expr(Kind::Binary, loc), op(op), opLoc(opLoc), lhs(std::move(lhs)),
        rhs(std::move(rhs)) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Binary; }

  BinaryOp op;
  llvm::SMLoc opLoc;
  ExprPtr lhs, rhs;
};

/// A call or statement argument: positional (`name` empty) or `name = value`.
struct Arg {
  std::string name;
  llvm::SMLoc loc; // the name when named, else the value
  ExprPtr value;

  bool isNamed() const { return !name.empty(); }
};

/// `callee(args)`; callees are plain names (builtins such as exp or topk).
class CallExpr : public Expr {
public:
  CallExpr(llvm::SMLoc loc, std::string callee, std::vector<Arg> args)
      : Expr(Kind::Call, loc), callee(std::move(callee)),
        args(std::move(args)) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Call; }

  std::string callee;
  std::vector<Arg> args;
};

/// `base[indices]`; the base is a plain name (a kernel parameter).
class IndexExpr : public Expr {
public:
  IndexExpr(llvm::SMLoc loc, std::string base, std::vector<ExprPtr> indices)
      : Expr(Kind::Index, loc), base(std::move(base)),
        indices(std::move(indices)) {}

  static bool classof(const Expr *e) { return e->getKind() == Kind::Index; }

  std::string base;
  std::vector<ExprPtr> indices;
};

//===----------------------------------------------------------------------===//
// Statements and kernels
//===----------------------------------------------------------------------===//

/// `name = value` inside the option block of a statement.
struct Option {
  std::string name;
  llvm::SMLoc loc;
  ExprPtr value;
};

/// A name on the left of '=' in a statement.
struct Target {
  std::string name;
  llvm::SMLoc loc;
};

/// `targets = family(args) { options }`.
struct Statement {
  std::vector<Target> targets;
  std::string family;
  llvm::SMLoc familyLoc;
  std::vector<Arg> args;
  std::vector<Option> options;
  llvm::SMLoc loc; // the first target
};

struct Kernel {
  std::string name;
  llvm::SMLoc loc;     // the 'kernel' keyword
  llvm::SMLoc nameLoc; // the kernel's name
  std::vector<TensorDecl> params, results;
  std::vector<Statement> body;
};

struct Module {
  std::vector<Kernel> kernels;
};

/// Writes the module back as normalised source: one kernel per block, results
/// always parenthesised, binary expressions fully parenthesised, empty option
/// blocks dropped. The output parses to the same AST (up to locations).
void print(const Module &module, llvm::raw_ostream &os);
void print(const Expr &expr, llvm::raw_ostream &os);

} // namespace attnc::ast

#endif // ATTNC_FRONTEND_AST_H
