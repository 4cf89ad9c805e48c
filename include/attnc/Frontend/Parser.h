//===- Parser.h - Parser of .attn specs -------------------------*- C++ -*-===//

#ifndef ATTNC_FRONTEND_PARSER_H
#define ATTNC_FRONTEND_PARSER_H

#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Diagnostics.h"

#include <optional>

namespace attnc {

/// Parses the buffer `bufferId` of the diagnostics' SourceMgr. Returns
/// std::nullopt after reporting an error; parsing stops at the first error.
std::optional<ast::Module> parseSpec(unsigned bufferId,
                                     DiagnosticEngine &diags);

} // namespace attnc

#endif // ATTNC_FRONTEND_PARSER_H
