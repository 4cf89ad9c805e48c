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
#include "attnc/Runtime/RandomInputs.h"
#include "attnc/Runtime/Tensor.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace attnc {
namespace attn {
class KernelOp;
} // namespace attn

ParamRoles getParamRoles(attn::KernelOp kernel);


} // namespace attnc

#endif // ATTNC_EXECUTION_INPUTS_H
