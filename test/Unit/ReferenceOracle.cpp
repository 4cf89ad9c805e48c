//===- ReferenceOracle.cpp - Double-precision attention reference ---------===//
//
// Plain loops over the definitions in ReferenceOracle.h. Clarity beats speed
// here: every quantity is recomputed where the definition mentions it.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOracle.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace attnc {
namespace oracle {

namespace {

void require(bool condition, const char *message) {
  if (!condition) {
    std::fprintf(stderr, "ReferenceOracle: invalid problem: %s\n", message);
    std::abort();
  }
}

void checkOffsets(const std::vector<int64_t> &cu, int64_t numSequences,
                  const char *message) {
  require(static_cast<int64_t>(cu.size()) == numSequences + 1, message);
  require(cu[0] == 0, message);
  for (int64_t b = 0; b < numSequences; ++b)
    require(cu[b] <= cu[b + 1], message);
}

size_t toSize(int64_t count) { return static_cast<size_t>(count); }

/// Index arithmetic for the dense and packed softmax layouts.
class SoftmaxLayout {
public:
  explicit SoftmaxLayout(const SoftmaxProblem &p)
      : p(p), varlen(!p.cuQ.empty() || !p.cuK.empty()) {}

  bool isVarlen() const { return varlen; }
  int64_t queryLength(int64_t b) const {
    return varlen ? p.cuQ[b + 1] - p.cuQ[b] : p.N;
  }
  int64_t keyLength(int64_t b) const {
    return varlen ? p.cuK[b + 1] - p.cuK[b] : p.M;
  }
  int64_t totalQueries() const { return varlen ? p.cuQ[p.B] : p.B * p.N; }
  int64_t totalKeys() const { return varlen ? p.cuK[p.B] : p.B * p.M; }

  double q(int64_t b, int64_t h, int64_t i, int64_t d) const {
    return p.q[toSize(queryRow(b, h, i) * p.Dk + d)];
  }
  double k(int64_t b, int64_t g, int64_t j, int64_t d) const {
    return p.k[toSize(keyRow(b, g, j) * p.Dk + d)];
  }
  double v(int64_t b, int64_t g, int64_t j, int64_t d) const {
    return p.v[toSize(keyRow(b, g, j) * p.Dv + d)];
  }
  size_t oIndex(int64_t b, int64_t h, int64_t i, int64_t d) const {
    return toSize(queryRow(b, h, i) * p.Dv + d);
  }
  size_t lseIndex(int64_t b, int64_t h, int64_t i) const {
    return varlen ? toSize(h * p.cuQ[p.B] + p.cuQ[b] + i)
                  : toSize((b * p.Hq + h) * p.N + i);
  }

private:
  // Row of (sequence b, head h, position i) in a [.., Dk] or [.., Dv] tensor.
  int64_t queryRow(int64_t b, int64_t h, int64_t i) const {
    return varlen ? (p.cuQ[b] + i) * p.Hq + h : (b * p.Hq + h) * p.N + i;
  }
  int64_t keyRow(int64_t b, int64_t g, int64_t j) const {
    return varlen ? (p.cuK[b] + j) * p.Hk + g : (b * p.Hk + g) * p.M + j;
  }

  const SoftmaxProblem &p;
  bool varlen;
};

bool isAllowed(const SoftmaxProblem &p, int64_t b, int64_t h, int64_t i,
               int64_t j, int64_t n, int64_t m) {
  return !p.allowed || p.allowed(b, h, i, j, n, m);
}

/// For query i of sequence b and kv head g: which keys lie in a kept block.
std::vector<bool> keysInTopkBlocks(const SoftmaxProblem &p,
                                   const SoftmaxLayout &layout, double scale,
                                   int64_t b, int64_t g, int64_t i, int64_t n,
                                   int64_t m) {
  int64_t groupSize = p.Hq / p.Hk;
  int64_t blockSize = p.topkBlockSize;
  int64_t numBlocks = (m + blockSize - 1) / blockSize;
  std::vector<double> blockScore(toSize(numBlocks), 0.0);
  std::vector<int64_t> eligible;
  for (int64_t block = 0; block < numBlocks; ++block) {
    int64_t begin = block * blockSize;
    int64_t end = std::min(m, begin + blockSize);

    std::vector<double> meanKey(toSize(p.Dk), 0.0);
    for (int64_t j = begin; j < end; ++j)
      for (int64_t d = 0; d < p.Dk; ++d)
        meanKey[toSize(d)] += layout.k(b, g, j, d);
    for (int64_t d = 0; d < p.Dk; ++d)
      meanKey[toSize(d)] /= static_cast<double>(end - begin);

    double sum = 0;
    for (int64_t h = g * groupSize; h < (g + 1) * groupSize; ++h)
      for (int64_t d = 0; d < p.Dk; ++d)
        sum += layout.q(b, h, i, d) * meanKey[toSize(d)];
    blockScore[toSize(block)] = scale * sum;

    bool isEligible = false;
    for (int64_t h = g * groupSize; h < (g + 1) * groupSize; ++h)
      for (int64_t j = begin; j < end; ++j)
        if (isAllowed(p, b, h, i, j, n, m))
          isEligible = true;
    if (isEligible)
      eligible.push_back(block);
  }

  // Stable sort keeps ascending block order among equal scores.
  std::stable_sort(eligible.begin(), eligible.end(),
                   [&](int64_t lhs, int64_t rhs) {
                     return blockScore[toSize(lhs)] > blockScore[toSize(rhs)];
                   });
  if (static_cast<int64_t>(eligible.size()) > p.topkBlocks)
    eligible.resize(toSize(p.topkBlocks));

  std::vector<bool> kept(toSize(m), false);
  for (int64_t block : eligible)
    for (int64_t j = block * blockSize;
         j < std::min(m, (block + 1) * blockSize); ++j)
      kept[toSize(j)] = true;
  return kept;
}

} // namespace

SoftmaxResult referenceSoftmax(const SoftmaxProblem &p) {
  require(p.B >= 0 && p.N >= 0 && p.M >= 0, "negative size");
  require(p.Hk >= 1 && p.Hq >= 1 && p.Hq % p.Hk == 0,
          "Hq must be a positive multiple of Hk");
  require(p.Dk >= 1 && p.Dv >= 1, "Dk and Dv must be positive");
  require(p.topkBlocks <= 0 || p.topkBlockSize > 0,
          "top-k selection needs topkBlockSize > 0");
  SoftmaxLayout layout(p);
  if (layout.isVarlen()) {
    checkOffsets(p.cuQ, p.B,
                 "cuQ must have B + 1 non-decreasing offsets "
                 "starting at 0");
    checkOffsets(p.cuK, p.B,
                 "cuK must have B + 1 non-decreasing offsets "
                 "starting at 0");
  }
  int64_t kvRows = layout.totalKeys() * p.Hk;
  int64_t queryRows = layout.totalQueries() * p.Hq;
  require(static_cast<int64_t>(p.q.size()) == queryRows * p.Dk,
          "q has the wrong size");
  require(static_cast<int64_t>(p.k.size()) == kvRows * p.Dk,
          "k has the wrong size");
  require(static_cast<int64_t>(p.v.size()) == kvRows * p.Dv,
          "v has the wrong size");

  double scale = p.scale != 0 ? p.scale : 1.0 / std::sqrt(double(p.Dk));
  int64_t groupSize = p.Hq / p.Hk;
  const double negInf = -std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();

  SoftmaxResult result;
  result.o.assign(toSize(queryRows * p.Dv), 0.0);
  result.lse.assign(toSize(queryRows), 0.0);

  for (int64_t b = 0; b < p.B; ++b) {
    int64_t n = layout.queryLength(b);
    int64_t m = layout.keyLength(b);
    for (int64_t h = 0; h < p.Hq; ++h) {
      int64_t g = h / groupSize;
      for (int64_t i = 0; i < n; ++i) {
        std::vector<bool> inKeptBlock(toSize(m), true);
        if (p.topkBlocks > 0)
          inKeptBlock = keysInTopkBlocks(p, layout, scale, b, g, i, n, m);

        // Scores of the keys that take part in this row.
        std::vector<int64_t> keys;
        std::vector<double> scores;
        for (int64_t j = 0; j < m; ++j) {
          if (!inKeptBlock[toSize(j)] || !isAllowed(p, b, h, i, j, n, m))
            continue;
          double dot = 0;
          for (int64_t d = 0; d < p.Dk; ++d)
            dot += layout.q(b, h, i, d) * layout.k(b, g, j, d);
          double s = scale * dot;
          if (p.score)
            s = p.score(s, b, h, i, j, n, m);
          keys.push_back(j);
          scores.push_back(s);
        }

        // Weight of each participating key; o_i = sum of weight * v_j.
        std::vector<double> weights(scores.size(), 0.0);
        double &lse = result.lse[layout.lseIndex(b, h, i)];
        switch (p.normalizer) {
        case Normalizer::Softmax: {
          double maxScore = negInf;
          for (double s : scores)
            maxScore = std::max(maxScore, s);
          // No key, or only -inf scores: the sum of exponentials is 0. Leave
          // o at 0 instead of dividing 0 by 0.
          if (maxScore == negInf) {
            lse = negInf;
            break;
          }
          double sum = 0;
          for (double s : scores)
            sum += std::exp(s - maxScore);
          for (size_t idx = 0; idx < scores.size(); ++idx)
            weights[idx] = std::exp(scores[idx] - maxScore) / sum;
          lse = maxScore + std::log(sum);
          break;
        }
        case Normalizer::Sigmoid:
          for (size_t idx = 0; idx < scores.size(); ++idx)
            weights[idx] = 1.0 / (1.0 + std::exp(-scores[idx]));
          lse = nan;
          break;
        case Normalizer::None:
          weights = scores;
          lse = nan;
          break;
        }

        for (size_t idx = 0; idx < keys.size(); ++idx)
          for (int64_t d = 0; d < p.Dv; ++d)
            result.o[layout.oIndex(b, h, i, d)] +=
                weights[idx] * layout.v(b, g, keys[idx], d);
      }
    }
  }
  return result;
}

LinearResult referenceLinear(const LinearProblem &p) {
  require(p.B >= 0 && p.T >= 0, "negative size");
  require(p.Hk >= 1 && p.Hq >= 1 && p.Hq % p.Hk == 0,
          "Hq must be a positive multiple of Hk");
  require(p.Dk >= 1 && p.Dv >= 1, "Dk and Dv must be positive");
  require(p.causal || !p.gate, "a gate is only defined for causal attention");
  bool varlen = !p.cu.empty();
  if (varlen)
    checkOffsets(p.cu, p.B,
                 "cu must have B + 1 non-decreasing offsets starting at 0");
  int64_t totalSteps = varlen ? p.cu[p.B] : p.B * p.T;
  require(static_cast<int64_t>(p.q.size()) == totalSteps * p.Hq * p.Dk,
          "q has the wrong size");
  require(static_cast<int64_t>(p.k.size()) == totalSteps * p.Hk * p.Dk,
          "k has the wrong size");
  require(static_cast<int64_t>(p.v.size()) == totalSteps * p.Hk * p.Dv,
          "v has the wrong size");
  int64_t stateSize = p.B * p.Hq * p.Dk * p.Dv;
  require(p.initialState.empty() ||
              static_cast<int64_t>(p.initialState.size()) == stateSize,
          "initialState has the wrong size");

  int64_t groupSize = p.Hq / p.Hk;
  // Row of (sequence b, head h, step t) in a [.., Dk] or [.., Dv] tensor.
  auto qRow = [&](int64_t b, int64_t h, int64_t t) {
    return varlen ? (p.cu[b] + t) * p.Hq + h : (b * p.Hq + h) * p.T + t;
  };
  auto kvRow = [&](int64_t b, int64_t g, int64_t t) {
    return varlen ? (p.cu[b] + t) * p.Hk + g : (b * p.Hk + g) * p.T + t;
  };
  auto phi = [&](double x) { return p.featureMap ? p.featureMap(x) : x; };
  auto q = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
    return p.q[toSize(qRow(b, h, t) * p.Dk + d)];
  };
  auto k = [&](int64_t b, int64_t g, int64_t t, int64_t d) {
    return p.k[toSize(kvRow(b, g, t) * p.Dk + d)];
  };
  auto v = [&](int64_t b, int64_t g, int64_t t, int64_t d) {
    return p.v[toSize(kvRow(b, g, t) * p.Dv + d)];
  };

  LinearResult result;
  result.o.assign(toSize(totalSteps * p.Hq * p.Dv), 0.0);
  result.finalState.assign(toSize(stateSize), 0.0);

  // o_t = scale * phi(q_t) S.
  auto writeOutput = [&](int64_t b, int64_t h, int64_t t,
                         const std::vector<double> &state) {
    for (int64_t c = 0; c < p.Dv; ++c) {
      double sum = 0;
      for (int64_t a = 0; a < p.Dk; ++a)
        sum += phi(q(b, h, t, a)) * state[toSize(a * p.Dv + c)];
      result.o[toSize(qRow(b, h, t) * p.Dv + c)] = p.scale * sum;
    }
  };

  for (int64_t b = 0; b < p.B; ++b) {
    int64_t length = varlen ? p.cu[b + 1] - p.cu[b] : p.T;
    for (int64_t h = 0; h < p.Hq; ++h) {
      int64_t g = h / groupSize;
      size_t stateOffset = toSize((b * p.Hq + h) * p.Dk * p.Dv);
      std::vector<double> state(toSize(p.Dk * p.Dv), 0.0);
      if (!p.initialState.empty())
        for (size_t idx = 0; idx < state.size(); ++idx)
          state[idx] = p.initialState[stateOffset + idx];

      if (p.causal) {
        for (int64_t t = 0; t < length; ++t) {
          // S = diag(exp(g_t)) S + phi(k_t)^T v_t
          for (int64_t a = 0; a < p.Dk; ++a) {
            double decay = p.gate ? std::exp(p.gate(b, h, t, a)) : 1.0;
            for (int64_t c = 0; c < p.Dv; ++c) {
              double &entry = state[toSize(a * p.Dv + c)];
              entry = decay * entry + phi(k(b, g, t, a)) * v(b, g, t, c);
            }
          }
          writeOutput(b, h, t, state);
        }
      } else {
        for (int64_t t = 0; t < length; ++t)
          for (int64_t a = 0; a < p.Dk; ++a)
            for (int64_t c = 0; c < p.Dv; ++c)
              state[toSize(a * p.Dv + c)] += phi(k(b, g, t, a)) * v(b, g, t, c);
        for (int64_t t = 0; t < length; ++t)
          writeOutput(b, h, t, state);
      }

      for (size_t idx = 0; idx < state.size(); ++idx)
        result.finalState[stateOffset + idx] = state[idx];
    }
  }
  return result;
}

} // namespace oracle
} // namespace attnc
