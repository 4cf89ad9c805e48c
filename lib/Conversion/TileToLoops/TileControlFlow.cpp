//===- TileControlFlow.cpp - scf.for and scf.if carrying tiles ------------===//
//
// The patterns lowering scf.for and scf.if whose operands or results are
// tiles, and their scf.yield: the tiles travel in buffers (an iteration
// argument takes its initial tile's buffer when that dies, the results of
// an if those of the tiles its then branch yields), only the scalars in
// the op. The body moves into the new op; each yield moves its tiles where
// the plan its op left says.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;

namespace {

SmallVector<TileBuffer> yieldedTiles(ProgramLowering &lowering,
                                     scf::YieldOp yield) {
  SmallVector<TileBuffer> yielded;
  for (Value value : yield.getOperands())
    if (isTile(value))
      yielded.push_back(lowering.tileOf(value));
  return yielded;
}

/// Assigns the tile results of `op` their buffers, in order.
void bindTileResults(ProgramLowering &lowering, Operation *op,
                     ArrayRef<TileBuffer> buffers) {
  unsigned tiled = 0;
  for (Value result : op->getResults())
    if (isTile(result))
      lowering.assign(result, buffers[tiled++]);
}

struct ForLowering : TileLowering<scf::ForOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(scf::ForOp forOp) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    // Tile iteration arguments take their initial tile's buffer when it
    // dies here, else a copy of it.
    SmallVector<Value> scalarInits;
    SmallVector<TileBuffer> carried;
    for (Value init : forOp.getInitArgs()) {
      if (!isTile(init)) {
        scalarInits.push_back(lowering.remapped(init));
        continue;
      }
      TileBuffer tile = lowering.tileOf(init);
      if (lowering.diesAt(init, forOp) && !tile.transposed) {
        carried.push_back(tile);
        continue;
      }
      TileBuffer copy = lowering.allocateLike(tile);
      if (failed(lowering.moveTile(forOp, tile, copy, {})))
        return failure();
      carried.push_back(copy);
    }
    auto newFor =
        scf::ForOp::create(b, lowering.remapped(forOp.getLowerBound()),
                           lowering.remapped(forOp.getUpperBound()),
                           lowering.remapped(forOp.getStep()), scalarInits,
                           [](OpBuilder &, Location, Value, ValueRange) {});
    Block *body = newFor.getBody();
    SmallVector<Value> args{newFor.getInductionVar()};
    unsigned scalar = 0, tiled = 0;
    for (BlockArgument arg : forOp.getRegionIterArgs()) {
      if (isTile(arg)) {
        lowering.assign(arg, carried[tiled++]);
        args.push_back(Value());
      } else {
        args.push_back(newFor.getRegionIterArgs()[scalar++]);
      }
    }
    lowering.yieldPlans[forOp.getBody()->getTerminator()] = {YieldPlan::Into,
                                                             carried};
    lowering.moveBody(*forOp.getBody(), body, body->end(), args);
    bindTileResults(lowering, forOp, carried);
    lowering.replaceOp(forOp, newFor.getResults());
    return success();
  }
};

struct IfLowering : TileLowering<scf::IfOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(scf::IfOp ifOp) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    ConversionPatternRewriter &rewriter = lowering.rewriter();
    SmallVector<Type> scalarTypes;
    for (Value result : ifOp.getResults())
      if (!isTile(result))
        scalarTypes.push_back(result.getType());
    bool hasElse = !ifOp.getElseRegion().empty();
    auto newIf = scf::IfOp::create(b, scalarTypes,
                                   lowering.remapped(ifOp.getCondition()),
                                   /*withElseRegion=*/hasElse);
    // The results live in the buffers of the tiles the then branch yields;
    // the else branch moves its tiles there.
    auto moveBranch = [&](Region &from, Region &to, bool first) {
      Block *block = &to.front();
      if (!block->empty() && block->back().hasTrait<OpTrait::IsTerminator>())
        rewriter.eraseOp(&block->back());
      YieldPlan plan;
      plan.kind = first ? YieldPlan::ThenResults : YieldPlan::Into;
      plan.branchOf = newIf;
      plan.original = ifOp;
      plan.last = first != hasElse;
      lowering.yieldPlans[from.front().getTerminator()] = plan;
      lowering.moveBody(from.front(), block, block->end(), {});
    };
    moveBranch(ifOp.getThenRegion(), newIf.getThenRegion(), true);
    if (hasElse)
      moveBranch(ifOp.getElseRegion(), newIf.getElseRegion(), false);
    lowering.replaceOp(ifOp, newIf.getResults());
    return success();
  }
};

/// Ends a lowered loop body or branch: an scf.yield of the scalars, after
/// moving the yielded tiles where the plan says.
struct YieldLowering : TileLowering<scf::YieldOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(scf::YieldOp yield) const override {
    auto found = lowering.yieldPlans.find(yield);
    if (found == lowering.yieldPlans.end())
      return lowering.error(yield, "yields tiles from an op that is not an "
                                   "scf.for or scf.if");
    YieldPlan plan = found->second;
    SmallVector<TileBuffer> yielded = yieldedTiles(lowering, yield);
    if (plan.kind == YieldPlan::ThenResults) {
      if (failed(checkThenBuffers(plan, yielded)))
        return failure();
      bindTileResults(lowering, plan.original, yielded);
      // The else branch moves its tiles into these.
      for (auto &[op, other] : lowering.yieldPlans)
        if (other.original == plan.original && other.kind == YieldPlan::Into)
          other.into = yielded;
    } else {
      for (size_t tiled = 0; tiled < yielded.size(); ++tiled)
        if (failed(lowering.moveTile(yield, yielded[tiled], plan.into[tiled],
                                     yielded)))
          return failure();
    }
    SmallVector<Value> scalars;
    for (Value value : yield.getOperands())
      if (!isTile(value))
        scalars.push_back(lowering.remapped(value));
    scf::YieldOp::create(lowering.b, scalars);
    lowering.rewriter().eraseOp(yield);
    if (!plan.last || !plan.original)
      return success();
    ArrayRef<TileBuffer> results =
        plan.kind == YieldPlan::ThenResults ? ArrayRef(yielded) : plan.into;
    for (const TileBuffer &tile : results) {
      Operation *def = tile.rows.getDefiningOp();
      if (def && plan.branchOf->isAncestor(def))
        return lowering.error(plan.original, "yields a tile whose row "
                                             "count is computed inside it");
    }
    return success();
  }

  /// The else branch may overwrite the buffers the then branch yields only
  /// if what else lives in them is dead after the if, also in later
  /// iterations of the loop around it.
  LogicalResult checkThenBuffers(const YieldPlan &plan,
                                 ArrayRef<TileBuffer> yielded) const {
    if (plan.last)
      return success();
    Operation *ifOp = plan.branchOf;
    Operation *repeats = ifOp->getParentOp();
    while (!isa<scf::ForOp>(repeats))
      repeats = repeats->getParentOp();
    for (const TileBuffer &tile : yielded)
      for (Value occupant : lowering.occupantsOf(tile.buffer)) {
        Operation *owner = lowering.ownerOf(occupant);
        if (ifOp->isAncestor(owner))
          continue;
        if (!repeats->isAncestor(owner) ||
            ProgramLowering::usedAfter(occupant, ifOp))
          return lowering.error(plan.original, "yields a tile whose CPU "
                                               "buffer is still in use after "
                                               "it");
      }
    return success();
  }
};

} // namespace

void attnc::lowering::tile_to_loops::populateTileControlFlowLoweringPatterns(
    RewritePatternSet &patterns, ProgramLowering &lowering) {
  patterns.add<ForLowering, IfLowering, YieldLowering>(lowering,
                                                       patterns.getContext());
}
