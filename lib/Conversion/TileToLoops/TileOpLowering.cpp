//===- TileOpLowering.cpp - Tile ops as loops over buffers ----------------===//
//
// ProgramLowering's lowering of the tile ops other than dots and maps:
// load and store (rows below the count), splat (zero accumulators are
// never filled), scan, slice, transpose, reduce and top-k insert, each a
// loop nest over the buffers of its tiles.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

#include "mlir/IR/Matchers.h"

#include <limits>

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;

LogicalResult ProgramLowering::lowerLoad(tile::LoadOp load,
                                         IRMapping &mapping) {
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

LogicalResult ProgramLowering::lowerStore(tile::StoreOp store,
                                          IRMapping &mapping) {
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

LogicalResult ProgramLowering::lowerSplat(tensor::SplatOp splat,
                                          IRMapping &mapping) {
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

/// A tile of +0.0 (tensor.splat or its canonical form).
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

/// Row r combines rows 0..r, in place when the input dies here.
LogicalResult ProgramLowering::lowerScan(tile::ScanOp scan) {
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
LogicalResult ProgramLowering::lowerSlice(tile::SliceOp slice,
                                          IRMapping &mapping) {
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
LogicalResult ProgramLowering::lowerTranspose(tile::TransposeOp transpose) {
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

LogicalResult ProgramLowering::lowerReduce(tile::ReduceOp reduce,
                                           IRMapping &mapping) {
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
LogicalResult ProgramLowering::lowerTopKInsert(tile::TopKInsertOp insert) {
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
