//===- TiledSoftmaxTest.cpp - attn-tile-softmax against the reference -----===//
//
// Every spec below runs through the tiled path (several tile shapes) and the
// reference lowering on the same seeded inputs, over lengths that are 1,
// primes, non-multiples of the tiles, N < M and N > M (rows with no allowed
// key), GQA and packed varlen with empty sequences. Both accumulate in f32 in
// a different order: f32 outputs must agree within atol 2e-5 + rtol 2e-4,
// f16/bf16 outputs within one rounding (the per-dtype tolerances of
// SpecRunner.h).
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

using namespace attnc;
using namespace attnc::testing;

namespace {

struct SweepSpec {
  const char *name;
  std::string text;
  ElementType type;
  bool packed = false;
};

/// [B, H, N, D] inputs for q, k, v plus the extra tensors a spec reads.
std::map<std::string, HostTensor> makeInputs(const SweepSpec &spec, int64_t n,
                                             int64_t m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, HostTensor> inputs;
  const int64_t B = 2, Hq = 4, Hk = 2, D = 16;
  if (spec.packed) {
    // n + m tokens split into 3 sequences; one of them is forced empty.
    int64_t total = n + m;
    std::vector<int64_t> offsets = randomOffsets(3, total, rng);
    offsets.insert(offsets.begin() + 1, 0);
    inputs["q"] = randomTensor(spec.type, {total, Hq, D}, rng, -1, 1);
    inputs["k"] = randomTensor(spec.type, {total, Hk, D}, rng, -1, 1);
    inputs["v"] = randomTensor(spec.type, {total, Hk, D}, rng, -1, 1);
    inputs["cu"] = offsetsTensor(offsets);
    return inputs;
  }
  bool flashLayout = spec.text.find("bnhd") != std::string::npos;
  auto shape = [&](int64_t heads, int64_t length) {
    return flashLayout ? std::vector<int64_t>{B, length, heads, D}
                       : std::vector<int64_t>{B, heads, length, D};
  };
  inputs["q"] = randomTensor(spec.type, shape(Hq, n), rng, -2, 2);
  inputs["k"] = randomTensor(spec.type, shape(Hk, m), rng, -2, 2);
  inputs["v"] = randomTensor(spec.type, shape(Hk, m), rng, -1, 1);
  if (spec.text.find("slope:") != std::string::npos)
    inputs["slope"] = randomTensor(ElementType::F32, {Hq}, rng, 0, 1);
  auto ceilDiv = [](int64_t x, int64_t y) { return (x + y - 1) / y; };
  if (spec.text.find("blocks:") != std::string::npos) {
    HostTensor blocks(ElementType::Bool, {B, Hq, ceilDiv(n, 4), ceilDiv(m, 3)});
    std::bernoulli_distribution present(0.6);
    for (int64_t index = 0; index < blocks.numElements(); ++index)
      blocks.set(index, present(rng));
    inputs["blocks"] = std::move(blocks);
  }
  if (spec.text.find("counts:") != std::string::npos) {
    // Counts up to the list width, entries that repeat (visited once);
    // out-of-range values are errors (BadInputTest).
    const int64_t width = 3, queryBlocks = ceilDiv(n, 4),
                  keyBlocks = ceilDiv(m, 5);
    HostTensor counts(ElementType::I32, {B, Hq, queryBlocks});
    HostTensor lists(ElementType::I32, {B, Hq, queryBlocks, width});
    std::uniform_int_distribution<int64_t> count(0, keyBlocks ? width : 0),
        block(0, std::max<int64_t>(keyBlocks - 1, 0));
    for (int64_t index = 0; index < counts.numElements(); ++index)
      counts.set(index, static_cast<double>(count(rng)));
    for (int64_t index = 0; index < lists.numElements(); ++index)
      lists.set(index, static_cast<double>(block(rng)));
    inputs["counts"] = std::move(counts);
    inputs["lists"] = std::move(lists);
  }
  if (spec.text.find("doc:") != std::string::npos) {
    // Document ids that only grow along the sequence (packed documents).
    HostTensor doc(ElementType::I32, {B, n});
    std::uniform_int_distribution<int> step(0, 3);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0, id = 0; i < n; ++i) {
        id += step(rng) == 0;
        doc.set(b * n + i, static_cast<double>(id));
      }
    inputs["doc"] = std::move(doc);
  }
  return inputs;
}

const std::string kHeader =
    "kernel t(q: f32[B, Hq, N, 16], k: f32[B, Hk, M, 16], v: f32[B, Hk, M, 16]";

std::vector<SweepSpec> sweepSpecs() {
  auto dense = [](const std::string &extra, const std::string &results,
                  const std::string &body) {
    return kHeader + extra + ") -> (" + results + ") {\n  " + body + "\n}";
  };
  const std::string o = "o: f32[B, Hq, N, 16]";
  const std::string oLse = o + ", lse: f32[B, Hq, N]";
  return {
      {"causal+lse", dense("", oLse, "o, lse = softmax(q, k, v) { mask = causal }"),
       ElementType::F32},
      {"dense", dense("", oLse, "o, lse = softmax(q, k, v)"), ElementType::F32},
      {"window", dense("", o, "o = softmax(q, k, v) { mask = j <= i && i - j < 7 }"),
       ElementType::F32},
      {"bottom-right window",
       dense("", oLse, "o, lse = softmax(q, k, v) { mask = causal && j > i + (m - n) - 5 }"),
       ElementType::F32},
      {"anti-causal", dense("", o, "o = softmax(q, k, v) { mask = j >= i }"),
       ElementType::F32},
      {"alibi",
       dense(", slope: f32[Hq]", oLse,
             "o, lse = softmax(q, k, v) { score = s - slope[h] * (i - j); mask = causal }"),
       ElementType::F32},
      {"chunk causal", dense("", o, "o = softmax(q, k, v) { mask = i / 5 == j / 5 && j <= i }"),
       ElementType::F32},
      {"chunk", dense("", oLse, "o, lse = softmax(q, k, v) { chunk = 6 }"),
       ElementType::F32},
      {"document mask",
       dense(", doc: i32[B, N]", o,
             "o = softmax(q, k, v) { mask = doc[b, i] == doc[b, j] && causal }"),
       ElementType::F32},
      // Rows with no allowed key inside visited tiles (the mask is no band).
      {"keyless rows",
       dense("", oLse, "o, lse = softmax(q, k, v) { mask = i % 3 != 1 && j <= i }"),
       ElementType::F32},
      {"sigmoid", dense("", o, "o = softmax(q, k, v) { normalizer = sigmoid; mask = causal }"),
       ElementType::F32},
      {"none", dense("", o,
                     "o = softmax(q, k, v) { normalizer = none; mask = i - j < 3 && j <= i; scale = 0.25 }"),
       ElementType::F32},
      {"block mask",
       dense(", blocks: bool[B, Hq, QB, KB]", oLse,
             "o, lse = softmax(q, k, v) { mask = blocks[b, h, i / 4, j / 3] && causal }"),
       ElementType::F32},
      {"block lists",
       dense(", counts: i32[B, Hq, QB], lists: i32[B, Hq, QB, W]", o,
             "o = softmax(q, k, v) { block_q = 4; block_k = 5; kv_num_blocks = counts; "
             "kv_indices = lists; mask = j <= i + 20 }"),
       ElementType::F32},
      {"top-k causal",
       dense("", oLse, "o, lse = softmax(q, k, v) { select = topk(2, block = 4); mask = causal }"),
       ElementType::F32},
      {"top-k all keys", dense("", o, "o = softmax(q, k, v) { select = topk(3, block = 5) }"),
       ElementType::F32},
      {"top-k documents",
       dense(", doc: i32[B, N]", o,
             "o = softmax(q, k, v) { select = topk(2, block = 3); mask = doc[b, i] == doc[b, j] && j <= i }"),
       ElementType::F32},
      {"top-k sigmoid window",
       dense("", o,
             "o = softmax(q, k, v) { select = topk(2, block = 4); normalizer = sigmoid; "
             "mask = j <= i && i - j < 9 }"),
       ElementType::F32},
      {"top-k unnormalized",
       dense("", o,
             "o = softmax(q, k, v) { select = topk(3, block = 2); normalizer = none; "
             "mask = causal }"),
       ElementType::F32},
      {"softcap bf16",
       "kernel t(q: bf16[B, N, Hq, 16], k: bf16[B, M, Hk, 16], v: bf16[B, M, Hk, 16])"
       " -> (o: bf16[B, N, Hq, 16]) {\n  o = softmax(q, k, v, layout = bnhd) "
       "{ score = 5 * tanh(s / 5); mask = causal }\n}",
       ElementType::BF16},
      {"top-k varlen",
       "kernel t(q: f32[T, Hq, 16], k: f32[T, Hk, 16], v: f32[T, Hk, 16], cu: i32[S1])"
       " -> (o: f32[T, Hq, 16]) {\n  o = softmax(q, k, v, layout = thd, cu_seqlens = cu) "
       "{ select = topk(2, block = 4); mask = causal }\n}",
       ElementType::F32, /*packed=*/true},
      {"varlen",
       "kernel t(q: f32[T, Hq, 16], k: f32[T, Hk, 16], v: f32[T, Hk, 16], cu: i32[S1])"
       " -> (o: f32[T, Hq, 16], lse: f32[Hq, T]) {\n  o, lse = softmax(q, k, v, "
       "layout = thd, cu_seqlens = cu) { mask = causal }\n}",
       ElementType::F32, /*packed=*/true},
  };
}

TEST(TiledSoftmax, MatchesReferenceOverShapesAndTiles) {
  const std::pair<int64_t, int64_t> lengths[] = {{1, 1},   {7, 7},   {13, 29},
                                                 {29, 13}, {64, 64}, {65, 70}};
  const std::pair<int64_t, int64_t> tiles[] = {{4, 3}, {16, 16}, {64, 64}};
  for (const SweepSpec &spec : sweepSpecs()) {
    SpecRunner reference(spec.text);
    ASSERT_TRUE(reference.ok()) << spec.name << ": " << reference.compileError;
    for (auto [blockQ, blockK] : tiles) {
      SpecRunner tiled(spec.text, CpuOptions{CpuPath::Tiled, blockQ, blockK});
      ASSERT_TRUE(tiled.ok()) << spec.name << ": " << tiled.compileError;
      for (auto [n, m] : lengths) {
        bool square = spec.text.find("doc:") != std::string::npos;
        if (square && n != m)
          continue;
        uint64_t seed = static_cast<uint64_t>(n * 1000 + m * 10 + blockQ);
        std::map<std::string, HostTensor> inputs = makeInputs(spec, n, m, seed);
        expectSameOutputs(reference, tiled, inputs,
                          std::string(spec.name) + ", seed " +
                              std::to_string(seed) + ", N=" + std::to_string(n) +
                              " M=" + std::to_string(m) + ", tiles " +
                              std::to_string(blockQ) + "x" + std::to_string(blockK));
      }
    }
  }
}

// Keys that repeat every block give every block the same score: each row
// keeps the lowest `topk` blocks, so top-k equals attention over their keys.
TEST(TiledSoftmax, TopkTiesKeepTheLowerBlocks) {
  const std::string o = "o: f32[B, Hq, N, 16]";
  auto spec = [&](const std::string &options) {
    return kHeader + ") -> (" + o + ") {\n  o = softmax(q, k, v) { " + options +
           " }\n}";
  };
  SpecRunner firstBlocks(spec("mask = j < 8"));
  ASSERT_TRUE(firstBlocks.ok()) << firstBlocks.compileError;
  const std::pair<int64_t, int64_t> tiles[] = {{4, 3}, {64, 64}};
  for (auto [blockQ, blockK] : tiles) {
    SpecRunner topk(spec("select = topk(2, block = 4)"),
                    CpuOptions{CpuPath::Tiled, blockQ, blockK});
    ASSERT_TRUE(topk.ok()) << topk.compileError;
    const uint64_t seed = 77;
    SweepSpec shapes{"ties", "", ElementType::F32};
    std::map<std::string, HostTensor> inputs = makeInputs(shapes, 9, 24, seed);
    // k[b, h, j, d] = k[b, h, j % 4, d]
    HostTensor &k = inputs["k"];
    const int64_t keys = 24, dim = 16;
    for (int64_t index = 0; index < k.numElements(); ++index) {
      int64_t j = index / dim % keys;
      k.set(index, k.get(index - (j - j % 4) * dim));
    }
    expectSameOutputs(firstBlocks, topk, inputs,
                      "ties, seed " + std::to_string(seed) + ", tiles " +
                          std::to_string(blockQ) + "x" +
                          std::to_string(blockK));
  }
}

// Block numbers are exact in f32 tiles up to 2^24: one block more is a clear
// run-time error, not a wrong selection.
TEST(TiledSoftmax, TopkReportsMoreBlocksThanItNumbers) {
  SpecRunner topk("kernel t(q: f32[1, 1, 1, 1], k: f32[1, 1, M, 1], "
                  "v: f32[1, 1, M, 1]) -> (o: f32[1, 1, 1, 1]) {\n"
                  "  o = softmax(q, k, v) { select = topk(1, block = 1) }\n}",
                  CpuOptions{CpuPath::Tiled});
  ASSERT_TRUE(topk.ok()) << topk.compileError;
  const int64_t keys = (int64_t(1) << 24) + 1;
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = HostTensor(ElementType::F32, {1, 1, 1, 1});
  inputs["k"] = HostTensor(ElementType::F32, {1, 1, keys, 1});
  inputs["v"] = HostTensor(ElementType::F32, {1, 1, keys, 1});
  std::vector<HostTensor> outputs;
  std::string error;
  EXPECT_FALSE(topk.run(inputs, outputs, error));
  EXPECT_EQ(error, "'k' has a sequence of 16777217 keys: more than the "
                   "16777216 blocks of 1 that top-k selection handles");
}

} // namespace

#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

namespace {

std::string describeMask(const std::string &mask) {
  SpecRunner runner(kHeader + ") -> (o: f32[B, Hq, N, 16]) {\n  o = softmax(q, k, v) { " +
                    mask + " }\n}");
  EXPECT_TRUE(runner.module) << mask;
  if (!runner.module)
    return "";
  std::string description;
  runner.module->walk([&](attnc::attn::SoftmaxOp op) {
    description = analyzeMask(op.getMask()).describe();
  });
  return description;
}

TEST(MaskStructure, ReadsBandsFromMasks) {
  EXPECT_EQ(describeMask(""), "exact");
  EXPECT_EQ(describeMask("mask = causal"), "j - i <= m - n, exact");
  EXPECT_EQ(describeMask("mask = j <= i && i - j < 4096"),
            "j - i <= 0, j - i >= -4095, exact");
  EXPECT_EQ(describeMask("mask = j + 1 <= i"), "j - i <= -1, exact");
  EXPECT_EQ(describeMask("mask = i == j"), "j - i <= 0, j - i >= 0, exact");
  EXPECT_EQ(describeMask("mask = causal && j > i + (m - n) - 5"),
            "j - i <= m - n, j - i >= m - n - 4, exact");
  // Not a band: the analysis keeps what it understood and says inexact.
  EXPECT_EQ(describeMask("mask = causal && (i + j) / 2 < 9"),
            "j - i <= m - n, inexact");
  EXPECT_EQ(describeMask("mask = i - j != 3"), "inexact");
  EXPECT_EQ(describeMask("mask = 2 * j <= i"), "inexact");
}

} // namespace
