//===- BadInputTest.cpp - Bad run-time input on every CPU path ------------===//
//
// What a spec computes from user data must not crash the process: each case
// runs on the reference, the tiled path and the GPU warp emulator and
// expects the same clear error from all three.
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace attnc;
using namespace attnc::testing;

namespace {

/// The reference, the tiled CPU path and the emulated GPU kernel of `spec`.
struct EveryPath {
  explicit EveryPath(const std::string &spec)
      : reference(spec), tiled(spec, CpuOptions{CpuPath::Tiled}) {
    std::string error;
    if (reference.ok())
      emulated = EmulatedGpuKernel::compile(*reference.module, "",
                                            GpuPipelineOptions{}, error);
    emulatorError = error;
  }
  bool ok() const { return reference.ok() && tiled.ok() && emulated; }
  std::string errors() const {
    return reference.compileError + tiled.compileError + emulatorError;
  }

  /// Runs every path; returns the error of each ("" on success) and
  /// checks that successful runs agree with the reference.
  std::vector<std::string> run(std::map<std::string, HostTensor> inputs,
                               const std::string &what) {
    std::vector<std::string> errors(3);
    std::vector<HostTensor> expected, actual;
    if (reference.run(inputs, expected, errors[0]))
      expectSameOutputs(reference, tiled, inputs, what + ", tiled");
    else
      tiled.run(inputs, actual, errors[1]);
    std::vector<TensorView> storage;
    actual.clear();
    if (!emulated->run(viewsOf(emulated->image().signature, inputs, storage),
                       actual, errors[2]))
      return errors;
    if (errors[0].empty())
      for (size_t r = 0; r < actual.size(); ++r)
        expectClose(values(actual[r]), values(expected[r]), {2e-3, 2e-3},
                    what + ", gpu-emulator output " + std::to_string(r));
    return errors;
  }

  /// The outputs of every path (reference, tiled, gpu-emulator).
  std::vector<std::vector<HostTensor>>
  outputs(std::map<std::string, HostTensor> inputs, std::string &error) {
    std::vector<std::vector<HostTensor>> results(3);
    std::vector<TensorView> storage;
    if (!reference.run(inputs, results[0], error) ||
        !tiled.run(inputs, results[1], error) ||
        !emulated->run(viewsOf(emulated->image().signature, inputs, storage),
                       results[2], error))
      return {};
    return results;
  }

  SpecRunner reference, tiled;
  std::unique_ptr<EmulatedGpuKernel> emulated;
  std::string emulatorError;
};

HostTensor integers(std::vector<int64_t> values) {
  HostTensor tensor(ElementType::I32, {static_cast<int64_t>(values.size())});
  for (size_t index = 0; index < values.size(); ++index)
    tensor.set(index, static_cast<double>(values[index]));
  return tensor;
}

void expectEveryPathFails(const std::vector<std::string> &errors,
                          const std::vector<std::string> &parts,
                          const std::string &what) {
  const char *paths[] = {"reference", "tiled", "gpu-emulator"};
  for (size_t path = 0; path < errors.size(); ++path)
    for (const std::string &part : parts)
      EXPECT_NE(errors[path].find(part), std::string::npos)
          << what << ", " << paths[path] << ": '" << errors[path] << "'";
}

// Integer / and % by a divisor read from a tensor (SIGFPE before), and
// INT64_MIN / -1, in a mask, in a score term that is hoisted out of the
// key loop (h % z[h]) and in a linear gate.
TEST(BadInput, IntegerDivisionIsReportedOnEveryPath) {
  const uint64_t seed = 5;
  std::mt19937_64 rng(seed);
  std::string what = "seed " + std::to_string(seed);
  EveryPath softmax(R"(kernel k(q: f32[B, H, N, 16], k: f32[B, H, M, 16], v: f32[B, H, M, 16], z: i32[H])
    -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { score = s + h % z[h]
                         mask = i / z[h] == j / z[h] }
})");
  ASSERT_TRUE(softmax.ok()) << softmax.errors();
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, {1, 2, 37, 16}, rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, {1, 2, 41, 16}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {1, 2, 41, 16}, rng, -1, 1);
  inputs["z"] = integers({5, -3});
  std::vector<std::string> errors = softmax.run(inputs, what + ", valid");
  for (const std::string &error : errors)
    EXPECT_EQ(error, "") << what;
  inputs["z"] = integers({5, 0});
  expectEveryPathFails(softmax.run(inputs, what),
                       {"integer division by zero at line ", "of the spec: ",
                        "the divisor read from 'z'"},
                       what + ", z[1] = 0");

  EveryPath overflow(R"(kernel k(q: f32[B, H, N, 16], k: f32[B, H, M, 16], v: f32[B, H, M, 16], z: i32[H])
    -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) { mask = (i - 9223372036854775807 - 1) / z[h] != 0 || j <= i }
})");
  ASSERT_TRUE(overflow.ok()) << overflow.errors();
  inputs["z"] = integers({-1, 2});
  expectEveryPathFails(overflow.run(inputs, what),
                       {"integer division overflows at line 3, column 63",
                        "-9223372036854775808 / -1"},
                       what + ", INT64_MIN / -1");

  EveryPath linear(R"(kernel l(q: f32[B, T, H, 16], k: f32[B, T, H, 16], v: f32[B, T, H, 16], z: i32[H])
    -> (o: f32[B, T, H, 16]) {
  o = linear(q, k, v, layout = bthd) { gate = -0.1 * (1 + t % z[h]); chunk = 16 }
})");
  ASSERT_TRUE(linear.ok()) << linear.errors();
  std::map<std::string, HostTensor> linearInputs;
  for (const char *name : {"q", "k", "v"})
    linearInputs[name] =
        randomTensor(ElementType::F32, {1, 40, 2, 16}, rng, -1, 1);
  linearInputs["z"] = integers({3, 7});
  errors = linear.run(linearInputs, what + ", linear valid");
  for (const std::string &error : errors)
    EXPECT_EQ(error, "") << what;
  linearInputs["z"] = integers({0, 7});
  expectEveryPathFails(linear.run(linearInputs, what),
                       {"integer division by zero", "'z'"},
                       what + ", linear z[0] = 0");
}

// kv_num_blocks outside [0, width] and kv_indices entries that name no key
// block were clamped or skipped without a word; every path reports them.
TEST(BadInput, BadBlockListsAreReportedOnEveryPath) {
  const uint64_t seed = 6;
  std::mt19937_64 rng(seed);
  std::string what = "seed " + std::to_string(seed);
  EveryPath lists(R"(kernel k(q: f32[B, H, N, 16], k: f32[B, H, M, 16], v: f32[B, H, M, 16],
         counts: i32[B, H, QB], indices: i32[B, H, QB, W]) -> (o: f32[B, H, N, 16]) {
  o = softmax(q, k, v) {
    block_q = 16; block_k = 16
    kv_num_blocks = counts; kv_indices = indices
  }
})");
  ASSERT_TRUE(lists.ok()) << lists.errors();
  // N = 40 (3 query blocks), M = 50 (4 key blocks), lists of width 3.
  std::map<std::string, HostTensor> inputs;
  inputs["q"] = randomTensor(ElementType::F32, {1, 2, 40, 16}, rng, -1, 1);
  inputs["k"] = randomTensor(ElementType::F32, {1, 2, 50, 16}, rng, -1, 1);
  inputs["v"] = randomTensor(ElementType::F32, {1, 2, 50, 16}, rng, -1, 1);
  auto set = [&](int64_t count, int64_t entry) {
    HostTensor counts(ElementType::I32, {1, 2, 3});
    HostTensor indices(ElementType::I32, {1, 2, 3, 3});
    for (int64_t index = 0; index < counts.numElements(); ++index)
      counts.set(index, 2);
    for (int64_t index = 0; index < indices.numElements(); ++index)
      indices.set(index, index % 4);
    counts.set(4, static_cast<double>(count)); // head 1, query block 1
    indices.set(13, static_cast<double>(entry)); // its entry 1
    inputs["counts"] = std::move(counts);
    inputs["indices"] = std::move(indices);
  };
  set(2, 3);
  for (const std::string &error : lists.run(inputs, what + ", valid"))
    EXPECT_EQ(error, "") << what;
  set(4, 3);
  expectEveryPathFails(lists.run(inputs, what),
                       {"'counts'[0, 1, 1] = 4 is not a block count",
                        "[0, 3]"},
                       what + ", count above the width");
  set(-2, 3);
  expectEveryPathFails(lists.run(inputs, what),
                       {"'counts'[0, 1, 1] = -2 is not a block count"},
                       what + ", negative count");
  set(2, 4);
  expectEveryPathFails(lists.run(inputs, what),
                       {"'indices'[0, 1, 1, 1] = 4 names no key block",
                        "[0, 4)"},
                       what + ", entry past the last block");
  set(2, -1);
  expectEveryPathFails(lists.run(inputs, what),
                       {"'indices'[0, 1, 1, 1] = -1 names no key block"},
                       what + ", negative entry");
}

// Offsets that do not cover the packed tokens left output rows unwritten
// (uninitialised memory in Python). Every path refuses them: the CPU before
// the launch, the GPU kernels (here emulated) as they run.
TEST(BadInput, OffsetsMustCoverThePackedTokens) {
  const uint64_t seed = 7;
  std::mt19937_64 rng(seed);
  std::string what = "seed " + std::to_string(seed);
  for (bool linear : {false, true}) {
    std::string spec =
        linear ? "kernel l(q: f32[T, H, 16], k: f32[T, H, 16], v: f32[T, H, 16], "
                 "cu: i32[S1]) -> (o: f32[T, H, 16]) {\n"
                 "  o = linear(q, k, v, layout = thd, cu_seqlens = cu) "
                 "{ gate = -0.5; chunk = 16 }\n}\n"
               : "kernel s(q: f32[T, H, 16], k: f32[T, H, 16], v: f32[T, H, 16], "
                 "cu: i32[S1]) -> (o: f32[T, H, 16]) {\n"
                 "  o = softmax(q, k, v, layout = thd, cu_seqlens = cu) "
                 "{ mask = causal }\n}\n";
    EveryPath paths(spec);
    ASSERT_TRUE(paths.ok()) << paths.errors();
    std::string family = linear ? "linear" : "softmax";
    std::map<std::string, HostTensor> inputs;
    for (const char *name : {"q", "k", "v"})
      inputs[name] = randomTensor(ElementType::F32, {50, 2, 16}, rng, -1, 1);
    inputs["cu"] = offsetsTensor({0, 0, 20, 50}); // an empty sequence is fine
    for (const std::string &error : paths.run(inputs, what + " " + family))
      EXPECT_EQ(error, "") << what << " " << family;
    inputs["cu"] = offsetsTensor({3, 20, 50});
    expectEveryPathFails(paths.run(inputs, what), {"offsets must start at 0"},
                         what + " " + family + ", first offset 3");
    inputs["cu"] = offsetsTensor({0, 20, 45});
    expectEveryPathFails(paths.run(inputs, what),
                         {"end at the", "50"},
                         what + " " + family + ", last offset 45 of 50");
    inputs["cu"] = offsetsTensor({0});
    expectEveryPathFails(paths.run(inputs, what),
                         {"'cu' holds no sequence but there are 50 packed "
                          "tokens"},
                         what + " " + family + ", no sequence");
  }
}

// Softmax rows that see a NaN or +inf score (NaN in q, k or a score input,
// q . k overflowing f32) are NaN in o and lse, as in PyTorch; they used to
// come out as o = 0, lse = -inf, like a row with no allowed key. A masked row
// stays o = 0, lse = -inf; rows that do not see the bad value are finite.
TEST(BadInput, SoftmaxRowsWithNaNScoresAreNaN) {
  const uint64_t seed = 8;
  std::mt19937_64 rng(seed);
  std::string what = "seed " + std::to_string(seed);
  EveryPath paths(R"(kernel k(q: f32[B, H, N, 16], k: f32[B, H, N, 16], v: f32[B, H, N, 16],
         slope: f32[H]) -> (o: f32[B, H, N, 16], lse: f32[B, H, N]) {
  o, lse = softmax(q, k, v) { score = s - slope[h] * (i - j)
                              mask = causal && i >= 3 }
})");
  ASSERT_TRUE(paths.ok()) << paths.errors();
  const int64_t H = 3, N = 40, D = 16;
  std::map<std::string, HostTensor> inputs;
  for (const char *name : {"q", "k", "v"})
    inputs[name] = randomTensor(ElementType::F32, {1, H, N, D}, rng, -1, 1);
  inputs["slope"] = randomTensor(ElementType::F32, {H}, rng, 0, 0.5);
  auto at = [&](int64_t h, int64_t i, int64_t d) { return (h * N + i) * D + d; };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  // Head 0: a NaN key at j = 10. Head 1: +inf in q row 5 (k row 0 makes its
  // score +inf) and q . k overflowing f32 in row 30 (q near f32's largest
  // value, k row 3 all positive). Head 2: a NaN slope.
  inputs["k"].set(at(0, 10, 4), nan);
  inputs["q"].set(at(1, 5, 0), inf);
  inputs["k"].set(at(1, 0, 0), 0.5);
  for (int64_t d = 0; d < D; ++d) {
    inputs["q"].set(at(1, 30, d), 3e38);
    inputs["k"].set(at(1, 3, d), 0.5);
  }
  inputs["slope"].set(2, nan);
  enum class Row { Finite, NaN, Masked };
  auto expected = [&](int64_t h, int64_t i) {
    if (i < 3)
      return Row::Masked;
    if ((h == 0 && i >= 10) || (h == 1 && (i == 5 || i == 30)) || h == 2)
      return Row::NaN;
    return Row::Finite;
  };
  std::string error;
  auto results = paths.outputs(inputs, error);
  ASSERT_EQ(results.size(), 3u) << what << ": " << error;
  const char *names[] = {"reference", "tiled", "gpu-emulator"};
  for (size_t path = 0; path < 3; ++path) {
    const HostTensor &o = results[path][0], &lse = results[path][1];
    int failures = 0;
    for (int64_t h = 0; h < H && failures < 5; ++h)
      for (int64_t i = 0; i < N && failures < 5; ++i) {
        double l = lse.get(h * N + i), first = o.get(at(h, i, 0));
        bool rowNaN = true, rowZero = true, rowFinite = true;
        for (int64_t d = 0; d < D; ++d) {
          double x = o.get(at(h, i, d));
          rowNaN &= std::isnan(x);
          rowZero &= x == 0;
          rowFinite &= std::isfinite(x);
        }
        bool ok = false;
        switch (expected(h, i)) {
        case Row::NaN:
          ok = rowNaN && std::isnan(l);
          break;
        case Row::Masked:
          ok = rowZero && l == -inf;
          break;
        case Row::Finite:
          ok = rowFinite && std::isfinite(l);
          break;
        }
        failures += !ok;
        EXPECT_TRUE(ok) << what << ", " << names[path] << ": row h=" << h
                        << " i=" << i << " has o[0] = " << first
                        << ", lse = " << l;
      }
  }
}

} // namespace
