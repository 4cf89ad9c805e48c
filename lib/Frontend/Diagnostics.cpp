//===- Diagnostics.cpp - Error reporting for .attn specs ------------------===//

#include "attnc/Frontend/Diagnostics.h"

#include "llvm/Support/ErrorHandling.h"

#include <tuple>

using namespace attnc;

DiagnosticEngine::DiagnosticEngine(llvm::SourceMgr &sourceMgr,
                                   llvm::raw_ostream *os)
    : srcMgr(sourceMgr), os(os) {}

void DiagnosticEngine::error(llvm::SMLoc loc, const llvm::Twine &message,
                             const llvm::Twine &hint) {
  report(Severity::Error, loc, message, hint);
}

void DiagnosticEngine::warning(llvm::SMLoc loc, const llvm::Twine &message,
                               const llvm::Twine &hint) {
  report(Severity::Warning, loc, message, hint);
}

void DiagnosticEngine::note(llvm::SMLoc loc, const llvm::Twine &message) {
  report(Severity::Note, loc, message, "");
}

static llvm::SourceMgr::DiagKind toDiagKind(Severity severity) {
  switch (severity) {
  case Severity::Error:
    return llvm::SourceMgr::DK_Error;
  case Severity::Warning:
    return llvm::SourceMgr::DK_Warning;
  case Severity::Note:
    return llvm::SourceMgr::DK_Note;
  }
  llvm_unreachable("unknown severity");
}

void DiagnosticEngine::report(Severity severity, llvm::SMLoc loc,
                              const llvm::Twine &message,
                              const llvm::Twine &hint) {
  Diagnostic diag;
  diag.severity = severity;
  diag.message = message.str();
  diag.hint = hint.str();
  if (unsigned bufferId =
          loc.isValid() ? srcMgr.FindBufferContainingLoc(loc) : 0) {
    diag.file = srcMgr.getMemoryBuffer(bufferId)->getBufferIdentifier().str();
    std::tie(diag.line, diag.col) = srcMgr.getLineAndColumn(loc, bufferId);
  }

  if (os) {
    srcMgr.PrintMessage(*os, loc, toDiagKind(severity), diag.message);
    if (!diag.hint.empty())
      *os << "  hint: " << diag.hint << "\n";
  }

  if (severity == Severity::Error)
    ++numErrors;
  diags.push_back(std::move(diag));
}
