//===- TileBuffers.cpp - Tile buffers on the CPU --------------------------===//
//
// ProgramLowering: building on the current pattern's rewriter, replacing
// ops and moving blocks, and the buffers: sizes at the allocation point,
// allocation (once per call, before the grid's loop), reuse of a buffer
// whose tile dies, the liveness facts reuse relies on, element access and
// copies between buffers.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;

ProgramLowering::OpScope::OpScope(ProgramLowering &lowering, Operation *op,
                                  ConversionPatternRewriter &rewriter)
    : lowering(lowering) {
  lowering.current = &rewriter;
  lowering.b.setLoc(op->getLoc());
  lowering.b.setListener(rewriter.getListener());
  lowering.b.setInsertionPoint(op);
}

ProgramLowering::OpScope::~OpScope() {
  lowering.b.setListener(nullptr);
  lowering.current = nullptr;
}

Value ProgramLowering::remapped(Value value) {
  return current ? current->getRemappedValue(value) : value;
}

void ProgramLowering::replaceOp(Operation *op, ValueRange scalars) {
  SmallVector<SmallVector<Value>> replacements;
  unsigned scalar = 0;
  for (Value result : op->getResults()) {
    if (isTile(result))
      replacements.emplace_back();
    else
      replacements.push_back({scalars[scalar++]});
  }
  assert(scalar == scalars.size() && "one replacement per scalar result");
  current->replaceOpWithMultiple(op, std::move(replacements));
}

void ProgramLowering::moveBody(Block &from, Block *to, Block::iterator at,
                               ArrayRef<Value> args) {
  for (auto [arg, replacement] : llvm::zip_equal(from.getArguments(), args))
    current->replaceAllUsesWith(arg, replacement ? ValueRange(replacement)
                                                 : ValueRange());
  for (Operation &op : llvm::make_early_inc_range(from))
    current->moveOpBefore(&op, to, at);
  movedBlocks[&from] = to;
}

LogicalResult ProgramLowering::error(Operation *op,
                                     const llvm::Twine &message) {
  reported = true;
  return op->emitOpError(message);
}

/// Fills, once at the allocation point, the tiles that the grid reads
/// but that are defined outside it: splats (or the constants that
/// canonicalization makes of them).
LogicalResult ProgramLowering::lowerOuterTiles(tile::GridOp grid) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(allocs);
  WalkResult walk = grid.walk([&](Operation *op) {
    for (Value operand : op->getOperands()) {
      if (!isTile(operand) || tiles.count(operand) ||
          grid->isAncestor(operand.getParentBlock()->getParentOp()))
        continue;
      LogicalResult lowered = failure();
      if (auto constant = operand.getDefiningOp<arith::ConstantOp>())
        lowered = fillConstant(constant);
      else if (auto splat = operand.getDefiningOp<tensor::SplatOp>())
        lowered = fillSplat(splat);
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

void ProgramLowering::freeBuffers() {
  for (Value buffer : allocated)
    memref::DeallocOp::create(b, buffer);
}

/// A size for the allocation point: a constant, or `dynamic`, which must
/// be defined there already.
FailureOr<Value> ProgramLowering::sizeAtAllocPoint(Operation *user,
                                                   int64_t fixed,
                                                   Value dynamic) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(allocs);
  if (!ShapedType::isDynamic(fixed))
    return Value(arith::ConstantIndexOp::create(b, fixed));
  if (!dynamic || !dominatesAllocPoint(dynamic))
    return error(
        user, "has a tile whose dynamic size is not defined outside the grid");
  return dynamic;
}

bool ProgramLowering::dominatesAllocPoint(Value value) {
  if (auto arg = dyn_cast<BlockArgument>(value))
    return arg.getOwner() == allocs->getBlock() ||
           arg.getOwner()->getParentOp()->isAncestor(allocs);
  Operation *def = value.getDefiningOp();
  return def->getBlock() == allocs->getBlock() && def->isBeforeInBlock(allocs);
}

/// The capacity and the row count of a tile with `fixed` rows, or with
/// `dynamic` rows: a size defined outside the grid (a head dim), which is
/// also the capacity, or else a count of at most the grid's block_rows.
std::pair<Value, Value> ProgramLowering::rowsOf(int64_t fixed, Value dynamic) {
  if (ShapedType::isDynamic(fixed) && dominatesAllocPoint(dynamic))
    return {dynamic, dynamic};
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(allocs);
  Value capacity = arith::ConstantIndexOp::create(
      b, ShapedType::isDynamic(fixed) ? blockRows : fixed);
  return {capacity, ShapedType::isDynamic(fixed) ? dynamic : capacity};
}

/// Whether a 2-D tile is best stored transposed: it has static rows and
/// feeds a dot as its transposed rhs (`Q K^T` then runs on vectors along
/// the rows of K), and every other use reads elements one at a time (the
/// transposed lhs of a dot, maps, slices).
bool ProgramLowering::prefersTransposed(Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getRank() != 2 || type.isDynamicDim(0))
    return false;
  bool transposedRhs = false;
  for (OpOperand &use : value.getUses()) {
    if (auto dot = dyn_cast<tile::DotOp>(use.getOwner())) {
      unsigned operand = use.getOperandNumber();
      if (dot.getTransposeRhs() &&
          operand == dot.getRhsMutable().getOperandNumber()) {
        transposedRhs = true;
        continue;
      }
      if (dot.getTransposeLhs() &&
          operand == dot.getLhsMutable().getOperandNumber())
        continue;
      return false;
    }
    if (!isa<tile::MapOp, tile::SliceOp>(use.getOwner()))
      return false;
  }
  return transposedRhs;
}

/// A zero-filled buffer for a tile of `capacity` x `cols` rows (null
/// `cols`: 1-D).
TileBuffer ProgramLowering::allocate(Value capacity, Value cols,
                                     bool transposed) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(allocs);
  Value rows = capacity;
  TileBuffer tile{Value(), rows, cols, capacity, transposed};
  if (!cols) {
    tile.buffer = memref::AllocOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
        ValueRange{rows});
  } else {
    Value outer = transposed ? cols : rows;
    Value inner = rb.paddedToValueGroups(transposed ? rows : cols);
    tile.buffer = memref::AllocOp::create(
        b,
        MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic},
                        b.getF32Type()),
        ValueRange{outer, inner});
    rb.zeroFill(tile.buffer);
  }
  allocated.push_back(tile.buffer);
  return tile;
}

/// The buffer of a new tile `result` shaped like `like`: the buffer of
/// `candidates`' first tile of that shape and storage that dies at `op`
/// and is not one of `readers`' buffers, else a fresh one.
TileBuffer ProgramLowering::bufferFor(Operation *op, Value result,
                                      const TileBuffer &like,
                                      ValueRange candidates,
                                      ValueRange readers) {
  for (Value candidate : candidates) {
    TileBuffer other = tileOf(candidate);
    bool readElsewhere = llvm::any_of(readers, [&](Value reader) {
      return tileOf(reader).buffer == other.buffer;
    });
    if (other.transposed || !isTile(candidate) || readElsewhere ||
        candidate.getType() != result.getType() || !diesAt(candidate, op))
      continue;
    return assign(result, other);
  }
  return assign(result, allocateLike(like));
}

/// The buffer of a tile operand (lowered before its users).
TileBuffer ProgramLowering::tileOf(Value value) {
  auto found = tiles.find(value);
  assert(found != tiles.end() && "tile operands are lowered first");
  return found->second;
}

/// A tile-typed arith.constant: a splat of a static shape.
LogicalResult ProgramLowering::fillConstant(arith::ConstantOp constant) {
  auto type = cast<RankedTensorType>(constant.getType());
  auto splat = dyn_cast<SplatElementsAttr>(constant.getValue());
  if (!splat || !type.hasStaticShape())
    return error(constant, "only splat tiles of a static shape are "
                           "supported on the CPU");
  SmallVector<Value> sizes;
  for (int64_t size : type.getShape())
    sizes.push_back(*sizeAtAllocPoint(constant, size, Value()));
  TileBuffer tile =
      assign(constant,
             allocate(sizes[0], sizes.size() > 1 ? sizes[1] : Value(), false));
  Value value = rb.f32(splat.getSplatValue<APFloat>().convertToDouble());
  forEachElement(tile,
                 [&](Value r, Value c) { storeElement(value, tile, r, c); });
  return success();
}

LogicalResult ProgramLowering::fillSplat(tensor::SplatOp splat) {
  auto type = splat.getType();
  ValueRange dynamicSizes = splat.getDynamicSizes();
  auto dynamicSize = [&](int64_t d) -> Value {
    if (!type.isDynamicDim(d))
      return Value();
    return remapped(dynamicSizes[type.getDynamicDimIndex(d)]);
  };
  auto [capacity, rows] = rowsOf(type.getDimSize(0), dynamicSize(0));
  Value cols;
  if (type.getRank() == 2) {
    FailureOr<Value> size =
        sizeAtAllocPoint(splat, type.getDimSize(1), dynamicSize(1));
    if (failed(size))
      return failure();
    cols = *size;
  }
  TileBuffer tile = allocate(capacity, cols, false);
  tile.rows = rows;
  assign(splat, tile);
  // Zero accumulators are never read: the products start from 0.
  if (isZeroSplat(splat) && llvm::all_of(splat->getUses(), [](OpOperand &use) {
        auto dot = dyn_cast<tile::DotOp>(use.getOwner());
        auto decayDot = dyn_cast<tile::DecayDotOp>(use.getOwner());
        auto combine = dyn_cast<tile::DecayCombineOp>(use.getOwner());
        return (dot && use.get() == dot.getAcc() && use.get() != dot.getLhs() &&
                use.get() != dot.getRhs()) ||
               (decayDot && use.getOperandNumber() ==
                                decayDot.getAccMutable().getOperandNumber()) ||
               (combine && use.getOperandNumber() ==
                               combine.getAccMutable().getOperandNumber());
      })) {
    zeroAccumulators.insert(splat);
    return success();
  }
  Value value = remapped(splat.getInput());
  if (!value.getType().isF32())
    value = arith::ExtFOp::create(b, b.getF32Type(), value);
  forEachElement(tile,
                 [&](Value r, Value c) { storeElement(value, tile, r, c); });
  return success();
}

bool ProgramLowering::isZeroSplat(Value value) {
  if (auto splat = value.getDefiningOp<tensor::SplatOp>()) {
    FloatAttr constant;
    return matchPattern(splat.getInput(), m_Constant(&constant)) &&
           constant.getValue().isPosZero();
  }
  auto dense = value.getDefiningOp<arith::ConstantOp>();
  auto splat = dense ? dyn_cast<SplatElementsAttr>(dense.getValue())
                     : SplatElementsAttr();
  return splat && splat.getSplatValue<APFloat>().isPosZero();
}

/// A fresh buffer for a tile of `like`'s shape and row count.
TileBuffer ProgramLowering::allocateLike(const TileBuffer &like) {
  TileBuffer tile = allocate(like.capacity, like.cols, false);
  tile.rows = like.rows;
  return tile;
}

TileBuffer ProgramLowering::assign(Value value, TileBuffer tile) {
  tiles[value] = tile;
  occupants[tile.buffer].push_back(value);
  return tile;
}

/// The block of `value` in the lowered IR.
static Block *blockOf(Value value,
                      const llvm::DenseMap<Block *, Block *> &movedBlocks) {
  Block *block = value.getParentBlock();
  for (auto moved = movedBlocks.find(block); moved != movedBlocks.end();
       moved = movedBlocks.find(block))
    block = moved->second;
  return block;
}

Operation *ProgramLowering::ownerOf(Value value) {
  return blockOf(value, movedBlocks)->getParentOp();
}

/// Whether `value` is not used after `op`: defined in op's block (or an
/// argument of it) and used only by op and ops before it there.
bool ProgramLowering::diesAt(Value value, Operation *op) {
  Block *block = op->getBlock();
  if (blockOf(value, movedBlocks) != block)
    return false;
  return llvm::all_of(value.getUses(), [&](OpOperand &use) {
    Operation *user = block->findAncestorOpInBlock(*use.getOwner());
    return user && (user == op || user->isBeforeInBlock(op));
  });
}

/// Whether `value` may be used after `op` runs: by an op after it in an
/// enclosing block, or anywhere else inside a loop around it
/// (conservatively).
bool ProgramLowering::usedAfter(Value value, Operation *op) {
  return llvm::any_of(value.getUses(), [&](OpOperand &use) {
    Operation *around = op, *user = nullptr;
    while (around &&
           !(user = around->getBlock()->findAncestorOpInBlock(*use.getOwner())))
      around = around->getParentOp();
    if (!user)
      return true;
    if (user != around)
      return around->isBeforeInBlock(user);
    // An operand of `around` itself is read before its regions run.
    return around != op && use.getOwner() != around;
  });
}

Value ProgramLowering::loadElement(const TileBuffer &tile, Value r, Value c) {
  if (!tile.cols)
    return memref::LoadOp::create(b, tile.buffer, ValueRange{r});
  return memref::LoadOp::create(
      b, tile.buffer, tile.transposed ? ValueRange{c, r} : ValueRange{r, c});
}

void ProgramLowering::storeElement(Value value, const TileBuffer &tile, Value r,
                                   Value c) {
  if (!tile.cols) {
    memref::StoreOp::create(b, value, tile.buffer, ValueRange{r});
    return;
  }
  memref::StoreOp::create(b, value, tile.buffer,
                          tile.transposed ? ValueRange{c, r}
                                          : ValueRange{r, c});
}

/// for c < cols: body(c); body(null) once for a 1-D tile.
void ProgramLowering::forEachColumn(const TileBuffer &tile,
                                    llvm::function_ref<void(Value)> body) {
  if (!tile.cols)
    return body(Value());
  rb.loop(rb.index(0), tile.cols, body);
}

/// for r < rows (and c < cols for 2-D tiles): body(r, c).
void ProgramLowering::forEachElement(
    const TileBuffer &tile, llvm::function_ref<void(Value, Value)> body) {
  rb.loop(rb.index(0), tile.rows,
          [&](Value r) { forEachColumn(tile, [&](Value c) { body(r, c); }); });
}

/// Copies `from` into `to`'s buffer, unless they share it. `yielded` are
/// the other tiles moving at the same time; none may live in `to`.
LogicalResult ProgramLowering::moveTile(Operation *op, const TileBuffer &from,
                                        const TileBuffer &to,
                                        ArrayRef<TileBuffer> yielded) {
  if (from.buffer == to.buffer)
    return success();
  if (from.transposed != to.transposed)
    return error(op, "yields tiles stored differently on the CPU");
  for (const TileBuffer &other : yielded)
    if (other.buffer == to.buffer && &other != &from)
      return error(op, "yields tiles whose CPU buffers overlap");
  forEachElement(from, [&](Value r, Value c) {
    storeElement(loadElement(from, r, c), to, r, c);
  });
  return success();
}
