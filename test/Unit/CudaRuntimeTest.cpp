//===- CudaRuntimeTest.cpp - The CUDA runtime against a fake driver -------===//
//
// The runtime's side of the driver protocol, checked without a GPU: the C
// API loads ATTNC_LIBCUDA = libAttncFakeCuda (FakeCudaDriver.h), which
// records launches and refuses what a driver would refuse. What a kernel
// computes is the GPU tests' business; here: the target the device picks,
// kernel arguments against the PTX entry, shared memory attributes, status
// words per stream, the stream order of segment workspaces, and every driver
// failure reported with nothing leaked.
//
//===----------------------------------------------------------------------===//

#include "FakeCudaDriver.h"

#include "attnc-c/attnc.h"
#include "attnc/Runtime/CudaRuntime.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace attnc;

namespace {

// Before the first driver call: the runtime loads the driver once.
const bool kUsesFakeDriver = setenv("ATTNC_LIBCUDA", ATTNC_FAKE_CUDA, 1) == 0;

const char *kCausal = R"(
kernel causal(q: bf16[B, H, N, 64], k: bf16[B, H, N, 64], v: bf16[B, H, N, 64])
    -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { mask = causal }
})";

const char *kCausal128 = R"(
kernel causal128(q: bf16[B, H, N, 128], k: bf16[B, H, N, 128],
                 v: bf16[B, H, N, 128]) -> (o: bf16[B, H, N, 128]) {
  o = softmax(q, k, v) { mask = causal }
})";

const char *kDecode128 = R"(
kernel decode(q: bf16[B, H, N, 128], k: bf16[B, H, M, 128],
              v: bf16[B, H, M, 128]) -> (o: bf16[B, H, N, 128]) {
  o = softmax(q, k, v) { mask = causal }
})";

const char *kGla = R"(
kernel gla(q: bf16[B, T, H, 64], k: bf16[B, T, H, 64], v: bf16[B, T, H, 128],
           g: f32[B, T, H, 64], h0: f32[B, H, 64, 128]?)
    -> (o: bf16[B, T, H, 128], hT: f32[B, H, 64, 128]) {
  o, hT = linear(q, k, v, layout = bthd, initial = h0) {
    gate = g[b, t, h, d]
    chunk = 64
  }
})";

std::string hex(uint64_t value) {
  char text[32];
  std::snprintf(text, sizeof(text), "0x%llx",
                static_cast<unsigned long long>(value));
  return text;
}
std::string hex(void *pointer) {
  return hex(reinterpret_cast<uintptr_t>(pointer));
}

void *const kStreamA = reinterpret_cast<void *>(0xa1);
void *const kStreamB = reinterpret_cast<void *>(0xb2);
void *const kStreamC = reinterpret_cast<void *>(0xc3);

/// A context without a disk cache and the fake driver's state reset; checks
/// on exit that every device allocation was freed.
class FakeDriver : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(kUsesFakeDriver);
    fake_cuda::reset();
    fake_cuda::setDevice(9, 0, 227 * 1024);
    context = attnc_context_create();
    ASSERT_EQ(attnc_context_set_cache_dir(context, ""), ATTNC_OK);
  }
  void TearDown() override {
    for (attnc_kernel *kernel : kernels)
      attnc_kernel_destroy(kernel);
    buffers.clear();
    attnc_context_destroy(context);
    EXPECT_EQ(fake_cuda::liveAllocations(), 0u) << "device memory leaked";
  }

  attnc_kernel *compile(const char *spec, const char *target,
                        const char *options = nullptr) {
    attnc_kernel *kernel = nullptr;
    attnc_status status =
        attnc_compile_with_options(context, spec, std::strlen(spec), "t.attn",
                                   nullptr, target, options, &kernel);
    EXPECT_EQ(status, ATTNC_OK) << attnc_last_error(context);
    if (kernel)
      kernels.push_back(kernel);
    return kernel;
  }

  /// A contiguous device tensor (its shape outlives the returned view).
  attnc_tensor deviceTensor(attnc_dtype dtype, std::vector<int64_t> shape) {
    size_t elementBytes = dtype == ATTNC_BF16 ? 2 : 4, bytes = elementBytes;
    for (int64_t size : shape)
      bytes *= size;
    std::string error;
    buffers.push_back(DeviceBuffer::allocate(bytes, error));
    EXPECT_TRUE(buffers.back()) << error;
    shapes.push_back(std::make_unique<std::vector<int64_t>>(shape));
    return {buffers.back()->data(), dtype, static_cast<int32_t>(shape.size()),
            shapes.back()->data(), nullptr};
  }

  /// Device tensors for kGla with T tokens and H heads (q doubles as k; no
  /// initial state).
  struct GlaTensors {
    attnc_tensor inputs[5], outputs[2];
  };
  GlaTensors glaTensors(int64_t t, int64_t h) {
    attnc_tensor q = deviceTensor(ATTNC_BF16, {1, t, h, 64});
    attnc_tensor noState = {nullptr, ATTNC_F32, 0, nullptr, nullptr};
    return {{q, q, deviceTensor(ATTNC_BF16, {1, t, h, 128}),
             deviceTensor(ATTNC_F32, {1, t, h, 64}), noState},
            {deviceTensor(ATTNC_BF16, {1, t, h, 128}),
             deviceTensor(ATTNC_F32, {1, h, 64, 128})}};
  }

  /// Where each tensor's descriptor starts among the kernel's parameters:
  /// inputs, results, then the status words (docs/pipeline.md).
  static std::vector<size_t> descriptorStarts(attnc_kernel *kernel) {
    std::vector<size_t> starts = {0};
    attnc_tensor_info info;
    for (size_t p = 0; p < attnc_kernel_num_params(kernel); ++p) {
      attnc_kernel_param(kernel, p, &info);
      starts.push_back(starts.back() + 3 + 2 * info.rank);
    }
    for (size_t r = 0; r < attnc_kernel_num_results(kernel); ++r) {
      attnc_kernel_result(kernel, r, &info);
      starts.push_back(starts.back() + 3 + 2 * info.rank);
    }
    return starts;
  }

  std::string lastError() const { return attnc_last_error(context); }

  attnc_context *context = nullptr;
  std::vector<attnc_kernel *> kernels;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<std::unique_ptr<std::vector<int64_t>>> shapes;
};

TEST_F(FakeDriver, CudaTargetFollowsTheDevice) {
  attnc_kernel *hopper = compile(kCausal, "cuda");
  ASSERT_NE(hopper, nullptr);
  EXPECT_STREQ(attnc_kernel_target(hopper), "sm_90a");
  fake_cuda::setDevice(8, 9, 99 * 1024);
  attnc_kernel *ada = compile(kCausal, "cuda");
  ASSERT_NE(ada, nullptr);
  EXPECT_STREQ(attnc_kernel_target(ada), "sm_80");

  fake_cuda::setDevice(7, 5, 64 * 1024);
  attnc_kernel *turing = nullptr;
  EXPECT_EQ(attnc_compile(context, kCausal, std::strlen(kCausal), "t.attn",
                          nullptr, "cuda", &turing),
            ATTNC_ERROR_TARGET);
  EXPECT_EQ(turing, nullptr);
  EXPECT_NE(lastError().find("target 'cuda' picks the GPU's architecture"),
            std::string::npos)
      << lastError();
  EXPECT_NE(lastError().find("7.5"), std::string::npos) << lastError();
}

TEST_F(FakeDriver, LaunchArgumentsFollowThePtxEntry) {
  attnc_kernel *kernel = compile(kCausal, "sm_90a");
  ASSERT_NE(kernel, nullptr);
  // q is a slice of a [2, 4, 130, 64] buffer: heads 0-2 of 4.
  attnc_tensor parent = deviceTensor(ATTNC_BF16, {2, 4, 130, 64});
  std::vector<int64_t> qShape = {2, 3, 130, 64},
                       qStrides = {4 * 130 * 64, 130 * 64, 64, 1};
  attnc_tensor q = {parent.data, ATTNC_BF16, 4, qShape.data(), qStrides.data()};
  attnc_tensor k = deviceTensor(ATTNC_BF16, {2, 3, 130, 64});
  attnc_tensor v = deviceTensor(ATTNC_BF16, {2, 3, 130, 64});
  attnc_tensor o = deviceTensor(ATTNC_BF16, {2, 3, 130, 64});
  attnc_tensor inputs[] = {q, k, v};
  ASSERT_EQ(attnc_launch(kernel, inputs, &o, kStreamA), ATTNC_OK)
      << lastError() << " / " << fake_cuda::lastViolation();

  ASSERT_EQ(fake_cuda::launches().size(), 1u);
  const fake_cuda::Launch &launch = fake_cuda::launches()[0];
  EXPECT_EQ(launch.function, "causal");
  EXPECT_EQ(launch.stream, kStreamA);
  int64_t grid[3], block[3], shared = 0;
  ASSERT_EQ(attnc_kernel_launch_config(kernel, inputs, grid, block, &shared),
            ATTNC_OK);
  for (int axis = 0; axis < 3; ++axis) {
    EXPECT_EQ(launch.grid[axis], static_cast<unsigned>(grid[axis]));
    EXPECT_EQ(launch.block[axis], static_cast<unsigned>(block[axis]));
  }
  EXPECT_EQ(launch.sharedBytes, static_cast<unsigned>(shared));
  // No split, no workspace; a missing count is an argument error.
  int64_t workspace = -1;
  ASSERT_EQ(attnc_kernel_workspace_bytes(kernel, inputs, &workspace), ATTNC_OK);
  EXPECT_EQ(workspace, 0);
  EXPECT_EQ(attnc_kernel_workspace_bytes(kernel, inputs, nullptr),
            ATTNC_ERROR_ARGUMENT);
  // Shapes that do not fit the signature name the tensor.
  attnc_tensor narrow = deviceTensor(ATTNC_BF16, {2, 3, 130, 32});
  attnc_tensor badInputs[] = {q, k, narrow};
  EXPECT_EQ(attnc_kernel_workspace_bytes(kernel, badInputs, &workspace),
            ATTNC_ERROR_LAUNCH);
  EXPECT_NE(lastError().find("input 'v' must have shape"), std::string::npos)
      << lastError();
  EXPECT_EQ(attnc_kernel_launch_config(kernel, badInputs, grid, block, &shared),
            ATTNC_ERROR_LAUNCH);

  std::vector<size_t> starts = descriptorStarts(kernel);
  // Four rank-4 descriptors, then the status words' rank-1 descriptor.
  ASSERT_EQ(launch.params.size(), starts[4] + 5);
  attnc_tensor tensors[] = {q, k, v, o};
  for (int t = 0; t < 4; ++t) {
    SCOPED_TRACE("tensor " + std::to_string(t));
    const uint64_t *fields = &launch.params[starts[t]];
    EXPECT_EQ(fields[0], reinterpret_cast<uintptr_t>(tensors[t].data));
    EXPECT_EQ(fields[1], fields[0]);
    EXPECT_EQ(fields[2], 0u);
    int64_t stride = 1;
    for (int d = 3; d >= 0; --d) {
      EXPECT_EQ(fields[3 + d], static_cast<uint64_t>(tensors[t].shape[d]));
      int64_t expected = tensors[t].strides ? tensors[t].strides[d] : stride;
      EXPECT_EQ(fields[7 + d], static_cast<uint64_t>(expected)) << "dim " << d;
      stride *= tensors[t].shape[d];
    }
  }
  const uint64_t *status = &launch.params[starts[4]];
  EXPECT_EQ(fake_cuda::allocationBytes(status[0]), kStatusBytes);
  EXPECT_EQ(status[3], static_cast<uint64_t>(kStatusWords));
  EXPECT_EQ(status[4], 1u);
  EXPECT_EQ(attnc_synchronize(kernel, kStreamA), ATTNC_OK) << lastError();
}

TEST_F(FakeDriver, SharedMemoryBeyond48KNeedsTheAttributeAndTheDevice) {
  std::vector<int64_t> shape = {1, 1, 200, 128};
  attnc_tensor q = deviceTensor(ATTNC_BF16, shape);
  attnc_tensor o = deviceTensor(ATTNC_BF16, shape);
  attnc_tensor inputs[] = {q, q, q};
  attnc_kernel *kernel = compile(kCausal128, "sm_80");
  ASSERT_NE(kernel, nullptr);
  int64_t grid[3], block[3], shared = 0;
  ASSERT_EQ(attnc_kernel_launch_config(kernel, inputs, grid, block, &shared),
            ATTNC_OK);
  ASSERT_GT(shared, 48 * 1024) << "the test needs a kernel beyond 48 KiB";
  // The fake refuses a launch beyond 48 KiB unless the runtime raised the
  // function's limit first.
  EXPECT_EQ(attnc_launch(kernel, inputs, &o, nullptr), ATTNC_OK)
      << lastError() << " / " << fake_cuda::lastViolation();

  fake_cuda::setDevice(8, 6, 64 * 1024);
  attnc_kernel *small = compile(kCausal128, "sm_80");
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(attnc_launch(small, inputs, &o, nullptr), ATTNC_ERROR_LAUNCH);
  EXPECT_NE(lastError().find("needs " + std::to_string(shared) +
                             " bytes of shared memory per CTA; this GPU "
                             "allows 65536"),
            std::string::npos)
      << lastError();
}

TEST_F(FakeDriver, StatusWordsBelongToTheirStream) {
  attnc_kernel *kernel = compile(kCausal, "sm_80");
  ASSERT_NE(kernel, nullptr);
  size_t statusStart = descriptorStarts(kernel)[4];
  std::vector<int64_t> shape = {1, 2, 70, 64};
  attnc_tensor q = deviceTensor(ATTNC_BF16, shape);
  attnc_tensor o = deviceTensor(ATTNC_BF16, shape);
  attnc_tensor inputs[] = {q, q, q};
  // Launches on stream A while `failing` find an out-of-bounds read of q,
  // as a kernel writes it: code 2, parameter, dim, index, size.
  bool failing = true;
  fake_cuda::onLaunch([&](const fake_cuda::Launch &launch) {
    if (launch.stream != kStreamA || !failing)
      return;
    auto *words = reinterpret_cast<int64_t *>(launch.params[statusStart]);
    if (words[0] == 0) {
      const int64_t found[] = {2, 0, 2, 71, 70};
      std::memcpy(words, found, sizeof(found));
    }
  });
  const std::string report =
      "the spec reads 'q' out of bounds: index 71 in dim 2 of size 70";

  ASSERT_EQ(attnc_launch(kernel, inputs, &o, kStreamA), ATTNC_OK)
      << lastError();
  ASSERT_EQ(attnc_launch(kernel, inputs, &o, kStreamB), ATTNC_OK)
      << lastError();
  ASSERT_EQ(fake_cuda::launches().size(), 2u);
  EXPECT_NE(fake_cuda::launches()[0].params[statusStart],
            fake_cuda::launches()[1].params[statusStart])
      << "streams A and B share status words";
  EXPECT_EQ(attnc_synchronize(kernel, kStreamB), ATTNC_OK) << lastError();
  EXPECT_EQ(attnc_synchronize(kernel, kStreamC), ATTNC_OK)
      << "a stream without launches has nothing to report";
  EXPECT_EQ(attnc_synchronize(kernel, kStreamA), ATTNC_ERROR_LAUNCH);
  EXPECT_NE(lastError().find(report), std::string::npos) << lastError();
  EXPECT_EQ(attnc_synchronize(kernel, kStreamA), ATTNC_OK)
      << "a report is cleared once given: " << lastError();

  // A clean launch after a failing one on the same stream keeps the report.
  ASSERT_EQ(attnc_launch(kernel, inputs, &o, kStreamA), ATTNC_OK);
  failing = false;
  ASSERT_EQ(attnc_launch(kernel, inputs, &o, kStreamA), ATTNC_OK);
  EXPECT_EQ(attnc_synchronize(kernel, kStreamA), ATTNC_ERROR_LAUNCH);
  EXPECT_NE(lastError().find(report), std::string::npos) << lastError();
}

// The workspace is the size attnc_kernel_workspace_bytes reports.
TEST_F(FakeDriver, LaunchWorkspaceIsAllocatedAndFreedInStreamOrder) {
  attnc_kernel *kernel = compile(kGla, "sm_80");
  ASSERT_NE(kernel, nullptr);
  GlaTensors tensors = glaTensors(300, 2);
  attnc_tensor *inputs = tensors.inputs, *outputs = tensors.outputs;
  // One segment of 300 tokens, 2 blocks of 64 value columns, 2 heads: 4
  // CTAs, a header of 1 + 4 words padded to 8, then a 64 x 64 f32 state
  // per CTA.
  int64_t reported = -1;
  ASSERT_EQ(attnc_kernel_workspace_bytes(kernel, inputs, &reported), ATTNC_OK)
      << lastError();
  EXPECT_EQ(reported, 8 * 4 + 4 * 64 * 64 * 4);
  std::vector<size_t> starts = descriptorStarts(kernel);
  size_t workspaceStart = starts.back() + 5;
  int64_t allocated = -1;
  fake_cuda::onLaunch([&](const fake_cuda::Launch &launch) {
    allocated = static_cast<int64_t>(
        fake_cuda::allocationBytes(launch.params[workspaceStart]));
  });
  size_t before = fake_cuda::liveAllocations();
  ASSERT_EQ(attnc_launch(kernel, inputs, outputs, kStreamB), ATTNC_OK)
      << lastError() << " / " << fake_cuda::lastViolation();
  EXPECT_EQ(allocated, reported);
  ASSERT_EQ(fake_cuda::launches().size(), 1u);
  const fake_cuda::Launch &launch = fake_cuda::launches()[0];
  ASSERT_EQ(launch.params.size(), workspaceStart + 5);
  EXPECT_EQ(launch.params[starts[4]], 0u) << "the omitted h0 is null";
  uint64_t workspace = launch.params[workspaceStart];
  EXPECT_EQ(fake_cuda::allocationBytes(workspace), 0u)
      << "the workspace is freed (in stream order) by the launch";
  EXPECT_EQ(fake_cuda::liveAllocations(), before + 1)
      << "only the stream's status words remain";

  std::string onStream = " stream=" + hex(kStreamB);
  std::string workspaceCall = onStream + " ptr=" + hex(workspace);
  std::vector<std::string> expected = {
      "cuMemAllocAsync" + workspaceCall, "cuMemsetD8Async" + workspaceCall,
      "cuLaunchKernel" + onStream, "cuMemFreeAsync" + workspaceCall};
  std::vector<std::string> seen;
  for (const std::string &call : fake_cuda::callLog())
    for (const std::string &wanted : expected)
      if (call.rfind(wanted + " ", 0) == 0 || call == wanted)
        seen.push_back(wanted);
  EXPECT_EQ(seen, expected) << "the workspace's calls, in order";
  EXPECT_EQ(attnc_synchronize(kernel, kStreamB), ATTNC_OK) << lastError();
}

// A backward whose score reads a float input (ALiBi slopes): each CTA
// scatter-adds into its f32 copy of d_slope in the workspace, so the launch
// zeroes all of it, not just the header.
TEST_F(FakeDriver, PartialResultCopiesAreZeroedBeforeTheLaunch) {
  const char *alibi = R"(
kernel a(q: bf16[B, H, N, 64], k: bf16[B, H, N, 64], v: bf16[B, H, N, 64],
         slope: f32[H]) -> (o: bf16[B, H, N, 64]) {
  o = softmax(q, k, v) { score = s - slope[h] * (i - j); mask = causal }
}
)";
  attnc_kernel *kernel = nullptr;
  ASSERT_EQ(attnc_compile_part(context, alibi, std::strlen(alibi), "a.attn",
                               nullptr, "sm_80", nullptr, ATTNC_PART_BACKWARD,
                               &kernel),
            ATTNC_OK)
      << lastError();
  kernels.push_back(kernel);
  attnc_tensor qkv = deviceTensor(ATTNC_BF16, {1, 3, 40, 64});
  attnc_tensor inputs[] = {qkv, qkv, qkv, deviceTensor(ATTNC_F32, {3}), qkv,
                           deviceTensor(ATTNC_F32, {1, 3, 40}), qkv};
  attnc_tensor outputs[] = {deviceTensor(ATTNC_BF16, {1, 3, 40, 64}),
                            deviceTensor(ATTNC_BF16, {1, 3, 40, 64}),
                            deviceTensor(ATTNC_BF16, {1, 3, 40, 64}),
                            deviceTensor(ATTNC_F32, {3})};
  // One CTA per (head, batch entry): 3 CTAs, a header of 1 + 3 words, then
  // each CTA's copy of d_slope (3 floats).
  int64_t reported = -1;
  ASSERT_EQ(attnc_kernel_workspace_bytes(kernel, inputs, &reported), ATTNC_OK)
      << lastError();
  EXPECT_EQ(reported, 4 * 4 + 3 * 3 * 4);
  std::vector<size_t> starts = descriptorStarts(kernel);
  size_t workspaceStart = starts.back() + 5;
  std::vector<unsigned char> atLaunch;
  fake_cuda::onLaunch([&](const fake_cuda::Launch &launch) {
    ASSERT_EQ(launch.params.size(), workspaceStart + 5);
    auto *bytes = reinterpret_cast<unsigned char *>(
        static_cast<uintptr_t>(launch.params[workspaceStart]));
    atLaunch.assign(bytes, bytes + fake_cuda::allocationBytes(
                                       launch.params[workspaceStart]));
  });
  ASSERT_EQ(attnc_launch(kernel, inputs, outputs, kStreamB), ATTNC_OK)
      << lastError() << " / " << fake_cuda::lastViolation();
  EXPECT_EQ(atLaunch, std::vector<unsigned char>(reported, 0))
      << "the workspace the kernel starts from is zero";
  EXPECT_EQ(attnc_synchronize(kernel, kStreamB), ATTNC_OK) << lastError();

  // No batch entry: no CTA runs, and d_slope, a sum over none, is zero
  // (its buffer starts as junk).
  int64_t emptyShape[] = {0, 3, 40, 64}, emptyLseShape[] = {0, 3, 40};
  attnc_tensor empty = {qkv.data, ATTNC_BF16, 4, emptyShape, nullptr};
  attnc_tensor emptyLse = {inputs[5].data, ATTNC_F32, 3, emptyLseShape,
                           nullptr};
  attnc_tensor emptyInputs[] = {empty, empty,    empty, inputs[3],
                                empty, emptyLse, empty};
  attnc_tensor dSlope = deviceTensor(ATTNC_F32, {3});
  attnc_tensor emptyOutputs[] = {empty, empty, empty, dSlope};
  size_t launchesBefore = fake_cuda::launches().size();
  ASSERT_EQ(attnc_launch(kernel, emptyInputs, emptyOutputs, kStreamB),
            ATTNC_OK)
      << lastError();
  EXPECT_EQ(fake_cuda::launches().size(), launchesBefore);
  const float *zeroed = static_cast<const float *>(dSlope.data);
  EXPECT_EQ(std::vector<float>(zeroed, zeroed + 3), std::vector<float>(3, 0))
      << "d_slope of an empty batch";
}

// split-keys=auto: the launch sizes the splits for the device (its
// multiprocessors times the CTAs each holds, from the occupancy query),
// launch_config reports the grid the launch uses, and the workspace holds
// one partial state per CTA. A failed occupancy query fails the launch.
TEST_F(FakeDriver, AutoKeySplitsFollowTheDevice) {
  fake_cuda::setMultiprocessors(16);
  attnc_kernel *kernel = compile(kDecode128, "sm_80", "split-keys=auto");
  ASSERT_NE(kernel, nullptr);
  // One decode row of 8 heads over 4096 keys (64 key blocks).
  attnc_tensor q = deviceTensor(ATTNC_BF16, {1, 8, 1, 128});
  attnc_tensor kv = deviceTensor(ATTNC_BF16, {1, 8, 4096, 128});
  attnc_tensor inputs[] = {q, kv, kv};
  attnc_tensor outputs[] = {deviceTensor(ATTNC_BF16, {1, 8, 1, 128})};
  int64_t grid[3], block[3], sharedBytes = 0;
  ASSERT_EQ(
      attnc_kernel_launch_config(kernel, inputs, grid, block, &sharedBytes),
      ATTNC_OK)
      << lastError() << " / " << fake_cuda::lastViolation();
  // Q, K and V tiles of 136-element rows: the fake's multiprocessors hold
  // two such CTAs, so 32 run at once, and 8 CTAs split 4 ways fill them.
  EXPECT_EQ(sharedBytes, 64 * 136 * 2 * 5);
  EXPECT_EQ(std::vector<int64_t>(grid, grid + 3),
            (std::vector<int64_t>{4, 8, 1}));
  // A header of 1 + 32 words padded to 36, then 64 x (128 + 1) floats per
  // CTA, as the launch allocates below.
  int64_t reported = -1;
  ASSERT_EQ(attnc_kernel_workspace_bytes(kernel, inputs, &reported), ATTNC_OK)
      << lastError();
  EXPECT_EQ(reported, 36 * 4 + 32 * 64 * 129 * 4);

  std::vector<size_t> starts = descriptorStarts(kernel);
  size_t workspaceBytes = 0;
  fake_cuda::onLaunch([&](const fake_cuda::Launch &launch) {
    workspaceBytes =
        fake_cuda::allocationBytes(launch.params[starts.back() + 5]);
  });
  ASSERT_EQ(attnc_launch(kernel, inputs, outputs, kStreamA), ATTNC_OK)
      << lastError() << " / " << fake_cuda::lastViolation();
  ASSERT_EQ(fake_cuda::launches().size(), 1u);
  const fake_cuda::Launch &launch = fake_cuda::launches()[0];
  EXPECT_EQ(std::vector<unsigned>(launch.grid, launch.grid + 3),
            (std::vector<unsigned>{4, 8, 1}));
  // A header of 1 + 32 words padded to 36, then 64 x (128 + 1) floats per
  // CTA.
  EXPECT_EQ(workspaceBytes, 36u * 4 + 32u * 64 * 129 * 4);
  EXPECT_EQ(attnc_synchronize(kernel, kStreamA), ATTNC_OK) << lastError();

  attnc_kernel *unsized = compile(kDecode128, "sm_80", "split-keys=auto");
  ASSERT_NE(unsized, nullptr);
  fake_cuda::failNext("cuOccupancyMaxActiveBlocksPerMultiprocessor", 1);
  EXPECT_EQ(attnc_launch(unsized, inputs, outputs, kStreamA),
            ATTNC_ERROR_LAUNCH);
  EXPECT_NE(lastError().find("cuOccupancyMaxActiveBlocksPerMultiprocessor "
                             "failed"),
            std::string::npos)
      << lastError();
}

TEST_F(FakeDriver, DriverFailuresAreReportedAndLeakNothing) {
  attnc_kernel *kernel = compile(kGla, "sm_80");
  ASSERT_NE(kernel, nullptr);
  GlaTensors tensors = glaTensors(130, 1);
  attnc_tensor *inputs = tensors.inputs, *outputs = tensors.outputs;

  struct Failure {
    const char *entryPoint;
    int result;
    const char *message;
  } failures[] = {
      {"cuModuleLoadData", 218,
       "cannot launch the sm_80 kernel: cuModuleLoadData failed: "
       "CUDA_ERROR_INVALID_PTX (fake)"},
      {"cuMemAlloc_v2", 2, "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY"},
      {"cuMemAllocAsync", 2,
       "cuMemAllocAsync failed: CUDA_ERROR_OUT_OF_MEMORY (fake)"},
      {"cuMemsetD8Async", 1, "cuMemsetD8Async failed"},
      {"cuLaunchKernel", 1,
       "cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (fake)"},
      {"cuMemFreeAsync", 1, "cuMemFreeAsync failed"},
  };
  for (const Failure &failure : failures) {
    SCOPED_TRACE(failure.entryPoint);
    size_t before = fake_cuda::liveAllocations();
    fake_cuda::failNext(failure.entryPoint, failure.result);
    // Each on a fresh stream, so the first launch allocates status words.
    void *stream = reinterpret_cast<void *>(0x1000 + &failure - failures);
    EXPECT_EQ(attnc_launch(kernel, inputs, outputs, stream),
              ATTNC_ERROR_LAUNCH);
    EXPECT_NE(lastError().find(failure.message), std::string::npos)
        << lastError();
    // The same launch works once the driver does.
    ASSERT_EQ(attnc_launch(kernel, inputs, outputs, stream), ATTNC_OK)
        << lastError() << " / " << fake_cuda::lastViolation();
    EXPECT_EQ(attnc_synchronize(kernel, stream), ATTNC_OK) << lastError();
    // A failed free leaks the workspace, on a GPU too; the test frees it.
    if (std::string(failure.entryPoint) == "cuMemFreeAsync") {
      size_t statusStart = descriptorStarts(kernel).back();
      const auto &launches = fake_cuda::launches();
      uint64_t leaked = launches[launches.size() - 2].params[statusStart + 5];
      EXPECT_GT(fake_cuda::allocationBytes(leaked), 0u);
      EXPECT_EQ(cuMemFree_v2(leaked), 0);
    }
    // Everything else is back, but the stream's status words.
    EXPECT_LE(fake_cuda::liveAllocations(), before + 1);
  }
  fake_cuda::failNext("cuStreamSynchronize", 1);
  EXPECT_EQ(attnc_synchronize(kernel, kStreamA), ATTNC_ERROR_LAUNCH);
  EXPECT_NE(lastError().find("cuStreamSynchronize failed"), std::string::npos)
      << lastError();
}

} // namespace
