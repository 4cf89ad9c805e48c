//===- Lexer.cpp - Tokens of .attn specs ----------------------------------===//

#include "attnc/Frontend/Lexer.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/MemoryBuffer.h"

#include <string>

using namespace attnc;

Lexer::Lexer(unsigned bufferId, DiagnosticEngine &diags) : diags(diags) {
  const llvm::MemoryBuffer *buffer =
      diags.sourceMgr().getMemoryBuffer(bufferId);
  cur = buffer->getBufferStart();
  end = buffer->getBufferEnd();
}

static bool isIdentifierStart(char c) { return llvm::isAlpha(c) || c == '_'; }
static bool isIdentifierChar(char c) { return llvm::isAlnum(c) || c == '_'; }

/// Spells a byte for a message: printable ASCII as is, anything else as \xNN
/// so that control characters and stray UTF-8 bytes stay visible.
static std::string escapeChar(unsigned char c) {
  if (llvm::isPrint(c))
    return std::string(1, static_cast<char>(c));
  std::string escaped = "\\x";
  escaped += llvm::hexdigit(c >> 4, /*LowerCase=*/true);
  escaped += llvm::hexdigit(c & 0xf, /*LowerCase=*/true);
  return escaped;
}

Token Lexer::make(TokenKind kind, const char *start) const {
  return Token{kind, llvm::StringRef(start, cur - start),
               llvm::SMLoc::getFromPointer(start)};
}

Token Lexer::lexError(const char *start, const llvm::Twine &message,
                      const llvm::Twine &hint) {
  diags.error(llvm::SMLoc::getFromPointer(start), message, hint);
  return make(TokenKind::Error, start);
}

void Lexer::skipToEndOfLine() {
  while (cur != end && *cur != '\n')
    ++cur;
}

Token Lexer::next() {
  // Buffers need not be NUL-terminated, and may contain NUL bytes, so every
  // look-ahead is bounds-checked.
  auto peekIs = [&](char c) { return cur != end && *cur == c; };
  auto twoCharToken = [&](char second, TokenKind two, TokenKind one,
                          const char *start) {
    if (!peekIs(second))
      return make(one, start);
    ++cur;
    return make(two, start);
  };

  while (cur != end) {
    const char *start = cur;
    char c = *cur++;
    switch (c) {
    case ' ':
    case '\t':
    case '\r':
    case '\v':
    case '\f':
      continue;
    case '\n':
      return make(TokenKind::Newline, start);
    case '#':
      skipToEndOfLine();
      continue;
    case '/':
      if (peekIs('/')) {
        skipToEndOfLine();
        continue;
      }
      return make(TokenKind::Slash, start);
    case '(':
      return make(TokenKind::LParen, start);
    case ')':
      return make(TokenKind::RParen, start);
    case '[':
      return make(TokenKind::LBracket, start);
    case ']':
      return make(TokenKind::RBracket, start);
    case '{':
      return make(TokenKind::LBrace, start);
    case '}':
      return make(TokenKind::RBrace, start);
    case ',':
      return make(TokenKind::Comma, start);
    case ':':
      return make(TokenKind::Colon, start);
    case ';':
      return make(TokenKind::Semicolon, start);
    case '?':
      return make(TokenKind::Question, start);
    case '+':
      return make(TokenKind::Plus, start);
    case '*':
      return make(TokenKind::Star, start);
    case '%':
      return make(TokenKind::Percent, start);
    case '-':
      return twoCharToken('>', TokenKind::Arrow, TokenKind::Minus, start);
    case '=':
      return twoCharToken('=', TokenKind::EqEq, TokenKind::Assign, start);
    case '!':
      return twoCharToken('=', TokenKind::NotEq, TokenKind::Bang, start);
    case '<':
      return twoCharToken('=', TokenKind::LessEq, TokenKind::Less, start);
    case '>':
      return twoCharToken('=', TokenKind::GreaterEq, TokenKind::Greater, start);
    case '&':
      if (peekIs('&')) {
        ++cur;
        return make(TokenKind::AmpAmp, start);
      }
      return lexError(start, "unexpected character '&'",
                      "logical and is written '&&'");
    case '|':
      if (peekIs('|')) {
        ++cur;
        return make(TokenKind::PipePipe, start);
      }
      return lexError(start, "unexpected character '|'",
                      "logical or is written '||'");
    case '.':
      if (cur != end && llvm::isDigit(*cur))
        return lexNumber(start);
      return lexError(start, "unexpected character '.'",
                      "'.' only appears in numbers such as 0.5 or 2.");
    default:
      break;
    }

    if (llvm::isDigit(c))
      return lexNumber(start);
    if (isIdentifierStart(c))
      return lexIdentifier(start);
    unsigned char byte = static_cast<unsigned char>(c);
    const char *hint = "";
    if (byte >= 0x80)
      hint = "non-ASCII characters are only allowed in comments";
    else if (!llvm::isPrint(byte))
      hint = "control characters are only allowed in comments";
    return lexError(start, "unexpected character '" + escapeChar(byte) + "'",
                    hint);
  }
  return make(TokenKind::Eof, cur);
}

Token Lexer::lexIdentifier(const char *start) {
  while (cur != end && isIdentifierChar(*cur))
    ++cur;
  llvm::StringRef spelling(start, cur - start);
  TokenKind kind = llvm::StringSwitch<TokenKind>(spelling)
                       .Case("kernel", TokenKind::KwKernel)
                       .Case("true", TokenKind::KwTrue)
                       .Case("false", TokenKind::KwFalse)
                       .Default(TokenKind::Identifier);
  return make(kind, start);
}

/// Lexes digits [. digits] [exponent] or . digits [exponent]; `cur` is just
/// past the first character. The value is converted by the parser, which
/// reports literals out of range.
Token Lexer::lexNumber(const char *start) {
  auto skipDigits = [&] {
    while (cur != end && llvm::isDigit(*cur))
      ++cur;
  };

  bool isFloat = *start == '.';
  skipDigits();
  if (!isFloat && cur != end && *cur == '.') {
    isFloat = true;
    ++cur;
    skipDigits();
  }
  if (cur != end && (*cur == 'e' || *cur == 'E')) {
    isFloat = true;
    ++cur;
    if (cur != end && (*cur == '+' || *cur == '-'))
      ++cur;
    if (cur == end || !llvm::isDigit(*cur))
      return lexError(start,
                      "expected digits in the exponent of '" +
                          llvm::StringRef(start, cur - start) + "'",
                      "write an exponent as in 1e-3 or 2.5E+4");
    skipDigits();
  }

  // Reject "2x" as a whole rather than splitting it into "2" and "x", which
  // would give a confusing error later.
  if (cur != end && isIdentifierChar(*cur)) {
    llvm::StringRef number(start, cur - start);
    const char *suffixStart = cur;
    while (cur != end && isIdentifierChar(*cur))
      ++cur;
    diags.error(llvm::SMLoc::getFromPointer(suffixStart),
                "invalid suffix '" +
                    llvm::StringRef(suffixStart, cur - suffixStart) +
                    "' on number '" + number + "'",
                "separate a number from a name with an operator, e.g. 2 * x");
    return make(TokenKind::Error, start);
  }
  return make(isFloat ? TokenKind::Float : TokenKind::Integer, start);
}
