//===- CApiTest.cpp - The C API ----------------------------------------------===//
//
// Results of the tiled kernel through the C API agree with the reference
// kernel through the C API, strided inputs work without copies, and every
// misuse gives a status and a message instead of a crash. The test links the
// C API library only (plus the MLIR-free runtime for host tensors).
//
//===----------------------------------------------------------------------===//

#include "TensorTestUtils.h"

#include "attnc-c/attnc.h"
#include "attnc/Runtime/CudaRuntime.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>

using namespace attnc;
using namespace attnc::testing;

namespace {

const char *kGla = R"(
kernel gla(q: f32[B, H, T, 8], k: f32[B, H, T, 8], v: f32[B, H, T, 4],
           g: f32[B, H, T, 8], h0: f32[B, H, 8, 4]?)
    -> (o: f32[B, H, T, 4], hT: f32[B, H, 8, 4]) {
  o, hT = linear(q, k, v, initial = h0) { gate = g[b, h, t, d]; chunk = 4 }
})";

attnc_tensor tensorOf(HostTensor &tensor, std::vector<int64_t> &shape) {
  shape = tensor.shape();
  attnc_dtype dtype = tensor.type() == ElementType::F32 ? ATTNC_F32 : ATTNC_BF16;
  return {tensor.data(), dtype, static_cast<int32_t>(shape.size()),
          shape.data(), nullptr};
}

TEST(CApi, CompileQueryLaunchMatchesTheExecutor) {
  attnc_context *context = attnc_context_create();
  attnc_kernel *kernel = nullptr;
  ASSERT_EQ(attnc_compile(context, kGla, std::strlen(kGla), "gla.attn", nullptr,
                          "cpu", &kernel),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_STREQ(attnc_kernel_name(kernel), "gla");
  ASSERT_EQ(attnc_kernel_num_params(kernel), 5u);
  ASSERT_EQ(attnc_kernel_num_results(kernel), 2u);
  attnc_tensor_info info;
  ASSERT_EQ(attnc_kernel_param(kernel, 4, &info), ATTNC_OK);
  EXPECT_STREQ(info.name, "h0");
  EXPECT_EQ(info.rank, 4);
  EXPECT_TRUE(info.optional);
  int64_t size = -1;
  EXPECT_STREQ(attnc_kernel_dim(kernel, 0, 0, 2, &size), "T");
  EXPECT_EQ(attnc_kernel_dim(kernel, 1, 1, 3, &size), nullptr);
  EXPECT_EQ(size, 4);

  std::mt19937_64 rng(5);
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, {1, 2, 9, 8}, rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, {1, 2, 9, 8}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {1, 2, 9, 4}, rng, -1, 1);
  inputs["g"] = randomTensor(ElementType::F32, {1, 2, 9, 8}, rng, -1, 0);
  std::vector<std::vector<int64_t>> shapes(9);
  const char *names[] = {"q", "k", "v", "g"};
  attnc_tensor cInputs[5];
  for (int index = 0; index < 4; ++index)
    cInputs[index] = tensorOf(inputs[names[index]], shapes[index]);
  cInputs[4] = {nullptr, ATTNC_F32, 0, nullptr, nullptr}; // no initial state
  int64_t outShape[4];
  ASSERT_EQ(attnc_kernel_output_shape(kernel, cInputs, 0, outShape), ATTNC_OK);
  EXPECT_EQ(std::vector<int64_t>(outShape, outShape + 4),
            (std::vector<int64_t>{1, 2, 9, 4}));
  HostTensor o(ElementType::F32, {1, 2, 9, 4}), state(ElementType::F32, {1, 2, 8, 4});
  attnc_tensor cOutputs[] = {tensorOf(o, shapes[5]), tensorOf(state, shapes[6])};
  ASSERT_EQ(attnc_launch(kernel, cInputs, cOutputs, nullptr), ATTNC_OK)
      << attnc_last_error(context);

  attnc_kernel *reference = nullptr;
  ASSERT_EQ(attnc_compile(context, kGla, std::strlen(kGla), "gla.attn", nullptr,
                          "cpu-reference", &reference),
            ATTNC_OK);
  HostTensor expectedO(ElementType::F32, {1, 2, 9, 4}),
      expectedState(ElementType::F32, {1, 2, 8, 4});
  attnc_tensor expected[] = {tensorOf(expectedO, shapes[7]),
                             tensorOf(expectedState, shapes[8])};
  ASSERT_EQ(attnc_launch(reference, cInputs, expected, nullptr), ATTNC_OK);
  expectClose(values(o), values(expectedO), toleranceFor(ElementType::F32),
              "o, seed 5");
  expectClose(values(state), values(expectedState),
              toleranceFor(ElementType::F32), "final state, seed 5");
  attnc_kernel_destroy(reference);

  attnc_kernel_destroy(kernel);
  attnc_context_destroy(context);
}

TEST(CApi, StridedInputsNeedNoCopy) {
  // q is a [B, H, N, D] view into a [B, N, H, D] buffer (permuted strides).
  const char *spec = R"(
kernel s(q: f32[B, H, N, 8], k: f32[B, H, N, 8], v: f32[B, H, N, 8]) -> (o: f32[B, H, N, 8]) {
  o = softmax(q, k, v) { mask = causal }
})";
  attnc_context *context = attnc_context_create();
  attnc_kernel *kernel = nullptr;
  ASSERT_EQ(attnc_compile(context, spec, std::strlen(spec), "s.attn", nullptr,
                          "cpu", &kernel),
            ATTNC_OK);
  std::mt19937_64 rng(6);
  HostTensor flash = randomTensor(ElementType::F32, {1, 7, 2, 8}, rng, -1, 1);
  HostTensor q = randomTensor(ElementType::F32, {1, 2, 7, 8}, rng, -1, 1);
  for (int64_t n = 0; n < 7; ++n) // q = flash transposed to [B, H, N, D]
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t d = 0; d < 8; ++d)
        q.set((h * 7 + n) * 8 + d, flash.get((n * 2 + h) * 8 + d));
  HostTensor k = randomTensor(ElementType::F32, {1, 2, 7, 8}, rng, -1, 1);
  HostTensor v = randomTensor(ElementType::F32, {1, 2, 7, 8}, rng, -1, 1);
  const int64_t shape[] = {1, 2, 7, 8}, flashStrides[] = {112, 8, 16, 1};
  attnc_tensor contiguous[] = {{q.data(), ATTNC_F32, 4, shape, nullptr},
                               {k.data(), ATTNC_F32, 4, shape, nullptr},
                               {v.data(), ATTNC_F32, 4, shape, nullptr}};
  attnc_tensor strided[] = {{flash.data(), ATTNC_F32, 4, shape, flashStrides},
                            contiguous[1], contiguous[2]};
  HostTensor a(ElementType::F32, {1, 2, 7, 8}), b(ElementType::F32, {1, 2, 7, 8});
  attnc_tensor outA[] = {{a.data(), ATTNC_F32, 4, shape, nullptr}};
  attnc_tensor outB[] = {{b.data(), ATTNC_F32, 4, shape, nullptr}};
  ASSERT_EQ(attnc_launch(kernel, contiguous, outA, nullptr), ATTNC_OK);
  ASSERT_EQ(attnc_launch(kernel, strided, outB, nullptr), ATTNC_OK);
  EXPECT_EQ(values(a), values(b));

  // Thread counts change who computes each (batch, head), not the result.
  ASSERT_EQ(attnc_kernel_set_cpu_threads(kernel, 3), ATTNC_OK);
  EXPECT_EQ(attnc_kernel_cpu_threads(kernel), 3);
  ASSERT_EQ(attnc_launch(kernel, strided, outB, nullptr), ATTNC_OK);
  EXPECT_EQ(values(a), values(b));
  ASSERT_EQ(attnc_kernel_set_cpu_threads(kernel, 1), ATTNC_OK);
  ASSERT_EQ(attnc_launch(kernel, strided, outB, nullptr), ATTNC_OK);
  EXPECT_EQ(values(a), values(b));
  EXPECT_EQ(attnc_kernel_set_cpu_threads(kernel, -1), ATTNC_ERROR_ARGUMENT);
  EXPECT_NE(std::string(attnc_last_error(context)).find("got -1"),
            std::string::npos);
  ASSERT_EQ(attnc_kernel_set_cpu_threads(kernel, 0), ATTNC_OK);
  EXPECT_GE(attnc_kernel_cpu_threads(kernel), 1);
  attnc_kernel_destroy(kernel);
  attnc_context_destroy(context);
}

TEST(CApi, MisuseIsReportedNotFatal) {
  attnc_context *context = attnc_context_create();
  attnc_kernel *kernel = nullptr;
  EXPECT_EQ(attnc_compile(nullptr, kGla, 1, "x", nullptr, "cpu", &kernel),
            ATTNC_ERROR_ARGUMENT);
  EXPECT_EQ(attnc_compile(context, nullptr, 0, "x", nullptr, "cpu", &kernel),
            ATTNC_ERROR_ARGUMENT);
  EXPECT_EQ(attnc_compile(context, kGla, std::strlen(kGla), "gla.attn", nullptr,
                          "sm_75", &kernel),
            ATTNC_ERROR_TARGET);
  EXPECT_NE(std::string(attnc_last_error(context)).find("unknown target 'sm_75'"),
            std::string::npos);
  EXPECT_EQ(attnc_compile(context, kGla, std::strlen(kGla), "gla.attn", "nope",
                          "cpu", &kernel),
            ATTNC_ERROR_TARGET);
  EXPECT_STREQ(attnc_last_error(context), "no kernel named 'nope'");

  const char *bad = "kernel k(q: f32[N]) -> (o: f32[N]) {\n  o = softmax(q, q, q)\n}";
  EXPECT_EQ(attnc_compile(context, bad, std::strlen(bad), "bad.attn", nullptr,
                          "cpu", &kernel),
            ATTNC_ERROR_SPEC);
  ASSERT_GE(attnc_diagnostic_count(context), 1u);
  const attnc_diagnostic *diag = attnc_diagnostic_get(context, 0);
  EXPECT_STREQ(diag->file, "bad.attn");
  EXPECT_EQ(diag->line, 2u);
  EXPECT_EQ(diag->severity, ATTNC_SEVERITY_ERROR);
  EXPECT_EQ(attnc_diagnostic_get(context, 99), nullptr);

  ASSERT_EQ(attnc_compile(context, kGla, std::strlen(kGla), "gla.attn", nullptr,
                          "cpu-reference", &kernel),
            ATTNC_OK);
  attnc_tensor_info info;
  EXPECT_EQ(attnc_kernel_param(kernel, 5, &info), ATTNC_ERROR_ARGUMENT);
  EXPECT_EQ(attnc_kernel_dim(kernel, 0, 0, 9, nullptr), nullptr);
  int dummy = 0;
  const int64_t shape[] = {1, 1, 1, 8};
  attnc_tensor inputs[5] = {{&dummy, static_cast<attnc_dtype>(42), 4, shape, nullptr}};
  attnc_tensor outputs[2] = {};
  EXPECT_EQ(attnc_launch(kernel, inputs, outputs, &dummy), ATTNC_ERROR_ARGUMENT);
  EXPECT_EQ(attnc_launch(kernel, inputs, outputs, nullptr), ATTNC_ERROR_LAUNCH);
  EXPECT_NE(std::string(attnc_last_error(context)).find("unknown dtype code 42"),
            std::string::npos);
  EXPECT_EQ(attnc_launch(kernel, nullptr, outputs, nullptr), ATTNC_ERROR_ARGUMENT);
  // CPU kernels allocate no device workspace; missing inputs are an error.
  int64_t workspace = -1;
  EXPECT_EQ(attnc_kernel_workspace_bytes(kernel, inputs, &workspace), ATTNC_OK);
  EXPECT_EQ(workspace, 0);
  EXPECT_EQ(attnc_kernel_workspace_bytes(kernel, nullptr, &workspace),
            ATTNC_ERROR_ARGUMENT);
  EXPECT_EQ(attnc_kernel_workspace_bytes(nullptr, inputs, &workspace),
            ATTNC_ERROR_ARGUMENT);
  attnc_kernel_destroy(kernel);
  attnc_context_destroy(context);
}



const char *kCausal = R"(
kernel causal(q: bf16[B, H, N, 64], k: bf16[B, H, N, 64], v: bf16[B, H, N, 64])
    -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { mask = causal }
})";

TEST(CApi, GpuTargetsCompileWithoutAGpuAndHitTheCache) {
  char directory[] = "/tmp/attnc-capi-cacheXXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  attnc_context *context = attnc_context_create();
  ASSERT_EQ(attnc_context_set_cache_dir(context, directory), ATTNC_OK);
  EXPECT_STREQ(attnc_context_cache_dir(context), directory);

  attnc_kernel *first = nullptr, *second = nullptr;
  ASSERT_EQ(attnc_compile(context, kCausal, std::strlen(kCausal), "c.attn",
                          nullptr, "sm_90a", &first),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_STREQ(attnc_kernel_target(first), "sm_90a");
  EXPECT_FALSE(attnc_kernel_from_cache(first));
  size_t size = 0;
  const char *ptx = attnc_kernel_image(first, &size);
  ASSERT_NE(ptx, nullptr);
  EXPECT_NE(std::string(ptx, size).find(".target sm_90a"), std::string::npos);
  ASSERT_EQ(attnc_compile(context, kCausal, std::strlen(kCausal), "c.attn",
                          nullptr, "sm_90a", &second),
            ATTNC_OK);
  EXPECT_TRUE(attnc_kernel_from_cache(second));
  EXPECT_STREQ(attnc_kernel_name(second), "causal");
  EXPECT_EQ(attnc_kernel_set_cpu_threads(second, 2), ATTNC_ERROR_ARGUMENT);
  EXPECT_NE(std::string(attnc_last_error(context)).find("only CPU kernels"),
            std::string::npos);
  EXPECT_EQ(attnc_kernel_cpu_threads(second), 0);
  EXPECT_EQ(attnc_kernel_num_params(second), 3u);

  // Launch facts for B=2, H=3, N=130: ceil(130 / 64) query blocks.
  std::vector<int64_t> shape = {2, 3, 130, 64};
  alignas(16) static uint16_t fake[8];
  attnc_tensor tensor = {fake, ATTNC_BF16, 4, shape.data(), nullptr};
  attnc_tensor inputs[3] = {tensor, tensor, tensor};
  int64_t grid[3], block[3], shared = 0;
  ASSERT_EQ(attnc_kernel_launch_config(second, inputs, grid, block, &shared),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_EQ(grid[0], 3);
  EXPECT_EQ(grid[1], 3);
  EXPECT_EQ(grid[2], 2);
  EXPECT_EQ(block[0], 128);
  EXPECT_EQ(shared, 46080);
  int64_t outShape[4];
  ASSERT_EQ(attnc_kernel_output_shape(second, inputs, 0, outShape), ATTNC_OK);
  EXPECT_EQ(outShape[2], 130);

  // Without a driver, launching (not compiling) fails and says why.
  attnc_tensor outputs[1] = {tensor};
  attnc_status status = attnc_launch(second, inputs, outputs, nullptr);
  if (status != ATTNC_OK) {
    EXPECT_EQ(status, ATTNC_ERROR_LAUNCH);
    EXPECT_NE(std::string(attnc_last_error(context)).find("cannot launch the sm_90a kernel"),
              std::string::npos)
        << attnc_last_error(context);
  }
  attnc_kernel_destroy(first);
  attnc_kernel_destroy(second);

  // The GPU-less machine cannot pick an architecture for "cuda".
  attnc_kernel *detected = nullptr;
  status = attnc_compile(context, kCausal, std::strlen(kCausal), "c.attn",
                         nullptr, "cuda", &detected);
  if (status != ATTNC_OK) {
    EXPECT_EQ(status, ATTNC_ERROR_TARGET);
    EXPECT_NE(std::string(attnc_last_error(context)).find("name sm_80 or sm_90a"),
              std::string::npos);
  } else {
    attnc_kernel_destroy(detected);
  }
  // What has no GPU strategy is refused with the feature named.
  const char *chunk128 = "kernel l(q: bf16[B, H, T, 64], k: bf16[B, H, T, 64], "
                         "v: bf16[B, H, T, 64]) -> (o: bf16[B, H, T, 64]) {\n"
                         "  o = linear(q, k, v) { chunk = 128 }\n}\n";
  EXPECT_EQ(attnc_compile(context, chunk128, std::strlen(chunk128), "l.attn",
                          nullptr, "sm_80", &detected),
            ATTNC_ERROR_TARGET);
  EXPECT_NE(std::string(attnc_last_error(context))
                .find("the chunk must be a multiple of 16 up to 64 on the GPU"),
            std::string::npos)
      << attnc_last_error(context);
  attnc_context_destroy(context);
  std::string remove = std::string("rm -rf ") + directory;
  EXPECT_EQ(std::system(remove.c_str()), 0);
}

// A corrupted entry is rebuilt and a cache that cannot be written is used
// without caching; each says so on stderr, once per process.
TEST(CApi, CacheProblemsAreNotedOnceOnStderr) {
  char directory[] = "/tmp/attnc-capi-notesXXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  attnc_context *context = attnc_context_create();
  ASSERT_EQ(attnc_context_set_cache_dir(context, directory), ATTNC_OK);
  auto compile = [&]() {
    attnc_kernel *kernel = nullptr;
    EXPECT_EQ(attnc_compile(context, kCausal, std::strlen(kCausal), "c.attn",
                            nullptr, "sm_80", &kernel),
              ATTNC_OK)
        << attnc_last_error(context);
    bool fromCache = kernel && attnc_kernel_from_cache(kernel);
    attnc_kernel_destroy(kernel);
    return fromCache;
  };
  auto count = [](const std::string &text, const std::string &part) {
    size_t n = 0;
    for (size_t at = text.find(part); at != std::string::npos;
         at = text.find(part, at + 1))
      ++n;
    return n;
  };
  EXPECT_FALSE(compile());
  std::string entry;
  for (const auto &file : std::filesystem::directory_iterator(directory))
    entry = file.path();
  ASSERT_FALSE(entry.empty());
  std::string data;
  {
    std::ifstream in(entry, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), {});
  }
  data[data.size() / 2] ^= 1;
  std::ofstream(entry, std::ios::binary | std::ios::trunc) << data;
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(compile()); // rebuilt, with a note
  EXPECT_TRUE(compile());  // and cached again
  std::string notes = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(notes, "is unreadable"), 1u) << notes;
  EXPECT_EQ(count(notes, entry), 1u) << notes;

  // A cache directory below a regular file cannot be created.
  std::string blocked = entry + "/cache";
  ASSERT_EQ(attnc_context_set_cache_dir(context, blocked.c_str()), ATTNC_OK);
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(compile());
  EXPECT_FALSE(compile());
  notes = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(notes, "GPU kernels are not cached"), 1u) << notes;
  EXPECT_EQ(count(notes, blocked), 1u) << notes;
  attnc_context_destroy(context);
  std::filesystem::remove_all(directory);
}

// Tuning options reach the kernel (its PTX, launch grid and results), take
// part in the cache key, and bad ones are refused with the option named.
TEST(CApi, TuningOptionsReachTheKernel) {
  char directory[] = "/tmp/attnc-capi-optionsXXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  attnc_context *context = attnc_context_create();
  ASSERT_EQ(attnc_context_set_cache_dir(context, directory), ATTNC_OK);
  auto compile = [&](const char *target, const char *options,
                     attnc_kernel **kernel) {
    return attnc_compile_with_options(context, kCausal, std::strlen(kCausal),
                                      "c.attn", nullptr, target, options,
                                      kernel);
  };
  auto lastError = [&] { return std::string(attnc_last_error(context)); };

  attnc_kernel *wgmma = nullptr, *plain = nullptr, *again = nullptr;
  ASSERT_EQ(compile("sm_90a", "warps=8, mma=wgmma", &wgmma), ATTNC_OK)
      << lastError();
  size_t size = 0;
  std::string ptx(attnc_kernel_image(wgmma, &size));
  EXPECT_NE(ptx.find("wgmma.mma_async"), std::string::npos);
  std::vector<int64_t> shape = {2, 3, 130, 64};
  alignas(16) static uint16_t fake[8];
  attnc_tensor tensor = {fake, ATTNC_BF16, 4, shape.data(), nullptr};
  attnc_tensor inputs[3] = {tensor, tensor, tensor};
  int64_t grid[3], block[3], shared = 0;
  ASSERT_EQ(attnc_kernel_launch_config(wgmma, inputs, grid, block, &shared),
            ATTNC_OK);
  EXPECT_EQ(grid[0], 2); // ceil(130 / 128): 8 warps of 16 rows
  EXPECT_EQ(block[0], 256);
  // The defaults are another kernel; the same options in another order and
  // spelling are the same one.
  ASSERT_EQ(compile("sm_90a", "", &plain), ATTNC_OK);
  EXPECT_FALSE(attnc_kernel_from_cache(plain));
  EXPECT_EQ(std::string(attnc_kernel_image(plain, &size)).find("wgmma"),
            std::string::npos);
  ASSERT_EQ(compile("sm_90a", " mma=wgmma warps=8 block-k=64 ", &again),
            ATTNC_OK);
  EXPECT_TRUE(attnc_kernel_from_cache(again));
  for (attnc_kernel *kernel : {wgmma, plain, again})
    attnc_kernel_destroy(kernel);

  // Refused: each message names the option.
  struct Refusal {
    const char *target, *options;
    attnc_status status;
    const char *message;
  } refusals[] = {
      {"sm_80", "warps=eight", ATTNC_ERROR_ARGUMENT,
       "GPU option 'warps=eight' needs a non-negative integer value"},
      {"sm_80", "tile=4", ATTNC_ERROR_ARGUMENT,
       "unknown GPU option 'tile=4'; options: warps=N"},
      {"sm_80", "mma=hmma", ATTNC_ERROR_ARGUMENT,
       "mma must be sync or wgmma, got 'hmma'"},
      {"sm_80", "from-tile-program rows-per-warp=32", ATTNC_ERROR_ARGUMENT,
       "from-tile-program builds 16 rows per warp"},
      {"sm_80", "mma=wgmma", ATTNC_ERROR_TARGET, "sm_90a"},
      {"sm_80", "block-k=20", ATTNC_ERROR_TARGET,
       "block-k must be a multiple of 16"},
      {"cpu", "warps=4", ATTNC_ERROR_ARGUMENT,
       "unknown CPU option 'warps=4'; options: block-q=N, block-k=N"},
      {"cpu", "block-q=0", ATTNC_ERROR_ARGUMENT,
       "CPU option 'block-q=0' needs a positive integer value"},
      {"cpu-reference", "block-q=16", ATTNC_ERROR_ARGUMENT,
       "target cpu-reference takes no options"},
  };
  for (const Refusal &refusal : refusals) {
    attnc_kernel *kernel = nullptr;
    EXPECT_EQ(compile(refusal.target, refusal.options, &kernel), refusal.status)
        << refusal.target << " " << refusal.options;
    EXPECT_EQ(kernel, nullptr);
    EXPECT_NE(lastError().find(refusal.message), std::string::npos)
        << refusal.target << " " << refusal.options << ": " << lastError();
  }

  // Tuned CPU tiles and the emulated wgmma kernel agree with the reference
  // on a length that no tile size divides.
  std::mt19937_64 rng(11);
  std::vector<int64_t> shapes[7];
  HostTensor q = randomTensor(ElementType::BF16, {1, 2, 70, 64}, rng, -1, 1),
             k = randomTensor(ElementType::BF16, {1, 2, 70, 64}, rng, -1, 1),
             v = randomTensor(ElementType::BF16, {1, 2, 70, 64}, rng, -1, 1);
  attnc_tensor qkv[3] = {tensorOf(q, shapes[0]), tensorOf(k, shapes[1]),
                         tensorOf(v, shapes[2])};
  auto run = [&](const char *target, const char *options, HostTensor &o,
                 std::vector<int64_t> &oShape) {
    attnc_kernel *kernel = nullptr;
    ASSERT_EQ(compile(target, options, &kernel), ATTNC_OK) << lastError();
    attnc_tensor out[1] = {tensorOf(o, oShape)};
    EXPECT_EQ(attnc_launch(kernel, qkv, out, nullptr), ATTNC_OK) << lastError();
    EXPECT_EQ(attnc_synchronize(kernel, nullptr), ATTNC_OK) << lastError();
    attnc_kernel_destroy(kernel);
  };
  HostTensor expected(ElementType::BF16, {1, 2, 70, 64}),
      tiled(ElementType::BF16, {1, 2, 70, 64}),
      emulated(ElementType::BF16, {1, 2, 70, 64});
  run("cpu-reference", nullptr, expected, shapes[3]);
  run("cpu", "block-q=16,block-k=32", tiled, shapes[4]);
  run("gpu-emulator", "mma=wgmma", emulated, shapes[5]);
  expectClose(values(tiled), values(expected), toleranceFor(ElementType::BF16),
              "cpu block-q=16, seed 11");
  expectClose(values(emulated), values(expected),
              toleranceFor(ElementType::BF16), "emulated wgmma, seed 11");
  attnc_context_destroy(context);
  std::string remove = std::string("rm -rf ") + directory;
  EXPECT_EQ(std::system(remove.c_str()), 0);
}

} // namespace

// A GPU kernel travels as its serialized image: attnc_kernel_load (all the
// runtime-only build can do) gives back the same signature, launch facts and
// PTX; damaged images are refused, and without a GPU the launch says so.
TEST(CApi, SerializedImagesLoadWithoutTheCompiler) {
  EXPECT_EQ(attnc_has_compiler(), 1);
  attnc_context *context = attnc_context_create();
  ASSERT_EQ(attnc_context_set_cache_dir(context, nullptr), ATTNC_OK);
  attnc_kernel *compiled = nullptr, *loaded = nullptr;
  ASSERT_EQ(attnc_compile(context, kCausal, std::strlen(kCausal), "c.attn",
                          nullptr, "sm_80", &compiled),
            ATTNC_OK)
      << attnc_last_error(context);
  size_t size = 0;
  const char *bytes = attnc_kernel_serialize(compiled, &size);
  ASSERT_NE(bytes, nullptr);
  std::string image(bytes, size);
  ASSERT_EQ(attnc_kernel_load(context, image.data(), image.size(), &loaded),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_STREQ(attnc_kernel_target(loaded), "sm_80");
  EXPECT_STREQ(attnc_kernel_name(loaded), "causal");
  ASSERT_EQ(attnc_kernel_num_params(loaded), 3u);
  ASSERT_EQ(attnc_kernel_num_results(loaded), attnc_kernel_num_results(compiled));
  attnc_tensor_info info;
  ASSERT_EQ(attnc_kernel_param(loaded, 2, &info), ATTNC_OK);
  EXPECT_STREQ(info.name, "v");
  EXPECT_EQ(info.dtype, ATTNC_BF16);
  size_t ptxSize = 0, loadedPtxSize = 0;
  const char *ptx = attnc_kernel_image(compiled, &ptxSize);
  const char *loadedPtx = attnc_kernel_image(loaded, &loadedPtxSize);
  EXPECT_EQ(std::string(ptx, ptxSize), std::string(loadedPtx, loadedPtxSize));

  std::vector<int64_t> shape = {1, 2, 100, 64};
  alignas(16) static uint16_t fake[8];
  attnc_tensor tensor = {fake, ATTNC_BF16, 4, shape.data(), nullptr};
  attnc_tensor inputs[3] = {tensor, tensor, tensor};
  int64_t grid[3], block[3], shared = 0, loadedGrid[3], loadedShared = 0;
  ASSERT_EQ(attnc_kernel_launch_config(compiled, inputs, grid, block, &shared),
            ATTNC_OK);
  ASSERT_EQ(attnc_kernel_launch_config(loaded, inputs, loadedGrid, block,
                                       &loadedShared),
            ATTNC_OK);
  EXPECT_EQ(std::vector<int64_t>(grid, grid + 3),
            std::vector<int64_t>(loadedGrid, loadedGrid + 3));
  EXPECT_EQ(shared, loadedShared);

  // A flipped byte in the PTX, a truncation, and bytes that are no image.
  std::string flipped = image;
  flipped[flipped.size() - 10] ^= 1;
  attnc_kernel *bad = nullptr;
  for (const std::string &damaged :
       {flipped, image.substr(0, image.size() / 2), std::string("hello")}) {
    EXPECT_EQ(attnc_kernel_load(context, damaged.data(), damaged.size(), &bad),
              ATTNC_ERROR_ARGUMENT);
    EXPECT_EQ(bad, nullptr);
    EXPECT_NE(std::string(attnc_last_error(context))
                  .find("not a usable attnc GPU image"),
              std::string::npos)
        << attnc_last_error(context);
  }
  EXPECT_EQ(attnc_kernel_load(context, nullptr, 0, &bad), ATTNC_ERROR_ARGUMENT);

  std::string why;
  if (!cudaComputeCapability(why)) {
    attnc_tensor output = tensor;
    EXPECT_EQ(attnc_launch(loaded, inputs, &output, nullptr),
              ATTNC_ERROR_LAUNCH);
    EXPECT_NE(std::string(attnc_last_error(context)).find("cannot launch"),
              std::string::npos)
        << attnc_last_error(context);
  }
  EXPECT_EQ(attnc_kernel_serialize(nullptr, &size), nullptr);
  attnc_kernel_destroy(loaded);
  attnc_kernel_destroy(compiled);
  attnc_context_destroy(context);
}

TEST(CApi, OutputShapesFromShapesAloneReadNoData) {
  // Packed GLA: the final state has one entry per sequence, a dim that only
  // cu's length gives. The data pointers are not readable memory: the
  // shape-only query must not touch them (a read would crash the test).
  const char *spec = R"(
kernel varlen(q: bf16[T, H, 16], k: bf16[T, H, 16], v: bf16[T, H, 32],
              g: f32[T, H, 16], cu: i32[S1], h0: f32[S, H, 16, 32]?)
    -> (o: bf16[T, H, 32], hT: f32[S, H, 16, 32]) {
  o, hT = linear(q, k, v, layout = thd, cu_seqlens = cu, initial = h0) {
    gate = g[tstart + t, h, d]
  }
})";
  for (const char *target : {"cpu", "sm_80"}) {
    attnc_context *context = attnc_context_create();
    ASSERT_EQ(attnc_context_set_cache_dir(context, nullptr), ATTNC_OK);
    attnc_kernel *kernel = nullptr;
    ASSERT_EQ(attnc_compile(context, spec, std::strlen(spec), "v.attn", nullptr,
                            target, &kernel),
              ATTNC_OK)
        << target << ": " << attnc_last_error(context);
    void *unreadable = reinterpret_cast<void *>(uintptr_t{16});
    const int64_t tokens[] = {30, 2, 16}, values[] = {30, 2, 32},
                  offsets[] = {4};
    attnc_tensor inputs[] = {{unreadable, ATTNC_BF16, 3, tokens, nullptr},
                             {unreadable, ATTNC_BF16, 3, tokens, nullptr},
                             {unreadable, ATTNC_BF16, 3, values, nullptr},
                             {unreadable, ATTNC_F32, 3, tokens, nullptr},
                             {unreadable, ATTNC_I32, 1, offsets, nullptr},
                             {nullptr, ATTNC_F32, 0, nullptr, nullptr}};
    int64_t shape[4] = {0, 0, 0, 0};
    ASSERT_EQ(attnc_kernel_infer_output_shape(kernel, inputs, 1, shape),
              ATTNC_OK)
        << target << ": " << attnc_last_error(context);
    EXPECT_EQ(std::vector<int64_t>(shape, shape + 4),
              (std::vector<int64_t>{3, 2, 16, 32}))
        << target;
    ASSERT_EQ(attnc_kernel_infer_output_shape(kernel, inputs, 0, shape),
              ATTNC_OK);
    EXPECT_EQ(std::vector<int64_t>(shape, shape + 3),
              (std::vector<int64_t>{30, 2, 32}))
        << target;
    // Shape errors are still found, naming the tensor.
    const int64_t badValues[] = {30, 2, 48};
    inputs[2].shape = badValues;
    EXPECT_EQ(attnc_kernel_infer_output_shape(kernel, inputs, 0, shape),
              ATTNC_ERROR_LAUNCH);
    EXPECT_NE(std::string(attnc_last_error(context)).find("'v'"),
              std::string::npos)
        << attnc_last_error(context);
    attnc_kernel_destroy(kernel);
    attnc_context_destroy(context);
  }
}

namespace {

const char *kBiasedCausal = R"(
kernel biased(q: f32[B, H, N, 4], k: f32[B, H, N, 4], v: f32[B, H, N, 4],
              rel: f32[H, 9]) -> (o: f32[B, H, N, 4]) {
  o = softmax(q, k, v) { score = s + rel[h, i - j + 4]; mask = causal && i - j <= 4 }
})";

/// sum(o * weight) of the training forward's output on `inputs`.
double weightedLoss(attnc_kernel *forward, attnc_tensor *inputs,
                    const HostTensor &weight) {
  std::vector<int64_t> shapes[2];
  HostTensor o(ElementType::F32, weight.shape()), lse(ElementType::F32, {1, 2, 6});
  attnc_tensor outputs[] = {tensorOf(o, shapes[0]), tensorOf(lse, shapes[1])};
  EXPECT_EQ(attnc_launch(forward, inputs, outputs, nullptr), ATTNC_OK);
  double loss = 0;
  for (int64_t index = 0; index < o.numElements(); ++index)
    loss += o.get(index) * weight.get(index);
  return loss;
}

// The training forward returns lse; the backward's signature is the one
// attnc.h documents, and its gradients through the C API agree with central
// differences of the training forward (float64 sums of f32 outputs, step
// 1e-2: tolerance 2e-3).
TEST(CApi, TrainingForwardAndBackwardParts) {
  attnc_context *context = attnc_context_create();
  size_t length = std::strlen(kBiasedCausal);
  attnc_kernel *forward = nullptr, *backward = nullptr;
  ASSERT_EQ(attnc_compile_part(context, kBiasedCausal, length, "b.attn",
                               nullptr, "cpu", nullptr,
                               ATTNC_PART_TRAINING_FORWARD, &forward),
            ATTNC_OK)
      << attnc_last_error(context);
  ASSERT_EQ(attnc_kernel_num_results(forward), 2u);
  attnc_tensor_info info;
  ASSERT_EQ(attnc_kernel_result(forward, 1, &info), ATTNC_OK);
  EXPECT_STREQ(info.name, "lse");
  ASSERT_EQ(attnc_compile_part(context, kBiasedCausal, length, "b.attn",
                               nullptr, "cpu-reference", nullptr,
                               ATTNC_PART_BACKWARD, &backward),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_STREQ(attnc_kernel_name(backward), "biased_backward");
  std::vector<std::string> params, results;
  for (size_t index = 0; index < attnc_kernel_num_params(backward); ++index) {
    ASSERT_EQ(attnc_kernel_param(backward, index, &info), ATTNC_OK);
    params.push_back(info.name);
  }
  for (size_t index = 0; index < attnc_kernel_num_results(backward); ++index) {
    ASSERT_EQ(attnc_kernel_result(backward, index, &info), ATTNC_OK);
    results.push_back(info.name);
  }
  EXPECT_EQ(params, (std::vector<std::string>{"q", "k", "v", "rel", "o",
                                              "lse", "d_o"}));
  EXPECT_EQ(results, (std::vector<std::string>{"d_q", "d_k", "d_v", "d_rel"}));

  uint64_t seed = 17;
  std::mt19937_64 rng(seed);
  std::vector<HostTensor> tensors;
  for (std::vector<int64_t> shape : {std::vector<int64_t>{1, 2, 6, 4},
                                     {1, 2, 6, 4}, {1, 2, 6, 4}, {2, 9}})
    tensors.push_back(randomTensor(ElementType::F32, shape, rng, -1, 1));
  HostTensor weight = randomTensor(ElementType::F32, {1, 2, 6, 4}, rng, -1, 1);
  std::vector<int64_t> shapes[12];
  attnc_tensor inputs[7];
  for (int index = 0; index < 4; ++index)
    inputs[index] = tensorOf(tensors[index], shapes[index]);
  HostTensor o(ElementType::F32, {1, 2, 6, 4}), lse(ElementType::F32, {1, 2, 6});
  attnc_tensor outputs[] = {tensorOf(o, shapes[4]), tensorOf(lse, shapes[5])};
  ASSERT_EQ(attnc_launch(forward, inputs, outputs, nullptr), ATTNC_OK);
  inputs[4] = outputs[0];
  inputs[5] = outputs[1];
  inputs[6] = tensorOf(weight, shapes[6]); // d_o of sum(o * weight)
  std::vector<HostTensor> gradients;
  for (int index = 0; index < 4; ++index)
    gradients.emplace_back(ElementType::F32, tensors[index].shape());
  attnc_tensor cGradients[4];
  for (int index = 0; index < 4; ++index)
    cGradients[index] = tensorOf(gradients[index], shapes[7 + index]);
  ASSERT_EQ(attnc_launch(backward, inputs, cGradients, nullptr), ATTNC_OK)
      << attnc_last_error(context);

  const double step = 1e-2;
  for (int tensor = 0; tensor < 4; ++tensor)
    for (int64_t element : {int64_t(0), tensors[tensor].numElements() / 2 + 1,
                            tensors[tensor].numElements() - 1}) {
      double value = tensors[tensor].get(element);
      tensors[tensor].set(element, value + step);
      double above = weightedLoss(forward, inputs, weight);
      tensors[tensor].set(element, value - step);
      double below = weightedLoss(forward, inputs, weight);
      tensors[tensor].set(element, value);
      EXPECT_NEAR(gradients[tensor].get(element), (above - below) / (2 * step),
                  2e-3)
          << "seed " << seed << ", input " << tensor << ", element "
          << element;
    }

  // The GPU backward: compiled without a GPU, also with a bias table's
  // gradient (each CTA's copy in the workspace).
  attnc_kernel *gpuBackward = nullptr;
  ASSERT_EQ(attnc_compile_part(context, kCausal, std::strlen(kCausal),
                               "c.attn", nullptr, "sm_80", nullptr,
                               ATTNC_PART_BACKWARD, &gpuBackward),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_STREQ(attnc_kernel_name(gpuBackward), "causal_backward");
  EXPECT_EQ(attnc_kernel_num_params(gpuBackward), 6u); // q k v o lse d_o
  EXPECT_EQ(attnc_kernel_num_results(gpuBackward), 3u);
  attnc_kernel_destroy(gpuBackward);
  const char *biasedGpu = R"(
kernel biased(q: bf16[B, H, N, 64], k: bf16[B, H, N, 64], v: bf16[B, H, N, 64],
              rel: f32[H, 9]) -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { score = s + rel[h, i - j + 4]; mask = causal && i - j <= 4 }
})";
  ASSERT_EQ(attnc_compile_part(context, biasedGpu, std::strlen(biasedGpu),
                               "b.attn", nullptr, "sm_80", nullptr,
                               ATTNC_PART_BACKWARD, &gpuBackward),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_EQ(attnc_kernel_num_results(gpuBackward), 4u); // ..., d_rel
  attnc_kernel_destroy(gpuBackward);
  // Linear kernels: the reference's backward through time and the
  // chunkwise one on "cpu" and the GPU's, with the same parameters.
  attnc_kernel *refused = nullptr;
  for (const char *target : {"cpu-reference", "cpu"}) {
    attnc_kernel *linearBackward = nullptr;
    ASSERT_EQ(attnc_compile_part(context, kGla, std::strlen(kGla), "gla.attn",
                                 nullptr, target, nullptr, ATTNC_PART_BACKWARD,
                                 &linearBackward),
              ATTNC_OK)
        << target << ": " << attnc_last_error(context);
    EXPECT_STREQ(attnc_kernel_name(linearBackward), "gla_backward");
    EXPECT_EQ(attnc_kernel_num_params(linearBackward), 7u); // q k v g h0 d_o d_hT
    EXPECT_EQ(attnc_kernel_num_results(linearBackward), 5u); // d_q d_k d_v d_h0 d_g
    attnc_kernel_destroy(linearBackward);
  }
  // On the GPU (tiles of 16 columns): its workspace holds, per CTA (batch
  // entry x kv head), the scratch: (ceil(T / 16) + 1) chunk start states
  // and dH (16 x 16 each) and one chunk's dq, dg, dk, dv and cumulative
  // gate rows, after a header of 1 + 4 words padded to 16 bytes. d_g is
  // stored, not a copy per CTA: each CTA's steps read their own elements
  // of g.
  const char *glaGpu = R"(
kernel gla(q: f32[B, H, T, 16], k: f32[B, H, T, 16], v: f32[B, H, T, 16],
           g: f32[B, H, T, 16], h0: f32[B, H, 16, 16]?)
    -> (o: f32[B, H, T, 16], hT: f32[B, H, 16, 16]) {
  o, hT = linear(q, k, v, initial = h0) { gate = g[b, h, t, d]; chunk = 16 }
})";
  attnc_kernel *gpuLinear = nullptr;
  ASSERT_EQ(attnc_compile_part(context, glaGpu, std::strlen(glaGpu),
                               "gla.attn", nullptr, "sm_80", nullptr,
                               ATTNC_PART_BACKWARD, &gpuLinear),
            ATTNC_OK)
      << attnc_last_error(context);
  EXPECT_EQ(attnc_kernel_num_results(gpuLinear), 5u);
  float present = 0;
  int64_t rows[] = {2, 2, 40, 16}, state[] = {2, 2, 16, 16};
  attnc_tensor linearInputs[] = {
      {&present, ATTNC_F32, 4, rows, nullptr},  // q
      {&present, ATTNC_F32, 4, rows, nullptr},  // k
      {&present, ATTNC_F32, 4, rows, nullptr},  // v
      {&present, ATTNC_F32, 4, rows, nullptr},  // g
      {nullptr, ATTNC_F32, 4, state, nullptr},  // h0, omitted
      {&present, ATTNC_F32, 4, rows, nullptr},  // d_o
      {&present, ATTNC_F32, 4, state, nullptr}, // d_hT
  };
  int64_t workspaceBytes = 0;
  ASSERT_EQ(attnc_kernel_workspace_bytes(gpuLinear, linearInputs,
                                         &workspaceBytes),
            ATTNC_OK)
      << attnc_last_error(context);
  int64_t scratchWords = (3 + 1) * 256 + 256 + 5 * 16 * 16;
  EXPECT_EQ(workspaceBytes, 4 * (8 + 4 * scratchWords));
  attnc_kernel_destroy(gpuLinear);
  EXPECT_EQ(attnc_compile_part(context, kGla, std::strlen(kGla), "gla.attn",
                               nullptr, "cpu", nullptr,
                               static_cast<attnc_kernel_part>(7), &refused),
            ATTNC_ERROR_ARGUMENT);
  EXPECT_EQ(refused, nullptr);
  attnc_kernel_destroy(backward);
  attnc_kernel_destroy(forward);
  attnc_context_destroy(context);
}

} // namespace
