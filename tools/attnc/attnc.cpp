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
#include "attnc/Execution/Compiler.h"
#include "attnc/Execution/CpuKernel.h"
#include "attnc/Execution/GpuCompiler.h"
#include "attnc/Execution/GpuEmulator.h"
#include "attnc/Runtime/CudaRuntime.h"
#include "attnc/Execution/Inputs.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Runtime/Npy.h"
#include "attnc/Pipelines/Pipelines.h"
#include "attnc/Transforms/Passes.h"

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

static cl::opt<bool> backward(
    "backward",
    cl::desc("The kernel's backward (docs/semantics.md section 8): its "
             "inputs are the kernel's, then o, lse, d_o (and d_lse); its "
             "outputs d_q, d_k, d_v and the gradients of the float tensors "
             "the score reads"),
    cl::sub(emitCommand), cl::sub(runCommand), cl::sub(compileCommand),
    cl::cat(category));

static cl::opt<bool> trainingForward(
    "training-forward",
    cl::desc("The forward that training runs: the kernel, also returning "
             "what its backward takes and the spec does not return (lse; "
             "topk_blocks for top-k)"),
    cl::sub(runCommand), cl::sub(compileCommand), cl::cat(category));

enum class Stage { Attn, Tile, Loops, Reference, LLVM };
static cl::opt<Stage> stage(
    "stage", cl::desc("Stage to print"), cl::init(Stage::Attn),
    cl::values(clEnumValN(Stage::Attn, "attn", "the attn dialect"),
               clEnumValN(Stage::Tile, "tile",
                          "after the CPU tiling strategies: the attn_tile "
                          "programs of every family"),
               clEnumValN(Stage::Loops, "loops",
                          "the tile programs lowered to CPU loops "
                          "(attnc-cpu-strategies)"),
               clEnumValN(Stage::Reference, "reference",
                          "after the reference lowering (scf/memref)"),
               clEnumValN(Stage::LLVM, "llvm",
                          "the LLVM dialect of the CPU path (--path)")),
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
            cl::sub(runCommand), cl::sub(emitCommand), cl::cat(category));
/// The tuning flags, one per entry of compileOptions(): --NAME for a flag,
/// --NAME=VALUE else; GPU options on compile and run, CPU options on run.
struct TuningFlag {
  const CompileOption *option;
  std::unique_ptr<cl::opt<bool>> flag;
  std::unique_ptr<cl::opt<std::string>> value;
  bool given() const {
    return flag ? flag->getNumOccurrences() : value->getNumOccurrences();
  }
};
static std::vector<TuningFlag> tuningFlags;

template <typename T>
static std::unique_ptr<cl::opt<T>> makeTuningFlag(const CompileOption &option) {
  if (option.targets & kGpuOption)
    return std::make_unique<cl::opt<T>>(
        StringRef(option.name), cl::desc(option.help),
        cl::value_desc(option.value),
        cl::sub(runCommand), cl::sub(compileCommand), cl::cat(category));
  return std::make_unique<cl::opt<T>>(StringRef(option.name),
                                      cl::desc(option.help),
                                      cl::value_desc(option.value),
                                      cl::sub(runCommand), cl::cat(category));
}

static void addTuningFlags() {
  for (const CompileOption &option : compileOptions()) {
    TuningFlag tuning{&option, nullptr, nullptr};
    if (option.value.empty())
      tuning.flag = makeTuningFlag<bool>(option);
    else
      tuning.value = makeTuningFlag<std::string>(option);
    tuningFlags.push_back(std::move(tuning));
  }
}

/// The tuning flags given, as compileOptions() text; `elsewhere` lists
/// those that tune none of `targets`.
static std::string tuningText(unsigned targets, std::string &elsewhere) {
  std::string text;
  for (const TuningFlag &tuning : tuningFlags) {
    if (!tuning.given())
      continue;
    std::string name = tuning.option->name.str();
    if (!(tuning.option->targets & targets)) {
      elsewhere += (elsewhere.empty() ? "--" : ", --") + name;
      continue;
    }
    if (tuning.flag && !*tuning.flag)
      continue;
    text += (text.empty() ? "" : " ") + name;
    if (tuning.value)
      text += "=" + *tuning.value;
  }
  return text;
}

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
  mlir::PassManager pm(module.getContext());
  if (backward) {
    DeriveBackwardOptions derive;
    derive.kernel = kernelName;
    pm.addPass(createDeriveBackward(derive));
  }
  CpuOptions options;
  options.path = cpuPath;
  if (stage == Stage::Tile) {
    addTileStrategies(pm, options);
  } else if (stage == Stage::Loops) {
    options.path = CpuPath::Tiled;
    addCpuStrategies(pm, options);
  } else if (stage == Stage::Reference) {
    options.path = CpuPath::Reference;
    addCpuStrategies(pm, options);
  } else if (stage == Stage::LLVM) {
    addCpuStrategies(pm, options);
    buildLowerToLLVMPipeline(pm);
  }
  if (failed(pm.run(module)))
    return fail("lowering failed");
  std::error_code ec;
  ToolOutputFile output(outputFile, ec, sys::fs::OF_None);
  if (ec)
    return fail("cannot write '" + outputFile + "': " + ec.message());
  module.print(output.os());
  output.keep();
  return 0;
}

/// The spec file's text.
static bool readSpec(std::string &text) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> file =
      MemoryBuffer::getFileOrSTDIN(inputFile);
  if (std::error_code ec = file.getError()) {
    fail("cannot read '" + inputFile + "': " + ec.message());
    return false;
  }
  text = (*file)->getBuffer().str();
  return true;
}

/// Compiles the spec for `target` with the tuning flags given, through the
/// entry point the C API uses; diagnostics go to stderr.
static bool compileFor(StringRef target, unsigned targets,
                       CompiledKernel &compiled, bool keepLoweredIR = false) {
  std::string spec, elsewhere, error;
  if (!readSpec(spec))
    return false;
  std::string options = tuningText(targets, elsewhere);
  if (!elsewhere.empty()) {
    fail(elsewhere + (StringRef(elsewhere).contains(',') ? " tune" : " tunes") +
         " GPU kernels; add --backend=gpu-emulator or --backend=cuda");
    return false;
  }
  static mlir::MLIRContext context;
  CompileRequest request;
  request.spec = spec;
  request.sourceName = inputFile;
  request.kernel = kernelName;
  request.target = target;
  request.options = options;
  request.diagnosticStream = &errs();
  request.keepLoweredIR = keepLoweredIR;
  if (backward && trainingForward) {
    fail("--backward and --training-forward name different kernels; give one");
    return false;
  }
  if (backward)
    request.part = KernelPart::Backward;
  if (trainingForward)
    request.part = KernelPart::TrainingForward;
  CompileFailure failure = compileSpec(context, request, compiled, error);
  if (failure == CompileFailure::None)
    return true;
  // The front end has printed the spec's errors with their carets.
  if (failure != CompileFailure::Spec)
    fail(error);
  return false;
}

/// "sm_90a (compute capability 9.0)" for the GPU present.
static std::string presentGpu(StringRef target) {
  std::string why;
  int capability = cudaComputeCapability(why);
  return formatv("{0} (compute capability {1}.{2})", target, capability / 10,
                 capability % 10)
      .str();
}

static int compile() {
  if (gpuTarget != "cuda" && !isGpuTarget(gpuTarget))
    return fail("unknown GPU target '" + gpuTarget +
                "' (expected sm_80 or sm_90a)");
  CompiledKernel compiled;
  if (!compileFor(gpuTarget, kGpuOption, compiled, emitKind == Emit::MLIR))
    return 1;
  if (gpuTarget == "cuda")
    errs() << "attnc: target " << presentGpu(compiled.target) << "\n";
  const GpuImage &image = compiled.image;
  std::string bytes = image.bytes, error;
  if (emitKind == Emit::MLIR)
    bytes = compiled.loweredIR;
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

static int run() {
  std::string error;
  if (threads < 0)
    return fail("--threads must be positive (or 0 for the default)");
  auto start = std::chrono::steady_clock::now();
  StringRef target = backend == Backend::Emulator ? "gpu-emulator"
                     : backend == Backend::CUDA   ? "cuda"
                     : cpuPath == CpuPath::Tiled  ? "cpu"
                                                  : "cpu-reference";
  CompiledKernel compiled;
  if (!compileFor(target, backend == Backend::CPU ? kCpuOption : kGpuOption,
                  compiled))
    return 1;
  std::unique_ptr<CpuKernel> &kernel = compiled.cpu;
  std::unique_ptr<EmulatedGpuKernel> &emulated = compiled.emulated;
  std::unique_ptr<GpuKernel> device;
  if (kernel) {
    kernel->setThreads(threads);
  } else if (!emulated) {
    outs() << "target " << presentGpu(compiled.target) << "\n";
    if (!(device = GpuKernel::load(compiled.image, error)))
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

  if (!fillMissingInputs(signature, compiled.roles, bindings, seed, tensors,
                         present, error))
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
  addTuningFlags();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "attnc: a compiler for attention kernels\n\n"
      "  attnc check FILE                 parse and verify a spec\n"
      "  attnc emit FILE --stage=STAGE    print IR (attn, tile, loops, reference, llvm)\n"
      "  attnc run FILE --backend=cpu|cuda|gpu-emulator\n"
      "                                   run on .npy or seeded random inputs\n"
      "  attnc compile FILE --target=sm_80 --emit=ptx -o OUT\n"
      "                                   compile for an NVIDIA GPU\n\n"
      "Use 'attnc SUBCOMMAND --help' for the options of each.\n");
  if (!checkCommand && !emitCommand && !runCommand && !compileCommand)
    return fail(
        "no subcommand; use one of check, emit, run, compile (see --help)");

  if (compileCommand)
    return compile();
  if (runCommand)
    return run();
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
  return emit(*module);
}
