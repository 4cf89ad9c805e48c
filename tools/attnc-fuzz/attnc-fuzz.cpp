//===- attnc-fuzz.cpp - libFuzzer target for the compiler -----------------===//
//
// Feeds arbitrary bytes to the front end and, for specs that pass it, to
// every strategy: the CPU tile programs and the reference, lowered to the
// LLVM dialect, and the GPU strategies through NVPTX to PTX for sm_80 and
// sm_90a. Nothing is JIT-compiled or run. Errors are the expected outcome of
// most inputs; a crash, an abort, a hang or runaway memory is a finding.
// Built by -DATTNC_FUZZ=ON (scripts/fuzz.sh); docs/fuzzing.md.
//
//===----------------------------------------------------------------------===//

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

using namespace mlir;
using namespace attnc;

namespace {

/// Runs `build`'s passes on a copy of `module` holding only kernel `name`.
void lowerCopy(ModuleOp module, llvm::StringRef name,
               llvm::function_ref<void(OpPassManager &)> build) {
  OwningOpRef<ModuleOp> copy = module.clone();
  std::string error;
  if (!keepOnlyKernel(*copy, name, error))
    return;
  PassManager pm(module.getContext());
  build(pm);
  (void)pm.run(*copy);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // A fresh context per input: nothing an input interns outlives it.
  MLIRContext context;
  ScopedDiagnosticHandler silence(&context, [](mlir::Diagnostic &) {
    return success();
  });
  llvm::SourceMgr sourceMgr;
  unsigned buffer = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size),
          "fuzz.attn"),
      llvm::SMLoc());
  attnc::DiagnosticEngine diags(sourceMgr, /*os=*/nullptr);
  OwningOpRef<ModuleOp> module = compileSpecToMLIR(buffer, context, diags);
  // ATTNC_FUZZ_FRONTEND_ONLY=1 stops after verification: thousands of
  // inputs a second instead of about ten (the lowering, NVPTX above all, is
  // what costs).
  static const bool frontendOnly = std::getenv("ATTNC_FUZZ_FRONTEND_ONLY");
  if (!module || frontendOnly)
    return 0;

  std::vector<std::string> names;
  for (attn::KernelOp kernel : module->getOps<attn::KernelOp>())
    names.push_back(kernel.getSymName().str());
  for (const std::string &name : names) {
    for (CpuPath path : {CpuPath::Tiled, CpuPath::Reference})
      lowerCopy(*module, name, [&](OpPassManager &pm) {
        CpuOptions options;
        options.path = path;
        addCpuStrategies(pm, options);
        buildLowerToLLVMPipeline(pm);
      });
    for (const char *chip : {"sm_80", "sm_90a"}) {
      GpuPipelineOptions options;
      options.chip = chip;
      GpuImage image;
      std::string error;
      (void)compileToPtx(*module, name, options, image, error);
    }
  }
  return 0;
}
