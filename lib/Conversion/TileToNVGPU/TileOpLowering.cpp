//===- TileOpLowering.cpp - Tile ops on warp primitives -------------------===//
//
// ProgramBuilder's CTA and its lowering of the ops that make and use tiles:
// loads become cp.async copies into shared memory, dot mma.sync.m16n8k16
// (ldmatrix operands, or element by element and split into bf16 pairs for
// f32), map its body per fragment element, reduce a fold in the lane and
// over the quad, store the rows below the count. Other ops without tiles
// are cloned.
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_nvgpu;
namespace tile = attnc::tile;

LogicalResult ProgramBuilder::build(tile::GridOp grid) {
  Value queryBlock = blockIndex(gpu::Dimension::x);
  Value head = blockIndex(gpu::Dimension::y);
  Value batch = blockIndex(gpu::Dimension::z);
  threadId = threadIndex();
  Value warp = arith::DivUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  lane = arith::RemUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  group = arith::DivUIOp::create(b, lane, idx(4));
  inGroup = arith::RemUIOp::create(b, lane, idx(4));
  warpRow0 = rb.mul(warp, idx(nvvm::kMmaM));
  base = sharedBase();
  if (workspace)
    setUpWorkspace();
  // cp.async needs sources whose rows are contiguous (checked at launch).
  grid.walk([&](tile::LoadOp load) {
    Value source = mapping.lookup(load.getSource());
    if (isCopied(load, sharedType()) && !contiguous.count(source))
      contiguous[source] = withUnitInnerStride(source);
  });
  mapping.map(grid.getQueryBlock(), queryBlock);
  mapping.map(grid.getHead(), head);
  mapping.map(grid.getBatch(), batch);
  if (failed(lowerBlock(grid.getBody().front())))
    return failure();
  if (!partialResults.empty())
    sumPartialCopies();
  return success();
}

LogicalResult ProgramBuilder::lowerBlock(Block &block) {
  for (Operation &op : block.without_terminator())
    if (failed(lowerOp(&op)))
      return failure();
  return success();
}

LogicalResult ProgramBuilder::lowerOp(Operation *op) {
  if (auto load = dyn_cast<tile::LoadOp>(op))
    return tiles.count(load) ? success() : lowerLoad(load);
  if (auto dot = dyn_cast<tile::DotOp>(op))
    return lowerDot(dot);
  if (auto map = dyn_cast<tile::MapOp>(op))
    return lowerMap(map);
  if (auto reduce = dyn_cast<tile::ReduceOp>(op))
    return lowerReduce(reduce);
  if (auto store = dyn_cast<tile::StoreOp>(op))
    return lowerStore(store);
  if (auto scatter = dyn_cast<tile::ScatterAddOp>(op))
    return lowerScatterAdd(scatter);
  if (auto scan = dyn_cast<tile::ScanOp>(op))
    return lowerScan(scan);
  if (auto slice = dyn_cast<tile::SliceOp>(op))
    return lowerSlice(slice);
  if (auto transpose = dyn_cast<tile::TransposeOp>(op))
    return lowerTranspose(transpose);
  if (auto decayDot = dyn_cast<tile::DecayDotOp>(op))
    return lowerDecayDot(decayDot);
  if (auto combine = dyn_cast<tile::DecayCombineOp>(op))
    return lowerDecayCombine(combine);
  if (auto splat = dyn_cast<tensor::SplatOp>(op))
    return lowerSplat(splat);
  if (auto blocks = dyn_cast<tile::QueryBlocksOp>(op)) { // the launch grid's
    mapping.map(blocks.getResult(), gridSize(gpu::Dimension::x));
    return success();
  }
  if (auto forOp = dyn_cast<scf::ForOp>(op))
    return lowerFor(forOp);
  if (auto ifOp = dyn_cast<scf::IfOp>(op))
    return lowerIf(ifOp);
  if (holdsTiles(op))
    return op->emitOpError("has no GPU lowering yet (attn-tile-to-nvgpu "
                           "handles load, dot, decay_dot, decay_combine, "
                           "map, reduce, scan, slice, transpose, store, "
                           "scatter_add and splat of tiles, in scf.for and "
                           "scf.if)");
  b.clone(*op, mapping);
  return success();
}

//===----------------------------------------------------------------------===//
// Positions
//===----------------------------------------------------------------------===//

Value ProgramBuilder::laneRow(int64_t half) {
  return rb.add(warpRow0, rb.add(group, idx(8 * half)));
}

Value ProgramBuilder::laneCol(int64_t nt, int64_t e) {
  return rb.add(idx(nt * 8 + e), rb.mul(inGroup, idx(2)));
}

Value ProgramBuilder::clampedRow(Value row, Value rows) {
  return rows ? minIndex(row, rb.sub(rows, idx(1))) : row;
}

//===----------------------------------------------------------------------===//
// Shared tiles
//===----------------------------------------------------------------------===//

Type ProgramBuilder::sharedType() {
  return config.splitF32 ? Type(b.getF32Type()) : config.element;
}

LogicalResult ProgramBuilder::checkCopiedTile(tile::LoadOp load) {
  auto type = cast<RankedTensorType>(load.getType());
  if (type.getRank() != 2 || type.getElementType() != sharedType())
    return load.emitOpError()
           << "on the GPU loads 2-D tiles of one element type, "
           << sharedType() << " in this kernel";
  if (type.isDynamicDim(1) || type.getDimSize(1) % 16)
    return load.emitOpError("on the GPU needs a fixed column count that is "
                            "a multiple of 16");
  if (!type.isDynamicDim(0) && type.getDimSize(0) % 16)
    return load.emitOpError("on the GPU needs a row count that is a "
                            "multiple of 16");
  return success();
}

int64_t ProgramBuilder::tileRows(tile::LoadOp load) {
  auto type = cast<RankedTensorType>(load.getType());
  return type.isDynamicDim(0) ? blockRows : type.getDimSize(0);
}

Value ProgramBuilder::allocateShared(tile::LoadOp load, int64_t stages) {
  int64_t rows = tileRows(load);
  int64_t pitch = cast<RankedTensorType>(load.getType()).getDimSize(1) +
                  config.chunkElements();
  SmallVector<int64_t> shape;
  if (stages > 1)
    shape.push_back(stages);
  shape.append({rows, pitch});
  Value buffer = sharedTile(base, sharedEnd, shape, sharedType());
  sharedEnd += stages * rows * pitch * config.elementBytes();
  return buffer;
}

void ProgramBuilder::copyLoad(tile::LoadOp load, Value buffer,
                              ValueRange prefix, ValueRange position,
                              Value count) {
  Value source = contiguous.lookup(mapping.lookup(load.getSource()));
  int64_t rowDim = load.getRowDim();
  SmallVector<Value> at(position);
  Value firstColumn = load.hasFirstColumn() ? at.pop_back_val() : Value();
  SmallVector<Value> tokens = copyRows(
      buffer, prefix, source,
      [&](Value row, Value col) {
        SmallVector<Value> indices(at);
        indices[rowDim] = rb.add(at[rowDim], row);
        indices.push_back(firstColumn ? rb.add(firstColumn, col) : col);
        return indices;
      },
      count, tileRows(load),
      cast<RankedTensorType>(load.getType()).getDimSize(1));
  commitCopies(tokens);
}

LogicalResult ProgramBuilder::lowerLoad(tile::LoadOp load) {
  // 1-D tiles, and f32 tiles of a kernel whose mma operands are 16-bit
  // (an initial state), go to registers.
  if (!isCopied(load, sharedType()))
    return lowerRegisterLoad(load);
  if (failed(checkCopiedTile(load)))
    return failure();
  Value buffer = allocateShared(load, 1);
  // In a loop the previous iteration's readers may not be done; released
  // transient memory may still be read too.
  if (loopDepth > 0 || transientReads || unorderedStores)
    barrier();
  transientReads = false;
  unorderedStores = false;
  copyLoad(load, buffer, {}, lookup(load.getPosition()),
           mapping.lookup(load.getCount()));
  copiesPending = true;
  Fragment &fragment = tiles[load];
  fragment.kind = Fragment::Shared;
  fragment.buffer = buffer;
  fragment.cols = cast<RankedTensorType>(load.getType()).getDimSize(1);
  fragment.rows = mapping.lookup(load.getCount());
  return success();
}

LogicalResult ProgramBuilder::lowerRegisterLoad(tile::LoadOp load) {
  auto type = cast<RankedTensorType>(load.getType());
  FailureOr<Fragment::Kind> kind = registerKind(load, type);
  if (failed(kind))
    return failure();
  orderStores();
  Value source = mapping.lookup(load.getSource());
  Value count = mapping.lookup(load.getCount());
  SmallVector<Value> position = lookup(load.getPosition());
  Value firstColumn = load.hasFirstColumn() ? position.pop_back_val() : Value();
  int64_t rowDim = load.getRowDim();
  // Rows unclamped: those past the count read as 0, as a load's must.
  tiles[load] = fromElements(type, *kind, Value(), [&](Value r, Value c) {
    return rb
        .ifThen(
            lessThan(r, count), {b.getF32Type()},
            [&]() -> SmallVector<Value> {
              SmallVector<Value> at(position);
              at[rowDim] = rb.add(at[rowDim], r);
              if (type.getRank() == 2)
                at.push_back(firstColumn ? rb.add(firstColumn, c) : c);
              return {rb.loadF32(source, at)};
            },
            [&]() -> SmallVector<Value> { return {rb.f32(0)}; })
        .front();
  });
  tiles[load].rows = count;
  return success();
}

void ProgramBuilder::awaitCopies() {
  if (!copiesPending)
    return;
  waitForCopiesAndBarrier();
  copiesPending = false;
}

ProgramBuilder::MmaOperand
ProgramBuilder::sharedAOperand(const Fragment &tile, int64_t kk) {
  // Warps past the rows of a tile of fewer than block_rows rows (a chunk
  // in a CTA sized for a state) read its last 16: their rows are padding.
  int64_t capacity = cast<MemRefType>(tile.buffer.getType()).getShape().end()[-2];
  Value firstRow = capacity < blockRows
                       ? minIndex(warpRow0, idx(capacity - 16))
                       : warpRow0;
  if (config.splitF32)
    return loadElementwiseOperand(tile.buffer, tile.prefix, lane, firstRow,
                                  idx(kk * 16), nvvm::kARegisters,
                                  nvvm::mmaACoord, /*transposed=*/false);
  return {loadAOperand(tile.buffer, lane, firstRow, idx(kk * 16),
                       tile.prefix),
          {}};
}

//===----------------------------------------------------------------------===//
// Tile ops
//===----------------------------------------------------------------------===//

LogicalResult ProgramBuilder::lowerSplat(tensor::SplatOp splat) {
  auto type = cast<RankedTensorType>(splat.getType());
  FailureOr<Fragment::Kind> kind = registerKind(splat, type);
  if (failed(kind))
    return failure();
  Value value = mapping.lookup(splat.getInput());
  Value rows;
  if (type.isDynamicDim(0))
    rows = mapping.lookup(splat.getDynamicSizes().front());
  tiles[splat] = fromElements(type, *kind, rows,
                              [&](Value, Value) { return value; });
  return success();
}

Fragment ProgramBuilder::stageTransposedLhs(const Fragment &lhs,
                                            int64_t depth) {
  if (lhs.kind == Fragment::Shared)
    return lhs;
  // Each warp holds 16 rows of lhs; the result's warp needs 16 of its
  // columns: the tile goes through shared memory, rows past its count as
  // zeros. The first barrier lets the previous iteration's readers finish.
  Fragment staged;
  staged.kind = Fragment::Shared;
  staged.cols = lhs.cols;
  int64_t pitch = lhs.cols + config.chunkElements();
  staged.buffer = sharedTile(base, sharedEnd, {depth, pitch}, sharedType());
  sharedEnd += depth * pitch * config.elementBytes();
  barrier();
  for (int64_t half = 0; half < 2; ++half) {
    Value row = laneRow(half);
    Value inTile = lhs.rows ? lessThan(row, lhs.rows) : Value();
    auto writeRow = [&] {
      for (int64_t nt = 0; nt < lhs.cols / nvvm::kMmaN; ++nt)
        for (int64_t e = 0; e < 2; ++e) {
          Value value = lhs.regs[4 * nt + 2 * half + e];
          if (inTile)
            value = arith::SelectOp::create(b, inTile, value, rb.f32(0));
          storeElement(value, staged.buffer, {row, laneCol(nt, e)});
        }
    };
    if (depth < blockRows) // the buffer holds `depth` rows
      rb.ifThen(lessThan(row, idx(depth)), writeRow);
    else
      writeRow();
  }
  barrier();
  return staged;
}

ProgramBuilder::MmaOperand
ProgramBuilder::transposedAOperand(const Fragment &staged, int64_t kk,
                                   int64_t rows) {
  // A[m][k] = staged[k][m] for m in the warp's 16 rows. Warps past the
  // result's `rows` read the last 16 (their rows are padding).
  Value firstRow =
      rows < blockRows ? minIndex(warpRow0, idx(rows - 16)) : warpRow0;
  if (config.splitF32)
    return loadElementwiseOperand(staged.buffer, staged.prefix, lane,
                                  idx(kk * 16), firstRow, nvvm::kARegisters,
                                  nvvm::mmaACoord, /*transposed=*/true);
  // ldmatrix.x4.trans: lanes 0-7 and 16-23 address depth rows 0-7 and 8-15
  // at the warp's first 8 columns (a0, a2), lanes 8-15 and 24-31 at the
  // next 8 (a1, a3).
  Value row = rb.add(
      idx(kk * 16),
      rb.add(arith::RemUIOp::create(b, lane, idx(8)),
             rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8))));
  Value col = rb.add(
      firstRow,
      rb.mul(arith::RemUIOp::create(
                 b, arith::DivUIOp::create(b, lane, idx(8)), idx(2)),
             idx(8)));
  return {ldmatrix(staged.buffer, staged.prefix, row, col, 4,
                   /*transpose=*/true),
          {}};
}

LogicalResult ProgramBuilder::lowerDot(tile::DotOp dot) {
  const Fragment &lhs = tiles[dot.getLhs()];
  const Fragment &rhs = tiles[dot.getRhs()];
  const Fragment &acc = tiles[dot.getAcc()];
  if (rhs.kind != Fragment::Shared && rhs.kind != Fragment::Accumulator)
    return dot.emitOpError("on the GPU needs a loaded or computed 2-D rhs");
  if (lhs.kind == Fragment::Rows || lhs.kind == Fragment::Cols ||
      acc.kind != Fragment::Accumulator)
    return dot.emitOpError("on the GPU needs a loaded or 2-D f32 lhs and a "
                           "2-D f32 accumulator");
  auto lhsType = cast<RankedTensorType>(dot.getLhs().getType());
  bool transposeLhs = dot.getTransposeLhs();
  int64_t depth = lhsType.getDimSize(transposeLhs ? 0 : 1);
  if (transposeLhs) {
    // lhs^T's rows are the result's: one warp per 16 of them.
    int64_t rows = lhsType.getDimSize(1);
    if (ShapedType::isDynamic(rows) || rows > blockRows || rows % 16 ||
        dot.getTransposeRhs())
      return dot.emitOpError()
             << "with a transposed lhs on the GPU needs an lhs of at most "
             << blockRows
             << " columns (block_rows), a multiple of 16, and an "
                "untransposed rhs";
    if (depth == ShapedType::kDynamic)
      depth = blockRows;
  }
  if (depth == ShapedType::kDynamic || depth % 16)
    return dot.emitOpError("on the GPU needs a depth that is a multiple of "
                           "16");
  if (lhs.kind == Fragment::Shared || rhs.kind == Fragment::Shared)
    awaitCopies();
  // Operands staged in shared memory are read here only.
  TransientShared scope(*this);
  Fragment staged;
  if (transposeLhs)
    staged = stageTransposedLhs(lhs, depth);
  // A computed rhs goes through shared memory too (rounded to the mma
  // operand type, as a loaded one is).
  Fragment rhsShared = stageTransposedLhs(
      rhs, cast<RankedTensorType>(dot.getRhs().getType()).getDimSize(0));
  Fragment result = acc;
  int64_t steps = depth / 16, outTiles = acc.cols / nvvm::kMmaN;
  auto aOperand = [&](int64_t kk) -> MmaOperand {
    if (transposeLhs)
      return transposedAOperand(staged, kk, lhsType.getDimSize(1));
    if (lhs.kind == Fragment::Shared) {
      auto held = heldOperands.find(dot.getLhs());
      return held != heldOperands.end() ? held->second[kk]
                                        : sharedAOperand(lhs, kk);
    }
    // C tiles 2kk and 2kk + 1 are the A fragment of columns [16kk, 16kk+16).
    return operandFromAccumulators(
        ArrayRef<Value>(lhs.regs).slice(8 * kk, 8));
  };
  auto accumulate = [&](const MmaOperand &a, const MmaOperand &bOp,
                        int64_t nt) {
    MutableArrayRef<Value> c(&result.regs[4 * nt], 4);
    SmallVector<Value> updated = mma(a, bOp, c);
    llvm::copy(updated, c.begin());
  };
  if (config.splitF32) {
    // B read element by element at its fragment coordinates: rhs[n][d]
    // when transposed, else rhs[d][n].
    for (int64_t kk = 0; kk < steps; ++kk) {
      MmaOperand a = aOperand(kk);
      for (int64_t nt = 0; nt < outTiles; ++nt) {
        bool transposed = dot.getTransposeRhs();
        MmaOperand bOp = loadElementwiseOperand(
            rhsShared.buffer, rhsShared.prefix, lane, idx(transposed ? nt * 8 : kk * 16),
            idx(transposed ? kk * 16 : nt * 8), nvvm::kBRegisters,
            nvvm::mmaBCoord, transposed);
        accumulate(a, bOp, nt);
      }
    }
    tiles[dot] = result;
    return success();
  }
  Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
  Value laneMod8 = arith::RemUIOp::create(b, lane, idx(8));
  if (dot.getTransposeRhs()) {
    // rhs rows are the output columns: ldmatrix.x4 of 8 rows gives the B
    // operands of two 16-column depth steps (x2 for an odd last step).
    Value colX4 = rb.mul(laneBy8, idx(8));
    Value colX2 = rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)), idx(8));
    for (int64_t kk = 0; kk < steps; kk += 2) {
      bool pair = kk + 1 < steps;
      MmaOperand first = aOperand(kk), second;
      if (pair)
        second = aOperand(kk + 1);
      for (int64_t nt = 0; nt < outTiles; ++nt) {
        SmallVector<Value> regs =
            ldmatrix(rhsShared.buffer, rhsShared.prefix, rb.add(laneMod8, idx(nt * 8)),
                     rb.add(idx(kk * 16), pair ? colX4 : colX2), pair ? 4 : 2,
                     /*transpose=*/false);
        accumulate(first, {{regs[0], regs[1]}, {}}, nt);
        if (pair)
          accumulate(second, {{regs[2], regs[3]}, {}}, nt);
      }
    }
  } else {
    // rhs rows are the depth: ldmatrix.x4.trans of 16 rows gives the B
    // operands of two 8-column output tiles (x2 for an odd last tile).
    Value row = rb.add(
        laneMod8, rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)), idx(8)));
    Value colX4 = rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8));
    for (int64_t kk = 0; kk < steps; ++kk) {
      MmaOperand a = aOperand(kk);
      for (int64_t nt = 0; nt < outTiles; nt += 2) {
        bool pair = nt + 1 < outTiles;
        SmallVector<Value> regs = ldmatrix(
            rhsShared.buffer, rhsShared.prefix, rb.add(idx(kk * 16), row),
            pair ? rb.add(idx(nt * 8), colX4) : idx(nt * 8), pair ? 4 : 2,
            /*transpose=*/true);
        accumulate(a, {{regs[0], regs[1]}, {}}, nt);
        if (pair)
          accumulate(a, {{regs[2], regs[3]}, {}}, nt + 1);
      }
    }
  }
  tiles[dot] = result;
  return success();
}

LogicalResult ProgramBuilder::lowerMap(tile::MapOp map) {
  auto type = cast<RankedTensorType>(map.getType());
  FailureOr<Fragment::Kind> kind = registerKind(map, type);
  if (failed(kind))
    return failure();
  Block &body = map.getBody().front();
  SmallVector<const Fragment *> inputs;
  Value rows;
  for (Value input : map.getInputs()) {
    auto inputType = cast<RankedTensorType>(input.getType());
    // A loaded tile is read at the fragment positions of the result, which
    // cover block_rows rows; one of fewer rows (of scratch) is moved to
    // registers: for good in the block that loads it, else for the maps
    // of this block (registers made in a loop's body do not reach uses
    // after it).
    bool blockOfRows = inputType.isDynamicDim(0) ||
                       inputType.getDimSize(0) == blockRows;
    const Fragment *moved = &tiles[input];
    if (moved->kind == Fragment::Shared && !blockOfRows &&
        *kind == Fragment::Accumulator) {
      if (input.getParentBlock() == map->getBlock()) {
        tiles[input] = toRegisters(input);
        moved = &tiles[input];
      } else {
        std::unique_ptr<Fragment> &inBlock =
            registersInBlock[{input, map->getBlock()}];
        if (!inBlock)
          inBlock = std::make_unique<Fragment>(toRegisters(input));
        moved = inBlock.get();
      }
    }
    const Fragment &fragment = *moved;
    bool sameShape = inputType.getRank() == type.getRank() &&
                     (type.getRank() == 1 ||
                      (inputType.getDimSize(1) == type.getDimSize(1) &&
                       (inputType.getDimSize(0) == 1) ==
                           (type.getDimSize(0) == 1)));
    // Broadcasts: a value per row into the result's columns, a row (or a
    // 1 x 1 tile) into its rows.
    bool broadcast = !sameShape && (fragment.kind == Fragment::Rows ||
                                    fragment.kind == Fragment::Cols);
    if ((fragment.kind == Fragment::Shared &&
         (!blockOfRows || *kind != Fragment::Accumulator)) ||
        (!sameShape && !broadcast) ||
        (fragment.kind == Fragment::Rows && *kind == Fragment::Cols))
      return map.emitOpError("on the GPU takes tiles of its own shape (a "
                             "loaded one of block_rows rows), rows broadcast "
                             "along the columns or a row along the rows");
    if (fragment.kind == Fragment::Shared)
      awaitCopies();
    if (sameShape && !rows)
      rows = fragment.rows;
    inputs.push_back(&fragment);
  }
  auto yielded = [&]() {
    return mapping.lookup(
        cast<tile::YieldOp>(body.getTerminator()).getValues().front());
  };
  // Element (r, c) of the result, `r` clamped to the rows: the inputs'
  // elements there, from this lane's registers (`slot` of its C
  // fragments, `half` of its rows, `column` of its columns) or shared
  // memory at the unclamped row.
  auto evaluate = [&](Value r, Value c, Value unclampedRow, int64_t slot,
                      int64_t half, int64_t column) {
    unsigned arg = 0;
    mapping.map(body.getArgument(arg++), r);
    if (type.getRank() == 2)
      mapping.map(body.getArgument(arg++), c);
    for (const Fragment *input : inputs) {
      Value element;
      if (input->kind == Fragment::Rows) {
        element = input->regs[half];
      } else if (input->kind == Fragment::Cols) {
        element = input->regs[input->regs.size() == 1 ? 0 : column];
      } else if (input->kind == Fragment::Shared) {
        SmallVector<Value> at(input->prefix);
        at.append({unclampedRow, c});
        element = memref::LoadOp::create(b, input->buffer, at);
      } else {
        element = input->regs[slot];
      }
      // A 16-bit tile in registers holds its values in f32.
      Type argType = body.getArgument(arg).getType();
      if (element.getType() != argType)
        element = arith::TruncFOp::create(b, argType, element);
      mapping.map(body.getArgument(arg++), element);
    }
    for (Operation &op : body.without_terminator())
      b.clone(op, mapping);
    return yielded();
  };
  // fromElements visits the result's elements in its register order.
  int64_t next = 0;
  tiles[map] = fromElements(type, *kind, rows, [&](Value r, Value c) {
    int64_t slot = next++;
    switch (*kind) {
    case Fragment::Rows:
      return evaluate(r, c, laneRow(slot), slot, slot, 0);
    case Fragment::Cols:
      return evaluate(r, c, r, slot, 0, slot);
    default: {
      int64_t nt = slot / 4, half = (slot % 4) / 2, e = slot % 2;
      return evaluate(r, c, laneRow(half), slot, half, 2 * nt + e);
    }
    }
  });
  return success();
}

LogicalResult ProgramBuilder::lowerReduce(tile::ReduceOp reduce) {
  const Fragment &input = tiles[reduce.getInput()];
  bool max = reduce.getKind() == tile::ReduceKind::max;
  // A tile of one column to a value per row: its registers as they are.
  if (input.kind == Fragment::Rows && isTile(reduce.getResult())) {
    tiles[reduce] = input;
    return success();
  }
  if (input.kind == Fragment::Rows) {
    // To a scalar: a lane's two rows (those below the count, when the tile
    // has fewer than block_rows), then across the 8 lane groups (the
    // quad's lanes hold the same rows), then over the warps in order.
    Value identity =
        rb.f32(max ? -std::numeric_limits<double>::infinity() : 0.0);
    Value folded;
    for (int64_t half = 0; half < 2; ++half) {
      Value value = input.rows ? Value(arith::SelectOp::create(
                                     b, lessThan(laneRow(half), input.rows),
                                     input.regs[half], identity))
                               : input.regs[half];
      folded = !folded ? value
               : max   ? Value(arith::MaximumFOp::create(b, folded, value))
                       : Value(arith::AddFOp::create(b, folded, value));
    }
    for (int32_t offset : {4, 8, 16}) {
      Value other = gpu::ShuffleOp::create(b, folded, offset, nvvm::kWarpSize,
                                           gpu::ShuffleMode::XOR)
                        .getShuffleResult();
      folded = max ? Value(arith::MaximumFOp::create(b, folded, other))
                   : Value(arith::AddFOp::create(b, folded, other));
    }
    if (config.warps > 1) {
      TransientShared scope(*this);
      Value perWarp =
          sharedTile(base, sharedEnd, {config.warps}, b.getF32Type());
      sharedEnd += 4 * config.warps;
      barrier(); // earlier readers of that memory may not be done
      Value warp = arith::DivUIOp::create(b, threadId, idx(nvvm::kWarpSize));
      rb.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane,
                                      idx(0)),
                [&] {
                  memref::StoreOp::create(b, folded, perWarp,
                                          ValueRange{warp});
                });
      barrier();
      folded = memref::LoadOp::create(b, perWarp, ValueRange{idx(0)});
      for (int64_t w = 1; w < config.warps; ++w) {
        Value other = memref::LoadOp::create(b, perWarp, ValueRange{idx(w)});
        folded = max ? Value(arith::MaximumFOp::create(b, folded, other))
                     : Value(arith::AddFOp::create(b, folded, other));
      }
    }
    mapping.map(reduce.getResult(), folded);
    return success();
  }
  if (input.kind != Fragment::Accumulator)
    return reduce.emitOpError("of a loaded tile has no GPU lowering yet");
  Fragment result;
  result.kind = Fragment::Rows;
  result.rows = input.rows;
  for (int64_t half = 0; half < 2; ++half) {
    Value folded;
    for (int64_t nt = 0; nt < input.cols / nvvm::kMmaN; ++nt)
      for (int64_t e = 0; e < 2; ++e) {
        Value value = input.regs[4 * nt + 2 * half + e];
        folded = !folded ? value
                 : max   ? Value(arith::MaximumFOp::create(b, folded, value))
                         : Value(arith::AddFOp::create(b, folded, value));
      }
    result.regs.push_back(quadReduce(folded, max));
  }
  tiles[reduce] = result;
  return success();
}

LogicalResult ProgramBuilder::lowerStore(tile::StoreOp store) {
  // A loaded tile (a state copied to scratch) goes through registers.
  Fragment value = tiles[store.getValue()];
  if (value.kind == Fragment::Shared)
    value = toRegisters(store.getValue());
  Value dest = mapping.lookup(store.getDest());
  Value count = mapping.lookup(store.getCount());
  SmallVector<Value> position = lookup(store.getPosition());
  Value firstColumn =
      store.hasFirstColumn() ? position.pop_back_val() : Value();
  int64_t rowDim = store.getRowDim();
  unorderedStores = true;
  for (int64_t half = 0; half < 2; ++half) {
    Value row = laneRow(half);
    Value inTile = lessThan(row, count);
    if (value.kind == Fragment::Rows) // one lane of the quad writes it
      inTile = arith::AndIOp::create(
          b, inTile,
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq, inGroup,
                                idx(0)));
    rb.ifThen(inTile, [&] {
      SmallVector<Value> at(position);
      at[rowDim] = rb.add(at[rowDim], row);
      if (value.kind == Fragment::Rows) {
        rb.storeF32(value.regs[half], dest, at);
        return;
      }
      for (int64_t nt = 0; nt < value.cols / nvvm::kMmaN; ++nt)
        for (int64_t e = 0; e < 2; ++e) {
          SmallVector<Value> element(at);
          Value col = laneCol(nt, e);
          element.push_back(firstColumn ? rb.add(firstColumn, col) : col);
          rb.storeF32(value.regs[4 * nt + 2 * half + e], dest, element);
        }
    });
  }
  return success();
}
