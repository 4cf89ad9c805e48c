//===- TileToLoops.cpp - Tile programs to loops over buffers for the CPU --===//
//
// Every tile becomes an f32 buffer allocated once per call, every tile op a
// loop nest over it; the grid becomes the loop over the call's share of the
// program instances. See the pass description in Passes.td. This file holds
// the pass, which gives the function its calling convention and runs the
// conversion, and the patterns of the grid; ProgramLowering.h says where
// the pattern of each other kind of op lives.
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

namespace {

/// The grid: the loop over the call's share of the program instances,
/// with the body moved into it.
struct GridLowering : TileLowering<tile::GridOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::GridOp grid) const override {
    LoweringBuilder &rb = lowering.rb;
    Block &body = grid.getBody().front();
    auto instance = [&](Value batch, Value head, Value queryBlock) {
      OpBuilder &b = lowering.b;
      lowering.moveBody(body, b.getInsertionBlock(), b.getInsertionPoint(),
                        {queryBlock, head, batch});
    };
    Value batches = lowering.remapped(grid.getBatches());
    Value heads = lowering.remapped(grid.getHeads());
    if (grid.getPerSequence())
      rb.gridLoop(batches, heads, [&](Value batch, Value head) {
        instance(batch, head, rb.index(0));
      });
    else
      rb.rowBlockGridLoop(batches, heads, instance);
    lowering.workLoop = &*std::prev(lowering.b.getInsertionPoint());
    lowering.replaceOp(grid, {});
    return success();
  }
};

/// The end of the grid's body, moved into the loop (those of maps go with
/// their maps).
struct GridYieldLowering : TileLowering<tile::YieldOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::YieldOp yield) const override {
    lowering.rewriter().eraseOp(yield);
    return success();
  }
};

/// Ops that hold tiles but that no pattern lowers, reported before the
/// conversion starts.
LogicalResult checkSupported(tile::GridOp grid) {
  WalkResult walk = grid.getBody().walk([&](Operation *op) {
    if (isa<tile::MapOp>(op)) // its body is evaluated per element
      return WalkResult::skip();
    if (isa<tile::TileDialect>(op->getDialect()) ||
        isa<tensor::SplatOp, scf::ForOp, scf::IfOp, scf::YieldOp>(op) ||
        (isa<arith::ConstantOp>(op) && isTile(op->getResult(0))))
      return WalkResult::advance();
    if (llvm::any_of(op->getOperands(), isTile) ||
        llvm::any_of(op->getResults(), isTile)) {
      op->emitOpError("holds tiles, which the CPU lowering supports only in "
                      "attn_tile ops, tensor.splat, scf.for and scf.if");
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

/// Whether `op` stays as it is: it neither is a tile op nor holds tiles.
bool isLegal(Operation *op) {
  return !isa<tile::TileDialect>(op->getDialect()) &&
         llvm::none_of(op->getOperands(), isTile) &&
         llvm::none_of(op->getResults(), isTile);
}

/// Gives `func` the CPU calling convention and lowers its grid to the loop
/// over the call's share of the program instances.
LogicalResult lowerProgram(func::FuncOp func, tile::GridOp grid) {
  MLIRContext *context = func.getContext();
  Location loc = grid.getLoc();
  if (failed(checkSupported(grid)))
    return failure();
  Type index = IndexType::get(context);
  unsigned numArgs = func.getNumArguments();
  if (failed(func.insertArguments({numArgs, numArgs, numArgs},
                                  {index, index, index}, {}, {loc, loc, loc})))
    return func.emitOpError("could not add the CPU work range arguments");
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(context));
  // Per-sequence grids are (batch, head) items, which the runner assumes
  // when the function names no row block.
  if (!grid.getPerSequence())
    func->setAttr(
        kCpuRowBlockAttrName,
        IntegerAttr::get(IntegerType::get(context, 64), grid.getBlockRows()));
  Block &entry = func.front();
  Value status = entry.getArgument(numArgs - 1);

  ProgramLowering lowering(loc, context, status, grid.getBlockRows());
  ImplicitLocOpBuilder &b = lowering.b;
  LoweringBuilder &rb = lowering.rb;
  b.setInsertionPointToStart(&entry);
  memref::StoreOp::create(b, arith::ConstantIntOp::create(b, b.getI64Type(), 0),
                          status,
                          ValueRange{arith::ConstantIndexOp::create(b, 0)});
  b.setInsertionPoint(grid);
  rb.workBegin = entry.getArgument(numArgs);
  rb.workEnd = entry.getArgument(numArgs + 1);
  rb.workRowBlocks = entry.getArgument(numArgs + 2);
  // Buffers go before this marker, the loop after it.
  Operation *allocPoint = arith::ConstantIndexOp::create(b, 0);
  lowering.setAllocPoint(allocPoint);
  if (failed(lowering.lowerOuterTiles(grid)))
    return failure();

  ConversionTarget target(*context);
  target.markUnknownOpDynamicallyLegal(isLegal);
  RewritePatternSet patterns(context);
  patterns.add<GridLowering, GridYieldLowering>(lowering, context);
  populateTileOpLoweringPatterns(patterns, lowering);
  populateTileDotLoweringPatterns(patterns, lowering);
  populateTileMapLoweringPatterns(patterns, lowering);
  populateTileControlFlowLoweringPatterns(patterns, lowering);
  ConversionConfig config;
  config.foldingMode = DialectConversionFoldingMode::Never;
  {
    // A pattern that reports its own error makes the driver's "failed to
    // legalize" redundant.
    ScopedDiagnosticHandler redundant(context, [&](Diagnostic &diagnostic) {
      return success(
          lowering.reportedError() &&
          StringRef(diagnostic.str()).starts_with("failed to legalize"));
    });
    if (failed(
            applyPartialConversion(func, target, std::move(patterns), config)))
      return failure();
  }
  b.setInsertionPointAfter(lowering.workLoop);
  lowering.freeBuffers();
  allocPoint->erase();
  return success();
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
