//===- GpuEmulationTest.cpp - Softmax kernels on the warp emulator ----------===//
//
// The softmax kernels of every GPU strategy (attn-gpu-tile-softmax with its
// schedules, wgmma, warp specialisation, key splits, packed GQA, and the
// kernels from tile programs), run by the warp emulator against the CPU
// reference over shapes that are not multiples of the tiles.
//
//===----------------------------------------------------------------------===//

#include "GpuTestSupport.h"

#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"

#include <gtest/gtest.h>

#include <random>

using namespace attnc;
using namespace attnc::testing;

namespace {

// The GPU tile program, run by the warp emulator (one thread per GPU
// thread, ldmatrix/mma/shuffles from the fragment layouts), against the CPU
// reference: catches indexing, fragment, masking and online-softmax errors
// of the GPU strategy without a GPU. Small shapes (the emulator is slow)
// that still cover 1, non-multiples of the 64-row and 16/64-key tiles,
// N < M and N > M (causal rows with no key), GQA, two key blocks in
// flight (the double buffer), full and partial blocks, and head dims 16,
// 64, 128 and 256 (an odd number of 16-column steps for 48; at 256 the key
// tile shrinks to 32 keys to stay within sm_80's shared memory). Warps of 32
// rows (two mma row tiles; 128-row CTAs) run the same cases, with Q kept in
// registers up to head dim 64 and reloaded from shared memory beyond; 200
// rows end inside the second row tile of a warp of the second CTA. So do
// the kernels built from the tile programs (attn-tile-to-nvgpu).
TEST(GpuEmulation, TileProgramMatchesTheReference) {
  struct Case {
    const char *name;
    std::string spec;
    int d;
    int64_t blockK;
  };
  std::vector<Case> cases = {
      {"dense_d64", denseSpec(64, ""), 64, 64},
      {"causal_d64_k16", denseSpec(64, " mask = causal "), 64, 16},
      {"causal_d48", denseSpec(48, " mask = causal "), 48, 32},
      {"causal_d128", denseSpec(128, " mask = causal "), 128, 64},
      {"causal_d256", denseSpec(256, " mask = causal "), 256, 64},
      {"window_softcap_d16",
       denseSpec(16, " score = 30 * tanh(s / 30)\n mask = causal && i - j < 40 "),
       16, 16},
      {"alibi_d64",
       denseSpec(64, " score = s - slope[h] * (i - j)\n mask = causal ",
                 ", slope: f32[Hq]"),
       64, 32},
      {"chunk_d32", denseSpec(32, " mask = i / 32 == j / 32 "), 32, 16},
  };
  std::vector<std::pair<int64_t, int64_t>> lengths = {
      {1, 1}, {17, 70}, {70, 17}, {130, 130}, {200, 90}};
  const uint64_t seed = 42;
  for (const Case &c : cases) {
    SpecRunner reference(c.spec);
    ASSERT_TRUE(reference.ok()) << c.name << ": " << reference.compileError;
    for (const SoftmaxStrategy &strategy : softmaxStrategies()) {
      GpuPipelineOptions options = strategy.options;
      options.blockK = c.blockK;
      // The tile program's key tile is fixed before the GPU lowering,
      // which refuses rather than halves it.
      if (options.fromTileProgram && c.d == 256)
        options.blockK = 32;
      std::string config = std::string(c.name) + " " + strategy.name;
      std::string error;
      std::unique_ptr<EmulatedGpuKernel> kernel =
          strategy.compile(reference, options, error);
      ASSERT_TRUE(kernel) << config << ": " << error;
      // Q (4 warps x rows-per-warp rows) x 264 and two stages of K and V
      // at 32 x 264 (sm_80's budget); wgmma's unpadded tiles at 64 keys
      // fit sm_90a's: Q (warps x 16 rows) x 256, K and V 2 x 64 x 256
      // (and 8 mbarriers when warp-specialised).
      if (c.d == 256 && options.mma == "sync")
        EXPECT_EQ(kernel->image().sharedBytes,
                  33792 * options.rowsPerWarp / 16 + 4 * 16896);
      if (c.d == 256 && options.mma == "wgmma")
        EXPECT_EQ(kernel->image().sharedBytes,
                  options.warps * 16 * 512 + 4 * 32768 +
                      (options.warpSpecialize ? 64 : 0));
      for (auto [n, m] : lengths) {
        std::string what = config + " N=" + std::to_string(n) +
                           " M=" + std::to_string(m) + " (seed " +
                           std::to_string(seed) + ")";
        std::map<std::string, HostTensor> inputs =
            gqaInputs(c.spec, 1, n, m, c.d, seed + n * 131 + m);
        strategy.expectMatches(reference, *kernel, inputs, what);
      }
    }
  }
}

TEST(GpuEmulation, VarlenWithEmptySequencesAndBadOffsets) {
  std::string spec = readFile(ATTNC_EXAMPLES_DIR "/varlen_causal.attn");
  SpecRunner reference(spec);
  ASSERT_TRUE(reference.ok()) << reference.compileError;
  for (const SoftmaxStrategy &strategy : softmaxStrategies()) {
    SCOPED_TRACE(strategy.name);
    std::string error;
    std::unique_ptr<EmulatedGpuKernel> kernel =
        strategy.compile(reference, error);
    ASSERT_TRUE(kernel) << error;
    std::vector<int64_t> offsets = {0, 0, 37, 37, 150, 161};
    int64_t total = offsets.back();
    std::map<std::string, HostTensor> inputs =
        varlenInputs(offsets, 2, /*seed=*/3);
    strategy.expectMatches(reference, *kernel, inputs, "varlen (seed 3)");

    // Offsets the host cannot see: found by the kernel and reported.
    inputs["cu"] = offsetsTensor({0, 100, total + 5});
    expectEmulatorFails(*kernel, inputs,
                        {"'cu' gives sequence 1 the tokens [100, 166)"},
                        "bad offsets");
  }
}

// 1-D integer inputs that are not cu_seqlens (document ids of different
// lengths for queries and keys) are not checked as sequence offsets by any
// strategy's launcher, and the kernels match the reference.
TEST(GpuEmulation, DocumentIdsAreNotSequenceOffsets) {
  SpecRunner reference(R"(
kernel documents(q: bf16[B, H, N, 64], k: bf16[B, H, M, 64], v: bf16[B, H, M, 64],
                 docq: i32[N], dock: i32[M]) -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { mask = docq[i] == dock[j] }
})");
  ASSERT_TRUE(reference.ok()) << reference.compileError;
  std::mt19937_64 rng(17);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::BF16, {1, 2, 70, 64}, rng, -2, 2);
  inputs["k"] = randomTensor(ElementType::BF16, {1, 2, 90, 64}, rng, -2, 2);
  inputs["v"] = randomTensor(ElementType::BF16, {1, 2, 90, 64}, rng, -1, 1);
  // Document d holds queries [25 d, 25 d + 25) and keys [30 d, 30 d + 30);
  // query document 2 is cut short, so its last rows see document 2's keys.
  std::vector<int64_t> docq(70), dock(90);
  for (int64_t i = 0; i < 70; ++i)
    docq[i] = i / 25;
  for (int64_t j = 0; j < 90; ++j)
    dock[j] = j / 30;
  inputs["docq"] = offsetsTensor(docq);
  inputs["dock"] = offsetsTensor(dock);
  for (const SoftmaxStrategy &strategy : softmaxStrategies()) {
    SCOPED_TRACE(strategy.name);
    std::string error;
    std::unique_ptr<EmulatedGpuKernel> kernel =
        strategy.compile(reference, error);
    ASSERT_TRUE(kernel) << error;
    EXPECT_TRUE(kernel->image().offsetParams.empty());
    strategy.expectMatches(reference, *kernel, inputs, "documents (seed 17)");
  }
}

// Block-sparse kernels on the warp emulator: the CTA tile is the sparsity
// block; only blocks the mask marks (or the lists name: repeats once, and
// entries outside the band or past the count skipped) are visited. The
// wgmma kernel needs whole warpgroups, so it runs blocks of 64 query rows.
// With key splits, each split visits the marked or listed blocks inside it.
/// Random block lists for one batch entry: `counts` [1, heads, queryBlocks]
/// in [0, maxCount] and `indices` [1, heads, queryBlocks, width] in
/// [0, maxBlock].
void addBlockLists(std::map<std::string, HostTensor> &inputs,
                   std::mt19937_64 &rng, int64_t heads, int64_t queryBlocks,
                   int64_t width, int64_t maxCount, int64_t maxBlock) {
  HostTensor counts(ElementType::I32, {1, heads, queryBlocks});
  HostTensor indices(ElementType::I32, {1, heads, queryBlocks, width});
  std::uniform_int_distribution<int64_t> count(0, maxCount);
  std::uniform_int_distribution<int64_t> block(0, maxBlock);
  for (int64_t i = 0; i < counts.numElements(); ++i)
    counts.set(i, count(rng));
  for (int64_t i = 0; i < indices.numElements(); ++i)
    indices.set(i, block(rng));
  inputs["counts"] = std::move(counts);
  inputs["indices"] = std::move(indices);
}

TEST(GpuEmulation, BlockSparseMatchesTheReference) {
  auto maskSpec = [](int64_t blockQ) {
    return R"(
kernel masked(q: bf16[B, H, N, 64], k: bf16[B, H, M, 64], v: bf16[B, H, M, 64],
              blocks: bool[B, H, NB, MB]) -> (o: bf16[B, H, N, 64], lse: f32[B, H, N]) {
  o, lse = softmax(q, k, v) { mask = blocks[b, h, i / )" +
           std::to_string(blockQ) + R"(, j / 32] && causal }
})";
  };
  auto listSpec = [](int64_t blockQ) {
    return R"(
kernel lists(q: bf16[B, H, N, 32], k: bf16[B, H, M, 32], v: bf16[B, H, M, 32],
             counts: i32[B, H, QB], indices: i32[B, H, QB, W]) -> (o: bf16[B, H, N, 32]) {
  o = softmax(q, k, v) {
    block_q = )" + std::to_string(blockQ) +
           R"(; block_k = 16
    kv_num_blocks = counts; kv_indices = indices
  }
})";
  };
  struct Config {
    std::string name;
    GpuPipelineOptions options;
    int64_t maskBlockQ, listBlockQ;
  };
  std::vector<Config> configs(5);
  configs[0] = {"mma.sync", {}, 32, 16};
  configs[1] = {"from the tile program", {}, 32, 16};
  configs[1].options.fromTileProgram = true;
  configs[2] = {"wgmma", {}, 64, 64};
  configs[2].options.chip = "sm_90a";
  configs[2].options.mma = "wgmma";
  configs[3] = configs[2];
  configs[3].name = "wgmma, warp-specialised";
  configs[3].options.warpSpecialize = true;
  configs[4] = {"mma.sync, split keys 64", {}, 32, 16};
  configs[4].options.splitKeys = 64;
  const uint64_t seed = 11;
  for (const Config &config : configs)
    for (auto [n, m] :
         std::vector<std::pair<int64_t, int64_t>>{{70, 100}, {100, 45}}) {
      std::string what = "N=" + std::to_string(n) + " M=" + std::to_string(m) +
                         " (seed " + std::to_string(seed) + ") " + config.name;
      const GpuPipelineOptions &options = config.options;
      std::mt19937_64 rng(seed + n);
      auto ceilDiv = [](int64_t x, int64_t y) { return (x + y - 1) / y; };
      // q, k and v of 2 heads and head dim `d`.
      auto attention = [&, n = n, m = m](int64_t d) {
        std::map<std::string, HostTensor> inputs;
        inputs["q"] = randomTensor(ElementType::BF16, {1, 2, n, d}, rng, -2, 2);
        inputs["k"] = randomTensor(ElementType::BF16, {1, 2, m, d}, rng, -2, 2);
        inputs["v"] = randomTensor(ElementType::BF16, {1, 2, m, d}, rng, -1, 1);
        return inputs;
      };
      std::string error;
      {
        SpecRunner reference(maskSpec(config.maskBlockQ));
        ASSERT_TRUE(reference.ok()) << reference.compileError;
        auto kernel =
            EmulatedGpuKernel::compile(*reference.module, "", options, error);
        ASSERT_TRUE(kernel) << error;
        // One warp per 16 rows of the block (and a producer warpgroup).
        EXPECT_EQ(kernel->image().threads,
                  config.maskBlockQ * 2 + (options.warpSpecialize ? 128 : 0));
        std::map<std::string, HostTensor> inputs = attention(64);
        HostTensor blocks(ElementType::Bool, {1, 2, ceilDiv(n, config.maskBlockQ),
                                              ceilDiv(m, 32)});
        std::bernoulli_distribution present(0.6);
        for (int64_t i = 0; i < blocks.numElements(); ++i)
          blocks.set(i, present(rng));
        inputs["blocks"] = std::move(blocks);
        expectEmulatorMatches(reference, *kernel, inputs, "block mask " + what);
      }
      {
        SpecRunner reference(listSpec(config.listBlockQ));
        ASSERT_TRUE(reference.ok()) << reference.compileError;
        auto kernel =
            EmulatedGpuKernel::compile(*reference.module, "", options, error);
        ASSERT_TRUE(kernel) << error;
        std::map<std::string, HostTensor> inputs = attention(32);
        int64_t queryBlocks = ceilDiv(n, config.listBlockQ),
                keyBlocks = ceilDiv(m, 16), width = 5;
        // Blocks repeat and may lie outside a split or the band.
        addBlockLists(inputs, rng, 2, queryBlocks, width, width,
                      keyBlocks - 1);
        expectEmulatorMatches(reference, *kernel, inputs,
                              "block lists " + what);
      }
    }
}

// Top-k selection on the warp emulator: each row keeps its own blocks
// (scored against the mean keys, summed over the GQA group), the CTA visits
// their union and masks per row. Causal (an exact band; early rows of N > M
// have no key), a mask the band analysis cannot read (every key evaluated
// for eligibility), topk above the number of blocks, short last blocks, and
// packed sequences including an empty one; on mma.sync and on wgmma (whose
// key tiles are core matrices, read so by the selection's mean keys), also
// warp-specialised (the producer copies the kept blocks).
TEST(GpuEmulation, TopkSelectionMatchesTheReference) {
  struct Case {
    const char *name;
    std::string spec;
    int64_t n, m;
  };
  auto topkSpec = [](const std::string &select, const std::string &mask) {
    return "kernel t(q: bf16[B, Hq, N, 32], k: bf16[B, Hk, M, 32], "
           "v: bf16[B, Hk, M, 32]) -> (o: bf16[B, Hq, N, 32], "
           "lse: f32[B, Hq, N]) {\n  o, lse = softmax(q, k, v) { select = " +
           select + "; mask = " + mask + " }\n}\n";
  };
  std::vector<Case> cases = {
      {"causal_top4_block16", topkSpec("topk(4, block = 16)", "causal"), 130, 130},
      {"causal_top2_block32_n_gt_m", topkSpec("topk(2, block = 32)", "causal"), 90, 45},
      {"irregular_mask", topkSpec("topk(3, block = 16)", "(i + j) % 3 != 0"), 50, 93},
      {"topk_above_blocks", topkSpec("topk(8, block = 16)", "j <= i + 40"), 20, 61},
      {"one_row", topkSpec("topk(1, block = 16)", "causal"), 1, 1},
  };
  const uint64_t seed = 23;
  // mma.sync, wgmma, and warp-specialised with the producer as early and
  // as late as the mbarriers allow.
  std::vector<SoftmaxStrategy> strategies = softmaxStrategies(), kinds;
  for (int index : {0, 3, 5})
    kinds.push_back(strategies[index]);
  for (const SoftmaxStrategy &kind : kinds)
    for (const Case &c : cases) {
      SpecRunner reference(c.spec);
      ASSERT_TRUE(reference.ok()) << c.name << ": " << reference.compileError;
      std::string error;
      std::unique_ptr<EmulatedGpuKernel> kernel =
          kind.compile(reference, error);
      ASSERT_TRUE(kernel) << c.name << ", " << kind.name << ": " << error;
      std::map<std::string, HostTensor> inputs =
          gqaInputs(c.spec, 2, c.n, c.m, 32, seed + c.n * 7 + c.m);
      kind.expectMatches(reference, *kernel, inputs,
                         std::string(c.name) + ", " + kind.name + " (seed " +
                             std::to_string(seed + c.n * 7 + c.m) + ")");
    }

  const char *varlen = R"(
kernel v(q: bf16[T, Hq, 32], k: bf16[T, Hk, 32], v: bf16[T, Hk, 32], cu: i32[S1])
    -> (o: bf16[T, Hq, 32]) {
  o = softmax(q, k, v, layout = thd, cu_seqlens = cu) {
    select = topk(2, block = 16); mask = causal
  }
})";
  SpecRunner reference(varlen);
  ASSERT_TRUE(reference.ok()) << reference.compileError;
  std::string error;
  std::unique_ptr<EmulatedGpuKernel> kernel;
  std::map<std::string, HostTensor> inputs =
      varlenInputs({0, 70, 70, 141}, 4, seed, /*kvHeads=*/2, /*dim=*/32);
  for (const SoftmaxStrategy &kind : kinds) {
    kernel = kind.compile(reference, error);
    ASSERT_TRUE(kernel) << kind.name << ": " << error;
    kind.expectMatches(reference, *kernel, inputs,
                       "varlen top-k, " + std::string(kind.name) + " (seed " +
                           std::to_string(seed) + ")");
  }

  // More key blocks than the CTA's bitmap holds: reported, not overrun.
  SpecRunner wide(topkSpec("topk(4, block = 16)", "causal"));
  ASSERT_TRUE(wide.ok()) << wide.compileError;
  kernel = EmulatedGpuKernel::compile(*wide.module, "", {}, error);
  ASSERT_TRUE(kernel) << error;
  int64_t keys = 16 * 32768 + 1;
  std::map<std::string, HostTensor> tooLong;
  tooLong["q"] = HostTensor(ElementType::BF16, {1, 2, 1, 32});
  tooLong["k"] = HostTensor(ElementType::BF16, {1, 1, keys, 32});
  tooLong["v"] = HostTensor(ElementType::BF16, {1, 1, keys, 32});
  expectEmulatorFails(*kernel, tooLong,
                      {"'k' has a sequence of 524289 keys: more than the "
                       "32768 blocks of 16 that top-k selection handles"},
                      "too many key blocks");
}

// f32 q, k and v on the mma.sync kernels: f32 tiles, every operand split
// into bf16 high and low parts, three mma per product (bf16x3). Checked at
// 1e-4 of each output's scale, which bf16 operands alone (errors near
// 1e-3) fail: dense GQA, causal at head dim 128 (Q reloaded per key block,
// 32-key tiles) with rows that see no key, ALiBi with lse, chunk-local
// (the example), block lists (the example) and top-k selection; with 16 and
// 32 rows per warp, key splits (fixed and auto), and as built from the tile
// program (attn-tile-to-nvgpu).
TEST(GpuEmulation, F32InputsSplitIntoBf16Pairs) {
  struct Case {
    std::string name, spec;
    int64_t n, m, d;
  };
  auto topk = [](int d) {
    std::string dim = std::to_string(d);
    return "kernel t(q: f32[B, Hq, N, " + dim + "], k: f32[B, Hk, M, " + dim +
           "], v: f32[B, Hk, M, " + dim + "]) -> (o: f32[B, Hq, N, " + dim +
           "]) {\n  o = softmax(q, k, v) { select = topk(3, block = 16); "
           "mask = causal }\n}\n";
  };
  std::vector<Case> cases = {
      {"dense_d64", denseSpec(64, "", "", "f32"), 70, 77, 64},
      {"dense_d64_decode", denseSpec(64, "", "", "f32"), 1, 300, 64},
      {"causal_d128_no_key_rows", denseSpec(128, " mask = causal ", "", "f32"),
       130, 100, 128},
      {"alibi_d32",
       denseSpec(32, " score = s - slope[h] * (i - j)\n mask = causal ",
                 ", slope: f32[Hq]", "f32"),
       65, 200, 32},
      {"chunk_local", readFile(ATTNC_EXAMPLES_DIR "/chunk_local.attn"), 150,
       150, 64},
      {"kv_index_lists", readFile(ATTNC_EXAMPLES_DIR "/kv_index_lists.attn"),
       70, 90, 64},
      {"topk", topk(32), 90, 90, 32},
  };
  struct Config {
    const char *name;
    GpuPipelineOptions options;
  };
  std::vector<Config> configs(5);
  configs[0] = {"mma.sync", {}};
  configs[1] = {"rows-per-warp 32", {}};
  configs[1].options.rowsPerWarp = 32;
  configs[2] = {"split keys 64", {}};
  configs[2].options.splitKeys = 64;
  configs[3] = {"split keys auto", {}};
  configs[3].options.splitKeys = kAutoSplitKeys;
  // The tile program fixes its key tile before the GPU lowering, which
  // refuses rather than halves it: f32 at head dim 128 needs 32 keys.
  configs[4] = {"from the tile program, 32-key tiles", {}};
  configs[4].options.fromTileProgram = true;
  configs[4].options.blockK = 32;
  const uint64_t seed = 41;
  for (const Case &c : cases) {
    SpecRunner reference(c.spec);
    ASSERT_TRUE(reference.ok()) << c.name << ": " << reference.compileError;
    const KernelSignature &signature = reference.kernel->signature();
    bool gqa = signature.params[1].dims[1].symbol == "Hk";
    std::mt19937_64 rng(seed + c.n);
    std::map<std::string, HostTensor> inputs;
    int64_t heads = gqa ? 4 : 2, kvHeads = 2;
    inputs["q"] =
        randomTensor(ElementType::F32, {1, heads, c.n, c.d}, rng, -2, 2);
    inputs["k"] =
        randomTensor(ElementType::F32, {1, kvHeads, c.m, c.d}, rng, -2, 2);
    inputs["v"] =
        randomTensor(ElementType::F32, {1, kvHeads, c.m, c.d}, rng, -1, 1);
    if (c.name == "alibi_d32")
      inputs["slope"] = randomTensor(ElementType::F32, {heads}, rng, 0, 0.5);
    if (c.name == "kv_index_lists") {
      int64_t queryBlocks = (c.n + 15) / 16, keyBlocks = (c.m + 15) / 16;
      addBlockLists(inputs, rng, heads, queryBlocks, 4, 4, keyBlocks - 1);
    }
    for (const Config &config : configs) {
      std::string what = c.name + " " + config.name +
                         " N=" + std::to_string(c.n) +
                         " M=" + std::to_string(c.m) + " (seed " +
                         std::to_string(seed + c.n) + ")";
      std::string error;
      auto kernel = EmulatedGpuKernel::compile(*reference.module, "",
                                               config.options, error);
      if (!kernel) {
        // Top-k selection splits no keys, and has no tile-program kernel.
        EXPECT_TRUE(c.name == "topk" &&
                    (error.find("top-k selection does not split keys") !=
                         std::string::npos ||
                     error.find("'attn_tile.top_k_insert' op has no GPU "
                                "lowering yet") != std::string::npos))
            << what << ": " << error;
        continue;
      }
      expectEmulatorMatches(reference, *kernel, inputs, what, {1e-4, 1e-4});
    }
  }
  // wgmma reads bf16 core matrices from shared memory: f32 is refused there.
  GpuPipelineOptions wgmma;
  wgmma.mma = "wgmma";
  std::string error = refusalOf(
      readFile(ATTNC_EXAMPLES_DIR "/chunk_local.attn"), "sm_90a", wgmma);
  EXPECT_NE(error.find("f32 q, k and v are split into bf16 pairs by the "
                       "mma.sync kernels only; drop mma=wgmma"),
            std::string::npos)
      << error;
}

// f16 in the flash layout [B, N, H, D], a bias table that the window keeps
// the reads inside, the sigmoid and unnormalised
// weights, and chunk-local attention on packed sequences, on the emulator.
TEST(GpuEmulation, LayoutsDtypesAndNormalizers) {
  struct Case {
    const char *name;
    std::string spec;
    std::function<std::map<std::string, HostTensor>(std::mt19937_64 &)> inputs;
  };
  auto flash = [](ElementType type, int64_t n, int64_t d) {
    return [=](std::mt19937_64 &rng) {
      std::map<std::string, HostTensor> inputs;
      inputs["q"] = randomTensor(type, {2, n, 2, d}, rng, -2, 2);
      inputs["k"] = randomTensor(type, {2, n, 2, d}, rng, -2, 2);
      inputs["v"] = randomTensor(type, {2, n, 2, d}, rng, -1, 1);
      return inputs;
    };
  };
  std::vector<Case> cases = {
      {"softcap_window_f16_bnhd", readFile(ATTNC_EXAMPLES_DIR "/softcap_window.attn"),
       flash(ElementType::F16, 90, 128)},
      // Reads rel past its 40 entries at keys the window masks: the score
      // is evaluated at allowed keys only.
      {"relative_bias_window",
       "kernel k(q: bf16[B, N, H, 32], k: bf16[B, N, H, 32], v: bf16[B, N, H, 32],"
       " rel: f32[H, 40]) -> (o: bf16[B, N, H, 32]) {\n  o = softmax(q, k, v, "
       "layout = bnhd) { score = s + rel[h, i - j]\n mask = causal && i - j "
       "< 40 }\n}\n",
       [&](std::mt19937_64 &rng) {
         std::map<std::string, HostTensor> inputs =
             flash(ElementType::BF16, 90, 32)(rng);
         inputs["rel"] = randomTensor(ElementType::F32, {2, 40}, rng, -1, 1);
         return inputs;
       }},
      {"sigmoid",
       "kernel k(q: bf16[B, N, H, 32], k: bf16[B, N, H, 32], v: bf16[B, N, H, 32])"
       " -> (o: bf16[B, N, H, 32]) {\n  o = softmax(q, k, v, layout = bnhd) "
       "{ normalizer = sigmoid\n mask = causal }\n}\n",
       flash(ElementType::BF16, 75, 32)},
      {"unnormalised",
       "kernel k(q: f16[B, N, H, 32], k: f16[B, N, H, 32], v: f16[B, N, H, 32])"
       " -> (o: f16[B, N, H, 32]) {\n  o = softmax(q, k, v, layout = bnhd) "
       "{ normalizer = none\n score = s / 8\n mask = causal }\n}\n",
       flash(ElementType::F16, 75, 32)},
      {"chunk_varlen",
       "kernel k(q: bf16[T, H, 64], k: bf16[T, H, 64], v: bf16[T, H, 64], "
       "cu: i32[S1]) -> (o: bf16[T, H, 64], lse: f32[H, T]) {\n  o, lse = "
       "softmax(q, k, v, layout = thd, cu_seqlens = cu) { chunk = 48 }\n}\n",
       [](std::mt19937_64 &rng) {
         std::map<std::string, HostTensor> inputs;
         inputs["q"] = randomTensor(ElementType::BF16, {140, 2, 64}, rng, -2, 2);
         inputs["k"] = randomTensor(ElementType::BF16, {140, 2, 64}, rng, -2, 2);
         inputs["v"] = randomTensor(ElementType::BF16, {140, 2, 64}, rng, -1, 1);
         inputs["cu"] = offsetsTensor({0, 3, 3, 100, 140});
         return inputs;
       }},
  };
  const uint64_t seed = 23;
  for (const Case &c : cases) {
    SpecRunner reference(c.spec);
    ASSERT_TRUE(reference.ok()) << c.name << ": " << reference.compileError;
    for (const SoftmaxStrategy &strategy : softmaxStrategies()) {
      std::string config = std::string(c.name) + " " + strategy.name;
      std::string error;
      auto kernel = strategy.compile(reference, error);
      ASSERT_TRUE(kernel) << config << ": " << error;
      std::mt19937_64 rng(seed);
      std::map<std::string, HostTensor> inputs = c.inputs(rng);
      strategy.expectMatches(reference, *kernel, inputs, config + " (seed 23)");
    }
  }
}

// Key splits for decoding shapes on the emulator: few query rows (1, 3
// and 65), long key sequences cut into 2 to 16 splits, GQA, ALiBi under
// a causal mask (bottom-right aligned, so every split sees keys) and a
// sliding window (most splits miss the band and stop at once), lse. Also
// with wgmma, with the CTAs in reverse order, with the splits chosen at
// launch (split-keys=auto) for GPUs of two sizes, and with one-warp CTAs
// (16 query rows, the small CTAs the proof kit times for decoding).
TEST(GpuEmulation, KeySplitsForDecodeShapes) {
  std::vector<std::pair<const char *, std::string>> specs = {
      {"alibi_causal",
       denseSpec(64, " score = s - slope[h] * (i - j)\n mask = causal ",
                 ", slope: f32[Hq]")},
      {"window", denseSpec(32, " mask = causal && i + m - n - j < 100 ")},
  };
  struct Config {
    const char *name;
    GpuPipelineOptions options;
    bool reverse = false;
    int64_t residentCtas = 132;
  };
  std::vector<Config> configs(8);
  configs[0] = {"split 64", {}};
  configs[0].options.splitKeys = 64;
  configs[1] = {"split 256, reverse CTA order", {}, true};
  configs[1].options.splitKeys = 256;
  configs[2] = {"wgmma, split 128", {}};
  configs[2].options.chip = "sm_90a";
  configs[2].options.mma = "wgmma";
  configs[2].options.splitKeys = 128;
  configs[3] = {"rows-per-warp 32, split 64", {}};
  configs[3].options.rowsPerWarp = 32;
  configs[3].options.splitKeys = 64;
  // split-keys=auto on GPUs that hold 48 CTAs (6 uneven splits of 16 key
  // blocks for the 8 CTAs of N = 1, M = 1000) and 1000.
  configs[4] = {"split auto, 48 resident CTAs", {}, false, 48};
  configs[4].options.splitKeys = kAutoSplitKeys;
  configs[5] = {
      "split auto, 1000 resident CTAs, reverse CTA order", {}, true, 1000};
  configs[5].options.splitKeys = kAutoSplitKeys;
  configs[6] = {"wgmma, split auto, 48 resident CTAs", {}, false, 48};
  configs[6].options = configs[2].options;
  configs[6].options.splitKeys = kAutoSplitKeys;
  configs[7] = {"one warp, split auto, 48 resident CTAs", {}, false, 48};
  configs[7].options.warps = 1;
  configs[7].options.splitKeys = kAutoSplitKeys;
  const uint64_t seed = 31;
  for (const auto &[name, spec] : specs) {
    SpecRunner reference(spec);
    ASSERT_TRUE(reference.ok()) << name << ": " << reference.compileError;
    for (const Config &config : configs) {
      std::string error;
      auto kernel = EmulatedGpuKernel::compile(*reference.module, "",
                                               config.options, error);
      ASSERT_TRUE(kernel) << name << " " << config.name << ": " << error;
      kernel->setReverseCtaOrder(config.reverse);
      kernel->setResidentCtas(config.residentCtas);
      for (auto [n, m] : std::vector<std::pair<int64_t, int64_t>>{
               {1, 1000}, {3, 700}, {65, 300}}) {
        std::string what = std::string(name) + " " + config.name +
                           " N=" + std::to_string(n) +
                           " M=" + std::to_string(m) + " (seed " +
                           std::to_string(seed + n) + ")";
        std::map<std::string, HostTensor> inputs =
            gqaInputs(spec, 2, n, m, name[0] == 'a' ? 64 : 32, seed + n);
        int64_t blockQ = config.options.warps * config.options.rowsPerWarp;
        int64_t queryBlocks = (n + blockQ - 1) / blockQ;
        if (config.options.splitKeys == kAutoSplitKeys && queryBlocks <= 2) {
          // One or two query blocks per head leave the GPU nearly empty:
          // the launch really splits (more CTAs than query blocks).
          std::vector<TensorView> storage;
          std::vector<const TensorView *> views =
              viewsOf(kernel->image().signature, inputs, storage);
          EXPECT_GT(kernel->image().gridFor(views, config.residentCtas)[0],
                    queryBlocks)
              << what;
        }
        expectEmulatorMatches(reference, *kernel, inputs, what);
      }
    }
  }
}

// pack-gqa: a CTA's rows are (query, head) pairs of a GQA group. Against
// the reference with group sizes 1, 3, 4 and 8 (Hq / Hk), decoding shapes
// (N = 1, 3) and longer ones whose rows span several CTAs, slopes read per
// row's head, a bottom-right causal window with N > M (rows with no key),
// chunk-local masks, f32 inputs, packed sequences with an empty one, and
// the strategies: one and two row tiles per warp, wgmma and warp-
// specialised, key splits (fixed, and chosen at launch in reverse CTA
// order), one-warp CTAs. The grid is blocks of N * G rows by kv heads.
TEST(GpuEmulation, PackedGqaGroupsMatchTheReference) {
  struct Spec {
    const char *name;
    std::string text;
    int d;
    ElementType type = ElementType::BF16;
  };
  std::vector<Spec> specs = {
      {"alibi_causal",
       denseSpec(64, " score = s - slope[h] * (i - j)\n mask = causal ",
                 ", slope: f32[Hq]"),
       64},
      {"window", denseSpec(32, " mask = causal && i + m - n - j < 100 "), 32},
      {"chunk_local", denseSpec(32, " mask = i / 16 == j / 16 "), 32},
      {"f32_softcap", denseSpec(32, " score = 20 * tanh(s / 20) ", "", "f32"),
       32, ElementType::F32},
  };
  struct Config {
    const char *name;
    GpuPipelineOptions options;
    bool reverse = false;
  };
  std::vector<Config> configs(8);
  configs[0] = {"rows-per-warp 16", {}};
  configs[1] = {"rows-per-warp 32", {}};
  configs[1].options.rowsPerWarp = 32;
  configs[2] = {"wgmma", {}};
  configs[2].options.chip = "sm_90a";
  configs[2].options.mma = "wgmma";
  configs[3] = {"wgmma, warp-specialised", configs[2].options};
  configs[3].options.warpSpecialize = true;
  configs[4] = {"split 64", {}};
  configs[4].options.splitKeys = 64;
  configs[5] = {"split auto, reverse CTA order", {}, true};
  configs[5].options.splitKeys = kAutoSplitKeys;
  configs[6] = {"one warp, split auto", {}};
  configs[6].options.warps = 1;
  configs[6].options.splitKeys = kAutoSplitKeys;
  configs[7] = {"wgmma, split 128", configs[2].options};
  configs[7].options.splitKeys = 128;
  struct Shape {
    int64_t hq, hk, n, m;
  };
  const std::vector<Shape> shapes = {
      {8, 2, 1, 700}, {6, 2, 3, 300}, {8, 1, 17, 130}, {3, 3, 40, 20}};
  const uint64_t seed = 41;
  for (const Spec &spec : specs) {
    SpecRunner reference(spec.text);
    ASSERT_TRUE(reference.ok()) << spec.name << ": " << reference.compileError;
    for (Config config : configs) {
      if (spec.type == ElementType::F32 && config.options.mma == "wgmma")
        continue; // f32 is split into bf16 pairs by mma.sync kernels only
      config.options.packGqa = true;
      std::string error;
      auto kernel = EmulatedGpuKernel::compile(*reference.module, "",
                                               config.options, error);
      ASSERT_TRUE(kernel) << spec.name << " " << config.name << ": " << error;
      kernel->setReverseCtaOrder(config.reverse);
      kernel->setResidentCtas(48);
      for (const Shape &shape : shapes) {
        uint64_t caseSeed = seed + shape.n;
        std::string what = std::string(spec.name) + " " + config.name +
                           " Hq=" + std::to_string(shape.hq) +
                           " Hk=" + std::to_string(shape.hk) +
                           " N=" + std::to_string(shape.n) +
                           " M=" + std::to_string(shape.m) + " (seed " +
                           std::to_string(caseSeed) + ")";
        std::mt19937_64 rng(caseSeed);
        std::map<std::string, HostTensor> inputs;
        inputs["q"] =
            randomTensor(spec.type, {2, shape.hq, shape.n, spec.d}, rng, -2, 2);
        inputs["k"] =
            randomTensor(spec.type, {2, shape.hk, shape.m, spec.d}, rng, -2, 2);
        inputs["v"] =
            randomTensor(spec.type, {2, shape.hk, shape.m, spec.d}, rng, -1, 1);
        if (spec.text.find("slope") != std::string::npos)
          inputs["slope"] =
              randomTensor(ElementType::F32, {shape.hq}, rng, 0, 0.5);
        if (!config.options.splitKeys) {
          std::vector<TensorView> storage;
          int64_t rows = shape.n * (shape.hq / shape.hk);
          int64_t blockQ = config.options.warps * config.options.rowsPerWarp;
          EXPECT_EQ(kernel->image().gridFor(
                        viewsOf(kernel->image().signature, inputs, storage), 0),
                    (std::array<int64_t, 3>{(rows + blockQ - 1) / blockQ,
                                            shape.hk, 2}))
              << what;
        }
        expectEmulatorMatches(reference, *kernel, inputs, what,
                              spec.type == ElementType::F32
                                  ? Tolerance{1e-4, 1e-4}
                                  : Tolerance{2e-2, 2e-2});
      }
    }
  }

  // Packed sequences: 4 query heads per kv head, one sequence empty.
  SpecRunner varlen(
      "kernel k(q: bf16[T, Hq, 64], k: bf16[T, Hk, 64], v: bf16[T, Hk, 64], "
      "cu: i32[S1]) -> (o: bf16[T, Hq, 64], lse: f32[Hq, T]) {\n"
      "  o, lse = softmax(q, k, v, layout = thd, cu_seqlens = cu) "
      "{ mask = causal }\n}\n");
  ASSERT_TRUE(varlen.ok()) << varlen.compileError;
  for (int64_t splitKeys : {int64_t(0), kAutoSplitKeys}) {
    GpuPipelineOptions options;
    options.packGqa = true;
    options.splitKeys = splitKeys;
    std::string error;
    auto kernel =
        EmulatedGpuKernel::compile(*varlen.module, "", options, error);
    ASSERT_TRUE(kernel) << error;
    kernel->setResidentCtas(48);
    std::map<std::string, HostTensor> inputs =
        varlenInputs({0, 1, 1, 40, 141}, 8, seed, /*kvHeads=*/2);
    expectEmulatorMatches(varlen, *kernel, inputs,
                          "varlen, split-keys=" + splitKeysText(splitKeys) +
                              " (seed " + std::to_string(seed) + ")");
  }
}

} // namespace
