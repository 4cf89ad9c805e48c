//===- TileOps.h - Target-neutral tile program operations -------*- C++ -*-===//

#ifndef ATTNC_DIALECT_TILE_IR_TILEOPS_H
#define ATTNC_DIALECT_TILE_IR_TILEOPS_H

#include "attnc/Dialect/Tile/IR/TileDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "attnc/Dialect/Tile/IR/TileEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "attnc/Dialect/Tile/IR/TileAttrs.h.inc"

#define GET_OP_CLASSES
#include "attnc/Dialect/Tile/IR/TileOps.h.inc"

#endif // ATTNC_DIALECT_TILE_IR_TILEOPS_H
