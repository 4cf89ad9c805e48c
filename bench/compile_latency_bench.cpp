//===- compile_latency_bench.cpp - Cold and cached compile latency --------===//
//
// For every example spec and target, the time attnc_compile takes cold (an
// empty kernel cache) and on a cache hit (GPU targets), through the C API
// as embedders call it. Prints a table and, with --csv FILE, writes CSV.
// A benchmark, not a test: nothing is asserted.
//
//===----------------------------------------------------------------------===//

#include "attnc-c/attnc.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

double compileMs(attnc_context *context, const std::string &spec,
                 const std::string &name, const char *target, bool &ok,
                 bool &hit) {
  attnc_kernel *kernel = nullptr;
  auto start = std::chrono::steady_clock::now();
  ok = attnc_compile(context, spec.data(), spec.size(), name.c_str(), nullptr,
                     target, &kernel) == ATTNC_OK;
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - start)
                  .count();
  hit = ok && attnc_kernel_from_cache(kernel);
  attnc_kernel_destroy(kernel);
  return ms;
}

} // namespace

int main(int argc, char **argv) {
  std::string examples = ATTNC_EXAMPLES_DIR, csvPath, commit = "unknown";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--csv"))
      csvPath = argv[i + 1];
    else if (!std::strcmp(argv[i], "--commit"))
      commit = argv[i + 1];
    else if (!std::strcmp(argv[i], "--examples"))
      examples = argv[i + 1];
  }
  std::vector<std::string> files;
  if (DIR *dir = opendir(examples.c_str())) {
    while (dirent *entry = readdir(dir))
      if (std::strstr(entry->d_name, ".attn"))
        files.push_back(entry->d_name);
    closedir(dir);
  }
  std::sort(files.begin(), files.end());

  char cacheDir[] = "/tmp/attnc-bench-cacheXXXXXX";
  if (!mkdtemp(cacheDir))
    return std::fprintf(stderr, "bench: cannot create a cache directory\n"), 1;
  attnc_context *context = attnc_context_create();
  attnc_context_set_cache_dir(context, cacheDir);

  std::printf("compile latency per example (commit %s; cache in %s)\n",
              commit.c_str(), cacheDir);
  std::printf("%-22s %-7s %12s %12s\n", "example", "target", "cold ms",
              "cached ms");
  std::string csv = "example,target,cold_ms,cached_ms\n";
  for (const std::string &file : files) {
    std::ifstream in(examples + "/" + file);
    std::stringstream text;
    text << in.rdbuf();
    for (const char *target : {"cpu", "sm_80", "sm_90a"}) {
      bool ok = false, hit = false;
      double cold = compileMs(context, text.str(), file, target, ok, hit);
      if (!ok) {
        std::printf("%-22s %-7s %12s %12s\n", file.c_str(), target,
                    "unsupported", "-");
        continue;
      }
      std::string cached = "-";
      double warm = 0;
      if (std::strcmp(target, "cpu") != 0) {
        warm = compileMs(context, text.str(), file, target, ok, hit);
        char buffer[32];
        std::snprintf(buffer, sizeof(buffer), "%.2f%s", warm,
                      hit ? "" : " (miss)");
        cached = buffer;
      }
      std::printf("%-22s %-7s %12.1f %12s\n", file.c_str(), target, cold,
                  cached.c_str());
      csv += file + "," + target + "," + std::to_string(cold) + "," +
             (std::strcmp(target, "cpu") ? std::to_string(warm) : "") + "\n";
    }
  }
  attnc_context_destroy(context);
  std::string remove = std::string("rm -rf ") + cacheDir;
  if (std::system(remove.c_str()) != 0)
    std::fprintf(stderr, "bench: could not remove %s\n", cacheDir);
  if (!csvPath.empty()) {
    std::ofstream(csvPath) << csv;
    std::printf("csv: %s\n", csvPath.c_str());
  }
  return 0;
}
