//===- PortabilityTest.cpp - JIT code that runs on any CPU ----------------===//
//
// Kernels are JIT-compiled for the host CPU, but must not depend on its
// features or on builtins its libgcc may lack. ATTNC_JIT_CPU=<baseline> makes
// every path compile for the architecture's baseline CPU and refuse code that
// calls a compiler-runtime builtin attnc does not provide, so these tests fail
// on every machine, native bf16 or not, when such a call comes back.
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

#include "attnc/Execution/Compiler.h"
#include "attnc/Execution/Jit.h"
#include "attnc/Runtime/HalfFloat.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/ExecutionEngine/CRunnerUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>

using namespace attnc;
using namespace attnc::testing;

namespace {

const char *baselineCpu() {
#if defined(__x86_64__)
  return "x86-64";
#else
  return "generic";
#endif
}

/// Sets ATTNC_JIT_CPU for the scope.
class JitCpuScope {
public:
  explicit JitCpuScope(const char *cpu) { setenv("ATTNC_JIT_CPU", cpu, 1); }
  ~JitCpuScope() { unsetenv("ATTNC_JIT_CPU"); }
};

mlir::MLIRContext &contextWithDialects() {
  static mlir::MLIRContext context = [] {
    mlir::DialectRegistry registry;
    registry.insert<mlir::arith::ArithDialect, mlir::func::FuncDialect,
                    mlir::memref::MemRefDialect, mlir::scf::SCFDialect,
                    mlir::vector::VectorDialect>();
    return mlir::MLIRContext(registry);
  }();
  return context;
}

/// One function `convert(in: memref<?xFrom>, out: memref<?xTo>)` that
/// converts element by element, as scalars or in vectors of 8.
std::string conversionModule(const std::string &from, const std::string &to,
                             bool vectors) {
  std::string op =
      (from == "f32" || from == "f64") ? "arith.truncf" : "arith.extf";
  std::string body =
      vectors ? "    %x = vector.load %in[%i] : memref<?x" + from +
                    ">, vector<8x" + from + ">\n    %y = " + op +
                    " %x : vector<8x" + from + "> to vector<8x" + to +
                    ">\n    vector.store %y, %out[%i] : memref<?x" + to +
                    ">, vector<8x" + to + ">\n"
              : "    %x = memref.load %in[%i] : memref<?x" + from +
                    ">\n    %y = " + op + " %x : " + from + " to " + to +
                    "\n    memref.store %y, %out[%i] : memref<?x" + to + ">\n";
  return "func.func @convert(%in: memref<?x" + from + ">, %out: memref<?x" +
         to +
         ">) attributes {llvm.emit_c_interface} {\n"
         "  %c0 = arith.constant 0 : index\n"
         "  %step = arith.constant " +
         std::string(vectors ? "8" : "1") +
         " : index\n"
         "  %n = memref.dim %in, %c0 : memref<?x" +
         from +
         ">\n"
         "  scf.for %i = %c0 to %n step %step {\n" +
         body +
         "  }\n"
         "  return\n}\n";
}

using Pipeline = void (*)(mlir::OpPassManager &);

/// JIT-compiles `convert` through `pipeline` and runs it on `input`.
template <typename From, typename To>
std::vector<To> convertWithJit(const std::string &from, const std::string &to,
                               bool vectors, Pipeline pipeline,
                               std::vector<From> input, std::string &error) {
  mlir::MLIRContext &context = contextWithDialects();
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceString<mlir::ModuleOp>(
          conversionModule(from, to, vectors), &context);
  if (!module) {
    error = "the test's module does not parse";
    return {};
  }
  mlir::PassManager pm(&context);
  pipeline(pm);
  if (failed(pm.run(*module))) {
    error = "lowering failed";
    return {};
  }
  std::unique_ptr<mlir::ExecutionEngine> engine =
      jitCompile(*module, /*optLevel=*/2, error);
  if (!engine)
    return {};
  auto address = engine->lookup("_mlir_ciface_convert");
  if (!address) {
    error = llvm::toString(address.takeError());
    return {};
  }
  std::vector<To> output(input.size());
  StridedMemRefType<From, 1> in{
      input.data(), input.data(), 0, {static_cast<int64_t>(input.size())}, {1}};
  StridedMemRefType<To, 1> out{output.data(),
                               output.data(),
                               0,
                               {static_cast<int64_t>(output.size())},
                               {1}};
  reinterpret_cast<void (*)(StridedMemRefType<From, 1> *,
                            StridedMemRefType<To, 1> *)> (*address)(&in, &out);
  return output;
}

template <typename T> uint64_t bitsOf(T value) {
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}

bool halfIsNaN(uint16_t bits, bool bf16) {
  return bf16 ? (bits & 0x7fff) > 0x7f80 : (bits & 0x7fff) > 0x7c00;
}

/// Every value a truncation test feeds: zeros, infinities, NaNs, the
/// boundaries of both formats (largest finite, overflow midpoints, smallest
/// normal and subnormal, and their halfway points) with neighbours, and
/// random bit patterns of every exponent.
template <typename Float, typename Bits>
std::vector<Float> truncationInputs(uint64_t seed) {
  std::vector<Float> values;
  auto addAround = [&](double center) {
    Float value = static_cast<Float>(center);
    for (int step = 0; step < 3; ++step) {
      values.push_back(value);
      values.push_back(-value);
      value = std::nextafter(value, std::numeric_limits<Float>::infinity());
    }
    value = static_cast<Float>(center);
    for (int step = 0; step < 3; ++step) {
      value = std::nextafter(value, Float(0));
      values.push_back(value);
      values.push_back(-value);
    }
  };
  for (double center :
       {0.0, 1.0, 1.5, 65504.0, 65520.0, 65536.0, 0x1p-14, 0x1p-24, 0x1p-25,
        0x1.8p-25, 0x1p-126, 0x1p-133, 0x1p-134, 0x1.fep127,
        static_cast<double>(std::numeric_limits<float>::max()),
        static_cast<double>(std::numeric_limits<float>::denorm_min())})
    addAround(center);
  values.push_back(std::numeric_limits<Float>::infinity());
  values.push_back(-std::numeric_limits<Float>::infinity());
  values.push_back(std::numeric_limits<Float>::quiet_NaN());
  values.push_back(-std::numeric_limits<Float>::quiet_NaN());
  values.push_back(std::numeric_limits<Float>::denorm_min());
  std::mt19937_64 rng(seed);
  while (values.size() < (1u << 19)) {
    Bits bits = static_cast<Bits>(rng());
    Float value;
    std::memcpy(&value, &bits, sizeof(value));
    values.push_back(value);
  }
  // Ties: a half or bf16 value plus exactly half its unit in the last place.
  for (uint32_t half = 0; half < 0x7c00; half += 7) {
    float lower = halfToFloat(half), upper = halfToFloat(half + 1);
    values.push_back(static_cast<Float>(0.5 * (double(lower) + double(upper))));
  }
  for (uint32_t bf = 0; bf < 0x7f80; bf += 7) {
    float lower = bfloat16ToFloat(bf), upper = bfloat16ToFloat(bf + 1);
    values.push_back(static_cast<Float>(0.5 * (double(lower) + double(upper))));
  }
  values.resize(values.size() / 8 * 8); // whole vectors
  return values;
}

template <typename Float>
void expectTruncations(const std::vector<Float> &input,
                       const std::vector<uint16_t> &output, bool bf16,
                       uint16_t (*expected)(Float), const std::string &what) {
  ASSERT_EQ(output.size(), input.size()) << what;
  int failures = 0;
  for (size_t index = 0; index < input.size() && failures < 10; ++index) {
    uint16_t want = expected(input[index]);
    bool ok = halfIsNaN(want, bf16)
                  ? halfIsNaN(output[index], bf16) &&
                        (output[index] & 0x8000) == (want & 0x8000)
                  : output[index] == want;
    if (!ok)
      ++failures;
    EXPECT_TRUE(ok) << what << ": input bits 0x" << std::hex
                    << bitsOf(input[index]) << " gave 0x" << output[index]
                    << ", expected 0x" << want;
  }
}

uint16_t floatToHalfRef(float x) { return floatToHalf(x); }
uint16_t floatToBf16Ref(float x) { return floatToBFloat16(x); }
uint16_t doubleToHalfRef(double x) { return doubleToHalf(x); }
uint16_t doubleToBf16Ref(double x) { return doubleToBFloat16(x); }

/// attnc-lower-to-llvm's conversions (attnc-expand-float-conversions), and,
/// with `pipeline` lowering arith.truncf/extf straight to LLVM, the
/// conversion builtins attnc provides to the JIT.
void checkConversions(Pipeline pipeline, const std::string &what) {
  const uint64_t seed = 7;
  SCOPED_TRACE(what + " (seed " + std::to_string(seed) + ")");
  std::string error;
  for (bool vectors : {false, true}) {
    std::string form = vectors ? " vector<8>" : " scalar";
    std::vector<float> floats = truncationInputs<float, uint32_t>(seed);
    std::vector<double> doubles = truncationInputs<double, uint64_t>(seed);
    for (bool bf16 : {false, true}) {
      std::string half = bf16 ? "bf16" : "f16";
      auto fromF32 = convertWithJit<float, uint16_t>("f32", half, vectors,
                                                     pipeline, floats, error);
      ASSERT_TRUE(error.empty()) << error;
      expectTruncations<float>(floats, fromF32, bf16,
                               bf16 ? floatToBf16Ref : floatToHalfRef,
                               "f32 -> " + half + form);
      auto fromF64 = convertWithJit<double, uint16_t>("f64", half, vectors,
                                                      pipeline, doubles, error);
      ASSERT_TRUE(error.empty()) << error;
      expectTruncations<double>(doubles, fromF64, bf16,
                                bf16 ? doubleToBf16Ref : doubleToHalfRef,
                                "f64 -> " + half + form);

      // Extensions: every bit pattern.
      std::vector<uint16_t> all(1 << 16);
      for (uint32_t bits = 0; bits < all.size(); ++bits)
        all[bits] = static_cast<uint16_t>(bits);
      auto toF32 = convertWithJit<uint16_t, float>(half, "f32", vectors,
                                                   pipeline, all, error);
      ASSERT_TRUE(error.empty()) << error;
      auto toF64 = convertWithJit<uint16_t, double>(half, "f64", vectors,
                                                    pipeline, all, error);
      ASSERT_TRUE(error.empty()) << error;
      int failures = 0;
      for (uint32_t bits = 0; bits < all.size() && failures < 10; ++bits) {
        float want = bf16 ? bfloat16ToFloat(bits) : halfToFloat(bits);
        bool ok = std::isnan(want)
                      ? std::isnan(toF32[bits]) && std::isnan(toF64[bits]) &&
                            std::signbit(toF32[bits]) == std::signbit(want)
                      : bitsOf(toF32[bits]) == bitsOf(want) &&
                            bitsOf(toF64[bits]) == bitsOf(double(want));
        if (!ok)
          ++failures;
        EXPECT_TRUE(ok) << half << " -> f32/f64" << form << ": 0x" << std::hex
                        << bits << " gave " << toF32[bits] << " / "
                        << toF64[bits] << ", expected " << want;
      }
    }
  }
}

TEST(FloatConversions, ExpandedConversionsAreExact) {
  JitCpuScope baseline(baselineCpu());
  checkConversions(buildLowerToLLVMPipeline, "attnc-lower-to-llvm");
}

TEST(FloatConversions, ProvidedBuiltinsAreExact) {
  // Without the expansion, LLVM calls __truncsfbf2, __extendhfsf2, ... on a
  // baseline CPU: the JIT must resolve them to attnc's own.
  JitCpuScope baseline(baselineCpu());
  checkConversions(
      [](mlir::OpPassManager &pm) {
        pm.addPass(mlir::createSCFToControlFlowPass());
        pm.addPass(mlir::createConvertVectorToLLVMPass());
        pm.addPass(mlir::createFinalizeMemRefToLLVMConversionPass());
        pm.addPass(mlir::createArithToLLVMConversionPass());
        pm.addPass(mlir::createConvertControlFlowToLLVMPass());
        pm.addPass(mlir::createConvertFuncToLLVMPass());
        pm.addPass(mlir::createReconcileUnrealizedCastsPass());
      },
      "LLVM's own conversions");
}

TEST(FloatConversions, UnprovidedBuiltinsAreRefused) {
  // i128 division is a libgcc call (__divti3) on x86-64 and aarch64: the
  // baseline mode must name it rather than leave it to the host.
  JitCpuScope baseline(baselineCpu());
  mlir::MLIRContext &context = contextWithDialects();
  auto module = mlir::parseSourceString<mlir::ModuleOp>(
      "func.func @divide(%a: i128, %b: i128) -> i128 "
      "attributes {llvm.emit_c_interface} {\n"
      "  %q = arith.divsi %a, %b : i128\n  return %q : i128\n}\n",
      &context);
  ASSERT_TRUE(module);
  mlir::PassManager pm(&context);
  buildLowerToLLVMPipeline(pm);
  ASSERT_TRUE(succeeded(pm.run(*module)));
  std::string error;
  EXPECT_FALSE(jitCompile(*module, 2, error));
  EXPECT_NE(error.find("__divti3"), std::string::npos) << error;
  EXPECT_NE(error.find("ATTNC_JIT_CPU"), std::string::npos) << error;
}

TEST(FloatConversions, UnknownJitCpuIsAnError) {
  JitCpuScope bogus("no-such-cpu");
  SpecRunner runner("kernel k(q: f32[B, H, N, 16], k: f32[B, H, M, 16], "
                    "v: f32[B, H, M, 16]) -> (o: f32[B, H, N, 16]) {\n"
                    "  o = softmax(q, k, v) {}\n}\n");
  EXPECT_FALSE(runner.ok());
  EXPECT_NE(runner.compileError.find("ATTNC_JIT_CPU=no-such-cpu"),
            std::string::npos)
      << runner.compileError;
}

/// Inputs for `spec` by parameter name: q, k, v and an f32 slope or gate.
std::map<std::string, HostTensor>
portabilityInputs(ElementType type, bool linear, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, HostTensor> inputs;
  if (linear) {
    inputs["q"] = randomTensor(type, {1, 70, 2, 32}, rng, -1, 1);
    inputs["k"] = randomTensor(type, {1, 70, 2, 32}, rng, -1, 1);
    inputs["v"] = randomTensor(type, {1, 70, 2, 32}, rng, -1, 1);
    inputs["g"] =
        randomTensor(ElementType::F32, {1, 70, 2, 32}, rng, -1, -0.01);
  } else {
    inputs["q"] = randomTensor(type, {1, 4, 70, 64}, rng, -2, 2);
    inputs["k"] = randomTensor(type, {1, 2, 90, 64}, rng, -2, 2);
    inputs["v"] = randomTensor(type, {1, 2, 90, 64}, rng, -1, 1);
    inputs["slope"] = randomTensor(ElementType::F32, {4}, rng, 0, 0.5);
  }
  return inputs;
}

std::string portabilitySpec(const std::string &t, bool linear) {
  if (linear)
    return "kernel gla(q: " + t + "[B, T, H, 32], k: " + t +
           "[B, T, H, 32], v: " + t +
           "[B, T, H, 32], g: f32[B, T, H, 32])\n"
           "    -> (o: " +
           t +
           "[B, T, H, 32], hT: f32[B, H, 32, 32]) {\n"
           "  o, hT = linear(q, k, v, layout = bthd) {\n"
           "    gate = g[b, t, h, d]\n    chunk = 16\n  }\n}\n";
  return "kernel k(q: " + t + "[B, Hq, N, 64], k: " + t +
         "[B, Hk, M, 64], v: " + t +
         "[B, Hk, M, 64], slope: f32[Hq])\n"
         "    -> (o: " +
         t +
         "[B, Hq, N, 64], lse: f32[B, Hq, N]) {\n"
         "  o, lse = softmax(q, k, v) {\n"
         "    score = 30 * tanh((s - slope[h] * (i - j)) / 30)\n"
         "    mask = j <= i + 20\n  }\n}\n";
}

TEST(Portability, EveryPathRunsOnABaselineCpu) {
  const uint64_t seed = 11;
  for (bool linear : {false, true}) {
    for (const char *type : {"bf16", "f16"}) {
      if (linear && std::string(type) == "f16")
        continue; // one linear kernel is enough: the conversions are shared
      std::string spec = portabilitySpec(type, linear);
      std::string what = std::string(linear ? "linear " : "softmax ") + type +
                         " (seed " + std::to_string(seed) + ")";
      ElementType element =
          std::string(type) == "bf16" ? ElementType::BF16 : ElementType::F16;
      std::map<std::string, HostTensor> inputs =
          portabilityInputs(element, linear, seed);
      // The oracle: the reference lowering on the host's own features.
      SpecRunner host(spec);
      ASSERT_TRUE(host.ok()) << what << ": " << host.compileError;

      JitCpuScope baseline(baselineCpu());
      SpecRunner reference(spec);
      ASSERT_TRUE(reference.ok()) << what << ": " << reference.compileError;
      expectSameOutputs(host, reference, inputs, what + ", reference");
      SpecRunner tiled(spec, CpuOptions{CpuPath::Tiled});
      ASSERT_TRUE(tiled.ok()) << what << ": " << tiled.compileError;
      expectSameOutputs(host, tiled, inputs, what + ", tiled");
      std::string error;
      std::unique_ptr<EmulatedGpuKernel> emulated = EmulatedGpuKernel::compile(
          *host.module, "", GpuPipelineOptions{}, error);
      ASSERT_TRUE(emulated) << what << ", gpu-emulator: " << error;
      expectEmulatorMatches(host, *emulated, inputs, what + ", gpu-emulator");
    }
  }
}

/// The backward of `spec`'s kernel for `target` (cpu or cpu-reference).
std::unique_ptr<CpuKernel> compileBackward(mlir::MLIRContext &context,
                                           const std::string &spec,
                                           const char *target) {
  CompileRequest request;
  request.spec = spec;
  request.target = target;
  request.part = KernelPart::Backward;
  CompiledKernel compiled;
  std::string error;
  EXPECT_EQ(compileSpec(context, request, compiled, error),
            CompileFailure::None)
      << target << ": " << error;
  return std::move(compiled.cpu);
}

// The backward's 16-bit gradients (rounded in JIT code) and its f32 partial
// sums of the slope's gradient, on both CPU paths, compiled for the
// baseline CPU, agree with the reference backward on the host's own
// features.
TEST(Portability, BackwardRunsOnABaselineCpu) {
  const uint64_t seed = 12;
  for (const char *type : {"bf16", "f16"}) {
    std::string spec = portabilitySpec(type, /*linear=*/false);
    std::string what =
        std::string("softmax backward ") + type + " (seed " +
        std::to_string(seed) + ")";
    ElementType element =
        std::string(type) == "bf16" ? ElementType::BF16 : ElementType::F16;
    std::map<std::string, HostTensor> inputs =
        portabilityInputs(element, /*linear=*/false, seed);
    SpecRunner forward(spec);
    ASSERT_TRUE(forward.ok()) << what << ": " << forward.compileError;
    std::vector<HostTensor> outputs;
    std::string error;
    ASSERT_TRUE(forward.run(inputs, outputs, error)) << what << ": " << error;
    std::mt19937_64 rng(seed);
    inputs["o"] = outputs[0];
    inputs["lse"] = outputs[1];
    inputs["d_o"] = randomTensor(element, outputs[0].shape(), rng, -1, 1);
    inputs["d_lse"] =
        randomTensor(ElementType::F32, outputs[1].shape(), rng, -1, 1);

    mlir::MLIRContext context;
    std::unique_ptr<CpuKernel> host =
        compileBackward(context, spec, "cpu-reference");
    ASSERT_TRUE(host);
    std::vector<TensorView> storage;
    std::vector<HostTensor> expected;
    ASSERT_TRUE(host->run(viewsOf(host->signature(), inputs, storage),
                          expected, error))
        << what << ": " << error;
    JitCpuScope baseline(baselineCpu());
    for (const char *target : {"cpu-reference", "cpu"}) {
      std::unique_ptr<CpuKernel> kernel =
          compileBackward(context, spec, target);
      ASSERT_TRUE(kernel);
      std::vector<HostTensor> actual;
      ASSERT_TRUE(kernel->run(viewsOf(kernel->signature(), inputs, storage),
                              actual, error))
          << what << ", " << target << ": " << error;
      ASSERT_EQ(actual.size(), 4u);
      // The tiled backward takes D = rowsum(dO o O) from the 16-bit o, as
      // FlashAttention-2 does, the reference sums P dP exactly: the f32
      // slope gradient too is only as close as 16-bit rounding allows.
      for (size_t index = 0; index < actual.size(); ++index)
        expectClose(values(actual[index]), values(expected[index]),
                    toleranceFor(element),
                    what + ", " + target + ", gradient " +
                        std::to_string(index));
    }
  }
}

} // namespace
