//===- GpuEmulationLinearTest.cpp - Linear kernels and faults on the emulator ===//
//
// Linear kernels on the warp emulator against the reference, bad gates
// reported with their position, and out-of-bounds accesses that stop the
// run.
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
  /// The kernel from its tile program (attn-tile-linear, attn-tile-to-nvgpu).
  bool fromTileProgram = false;
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
  options.fromTileProgram = config.fromTileProgram;
  auto kernel =
      EmulatedGpuKernel::compile(*reference.module, "", options, error);
  ASSERT_TRUE(kernel) << c.name << ": " << error;
  // The hand-built causal kernels split sequences into segments; the tile
  // program walks each sequence in one CTA.
  bool causal = c.spec.find("causal = false") == std::string::npos;
  EXPECT_EQ(kernel->image().segmented(), causal && !config.fromTileProgram)
      << c.name;
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

// The linear forward built from its tile program (attn-tile-linear, then
// attn-tile-to-nvgpu: the gates' scan, the last step's slice and the
// transposes through shared memory, the state staged as the rhs of
// q S; GLA's sub-tiles by decay_dot per element): RetNet's constant
// decay, SSD's per-head gates under strong decay with GQA and the final
// state, an initial state, elu + 1 non-causal, a bthd layout, packed
// varlen with an empty sequence, GLA under strong decay with GQA. The same
// 2e-2 as the hand-built kernels (bf16/f16 operands).
TEST(GpuEmulation, LinearTileProgramMatchesTheReference) {
  std::vector<LinearCase> cases = {
      {"retnet_bf16",
       "kernel k(q: bf16[B, H, T, 64], k: bf16[B, H, T, 64], v: bf16[B, H, T, "
       "64]) -> (o: bf16[B, H, T, 64]) {\n  o = linear(q, k, v) { gate = "
       "log(1 - exp2(-5 - h)); scale = 0.125 }\n}\n"},
      {"ssd_strong_decay_gqa_f16",
       "kernel k(q: f16[B, Hq, T, 64], k: f16[B, Hk, T, 64], v: f16[B, Hk, T, "
       "32], a: f32[B, Hq, T]) -> (o: f16[B, Hq, T, 32], st: f32[B, Hq, 64, "
       "32]) {\n  o, st = linear(q, k, v) { gate = 6 * a[b, h, t]; chunk = "
       "64; scale = 0.125 }\n}\n"},
      {"initial_state_bthd",
       "kernel k(q: bf16[B, T, H, 32], k: bf16[B, T, H, 32], v: bf16[B, T, H, "
       "64], h0: f32[B, H, 32, 64]?) -> (o: bf16[B, T, H, 64], st: f32[B, H, "
       "32, 64]) {\n  o, st = linear(q, k, v, layout = bthd, initial = h0) { "
       "gate = -0.05; chunk = 32; scale = 0.125 }\n}\n"},
      {"elu_noncausal",
       "kernel k(q: bf16[B, H, T, 32], k: bf16[B, H, T, 32], v: bf16[B, H, T, "
       "48]) -> (o: bf16[B, H, T, 48], st: f32[B, H, 32, 48]) {\n  o, st = "
       "linear(q, k, v) { feature = elu(x) + 1; causal = false; chunk = 32; "
       "scale = 0.05 }\n}\n"},
      {"varlen_per_head",
       "kernel k(q: bf16[T, H, 32], k: bf16[T, H, 32], v: bf16[T, H, 32], a: "
       "f32[T, H], cu: i32[S1], h0: f32[S, H, 32, 32]?) -> (o: bf16[T, H, 32], "
       "st: f32[S, H, 32, 32]) {\n  o, st = linear(q, k, v, layout = thd, "
       "cu_seqlens = cu, initial = h0) { gate = a[tstart + t, h]; chunk = 32 "
       "}\n}\n",
       true},
      {"gla_strong_decay_gqa",
       "kernel k(q: bf16[B, Hq, T, 64], k: bf16[B, Hk, T, 64], v: bf16[B, Hk, "
       "T, 32], g: f32[B, Hq, T, 64], h0: f32[B, Hq, 64, 32]?) -> (o: bf16[B, "
       "Hq, T, 32], st: f32[B, Hq, 64, 32]) {\n  o, st = linear(q, k, v, "
       "initial = h0) { gate = 8 * g[b, h, t, d]; chunk = 64; scale = 0.125 "
       "}\n}\n"},
  };
  for (const LinearCase &c : cases)
    expectLinearMatches(c, {"from-tile-program", 16, 0, true}, 2e-2);
  // f32: every product three mma of bf16 halves, 1e-4 of each output's
  // scale (a gate scan off by 1% misses it); a state of fewer rows (Dk 32)
  // than the chunk (64).
  std::vector<LinearCase> f32Cases = {
      {"ssd_f32_h0",
       "kernel k(q: f32[B, Hq, T, 32], k: f32[B, Hk, T, 32], v: f32[B, Hk, T, "
       "32], a: f32[B, Hq, T], h0: f32[B, Hq, 32, 32]) -> (o: f32[B, Hq, T, "
       "32], st: f32[B, Hq, 32, 32]) {\n  o, st = linear(q, k, v, initial = "
       "h0) { gate = a[b, h, t]; chunk = 64; scale = 0.125 }\n}\n"},
      {"gla_f32_chunk32",
       "kernel k(q: f32[B, H, T, 32], k: f32[B, H, T, 32], v: f32[B, H, T, "
       "16], g: f32[B, H, T, 32]) -> (o: f32[B, H, T, 16]) {\n  o = "
       "linear(q, k, v) { gate = g[b, h, t, d]; chunk = 32 }\n}\n"},
      {"elu_noncausal_f32",
       "kernel k(q: f32[B, H, T, 32], k: f32[B, H, T, 32], v: f32[B, H, T, "
       "16]) -> (o: f32[B, H, T, 16], st: f32[B, H, 32, 16]) {\n  o, st = "
       "linear(q, k, v) { feature = elu(x) + 1; causal = false; chunk = 32; "
       "scale = 0.05 }\n}\n"},
  };
  for (const LinearCase &c : f32Cases)
    expectLinearMatches(c, {"from-tile-program", 16, 0, true}, 1e-4);
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
