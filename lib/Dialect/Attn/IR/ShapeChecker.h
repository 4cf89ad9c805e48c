//===- ShapeChecker.h - Shared verification of attn ops ---------*- C++ -*-===//
//
// What AttnOps.cpp and AttnLinearOps.cpp share to verify the family ops:
// the shape rules of their tensors and the form of expression regions.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_DIALECT_ATTN_IR_SHAPECHECKER_H
#define ATTNC_LIB_DIALECT_ATTN_IR_SHAPECHECKER_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/OpImplementation.h"

namespace attnc::attn::detail {

using namespace mlir;

/// Checks tensor operands and results against the shape rules of a family op
/// and reports violations naming the tensor and the rule.
class ShapeChecker {
public:
  ShapeChecker(Operation *op, Layout layout)
      : op(op), layout(layout), dims(getLayoutDims(layout)) {}

  LogicalResult rank(StringRef name, AttnTensorType type, unsigned expected,
                     StringRef shape) {
    if (type.getRank() == expected)
      return success();
    return op->emitOpError() << name << " must have rank " << expected << " "
                             << shape << ", got " << type;
  }

  LogicalResult floatElements(StringRef name, AttnTensorType type) {
    if (isa<FloatType>(type.getElementType()))
      return success();
    return op->emitOpError()
           << name << " must have f32, f16 or bf16 elements, got "
           << type.getElementType();
  }

  LogicalResult elements(StringRef name, AttnTensorType type, Type expected) {
    if (type.getElementType() == expected)
      return success();
    return op->emitOpError() << name << " must have " << expected
                             << " elements, got " << type.getElementType();
  }

  /// Dimension `index` of `lhs` must equal dimension `otherIndex` of `rhs`.
  LogicalResult same(StringRef lhsName, AttnTensorType lhs, unsigned index,
                     StringRef rhsName, AttnTensorType rhs, unsigned otherIndex,
                     StringRef what) {
    if (!lhs.conflictingDim(index, rhs, otherIndex))
      return success();
    return op->emitOpError()
           << "the " << what << " of " << lhsName << " ("
           << lhs.dimString(index) << ") must equal the " << what << " of "
           << rhsName << " (" << rhs.dimString(otherIndex) << ")";
  }

  /// q, k, v: ranks, element types and the dimensions they share.
  LogicalResult qkv(AttnTensorType q, AttnTensorType k, AttnTensorType v) {
    StringRef shape = layoutShape();
    for (auto [name, type] : {std::pair{"q", q}, {"k", k}, {"v", v}})
      if (failed(rank(name, type, dims.rank, shape)) ||
          failed(floatElements(name, type)))
        return failure();
    if (q.getElementType() != k.getElementType() ||
        q.getElementType() != v.getElementType())
      return op->emitOpError("q, k and v must share one element type, got ")
             << q.getElementType() << ", " << k.getElementType() << " and "
             << v.getElementType();
    if (dims.batch >= 0 &&
        (failed(same("k", k, dims.batch, "q", q, dims.batch, "batch size")) ||
         failed(same("v", v, dims.batch, "k", k, dims.batch, "batch size"))))
      return failure();
    if (failed(same("k", k, dims.feature, "q", q, dims.feature, "head dim")) ||
        failed(same("v", v, dims.head, "k", k, dims.head, "head count")) ||
        failed(same("v", v, dims.seq, "k", k, dims.seq, "sequence length")))
      return failure();
    std::optional<int64_t> hq = q.getFixedSize(dims.head),
                           hk = k.getFixedSize(dims.head);
    if (hq && hk && (*hk == 0 || *hq % *hk != 0))
      return op->emitOpError("q has ")
             << *hq << " heads, which is not a multiple of the " << *hk
             << " kv heads of k and v (GQA needs Hq = G * Hk)";
    return success();
  }

  /// The output: q's shape with v's head dim.
  LogicalResult output(AttnTensorType out, AttnTensorType q, AttnTensorType v) {
    if (failed(rank("the output", out, dims.rank, layoutShape())) ||
        failed(floatElements("the output", out)))
      return failure();
    for (int dim : {dims.batch, dims.head, dims.seq})
      if (dim >= 0 &&
          failed(same("the output", out, dim, "q", q, dim, dimName(dim))))
        return failure();
    return same("the output", out, dims.feature, "v", v, dims.feature,
                "head dim");
  }

  /// A top-k selection: f32, lse's dims (from q) and `topk` entries.
  LogicalResult topkBlocks(AttnTensorType blocks, AttnTensorType q,
                           int64_t topk) {
    StringRef name = "topk_blocks";
    bool packed = layout == Layout::thd;
    if (failed(elements(name, blocks, Float32Type::get(op->getContext()))) ||
        failed(rank(name, blocks, packed ? 3 : 4,
                    packed ? "[heads, total_tokens, topk]"
                           : "[batch, heads, seq, topk]")))
      return failure();
    SmallVector<std::pair<int, StringRef>> shared = {
        {dims.head, "head count"}, {dims.seq, "sequence length"}};
    if (!packed)
      shared.insert(shared.begin(), {dims.batch, "batch size"});
    for (auto [index, dimAndName] : llvm::enumerate(shared))
      if (failed(same(name, blocks, index, "q", q, dimAndName.first,
                      dimAndName.second)))
        return failure();
    std::optional<int64_t> entries = blocks.getFixedSize(blocks.getRank() - 1);
    if (entries == topk)
      return success();
    return op->emitOpError()
           << name << " must have " << topk << " entries per row (topk), got "
           << blocks.dimString(blocks.getRank() - 1);
  }

  /// cu_seqlens-style offsets: rank-1 i32, present exactly when packed.
  LogicalResult offsets(StringRef name, Value offsets, bool required) {
    if (!offsets) {
      if (required)
        return op->emitOpError("layout thd (packed varlen) needs ") << name;
      return success();
    }
    if (layout != Layout::thd)
      return op->emitOpError() << name << " is only meaningful with layout thd";
    auto type = cast<AttnTensorType>(offsets.getType());
    return failure(
        failed(rank(name, type, 1, "[num_seqs + 1]")) ||
        failed(elements(name, type, IntegerType::get(op->getContext(), 32))));
  }

  StringRef layoutShape() const {
    switch (layout) {
    case Layout::bhnd:
      return "[batch, heads, seq, dim]";
    case Layout::bnhd:
      return "[batch, seq, heads, dim]";
    case Layout::thd:
      return "[total_tokens, heads, dim]";
    }
    llvm_unreachable("unknown layout");
  }

  StringRef dimName(int dim) const {
    if (dim == dims.batch)
      return "batch size";
    if (dim == dims.head)
      return "head count";
    if (dim == dims.seq)
      return "sequence length";
    return "head dim";
  }

  Operation *op;
  Layout layout;
  LayoutDims dims;
};

/// Checks that an expression region is empty or has one block with the given
/// argument types, only scalar arith/math/attn.load ops, and yields `result`.
LogicalResult verifyExpressionRegion(Operation *op, Region &region,
                                     StringRef name, ArrayRef<Type> argTypes,
                                     Type result);

/// Names a region's arguments for the printer.
void nameRegionArguments(Region &region, ArrayRef<StringRef> names,
                         OpAsmSetValueNameFn setNameFn);

} // namespace attnc::attn::detail

#endif // ATTNC_LIB_DIALECT_ATTN_IR_SHAPECHECKER_H
