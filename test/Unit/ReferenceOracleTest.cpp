//===- ReferenceOracleTest.cpp - Hand-checkable facts about the oracle ----===//

#include "ReferenceOracle.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

using namespace attnc::oracle;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

std::vector<double> randomValues(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::vector<double> values(count);
  for (double &value : values)
    value = static_cast<double>(generator()) / 4294967296.0 * 2.0 - 1.0;
  return values;
}

void expectNear(const std::vector<double> &actual,
                const std::vector<double> &expected, double tolerance = 1e-12) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    if (std::isinf(expected[i]))
      EXPECT_EQ(actual[i], expected[i]) << "index " << i;
    else
      EXPECT_NEAR(actual[i], expected[i], tolerance) << "index " << i;
  }
}

// One query row over two keys with Dk = Dv = 1: q = 1, k = (1, 2),
// v = (10, 20), scale 1, so the scores are (1, 2).
SoftmaxProblem oneByTwo() {
  SoftmaxProblem p;
  p.N = 1;
  p.M = 2;
  p.q = {1};
  p.k = {1, 2};
  p.v = {10, 20};
  p.scale = 1;
  return p;
}

//===----------------------------------------------------------------------===//
// Softmax family
//===----------------------------------------------------------------------===//

TEST(ReferenceSoftmaxTest, OneAllowedKeyGivesItsValue) {
  SoftmaxProblem p;
  p.M = 3;
  p.Dk = 2;
  p.Dv = 2;
  p.q = {0.5, -1};
  p.k = {1, 2, 3, 4, 5, 6};
  p.v = {10, 11, 20, 21, 30, 31};
  p.allowed = [](int64_t, int64_t, int64_t, int64_t j, int64_t, int64_t) {
    return j == 1;
  };
  SoftmaxResult r = referenceSoftmax(p);
  expectNear(r.o, {20, 21});
  // lse of a single score is the score: (0.5 * 3 - 1 * 4) / sqrt(2).
  expectNear(r.lse, {-2.5 / std::sqrt(2.0)});
}

TEST(ReferenceSoftmaxTest, EqualScoresGiveMeanOfValues) {
  SoftmaxProblem p;
  p.M = 4;
  p.q = {0};
  p.k = {1, 2, 3, 4};
  p.v = {1, 2, 3, 10};
  SoftmaxResult r = referenceSoftmax(p);
  expectNear(r.o, {4});
  expectNear(r.lse, {std::log(4.0)});
}

TEST(ReferenceSoftmaxTest, NoAllowedKeyGivesZeroAndMinusInfinity) {
  SoftmaxProblem p = oneByTwo();
  p.allowed = [](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {
    return false;
  };
  SoftmaxResult r = referenceSoftmax(p);
  EXPECT_EQ(r.o, std::vector<double>{0});
  EXPECT_EQ(r.lse, std::vector<double>{-kInf});

  // Scores that are all -inf behave the same, not as 0/0.
  p = oneByTwo();
  p.score = [](double, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {
    return -kInf;
  };
  r = referenceSoftmax(p);
  EXPECT_EQ(r.o, std::vector<double>{0});
  EXPECT_EQ(r.lse, std::vector<double>{-kInf});

  // No keys at all.
  p = oneByTwo();
  p.M = 0;
  p.k.clear();
  p.v.clear();
  r = referenceSoftmax(p);
  EXPECT_EQ(r.o, std::vector<double>{0});
  EXPECT_EQ(r.lse, std::vector<double>{-kInf});
}

TEST(ReferenceSoftmaxTest, SoftmaxByHand) {
  SoftmaxResult r = referenceSoftmax(oneByTwo());
  double e1 = std::exp(1.0), e2 = std::exp(2.0);
  expectNear(r.o, {(10 * e1 + 20 * e2) / (e1 + e2)});
  expectNear(r.lse, {std::log(e1 + e2)});

  // Default scale is 1/sqrt(Dk): Dk = 4 gives 1/2.
  SoftmaxProblem p = oneByTwo();
  p.Dk = 4;
  p.q = {1, 1, 1, 1};
  p.k = {1, 0, 0, 0, 1, 1, 1, 1};
  p.scale = 0;
  r = referenceSoftmax(p);
  double a = std::exp(0.5), b = std::exp(2.0);
  expectNear(r.o, {(10 * a + 20 * b) / (a + b)});
  expectNear(r.lse, {std::log(a + b)});
}

TEST(ReferenceSoftmaxTest, SigmoidAndNoneByHand) {
  SoftmaxProblem p = oneByTwo();
  p.normalizer = Normalizer::Sigmoid;
  SoftmaxResult r = referenceSoftmax(p);
  double sig1 = 1 / (1 + std::exp(-1.0)), sig2 = 1 / (1 + std::exp(-2.0));
  expectNear(r.o, {10 * sig1 + 20 * sig2});
  ASSERT_EQ(r.lse.size(), 1u);
  EXPECT_TRUE(std::isnan(r.lse[0]));

  p.normalizer = Normalizer::None;
  r = referenceSoftmax(p);
  expectNear(r.o, {10 * 1 + 20 * 2});
  EXPECT_TRUE(std::isnan(r.lse[0]));
}

TEST(ReferenceSoftmaxTest, ScoreSeesScaledDotAndSequencePositions) {
  SoftmaxProblem p = oneByTwo();
  p.scale = 0.5; // scaled scores (0.5, 1)
  p.normalizer = Normalizer::None;
  std::vector<std::vector<double>> calls;
  p.score = [&](double s, int64_t b, int64_t h, int64_t i, int64_t j, int64_t n,
                int64_t m) {
    calls.push_back(
        {s, double(b), double(h), double(i), double(j), double(n), double(m)});
    return s + 100 * j;
  };
  SoftmaxResult r = referenceSoftmax(p);
  expectNear(r.o, {10 * 0.5 + 20 * 101});
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0], (std::vector<double>{0.5, 0, 0, 0, 0, 1, 2}));
  EXPECT_EQ(calls[1], (std::vector<double>{1, 0, 0, 0, 1, 1, 2}));
}

// Hq = 4, Hk = 2: query heads 0 and 1 read kv head 0, heads 2 and 3 read kv
// head 1. Dense layout with B = 2 checks the batch placement too.
TEST(ReferenceSoftmaxTest, GroupedQueryHeadMappingAndLayout) {
  SoftmaxProblem p;
  p.B = 2;
  p.Hq = 4;
  p.Hk = 2;
  p.N = 2;
  p.M = 2;
  p.q.assign(2 * 4 * 2, 1.0);
  p.k.assign(2 * 2 * 2, 1.0);
  // v[b, g, j] = 100 * b + 10 * g + j, so each key has a distinct value.
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t g = 0; g < 2; ++g)
      for (int64_t j = 0; j < 2; ++j)
        p.v.push_back(100.0 * b + 10.0 * g + j);
  // Query i sees only key i; head 1 sees nothing.
  p.allowed = [](int64_t, int64_t h, int64_t i, int64_t j, int64_t, int64_t) {
    return j == i && h != 1;
  };
  SoftmaxResult r = referenceSoftmax(p);
  std::vector<double> expected;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 4; ++h)
      for (int64_t i = 0; i < 2; ++i)
        expected.push_back(h == 1 ? 0.0 : 100.0 * b + 10.0 * (h / 2) + i);
  expectNear(r.o, expected);
  EXPECT_EQ(r.lse[1 * 2 + 0], -kInf);                  // b = 0, h = 1, i = 0
  EXPECT_EQ(r.lse[(1 * 4 + 1) * 2 + 1], -kInf);        // b = 1, h = 1, i = 1
  EXPECT_NEAR(r.lse[(1 * 4 + 2) * 2 + 1], 1.0, 1e-12); // q.k = 1 * 1
}

// Varlen with an empty query sequence and an empty key sequence equals running
// each sequence alone in the dense layout.
TEST(ReferenceSoftmaxTest, VarlenEqualsEachSequenceAloneAsDense) {
  const int64_t Hq = 4, Hk = 2, Dk = 3, Dv = 2;
  SoftmaxProblem packed;
  packed.B = 4;
  packed.Hq = Hq;
  packed.Hk = Hk;
  packed.Dk = Dk;
  packed.Dv = Dv;
  packed.cuQ = {0, 3, 3, 5, 9};
  packed.cuK = {0, 4, 6, 6, 11};
  int64_t tq = packed.cuQ.back(), tk = packed.cuK.back();
  packed.q = randomValues(static_cast<size_t>(tq * Hq * Dk), 1);
  packed.k = randomValues(static_cast<size_t>(tk * Hk * Dk), 2);
  packed.v = randomValues(static_cast<size_t>(tk * Hk * Dv), 3);
  // Bottom-right aligned causal mask, plus a position-dependent score.
  packed.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n,
                      int64_t m) { return j <= i + m - n; };
  packed.score = [](double s, int64_t b, int64_t h, int64_t i, int64_t j,
                    int64_t,
                    int64_t) { return s - 0.1 * (h + 1) * (i - j) + 0.01 * b; };
  SoftmaxResult whole = referenceSoftmax(packed);

  for (int64_t b = 0; b < packed.B; ++b) {
    int64_t n = packed.cuQ[b + 1] - packed.cuQ[b];
    int64_t m = packed.cuK[b + 1] - packed.cuK[b];
    SoftmaxProblem dense = packed;
    dense.B = 1;
    dense.N = n;
    dense.M = m;
    dense.cuQ.clear();
    dense.cuK.clear();
    dense.q.clear();
    dense.k.clear();
    dense.v.clear();
    // Packed [T, H, D] rows of this sequence, transposed to [1, H, T, D].
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < Dk; ++d)
          dense.q.push_back(packed.q[((packed.cuQ[b] + i) * Hq + h) * Dk + d]);
    for (int64_t g = 0; g < Hk; ++g)
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t d = 0; d < Dk; ++d)
          dense.k.push_back(packed.k[((packed.cuK[b] + j) * Hk + g) * Dk + d]);
        for (int64_t d = 0; d < Dv; ++d)
          dense.v.push_back(packed.v[((packed.cuK[b] + j) * Hk + g) * Dv + d]);
      }
    // The score functor sees b; keep it the packed sequence index.
    dense.score = [&packed, b](double s, int64_t, int64_t h, int64_t i,
                               int64_t j, int64_t n, int64_t m) {
      return packed.score(s, b, h, i, j, n, m);
    };
    SoftmaxResult alone = referenceSoftmax(dense);

    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < n; ++i) {
        int64_t row = packed.cuQ[b] + i;
        double lse = whole.lse[h * tq + row];
        double denseLse = alone.lse[h * n + i];
        if (std::isinf(denseLse))
          EXPECT_EQ(lse, denseLse);
        else
          EXPECT_NEAR(lse, denseLse, 1e-12);
        for (int64_t d = 0; d < Dv; ++d)
          EXPECT_NEAR(whole.o[(row * Hq + h) * Dv + d],
                      alone.o[(h * n + i) * Dv + d], 1e-12);
      }
  }
  // Sequence 1 has keys but no queries; sequence 2 has two queries (rows 3
  // and 4) and no keys, so its rows are empty.
  EXPECT_EQ(whole.lse[0 * tq + 3], -kInf);
  EXPECT_EQ(whole.o[(3 * Hq + 0) * Dv], 0.0);
}

TEST(ReferenceSoftmaxTest, TopkKeepingEveryBlockEqualsSoftmax) {
  SoftmaxProblem p;
  p.B = 2;
  p.Hq = 4;
  p.Hk = 2;
  p.N = 5;
  p.M = 10;
  p.Dk = 3;
  p.Dv = 2;
  p.q = randomValues(2 * 4 * 5 * 3, 4);
  p.k = randomValues(2 * 2 * 10 * 3, 5);
  p.v = randomValues(2 * 2 * 10 * 2, 6);
  p.allowed = [](int64_t, int64_t, int64_t i, int64_t j, int64_t n, int64_t m) {
    return j <= i + m - n;
  };
  SoftmaxResult plain = referenceSoftmax(p);
  p.topkBlockSize = 3; // blocks {0-2}, {3-5}, {6-8}, {9}
  for (int64_t topk : {4, 7}) {
    p.topkBlocks = topk;
    SoftmaxResult selected = referenceSoftmax(p);
    expectNear(selected.o, plain.o, 0);
    expectNear(selected.lse, plain.lse, 0);
  }
}

// Dk = 1, blocks of two keys; v_j = 10^j makes the kept keys readable.
SoftmaxProblem topkProblem(std::vector<double> keys) {
  SoftmaxProblem p;
  p.M = static_cast<int64_t>(keys.size());
  p.q = {1};
  p.k = std::move(keys);
  for (int64_t j = 0; j < p.M; ++j)
    p.v.push_back(std::pow(10.0, double(j)));
  p.scale = 1;
  p.topkBlocks = 1;
  p.topkBlockSize = 2;
  return p;
}

TEST(ReferenceSoftmaxTest, TopkPicksTheBestBlock) {
  // Block 1 has the larger mean key; equal keys inside a block give equal
  // weights.
  SoftmaxProblem p = topkProblem({0, 0, 2, 2});
  expectNear(referenceSoftmax(p).o, {(100 + 1000) / 2.0});

  // The block score ignores score(): negating the scores still keeps block 1,
  // and the keys in it get equal weights.
  p.score = [](double s, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {
    return -s;
  };
  expectNear(referenceSoftmax(p).o, {(100 + 1000) / 2.0});

  // Ties go to the lower block.
  p = topkProblem({1, 1, 1, 1});
  expectNear(referenceSoftmax(p).o, {(1 + 10) / 2.0});

  // The short last block averages over its own length: mean {3} = 3 beats
  // mean {0, 4} = 2 (3 / 2 would not).
  p = topkProblem({0, 4, 3});
  SoftmaxResult r = referenceSoftmax(p);
  expectNear(r.o, {100});
  expectNear(r.lse, {3});

  // A block with no allowed key is not eligible, so block 0 is kept.
  p = topkProblem({0, 0, 2, 2});
  p.allowed = [](int64_t, int64_t, int64_t, int64_t j, int64_t, int64_t) {
    return j < 2;
  };
  expectNear(referenceSoftmax(p).o, {(1 + 10) / 2.0});

  // Only disallowed keys of a kept block drop out: key 3 is masked but block
  // 1 is still kept thanks to key 2.
  p = topkProblem({0, 0, 2, 2});
  p.allowed = [](int64_t, int64_t, int64_t, int64_t j, int64_t, int64_t) {
    return j != 3;
  };
  expectNear(referenceSoftmax(p).o, {100});

  // With nothing eligible the row is empty.
  p.allowed = [](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {
    return false;
  };
  r = referenceSoftmax(p);
  expectNear(r.o, {0});
  expectNear(r.lse, {-kInf});
}

TEST(ReferenceSoftmaxTest, TopkBlockScoreSumsOverTheQueryGroup) {
  // Two query heads share one kv head. Alone, head 0 (q = 1) would prefer
  // block 0 (keys 1), but the group sum 1 * kbar - 3 * kbar favours block 1
  // (keys -1): -2 versus 2. Both heads therefore read block 1.
  SoftmaxProblem p = topkProblem({1, 1, -1, -1});
  p.Hq = 2;
  p.q = {1, -3};
  SoftmaxResult r = referenceSoftmax(p);
  expectNear(r.o, {(100 + 1000) / 2.0, (100 + 1000) / 2.0});

  // Eligibility is per group too: head 0 allows nothing in block 1, but head
  // 1 does, so block 1 stays eligible and head 0's row ends up empty.
  p.allowed = [](int64_t, int64_t h, int64_t, int64_t j, int64_t, int64_t) {
    return h == 1 || j < 2;
  };
  r = referenceSoftmax(p);
  expectNear(r.o, {0, (100 + 1000) / 2.0});
  EXPECT_EQ(r.lse[0], -kInf);
}

//===----------------------------------------------------------------------===//
// Linear family
//===----------------------------------------------------------------------===//

// B = Hq = Hk = 1, T = 3, Dk = 2, Dv = 1.
LinearProblem linearThreeSteps() {
  LinearProblem p;
  p.T = 3;
  p.Dk = 2;
  p.Dv = 1;
  p.q = {1, 0, 0, 1, 1, 1};
  p.k = {1, 2, 3, 4, 5, 6};
  p.v = {1, 10, 100};
  p.scale = 0.5;
  return p;
}

TEST(ReferenceLinearTest, NoGateIsCumulativeSum) {
  LinearResult r = referenceLinear(linearThreeSteps());
  // S_0 = (1, 2)^T, S_1 = S_0 + (30, 40)^T, S_2 = S_1 + (500, 600)^T.
  // o_t = 0.5 * q_t . S_t.
  expectNear(r.o, {0.5 * 1, 0.5 * 42, 0.5 * (531 + 642)});
  expectNear(r.finalState, {531, 642});
}

TEST(ReferenceLinearTest, StronglyNegativeGateForgetsThePast) {
  LinearProblem p = linearThreeSteps();
  p.gate = [](int64_t, int64_t, int64_t, int64_t) { return -1e9; };
  LinearResult r = referenceLinear(p);
  // Only the current step survives: S_t = k_t^T v_t.
  expectNear(r.o, {0.5 * 1, 0.5 * 40, 0.5 * (500 + 600)});
  expectNear(r.finalState, {500, 600});
}

TEST(ReferenceLinearTest, PerKeyDimGateDecaysStateRows) {
  LinearProblem p = linearThreeSteps();
  // Row 0 halves at every step (including the first), row 1 never decays.
  p.gate = [](int64_t, int64_t, int64_t, int64_t d) {
    return d == 0 ? std::log(0.5) : 0.0;
  };
  LinearResult r = referenceLinear(p);
  // Row 0: 1 -> 0.5 + 30 = 30.5 -> 15.25 + 500 = 515.25.
  // Row 1: 2 -> 42 -> 642.
  expectNear(r.o, {0.5 * 1, 0.5 * 42, 0.5 * (515.25 + 642)});
  expectNear(r.finalState, {515.25, 642});

  // The gate is called with the step counted from the sequence start.
  p.gate = [](int64_t, int64_t, int64_t t, int64_t) {
    return t == 2 ? -1e9 : 0.0;
  };
  expectNear(referenceLinear(p).finalState, {500, 600});
}

TEST(ReferenceLinearTest, NonCausalUsesTheFullSum) {
  LinearProblem p = linearThreeSteps();
  p.causal = false;
  LinearResult r = referenceLinear(p);
  expectNear(r.o, {0.5 * 531, 0.5 * 642, 0.5 * (531 + 642)});
  expectNear(r.finalState, {531, 642});
}

TEST(ReferenceLinearTest, FeatureMapAppliesToQueriesAndKeys) {
  LinearProblem p = linearThreeSteps();
  p.T = 1;
  p.q = {1, 2};
  p.k = {3, 4};
  p.v = {2};
  p.scale = 1;
  p.featureMap = [](double x) { return x * x; };
  LinearResult r = referenceLinear(p);
  // S = (9, 16)^T * 2; o = (1, 4) . S.
  expectNear(r.finalState, {18, 32});
  expectNear(r.o, {18 + 4 * 32});
}

TEST(ReferenceLinearTest, InitialStateIsCarriedIntoFinalState) {
  LinearProblem p = linearThreeSteps();
  p.initialState = {1000, 2000};
  LinearResult r = referenceLinear(p);
  expectNear(r.o, {0.5 * 1001, 0.5 * 2042, 0.5 * (1531 + 2642)});
  expectNear(r.finalState, {1531, 2642});

  p.causal = false;
  expectNear(referenceLinear(p).finalState, {1531, 2642});

  // With a forgetting gate the initial state is gone after the first step.
  p.causal = true;
  p.gate = [](int64_t, int64_t, int64_t, int64_t) { return -1e9; };
  expectNear(referenceLinear(p).finalState, {500, 600});
}

// Varlen with an empty sequence equals running each sequence alone, and GQA
// maps query head h to kv head h / G; every query head has its own state.
TEST(ReferenceLinearTest, VarlenAndGroupedHeadsEqualEachSequenceAlone) {
  const int64_t Hq = 4, Hk = 2, Dk = 2, Dv = 3;
  LinearProblem packed;
  packed.B = 3;
  packed.Hq = Hq;
  packed.Hk = Hk;
  packed.Dk = Dk;
  packed.Dv = Dv;
  packed.cu = {0, 2, 2, 5};
  packed.q = randomValues(5 * Hq * Dk, 7);
  packed.k = randomValues(5 * Hk * Dk, 8);
  packed.v = randomValues(5 * Hk * Dv, 9);
  packed.initialState = randomValues(3 * Hq * Dk * Dv, 10);
  packed.scale = 0.7;
  packed.gate = [](int64_t b, int64_t h, int64_t t, int64_t d) {
    return -0.1 * (b + 1) - 0.2 * h - 0.05 * t - 0.3 * d;
  };
  LinearResult whole = referenceLinear(packed);

  for (int64_t b = 0; b < packed.B; ++b) {
    int64_t len = packed.cu[b + 1] - packed.cu[b];
    LinearProblem dense = packed;
    dense.B = 1;
    dense.T = len;
    dense.cu.clear();
    dense.q.clear();
    dense.k.clear();
    dense.v.clear();
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t t = 0; t < len; ++t)
        for (int64_t d = 0; d < Dk; ++d)
          dense.q.push_back(packed.q[((packed.cu[b] + t) * Hq + h) * Dk + d]);
    for (int64_t g = 0; g < Hk; ++g)
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t d = 0; d < Dk; ++d)
          dense.k.push_back(packed.k[((packed.cu[b] + t) * Hk + g) * Dk + d]);
        for (int64_t d = 0; d < Dv; ++d)
          dense.v.push_back(packed.v[((packed.cu[b] + t) * Hk + g) * Dv + d]);
      }
    dense.initialState.assign(packed.initialState.begin() + b * Hq * Dk * Dv,
                              packed.initialState.begin() +
                                  (b + 1) * Hq * Dk * Dv);
    dense.gate = [&packed, b](int64_t, int64_t h, int64_t t, int64_t d) {
      return packed.gate(b, h, t, d);
    };
    LinearResult alone = referenceLinear(dense);

    for (int64_t h = 0; h < Hq; ++h) {
      for (int64_t t = 0; t < len; ++t)
        for (int64_t d = 0; d < Dv; ++d)
          EXPECT_NEAR(whole.o[((packed.cu[b] + t) * Hq + h) * Dv + d],
                      alone.o[(h * len + t) * Dv + d], 1e-12);
      for (int64_t idx = 0; idx < Dk * Dv; ++idx)
        EXPECT_NEAR(whole.finalState[(b * Hq + h) * Dk * Dv + idx],
                    alone.finalState[h * Dk * Dv + idx], 1e-12);
    }
  }
  // The empty sequence hands its initial state straight through.
  for (int64_t idx = 0; idx < Hq * Dk * Dv; ++idx)
    EXPECT_EQ(whole.finalState[Hq * Dk * Dv + idx],
              packed.initialState[Hq * Dk * Dv + idx]);
}

TEST(ReferenceLinearTest, DenseLayoutAndGroupedHeads) {
  // B = 2, Hq = 4, Hk = 2 (G = 2), T = 2, Dk = Dv = 1, q = k = 1, so o is the
  // running sum of v. v[b, g, t] = 100 * b + 10 * g + t + 1 is distinct per
  // sequence, kv head and step; query heads 0, 1 read kv head 0, 2, 3 head 1.
  LinearProblem p;
  p.B = 2;
  p.Hq = 4;
  p.Hk = 2;
  p.T = 2;
  p.q.assign(2 * 4 * 2, 1.0);
  p.k.assign(2 * 2 * 2, 1.0);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t g = 0; g < 2; ++g)
      for (int64_t t = 0; t < 2; ++t)
        p.v.push_back(100.0 * b + 10.0 * g + t + 1);
  LinearResult r = referenceLinear(p);
  std::vector<double> expectedO, expectedState;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 4; ++h) {
      double first = 100.0 * b + 10.0 * (h / 2) + 1;
      expectedO.push_back(first);
      expectedO.push_back(first + first + 1);
      expectedState.push_back(first + first + 1);
    }
  expectNear(r.o, expectedO);
  expectNear(r.finalState, expectedState);
}

} // namespace
