//===- TileDialect.h - Target-neutral tile programs -------------*- C++ -*-===//

#ifndef ATTNC_DIALECT_TILE_IR_TILEDIALECT_H
#define ATTNC_DIALECT_TILE_IR_TILEDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dialect.h"

#include "attnc/Dialect/Tile/IR/TileOpsDialect.h.inc"

#endif // ATTNC_DIALECT_TILE_IR_TILEDIALECT_H
