//===- RandomInputs.h - Seeded random kernel inputs -------------*- C++ -*-===//
//
// Random data that respects each parameter's role (gates are <= 0, offsets
// are valid cu_seqlens, block index lists name real blocks). Shared by
// `attnc run` and the LLVM-free GPU runner, so both draw the same inputs
// from the same seed. No MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_RANDOMINPUTS_H
#define ATTNC_RUNTIME_RANDOMINPUTS_H

#include "attnc/Runtime/Tensor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace attnc {

/// How a parameter is used, which decides what random data is valid for it.
enum class ParamRole {
  Query, Key, Value, Gate, Offsets, BlockCounts, BlockIndices, BlockMask,
  TopkBlocks, InitialState, Other
};

struct ParamRoles {
  std::vector<ParamRole> roles;
  int64_t blockK = 0; // key block size of index lists
  int keySeqDim = 2;   // sequence dim of k in the family's layout
};

/// Fills `tensor` with seeded random data suited to `role`. `keyLength` is the
/// number of keys (block lists) or the packed length (offsets); block counts
/// stay within `listWidth`, the width of the index lists, and are 0 when
/// there are no key blocks. A top-k selection (rows of `listWidth` entries)
/// gets distinct key blocks per row, then -1.
void fillRandom(HostTensor &tensor, ParamRole role, uint64_t seed,
                int64_t keyLength, int64_t blockK, int64_t listWidth = 1);

/// Gives every absent non-optional parameter a tensor of its shape under
/// `bindings`, filled by fillRandom with seed `seed + index`: what
/// `attnc run --seed` does. False with a message naming the parameter when a
/// shape is unknown or too large.
bool fillMissingInputs(const KernelSignature &signature,
                       const ParamRoles &roles, const DimBindings &bindings,
                       uint64_t seed, std::vector<HostTensor> &tensors,
                       std::vector<bool> &present, std::string &error);

} // namespace attnc

#endif // ATTNC_RUNTIME_RANDOMINPUTS_H
