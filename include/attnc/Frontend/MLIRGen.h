//===- MLIRGen.h - .attn AST to the attn dialect ----------------*- C++ -*-===//
//
// Semantic analysis of a parsed spec and its translation into the attn
// dialect. Every error is reported through the DiagnosticEngine with the
// source location, including the verifier's complaints about the generated IR
// (whose locations point back into the spec).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_FRONTEND_MLIRGEN_H
#define ATTNC_FRONTEND_MLIRGEN_H

#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Diagnostics.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace attnc {

/// Builds a module holding one attn.kernel per kernel of `module` and
/// verifies it. Returns null after reporting errors.
mlir::OwningOpRef<mlir::ModuleOp> generateMLIR(const ast::Module &module,
                                               mlir::MLIRContext &context,
                                               DiagnosticEngine &diags);

/// Parses and translates the spec in `bufferId` of the diagnostics'
/// SourceMgr; null after reporting errors.
mlir::OwningOpRef<mlir::ModuleOp> compileSpecToMLIR(unsigned bufferId,
                                                    mlir::MLIRContext &context,
                                                    DiagnosticEngine &diags);

/// Loads the dialects that specs are translated into.
void loadSpecDialects(mlir::MLIRContext &context);

} // namespace attnc

#endif // ATTNC_FRONTEND_MLIRGEN_H
