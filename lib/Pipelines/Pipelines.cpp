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

void attnc::buildLowerToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(createCanonicalizerPass());
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

std::string attnc::GpuPipelineOptions::cacheKey() const {
  return llvm::formatv("warps={0} block-k={1} rows-per-warp={2} block-v={3} "
                       "segment-chunks={4} split-keys={5} mma={6}{7}{8}{9}",
                       warps, blockK, rowsPerWarp, blockV, segmentChunks,
                       splitKeysText(splitKeys), mma,
                       warpSpecialize ? " warp-specialize" : "",
                       packGqa ? " pack-gqa" : "",
                       fromTilePrograms ? " from-tile-programs" : "")
      .str();
}

bool attnc::GpuPipelineOptions::parse(llvm::StringRef text,
                                      std::string &error) {
  llvm::SmallVector<llvm::StringRef> items;
  llvm::SplitString(text, items, " ,\t\n");
  for (llvm::StringRef item : items) {
    auto [name, value] = item.split('=');
    if (name == "from-tile-programs" && !item.contains('=')) {
      fromTilePrograms = true;
      continue;
    }
    if (name == "warp-specialize" && !item.contains('=')) {
      warpSpecialize = true;
      continue;
    }
    if (name == "pack-gqa" && !item.contains('=')) {
      packGqa = true;
      continue;
    }
    if (name == "mma") {
      mma = value.str();
      continue;
    }
    if (name == "split-keys") {
      if (!parseSplitKeys(value, splitKeys)) {
        error = "GPU option '" + item.str() +
                "' needs a non-negative number of keys or auto";
        return false;
      }
      continue;
    }
    int64_t *field = llvm::StringSwitch<int64_t *>(name)
                         .Case("warps", &warps)
                         .Case("block-k", &blockK)
                         .Case("rows-per-warp", &rowsPerWarp)
                         .Case("block-v", &blockV)
                         .Case("segment-chunks", &segmentChunks)
                         .Default(nullptr);
    if (!field) {
      error = "unknown GPU option '" + item.str() +
              "'; options: warps=N, block-k=N, rows-per-warp=N, block-v=N, "
              "segment-chunks=N, split-keys=N|auto, mma=sync|wgmma, "
              "warp-specialize, pack-gqa, from-tile-programs";
      return false;
    }
    if (value.getAsInteger(10, *field) || *field < 0) {
      error =
          "GPU option '" + item.str() + "' needs a non-negative integer value";
      return false;
    }
  }
  return verify(error);
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
  if (fromTilePrograms && mma != "sync") {
    error = "from-tile-programs builds mma.sync kernels; drop mma=" + mma;
    return false;
  }
  if (fromTilePrograms && splitKeys) {
    error = "from-tile-programs does not split keys; drop split-keys=" +
            splitKeysText(splitKeys);
    return false;
  }
  if (fromTilePrograms && packGqa) {
    error = "from-tile-programs does not pack query heads; drop pack-gqa";
    return false;
  }
  if (fromTilePrograms && rowsPerWarp != 16) {
    error = "from-tile-programs builds 16 rows per warp; drop rows-per-warp=" +
            std::to_string(rowsPerWarp);
    return false;
  }
  return true;
}

void attnc::addGpuStrategies(OpPassManager &pm,
                             const GpuPipelineOptions &options) {
  int64_t maxSharedBytes = maxSharedBytesFor(options.chip);
  if (options.fromTilePrograms) {
    TileSoftmaxOptions program;
    program.blockQ = options.warps * 16;
    program.blockK = options.blockK;
    pm.addPass(createTileSoftmax(program));
    TileToNvgpuOptions kernel;
    kernel.maxSharedBytes = maxSharedBytes;
    pm.addPass(createTileToNvgpu(kernel));
  } else {
    GpuTileSoftmaxOptions softmax;
    softmax.warps = options.warps;
    softmax.blockK = options.blockK;
    softmax.rowsPerWarp = options.rowsPerWarp;
    softmax.mma = options.mma;
    softmax.warpSpecialize = options.warpSpecialize;
    softmax.splitKeys = splitKeysText(options.splitKeys);
    softmax.packGqa = options.packGqa;
    softmax.maxSharedBytes = maxSharedBytes;
    pm.addPass(createGpuTileSoftmax(softmax));
  }
  GpuChunkLinearOptions linear;
  linear.warps = options.warps;
  linear.blockV = options.blockV;
  linear.segmentChunks = options.segmentChunks;
  linear.maxSharedBytes = maxSharedBytes;
  pm.addPass(createGpuChunkLinear(linear));
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

void attnc::registerAttncPassesAndPipelines() {
  registerAttncPasses();
  registerAttncConversionPasses();
  PassPipelineRegistration<>(
      "attnc-reference-pipeline",
      "Lower attn kernels through the reference lowering to the LLVM dialect",
      [](OpPassManager &pm) {
        pm.addPass(createLowerToReference());
        buildLowerToLLVMPipeline(pm);
      });
  PassPipelineRegistration<>(
      "attnc-gpu-pipeline",
      "Lower attn kernels to a gpu.module in the NVVM dialect (sm_80)",
      [](OpPassManager &pm) { buildGpuLoweringPipeline(pm, {}); });
}
