//===- TileDialect.cpp - Target-neutral tile programs ---------------------===//

#include "attnc/Dialect/Tile/IR/TileDialect.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace attnc::tile;

#include "attnc/Dialect/Tile/IR/TileOpsDialect.cpp.inc"

#include "attnc/Dialect/Tile/IR/TileEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "attnc/Dialect/Tile/IR/TileAttrs.cpp.inc"

void TileDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "attnc/Dialect/Tile/IR/TileOps.cpp.inc"
      >();
  registerAttributes();
}

void TileDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "attnc/Dialect/Tile/IR/TileAttrs.cpp.inc"
      >();
}
