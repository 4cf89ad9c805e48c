//===- ExpressionGradientTest.cpp - Derivatives of score expressions ------===//
//
// inlineExpressionGradient against central finite differences of the
// expression itself: each score expression is compiled into a function
// that returns its value, the derivative with respect to s and the
// derivative with respect to each float tensor element it loads, for a
// point (s, b, h, i, j); the finite differences perturb s and the tensor
// elements. Points are seeded; the seed is printed on failure.
//
//===----------------------------------------------------------------------===//

#include "SpecRunner.h"

#include "attnc/Conversion/KernelLowering/CallingConvention.h"
#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"
#include "attnc/Execution/Jit.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::testing;

namespace {

/// A kernel whose score is `score`, over tensors slope: f32[H] and
/// rel: f32[H, 9] that the expression may read.
std::string specWithScore(const std::string &score) {
  return "kernel t(q: f32[B, H, N, 4], k: f32[B, H, N, 4], "
         "v: f32[B, H, N, 4], slope: f32[H], rel: f32[H, 9]) -> "
         "(o: f32[B, H, N, 4]) {\n  o = softmax(q, k, v) { score = " +
         score + " }\n}\n";
}

constexpr int64_t kHeads = 2, kRel = 9, kMaxLoads = 8;

/// The compiled value-and-gradient function of a score expression:
///   out = [value, d/ds, d/d(load 0), ..., then each load's flat index]
/// for in = [s, seed, h, i, j], with slope and rel as given.
class GradientFunction {
public:
  explicit GradientFunction(const std::string &score)
      : runner(specWithScore(score)) {
    if (!runner.module) {
      error = runner.compileError;
      return;
    }
    KernelOp kernel = *runner.module->getOps<KernelOp>().begin();
    auto softmax = *kernel.getBody().getOps<SoftmaxOp>().begin();
    if (failed(checkDifferentiable(softmax.getScore(), "the score"))) {
      error = "not differentiable";
      return;
    }
    MLIRContext *context = &runner.context;
    OpBuilder top(context);
    module = ModuleOp::create(top.getUnknownLoc());
    Type f32 = top.getF32Type();
    auto vector =
        MemRefType::get({ShapedType::kDynamic}, f32,
                        StridedLayoutAttr::get(context, ShapedType::kDynamic,
                                               {ShapedType::kDynamic}));
    SmallVector<Type> types;
    for (Type type : kernel.getFunctionType().getInputs())
      types.push_back(getParamMemRefType(cast<AttnTensorType>(type)));
    types.append({vector, vector,
                  MemRefType::get({ShapedType::kDynamic}, top.getI64Type())});
    top.setInsertionPointToEnd(module->getBody());
    auto func = func::FuncOp::create(top, top.getUnknownLoc(), "gradient",
                                     top.getFunctionType(types, {}));
    func->setAttr("llvm.emit_c_interface", UnitAttr::get(context));
    Block *entry = func.addEntryBlock();
    ImplicitLocOpBuilder b(func.getLoc(), entry, entry->end());
    IRMapping params;
    for (auto [param, arg] :
         llvm::zip(kernel.getBody().getArguments(), entry->getArguments()))
      params.map(param, arg);
    unsigned numParams = kernel.getBody().getNumArguments();
    Value in = entry->getArgument(numParams);
    Value out = entry->getArgument(numParams + 1);
    LoweringBuilder rb(b, params, entry->getArgument(numParams + 2));
    auto input = [&](int64_t index) {
      return memref::LoadOp::create(b, in, ValueRange{rb.index(index)})
          .getResult();
    };
    auto indexInput = [&](int64_t index) {
      return arith::FPToSIOp::create(b, b.getI64Type(), input(index))
          .getResult();
    };
    auto asIndex = [&](Value value) {
      return arith::IndexCastOp::create(b, b.getIndexType(), value).getResult();
    };
    Value zero = rb.index(0), n = rb.index(8);
    SmallVector<Value> args = {input(0),
                               zero,
                               asIndex(indexInput(2)),
                               asIndex(indexInput(3)),
                               asIndex(indexInput(4)),
                               n,
                               n,
                               zero,
                               zero};
    ExpressionGradient gradient =
        inlineExpressionGradient(rb, softmax.getScore(), args, input(1));
    auto store = [&](Value value, int64_t index) {
      memref::StoreOp::create(b, value, out, ValueRange{rb.index(index)});
    };
    store(gradient.value, 0);
    store(gradient.arguments[0] ? gradient.arguments[0] : rb.f32(0), 1);
    numLoads = gradient.loads.size();
    for (auto [number, load] : llvm::enumerate(gradient.loads)) {
      store(load.gradient, 2 + number);
      // slope[h] is flat index h; rel[h, x] is kHeads + h * kRel + x.
      bool isRel = load.indices.size() == 2;
      Value flat = load.indices[0];
      if (isRel)
        flat = rb.add(rb.index(kHeads),
                      rb.add(rb.mul(flat, rb.index(kRel)), load.indices[1]));
      store(rb.indexToF32(flat), 2 + kMaxLoads + number);
    }
    func::ReturnOp::create(b);

    PassManager pm(context);
    buildLowerToLLVMPipeline(pm);
    if (failed(pm.run(*module))) {
      error = "lowering failed";
      return;
    }
    engine = jitCompile(*module, 2, error);
  }

  bool ok() const { return engine != nullptr; }

  /// Evaluates at in = [s, seed, h, i, j]; tensors: slope (kHeads), then
  /// rel (kHeads x kRel), one flat vector.
  std::vector<float> operator()(std::vector<float> in,
                                std::vector<float> &tensors) {
    std::vector<float> out(2 + 2 * kMaxLoads, 0.0f);
    std::vector<int64_t> status(8, 0);
    auto descriptor = [](void *data, std::vector<int64_t> shape) {
      std::vector<int64_t> words = {reinterpret_cast<int64_t>(data),
                                    reinterpret_cast<int64_t>(data), 0};
      std::vector<int64_t> strides(shape.size(), 1);
      for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d)
        strides[d] = strides[d + 1] * shape[d + 1];
      words.insert(words.end(), shape.begin(), shape.end());
      words.insert(words.end(), strides.begin(), strides.end());
      return words;
    };
    std::vector<float> unused(4, 0.0f);
    std::vector<std::vector<int64_t>> descriptors = {
        descriptor(unused.data(), {1, 1, 1, 4}),
        descriptor(unused.data(), {1, 1, 1, 4}),
        descriptor(unused.data(), {1, 1, 1, 4}),
        descriptor(tensors.data(), {kHeads}),
        descriptor(tensors.data() + kHeads, {kHeads, kRel}),
        descriptor(in.data(), {int64_t(in.size())}),
        descriptor(out.data(), {int64_t(out.size())}),
        descriptor(status.data(), {int64_t(status.size())})};
    std::vector<void *> pointers;
    for (std::vector<int64_t> &words : descriptors)
      pointers.push_back(words.data());
    std::vector<void *> args;
    for (void *&pointer : pointers)
      args.push_back(&pointer);
    auto function = engine->lookupPacked("_mlir_ciface_gradient");
    EXPECT_TRUE(static_cast<bool>(function));
    if (function)
      (*function)(args.data());
    else
      llvm::consumeError(function.takeError());
    EXPECT_EQ(status[0], 0) << "the expression reported a bad read";
    return out;
  }

  SpecRunner runner;
  OwningOpRef<ModuleOp> module;
  std::unique_ptr<ExecutionEngine> engine;
  size_t numLoads = 0;
  std::string error;
};

/// Central differences with step h of f32 evaluations: error about
/// h^2 |f'''| + 2^-24 |f| / h.
void expectMatchesFiniteDifferences(const std::string &score, uint64_t seed) {
  SCOPED_TRACE(score + " (seed " + std::to_string(seed) + ")");
  GradientFunction gradient(score);
  ASSERT_TRUE(gradient.ok()) << gradient.error;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  for (int point = 0; point < 6; ++point) {
    std::vector<float> tensors(kHeads + kHeads * kRel);
    for (float &value : tensors)
      value = uniform(rng);
    float s = uniform(rng), seedGradient = 1.0f + uniform(rng) / 4;
    float h = float(point % kHeads), i = float(2 + point % 3),
          j = float(point % 3);
    std::vector<float> out = gradient({s, seedGradient, h, i, j}, tensors);
    auto valueAt = [&](float sAt, std::vector<float> &at) {
      return double(gradient({sAt, seedGradient, h, i, j}, at)[0]);
    };
    const float step = 1e-2f;
    auto expectNear = [&](double analytic, double numeric,
                          const std::string &what) {
      EXPECT_NEAR(analytic, numeric, 2e-3 * (1 + std::abs(numeric)))
          << what << " at s=" << s << " h=" << h << " i=" << i << " j=" << j;
    };
    expectNear(out[1],
               seedGradient *
                   (valueAt(s + step, tensors) - valueAt(s - step, tensors)) /
                   (2 * step),
               "d/ds");
    // Loads of one element add up.
    std::map<int64_t, double> byElement;
    for (size_t load = 0; load < gradient.numLoads; ++load)
      byElement[int64_t(out[2 + kMaxLoads + load])] += out[2 + load];
    for (auto [element, analytic] : byElement) {
      std::vector<float> plus = tensors, minus = tensors;
      plus[element] += step;
      minus[element] -= step;
      expectNear(analytic,
                 seedGradient * (valueAt(s, plus) - valueAt(s, minus)) /
                     (2 * step),
                 "d/d(element " + std::to_string(element) + ")");
    }
  }
}

TEST(ExpressionGradient, MatchesFiniteDifferences) {
  const char *scores[] = {
      "s",
      "s - slope[h] * (i - j)",
      "30 * tanh(s / 30)",
      "tanh(2 * s) * slope[h]",
      "s + rel[h, i - j + 4]",
      "s * slope[h] / (1 + slope[h] * slope[h])",
      "exp(s / 4) - log(2 + s * s) + sqrt(1 + s * s)",
      "exp2(s / 4) + log2(3 + s)",
      "abs(s) + min(s, slope[h]) + max(s, rel[h, 0])",
      "where(s > 0, s * s, -s) + sigmoid(s)",
      "-s + s % 1.5 + (2.5 + s / 10) % (1 + slope[h] / 50)",
      "elu(s) + relu(s - 1)",
  };
  uint64_t seed = 7;
  for (const char *score : scores)
    expectMatchesFiniteDifferences(score, seed++);
}

/// An op without a derivative rule is reported at its location (hand
/// written IR: the language has none).
TEST(ExpressionGradient, UndifferentiableOpsAreReported) {
  GradientFunction gradient("s");
  ASSERT_TRUE(gradient.ok()) << gradient.error;
  KernelOp kernel = *gradient.runner.module->getOps<KernelOp>().begin();
  auto softmax = *kernel.getBody().getOps<SoftmaxOp>().begin();
  Block &block = softmax.getScore().front();
  OpBuilder b(&block, block.begin());
  Location at = FileLineColLoc::get(b.getStringAttr("spec.attn"), 3, 14);
  Value floor = math::FloorOp::create(b, at, block.getArgument(0));
  block.getTerminator()->setOperand(0, floor);
  std::string message;
  ScopedDiagnosticHandler handler(&gradient.runner.context,
                                  [&](mlir::Diagnostic &diagnostic) {
                                    message = diagnostic.str();
                                    return success();
                                  });
  EXPECT_TRUE(failed(checkDifferentiable(softmax.getScore(), "the score")));
  EXPECT_NE(message.find("'math.floor' has no derivative"), std::string::npos)
      << message;
}

} // namespace
