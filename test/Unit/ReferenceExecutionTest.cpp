//===- ReferenceExecutionTest.cpp - Compiled reference vs the oracle ------===//
//
// Compiles specs through the whole pipeline (parser, MLIRGen, reference
// lowering, LLVM, ExecutionEngine), runs them on seeded random inputs and
// compares with the independent double-precision oracle.
//
// Tolerances (|actual - expected| <= atol + rtol * |expected|):
//   f32 outputs   atol 2e-5, rtol 2e-4  (f32 accumulation vs double)
//   f16 outputs   atol 2e-3, rtol 2e-3  (one rounding to f16)
//   bf16 outputs  atol 1e-2, rtol 1e-2  (one rounding to bf16)
//
//===----------------------------------------------------------------------===//

#include "ReferenceOracle.h"
#include "SpecRunner.h"

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Frontend/MLIRGen.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>

using namespace attnc;
using namespace attnc::testing;

namespace {

struct SoftmaxShape {
  int64_t B, Hq, Hk, N, M, Dk, Dv;
};

//===----------------------------------------------------------------------===//
// Softmax family
//===----------------------------------------------------------------------===//

/// Runs a bhnd softmax spec with params q, k, v (+extra) on random data and
/// compares o (and lse when `withLse`) with the oracle problem `problem`
/// filled in from the same inputs.
void checkSoftmax(SpecRunner &runner, const SoftmaxShape &shape,
                  ElementType type, uint64_t seed,
                  oracle::SoftmaxProblem problem, bool withLse,
                  std::map<std::string, HostTensor> extra = {}) {
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(seed);
  std::map<std::string, HostTensor> inputs = std::move(extra);
  inputs["q"] = randomTensor(type, {shape.B, shape.Hq, shape.N, shape.Dk}, rng, -1, 1);
  inputs["k"] = randomTensor(type, {shape.B, shape.Hk, shape.M, shape.Dk}, rng, -1, 1);
  inputs["v"] = randomTensor(type, {shape.B, shape.Hk, shape.M, shape.Dv}, rng, -1, 1);
  problem.B = shape.B;
  problem.Hq = shape.Hq;
  problem.Hk = shape.Hk;
  problem.N = shape.N;
  problem.M = shape.M;
  problem.Dk = shape.Dk;
  problem.Dv = shape.Dv;
  problem.q = values(inputs["q"]);
  problem.k = values(inputs["k"]);
  problem.v = values(inputs["v"]);
  std::vector<HostTensor> outputs;
  std::string error;
  ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
  oracle::SoftmaxResult expected = oracle::referenceSoftmax(problem);
  std::string what = "seed " + std::to_string(seed) + " B=" +
                     std::to_string(shape.B) + " Hq=" + std::to_string(shape.Hq) +
                     " Hk=" + std::to_string(shape.Hk) + " N=" +
                     std::to_string(shape.N) + " M=" + std::to_string(shape.M) +
                     " Dk=" + std::to_string(shape.Dk) + " Dv=" +
                     std::to_string(shape.Dv);
  expectClose(values(outputs[0]), expected.o, toleranceFor(type), "o, " + what);
  if (withLse)
    expectClose(values(outputs[1]), expected.lse,
                toleranceFor(ElementType::F32), "lse, " + what);
}

const char *kCausalGqa = R"(
kernel causal(q: f32[B, Hq, N, Dk], k: f32[B, Hk, M, Dk], v: f32[B, Hk, M, Dv])
    -> (o: f32[B, Hq, N, Dv], lse: f32[B, Hq, N]) {
  o, lse = softmax(q, k, v) { mask = causal }
})";

TEST(ReferenceExecution, CausalGqaSweep) {
  SpecRunner runner(kCausalGqa);
  // Lengths 1, primes, N != M in both directions (N > M leaves the first
  // N - M rows without any allowed key: o = 0, lse = -inf).
  const SoftmaxShape shapes[] = {
      {1, 1, 1, 1, 1, 16, 16}, {2, 4, 2, 5, 9, 16, 8},
      {1, 3, 1, 9, 5, 16, 16}, {2, 2, 2, 17, 17, 64, 64},
      {1, 4, 1, 13, 31, 64, 16}, {1, 2, 1, 7, 3, 128, 16}};
  uint64_t seed = 1;
  for (const SoftmaxShape &shape : shapes) {
    oracle::SoftmaxProblem problem;
    problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                         int64_t m) { return j <= i + (m - n); };
    checkSoftmax(runner, shape, ElementType::F32, seed++, problem, true);
  }
}

TEST(ReferenceExecution, EmptyRowsGiveZeroAndMinusInfinity) {
  SpecRunner runner(kCausalGqa);
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(7);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, {1, 1, 6, 16}, rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, {1, 1, 2, 16}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {1, 1, 2, 16}, rng, -1, 1);
  std::vector<HostTensor> outputs;
  std::string error;
  ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
  // Rows 0..3 see no key (j <= i - 4).
  for (int64_t row = 0; row < 4; ++row) {
    EXPECT_TRUE(std::isinf(outputs[1].get(row)) && outputs[1].get(row) < 0);
    for (int64_t d = 0; d < 16; ++d)
      EXPECT_EQ(outputs[0].get(row * 16 + d), 0.0);
  }
  for (int64_t row = 4; row < 6; ++row)
    EXPECT_TRUE(std::isfinite(outputs[1].get(row)));
}

TEST(ReferenceExecution, AlibiScoreWithSlopeTensorBf16) {
  SpecRunner runner(R"(
kernel alibi(q: bf16[B, Hq, N, 64], k: bf16[B, Hk, M, 64], v: bf16[B, Hk, M, 64],
             slope: f32[Hq]) -> (o: bf16[B, Hq, N, 64], lse: f32[B, Hq, N]) {
  o, lse = softmax(q, k, v) { score = s - slope[h] * (i - j); mask = causal }
})");
  for (uint64_t seed : {11, 12}) {
    std::mt19937_64 rng(seed * 100);
    HostTensor slope = randomTensor(ElementType::F32, {4}, rng, 0, 1);
    std::vector<double> slopes = values(slope);
    oracle::SoftmaxProblem problem;
    problem.score = [slopes](double s, int64_t, int64_t h, int64_t i,
                             int64_t j, int64_t, int64_t) {
      return s - static_cast<float>(slopes[h]) * static_cast<double>(i - j);
    };
    problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                         int64_t m) { return j <= i + (m - n); };
    checkSoftmax(runner, {2, 4, 2, 19, 23, 64, 64}, ElementType::BF16, seed,
                 problem, true, {{"slope", std::move(slope)}});
  }
}

TEST(ReferenceExecution, SoftcapWindowF16InFlashLayout) {
  SpecRunner runner(R"(
kernel w(q: f16[B, N, H, 32], k: f16[B, N, H, 32], v: f16[B, N, H, 32]) -> (o: f16[B, N, H, 32]) {
  o = softmax(q, k, v, layout = bnhd) { score = 5 * tanh(s / 5); mask = j <= i && i - j < 4 }
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(21);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F16, {2, 11, 3, 32}, rng, -2, 2);
  oracle::SoftmaxProblem problem;
  problem.B = 2, problem.Hq = problem.Hk = 3, problem.N = problem.M = 11;
  problem.Dk = problem.Dv = 32;
  problem.q = bnhdToBhnd(inputs["q"]);
  problem.k = bnhdToBhnd(inputs["k"]);
  problem.v = bnhdToBhnd(inputs["v"]);
  problem.score = [](double s, int64_t, int64_t, int64_t, int64_t, int64_t,
                     int64_t) { return 5 * std::tanh(s / 5); };
  problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t,
                       int64_t) { return j <= i && i - j < 4; };
  std::vector<HostTensor> outputs;
  std::string error;
  ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
  expectClose(bnhdToBhnd(outputs[0]), oracle::referenceSoftmax(problem).o,
              toleranceFor(ElementType::F16), "seed 21 softcap window bnhd");
}

TEST(ReferenceExecution, SigmoidAndNoneNormalizers) {
  for (auto [name, normalizer] :
       {std::pair{"sigmoid", oracle::Normalizer::Sigmoid},
        {"none", oracle::Normalizer::None}}) {
    SpecRunner runner(std::string(R"(
kernel n(q: f32[B, H, N, 16], k: f32[B, H, M, 16], v: f32[B, H, M, 16]) -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { normalizer = )") + name + R"(; mask = causal; scale = 0.5 }
})");
    oracle::SoftmaxProblem problem;
    problem.normalizer = normalizer;
    problem.scale = 0.5;
    problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                         int64_t m) { return j <= i + (m - n); };
    checkSoftmax(runner, {2, 2, 2, 7, 10, 16, 16}, ElementType::F32, 31,
                 problem, false);
  }
}

TEST(ReferenceExecution, ChunkLocal) {
  SpecRunner runner(R"(
kernel c(q: f32[B, H, N, 16], k: f32[B, H, N, 16], v: f32[B, H, N, 16]) -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { mask = i / 5 == j / 5 && j <= i }
})");
  oracle::SoftmaxProblem problem;
  problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t,
                       int64_t) { return i / 5 == j / 5 && j <= i; };
  for (int64_t n : {1, 5, 13})
    checkSoftmax(runner, {1, 2, 2, n, n, 16, 16}, ElementType::F32, 40 + n,
                 problem, false);
}

TEST(ReferenceExecution, RuntimeBlockMask) {
  SpecRunner runner(R"(
kernel bs(q: f32[B, H, N, 16], k: f32[B, H, M, 16], v: f32[B, H, M, 16],
          blocks: bool[B, H, QB, KB]) -> (o: f32[B, H, N, 16], lse: f32[B, H, N]) {
  o, lse = softmax(q, k, v) { mask = blocks[b, h, i / 4, j / 3] && causal }
})");
  std::mt19937_64 rng(50);
  HostTensor blocks(ElementType::Bool, {2, 2, 3, 4});
  std::bernoulli_distribution coin(0.5);
  for (int64_t index = 0; index < blocks.numElements(); ++index)
    blocks.set(index, coin(rng));
  std::vector<double> present = values(blocks);
  oracle::SoftmaxProblem problem;
  problem.allowed = [present](int64_t b, int64_t h, int64_t i, int64_t j,
                              int64_t n, int64_t m) {
    return present[((b * 2 + h) * 3 + i / 4) * 4 + j / 3] != 0 &&
           j <= i + (m - n);
  };
  checkSoftmax(runner, {2, 2, 2, 10, 11, 16, 16}, ElementType::F32, 51,
               problem, true, {{"blocks", std::move(blocks)}});
}

TEST(ReferenceExecution, BlockIndexLists) {
  SpecRunner runner(R"(
kernel lists(q: f32[B, H, N, 16], k: f32[B, H, M, 16], v: f32[B, H, M, 16],
             counts: i32[B, H, QB], indices: i32[B, H, QB, W]) -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { block_q = 4; block_k = 5; kv_num_blocks = counts; kv_indices = indices }
})");
  std::mt19937_64 rng(60);
  // N = 9 (3 query blocks), M = 14 (3 key blocks); lists may repeat a block.
  HostTensor counts(ElementType::I32, {1, 2, 3});
  HostTensor indices(ElementType::I32, {1, 2, 3, 2});
  std::uniform_int_distribution<int> count(0, 2), block(0, 2);
  for (int64_t index = 0; index < counts.numElements(); ++index)
    counts.set(index, count(rng));
  for (int64_t index = 0; index < indices.numElements(); ++index)
    indices.set(index, block(rng));
  std::vector<double> c = values(counts), idx = values(indices);
  oracle::SoftmaxProblem problem;
  problem.allowed = [c, idx](int64_t b, int64_t h, int64_t i, int64_t j,
                             int64_t, int64_t) {
    int64_t row = (b * 2 + h) * 3 + i / 4;
    for (int64_t e = 0; e < c[row]; ++e)
      if (idx[row * 2 + e] == j / 5)
        return true;
    return false;
  };
  checkSoftmax(runner, {1, 2, 2, 9, 14, 16, 16}, ElementType::F32, 61,
               problem, false,
               {{"counts", std::move(counts)}, {"indices", std::move(indices)}});
}

TEST(ReferenceExecution, TopkBlockSelection) {
  SpecRunner runner(R"(
kernel topk(q: f32[B, Hq, N, 16], k: f32[B, Hk, N, 16], v: f32[B, Hk, N, 16]) -> (o: f32[B, Hq, N, 16]) {
  o = softmax(q, k, v) { select = topk(2, block = 4); mask = causal }
})");
  oracle::SoftmaxProblem problem;
  problem.topkBlocks = 2;
  problem.topkBlockSize = 4;
  problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                       int64_t m) { return j <= i + (m - n); };
  // 18 keys: five blocks, the last one short.
  for (uint64_t seed : {70, 71, 72})
    checkSoftmax(runner, {2, 4, 2, 18, 18, 16, 16}, ElementType::F32, seed,
                 problem, false);
}

TEST(ReferenceExecution, VarlenWithEmptySequences) {
  SpecRunner runner(R"(
kernel varlen(q: f32[T, Hq, 16], k: f32[T, Hk, 16], v: f32[T, Hk, 16], cu: i32[S1])
    -> (o: f32[T, Hq, 16], lse: f32[Hq, T]) {
  o, lse = softmax(q, k, v, layout = thd, cu_seqlens = cu) { mask = causal }
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  for (uint64_t seed : {80, 81, 82}) {
    std::mt19937_64 rng(seed);
    std::vector<int64_t> offsets = randomOffsets(4, 23, rng);
    offsets[2] = offsets[1]; // at least one empty sequence
    std::map<std::string, HostTensor> inputs;
    inputs["q"] = randomTensor(ElementType::F32, {23, 4, 16}, rng, -1, 1);
    inputs["k"] = randomTensor(ElementType::F32, {23, 2, 16}, rng, -1, 1);
    inputs["v"] = randomTensor(ElementType::F32, {23, 2, 16}, rng, -1, 1);
    inputs["cu"] = offsetsTensor(offsets);
    oracle::SoftmaxProblem problem;
    problem.B = 4, problem.Hq = 4, problem.Hk = 2, problem.Dk = problem.Dv = 16;
    problem.cuQ = problem.cuK = offsets;
    problem.q = values(inputs["q"]);
    problem.k = values(inputs["k"]);
    problem.v = values(inputs["v"]);
    problem.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                         int64_t m) { return j <= i + (m - n); };
    std::vector<HostTensor> outputs;
    std::string error;
    ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
    oracle::SoftmaxResult expected = oracle::referenceSoftmax(problem);
    std::string what = "seed " + std::to_string(seed);
    expectClose(values(outputs[0]), expected.o, toleranceFor(ElementType::F32),
                "o, " + what);
    expectClose(values(outputs[1]), expected.lse,
                toleranceFor(ElementType::F32), "lse, " + what);
  }
}

//===----------------------------------------------------------------------===//
// Linear family
//===----------------------------------------------------------------------===//

struct LinearCase {
  const char *name;
  std::string gateExpr; // empty: no gate
  std::function<double(const std::map<std::string, std::vector<double>> &,
                       int64_t b, int64_t h, int64_t t, int64_t d)>
      gate;
};

TEST(ReferenceExecution, LinearEveryGateKindWithStates) {
  // q [B, H, T, Dk] with GQA (H = 4, Hk = 2); gates read a: [B, H, T] and
  // g: [B, H, T, Dk] drawn in (-1, 0].
  const int64_t B = 2, H = 4, Hk = 2, T = 13, Dk = 16, Dv = 8;
  std::vector<LinearCase> cases = {
      {"none", "", nullptr},
      {"constant", "log(1 - exp2(-1 - h))",
       [](auto &, int64_t, int64_t h, int64_t, int64_t) {
         return std::log(1 - std::exp2(-1.0 - h));
       }},
      {"per_head", "a[b, h, t]",
       [](auto &in, int64_t b, int64_t h, int64_t t, int64_t) {
         return in.at("a")[(b * H + h) * T + t];
       }},
      {"per_key_dim", "g[b, h, t, d]",
       [](auto &in, int64_t b, int64_t h, int64_t t, int64_t d) {
         return in.at("g")[((b * H + h) * T + t) * Dk + d];
       }}};
  uint64_t seed = 90;
  for (const LinearCase &linearCase : cases) {
    for (bool withInitial : {false, true}) {
      SpecRunner runner(
          std::string(R"(
kernel lin(q: f32[B, H, T, 16], k: f32[B, Hk, T, 16], v: f32[B, Hk, T, 8],
           a: f32[B, H, T], g: f32[B, H, T, 16], h0: f32[B, H, 16, 8]?)
    -> (o: f32[B, H, T, 8], hT: f32[B, H, 16, 8]) {
  o, hT = linear(q, k, v, initial = h0) { scale = 0.5; )") +
          (linearCase.gateExpr.empty() ? "" : "gate = " + linearCase.gateExpr) +
          R"( }
})");
      ASSERT_TRUE(runner.ok()) << linearCase.name << ": " << runner.compileError;
      std::mt19937_64 rng(seed);
      std::map<std::string, HostTensor> inputs;
      inputs["q"] = randomTensor(ElementType::F32, {B, H, T, Dk}, rng, -1, 1);
      inputs["k"] = randomTensor(ElementType::F32, {B, Hk, T, Dk}, rng, -1, 1);
      inputs["v"] = randomTensor(ElementType::F32, {B, Hk, T, Dv}, rng, -1, 1);
      inputs["a"] = randomTensor(ElementType::F32, {B, H, T}, rng, -1, 0);
      inputs["g"] = randomTensor(ElementType::F32, {B, H, T, Dk}, rng, -1, 0);
      if (withInitial)
        inputs["h0"] = randomTensor(ElementType::F32, {B, H, Dk, Dv}, rng, -1, 1);
      std::map<std::string, std::vector<double>> data;
      for (auto &[name, tensor] : inputs)
        data[name] = values(tensor);
      oracle::LinearProblem problem;
      problem.B = B, problem.Hq = H, problem.Hk = Hk, problem.T = T;
      problem.Dk = Dk, problem.Dv = Dv, problem.scale = 0.5;
      problem.q = data["q"], problem.k = data["k"], problem.v = data["v"];
      if (withInitial)
        problem.initialState = data["h0"];
      if (linearCase.gate)
        problem.gate = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
          return linearCase.gate(data, b, h, t, d);
        };
      std::vector<HostTensor> outputs;
      std::string error;
      ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
      oracle::LinearResult expected = oracle::referenceLinear(problem);
      std::string what = std::string(linearCase.name) + " seed " +
                         std::to_string(seed) +
                         (withInitial ? " with h0" : " without h0");
      expectClose(values(outputs[0]), expected.o, toleranceFor(ElementType::F32),
                  "o, " + what);
      expectClose(values(outputs[1]), expected.finalState,
                  toleranceFor(ElementType::F32), "hT, " + what);
      ++seed;
    }
  }
}

TEST(ReferenceExecution, NonCausalLinearWithFeatureMap) {
  SpecRunner runner(R"(
kernel le(q: bf16[B, H, T, 16], k: bf16[B, H, T, 16], v: bf16[B, H, T, 16]) -> (o: bf16[B, H, T, 16]) {
  o = linear(q, k, v) { feature = elu(x) + 1; causal = false; scale = 0.0625 }
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(100);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::BF16, {1, 2, 9, 16}, rng, -1, 1);
  oracle::LinearProblem problem;
  problem.B = 1, problem.Hq = problem.Hk = 2, problem.T = 9;
  problem.Dk = problem.Dv = 16, problem.scale = 0.0625, problem.causal = false;
  problem.q = values(inputs["q"]), problem.k = values(inputs["k"]);
  problem.v = values(inputs["v"]);
  problem.featureMap = [](double x) { return x > 0 ? x + 1 : std::exp(x); };
  std::vector<HostTensor> outputs;
  std::string error;
  ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
  expectClose(values(outputs[0]), oracle::referenceLinear(problem).o,
              toleranceFor(ElementType::BF16), "seed 100 non-causal elu+1");
}

TEST(ReferenceExecution, VarlenGlaWithEmptySequence) {
  SpecRunner runner(R"(
kernel vg(q: f32[T, H, 8], k: f32[T, H, 8], v: f32[T, H, 4], g: f32[T, H, 8],
          cu: i32[S1], h0: f32[S, H, 8, 4]?) -> (o: f32[T, H, 4], hT: f32[S, H, 8, 4]) {
  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = h0) { gate = g[tstart + t, h, d] }
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  const int64_t T = 17, H = 2;
  for (bool withInitial : {false, true}) {
    std::mt19937_64 rng(110 + withInitial);
    std::vector<int64_t> offsets = randomOffsets(3, T, rng);
    offsets.insert(offsets.begin() + 1, 0); // an empty first sequence
    std::map<std::string, HostTensor> inputs;
    inputs["q"] = randomTensor(ElementType::F32, {T, H, 8}, rng, -1, 1);
    inputs["k"] = randomTensor(ElementType::F32, {T, H, 8}, rng, -1, 1);
    inputs["v"] = randomTensor(ElementType::F32, {T, H, 4}, rng, -1, 1);
    inputs["g"] = randomTensor(ElementType::F32, {T, H, 8}, rng, -1, 0);
    inputs["cu"] = offsetsTensor(offsets);
    if (withInitial)
      inputs["h0"] = randomTensor(ElementType::F32, {4, H, 8, 4}, rng, -1, 1);
    std::vector<double> gates = values(inputs["g"]);
    oracle::LinearProblem problem;
    problem.B = 4, problem.Hq = problem.Hk = H, problem.Dk = 8, problem.Dv = 4;
    problem.cu = offsets;
    problem.q = values(inputs["q"]), problem.k = values(inputs["k"]);
    problem.v = values(inputs["v"]);
    if (withInitial)
      problem.initialState = values(inputs["h0"]);
    problem.gate = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
      return gates[((offsets[b] + t) * H + h) * 8 + d];
    };
    std::vector<HostTensor> outputs;
    std::string error;
    ASSERT_TRUE(runner.run(inputs, outputs, error)) << error;
    oracle::LinearResult expected = oracle::referenceLinear(problem);
    expectClose(values(outputs[0]), expected.o, toleranceFor(ElementType::F32),
                "o, varlen gla seed " + std::to_string(110 + withInitial));
    expectClose(values(outputs[1]), expected.finalState,
                toleranceFor(ElementType::F32),
                "hT, varlen gla seed " + std::to_string(110 + withInitial));
  }
}

//===----------------------------------------------------------------------===//
// Bad input at launch
//===----------------------------------------------------------------------===//

const char *kGla = R"(
kernel gla(q: f32[B, H, T, 8], k: f32[B, H, T, 8], v: f32[B, H, T, 8], g: f32[B, H, T, 8])
    -> (o: f32[B, H, T, 8]) {
  o = linear(q, k, v) { gate = g[b, h, t, d] }
})";

TEST(ReferenceExecution, PositiveOrNonFiniteGateIsReported) {
  SpecRunner runner(kGla);
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {0.5, std::nan(""), -inf, inf}) {
    std::mt19937_64 rng(120);
    std::map<std::string, HostTensor> inputs;
    for (const char *name : {"q", "k", "v"})
      inputs[name] = randomTensor(ElementType::F32, {1, 2, 5, 8}, rng, -1, 1);
    inputs["g"] = randomTensor(ElementType::F32, {1, 2, 5, 8}, rng, -1, 0);
    inputs["g"].set(((0 * 2 + 1) * 5 + 3) * 8 + 2, bad); // h=1, t=3, d=2
    std::vector<HostTensor> outputs;
    std::string error;
    EXPECT_FALSE(runner.run(inputs, outputs, error)) << "gate " << bad;
    EXPECT_NE(error.find("b=0, h=1, t=3, d=2"), std::string::npos) << error;
    EXPECT_NE(error.find("must be finite and <= 0"), std::string::npos) << error;
  }
}

TEST(ReferenceExecution, ShapeMismatchNamesTensorAndShapes) {
  SpecRunner runner(kGla);
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(130);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, {1, 2, 5, 8}, rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, {1, 2, 6, 8}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {1, 2, 5, 8}, rng, -1, 1);
  inputs["g"] = randomTensor(ElementType::F32, {1, 2, 5, 8}, rng, -1, 0);
  std::vector<HostTensor> outputs;
  std::string error;
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "input 'k' must have shape f32[B, H, T, 8], got [1, 2, 6, "
                   "8] (T = 5 from an earlier input, 6 here)");

  inputs["k"] = randomTensor(ElementType::F32, {1, 2, 5, 4}, rng, -1, 1);
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "input 'k' must have shape f32[B, H, T, 8], got [1, 2, 5, "
                   "4] (dim 3 must be 8)");

  inputs["k"] = HostTensor(ElementType::F16, {1, 2, 5, 8});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "input 'k' must have element type f32, got f16");

  inputs.erase("k");
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "input 'k' (f32[B, H, T, 8]) is required but was not given");
}

TEST(ReferenceExecution, BadOffsetsAndHeadRatiosAreReported) {
  SpecRunner runner(R"(
kernel v(q: f32[T, Hq, 8], k: f32[T, Hk, 8], v: f32[T, Hk, 8], cu: i32[S1]) -> (o: f32[T, Hq, 8]) {
  o = softmax(q, k, v, layout = thd, cu_seqlens = cu)
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(140);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, {6, 2, 8}, rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, {6, 2, 8}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {6, 2, 8}, rng, -1, 1);
  inputs["cu"] = offsetsTensor({0, 4, 2, 6});
  std::vector<HostTensor> outputs;
  std::string error;
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "'cu'[2] = 2: offsets must start at 0, be non-decreasing "
                   "and end at the 6 packed tokens");
  inputs["cu"] = offsetsTensor({0, 4, 7});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_NE(error.find("'cu'[2] = 7: "), std::string::npos) << error;
  // Offsets must cover the tokens: rows outside them would be written by
  // no one (they were left uninitialised).
  inputs["cu"] = offsetsTensor({2, 6});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_NE(error.find("'cu'[0] = 2: offsets must start at 0"),
            std::string::npos)
      << error;
  inputs["cu"] = offsetsTensor({0, 3, 5});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_NE(error.find("'cu'[2] = 5: "), std::string::npos) << error;
  inputs["cu"] = offsetsTensor({0});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "'cu' holds no sequence but there are 6 packed tokens: the "
                   "offsets must cover them");

  inputs["cu"] = offsetsTensor({0, 6});
  inputs["k"] = randomTensor(ElementType::F32, {6, 3, 8}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {6, 3, 8}, rng, -1, 1);
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "'q' has 2 heads and 'k' has 3; the query heads must be "
                   "a positive multiple of the kv heads");
}

TEST(ReferenceExecution, OutOfBoundsReadsAreReported) {
  // slope has S entries but is read at h < H; the block mask may be too
  // small for the sequence. Both must be errors, not wild reads.
  SpecRunner runner(R"(
kernel k(q: f32[B, H, N, 8], k: f32[B, H, N, 8], v: f32[B, H, N, 8], slope: f32[S],
         blocks: bool[B, H, QB, KB]) -> (o: f32[B, H, N, 8]) {
  o = softmax(q, k, v) { score = s - slope[h]; mask = blocks[b, h, i / 4, j / 4] }
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(150);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F32, {1, 3, 8, 8}, rng, -1, 1);
  inputs["slope"] = randomTensor(ElementType::F32, {2}, rng, 0, 1);
  // Scores are only computed for allowed keys: make every block present.
  inputs["blocks"] = HostTensor(ElementType::Bool, {1, 3, 2, 2});
  for (int64_t index = 0; index < inputs["blocks"].numElements(); ++index)
    inputs["blocks"].set(index, 1);
  std::vector<HostTensor> outputs;
  std::string error;
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "the spec reads 'slope' out of bounds: index 2 in dim 0 of "
                   "size 2 (check the tensor's shape against the indices the "
                   "spec uses)");

  inputs["slope"] = randomTensor(ElementType::F32, {3}, rng, 0, 1);
  inputs["blocks"] = HostTensor(ElementType::Bool, {1, 3, 1, 2});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_NE(error.find("reads 'blocks' out of bounds: index 1 in dim 2 of "
                       "size 1"),
            std::string::npos)
      << error;

  // Every read is outside in dims 2 and 3: the first such dim is reported.
  SpecRunner both(R"(
kernel k(q: f32[B, H, N, 8], k: f32[B, H, N, 8], v: f32[B, H, N, 8],
         blocks: bool[B, H, QB, KB]) -> (o: f32[B, H, N, 8]) {
  o = softmax(q, k, v) { mask = blocks[b, h, i / 8 + 1, j / 8 + 2] }
})");
  ASSERT_TRUE(both.ok()) << both.compileError;
  inputs.erase("slope");
  inputs["blocks"] = HostTensor(ElementType::Bool, {1, 3, 1, 1});
  EXPECT_FALSE(both.run(inputs, outputs, error));
  EXPECT_NE(error.find("reads 'blocks' out of bounds: index 1 in dim 2 of "
                       "size 1"),
            std::string::npos)
      << error;
}

// Block lists are data from the user: a count outside [0, width] or one of
// the first `count` entries outside [0, ceil(M / block_k)) is an error that
// names the tensor and the position, not a silent clamp or skip.
TEST(ReferenceExecution, BadBlockListsAreReported) {
  SpecRunner runner(R"(
kernel lists(q: f32[B, H, N, 8], k: f32[B, H, N, 8], v: f32[B, H, N, 8],
             counts: i32[B, H, QB], indices: i32[B, H, QB, W]) -> (o: f32[B, H, N, 8]) {
  o = softmax(q, k, v) { block_q = 4; block_k = 4; kv_num_blocks = counts; kv_indices = indices }
})");
  ASSERT_TRUE(runner.ok()) << runner.compileError;
  std::mt19937_64 rng(160);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F32, {1, 1, 8, 8}, rng, -1, 1);
  auto lists = [&](std::vector<int> counts, std::vector<int> indices) {
    inputs["counts"] = HostTensor(ElementType::I32, {1, 1, 2});
    inputs["indices"] = HostTensor(ElementType::I32, {1, 1, 2, 2});
    for (size_t index = 0; index < counts.size(); ++index)
      inputs["counts"].set(index, counts[index]);
    for (size_t index = 0; index < indices.size(); ++index)
      inputs["indices"].set(index, indices[index]);
  };
  std::vector<HostTensor> outputs;
  std::string error;
  // Padding past the count may hold anything.
  lists({1, 2}, {1, -7, 0, 1});
  EXPECT_TRUE(runner.run(inputs, outputs, error)) << error;
  lists({3, 1}, {1, 0, 0, 1});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "'counts'[0, 0, 0] = 3 is not a block count: counts must "
                   "lie in [0, 2], the width of the index lists");
  lists({1, -1}, {1, 0, 0, 1});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_NE(error.find("'counts'[0, 0, 1] = -1 is not a block count"),
            std::string::npos)
      << error;
  lists({2, 1}, {1, 2, 0, 1});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_EQ(error, "'indices'[0, 0, 0, 1] = 2 names no key block: the first "
                   "kv_num_blocks entries of a list must lie in [0, 2), "
                   "ceil(keys / block_k)");
  lists({1, 1}, {0, 0, -1, 0});
  EXPECT_FALSE(runner.run(inputs, outputs, error));
  EXPECT_NE(error.find("'indices'[0, 0, 1, 0] = -1 names no key block"),
            std::string::npos)
      << error;
}

} // namespace
