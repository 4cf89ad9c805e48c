//===- SoftmaxBackwardTest.cpp - Gradients of softmax specs ---------------===//
//
// The reference backward (attn-derive-backward, then the reference
// lowering of attn.softmax_backward) and the tiled one (attn-tile-softmax's
// backward tile program, blocks of 4 queries x 3 keys so that blocks are
// partial, skipped and many) against central finite differences of the
// double-precision oracle (ReferenceOracle.h, which shares no code with
// the compiler) of the loss
//   L = sum dO * o + sum over finite lse of dlse * lse,
// for every element of q, k, v and of the float tensors the score reads.
// f32 inputs; the oracle differentiates in f64 with steps of 1e-4, so the
// tolerance is the kernel's f32 rounding. Seeds are printed on failure.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOracle.h"
#include "SpecRunner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>

using namespace attnc;
using namespace attnc::testing;

namespace {

using Extras = std::map<std::string, std::vector<double>>;

struct BackwardCase {
  std::string name;
  /// The forward spec; its kernel is `t`, with f32 q, k, v in bhnd, or thd
  /// when `offsets` is set.
  std::string spec;
  int64_t B, Hq, Hk, N, M, D;
  /// Float tensors the score reads, by name, with their shapes.
  std::map<std::string, std::vector<int64_t>> floatInputs = {};
  /// Other inputs (document ids).
  std::map<std::string, HostTensor> otherInputs = {};
  /// Fills the oracle's score and mask, reading float inputs from `extras`
  /// (which the finite differences perturb).
  std::function<void(oracle::SoftmaxProblem &, const Extras &extras)>
      configure = {};
  bool withLse = true;
  /// Packed sequences (thd layout): offsets of queries and keys alike.
  std::vector<int64_t> offsets = {};
};

class BackwardRunner {
public:
  explicit BackwardRunner(const std::string &spec) {
    module = compileWithBackward(spec, sourceMgr, context, error,
                                 /*trainingForward=*/true);
    if (!module)
      return;
    forward = CpuKernel::compile(*module, "t", {CpuPath::Reference}, error);
    if (!forward)
      return;
    backward =
        CpuKernel::compile(*module, "t_backward", {CpuPath::Reference}, error);
    if (!backward)
      return;
    tiled = CpuKernel::compile(*module, "t_backward",
                               CpuOptions{CpuPath::Tiled, 4, 3}, error);
  }

  llvm::SourceMgr sourceMgr;
  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<CpuKernel> forward, backward, tiled;
  std::string error;
};

double loss(const oracle::SoftmaxResult &result, const std::vector<double> &dO,
            const std::vector<double> &dLse) {
  double sum = 0;
  for (size_t index = 0; index < dO.size(); ++index)
    sum += dO[index] * result.o[index];
  for (size_t index = 0; index < dLse.size(); ++index)
    if (std::isfinite(result.lse[index]))
      sum += dLse[index] * result.lse[index];
  return sum;
}

void checkBackward(const BackwardCase &c, uint64_t seed) {
  std::string what = c.name + " (seed " + std::to_string(seed) + ")";
  SCOPED_TRACE(what);
  BackwardRunner runner(c.spec);
  ASSERT_TRUE(runner.forward && runner.backward && runner.tiled)
      << runner.error;
  std::mt19937_64 rng(seed);
  bool packed = !c.offsets.empty();
  int64_t tokensQ = packed ? c.offsets.back() : c.N;
  int64_t tokensK = packed ? c.offsets.back() : c.M;
  auto shapeOf = [&](int64_t heads, int64_t length) {
    return packed ? std::vector<int64_t>{length, heads, c.D}
                  : std::vector<int64_t>{c.B, heads, length, c.D};
  };
  std::map<std::string, HostTensor> inputs = c.otherInputs;
  inputs["q"] =
      randomTensor(ElementType::F32, shapeOf(c.Hq, tokensQ), rng, -1, 1);
  inputs["k"] =
      randomTensor(ElementType::F32, shapeOf(c.Hk, tokensK), rng, -1, 1);
  inputs["v"] =
      randomTensor(ElementType::F32, shapeOf(c.Hk, tokensK), rng, -1, 1);
  for (const auto &[name, shape] : c.floatInputs)
    inputs[name] = randomTensor(ElementType::F32, shape, rng, -1, 1);
  if (packed)
    inputs["cu"] = offsetsTensor(c.offsets);

  std::vector<HostTensor> forwardOutputs;
  std::string error;
  std::vector<TensorView> forwardStorage;
  ASSERT_TRUE(runner.forward->run(
      viewsOf(runner.forward->signature(), inputs, forwardStorage),
      forwardOutputs, error))
      << error;
  // The training forward returns o, lse (softmax) and topk_blocks (top-k);
  // the loss has lse when the spec returns it.
  const std::vector<TensorSpec> &results = runner.forward->signature().results;
  ASSERT_EQ(results.size(), forwardOutputs.size());
  for (size_t index = 0; index < results.size(); ++index)
    inputs[results[index].name] = forwardOutputs[index];
  inputs["d_o"] =
      randomTensor(ElementType::F32, inputs["o"].shape(), rng, -1, 1);
  std::vector<double> dLse;
  if (c.withLse) {
    HostTensor dlse =
        randomTensor(ElementType::F32, inputs["lse"].shape(), rng, -1, 1);
    inputs["d_lse"] = dlse;
    dLse = values(dlse);
  }
  // The oracle's problem from the current values of q, k, v and extras.
  Extras extras;
  for (const auto &[name, shape] : c.floatInputs)
    extras[name] = values(inputs[name]);
  oracle::SoftmaxProblem problem;
  problem.B = packed ? int64_t(c.offsets.size()) - 1 : c.B;
  problem.Hq = c.Hq;
  problem.Hk = c.Hk;
  problem.N = c.N;
  problem.M = c.M;
  problem.Dk = problem.Dv = c.D;
  if (packed)
    problem.cuQ = problem.cuK = c.offsets;
  problem.q = values(inputs["q"]);
  problem.k = values(inputs["k"]);
  problem.v = values(inputs["v"]);
  c.configure(problem, extras);

  std::vector<TensorView> storage;
  std::vector<HostTensor> gradients;
  ASSERT_TRUE(runner.backward->run(
      viewsOf(runner.backward->signature(), inputs, storage), gradients, error))
      << error;
  // The tiled gradients, with 1 and with 3 threads: bitwise the same.
  std::vector<HostTensor> tiled[2];
  for (int threads : {1, 3}) {
    runner.tiled->setThreads(threads);
    std::vector<HostTensor> &out = tiled[threads == 3];
    ASSERT_TRUE(runner.tiled->run(
        viewsOf(runner.tiled->signature(), inputs, storage), out, error))
        << error;
  }
  ASSERT_EQ(tiled[0].size(), gradients.size());
  for (size_t index = 0; index < gradients.size(); ++index)
    EXPECT_EQ(values(tiled[0][index]), values(tiled[1][index]))
        << "tiled gradient " << index << " depends on the thread count, "
        << what;

  // Packed o  // Packed o is [T, H, D] as the oracle's; dense bhnd as well.
  std::vector<double> dO = values(inputs["d_o"]);

  const double step = 1e-4;
  auto numeric = [&](std::vector<double> &values, size_t index) {
    double saved = values[index];
    values[index] = saved + step;
    double plus = loss(oracle::referenceSoftmax(problem), dO, dLse);
    values[index] = saved - step;
    double minus = loss(oracle::referenceSoftmax(problem), dO, dLse);
    values[index] = saved;
    return (plus - minus) / (2 * step);
  };
  // Each gradient of `values`, the reference's and the tiled one.
  auto check = [&](std::vector<double> &values,
                   std::vector<std::pair<const HostTensor *, std::string>>
                       computed) {
    std::vector<double> expected(values.size());
    for (size_t index = 0; index < values.size(); ++index)
      expected[index] = numeric(values, index);
    for (const auto &[gradient, name] : computed) {
      ASSERT_EQ(size_t(gradient->numElements()), values.size()) << name;
      expectClose(::attnc::testing::values(*gradient), expected, {1e-4, 1e-3},
                  "d" + name + ", " + what);
    }
  };
  const char *names[] = {"q", "k", "v"};
  std::vector<double> *operands[] = {&problem.q, &problem.k, &problem.v};
  for (int operand = 0; operand < 3; ++operand) {
    check(*operands[operand],
          {{&gradients[operand], names[operand]},
           {&tiled[0][operand], std::string(names[operand]) + " (tiled)"}});
  }
  size_t next = 3;
  for (const auto &[name, shape] : c.floatInputs) {
    // The gradients follow the score's first reads; each case reads its
    // float inputs in name order.
    ASSERT_LT(next, gradients.size());
    c.configure(problem, extras);
    check(extras[name], {{&gradients[next], name},
                         {&tiled[0][next], name + " (tiled)"}});
    ++next;
  }
  EXPECT_EQ(next, gradients.size());
}

std::string denseSpec(const std::string &params, const std::string &body,
                      bool withLse = true) {
  return "kernel t(q: f32[B, Hq, N, D], k: f32[B, Hk, M, D], "
         "v: f32[B, Hk, M, D]" +
         params + ") -> (o: f32[B, Hq, N, D]" +
         (withLse ? ", lse: f32[B, Hq, N]) {\n  o, lse = " : ") {\n  o = ") +
         body + "\n}\n";
}

auto causal = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n, int64_t m) {
  return j <= i + (m - n);
};

TEST(SoftmaxBackward, MatchesFiniteDifferencesOfTheOracle) {
  std::vector<BackwardCase> cases;
  {
    BackwardCase c{"alibi, GQA, causal, lse in the loss",
                   denseSpec(", slope: f32[Hq]",
                             "softmax(q, k, v) { score = s - slope[h] * (i - j)"
                             "; mask = causal }"),
                   1,
                   4,
                   2,
                   6,
                   6,
                   4};
    c.floatInputs = {{"slope", {4}}};
    c.configure = [](oracle::SoftmaxProblem &p, const Extras &x) {
      const std::vector<double> *slope = &x.at("slope");
      p.score = [slope](double s, int64_t, int64_t h, int64_t i, int64_t j,
                        int64_t,
                        int64_t) { return s - (*slope)[h] * double(i - j); };
      p.allowed = causal;
    };
    cases.push_back(c);
  }
  {
    BackwardCase c{"softcap, window, N > M (rows without keys)",
                   denseSpec("", "softmax(q, k, v) { score = 2 * tanh(s / 2)"
                                 "; mask = causal && i - j < 3 }"),
                   2,
                   2,
                   1,
                   7,
                   4,
                   5};
    c.configure = [](oracle::SoftmaxProblem &p, const Extras &) {
      p.score = [](double s, int64_t, int64_t, int64_t, int64_t, int64_t,
                   int64_t) { return 2 * std::tanh(s / 2); };
      p.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                     int64_t m) { return j <= i + (m - n) && i - j < 3; };
    };
    cases.push_back(c);
  }
  {
    BackwardCase c{"relative bias table, dense, N < M, no lse",
                   denseSpec(", rel: f32[Hq, 16]",
                             "softmax(q, k, v) { score = s + rel[h, i - j + 8]"
                             " }",
                             false),
                   1,
                   2,
                   2,
                   4,
                   7,
                   3};
    c.withLse = false;
    c.floatInputs = {{"rel", {2, 16}}};
    c.configure = [](oracle::SoftmaxProblem &p, const Extras &x) {
      const std::vector<double> *rel = &x.at("rel");
      p.score = [rel](double s, int64_t, int64_t h, int64_t i, int64_t j,
                      int64_t,
                      int64_t) { return s + (*rel)[h * 16 + i - j + 8]; };
    };
    cases.push_back(c);
  }
  {
    BackwardCase c{
        "document mask with empty rows",
        "kernel t(q: f32[B, Hq, N, D], k: f32[B, Hk, M, D], "
        "v: f32[B, Hk, M, D], docq: i32[N], dock: i32[M]) -> "
        "(o: f32[B, Hq, N, D], lse: f32[B, Hq, N]) {\n"
        "  o, lse = softmax(q, k, v) { mask = docq[i] == dock[j] }\n}\n",
        1,
        2,
        1,
        5,
        5,
        4};
    std::vector<int64_t> docq = {0, 0, 2, 1, 1}, dock = {0, 1, 1, 0, 3};
    HostTensor dq(ElementType::I32, {5}), dk(ElementType::I32, {5});
    for (int64_t index = 0; index < 5; ++index) {
      dq.set(index, docq[index]);
      dk.set(index, dock[index]);
    }
    c.otherInputs = {{"docq", dq}, {"dock", dk}};
    c.configure = [docq, dock](oracle::SoftmaxProblem &p, const Extras &) {
      p.allowed = [docq, dock](int64_t, int64_t, int64_t i, int64_t j, int64_t,
                               int64_t) { return docq[i] == dock[j]; };
    };
    cases.push_back(c);
  }
  {
    // Blocks of 4 queries x 3 keys; query block 1 of head 1 has none, so
    // its rows have no key.
    BackwardCase c{"block mask, GQA, causal, N < M",
                   "kernel t(q: f32[B, Hq, N, D], k: f32[B, Hk, M, D], "
                   "v: f32[B, Hk, M, D], blocks: bool[B, Hq, NB, MB]) -> "
                   "(o: f32[B, Hq, N, D], lse: f32[B, Hq, N]) {\n"
                   "  o, lse = softmax(q, k, v) { mask = blocks[b, h, i / 4, "
                   "j / 3] && causal }\n}\n",
                   1,
                   2,
                   1,
                   9,
                   11,
                   4};
    std::vector<int> present = {1, 0, 1, 1, //
                                1, 1, 0, 1, //
                                0, 1, 1, 1, //
                                1, 1, 1, 0, //
                                0, 0, 0, 0, //
                                1, 0, 1, 1};
    HostTensor blocks(ElementType::Bool, {1, 2, 3, 4});
    for (int64_t index = 0; index < 24; ++index)
      blocks.set(index, present[index]);
    c.otherInputs = {{"blocks", blocks}};
    c.configure = [present](oracle::SoftmaxProblem &p, const Extras &) {
      p.allowed = [present](int64_t, int64_t h, int64_t i, int64_t j,
                            int64_t n, int64_t m) {
        return present[(h * 3 + i / 4) * 4 + j / 3] && j <= i + (m - n);
      };
    };
    cases.push_back(c);
  }
  {
    // Lists of key blocks (4 x 5 blocks, not the 4 x 3 tiles the tiled
    // path is given: sparse kernels tile by their blocks) with a repeated
    // entry and an empty list; entries past the count are ignored.
    BackwardCase c{"block lists, dense",
                   "kernel t(q: f32[B, Hq, N, D], k: f32[B, Hk, M, D], "
                   "v: f32[B, Hk, M, D], counts: i32[B, Hq, QB], "
                   "indices: i32[B, Hq, QB, W]) -> (o: f32[B, Hq, N, D], "
                   "lse: f32[B, Hq, N]) {\n  o, lse = softmax(q, k, v) {\n"
                   "    block_q = 4; block_k = 5\n    kv_num_blocks = counts; "
                   "kv_indices = indices\n  }\n}\n",
                   1,
                   1,
                   1,
                   10,
                   8,
                   4};
    std::vector<int> counts = {2, 0, 3};
    std::vector<int> lists = {1, 0, 1, //
                              1, 1, 1, //
                              1, 0, 1};
    HostTensor countTensor(ElementType::I32, {1, 1, 3});
    HostTensor listTensor(ElementType::I32, {1, 1, 3, 3});
    for (int64_t index = 0; index < 3; ++index)
      countTensor.set(index, counts[index]);
    for (int64_t index = 0; index < 9; ++index)
      listTensor.set(index, lists[index]);
    c.otherInputs = {{"counts", countTensor}, {"indices", listTensor}};
    c.configure = [counts, lists](oracle::SoftmaxProblem &p, const Extras &) {
      p.allowed = [counts, lists](int64_t, int64_t, int64_t i, int64_t j,
                                  int64_t, int64_t) {
        int64_t block = i / 4;
        for (int64_t entry = 0; entry < counts[block]; ++entry)
          if (lists[block * 3 + entry] == j / 5)
            return true;
        return false;
      };
    };
    cases.push_back(c);
  }
  for (auto normalizer :
       {oracle::Normalizer::Softmax, oracle::Normalizer::Sigmoid}) {
    // Top-k: 2 of the blocks of 3 keys per row (rows of a tile keep
    // different blocks; early rows have fewer eligible blocks), GQA. The
    // oracle selects in f64 and the finite differences keep its selection
    // (no score lies within a step of a tie).
    bool softmax = normalizer == oracle::Normalizer::Softmax;
    BackwardCase c{
        softmax ? "top-k, GQA, causal, lse in the loss" : "top-k, sigmoid",
        softmax ? denseSpec("", "softmax(q, k, v) { select = topk(2, block = "
                                "3); mask = causal }")
                : denseSpec("", "softmax(q, k, v) { select = topk(2, block = "
                                "3); normalizer = sigmoid; mask = causal }",
                            false),
        2,
        4,
        2,
        10,
        10,
        4};
    c.withLse = softmax;
    c.configure = [normalizer](oracle::SoftmaxProblem &p, const Extras &) {
      p.normalizer = normalizer;
      p.allowed = causal;
      p.topkBlocks = 2;
      p.topkBlockSize = 3;
    };
    cases.push_back(c);
  }
  {
    BackwardCase c{
        "chunk-local, causal, N = M = 8, chunks of 3",
        denseSpec("", "softmax(q, k, v) { chunk = 3; mask = causal }"),
        1,
        2,
        1,
        8,
        8,
        4};
    c.configure = [](oracle::SoftmaxProblem &p, const Extras &) {
      p.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                     int64_t m) { return j <= i + (m - n) && i / 3 == j / 3; };
    };
    cases.push_back(c);
  }
  for (auto normalizer :
       {oracle::Normalizer::Sigmoid, oracle::Normalizer::None}) {
    bool sigmoid = normalizer == oracle::Normalizer::Sigmoid;
    BackwardCase c{sigmoid ? "sigmoid, causal" : "no normalizer, causal",
                   denseSpec("",
                             std::string("softmax(q, k, v) { normalizer = ") +
                                 (sigmoid ? "sigmoid" : "none") +
                                 "; mask = causal }",
                             false),
                   1,
                   2,
                   1,
                   5,
                   5,
                   4};
    c.withLse = false;
    c.configure = [normalizer](oracle::SoftmaxProblem &p, const Extras &) {
      p.normalizer = normalizer;
      p.allowed = causal;
    };
    cases.push_back(c);
  }
  {
    BackwardCase c{"varlen with an empty sequence, causal",
                   "kernel t(q: f32[T, Hq, D], k: f32[T, Hk, D], "
                   "v: f32[T, Hk, D], cu: i32[S]) -> (o: f32[T, Hq, D], "
                   "lse: f32[Hq, T]) {\n  o, lse = softmax(q, k, v, layout = "
                   "thd, cu_seqlens = cu) { mask = causal }\n}\n",
                   0,
                   2,
                   1,
                   0,
                   0,
                   4};
    c.offsets = {0, 3, 3, 8};
    c.configure = [](oracle::SoftmaxProblem &p, const Extras &) {
      p.allowed = causal;
    };
    cases.push_back(c);
  }
  uint64_t seed = 101;
  for (const BackwardCase &c : cases)
    checkBackward(c, seed++);
}


TEST(SoftmaxBackward, ReportsASelectionEntryThatNamesNoKeyBlock) {
  BackwardRunner runner(denseSpec(
      "", "softmax(q, k, v) { select = topk(2, block = 3); mask = causal }"));
  ASSERT_TRUE(runner.backward && runner.tiled) << runner.error;
  std::mt19937_64 rng(7);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v", "o", "d_o"})
    inputs[name] = randomTensor(ElementType::F32, {1, 1, 5, 4}, rng, -1, 1);
  for (const char *name : {"lse", "d_lse"})
    inputs[name] = randomTensor(ElementType::F32, {1, 1, 5}, rng, -1, 1);
  // Five keys make blocks 0 and 1; entry 1 of query 3 is bad.
  for (double bad : {2.0, 0.5, -2.0}) {
    HostTensor selection(ElementType::F32, {1, 1, 5, 2});
    for (int64_t index = 0; index < 10; ++index)
      selection.set(index, index % 2 ? -1 : 0);
    selection.set(7, bad);
    inputs["topk_blocks"] = selection;
    for (CpuKernel *kernel : {runner.backward.get(), runner.tiled.get()}) {
      std::vector<TensorView> storage;
      std::vector<HostTensor> gradients;
      std::string error;
      EXPECT_FALSE(kernel->run(viewsOf(kernel->signature(), inputs, storage),
                               gradients, error));
      std::ostringstream expected;
      expected << "'topk_blocks' entry 1 of query 3 (batch entry 0, head 0) is "
               << bad << ", which names no key block";
      EXPECT_NE(error.find(expected.str()), std::string::npos) << error;
    }
  }
}

} // namespace
