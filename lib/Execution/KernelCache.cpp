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
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

namespace {
constexpr llvm::StringLiteral kEntryPrefix = "attnc-cache-entry ";

/// Reads a regular file of at most kMaxEntryBytes. Anything else (a FIFO, a
/// device, a link to one) is refused without blocking on it.
bool readEntry(const std::string &path, std::string &data, std::string &why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    // No entry (or no cache directory yet) is a plain miss.
    why = errno == ENOENT || errno == ENOTDIR ? "" : std::strerror(errno);
    return false;
  }
  struct stat info;
  bool ok = ::fstat(fd, &info) == 0;
  if (ok && !S_ISREG(info.st_mode)) {
    why = "it is not a regular file";
    ok = false;
  } else if (ok && info.st_size > KernelCache::kMaxEntryBytes) {
    why = "it holds " + std::to_string(info.st_size) +
          " bytes, more than an entry may (" +
          std::to_string(KernelCache::kMaxEntryBytes) + ")";
    ok = false;
  }
  if (ok) {
    data.resize(info.st_size);
    size_t done = 0;
    while (done < data.size()) {
      ssize_t got = ::read(fd, &data[done], data.size() - done);
      if (got <= 0) {
        why = "reading it failed";
        ok = false;
        break;
      }
      done += got;
    }
  }
  ::close(fd);
  return ok;
}
} // namespace

void KernelCache::report(const std::string &message) {
  static std::mutex mutex;
  static std::set<std::string> printed;
  std::lock_guard<std::mutex> lock(mutex);
  if (printed.insert(message).second)
    llvm::errs() << "attnc: note: " << message << "\n";
}

bool KernelCache::lookup(const std::string &key, GpuImage &image,
                         std::string &note) const {
  if (root.empty())
    return false;
  std::string path = pathOf(key), data, why;
  if (!readEntry(path, data, why)) {
    if (!why.empty())
      note = "kernel cache entry " + path + " cannot be used (" + why +
             "); compiling instead";
    return false;
  }
  std::string expected = (kEntryPrefix + key + "\n").str();
  std::string error;
  if (data.compare(0, expected.size(), expected) != 0)
    error = "it is not the entry of this key";
  else if (!deserialize(data.substr(expected.size()), image, error))
    image = GpuImage();
  if (!error.empty()) {
    note = "kernel cache entry " + path + " is unreadable (" + error +
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
    os << kEntryPrefix << key << '\n' << serialize(image);
    os.flush();
    if (os.has_error()) {
      os.clear_error();
      llvm::sys::fs::remove(temporary);
      error = "writing a kernel cache entry in " + root + " failed";
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
