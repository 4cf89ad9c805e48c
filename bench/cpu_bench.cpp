//===- cpu_softmax_bench.cpp - Tiled vs reference softmax on the CPU ------===//
//
// Prints a table (and writes CSV with --csv FILE) of the run time of the
// reference path and of the tiled path, on one thread and on --cpu-threads host
// threads, for a few softmax shapes, with the machine, the commit and the
// settings. A benchmark, not a test: nothing is
// asserted about speed.
//
//===----------------------------------------------------------------------===//

#include "attnc/Execution/CpuKernel.h"
#include "attnc/Frontend/MLIRGen.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

using namespace attnc;
using namespace llvm;

static cl::opt<std::string> csvPath("csv", cl::desc("Also write CSV here"));
static cl::opt<int> repeats("repeats", cl::desc("Timed runs per case (median)"),
                            cl::init(3));
static cl::opt<std::string> commit("commit", cl::desc("Commit to print"),
                                   cl::init("unknown"));
static cl::opt<int64_t>
    threads("cpu-threads",
            cl::desc("Host threads of the threaded column (default: one per "
                     "hardware thread)"),
            cl::init(std::max(1u, std::thread::hardware_concurrency())));

namespace {

struct Case {
  const char *name;
  const char *spec; // with MASK replaced by `body`
  const char *body;
  int64_t n;
  bool linear;
};

const char *kSoftmax = R"(
kernel bench(q: f32[B, H, N, 64], k: f32[B, H, N, 64], v: f32[B, H, N, 64])
    -> (o: f32[B, H, N, 64]) {
  o = softmax(q, k, v) { MASK }
})";

// Linear family: q, k, v of [B, H, T, 64] and a per-step log gate in (-1, 0].
const char *kLinear = R"(
kernel bench(q: f32[B, H, N, 64], k: f32[B, H, N, 64], v: f32[B, H, N, 64],
             a: f32[B, H, N], g: f32[B, H, N, 64]) -> (o: f32[B, H, N, 64]) {
  o = linear(q, k, v) { MASK }
})";

double medianMs(CpuKernel &kernel, std::vector<const TensorView *> &inputs) {
  std::vector<double> times;
  for (int run = 0; run < repeats; ++run) {
    std::vector<HostTensor> outputs;
    std::string error;
    auto start = std::chrono::steady_clock::now();
    if (!kernel.run(inputs, outputs, error)) {
      errs() << "bench: " << error << "\n";
      std::exit(1);
    }
    times.push_back(std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start)
                        .count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

} // namespace

int main(int argc, char **argv) {
  cl::ParseCommandLineOptions(argc, argv,
                              "tiled vs reference softmax on the CPU\n");
  const Case cases[] = {
      {"dense", kSoftmax, "", 512, false},
      {"causal", kSoftmax, "mask = causal", 512, false},
      {"causal", kSoftmax, "mask = causal", 1024, false},
      {"window 128", kSoftmax, "mask = j <= i && i - j < 128", 1024, false},
      {"chunk 128", kSoftmax, "mask = i / 128 == j / 128", 1024, false},
      {"top-k 8x64", kSoftmax, "select = topk(8, block = 64); mask = causal",
       2048, false},
      {"linear", kLinear, "", 4096, true},
      {"ssd gate", kLinear, "gate = a[b, h, t]", 4096, true},
      {"gla gate", kLinear, "gate = g[b, h, t, d]", 4096, true},
  };
  outs() << "machine: " << std::thread::hardware_concurrency()
         << " hardware threads; commit " << commit
         << "\nsettings: f32, B=1, H=2, D=64, softmax tiles 64 x 64, linear "
            "chunks of 64, median of "
         << repeats << " runs; reference and tiled on 1 thread, tiled/T on "
         << threads << " threads\n\n";
  outs() << format("%-12s %6s %14s %10s %10s %9s %9s\n", "kernel", "N",
                   "reference ms", "tiled ms", "tiled/T ms", "tiled x",
                   "tiled/T x");
  std::string csv =
      "kernel,n,reference_ms,tiled_ms,threads,tiled_threaded_ms\n";
  for (const Case &benchCase : cases) {
    std::string text = benchCase.spec;
    text.replace(text.find("MASK"), 4, benchCase.body);
    SourceMgr sourceMgr;
    unsigned buffer = sourceMgr.AddNewSourceBuffer(
        MemoryBuffer::getMemBufferCopy(text, "bench.attn"), SMLoc());
    DiagnosticEngine diags(sourceMgr);
    mlir::MLIRContext context;
    mlir::OwningOpRef<mlir::ModuleOp> module =
        compileSpecToMLIR(buffer, context, diags);
    if (!module)
      return 1;
    std::string error;
    auto reference = CpuKernel::compile(
        *module, "", CpuOptions{CpuPath::Reference, 64, 64, 1}, error);
    auto tiled = CpuKernel::compile(
        *module, "", CpuOptions{CpuPath::Tiled, 64, 64, 1}, error);
    if (!reference || !tiled) {
      errs() << "bench: " << error << "\n";
      return 1;
    }
    std::mt19937_64 rng(0);
    std::uniform_real_distribution<double> dist(-1, 1);
    std::vector<HostTensor> tensors;
    for (int index = 0; index < 3; ++index) {
      tensors.emplace_back(ElementType::F32,
                           std::vector<int64_t>{1, 2, benchCase.n, 64});
      for (int64_t e = 0; e < tensors.back().numElements(); ++e)
        tensors.back().set(e, dist(rng));
    }
    if (benchCase.linear) { // log gates in (-1, 0]: per step, per key dim
      for (std::vector<int64_t> shape :
           {std::vector<int64_t>{1, 2, benchCase.n},
            std::vector<int64_t>{1, 2, benchCase.n, 64}}) {
        tensors.emplace_back(ElementType::F32, shape);
        for (int64_t e = 0; e < tensors.back().numElements(); ++e)
          tensors.back().set(e, -0.5 * (dist(rng) + 1));
      }
    }
    std::vector<TensorView> views;
    for (HostTensor &tensor : tensors)
      views.push_back(tensor.view());
    std::vector<const TensorView *> inputs;
    for (TensorView &view : views)
      inputs.push_back(&view);
    double referenceMs = medianMs(*reference, inputs);
    double tiledMs = medianMs(*tiled, inputs);
    tiled->setThreads(threads);
    double threadedMs = medianMs(*tiled, inputs);
    outs() << format("%-12s %6lld %14.1f %10.1f %10.1f %8.2fx %8.2fx\n",
                     benchCase.name, static_cast<long long>(benchCase.n),
                     referenceMs, tiledMs, threadedMs, referenceMs / tiledMs,
                     referenceMs / threadedMs);
    csv += std::string(benchCase.name) + "," + std::to_string(benchCase.n) +
           "," + std::to_string(referenceMs) + "," + std::to_string(tiledMs) +
           "," + std::to_string(threads) + "," + std::to_string(threadedMs) +
           "\n";
  }
  if (!csvPath.empty()) {
    std::error_code ec;
    raw_fd_ostream file(csvPath, ec);
    if (ec) {
      errs() << "bench: cannot write " << csvPath << ": " << ec.message() << "\n";
      return 1;
    }
    file << csv;
  }
  return 0;
}
