//===- ProgramLowering.h - A tile program as loops over buffers -*- C++ -*-===//
//
// Private to attn-tile-to-loops. Every tile becomes an f32 buffer allocated
// once per call, every tile op a loop nest over it. The lowering of each op
// is a ConversionPattern (one per op); the patterns of one grid share a
// ProgramLowering, which plans the buffers: where each tile lives, which
// buffer a new tile may take over from one that dies, and the liveness
// facts that reuse relies on. Tiles have no converted value: a pattern
// replaces them with nothing and its users find their buffers here, by
// the original value. Files by concern:
//
//   TileToLoops.cpp      the pass: calling convention, the grid's loop
//   TileBuffers.cpp      ProgramLowering: allocation, reuse and liveness,
//                        element access and copies between buffers
//   TileOpLowering.cpp   load, store, splat and constant, scan, slice,
//                        transpose, reduce and top-k insert
//   TileDotLowering.cpp  dot and decay dot
//   TileMapLowering.cpp  map, on vectors of columns where its body allows
//   TileControlFlow.cpp  scf.for, scf.if and scf.yield carrying tiles
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_TILETOLOOPS_PROGRAMLOWERING_H
#define ATTNC_LIB_CONVERSION_TILETOLOOPS_PROGRAMLOWERING_H

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"

#include "mlir/Transforms/DialectConversion.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"

namespace attnc::lowering::tile_to_loops {

using mlir::ConversionPatternRewriter;
using mlir::MLIRContext;
using mlir::OpConversionPattern;
using mlir::RewritePatternSet;

inline bool isTile(Value value) {
  return mlir::isa<mlir::RankedTensorType>(value.getType());
}

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

/// What an scf.yield carrying tiles does with them, set by the lowering of
/// its scf.for or scf.if.
struct YieldPlan {
  enum Kind {
    /// Moves the tiles into `into` (a loop's carried buffers, or an if's
    /// results when this is its else branch).
    Into,
    /// The then branch of `branchOf`: the if's results live where these
    /// tiles are.
    ThenResults,
  } kind = Into;
  SmallVector<TileBuffer> into;
  /// The lowered scf.if and the original one (whose results get the
  /// buffers); null for loops.
  Operation *branchOf = nullptr, *original = nullptr;
  /// Whether this is the last branch lowered (row counts are checked then).
  bool last = false;
};

/// The state the patterns lowering one grid share: the builder they build
/// with (on the rewriter of the current pattern), the buffers of the tiles
/// so far and how they are planned.
class ProgramLowering {
public:
  ProgramLowering(Location loc, MLIRContext *context, Value status,
                  int64_t blockRows)
      : b(loc, context), rb(b, params, status), blockRows(blockRows) {}

  /// Builds, until destroyed, before `op` with the rewriter's listener, so
  /// that the conversion tracks what is built.
  class OpScope {
  public:
    OpScope(ProgramLowering &lowering, Operation *op,
            ConversionPatternRewriter &rewriter);
    ~OpScope();

  private:
    ProgramLowering &lowering;
  };

  /// The value `value` stands for in the lowered IR (a scalar).
  Value remapped(Value value);

  /// Replaces `op`: its tile results by nothing (their buffers are
  /// assigned here), the others by `scalars`, in order.
  void replaceOp(Operation *op, ValueRange scalars);

  /// Moves the ops of `from` before `at` in `to`; its arguments become
  /// `args` (null for a tile argument, whose buffer is assigned here).
  void moveBody(Block &from, Block *to, Block::iterator at,
                ArrayRef<Value> args);

  /// Emits `message` on `op` and remembers that an error was reported (the
  /// conversion driver's own "failed to legalize" is then redundant).
  mlir::LogicalResult error(Operation *op, const llvm::Twine &message);
  bool reportedError() const { return reported; }

  ConversionPatternRewriter &rewriter() { return *current; }

  //===--------------------------------------------------------------------===//
  // Buffers (TileBuffers.cpp)
  //===--------------------------------------------------------------------===//

  /// Buffers are allocated right before `allocPoint`.
  void setAllocPoint(Operation *allocPoint) { allocs = allocPoint; }
  Operation *allocPoint() const { return allocs; }

  /// Deallocates every buffer allocated so far, at the builder's insertion
  /// point.
  void freeBuffers();

  /// Fills, once at the allocation point, the tiles that the grid reads
  /// but that are defined outside it: splats (or the constants that
  /// canonicalization makes of them).
  mlir::LogicalResult lowerOuterTiles(tile::GridOp grid);

  /// A size for the allocation point: a constant, or `dynamic`, which must
  /// be defined there already.
  mlir::FailureOr<Value> sizeAtAllocPoint(Operation *user, int64_t fixed,
                                          Value dynamic);

  bool dominatesAllocPoint(Value value);

  /// The capacity and the row count of a tile with `fixed` rows, or with
  /// `dynamic` rows: a size defined outside the grid (a head dim), which is
  /// also the capacity, or else a count of at most the grid's block_rows.
  std::pair<Value, Value> rowsOf(int64_t fixed, Value dynamic);

  /// Whether a 2-D tile is best stored transposed: it has static rows and
  /// feeds a dot as its transposed rhs (`Q K^T` then runs on vectors along
  /// the rows of K), and every other use reads elements one at a time (the
  /// transposed lhs of a dot, maps, slices).
  static bool prefersTransposed(Value value);

  /// A zero-filled buffer for a tile of `capacity` x `cols` rows (null
  /// `cols`: 1-D).
  TileBuffer allocate(Value capacity, Value cols, bool transposed);

  /// The buffer of a new tile `result` shaped like `like`: the buffer of
  /// `candidates`' first tile of that shape and storage that dies at `op`
  /// and is not one of `readers`' buffers, else a fresh one.
  TileBuffer bufferFor(Operation *op, Value result, const TileBuffer &like,
                       ValueRange candidates, ValueRange readers = {});

  /// The buffer of a tile operand (lowered before its users).
  TileBuffer tileOf(Value value);
  bool hasTile(Value value) const { return tiles.count(value); }

  /// A tile-typed arith.constant: a splat of a static shape.
  mlir::LogicalResult fillConstant(arith::ConstantOp constant);
  /// A tensor.splat, filled unless it only initializes dot accumulators.
  mlir::LogicalResult fillSplat(mlir::tensor::SplatOp splat);
  /// A tile of +0.0 (tensor.splat or its canonical form).
  static bool isZeroSplat(Value value);
  bool isZeroAccumulator(Value value) const {
    return zeroAccumulators.contains(value);
  }

  /// A fresh buffer for a tile of `like`'s shape and row count.
  TileBuffer allocateLike(const TileBuffer &like);

  TileBuffer assign(Value value, TileBuffer tile);

  /// The op that a value's block belongs to in the lowered IR (a block
  /// whose ops moved counts as the block they moved to).
  Operation *ownerOf(Value value);

  /// Whether `value` is not used after `op`: defined in op's block (or an
  /// argument of it) and used only by op and ops before it there.
  bool diesAt(Value value, Operation *op);

  /// Whether `value` may be used after `op` runs: by an op after it in an
  /// enclosing block, or anywhere else inside a loop around it
  /// (conservatively).
  static bool usedAfter(Value value, Operation *op);

  /// The tiles assigned to `buffer` so far.
  ArrayRef<Value> occupantsOf(Value buffer) { return occupants[buffer]; }

  Value loadElement(const TileBuffer &tile, Value r, Value c);
  void storeElement(Value value, const TileBuffer &tile, Value r, Value c);
  /// for c < cols: body(c); body(null) once for a 1-D tile.
  void forEachColumn(const TileBuffer &tile,
                     llvm::function_ref<void(Value)> body);
  /// for r < rows (and c < cols for 2-D tiles): body(r, c).
  void forEachElement(const TileBuffer &tile,
                      llvm::function_ref<void(Value, Value)> body);

  /// Copies `from` into `to`'s buffer, unless they share it. `yielded` are
  /// the other tiles moving at the same time; none may live in `to`.
  mlir::LogicalResult moveTile(Operation *op, const TileBuffer &from,
                               const TileBuffer &to,
                               ArrayRef<TileBuffer> yielded);

  /// What the lowering of each scf.yield carrying tiles does.
  llvm::DenseMap<Operation *, YieldPlan> yieldPlans;

  ImplicitLocOpBuilder b;
  IRMapping params;
  LoweringBuilder rb;
  /// The loop the grid became; the buffers are freed after it.
  Operation *workLoop = nullptr;

private:
  /// Buffers are allocated right before this op.
  Operation *allocs = nullptr;
  /// The grid's query rows: the capacity of tiles with a dynamic row count.
  int64_t blockRows;
  ConversionPatternRewriter *current = nullptr;
  bool reported = false;
  llvm::DenseMap<Value, TileBuffer> tiles;
  /// Zero splats that only ever initialize dot accumulators: never filled.
  llvm::DenseSet<Value> zeroAccumulators;
  /// The tiles assigned to each buffer so far.
  llvm::DenseMap<Value, SmallVector<Value>> occupants;
  SmallVector<Value> allocated;
  /// Blocks whose ops moved, to the block they moved to.
  llvm::DenseMap<Block *, Block *> movedBlocks;
};

/// A pattern lowering one op of a grid: `lower` builds at the op with
/// the shared ProgramLowering and replaces the op.
template <typename Op> class TileLowering : public OpConversionPattern<Op> {
public:
  using OneToNOpAdaptor = typename OpConversionPattern<Op>::OneToNOpAdaptor;

  TileLowering(ProgramLowering &lowering, MLIRContext *context)
      : OpConversionPattern<Op>(context), lowering(lowering) {}

  mlir::LogicalResult
  matchAndRewrite(Op op, OneToNOpAdaptor,
                  ConversionPatternRewriter &rewriter) const final {
    ProgramLowering::OpScope scope(lowering, op, rewriter);
    return lower(op);
  }

protected:
  virtual mlir::LogicalResult lower(Op op) const = 0;

  ProgramLowering &lowering;
};

void populateTileOpLoweringPatterns(RewritePatternSet &patterns,
                                    ProgramLowering &lowering);
void populateTileDotLoweringPatterns(RewritePatternSet &patterns,
                                     ProgramLowering &lowering);
void populateTileMapLoweringPatterns(RewritePatternSet &patterns,
                                     ProgramLowering &lowering);
void populateTileControlFlowLoweringPatterns(RewritePatternSet &patterns,
                                             ProgramLowering &lowering);

} // namespace attnc::lowering::tile_to_loops

#endif // ATTNC_LIB_CONVERSION_TILETOLOOPS_PROGRAMLOWERING_H
