//===- CpuKernel.cpp - Run attn kernels on the CPU ------------------------===//

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Runtime/GpuImage.h"
#include "attnc/Runtime/HalfFloat.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

using namespace mlir;
using namespace attnc;

static ElementType toElementType(Type type) {
  if (type.isF16())
    return ElementType::F16;
  if (type.isBF16())
    return ElementType::BF16;
  if (type.isInteger(32))
    return ElementType::I32;
  if (type.isInteger(8))
    return ElementType::I8;
  if (type.isInteger(1))
    return ElementType::Bool;
  return ElementType::F32;
}

static TensorSpec toTensorSpec(StringRef name, Type type, bool optional) {
  auto tensor = cast<attn::AttnTensorType>(type);
  TensorSpec spec;
  spec.name = name.str();
  spec.type = toElementType(tensor.getElementType());
  spec.optional = optional;
  for (unsigned dim = 0, e = tensor.getRank(); dim < e; ++dim) {
    DimSpec dimSpec;
    if (std::optional<int64_t> size = tensor.getFixedSize(dim))
      dimSpec.size = *size;
    else
      dimSpec.symbol = tensor.getSymbol(dim).str();
    spec.dims.push_back(dimSpec);
  }
  return spec;
}

KernelSignature attnc::getKernelSignature(attn::KernelOp kernel) {
  KernelSignature signature;
  signature.name = kernel.getSymName().str();
  FunctionType type = kernel.getFunctionType();
  for (auto [index, paramType] : llvm::enumerate(type.getInputs()))
    signature.params.push_back(toTensorSpec(
        cast<StringAttr>(kernel.getParamNames()[index]).getValue(), paramType,
        kernel.isOptionalParam(index)));
  for (auto [index, resultType] : llvm::enumerate(type.getResults()))
    signature.results.push_back(toTensorSpec(
        cast<StringAttr>(kernel.getResultNames()[index]).getValue(),
        resultType, false));
  return signature;
}

attn::KernelOp attnc::keepOnlyKernel(ModuleOp module, StringRef name,
                                     std::string &error) {
  attn::KernelOp kernel;
  for (attn::KernelOp candidate :
       llvm::make_early_inc_range(module.getOps<attn::KernelOp>())) {
    if (!kernel && (name.empty() || candidate.getSymName() == name))
      kernel = candidate;
    else
      candidate.erase();
  }
  if (!kernel)
    error = name.empty() ? "the module holds no kernel"
                         : "no kernel named '" + name.str() + "'";
  return kernel;
}

CpuKernel::~CpuKernel() = default;

/// Position of `value` among the kernel parameters, or -1.
static int paramIndex(Value value) {
  if (auto arg = dyn_cast_or_null<BlockArgument>(value))
    return arg.getArgNumber();
  return -1;
}

std::unique_ptr<CpuKernel> CpuKernel::compile(ModuleOp module, StringRef name,
                                              const CpuOptions &cpuOptions,
                                              std::string &error) {
  attn::KernelOp kernel;
  for (attn::KernelOp candidate : module.getOps<attn::KernelOp>())
    if (name.empty() || candidate.getSymName() == name) {
      kernel = candidate;
      break;
    }
  if (!kernel) {
    error = name.empty() ? "the module holds no kernel"
                         : "no kernel named '" + name.str() + "'";
    return nullptr;
  }

  std::unique_ptr<CpuKernel> result(new CpuKernel());
  result->setThreads(cpuOptions.threads);
  result->kernelSignature = getKernelSignature(kernel);
  LaunchInfo &launch = result->launch;
  Operation *family = kernel.getFamilyOp();
  auto layoutDims = [&](attn::Layout layout) {
    attn::LayoutDims dims = attn::getLayoutDims(layout);
    launch.batchDim = dims.batch;
    launch.headDim = dims.head;
    launch.seqDim = dims.seq;
    launch.packed = layout == attn::Layout::thd;
  };
  if (auto linear = dyn_cast<attn::LinearOp>(family)) {
    launch.q = paramIndex(linear.getQ());
    launch.k = paramIndex(linear.getK());
    launch.cuQ = launch.cuK = paramIndex(linear.getCuSeqlens());
    launch.initial = paramIndex(linear.getInitialState());
    layoutDims(linear.getLayout());
    if (launch.packed && linear.getFinalState())
      for (OpOperand &use : linear.getFinalState().getUses())
        launch.perSequenceResult = use.getOperandNumber();
  } else {
    auto operands = family->getOperands();
    launch.q = paramIndex(operands[0]);
    launch.k = paramIndex(operands[1]);
    auto layoutAttr = family->getAttrOfType<attn::LayoutAttr>("layout");
    layoutDims(layoutAttr ? layoutAttr.getValue() : attn::Layout::bhnd);
    auto [cuQ, cuK] = attn::getSequenceOffsets(family);
    launch.cuQ = paramIndex(cuQ);
    launch.cuK = paramIndex(cuK);
  }

  MLIRContext *context = module.getContext();
  OwningOpRef<ModuleOp> lowered = ModuleOp::create(module.getLoc());
  lowered->getBody()->push_back(kernel->clone());

  std::string diagnostics;
  llvm::raw_string_ostream diagStream(diagnostics);
  {
    ScopedDiagnosticHandler handler(context, [&](Diagnostic &diag) {
      diagStream << diag.str() << "\n";
      return success();
    });
    PassManager strategy(context);
    addCpuStrategies(strategy, cpuOptions);
    PassManager toLLVM(context);
    buildLowerToLLVMPipeline(toLLVM);
    if (failed(strategy.run(*lowered))) {
      error = "lowering to LLVM failed: " + diagnostics;
      return nullptr;
    }
    if (auto func = lowered->lookupSymbol<func::FuncOp>(kernel.getSymName())) {
      if (auto rowBlock = func->getAttrOfType<IntegerAttr>(kCpuRowBlockAttrName))
        launch.rowBlock = rowBlock.getInt();
      if (auto partial =
              func->getAttrOfType<DenseI64ArrayAttr>(kPartialResultsAttrName))
        for (int64_t argument : partial.asArrayRef()) // to result numbers
          launch.partialResults.push_back(
              static_cast<int>(argument - result->kernelSignature.params.size()));
    }
    if (failed(toLLVM.run(*lowered))) {
      error = "lowering to LLVM failed: " + diagnostics;
      return nullptr;
    }
  }

  result->engine = jitCompile(*lowered, /*optLevel=*/2, error);
  if (!result->engine)
    return nullptr;
  return result;
}

void CpuKernel::setThreads(int64_t count) {
  if (count <= 0)
    if (const char *fromEnvironment = std::getenv("ATTNC_NUM_THREADS"))
      count = std::strtoll(fromEnvironment, nullptr, 10);
  if (count <= 0)
    count = std::max(1u, std::thread::hardware_concurrency());
  threads = count;
}

bool CpuKernel::checkLaunch(const std::vector<const TensorView *> &inputs,
                            bool readValues, std::string &error) const {
  const TensorView *q = inputs[launch.q], *k = inputs[launch.k];
  int64_t headsQ = q->shape[launch.headDim], headsK = k->shape[launch.headDim];
  if (headsK == 0 || headsQ % headsK != 0) {
    error = "'" + kernelSignature.params[launch.q].name + "' has " +
            std::to_string(headsQ) + " heads and '" +
            kernelSignature.params[launch.k].name + "' has " +
            std::to_string(headsK) +
            "; the query heads must be a positive multiple of the kv heads";
    return false;
  }
  auto checkOffsets = [&](int param, const TensorView *tokens) {
    if (param < 0)
      return true;
    const TensorView *offsets = inputs[param];
    const std::string &name = kernelSignature.params[param].name;
    int64_t total = tokens->shape[launch.seqDim];
    if (!checkOffsetCount(name, *offsets, total, error))
      return false;
    if (!readValues)
      return true;
    const auto *values = static_cast<const int32_t *>(offsets->data);
    int64_t previous = 0, last = offsets->shape[0] - 1;
    for (int64_t index = 0; index <= last; ++index) {
      int64_t value = values[index * offsets->strides[0]];
      bool covers = (index != 0 || value == 0) && (index != last || value == total);
      if (value < previous || value > total || !covers) {
        error = "'" + name + "'[" + std::to_string(index) + "] = " +
                std::to_string(value) +
                ": offsets must start at 0, be non-decreasing and end at the " +
                std::to_string(total) + " packed tokens";
        return false;
      }
      previous = value;
    }
    return true;
  };
  if (!checkOffsets(launch.cuQ, q) || !checkOffsets(launch.cuK, k))
    return false;
  if (launch.packed && launch.cuQ >= 0 && launch.cuK >= 0 &&
      inputs[launch.cuQ]->shape[0] != inputs[launch.cuK]->shape[0]) {
    error = "cu_seqlens_q and cu_seqlens_k must describe the same number of "
            "sequences";
    return false;
  }
  if (launch.packed && launch.initial >= 0 && inputs[launch.initial]) {
    int64_t sequences = inputs[launch.cuQ]->shape[0] - 1;
    if (inputs[launch.initial]->shape[0] != sequences) {
      error = "'" + kernelSignature.params[launch.initial].name +
              "' (the initial state) must hold one state per sequence (" +
              std::to_string(sequences) + "), got " +
              std::to_string(inputs[launch.initial]->shape[0]);
      return false;
    }
  }
  return true;
}

bool CpuKernel::outputShapes(const std::vector<const TensorView *> &inputs,
                             std::vector<std::vector<int64_t>> &shapes,
                             std::string &error, bool readValues) const {
  DimBindings bindings;
  if (!bindInputShapes(kernelSignature, inputs, bindings, error) ||
      !checkLaunch(inputs, readValues, error))
    return false;
  // A packed final state has one entry per sequence.
  if (launch.perSequenceResult >= 0) {
    const DimSpec &dim = kernelSignature.results[launch.perSequenceResult].dims[0];
    if (dim.isSymbolic())
      bindings.emplace(dim.symbol, inputs[launch.cuQ]->shape[0] - 1);
  }
  shapes.clear();
  for (const TensorSpec &spec : kernelSignature.results) {
    shapes.emplace_back();
    if (!resolveShape(spec, bindings, shapes.back(), error))
      return false;
  }
  return true;
}

/// Row-major strides of `shape`, in elements.
static std::vector<int64_t> contiguousStrides(const std::vector<int64_t> &shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t dim = shape.size(); dim-- > 1;)
    strides[dim - 1] = strides[dim] * shape[dim];
  return strides;
}

/// A memref descriptor laid out as StridedMemRefType<T, rank>: allocated and
/// aligned pointers, offset, sizes, strides.
static std::vector<int64_t> makeDescriptor(const TensorView *view,
                                           size_t rank) {
  std::vector<int64_t> descriptor(3 + 2 * rank, 0);
  if (!view) // an omitted optional input: null pointers, zero sizes
    return descriptor;
  auto pointer = reinterpret_cast<int64_t>(view->data);
  descriptor[0] = descriptor[1] = pointer;
  for (size_t dim = 0; dim < rank; ++dim) {
    descriptor[3 + dim] = view->shape[dim];
    descriptor[3 + rank + dim] = view->strides[dim];
  }
  return descriptor;
}

bool CpuKernel::run(const std::vector<const TensorView *> &inputs,
                    const std::vector<TensorView *> &outputs,
                    std::string &error) {
  std::vector<std::vector<int64_t>> expected;
  if (!outputShapes(inputs, expected, error))
    return false;
  if (outputs.size() != expected.size()) {
    error = "kernel '" + kernelSignature.name + "' has " +
            std::to_string(expected.size()) + " outputs, got " +
            std::to_string(outputs.size());
    return false;
  }
  for (size_t index = 0; index < outputs.size(); ++index) {
    const TensorSpec &spec = kernelSignature.results[index];
    if (outputs[index]->type != spec.type ||
        outputs[index]->shape != expected[index]) {
      error = "output '" + spec.name + "' must be " + toString(spec.type) +
              shapeString(expected[index]) + ", got " +
              toString(outputs[index]->type) +
              shapeString(outputs[index]->shape);
      return false;
    }
  }

  std::vector<std::vector<int64_t>> descriptors;
  for (size_t index = 0; index < inputs.size(); ++index)
    descriptors.push_back(makeDescriptor(
        inputs[index], kernelSignature.params[index].dims.size()));
  for (size_t index = 0; index < outputs.size(); ++index)
    descriptors.push_back(makeDescriptor(
        outputs[index], kernelSignature.results[index].dims.size()));
  // The packed C-interface wrapper takes a pointer to each argument; a memref
  // argument is a pointer to its descriptor.
  std::vector<void *> descriptorPointers;
  for (std::vector<int64_t> &descriptor : descriptors)
    descriptorPointers.push_back(descriptor.data());

  auto function = engine->lookupPacked("_mlir_ciface_" + kernelSignature.name);
  if (!function) {
    error = "running the kernel failed: " +
            llvm::toString(function.takeError());
    return false;
  }

  // Work items are the (batch, head) pairs of the grid, or their blocks of
  // launch.rowBlock query rows (as many per pair as the longest sequence
  // needs), handed out in order to the threads. The first error in item
  // order is reported, as a serial run would: once an item fails no later
  // item is handed out, and the items before it, all handed out already,
  // run to the end.
  const TensorView *q = inputs[launch.q];
  int64_t batches = launch.cuQ >= 0 ? inputs[launch.cuQ]->shape[0] - 1
                                    : q->shape[launch.batchDim];
  int64_t rowBlocks = 1;
  if (launch.rowBlock > 0) {
    int64_t longest = q->shape[launch.seqDim];
    if (launch.cuQ >= 0) {
      const TensorView *offsets = inputs[launch.cuQ];
      const auto *values = static_cast<const int32_t *>(offsets->data);
      longest = 0;
      for (int64_t index = 0; index + 1 < offsets->shape[0]; ++index)
        longest = std::max<int64_t>(
            longest, values[(index + 1) * offsets->strides[0]] -
                         values[index * offsets->strides[0]]);
    }
    rowBlocks = (longest + launch.rowBlock - 1) / launch.rowBlock;
  }
  int64_t items = batches * q->shape[launch.headDim] * rowBlocks;
  std::vector<PartialSums> partials;
  if (!preparePartialSums(expected, items, partials, error))
    return false;
  struct Failure {
    int64_t item = std::numeric_limits<int64_t>::max();
    std::vector<int64_t> status;
  };
  std::atomic<int64_t> nextItem{0};
  std::atomic<bool> failed{false};
  auto work = [&](Failure &failure) {
    std::vector<int64_t> status(kStatusWords, 0);
    TensorView statusView{status.data(), ElementType::I32, {6}, {1}};
    std::vector<int64_t> statusDescriptor = makeDescriptor(&statusView, 1);
    void *statusPointer = statusDescriptor.data();
    int64_t begin = 0, end = 0, blocks = rowBlocks;
    std::vector<void *> args;
    for (void *&pointer : descriptorPointers)
      args.push_back(&pointer);
    // This thread's descriptors of the partial copies, moved to each item's.
    std::vector<std::vector<int64_t>> copies;
    std::vector<void *> copyPointers;
    for (PartialSums &partial : partials) {
      TensorView copy{partial.copies.data(), ElementType::F32,
                      expected[partial.result],
                      contiguousStrides(expected[partial.result])};
      copies.push_back(makeDescriptor(&copy, copy.shape.size()));
    }
    for (std::vector<int64_t> &copy : copies)
      copyPointers.push_back(copy.data());
    for (size_t index = 0; index < partials.size(); ++index)
      args[inputs.size() + partials[index].result] = &copyPointers[index];
    args.push_back(&statusPointer);
    args.push_back(&begin);
    args.push_back(&end);
    args.push_back(&blocks);
    while (!failed.load(std::memory_order_relaxed)) {
      begin = nextItem.fetch_add(1);
      if (begin >= items)
        return;
      end = begin + 1;
      for (size_t index = 0; index < partials.size(); ++index) {
        auto at = reinterpret_cast<int64_t>(partials[index].copies.data() +
                                            begin * partials[index].elements);
        copies[index][0] = copies[index][1] = at;
      }
      (*function)(args.data());
      if (status[0] != 0) {
        failure = {begin, status};
        failed = true;
      }
    }
  };

  int64_t threadCount =
      std::min<int64_t>(threads.load(), std::max<int64_t>(items, 1));
  std::vector<Failure> failures(threadCount);
  std::vector<std::thread> helpers;
  for (int64_t index = 1; index < threadCount; ++index)
    helpers.emplace_back(work, std::ref(failures[index]));
  work(failures[0]);
  for (std::thread &helper : helpers)
    helper.join();

  auto first = std::min_element(
      failures.begin(), failures.end(),
      [](const Failure &a, const Failure &b) { return a.item < b.item; });
  if (!first->status.empty())
    return checkKernelStatus(kernelSignature, first->status.data(), error);
  for (const PartialSums &partial : partials)
    sumPartials(partial, items, *outputs[partial.result]);
  return true;
}

bool CpuKernel::preparePartialSums(
    const std::vector<std::vector<int64_t>> &shapes, int64_t items,
    std::vector<PartialSums> &partials, std::string &error) const {
  for (int result : launch.partialResults) {
    const std::string &name = kernelSignature.results[result].name;
    if (!checkScatterPositions(name, shapes[result],
                               "compile for cpu-reference instead", error))
      return false;
    int64_t elements = 1;
    for (int64_t size : shapes[result])
      elements *= size;
    if (!checkAllocatable("the per-item partial sums of '" + name + "'",
                          ElementType::F32, {items, elements}, error))
      return false;
    partials.push_back({result, elements,
                        std::vector<float>(size_t(items * elements), 0.0f)});
  }
  return true;
}

void CpuKernel::sumPartials(const PartialSums &partial, int64_t items,
                            TensorView &output) {
  std::vector<float> sums(partial.elements, 0.0f);
  for (int64_t item = 0; item < items; ++item) // in item order
    for (int64_t element = 0; element < partial.elements; ++element)
      sums[element] += partial.copies[item * partial.elements + element];
  for (int64_t element = 0; element < partial.elements; ++element) {
    int64_t offset = 0, rest = element;
    for (size_t dim = output.shape.size(); dim-- > 0;) {
      offset += (rest % output.shape[dim]) * output.strides[dim];
      rest /= output.shape[dim];
    }
    switch (output.type) {
    case ElementType::F32:
      static_cast<float *>(output.data)[offset] = sums[element];
      break;
    case ElementType::F16:
      static_cast<uint16_t *>(output.data)[offset] = floatToHalf(sums[element]);
      break;
    case ElementType::BF16:
      static_cast<uint16_t *>(output.data)[offset] =
          floatToBFloat16(sums[element]);
      break;
    default:
      llvm_unreachable("partial sums are float gradients");
    }
  }
}

bool CpuKernel::run(const std::vector<const TensorView *> &inputs,
                    std::vector<HostTensor> &outputs, std::string &error) {
  std::vector<std::vector<int64_t>> shapes;
  if (!outputShapes(inputs, shapes, error))
    return false;
  outputs.clear();
  for (size_t index = 0; index < shapes.size(); ++index) {
    const TensorSpec &spec = kernelSignature.results[index];
    if (!checkAllocatable(spec.name, spec.type, shapes[index], error))
      return false;
    outputs.emplace_back(spec.type, shapes[index]);
  }
  std::vector<TensorView> views;
  for (HostTensor &output : outputs)
    views.push_back(output.view());
  std::vector<TensorView *> outputViews;
  for (TensorView &view : views)
    outputViews.push_back(&view);
  return run(inputs, outputViews, error);
}
