//===- CompileOptions.cpp - The one table of tuning options ---------------===//
//
// Every tuning option of every target, read and printed from one table: the
// CLI's flags, the C API's and Python's option text and the kernel cache key
// all come from compileOptions().
//
//===----------------------------------------------------------------------===//

#include "attnc/Pipelines/Pipelines.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

using namespace attnc;

bool attnc::parseSplitKeys(llvm::StringRef text, int64_t &splitKeys) {
  int64_t keys = kAutoSplitKeys;
  if (text != "auto" && (text.getAsInteger(10, keys) || keys < 0))
    return false;
  splitKeys = keys;
  return true;
}

std::string attnc::splitKeysText(int64_t splitKeys) {
  return splitKeys == kAutoSplitKeys ? "auto" : std::to_string(splitKeys);
}

llvm::ArrayRef<CompileOption> attnc::compileOptions() {
  using Gpu = GpuPipelineOptions;
  static const CompileOption table[] = {
      {"block-q",
       "Query rows per tile of dense, chunk-local and top-k softmax on the "
       "CPU (other block-sparse kernels tile by their blocks)",
       "N", kCpuOption, &CpuOptions::blockQ},
      {"warps", "Warps per CTA", "N", kGpuOption, nullptr, &Gpu::warps},
      {"block-k", "Keys per tile of dense and chunk-local softmax", "N",
       kCpuOption | kGpuOption, &CpuOptions::blockK, &Gpu::blockK},
      {"rows-per-warp", "Query rows per warp of softmax kernels (16 or 32)",
       "N", kGpuOption, nullptr, &Gpu::rowsPerWarp},
      {"block-v", "Value columns per CTA of linear kernels (0: min(Dv, 64))",
       "N", kGpuOption, nullptr, &Gpu::blockV},
      {"segment-chunks",
       "Chunks per segment of causal linear kernels, whose segments run on "
       "different CTAs (0: one CTA per sequence)",
       "N", kGpuOption, nullptr, &Gpu::segmentChunks},
      {"split-keys",
       "Keys per split of softmax kernels: CTAs of one query block walk "
       "different runs of keys and the last combines them, for few queries "
       "and long key sequences (0: no split; auto: each launch chooses the "
       "number of splits for the GPU)",
       "N|auto", kGpuOption, nullptr, &Gpu::splitKeys},
      {"mma",
       "Tensor-core instruction of softmax kernels: sync (mma.sync, the "
       "default) or wgmma (sm_90a)",
       "sync|wgmma", kGpuOption, nullptr, nullptr, &Gpu::mma},
      {"warp-specialize",
       "With mma=wgmma: a producer warpgroup copies K and V and hands stages "
       "to the computing warpgroups through mbarriers",
       "", kGpuOption, nullptr, nullptr, nullptr, &Gpu::warpSpecialize},
      {"pack-gqa",
       "Softmax kernels pack the query heads of a GQA group into one CTA's "
       "rows, sharing the group's K and V tiles (for decoding with "
       "grouped-query attention)",
       "", kGpuOption, nullptr, nullptr, nullptr, &Gpu::packGqa},
      {"from-tile-program",
       "Build softmax and linear kernels from their tile programs "
       "(attn-tile-softmax, attn-tile-linear, attn-tile-to-nvgpu; 16 rows "
       "per warp; not top-k) instead of "
       "attn-gpu-tile-softmax and attn-gpu-chunk-linear",
       "", kGpuOption, nullptr, nullptr, nullptr, &Gpu::fromTileProgram},
  };
  return table;
}

static const char *targetName(unsigned targets) {
  return targets & kGpuOption ? "GPU" : "CPU";
}

/// The options of `targets` as the error message lists them.
static std::string optionList(unsigned targets) {
  std::string list;
  for (const CompileOption &option : compileOptions()) {
    if (!(option.targets & targets))
      continue;
    list += list.empty() ? "" : ", ";
    list += option.name.str();
    if (!option.value.empty())
      list += "=" + option.value.str();
  }
  return list;
}

/// Sets `option` from `value` for `targets`; the reason when it cannot.
static std::string setOption(const CompileOption &option, llvm::StringRef value,
                             bool hasValue, unsigned targets,
                             CompileOptions &options) {
  if (option.value.empty()) {
    if (hasValue)
      return "is a flag and takes no value";
    options.gpu.*option.gpuFlag = true;
    return "";
  }
  if (option.gpuText) {
    options.gpu.*option.gpuText = value.str();
    return "";
  }
  int64_t number;
  if (option.name == "split-keys") {
    if (!parseSplitKeys(value, number))
      return "needs a non-negative number of keys or auto";
  } else {
    bool cpu = !(targets & kGpuOption);
    if (value.getAsInteger(10, number) || number < (cpu ? 1 : 0))
      return cpu ? "needs a positive integer value"
                 : "needs a non-negative integer value";
  }
  if (option.cpuInteger && (targets & kCpuOption))
    options.cpu.*option.cpuInteger = number;
  if (option.gpuInteger && (targets & kGpuOption))
    options.gpu.*option.gpuInteger = number;
  return "";
}

bool attnc::parseCompileOptions(llvm::StringRef text, unsigned targets,
                                CompileOptions &options, std::string &error) {
  llvm::SmallVector<llvm::StringRef> items;
  llvm::SplitString(text, items, " ,\t\n");
  for (llvm::StringRef item : items) {
    // Not a structured binding: lambdas capture those only from C++20.
    llvm::StringRef name = item.split('=').first;
    llvm::StringRef value = item.split('=').second;
    const CompileOption *option =
        llvm::find_if(compileOptions(), [&](const CompileOption &candidate) {
          return candidate.name == name && (candidate.targets & targets);
        });
    if (option == compileOptions().end()) {
      error = "unknown " + std::string(targetName(targets)) + " option '" +
              item.str() + "'; options: " + optionList(targets);
      // A misspelt name: say which option was meant.
      for (const CompileOption &candidate : compileOptions())
        if ((candidate.targets & targets) &&
            name.edit_distance(candidate.name) <= 2) {
          error += " (did you mean " + candidate.name.str() + "?)";
          break;
        }
      return false;
    }
    std::string problem =
        setOption(*option, value, item.contains('='), targets, options);
    if (!problem.empty()) {
      error = std::string(targetName(targets)) + " option '" + item.str() +
              "' " + problem;
      return false;
    }
  }
  return true;
}

std::string attnc::compileOptionsKey(const CompileOptions &options,
                                     unsigned targets) {
  std::string key;
  for (const CompileOption &option : compileOptions()) {
    if (!(option.targets & targets))
      continue;
    std::string item;
    if (option.gpuFlag)
      item = options.gpu.*option.gpuFlag ? option.name.str() : "";
    else if (option.gpuText)
      item = option.name.str() + "=" + options.gpu.*option.gpuText;
    else if (option.name == "split-keys")
      item = option.name.str() + "=" +
             splitKeysText(options.gpu.*option.gpuInteger);
    else
      item = option.name.str() + "=" +
             std::to_string(targets & kGpuOption
                                ? options.gpu.*option.gpuInteger
                                : options.cpu.*option.cpuInteger);
    if (item.empty())
      continue;
    key += key.empty() ? "" : " ";
    key += item;
  }
  return key;
}

bool CpuOptions::parse(llvm::StringRef text, std::string &error) {
  CompileOptions options;
  options.cpu = *this;
  if (!parseCompileOptions(text, kCpuOption, options, error))
    return false;
  *this = options.cpu;
  return true;
}

std::string GpuPipelineOptions::cacheKey() const {
  CompileOptions options;
  options.gpu = *this;
  return compileOptionsKey(options, kGpuOption);
}

bool GpuPipelineOptions::parse(llvm::StringRef text, std::string &error) {
  CompileOptions options;
  options.gpu = *this;
  if (!parseCompileOptions(text, kGpuOption, options, error))
    return false;
  *this = options.gpu;
  return verify(error);
}
