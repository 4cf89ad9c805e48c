//===- ProgramLowering.h - A tile program as loops over buffers -*- C++ -*-===//
//
// Private to attn-tile-to-loops (TileToLoops.cpp holds the pass and the
// driver that lowers a grid op by op): every tile becomes an f32 buffer
// allocated once per call, every tile op a loop nest over it.
// ProgramLowering's parts live in files by concern:
//
//   TileBuffers.cpp      allocation, buffer reuse and liveness, element
//                        access and copies between buffers
//   TileOpLowering.cpp   load, store, splat, scan, slice, transpose, reduce
//                        and top-k insert
//   TileDotLowering.cpp  dot and decay dot
//   TileMapLowering.cpp  map, on vectors of columns where its body allows
//   TileControlFlow.cpp  scf.for and scf.if carrying tiles
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_TILETOLOOPS_PROGRAMLOWERING_H
#define ATTNC_LIB_CONVERSION_TILETOLOOPS_PROGRAMLOWERING_H

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"
#include "attnc/Conversion/Passes.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"

namespace attnc::lowering::tile_to_loops {

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

/// Lowers one grid and everything in it; the buffers are allocated at
/// `allocPoint` (before the grid's loop) and freed after it.
class ProgramLowering {
public:
  ProgramLowering(ImplicitLocOpBuilder &b, LoweringBuilder &rb,
                  Operation *allocPoint, int64_t blockRows)
      : b(b), rb(rb), allocs(allocPoint), blockRows(blockRows) {}

  /// Lowers the ops of `block` at the builder's insertion point
  /// (TileToLoops.cpp).
  mlir::LogicalResult lowerBlock(Block &block, IRMapping &mapping);

  /// Deallocates every buffer allocated so far (TileBuffers.cpp).
  void freeBuffers();

  /// Fills, once at the allocation point, the tiles that the grid reads
  /// but that are defined outside it: splats (or the constants that
  /// canonicalization makes of them) (TileToLoops.cpp).
  mlir::LogicalResult lowerOuterTiles(tile::GridOp grid);

private:
  mlir::LogicalResult lowerOp(Operation *op, IRMapping &mapping);

  //===--------------------------------------------------------------------===//
  // Buffers (TileBuffers.cpp)
  //===--------------------------------------------------------------------===//

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

  /// A tile-typed arith.constant: a splat of a static shape.
  mlir::LogicalResult fillConstant(arith::ConstantOp constant);

  /// A fresh buffer for a tile of `like`'s shape and row count.
  TileBuffer allocateLike(const TileBuffer &like);

  TileBuffer assign(Value value, TileBuffer tile);

  /// Whether `value` is not used after `op`: defined in op's block (or an
  /// argument of it) and used only by op and ops before it there.
  static bool diesAt(Value value, Operation *op);

  /// Whether `value` may be used after `op` runs: by an op after it in an
  /// enclosing block, or anywhere else inside a loop around it
  /// (conservatively).
  static bool usedAfter(Value value, Operation *op);

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

  //===--------------------------------------------------------------------===//
  // Tile ops (TileOpLowering.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult lowerLoad(tile::LoadOp load, IRMapping &mapping);
  mlir::LogicalResult lowerStore(tile::StoreOp store, IRMapping &mapping);
  mlir::LogicalResult lowerSplat(mlir::tensor::SplatOp splat,
                                 IRMapping &mapping);
  /// A tile of +0.0 (tensor.splat or its canonical form).
  static bool isZeroSplat(Value value);
  /// Row r combines rows 0..r, in place when the input dies here.
  mlir::LogicalResult lowerScan(tile::ScanOp scan);
  /// Copies rows first.. of the input; rows past the count are zero.
  mlir::LogicalResult lowerSlice(tile::SliceOp slice, IRMapping &mapping);
  /// A copy with rows and columns swapped; the input's row count must be
  /// known at the allocation point, as it becomes the column count.
  mlir::LogicalResult lowerTranspose(tile::TransposeOp transpose);
  mlir::LogicalResult lowerReduce(tile::ReduceOp reduce, IRMapping &mapping);
  /// Per row: the candidate's place follows the last listed entry it does
  /// not beat; the entries from there move down one and it is stored there.
  /// In place when the lists die here.
  mlir::LogicalResult lowerTopKInsert(tile::TopKInsertOp insert);

  //===--------------------------------------------------------------------===//
  // Dots (TileDotLowering.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult lowerDot(tile::DotOp dot);
  /// result[r][c] = acc[r][c] + sum_d lhs[r][d] rhs[c][d]
  ///                exp(lhsGate[r][d] - rhsGate[c][d]), one term at a time;
  /// with lower_triangular only for c <= r.
  mlir::LogicalResult lowerDecayDot(tile::DecayDotOp dot);

  //===--------------------------------------------------------------------===//
  // Maps (TileMapLowering.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult lowerMap(tile::MapOp map, IRMapping &mapping);
  /// Whether a map body can run on vectors of columns: elementwise arith
  /// and math ops without side effects or undefined behaviour (they may be
  /// evaluated where the scalar code would not), constants, and scf.if with
  /// such branches (both evaluated, then selected). Loads stay scalar.
  static bool vectorizableBody(Block &body);

  //===--------------------------------------------------------------------===//
  // Control flow carrying tiles (TileControlFlow.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult lowerFor(scf::ForOp forOp, IRMapping &mapping);
  mlir::LogicalResult lowerIf(scf::IfOp ifOp, IRMapping &mapping);
  SmallVector<TileBuffer> yieldedTiles(scf::YieldOp yield);
  /// Ends a lowered loop body or branch: an scf.yield of the scalars, after
  /// moving the yielded tiles into `into` (the carried or result buffers;
  /// empty: they stay where they are).
  mlir::LogicalResult yieldInto(scf::YieldOp yield, IRMapping &mapping,
                                ArrayRef<TileBuffer> into);
  /// Maps the results of a lowered scf op: tiles to `buffers`, scalars to
  /// `lowered`, each in order.
  void bindResults(ValueRange results, ArrayRef<TileBuffer> buffers,
                   ValueRange lowered, IRMapping &mapping);

  ImplicitLocOpBuilder &b;
  LoweringBuilder &rb;
  /// Buffers are allocated right before this op.
  Operation *allocs;
  /// The grid's query rows: the capacity of tiles with a dynamic row count.
  int64_t blockRows;
  llvm::DenseMap<Value, TileBuffer> tiles;
  /// Zero splats that only ever initialize dot accumulators: never filled.
  llvm::DenseSet<Value> zeroAccumulators;
  /// The tiles assigned to each buffer so far.
  llvm::DenseMap<Value, SmallVector<Value>> occupants;
  SmallVector<Value> allocated;
};

} // namespace attnc::lowering::tile_to_loops

#endif // ATTNC_LIB_CONVERSION_TILETOLOOPS_PROGRAMLOWERING_H
