//===- KernelCache.cpp - On-disk cache of compiled GPU kernels ------------===//

#include "attnc/Execution/KernelCache.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <array>
#include <cstdlib>

using namespace attnc;

const char *attnc::compilerVersion() {
  // Bump when generated code changes in a way the options do not capture.
  return "attnc-0.2-gpu1-llvm" LLVM_VERSION_STRING;
}

KernelCache::KernelCache(std::string directory) : root(std::move(directory)) {
  if (!root.empty())
    return;
  if (const char *explicitDir = std::getenv("ATTNC_CACHE_DIR"))
    root = explicitDir;
  else if (const char *xdg = std::getenv("XDG_CACHE_HOME"))
    root = std::string(xdg) + "/attnc";
  else if (const char *home = std::getenv("HOME"))
    root = std::string(home) + "/.cache/attnc";
}

std::string KernelCache::key(const std::string &spec, const std::string &kernel,
                             const std::string &options,
                             const std::string &target) {
  llvm::SHA256 hash;
  // Length-prefixed fields, so no two field lists hash the same bytes.
  for (const std::string &field :
       {spec, kernel, options, target, std::string(compilerVersion())}) {
    hash.update(std::to_string(field.size()) + ":");
    hash.update(field);
  }
  std::array<uint8_t, 32> digest = hash.final();
  return llvm::toHex(llvm::ArrayRef<uint8_t>(digest.data(), 16),
                     /*LowerCase=*/true);
}

std::string KernelCache::pathOf(const std::string &key) const {
  return root + "/" + key + ".attnc-image";
}

bool KernelCache::lookup(const std::string &key, GpuImage &image,
                         std::string &note) const {
  if (root.empty())
    return false;
  auto buffer = llvm::MemoryBuffer::getFile(pathOf(key), /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return false;
  std::string error;
  if (!deserialize((*buffer)->getBuffer().str(), image, error)) {
    note = "kernel cache entry " + pathOf(key) + " is unreadable (" + error +
           "); recompiling";
    return false;
  }
  return true;
}

bool KernelCache::store(const std::string &key, const GpuImage &image,
                        std::string &error) const {
  if (root.empty())
    return true;
  if (std::error_code ec = llvm::sys::fs::create_directories(root)) {
    error = "cannot create the kernel cache " + root + ": " + ec.message();
    return false;
  }
  llvm::SmallString<256> temporary;
  int fd = -1;
  if (std::error_code ec = llvm::sys::fs::createUniqueFile(
          root + "/" + key + ".tmp-%%%%%%%%", fd, temporary)) {
    error = "cannot write to the kernel cache " + root + ": " + ec.message();
    return false;
  }
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << serialize(image);
    os.flush();
    if (os.has_error()) {
      os.clear_error();
      llvm::sys::fs::remove(temporary);
      error = "writing the kernel cache entry failed";
      return false;
    }
  }
  if (std::error_code ec = llvm::sys::fs::rename(temporary, pathOf(key))) {
    llvm::sys::fs::remove(temporary);
    error = "cannot install the kernel cache entry: " + ec.message();
    return false;
  }
  return true;
}
