//===- SpecRunner.h - Compile specs and run them in tests -------*- C++ -*-===//
//
// Shared by the execution tests: compile a spec for a CPU path and run it on
// named host tensors.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TEST_UNIT_SPECRUNNER_H
#define ATTNC_TEST_UNIT_SPECRUNNER_H

#include "TensorTestUtils.h"

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Transforms/DeriveBackward.h"
#include "attnc/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <map>

namespace attnc::testing {

/// Views of the named inputs in parameter order (null: omitted), for
/// kernels that take views.
inline std::vector<const TensorView *>
viewsOf(const KernelSignature &signature,
        std::map<std::string, HostTensor> &inputs,
        std::vector<TensorView> &storage) {
  storage.assign(signature.params.size(), TensorView());
  std::vector<const TensorView *> views;
  for (size_t p = 0; p < signature.params.size(); ++p) {
    auto it = inputs.find(signature.params[p].name);
    if (it == inputs.end()) {
      views.push_back(nullptr);
      continue;
    }
    storage[p] = it->second.view();
    views.push_back(&storage[p]);
  }
  return views;
}

/// The module of `spec` with every kernel's backward added
/// (attn-derive-backward: `<kernel>_backward`) and, with `trainingForward`,
/// the forward kernels returning what training saves (addTrainingResults:
/// lse, topk_blocks); null, with `error`, when a step fails.
inline mlir::OwningOpRef<mlir::ModuleOp>
compileWithBackward(const std::string &spec, llvm::SourceMgr &sourceMgr,
                    mlir::MLIRContext &context, std::string &error,
                    bool trainingForward = false) {
  unsigned buffer = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(spec, "test.attn"), llvm::SMLoc());
  DiagnosticEngine diags(sourceMgr, /*os=*/nullptr);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileSpecToMLIR(buffer, context, diags);
  if (!module) {
    error = "the spec does not compile";
    return nullptr;
  }
  mlir::PassManager pm(&context);
  pm.addPass(createDeriveBackward());
  if (failed(pm.run(*module))) {
    error = "attn-derive-backward failed";
    return nullptr;
  }
  if (trainingForward)
    for (attn::KernelOp kernel :
         llvm::to_vector(module->getOps<attn::KernelOp>()))
      if (!kernel.getSymName().ends_with("_backward") &&
          failed(addTrainingResults(kernel))) {
        error = "addTrainingResults failed";
        return nullptr;
      }
  return module;
}

/// Compiles a spec and runs it on named inputs.
class SpecRunner {
public:
  explicit SpecRunner(const std::string &spec,
                      const CpuOptions &options = {CpuPath::Reference}) {
    unsigned buffer = sourceMgr.AddNewSourceBuffer(
        llvm::MemoryBuffer::getMemBufferCopy(spec, "test.attn"), llvm::SMLoc());
    DiagnosticEngine diags(sourceMgr, /*os=*/nullptr);
    module = compileSpecToMLIR(buffer, context, diags);
    if (!module) {
      for (const Diagnostic &diag : diags.diagnostics())
        compileError += std::to_string(diag.line) + ":" +
                        std::to_string(diag.col) + ": " + diag.message + "\n";
      return;
    }
    std::string error;
    kernel = CpuKernel::compile(*module, "", options, error);
    compileError = error;
  }

  bool ok() const { return kernel != nullptr; }

  /// Runs with `inputs` by parameter name (absent names are omitted
  /// optional inputs); returns the outputs, or an error message.
  bool run(std::map<std::string, HostTensor> &inputs,
           std::vector<HostTensor> &outputs, std::string &error) {
    std::vector<TensorView> storage;
    return kernel->run(viewsOf(kernel->signature(), inputs, storage), outputs,
                       error);
  }

  llvm::SourceMgr sourceMgr;
  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<CpuKernel> kernel;
  std::string compileError;
};

/// Runs both kernels on the same inputs and compares every output with the
/// tolerance of its dtype.
inline void expectSameOutputs(SpecRunner &reference, SpecRunner &candidate,
                              std::map<std::string, HostTensor> &inputs,
                              const std::string &what) {
  std::vector<HostTensor> expected, actual;
  std::string error;
  ASSERT_TRUE(reference.run(inputs, expected, error)) << what << ": " << error;
  ASSERT_TRUE(candidate.run(inputs, actual, error)) << what << ": " << error;
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t index = 0; index < actual.size(); ++index)
    expectClose(values(actual[index]), values(expected[index]),
                toleranceFor(actual[index].type()),
                what + ", output " + std::to_string(index));
}

/// Runs the reference and the emulated GPU kernel on the same inputs and
/// compares every output within the bf16 tolerance (2e-2).
inline void expectEmulatorMatches(SpecRunner &reference,
                                  EmulatedGpuKernel &kernel,
                                  std::map<std::string, HostTensor> &inputs,
                                  const std::string &what,
                                  Tolerance tolerance = {2e-2, 2e-2}) {
  std::vector<HostTensor> expected, actual;
  std::string error;
  ASSERT_TRUE(reference.run(inputs, expected, error)) << what << ": " << error;
  std::vector<TensorView> storage;
  ASSERT_TRUE(kernel.run(viewsOf(kernel.image().signature, inputs, storage),
                         actual, error))
      << what << ": " << error;
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t r = 0; r < actual.size(); ++r)
    expectClose(values(actual[r]), values(expected[r]), tolerance,
                what + ", output " + std::to_string(r));
}

/// Runs the emulated kernel on `inputs`, expecting it to fail with a
/// message that contains each of `parts`; returns the message.
inline std::string expectEmulatorFails(
    EmulatedGpuKernel &kernel, std::map<std::string, HostTensor> &inputs,
    const std::vector<std::string> &parts, const std::string &what) {
  std::vector<HostTensor> actual;
  std::vector<TensorView> storage;
  std::string error;
  EXPECT_FALSE(kernel.run(viewsOf(kernel.image().signature, inputs, storage),
                          actual, error))
      << what;
  for (const std::string &part : parts)
    EXPECT_NE(error.find(part), std::string::npos) << what << ": " << error;
  return error;
}

} // namespace attnc::testing

#endif // ATTNC_TEST_UNIT_SPECRUNNER_H
