//===- LinearBackwardTest.cpp - Gradients of linear specs -----------------===//
//
// The reference backward of linear kernels (attn-derive-backward, then the
// reference lowering of attn.linear_backward: backward through time)
// against central finite differences of the double-precision oracle
// (ReferenceOracle.h, which shares no code with the compiler) of the loss
//   L = sum dO * o + sum dS_T * S_T   (S_T: the final state, when returned)
// for every element of q, k, v, the initial state and the float tensors the
// gate reads: GLA's per-key gates with GQA, an initial state and the final
// state in the loss; Mamba2/SSD's per-head gates with T = 1 and T = 6;
// RetNet's constant decay; a learnable per-head decay; elu + 1 non-causal;
// x * x; varlen with an empty sequence. f32 inputs, steps of 1e-4; the
// tolerance is the kernel's f32 rounding. Seeds are printed on failure.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOracle.h"
#include "SpecRunner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

using namespace attnc;
using namespace attnc::testing;

namespace {

using Extras = std::map<std::string, std::vector<double>>;

struct LinearCase {
  std::string name;
  /// The forward spec: kernel `t` with f32 q [B, Hq, T, D], k [B, Hk, T, D],
  /// v [B, Hk, T, E] (thd with `offsets`), optional h0, optional hT.
  std::string spec;
  int64_t B, Hq, Hk, T, D, E;
  /// Float tensors the gate reads, with their shapes; drawn in [-1, -0.05]
  /// (log-space decays).
  std::map<std::string, std::vector<int64_t>> gates = {};
  bool initial = false, finalState = false;
  /// Fills the oracle's gate, feature map, scale and causality, reading the
  /// gate tensors from `extras` (which the finite differences perturb).
  std::function<void(oracle::LinearProblem &, const Extras &)> configure = {};
  /// Packed sequences (thd layout).
  std::vector<int64_t> offsets = {};
};

/// `path`'s backward of case `c` against central differences of the
/// oracle; with `threads`, the tiled backward also runs on one thread and on
/// `threads` threads, which must agree bitwise.
void checkBackward(const LinearCase &c, uint64_t seed,
                   CpuPath path = CpuPath::Reference, int64_t threads = 0) {
  std::string what = c.name + (path == CpuPath::Tiled ? ", chunkwise" : "") +
                     " (seed " + std::to_string(seed) + ")";
  SCOPED_TRACE(what);
  llvm::SourceMgr sourceMgr;
  mlir::MLIRContext context;
  std::string error;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileWithBackward(c.spec, sourceMgr, context, error);
  ASSERT_TRUE(module) << error;
  std::unique_ptr<CpuKernel> backward =
      CpuKernel::compile(*module, "t_backward", {path}, error);
  ASSERT_TRUE(backward) << error;

  std::mt19937_64 rng(seed);
  bool packed = !c.offsets.empty();
  int64_t tokens = packed ? c.offsets.back() : c.T;
  int64_t sequences = packed ? int64_t(c.offsets.size()) - 1 : c.B;
  auto rows = [&](int64_t heads, int64_t width) {
    return packed ? std::vector<int64_t>{tokens, heads, width}
                  : std::vector<int64_t>{c.B, heads, tokens, width};
  };
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, rows(c.Hq, c.D), rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, rows(c.Hk, c.D), rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, rows(c.Hk, c.E), rng, -1, 1);
  for (const auto &[name, shape] : c.gates)
    inputs[name] = randomTensor(ElementType::F32, shape, rng, -1, -0.05);
  std::vector<int64_t> stateShape = {sequences, c.Hq, c.D, c.E};
  if (c.initial)
    inputs["h0"] = randomTensor(ElementType::F32, stateShape, rng, -1, 1);
  if (packed)
    inputs["cu"] = offsetsTensor(c.offsets);
  inputs["d_o"] = randomTensor(ElementType::F32, rows(c.Hq, c.E), rng, -1, 1);
  std::vector<double> dO = values(inputs["d_o"]), dState;
  if (c.finalState) {
    inputs["d_hT"] = randomTensor(ElementType::F32, stateShape, rng, -1, 1);
    dState = values(inputs["d_hT"]);
  }

  std::vector<TensorView> storage;
  std::vector<HostTensor> gradients;
  if (threads)
    backward->setThreads(1);
  ASSERT_TRUE(backward->run(viewsOf(backward->signature(), inputs, storage),
                            gradients, error))
      << error;
  if (threads) {
    std::vector<HostTensor> again;
    backward->setThreads(threads);
    ASSERT_TRUE(backward->run(viewsOf(backward->signature(), inputs, storage),
                              again, error))
        << error;
    for (size_t r = 0; r < gradients.size(); ++r)
      EXPECT_EQ(values(again[r]), values(gradients[r]))
          << backward->signature().results[r].name << " differs on "
          << threads << " threads";
  }

  Extras extras;
  for (const auto &[name, shape] : c.gates)
    extras[name] = values(inputs[name]);
  oracle::LinearProblem problem;
  problem.B = sequences;
  problem.Hq = c.Hq;
  problem.Hk = c.Hk;
  problem.T = c.T;
  problem.Dk = c.D;
  problem.Dv = c.E;
  if (packed)
    problem.cu = c.offsets;
  problem.q = values(inputs["q"]);
  problem.k = values(inputs["k"]);
  problem.v = values(inputs["v"]);
  if (c.initial)
    problem.initialState = values(inputs["h0"]);
  c.configure(problem, extras);

  auto loss = [&]() {
    oracle::LinearResult result = oracle::referenceLinear(problem);
    double sum = 0;
    for (size_t index = 0; index < dO.size(); ++index)
      sum += dO[index] * result.o[index];
    for (size_t index = 0; index < dState.size(); ++index)
      sum += dState[index] * result.finalState[index];
    return sum;
  };
  const double step = 1e-4;
  auto check = [&](std::vector<double> &point, const HostTensor &gradient,
                   const std::string &name) {
    ASSERT_EQ(size_t(gradient.numElements()), point.size()) << name;
    std::vector<double> expected(point.size());
    for (size_t index = 0; index < point.size(); ++index) {
      double saved = point[index];
      point[index] = saved + step;
      double plus = loss();
      point[index] = saved - step;
      double minus = loss();
      point[index] = saved;
      expected[index] = (plus - minus) / (2 * step);
    }
    expectClose(values(gradient), expected, {1e-4, 1e-3},
                "d" + name + ", " + what);
  };
  check(problem.q, gradients[0], "q");
  check(problem.k, gradients[1], "k");
  check(problem.v, gradients[2], "v");
  size_t next = 3;
  if (c.initial)
    check(problem.initialState, gradients[next++], "h0");
  for (const auto &[name, shape] : c.gates) {
    ASSERT_LT(next, gradients.size());
    check(extras[name], gradients[next++], name);
  }
  EXPECT_EQ(next, gradients.size());
}

std::string spec(const std::string &params, const std::string &results,
                 const std::string &call, const std::string &body) {
  return "kernel t(q: f32[B, Hq, T, D], k: f32[B, Hk, T, D], "
         "v: f32[B, Hk, T, E]" +
         params + ") -> (o: f32[B, Hq, T, E]" + results + ") {\n  " + call +
         " {\n    " + body + "\n  }\n}\n";
}

double elu(double x) { return x > 0 ? x : std::exp(x) - 1; }

TEST(LinearBackward, MatchesFiniteDifferencesOfTheOracle) {
  std::vector<LinearCase> cases;
  {
    LinearCase c{"GLA per-key gates, GQA, h0, final state in the loss",
                 spec(", g: f32[B, Hq, T, D], h0: f32[B, Hq, D, E]",
                      ", hT: f32[B, Hq, D, E]",
                      "o, hT = linear(q, k, v, initial = h0)",
                      "gate = g[b, h, t, d]; scale = 0.5"),
                 2,
                 2,
                 1,
                 5,
                 3,
                 2};
    c.gates = {{"g", {2, 2, 5, 3}}};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *g = &x.at("g");
      p.scale = 0.5;
      p.gate = [g](int64_t b, int64_t h, int64_t t, int64_t d) {
        return (*g)[((b * 2 + h) * 5 + t) * 3 + d];
      };
    };
    cases.push_back(c);
  }
  for (int64_t steps : {1, 6}) {
    LinearCase c{"SSD per-head gates, T = " + std::to_string(steps),
                 spec(", a: f32[B, Hq, T]", ", hT: f32[B, Hq, D, E]",
                      "o, hT = linear(q, k, v)", "gate = a[b, h, t]"),
                 1,
                 2,
                 2,
                 steps,
                 3,
                 3};
    c.gates = {{"a", {1, 2, steps}}};
    c.finalState = true;
    c.configure = [steps](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = &x.at("a");
      p.scale = 1;
      p.gate = [a, steps](int64_t b, int64_t h, int64_t t, int64_t) {
        return (*a)[(b * 2 + h) * steps + t];
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"RetNet constant decay, no gradient for it",
                 spec("", "", "o = linear(q, k, v)",
                      "gate = log(1 - exp2(-1 - h)); scale = 0.25"),
                 1,
                 2,
                 2,
                 5,
                 2,
                 3};
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 0.25;
      p.gate = [](int64_t, int64_t h, int64_t, int64_t) {
        return std::log(1 - std::exp2(-1.0 - double(h)));
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"a learnable per-head decay, h0",
                 spec(", w: f32[Hq], h0: f32[B, Hq, D, E]", "",
                      "o = linear(q, k, v, initial = h0)", "gate = w[h]"),
                 2,
                 2,
                 1,
                 4,
                 2,
                 2};
    c.gates = {{"w", {2}}};
    c.initial = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *w = &x.at("w");
      p.scale = 1;
      p.gate = [w](int64_t, int64_t h, int64_t, int64_t) { return (*w)[h]; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"elu + 1, non-causal, final state",
                 spec("", ", hT: f32[B, Hq, D, E]", "o, hT = linear(q, k, v)",
                      "feature = elu(x) + 1; causal = false; scale = 0.5"),
                 1,
                 2,
                 1,
                 5,
                 3,
                 2};
    c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 0.5;
      p.causal = false;
      p.featureMap = [](double x) { return elu(x) + 1; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"x * x, causal, no gate",
                 spec("", "", "o = linear(q, k, v)", "feature = x * x"),
                 1,
                 1,
                 1,
                 4,
                 2,
                 2};
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 1;
      p.featureMap = [](double x) { return x * x; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{
        "varlen with an empty sequence, GLA gates, h0 and hT",
        "kernel t(q: f32[T, H, D], k: f32[T, H, D], v: f32[T, H, E], "
        "g: f32[T, H, D], cu: i32[S1], h0: f32[S, H, D, E]) -> "
        "(o: f32[T, H, E], hT: f32[S, H, D, E]) {\n"
        "  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = "
        "h0) {\n    gate = g[tstart + t, h, d]\n  }\n}\n",
        0,
        2,
        2,
        0,
        2,
        2};
    c.offsets = {0, 3, 3, 7};
    c.gates = {{"g", {7, 2, 2}}};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *g = &x.at("g");
      std::vector<int64_t> starts = {0, 3, 3};
      p.scale = 1;
      p.gate = [g, starts](int64_t b, int64_t h, int64_t t, int64_t d) {
        return (*g)[((starts[b] + t) * 2 + h) * 2 + d];
      };
    };
    cases.push_back(c);
  }
  uint64_t seed = 301;
  for (const LinearCase &c : cases)
    checkBackward(c, seed++);
}

// The chunkwise backward (attn-tile-linear's program, target cpu) against
// the same finite differences, with chunks of 2 to 4 steps so that every
// case crosses chunk boundaries (and ends inside a chunk): Mamba2/SSD
// per-head gates with GQA, h0 and hT; strong decay (30 times the gates:
// cumulative log gates near -300 within a chunk); a learnable per-head
// decay; RetNet's constant decay; elu + 1 non-causal with GQA; x * x;
// varlen with an empty sequence; T = 1; Dv = 128 in two value blocks, with
// and without the gate's gradient, and non-causal; Dk = 128 in two key
// blocks (elu + 1, h0), causal and not, and Dk = Dv = 128 in 2 x 2 state
// blocks. Each also runs on 1 and 3 threads (bitwise the same).
TEST(LinearBackward, ChunkwiseMatchesFiniteDifferencesOfTheOracle) {
  std::vector<LinearCase> cases;
  for (double strength : {1.0, 30.0}) {
    std::string gate = strength == 1 ? "a[b, h, t]" : "30 * a[b, h, t]";
    LinearCase c{"SSD per-head gates x " + std::to_string(int(strength)) +
                     ", GQA, h0 and hT, chunks of 4",
                 spec(", a: f32[B, Hq, T], h0: f32[B, Hq, D, E]",
                      ", hT: f32[B, Hq, D, E]",
                      "o, hT = linear(q, k, v, initial = h0)",
                      "gate = " + gate + "; scale = 0.5; chunk = 4"),
                 2,
                 4,
                 2,
                 11,
                 3,
                 2};
    c.gates = {{"a", {2, 4, 11}}};
    c.initial = c.finalState = true;
    c.configure = [strength](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = &x.at("a");
      p.scale = 0.5;
      p.gate = [a, strength](int64_t b, int64_t h, int64_t t, int64_t) {
        return strength * (*a)[(b * 4 + h) * 11 + t];
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"a learnable per-head decay, h0, chunks of 2",
                 spec(", w: f32[Hq], h0: f32[B, Hq, D, E]", "",
                      "o = linear(q, k, v, initial = h0)",
                      "gate = w[h]; chunk = 2"),
                 2,
                 2,
                 1,
                 7,
                 2,
                 3};
    c.gates = {{"w", {2}}};
    c.initial = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *w = &x.at("w");
      p.scale = 1;
      p.gate = [w](int64_t, int64_t h, int64_t, int64_t) { return (*w)[h]; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"RetNet constant decay, chunks of 3",
                 spec("", ", hT: f32[B, Hq, D, E]", "o, hT = linear(q, k, v)",
                      "gate = log(1 - exp2(-1 - h)); scale = 0.25; chunk = 3"),
                 1,
                 2,
                 2,
                 8,
                 2,
                 3};
    c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 0.25;
      p.gate = [](int64_t, int64_t h, int64_t, int64_t) {
        return std::log(1 - std::exp2(-1.0 - double(h)));
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"elu + 1, non-causal, GQA, h0 and hT, chunks of 2",
                 spec(", h0: f32[B, Hq, D, E]", ", hT: f32[B, Hq, D, E]",
                      "o, hT = linear(q, k, v, initial = h0)",
                      "feature = elu(x) + 1; causal = false; scale = 0.5; "
                      "chunk = 2"),
                 1,
                 4,
                 2,
                 5,
                 3,
                 2};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 0.5;
      p.causal = false;
      p.featureMap = [](double x) { return elu(x) + 1; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"x * x, causal, no gate, chunks of 3",
                 spec("", "", "o = linear(q, k, v)", "feature = x * x; chunk = 3"),
                 1,
                 1,
                 1,
                 7,
                 2,
                 2};
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 1;
      p.featureMap = [](double x) { return x * x; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"T = 1, per-head gates, hT",
                 spec(", a: f32[B, Hq, T]", ", hT: f32[B, Hq, D, E]",
                      "o, hT = linear(q, k, v)", "gate = a[b, h, t]; chunk = 4"),
                 1,
                 2,
                 2,
                 1,
                 3,
                 3};
    c.gates = {{"a", {1, 2, 1}}};
    c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = &x.at("a");
      p.scale = 1;
      p.gate = [a](int64_t b, int64_t h, int64_t t, int64_t) {
        return (*a)[(b * 2 + h) + t];
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{
        "varlen with an empty sequence, per-head gates, h0 and hT, chunks "
        "of 2",
        "kernel t(q: f32[T, H, D], k: f32[T, H, D], v: f32[T, H, E], "
        "a: f32[T, H], cu: i32[S1], h0: f32[S, H, D, E]) -> "
        "(o: f32[T, H, E], hT: f32[S, H, D, E]) {\n"
        "  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = "
        "h0) {\n    gate = a[tstart + t, h]; chunk = 2\n  }\n}\n",
        0,
        2,
        2,
        0,
        2,
        2};
    c.offsets = {0, 3, 3, 8};
    c.gates = {{"a", {8, 2}}};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = &x.at("a");
      std::vector<int64_t> starts = {0, 3, 3};
      p.scale = 1;
      p.gate = [a, starts](int64_t b, int64_t h, int64_t t, int64_t) {
        return (*a)[(starts[b] + t) * 2 + h];
      };
    };
    cases.push_back(c);
  }
  // Dv = 128: dv, dO and the states go by two blocks of 64 value columns
  // (the tile program's value blocks), with the gate's gradient (its state
  // term summed over the blocks) and without.
  for (bool floatGate : {true, false}) {
    LinearCase c{
        floatGate ? "SSD per-head gates, GQA, h0 and hT, Dv 128 in value "
                    "blocks, chunks of 4"
                  : "constant decay, hT, Dv 128 in value blocks, chunks of 4",
        std::string("kernel t(q: f32[B, Hq, T, 4], k: f32[B, Hk, T, 4], "
                    "v: f32[B, Hk, T, 128]") +
            (floatGate ? ", a: f32[B, Hq, T], h0: f32[B, Hq, 4, 128]" : "") +
            ") -> (o: f32[B, Hq, T, 128], hT: f32[B, Hq, 4, 128]) {\n  o, "
            "hT = linear(q, k, v" +
            (floatGate ? ", initial = h0) {\n    gate = a[b, h, t]"
                       : ") {\n    gate = log(1 - exp2(-1 - h))") +
            "; scale = 0.5; chunk = 4\n  }\n}\n",
        1,
        2,
        floatGate ? 1 : 2,
        9,
        4,
        128};
    if (floatGate)
      c.gates = {{"a", {1, 2, 9}}};
    c.initial = floatGate;
    c.finalState = true;
    c.configure = [floatGate](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = floatGate ? &x.at("a") : nullptr;
      p.scale = 0.5;
      p.gate = [a](int64_t, int64_t h, int64_t t, int64_t) {
        return a ? (*a)[h * 9 + t] : std::log(1 - std::exp2(-1.0 - double(h)));
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"elu + 1, non-causal, GQA, h0 and hT, Dv 128 in value "
                 "blocks, chunks of 4",
                 "kernel t(q: f32[B, Hq, T, 3], k: f32[B, Hk, T, 3], "
                 "v: f32[B, Hk, T, 128], h0: f32[B, Hq, 3, 128]) -> "
                 "(o: f32[B, Hq, T, 128], hT: f32[B, Hq, 3, 128]) {\n"
                 "  o, hT = linear(q, k, v, initial = h0) {\n    feature = "
                 "elu(x) + 1; causal = false; scale = 0.5; chunk = 4\n  }\n}\n",
                 1,
                 2,
                 1,
                 7,
                 3,
                 128};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 0.5;
      p.causal = false;
      p.featureMap = [](double x) { return elu(x) + 1; };
    };
    cases.push_back(c);
  }
  // Dk = 128: q, k, dq, dk and the states' rows go by two blocks of 64 key
  // columns (dk's sum over the group in scratch), with a feature map and
  // h0; then Dk = Dv = 128, states in blocks of 64 x 64, with the gate's
  // gradient (its terms summed over both kinds of blocks).
  {
    LinearCase c{"SSD per-head gates, elu + 1, GQA, h0 and hT, Dk 128 in key "
                 "blocks, chunks of 4",
                 "kernel t(q: f32[B, Hq, T, 128], k: f32[B, Hk, T, 128], "
                 "v: f32[B, Hk, T, 4], a: f32[B, Hq, T], "
                 "h0: f32[B, Hq, 128, 4]) -> (o: f32[B, Hq, T, 4], "
                 "hT: f32[B, Hq, 128, 4]) {\n"
                 "  o, hT = linear(q, k, v, initial = h0) {\n    gate = "
                 "a[b, h, t]; feature = elu(x) + 1; scale = 0.5; chunk = 4\n"
                 "  }\n}\n",
                 1,
                 2,
                 1,
                 9,
                 128,
                 4};
    c.gates = {{"a", {1, 2, 9}}};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = &x.at("a");
      p.scale = 0.5;
      p.featureMap = [](double x) { return elu(x) + 1; };
      p.gate = [a](int64_t, int64_t h, int64_t t, int64_t) {
        return (*a)[h * 9 + t];
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"SSD per-head gates, hT, Dk = Dv = 128 in state blocks, "
                 "chunks of 4",
                 "kernel t(q: f32[B, Hq, T, 128], k: f32[B, Hk, T, 128], "
                 "v: f32[B, Hk, T, 128], a: f32[B, Hq, T]) -> "
                 "(o: f32[B, Hq, T, 128], hT: f32[B, Hq, 128, 128]) {\n"
                 "  o, hT = linear(q, k, v) {\n    gate = a[b, h, t]; "
                 "scale = 0.5; chunk = 4\n  }\n}\n",
                 1,
                 1,
                 1,
                 5,
                 128,
                 128};
    c.gates = {{"a", {1, 1, 5}}};
    c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *a = &x.at("a");
      p.scale = 0.5;
      p.gate = [a](int64_t, int64_t h, int64_t t, int64_t) {
        return (*a)[h * 5 + t];
      };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{"elu + 1, non-causal, GQA, h0 and hT, Dk 128 in key blocks, "
                 "chunks of 4",
                 "kernel t(q: f32[B, Hq, T, 128], k: f32[B, Hk, T, 128], "
                 "v: f32[B, Hk, T, 4], h0: f32[B, Hq, 128, 4]) -> "
                 "(o: f32[B, Hq, T, 4], hT: f32[B, Hq, 128, 4]) {\n"
                 "  o, hT = linear(q, k, v, initial = h0) {\n    feature = "
                 "elu(x) + 1; causal = false; scale = 0.5; chunk = 4\n  }\n}\n",
                 1,
                 2,
                 1,
                 7,
                 128,
                 4};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &) {
      p.scale = 0.5;
      p.causal = false;
      p.featureMap = [](double x) { return elu(x) + 1; };
    };
    cases.push_back(c);
  }
  uint64_t seed = 401;
  for (const LinearCase &c : cases)
    checkBackward(c, seed++, CpuPath::Tiled, /*threads=*/3);
}

// The chunkwise backward of gates per key dimension (GLA), by sub-tiles,
// against the same finite differences: GQA with a gate per query head, h0
// and hT, chunks of 24 in two sub-tiles of 12 (the second chunk holds 6
// steps); strong decay (30 times the gates: cumulative log gates near -100
// within a chunk of 4) under elu + 1; varlen with an empty sequence. Each
// also on 1 and 3 threads (bitwise the same).
TEST(LinearBackward, ChunkwiseGatesPerKeyDimensionMatchFiniteDifferences) {
  std::vector<LinearCase> cases;
  for (double strength : {1.0, 30.0}) {
    bool strong = strength > 1;
    int64_t steps = strong ? 11 : 30;
    LinearCase c{
        strong ? "GLA x 30 under elu + 1, chunks of 4"
               : "GLA, GQA, h0 and hT, chunks of 24 in sub-tiles of 12",
        spec(", g: f32[B, Hq, T, D], h0: f32[B, Hq, D, E]",
             ", hT: f32[B, Hq, D, E]", "o, hT = linear(q, k, v, initial = h0)",
             strong ? "gate = 30 * g[b, h, t, d]; feature = elu(x) + 1; "
                      "scale = 0.5; chunk = 4"
                    : "gate = g[b, h, t, d]; scale = 0.5; chunk = 24"),
        1,
        strong ? 2 : 4,
        2,
        steps,
        3,
        2};
    c.gates = {{"g", {1, c.Hq, steps, 3}}};
    c.initial = c.finalState = true;
    c.configure = [strength, steps](oracle::LinearProblem &p,
                                    const Extras &x) {
      const std::vector<double> *g = &x.at("g");
      p.scale = 0.5;
      int64_t heads = p.Hq;
      p.gate = [g, strength, steps, heads](int64_t b, int64_t h, int64_t t,
                                           int64_t d) {
        return strength * (*g)[((b * heads + h) * steps + t) * 3 + d];
      };
      if (strength > 1)
        p.featureMap = [](double x) { return elu(x) + 1; };
    };
    cases.push_back(c);
  }
  {
    LinearCase c{
        "GLA varlen with an empty sequence, h0 and hT, chunks of 2",
        "kernel t(q: f32[T, H, D], k: f32[T, H, D], v: f32[T, H, E], "
        "g: f32[T, H, D], cu: i32[S1], h0: f32[S, H, D, E]) -> "
        "(o: f32[T, H, E], hT: f32[S, H, D, E]) {\n"
        "  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = "
        "h0) {\n    gate = g[tstart + t, h, d]; chunk = 2\n  }\n}\n",
        0,
        2,
        2,
        0,
        2,
        2};
    c.offsets = {0, 3, 3, 8};
    c.gates = {{"g", {8, 2, 2}}};
    c.initial = c.finalState = true;
    c.configure = [](oracle::LinearProblem &p, const Extras &x) {
      const std::vector<double> *g = &x.at("g");
      std::vector<int64_t> starts = {0, 3, 3};
      p.scale = 1;
      p.gate = [g, starts](int64_t b, int64_t h, int64_t t, int64_t d) {
        return (*g)[((starts[b] + t) * 2 + h) * 2 + d];
      };
    };
    cases.push_back(c);
  }
  uint64_t seed = 501;
  for (const LinearCase &c : cases)
    checkBackward(c, seed++, CpuPath::Tiled, /*threads=*/3);
}

} // namespace
