//===- ParserTest.cpp - Tests of the .attn lexer, parser and printer ------===//

#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Frontend/Lexer.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <memory>
#include <string>
#include <vector>

using namespace attnc;
using namespace attnc::ast;

namespace {

/// A parse of one source text. The SourceMgr stays alive with the AST because
/// the AST's locations point into its buffer.
struct Result {
  std::unique_ptr<llvm::SourceMgr> sourceMgr;
  std::unique_ptr<DiagnosticEngine> diags;
  std::optional<Module> module;

  const std::vector<Diagnostic> &diagnostics() const {
    return diags->diagnostics();
  }
  std::pair<unsigned, unsigned> lineCol(llvm::SMLoc loc) const {
    return sourceMgr->getLineAndColumn(loc);
  }
};

Result parse(llvm::StringRef source) {
  Result result;
  result.sourceMgr = std::make_unique<llvm::SourceMgr>();
  unsigned bufferId = result.sourceMgr->AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, "t.attn"), llvm::SMLoc());
  result.diags = std::make_unique<DiagnosticEngine>(*result.sourceMgr,
                                                    /*os=*/nullptr);
  result.module = parseSpec(bufferId, *result.diags);
  return result;
}

std::string printModule(const Module &module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  print(module, os);
  return text;
}

std::string printExpr(const Expr &expr) {
  std::string text;
  llvm::raw_string_ostream os(text);
  print(expr, os);
  return text;
}

/// Wraps `optionValue` into a minimal kernel as the value of option `x`.
std::string inOption(llvm::StringRef optionValue) {
  return ("kernel k(q: f32[N]) -> o: f32[N] {\n  o = f(q) { x = " +
          optionValue + " }\n}\n")
      .str();
}

/// Parses the value of option `x` (see inOption) and prints it.
std::string printOption(llvm::StringRef optionValue) {
  Result r = parse(inOption(optionValue));
  if (!r.module)
    return "<error: " + r.diagnostics().front().message + ">";
  return printExpr(*r.module->kernels[0].body[0].options[0].value);
}

unsigned countErrors(const Result &r) {
  unsigned n = 0;
  for (const Diagnostic &d : r.diagnostics())
    n += d.severity == Severity::Error;
  return n;
}

/// Checks that `source` fails with exactly one error, the first diagnostic,
/// at line:col, whose message contains `message`.
void expectError(llvm::StringRef source, unsigned line, unsigned col,
                 llvm::StringRef message, llvm::StringRef hint = "") {
  SCOPED_TRACE(source.str());
  Result r = parse(source);
  EXPECT_FALSE(r.module);
  ASSERT_FALSE(r.diagnostics().empty());
  const Diagnostic &d = r.diagnostics().front();
  EXPECT_EQ(d.severity, Severity::Error);
  EXPECT_EQ(countErrors(r), 1u);
  EXPECT_EQ(d.file, "t.attn");
  EXPECT_EQ(d.line, line);
  EXPECT_EQ(d.col, col);
  EXPECT_NE(d.message.find(message.str()), std::string::npos)
      << "message: " << d.message;
  EXPECT_NE(d.hint.find(hint.str()), std::string::npos) << "hint: " << d.hint;
}

/// Checks that the error is followed by the note "to match this '<bracket>'"
/// at line:col.
void expectMatchNote(llvm::StringRef source, char bracket, unsigned line,
                     unsigned col) {
  SCOPED_TRACE(source.str());
  Result r = parse(source);
  ASSERT_EQ(r.diagnostics().size(), 2u);
  const Diagnostic &note = r.diagnostics()[1];
  EXPECT_EQ(note.severity, Severity::Note);
  EXPECT_EQ(note.message, std::string("to match this '") + bracket + "'");
  EXPECT_EQ(note.line, line);
  EXPECT_EQ(note.col, col);
}

const char *kAlibi =
    R"(# causal ALiBi with GQA, PyTorch layout; lse as a second output
kernel alibi(q: bf16[B, Hq, N, 128], k: bf16[B, Hk, M, 128], v: bf16[B, Hk, M, 128],
             slope: f32[Hq]) -> (o: bf16[B, Hq, N, 128], lse: f32[B, Hq, N]) {
  o, lse = softmax(q, k, v) {
    score = s - slope[h] * (i - j)
    mask  = causal && i - j < 4096
  }
}
)";

const char *kGla = R"(
kernel gla(q: bf16[B, T, H, 128], k: bf16[B, T, H, 128], v: bf16[B, T, H, 256],
           g: f32[B, T, H, 128], h0: f32[B, H, 128, 256]?)
    -> (o: bf16[B, T, H, 256], hT: f32[B, H, 128, 256]) {
  o, hT = linear(q, k, v, layout = bthd, initial = h0) { gate = g[b, t, h, d]; chunk = 64 }
}
)";

//===----------------------------------------------------------------------===//
// Round trips
//===----------------------------------------------------------------------===//

TEST(ParserTest, AlibiRoundTrip) {
  Result r = parse(kAlibi);
  ASSERT_TRUE(r.module);
  EXPECT_TRUE(r.diagnostics().empty());
  EXPECT_EQ(printModule(*r.module),
            "kernel alibi(q: bf16[B, Hq, N, 128], k: bf16[B, Hk, M, 128], "
            "v: bf16[B, Hk, M, 128], slope: f32[Hq]) -> "
            "(o: bf16[B, Hq, N, 128], lse: f32[B, Hq, N]) {\n"
            "  o, lse = softmax(q, k, v) {\n"
            "    score = (s - (slope[h] * (i - j)))\n"
            "    mask = (causal && ((i - j) < 4096))\n"
            "  }\n"
            "}\n");
}

TEST(ParserTest, GlaRoundTrip) {
  Result r = parse(kGla);
  ASSERT_TRUE(r.module);
  EXPECT_EQ(printModule(*r.module),
            "kernel gla(q: bf16[B, T, H, 128], k: bf16[B, T, H, 128], "
            "v: bf16[B, T, H, 256], g: f32[B, T, H, 128], "
            "h0: f32[B, H, 128, 256]?) -> "
            "(o: bf16[B, T, H, 256], hT: f32[B, H, 128, 256]) {\n"
            "  o, hT = linear(q, k, v, layout = bthd, initial = h0) {\n"
            "    gate = g[b, t, h, d]\n"
            "    chunk = 64\n"
            "  }\n"
            "}\n");
}

TEST(ParserTest, PrintedSourceParsesToTheSameText) {
  std::string source = std::string(kAlibi) + kGla +
                       "kernel x(q: f32[]) -> o: f32[N] {\n"
                       "  o = softmax(q, k, v) { select = topk(16, block = "
                       "64); mask = j <= i }\n"
                       "  o = linear(q, k, v) { gate = log(1 - exp2(-5 - h)); "
                       "feature = elu(x) + 1 }\n"
                       "  o = f(q) { s = 1.5 + 1e-3 + .5 + 2. + 1.5e+10 + 0.1 "
                       "+ !-x + -(a + b) }\n"
                       "}\n";
  Result first = parse(source);
  ASSERT_TRUE(first.module);
  std::string printed = printModule(*first.module);
  Result second = parse(printed);
  ASSERT_TRUE(second.module);
  EXPECT_EQ(printModule(*second.module), printed);
  EXPECT_NE(printed.find("s = (((((((1.5 + 0.001) + 0.5) + 2.0) + 1.5e+10) + "
                         "0.1) + !-x) + -(a + b))"),
            std::string::npos)
      << printed;
}

//===----------------------------------------------------------------------===//
// Structure
//===----------------------------------------------------------------------===//

TEST(ParserTest, KernelStructureAndLocations) {
  Result r = parse(kAlibi);
  ASSERT_TRUE(r.module);
  ASSERT_EQ(r.module->kernels.size(), 1u);
  const Kernel &kernel = r.module->kernels[0];
  EXPECT_EQ(kernel.name, "alibi");
  EXPECT_EQ(r.lineCol(kernel.loc), std::make_pair(2u, 1u));
  EXPECT_EQ(r.lineCol(kernel.nameLoc), std::make_pair(2u, 8u));

  ASSERT_EQ(kernel.params.size(), 4u);
  const TensorDecl &q = kernel.params[0];
  EXPECT_EQ(q.name, "q");
  EXPECT_EQ(q.dtype, DType::BF16);
  EXPECT_EQ(r.lineCol(q.loc), std::make_pair(2u, 14u));
  EXPECT_EQ(r.lineCol(q.dtypeLoc), std::make_pair(2u, 17u));
  ASSERT_EQ(q.dims.size(), 4u);
  EXPECT_TRUE(q.dims[0].isSymbolic());
  EXPECT_EQ(q.dims[0].symbol, "B");
  EXPECT_EQ(r.lineCol(q.dims[1].loc), std::make_pair(2u, 25u));
  EXPECT_FALSE(q.dims[3].isSymbolic());
  EXPECT_EQ(q.dims[3].value, 128);
  EXPECT_FALSE(q.optional);
  EXPECT_EQ(kernel.params[3].dtype, DType::F32);

  ASSERT_EQ(kernel.results.size(), 2u);
  EXPECT_EQ(kernel.results[1].name, "lse");

  ASSERT_EQ(kernel.body.size(), 1u);
  const Statement &stmt = kernel.body[0];
  ASSERT_EQ(stmt.targets.size(), 2u);
  EXPECT_EQ(stmt.targets[1].name, "lse");
  EXPECT_EQ(r.lineCol(stmt.loc), std::make_pair(4u, 3u));
  EXPECT_EQ(r.lineCol(stmt.targets[1].loc), std::make_pair(4u, 6u));
  EXPECT_EQ(stmt.family, "softmax");
  EXPECT_EQ(r.lineCol(stmt.familyLoc), std::make_pair(4u, 12u));
  ASSERT_EQ(stmt.args.size(), 3u);
  EXPECT_FALSE(stmt.args[0].isNamed());

  ASSERT_EQ(stmt.options.size(), 2u);
  const Option &score = stmt.options[0];
  EXPECT_EQ(score.name, "score");
  EXPECT_EQ(r.lineCol(score.loc), std::make_pair(5u, 5u));
  // score = s - slope[h] * (i - j)
  auto *sub = llvm::dyn_cast<BinaryExpr>(score.value.get());
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->op, BinaryOp::Sub);
  EXPECT_EQ(r.lineCol(sub->loc), std::make_pair(5u, 13u));
  EXPECT_EQ(r.lineCol(sub->opLoc), std::make_pair(5u, 15u));
  EXPECT_TRUE(llvm::isa<NameExpr>(sub->lhs.get()));
  auto *mul = llvm::dyn_cast<BinaryExpr>(sub->rhs.get());
  ASSERT_TRUE(mul);
  auto *index = llvm::dyn_cast<IndexExpr>(mul->lhs.get());
  ASSERT_TRUE(index);
  EXPECT_EQ(index->base, "slope");
  ASSERT_EQ(index->indices.size(), 1u);
  // A parenthesised expression starts at its '('.
  EXPECT_EQ(r.lineCol(mul->rhs->loc), std::make_pair(5u, 28u));
}

TEST(ParserTest, Precedence) {
  EXPECT_EQ(printOption("a + b * c < d && !e || f"),
            "((((a + (b * c)) < d) && !e) || f)");
  EXPECT_EQ(printOption("a - b - c"), "((a - b) - c)");
  EXPECT_EQ(printOption("a / b % c * d"), "(((a / b) % c) * d)");
  EXPECT_EQ(printOption("a == b < c"), "(a == (b < c))");
  EXPECT_EQ(printOption("a || b && c == d"), "(a || (b && (c == d)))");
  EXPECT_EQ(printOption("-a * b"), "(-a * b)");
  EXPECT_EQ(printOption("-(a * b)"), "-(a * b)");
  EXPECT_EQ(printOption("!!a"), "!!a");
  EXPECT_EQ(printOption("a * (b + c)"), "(a * (b + c))");
  EXPECT_EQ(printOption("(((a)))"), "a");
  EXPECT_EQ(printOption("where(i < j, -1e30, s)"), "where((i < j), -1e+30, s)");
  EXPECT_EQ(printOption("x[b, h / 2, i % 64] + true - false"),
            "((x[b, (h / 2), (i % 64)] + true) - false)");
  EXPECT_EQ(printOption("e[]"), "e[]");
  EXPECT_EQ(printOption("f()"), "f()");
}

TEST(ParserTest, ComparisonsDoNotChain) {
  expectError(inOption("a < b < c"), 2, 24,
              "comparison operators cannot be chained", "a < b && b < c");
  expectError(inOption("a == b != c"), 2, 25,
              "comparison operators cannot be chained");
  EXPECT_EQ(printOption("(a == b) == c"), "((a == b) == c)");
}

TEST(ParserTest, Numbers) {
  struct Case {
    const char *text;
    bool isInteger;
    int64_t intValue;
    double value;
  } cases[] = {
      {"123", true, 123, 123.0},
      {"0", true, 0, 0.0},
      {"007", true, 7, 7.0},
      {"9223372036854775807", true, INT64_MAX, 9223372036854775807.0},
      {"1.5", false, 0, 1.5},
      {"1e-3", false, 0, 1e-3},
      {".5", false, 0, 0.5},
      {"2.", false, 0, 2.0},
      {"1.5e+10", false, 0, 1.5e10},
      {"2.E3", false, 0, 2e3},
      {"1e-999", false, 0, 0.0},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.text);
    Result r = parse(inOption(c.text));
    ASSERT_TRUE(r.module);
    auto *number = llvm::dyn_cast<NumberExpr>(
        r.module->kernels[0].body[0].options[0].value.get());
    ASSERT_TRUE(number);
    EXPECT_EQ(number->isInteger, c.isInteger);
    EXPECT_EQ(number->intValue, c.intValue);
    EXPECT_EQ(number->value, c.value);
  }
}

TEST(ParserTest, NamedArguments) {
  Result r = parse("kernel k(q: f32[N]) -> o: f32[N] {\n"
                   "  o = softmax(q, k, v, layout = bnhd, cu_seqlens_q = cq)"
                   " { select = topk(16, block = 64) }\n"
                   "}\n");
  ASSERT_TRUE(r.module);
  const Statement &stmt = r.module->kernels[0].body[0];
  ASSERT_EQ(stmt.args.size(), 5u);
  EXPECT_FALSE(stmt.args[2].isNamed());
  EXPECT_EQ(stmt.args[3].name, "layout");
  EXPECT_EQ(r.lineCol(stmt.args[3].loc), std::make_pair(2u, 24u));
  EXPECT_EQ(printExpr(*stmt.args[3].value), "bnhd");
  EXPECT_EQ(stmt.args[4].name, "cu_seqlens_q");

  auto *call = llvm::dyn_cast<CallExpr>(stmt.options[0].value.get());
  ASSERT_TRUE(call);
  EXPECT_EQ(call->callee, "topk");
  ASSERT_EQ(call->args.size(), 2u);
  EXPECT_FALSE(call->args[0].isNamed());
  EXPECT_EQ(call->args[1].name, "block");
  auto *block = llvm::dyn_cast<NumberExpr>(call->args[1].value.get());
  ASSERT_TRUE(block);
  EXPECT_EQ(block->intValue, 64);

  // Only a plain name may precede '='.
  expectError(inOption("f((a) = 1)"), 2, 24, "expected ',' or ')'",
              "named argument");
  expectError(inOption("f(a + b = 1)"), 2, 26, "expected ',' or ')'");
}

TEST(ParserTest, OptionSeparators) {
  Result r = parse("kernel k(q: f32[N]) -> o: f32[N] {\n"
                   "  o = f(q) { a = 1; b = 2\n"
                   "    c = 3;\n"
                   "\n"
                   "    ;; d = 4 # comment\n"
                   "  }; p = f(q) {}\n"
                   "  r = f(q) {\n"
                   "  }\n"
                   "  t = f(q)\n"
                   "}\n");
  ASSERT_TRUE(r.module);
  const Kernel &kernel = r.module->kernels[0];
  ASSERT_EQ(kernel.body.size(), 4u);
  ASSERT_EQ(kernel.body[0].options.size(), 4u);
  EXPECT_EQ(kernel.body[0].options[3].name, "d");
  EXPECT_TRUE(kernel.body[1].options.empty());
  EXPECT_TRUE(kernel.body[2].options.empty());
  EXPECT_TRUE(kernel.body[3].options.empty());
}

TEST(ParserTest, LineContinuation) {
  Result r = parse("kernel k(q: f32[N]) -> o: f32[N] {\n"
                   "  o,\n"
                   "  lse =\n"
                   "    softmax(q,\n"
                   "            k, v\n"
                   "           ) {\n"
                   "    mask = i -\n"
                   "           j < 4096 &&\n"
                   "           causal\n"
                   "    score =\n"
                   "      s * f(a,\n"
                   "            b)[\n"
                   "      ]\n"
                   "  }\n"
                   "}\n");
  // f(a, b)[] is not allowed, but everything before it must parse.
  ASSERT_FALSE(r.module);
  EXPECT_EQ(r.diagnostics().front().message, "only a name can be indexed");
  EXPECT_EQ(r.diagnostics().front().line, 12u);

  Result ok = parse("kernel k(q: f32[N]) -> o: f32[N] {\n"
                    "  o,\n"
                    "  lse =\n"
                    "    softmax(q,\n"
                    "            k, v\n"
                    "           ) {\n"
                    "    mask = i -\n"
                    "           j < 4096 &&\n"
                    "           causal\n"
                    "    score = s * x[b,\n"
                    "                  h]\n"
                    "  }\n"
                    "}\n");
  ASSERT_TRUE(ok.module);
  const Statement &stmt = ok.module->kernels[0].body[0];
  EXPECT_EQ(stmt.targets.size(), 2u);
  EXPECT_EQ(stmt.args.size(), 3u);
  ASSERT_EQ(stmt.options.size(), 2u);
  EXPECT_EQ(printExpr(*stmt.options[0].value), "(((i - j) < 4096) && causal)");
  EXPECT_EQ(printExpr(*stmt.options[1].value), "(s * x[b, h])");

  // A newline before an operator ends the option.
  expectError("kernel k(q: f32[N]) -> o: f32[N] {\n"
              "  o = f(q) {\n"
              "    mask = i\n"
              "      - j\n"
              "  }\n"
              "}\n",
              4, 7, "expected option name or '}', found '-'");
}

TEST(ParserTest, OptionalParameters) {
  Result r = parse("kernel k(q: f32[N]?, h0: f32[H, 64, 64] ?,\n"
                   "         x: i8[]) -> o: f32[N]? { o = f(q) }\n");
  ASSERT_TRUE(r.module);
  const Kernel &kernel = r.module->kernels[0];
  ASSERT_EQ(kernel.params.size(), 3u);
  EXPECT_TRUE(kernel.params[0].optional);
  EXPECT_TRUE(kernel.params[1].optional);
  EXPECT_FALSE(kernel.params[2].optional);
  EXPECT_EQ(kernel.params[2].dtype, DType::I8);
  EXPECT_TRUE(kernel.params[2].dims.empty());
  EXPECT_TRUE(kernel.results[0].optional);
}

TEST(ParserTest, SingleResultAndEmptyLists) {
  Result r = parse("kernel one(q: f32[B, H, N, 64]) -> o: f32[B,H,N,64] {\n"
                   "  o = softmax(q, q, q)\n}\n"
                   "kernel none() -> () {}\n");
  ASSERT_TRUE(r.module);
  ASSERT_EQ(r.module->kernels.size(), 2u);
  const Kernel &one = r.module->kernels[0];
  ASSERT_EQ(one.results.size(), 1u);
  EXPECT_EQ(one.results[0].name, "o");
  EXPECT_EQ(one.results[0].dims.size(), 4u);
  const Kernel &none = r.module->kernels[1];
  EXPECT_TRUE(none.params.empty());
  EXPECT_TRUE(none.results.empty());
  EXPECT_TRUE(none.body.empty());
}

TEST(ParserTest, ContextualDTypeNames) {
  Result r = parse("kernel k(bool: bool[f32], f16: f16[4], x: i32[0])"
                   " -> o: bf16[] { o = f(bool, f16) }");
  ASSERT_TRUE(r.module);
  const Kernel &kernel = r.module->kernels[0];
  EXPECT_EQ(kernel.params[0].name, "bool");
  EXPECT_EQ(kernel.params[0].dtype, DType::Bool);
  EXPECT_EQ(kernel.params[0].dims[0].symbol, "f32");
  EXPECT_EQ(kernel.params[2].dtype, DType::I32);
  EXPECT_EQ(kernel.params[2].dims[0].value, 0);
}

TEST(ParserTest, DTypeNames) {
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::I32,
                      DType::I8, DType::Bool})
    EXPECT_EQ(parseDType(toString(dtype)), dtype);
  EXPECT_EQ(parseDType("f64"), std::nullopt);
  EXPECT_EQ(toString(BinaryOp::And), "&&");
  EXPECT_EQ(toString(BinaryOp::Le), "<=");
  EXPECT_EQ(toString(UnaryOp::Not), "!");
}

//===----------------------------------------------------------------------===//
// Lexer
//===----------------------------------------------------------------------===//

TEST(LexerTest, Tokens) {
  llvm::SourceMgr sourceMgr;
  unsigned id = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          "kernel x_1->(a==b!=c<=d>=e<f>g&&h||!i%2/3*4+5-6) # c\n"
          "  ? : ; , [] {} = true false // c\n"
          "1.5e3",
          "t.attn"),
      llvm::SMLoc());
  DiagnosticEngine diags(sourceMgr, nullptr);
  Lexer lexer(id, diags);
  using K = TokenKind;
  std::vector<K> expected = {
      K::KwKernel,   K::Identifier, K::Arrow,      K::LParen,     K::Identifier,
      K::EqEq,       K::Identifier, K::NotEq,      K::Identifier, K::LessEq,
      K::Identifier, K::GreaterEq,  K::Identifier, K::Less,       K::Identifier,
      K::Greater,    K::Identifier, K::AmpAmp,     K::Identifier, K::PipePipe,
      K::Bang,       K::Identifier, K::Percent,    K::Integer,    K::Slash,
      K::Integer,    K::Star,       K::Integer,    K::Plus,       K::Integer,
      K::Minus,      K::Integer,    K::RParen,     K::Newline,    K::Question,
      K::Colon,      K::Semicolon,  K::Comma,      K::LBracket,   K::RBracket,
      K::LBrace,     K::RBrace,     K::Assign,     K::KwTrue,     K::KwFalse,
      K::Newline,    K::Float,      K::Eof,        K::Eof};
  std::vector<Token> tokens;
  for (size_t i = 0; i < expected.size(); ++i)
    tokens.push_back(lexer.next());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(tokens[i].kind, expected[i]) << "token " << i;
  EXPECT_EQ(tokens[1].spelling, "x_1");
  EXPECT_EQ(tokens[46].spelling, "1.5e3");
  EXPECT_EQ(sourceMgr.getLineAndColumn(tokens[46].loc), std::make_pair(3u, 1u));
  EXPECT_FALSE(diags.hadError());
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

TEST(ParserErrorTest, Declarations) {
  expectError("kernel k(q[", 1, 11,
              "expected ':' after parameter name 'q', found '['",
              "write a parameter as name: dtype[dims], e.g. q: bf16[");
  expectError("kernel k(q: f64[N]) -> o: f32[] {}", 1, 13,
              "unknown element type 'f64'",
              "element types: f32, f16, bf16, i32, i8, bool");
  expectError("kernel k(q: [N])", 1, 13,
              "expected element type after ':', found '['");
  expectError("kernel k(q: f32) -> o: f32[] {}", 1, 16,
              "expected '[' after element type 'f32', found ')'", "f32[]");
  expectError("kernel k(q: f32[-1])", 1, 17, "expected dimension",
              "cannot be negative");
  expectError("kernel k(q: f32[1.5])", 1, 17, "expected dimension", "integers");
  expectError("kernel k(q: f32[N],) -> o: f32[] {}", 1, 20,
              "expected parameter name, found ')'", "trailing ','");
  expectError("kernel k(q: f32[N] k: f32[N])", 1, 20,
              "expected ',' or ')' after parameter 'q', found 'k'");
  expectError("kernel (q: f32[N])", 1, 8,
              "expected kernel name after 'kernel', found '('");
  expectError("kernel k q: f32[N])", 1, 10,
              "expected '(' after kernel name 'k', found 'q'");
  expectError("kernel k(q: f32[N]) { }", 1, 21,
              "expected '->' after the parameters of kernel 'k', found '{'",
              "-> o: bf16[B, H, N, 64]");
  expectError("kernel k(q: f32[N]) -> { }", 1, 24,
              "expected results after '->', found '{'");
  expectError("kernel k(q: f32[N]) -> (o f32[N]) { }", 1, 27,
              "expected ':' after result name 'o', found 'f32'",
              "write a result as name: dtype[dims]");
  expectError("kernel k(q: f32[N]) -> o: f32[N]\n  o = f(q)\n", 2, 3,
              "expected '{' to start the body of kernel 'k', found 'o'");
  expectError("kernel k() -> o: f32[] {}\nkernal j() -> o: f32[] {}", 2, 1,
              "expected 'kernel' or end of file, found 'kernal'");
}

TEST(ParserErrorTest, Statements) {
  const char *head = "kernel k(q: f32[N]) -> o: f32[N] {\n";
  auto body = [&](const char *text) { return std::string(head) + text; };
  expectError(body("  o softmax(q)\n}"), 2, 5,
              "expected ',' or '=' after target 'o', found 'softmax'",
              "o, lse = softmax(q, k, v)");
  expectError(body("  o, = softmax(q)\n}"), 2, 6,
              "expected target name after ',', found '='");
  expectError(body("  o = 1\n}"), 2, 7,
              "expected family name after '=', found '1'");
  expectError(body("  o = softmax\n}"), 2, 14,
              "expected '(' after family name 'softmax', found end of line",
              "softmax(q, k, v)");
  expectError(body("  o = f(q) p = f(q)\n}"), 2, 12,
              "expected ';', a new line or '}' after the statement, found 'p'");
  expectError(body("  o = f(q)\n  { mask = causal }\n}"), 3, 3,
              "expected a statement or '}' to end kernel 'k', found '{'",
              "same line");
  expectError(body("  o = f(q) { mask causal }\n}"), 2, 19,
              "expected '=' after option name 'mask', found 'causal'",
              "name = value");
  expectError(body("  o = f(q) { 1 = 2 }\n}"), 2, 14,
              "expected option name or '}', found '1'");
  expectError(body("  o = f(q) { a = 1 b = 2 }\n}"), 2, 20,
              "expected ';', a new line or '}' after option 'a', found 'b'");
  expectError(body("  o = f(q) { a = x[i][j] }\n}"), 2, 22,
              "only a name can be indexed", "x[b, h, i]");
  expectError(body("  o = f(q) { a = (g)(x) }\n}"), 2, 21,
              "only a name can be called");
  expectError(body("  o = f(q) { a = f(x, ) }\n}"), 2, 23,
              "expected expression, found ')'");
}

TEST(ParserErrorTest, Unterminated) {
  // Missing '}' of a kernel body.
  const char *body = "kernel k(q: f32[N]) -> o: f32[N] {\n  o = softmax(q)\n";
  expectError(body, 3, 1, "found end of file");
  expectError(body, 3, 1, "expected a statement or '}'");
  expectMatchNote(body, '{', 1, 34);

  // Missing ')' of a parameter list.
  expectError("kernel k(q: f32[N]", 1, 19,
              "expected ',' or ')' after parameter 'q', found end of file");
  expectMatchNote("kernel k(q: f32[N]", '(', 1, 9);

  // Missing ']' of a shape.
  expectError("kernel k(q: f32[N", 1, 18,
              "expected ',' or ']' after a dimension, found end of file");
  expectMatchNote("kernel k(q: f32[N", '[', 1, 16);

  // End of file in the middle of an expression.
  const char *midExpr =
      "kernel k(q: f32[N]) -> o: f32[N] {\n  o = softmax(q) {\n    mask = i -";
  expectError(midExpr, 3, 15, "expected expression, found end of file");
  expectMatchNote(midExpr, '{', 2, 18);

  // Missing '}' of an option block.
  const char *options = "kernel k() -> o: f32[] {\n  o = f(x) { mask = causal";
  expectError(options, 2, 27,
              "expected ';', a new line or '}' after option 'mask', found end "
              "of file");
  expectMatchNote(options, '{', 2, 12);

  // Missing ')' in an expression; the '}' on the next line is found first
  // because newlines do not count inside parentheses.
  const char *paren =
      "kernel k() -> o: f32[] {\n  o = f(x) { mask = (a + b\n  }\n}\n";
  expectError(paren, 3, 3, "expected ')', found '}'");
  expectMatchNote(paren, '(', 2, 21);

  // Missing ')' of a call and ']' of an index at the end of the file.
  expectError("kernel k() -> o: f32[] { o = f(x", 1, 33,
              "expected ',' or ')' after argument 1 of 'f', found end of file");
  expectMatchNote("kernel k() -> o: f32[] { o = f(x", '(', 1, 31);
  expectError("kernel k() -> o: f32[] { o = f(x[i", 1, 35,
              "expected ',' or ']' after index 1 of 'x', found end of file");
  expectMatchNote("kernel k() -> o: f32[] { o = f(x[i", '[', 1, 33);
}

TEST(ParserErrorTest, EmptyInput) {
  expectError("", 1, 1, "expected 'kernel', found end of file",
              "kernel name(params)");
  expectError("# only a comment\n// and another\n\n", 4, 1,
              "expected 'kernel', found end of file");
  expectError("kernels", 1, 1, "expected 'kernel', found 'kernels'");
}

TEST(ParserErrorTest, UnexpectedCharacters) {
  struct Case {
    const char *text;
    const char *message;
    const char *hint;
  } cases[] = {
      {"$", "unexpected character '$'", ""},
      {"@", "unexpected character '@'", ""},
      {"\x01", "unexpected character '\\x01'", "control characters"},
      {"\xff", "unexpected character '\\xff'", "non-ASCII"},
      {"\xc3\xa9", "unexpected character '\\xc3'", "non-ASCII"},
      {"&", "unexpected character '&'", "'&&'"},
      {"|", "unexpected character '|'", "'||'"},
      {".", "unexpected character '.'", "0.5"},
  };
  for (const Case &c : cases)
    expectError(inOption(std::string("a ") + c.text + " b"), 2, 20, c.message,
                c.hint);

  // A NUL byte inside the buffer is a character, not the end of the input.
  std::string withNul = inOption("a ");
  withNul.insert(withNul.find("a ") + 2, 1, '\0');
  expectError(withNul, 2, 20, "unexpected character '\\x00'");

  expectError(inOption("1e+"), 2, 18,
              "expected digits in the exponent of '1e+'");
  expectError(inOption("2x"), 2, 19, "invalid suffix 'x' on number '2'",
              "2 * x");
  // Comments may hold anything.
  Result r = parse("# \xff\x01$@ \n"
                   "kernel k() -> o: f32[] { // \xfe&|\n"
                   "  o = f(q) # \x01\n"
                   "}\n");
  EXPECT_TRUE(r.module);
}

TEST(ParserErrorTest, EveryByteAfterParenFailsCleanly) {
  for (unsigned byte = 0; byte < 256; ++byte) {
    SCOPED_TRACE(byte);
    std::string source = "kernel k(";
    source += static_cast<char>(byte);
    Result r = parse(source);
    EXPECT_FALSE(r.module);
    ASSERT_FALSE(r.diagnostics().empty());
    EXPECT_EQ(r.diagnostics().front().severity, Severity::Error);
    EXPECT_EQ(countErrors(r), 1u);
    EXPECT_EQ(r.diagnostics().front().line, byte == '\n' ? 2u : 1u);
  }
}

TEST(ParserErrorTest, DeepNesting) {
  // The option's value starts at line 2, column 18 (see inOption). The 257th
  // nested level is rejected.
  const unsigned valueCol = 18;
  expectError(inOption(std::string(100000, '(')), 2, valueCol + 256,
              "expression nested too deeply", "at most 256 levels");
  expectError(inOption(std::string(100000, '-')), 2, valueCol + 255,
              "expression nested too deeply");
  expectError(inOption(std::string(100000, '!') + "x"), 2, valueCol + 255,
              "expression nested too deeply");

  std::string calls;
  for (int i = 0; i < 100000; ++i)
    calls += "f(";
  expectError(inOption(calls), 2, valueCol + 2 * 256,
              "expression nested too deeply");
  std::string indices;
  for (int i = 0; i < 100000; ++i)
    indices += "x[";
  expectError(inOption(indices), 2, valueCol + 2 * 256,
              "expression nested too deeply");

  // Long operator chains build deep trees without deep recursion; they are
  // bounded too so that recursive walks of the AST stay shallow.
  std::string chain = "a";
  for (int i = 0; i < 100000; ++i)
    chain += "+a";
  expectError(inOption(chain), 2, valueCol + 1 + 2 * 255,
              "expression nested too deeply");

  // Within the limit is fine.
  EXPECT_EQ(printOption(std::string(200, '(') + "x" + std::string(200, ')')),
            "x");
  EXPECT_EQ(printOption(std::string(200, '-') + "x"),
            std::string(200, '-') + "x");
}

TEST(ParserErrorTest, LiteralsOutOfRange) {
  expectError(inOption("9223372036854775808"), 2, 18,
              "integer literal too large", "9223372036854775807");
  expectError(inOption(std::string(5000, '9')), 2, 18,
              "integer literal too large");
  expectError("kernel k(q: f32[99999999999999999999])", 1, 17,
              "integer literal too large");
  expectError(inOption("1e999"), 2, 18, "floating-point literal out of range");
  expectError(inOption("x * 1.8e308"), 2, 22,
              "floating-point literal out of range");
  expectError(inOption(std::string(400, '9') + ".0"), 2, 18,
              "floating-point literal out of range");
}

//===----------------------------------------------------------------------===//
// Diagnostics
//===----------------------------------------------------------------------===//

TEST(DiagnosticsTest, PrintsAndRecords) {
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy("kernel k(q[\nline two\n", "t.attn"),
      llvm::SMLoc());
  const char *start =
      sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID())->getBufferStart();
  std::string text;
  llvm::raw_string_ostream os(text);
  DiagnosticEngine diags(sourceMgr, &os);
  EXPECT_EQ(&diags.sourceMgr(), &sourceMgr);

  diags.note(llvm::SMLoc::getFromPointer(start + 8), "a note");
  diags.warning(llvm::SMLoc::getFromPointer(start + 12), "a warning",
                "warning hint");
  EXPECT_FALSE(diags.hadError());
  diags.error(llvm::SMLoc::getFromPointer(start + 10), "an error", "the hint");
  diags.error(llvm::SMLoc(), "no location");
  EXPECT_TRUE(diags.hadError());

  const std::vector<Diagnostic> &all = diags.diagnostics();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].severity, Severity::Note);
  EXPECT_EQ(all[0].col, 9u);
  EXPECT_EQ(all[1].severity, Severity::Warning);
  EXPECT_EQ(all[1].line, 2u);
  EXPECT_EQ(all[1].col, 1u);
  EXPECT_EQ(all[1].hint, "warning hint");
  EXPECT_EQ(all[2].severity, Severity::Error);
  EXPECT_EQ(all[2].file, "t.attn");
  EXPECT_EQ(all[2].line, 1u);
  EXPECT_EQ(all[2].col, 11u);
  EXPECT_EQ(all[2].message, "an error");
  EXPECT_EQ(all[2].hint, "the hint");
  EXPECT_EQ(all[3].file, "");
  EXPECT_EQ(all[3].line, 0u);

  EXPECT_NE(text.find("t.attn:1:9: note: a note\n"), std::string::npos);
  EXPECT_NE(text.find("t.attn:2:1: warning: a warning\n"), std::string::npos);
  EXPECT_NE(text.find("t.attn:1:11: error: an error\nkernel k(q[\n"
                      "          ^\n  hint: the hint\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("error: no location\n"), std::string::npos);
}

} // namespace
