//===- AttnDialect.cpp - The attention dialect ----------------------------===//

#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace attnc::attn;

#include "attnc/Dialect/Attn/IR/AttnOpsDialect.cpp.inc"

#include "attnc/Dialect/Attn/IR/AttnEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "attnc/Dialect/Attn/IR/AttnAttrs.cpp.inc"

void AttnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "attnc/Dialect/Attn/IR/AttnOps.cpp.inc"
      >();
  registerTypes();
  registerAttributes();
}

void AttnDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "attnc/Dialect/Attn/IR/AttnAttrs.cpp.inc"
      >();
}

LogicalResult
LaunchAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                   int64_t threads, int64_t sharedBytes, ArrayAttr grid,
                   DenseI64ArrayAttr, DenseI64ArrayAttr, int64_t, int64_t,
                   DenseI64ArrayAttr segments, int64_t segmentStateBytes,
                   UnitAttr, UnitAttr, DenseI64ArrayAttr, DenseI64ArrayAttr) {
  if (threads <= 0 || threads % 32 || sharedBytes < 0 || segmentStateBytes < 0)
    return emitError() << "needs whole warps of threads and non-negative "
                          "byte counts";
  auto isTerm = [](Attribute term) {
    auto values = dyn_cast<DenseI64ArrayAttr>(term);
    return values && values.size() == 4;
  };
  if (grid.size() != 3 || !llvm::all_of(grid, isTerm))
    return emitError() << "needs a grid of three [param, dim, divisor, "
                          "minus] entries";
  if (segments && !isTerm(segments))
    return emitError() << "needs segments as one [param, dim, divisor, "
                          "minus] entry";
  return success();
}
