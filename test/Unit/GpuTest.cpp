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

#include "SpecRunner.h"

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

std::string readFile(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

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

/// Compiles `spec` for `target`; false with `error` on failure.
bool compileSpec(const std::string &spec, const std::string &target,
                 GpuImage &image, std::string &error,
                 GpuPipelineOptions options = {}) {
  SpecRunner runner(spec); // parses and builds the module (CPU reference)
  if (!runner.module) {
    error = runner.compileError;
    return false;
  }
  options.chip = target;
  return compileToPtx(*runner.module, "", options, image, error);
}

/// The message with which compiling `spec` for `target` is refused.
std::string refusalOf(const std::string &spec, const std::string &target,
                      const GpuPipelineOptions &options) {
  GpuImage image;
  std::string error;
  EXPECT_FALSE(compileSpec(spec, target, image, error, options));
  return error;
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
    SegmentWorkspace workspace = segmentWorkspace(image, grid);
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
  EXPECT_EQ(segmentWorkspace(image, grid).headerWords, 44); // 1 + 40 CTAs

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
  SegmentWorkspace workspace = segmentWorkspace(back, grid);
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

/// Inputs of packed-sequence ([T, H, D]) softmax specs such as
/// varlen_causal.attn: bf16 q of `heads` heads, k and v of `kvHeads` (0:
/// `heads`), head dim `dim`, for the sequences `offsets` delimit, and the
/// offsets.
std::map<std::string, HostTensor>
varlenInputs(const std::vector<int64_t> &offsets, int64_t heads, uint64_t seed,
             int64_t kvHeads = 0, int64_t dim = 64) {
  std::mt19937_64 rng(seed);
  int64_t total = offsets.back();
  int64_t kv = kvHeads ? kvHeads : heads;
  std::map<std::string, HostTensor> inputs;
  inputs["q"] =
      randomTensor(ElementType::BF16, {total, heads, dim}, rng, -2, 2);
  inputs["k"] = randomTensor(ElementType::BF16, {total, kv, dim}, rng, -2, 2);
  inputs["v"] = randomTensor(ElementType::BF16, {total, kv, dim}, rng, -1, 1);
  inputs["cu"] = offsetsTensor(offsets);
  return inputs;
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

std::string denseSpec(int d, const std::string &body,
                      const std::string &extra = "",
                      const std::string &t = "bf16") {
  std::string dim = std::to_string(d);
  return "kernel k(q: " + t + "[B, Hq, N, " + dim + "], k: " + t +
         "[B, Hk, M, " + dim + "], v: " + t + "[B, Hk, M, " + dim + "]" +
         extra + ") -> (o: " + t + "[B, Hq, N, " + dim +
         "], lse: f32[B, Hq, N]) {\n  o, lse = softmax(q, k, v) {" + body +
         "}\n}\n";
}

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

/// Inputs of the dense-layout cases: [B, H, N, D] q/k/v with GQA (4 query
/// heads, 2 kv heads) and slopes when the spec reads them.
std::map<std::string, HostTensor> gqaInputs(const std::string &spec, int64_t b,
                                            int64_t n, int64_t m, int d,
                                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::BF16, {b, 4, n, d}, rng, -2, 2);
  inputs["k"] = randomTensor(ElementType::BF16, {b, 2, m, d}, rng, -2, 2);
  inputs["v"] = randomTensor(ElementType::BF16, {b, 2, m, d}, rng, -1, 1);
  if (spec.find("slope") != std::string::npos)
    inputs["slope"] = randomTensor(ElementType::F32, {4}, rng, 0, 0.5);
  return inputs;
}

/// The softmax strategies the emulator tests run: attn-gpu-tile-softmax
/// with one and two mma row tiles per warp, the kernel built from the tile
/// program (attn-tile-softmax, attn-tile-to-nvgpu), and the wgmma kernel
/// for sm_90a with one and two warpgroups per CTA, also warp-specialised
/// (a producer warpgroup and mbarriers), and key splits.
struct SoftmaxStrategy {
  std::string name;
  GpuPipelineOptions options;
  EmulatedGpuKernel::Schedule schedule =
      EmulatedGpuKernel::Schedule::RoundRobin;
  bool reverseCtaOrder = false;

  std::unique_ptr<EmulatedGpuKernel> compile(SpecRunner &reference,
                                             const GpuPipelineOptions &tuned,
                                             std::string &error) const {
    auto kernel =
        EmulatedGpuKernel::compile(*reference.module, "", tuned, error);
    if (kernel) {
      kernel->setSchedule(schedule);
      kernel->setReverseCtaOrder(reverseCtaOrder);
    }
    return kernel;
  }
  std::unique_ptr<EmulatedGpuKernel> compile(SpecRunner &reference,
                                             std::string &error) const {
    return compile(reference, options, error);
  }
};
std::vector<SoftmaxStrategy> softmaxStrategies() {
  std::vector<SoftmaxStrategy> strategies(11);
  strategies[0].name = "rows-per-warp 16";
  strategies[1].name = "rows-per-warp 32";
  strategies[1].options.rowsPerWarp = 32;
  strategies[2].name = "from the tile program";
  strategies[2].options.fromTileProgram = true;
  strategies[3].name = "wgmma";
  strategies[3].options.chip = "sm_90a";
  strategies[3].options.mma = "wgmma";
  strategies[4].name = "wgmma, 8 warps";
  strategies[4].options = strategies[3].options;
  strategies[4].options.warps = 8;
  strategies[5].name = "wgmma, warp-specialised";
  strategies[5].options = strategies[3].options;
  strategies[5].options.warpSpecialize = true;
  strategies[6].name = "wgmma, warp-specialised, 8 warps";
  strategies[6].options = strategies[5].options;
  strategies[6].options.warps = 8;
  // The producer as late as the mbarriers allow: a consumer that reads a
  // stage it did not wait for sees stale data.
  strategies[7].name = "wgmma, warp-specialised, producer last";
  strategies[7].options = strategies[5].options;
  strategies[7].schedule = EmulatedGpuKernel::Schedule::LowestFirst;
  // Runs of 64 keys on different CTAs, combined by the last to finish:
  // with CTAs in reverse order that is the first split, not the last.
  strategies[8].name = "split keys 64";
  strategies[8].options.splitKeys = 64;
  strategies[9].name = "split keys 64, reverse CTA order";
  strategies[9].options.splitKeys = 64;
  strategies[9].reverseCtaOrder = true;
  strategies[10].name = "wgmma, warp-specialised, split keys 64";
  strategies[10].options = strategies[5].options;
  strategies[10].options.splitKeys = 64;
  return strategies;
}

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
        expectEmulatorMatches(reference, *kernel, inputs, what);
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
    expectEmulatorMatches(reference, *kernel, inputs, "varlen (seed 3)");

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
    expectEmulatorMatches(reference, *kernel, inputs, "documents (seed 17)");
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
  for (int index : {0, 3, 5, 7})
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
      expectEmulatorMatches(reference, *kernel, inputs,
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
    expectEmulatorMatches(reference, *kernel, inputs,
                          "varlen top-k, " + std::string(kind.name) +
                              " (seed " + std::to_string(seed) + ")");
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

// f16 in the flash layout [B, N, H, D], the sigmoid and unnormalised
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
      expectEmulatorMatches(reference, *kernel, inputs, config + " (seed 23)");
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

// The chunkwise linear strategy on the warp emulator against the reference
// recurrence (tolerance: 2e-2 of each output's largest magnitude, below):
// constant and data-dependent scalar gates (strong decay: log gates down to
// -6 per step, -384 across a chunk), per-key-dimension gates (GLA, down to
// -8 per step and dim, so that exp(G_r - G_u) of a key after the row
// overflows within a 16-row tile; such pairs must be dropped), feature maps,
// the non-causal form, initial and final states, GQA, Dk != Dv, chunks of 16,
// 32 and 64 with lengths that are 1, primes and not multiples of the chunk,
// and packed sequences with an empty one.
// A positive or non-finite gate is reported with its position, by scalar
// (per head and step) and per-key-dimension gates alike; rows past the end
// of the last chunk, which the GPU kernel fills without branches, report
// nothing.
TEST(GpuEmulation, BadGatesAreReportedWithTheirPosition) {
  struct Case {
    const char *name, *spec, *expected;
    std::vector<int64_t> gateShape, badAt;
    // A second bad gate (0.75), after the first in the same thread's group
    // of loads: the first is the one reported.
    std::vector<int64_t> laterBadAt = {};
  };
  std::vector<Case> cases = {
      {"per head",
       "kernel k(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32], v: bf16[B, H, T, "
       "32],"
       " a: f32[B, H, T]) -> (o: bf16[B, H, T, 32]) {\n"
       "  o = linear(q, k, v) { gate = a[b, h, t]; chunk = 32 }\n}\n",
       "gate value 0.5 at b=1, h=0, t=37, d=0 is positive or not finite",
       {2, 2, 50},
       {1, 0, 37}},
      {"per key dim",
       "kernel k(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32], v: bf16[B, H, T, "
       "32],"
       " g: f32[B, H, T, 32]) -> (o: bf16[B, H, T, 32]) {\n"
       "  o = linear(q, k, v) { gate = g[b, h, t, d]; chunk = 32 }\n}\n",
       "gate value 0.5 at b=0, h=1, t=49, d=5 is positive or not finite",
       {2, 2, 50, 32},
       {0, 1, 49, 5}},
      // Rows 13 and 17 of the second chunk at d = 5: thread 37's rounds 3
      // and 4, loaded together.
      {"per key dim, two in a group",
       "kernel k(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32], v: bf16[B, H, T, "
       "32],"
       " g: f32[B, H, T, 32]) -> (o: bf16[B, H, T, 32]) {\n"
       "  o = linear(q, k, v) { gate = g[b, h, t, d]; chunk = 32 }\n}\n",
       "gate value 0.5 at b=0, h=1, t=45, d=5 is positive or not finite",
       {2, 2, 50, 32},
       {0, 1, 45, 5},
       {0, 1, 49, 5}},
  };
  for (const Case &c : cases) {
    SpecRunner reference(c.spec);
    ASSERT_TRUE(reference.ok()) << c.name << ": " << reference.compileError;
    std::string error;
    auto kernel = EmulatedGpuKernel::compile(*reference.module, "", {}, error);
    ASSERT_TRUE(kernel) << c.name << ": " << error;
    std::mt19937_64 rng(5);
    std::map<std::string, HostTensor> inputs;
    for (const char *name : {"q", "k", "v"})
      inputs[name] = randomTensor(ElementType::BF16, {2, 2, 50, 32}, rng, -1, 1);
    std::string gateName = c.gateShape.size() == 3 ? "a" : "g";
    inputs[gateName] = randomTensor(ElementType::F32, c.gateShape, rng, -1, 0);
    std::vector<HostTensor> actual;
    std::vector<TensorView> storage;
    const KernelSignature &signature = kernel->image().signature;
    ASSERT_TRUE(kernel->run(viewsOf(signature, inputs, storage), actual, error))
        << c.name << " (valid gates): " << error;
    auto flatIndex = [&](const std::vector<int64_t> &at) {
      int64_t flat = 0;
      for (size_t d = 0; d < at.size(); ++d)
        flat = flat * c.gateShape[d] + at[d];
      return flat;
    };
    inputs[gateName].set(flatIndex(c.badAt), 0.5);
    if (!c.laterBadAt.empty())
      inputs[gateName].set(flatIndex(c.laterBadAt), 0.75);
    expectEmulatorFails(*kernel, inputs, {c.expected}, c.name);
  }
}

// The emulator checks every index the kernel uses: a store past a shared
// tile's rows, a load past a tensor's sequence, or an ldmatrix address past the
// declared shared memory stops the run with the thread, the access and the
// index, instead of reading a neighbour's bytes. So does a segment that
// awaits a state nobody published.
TEST(GpuEmulation, OutOfBoundsAccessesStopTheRun) {
  const char *spec = R"(
kernel s(q: bf16[B, H, N, 32], k: bf16[B, H, N, 32], v: bf16[B, H, N, 32])
    -> (o: bf16[B, H, N, 32]) {
  o = softmax(q, k, v) { mask = causal }
})";
  // The memref a load reads, through views and casts.
  auto rootOf = [](mlir::Value memref) {
    while (mlir::Operation *def = memref.getDefiningOp()) {
      if (auto view = llvm::dyn_cast<mlir::ViewLikeOpInterface>(def))
        memref = view.getViewSource();
      else if (auto metadata =
                   llvm::dyn_cast<mlir::memref::ExtractStridedMetadataOp>(def))
        memref = metadata.getSource();
      else
        break;
    }
    return memref;
  };
  // Adds `offset` to operand `operand` of `op`.
  bool planted = false;
  auto shift = [&](mlir::Operation *op, unsigned operand, int64_t offset) {
    planted = true;
    mlir::OpBuilder b(op);
    mlir::Value value = op->getOperand(operand);
    mlir::Value amount = value.getType().isIndex()
                             ? mlir::Value(mlir::arith::ConstantIndexOp::create(
                                   b, op->getLoc(), offset))
                             : mlir::Value(mlir::arith::ConstantIntOp::create(
                                   b, op->getLoc(), value.getType(), offset));
    op->setOperand(operand,
                   mlir::arith::AddIOp::create(b, op->getLoc(), value, amount));
  };
  struct Case {
    const char *name;
    std::function<void(mlir::ModuleOp)> plant;
    std::vector<std::string> expected;
  };
  std::vector<Case> cases = {
      {"past a shared tile's rows",
       [&](mlir::ModuleOp module) {
         module.walk([&](mlir::memref::StoreOp store) {
           if (!store.getMemRef().getDefiningOp<mlir::memref::ViewOp>())
             return mlir::WalkResult::advance();
           // Operand 2: the first index.
           shift(store, 2, store.getMemRefType().getDimSize(0));
           return mlir::WalkResult::interrupt();
         });
       },
       {"memref.store of shared memory (tile at byte ", "outside its shape ["}},
      {"a row past the sequence of q",
       [&](mlir::ModuleOp module) {
         module.walk([&](mlir::memref::LoadOp load) {
           auto argument =
               llvm::dyn_cast<mlir::BlockArgument>(rootOf(load.getMemRef()));
           if (!argument || argument.getArgNumber() != 0)
             return mlir::WalkResult::advance();
           shift(load, 3, 1000); // operand 3: the sequence index
           return mlir::WalkResult::interrupt();
         });
       },
       {"memref.load of input 'q' at [", "outside its shape [1, 2, 40, 32]"}},
      {"an ldmatrix past the shared memory",
       [&](mlir::ModuleOp module) {
         module.walk([&](mlir::func::CallOp call) {
           if (call.getCallee() != "attnc_emu_ldmatrix")
             return mlir::WalkResult::advance();
           shift(call, 0, 1 << 24);
           return mlir::WalkResult::interrupt();
         });
       },
       {"ldmatrix reads shared byte ", "outside the "}},
  };
  std::mt19937_64 rng(11);
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::BF16, {1, 2, 40, 32}, rng, -1, 1);
  SpecRunner reference(spec);
  ASSERT_TRUE(reference.ok()) << reference.compileError;
  for (const Case &c : cases) {
    std::string error;
    planted = false;
    auto kernel =
        EmulatedGpuKernel::compile(*reference.module, "", {}, error, c.plant);
    ASSERT_TRUE(kernel) << c.name << ": " << error;
    ASSERT_TRUE(planted) << c.name << ": the kernel has no such access";
    std::vector<std::string> parts = c.expected;
    parts.push_back(" of CTA (");
    error = expectEmulatorFails(*kernel, inputs, parts, c.name);
    EXPECT_EQ(error.rfind("the emulated kernel stopped: thread ", 0), 0u)
        << c.name << ": " << error;
  }
  // Unplanted, the same kernel runs.
  std::string error;
  auto kernel = EmulatedGpuKernel::compile(*reference.module, "", {}, error);
  ASSERT_TRUE(kernel) << error;
  expectEmulatorMatches(reference, *kernel, inputs, "unplanted");

  // A segment of a linear kernel that finds its predecessor's state
  // unpublished (a flag read as 0) stops the run instead of the process.
  SpecRunner linear(R"(
kernel l(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32], v: bf16[B, H, T, 32],
         a: f32[B, H, T]) -> (o: bf16[B, H, T, 32]) {
  o = linear(q, k, v) { gate = a[b, h, t]; chunk = 16 }
})");
  ASSERT_TRUE(linear.ok()) << linear.compileError;
  GpuPipelineOptions segments;
  segments.segmentChunks = 1;
  planted = false;
  kernel = EmulatedGpuKernel::compile(
      *linear.module, "", segments, error, [&](mlir::ModuleOp module) {
        module.walk([&](mlir::func::CallOp call) {
          if (call.getCallee() != "attnc_emu_expect_published")
            return;
          mlir::OpBuilder b(call);
          call->setOperand(0, mlir::arith::ConstantIntOp::create(
                                  b, call.getLoc(), b.getI32Type(), 0));
          planted = true;
        });
      });
  ASSERT_TRUE(kernel) << error;
  ASSERT_TRUE(planted) << "the segmented kernel awaits no state";
  std::map<std::string, HostTensor> sequence;
  for (const char *name : {"q", "k", "v"})
    sequence[name] =
        randomTensor(ElementType::BF16, {1, 1, 40, 32}, rng, -1, 1);
  sequence["a"] = randomTensor(ElementType::F32, {1, 1, 40}, rng, -1, 0);
  expectEmulatorFails(*kernel, sequence,
                      {"the emulated kernel stopped: thread ",
                       "awaits a segment state that no earlier CTA published"},
                      "unpublished segment state");
}

// A linear kernel on the emulator against the reference, at lengths 1,
// 17, 64 and 130 (70 tokens in 3 sequences, one empty, when `packed`).
// Each output is compared within `tolerance` of its largest magnitude.
struct LinearCase {
  const char *name;
  std::string spec;
  bool packed = false;
};
struct LinearConfig {
  const char *name;
  int64_t segmentChunks, blockV;
};
void expectLinearMatches(const LinearCase &c, const LinearConfig &config,
                         double tolerance) {
  const uint64_t seed = 31;
  SpecRunner reference(c.spec);
  if (!reference.ok()) {
    ADD_FAILURE() << c.name << ": " << reference.compileError;
    return;
  }
  std::string error;
  GpuPipelineOptions options;
  options.segmentChunks = config.segmentChunks;
  options.blockV = config.blockV;
  auto kernel =
      EmulatedGpuKernel::compile(*reference.module, "", options, error);
  ASSERT_TRUE(kernel) << c.name << ": " << error;
  bool causal = c.spec.find("causal = false") == std::string::npos;
  EXPECT_EQ(kernel->image().segmented(), causal) << c.name;
  const KernelSignature &signature = kernel->image().signature;
  for (int64_t t : c.packed ? std::vector<int64_t>{70}
                            : std::vector<int64_t>{1, 17, 64, 130}) {
    std::string what = std::string(c.name) + " T=" + std::to_string(t) + ", " +
                       config.name + " (seed " + std::to_string(seed) + ")";
    std::mt19937_64 rng(seed + t);
    std::map<std::string, HostTensor> inputs;
    for (const TensorSpec &spec : signature.params) {
      std::vector<int64_t> shape;
      for (const DimSpec &dim : spec.dims) {
        if (!dim.isSymbolic())
          shape.push_back(dim.size);
        else if (dim.symbol == "T")
          shape.push_back(t);
        else if (dim.symbol == "B")
          shape.push_back(2);
        else if (dim.symbol == "Hq" || dim.symbol == "H")
          shape.push_back(c.packed ? 2 : 4);
        else if (dim.symbol == "Hk")
          shape.push_back(2);
        else
          shape.push_back(4); // S1
      }
      if (spec.name == "cu") {
        inputs["cu"] = offsetsTensor({0, 30, 30, 70});
        continue;
      }
      if (spec.name == "h0" && c.packed)
        continue; // omitted: the state count comes from cu_seqlens
      bool gate = spec.name == "a" || spec.name == "g";
      double lo = -1, hi = gate ? 0 : 1;
      if (spec.name == "h0")
        lo = -0.5, hi = 0.5;
      inputs[spec.name] = randomTensor(spec.type, shape, rng, lo, hi);
    }
    std::vector<HostTensor> expected, actual;
    ASSERT_TRUE(reference.run(inputs, expected, error))
        << what << ": " << error;
    std::vector<TensorView> storage;
    ASSERT_TRUE(kernel->run(viewsOf(signature, inputs, storage), actual, error))
        << what << ": " << error;
    // expectClose scales the absolute tolerance by the largest magnitude.
    for (size_t r = 0; r < actual.size(); ++r)
      expectClose(values(actual[r]), values(expected[r]),
                  {tolerance, tolerance},
                  what + ", output " + std::to_string(r));
  }
}

// The default splits sequences into segments of 16 chunks, one segment at
// these lengths; segments of 1 and 2 chunks make causal kernels hand their
// states through several CTAs (and past empty or short sequences).
const LinearConfig kLinearConfigs[] = {{"default", 16, 0},
                                       {"segment-chunks=1", 1, 0},
                                       {"segment-chunks=2 block-v=16", 2, 16}};

TEST(GpuEmulation, LinearMatchesTheReference) {
  std::vector<LinearCase> cases = {
      {"retnet_bf16",
       "kernel k(q: bf16[B, H, T, 64], k: bf16[B, H, T, 64], v: bf16[B, H, T, "
       "64])"
       " -> (o: bf16[B, H, T, 64]) {\n  o = linear(q, k, v) { gate = log(1 - "
       "exp2(-5 - h)); scale = 0.125 }\n}\n"},
      {"ssd_strong_decay_f16", "kernel k(q: f16[B, Hq, T, 64], k: f16[B, Hk, "
                               "T, 64], v: f16[B, Hk, T, 32],"
                               " a: f32[B, Hq, T]) -> (o: f16[B, Hq, T, 32], "
                               "st: f32[B, Hq, 64, 32]) {\n"
                               "  o, st = linear(q, k, v) { gate = 6 * a[b, h, "
                               "t]; chunk = 64; scale = 0.125 }\n}\n"},
      {"elu_noncausal", "kernel k(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32], "
                        "v: bf16[B, H, T, 48])"
                        " -> (o: bf16[B, H, T, 48], st: f32[B, H, 32, 48]) {\n "
                        " o, st = linear(q, k, v) "
                        "{ feature = elu(x) + 1; causal = false; chunk = 16; "
                        "scale = 0.05 }\n}\n"},
      {"initial_state_gqa", "kernel k(q: bf16[B, Hq, T, 64], k: bf16[B, Hk, T, "
                            "64], v: bf16[B, Hk, T, 128],"
                            " h0: f32[B, Hq, 64, 128]?) -> (o: bf16[B, Hq, T, "
                            "128], st: f32[B, Hq, 64, 128]) {\n"
                            "  o, st = linear(q, k, v, initial = h0) { gate = "
                            "-0.05; chunk = 32; scale = 0.125 }\n}\n"},
      {"gla_strong_decay",
       "kernel k(q: bf16[B, Hq, T, 64], k: bf16[B, Hk, T, 64], v: bf16[B, Hk, "
       "T, 32],"
       " g: f32[B, Hq, T, 64], h0: f32[B, Hq, 64, 32]?) -> (o: bf16[B, Hq, T, "
       "32],"
       " st: f32[B, Hq, 64, 32]) {\n  o, st = linear(q, k, v, initial = h0) "
       "{ gate = 8 * g[b, h, t, d]; chunk = 64; scale = 0.125 }\n}\n"},
      // Weak gates: a segment's state still matters many chunks later.
      {"gla_weak_decay",
       "kernel k(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32],"
       " v: bf16[B, H, T, 32], g: f32[B, H, T, 32])"
       " -> (o: bf16[B, H, T, 32], st: f32[B, H, 32, 32]) {\n"
       "  o, st = linear(q, k, v) { gate = 0.05 * g[b, h, t, d];"
       " chunk = 16; scale = 0.125 }\n}\n"},
      // Dk 128: the scaled operands are built in registers.
      {"gla_dk128", "kernel k(q: bf16[B, H, T, 128], k: bf16[B, H, T, 128],"
                    " v: bf16[B, H, T, 64], g: f32[B, H, T, 128])"
                    " -> (o: bf16[B, H, T, 64], st: f32[B, H, 128, 64]) {\n"
                    "  o, st = linear(q, k, v) { gate = 3 * g[b, h, t, d];"
                    " scale = 0.09 }\n}\n"},
      {"gla_bthd_chunk16",
       "kernel k(q: f16[B, T, H, 32], k: f16[B, T, H, 32], v: f16[B, T, H, 48],"
       " g: f32[B, T, H, 32]) -> (o: f16[B, T, H, 48]) {\n  o = linear(q, k, "
       "v, "
       "layout = bthd) { gate = g[b, t, h, d]; chunk = 16 }\n}\n"},
      {"varlen_per_head",
       "kernel k(q: bf16[T, H, 32], k: bf16[T, H, 32], v: bf16[T, H, 32], a: "
       "f32[T, H],"
       " cu: i32[S1], h0: f32[S, H, 32, 32]?) -> (o: bf16[T, H, 32], st: "
       "f32[S, H, 32, 32]) {\n"
       "  o, st = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = h0) "
       "{ gate = a[tstart + t, h]; chunk = 16 }\n}\n",
       true},
  };
  // phi(q), phi(k), the weights and the state enter the tensor cores
  // rounded to bf16/f16, so errors grow with the number of summed steps:
  // 2e-2 of each output's largest magnitude.
  for (const LinearCase &c : cases)
    for (const LinearConfig &config : kLinearConfigs)
      expectLinearMatches(c, config, 2e-2);
}

// f32 q, k and v: f32 tiles, the state read as the operand in f32, every
// product three mma of bf16 halves. 1e-4 of each output's scale, which
// bf16 operands (the test above needs 2e-2) miss by far: the three f32
// examples (scalar gate, non-causal feature map, packed per-key-dim GLA)
// and per-key-dim gates with GQA, an initial state and head dims 64/32, or
// head dims 128.
TEST(GpuEmulation, F32LinearKernelsSplitIntoBf16Pairs) {
  std::vector<LinearCase> cases = {
      {"retnet", readFile(ATTNC_EXAMPLES_DIR "/retnet.attn")},
      {"linear_elu", readFile(ATTNC_EXAMPLES_DIR "/linear_elu.attn")},
      {"varlen_gla", readFile(ATTNC_EXAMPLES_DIR "/varlen_gla.attn"), true},
      {"gla_gqa_initial_state",
       "kernel k(q: f32[B, Hq, T, 64], k: f32[B, Hk, T, 64], v: f32[B, Hk, T, "
       "32],"
       " g: f32[B, Hq, T, 64], h0: f32[B, Hq, 64, 32]?) -> (o: f32[B, Hq, T, "
       "32],"
       " st: f32[B, Hq, 64, 32]) {\n  o, st = linear(q, k, v, initial = h0) "
       "{ gate = 2 * g[b, h, t, d]; chunk = 32; scale = 0.125 }\n}\n"},
      // Dk 128 and Dv 128: f32 tiles fit sm_80 with 32 value columns per CTA.
      {"gla_dk128_dv128", "kernel k(q: f32[B, H, T, 128], k: f32[B, H, T, 128],"
                          " v: f32[B, H, T, 128], g: f32[B, H, T, 128])"
                          " -> (o: f32[B, H, T, 128]) {\n  o = linear(q, k, v) "
                          "{ gate = g[b, h, t, d]; scale = 0.09 }\n}\n"},
  };
  for (const LinearCase &c : cases)
    for (const LinearConfig &config : kLinearConfigs)
      expectLinearMatches(c, config, 1e-4);
}

} // namespace
