//===- Pipelines.cpp - attnc pass pipelines -------------------------------===//

#include "attnc/Pipelines/Pipelines.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"

#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace attnc;

void attnc::buildLowerToLLVMPipeline(OpPassManager &pm) {
  // Bottom-up: on the emulated GPU kernels (thousands of calls in loops
  // carrying tens of values) the canonicalizer's default top-down order took
  // ten times as long for the same result.
  pm.addPass(createCanonicalizerPass(
      GreedyRewriteConfig().setUseTopDownTraversal(false)));
  pm.addPass(createCSEPass());
  pm.addPass(createSCFToControlFlowPass());
  // bf16/f16 conversions become integer ops: no soft-float builtin calls.
  pm.addPass(createExpandFloatConversions());
  pm.addPass(arith::createArithExpandOpsPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

int64_t attnc::maxSharedBytesFor(llvm::StringRef chip) {
  return chip.starts_with("sm_90") ? 227 * 1024 : 163 * 1024;
}

std::string attnc::ptxFeaturesFor(llvm::StringRef chip) {
  // PTX 8.0 (CUDA 12.0) is the first with sm_90a; sm_80 code uses it too so
  // one driver floor covers both.
  (void)chip;
  return "+ptx80";
}

bool attnc::GpuPipelineOptions::verify(std::string &error) const {
  if (mma != "sync" && mma != "wgmma") {
    error = "mma must be sync or wgmma, got '" + mma + "'";
    return false;
  }
  if (warpSpecialize && mma != "wgmma") {
    error = "warp-specialize builds wgmma kernels; add mma=wgmma";
    return false;
  }
  if (fromTileProgram && mma != "sync") {
    error = "from-tile-program builds mma.sync kernels; drop mma=" + mma;
    return false;
  }
  if (fromTileProgram && splitKeys) {
    error = "from-tile-program does not split keys; drop split-keys=" +
            splitKeysText(splitKeys);
    return false;
  }
  if (fromTileProgram && packGqa) {
    error = "from-tile-program does not pack query heads; drop pack-gqa";
    return false;
  }
  if (fromTileProgram && rowsPerWarp != 16) {
    error = "from-tile-program builds 16 rows per warp; drop rows-per-warp=" +
            std::to_string(rowsPerWarp);
    return false;
  }
  return true;
}

void attnc::addTileStrategies(OpPassManager &pm, const CpuOptions &options) {
  pm.addPass(createTileSoftmax(TileSoftmaxOptions{options.blockQ, options.blockK}));
  pm.addPass(createTileLinear());
}

void attnc::addCpuStrategies(OpPassManager &pm, const CpuOptions &options) {
  if (options.path == CpuPath::Reference) {
    pm.addPass(createLowerToReference());
    return;
  }
  addTileStrategies(pm, options);
  pm.addPass(createTileToLoops());
}

void attnc::addEmulatorStrategies(OpPassManager &pm,
                                  const GpuPipelineOptions &options) {
  addGpuStrategies(pm, options);
  pm.addPass(createNVGPUToEmulator());
}

void attnc::addGpuStrategies(OpPassManager &pm,
                             const GpuPipelineOptions &options) {
  int64_t maxSharedBytes = maxSharedBytesFor(options.chip);
  // Backward kernels always come from their tile programs; forward ones
  // with from-tile-program.
  auto fromTilePrograms = [&] {
    TileSoftmaxOptions program;
    program.blockQ = options.warps * 16;
    program.blockK = options.blockK;
    // Backward tiles and key sweeps small enough that dK and dV (head
    // dim / 2 registers each per lane) leave room for the score tiles.
    program.backwardBlock = kGpuBackwardBlock;
    program.backwardKeySumColumns = kGpuBackwardKeySumColumns;
    pm.addPass(createTileSoftmax(program));
    pm.addPass(createTileLinear());
    TileToNvgpuOptions kernel;
    kernel.maxSharedBytes = maxSharedBytes;
    pm.addPass(createTileToNvgpu(kernel));
  };
  if (!options.fromTileProgram) {
    GpuTileSoftmaxOptions softmax;
    softmax.warps = options.warps;
    softmax.blockK = options.blockK;
    softmax.rowsPerWarp = options.rowsPerWarp;
    softmax.mma = options.mma;
    softmax.warpSpecialize = options.warpSpecialize;
    softmax.splitKeys = options.splitKeys;
    softmax.packGqa = options.packGqa;
    softmax.maxSharedBytes = maxSharedBytes;
    pm.addPass(createGpuTileSoftmax(softmax));
    GpuChunkLinearOptions linear;
    linear.warps = options.warps;
    linear.blockV = options.blockV;
    linear.segmentChunks = options.segmentChunks;
    linear.maxSharedBytes = maxSharedBytes;
    pm.addPass(createGpuChunkLinear(linear));
  }
  fromTilePrograms();
}

void attnc::buildGpuLoweringPipeline(OpPassManager &pm,
                                     const GpuPipelineOptions &options) {
  addGpuStrategies(pm, options);
  buildGpuModuleLoweringPipeline(pm, options.chip);
}

void attnc::buildGpuModuleLoweringPipeline(OpPassManager &pm,
                                           llvm::StringRef chip) {
  GpuNVVMAttachTargetOptions target;
  target.chip = chip.str();
  target.features = ptxFeaturesFor(chip);
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &device = pm.nest<gpu::GPUModuleOp>();
  device.addPass(createCanonicalizerPass());
  device.addPass(createCSEPass());
  device.addPass(createConvertNVGPUToNVVMPass());
  device.addPass(memref::createExpandStridedMetadataPass());
  device.addPass(createLowerAffinePass());
  device.addPass(createSCFToControlFlowPass());
  device.addPass(createConvertGpuOpsToNVVMOps());
  // NVVM ops without an LLVM intrinsic (mbarrier.try_wait.parity's loop)
  // become inline PTX.
  device.addPass(createConvertNVVMToLLVMPass());
  device.addPass(createConvertVectorToLLVMPass());
  device.addPass(createReconcileUnrealizedCastsPass());
}

void attnc::registerGpuCompilation(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, cf::ControlFlowDialect,
                  gpu::GPUDialect, LLVM::LLVMDialect, math::MathDialect,
                  memref::MemRefDialect, NVVM::NVVMDialect,
                  nvgpu::NVGPUDialect, scf::SCFDialect, ub::UBDialect,
                  vector::VectorDialect>();
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  NVVM::registerConvertGpuToNVVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

/// Registers pipeline `name`, whose options text (between its braces) is
/// read by parseCompileOptions for `targets`; GPU pipelines also take
/// chip=sm_80|sm_90a.
static void registerPipeline(
    llvm::StringRef name, llvm::StringRef description, unsigned targets,
    std::function<void(OpPassManager &, const CompileOptions &)> build) {
  registerPassPipeline(
      name, description,
      [=](OpPassManager &pm, llvm::StringRef text,
          function_ref<LogicalResult(const Twine &)> errorHandler) {
        CompileOptions options;
        llvm::SmallVector<llvm::StringRef> items;
        llvm::SplitString(text, items, " ,\t\n");
        std::string rest;
        for (llvm::StringRef item : items) {
          if ((targets & kGpuOption) && item.consume_front("chip="))
            options.gpu.chip = item.str();
          else
            rest += item.str() + " ";
        }
        std::string error;
        bool parsed = targets & kGpuOption
                          ? options.gpu.parse(rest, error)
                          : options.cpu.parse(rest, error);
        if (!parsed)
          return errorHandler(error);
        build(pm, options);
        return success();
      },
      [](function_ref<void(const detail::PassOptions &)>) {});
}

void attnc::registerAttncPassesAndPipelines() {
  registerAttncPasses();
  registerAttncConversionPasses();
  registerPipeline("attnc-cpu-strategies",
                   "attn kernels to CPU loops through their tile programs "
                   "(options: block-q=N block-k=N)",
                   kCpuOption, [](OpPassManager &pm, const CompileOptions &o) {
                     addCpuStrategies(pm, o.cpu);
                   });
  registerPipeline("attnc-cpu-pipeline",
                   "attn kernels to the LLVM dialect through their tile "
                   "programs, as the cpu target compiles them",
                   kCpuOption, [](OpPassManager &pm, const CompileOptions &o) {
                     addCpuStrategies(pm, o.cpu);
                     buildLowerToLLVMPipeline(pm);
                   });
  registerPipeline("attnc-reference-pipeline",
                   "attn kernels to the LLVM dialect through the reference "
                   "lowering (the cpu-reference target)",
                   kCpuOption, [](OpPassManager &pm, const CompileOptions &) {
                     pm.addPass(createLowerToReference());
                     buildLowerToLLVMPipeline(pm);
                   });
  registerPipeline("attnc-gpu-strategies",
                   "attn kernels to GPU kernels in a gpu.module (options: "
                   "chip=sm_80|sm_90a and the GPU options)",
                   kGpuOption, [](OpPassManager &pm, const CompileOptions &o) {
                     addGpuStrategies(pm, o.gpu);
                   });
  registerPipeline("attnc-gpu-pipeline",
                   "attn kernels to a gpu.module in the NVVM dialect, ready "
                   "for gpu-module-to-binary",
                   kGpuOption, [](OpPassManager &pm, const CompileOptions &o) {
                     buildGpuLoweringPipeline(pm, o.gpu);
                   });
  registerPipeline("attnc-emulator-strategies",
                   "attn kernels to host functions of the CPU warp emulator",
                   kGpuOption, [](OpPassManager &pm, const CompileOptions &o) {
                     addEmulatorStrategies(pm, o.gpu);
                   });
}
