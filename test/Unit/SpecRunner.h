//===- SpecRunner.h - Compile specs and compare results in tests -*- C++ -*-===//
//
// Shared by the execution tests: compile a spec for a CPU path, run it on
// named host tensors, make seeded random data and compare with tolerances.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TEST_UNIT_SPECRUNNER_H
#define ATTNC_TEST_UNIT_SPECRUNNER_H

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Frontend/MLIRGen.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace attnc::testing {

struct Tolerance {
  double atol, rtol;
};

inline Tolerance toleranceFor(ElementType type) {
  switch (type) {
  case ElementType::F16:
    return {2e-3, 2e-3};
  case ElementType::BF16:
    return {1e-2, 1e-2};
  default:
    return {2e-5, 2e-4};
  }
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
    const KernelSignature &signature = kernel->signature();
    std::vector<TensorView> views;
    views.reserve(signature.params.size());
    std::vector<const TensorView *> inputViews;
    for (const TensorSpec &spec : signature.params) {
      auto it = inputs.find(spec.name);
      if (it == inputs.end()) {
        inputViews.push_back(nullptr);
        continue;
      }
      views.push_back(it->second.view());
      inputViews.push_back(&views.back());
    }
    return kernel->run(inputViews, outputs, error);
  }

  llvm::SourceMgr sourceMgr;
  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<CpuKernel> kernel;
  std::string compileError;
};

inline HostTensor randomTensor(ElementType type, std::vector<int64_t> shape,
                        std::mt19937_64 &rng, double lo, double hi) {
  HostTensor tensor(type, std::move(shape));
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t index = 0; index < tensor.numElements(); ++index)
    tensor.set(index, dist(rng));
  return tensor;
}

inline std::vector<double> values(const HostTensor &tensor) {
  std::vector<double> result(tensor.numElements());
  for (int64_t index = 0; index < tensor.numElements(); ++index)
    result[index] = tensor.get(index);
  return result;
}

/// [B, N, H, D] -> [B, H, N, D].
inline std::vector<double> bnhdToBhnd(const HostTensor &tensor) {
  const std::vector<int64_t> &s = tensor.shape();
  std::vector<double> result(tensor.numElements());
  for (int64_t b = 0; b < s[0]; ++b)
    for (int64_t n = 0; n < s[1]; ++n)
      for (int64_t h = 0; h < s[2]; ++h)
        for (int64_t d = 0; d < s[3]; ++d)
          result[((b * s[2] + h) * s[1] + n) * s[3] + d] =
              tensor.get(((b * s[1] + n) * s[2] + h) * s[3] + d);
  return result;
}

/// Compares element-wise; reports the first few mismatches with the seed.
inline void expectClose(const std::vector<double> &actual,
                 const std::vector<double> &expected, Tolerance tolerance,
                 const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int reported = 0;
  for (size_t index = 0; index < actual.size(); ++index) {
    double a = actual[index], e = expected[index];
    bool bothNegInf = std::isinf(a) && std::isinf(e) && a < 0 && e < 0;
    bool close = bothNegInf || std::fabs(a - e) <= tolerance.atol +
                                                       tolerance.rtol *
                                                           std::fabs(e);
    if (!close && reported++ < 5)
      ADD_FAILURE() << what << ": element " << index << " is " << a
                    << ", expected " << e;
  }
}

inline std::vector<int64_t> randomOffsets(int64_t sequences, int64_t total,
                                   std::mt19937_64 &rng) {
  std::uniform_int_distribution<int64_t> cut(0, total);
  std::vector<int64_t> offsets{0};
  std::vector<int64_t> cuts;
  for (int64_t index = 1; index < sequences; ++index)
    cuts.push_back(cut(rng));
  std::sort(cuts.begin(), cuts.end());
  offsets.insert(offsets.end(), cuts.begin(), cuts.end());
  offsets.push_back(total);
  return offsets;
}

inline HostTensor offsetsTensor(const std::vector<int64_t> &offsets) {
  HostTensor tensor(ElementType::I32, {static_cast<int64_t>(offsets.size())});
  for (size_t index = 0; index < offsets.size(); ++index)
    tensor.set(index, offsets[index]);
  return tensor;
}

} // namespace attnc::testing

#endif // ATTNC_TEST_UNIT_SPECRUNNER_H
