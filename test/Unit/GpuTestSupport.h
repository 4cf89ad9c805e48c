//===- GpuTestSupport.h - Shared pieces of the GPU tests ---------*- C++ -*-===//
//
// Spec text, inputs, compile helpers and the softmax strategies that the
// GPU compile tests (GpuTest.cpp) and the warp-emulator tests
// (GpuEmulation*Test.cpp, Gpu*BackwardTest.cpp) share.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TEST_UNIT_GPUTESTSUPPORT_H
#define ATTNC_TEST_UNIT_GPUTESTSUPPORT_H

#include "SpecRunner.h"

#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

namespace attnc::testing {

/// Runs a CPU kernel on named inputs.
inline bool runCpu(CpuKernel &kernel, std::map<std::string, HostTensor> &inputs,
                   std::vector<HostTensor> &outputs, std::string &error) {
  std::vector<TensorView> storage;
  return kernel.run(viewsOf(kernel.signature(), inputs, storage), outputs,
                    error);
}

/// A backward whose partial copies the last CTA sums in CTA order gives
/// bitwise the same gradients (`actual`) with the CTAs run in reverse.
inline void expectSameInReverseCtaOrder(
    EmulatedGpuKernel &gpu, std::map<std::string, HostTensor> &inputs,
    const std::vector<HostTensor> &actual, const std::string &what) {
  std::vector<HostTensor> reversed;
  std::vector<TensorView> storage;
  std::string error;
  gpu.setReverseCtaOrder(true);
  ASSERT_TRUE(gpu.run(viewsOf(gpu.image().signature, inputs, storage),
                      reversed, error))
      << what << ": " << error;
  gpu.setReverseCtaOrder(false);
  for (size_t r = 0; r < actual.size(); ++r)
    EXPECT_EQ(values(reversed[r]), values(actual[r]))
        << what << ", " << gpu.image().signature.results[r].name
        << " differs with the CTAs in reverse order";
}

inline std::string readFile(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

/// Compiles `spec` for `target`; false with `error` on failure.
inline bool compileSpec(const std::string &spec, const std::string &target,
                 GpuImage &image, std::string &error,
                 GpuPipelineOptions options = {}) {
  SpecRunner runner(spec); // parses and builds the module (CPU reference)
  if (!runner.module) {
    error = runner.compileError;
    return false;
  }
  options.chip = target;
  return compileToPtx(*runner.module, "", options, image, error);
}

/// The message with which compiling `spec` for `target` is refused.
inline std::string refusalOf(const std::string &spec, const std::string &target,
                      const GpuPipelineOptions &options) {
  GpuImage image;
  std::string error;
  EXPECT_FALSE(compileSpec(spec, target, image, error, options));
  return error;
}

/// Inputs of packed-sequence ([T, H, D]) softmax specs such as
/// varlen_causal.attn: bf16 q of `heads` heads, k and v of `kvHeads` (0:
/// `heads`), head dim `dim`, for the sequences `offsets` delimit, and the
/// offsets.
inline std::map<std::string, HostTensor>
varlenInputs(const std::vector<int64_t> &offsets, int64_t heads, uint64_t seed,
             int64_t kvHeads = 0, int64_t dim = 64) {
  std::mt19937_64 rng(seed);
  int64_t total = offsets.back();
  int64_t kv = kvHeads ? kvHeads : heads;
  std::map<std::string, HostTensor> inputs;
  inputs["q"] =
      randomTensor(ElementType::BF16, {total, heads, dim}, rng, -2, 2);
  inputs["k"] = randomTensor(ElementType::BF16, {total, kv, dim}, rng, -2, 2);
  inputs["v"] = randomTensor(ElementType::BF16, {total, kv, dim}, rng, -1, 1);
  inputs["cu"] = offsetsTensor(offsets);
  return inputs;
}

inline std::string denseSpec(int d, const std::string &body,
                      const std::string &extra = "",
                      const std::string &t = "bf16") {
  std::string dim = std::to_string(d);
  return "kernel k(q: " + t + "[B, Hq, N, " + dim + "], k: " + t +
         "[B, Hk, M, " + dim + "], v: " + t + "[B, Hk, M, " + dim + "]" +
         extra + ") -> (o: " + t + "[B, Hq, N, " + dim +
         "], lse: f32[B, Hq, N]) {\n  o, lse = softmax(q, k, v) {" + body +
         "}\n}\n";
}

/// Inputs of the dense-layout cases: [B, H, N, D] q/k/v with GQA (4 query
/// heads, 2 kv heads) and slopes when the spec reads them.
inline std::map<std::string, HostTensor> gqaInputs(const std::string &spec, int64_t b,
                                            int64_t n, int64_t m, int d,
                                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::BF16, {b, 4, n, d}, rng, -2, 2);
  inputs["k"] = randomTensor(ElementType::BF16, {b, 2, m, d}, rng, -2, 2);
  inputs["v"] = randomTensor(ElementType::BF16, {b, 2, m, d}, rng, -1, 1);
  if (spec.find("slope") != std::string::npos)
    inputs["slope"] = randomTensor(ElementType::F32, {4}, rng, 0, 0.5);
  return inputs;
}

/// One way the emulator runs a compiled kernel: the order in which its
/// fibers take turns and the order of its CTAs.
struct EmulatorSetting {
  std::string name;
  EmulatedGpuKernel::Schedule schedule =
      EmulatedGpuKernel::Schedule::RoundRobin;
  bool reverseCtaOrder = false;
};

/// The softmax strategies the emulator tests run: attn-gpu-tile-softmax
/// with one and two mma row tiles per warp, the kernel built from the tile
/// program (attn-tile-softmax, attn-tile-to-nvgpu), and the wgmma kernel
/// for sm_90a with one and two warpgroups per CTA, also warp-specialised
/// (a producer warpgroup and mbarriers), and key splits. Each strategy's
/// kernel is compiled once and checked under each of its settings.
struct SoftmaxStrategy {
  std::string name;
  GpuPipelineOptions options;
  std::vector<EmulatorSetting> settings = {EmulatorSetting()};

  std::unique_ptr<EmulatedGpuKernel> compile(SpecRunner &reference,
                                             const GpuPipelineOptions &tuned,
                                             std::string &error) const {
    return EmulatedGpuKernel::compile(*reference.module, "", tuned, error);
  }
  std::unique_ptr<EmulatedGpuKernel> compile(SpecRunner &reference,
                                             std::string &error) const {
    return compile(reference, options, error);
  }

  /// expectEmulatorMatches under each setting.
  void expectMatches(SpecRunner &reference, EmulatedGpuKernel &kernel,
                     std::map<std::string, HostTensor> &inputs,
                     const std::string &what) const {
    for (const EmulatorSetting &setting : settings) {
      kernel.setSchedule(setting.schedule);
      kernel.setReverseCtaOrder(setting.reverseCtaOrder);
      expectEmulatorMatches(reference, kernel, inputs, what + setting.name);
    }
  }
};
inline std::vector<SoftmaxStrategy> softmaxStrategies() {
  std::vector<SoftmaxStrategy> strategies(9);
  strategies[0].name = "rows-per-warp 16";
  strategies[1].name = "rows-per-warp 32";
  strategies[1].options.rowsPerWarp = 32;
  strategies[2].name = "from the tile program";
  strategies[2].options.fromTileProgram = true;
  strategies[3].name = "wgmma";
  strategies[3].options.chip = "sm_90a";
  strategies[3].options.mma = "wgmma";
  strategies[4].name = "wgmma, 8 warps";
  strategies[4].options = strategies[3].options;
  strategies[4].options.warps = 8;
  // Also with the producer as late as the mbarriers allow: a consumer that
  // reads a stage it did not wait for sees stale data.
  strategies[5].name = "wgmma, warp-specialised";
  strategies[5].options = strategies[3].options;
  strategies[5].options.warpSpecialize = true;
  strategies[5].settings.push_back(
      {", producer last", EmulatedGpuKernel::Schedule::LowestFirst});
  strategies[6].name = "wgmma, warp-specialised, 8 warps";
  strategies[6].options = strategies[5].options;
  strategies[6].options.warps = 8;
  // Runs of 64 keys on different CTAs, combined by the last to finish:
  // with CTAs in reverse order that is the first split, not the last.
  strategies[7].name = "split keys 64";
  strategies[7].options.splitKeys = 64;
  strategies[7].settings.push_back(
      {", reverse CTA order", EmulatedGpuKernel::Schedule::RoundRobin, true});
  strategies[8].name = "wgmma, warp-specialised, split keys 64";
  strategies[8].options = strategies[5].options;
  strategies[8].options.splitKeys = 64;
  return strategies;
}

} // namespace attnc::testing

#endif // ATTNC_TEST_UNIT_GPUTESTSUPPORT_H
