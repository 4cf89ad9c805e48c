//===- TileToLoops.cpp - Tile programs to loops over buffers for the CPU --===//
//
// Every tile becomes an f32 buffer allocated once per call, every tile op a
// loop nest over it; the grid becomes the loop over the call's share of the
// program instances. See the pass description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/Support/MathExtras.h"

namespace attnc {
#define GEN_PASS_DEF_TILETOLOOPS
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
namespace tile = attnc::tile;
namespace vector = mlir::vector;

namespace {

bool isTile(Value value) { return isa<RankedTensorType>(value.getType()); }

/// Where a tile lives on the CPU: an f32 buffer of `capacity` x `cols` (a
/// 1-D tile has no `cols`), stored row-major with the row length padded to
/// whole vector groups, or transposed (`cols` x padded `capacity`). The
/// tile has `rows` rows: `capacity` for a static row count, else the
/// run-time count (at most the grid's block_rows, which is the capacity).
/// `capacity` and `cols` are defined at the allocation point, `rows` where
/// the tile is.
struct TileBuffer {
  Value buffer;
  Value rows, cols, capacity;
  bool transposed = false;
};

/// A map body evaluated for kLanes columns at once: values that depend on
/// the column are vectors, the others stay scalars (broadcast where a vector
/// op needs them); scf.if evaluates both branches and selects.
class VectorMapBody {
public:
  VectorMapBody(ImplicitLocOpBuilder &b, const IRMapping &outside)
      : b(b), scalars(outside) {}

  VectorType vectorOf(Type element) {
    return VectorType::get({LoweringBuilder::kLanes}, element);
  }
  void bind(Value from, Value scalar) { scalars.map(from, scalar); }
  void bindVector(Value from, Value vector) { vectors[from] = vector; }

  /// The vector of `value` (a broadcast if it is the same for every lane).
  Value vector(Value value) {
    if (Value found = vectors.lookup(value))
      return found;
    Value scalar = scalars.lookupOrDefault(value);
    Value &broadcast = broadcasts[scalar];
    if (!broadcast)
      broadcast =
          vector::BroadcastOp::create(b, vectorOf(scalar.getType()), scalar);
    return broadcast;
  }

  void emit(Block &block) {
    for (Operation &op : block.without_terminator()) {
      auto varies = [&](Value value) { return vectors.count(value) != 0; };
      if (auto ifOp = dyn_cast<scf::IfOp>(op)) {
        emit(ifOp.getThenRegion().front());
        emit(ifOp.getElseRegion().front());
        auto yields = [](Region &region) {
          return cast<scf::YieldOp>(region.front().getTerminator())
              .getOperands();
        };
        for (auto [result, onTrue, onFalse] :
             llvm::zip_equal(ifOp.getResults(), yields(ifOp.getThenRegion()),
                             yields(ifOp.getElseRegion()))) {
          if (!varies(ifOp.getCondition()) && !varies(onTrue) &&
              !varies(onFalse)) {
            scalars.map(result,
                        arith::SelectOp::create(
                            b, scalars.lookupOrDefault(ifOp.getCondition()),
                            scalars.lookupOrDefault(onTrue),
                            scalars.lookupOrDefault(onFalse)));
            continue;
          }
          vectors[result] = arith::SelectOp::create(
              b, vector(ifOp.getCondition()), vector(onTrue), vector(onFalse));
        }
        continue;
      }
      if (llvm::none_of(op.getOperands(), varies)) {
        b.clone(op, scalars);
        continue;
      }
      OperationState state(b.getLoc(), op.getName());
      for (Value operand : op.getOperands())
        state.addOperands(vector(operand));
      for (Type type : op.getResultTypes())
        state.addTypes(vectorOf(type));
      state.addAttributes(op.getAttrs());
      Operation *vectorOp = b.create(state);
      for (auto [result, vectorResult] :
           llvm::zip_equal(op.getResults(), vectorOp->getResults()))
        vectors[result] = vectorResult;
    }
  }

private:
  ImplicitLocOpBuilder &b;
  IRMapping scalars;
  DenseMap<Value, Value> vectors, broadcasts;
};

/// Lowers one grid and everything in it; the buffers are allocated at
/// `allocPoint` (before the grid's loop) and freed after it.
class ProgramLowering {
public:
  ProgramLowering(ImplicitLocOpBuilder &b, LoweringBuilder &rb,
                  Operation *allocPoint, int64_t blockRows)
      : b(b), rb(rb), allocs(allocPoint), blockRows(blockRows) {}

  LogicalResult lowerBlock(Block &block, IRMapping &mapping) {
    for (Operation &op : block.without_terminator())
      if (failed(lowerOp(&op, mapping)))
        return failure();
    return success();
  }

  void freeBuffers() {
    for (Value buffer : allocated)
      memref::DeallocOp::create(b, buffer);
  }

  /// Fills, once at the allocation point, the tiles that the grid reads
  /// but that are defined outside it: splats (or the constants that
  /// canonicalization makes of them).
  LogicalResult lowerOuterTiles(tile::GridOp grid) {
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

private:
  LogicalResult lowerOp(Operation *op, IRMapping &mapping) {
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

  //===--------------------------------------------------------------------===//
  // Buffers
  //===--------------------------------------------------------------------===//

  /// A size for the allocation point: a constant, or `dynamic`, which must
  /// be defined there already.
  FailureOr<Value> sizeAtAllocPoint(Operation *user, int64_t fixed,
                                    Value dynamic) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(allocs);
    if (!ShapedType::isDynamic(fixed))
      return Value(arith::ConstantIndexOp::create(b, fixed));
    if (!dynamic || !dominatesAllocPoint(dynamic))
      return user->emitOpError(
          "has a tile whose dynamic size is not defined outside the grid");
    return dynamic;
  }

  bool dominatesAllocPoint(Value value) {
    if (auto arg = dyn_cast<BlockArgument>(value))
      return arg.getOwner() == allocs->getBlock() ||
             arg.getOwner()->getParentOp()->isAncestor(allocs);
    Operation *def = value.getDefiningOp();
    return def->getBlock() == allocs->getBlock() &&
           def->isBeforeInBlock(allocs);
  }

  /// The capacity and the row count of a tile with `fixed` rows, or with
  /// `dynamic` rows: a size defined outside the grid (a head dim), which is
  /// also the capacity, or else a count of at most the grid's block_rows.
  std::pair<Value, Value> rowsOf(int64_t fixed, Value dynamic) {
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
  static bool prefersTransposed(Value value) {
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
  TileBuffer allocate(Value capacity, Value cols, bool transposed) {
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
  TileBuffer bufferFor(Operation *op, Value result, const TileBuffer &like,
                       ValueRange candidates, ValueRange readers = {}) {
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
  TileBuffer tileOf(Value value) {
    auto found = tiles.find(value);
    assert(found != tiles.end() && "tile operands are lowered first");
    return found->second;
  }

  /// A tile-typed arith.constant: a splat of a static shape.
  LogicalResult fillConstant(arith::ConstantOp constant) {
    auto type = cast<RankedTensorType>(constant.getType());
    auto splat = dyn_cast<SplatElementsAttr>(constant.getValue());
    if (!splat || !type.hasStaticShape())
      return constant.emitOpError("only splat tiles of a static shape are "
                                  "supported on the CPU");
    SmallVector<Value> sizes;
    for (int64_t size : type.getShape())
      sizes.push_back(*sizeAtAllocPoint(constant, size, Value()));
    TileBuffer tile = assign(
        constant, allocate(sizes[0], sizes.size() > 1 ? sizes[1] : Value(),
                           false));
    Value value = rb.f32(splat.getSplatValue<APFloat>().convertToDouble());
    forEachElement(tile,
                   [&](Value r, Value c) { storeElement(value, tile, r, c); });
    return success();
  }

  /// A fresh buffer for a tile of `like`'s shape and row count.
  TileBuffer allocateLike(const TileBuffer &like) {
    TileBuffer tile = allocate(like.capacity, like.cols, false);
    tile.rows = like.rows;
    return tile;
  }

  TileBuffer assign(Value value, TileBuffer tile) {
    tiles[value] = tile;
    occupants[tile.buffer].push_back(value);
    return tile;
  }

  /// Whether `value` is not used after `op`: defined in op's block (or an
  /// argument of it) and used only by op and ops before it there.
  static bool diesAt(Value value, Operation *op) {
    Block *block = op->getBlock();
    if (value.getParentBlock() != block)
      return false;
    return llvm::all_of(value.getUses(), [&](OpOperand &use) {
      Operation *user = block->findAncestorOpInBlock(*use.getOwner());
      return user && (user == op || user->isBeforeInBlock(op));
    });
  }

  /// Whether `value` may be used after `op` runs: by an op after it in an
  /// enclosing block, or anywhere else inside a loop around it
  /// (conservatively).
  static bool usedAfter(Value value, Operation *op) {
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

  Value loadElement(const TileBuffer &tile, Value r, Value c) {
    if (!tile.cols)
      return memref::LoadOp::create(b, tile.buffer, ValueRange{r});
    return memref::LoadOp::create(
        b, tile.buffer, tile.transposed ? ValueRange{c, r} : ValueRange{r, c});
  }
  void storeElement(Value value, const TileBuffer &tile, Value r, Value c) {
    if (!tile.cols) {
      memref::StoreOp::create(b, value, tile.buffer, ValueRange{r});
      return;
    }
    memref::StoreOp::create(
        b, value, tile.buffer,
        tile.transposed ? ValueRange{c, r} : ValueRange{r, c});
  }
  /// for c < cols: body(c); body(null) once for a 1-D tile.
  void forEachColumn(const TileBuffer &tile,
                     llvm::function_ref<void(Value)> body) {
    if (!tile.cols)
      return body(Value());
    rb.loop(rb.index(0), tile.cols, body);
  }
  /// for r < rows (and c < cols for 2-D tiles): body(r, c).
  void forEachElement(const TileBuffer &tile,
                      llvm::function_ref<void(Value, Value)> body) {
    rb.loop(rb.index(0), tile.rows, [&](Value r) {
      forEachColumn(tile, [&](Value c) { body(r, c); });
    });
  }

  /// Copies `from` into `to`'s buffer, unless they share it. `yielded` are
  /// the other tiles moving at the same time; none may live in `to`.
  LogicalResult moveTile(Operation *op, const TileBuffer &from,
                         const TileBuffer &to, ArrayRef<TileBuffer> yielded) {
    if (from.buffer == to.buffer)
      return success();
    if (from.transposed != to.transposed)
      return op->emitOpError("yields tiles stored differently on the CPU");
    for (const TileBuffer &other : yielded)
      if (other.buffer == to.buffer && &other != &from)
        return op->emitOpError("yields tiles whose CPU buffers overlap");
    forEachElement(from, [&](Value r, Value c) {
      storeElement(loadElement(from, r, c), to, r, c);
    });
    return success();
  }

  //===--------------------------------------------------------------------===//
  // Tile ops
  //===--------------------------------------------------------------------===//

  LogicalResult lowerLoad(tile::LoadOp load, IRMapping &mapping) {
    auto type = cast<RankedTensorType>(load.getType());
    Value source = mapping.lookupOrDefault(load.getSource());
    auto sourceType = cast<MemRefType>(source.getType());
    Value count = mapping.lookupOrDefault(load.getCount());
    auto [capacity, rows] = rowsOf(type.getDimSize(0), count);
    Value cols;
    if (type.getRank() == 2) {
      Value sourceCols;
      if (dominatesAllocPoint(source)) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(allocs);
        sourceCols = rb.dim(source, sourceType.getRank() - 1);
      }
      FailureOr<Value> size =
          sizeAtAllocPoint(load, type.getDimSize(1), sourceCols);
      if (failed(size))
        return failure();
      cols = *size;
    }
    TileBuffer tile = allocate(capacity, cols, prefersTransposed(load));
    // A tile of `count` rows holds at most the grid's block_rows.
    tile.rows = rows == count ? Value(arith::MinUIOp::create(b, count, capacity))
                              : rows;
    assign(load, tile);

    SmallVector<Value> position;
    for (Value index : load.getPosition())
      position.push_back(mapping.lookupOrDefault(index));
    count = arith::MinUIOp::create(b, count, tile.rows);
    int64_t rowDim = load.getRowDim();
    auto at = [&](Value r, Value c) {
      SmallVector<Value> indices(position);
      indices[rowDim] = rb.add(indices[rowDim], r);
      if (c)
        indices.push_back(c);
      return indices;
    };
    rb.loop(rb.index(0), count, [&](Value r) {
      if (!cols)
        return storeElement(rb.loadF32(source, at(r, Value())), tile, r,
                            Value());
      rb.loop(rb.index(0), cols, [&](Value c) {
        storeElement(rb.loadF32(source, at(r, c)), tile, r, c);
      });
    });
    // Rows past `count` read as zero.
    rb.loop(count, tile.rows, [&](Value r) {
      if (!cols)
        return storeElement(rb.f32(0), tile, r, Value());
      rb.loop(rb.index(0), cols,
              [&](Value c) { storeElement(rb.f32(0), tile, r, c); });
    });
    return success();
  }

  LogicalResult lowerStore(tile::StoreOp store, IRMapping &mapping) {
    TileBuffer tile = tileOf(store.getValue());
    Value dest = mapping.lookupOrDefault(store.getDest());
    SmallVector<Value> position;
    for (Value index : store.getPosition())
      position.push_back(mapping.lookupOrDefault(index));
    Value count = arith::MinUIOp::create(
        b, mapping.lookupOrDefault(store.getCount()), tile.rows);
    int64_t rowDim = store.getRowDim();
    rb.loop(rb.index(0), count, [&](Value r) {
      SmallVector<Value> indices(position);
      indices[rowDim] = rb.add(indices[rowDim], r);
      if (!tile.cols)
        return rb.storeF32(loadElement(tile, r, Value()), dest, indices);
      rb.loop(rb.index(0), tile.cols, [&](Value c) {
        SmallVector<Value> element(indices);
        element.push_back(c);
        rb.storeF32(loadElement(tile, r, c), dest, element);
      });
    });
    return success();
  }

  LogicalResult lowerSplat(tensor::SplatOp splat, IRMapping &mapping) {
    auto type = splat.getType();
    ValueRange dynamicSizes = splat.getDynamicSizes();
    auto dynamicSize = [&](int64_t d) -> Value {
      if (!type.isDynamicDim(d))
        return Value();
      return mapping.lookupOrDefault(
          dynamicSizes[type.getDynamicDimIndex(d)]);
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
    if (isZeroSplat(splat) &&
        llvm::all_of(splat->getUses(), [](OpOperand &use) {
          auto dot = dyn_cast<tile::DotOp>(use.getOwner());
          auto decayDot = dyn_cast<tile::DecayDotOp>(use.getOwner());
          return (dot && use.get() == dot.getAcc() &&
                  use.get() != dot.getLhs() && use.get() != dot.getRhs()) ||
                 (decayDot && use.getOperandNumber() ==
                                  decayDot.getAccMutable().getOperandNumber());
        })) {
      zeroAccumulators.insert(splat);
      return success();
    }
    Value value = mapping.lookupOrDefault(splat.getInput());
    if (!value.getType().isF32())
      value = arith::ExtFOp::create(b, b.getF32Type(), value);
    forEachElement(tile, [&](Value r, Value c) { storeElement(value, tile, r, c); });
    return success();
  }

  LogicalResult lowerDot(tile::DotOp dot) {
    TileBuffer lhs = tileOf(dot.getLhs()), rhs = tileOf(dot.getRhs()),
               acc = tileOf(dot.getAcc());
    bool transposeLhs = dot.getTransposeLhs();
    // lhs[r][d] of the product (lhs^T with transpose_lhs).
    auto lhsAt = [&](Value r, Value d) {
      return transposeLhs ? loadElement(lhs, d, r) : loadElement(lhs, r, d);
    };
    Value rows = transposeLhs ? lhs.cols : lhs.rows;
    Value depth = transposeLhs ? lhs.rows : lhs.cols;
    bool zeroAcc = zeroAccumulators.contains(dot.getAcc());
    if (dot.getTransposeRhs() && rhs.transposed) {
      // result[r, :] = acc[r, :] + lhs[r, :] . rhs^T, on vectors along the
      // columns of the result (rhs staged transposed).
      TileBuffer result = assign(dot, allocateLike(acc));
      int64_t width = llvm::alignTo(
          cast<RankedTensorType>(dot.getRhs().getType()).getDimSize(0),
          LoweringBuilder::kLanes);
      rb.loop(rb.index(0), rows, [&](Value r) {
        rb.rowTimesTransposed(
            depth, [&](Value d) { return lhsAt(r, d); }, rhs.buffer, width,
            result.buffer, {r});
        if (zeroAcc)
          return;
        rb.loop(rb.index(0), result.cols, [&](Value c) {
          storeElement(rb.add(loadElement(result, r, c), loadElement(acc, r, c)),
                       result, r, c);
        });
      });
      return success();
    }
    if (dot.getTransposeRhs()) {
      // Scalar fallback: rhs is not staged transposed.
      TileBuffer result = assign(dot, allocateLike(acc));
      forEachElement(result, [&](Value r, Value c) {
        Value init = zeroAcc ? rb.f32(0) : loadElement(acc, r, c);
        Value sum = rb.loop(rb.index(0), depth, {init},
                            [&](Value d, ValueRange partial) {
                              return SmallVector<Value>{math::FmaOp::create(
                                  b, lhsAt(r, d), loadElement(rhs, c, d),
                                  partial[0])};
                            })[0];
        storeElement(sum, result, r, c);
      });
      return success();
    }
    // result[r, :] = acc[r, :] + sum_k lhs[r, k] rhs[k, :], kValueGroup
    // vectors of result columns per loop over k; in place when acc dies.
    if (rhs.transposed)
      return dot.emitOpError("needs a row-major rhs on the CPU");
    TileBuffer result = bufferFor(dot, dot, acc, {dot.getAcc()},
                                  {dot.getLhs(), dot.getRhs()});
    constexpr int64_t group = LoweringBuilder::kLanes * LoweringBuilder::kValueGroup;
    Value groups = arith::DivUIOp::create(b, rb.paddedToValueGroups(result.cols),
                                          rb.index(group));
    rb.loop(rb.index(0), rows, [&](Value r) {
      rb.loop(rb.index(0), groups, [&](Value g) {
        Value c0 = rb.mul(g, rb.index(group));
        auto column = [&](int64_t k) {
          return rb.add(c0, rb.index(k * LoweringBuilder::kLanes));
        };
        SmallVector<Value> inits;
        for (int64_t k = 0; k < LoweringBuilder::kValueGroup; ++k)
          inits.push_back(zeroAcc ? rb.zeroLanes()
                                  : rb.loadLanes(acc.buffer, {r, column(k)}));
        SmallVector<Value> sums =
            rb.vectorDotLoops(rb.index(0), depth, inits, [&](Value d) {
              SmallVector<Value> row;
              for (int64_t k = 0; k < LoweringBuilder::kValueGroup; ++k)
                row.push_back(rb.loadLanes(rhs.buffer, {d, column(k)}));
              return std::make_pair(lhsAt(r, d), row);
            });
        for (int64_t k = 0; k < LoweringBuilder::kValueGroup; ++k)
          vector::StoreOp::create(b, sums[k], result.buffer,
                                  ValueRange{r, column(k)});
      });
    });
    return success();
  }

  /// result[r][c] = acc[r][c] + sum_d lhs[r][d] rhs[c][d]
  ///                exp(lhsGate[r][d] - rhsGate[c][d]), one term at a time;
  /// with lower_triangular only for c <= r.
  LogicalResult lowerDecayDot(tile::DecayDotOp dot) {
    TileBuffer lhs = tileOf(dot.getLhs()), rhs = tileOf(dot.getRhs()),
               lhsGate = tileOf(dot.getLhsGate()),
               rhsGate = tileOf(dot.getRhsGate()), acc = tileOf(dot.getAcc());
    TileBuffer result = bufferFor(
        dot, dot, acc, {dot.getAcc()},
        {dot.getLhs(), dot.getRhs(), dot.getLhsGate(), dot.getRhsGate()});
    Value zero = rb.index(0);
    bool zeroAcc = zeroAccumulators.contains(dot.getAcc());
    auto accAt = [&](Value r, Value c) {
      return zeroAcc ? rb.f32(0) : loadElement(acc, r, c);
    };
    // The sum over d runs on vectors when every operand is row-major.
    bool vectorDepth =
        llvm::none_of(ArrayRef<TileBuffer>{lhs, rhs, lhsGate, rhsGate},
                      [](const TileBuffer &tile) { return tile.transposed; });
    Value lanes = rb.index(LoweringBuilder::kLanes);
    Value groups = arith::DivUIOp::create(b, lhs.cols, lanes);
    rb.loop(zero, result.rows, [&](Value r) {
      Value end = dot.getLowerTriangular()
                      ? Value(arith::MinUIOp::create(
                            b, rb.add(r, rb.index(1)), result.cols))
                      : result.cols;
      rb.loop(zero, end, [&](Value c) {
        Value sum = accAt(r, c), tail = zero;
        if (vectorDepth) { // groups of kLanes terms, then one at a time
          tail = rb.mul(groups, lanes);
          Value terms =
              rb.loop(zero, groups, {rb.zeroLanes()},
                      [&](Value group, ValueRange partial) {
                        Value d = rb.mul(group, lanes);
                        Value decay = math::ExpOp::create(
                            b, arith::SubFOp::create(
                                   b, rb.loadLanes(lhsGate.buffer, {r, d}),
                                   rb.loadLanes(rhsGate.buffer, {c, d})));
                        Value product = arith::MulFOp::create(
                            b, rb.loadLanes(lhs.buffer, {r, d}),
                            rb.loadLanes(rhs.buffer, {c, d}));
                        return SmallVector<Value>{
                            math::FmaOp::create(b, product, decay, partial[0])};
                      })[0];
          sum = vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                            terms, sum);
        }
        sum =
            rb.loop(tail, lhs.cols, {sum}, [&](Value d, ValueRange partial) {
              Value decay = math::ExpOp::create(
                  b, arith::SubFOp::create(b, loadElement(lhsGate, r, d),
                                           loadElement(rhsGate, c, d)));
              Value product = rb.mul(
                  rb.mul(loadElement(lhs, r, d), loadElement(rhs, c, d)),
                  decay);
              return SmallVector<Value>{rb.add(partial[0], product)};
            })[0];
        storeElement(sum, result, r, c);
      });
      if (result.buffer != acc.buffer || zeroAcc)
        rb.loop(end, result.cols,
                [&](Value c) { storeElement(accAt(r, c), result, r, c); });
    });
    return success();
  }

  /// A tile of +0.0 (tensor.splat or its canonical form).
  static bool isZeroSplat(Value value) {
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

  LogicalResult lowerMap(tile::MapOp map, IRMapping &mapping) {
    auto type = cast<RankedTensorType>(map.getType());
    int64_t rank = type.getRank();
    // Which dimensions of each input stand for every row or column.
    auto broadcasts = [&](Value input, int64_t d) {
      auto inputType = cast<RankedTensorType>(input.getType());
      if (inputType.getRank() != rank)
        return d == 1; // a 1-D input: one value per row
      return inputType.getDimSize(d) == 1 && type.getDimSize(d) != 1;
    };
    SmallVector<TileBuffer> inputs;
    std::optional<TileBuffer> shaped;
    for (Value input : map.getInputs()) {
      inputs.push_back(tileOf(input));
      bool full = llvm::none_of(llvm::seq<int64_t>(0, rank), [&](int64_t d) {
        return broadcasts(input, d);
      });
      if (full && (!shaped || input.getType() == type))
        shaped = inputs.back();
    }
    if (!shaped)
      return map.emitOpError("needs an input of its result's shape on the CPU");
    TileBuffer result;
    if (prefersTransposed(map)) {
      result = allocate(shaped->capacity, shaped->cols, true);
      result.rows = shaped->rows;
      assign(map, result);
    } else {
      result = bufferFor(map, map, *shaped, map.getInputs());
    }
    Block &body = map.getBody().front();
    Value zero = rb.index(0);
    auto element = [&](Value r, Value c) {
      IRMapping element = mapping;
      element.map(body.getArgument(0), r);
      if (rank == 2)
        element.map(body.getArgument(1), c);
      for (auto [index, input, tile] :
           llvm::enumerate(map.getInputs(), inputs)) {
        BlockArgument arg = body.getArgument(rank + index);
        Value value =
            tile.cols ? loadElement(tile, broadcasts(input, 0) ? zero : r,
                                    broadcasts(input, 1) ? zero : c)
                      : loadElement(tile, r, Value());
        if (arg.getType() != value.getType())
          value = arith::TruncFOp::create(b, arg.getType(), value);
        element.map(arg, value);
      }
      for (Operation &op : body.without_terminator())
        b.clone(op, element);
      Value yielded = element.lookupOrDefault(
          cast<tile::YieldOp>(body.getTerminator()).getValues()[0]);
      if (!yielded.getType().isF32())
        yielded = arith::ExtFOp::create(b, b.getF32Type(), yielded);
      storeElement(yielded, result, r, c);
    };
    // Inputs read per column must be row-major for vector loads.
    bool vectorize =
        rank == 2 && !result.transposed && vectorizableBody(body) &&
        llvm::all_of(llvm::zip(map.getInputs(), inputs), [&](auto pair) {
          auto [input, tile] = pair;
          return !tile.cols || broadcasts(input, 1) || !tile.transposed;
        });
    if (!vectorize) {
      forEachElement(result, element);
      return success();
    }
    // Groups of kLanes columns on vectors, then the last columns one by one;
    // the padding past the columns is never written.
    Value lanes = rb.index(LoweringBuilder::kLanes);
    Value groups = arith::DivUIOp::create(b, result.cols, lanes);
    Value vectorCols = rb.mul(groups, lanes);
    rb.loop(zero, result.rows, [&](Value r) {
      rb.loop(zero, groups, [&](Value group) {
        Value c0 = rb.mul(group, lanes);
        VectorMapBody vectorBody(b, mapping);
        vectorBody.bind(body.getArgument(0), r);
        Type index = b.getIndexType();
        vectorBody.bindVector(
            body.getArgument(1),
            arith::AddIOp::create(
                b,
                vector::BroadcastOp::create(b, vectorBody.vectorOf(index), c0),
                vector::StepOp::create(b, vectorBody.vectorOf(index))));
        for (auto [index, input, tile] :
             llvm::enumerate(map.getInputs(), inputs)) {
          BlockArgument arg = body.getArgument(rank + index);
          Value row = broadcasts(input, 0) ? zero : r;
          if (!tile.cols || broadcasts(input, 1)) { // one value per row
            Value value = tile.cols ? loadElement(tile, row, zero)
                                    : loadElement(tile, r, Value());
            if (arg.getType() != value.getType())
              value = arith::TruncFOp::create(b, arg.getType(), value);
            vectorBody.bind(arg, value);
            continue;
          }
          Value value = rb.loadLanes(tile.buffer, {row, c0});
          if (arg.getType() != b.getF32Type())
            value = arith::TruncFOp::create(
                b, vectorBody.vectorOf(arg.getType()), value);
          vectorBody.bindVector(arg, value);
        }
        vectorBody.emit(body);
        Value yielded = vectorBody.vector(
            cast<tile::YieldOp>(body.getTerminator()).getValues()[0]);
        if (!cast<VectorType>(yielded.getType()).getElementType().isF32())
          yielded = arith::ExtFOp::create(b, rb.lanes(), yielded);
        vector::StoreOp::create(b, yielded, result.buffer, ValueRange{r, c0});
      });
      rb.loop(vectorCols, result.cols, [&](Value c) { element(r, c); });
    });
    return success();
  }

  /// Whether a map body can run on vectors of columns: elementwise arith
  /// and math ops without side effects or undefined behaviour (they may be
  /// evaluated where the scalar code would not), constants, and scf.if with
  /// such branches (both evaluated, then selected). Loads stay scalar.
  static bool vectorizableBody(Block &body) {
    for (Operation &op : body.without_terminator()) {
      if (isa<arith::ConstantOp>(op))
        continue;
      if (auto ifOp = dyn_cast<scf::IfOp>(op)) {
        if (ifOp.getNumResults() == 0 || ifOp.getElseRegion().empty() ||
            !vectorizableBody(ifOp.getThenRegion().front()) ||
            !vectorizableBody(ifOp.getElseRegion().front()))
          return false;
        continue;
      }
      if (!op.hasTrait<OpTrait::Elementwise>() || !isPure(&op) ||
          op.getNumRegions() != 0 ||
          !llvm::all_of(op.getResultTypes(),
                        [](Type type) { return type.isIntOrIndexOrFloat(); }))
        return false;
    }
    return true;
  }

  /// Row r combines rows 0..r, in place when the input dies here.
  LogicalResult lowerScan(tile::ScanOp scan) {
    TileBuffer input = tileOf(scan.getInput());
    TileBuffer result = bufferFor(scan, scan, input, {scan.getInput()});
    bool max = scan.getKind() == tile::ReduceKind::max;
    auto combine = [&](Value x, Value y) -> Value {
      return max ? Value(arith::MaximumFOp::create(b, x, y)) : rb.add(x, y);
    };
    Value zero = rb.index(0);
    forEachColumn(input, [&](Value c) {
      storeElement(loadElement(input, zero, c), result, zero, c);
    });
    rb.loop(rb.index(1), input.rows, [&](Value r) {
      forEachColumn(input, [&](Value c) {
        Value previous = loadElement(result, rb.sub(r, rb.index(1)), c);
        storeElement(combine(previous, loadElement(input, r, c)), result, r,
                     c);
      });
    });
    return success();
  }

  /// Copies rows first.. of the input; rows past the count are zero.
  LogicalResult lowerSlice(tile::SliceOp slice, IRMapping &mapping) {
    auto type = cast<RankedTensorType>(slice.getType());
    TileBuffer input = tileOf(slice.getInput());
    Value count = mapping.lookupOrDefault(slice.getCount());
    Value first = mapping.lookupOrDefault(slice.getFirst());
    auto [capacity, rows] = rowsOf(type.getDimSize(0), count);
    TileBuffer result = allocate(capacity, input.cols, false);
    result.rows = rows == count
                      ? Value(arith::MinUIOp::create(b, count, capacity))
                      : rows;
    assign(slice, result);
    Value copied = arith::MinUIOp::create(b, count, result.rows);
    rb.loop(rb.index(0), copied, [&](Value r) {
      forEachColumn(input, [&](Value c) {
        storeElement(loadElement(input, rb.add(first, r), c), result, r, c);
      });
    });
    rb.loop(copied, result.rows, [&](Value r) {
      forEachColumn(input, [&](Value c) {
        storeElement(rb.f32(0), result, r, c);
      });
    });
    return success();
  }

  /// A copy with rows and columns swapped; the input's row count must be
  /// known at the allocation point, as it becomes the column count.
  LogicalResult lowerTranspose(tile::TransposeOp transpose) {
    TileBuffer input = tileOf(transpose.getInput());
    if (!dominatesAllocPoint(input.rows))
      return transpose.emitOpError(
          "transposes a tile whose row count is computed inside the grid");
    TileBuffer result = assign(transpose, allocate(input.cols, input.rows,
                                                   false));
    forEachElement(input, [&](Value r, Value c) {
      storeElement(loadElement(input, r, c), result, c, r);
    });
    return success();
  }

  LogicalResult lowerReduce(tile::ReduceOp reduce, IRMapping &mapping) {
    TileBuffer input = tileOf(reduce.getInput());
    bool max = reduce.getKind() == tile::ReduceKind::max;
    auto combineAll = [&](Value end, llvm::function_ref<Value(Value)> at) {
      Value init = rb.f32(max ? -std::numeric_limits<double>::infinity() : 0);
      return rb.loop(
          rb.index(0), end, {init}, [&](Value i, ValueRange partial) {
            Value x = at(i);
            return SmallVector<Value>{
                max ? Value(arith::MaximumFOp::create(b, partial[0], x))
                    : rb.add(partial[0], x)};
          })[0];
    };
    if (!input.cols) { // a 1-D tile to a scalar
      mapping.map(reduce.getResult(), combineAll(input.rows, [&](Value r) {
                    return loadElement(input, r, Value());
                  }));
      return success();
    }
    TileBuffer result = allocate(input.capacity, Value(), false);
    result.rows = input.rows;
    assign(reduce.getResult(), result);
    rb.loop(rb.index(0), input.rows, [&](Value r) {
      Value combined = combineAll(
          input.cols, [&](Value c) { return loadElement(input, r, c); });
      storeElement(combined, result, r, Value());
    });
    return success();
  }

  /// Per row: the candidate's place follows the last listed entry it does
  /// not beat; the entries from there move down one and it is stored there.
  /// In place when the lists die here.
  LogicalResult lowerTopKInsert(tile::TopKInsertOp insert) {
    TileBuffer scores = tileOf(insert.getScores()),
               blocks = tileOf(insert.getBlocks()),
               candidateScore = tileOf(insert.getCandidateScore()),
               candidateBlock = tileOf(insert.getCandidateBlock());
    Value candidates[] = {insert.getCandidateScore(),
                          insert.getCandidateBlock()};
    TileBuffer bestScores =
        bufferFor(insert, insert.getBestScores(), scores, {insert.getScores()},
                  {insert.getBlocks(), candidates[0], candidates[1]});
    TileBuffer bestBlocks =
        bufferFor(insert, insert.getBestBlocks(), blocks, {insert.getBlocks()},
                  {insert.getScores(), candidates[0], candidates[1]});
    if (failed(moveTile(insert, scores, bestScores, {})) ||
        failed(moveTile(insert, blocks, bestBlocks, {})))
      return failure();
    Value zero = rb.index(0), one = rb.index(1);
    Value k = bestScores.cols;
    rb.loop(zero, bestScores.rows, [&](Value r) {
      Value block = loadElement(candidateBlock, r, Value());
      Value candidate =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OGE, block, rb.f32(0));
      rb.ifThen(candidate, [&] {
        Value score = loadElement(candidateScore, r, Value());
        Value place = rb.loop(zero, k, {zero}, [&](Value e, ValueRange count) {
          Value listed =
              arith::CmpFOp::create(b, arith::CmpFPredicate::OGE,
                                    loadElement(bestBlocks, r, e), rb.f32(0));
          Value beaten =
              arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, score,
                                    loadElement(bestScores, r, e));
          Value before = arith::AndIOp::create(
              b, listed,
              arith::XOrIOp::create(
                  b, beaten,
                  arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
          return SmallVector<Value>{
              arith::SelectOp::create(b, before, rb.add(e, one), count[0])};
        })[0];
        rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, place, k),
                  [&] {
                    // Entries place .. k - 2 move to place + 1 .. k - 1, last
                    // first.
                    Value last = rb.sub(k, one);
                    rb.loop(zero, rb.sub(last, place), [&](Value step) {
                      Value to = rb.sub(last, step), from = rb.sub(to, one);
                      for (const TileBuffer &list : {bestScores, bestBlocks})
                        storeElement(loadElement(list, r, from), list, r, to);
                    });
                    storeElement(score, bestScores, r, place);
                    storeElement(block, bestBlocks, r, place);
                  });
      });
    });
    return success();
  }

  //===--------------------------------------------------------------------===//
  // Control flow carrying tiles
  //===--------------------------------------------------------------------===//

  LogicalResult lowerFor(scf::ForOp forOp, IRMapping &mapping) {
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

  LogicalResult lowerIf(scf::IfOp ifOp, IRMapping &mapping) {
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

  SmallVector<TileBuffer> yieldedTiles(scf::YieldOp yield) {
    SmallVector<TileBuffer> yielded;
    for (Value value : yield.getOperands())
      if (isTile(value))
        yielded.push_back(tileOf(value));
    return yielded;
  }

  /// Ends a lowered loop body or branch: an scf.yield of the scalars, after
  /// moving the yielded tiles into `into` (the carried or result buffers;
  /// empty: they stay where they are).
  LogicalResult yieldInto(scf::YieldOp yield, IRMapping &mapping,
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
  void bindResults(ValueRange results, ArrayRef<TileBuffer> buffers,
                   ValueRange lowered, IRMapping &mapping) {
    unsigned scalar = 0, tiled = 0;
    for (Value result : results) {
      if (isTile(result))
        assign(result, buffers[tiled++]);
      else
        mapping.map(result, lowered[scalar++]);
    }
  }

  ImplicitLocOpBuilder &b;
  LoweringBuilder &rb;
  /// Buffers are allocated right before this op.
  Operation *allocs;
  /// The grid's query rows: the capacity of tiles with a dynamic row count.
  int64_t blockRows;
  DenseMap<Value, TileBuffer> tiles;
  /// Zero splats that only ever initialize dot accumulators: never filled.
  llvm::DenseSet<Value> zeroAccumulators;
  /// The tiles assigned to each buffer so far.
  DenseMap<Value, SmallVector<Value>> occupants;
  SmallVector<Value> allocated;
};

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
