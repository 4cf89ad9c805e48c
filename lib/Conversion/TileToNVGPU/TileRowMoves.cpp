//===- TileRowMoves.cpp - Register layouts and moves between rows ---------===//
//
// A computed tile lives in registers, in f32, in one of three layouts by
// its shape (registerKind): C fragments, a value per row, or a value per
// column replicated in every lane. Ops that move values between rows, which live
// in other lanes and warps, go through shared memory: the tile is written
// there in f32 between two barriers and the result read back at its own
// fragment positions (a scan runs down the columns there, one thread per
// column). Simple rather than fast: these tiles are small (gates, a state
// row) next to the dots around them.
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_nvgpu;
namespace tile = attnc::tile;

namespace {

/// The static row count of a tile, or -1 when it is dynamic (1 for 1-D
/// tiles' columns is the caller's business).
int64_t staticRows(RankedTensorType type) {
  return type.isDynamicDim(0) ? -1 : type.getDimSize(0);
}

int64_t columnsOf(RankedTensorType type) {
  return type.getRank() == 1 ? 1 : type.getDimSize(1);
}

} // namespace

FailureOr<Fragment::Kind> ProgramBuilder::registerKind(Operation *op,
                                                       RankedTensorType type) {
  // 16-bit tiles (rows of a loaded one) are held in f32, exactly.
  Type element = type.getElementType();
  if (!element.isF32() && !element.isF16() && !element.isBF16())
    return op->emitOpError("computes a ")
           << type << " tile, which the GPU holds only in f32";
  int64_t rows = staticRows(type), cols = columnsOf(type);
  if (rows > blockRows)
    return op->emitOpError()
           << "computes a tile of " << rows << " rows, more than the "
           << blockRows << " block rows of the GPU's CTA (one warp per 16)";
  if (type.getRank() == 2 && rows == 1) {
    if (cols != 1 && (ShapedType::isDynamic(cols) || cols % nvvm::kMmaN))
      return op->emitOpError("computes a row whose column count is not 1 "
                             "or a multiple of 8, which has no GPU layout");
    return Fragment::Cols;
  }
  if (cols == 1)
    return Fragment::Rows;
  if (ShapedType::isDynamic(cols) || cols % nvvm::kMmaN)
    return op->emitOpError("on the GPU needs a column count that is a "
                           "multiple of 8");
  return Fragment::Accumulator;
}

Fragment ProgramBuilder::fromElements(RankedTensorType type,
                                      Fragment::Kind kind, Value rows,
                                      function_ref<Value(Value, Value)> at) {
  Fragment fragment;
  fragment.kind = kind;
  int64_t fixed = staticRows(type);
  if (!rows && fixed > 0 && fixed < blockRows && kind != Fragment::Cols)
    rows = idx(fixed);
  fragment.rows = rows;
  auto row = [&](int64_t half) { return clampedRow(laneRow(half), rows); };
  int64_t cols = columnsOf(type);
  switch (kind) {
  case Fragment::Rows:
    for (int64_t half = 0; half < 2; ++half)
      fragment.regs.push_back(at(row(half), idx(0)));
    break;
  case Fragment::Cols:
    fragment.cols = cols;
    if (cols == 1) {
      fragment.regs.push_back(at(idx(0), idx(0)));
      break;
    }
    for (int64_t nt = 0; nt < cols / nvvm::kMmaN; ++nt)
      for (int64_t e = 0; e < 2; ++e)
        fragment.regs.push_back(at(idx(0), laneCol(nt, e)));
    break;
  default:
    fragment.kind = Fragment::Accumulator;
    fragment.cols = cols;
    for (int64_t slot = 0; slot < cols / 2; ++slot) {
      int64_t nt = slot / 4, half = (slot % 4) / 2, e = slot % 2;
      fragment.regs.push_back(at(row(half), laneCol(nt, e)));
    }
  }
  return fragment;
}

Value ProgramBuilder::stageInShared(Value value) {
  const Fragment &tile = tiles[value];
  auto type = cast<RankedTensorType>(value.getType());
  int64_t rows = tile.kind == Fragment::Cols ? 1 : staticRows(type);
  if (rows < 0)
    rows = blockRows;
  int64_t cols = columnsOf(type);
  Value buffer = sharedTile(base, sharedEnd, {rows, cols}, b.getF32Type());
  sharedEnd += rows * cols * 4;
  // Readers of what was there before finish first.
  barrier();
  Value zero = rb.f32(0);
  auto write = [&](Value value, Value row, Value col, Value when) {
    if (tile.rows) // rows past the count read as 0
      value = arith::SelectOp::create(b, lessThan(row, tile.rows), value,
                                      zero);
    rb.ifThen(when, [&] { storeElement(value, buffer, {row, col}); });
  };
  Value isTrue = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
  auto inRows = [&](Value row) {
    return rows < blockRows ? lessThan(row, idx(rows)) : isTrue;
  };
  switch (tile.kind) {
  case Fragment::Rows: { // one lane of each quad
    Value first = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, inGroup,
                                        idx(0));
    for (int64_t half = 0; half < 2; ++half) {
      Value row = laneRow(half);
      write(tile.regs[half], row, idx(0),
            arith::AndIOp::create(b, first, inRows(row)));
    }
    break;
  }
  case Fragment::Cols: { // the first quad of warp 0
    Value quad = lessThan(threadId, idx(cols == 1 ? 1 : 4));
    if (cols == 1) {
      write(tile.regs[0], idx(0), idx(0), quad);
      break;
    }
    for (int64_t nt = 0; nt < cols / nvvm::kMmaN; ++nt)
      for (int64_t e = 0; e < 2; ++e)
        write(tile.regs[2 * nt + e], idx(0), laneCol(nt, e), quad);
    break;
  }
  default:
    for (int64_t half = 0; half < 2; ++half) {
      Value row = laneRow(half);
      for (int64_t nt = 0; nt < cols / nvvm::kMmaN; ++nt)
        for (int64_t e = 0; e < 2; ++e)
          write(tile.regs[4 * nt + 2 * half + e], row, laneCol(nt, e),
                inRows(row));
    }
  }
  barrier();
  return buffer;
}

std::function<Value(Value, Value)> ProgramBuilder::readerOf(Value value) {
  const Fragment &tile = tiles[value];
  if (tile.kind == Fragment::Shared) {
    awaitCopies();
    Value buffer = tile.buffer;
    SmallVector<Value> prefix = tile.prefix;
    return [this, buffer, prefix](Value r, Value c) {
      SmallVector<Value> at(prefix);
      at.append({r, c});
      return loadF32(buffer, at);
    };
  }
  Value buffer = stageInShared(value);
  return [this, buffer](Value r, Value c) {
    return memref::LoadOp::create(b, buffer, ValueRange{r, c}).getResult();
  };
}

Fragment ProgramBuilder::toRegisters(Value value) {
  TransientShared scope(*this);
  auto type = cast<RankedTensorType>(value.getType());
  Value rows = tiles[value].rows;
  return fromElements(type, Fragment::Accumulator, rows, readerOf(value));
}

LogicalResult ProgramBuilder::lowerScan(tile::ScanOp scan) {
  auto type = cast<RankedTensorType>(scan.getType());
  FailureOr<Fragment::Kind> kind = registerKind(scan, type);
  if (failed(kind))
    return failure();
  if (tiles[scan.getInput()].kind == Fragment::Shared)
    tiles[scan.getInput()] = toRegisters(scan.getInput());
  TransientShared scope(*this);
  Value rows = tiles[scan.getInput()].rows;
  // Scanned in place in its copy in shared memory, one thread per column,
  // over every row the copy holds (rows past the count are 0, which
  // leaves the sums of the rows below it as they are).
  Value buffer = stageInShared(scan.getInput());
  int64_t height = *kind == Fragment::Cols ? 1 : staticRows(type);
  if (height < 0)
    height = blockRows;
  bool max = scan.getKind() == tile::ReduceKind::max;
  Value identity =
      rb.f32(max ? -std::numeric_limits<double>::infinity() : 0.0);
  forEachIndex(idx(0), idx(columnsOf(type)), [&](Value col) {
    rb.loop(idx(0), idx(height), {identity},
            [&](Value i, ValueRange running) -> SmallVector<Value> {
              Value row = scan.getReverse() ? rb.sub(idx(height - 1), i) : i;
              Value x = memref::LoadOp::create(b, buffer, ValueRange{row, col});
              Value next = max ? Value(arith::MaximumFOp::create(
                                     b, running[0], x))
                               : rb.add(running[0], x);
              memref::StoreOp::create(b, scan.getExclusive() ? running[0] : next,
                                      buffer, ValueRange{row, col});
              return {next};
            });
  });
  barrier();
  tiles[scan] = fromElements(type, *kind, rows, [&](Value r, Value c) {
    return memref::LoadOp::create(b, buffer, ValueRange{r, c}).getResult();
  });
  return success();
}

LogicalResult ProgramBuilder::lowerSlice(tile::SliceOp slice) {
  auto type = cast<RankedTensorType>(slice.getType());
  FailureOr<Fragment::Kind> kind = registerKind(slice, type);
  if (failed(kind))
    return failure();
  auto inputType = cast<RankedTensorType>(slice.getInput().getType());
  int64_t inputRows = staticRows(inputType);
  if (inputRows < 0)
    inputRows = blockRows;
  Value first = mapping.lookup(slice.getFirst());
  Value count = mapping.lookup(slice.getCount());
  TransientShared scope(*this);
  std::function<Value(Value, Value)> read = readerOf(slice.getInput());
  Value rows = type.isDynamicDim(0) ? minIndex(count, idx(blockRows)) : Value();
  tiles[slice] = fromElements(type, *kind, rows, [&](Value r, Value c) {
    // Rows past the count are 0; the read stays inside the input.
    Value from = minIndex(rb.add(first, r), idx(inputRows - 1));
    return arith::SelectOp::create(b, lessThan(r, count), read(from, c),
                                   rb.f32(0))
        .getResult();
  });
  return success();
}

LogicalResult ProgramBuilder::lowerTranspose(tile::TransposeOp transpose) {
  auto type = cast<RankedTensorType>(transpose.getType());
  FailureOr<Fragment::Kind> kind = registerKind(transpose, type);
  if (failed(kind))
    return failure();
  TransientShared scope(*this);
  std::function<Value(Value, Value)> read = readerOf(transpose.getInput());
  tiles[transpose] = fromElements(
      type, *kind, Value(), [&](Value r, Value c) { return read(c, r); });
  return success();
}
