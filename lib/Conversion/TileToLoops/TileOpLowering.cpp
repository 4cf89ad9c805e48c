//===- TileOpLowering.cpp - Tile ops as loops over buffers ----------------===//
//
// The patterns lowering the tile ops other than dots and maps: load and
// store (rows below the count), scatter-add (in row-major order), splat and constant (zero accumulators are
// never filled), scan, slice, transpose, reduce and top-k insert, each a
// loop nest over the buffers of its tiles.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

#include <limits>

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;

namespace {

struct LoadLowering : TileLowering<tile::LoadOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::LoadOp load) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    auto type = cast<RankedTensorType>(load.getType());
    Value source = lowering.remapped(load.getSource());
    auto sourceType = cast<MemRefType>(source.getType());
    Value count = lowering.remapped(load.getCount());
    auto [capacity, rows] = lowering.rowsOf(type.getDimSize(0), count);
    Value cols;
    if (type.getRank() == 2) {
      Value sourceCols;
      if (lowering.dominatesAllocPoint(source)) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(lowering.allocPoint());
        sourceCols = rb.dim(source, sourceType.getRank() - 1);
      }
      FailureOr<Value> size =
          lowering.sizeAtAllocPoint(load, type.getDimSize(1), sourceCols);
      if (failed(size))
        return failure();
      cols = *size;
    }
    TileBuffer tile =
        lowering.allocate(capacity, cols, lowering.prefersTransposed(load));
    // A tile of `count` rows holds at most the grid's block_rows; a head
    // dim of rows (defined outside the grid) is its own capacity, and a
    // row count computed here would not be known outside an scf.if that
    // yields the tile.
    tile.rows = rows == count && capacity != count
                    ? Value(arith::MinUIOp::create(b, count, capacity))
                    : rows;
    lowering.assign(load, tile);

    SmallVector<Value> position;
    for (Value index : load.getPosition())
      position.push_back(lowering.remapped(index));
    Value firstColumn =
        load.hasFirstColumn() ? position.pop_back_val() : Value();
    count = arith::MinUIOp::create(b, count, tile.rows);
    int64_t rowDim = load.getRowDim();
    auto at = [&](Value r, Value c) {
      SmallVector<Value> indices(position);
      indices[rowDim] = rb.add(indices[rowDim], r);
      if (c)
        indices.push_back(firstColumn ? rb.add(firstColumn, c) : c);
      return indices;
    };
    rb.loop(rb.index(0), count, [&](Value r) {
      if (!cols)
        return lowering.storeElement(rb.loadF32(source, at(r, Value())), tile,
                                     r, Value());
      rb.loop(rb.index(0), cols, [&](Value c) {
        lowering.storeElement(rb.loadF32(source, at(r, c)), tile, r, c);
      });
    });
    // Rows past `count` read as zero.
    rb.loop(count, tile.rows, [&](Value r) {
      if (!cols)
        return lowering.storeElement(rb.f32(0), tile, r, Value());
      rb.loop(rb.index(0), cols,
              [&](Value c) { lowering.storeElement(rb.f32(0), tile, r, c); });
    });
    lowering.replaceOp(load, {});
    return success();
  }
};

struct StoreLowering : TileLowering<tile::StoreOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::StoreOp store) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer tile = lowering.tileOf(store.getValue());
    Value dest = lowering.remapped(store.getDest());
    SmallVector<Value> position;
    for (Value index : store.getPosition())
      position.push_back(lowering.remapped(index));
    Value firstColumn =
        store.hasFirstColumn() ? position.pop_back_val() : Value();
    Value count = arith::MinUIOp::create(b, lowering.remapped(store.getCount()),
                                         tile.rows);
    int64_t rowDim = store.getRowDim();
    rb.loop(rb.index(0), count, [&](Value r) {
      SmallVector<Value> indices(position);
      indices[rowDim] = rb.add(indices[rowDim], r);
      if (!tile.cols)
        return rb.storeF32(lowering.loadElement(tile, r, Value()), dest,
                           indices);
      rb.loop(rb.index(0), tile.cols, [&](Value c) {
        SmallVector<Value> element(indices);
        element.push_back(firstColumn ? rb.add(firstColumn, c) : c);
        rb.storeF32(lowering.loadElement(tile, r, c), dest, element);
      });
    });
    lowering.replaceOp(store, {});
    return success();
  }
};

/// values[r][c] into dest at the position the index tiles hold, in
/// row-major order; positions outside dest are skipped.
struct ScatterAddLowering : TileLowering<tile::ScatterAddOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::ScatterAddOp scatter) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer values = lowering.tileOf(scatter.getValues());
    SmallVector<TileBuffer> indices = llvm::map_to_vector(
        scatter.getIndices(), [&](Value index) { return lowering.tileOf(index); });
    Value dest = lowering.remapped(scatter.getDest());
    lowering.forEachElement(values, [&](Value r, Value c) {
      Value inside = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
      SmallVector<Value> at;
      for (auto [dim, index] : llvm::enumerate(indices)) {
        auto [position, inRange] = rb.scatterPosition(
            lowering.loadElement(index, r, c), rb.dim(dest, dim));
        inside = arith::AndIOp::create(b, inside, inRange);
        at.push_back(position);
      }
      rb.ifThen(inside, [&] {
        Value sum = rb.add(memref::LoadOp::create(b, dest, at),
                           lowering.loadElement(values, r, c));
        memref::StoreOp::create(b, sum, dest, at);
      });
    });
    lowering.replaceOp(scatter, {});
    return success();
  }
};

/// Row r combines rows 0..r (reverse: r..last; exclusive: without r),
/// visiting the rows in the scan's order; in place when the input dies
/// here, unless exclusive (row r then reads the input's previous row).
struct ScanLowering : TileLowering<tile::ScanOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::ScanOp scan) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer input = lowering.tileOf(scan.getInput());
    bool exclusive = scan.getExclusive();
    TileBuffer result =
        exclusive ? lowering.assign(scan, lowering.allocateLike(input))
                  : lowering.bufferFor(scan, scan, input, {scan.getInput()});
    bool max = scan.getKind() == tile::ReduceKind::max;
    auto combine = [&](Value x, Value y) -> Value {
      return max ? Value(arith::MaximumFOp::create(b, x, y)) : rb.add(x, y);
    };
    Value zero = rb.index(0), one = rb.index(1);
    // The row visited i-th.
    auto row = [&](Value i) -> Value {
      return scan.getReverse() ? rb.sub(rb.sub(input.rows, one), i) : i;
    };
    Value identity =
        rb.f32(max ? -std::numeric_limits<float>::infinity() : 0.0);
    rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, input.rows,
                                    zero),
              [&] {
                Value r = row(zero);
                lowering.forEachColumn(input, [&](Value c) {
                  lowering.storeElement(
                      exclusive ? identity : lowering.loadElement(input, r, c),
                      result, r, c);
                });
              });
    rb.loop(one, input.rows, [&](Value i) {
      Value r = row(i), previous = row(rb.sub(i, one));
      Value from = exclusive ? previous : r;
      lowering.forEachColumn(input, [&](Value c) {
        lowering.storeElement(
            combine(lowering.loadElement(result, previous, c),
                    lowering.loadElement(input, from, c)),
            result, r, c);
      });
    });
    lowering.replaceOp(scan, {});
    return success();
  }
};

/// Copies rows first.. of the input; rows past the count are zero.
struct SliceLowering : TileLowering<tile::SliceOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::SliceOp slice) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    auto type = cast<RankedTensorType>(slice.getType());
    TileBuffer input = lowering.tileOf(slice.getInput());
    Value count = lowering.remapped(slice.getCount());
    Value first = lowering.remapped(slice.getFirst());
    auto [capacity, rows] = lowering.rowsOf(type.getDimSize(0), count);
    TileBuffer result = lowering.allocate(capacity, input.cols, false);
    result.rows = rows == count
                      ? Value(arith::MinUIOp::create(b, count, capacity))
                      : rows;
    lowering.assign(slice, result);
    Value copied = arith::MinUIOp::create(b, count, result.rows);
    rb.loop(rb.index(0), copied, [&](Value r) {
      lowering.forEachColumn(input, [&](Value c) {
        lowering.storeElement(lowering.loadElement(input, rb.add(first, r), c),
                              result, r, c);
      });
    });
    rb.loop(copied, result.rows, [&](Value r) {
      lowering.forEachColumn(input, [&](Value c) {
        lowering.storeElement(rb.f32(0), result, r, c);
      });
    });
    lowering.replaceOp(slice, {});
    return success();
  }
};

/// A copy with rows and columns swapped; the input's row count must be
/// known at the allocation point, as it becomes the column count.
struct TransposeLowering : TileLowering<tile::TransposeOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::TransposeOp transpose) const override {
    TileBuffer input = lowering.tileOf(transpose.getInput());
    if (!lowering.dominatesAllocPoint(input.rows))
      return lowering.error(
          transpose,
          "transposes a tile whose row count is computed inside the grid");
    TileBuffer result = lowering.assign(
        transpose, lowering.allocate(input.cols, input.rows, false));
    lowering.forEachElement(input, [&](Value r, Value c) {
      lowering.storeElement(lowering.loadElement(input, r, c), result, c, r);
    });
    lowering.replaceOp(transpose, {});
    return success();
  }
};

struct ReduceLowering : TileLowering<tile::ReduceOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::ReduceOp reduce) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer input = lowering.tileOf(reduce.getInput());
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
      lowering.replaceOp(reduce, combineAll(input.rows, [&](Value r) {
                           return lowering.loadElement(input, r, Value());
                         }));
      return success();
    }
    TileBuffer result = lowering.allocate(input.capacity, Value(), false);
    result.rows = input.rows;
    lowering.assign(reduce.getResult(), result);
    rb.loop(rb.index(0), input.rows, [&](Value r) {
      Value combined = combineAll(input.cols, [&](Value c) {
        return lowering.loadElement(input, r, c);
      });
      lowering.storeElement(combined, result, r, Value());
    });
    lowering.replaceOp(reduce, {});
    return success();
  }
};

/// Per row: the candidate's place follows the last listed entry it does
/// not beat; the entries from there move down one and it is stored there.
/// In place when the lists die here.
struct TopKInsertLowering : TileLowering<tile::TopKInsertOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::TopKInsertOp insert) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer scores = lowering.tileOf(insert.getScores()),
               blocks = lowering.tileOf(insert.getBlocks()),
               candidateScore = lowering.tileOf(insert.getCandidateScore()),
               candidateBlock = lowering.tileOf(insert.getCandidateBlock());
    Value candidates[] = {insert.getCandidateScore(),
                          insert.getCandidateBlock()};
    TileBuffer bestScores = lowering.bufferFor(
        insert, insert.getBestScores(), scores, {insert.getScores()},
        {insert.getBlocks(), candidates[0], candidates[1]});
    TileBuffer bestBlocks = lowering.bufferFor(
        insert, insert.getBestBlocks(), blocks, {insert.getBlocks()},
        {insert.getScores(), candidates[0], candidates[1]});
    if (failed(lowering.moveTile(insert, scores, bestScores, {})) ||
        failed(lowering.moveTile(insert, blocks, bestBlocks, {})))
      return failure();
    Value zero = rb.index(0), one = rb.index(1);
    Value k = bestScores.cols;
    rb.loop(zero, bestScores.rows, [&](Value r) {
      Value block = lowering.loadElement(candidateBlock, r, Value());
      Value candidate =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OGE, block, rb.f32(0));
      rb.ifThen(candidate, [&] {
        Value score = lowering.loadElement(candidateScore, r, Value());
        Value place = rb.loop(zero, k, {zero}, [&](Value e, ValueRange count) {
          Value listed = arith::CmpFOp::create(
              b, arith::CmpFPredicate::OGE,
              lowering.loadElement(bestBlocks, r, e), rb.f32(0));
          Value beaten =
              arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, score,
                                    lowering.loadElement(bestScores, r, e));
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
                        lowering.storeElement(
                            lowering.loadElement(list, r, from), list, r, to);
                    });
                    lowering.storeElement(score, bestScores, r, place);
                    lowering.storeElement(block, bestBlocks, r, place);
                  });
      });
    });
    lowering.replaceOp(insert, {});
    return success();
  }
};

/// A splat of a tile inside the grid (those outside it are filled before
/// the grid's loop).
struct SplatLowering : TileLowering<tensor::SplatOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tensor::SplatOp splat) const override {
    if (!lowering.hasTile(splat) && failed(lowering.fillSplat(splat)))
      return failure();
    lowering.replaceOp(splat, {});
    return success();
  }
};

/// The launcher's query blocks per (batch, head): the work range's.
struct QueryBlocksLowering : TileLowering<tile::QueryBlocksOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::QueryBlocksOp blocks) const override {
    lowering.replaceOp(blocks, {lowering.rb.workRowBlocks});
    return success();
  }
};

struct ConstantLowering : TileLowering<arith::ConstantOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(arith::ConstantOp constant) const override {
    if (!lowering.hasTile(constant) && failed(lowering.fillConstant(constant)))
      return failure();
    lowering.replaceOp(constant, {});
    return success();
  }
};

} // namespace

void attnc::lowering::tile_to_loops::populateTileOpLoweringPatterns(
    RewritePatternSet &patterns, ProgramLowering &lowering) {
  patterns.add<LoadLowering, StoreLowering, ScatterAddLowering, SplatLowering,
               ConstantLowering, ScanLowering, SliceLowering, TransposeLowering, ReduceLowering,
               TopKInsertLowering, QueryBlocksLowering>(lowering,
                                                        patterns.getContext());
}
