//===- MemoryTest.cpp - Long sequences run in tile-sized memory -----------===//
//
// A 16384-token causal softmax, forward and backward (ALiBi, so that a
// slope gradient is summed too), a 65536-token GLA and the backward of a
// 65536-step SSD kernel (its per-step states would take 256 MiB) on the
// tiled CPU path.
// One f32 score matrix would take 1 GiB (16384^2 * 4 bytes) and 16 GiB
// respectively; the peak resident size of the whole test process must stay
// below 256 MiB. Each TEST runs in its own process under CTest, so the peak
// belongs to that test alone. Timing is not asserted (see bench/).
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

#include "attnc/Execution/Compiler.h"

#include <sys/resource.h>

using namespace attnc;
using namespace attnc::testing;

namespace {

constexpr int64_t kLimitMiB = 256;

int64_t peakResidentMiB() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024; // kilobytes on Linux
}

void runAndCheckPeak(const std::string &spec,
                     std::map<std::string, HostTensor> &inputs,
                     double scoreMatrixMiB) {
  SpecRunner runner(spec, CpuOptions{CpuPath::Tiled, 64, 64});
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::vector<HostTensor> outputs;
  std::string error;
  ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
  for (const HostTensor &output : outputs)
    for (int64_t index = 0; index < output.numElements(); ++index)
      ASSERT_TRUE(std::isfinite(output.get(index))) << "element " << index;
  int64_t peak = peakResidentMiB();
  std::printf("peak resident size %lld MiB (one score matrix: %.0f MiB, "
              "limit %lld MiB)\n",
              static_cast<long long>(peak), scoreMatrixMiB,
              static_cast<long long>(kLimitMiB));
  EXPECT_LT(peak, kLimitMiB);
}

TEST(Memory, CausalSoftmax16K) {
  const int64_t N = 16384;
  std::mt19937_64 rng(1);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F32, {1, 1, N, 16}, rng, -1, 1);
  runAndCheckPeak(R"(
kernel causal(q: f32[B, H, N, 16], k: f32[B, H, N, 16], v: f32[B, H, N, 16])
    -> (o: f32[B, H, N, 16], lse: f32[B, H, N]) {
  o, lse = softmax(q, k, v) { mask = causal }
})",
                  inputs, N * N * 4.0 / (1 << 20));
}

/// The tiled CPU kernel of `part` of the spec's kernel.
std::unique_ptr<CpuKernel> compilePart(mlir::MLIRContext &context,
                                       const std::string &spec,
                                       KernelPart part) {
  CompileRequest request;
  request.spec = spec;
  request.target = "cpu";
  request.options = "block-q=64 block-k=64";
  request.part = part;
  CompiledKernel compiled;
  std::string error;
  EXPECT_EQ(compileSpec(context, request, compiled, error),
            CompileFailure::None)
      << error;
  return std::move(compiled.cpu);
}

// Both shapes of the backward program: one instance per query block (no
// float inputs) and one per sequence (ALiBi's learnable slope, whose
// gradient is a scatter-add into a copy per instance).
TEST(Memory, CausalSoftmaxBackward16K) {
  const int64_t N = 16384;
  const std::string specs[] = {R"(
kernel causal(q: f32[B, H, N, 16], k: f32[B, H, N, 16], v: f32[B, H, N, 16])
    -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { mask = causal }
})",
                               R"(
kernel alibi(q: f32[B, H, N, 16], k: f32[B, H, N, 16], v: f32[B, H, N, 16],
             slope: f32[H]) -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { score = s - slope[h] * (i - j); mask = causal }
})"};
  for (const std::string &spec : specs) {
    bool slopes = spec.find("slope") != std::string::npos;
    mlir::MLIRContext context;
    std::unique_ptr<CpuKernel> forward =
        compilePart(context, spec, KernelPart::TrainingForward);
    std::unique_ptr<CpuKernel> backward =
        compilePart(context, spec, KernelPart::Backward);
    ASSERT_TRUE(forward && backward);
    std::mt19937_64 rng(3);
    std::map<std::string, HostTensor> inputs;
    for (const char *name : {"q", "k", "v"})
      inputs[name] = randomTensor(ElementType::F32, {1, 1, N, 16}, rng, -1, 1);
    if (slopes)
      inputs["slope"] = randomTensor(ElementType::F32, {1}, rng, 0, 0.01);
    std::vector<TensorView> storage;
    std::vector<HostTensor> outputs, gradients;
    std::string error;
    ASSERT_TRUE(forward->run(viewsOf(forward->signature(), inputs, storage),
                             outputs, error))
        << error;
    inputs["o"] = outputs[0];
    inputs["lse"] = outputs[1];
    inputs["d_o"] = randomTensor(ElementType::F32, {1, 1, N, 16}, rng, -1, 1);
    ASSERT_TRUE(backward->run(viewsOf(backward->signature(), inputs, storage),
                              gradients, error))
        << error;
    ASSERT_EQ(gradients.size(), slopes ? 4u : 3u);
    for (const HostTensor &gradient : gradients)
      for (int64_t index = 0; index < gradient.numElements(); ++index)
        ASSERT_TRUE(std::isfinite(gradient.get(index))) << "element " << index;
  }
  int64_t peak = peakResidentMiB();
  std::printf("peak resident size %lld MiB (one score matrix: %.0f MiB, "
              "limit %lld MiB)\n",
              static_cast<long long>(peak), N * N * 4.0 / (1 << 20),
              static_cast<long long>(kLimitMiB));
  EXPECT_LT(peak, kLimitMiB);
}

TEST(Memory, Gla64K) {
  const int64_t T = 65536;
  std::mt19937_64 rng(2);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F32, {1, T, 1, 16}, rng, -1, 1);
  inputs["g"] = randomTensor(ElementType::F32, {1, T, 1, 16}, rng, -1, 0);
  runAndCheckPeak(R"(
kernel gla(q: f32[B, T, H, 16], k: f32[B, T, H, 16], v: f32[B, T, H, 16],
           g: f32[B, T, H, 16]) -> (o: f32[B, T, H, 16], hT: f32[B, H, 16, 16]) {
  o, hT = linear(q, k, v, layout = bthd) { gate = g[b, t, h, d]; chunk = 64 }
})",
                  inputs, T * T * 4.0 / (1 << 20));
}

// The chunkwise linear backward at 64K steps (Mamba2/SSD gates and
// an initial state): the states at every step, which the reference's
// backward through time keeps, would take (T + 1) x 32 x 32 floats =
// 256 MiB; the chunks' start states take 1025 of them (4 MiB).
TEST(Memory, SsdBackward64K) {
  const int64_t T = 65536;
  mlir::MLIRContext context;
  std::unique_ptr<CpuKernel> backward = compilePart(context, R"(
kernel ssd(q: f32[B, T, H, 32], k: f32[B, T, H, 32], v: f32[B, T, H, 32],
           a: f32[B, T, H], h0: f32[B, H, 32, 32]) -> (o: f32[B, T, H, 32]) {
  o = linear(q, k, v, layout = bthd, initial = h0) { gate = a[b, t, h]; chunk = 64 }
})",
                                                    KernelPart::Backward);
  ASSERT_TRUE(backward);
  std::mt19937_64 rng(4);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v", "d_o"})
    inputs[name] = randomTensor(ElementType::F32, {1, T, 1, 32}, rng, -1, 1);
  inputs["a"] = randomTensor(ElementType::F32, {1, T, 1}, rng, -1, 0);
  inputs["h0"] = randomTensor(ElementType::F32, {1, 1, 32, 32}, rng, -1, 1);
  std::vector<TensorView> storage;
  std::vector<HostTensor> gradients;
  std::string error;
  ASSERT_TRUE(backward->run(viewsOf(backward->signature(), inputs, storage),
                            gradients, error))
      << error;
  ASSERT_EQ(gradients.size(), 5u); // d_q, d_k, d_v, d_h0, d_a
  for (const HostTensor &gradient : gradients)
    for (int64_t index = 0; index < gradient.numElements(); ++index)
      ASSERT_TRUE(std::isfinite(gradient.get(index))) << "element " << index;
  int64_t peak = peakResidentMiB();
  std::printf("peak resident size %lld MiB (the states of every step: %.0f "
              "MiB, limit %lld MiB)\n",
              static_cast<long long>(peak), (T + 1) * 32 * 32 * 4.0 / (1 << 20),
              static_cast<long long>(kLimitMiB));
  EXPECT_LT(peak, kLimitMiB);
}

} // namespace
