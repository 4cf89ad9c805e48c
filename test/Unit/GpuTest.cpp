//===- GpuTest.cpp - The NVIDIA backend with and without a GPU ------------===//
//
// Without a GPU: every example either compiles to tensor-core PTX for both
// targets or is refused with the feature named; kernel images survive the
// disk cache (and corrupted entries are detected); launch checks name the
// tensor; and launching without a driver fails with a clear message.
//
// With a GPU (a CUDA driver that loads and a device of compute capability
// 8.0 or more): the compiled kernels run on the device and match the CPU
// reference over a sweep of shapes, within the bf16 tolerance of the issue
// (atol = rtol = 2e-2: P is rounded to bf16 before P V, as in
// FlashAttention). These tests skip with a message elsewhere.
//
//===----------------------------------------------------------------------===//

#include "GpuTestSupport.h"

#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Execution/KernelCache.h"
#include "attnc/Runtime/CudaRuntime.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <fstream>
#include <sys/stat.h>
#include <unistd.h>
#include <functional>
#include <sstream>

using namespace attnc;
using namespace attnc::testing;

namespace {

std::vector<std::string> exampleFiles() {
  std::vector<std::string> files;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(ATTNC_EXAMPLES_DIR, ec), end;
       it != end && !ec; it.increment(ec))
    if (llvm::StringRef(it->path()).ends_with(".attn"))
      files.push_back(it->path());
  std::sort(files.begin(), files.end());
  return files;
}

// Every example, for both targets, whatever its family and dtype (f32 ones
// split into bf16 pairs).
TEST(GpuCompile, EveryExampleCompilesForBothTargets) {
  int compiled = 0;
  for (const std::string &file : exampleFiles()) {
    std::string spec = readFile(file);
    std::string stem = llvm::sys::path::stem(file).str();
    for (const char *target : {"sm_80", "sm_90a"}) {
      GpuImage image;
      std::string error;
      if (!compileSpec(spec, target, image, error)) {
        ADD_FAILURE() << file << " for " << target << ": " << error;
        continue;
      }
      ++compiled;
      EXPECT_NE(image.bytes.find(std::string(".target ") + target),
                std::string::npos)
          << file;
      EXPECT_NE(image.bytes.find("mma.sync.aligned.m16n8k16.row.col.f32"),
                std::string::npos)
          << file;
      EXPECT_NE(image.bytes.find("cp.async"), std::string::npos) << file;
      EXPECT_EQ(image.threads, stem == "block_sparse"     ? 64
                               : stem == "kv_index_lists" ? 32
                                                          : 128)
          << file;
      EXPECT_EQ(image.copiedParams.size(), 3u) << file;
    }
  }
  EXPECT_EQ(compiled, 2 * static_cast<int>(exampleFiles().size()));
  EXPECT_EQ(compiled, 24); // 12 examples: none went missing
}

// The C API's option text: what cacheKey prints parses back to the same
// options, and a failed parse names the pair.
TEST(GpuCompile, PipelineOptionsParseWhatCacheKeyPrints) {
  GpuPipelineOptions tuned;
  tuned.warps = 8;
  tuned.blockK = 128;
  tuned.blockV = 32;
  tuned.segmentChunks = 0;
  tuned.splitKeys = 2048;
  tuned.mma = "wgmma";
  GpuPipelineOptions parsed;
  std::string error;
  ASSERT_TRUE(parsed.parse(tuned.cacheKey(), error)) << error;
  EXPECT_EQ(parsed.cacheKey(), tuned.cacheKey());
  GpuPipelineOptions programs;
  ASSERT_TRUE(programs.parse("from-tile-program,warps=2", error)) << error;
  EXPECT_TRUE(programs.fromTileProgram);
  EXPECT_EQ(programs.warps, 2);
  EXPECT_FALSE(GpuPipelineOptions().parse("warps=-1", error));
  EXPECT_EQ(error, "GPU option 'warps=-1' needs a non-negative integer value");
  EXPECT_FALSE(GpuPipelineOptions().parse("from-tile-program mma=wgmma", error));
  EXPECT_EQ(error, "from-tile-program builds mma.sync kernels; drop mma=wgmma");
  GpuPipelineOptions specialized;
  ASSERT_TRUE(specialized.parse("mma=wgmma warp-specialize", error)) << error;
  EXPECT_TRUE(specialized.warpSpecialize);
  ASSERT_TRUE(parsed.parse(specialized.cacheKey(), error)) << error;
  EXPECT_EQ(parsed.cacheKey(), specialized.cacheKey());
  EXPECT_NE(specialized.cacheKey(), GpuPipelineOptions().cacheKey());
  EXPECT_FALSE(GpuPipelineOptions().parse("warp-specialize", error));
  EXPECT_EQ(error, "warp-specialize builds wgmma kernels; add mma=wgmma");
}

// warp-specialize: a producer warpgroup joins the CTA and the stages go
// through mbarriers (cp.async.mbarrier.arrive.noinc, try_wait.parity);
// with two consumer warpgroups setmaxnreg moves registers to them. Three
// are refused.
TEST(GpuCompile, WarpSpecializedKernelsForSm90a) {
  for (const char *example : {"alibi_gqa", "softcap_window", "varlen_causal"})
    for (int64_t warps : {4, 8}) {
      SCOPED_TRACE(std::string(example) + " warps=" + std::to_string(warps));
      GpuPipelineOptions options;
      options.mma = "wgmma";
      options.warpSpecialize = true;
      options.warps = warps;
      GpuImage image;
      std::string error;
      ASSERT_TRUE(compileSpec(
          readFile(std::string(ATTNC_EXAMPLES_DIR "/") + example + ".attn"),
          "sm_90a", image, error, options))
          << error;
      EXPECT_EQ(image.threads, (warps + 4) * 32);
      const std::string &ptx = image.bytes;
      for (const char *instruction :
           {"mbarrier.init.shared.b64", "mbarrier.try_wait.parity.shared.b64",
            "mbarrier.arrive.shared.b64",
            "cp.async.mbarrier.arrive.noinc.shared.b64",
            "wgmma.mma_async.sync.aligned"})
        EXPECT_NE(ptx.find(instruction), std::string::npos) << instruction;
      bool rebalanced =
          ptx.find("setmaxnreg.inc.sync.aligned.u32 \t232") !=
              std::string::npos &&
          ptx.find("setmaxnreg.dec.sync.aligned.u32 \t40") != std::string::npos;
      EXPECT_EQ(rebalanced, warps == 8);
    }
  GpuPipelineOptions three;
  three.mma = "wgmma";
  three.warpSpecialize = true;
  three.warps = 12;
  std::string error = refusalOf(readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn"),
                                "sm_90a", three);
  EXPECT_NE(error.find("warp-specialised kernels take one or two consumer "
                       "warpgroups (4 or 8 warps), not 12 warps"),
            std::string::npos)
      << error;
}

// mma=wgmma: the dense, windowed and packed softmax examples become wgmma
// kernels for sm_90a (S = Q K^T and P V per warpgroup, tiles fenced for the
// async proxy, no mma.sync left); what has no wgmma kernel is refused with
// the reason, and so is sm_80.
TEST(GpuCompile, WgmmaKernelsForSm90a) {
  GpuPipelineOptions wgmma;
  wgmma.mma = "wgmma";
  struct Case {
    const char *example, *scores, *values;
  };
  for (const Case &c :
       {Case{"alibi_gqa", "m64n64k16.f32.bf16.bf16", "m64n64k16.f32.bf16.bf16"},
        Case{"softcap_window", "m64n64k16.f32.f16.f16",
             "m64n128k16.f32.f16.f16"},
        Case{"varlen_causal", "m64n64k16.f32.bf16.bf16",
             "m64n64k16.f32.bf16.bf16"},
        // Top-k selection: the 16-key selection block is the key tile.
        Case{"topk_select", "m64n16k16.f32.bf16.bf16",
             "m64n64k16.f32.bf16.bf16"}}) {
    SCOPED_TRACE(c.example);
    std::string spec =
        readFile(std::string(ATTNC_EXAMPLES_DIR "/") + c.example + ".attn");
    GpuImage image;
    std::string error;
    ASSERT_TRUE(compileSpec(spec, "sm_90a", image, error, wgmma)) << error;
    const std::string &ptx = image.bytes;
    std::string scores = std::string("wgmma.mma_async.sync.aligned.") +
                         c.scores + " {";
    std::string values = std::string("wgmma.mma_async.sync.aligned.") +
                         c.values + " {";
    // S: both operands through descriptors ("}, %rd.., %rd.."); P V: A
    // from four registers ("}, {%r..").
    size_t at = ptx.find(scores);
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(ptx.compare(ptx.find("}", at), 6, "}, %rd"), 0);
    bool registerA = false;
    for (at = ptx.find(values); at != std::string::npos;
         at = ptx.find(values, at + 1))
      registerA |= ptx.compare(ptx.find("}", at), 5, "}, {%") == 0;
    EXPECT_TRUE(registerA);
    EXPECT_NE(ptx.find("wgmma.fence.sync.aligned"), std::string::npos);
    EXPECT_NE(ptx.find("wgmma.commit_group.sync.aligned"), std::string::npos);
    EXPECT_NE(ptx.find("wgmma.wait_group.sync.aligned \t0;"), std::string::npos);
    EXPECT_NE(ptx.find("fence.proxy.async.shared::cta"), std::string::npos);
    EXPECT_EQ(ptx.find("mma.sync"), std::string::npos);
    EXPECT_EQ(ptx.find("ldmatrix"), std::string::npos);
  }
  std::string alibi = readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn");
  std::string error = refusalOf(alibi, "sm_80", wgmma);
  EXPECT_NE(error.find("mma=wgmma needs the sm_90a target"), std::string::npos)
      << error;
  // Warp-specialised top-k: the mbarriers follow the selection's tables.
  GpuPipelineOptions specialized = wgmma;
  specialized.warpSpecialize = true;
  GpuImage topk;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/topk_select.attn"),
                          "sm_90a", topk, error, specialized))
      << error;
  EXPECT_NE(topk.bytes.find("mbarrier.try_wait"), std::string::npos);
  EXPECT_NE(topk.bytes.find("wgmma.mma_async"), std::string::npos);
  error = refusalOf(readFile(ATTNC_EXAMPLES_DIR "/block_sparse.attn"), "sm_90a",
                    wgmma);
  EXPECT_NE(error.find("wgmma needs whole warpgroups"), std::string::npos)
      << error;
  GpuPipelineOptions r32 = wgmma;
  r32.rowsPerWarp = 32;
  error = refusalOf(alibi, "sm_90a", r32);
  EXPECT_NE(error.find("wgmma kernels take 16 query rows per warp"),
            std::string::npos)
      << error;
}

// split-keys: grid x gains a factor of ceil(M / split-keys), the image
// carries a workspace of the partial states (one per CTA) and the kernel
// counts finished splits with an atomic between fences. What cannot split
// is refused with the reason.
/// The softmax kernels of both targets: mma.sync (sm_80), wgmma and
/// warp-specialised wgmma (sm_90a).
struct KernelKind {
  const char *name, *chip;
  GpuPipelineOptions options;
};
std::vector<KernelKind> softmaxKernelKinds() {
  std::vector<KernelKind> kinds(3);
  kinds[0] = {"mma.sync", "sm_80", {}};
  kinds[1] = {"wgmma", "sm_90a", {}};
  kinds[1].options.mma = "wgmma";
  kinds[2] = {"warp-specialised", "sm_90a", kinds[1].options};
  kinds[2].options.warpSpecialize = true;
  return kinds;
}

TEST(GpuCompile, KeySplitKernels) {
  std::string alibi = readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn");
  for (KernelKind &config : softmaxKernelKinds()) {
    SCOPED_TRACE(config.name);
    config.options.splitKeys = 512;
    GpuImage image;
    std::string error;
    ASSERT_TRUE(compileSpec(alibi, config.chip, image, error, config.options))
        << error;
    ASSERT_TRUE(image.segmented());
    // 64 query rows per CTA, Dv = 64: a partial output and one lse per row.
    EXPECT_EQ(image.segmentStateBytes, 64 * 65 * 4);
    // q [B, Hq, N, 64] with N = 1, k [B, Hk, M, 64] with M = 5000: 10
    // splits of one query block; B = 2, Hq = 8.
    std::vector<std::vector<int64_t>> shapes = {
        {2, 8, 1, 64}, {2, 2, 5000, 64}, {2, 2, 5000, 64}, {8}};
    std::array<int64_t, 3> grid = image.gridFor(shapes);
    EXPECT_EQ(grid, (std::array<int64_t, 3>{10, 8, 2}));
    LaunchWorkspace workspace = launchWorkspace(image, grid, {});
    EXPECT_EQ(workspace.headerWords, 164); // 1 + 160 CTAs, padded to 4
    EXPECT_EQ(workspace.totalBytes, 164 * 4 + 160 * 64 * 65 * 4);
    // No keys: still one split, which stores o = 0 and lse = -inf.
    shapes[1][2] = shapes[2][2] = 0;
    EXPECT_EQ(image.gridFor(shapes)[0], 1);
    const std::string &ptx = image.bytes;
    for (const char *instruction : {"fence.acq_rel.gpu", "atom.global.add.u32"})
      EXPECT_NE(ptx.find(instruction), std::string::npos) << instruction;
  }

  GpuPipelineOptions uneven;
  uneven.splitKeys = 100;
  EXPECT_NE(refusalOf(alibi, "sm_80", uneven)
                .find("split-keys (100) must be a multiple of the key tile "
                      "(64 keys)"),
            std::string::npos);
  GpuPipelineOptions topk;
  topk.splitKeys = 1024;
  EXPECT_NE(
      refusalOf(readFile(ATTNC_EXAMPLES_DIR "/topk_select.attn"), "sm_80", topk)
          .find("top-k selection does not split keys"),
      std::string::npos);
  GpuPipelineOptions twoConsumers = softmaxKernelKinds()[2].options;
  twoConsumers.warps = 8;
  twoConsumers.splitKeys = 512;
  EXPECT_NE(refusalOf(alibi, "sm_90a", twoConsumers)
                .find("split-keys with warp specialisation takes one consumer "
                      "warpgroup (4 warps)"),
            std::string::npos);
  std::string error;
  EXPECT_FALSE(
      GpuPipelineOptions().parse("from-tile-program split-keys=256", error));
  EXPECT_EQ(error,
            "from-tile-program does not split keys; drop split-keys=256");
}

// pack-gqa: grid x counts blocks of N * G rows (G = Hq / Hk) and grid y
// the kv heads, recorded in the image (surviving serialisation); key splits
// multiply grid x and size the workspace by those CTAs. Block-sparse
// kernels and tile programs are refused.
TEST(GpuCompile, PackedGqaKernels) {
  std::string alibi = readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn");
  for (KernelKind &config : softmaxKernelKinds()) {
    SCOPED_TRACE(config.name);
    config.options.packGqa = true;
    GpuImage compiled, image;
    std::string error;
    ASSERT_TRUE(
        compileSpec(alibi, config.chip, compiled, error, config.options))
        << error;
    ASSERT_TRUE(deserialize(serialize(compiled), image, error)) << error;
    EXPECT_TRUE(image.packsQueryHeads);
    // Decoding: B = 2, Hq = 8, Hk = 2, N = 1: four rows per kv head fit
    // one 64-row block.
    std::vector<std::vector<int64_t>> shapes = {
        {2, 8, 1, 64}, {2, 2, 5000, 64}, {2, 2, 5000, 64}, {8}};
    EXPECT_EQ(image.gridFor(shapes), (std::array<int64_t, 3>{1, 2, 2}));
    // 100 queries: 400 rows per kv head, 7 blocks.
    shapes[0][2] = 100;
    EXPECT_EQ(image.gridFor(shapes), (std::array<int64_t, 3>{7, 2, 2}));
  }

  GpuPipelineOptions split;
  split.packGqa = true;
  split.splitKeys = 512;
  GpuImage image;
  std::string error;
  ASSERT_TRUE(compileSpec(alibi, "sm_80", image, error, split)) << error;
  // N = 1, M = 5000: 10 splits of the one block of each of 2 x 2 kv heads.
  std::array<int64_t, 3> grid =
      image.gridFor({{2, 8, 1, 64}, {2, 2, 5000, 64}, {2, 2, 5000, 64}, {8}});
  EXPECT_EQ(grid, (std::array<int64_t, 3>{10, 2, 2}));
  EXPECT_EQ(launchWorkspace(image, grid, {}).headerWords, 44); // 1 + 40 CTAs

  GpuPipelineOptions packed;
  packed.packGqa = true;
  EXPECT_NE(refusalOf(readFile(ATTNC_EXAMPLES_DIR "/block_sparse.attn"),
                      "sm_80", packed)
                .find("pack-gqa packs the query heads of dense and "
                      "chunk-local kernels only"),
            std::string::npos);
  GpuPipelineOptions parsed;
  ASSERT_TRUE(parsed.parse("pack-gqa warps=1", error)) << error;
  EXPECT_TRUE(parsed.packGqa);
  EXPECT_NE(parsed.cacheKey().find(" pack-gqa"), std::string::npos);
  EXPECT_NE(parsed.cacheKey(), GpuPipelineOptions().cacheKey());
  EXPECT_FALSE(
      GpuPipelineOptions().parse("from-tile-program pack-gqa", error));
  EXPECT_EQ(error,
            "from-tile-program does not pack query heads; drop pack-gqa");
}

// split-keys=auto: the image records that the launch chooses the splits
// (surviving serialisation); its segments term counts key blocks, and the
// grid follows chooseKeySplits for the GPU's resident CTAs.
TEST(GpuCompile, KeySplitsChosenAtLaunch) {
  GpuPipelineOptions options;
  options.splitKeys = kAutoSplitKeys;
  GpuImage compiled, image;
  std::string error;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn"),
                          "sm_80", compiled, error, options))
      << error;
  ASSERT_TRUE(deserialize(serialize(compiled), image, error)) << error;
  ASSERT_TRUE(image.segmented());
  EXPECT_TRUE(image.splitsAtLaunch);
  EXPECT_EQ(image.segments.divisor, 64);
  EXPECT_EQ(image.segmentStateBytes, 64 * 65 * 4);
  // One decode row of 8 query heads over 5000 keys (79 key blocks).
  std::vector<std::vector<int64_t>> shapes = {
      {1, 8, 1, 64}, {1, 2, 5000, 64}, {1, 2, 5000, 64}, {8}};
  for (int64_t resident : {8, 132, 264, 100000}) {
    EXPECT_EQ(image.gridFor(shapes, resident),
              (std::array<int64_t, 3>{chooseKeySplits(8, 79, resident), 8, 1}))
        << resident;
  }
  EXPECT_EQ(image.gridFor(shapes, 264)[0], 27); // 3 blocks per split
  // Without a GPU size (0) one split.
  EXPECT_EQ(image.gridFor(shapes)[0], 1);
  EXPECT_EQ(options.cacheKey().find("split-keys=auto") != std::string::npos,
            true);
  GpuPipelineOptions parsed;
  EXPECT_TRUE(parsed.parse("split-keys=auto", error)) << error;
  EXPECT_EQ(parsed.splitKeys, kAutoSplitKeys);
  EXPECT_FALSE(parsed.parse("split-keys=-64", error));
  EXPECT_EQ(error, "GPU option 'split-keys=-64' needs a non-negative number "
                   "of keys or auto");
}

// chooseKeySplits: one split while the unsplit grid fills at least 80% of
// the GPU; else the fewest splits within 85% of the best wave occupancy,
// never more than the key blocks or kMaxKeySplits, and none empty.
TEST(GpuImage, KeySplitsFollowTheGpuSize) {
  EXPECT_EQ(chooseKeySplits(106, 1000, 132), 1); // 106 >= 0.8 * 132
  EXPECT_EQ(chooseKeySplits(8, 1, 132), 1);      // one key block
  EXPECT_EQ(chooseKeySplits(8, 1000, 0), 1);     // GPU size unknown
  EXPECT_EQ(chooseKeySplits(0, 1000, 132), 1);
  // 8 CTAs on 48: 6 splits fill one wave exactly.
  EXPECT_EQ(chooseKeySplits(8, 16, 48), 6);
  // 32 CTAs (one sequence, 32 heads) on 132: 4 splits are 97% of a wave.
  EXPECT_EQ(chooseKeySplits(32, 1024, 132), 4);
  // One CTA on 264: as many as 128 would help; 109 reach 85% of that, then
  // trimmed so that every split has its ceil(1024 / 109) = 10 blocks.
  EXPECT_EQ(chooseKeySplits(1, 1024, 264), 103);
  // Few key blocks cap the splits.
  EXPECT_EQ(chooseKeySplits(1, 3, 132), 3);
  for (int64_t ctas : {1, 3, 17, 60, 105})
    for (int64_t blocks : {2, 5, 64, 79, 1000, 5000})
      for (int64_t resident : {8, 132, 264, 528}) {
        int64_t splits = chooseKeySplits(ctas, blocks, resident);
        std::string what = std::to_string(ctas) + " CTAs, " +
                           std::to_string(blocks) + " blocks, " +
                           std::to_string(resident) + " resident";
        EXPECT_GE(splits, 1) << what;
        EXPECT_LE(splits, std::min(blocks, kMaxKeySplits)) << what;
        int64_t perSplit = (blocks + splits - 1) / splits;
        EXPECT_GT(blocks, (splits - 1) * perSplit) << what << ": empty split";
        if (5 * ctas >= 4 * resident)
          EXPECT_EQ(splits, 1) << what;
      }
}

TEST(GpuImage, RoundTripsAndDetectsCorruption) {
  GpuImage image;
  std::string error;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/varlen_causal.attn"),
                          "sm_80", image, error))
      << error;
  std::string data = serialize(image);
  GpuImage back;
  ASSERT_TRUE(deserialize(data, back, error)) << error;
  EXPECT_EQ(back.bytes, image.bytes);
  EXPECT_EQ(back.signature.params.size(), 4u);
  EXPECT_EQ(toString(back.signature.params[0]), "bf16[T, H, 64]");
  EXPECT_EQ(back.offsetParams, std::vector<int64_t>{3});
  EXPECT_EQ(back.sharedBytes, image.sharedBytes);

  // Grid for 1000 packed tokens, 4 heads, 3 sequences (cu has 4 entries).
  std::array<int64_t, 3> grid =
      back.gridFor({{1000, 4, 64}, {1000, 4, 64}, {1000, 4, 64}, {4}});
  EXPECT_EQ(grid, (std::array<int64_t, 3>{16, 4, 3}));

  std::string flipped = data;
  flipped[flipped.size() - 10] ^= 1;
  EXPECT_FALSE(deserialize(flipped, back, error));
  EXPECT_NE(error.find("checksum"), std::string::npos) << error;
  EXPECT_FALSE(deserialize(data.substr(0, data.size() - 3), back, error));
  EXPECT_NE(error.find("image bytes"), std::string::npos) << error;
  EXPECT_FALSE(deserialize("garbage\n", back, error));
}

// A causal linear kernel splits each sequence into segments (grid x times
// the segment count) and takes a workspace: a ticket counter and a flag per
// CTA, padded to 16 bytes, then a Dk x block-v f32 state per CTA.
TEST(GpuImage, SegmentedKernelsCarryTheirWorkspace) {
  GpuImage image;
  std::string error;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/gla.attn"), "sm_90a",
                          image, error))
      << error;
  GpuImage back;
  ASSERT_TRUE(deserialize(serialize(image), back, error)) << error;
  ASSERT_TRUE(back.segmented());
  EXPECT_EQ(back.segmentStateBytes, 64 * 64 * 4); // Dk 64, block-v 64
  // q is [B, T, H, 64]: B = 2, T = 2500 (3 segments of 16 chunks of 64),
  // H = 4; v has 128 columns, two blocks of 64.
  std::vector<std::vector<int64_t>> shapes = {
      {2, 2500, 4, 64}, {2, 2500, 4, 64}, {2, 2500, 4, 128}, {2, 2500, 4, 64},
      {}};
  std::array<int64_t, 3> grid = back.gridFor(shapes);
  EXPECT_EQ(grid, (std::array<int64_t, 3>{2 * 3, 4, 2}));
  LaunchWorkspace workspace = launchWorkspace(back, grid, {});
  EXPECT_EQ(workspace.headerWords, 52); // 1 + 48 CTAs, padded to 4 words
  EXPECT_EQ(workspace.totalBytes, 52 * 4 + 48 * 64 * 64 * 4);
  // An empty sequence still gets one segment (it stores the final state).
  shapes[0][1] = 0;
  EXPECT_EQ(back.gridFor(shapes)[0], 2);

  GpuPipelineOptions unsegmented;
  unsegmented.segmentChunks = 0;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/gla.attn"), "sm_90a",
                          image, error, unsegmented))
      << error;
  EXPECT_FALSE(image.segmented());
  EXPECT_EQ(image.gridFor(shapes)[0], 2);
}

TEST(KernelCache, HitsMissesAndRebuildsCorruptedEntries) {
  llvm::SmallString<128> dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("attnc-cache", dir));
  KernelCache cache(std::string(dir) + "/nested");
  GpuImage image;
  std::string error, note;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn"),
                          "sm_90a", image, error))
      << error;
  std::string key = KernelCache::key("spec", "k", "warps=4", "sm_90a");
  EXPECT_NE(key, KernelCache::key("spec", "k", "warps=4", "sm_80"));
  EXPECT_NE(key, KernelCache::key("spec", "k", "warps=8", "sm_90a"));
  EXPECT_NE(key, KernelCache::key("spec2", "k", "warps=4", "sm_90a"));

  GpuImage found;
  EXPECT_FALSE(cache.lookup(key, found, note));
  ASSERT_TRUE(cache.store(key, image, error)) << error;
  ASSERT_TRUE(cache.lookup(key, found, note));
  EXPECT_EQ(found.bytes, image.bytes);

  // Only the entry is left: the temporary file was renamed into place.
  int files = 0;
  std::error_code ec;
  std::string entryPath;
  for (llvm::sys::fs::directory_iterator it(std::string(dir) + "/nested", ec),
       end;
       it != end && !ec; it.increment(ec)) {
    ++files;
    entryPath = it->path();
  }
  EXPECT_EQ(files, 1);

  // A truncated entry is a miss with a note, and storing again repairs it.
  std::string data = readFile(entryPath);
  std::ofstream(entryPath, std::ios::binary | std::ios::trunc)
      << data.substr(0, data.size() / 2);
  EXPECT_FALSE(cache.lookup(key, found, note));
  EXPECT_NE(note.find("unreadable"), std::string::npos) << note;
  ASSERT_TRUE(cache.store(key, image, error)) << error;
  EXPECT_TRUE(cache.lookup(key, found, note));
  llvm::sys::fs::remove_directories(dir);
}

// The checksum covers the launch facts and the key is checked: an entry
// whose header was edited, or another key's entry renamed into place, is a
// miss. Only regular files of bounded size are read, without blocking.
TEST(KernelCache, EntriesAreCheckedWholeAndReadOnlyFromRegularFiles) {
  llvm::SmallString<128> dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("attnc-cache", dir));
  KernelCache cache{std::string(dir)};
  GpuImage image;
  std::string error, note;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn"),
                          "sm_80", image, error))
      << error;
  std::string key = KernelCache::key("spec", "k", "", "sm_80");
  std::string other = KernelCache::key("spec", "k", "", "sm_90a");
  std::string path = std::string(dir) + "/" + key + ".attnc-image";
  ASSERT_TRUE(cache.store(key, image, error)) << error;
  std::string entry = readFile(path);
  auto write = [](const std::string &file, const std::string &data) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << data;
  };
  GpuImage found;

  // Every header field that steers a launch is under the checksum.
  for (std::string field : {"threads ", "shared_bytes ", "grid ", "head_dim ",
                            "entry ", "target ", "param ", "roles "}) {
    size_t at = entry.find("\n" + field);
    ASSERT_NE(at, std::string::npos) << field;
    std::string edited = entry;
    size_t digit = edited.find_first_of("0123456789", at + 1 + field.size());
    if (field == "entry " || field == "target " || field == "param ")
      edited[at + 1 + field.size()] ^= 1; // a letter of a name
    else
      edited[digit] = edited[digit] == '1' ? '2' : '1';
    write(path, edited);
    EXPECT_FALSE(cache.lookup(key, found, note)) << field;
    EXPECT_NE(note.find("checksum"), std::string::npos) << field << note;
  }

  // Another key's entry, renamed to this key, is not this key's entry.
  ASSERT_TRUE(cache.store(other, image, error)) << error;
  llvm::sys::fs::rename(std::string(dir) + "/" + other + ".attnc-image", path);
  note.clear();
  EXPECT_FALSE(cache.lookup(key, found, note));
  EXPECT_NE(note.find("not the entry of this key"), std::string::npos) << note;

  // A link to a device, a FIFO and a huge (sparse) file are refused.
  llvm::sys::fs::remove(path);
  ASSERT_FALSE(llvm::sys::fs::create_link("/dev/zero", path));
  note.clear();
  EXPECT_FALSE(cache.lookup(key, found, note));
  EXPECT_NE(note.find("not a regular file"), std::string::npos) << note;
  llvm::sys::fs::remove(path);
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  note.clear();
  EXPECT_FALSE(cache.lookup(key, found, note));
  EXPECT_NE(note.find("not a regular file"), std::string::npos) << note;
  ASSERT_EQ(unlink(path.c_str()), 0); // llvm::sys::fs::remove keeps FIFOs
  write(path, "");
  ASSERT_EQ(truncate(path.c_str(), KernelCache::kMaxEntryBytes + 1), 0);
  note.clear();
  EXPECT_FALSE(cache.lookup(key, found, note));
  EXPECT_NE(note.find("more than an entry may"), std::string::npos) << note;

  // Storing again repairs the entry.
  ASSERT_TRUE(cache.store(key, image, error)) << error;
  EXPECT_TRUE(cache.lookup(key, found, note));
  EXPECT_EQ(found.threads, image.threads);
  llvm::sys::fs::remove_directories(dir);
}

TEST(GpuLaunch, ChecksNameTheTensor) {
  GpuImage image;
  std::string error;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn"),
                          "sm_80", image, error))
      << error;
  alignas(16) static uint16_t storage[64];
  TensorView q{storage, ElementType::BF16, {1, 6, 8, 64}, {3072, 512, 64, 1}};
  TensorView k{storage, ElementType::BF16, {1, 4, 8, 64}, {2048, 512, 64, 1}};
  TensorView v = k;
  TensorView slope{storage, ElementType::F32, {6}, {1}};
  std::vector<const TensorView *> inputs = {&q, &k, &v, &slope};
  EXPECT_FALSE(checkGpuLaunch(image, inputs, error));
  EXPECT_NE(error.find("'q' has 6 heads and 'k' has 4"), std::string::npos)
      << error;

  k.shape[1] = v.shape[1] = 3;
  EXPECT_TRUE(checkGpuLaunch(image, inputs, error)) << error;
  v.strides = {2048, 512, 1, 8};
  EXPECT_FALSE(checkGpuLaunch(image, inputs, error));
  EXPECT_NE(error.find("input 'v' must be contiguous in its last dim"),
            std::string::npos)
      << error;
  v = k;
  v.strides = {2048, 515, 65, 1};
  EXPECT_FALSE(checkGpuLaunch(image, inputs, error));
  EXPECT_NE(error.find("input 'v' has stride 515 in dim 1"), std::string::npos)
      << error;
  v = k;
  v.data = reinterpret_cast<char *>(storage) + 2;
  EXPECT_FALSE(checkGpuLaunch(image, inputs, error));
  EXPECT_NE(error.find("input 'v' is not 16-byte aligned"), std::string::npos)
      << error;
}

bool haveGpu(std::string &why) {
  int capability = cudaComputeCapability(why);
  if (!capability)
    return false;
  std::string target = gpuTargetFor(capability, why);
  return !target.empty();
}

TEST(GpuLaunch, WithoutADriverTheErrorSaysSo) {
  std::string why;
  if (haveGpu(why))
    GTEST_SKIP() << "a GPU is present; this checks the no-driver path";
  GpuImage image;
  std::string error;
  ASSERT_TRUE(compileSpec(readFile(ATTNC_EXAMPLES_DIR "/alibi_gqa.attn"),
                          "sm_80", image, error));
  EXPECT_EQ(GpuKernel::load(image, error), nullptr);
  EXPECT_FALSE(error.empty());
  EXPECT_TRUE(error.find("no CUDA driver") != std::string::npos ||
              error.find("no usable CUDA device") != std::string::npos)
      << error;
}

/// Runs an image on the GPU on named host inputs.
bool runOnGpu(const GpuImage &image, std::map<std::string, HostTensor> &inputs,
              std::vector<HostTensor> &outputs, std::string &error) {
  std::unique_ptr<GpuKernel> kernel = GpuKernel::load(image, error);
  if (!kernel)
    return false;
  std::vector<TensorView> storage;
  return runWithHostTensors(*kernel, viewsOf(image.signature, inputs, storage),
                            outputs, error);
}

struct GpuCase {
  const char *name;
  std::string spec;
  bool packed = false;
};

TEST(GpuExecution, SoftmaxMatchesTheReference) {
  std::string why;
  if (!haveGpu(why))
    GTEST_SKIP() << "no GPU: " << why;
  std::string error;
  std::string target = gpuTargetFor(cudaComputeCapability(error), error);
  std::vector<GpuCase> cases = {
      {"dense_d64", denseSpec(64, "")},
      {"causal_d64", denseSpec(64, " mask = causal ")},
      {"causal_d128", denseSpec(128, " mask = causal ")},
      {"window_softcap_d64",
       denseSpec(64, " score = 30 * tanh(s / 30)\n mask = causal && i - j < 100 ")},
      {"alibi_d64", denseSpec(64, " score = s - slope[h] * (i - j)\n mask = causal ",
                              ", slope: f32[Hq]")},
      {"chunk_d64", denseSpec(64, " mask = i / 64 == j / 64 ")},
  };
  const uint64_t seed = 20261124;
  std::vector<std::pair<int64_t, int64_t>> lengths = {
      {1, 1}, {17, 17}, {64, 64}, {127, 300}, {300, 127}, {1000, 1000}};
  for (const GpuCase &gpuCase : cases) {
    SpecRunner reference(gpuCase.spec);
    ASSERT_TRUE(reference.ok()) << gpuCase.name << ": " << reference.compileError;
    GpuPipelineOptions options;
    options.chip = target;
    GpuImage image;
    ASSERT_TRUE(compileToPtx(*reference.module, "", options, image, error))
        << gpuCase.name << ": " << error;
    int d = gpuCase.spec.find("128]") != std::string::npos ? 128 : 64;
    for (auto [n, m] : lengths) {
      std::mt19937_64 rng(seed + n * 7919 + m);
      std::map<std::string, HostTensor> inputs;
      inputs["q"] = randomTensor(ElementType::BF16, {2, 4, n, d}, rng, -2, 2);
      inputs["k"] = randomTensor(ElementType::BF16, {2, 2, m, d}, rng, -2, 2);
      inputs["v"] = randomTensor(ElementType::BF16, {2, 2, m, d}, rng, -1, 1);
      if (gpuCase.spec.find("slope") != std::string::npos)
        inputs["slope"] = randomTensor(ElementType::F32, {4}, rng, 0, 0.5);
      std::vector<HostTensor> expected, actual;
      std::string what = std::string(gpuCase.name) + " N=" + std::to_string(n) +
                         " M=" + std::to_string(m) + " seed " +
                         std::to_string(seed);
      ASSERT_TRUE(reference.run(inputs, expected, error)) << what << ": " << error;
      ASSERT_TRUE(runOnGpu(image, inputs, actual, error)) << what << ": " << error;
      for (size_t r = 0; r < actual.size(); ++r)
        expectClose(values(actual[r]), values(expected[r]), {2e-2, 2e-2},
                    what + ", output " + std::to_string(r));
    }
  }
}

TEST(GpuExecution, VarlenWithEmptySequencesMatchesTheReference) {
  std::string why;
  if (!haveGpu(why))
    GTEST_SKIP() << "no GPU: " << why;
  std::string error;
  std::string target = gpuTargetFor(cudaComputeCapability(error), error);
  std::string spec = readFile(ATTNC_EXAMPLES_DIR "/varlen_causal.attn");
  SpecRunner reference(spec);
  ASSERT_TRUE(reference.ok()) << reference.compileError;
  GpuPipelineOptions options;
  options.chip = target;
  GpuImage image;
  ASSERT_TRUE(compileToPtx(*reference.module, "", options, image, error))
      << error;
  std::vector<int64_t> offsets = {0, 0, 77, 77, 400, 1031};
  int64_t total = offsets.back();
  std::map<std::string, HostTensor> inputs =
      varlenInputs(offsets, 4, /*seed=*/7);
  std::vector<HostTensor> expected, actual;
  ASSERT_TRUE(reference.run(inputs, expected, error)) << error;
  ASSERT_TRUE(runOnGpu(image, inputs, actual, error)) << error;
  for (size_t r = 0; r < actual.size(); ++r)
    expectClose(values(actual[r]), values(expected[r]), {2e-2, 2e-2},
                "varlen seed 7, output " + std::to_string(r));

  // Offsets past the packed tokens are found on the device and reported.
  inputs["cu"] = offsetsTensor({0, 500, total + 5});
  EXPECT_FALSE(runOnGpu(image, inputs, actual, error));
  EXPECT_NE(error.find("'cu' gives sequence 1"), std::string::npos) << error;
}

} // namespace
