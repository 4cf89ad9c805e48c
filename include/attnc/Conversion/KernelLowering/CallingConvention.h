//===- CallingConvention.h - Kernel parameters and functions ----*- C++ -*-===//
//
// The calling convention of lowered kernels: the memref types of the
// parameters, and the function skeleton with its status buffer that a
// lowering fills in.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_CALLINGCONVENTION_H
#define ATTNC_CONVERSION_KERNELLOWERING_CALLINGCONVENTION_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace attnc::lowering {

/// The memref type a kernel parameter is passed as: dynamic sizes, strides
/// and offset so that any layout arrives without a copy; bools as i8.
mlir::MemRefType getParamMemRefType(AttnTensorType type);

/// The argument types of the calling convention: parameters, results, then
/// the status buffer.
SmallVector<Type> getCallingConventionTypes(KernelOp kernel);

/// Appends the lowering of `kernel` to `entry`, whose arguments start with
/// the calling convention (more may follow); `lowerFamily` fills in the body for the family op.
/// `clearStatus` zeroes the status buffer first (a GPU launch leaves that to
/// the host, as every thread would race on it).
/// `workRange`, when given, holds the index values of
/// LoweringBuilder::workBegin, workEnd and workRowBlocks.
void lowerKernelBody(
    KernelOp kernel, Block *entry, bool clearStatus,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily,
    ValueRange workRange = {});

/// Replaces `kernel` by a func.func of the same name with the calling
/// convention of docs/pipeline.md (parameters, results, status buffer, the
/// [begin, end) share of the grid to compute and its row blocks per (batch,
/// head)) and lets `lowerFamily` fill in the body for the kernel's family op, given the
/// result buffers in the family op's result order.
mlir::func::FuncOp lowerKernelToFunc(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily);

/// Replaces `kernel` by a func.func of the same name whose arguments are the
/// parameters, the results and the status buffer, and lets `lowerFamily`
/// build a target-neutral tile program in it (docs/tile.md). The status
/// buffer is not cleared: a target lowering adds what its calling
/// convention needs.
mlir::func::FuncOp lowerKernelToProgram(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily);

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_CALLINGCONVENTION_H
