//===- GpuCompiler.cpp - Compile attn kernels to PTX and cubin ------------===//

#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/Inputs.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>

using namespace mlir;
using namespace attnc;

bool attnc::isGpuTarget(llvm::StringRef target) {
  return target == "sm_80" || target == "sm_90a";
}

namespace {

/// Collects the diagnostics of a pass pipeline into one message.
class DiagnosticCollector {
public:
  explicit DiagnosticCollector(MLIRContext *context)
      : handler(context, [this](Diagnostic &diagnostic) {
          if (diagnostic.getSeverity() != DiagnosticSeverity::Error)
            return success();
          if (!message.empty())
            message += "; ";
          message += diagnostic.str();
          return success();
        }) {}
  std::string message;

private:
  ScopedDiagnosticHandler handler;
};

/// NVPTX demotes an internal zero-sized shared array to a one-byte static
/// variable; dynamic shared memory must be `.extern .shared ... []`.
void exportDynamicSharedMemory(ModuleOp module) {
  module.walk([](LLVM::GlobalOp global) {
    if (global.getAddrSpace() == 3 &&
        global.getSymName().starts_with("__dynamic_shmem__"))
      global.setLinkage(LLVM::Linkage::External);
  });
}

} // namespace

void attnc::readLaunchAttributes(Operation *func, GpuImage &image) {
  auto launch = func->getAttrOfType<attn::LaunchAttr>(attn::kLaunchAttrName);
  if (!launch)
    return;
  image.threads = launch.getThreads();
  image.sharedBytes = launch.getSharedBytes();
  image.headDim = launch.getHeadDim();
  image.sequenceResult = launch.getSequenceResult();
  for (auto [axis, entry] :
       llvm::enumerate(launch.getGrid().getAsRange<DenseI64ArrayAttr>())) {
    ArrayRef<int64_t> values = entry.asArrayRef();
    image.grid[axis] = {values[0], values[1], values[2], values[3]};
  }
  image.offsetParams.assign(launch.getOffsetParams().asArrayRef().begin(),
                            launch.getOffsetParams().asArrayRef().end());
  image.copiedParams.assign(launch.getCopiedParams().asArrayRef().begin(),
                            launch.getCopiedParams().asArrayRef().end());
  image.packsQueryHeads = static_cast<bool>(launch.getPacksQueryHeads());
  if (DenseI64ArrayAttr partial = launch.getPartialResults())
    for (int64_t argument : partial.asArrayRef()) // to result numbers
      image.partialResults.push_back(
          argument - static_cast<int64_t>(image.signature.params.size()));
  if (DenseI64ArrayAttr scratch = launch.getScratchWords())
    image.scratchWords.assign(scratch.asArrayRef().begin(),
                              scratch.asArrayRef().end());
  if (DenseI64ArrayAttr segments = launch.getSegments()) {
    ArrayRef<int64_t> values = segments.asArrayRef();
    image.segments = {values[0], values[1], values[2], values[3]};
    image.segmentStateBytes = launch.getSegmentStateBytes();
    image.splitsAtLaunch = static_cast<bool>(launch.getSplitsAtLaunch());
  }
}

bool attnc::compileToPtx(ModuleOp module, StringRef name,
                         const GpuPipelineOptions &options, GpuImage &image,
                         std::string &error, std::string *loweredIR) {
  if (!isGpuTarget(options.chip)) {
    error = "unknown GPU target '" + options.chip + "' (expected sm_80 or sm_90a)";
    return false;
  }
  if (options.mma == "wgmma" && options.chip != "sm_90a") {
    error = "mma=wgmma needs the sm_90a target (wgmma is a Hopper "
            "instruction), not " +
            options.chip;
    return false;
  }
  MLIRContext *context = module.getContext();
  DialectRegistry registry;
  registerGpuCompilation(registry);
  context->appendDialectRegistry(registry);
  context->loadAllAvailableDialects();
  static bool targetsInitialized = [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
    return true;
  }();
  (void)targetsInitialized;

  OwningOpRef<ModuleOp> clone = module.clone();
  attn::KernelOp kernel = keepOnlyKernel(*clone, name, error);
  if (!kernel)
    return false;
  image = GpuImage();
  image.target = options.chip;
  image.format = "ptx";
  image.signature = getKernelSignature(kernel);
  image.roles = getParamRoles(kernel);

  DiagnosticCollector diagnostics(context);
  auto run = [&](function_ref<void(PassManager &)> build) {
    PassManager pm(context);
    build(pm);
    if (succeeded(pm.run(*clone)))
      return true;
    error = diagnostics.message.empty() ? "GPU compilation failed"
                                        : diagnostics.message;
    return false;
  };

  if (!run([&](PassManager &pm) {
        addGpuStrategies(pm, options);
      }))
    return false;
  gpu::GPUFuncOp func;
  clone->walk([&](gpu::GPUFuncOp candidate) { func = candidate; });
  if (!func) {
    error = "the GPU strategy produced no kernel";
    return false;
  }
  readLaunchAttributes(func, image);

  if (!run([&](PassManager &pm) {
        buildGpuModuleLoweringPipeline(pm, options.chip);
      }))
    return false;
  exportDynamicSharedMemory(*clone);
  if (loweredIR) {
    llvm::raw_string_ostream os(*loweredIR);
    clone->print(os);
  }

  if (!run([&](PassManager &pm) {
        GpuModuleToBinaryPassOptions binaryOptions;
        binaryOptions.compilationTarget = "isa";
        // libdevice (math functions of score expressions, exp2, log).
        if (std::optional<std::string> root = findCudaRoot())
          binaryOptions.toolkitPath = *root;
        pm.addPass(createGpuModuleToBinaryPass(binaryOptions));
      }))
    return false;
  for (auto binary : clone->getOps<gpu::BinaryOp>())
    for (Attribute object : binary.getObjects())
      image.bytes = cast<gpu::ObjectAttr>(object).getObject().getValue().str();
  if (image.bytes.empty()) {
    error = "the NVPTX backend produced no PTX";
    return false;
  }
  size_t unresolved = image.bytes.find(".extern .func");
  if (unresolved != std::string::npos) {
    size_t end = image.bytes.find_first_of("(;\n", unresolved);
    error = "the PTX calls a libdevice function that was not linked (" +
            image.bytes.substr(unresolved, end - unresolved) +
            "): install the CUDA toolkit or set CUDA_HOME to it";
    return false;
  }
  return true;
}

std::optional<std::string> attnc::findCudaRoot() {
  SmallVector<std::string> candidates;
  for (const char *variable : {"CUDA_HOME", "CUDA_ROOT", "CUDA_PATH"})
    if (const char *value = std::getenv(variable))
      candidates.push_back(value);
  candidates.push_back("/usr/local/cuda");
  for (const std::string &root : candidates)
    if (llvm::sys::fs::exists(root + "/nvvm/libdevice/libdevice.10.bc"))
      return root;
  return std::nullopt;
}

std::optional<std::string> attnc::findPtxas() {
  if (const char *explicitPath = std::getenv("ATTNC_PTXAS"))
    return llvm::sys::fs::can_execute(explicitPath)
               ? std::optional<std::string>(explicitPath)
               : std::nullopt;
  if (std::optional<std::string> root = findCudaRoot())
    if (llvm::sys::fs::can_execute(*root + "/bin/ptxas"))
      return *root + "/bin/ptxas";
  if (llvm::ErrorOr<std::string> onPath = llvm::sys::findProgramByName("ptxas"))
    return *onPath;
  return std::nullopt;
}

bool attnc::assembleCubin(const GpuImage &ptx, GpuImage &cubin,
                          std::string &ptxasLog, std::string &error) {
  std::optional<std::string> ptxas = findPtxas();
  if (!ptxas) {
    error = "ptxas was not found (set CUDA_HOME or ATTNC_PTXAS, or emit PTX, "
            "which the driver compiles at load time)";
    return false;
  }
  SmallString<128> input, output, log;
  int fd = -1;
  if (llvm::sys::fs::createTemporaryFile("attnc", "ptx", fd, input) ||
      llvm::sys::fs::createTemporaryFile("attnc", "cubin", output) ||
      llvm::sys::fs::createTemporaryFile("attnc", "log", log)) {
    error = "cannot create temporary files for ptxas";
    return false;
  }
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << ptx.bytes;
  }
  std::string arch = "-arch=" + ptx.target;
  SmallVector<StringRef> args = {*ptxas, arch, "-v", "-o", output, input};
  std::optional<StringRef> redirects[] = {std::nullopt, log, log};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*ptxas, args, std::nullopt, redirects, 0,
                                     0, &message);
  auto readFile = [](StringRef path) -> std::string {
    auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    return buffer ? (*buffer)->getBuffer().str() : std::string();
  };
  ptxasLog = readFile(log);
  std::string bytes = readFile(output);
  for (StringRef path : {StringRef(input), StringRef(output), StringRef(log)})
    llvm::sys::fs::remove(path);
  if (rc != 0 || bytes.empty()) {
    error = "ptxas failed" + (message.empty() ? "" : ": " + message) + "\n" +
            ptxasLog;
    return false;
  }
  cubin = ptx;
  cubin.format = "cubin";
  cubin.bytes = std::move(bytes);
  return true;
}
