//===- NoCompiler.cpp - The runtime-only build's attnc_compile ------------===//
//
// The runtime-only libattnc (ATTNC_RUNTIME_ONLY: no LLVM or MLIR) loads and
// launches AOT images; compiling asks for the full build.
//
//===----------------------------------------------------------------------===//

#include "CApiObjects.h"

using namespace attnc;

attnc_status attnc::capi::compile(attnc_context *context, const char *, size_t,
                                  const char *, const char *,
                                  const std::string &target,
                                  const std::string &, attnc_kernel_part,
                                  attnc_kernel **) {
  return capi::fail(
      context, ATTNC_ERROR_TARGET,
      "this libattnc is the runtime-only build (no LLVM or MLIR): it cannot "
      "compile for '" +
          target +
          "'; load an image made by the full build instead "
          "(attnc_kernel_load, `attnc compile --emit=image`)");
}

const std::string &attnc::capi::cacheDirectory(attnc_context *) {
  static const std::string none;
  return none;
}

attnc_status attnc::capi::setCacheDirectory(attnc_context *context,
                                            const char *) {
  return capi::fail(context, ATTNC_ERROR_ARGUMENT,
                    "this libattnc is the runtime-only build: it compiles "
                    "nothing, so it has no kernel cache");
}

extern "C" int attnc_has_compiler(void) { return 0; }
