//===- Passes.h - attnc conversions between levels --------------*- C++ -*-===//
//
// The passes of include/attnc/Conversion/Passes.td, and the attributes by
// which one level hands facts to the next.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_PASSES_H
#define ATTNC_CONVERSION_PASSES_H

#include "attnc/Dialect/Tile/IR/TileDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

#include <string>

namespace attnc {

#define GEN_PASS_DECL
#include "attnc/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "attnc/Conversion/Passes.h.inc"

/// On a CPU kernel function: the query rows of one grid item, when the
/// strategy splits each (batch, head) into row blocks (attn-tile-softmax);
/// the runner then sizes the row-block dim of the grid for the longest
/// sequence. Absent: items are whole (batch, head) pairs.
inline constexpr llvm::StringLiteral kCpuRowBlockAttrName = "attnc.cpu_row_block";

/// On a kernel function: the arguments (result buffers) that each program
/// instance scatter-adds into, as f32, and that the launcher therefore
/// passes as one zeroed copy per instance and then sums in instance order
/// into the result (its dtype), so that the sums do not depend on the
/// threads (the softmax backward's gradients of the score's float inputs).
/// The CPU launcher makes the copies; attn-tile-to-nvgpu gives each CTA its
/// copy in the launch's workspace and has the last CTA sum them.
inline constexpr llvm::StringLiteral kPartialResultsAttrName =
    "attnc.partial_results";
/// Beside kPartialResultsAttrName: the types those arguments had before
/// they became f32 copies (the results' own types), in the same order.
inline constexpr llvm::StringLiteral kPartialResultTypesAttrName =
    "attnc.partial_result_types";

/// On a tile program's function: the parameters that hold packed
/// sequences' offsets (cu_seqlens of queries, then of keys when distinct),
/// which attn-tile-to-nvgpu hands the launcher to check. The program's
/// loads cannot tell them from other 1-D integer inputs, like document ids.
inline constexpr llvm::StringLiteral kSequenceOffsetsAttrName =
    "attnc.sequence_offsets";

/// On a tile program's function: the result (by its number among the
/// kernel's results) with one entry per packed sequence, a linear
/// kernel's final state, whose first dim the launcher sizes from the
/// offsets when no input gives it.
inline constexpr llvm::StringLiteral kSequenceResultAttrName =
    "attnc.sequence_result";

/// attnc-guard-emulated-accesses: the description of each guarded access
/// (an array on each function, indexed by the hook's site argument), and
/// the most indices the hook reports.
inline constexpr llvm::StringLiteral kAccessSitesAttrName =
    "attnc.access_sites";
inline constexpr int64_t kMaxGuardedRank = 8;

/// split-keys=auto (-1 in attn-gpu-tile-softmax's integer option): each
/// launch chooses how many CTAs split a query block's keys from the GPU's
/// size (attnc::chooseKeySplits in GpuImage.h).
inline constexpr int64_t kAutoSplitKeys = -1;

} // namespace attnc

#endif // ATTNC_CONVERSION_PASSES_H
