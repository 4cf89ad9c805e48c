//===- AttnOps.h - Attention dialect operations -----------------*- C++ -*-===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNOPS_H
#define ATTNC_DIALECT_ATTN_IR_ATTNOPS_H

#include "attnc/Dialect/Attn/IR/AttnAttrs.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnTypes.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "attnc/Dialect/Attn/IR/AttnOps.h.inc"

namespace attnc::attn {

/// Positions of the logical dimensions of q, k, v and o in a layout; the
/// batch position is -1 for packed (`thd`) tensors.
struct LayoutDims {
  int batch, head, seq, feature;
  unsigned rank;
};
LayoutDims getLayoutDims(Layout layout);

/// The sequence offsets (cu_seqlens) of a family op, for its queries and for
/// its keys (the same value for the linear family); null when dense. The
/// key side falls back to the query side when only one is given.
std::pair<mlir::Value, mlir::Value> getSequenceOffsets(mlir::Operation *familyOp);

/// Block argument positions of the expression regions.
namespace score_arg {
enum { S, B, H, I, J, N, M, QStart, KStart, Count };
}
namespace mask_arg {
enum { B, H, I, J, N, M, QStart, KStart, Count };
}
namespace gate_arg {
enum { B, H, T, D, TStart, Count };
}

/// Limits that keep compilation bounded (docs/language.md, "Limits"): tile
/// sizes become static buffer and vector shapes, so block sizes and the
/// linear chunk are capped, as is the per-row top-k list and the number of
/// tensors a kernel passes. AttnOps.td repeats the first two in ODS.
constexpr int64_t kMaxBlockSize = 4096;
constexpr int64_t kMaxTopk = 4096;
constexpr int64_t kMaxKernelTensors = 256;

/// True for the ops that hold a softmax-family computation.
bool isSoftmaxFamily(mlir::Operation *op);

/// The floating-point tensors an expression region loads (they get
/// gradients), in the order it first loads them.
llvm::SmallVector<mlir::Value> getFloatTensorsRead(mlir::Region &expression);

} // namespace attnc::attn

#endif // ATTNC_DIALECT_ATTN_IR_ATTNOPS_H
