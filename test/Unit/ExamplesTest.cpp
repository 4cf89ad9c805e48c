//===- ExamplesTest.cpp - Every example: tiled path against the reference -===//
//
// Each spec in examples/ runs on seeded random inputs made by the same
// role-aware generator as `attnc run` (gates <= 0, valid offsets and block
// lists), through the tiled path and the reference, at sizes that are not
// multiples of any tile. Tolerances: SpecRunner.h, per output dtype.
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Execution/Inputs.h"

#include <cstring>
#include <fstream>
#include <sstream>

using namespace attnc;
using namespace attnc::testing;

namespace {

struct Example {
  const char *file;
  DimBindings dims;
};

std::string readExample(const std::string &file) {
  std::ifstream stream(std::string(ATTNC_EXAMPLES_DIR) + "/" + file);
  std::stringstream text;
  text << stream.rdbuf();
  return text.str();
}

const Example examples[] = {
    {"alibi_gqa.attn", {{"B", 2}, {"Hq", 4}, {"Hk", 2}, {"N", 37}, {"M", 45}}},
    {"softcap_window.attn", {{"B", 1}, {"N", 300}, {"H", 2}}},
    {"chunk_local.attn", {{"B", 1}, {"H", 2}, {"N", 150}}},
    {"block_sparse.attn", {{"B", 1}, {"H", 2}, {"N", 70}, {"NB", 3}, {"MB", 3}}},
    {"kv_index_lists.attn",
     {{"B", 1}, {"H", 2}, {"N", 40}, {"M", 50}, {"QB", 3}, {"W", 3}}},
    {"topk_select.attn", {{"B", 1}, {"Hq", 4}, {"Hk", 2}, {"N", 70}}},
    {"varlen_causal.attn", {{"T", 90}, {"H", 2}, {"S1", 5}}},
    {"gla.attn", {{"B", 1}, {"T", 70}, {"H", 2}}},
    {"retnet.attn", {{"B", 2}, {"H", 3}, {"T", 75}}},
    {"mamba2_decay.attn", {{"B", 1}, {"H", 2}, {"T", 67}}},
    {"linear_elu.attn", {{"B", 1}, {"H", 2}, {"T", 33}}},
    {"varlen_gla.attn", {{"T", 80}, {"H", 2}, {"S1", 4}}},
};

/// Seeded inputs for every non-optional parameter of `runner`'s kernel.
std::map<std::string, HostTensor> exampleInputs(SpecRunner &runner,
                                                const Example &example,
                                                uint64_t seed) {
  attn::KernelOp kernel = *runner.module->getOps<attn::KernelOp>().begin();
  ParamRoles roles = getParamRoles(kernel);
  const KernelSignature &signature = runner.kernel->signature();
  std::map<std::string, HostTensor> inputs;
  for (size_t index = 0; index < signature.params.size(); ++index) {
    const TensorSpec &spec = signature.params[index];
    if (spec.optional)
      continue;
    std::vector<int64_t> shape;
    std::string error;
    EXPECT_TRUE(resolveShape(spec, example.dims, shape, error)) << error;
    HostTensor tensor(spec.type, shape);
    // Offsets split the packed tokens; block lists index key blocks.
    int64_t length = roles.roles[index] == ParamRole::Offsets
                         ? example.dims.at("T")
                         : example.dims.count("M") ? example.dims.at("M")
                                                   : example.dims.count("N")
                                                         ? example.dims.at("N")
                                                         : 0;
    int64_t listWidth = example.dims.count("W") ? example.dims.at("W") : 1;
    fillRandom(tensor, roles.roles[index], seed + index, length, roles.blockK,
               listWidth);
    inputs[spec.name] = std::move(tensor);
  }
  return inputs;
}

TEST(Examples, TiledMatchesReference) {
  uint64_t seed = 1;
  for (const Example &example : examples) {
    std::string text = readExample(example.file);
    ASSERT_FALSE(text.empty()) << "cannot read " << example.file;
    SpecRunner reference(text);
    SpecRunner tiled(text, CpuOptions{CpuPath::Tiled, 64, 64});
    ASSERT_TRUE(reference.ok()) << example.file << ": " << reference.compileError;
    ASSERT_TRUE(tiled.ok()) << example.file << ": " << tiled.compileError;
    std::map<std::string, HostTensor> inputs =
        exampleInputs(reference, example, seed);
    expectSameOutputs(reference, tiled, inputs,
                      std::string(example.file) + ", seed " +
                          std::to_string(seed));
    ++seed;
  }
}

TEST(Examples, ThreadedRunsEqualSerialRuns) {
  // Each (batch, head) item is computed the same way whichever thread takes
  // it, so outputs must be bit for bit those of one thread. Five threads on
  // grids of 2 to 6 items: some threads find no work left.
  uint64_t seed = 100;
  for (CpuPath path : {CpuPath::Tiled, CpuPath::Reference}) {
    for (const Example &example : examples) {
      std::string text = readExample(example.file);
      SpecRunner serial(text, CpuOptions{path, 64, 64, /*threads=*/1});
      SpecRunner threaded(text, CpuOptions{path, 64, 64, /*threads=*/5});
      ASSERT_TRUE(serial.ok() && threaded.ok()) << serial.compileError;
      std::map<std::string, HostTensor> inputs =
          exampleInputs(serial, example, seed);
      std::vector<HostTensor> expected, actual;
      std::string error;
      ASSERT_TRUE(serial.run(inputs, expected, error)) << error;
      ASSERT_TRUE(threaded.run(inputs, actual, error)) << error;
      ASSERT_EQ(actual.size(), expected.size());
      for (size_t index = 0; index < actual.size(); ++index) {
        ASSERT_EQ(actual[index].shape(), expected[index].shape());
        size_t bytes = actual[index].numElements() *
                       elementSize(actual[index].type());
        EXPECT_EQ(0, std::memcmp(actual[index].data(), expected[index].data(),
                                 bytes))
            << example.file << " output " << index << ", seed " << seed
            << (path == CpuPath::Tiled ? ", tiled" : ", reference");
      }
      ++seed;
    }
  }
}

TEST(Examples, HeadDimsUpTo128) {
  // Causal GQA softmax and GLA at Dk/Dv in {16, 64, 128}, bf16 inputs.
  for (int64_t dk : {16, 64, 128}) {
    for (int64_t dv : {16, 64, 128}) {
      std::string dims = std::to_string(dk), dimsV = std::to_string(dv);
      std::string softmax =
          "kernel s(q: bf16[B, Hq, N, " + dims + "], k: bf16[B, Hk, M, " + dims +
          "], v: bf16[B, Hk, M, " + dimsV + "]) -> (o: bf16[B, Hq, N, " + dimsV +
          "], lse: f32[B, Hq, N]) {\n  o, lse = softmax(q, k, v) { mask = causal }\n}";
      std::string gla =
          "kernel g(q: bf16[B, H, T, " + dims + "], k: bf16[B, H, T, " + dims +
          "], v: bf16[B, H, T, " + dimsV + "], g: f32[B, H, T, " + dims +
          "]) -> (o: bf16[B, H, T, " + dimsV + "], hT: f32[B, H, " + dims + ", " +
          dimsV + "]) {\n  o, hT = linear(q, k, v) { gate = g[b, h, t, d]; chunk = 16 }\n}";
      uint64_t seed = static_cast<uint64_t>(dk * 1000 + dv);
      std::mt19937_64 rng(seed);
      {
        SpecRunner reference(softmax), tiled(softmax, CpuOptions{CpuPath::Tiled, 16, 16});
        ASSERT_TRUE(tiled.ok()) << tiled.compileError;
        std::map<std::string, HostTensor> inputs;
        inputs["q"] = randomTensor(ElementType::BF16, {1, 4, 23, dk}, rng, -1, 1);
        inputs["k"] = randomTensor(ElementType::BF16, {1, 2, 29, dk}, rng, -1, 1);
        inputs["v"] = randomTensor(ElementType::BF16, {1, 2, 29, dv}, rng, -1, 1);
        expectSameOutputs(reference, tiled, inputs,
                          "softmax Dk=" + dims + " Dv=" + dimsV + ", seed " +
                              std::to_string(seed));
      }
      {
        SpecRunner reference(gla), tiled(gla, CpuOptions{CpuPath::Tiled, 64, 64});
        ASSERT_TRUE(tiled.ok()) << tiled.compileError;
        std::map<std::string, HostTensor> inputs;
        inputs["q"] = randomTensor(ElementType::BF16, {1, 2, 37, dk}, rng, -1, 1);
        inputs["k"] = randomTensor(ElementType::BF16, {1, 2, 37, dk}, rng, -1, 1);
        inputs["v"] = randomTensor(ElementType::BF16, {1, 2, 37, dv}, rng, -1, 1);
        inputs["g"] = randomTensor(ElementType::F32, {1, 2, 37, dk}, rng, -1, 0);
        expectSameOutputs(reference, tiled, inputs,
                          "gla Dk=" + dims + " Dv=" + dimsV + ", seed " +
                              std::to_string(seed));
      }
    }
  }
}

} // namespace
