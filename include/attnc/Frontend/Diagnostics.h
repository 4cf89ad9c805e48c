//===- Diagnostics.h - Error reporting for .attn specs ----------*- C++ -*-===//
//
// Diagnostics are recorded (so that tests and tools can inspect them) and,
// optionally, printed through llvm::SourceMgr in the usual
// "file:line:col: error: message" form with the source line and a caret.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_FRONTEND_DIAGNOSTICS_H
#define ATTNC_FRONTEND_DIAGNOSTICS_H

#include "llvm/ADT/Twine.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <vector>

namespace attnc {

enum class Severity { Error, Warning, Note };

struct Diagnostic {
  Severity severity;
  /// The identifier of the buffer holding the location; empty when the
  /// location is unknown.
  std::string file;
  /// 1-based; 0 when the location is unknown.
  unsigned line = 0, col = 0;
  std::string message;
  /// How to fix the problem; may be empty.
  std::string hint;
};

class DiagnosticEngine {
public:
  explicit DiagnosticEngine(llvm::SourceMgr &sourceMgr,
                            llvm::raw_ostream *os = &llvm::errs());

  /// Records the diagnostic and, when printing, writes it through
  /// SourceMgr::PrintMessage followed by an indented "hint: ..." line when the
  /// hint is not empty.
  void error(llvm::SMLoc loc, const llvm::Twine &message,
             const llvm::Twine &hint = "");
  void warning(llvm::SMLoc loc, const llvm::Twine &message,
               const llvm::Twine &hint = "");
  void note(llvm::SMLoc loc, const llvm::Twine &message);

  bool hadError() const { return numErrors != 0; }
  const std::vector<Diagnostic> &diagnostics() const { return diags; }
  llvm::SourceMgr &sourceMgr() { return srcMgr; }

private:
  void report(Severity severity, llvm::SMLoc loc, const llvm::Twine &message,
              const llvm::Twine &hint);

  llvm::SourceMgr &srcMgr;
  llvm::raw_ostream *os;
  std::vector<Diagnostic> diags;
  unsigned numErrors = 0;
};

} // namespace attnc

#endif // ATTNC_FRONTEND_DIAGNOSTICS_H
