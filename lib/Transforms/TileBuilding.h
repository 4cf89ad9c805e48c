//===- TileBuilding.h - Helpers for strategies that build tile programs -*- C++ -*-===//

#ifndef ATTNC_LIB_TRANSFORMS_TILEBUILDING_H
#define ATTNC_LIB_TRANSFORMS_TILEBUILDING_H

#include "attnc/Dialect/Tile/IR/TileOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace attnc::lowering {

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

} // namespace attnc::lowering

#endif // ATTNC_LIB_TRANSFORMS_TILEBUILDING_H
