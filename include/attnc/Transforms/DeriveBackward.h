//===- DeriveBackward.h - The backward kernel of a spec ---------*- C++ -*-===//

#ifndef ATTNC_TRANSFORMS_DERIVEBACKWARD_H
#define ATTNC_TRANSFORMS_DERIVEBACKWARD_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include <string>

namespace attnc {

/// Adds, after `forward`, the kernel `<name>_backward` that
/// attn-derive-backward describes, and returns it; reports (at their
/// locations) a score that cannot be differentiated and families without a
/// backward.
mlir::FailureOr<attn::KernelOp> deriveBackwardKernel(attn::KernelOp forward);

/// The same, with the first error in `error` as "file:line:col: message"
/// instead of the context's diagnostics.
mlir::FailureOr<attn::KernelOp> deriveBackwardKernel(attn::KernelOp forward,
                                                     std::string &error);

/// The forward that training runs: `forward` itself, except that what its
/// backward takes and the spec does not return becomes extra last results:
/// "lse" for a softmax-normalized kernel, "topk_blocks" (the selection) for
/// a top-k kernel. Fails, changing nothing, when a tensor of the kernel
/// already has one of those names.
mlir::LogicalResult addTrainingResults(attn::KernelOp forward);

} // namespace attnc

#endif // ATTNC_TRANSFORMS_DERIVEBACKWARD_H
