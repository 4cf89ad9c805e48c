//===- WarpBuilder.cpp - Kernel functions and launch facts of GPU kernels -===//

#include "attnc/Target/NVVM/WarpBuilder.h"

#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

MemRefType attnc::lowering::workspaceType(MLIRContext *context) {
  return MemRefType::get({ShapedType::kDynamic}, IntegerType::get(context, 32));
}

Operation *attnc::lowering::createKernelFunction(ModuleOp module,
                                                 StringRef name, Location loc,
                                                 ArrayRef<Type> argTypes,
                                                 const WarpConfig &config,
                                                 gpu::GPUModuleOp &gpuModule) {
  OpBuilder builder(module.getContext());
  if (!gpuModule) {
    gpuModule = *module.getOps<gpu::GPUModuleOp>().begin();
  }
  if (!gpuModule) {
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(module.getContext()));
    builder.setInsertionPointToEnd(module.getBody());
    gpuModule = gpu::GPUModuleOp::create(builder, loc, "attnc_kernels");
  }
  builder.setInsertionPointToEnd(gpuModule.getBody());
  auto func = gpu::GPUFuncOp::create(builder, loc, name,
                                     builder.getFunctionType(argTypes, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), builder.getUnitAttr());
  func.setKnownBlockSizeAttr(builder.getDenseI32ArrayAttr(
      {static_cast<int32_t>(config.threads()), 1, 1}));
  // Without a floor on resident CTAs ptxas may cap registers at 128 to fit
  // four CTAs per SM and spill the accumulators; one CTA per SM is enough
  // to keep the tensor cores busy with 4+ warps.
  func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                builder.getI32IntegerAttr(1));
  return func;
}

/// The end of the furthest static shared tile (memref.view of the dynamic
/// shared memory) in `func`, in bytes.
static int64_t sharedExtent(Operation *func) {
  int64_t extent = 0;
  func->walk([&](memref::ViewOp view) {
    bool shared =
        view.getSource().getDefiningOp<gpu::DynamicSharedMemoryOp>() != nullptr;
    std::optional<int64_t> offset = getConstantIntValue(view.getByteShift());
    MemRefType type = view.getType();
    if (!shared || !offset || !type.hasStaticShape())
      return;
    int64_t bytes = type.getNumElements() * type.getElementTypeBitWidth() / 8;
    extent = std::max(extent, *offset + bytes);
  });
  return extent;
}

LogicalResult attnc::lowering::lowerToKernelFunction(
    KernelOp kernel, const WarpConfig &config, gpu::GPUModuleOp &gpuModule,
    const LaunchFacts &facts,
    llvm::function_ref<void(Operation *, LoweringBuilder &, ValueRange, Value)>
        buildBody) {
  SmallVector<Type> argTypes = getCallingConventionTypes(kernel);
  bool segmented = facts.segments[2] != 0;
  if (segmented)
    argTypes.push_back(workspaceType(kernel.getContext()));
  Operation *func = createKernelFunction(kernel->getParentOfType<ModuleOp>(),
                                         kernel.getSymName(), kernel.getLoc(),
                                         argTypes, config, gpuModule);
  setLaunchAttributes(func, facts);
  Block *entry = &func->getRegion(0).front();
  Value workspace =
      segmented ? entry->getArgument(argTypes.size() - 1) : Value();
  lowerKernelBody(
      kernel, entry, /*clearStatus=*/false,
      [&](Operation *familyOp, LoweringBuilder &rb, ValueRange results) {
        buildBody(familyOp, rb, results, workspace);
      });
  OpBuilder builder = OpBuilder::atBlockEnd(entry);
  gpu::ReturnOp::create(builder, kernel.getLoc());
  // A layout that outgrew the declared shared memory would overwrite
  // whatever follows it, on the GPU and in the emulator alike.
  int64_t extent = sharedExtent(func);
  if (extent > facts.sharedBytes) {
    kernel.emitError() << "internal error: kernel '" << kernel.getSymName()
                       << "' uses " << extent
                       << " bytes of shared memory but declares "
                       << facts.sharedBytes;
    return failure();
  }
  kernel.erase();
  return success();
}

void attnc::lowering::setLaunchAttributes(Operation *func,
                                          const LaunchFacts &facts) {
  Builder builder(func->getContext());
  SmallVector<Attribute> grid;
  for (const std::array<int64_t, 4> &term : facts.grid)
    grid.push_back(builder.getDenseI64ArrayAttr(term));
  func->setAttr("attnc.grid", builder.getArrayAttr(grid));
  func->setAttr("attnc.threads", builder.getI64IntegerAttr(facts.threads));
  func->setAttr("attnc.shared_bytes",
                builder.getI64IntegerAttr(facts.sharedBytes));
  func->setAttr("attnc.offset_params",
                builder.getDenseI64ArrayAttr(facts.offsetParams));
  func->setAttr("attnc.head_dim", builder.getI64IntegerAttr(facts.headDim));
  func->setAttr("attnc.sequence_result",
                builder.getI64IntegerAttr(facts.sequenceResult));
  func->setAttr("attnc.copied_params",
                builder.getDenseI64ArrayAttr(facts.copiedParams));
  if (facts.packsQueryHeads)
    func->setAttr("attnc.packs_query_heads", builder.getUnitAttr());
  if (facts.segments[2] != 0) {
    func->setAttr("attnc.segments",
                  builder.getDenseI64ArrayAttr(facts.segments));
    func->setAttr("attnc.segment_state_bytes",
                  builder.getI64IntegerAttr(facts.segmentStateBytes));
    if (facts.splitsAtLaunch)
      func->setAttr("attnc.splits_at_launch", builder.getUnitAttr());
  }
}

std::string attnc::lowering::checkTensorCoreOperands(Operation *familyOp,
                                                     int64_t maxHeadDim,
                                                     WarpConfig &config,
                                                     int64_t &dimK,
                                                     int64_t &dimV) {
  auto q = cast<AttnTensorType>(familyOp->getOperand(0).getType());
  auto k = cast<AttnTensorType>(familyOp->getOperand(1).getType());
  auto v = cast<AttnTensorType>(familyOp->getOperand(2).getType());
  // The attn verifiers allow f32, f16 and bf16 q only.
  Type element = q.getElementType();
  if (k.getElementType() != element || v.getElementType() != element)
    return "q, k and v must have the same element type on the GPU";
  config.splitF32 = element.isF32();
  config.element =
      config.splitF32 ? BFloat16Type::get(element.getContext()) : element;
  int64_t feature = q.getRank() - 1;
  std::optional<int64_t> fixedK = q.getFixedSize(feature);
  std::optional<int64_t> fixedV = v.getFixedSize(feature);
  if (!fixedK || !fixedV)
    return "the head dims of q and v must be fixed numbers on the GPU "
           "(registers are allocated per head dim)";
  if (*fixedK % 16 || *fixedV % 16 || *fixedK > maxHeadDim ||
      *fixedV > maxHeadDim)
    return llvm::formatv("head dims must be multiples of 16 up to {0} on the "
                         "GPU (got {1} and {2})",
                         maxHeadDim, *fixedK, *fixedV)
        .str();
  dimK = *fixedK;
  dimV = *fixedV;
  return "";
}
