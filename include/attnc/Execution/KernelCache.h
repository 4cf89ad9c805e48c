//===- KernelCache.h - On-disk cache of compiled GPU kernels ----*- C++ -*-===//
//
// Compiled images keyed by a hash of everything that determines them: the
// spec text, the kernel name, the options, the target and the compiler
// version. Entries are written atomically (a temporary file renamed into
// place), so concurrent writers never expose a partial entry. An entry
// starts with its key and ends with a checksum of everything else (launch
// facts and image bytes); one that is not a regular file, is too large,
// holds another key or fails its checksum is a miss and is rewritten.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_KERNELCACHE_H
#define ATTNC_EXECUTION_KERNELCACHE_H

#include "attnc/Runtime/GpuImage.h"

#include <string>

namespace attnc {

/// The compiler version that keys cache entries.
const char *compilerVersion();

class KernelCache {
public:
  /// The cache in `directory`; empty: $ATTNC_CACHE_DIR, else
  /// $XDG_CACHE_HOME/attnc, else $HOME/.cache/attnc. An empty result (no
  /// HOME) disables caching.
  explicit KernelCache(std::string directory = "");

  /// A cache that never hits and never stores.
  static KernelCache disabled() {
    KernelCache cache("/");
    cache.root.clear();
    return cache;
  }

  const std::string &directory() const { return root; }

  /// The key of one compilation (hex digits).
  static std::string key(const std::string &spec, const std::string &kernel,
                         const std::string &options, const std::string &target);

  /// True with `image` filled on a hit. An unusable entry is a miss;
  /// `note` then says why (callers pass it to report()).
  bool lookup(const std::string &key, GpuImage &image, std::string &note) const;

  /// Prints a cache note on stderr, once per distinct message and process.
  static void report(const std::string &message);

  /// The largest entry read back (PTX of a few MB is typical).
  static constexpr int64_t kMaxEntryBytes = int64_t(256) << 20;

  /// Stores the image; false with `error` set when the directory is not
  /// writable (the compilation result stays valid).
  bool store(const std::string &key, const GpuImage &image,
             std::string &error) const;

private:
  std::string pathOf(const std::string &key) const;
  std::string root;
};

} // namespace attnc

#endif // ATTNC_EXECUTION_KERNELCACHE_H
