//===- ReferenceOracle.h - Double-precision attention reference -*- C++ -*-===//
//
// The independent oracle that compiled kernels are checked against. It is a
// literal, loop-by-loop transcription of the attention definitions in double
// precision; it shares no code with the compiler and is deliberately naive.
//
// Dense layouts ("bhnd", row-major):
//   q [B, Hq, N, Dk], k [B, Hk, M, Dk], v [B, Hk, M, Dv],
//   o [B, Hq, N, Dv], lse [B, Hq, N].
// Varlen ("packed") layouts, with S = B sequences:
//   q [Tq, Hq, Dk], k [Tk, Hk, Dk], v [Tk, Hk, Dv], o [Tq, Hq, Dv],
//   lse [Hq, Tq]; sequence b covers rows cuQ[b]..cuQ[b+1] (and cuK likewise).
// Grouped-query attention: Hq = G * Hk and query head h reads kv head h / G.
//
// Invalid problems (size mismatches, Hq not a multiple of Hk, bad offsets)
// abort with a message: this is test code and a malformed problem is a bug.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TEST_UNIT_REFERENCEORACLE_H
#define ATTNC_TEST_UNIT_REFERENCEORACLE_H

#include <cstdint>
#include <functional>
#include <vector>

namespace attnc {
namespace oracle {

enum class Normalizer { Softmax, Sigmoid, None };

struct SoftmaxProblem {
  // In varlen mode B is the number of sequences and N/M are unused.
  int64_t B = 1, Hq = 1, Hk = 1, N = 1, M = 1, Dk = 1, Dv = 1;
  std::vector<int64_t> cuQ, cuK; // both empty => dense; else both size B + 1
  std::vector<double> q, k, v;
  double scale = 0; // 0 => 1/sqrt(Dk)
  // score(s, b, h, i, j, n, m): s is the scaled dot product; i, j count from
  // the sequence start; n, m are this sequence's query and key lengths.
  // Empty => s.
  std::function<double(double, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t)>
      score;
  // allowed(b, h, i, j, n, m); empty => every key is allowed.
  std::function<bool(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t)>
      allowed;
  Normalizer normalizer = Normalizer::Softmax;
  // Top-k block selection when topkBlocks > 0 (needs topkBlockSize > 0).
  int64_t topkBlocks = 0, topkBlockSize = 0;
};

struct SoftmaxResult {
  std::vector<double> o;
  // Softmax: log of the sum of exp(score) over allowed keys, -inf for a row
  // with no allowed key (or only -inf scores). Sigmoid and None have no
  // normaliser, so lse is undefined for them and is filled with NaN.
  std::vector<double> lse;
};

/// For each sequence b, query head h and query i, over the keys j of the same
/// sequence with allowed(b, h, i, j, n, m):
///   s_ij = score(scale * dot(q_i, k_j), b, h, i, j, n, m)
///   Softmax: o_i = sum_j softmax(s_i)_j v_j; a row with no allowed key (or
///            only -inf scores) gives o_i = 0 and lse_i = -inf.
///   Sigmoid: o_i = sum_j sigmoid(s_ij) v_j.
///   None:    o_i = sum_j s_ij v_j.
/// Top-k (per b, i and kv head g): split the sequence's keys into blocks of
/// topkBlockSize (the last may be short); block J scores
///   scale * sum over the query heads h of group g of dot(q_{h,i}, mean k_J)
/// (the raw scaled dot, not score()); a block is eligible if some head of the
/// group allows some key in it; the topkBlocks best eligible blocks are kept
/// (ties: lower J first) and only allowed keys in kept blocks take part.
SoftmaxResult referenceSoftmax(const SoftmaxProblem &problem);

/// Names the gate shapes kernels specialise on. The oracle does not need it:
/// LinearProblem::gate is called for every (b, h, t, d) and the kinds differ
/// only in which of those arguments the gate depends on.
enum class GateKind { None, ConstantPerHead, PerHead, PerKeyDim };

struct LinearProblem {
  // In varlen mode B is the number of sequences and T is unused.
  int64_t B = 1, Hq = 1, Hk = 1, T = 1, Dk = 1, Dv = 1;
  // Empty => dense: q [B, Hq, T, Dk], k [B, Hk, T, Dk], v [B, Hk, T, Dv].
  // Else size B + 1: q [T_total, Hq, Dk], k [T_total, Hk, Dk],
  // v [T_total, Hk, Dv]; sequence b covers rows cu[b]..cu[b+1].
  std::vector<int64_t> cu;
  std::vector<double> q, k, v;
  double scale = 1.0;
  // Log-space decay g_t[d] of state row d; t counts from the sequence start.
  // Empty => 0 (no decay). Only meaningful when causal.
  std::function<double(int64_t b, int64_t h, int64_t t, int64_t d)> gate;
  std::function<double(double)> featureMap; // phi, elementwise; empty => id
  bool causal = true;
  // Empty => zeros; else [B, Hq, Dk, Dv] (varlen: one state per sequence).
  std::vector<double> initialState;
};

struct LinearResult {
  std::vector<double> o;          // laid out like q, with Dv for Dk
  std::vector<double> finalState; // [B, Hq, Dk, Dv]
};

/// Per sequence b and query head h (kv head h / G), with S in R^{Dk x Dv}
/// starting at the initial state:
///   causal:     for t = 0..T-1: S = diag(exp(g_t)) S + phi(k_t)^T v_t;
///                               o_t = scale * phi(q_t) S.
///   non-causal: S = S_0 + sum_t phi(k_t)^T v_t; o_t = scale * phi(q_t) S.
/// The final state is S at the end (the initial state for an empty sequence).
LinearResult referenceLinear(const LinearProblem &problem);

} // namespace oracle
} // namespace attnc

#endif // ATTNC_TEST_UNIT_REFERENCEORACLE_H
