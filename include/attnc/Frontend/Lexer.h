//===- Lexer.h - Tokens of .attn specs --------------------------*- C++ -*-===//
//
// The lexer turns one SourceMgr buffer into tokens on demand. Newlines are
// tokens because they separate statements and options; the parser decides
// where they are insignificant. Comments (`#` or `//` to the end of the line)
// and other white space are skipped.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_FRONTEND_LEXER_H
#define ATTNC_FRONTEND_LEXER_H

#include "attnc/Frontend/Diagnostics.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"

namespace attnc {

enum class TokenKind {
  Eof,
  Newline,
  /// A lexical error; it has already been reported.
  Error,

  Identifier,
  Integer, // 123
  Float,   // 1.5, 1e-3, .5, 2.

  // Keywords.
  KwKernel,
  KwTrue,
  KwFalse,

  // Punctuation.
  LParen,    // (
  RParen,    // )
  LBracket,  // [
  RBracket,  // ]
  LBrace,    // {
  RBrace,    // }
  Comma,     // ,
  Colon,     // :
  Semicolon, // ;
  Question,  // ?
  Arrow,     // ->
  Assign,    // =

  // Operators.
  Plus,      // +
  Minus,     // -
  Star,      // *
  Slash,     // /
  Percent,   // %
  Less,      // <
  LessEq,    // <=
  Greater,   // >
  GreaterEq, // >=
  EqEq,      // ==
  NotEq,     // !=
  AmpAmp,    // &&
  PipePipe,  // ||
  Bang,      // !
};

struct Token {
  TokenKind kind = TokenKind::Eof;
  /// The token's text in the buffer; empty for Eof.
  llvm::StringRef spelling;
  /// The first character; the end of the buffer for Eof.
  llvm::SMLoc loc;

  bool is(TokenKind k) const { return kind == k; }
};

class Lexer {
public:
  /// Lexes buffer `bufferId` of the diagnostics' SourceMgr.
  Lexer(unsigned bufferId, DiagnosticEngine &diags);

  /// Returns the next token, and Eof forever once the buffer is exhausted.
  /// Lexical errors are reported to the DiagnosticEngine and returned as a
  /// TokenKind::Error token covering the offending text.
  Token next();

private:
  Token make(TokenKind kind, const char *start) const;
  Token lexIdentifier(const char *start);
  Token lexNumber(const char *start);
  Token lexError(const char *start, const llvm::Twine &message,
                 const llvm::Twine &hint = "");
  void skipToEndOfLine();

  DiagnosticEngine &diags;
  const char *cur;
  const char *end;
};

} // namespace attnc

#endif // ATTNC_FRONTEND_LEXER_H
