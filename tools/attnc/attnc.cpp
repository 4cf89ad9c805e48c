//===- attnc.cpp - The attnc driver ---------------------------------------===//
//
// attnc check FILE                      parse and verify a spec
// attnc emit FILE --stage=S             print the IR at stage attn|tile|reference|llvm
// attnc run FILE --backend=cpu|cuda|gpu-emulator ...
//                                       compile and run on .npy or random inputs
// attnc compile FILE --target=sm_80 --emit=ptx|cubin|mlir|image -o OUT
//
// The driver only parses options and calls the libraries.
//
//===----------------------------------------------------------------------===//

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Runtime/CudaRuntime.h"
#include "attnc/Execution/Inputs.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Runtime/Npy.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <chrono>
#include <cmath>

using namespace llvm;
using namespace attnc;

static cl::SubCommand checkCommand("check", "Parse and verify a spec");
static cl::SubCommand emitCommand("emit", "Print the IR of a spec at a stage");
static cl::SubCommand runCommand("run", "Compile a spec and run it");
static cl::SubCommand compileCommand("compile",
                                     "Compile a spec for an NVIDIA GPU");

static cl::OptionCategory category("attnc options");

static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<spec.attn>"),
                                      cl::Required, cl::sub(checkCommand),
                                      cl::sub(emitCommand),
                                      cl::sub(runCommand),
                                      cl::sub(compileCommand), cl::cat(category));
static cl::opt<std::string>
    kernelName("kernel", cl::desc("Kernel to use when the file has several "
                                  "(default: the first)"),
               cl::sub(emitCommand), cl::sub(runCommand),
               cl::sub(compileCommand), cl::cat(category));

enum class Stage { Attn, Tile, Reference, LLVM };
static cl::opt<Stage> stage(
    "stage", cl::desc("Stage to print"), cl::init(Stage::Attn),
    cl::values(clEnumValN(Stage::Attn, "attn", "the attn dialect"),
               clEnumValN(Stage::Tile, "tile",
                          "after the CPU tiling strategies: the attn_tile "
                          "programs of every family"),
               clEnumValN(Stage::Reference, "reference",
                          "after the reference lowering (scf/memref)"),
               clEnumValN(Stage::LLVM, "llvm", "the LLVM dialect")),
    cl::sub(emitCommand), cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("Output file"),
                                       cl::init("-"), cl::sub(emitCommand),
                                       cl::sub(compileCommand),
                                       cl::cat(category));

static cl::opt<std::string>
    gpuTarget("target", cl::desc("GPU to compile for: sm_80 (Ampere and "
                                 "later), sm_90a (Hopper), or cuda (the GPU "
                                 "present, the default)"),
              cl::init("cuda"), cl::sub(compileCommand), cl::cat(category));
enum class Emit { PTX, Cubin, MLIR, Image };
static cl::opt<Emit> emitKind(
    "emit", cl::desc("What to write"), cl::init(Emit::PTX),
    cl::values(clEnumValN(Emit::PTX, "ptx", "PTX assembly"),
               clEnumValN(Emit::Cubin, "cubin", "a cubin, through ptxas"),
               clEnumValN(Emit::MLIR, "mlir",
                          "the gpu.module in the NVVM dialect"),
               clEnumValN(Emit::Image, "image",
                          "PTX with its launch facts, for the attnc runtime")),
    cl::sub(compileCommand), cl::cat(category));
static cl::opt<bool> ptxasVerbose(
    "ptxas-info", cl::desc("Print ptxas's register, spill and shared memory "
                           "report (assembles the PTX)"),
    cl::sub(compileCommand), cl::cat(category));
static cl::opt<int64_t> gpuWarps("warps", cl::desc("Warps per CTA"),
                                 cl::init(4), cl::sub(compileCommand),
                                 cl::sub(runCommand), cl::cat(category));
static cl::opt<int64_t> gpuRowsPerWarp(
    "rows-per-warp",
    cl::desc("Query rows per warp of softmax kernels (16 or 32)"), cl::init(16),
    cl::sub(compileCommand), cl::sub(runCommand), cl::cat(category));
static cl::opt<std::string> gpuMma(
    "mma",
    cl::desc("Tensor-core instruction of softmax kernels: sync (mma.sync, "
             "the default) or wgmma (sm_90a)"),
    cl::init("sync"), cl::sub(compileCommand), cl::sub(runCommand),
    cl::cat(category));
static cl::opt<bool> gpuWarpSpecialize(
    "warp-specialize",
    cl::desc("With --mma=wgmma: a producer warpgroup copies K and V and hands "
             "stages to the computing warpgroups through mbarriers"),
    cl::sub(compileCommand), cl::sub(runCommand), cl::cat(category));
static cl::opt<bool> gpuPackGqa(
    "pack-gqa",
    cl::desc("Softmax kernels pack the query heads of a GQA group into one "
             "CTA's rows, sharing the group's K and V tiles (for decoding "
             "with grouped-query attention)"),
    cl::sub(compileCommand), cl::sub(runCommand), cl::cat(category));
static cl::opt<bool> gpuFromTilePrograms(
    "from-tile-program",
    cl::desc("Build softmax kernels from their tile programs "
             "(attn-tile-softmax, attn-tile-to-nvgpu; 16 rows per warp, not "
             "top-k) instead of attn-gpu-tile-softmax"),
    cl::sub(compileCommand), cl::sub(runCommand), cl::cat(category));
static cl::opt<int64_t> gpuBlockK("block-k",
                                  cl::desc("Keys per shared-memory tile"),
                                  cl::init(64), cl::sub(compileCommand),
                                  cl::cat(category));
static cl::opt<int64_t> gpuBlockV(
    "block-v",
    cl::desc("Value columns per CTA of linear kernels (0: min(Dv, 64))"),
    cl::init(0), cl::sub(compileCommand), cl::sub(runCommand),
    cl::cat(category));

static cl::opt<int64_t> gpuSegmentChunks(
    "segment-chunks",
    cl::desc("Chunks per segment of causal linear kernels, whose segments "
             "run on different CTAs (0: one CTA per sequence)"),
    cl::init(16), cl::sub(compileCommand), cl::sub(runCommand),
    cl::cat(category));

static cl::opt<std::string> gpuSplitKeys(
    "split-keys",
    cl::desc("Keys per split of softmax kernels: CTAs of one query block walk "
             "different runs of keys and the last combines them, for few "
             "queries and long key sequences (0: no split; auto: each launch "
             "chooses the number of splits for the GPU)"),
    cl::value_desc("N|auto"), cl::init("0"), cl::sub(compileCommand),
    cl::sub(runCommand), cl::cat(category));

enum class Backend { CPU, CUDA, Emulator };
static cl::opt<Backend> backend(
    "backend", cl::desc("Where to run"), cl::init(Backend::CPU),
    cl::values(clEnumValN(Backend::CPU, "cpu", "JIT-compiled code on this machine"),
               clEnumValN(Backend::CUDA, "cuda",
                          "the GPU present (sm_90a code on Hopper, sm_80 "
                          "otherwise)"),
               clEnumValN(Backend::Emulator, "gpu-emulator",
                          "the GPU kernel on the CPU warp "
                          "emulator (slow; checks GPU logic without a GPU)")),
    cl::sub(runCommand), cl::cat(category));
static cl::opt<CpuPath>
    cpuPath("path", cl::desc("CPU code path"), cl::init(CpuPath::Tiled),
            cl::values(clEnumValN(CpuPath::Reference, "reference",
                                  "the direct definition (the oracle)"),
                       clEnumValN(CpuPath::Tiled, "tiled",
                                  "FlashAttention-2 tiling and chunkwise "
                                  "linear attention (the default)")),
            cl::sub(runCommand), cl::cat(category));
static cl::opt<int64_t>
    blockQ("block-q",
           cl::desc("Query rows per tile of dense, chunk-local and "
                    "top-k softmax (--path=tiled; other "
                    "block-sparse kernels tile by their "
                    "blocks)"),
           cl::init(64), cl::sub(runCommand), cl::cat(category));
static cl::opt<int64_t>
    blockK("block-k",
           cl::desc("Keys per tile of dense and chunk-local softmax "
                    "(--path=tiled)"),
           cl::init(64), cl::sub(runCommand), cl::cat(category));
static cl::opt<int64_t> threads(
    "threads",
    cl::desc("Host threads sharing the (batch, head) grid on the CPU backend "
             "(default: $ATTNC_NUM_THREADS, else one per hardware thread)"),
    cl::init(0), cl::sub(runCommand), cl::cat(category));
static cl::list<std::string>
    inputs("input", cl::desc("NAME=FILE.npy: data for a parameter (others "
                             "get seeded random data; optional ones are "
                             "omitted)"),
           cl::sub(runCommand), cl::cat(category));
static cl::list<std::string>
    dims("dim", cl::desc("SYMBOL=SIZE: size of a symbolic dimension"),
         cl::sub(runCommand), cl::cat(category));
static cl::opt<uint64_t> seed("seed", cl::desc("Seed of the random inputs"),
                              cl::init(0), cl::sub(runCommand),
                              cl::cat(category));
static cl::opt<std::string>
    outputDir("output-dir", cl::desc("Write each output to DIR/NAME.npy "
                                     "(bf16 outputs as float32)"),
              cl::sub(runCommand), cl::cat(category));

/// One-line error and a non-zero exit.
static int fail(const Twine &message) {
  errs() << "attnc: error: " << message << "\n";
  return 1;
}

static mlir::OwningOpRef<mlir::ModuleOp>
loadSpec(SourceMgr &sourceMgr, mlir::MLIRContext &context,
         DiagnosticEngine &diags) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> file =
      MemoryBuffer::getFileOrSTDIN(inputFile);
  if (std::error_code ec = file.getError()) {
    fail("cannot read '" + inputFile + "': " + ec.message());
    return nullptr;
  }
  unsigned buffer = sourceMgr.AddNewSourceBuffer(std::move(*file), SMLoc());
  return compileSpecToMLIR(buffer, context, diags);
}

static int emit(mlir::ModuleOp module) {
  if (stage == Stage::Tile) {
    mlir::PassManager pm(module.getContext());
    pm.addPass(createTileSoftmax());
    pm.addPass(createTileLinear());
    if (failed(pm.run(module)))
      return fail("tiling failed");
  } else if (stage != Stage::Attn) {
    mlir::PassManager pm(module.getContext());
    pm.addPass(createLowerToReference());
    if (stage == Stage::LLVM)
      buildLowerToLLVMPipeline(pm);
    if (failed(pm.run(module)))
      return fail("lowering failed");
  }
  std::error_code ec;
  ToolOutputFile output(outputFile, ec, sys::fs::OF_None);
  if (ec)
    return fail("cannot write '" + outputFile + "': " + ec.message());
  module.print(output.os());
  output.keep();
  return 0;
}

/// The GPU tuning flags that compile and run share.
static bool setGpuTuning(GpuPipelineOptions &options, std::string &error) {
  options.warps = gpuWarps;
  options.rowsPerWarp = gpuRowsPerWarp;
  options.blockV = gpuBlockV;
  options.segmentChunks = gpuSegmentChunks;
  if (!parseSplitKeys(gpuSplitKeys, options.splitKeys)) {
    error = "--split-keys takes a non-negative number of keys or auto, not '" +
            gpuSplitKeys + "'";
    return false;
  }
  options.fromTilePrograms = gpuFromTilePrograms;
  options.mma = gpuMma;
  options.warpSpecialize = gpuWarpSpecialize;
  options.packGqa = gpuPackGqa;
  return options.verify(error);
}

static int compile(mlir::ModuleOp module) {
  GpuPipelineOptions options;
  options.chip = gpuTarget;
  if (gpuTarget == "cuda") {
    std::string why;
    int capability = cudaComputeCapability(why);
    if (capability)
      options.chip = gpuTargetFor(capability, why);
    if (!capability || options.chip.empty())
      return fail("--target=cuda compiles for the GPU present, but " + why +
                  "; pass --target=sm_80 or --target=sm_90a");
    errs() << "attnc: target " << options.chip << " (compute capability "
           << capability / 10 << "." << capability % 10 << ")\n";
  }
  options.blockK = gpuBlockK;
  std::string error, lowered;
  if (!setGpuTuning(options, error))
    return fail(error);
  GpuImage image;
  if (!compileToPtx(module, kernelName, options, image, error,
                    emitKind == Emit::MLIR ? &lowered : nullptr))
    return fail(error);
  std::string bytes = image.bytes;
  if (emitKind == Emit::MLIR)
    bytes = lowered;
  else if (emitKind == Emit::Image)
    bytes = serialize(image);
  if (emitKind == Emit::Cubin || ptxasVerbose) {
    GpuImage cubin;
    std::string log;
    if (!assembleCubin(image, cubin, log, error))
      return fail(error);
    if (emitKind == Emit::Cubin)
      bytes = cubin.bytes;
    if (ptxasVerbose)
      errs() << log;
  }
  std::error_code ec;
  ToolOutputFile output(outputFile, ec, sys::fs::OF_None);
  if (ec)
    return fail("cannot write '" + outputFile + "': " + ec.message());
  output.os() << bytes;
  output.keep();
  return 0;
}

static bool parseBinding(StringRef text, StringRef what, StringRef &name,
                         StringRef &value) {
  std::tie(name, value) = text.split('=');
  if (name.empty() || value.empty()) {
    fail("--" + what + " expects NAME=VALUE, got '" + text + "'");
    return false;
  }
  return true;
}

static int run(mlir::ModuleOp module) {
  std::string error;
  if (blockQ <= 0 || blockK <= 0)
    return fail("--block-q and --block-k must be positive");
  if (threads < 0)
    return fail("--threads must be positive (or 0 for the default)");
  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<CpuKernel> kernel;
  std::unique_ptr<EmulatedGpuKernel> emulated;
  std::unique_ptr<GpuKernel> device;
  GpuPipelineOptions gpuOptions;
  gpuOptions.blockK = blockK;
  if (backend == Backend::CPU &&
      (gpuFromTilePrograms || gpuWarpSpecialize ||
       gpuWarps.getNumOccurrences() || gpuRowsPerWarp.getNumOccurrences() ||
       gpuBlockV.getNumOccurrences() || gpuSegmentChunks.getNumOccurrences() ||
       gpuSplitKeys.getNumOccurrences() || gpuMma.getNumOccurrences()))
    return fail("--from-tile-program, --warps, --rows-per-warp, --mma, "
                "--block-v, --segment-chunks and --split-keys tune GPU "
                "kernels; add "
                "--backend=gpu-emulator or --backend=cuda");
  if (!setGpuTuning(gpuOptions, error))
    return fail(error);
  if (backend == Backend::CPU) {
    kernel = CpuKernel::compile(module, kernelName,
                                CpuOptions{cpuPath, blockQ, blockK, threads},
                                error);
    if (!kernel)
      return fail(error);
  } else if (backend == Backend::Emulator) {
    emulated = EmulatedGpuKernel::compile(module, kernelName, gpuOptions, error);
    if (!emulated)
      return fail(error);
  } else {
    int capability = cudaComputeCapability(error);
    if (!capability)
      return fail(error);
    gpuOptions.chip = gpuTargetFor(capability, error);
    if (gpuOptions.chip.empty())
      return fail(error);
    outs() << "target " << gpuOptions.chip << " (compute capability "
           << capability / 10 << "." << capability % 10 << ")\n";
    GpuImage image;
    if (!compileToPtx(module, kernelName, gpuOptions, image, error) ||
        !(device = GpuKernel::load(image, error)))
      return fail(error);
  }
  double compileMs = std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - start)
                         .count();
  const KernelSignature &signature =
      kernel     ? kernel->signature()
      : emulated ? emulated->image().signature
                 : device->image().signature;

  // Sizes: --dim first, then whatever the .npy inputs bind.
  DimBindings bindings;
  for (const std::string &binding : dims) {
    StringRef name, value;
    if (!parseBinding(binding, "dim", name, value))
      return 1;
    int64_t size;
    if (value.getAsInteger(10, size) || size < 0)
      return fail("--dim " + name + ": '" + value +
                  "' is not a non-negative integer");
    bindings[name.str()] = size;
  }
  std::vector<HostTensor> tensors(signature.params.size());
  std::vector<bool> present(signature.params.size(), false);
  for (const std::string &binding : inputs) {
    StringRef name, path;
    if (!parseBinding(binding, "input", name, path))
      return 1;
    auto it = llvm::find_if(signature.params, [&](const TensorSpec &spec) {
      return spec.name == name;
    });
    if (it == signature.params.end())
      return fail("kernel '" + signature.name + "' has no parameter '" +
                  name + "'");
    size_t index = it - signature.params.begin();
    NpyArray array;
    if (!readNpy(path.str(), array, error) ||
        !npyToTensor(array, it->type, it->name, tensors[index], error))
      return fail(error);
    present[index] = true;
    for (size_t dim = 0; dim < it->dims.size() && dim < array.shape.size();
         ++dim) {
      if (!it->dims[dim].isSymbolic())
        continue;
      const std::string &symbol = it->dims[dim].symbol;
      auto [bound, inserted] = bindings.emplace(symbol, array.shape[dim]);
      if (!inserted && bound->second != array.shape[dim])
        return fail("input '" + it->name + "' has " + symbol + " = " +
                    Twine(array.shape[dim]) + " (shape " +
                    shapeString(array.shape) + ") but " + symbol + " = " +
                    Twine(bound->second) + " was given before");
    }
  }

  mlir::ModuleOp moduleOp = module;
  attn::KernelOp kernelOp;
  for (attn::KernelOp candidate : moduleOp.getOps<attn::KernelOp>())
    if (candidate.getSymName() == signature.name)
      kernelOp = candidate;
  ParamRoles roles = getParamRoles(kernelOp);
  if (!fillMissingInputs(signature, roles, bindings, seed, tensors, present,
                         error))
    return fail(error);
  std::vector<const TensorView *> inputViews;
  std::vector<TensorView> views(signature.params.size());
  for (size_t index = 0; index < signature.params.size(); ++index) {
    if (present[index]) {
      views[index] = tensors[index].view();
      inputViews.push_back(&views[index]);
    } else {
      inputViews.push_back(nullptr);
    }
  }

  start = std::chrono::steady_clock::now();
  std::vector<HostTensor> outputs;
  bool ran = kernel     ? kernel->run(inputViews, outputs, error)
             : emulated ? emulated->run(inputViews, outputs, error)
                        : runWithHostTensors(*device, inputViews, outputs, error);
  if (!ran)
    return fail(error);
  double runMs = std::chrono::duration<double, std::milli>(
                     std::chrono::steady_clock::now() - start)
                     .count();

  // The grid GPU launches used (split-keys=auto chooses it per GPU).
  auto gridText = [&](const GpuImage &image, int64_t residentCtas) {
    std::array<int64_t, 3> grid = image.gridFor(inputViews, residentCtas);
    return formatv("grid {0}x{1}x{2} of {3} threads", grid[0], grid[1], grid[2],
                   image.threads)
        .str();
  };
  outs() << "kernel " << signature.name << " on ";
  if (kernel)
    outs() << "cpu (" << (cpuPath == CpuPath::Tiled ? "tiled" : "reference")
           << " path, " << kernel->getThreads() << " threads)";
  else if (emulated)
    outs() << "the GPU warp emulator ("
           << gridText(emulated->image(), emulated->residentCtas()) << ")";
  else
    outs() << "the GPU (" << device->image().target << ", "
           << gridText(device->image(), device->residentCtas()) << ")";
  outs() << ", seed " << seed << "\n";
  for (size_t index = 0; index < signature.params.size(); ++index) {
    const TensorSpec &spec = signature.params[index];
    outs() << "  input  " << spec.name << ": "
           << (inputViews[index] ? std::string(toString(spec.type)) +
                                       shapeString(inputViews[index]->shape)
                                 : std::string("(omitted)"))
           << "\n";
  }
  for (size_t index = 0; index < outputs.size(); ++index) {
    const HostTensor &output = outputs[index];
    double sum = 0, absMax = 0;
    int64_t nonFinite = 0, count = output.numElements();
    for (int64_t element = 0; element < count; ++element) {
      double value = output.get(element);
      if (!std::isfinite(value)) {
        ++nonFinite;
        continue;
      }
      sum += value;
      absMax = std::max(absMax, std::fabs(value));
    }
    outs() << "  output " << signature.results[index].name << ": "
           << toString(output.type()) << shapeString(output.shape())
           << "  mean " << format("%.6g", count ? sum / count : 0.0)
           << "  max|x| " << format("%.6g", absMax) << "  non-finite "
           << nonFinite << "\n";
    if (!outputDir.empty()) {
      SmallString<128> path(outputDir);
      sys::path::append(path, signature.results[index].name + ".npy");
      if (std::error_code ec = sys::fs::create_directories(outputDir))
        return fail("cannot create '" + outputDir + "': " + ec.message());
      if (!writeNpy(path.str().str(), tensorToNpy(output), error))
        return fail(error);
      outs() << "         written to " << path << "\n";
    }
  }
  outs() << format("  compile %.1f ms, run %.1f ms\n", compileMs, runMs);
  return 0;
}

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "attnc: a compiler for attention kernels\n\n"
      "  attnc check FILE                 parse and verify a spec\n"
      "  attnc emit FILE --stage=STAGE    print IR (attn, tile, reference, llvm)\n"
      "  attnc run FILE --backend=cpu|cuda|gpu-emulator\n"
      "                                   run on .npy or seeded random inputs\n"
      "  attnc compile FILE --target=sm_80 --emit=ptx -o OUT\n"
      "                                   compile for an NVIDIA GPU\n\n"
      "Use 'attnc SUBCOMMAND --help' for the options of each.\n");
  if (!checkCommand && !emitCommand && !runCommand && !compileCommand)
    return fail(
        "no subcommand; use one of check, emit, run, compile (see --help)");

  mlir::MLIRContext context;
  SourceMgr sourceMgr;
  DiagnosticEngine diags(sourceMgr);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      loadSpec(sourceMgr, context, diags);
  if (!module)
    return 1;
  if (checkCommand) {
    size_t count = llvm::range_size(module->getOps<attn::KernelOp>());
    outs() << inputFile << ": ok (" << count << " kernel"
           << (count == 1 ? "" : "s") << ")\n";
    return 0;
  }
  if (emitCommand)
    return emit(*module);
  if (compileCommand)
    return compile(*module);
  return run(*module);
}
