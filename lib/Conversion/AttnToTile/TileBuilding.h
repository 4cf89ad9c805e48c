//===- TileBuilding.h - Helpers for strategies that build tile programs -*- C++ -*-===//

#ifndef ATTNC_LIB_TRANSFORMS_TILEBUILDING_H
#define ATTNC_LIB_TRANSFORMS_TILEBUILDING_H

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"
#include "attnc/Conversion/KernelLowering/Operands.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace attnc::lowering {

/// The head dim of a q/k/v operand as a tile dimension: static when the
/// spec fixes it, else dynamic.
inline int64_t tileHeadDim(mlir::Value operand) {
  auto type = llvm::cast<attn::AttnTensorType>(operand.getType());
  return type.getFixedSize(type.getRank() - 1)
      .value_or(mlir::ShapedType::kDynamic);
}

/// The element type of a memref or tile.
inline mlir::Type elementTypeOf(mlir::Value shaped) {
  return llvm::cast<mlir::ShapedType>(shaped.getType()).getElementType();
}

/// A tile of `type` filled with `value`; `rows` and `cols` give the sizes
/// of its dynamic dimensions (unused for static ones).
inline mlir::Value splatTile(mlir::ImplicitLocOpBuilder &b, mlir::Value value,
                             mlir::RankedTensorType type, mlir::Value rows,
                             mlir::Value cols) {
  llvm::SmallVector<mlir::Value> sizes;
  if (type.isDynamicDim(0))
    sizes.push_back(rows);
  if (type.getRank() == 2 && type.isDynamicDim(1))
    sizes.push_back(cols);
  return mlir::tensor::SplatOp::create(b, value, type, sizes);
}

/// `absent()` when the optional tensor `memref` was omitted, else
/// `present()`: a tile read from it. The zeros come first, as the scf.if's
/// then branch, whose buffer the CPU lowering gives the if's result: an
/// omitted tensor has zero sizes, which would size a buffer read from it.
inline mlir::Value ifAbsent(LoweringBuilder &rb, mlir::Value memref,
                            mlir::Type type,
                            llvm::function_ref<mlir::Value()> absent,
                            llvm::function_ref<mlir::Value()> present) {
  mlir::ImplicitLocOpBuilder &b = rb.b;
  mlir::Value omitted = mlir::arith::XOrIOp::create(
      b, rb.isPresent(memref),
      mlir::arith::ConstantIntOp::create(b, b.getI1Type(), 1));
  return rb.ifThen(
      omitted, {type},
      [&]() -> llvm::SmallVector<mlir::Value> { return {absent()}; },
      [&]() -> llvm::SmallVector<mlir::Value> { return {present()}; })[0];
}

/// Makes `gradients`, result arguments of the function being built, the
/// partial copies a backward scatter-adds into: f32 memrefs of their shape
/// and layout, listed in kPartialResultsAttrName (with their own types in
/// kPartialResultTypesAttrName). Returns them.
inline llvm::SmallVector<mlir::Value>
usePartialResults(mlir::ImplicitLocOpBuilder &b, mlir::ValueRange gradients) {
  auto func = llvm::cast<mlir::func::FuncOp>(b.getBlock()->getParentOp());
  llvm::SmallVector<int64_t> arguments;
  llvm::SmallVector<mlir::Attribute> types;
  for (mlir::Value gradient : gradients) {
    auto type = llvm::cast<mlir::MemRefType>(gradient.getType());
    types.push_back(mlir::TypeAttr::get(type));
    gradient.setType(mlir::MemRefType::get(type.getShape(), b.getF32Type(),
                                           type.getLayout()));
    arguments.push_back(llvm::cast<mlir::BlockArgument>(gradient).getArgNumber());
  }
  if (!arguments.empty()) {
    func.setFunctionType(b.getFunctionType(
        func.front().getArgumentTypes(), func.getFunctionType().getResults()));
    func->setAttr(kPartialResultsAttrName, b.getDenseI64ArrayAttr(arguments));
    func->setAttr(kPartialResultTypesAttrName, b.getArrayAttr(types));
  }
  return llvm::to_vector(gradients);
}

/// Builds an attn_tile.map producing `type` from `inputs`: `element` gets
/// the position (row, then column for 2-D) and the inputs' elements.
inline mlir::Value
buildMap(mlir::ImplicitLocOpBuilder &b, mlir::RankedTensorType type,
         mlir::ValueRange inputs,
         llvm::function_ref<mlir::Value(mlir::ValueRange position,
                                        mlir::ValueRange elements)>
             element) {
  auto map = tile::MapOp::create(b, type, inputs);
  mlir::Block *body = new mlir::Block();
  map.getBody().push_back(body);
  for (int64_t d = 0; d < type.getRank(); ++d)
    body->addArgument(b.getIndexType(), b.getLoc());
  for (mlir::Value input : inputs)
    body->addArgument(
        llvm::cast<mlir::RankedTensorType>(input.getType()).getElementType(),
        b.getLoc());
  mlir::OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(body);
  mlir::Value result =
      element(body->getArguments().take_front(type.getRank()),
              body->getArguments().drop_front(type.getRank()));
  tile::YieldOp::create(b, result);
  return map.getResult();
}

/// The grid of a tile program over `heads` heads; marks the function's
/// sequence-offset parameters (kSequenceOffsetsAttrName), from which the
/// GPU's launcher counts the sequences.
inline tile::GridOp createProgramGrid(mlir::ImplicitLocOpBuilder &b,
                                      const AttentionOperands &shape,
                                      mlir::Value heads, int64_t blockRows,
                                      bool perSequence) {
  using namespace mlir;
  auto grid =
      tile::GridOp::create(b, heads, shape.numBatches, blockRows, perSequence);
  if (shape.cuQ) {
    SmallVector<int64_t> offsets = {
        cast<BlockArgument>(shape.cuQ).getArgNumber()};
    if (shape.cuK != shape.cuQ)
      offsets.push_back(cast<BlockArgument>(shape.cuK).getArgNumber());
    grid->getParentOfType<func::FuncOp>()->setAttr(
        kSequenceOffsetsAttrName, b.getDenseI64ArrayAttr(offsets));
  }
  return grid;
}

/// Visits the key blocks that kv_indices[b, h, qb, :] names in its first
/// kv_num_blocks[b, h, qb] entries (a count outside [0, width] and an entry
/// naming none of the `keyBlocks` blocks are reported), in list order, each
/// once, and only those in [blockBegin, blockEnd): state = visit(block,
/// state). Returns the final state.
inline llvm::SmallVector<mlir::Value> visitListedKeyBlocks(
    LoweringBuilder &rb, mlir::Value counts, mlir::Value lists,
    mlir::Value batch, mlir::Value head, mlir::Value queryBlock,
    mlir::Value keyBlocks, mlir::Value blockBegin, mlir::Value blockEnd,
    mlir::ValueRange init,
    llvm::function_ref<llvm::SmallVector<mlir::Value>(mlir::Value,
                                                      mlir::ValueRange)>
        visit) {
  using namespace mlir;
  ImplicitLocOpBuilder &b = rb.b;
  Value zero = rb.index(0);
  Value count =
      rb.checkedBlockCount(counts, batch, head, queryBlock, rb.dim(lists, 3));
  auto entryAt = [&](Value entry) {
    return rb.listedBlock(lists, batch, head, queryBlock, entry);
  };
  SmallVector<Type> types = llvm::to_vector(init.getTypes());
  return llvm::to_vector(rb.loop(
      zero, count, init, [&](Value entry, ValueRange state) {
        Value keyBlock = entryAt(entry);
        rb.checkListedBlock(lists, batch, head, queryBlock, entry, keyBlock,
                            keyBlocks);
        Value inRange = rb.inRange(keyBlock, blockBegin, blockEnd);
        Value repeated = rb.loop(
            zero, entry, {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
            [&](Value earlier, ValueRange seen) {
              Value same = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                                 entryAt(earlier), keyBlock);
              return SmallVector<Value>{arith::OrIOp::create(b, seen[0], same)};
            })[0];
        Value fresh = arith::XOrIOp::create(
            b, repeated, arith::ConstantIntOp::create(b, b.getI1Type(), 1));
        return llvm::to_vector(rb.ifThen(
            arith::AndIOp::create(b, inRange, fresh), types,
            [&] { return visit(keyBlock, state); },
            [&] { return SmallVector<Value>(state.begin(), state.end()); }));
      }));
}

/// The allowed keys of a score tile: key `j` of row `i` is allowed when it
/// exists (j < m), the mask holds for it, seen as the key clamped to
/// `lastKey` (m - 1), and, with `chunkSize`, it is in row i's chunk.
/// Returns that and the clamped key, which the score expression sees too.
struct KeyContext {
  mlir::Value batch, head, n, m, startQ, startK, lastKey, chunkSize;
};
inline std::pair<mlir::Value, mlir::Value>
allowedKey(LoweringBuilder &rb, mlir::Region &mask, const KeyContext &at,
           mlir::Value i, mlir::Value j) {
  using namespace mlir;
  ImplicitLocOpBuilder &b = rb.b;
  Value key = arith::MinUIOp::create(b, j, at.lastKey);
  Value allowed = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, j, at.m),
      rb.inlineExpression(
          mask, {at.batch, at.head, i, key, at.n, at.m, at.startQ, at.startK},
          arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
  if (at.chunkSize)
    allowed = arith::AndIOp::create(
        b, allowed,
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                              arith::DivUIOp::create(b, i, at.chunkSize),
                              arith::DivUIOp::create(b, key, at.chunkSize)));
  return {allowed, key};
}

/// sigmoid(x) = 1 / (1 + exp(-x)).
inline mlir::Value sigmoidOf(LoweringBuilder &rb, mlir::Value x) {
  using namespace mlir;
  ImplicitLocOpBuilder &b = rb.b;
  return arith::DivFOp::create(
      b, rb.f32(1),
      rb.add(rb.f32(1),
             math::ExpOp::create(b, arith::NegFOp::create(b, x))));
}

} // namespace attnc::lowering

#endif // ATTNC_LIB_TRANSFORMS_TILEBUILDING_H
