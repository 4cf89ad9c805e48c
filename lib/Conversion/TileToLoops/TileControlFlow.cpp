//===- TileControlFlow.cpp - scf.for and scf.if carrying tiles ------------===//
//
// ProgramLowering's lowering of scf.for and scf.if whose operands or
// results are tiles: the tiles travel in buffers (an iteration argument
// takes its initial tile's buffer when that dies, the results of an if
// those of the tiles its then branch yields), only the scalars in the op.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;

LogicalResult ProgramLowering::lowerFor(scf::ForOp forOp, IRMapping &mapping) {
  // Tile iteration arguments take their initial tile's buffer when it
  // dies here, else a copy of it.
  SmallVector<Value> scalarInits;
  SmallVector<TileBuffer> carried;
  for (Value init : forOp.getInitArgs()) {
    if (!isTile(init)) {
      scalarInits.push_back(mapping.lookupOrDefault(init));
      continue;
    }
    TileBuffer tile = tileOf(init);
    if (diesAt(init, forOp) && !tile.transposed) {
      carried.push_back(tile);
      continue;
    }
    TileBuffer copy = allocateLike(tile);
    if (failed(moveTile(forOp, tile, copy, {})))
      return failure();
    carried.push_back(copy);
  }
  LogicalResult status = success();
  auto newFor = scf::ForOp::create(
      b, mapping.lookupOrDefault(forOp.getLowerBound()),
      mapping.lookupOrDefault(forOp.getUpperBound()),
      mapping.lookupOrDefault(forOp.getStep()), scalarInits,
      [&](OpBuilder &nested, Location, Value iv, ValueRange args) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nested.getInsertionBlock(),
                            nested.getInsertionPoint());
        mapping.map(forOp.getInductionVar(), iv);
        unsigned scalar = 0, tiled = 0;
        for (BlockArgument arg : forOp.getRegionIterArgs()) {
          if (isTile(arg))
            assign(arg, carried[tiled++]);
          else
            mapping.map(arg, args[scalar++]);
        }
        if (failed(lowerBlock(*forOp.getBody(), mapping))) {
          status = failure();
          scf::YieldOp::create(b, args);
          return;
        }
        if (failed(yieldInto(
                cast<scf::YieldOp>(forOp.getBody()->getTerminator()),
                mapping, carried)))
          status = failure();
      });
  if (failed(status))
    return failure();
  bindResults(forOp.getResults(), carried, newFor.getResults(), mapping);
  return success();
}

LogicalResult ProgramLowering::lowerIf(scf::IfOp ifOp, IRMapping &mapping) {
  SmallVector<Type> scalarTypes;
  for (Value result : ifOp.getResults())
    if (!isTile(result))
      scalarTypes.push_back(result.getType());
  bool hasElse = !ifOp.getElseRegion().empty();
  auto newIf = scf::IfOp::create(b, scalarTypes,
                                 mapping.lookupOrDefault(ifOp.getCondition()),
                                 /*withElseRegion=*/hasElse);
  // The results live in the buffers of the tiles the then branch yields;
  // the else branch moves its tiles there.
  SmallVector<TileBuffer> results;
  auto lowerBranch = [&](Region &from, Region &to,
                         bool first) -> LogicalResult {
    Block *block = &to.front();
    if (!block->empty() && block->back().hasTrait<OpTrait::IsTerminator>())
      block->back().erase();
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(block);
    if (failed(lowerBlock(from.front(), mapping)))
      return failure();
    auto yield = cast<scf::YieldOp>(from.front().getTerminator());
    if (!first)
      return yieldInto(yield, mapping, results);
    results = yieldedTiles(yield);
    if (hasElse) {
      // The else branch may overwrite these buffers only if what else
      // lives in them is dead after the if, also in later iterations of
      // the loop (or grid) around it.
      Operation *repeats = ifOp->getParentOp();
      while (!isa<scf::ForOp, tile::GridOp>(repeats))
        repeats = repeats->getParentOp();
      for (const TileBuffer &tile : results)
        for (Value occupant : occupants[tile.buffer]) {
          Operation *owner = occupant.getParentBlock()->getParentOp();
          if (ifOp->isAncestor(owner))
            continue;
          if (!repeats->isAncestor(owner) || usedAfter(occupant, ifOp))
            return ifOp.emitOpError(
                "yields a tile whose CPU buffer is still in use after it");
        }
    }
    return yieldInto(yield, mapping, {});
  };
  if (failed(lowerBranch(ifOp.getThenRegion(), newIf.getThenRegion(), true)))
    return failure();
  if (hasElse &&
      failed(lowerBranch(ifOp.getElseRegion(), newIf.getElseRegion(), false)))
    return failure();
  for (const TileBuffer &tile : results)
    if (Operation *def = tile.rows.getDefiningOp();
        def && newIf->isAncestor(def))
      return ifOp.emitOpError("yields a tile whose row count is computed "
                              "inside it");
  bindResults(ifOp.getResults(), results, newIf.getResults(), mapping);
  return success();
}

SmallVector<TileBuffer> ProgramLowering::yieldedTiles(scf::YieldOp yield) {
  SmallVector<TileBuffer> yielded;
  for (Value value : yield.getOperands())
    if (isTile(value))
      yielded.push_back(tileOf(value));
  return yielded;
}

/// Ends a lowered loop body or branch: an scf.yield of the scalars, after
/// moving the yielded tiles into `into` (the carried or result buffers;
/// empty: they stay where they are).
LogicalResult ProgramLowering::yieldInto(scf::YieldOp yield,
                                         IRMapping &mapping,
                                         ArrayRef<TileBuffer> into) {
  SmallVector<TileBuffer> yielded = yieldedTiles(yield);
  SmallVector<Value> scalars;
  LogicalResult status = success();
  unsigned tiled = 0;
  for (Value value : yield.getOperands()) {
    if (!isTile(value)) {
      scalars.push_back(mapping.lookupOrDefault(value));
      continue;
    }
    if (!into.empty() &&
        failed(moveTile(yield, yielded[tiled], into[tiled], yielded)))
      status = failure();
    ++tiled;
  }
  scf::YieldOp::create(b, scalars);
  return status;
}

/// Maps the results of a lowered scf op: tiles to `buffers`, scalars to
/// `lowered`, each in order.
void ProgramLowering::bindResults(ValueRange results,
                                  ArrayRef<TileBuffer> buffers,
                                  ValueRange lowered, IRMapping &mapping) {
  unsigned scalar = 0, tiled = 0;
  for (Value result : results) {
    if (isTile(result))
      assign(result, buffers[tiled++]);
    else
      mapping.map(result, lowered[scalar++]);
  }
}
