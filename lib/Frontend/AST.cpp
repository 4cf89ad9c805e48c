//===- AST.cpp - Abstract syntax tree of .attn specs ----------------------===//

#include "attnc/Frontend/AST.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/Casting.h"
#include "llvm/Support/ErrorHandling.h"

#include <cstdio>
#include <cstdlib>

using namespace attnc::ast;

Expr::~Expr() = default;

llvm::StringRef attnc::ast::toString(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "f32";
  case DType::F16:
    return "f16";
  case DType::BF16:
    return "bf16";
  case DType::I32:
    return "i32";
  case DType::I8:
    return "i8";
  case DType::Bool:
    return "bool";
  }
  llvm_unreachable("unknown dtype");
}

std::optional<DType> attnc::ast::parseDType(llvm::StringRef name) {
  return llvm::StringSwitch<std::optional<DType>>(name)
      .Case("f32", DType::F32)
      .Case("f16", DType::F16)
      .Case("bf16", DType::BF16)
      .Case("i32", DType::I32)
      .Case("i8", DType::I8)
      .Case("bool", DType::Bool)
      .Default(std::nullopt);
}

llvm::StringRef attnc::ast::toString(UnaryOp op) {
  switch (op) {
  case UnaryOp::Neg:
    return "-";
  case UnaryOp::Not:
    return "!";
  }
  llvm_unreachable("unknown unary operator");
}

llvm::StringRef attnc::ast::toString(BinaryOp op) {
  switch (op) {
  case BinaryOp::Add:
    return "+";
  case BinaryOp::Sub:
    return "-";
  case BinaryOp::Mul:
    return "*";
  case BinaryOp::Div:
    return "/";
  case BinaryOp::Rem:
    return "%";
  case BinaryOp::Lt:
    return "<";
  case BinaryOp::Le:
    return "<=";
  case BinaryOp::Gt:
    return ">";
  case BinaryOp::Ge:
    return ">=";
  case BinaryOp::Eq:
    return "==";
  case BinaryOp::Ne:
    return "!=";
  case BinaryOp::And:
    return "&&";
  case BinaryOp::Or:
    return "||";
  }
  llvm_unreachable("unknown binary operator");
}

//===----------------------------------------------------------------------===//
// Printer
//===----------------------------------------------------------------------===//

/// Prints the shortest decimal form that reads back as the same double, and
/// keeps it recognisable as a floating-point literal ("2.0", not "2").
static void printFloat(double value, llvm::raw_ostream &os) {
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value)
      break;
  }
  llvm::StringRef text(buf);
  os << text;
  if (text.find_first_of(".e") == llvm::StringRef::npos)
    os << ".0";
}

static void printArgs(llvm::ArrayRef<Arg> args, llvm::raw_ostream &os) {
  os << '(';
  llvm::interleaveComma(args, os, [&](const Arg &arg) {
    if (arg.isNamed())
      os << arg.name << " = ";
    print(*arg.value, os);
  });
  os << ')';
}

void attnc::ast::print(const Expr &expr, llvm::raw_ostream &os) {
  if (auto *number = llvm::dyn_cast<NumberExpr>(&expr)) {
    if (number->isInteger)
      os << number->intValue;
    else
      printFloat(number->value, os);
  } else if (auto *boolean = llvm::dyn_cast<BoolExpr>(&expr)) {
    os << (boolean->value ? "true" : "false");
  } else if (auto *name = llvm::dyn_cast<NameExpr>(&expr)) {
    os << name->name;
  } else if (auto *unary = llvm::dyn_cast<UnaryExpr>(&expr)) {
    os << toString(unary->op);
    print(*unary->operand, os);
  } else if (auto *binary = llvm::dyn_cast<BinaryExpr>(&expr)) {
    os << '(';
    print(*binary->lhs, os);
    os << ' ' << toString(binary->op) << ' ';
    print(*binary->rhs, os);
    os << ')';
  } else if (auto *call = llvm::dyn_cast<CallExpr>(&expr)) {
    os << call->callee;
    printArgs(call->args, os);
  } else {
    auto &index = llvm::cast<IndexExpr>(expr);
    os << index.base << '[';
    llvm::interleaveComma(index.indices, os,
                          [&](const ExprPtr &e) { print(*e, os); });
    os << ']';
  }
}

static void printTensorDecl(const TensorDecl &decl, llvm::raw_ostream &os) {
  os << decl.name << ": " << toString(decl.dtype) << '[';
  llvm::interleaveComma(decl.dims, os, [&](const Dim &dim) {
    if (dim.isSymbolic())
      os << dim.symbol;
    else
      os << dim.value;
  });
  os << ']';
  if (decl.optional)
    os << '?';
}

static void printTensorDecls(llvm::ArrayRef<TensorDecl> decls,
                             llvm::raw_ostream &os) {
  os << '(';
  llvm::interleaveComma(decls, os,
                        [&](const TensorDecl &d) { printTensorDecl(d, os); });
  os << ')';
}

static void printStatement(const Statement &stmt, llvm::raw_ostream &os) {
  os << "  ";
  llvm::interleaveComma(stmt.targets, os,
                        [&](const Target &target) { os << target.name; });
  os << " = " << stmt.family;
  printArgs(stmt.args, os);
  if (!stmt.options.empty()) {
    os << " {\n";
    for (const Option &option : stmt.options) {
      os << "    " << option.name << " = ";
      print(*option.value, os);
      os << '\n';
    }
    os << "  }";
  }
  os << '\n';
}

void attnc::ast::print(const Module &module, llvm::raw_ostream &os) {
  llvm::interleave(
      module.kernels, os,
      [&](const Kernel &kernel) {
        os << "kernel " << kernel.name;
        printTensorDecls(kernel.params, os);
        os << " -> ";
        printTensorDecls(kernel.results, os);
        os << " {\n";
        for (const Statement &stmt : kernel.body)
          printStatement(stmt, os);
        os << "}\n";
      },
      "\n");
}
