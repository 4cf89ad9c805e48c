//===- Parser.cpp - Parser of .attn specs ---------------------------------===//
//
// A recursive-descent parser that stops at the first error. Newlines are
// significant only as separators of statements and options: they are skipped
// inside () and [], after binary operators, '=' and ',', and around the parts
// of a kernel header.
//
//===----------------------------------------------------------------------===//

#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/Lexer.h"

#include "llvm/Support/Casting.h"
#include "llvm/Support/ErrorHandling.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace attnc;
using namespace attnc::ast;
using llvm::SMLoc;
using llvm::StringRef;
using llvm::Twine;

namespace {

/// The deepest expression accepted, counting parentheses, unary and binary
/// operators, calls and indexing. Parsing and the AST's recursive destructor
/// and printer recurse once per level, so this keeps them far from the stack
/// limit whatever the input.
constexpr unsigned kMaxExprDepth = 256;

constexpr const char *kDTypeHint =
    "element types: f32, f16, bf16, i32, i8, bool";
constexpr const char *kStatementHint =
    "a statement assigns the results of a family call, e.g. "
    "o, lse = softmax(q, k, v) { mask = causal }";
constexpr const char *kOptionHint =
    "write options as name = value, separated by ';' or new lines, e.g. "
    "{ mask = causal; scale = 0.125 }";

/// An expression with the height of its tree, which bounds how deep later
/// recursive walks go.
struct Parsed {
  ExprPtr expr;
  unsigned height = 0;

  explicit operator bool() const { return expr != nullptr; }
};

std::optional<BinaryOp> binaryOpFor(TokenKind kind) {
  switch (kind) {
  case TokenKind::PipePipe:
    return BinaryOp::Or;
  case TokenKind::AmpAmp:
    return BinaryOp::And;
  case TokenKind::EqEq:
    return BinaryOp::Eq;
  case TokenKind::NotEq:
    return BinaryOp::Ne;
  case TokenKind::Less:
    return BinaryOp::Lt;
  case TokenKind::LessEq:
    return BinaryOp::Le;
  case TokenKind::Greater:
    return BinaryOp::Gt;
  case TokenKind::GreaterEq:
    return BinaryOp::Ge;
  case TokenKind::Plus:
    return BinaryOp::Add;
  case TokenKind::Minus:
    return BinaryOp::Sub;
  case TokenKind::Star:
    return BinaryOp::Mul;
  case TokenKind::Slash:
    return BinaryOp::Div;
  case TokenKind::Percent:
    return BinaryOp::Rem;
  default:
    return std::nullopt;
  }
}

/// Binding strength of binary operators; higher binds tighter. All levels
/// are left-associative except the two comparison levels, which do not chain.
enum Precedence {
  kOr = 1,
  kAnd,
  kEquality,
  kRelational,
  kAdditive,
  kMultiplicative,
};

Precedence precedence(BinaryOp op) {
  switch (op) {
  case BinaryOp::Or:
    return kOr;
  case BinaryOp::And:
    return kAnd;
  case BinaryOp::Eq:
  case BinaryOp::Ne:
    return kEquality;
  case BinaryOp::Lt:
  case BinaryOp::Le:
  case BinaryOp::Gt:
  case BinaryOp::Ge:
    return kRelational;
  case BinaryOp::Add:
  case BinaryOp::Sub:
    return kAdditive;
  case BinaryOp::Mul:
  case BinaryOp::Div:
  case BinaryOp::Rem:
    return kMultiplicative;
  }
  llvm_unreachable("unknown binary operator");
}

class Parser {
public:
  Parser(unsigned bufferId, DiagnosticEngine &diags)
      : diags(diags), lexer(bufferId, diags) {
    tok = lexer.next();
  }

  std::optional<Module> parseModule();

private:
  // Token handling.
  void advance();
  void skipNewlines();
  void skipSeparators();
  void openBracket();
  void closeBracket();
  std::string describe(const Token &token) const;
  bool failExpected(const Twine &expected, const Twine &hint = "");
  bool failUnclosed(const Twine &expected, const Twine &hint = "");
  void noteOpenBracket();

  // Declarations and statements.
  bool parseKernel(Kernel &kernel);
  bool parseTensorDeclList(std::vector<TensorDecl> &decls, StringRef role);
  bool parseTensorDecl(TensorDecl &decl, StringRef role);
  bool parseDim(Dim &dim);
  bool parseBody(Kernel &kernel);
  bool parseStatement(Statement &stmt);
  bool parseArgs(std::vector<Arg> &args, StringRef callee, unsigned &height);
  bool parseOptions(std::vector<Option> &options);

  // Expressions.
  Parsed parseExpr();
  Parsed parseBinary(int minPrec);
  Parsed parseUnary();
  Parsed parsePrimary();
  Parsed parseNameOrCall();
  Parsed rejectPostfix(Parsed expr);
  Parsed failTooDeep(SMLoc loc);
  bool parseInteger(int64_t &value);
  bool parseFloat(double &value);

  /// Counts the active recursive calls of parseExpr and parseUnary.
  struct NestingGuard {
    explicit NestingGuard(Parser &parser) : parser(parser) { ++parser.nesting; }
    ~NestingGuard() { --parser.nesting; }
    bool tooDeep() const { return parser.nesting > kMaxExprDepth; }
    Parser &parser;
  };

  struct OpenBracket {
    TokenKind kind;
    SMLoc loc;
    StringRef spelling;
  };

  DiagnosticEngine &diags;
  Lexer lexer;
  Token tok;
  /// Unclosed brackets, innermost last; newlines are insignificant while the
  /// innermost one is '(' or '['.
  std::vector<OpenBracket> brackets;
  unsigned nesting = 0;
};

} // namespace

//===----------------------------------------------------------------------===//
// Token handling
//===----------------------------------------------------------------------===//

void Parser::advance() {
  tok = lexer.next();
  bool insideParens =
      !brackets.empty() && brackets.back().kind != TokenKind::LBrace;
  while (insideParens && tok.is(TokenKind::Newline))
    tok = lexer.next();
}

void Parser::skipNewlines() {
  while (tok.is(TokenKind::Newline))
    advance();
}

void Parser::skipSeparators() {
  while (tok.is(TokenKind::Newline) || tok.is(TokenKind::Semicolon))
    advance();
}

void Parser::openBracket() {
  brackets.push_back({tok.kind, tok.loc, tok.spelling});
  advance();
}

void Parser::closeBracket() {
  brackets.pop_back();
  advance();
}

std::string Parser::describe(const Token &token) const {
  switch (token.kind) {
  case TokenKind::Eof:
    return "end of file";
  case TokenKind::Newline:
    return "end of line";
  default:
    return "'" + token.spelling.str() + "'";
  }
}

/// Reports "expected X, found Y" at the current token. At the end of the file
/// the innermost unclosed bracket is pointed out too, since forgetting to
/// close it is the usual cause.
bool Parser::failExpected(const Twine &expected, const Twine &hint) {
  // The lexer has already reported what is wrong with an error token.
  if (tok.is(TokenKind::Error))
    return false;
  diags.error(tok.loc, "expected " + expected + ", found " + describe(tok),
              hint);
  if (tok.is(TokenKind::Eof))
    noteOpenBracket();
  return false;
}

/// Like failExpected, for a place where the innermost bracket could close.
bool Parser::failUnclosed(const Twine &expected, const Twine &hint) {
  // failExpected already adds the note at the end of the file.
  bool addNote = !tok.is(TokenKind::Error) && !tok.is(TokenKind::Eof);
  failExpected(expected, hint);
  if (addNote)
    noteOpenBracket();
  return false;
}

void Parser::noteOpenBracket() {
  if (!brackets.empty())
    diags.note(brackets.back().loc,
               "to match this '" + brackets.back().spelling + "'");
}

//===----------------------------------------------------------------------===//
// Declarations and statements
//===----------------------------------------------------------------------===//

std::optional<Module> Parser::parseModule() {
  Module module;
  skipNewlines();
  do {
    if (!tok.is(TokenKind::KwKernel)) {
      if (module.kernels.empty())
        failExpected("'kernel'",
                     "a spec holds one or more kernel definitions: "
                     "kernel name(params) -> (results) { statements }");
      else
        failExpected("'kernel' or end of file");
      return std::nullopt;
    }
    Kernel kernel;
    if (!parseKernel(kernel))
      return std::nullopt;
    module.kernels.push_back(std::move(kernel));
    skipNewlines();
  } while (!tok.is(TokenKind::Eof));
  return module;
}

bool Parser::parseKernel(Kernel &kernel) {
  kernel.loc = tok.loc;
  advance();
  if (!tok.is(TokenKind::Identifier))
    return failExpected("kernel name after 'kernel'",
                        "e.g. kernel attention(q: bf16[B, H, N, 64], ...)");
  kernel.name = tok.spelling.str();
  kernel.nameLoc = tok.loc;
  advance();

  if (!tok.is(TokenKind::LParen))
    return failExpected("'(' after kernel name '" + kernel.name + "'",
                        "list the inputs in parentheses, e.g. kernel " +
                            kernel.name + "(q: bf16[B, H, N, 64], " +
                            "k: bf16[B, H, M, 64], v: bf16[B, H, M, 64])");
  if (!parseTensorDeclList(kernel.params, "parameter"))
    return false;

  skipNewlines();
  if (!tok.is(TokenKind::Arrow))
    return failExpected("'->' after the parameters of kernel '" + kernel.name +
                            "'",
                        "declare the outputs after '->', e.g. "
                        "-> (o: bf16[B, H, N, 64], lse: f32[B, H, N]) or "
                        "-> o: bf16[B, H, N, 64]");
  advance();
  skipNewlines();
  if (tok.is(TokenKind::LParen)) {
    if (!parseTensorDeclList(kernel.results, "result"))
      return false;
  } else if (tok.is(TokenKind::Identifier)) {
    kernel.results.emplace_back();
    if (!parseTensorDecl(kernel.results.back(), "result"))
      return false;
  } else {
    return failExpected("results after '->'",
                        "e.g. -> (o: bf16[B, H, N, 64], lse: f32[B, H, N]) "
                        "or -> o: bf16[B, H, N, 64]");
  }

  skipNewlines();
  if (!tok.is(TokenKind::LBrace))
    return failExpected("'{' to start the body of kernel '" + kernel.name + "'",
                        "e.g. { o = softmax(q, k, v) }");
  return parseBody(kernel);
}

/// Parses '(' [decl {',' decl}] ')'.
bool Parser::parseTensorDeclList(std::vector<TensorDecl> &decls,
                                 StringRef role) {
  openBracket();
  if (tok.is(TokenKind::RParen)) {
    closeBracket();
    return true;
  }
  while (true) {
    decls.emplace_back();
    if (!parseTensorDecl(decls.back(), role))
      return false;
    if (tok.is(TokenKind::RParen)) {
      closeBracket();
      return true;
    }
    if (!tok.is(TokenKind::Comma))
      return failUnclosed("',' or ')' after " + role + " '" +
                              decls.back().name + "'",
                          "separate " + role + "s with ','");
    advance();
  }
}

/// Parses name ':' dtype '[' [dim {',' dim}] ']' ['?'].
bool Parser::parseTensorDecl(TensorDecl &decl, StringRef role) {
  std::string example =
      role == "result" ? "o: bf16[B, H, N, 64]" : "q: bf16[B, H, N, 64]";
  std::string declHint =
      ("write a " + role + " as name: dtype[dims], e.g. " + example).str();
  if (!tok.is(TokenKind::Identifier))
    return failExpected(role + " name",
                        tok.is(TokenKind::RParen)
                            ? StringRef("remove the trailing ','")
                            : StringRef(declHint));
  decl.name = tok.spelling.str();
  decl.loc = tok.loc;
  advance();

  if (!tok.is(TokenKind::Colon))
    return failExpected("':' after " + role + " name '" + decl.name + "'",
                        declHint);
  advance();

  if (!tok.is(TokenKind::Identifier))
    return failExpected("element type after ':'", kDTypeHint);
  std::optional<DType> dtype = parseDType(tok.spelling);
  if (!dtype) {
    diags.error(tok.loc, "unknown element type '" + tok.spelling + "'",
                kDTypeHint);
    return false;
  }
  decl.dtype = *dtype;
  decl.dtypeLoc = tok.loc;
  StringRef dtypeName = tok.spelling;
  advance();

  if (!tok.is(TokenKind::LBracket))
    return failExpected(
        "'[' after element type '" + dtypeName + "'",
        "give the shape in brackets, e.g. " + dtypeName +
            "[B, H, N, 64]; a scalar has no dimensions: " + dtypeName + "[]");
  openBracket();
  if (tok.is(TokenKind::RBracket)) {
    closeBracket();
  } else {
    while (true) {
      decl.dims.emplace_back();
      if (!parseDim(decl.dims.back()))
        return false;
      if (tok.is(TokenKind::RBracket)) {
        closeBracket();
        break;
      }
      if (!tok.is(TokenKind::Comma))
        return failUnclosed("',' or ']' after a dimension",
                            "separate dimensions with ',', e.g. " + dtypeName +
                                "[B, H, N, 64]");
      advance();
    }
  }

  if (tok.is(TokenKind::Question)) {
    decl.optional = true;
    advance();
  }
  return true;
}

bool Parser::parseDim(Dim &dim) {
  dim.loc = tok.loc;
  if (tok.is(TokenKind::Identifier)) {
    dim.symbol = tok.spelling.str();
  } else if (tok.is(TokenKind::Integer)) {
    if (!parseInteger(dim.value))
      return false;
  } else {
    StringRef hint = "a dimension is a size name such as N or a fixed size "
                     "such as 128";
    if (tok.is(TokenKind::Minus))
      hint = "dimensions cannot be negative";
    else if (tok.is(TokenKind::Float))
      hint = "fixed sizes are integers, e.g. 128";
    return failExpected("dimension (a name or a non-negative integer)", hint);
  }
  advance();
  return true;
}

/// Parses '{' {statement} '}' with statements separated by newlines or ';'.
bool Parser::parseBody(Kernel &kernel) {
  openBracket();
  while (true) {
    skipSeparators();
    if (tok.is(TokenKind::RBrace)) {
      closeBracket();
      return true;
    }
    if (!tok.is(TokenKind::Identifier))
      return failExpected("a statement or '}' to end kernel '" + kernel.name +
                              "'",
                          tok.is(TokenKind::LBrace)
                              ? "an option block starts on the same line as "
                                "the call it belongs to"
                              : kStatementHint);
    kernel.body.emplace_back();
    if (!parseStatement(kernel.body.back()))
      return false;
    if (!tok.is(TokenKind::Newline) && !tok.is(TokenKind::Semicolon) &&
        !tok.is(TokenKind::RBrace))
      return failExpected("';', a new line or '}' after the statement",
                          kStatementHint);
  }
}

/// Parses target {',' target} '=' family '(' args ')' ['{' options '}'].
bool Parser::parseStatement(Statement &stmt) {
  stmt.loc = tok.loc;
  while (true) {
    stmt.targets.push_back({tok.spelling.str(), tok.loc});
    advance();
    if (tok.is(TokenKind::Assign))
      break;
    if (!tok.is(TokenKind::Comma))
      return failExpected("',' or '=' after target '" +
                              stmt.targets.back().name + "'",
                          kStatementHint);
    advance();
    skipNewlines();
    if (!tok.is(TokenKind::Identifier))
      return failExpected("target name after ','", kStatementHint);
  }
  advance();
  skipNewlines();

  if (!tok.is(TokenKind::Identifier))
    return failExpected("family name after '='",
                        "e.g. o = softmax(q, k, v) or o = linear(q, k, v)");
  stmt.family = tok.spelling.str();
  stmt.familyLoc = tok.loc;
  advance();
  if (!tok.is(TokenKind::LParen))
    return failExpected("'(' after family name '" + stmt.family + "'",
                        "pass the inputs in parentheses, e.g. " + stmt.family +
                            "(q, k, v)");
  unsigned height = 0;
  if (!parseArgs(stmt.args, stmt.family, height))
    return false;
  if (tok.is(TokenKind::LBrace))
    return parseOptions(stmt.options);
  return true;
}

/// Parses '(' [arg {',' arg}] ')' where arg is expr or name '=' expr; sets
/// `height` to the largest height of the argument values.
bool Parser::parseArgs(std::vector<Arg> &args, StringRef callee,
                       unsigned &height) {
  openBracket();
  if (tok.is(TokenKind::RParen)) {
    closeBracket();
    return true;
  }
  while (true) {
    Arg arg;
    arg.loc = tok.loc;
    // A named argument is only recognised once `name` has been parsed as an
    // expression and '=' follows; "(name) = 1" is not one.
    bool startsWithName = tok.is(TokenKind::Identifier);
    Parsed value = parseExpr();
    if (!value)
      return false;
    if (tok.is(TokenKind::Assign) && startsWithName &&
        llvm::isa<NameExpr>(*value.expr)) {
      arg.name = llvm::cast<NameExpr>(*value.expr).name;
      advance();
      value = parseExpr();
      if (!value)
        return false;
    }
    height = std::max(height, value.height);
    arg.value = std::move(value.expr);
    args.push_back(std::move(arg));

    if (tok.is(TokenKind::RParen)) {
      closeBracket();
      return true;
    }
    if (!tok.is(TokenKind::Comma))
      return failUnclosed("',' or ')' after argument " + Twine(args.size()) +
                              " of '" + callee + "'",
                          tok.is(TokenKind::Assign)
                              ? "only a plain name can precede '=' in a "
                                "named argument, e.g. block = 64"
                              : "");
    advance();
  }
}

/// Parses '{' {option} '}' with options separated by newlines or ';'.
bool Parser::parseOptions(std::vector<Option> &options) {
  openBracket();
  while (true) {
    skipSeparators();
    if (tok.is(TokenKind::RBrace)) {
      closeBracket();
      return true;
    }
    if (!tok.is(TokenKind::Identifier))
      return failExpected("option name or '}'", kOptionHint);
    Option option;
    option.name = tok.spelling.str();
    option.loc = tok.loc;
    advance();
    if (!tok.is(TokenKind::Assign))
      return failExpected("'=' after option name '" + option.name + "'",
                          kOptionHint);
    advance();
    skipNewlines();
    Parsed value = parseExpr();
    if (!value)
      return false;
    option.value = std::move(value.expr);
    options.push_back(std::move(option));
    if (!tok.is(TokenKind::Newline) && !tok.is(TokenKind::Semicolon) &&
        !tok.is(TokenKind::RBrace))
      return failExpected("';', a new line or '}' after option '" +
                              options.back().name + "'",
                          kOptionHint);
  }
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

Parsed Parser::failTooDeep(SMLoc loc) {
  diags.error(loc, "expression nested too deeply",
              "an expression may nest at most " + Twine(kMaxExprDepth) +
                  " levels of parentheses, operators, calls and indexing");
  return {};
}

Parsed Parser::parseExpr() {
  NestingGuard guard(*this);
  if (guard.tooDeep())
    return failTooDeep(tok.loc);
  return parseBinary(kOr);
}

/// Precedence climbing: parses operators binding at least as tightly as
/// `minPrec`.
Parsed Parser::parseBinary(int minPrec) {
  Parsed lhs = parseUnary();
  if (!lhs)
    return {};
  while (std::optional<BinaryOp> op = binaryOpFor(tok.kind)) {
    int prec = precedence(*op);
    if (prec < minPrec)
      break;
    SMLoc opLoc = tok.loc;
    advance();
    skipNewlines();
    Parsed rhs = parseBinary(prec + 1);
    if (!rhs)
      return {};
    unsigned height = 1 + std::max(lhs.height, rhs.height);
    if (height > kMaxExprDepth)
      return failTooDeep(opLoc);
    SMLoc loc = lhs.expr->loc;
    lhs.expr = std::make_unique<BinaryExpr>(
        loc, *op, opLoc, std::move(lhs.expr), std::move(rhs.expr));
    lhs.height = height;

    std::optional<BinaryOp> nextOp = binaryOpFor(tok.kind);
    bool isComparison = prec == kEquality || prec == kRelational;
    if (isComparison && nextOp && precedence(*nextOp) == prec) {
      diags.error(tok.loc, "comparison operators cannot be chained",
                  prec == kRelational
                      ? "write a < b && b < c instead of a < b < c"
                      : "parenthesise the first comparison, e.g. "
                        "(a == b) == c");
      return {};
    }
  }
  return lhs;
}

Parsed Parser::parseUnary() {
  if (!tok.is(TokenKind::Minus) && !tok.is(TokenKind::Bang))
    return parsePrimary();

  NestingGuard guard(*this);
  if (guard.tooDeep())
    return failTooDeep(tok.loc);
  UnaryOp op = tok.is(TokenKind::Minus) ? UnaryOp::Neg : UnaryOp::Not;
  SMLoc loc = tok.loc;
  advance();
  skipNewlines();
  Parsed operand = parseUnary();
  if (!operand)
    return {};
  unsigned height = operand.height + 1;
  if (height > kMaxExprDepth)
    return failTooDeep(loc);
  return {std::make_unique<UnaryExpr>(loc, op, std::move(operand.expr)),
          height};
}

Parsed Parser::parsePrimary() {
  SMLoc loc = tok.loc;
  switch (tok.kind) {
  case TokenKind::Integer: {
    int64_t value;
    if (!parseInteger(value))
      return {};
    advance();
    return {std::make_unique<NumberExpr>(loc, value), 1};
  }
  case TokenKind::Float: {
    double value;
    if (!parseFloat(value))
      return {};
    advance();
    return {std::make_unique<NumberExpr>(loc, value), 1};
  }
  case TokenKind::KwTrue:
  case TokenKind::KwFalse: {
    bool value = tok.is(TokenKind::KwTrue);
    advance();
    return {std::make_unique<BoolExpr>(loc, value), 1};
  }
  case TokenKind::Identifier:
    return parseNameOrCall();
  case TokenKind::LParen: {
    openBracket();
    Parsed inner = parseExpr();
    if (!inner)
      return {};
    if (!tok.is(TokenKind::RParen)) {
      failUnclosed("')'");
      return {};
    }
    closeBracket();
    // A parenthesised expression starts at its '('.
    inner.expr->loc = loc;
    return rejectPostfix(std::move(inner));
  }
  default:
    failExpected("expression");
    return {};
  }
}

/// Parses name, name '(' args ')' or name '[' [expr {',' expr}] ']'.
Parsed Parser::parseNameOrCall() {
  std::string name = tok.spelling.str();
  SMLoc loc = tok.loc;
  advance();

  if (tok.is(TokenKind::LParen)) {
    std::vector<Arg> args;
    unsigned height = 0;
    if (!parseArgs(args, name, height))
      return {};
    return rejectPostfix(
        {std::make_unique<CallExpr>(loc, std::move(name), std::move(args)),
         height + 1});
  }

  if (!tok.is(TokenKind::LBracket))
    return {std::make_unique<NameExpr>(loc, std::move(name)), 1};

  openBracket();
  std::vector<ExprPtr> indices;
  unsigned height = 0;
  if (!tok.is(TokenKind::RBracket)) {
    while (true) {
      Parsed index = parseExpr();
      if (!index)
        return {};
      height = std::max(height, index.height);
      indices.push_back(std::move(index.expr));
      if (tok.is(TokenKind::RBracket))
        break;
      if (!tok.is(TokenKind::Comma)) {
        failUnclosed("',' or ']' after index " + Twine(indices.size()) +
                     " of '" + name + "'");
        return {};
      }
      advance();
    }
  }
  closeBracket();
  return rejectPostfix(
      {std::make_unique<IndexExpr>(loc, std::move(name), std::move(indices)),
       height + 1});
}

/// Calls and indexing apply to names only, so `f(x)[i]`, `a[i][j]` and
/// `(f)(x)` are errors rather than silently ending the expression.
Parsed Parser::rejectPostfix(Parsed expr) {
  if (tok.is(TokenKind::LBracket)) {
    diags.error(tok.loc, "only a name can be indexed",
                "index a tensor with all its indices in one pair of brackets, "
                "e.g. x[b, h, i]");
    return {};
  }
  if (tok.is(TokenKind::LParen)) {
    diags.error(tok.loc, "only a name can be called");
    return {};
  }
  return expr;
}

bool Parser::parseInteger(int64_t &value) {
  if (!tok.spelling.getAsInteger(10, value))
    return true;
  diags.error(tok.loc, "integer literal too large",
              "integers must fit in 64 bits (at most " +
                  Twine(std::numeric_limits<int64_t>::max()) +
                  "); write a floating-point literal such as 1e20 if an "
                  "approximate value will do");
  return false;
}

bool Parser::parseFloat(double &value) {
  // The lexer only produces well-formed literals, so conversion fails only
  // when the value does not fit.
  if (!tok.spelling.getAsDouble(value, /*AllowInexact=*/true) &&
      std::isfinite(value))
    return true;
  diags.error(tok.loc, "floating-point literal out of range",
              "literals must be finite doubles, at most about 1.8e308");
  return false;
}

std::optional<Module> attnc::parseSpec(unsigned bufferId,
                                       DiagnosticEngine &diags) {
  return Parser(bufferId, diags).parseModule();
}
