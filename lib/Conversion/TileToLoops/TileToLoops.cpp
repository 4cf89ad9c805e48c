//===- TileToLoops.cpp - Tile programs to loops over buffers for the CPU --===//
//
// Every tile becomes an f32 buffer allocated once per call, every tile op a
// loop nest over it; the grid becomes the loop over the call's share of the
// program instances. See the pass description in Passes.td. This file holds
// the pass and its driver, which lowers a grid op by op; ProgramLowering.h
// says where the lowering of each kind of op lives.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace attnc {
#define GEN_PASS_DEF_TILETOLOOPS
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;

LogicalResult ProgramLowering::lowerBlock(Block &block, IRMapping &mapping) {
  for (Operation &op : block.without_terminator())
    if (failed(lowerOp(&op, mapping)))
      return failure();
  return success();
}

/// Fills, once at the allocation point, the tiles that the grid reads
/// but that are defined outside it: splats (or the constants that
/// canonicalization makes of them).
LogicalResult ProgramLowering::lowerOuterTiles(tile::GridOp grid) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(allocs);
  IRMapping identity;
  WalkResult walk = grid.walk([&](Operation *op) {
    for (Value operand : op->getOperands()) {
      if (!isTile(operand) || tiles.count(operand) ||
          grid->isAncestor(operand.getParentBlock()->getParentOp()))
        continue;
      LogicalResult lowered = failure();
      if (auto constant = operand.getDefiningOp<arith::ConstantOp>())
        lowered = fillConstant(constant);
      else if (auto splat = operand.getDefiningOp<tensor::SplatOp>())
        lowered = lowerSplat(splat, identity);
      else
        lowered = op->emitOpError("reads a tile defined outside the grid "
                                  "that is not a splat");
      if (failed(lowered))
        return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

LogicalResult ProgramLowering::lowerOp(Operation *op, IRMapping &mapping) {
  if (auto load = dyn_cast<tile::LoadOp>(op))
    return lowerLoad(load, mapping);
  if (auto store = dyn_cast<tile::StoreOp>(op))
    return lowerStore(store, mapping);
  if (auto dot = dyn_cast<tile::DotOp>(op))
    return lowerDot(dot);
  if (auto map = dyn_cast<tile::MapOp>(op))
    return lowerMap(map, mapping);
  if (auto reduce = dyn_cast<tile::ReduceOp>(op))
    return lowerReduce(reduce, mapping);
  if (auto insert = dyn_cast<tile::TopKInsertOp>(op))
    return lowerTopKInsert(insert);
  if (auto scan = dyn_cast<tile::ScanOp>(op))
    return lowerScan(scan);
  if (auto slice = dyn_cast<tile::SliceOp>(op))
    return lowerSlice(slice, mapping);
  if (auto transpose = dyn_cast<tile::TransposeOp>(op))
    return lowerTranspose(transpose);
  if (auto decayDot = dyn_cast<tile::DecayDotOp>(op))
    return lowerDecayDot(decayDot);
  if (auto splat = dyn_cast<tensor::SplatOp>(op))
    return lowerSplat(splat, mapping);
  if (auto constant = dyn_cast<arith::ConstantOp>(op);
      constant && isTile(constant))
    return fillConstant(constant);
  if (auto forOp = dyn_cast<scf::ForOp>(op))
    return lowerFor(forOp, mapping);
  if (auto ifOp = dyn_cast<scf::IfOp>(op))
    return lowerIf(ifOp, mapping);
  bool touchesTiles =
      llvm::any_of(op->getOperands(), isTile) ||
      llvm::any_of(op->getResults(), isTile) ||
      op->walk([](Operation *inner) {
          return isa<tile::TileDialect>(inner->getDialect())
                     ? WalkResult::interrupt()
                     : WalkResult::advance();
        }).wasInterrupted();
  if (touchesTiles)
    return op->emitOpError("holds tiles, which the CPU lowering supports "
                           "only in attn_tile ops, tensor.splat, scf.for "
                           "and scf.if");
  b.clone(*op, mapping);
  return success();
}

namespace {

/// Gives `func` the CPU calling convention and replaces its grid by the loop
/// over the call's share of the program instances.
LogicalResult lowerProgram(func::FuncOp func, tile::GridOp grid) {
  MLIRContext *context = func.getContext();
  Location loc = grid.getLoc();
  Type index = IndexType::get(context);
  unsigned numArgs = func.getNumArguments();
  if (failed(func.insertArguments({numArgs, numArgs, numArgs},
                                  {index, index, index}, {}, {loc, loc, loc})))
    return func.emitOpError("could not add the CPU work range arguments");
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(context));
  // Per-sequence grids are (batch, head) items, which the runner assumes
  // when the function names no row block.
  if (!grid.getPerSequence())
    func->setAttr(kCpuRowBlockAttrName,
                  IntegerAttr::get(IntegerType::get(context, 64),
                                   grid.getBlockRows()));
  Block &entry = func.front();
  Value status = entry.getArgument(numArgs - 1);

  ImplicitLocOpBuilder b(loc, &entry, entry.begin());
  memref::StoreOp::create(b, arith::ConstantIntOp::create(b, b.getI64Type(), 0),
                          status,
                          ValueRange{arith::ConstantIndexOp::create(b, 0)});
  b.setInsertionPoint(grid);
  IRMapping params;
  LoweringBuilder rb(b, params, status);
  rb.workBegin = entry.getArgument(numArgs);
  rb.workEnd = entry.getArgument(numArgs + 1);
  rb.workRowBlocks = entry.getArgument(numArgs + 2);
  // Buffers go before this marker, the loop after it.
  Operation *allocPoint = arith::ConstantIndexOp::create(b, 0);
  ProgramLowering lowering(b, rb, allocPoint, grid.getBlockRows());
  LogicalResult lowered = lowering.lowerOuterTiles(grid);
  auto instance = [&](Value batch, Value head, Value queryBlock) {
    IRMapping mapping;
    mapping.map(grid.getQueryBlock(), queryBlock);
    mapping.map(grid.getHead(), head);
    mapping.map(grid.getBatch(), batch);
    if (failed(lowered) ||
        failed(lowering.lowerBlock(grid.getBody().front(), mapping)))
      lowered = failure();
  };
  if (grid.getPerSequence())
    rb.gridLoop(grid.getBatches(), grid.getHeads(), [&](Value batch, Value head) {
      instance(batch, head, rb.index(0));
    });
  else
    rb.rowBlockGridLoop(grid.getBatches(), grid.getHeads(), instance);
  lowering.freeBuffers();
  allocPoint->erase();
  grid.erase();
  // Splats (and constants) of tiles outside the grid, now in buffers.
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(entry)))
    if (isa<arith::ConstantOp, tensor::SplatOp>(op) && op.use_empty() &&
        isTile(op.getResult(0)))
      op.erase();
  return lowered;
}

/// The f32 vector exponentials of maps and decay_dot as MLIR's polynomial,
/// relative error below 2^-22.5, instead of a libm call per lane; scalar
/// ones keep libm. It returns exactly 0 from -87.8 down to -inf (the power
/// of two it builds is 0 there), which rows with no allowed key rely on
/// (TiledSoftmaxTest's "keyless rows").
LogicalResult approximateVectorExps(func::FuncOp func) {
  SmallVector<Operation *> exps;
  func.walk([&](math::ExpOp exp) {
    if (auto type = dyn_cast<VectorType>(exp.getType());
        type && type.getElementType().isF32())
      exps.push_back(exp);
  });
  if (exps.empty())
    return success();
  RewritePatternSet patterns(func.getContext());
  populateMathPolynomialApproximationPatterns(
      patterns, [](StringRef name) { return name == "math.exp"; });
  if (failed(applyOpPatternsGreedily(exps, std::move(patterns))))
    return func.emitOpError("could not expand its vector exponentials");
  return success();
}

struct TileToLoopsPass : public attnc::impl::TileToLoopsBase<TileToLoopsPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      SmallVector<tile::GridOp> grids =
          llvm::to_vector(func.getOps<tile::GridOp>());
      if (grids.empty())
        continue;
      if (grids.size() > 1) {
        func.emitOpError("holds more than one attn_tile.grid");
        return signalPassFailure();
      }
      if (failed(lowerProgram(func, grids.front())) ||
          failed(approximateVectorExps(func)))
        return signalPassFailure();
    }
  }
};

} // namespace
