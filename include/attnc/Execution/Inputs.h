//===- Inputs.h - Inputs for running a kernel from the CLI ------*- C++ -*-===//
//
// Seeded random inputs that respect each parameter's role (gates are <= 0,
// offsets are valid cu_seqlens, block index lists name real blocks), and the
// conversion between host tensors and .npy arrays.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_INPUTS_H
#define ATTNC_EXECUTION_INPUTS_H

#include "attnc/Runtime/HalfFloat.h"
#include "attnc/Runtime/Npy.h"
#include "attnc/Runtime/Tensor.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace attnc {
namespace attn {
class KernelOp;
} // namespace attn

/// How a parameter is used, which decides what random data is valid for it.
enum class ParamRole {
  Query, Key, Value, Gate, Offsets, BlockCounts, BlockIndices, BlockMask,
  InitialState, Other
};

struct ParamRoles {
  std::vector<ParamRole> roles;
  int64_t blockK = 0; // key block size of index lists
  int keySeqDim = 2;   // sequence dim of k in the family's layout
};

ParamRoles getParamRoles(attn::KernelOp kernel);

/// Fills `tensor` with seeded random data suited to `role`. `keyLength` is the
/// number of keys (for block indices); `tokens` the packed length (offsets).
void fillRandom(HostTensor &tensor, ParamRole role, uint64_t seed,
                int64_t keyLength, int64_t blockK);

/// Converts a .npy array to a host tensor of `type` (f64/f32/f16 for float
/// types, uint16 bit patterns for bf16, integer arrays for integer and bool
/// types). Returns false with a message naming `name` on a mismatch.
bool npyToTensor(const NpyArray &array, ElementType type,
                 const std::string &name, HostTensor &tensor,
                 std::string &error);

/// Converts a host tensor for writing; bf16 is widened to float32 since NumPy
/// has no bf16 type.
NpyArray tensorToNpy(const HostTensor &tensor);

} // namespace attnc

#endif // ATTNC_EXECUTION_INPUTS_H
