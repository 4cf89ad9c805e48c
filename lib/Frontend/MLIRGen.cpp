//===- MLIRGen.cpp - .attn AST to the attn dialect ------------------------===//
//
// Resolves names, checks types and options, and emits one attn.kernel per
// spec kernel. Expressions become scalar arith/math ops in the regions of the
// family op; three spellings are recognised as structure: a conjunct
// `i / C == j / C` of the mask (chunk-local softmax), a conjunct
// `blocks[b, h, i / BQ, j / BK]` with a bool tensor (run-time block mask) and
// the option `select = topk(n, block = BK)` (top-k block selection).
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Frontend/Parser.h"

#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mlirgen;
using llvm::SMLoc;
using llvm::StringRef;

OwningOpRef<ModuleOp> MLIRGenImpl::generate(const ast::Module &module) {
  OwningOpRef<ModuleOp> result = ModuleOp::create(builder.getUnknownLoc());
  llvm::StringSet<> kernelNames;
  for (const ast::Kernel &kernel : module.kernels) {
    if (!kernelNames.insert(kernel.name).second) {
      diags.error(kernel.nameLoc, "kernel '" + kernel.name +
                                      "' is defined more than once",
                  "give each kernel of a file its own name");
      return nullptr;
    }
    builder.setInsertionPointToEnd(result->getBody());
    if (failed(generateKernel(kernel)))
      return nullptr;
  }
  if (failed(verifyReportingToSpec(*result)))
    return nullptr;
  return result;
}

//===----------------------------------------------------------------------===//
// Locations and errors
//===----------------------------------------------------------------------===//

Location MLIRGenImpl::loc(SMLoc smloc) {
  llvm::SourceMgr &mgr = diags.sourceMgr();
  unsigned buffer = mgr.FindBufferContainingLoc(smloc);
  if (!buffer)
    return builder.getUnknownLoc();
  auto [line, col] = mgr.getLineAndColumn(smloc, buffer);
  return FileLineColLoc::get(
      builder.getStringAttr(
          mgr.getMemoryBuffer(buffer)->getBufferIdentifier()),
      line, col);
}

LogicalResult MLIRGenImpl::verifyReportingToSpec(ModuleOp module) {
  ScopedDiagnosticHandler handler(
      module.getContext(), [&](mlir::Diagnostic &diag) {
        report(diag);
        return success();
      });
  return verify(module);
}

void MLIRGenImpl::report(mlir::Diagnostic &diag) {
  SMLoc at;
  if (auto fileLoc = diag.getLocation()->findInstanceOf<FileLineColLoc>()) {
    llvm::SourceMgr &mgr = diags.sourceMgr();
    for (unsigned buffer = 1; buffer <= mgr.getNumBuffers(); ++buffer)
      if (mgr.getMemoryBuffer(buffer)->getBufferIdentifier() ==
          fileLoc.getFilename().getValue())
        at = mgr.FindLocForLineAndColumn(buffer, fileLoc.getLine(),
                                         fileLoc.getColumn());
  }
  // Spec authors know the statement, not the op it became: drop the
  // "'attn.softmax' op " prefix and the dump of the generic op.
  std::string message = diag.str();
  if (StringRef(message).starts_with("'attn.")) {
    size_t prefixEnd = message.find("' op ");
    if (prefixEnd != std::string::npos)
      message = message.substr(prefixEnd + 5);
  }
  if (diag.getSeverity() == DiagnosticSeverity::Note) {
    if (!StringRef(message).starts_with("see current operation"))
      diags.note(at, message);
  } else {
    diags.error(at, message);
  }
  for (mlir::Diagnostic &note : diag.getNotes())
    report(note);
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

Type MLIRGenImpl::elementType(ast::DType dtype) {
  switch (dtype) {
  case ast::DType::F32:
    return builder.getF32Type();
  case ast::DType::F16:
    return builder.getF16Type();
  case ast::DType::BF16:
    return builder.getBF16Type();
  case ast::DType::I32:
    return builder.getI32Type();
  case ast::DType::I8:
    return builder.getI8Type();
  case ast::DType::Bool:
    return builder.getI1Type();
  }
  llvm_unreachable("unknown dtype");
}

attn::AttnTensorType MLIRGenImpl::tensorType(const ast::TensorDecl &decl) {
  SmallVector<Attribute> dims;
  for (const ast::Dim &dim : decl.dims)
    dims.push_back(dim.isSymbolic()
                       ? Attribute(builder.getStringAttr(dim.symbol))
                       : Attribute(builder.getI64IntegerAttr(dim.value)));
  return attn::AttnTensorType::get(builder.getContext(),
                                   elementType(decl.dtype),
                                   builder.getArrayAttr(dims));
}

LogicalResult MLIRGenImpl::generateKernel(const ast::Kernel &kernel) {
  params.clear();
  paramDecls.clear();
  llvm::StringSet<> names;
  for (const ast::TensorDecl *decl : declsOf(kernel)) {
    if (!names.insert(decl->name).second)
      return fail(decl->loc, "'" + decl->name + "' is declared twice",
                   "parameters and results share one namespace");
    if (decl->name == "s" || decl->name == "b" || decl->name == "h" ||
        decl->name == "i" || decl->name == "j" || decl->name == "t" ||
        decl->name == "d" || decl->name == "x" || decl->name == "n" ||
        decl->name == "m")
      return fail(decl->loc,
                   "'" + decl->name + "' is an implicit index name",
                   "choose another name for this tensor");
    for (const ast::Dim &dim : decl->dims)
      if (!dim.isSymbolic() && dim.value == 0)
        return fail(dim.loc, "a fixed dimension size must be positive",
                     "a tensor with a dimension of 0 holds nothing; name "
                     "sizes that vary at launch (e.g. N)");
  }
  size_t tensors = kernel.params.size() + kernel.results.size();
  if (tensors > static_cast<size_t>(attn::kMaxKernelTensors))
    return fail(kernel.nameLoc,
                 "kernel '" + kernel.name + "' passes " +
                     std::to_string(tensors) + " tensors, above the limit of " +
                     std::to_string(attn::kMaxKernelTensors),
                 "pack parameters into fewer tensors, e.g. one [H, K] table "
                 "instead of K [H] vectors");
  for (const ast::TensorDecl &result : kernel.results)
    if (result.optional)
      return fail(result.loc, "result '" + result.name +
                                   "' cannot be optional",
                   "only inputs may be marked with '?'");

  SmallVector<Type> paramTypes, resultTypes;
  SmallVector<Attribute> paramNames, resultNames;
  SmallVector<bool> optional;
  for (const ast::TensorDecl &param : kernel.params) {
    paramTypes.push_back(tensorType(param));
    paramNames.push_back(builder.getStringAttr(param.name));
    optional.push_back(param.optional);
  }
  for (const ast::TensorDecl &result : kernel.results) {
    resultTypes.push_back(tensorType(result));
    resultNames.push_back(builder.getStringAttr(result.name));
  }
  if (kernel.results.empty())
    return fail(kernel.nameLoc, "kernel '" + kernel.name +
                                     "' has no results",
                 "declare the outputs after '->', e.g. -> (o: f32[B, H, N, 64])");

  auto kernelOp = attn::KernelOp::create(
      builder, loc(kernel.loc), builder.getStringAttr(kernel.name),
      TypeAttr::get(builder.getFunctionType(paramTypes, resultTypes)),
      builder.getArrayAttr(paramNames), builder.getArrayAttr(resultNames),
      builder.getDenseBoolArrayAttr(optional));
  Block *body = builder.createBlock(&kernelOp.getBody());
  for (auto [decl, type] : llvm::zip(kernel.params, paramTypes)) {
    params[decl.name] = body->addArgument(type, loc(decl.loc));
    paramDecls[decl.name] = &decl;
  }

  if (kernel.body.size() != 1)
    return fail(kernel.body.empty() ? kernel.nameLoc
                                     : kernel.body[1].loc,
                 "a kernel holds exactly one attention statement, found " +
                     std::to_string(kernel.body.size()),
                 "write one statement such as o = softmax(q, k, v) { ... }");
  const ast::Statement &statement = kernel.body.front();

  // Targets name the kernel's results: o, then lse or the final state.
  llvm::StringMap<unsigned> targetIndex;
  for (auto [index, target] : llvm::enumerate(statement.targets)) {
    const std::string &targetName = target.name;
    if (!llvm::any_of(kernel.results, [&](const ast::TensorDecl &result) {
          return result.name == targetName;
        }))
      return fail(target.loc,
                   "'" + target.name + "' is not a result of kernel '" +
                       kernel.name + "'",
                   "assign to the results declared after '->'");
    if (!targetIndex.try_emplace(target.name, index).second)
      return fail(target.loc, "'" + target.name + "' is assigned twice");
  }
  for (const ast::TensorDecl &result : kernel.results)
    if (!targetIndex.count(result.name))
      return fail(result.loc, "result '" + result.name +
                                   "' is never assigned",
                   "list it on the left of the statement, e.g. o, " +
                       result.name + " = softmax(...)");

  SmallVector<Type> familyResultTypes(statement.targets.size());
  for (auto [decl, type] : llvm::zip(kernel.results, resultTypes))
    familyResultTypes[targetIndex[decl.name]] = type;

  FailureOr<Operation *> familyOp =
      generateStatement(statement, familyResultTypes);
  if (failed(familyOp))
    return failure();
  SmallVector<Value> returned;
  for (const ast::TensorDecl &result : kernel.results)
    returned.push_back((*familyOp)->getResult(targetIndex[result.name]));
  attn::ReturnOp::create(builder, loc(kernel.loc), returned);
  builder.setInsertionPointAfter(kernelOp);
  return success();
}

SmallVector<const ast::TensorDecl *>
MLIRGenImpl::declsOf(const ast::Kernel &kernel) {
  SmallVector<const ast::TensorDecl *> decls;
  for (const ast::TensorDecl &decl : kernel.params)
    decls.push_back(&decl);
  for (const ast::TensorDecl &decl : kernel.results)
    decls.push_back(&decl);
  return decls;
}

void attnc::loadSpecDialects(MLIRContext &context) {
  context.loadDialect<attn::AttnDialect, arith::ArithDialect,
                      math::MathDialect>();
}

OwningOpRef<ModuleOp> attnc::generateMLIR(const ast::Module &module,
                                          MLIRContext &context,
                                          attnc::DiagnosticEngine &diags) {
  loadSpecDialects(context);
  return MLIRGenImpl(context, diags).generate(module);
}

OwningOpRef<ModuleOp> attnc::compileSpecToMLIR(unsigned bufferId,
                                               MLIRContext &context,
                                               attnc::DiagnosticEngine &diags) {
  std::optional<ast::Module> module = parseSpec(bufferId, diags);
  if (!module)
    return nullptr;
  return generateMLIR(*module, context, diags);
}
