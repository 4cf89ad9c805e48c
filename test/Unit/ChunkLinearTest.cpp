//===- ChunkLinearTest.cpp - attn-tile-linear against the reference -------===//
//
// The chunkwise form must equal the recurrent definition for every gate
// kind, any T (1, primes, non-multiples of the chunk), with and without an
// initial state, GQA, layouts, packed varlen with empty sequences, the
// non-causal form, and strong decay (cumulative log gates far below -100
// inside a chunk). Both paths accumulate in f32 in different orders:
// atol 2e-5 + rtol 2e-4 (SpecRunner.h tolerances).
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

using namespace attnc;
using namespace attnc::testing;

namespace {

struct LinearSpec {
  const char *name;
  std::string gate;       // empty: no gate
  double gateLow = -1.0;  // gates are drawn in [gateLow, 0]
  const char *extra = ""; // other options
};

std::string denseSpec(const LinearSpec &spec, int64_t chunk) {
  return std::string(R"(
kernel lin(q: f32[B, T, H, 16], k: f32[B, T, Hk, 16], v: f32[B, T, Hk, 8],
           a: f32[B, H, T], g: f32[B, T, H, 16], h0: f32[B, H, 16, 8]?)
    -> (o: f32[B, T, H, 8], hT: f32[B, H, 16, 8]) {
  o, hT = linear(q, k, v, layout = bthd, initial = h0) { chunk = )") +
         std::to_string(chunk) + "; scale = 0.5; " +
         (spec.gate.empty() ? "" : "gate = " + spec.gate + "; ") + spec.extra +
         " }\n}";
}

TEST(ChunkLinear, MatchesRecurrenceForEveryGateKind) {
  const LinearSpec specs[] = {
      {"no gate", ""},
      {"constant per head", "log(1 - exp2(-2 - h))"},
      {"per head", "a[b, h, t]"},
      {"per key dim", "g[b, t, h, d]"},
      {"strong decay", "g[b, t, h, d]", -30.0},
      {"relu feature", "a[b, h, t]", -1.0, "feature = relu(x) + 0.1"},
  };
  const int64_t B = 2, H = 4, Hk = 2;
  for (const LinearSpec &spec : specs) {
    for (int64_t chunk : {4, 16, 24, 64}) {
      std::string text = denseSpec(spec, chunk);
      SpecRunner reference(text);
      SpecRunner chunked(text, CpuOptions{CpuPath::Tiled, 64, 64});
      ASSERT_TRUE(reference.ok()) << spec.name << ": " << reference.compileError;
      ASSERT_TRUE(chunked.ok()) << spec.name << ": " << chunked.compileError;
      for (int64_t T : {1, 5, 16, 17, 64, 131}) {
        for (bool withInitial : {false, true}) {
          uint64_t seed = static_cast<uint64_t>(T * 100 + chunk * 2 + withInitial);
          std::mt19937_64 rng(seed);
          std::map<std::string, HostTensor> inputs;
          inputs["q"] = randomTensor(ElementType::F32, {B, T, H, 16}, rng, -1, 1);
          inputs["k"] = randomTensor(ElementType::F32, {B, T, Hk, 16}, rng, -1, 1);
          inputs["v"] = randomTensor(ElementType::F32, {B, T, Hk, 8}, rng, -1, 1);
          inputs["a"] = randomTensor(ElementType::F32, {B, H, T}, rng, spec.gateLow, 0);
          inputs["g"] = randomTensor(ElementType::F32, {B, T, H, 16}, rng, spec.gateLow, 0);
          if (withInitial)
            inputs["h0"] = randomTensor(ElementType::F32, {B, H, 16, 8}, rng, -1, 1);
          expectSameOutputs(reference, chunked, inputs,
                  std::string(spec.name) + ", seed " + std::to_string(seed) +
                      ", T=" + std::to_string(T) + ", chunk " +
                      std::to_string(chunk) + (withInitial ? ", h0" : ""));
        }
      }
    }
  }
}

TEST(ChunkLinear, NonCausalAndVarlen) {
  const std::string nonCausal = R"(
kernel nc(q: f32[B, H, T, 8], k: f32[B, H, T, 8], v: f32[B, H, T, 8], h0: f32[B, H, 8, 8]?)
    -> (o: f32[B, H, T, 8], state: f32[B, H, 8, 8]) {
  o, state = linear(q, k, v, initial = h0) { causal = false; feature = elu(x) + 1; chunk = 8 }
})";
  const std::string varlen = R"(
kernel vg(q: f32[T, H, 8], k: f32[T, H, 8], v: f32[T, H, 4], g: f32[T, H, 8],
          cu: i32[S1], h0: f32[S, H, 8, 4]?) -> (o: f32[T, H, 4], hT: f32[S, H, 8, 4]) {
  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = h0) {
    gate = g[tstart + t, h, d]; chunk = 4
  }
})";
  SpecRunner ncReference(nonCausal), ncChunked(nonCausal, CpuOptions{CpuPath::Tiled, 64, 64});
  SpecRunner vReference(varlen), vChunked(varlen, CpuOptions{CpuPath::Tiled, 64, 64});
  ASSERT_TRUE(ncChunked.ok()) << ncChunked.compileError;
  ASSERT_TRUE(vChunked.ok()) << vChunked.compileError;
  for (uint64_t seed : {1, 2, 3}) {
    std::mt19937_64 rng(seed);
    std::map<std::string, HostTensor> inputs;
    for (const char *name : {"q", "k", "v"})
      inputs[name] = randomTensor(ElementType::F32, {1, 2, 19, 8}, rng, -1, 1);
    if (seed != 1)
      inputs["h0"] = randomTensor(ElementType::F32, {1, 2, 8, 8}, rng, -1, 1);
    expectSameOutputs(ncReference, ncChunked, inputs,
            "non-causal, seed " + std::to_string(seed));

    const int64_t T = 23;
    std::vector<int64_t> offsets = randomOffsets(3, T, rng);
    offsets.insert(offsets.begin() + 1, 0); // an empty first sequence
    std::map<std::string, HostTensor> packed;
    packed["q"] = randomTensor(ElementType::F32, {T, 2, 8}, rng, -1, 1);
    packed["k"] = randomTensor(ElementType::F32, {T, 2, 8}, rng, -1, 1);
    packed["v"] = randomTensor(ElementType::F32, {T, 2, 4}, rng, -1, 1);
    packed["g"] = randomTensor(ElementType::F32, {T, 2, 8}, rng, -2, 0);
    packed["cu"] = offsetsTensor(offsets);
    if (seed != 1)
      packed["h0"] = randomTensor(ElementType::F32, {4, 2, 8, 4}, rng, -1, 1);
    expectSameOutputs(vReference, vChunked, packed, "varlen, seed " + std::to_string(seed));
  }
}

// Head dims the spec leaves open, larger than the chunk (the state tile has
// Dk = 12 rows against chunks of 4), with an optional initial state, given
// and omitted (whose zero sizes must not size the state's buffer).
TEST(ChunkLinear, OpenHeadDimsWithAnInitialState) {
  const std::string spec = R"(
kernel ssd(q: f32[B, H, T, D], k: f32[B, H, T, D], v: f32[B, H, T, E],
           a: f32[B, H, T], h0: f32[B, H, D, E]?) -> (o: f32[B, H, T, E], hT: f32[B, H, D, E]) {
  o, hT = linear(q, k, v, initial = h0) { gate = a[b, h, t]; chunk = 4 }
})";
  SpecRunner reference(spec), chunked(spec, CpuOptions{CpuPath::Tiled, 64, 64});
  ASSERT_TRUE(chunked.ok()) << chunked.compileError;
  for (uint64_t seed : {5, 6}) {
    std::mt19937_64 rng(seed);
    std::map<std::string, HostTensor> inputs;
    for (const char *name : {"q", "k"})
      inputs[name] = randomTensor(ElementType::F32, {1, 2, 11, 12}, rng, -1, 1);
    inputs["v"] = randomTensor(ElementType::F32, {1, 2, 11, 6}, rng, -1, 1);
    inputs["a"] = randomTensor(ElementType::F32, {1, 2, 11}, rng, -1, 0);
    if (seed == 6)
      inputs["h0"] = randomTensor(ElementType::F32, {1, 2, 12, 6}, rng, -1, 1);
    expectSameOutputs(reference, chunked, inputs,
                      "open head dims, seed " + std::to_string(seed));
  }
}

/// GLA with Dk = Dv = 8 and chunks of 4, and seeded inputs for it with
/// gates in [-1, 0].
const char *kSmallGla = R"(
kernel gla(q: f32[B, H, T, 8], k: f32[B, H, T, 8], v: f32[B, H, T, 8], g: f32[B, H, T, 8])
    -> (o: f32[B, H, T, 8]) {
  o = linear(q, k, v) { gate = g[b, h, t, d]; chunk = 4 }
})";

std::map<std::string, HostTensor> smallGlaInputs(int64_t batches, int64_t heads,
                                                 int64_t steps, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F32, {batches, heads, steps, 8},
                                rng, -1, 1);
  inputs["g"] =
      randomTensor(ElementType::F32, {batches, heads, steps, 8}, rng, -1, 0);
  return inputs;
}

TEST(ChunkLinear, BadGatesAreReported) {
  SpecRunner chunked(kSmallGla, CpuOptions{CpuPath::Tiled, 64, 64});
  ASSERT_TRUE(chunked.ok()) << chunked.compileError;
  std::map<std::string, HostTensor> inputs = smallGlaInputs(1, 2, 9, 4);
  inputs["g"].set(((0 * 2 + 1) * 9 + 6) * 8 + 5, 2.0); // h=1, t=6, d=5
  std::vector<HostTensor> outputs;
  std::string error;
  EXPECT_FALSE(chunked.run(inputs, outputs, error));
  EXPECT_NE(error.find("gate value 2 at b=0, h=1, t=6, d=5"),
            std::string::npos)
      << error;
  // A tiny positive gate is printed as itself, not as 0.000000.
  inputs = smallGlaInputs(1, 2, 9, 4);
  inputs["g"].set(((0 * 2 + 1) * 9 + 6) * 8 + 5, 1e-30);
  EXPECT_FALSE(chunked.run(inputs, outputs, error));
  EXPECT_NE(error.find("gate value 1e-30 at b=0, h=1, t=6, d=5"),
            std::string::npos)
      << error;
}

TEST(ChunkLinear, ThreadsReportTheFirstBadGateInGridOrder) {
  // Bad gates in the (b, h) items 2, 3 and 5 of a 2 x 3 grid: whichever
  // threads find them, the error is the one a serial run meets first.
  std::map<std::string, HostTensor> inputs = smallGlaInputs(2, 3, 9, 5);
  auto at = [](int64_t b, int64_t h, int64_t t, int64_t d) {
    return ((b * 3 + h) * 9 + t) * 8 + d;
  };
  inputs["g"].set(at(0, 2, 7, 1), 3.0);
  inputs["g"].set(at(1, 0, 2, 4), 2.0);
  inputs["g"].set(at(1, 2, 0, 0), 1.0);
  for (CpuPath path : {CpuPath::Tiled, CpuPath::Reference}) {
    SpecRunner runner(kSmallGla, CpuOptions{path, 64, 64, /*threads=*/4});
    ASSERT_TRUE(runner.ok()) << runner.compileError;
    for (int repeat = 0; repeat < 20; ++repeat) {
      std::vector<HostTensor> outputs;
      std::string error;
      EXPECT_FALSE(runner.run(inputs, outputs, error));
      EXPECT_NE(error.find("gate value 3 at b=0, h=2, t=7, d=1"),
                std::string::npos)
          << error;
    }
  }
}

} // namespace
