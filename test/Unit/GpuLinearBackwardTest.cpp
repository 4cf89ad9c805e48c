//===- GpuLinearBackwardTest.cpp - Linear backward kernels on the emulator ===//
//
// The chunkwise backward tile program of linear kernels (attn-tile-linear)
// lowered by attn-tile-to-nvgpu to mma.sync kernels, run by the warp
// emulator, against the reference backward on the CPU (the step-by-step
// recurrence through time, which LinearBackwardTest checks against central
// differences). Each case runs the forward on the CPU for the final state's
// shape, draws dO (and dS_T), and compares every gradient within a
// tolerance of the tensor's largest magnitude: f32 inputs (bf16x3 products
// on the tensor cores) 2e-3, 16-bit inputs 3e-2. Covered: a constant decay
// with GQA and a length past two chunks; a data-dependent gate per head
// under strong decay (-6 per step) with the final state, in f16; a
// learnable per-head decay (a scatter-add: bitwise the same with the CTAs
// in reverse order); elu + 1 non-causal with GQA; GLA's gates per key
// dimension with initial and final states over packed sequences, one
// empty; GLA in bf16 with Dk != Dv and a length below the chunk; GLA in
// bf16 with chunks of 64 (each warp's rows a sub-tile of 16) and a
// partial second chunk; a gate
// per head with GQA and both states at Dk = Dv = 128 (2 x 2 state blocks
// of 64 x 64); elu + 1 non-causal with both states at Dk = Dv = 128.
//
//===----------------------------------------------------------------------===//

#include "GpuTestSupport.h"

#include "attnc/Pipelines/Pipelines.h"

#include <gtest/gtest.h>

#include <random>

using namespace attnc;
using namespace attnc::testing;

namespace {

struct Case {
  const char *name;
  std::string spec;
  /// The forward's inputs.
  std::function<std::map<std::string, HostTensor>(std::mt19937_64 &)> inputs;
  double tolerance;
};

/// q [.., Hq, ..], k and v [.., Hk, ..] of `type` in [-1, 1]: shapes `q`,
/// `k` (and `v`, else k's).
std::map<std::string, HostTensor> qkv(std::mt19937_64 &rng, ElementType type,
                                      std::vector<int64_t> q,
                                      std::vector<int64_t> k,
                                      std::vector<int64_t> v = {}) {
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(type, q, rng, -1, 1);
  inputs["k"] = randomTensor(type, k, rng, -1, 1);
  inputs["v"] = randomTensor(type, v.empty() ? k : v, rng, -1, 1);
  return inputs;
}

std::vector<Case> cases() {
  std::vector<Case> all;
  all.push_back(
      {"constant decay, GQA, T=80, f32",
       "kernel t(q: f32[B, Hq, T, 32], k: f32[B, Hk, T, 32], "
       "v: f32[B, Hk, T, 32]) -> (o: f32[B, Hq, T, 32]) {\n"
       "  o = linear(q, k, v) { gate = log(1 - exp2(-2 - h)); chunk = 64 }\n"
       "}\n",
       [](std::mt19937_64 &rng) {
         return qkv(rng, ElementType::F32, {1, 2, 80, 32}, {1, 1, 80, 32});
       },
       2e-3});
  all.push_back(
      {"gate per head, strong decay, final state, f16, chunks of 16",
       "kernel t(q: f16[B, H, T, 32], k: f16[B, H, T, 32], "
       "v: f16[B, H, T, 32], a: f32[B, H, T]) -> (o: f16[B, H, T, 32], "
       "hT: f32[B, H, 32, 32]) {\n"
       "  o, hT = linear(q, k, v) { gate = a[b, h, t]; chunk = 16 }\n}\n",
       [](std::mt19937_64 &rng) {
         auto inputs =
             qkv(rng, ElementType::F16, {2, 1, 37, 32}, {2, 1, 37, 32});
         inputs["a"] = randomTensor(ElementType::F32, {2, 1, 37}, rng, -6, 0);
         return inputs;
       },
       3e-2});
  all.push_back(
      {"learnable decay per head, T=50, f32",
       "kernel t(q: f32[B, H, T, 32], k: f32[B, H, T, 32], "
       "v: f32[B, H, T, 32], w: f32[H]) -> (o: f32[B, H, T, 32]) {\n"
       "  o = linear(q, k, v) { gate = w[h]; chunk = 16 }\n}\n",
       [](std::mt19937_64 &rng) {
         auto inputs =
             qkv(rng, ElementType::F32, {2, 2, 50, 32}, {2, 2, 50, 32});
         inputs["w"] = randomTensor(ElementType::F32, {2}, rng, -0.5, -0.05);
         return inputs;
       },
       2e-3});
  all.push_back(
      {"elu + 1, non-causal, GQA, f32",
       "kernel t(q: f32[B, Hq, T, 32], k: f32[B, Hk, T, 32], "
       "v: f32[B, Hk, T, 32]) -> (o: f32[B, Hq, T, 32]) {\n"
       "  o = linear(q, k, v) { feature = elu(x) + 1; causal = false }\n}\n",
       [](std::mt19937_64 &rng) {
         return qkv(rng, ElementType::F32, {1, 4, 70, 32}, {1, 2, 70, 32});
       },
       2e-3});
  all.push_back(
      {"GLA, initial and final states, packed with an empty sequence, f32",
       "kernel t(q: f32[T, H, 16], k: f32[T, H, 16], v: f32[T, H, 16], "
       "g: f32[T, H, 16], cu: i32[S1], h0: f32[S, H, 16, 16]?) -> "
       "(o: f32[T, H, 16], hT: f32[S, H, 16, 16]) {\n"
       "  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, "
       "initial = h0) { gate = g[tstart + t, h, d]; chunk = 32 }\n}\n",
       [](std::mt19937_64 &rng) {
         auto inputs = qkv(rng, ElementType::F32, {45, 1, 16}, {45, 1, 16});
         inputs["g"] = randomTensor(ElementType::F32, {45, 1, 16}, rng, -2, 0);
         inputs["cu"] = offsetsTensor({0, 40, 40, 45});
         inputs["h0"] =
             randomTensor(ElementType::F32, {3, 1, 16, 16}, rng, -1, 1);
         return inputs;
       },
       2e-3});
  all.push_back(
      {"GLA, bf16, Dk 16, Dv 32, T=20",
       "kernel t(q: bf16[B, T, H, 16], k: bf16[B, T, H, 16], "
       "v: bf16[B, T, H, 32], g: f32[B, T, H, 16]) -> "
       "(o: bf16[B, T, H, 32]) {\n"
       "  o = linear(q, k, v, layout = bthd) { gate = g[b, t, h, d]; "
       "chunk = 32 }\n}\n",
       [](std::mt19937_64 &rng) {
         auto inputs = qkv(rng, ElementType::BF16, {1, 20, 1, 16},
                           {1, 20, 1, 16}, {1, 20, 1, 32});
         inputs["g"] = randomTensor(ElementType::F32, {1, 20, 1, 16}, rng, -1, 0);
         return inputs;
       },
       3e-2});
  all.push_back({"GLA, bf16, chunks of 64 (four warps, a sub-tile each), T=100",
                 "kernel t(q: bf16[B, T, H, 16], k: bf16[B, T, H, 16], "
                 "v: bf16[B, T, H, 16], g: f32[B, T, H, 16]) -> "
                 "(o: bf16[B, T, H, 16]) {\n"
                 "  o = linear(q, k, v, layout = bthd) { gate = g[b, t, h, d]; "
                 "chunk = 64 }\n}\n",
                 [](std::mt19937_64 &rng) {
                   auto inputs = qkv(rng, ElementType::BF16, {1, 100, 1, 16},
                                     {1, 100, 1, 16});
                   inputs["g"] = randomTensor(ElementType::F32, {1, 100, 1, 16},
                                              rng, -1, 0);
                   return inputs;
                 },
                 3e-2});
  all.push_back(
      {"gate per head, GQA, h0 and hT, Dk = Dv = 128 in state blocks, bf16, "
       "T=40",
       "kernel t(q: bf16[B, Hq, T, 128], k: bf16[B, Hk, T, 128], "
       "v: bf16[B, Hk, T, 128], a: f32[B, Hq, T], h0: f32[B, Hq, 128, 128]) "
       "-> (o: bf16[B, Hq, T, 128], hT: f32[B, Hq, 128, 128]) {\n"
       "  o, hT = linear(q, k, v, initial = h0) { gate = a[b, h, t]; "
       "chunk = 16 }\n}\n",
       [](std::mt19937_64 &rng) {
         auto inputs = qkv(rng, ElementType::BF16, {1, 2, 40, 128},
                           {1, 1, 40, 128}, {1, 1, 40, 128});
         inputs["a"] = randomTensor(ElementType::F32, {1, 2, 40}, rng, -1, 0);
         inputs["h0"] =
             randomTensor(ElementType::F32, {1, 2, 128, 128}, rng, -1, 1);
         return inputs;
       },
       3e-2});
  all.push_back(
      {"elu + 1, non-causal, h0 and hT, Dk = Dv = 128 in state blocks, bf16",
       "kernel t(q: bf16[B, H, T, 128], k: bf16[B, H, T, 128], "
       "v: bf16[B, H, T, 128], h0: f32[B, H, 128, 128]) -> "
       "(o: bf16[B, H, T, 128], hT: f32[B, H, 128, 128]) {\n"
       "  o, hT = linear(q, k, v, initial = h0) { feature = elu(x) + 1; "
       "causal = false; chunk = 16 }\n}\n",
       [](std::mt19937_64 &rng) {
         auto inputs = qkv(rng, ElementType::BF16, {1, 1, 37, 128},
                           {1, 1, 37, 128}, {1, 1, 37, 128});
         inputs["h0"] =
             randomTensor(ElementType::F32, {1, 1, 128, 128}, rng, -1, 1);
         return inputs;
       },
       3e-2});
  return all;
}


/// Each element within `tolerance` of the largest |expected|.
void expectCloseToScale(const std::vector<double> &actual,
                        const std::vector<double> &expected, double tolerance,
                        const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double scale = 1e-30;
  for (double e : expected)
    scale = std::max(scale, std::fabs(e));
  int reported = 0;
  for (size_t index = 0; index < actual.size(); ++index)
    if (!(std::fabs(actual[index] - expected[index]) <= tolerance * scale) &&
        reported++ < 5)
      ADD_FAILURE() << what << ": element " << index << " is " << actual[index]
                    << ", expected " << expected[index] << " (scale " << scale
                    << ")";
}

TEST(GpuLinearBackward, MatchesTheReferenceBackward) {
  const uint64_t seed = 13;
  for (const Case &c : cases()) {
    std::string what =
        std::string(c.name) + " (seed " + std::to_string(seed) + ")";
    llvm::SourceMgr sourceMgr;
    mlir::MLIRContext context;
    std::string error;
    mlir::OwningOpRef<mlir::ModuleOp> module =
        compileWithBackward(c.spec, sourceMgr, context, error);
    ASSERT_TRUE(module) << what << ": " << error;
    auto forward = CpuKernel::compile(*module, "t", {CpuPath::Reference}, error);
    ASSERT_TRUE(forward) << what << ": " << error;
    auto reference = CpuKernel::compile(*module, "t_backward",
                                        {CpuPath::Reference}, error);
    ASSERT_TRUE(reference) << what << ": " << error;
    auto gpu = EmulatedGpuKernel::compile(*module, "t_backward",
                                          GpuPipelineOptions(), error);
    ASSERT_TRUE(gpu) << what << ": " << error;

    std::mt19937_64 rng(seed);
    std::map<std::string, HostTensor> inputs = c.inputs(rng);
    std::vector<HostTensor> outputs;
    ASSERT_TRUE(runCpu(*forward, inputs, outputs, error))
        << what << ": " << error;
    // The upstream gradients: dO and dS_T.
    const std::vector<TensorSpec> &results = forward->signature().results;
    for (size_t index = 0; index < results.size(); ++index)
      inputs["d_" + results[index].name] = randomTensor(
          outputs[index].type(), outputs[index].shape(), rng, -1, 1);

    std::vector<HostTensor> expected, actual;
    ASSERT_TRUE(runCpu(*reference, inputs, expected, error))
        << what << ": " << error;
    std::vector<TensorView> storage;
    ASSERT_TRUE(gpu->run(viewsOf(gpu->image().signature, inputs, storage),
                         actual, error))
        << what << ": " << error;
    ASSERT_EQ(actual.size(), expected.size()) << what;
    for (size_t r = 0; r < actual.size(); ++r) {
      const std::string &name = gpu->image().signature.results[r].name;
      std::vector<double> got = values(actual[r]);
      for (double x : got)
        ASSERT_TRUE(std::isfinite(x)) << what << ", " << name;
      expectCloseToScale(got, values(expected[r]), c.tolerance,
                         what + ", " + name);
    }
    if (!gpu->image().partialResults.empty())
      expectSameInReverseCtaOrder(*gpu, inputs, actual, what);
  }
}

} // namespace
