//===- TileProgramBuilder.h - A tile program's CTA --------------*- C++ -*-===//
//
// Private to attn-tile-to-nvgpu (TileToNVGPU.cpp says where each tile
// lives): ProgramBuilder builds the CTA of an attn_tile.grid from warp
// primitives, one op at a time. Its parts live in files by concern:
//
//   TileOpLowering.cpp   the CTA, positions, shared tiles and the tile ops
//                        (load, splat, dot, map, reduce, store)
//   TileControlFlow.cpp  scf.for (with loads streamed an iteration ahead)
//                        and scf.if, whose tiles travel as their registers
//   TileWorkspace.cpp    scatter_add into per-CTA copies in the workspace,
//                        summed in CTA order by the last CTA; the CTA's
//                        scratch buffers
//   TileRowMoves.cpp     scan, slice and transpose, which move values
//                        between rows and lanes through shared memory
//   TileDecayProducts.cpp decay_dot and decay_combine, element by element
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_TILETONVGPU_TILEPROGRAMBUILDER_H
#define ATTNC_LIB_CONVERSION_TILETONVGPU_TILEPROGRAMBUILDER_H

#include "attnc/Dialect/Tile/IR/TileOps.h"
#include "attnc/Target/NVVM/WarpBuilder.h"

#include "llvm/ADT/DenseMap.h"

#include <memory>

namespace attnc::lowering::tile_to_nvgpu {

inline bool isTile(Value value) {
  return mlir::isa<mlir::RankedTensorType>(value.getType());
}
inline bool holdsTiles(Operation *op) {
  mlir::WalkResult found = op->walk([](Operation *nested) {
    for (Value value : nested->getOperands())
      if (isTile(value))
        return mlir::WalkResult::interrupt();
    for (Value value : nested->getResults())
      if (isTile(value))
        return mlir::WalkResult::interrupt();
    return mlir::WalkResult::advance();
  });
  return found.wasInterrupted();
}

/// Whether `load` is copied to shared memory: a 2-D tile, unless it is
/// f32 in a kernel whose shared tiles (of element type `shared`) are not.
/// 1-D tiles (a value per row, like lse) and f32 tiles of 16-bit kernels
/// (an initial state) are read into registers.
inline bool isCopied(attnc::tile::LoadOp load, mlir::Type shared) {
  auto type = mlir::cast<mlir::RankedTensorType>(load.getType());
  return type.getRank() == 2 &&
         (shared.isF32() || !type.getElementType().isF32());
}

/// Where a tile lives on the GPU.
struct Fragment {
  enum Kind { Accumulator, Rows, Cols, Shared } kind = Accumulator;
  /// Accumulator: 4 registers per 8 columns (c[0][0], c[0][1], c[1][0],
  /// c[1][1] of each 16x8 C tile); Rows (1-D tiles and tiles of one
  /// column): the values of rows g and g + 8; Cols (tiles of one row): the
  /// values of this lane's columns, 2t and 2t + 1 of every 8 (one value
  /// for a 1 x 1 tile), the same in every lane's group and warp.
  SmallVector<Value> regs;
  int64_t cols = 0;
  /// The tile's row count; null when it has all block rows.
  Value rows;
  /// Shared: the rows in shared memory, after the `prefix` (stage) index.
  Value buffer;
  SmallVector<Value> prefix;
};

class ProgramBuilder : public WarpBuilder {
public:
  /// `streamLoads`: loops issue their loads an iteration ahead where they
  /// can (lowerFor), at the price of two stages of shared memory.
  ProgramBuilder(LoweringBuilder &rb, const WarpConfig &config,
                 int64_t blockRows, bool streamLoads)
      : WarpBuilder(rb, config), mapping(rb.params), blockRows(blockRows),
        streamLoads(streamLoads) {}

  /// The workspace (`words`, and `f32Words` when there is scratch), the
  /// results that scatter_add adds into (the kernel's arguments, in the
  /// order of kPartialResultsAttrName), each CTA into its copy, and the
  /// program's allocations, which become views of the CTA's scratch; set
  /// before build.
  void setWorkspace(Value words, Value f32Words, ValueRange results,
                    ArrayRef<memref::AllocOp> allocs) {
    workspace = words;
    scratch = f32Words;
    partialResults.assign(results.begin(), results.end());
    scratchAllocs.assign(allocs.begin(), allocs.end());
  }

  /// Builds the CTA of `grid` at the builder's insertion point.
  mlir::LogicalResult build(tile::GridOp grid);

  int64_t sharedBytes() const { return std::max(sharedPeak, sharedEnd); }

private:
  mlir::LogicalResult lowerBlock(Block &block);

  mlir::LogicalResult lowerOp(Operation *op);

  //===--------------------------------------------------------------------===//
  // Positions (TileOpLowering.cpp)
  //===--------------------------------------------------------------------===//

  /// The tile row of this lane's row `half` (g or g + 8 of the warp's 16).
  Value laneRow(int64_t half);
  /// The column of element `e` of this lane in C tile `nt`.
  Value laneCol(int64_t nt, int64_t e);
  /// A row as expressions see it: rows past the tile's end are its last.
  Value clampedRow(Value row, Value rows);

  //===--------------------------------------------------------------------===//
  // Shared tiles (TileOpLowering.cpp)
  //===--------------------------------------------------------------------===//

  /// The element type of shared tiles: the mma operand type, or f32 that
  /// the operands split.
  Type sharedType();

  /// Element type and shape checks for a tile copied to shared memory.
  mlir::LogicalResult checkCopiedTile(tile::LoadOp load);
  int64_t tileRows(tile::LoadOp load);

  /// Shared memory for `stages` copies of the rows of `load`, rows padded
  /// by 16 bytes.
  Value allocateShared(tile::LoadOp load, int64_t stages);

  /// Starts the copies of `load` (its position and count given as lowered
  /// values) into `buffer` after `prefix`, and commits them.
  void copyLoad(tile::LoadOp load, Value buffer, ValueRange prefix,
                ValueRange position, Value count);

  /// A load that is not streamed by its loop: one buffer, copied where the
  /// load is (after a barrier when inside a loop, as the previous
  /// iteration's readers may not be done).
  mlir::LogicalResult lowerLoad(tile::LoadOp load);
  /// A load into registers (1-D tiles, f32 tiles of kernels with 16-bit
  /// operands): each lane reads its elements (0 past the count).
  mlir::LogicalResult lowerRegisterLoad(tile::LoadOp load);

  /// Shared tiles are read only after this: completes the copies in flight.
  void awaitCopies();

  /// The A operand (4 registers, split or not) of rows [16w, 16w + 16) and
  /// columns [16 kk, 16 kk + 16) of a shared tile.
  MmaOperand sharedAOperand(const Fragment &tile, int64_t kk);

  //===--------------------------------------------------------------------===//
  // Register layouts and moves between rows (TileRowMoves.cpp)
  //===--------------------------------------------------------------------===//

  /// The register kind of a computed tile of `type`: Cols for one row,
  /// Rows for one column or 1-D, else Accumulator; failure (reported on
  /// `op`) for shapes with no layout.
  mlir::FailureOr<Fragment::Kind> registerKind(Operation *op,
                                               mlir::RankedTensorType type);
  /// A tile of `type` in registers whose element (r, c) is `at(r, c)`, rows
  /// clamped to the tile's `rows` (or its static row count).
  Fragment fromElements(mlir::RankedTensorType type, Fragment::Kind kind,
                        Value rows,
                        llvm::function_ref<Value(Value, Value)> at);
  /// Shared memory that an op copies tiles to and reads back before it
  /// ends (stageInShared, readerOf): released when the scope ends, so the
  /// next op may reuse it. Every later writer of that memory waits at a
  /// barrier first: readerOf's and stageTransposedLhs's own, or the one
  /// that `transientReads` puts before the next copy.
  class TransientShared {
  public:
    explicit TransientShared(ProgramBuilder &builder)
        : builder(builder), end(builder.sharedEnd) {}
    ~TransientShared() {
      builder.sharedPeak = std::max(builder.sharedPeak, builder.sharedEnd);
      builder.sharedEnd = end;
      builder.transientReads = true;
    }

  private:
    ProgramBuilder &builder;
    int64_t end;
  };
  /// A copy of a tile in registers in shared memory, f32 [rows][cols],
  /// written between two barriers; rows past the tile's count are 0.
  Value stageInShared(Value value);
  /// Reads element (r, c) of `value`'s tile as f32: from its shared
  /// memory when loaded, else from its stageInShared copy.
  std::function<Value(Value, Value)> readerOf(Value value);
  /// A loaded tile in the registers of a computed one (Accumulator).
  Fragment toRegisters(Value value);
  /// readerOf for each operand of an op, an operand given twice (both gates
  /// of one tile) staged in shared memory once.
  class OperandReaders {
  public:
    explicit OperandReaders(ProgramBuilder &builder) : builder(builder) {}
    std::function<Value(Value, Value)> operator()(Value operand) {
      auto [it, inserted] = readers.try_emplace(operand);
      if (inserted)
        it->second = builder.readerOf(operand);
      return it->second;
    }

  private:
    ProgramBuilder &builder;
    llvm::DenseMap<Value, std::function<Value(Value, Value)>> readers;
  };

  /// Each lane sums the terms of its own result elements (C fragments),
  /// the operands read through readerOf.
  mlir::LogicalResult lowerDecayDot(tile::DecayDotOp dot);
  /// The same for decay_combine, over the terms of its triangle.
  mlir::LogicalResult lowerDecayCombine(tile::DecayCombineOp combine);

  mlir::LogicalResult lowerScan(tile::ScanOp scan);
  mlir::LogicalResult lowerSlice(tile::SliceOp slice);
  mlir::LogicalResult lowerTranspose(tile::TransposeOp transpose);

  //===--------------------------------------------------------------------===//
  // Tile ops (TileOpLowering.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult lowerSplat(mlir::tensor::SplatOp splat);

  /// acc + lhs rhs on mma.sync.m16n8k16; with a transposed lhs, the A
  /// operands come from lhs in shared memory (ldmatrix.trans).
  mlir::LogicalResult lowerDot(tile::DotOp dot);
  /// `lhs` (`depth` rows) in shared memory: a loaded tile as it is, a C
  /// fragment stored there.
  Fragment stageTransposedLhs(const Fragment &lhs, int64_t depth);
  /// The A operand of rows [16w, 16w + 16) and depth [16 kk, 16 kk + 16)
  /// of the transpose of a shared tile with `rows` columns.
  MmaOperand transposedAOperand(const Fragment &staged, int64_t kk,
                                int64_t rows);

  /// The body of `map` once per fragment element.
  mlir::LogicalResult lowerMap(tile::MapOp map);

  /// Row reductions: in the lane, then over the quad that shares the row.
  mlir::LogicalResult lowerReduce(tile::ReduceOp reduce);

  mlir::LogicalResult lowerStore(tile::StoreOp store);

  //===--------------------------------------------------------------------===//
  // The workspace: partial results and scratch (TileWorkspace.cpp)
  //===--------------------------------------------------------------------===//

  /// Where this CTA's copies of the partial results begin in the workspace
  /// (launchWorkspace's layout), and its scratch views.
  void setUpWorkspace();
  /// Thread 0 adds the staged tile into this CTA's copy in row-major order.
  mlir::LogicalResult lowerScatterAdd(tile::ScatterAddOp scatter);
  /// At the CTA's end: the last CTA sums the copies in CTA order.
  void sumPartialCopies();

  //===--------------------------------------------------------------------===//
  // Control flow: tiles travel as their registers (TileControlFlow.cpp)
  //===--------------------------------------------------------------------===//

  mlir::LogicalResult flatten(ValueRange values, SmallVector<Value> &flat);
  /// Binds `values` (typed like `like`) to consecutive `flat` values, tiles
  /// taking the fragment shape of `shapes`.
  void unflatten(ValueRange values, ArrayRef<Fragment> shapes,
                 ValueRange flat);
  SmallVector<Fragment> shapesOf(ValueRange values);

  /// `value`, an operand of a load in `loop`'s body that isAheadComputable,
  /// for iteration `iv`; `ahead` maps what it has computed so far.
  Value valueAt(Value value, scf::ForOp loop, Value iv, IRMapping &ahead);

  /// A loop over key blocks (or any scf.for): loads in its body that can
  /// be issued an iteration ahead (not of memory the loop writes) get two
  /// stages; the copy of iteration
  /// k + 1 starts right after the barrier that opens iteration k, so it is
  /// in flight while k computes. A lhs loaded before the loop is held in
  /// registers across it when its A fragments are few.
  mlir::LogicalResult lowerFor(scf::ForOp forOp);
  bool isAheadComputable(Value value, scf::ForOp loop);

  /// The registers of a tile carried by control flow (its fragment).
  mlir::LogicalResult registerTypes(Value value, Operation *at,
                                    SmallVector<Type> &types);

  mlir::LogicalResult lowerIf(scf::IfOp ifOp);

  SmallVector<Value> lookup(ValueRange values);

  IRMapping &mapping;
  int64_t blockRows;
  bool streamLoads;
  Value lane, group, inGroup, warpRow0, base;
  /// The end of the shared tiles live now, and the most there were.
  int64_t sharedEnd = 0, sharedPeak = 0;
  llvm::DenseMap<Value, Fragment> tiles;
  /// Registers of loaded tiles that maps in a nested block read (per
  /// block: those made in a loop's body do not reach uses after it; held
  /// by pointer, so a map may hold several while more are added).
  llvm::DenseMap<std::pair<Value, Block *>, std::unique_ptr<Fragment>>
      registersInBlock;
  /// Unit-stride views of the loaded parameters.
  llvm::DenseMap<Value, Value> contiguous;
  /// A fragments of shared tiles held in registers across the current loop.
  llvm::DenseMap<Value, SmallVector<MmaOperand>> heldOperands;
  /// The workspace and the partial results (setWorkspace); the CTA
  /// count, the word of CTA 0's copies, the words per CTA, the word of
  /// this CTA's copy of each result and each result's element count.
  Value workspace, scratch;
  SmallVector<Value> partialResults;
  SmallVector<memref::AllocOp> scratchAllocs;
  Value ctaCount, firstCopyWord, wordsPerCta;
  SmallVector<Value> copyWords, partialElements;
  /// Whether copies were issued that no wait has covered yet.
  bool copiesPending = false;
  /// Whether warps may still read released TransientShared memory (a
  /// copy into it must wait at a barrier).
  bool transientReads = false;
  /// Whether stores to memory (scratch) may not be ordered before the next
  /// load by a barrier yet: a load may read what other threads wrote.
  bool unorderedStores = false;
  /// A barrier before a load when stores may precede it unordered.
  void orderStores() {
    if (unorderedStores)
      barrier();
    unorderedStores = false;
  }
  int64_t loopDepth = 0;
};

/// The f32 words of a CTA's scratch for the program's allocations before
/// its grid, as a size program of the function's arguments
/// (GpuImage.h, evaluateSizeProgram); failure (reported) for a size that
/// the shapes do not give.
mlir::FailureOr<SmallVector<int64_t>>
scratchSizeProgram(mlir::func::FuncOp func,
                   ArrayRef<mlir::memref::AllocOp> allocs);

} // namespace attnc::lowering::tile_to_nvgpu

#endif // ATTNC_LIB_CONVERSION_TILETONVGPU_TILEPROGRAMBUILDER_H
