//===- TileToNvgpu.cpp - Tile programs to mma.sync kernels ----------------===//
//
// Gives the tiles of a program GPU layouts and builds its CTA from warp
// primitives (WarpBuilder.h): the grid becomes the launch grid, a block of
// `block_rows` rows is one CTA of block_rows / 16 warps, and each warp owns
// 16 rows of every row tile. Where a tile lives:
//
//   loaded tile           shared memory, copied with cp.async; two stages
//                         when its load is in a loop and can be issued one
//                         iteration ahead (the next block is in flight
//                         while the current one is used). f16/bf16, or f32
//                         whose mma operands split into bf16 pairs
//   f32 2-D tile          this lane's mma C fragments: rows g and g + 8 of
//                         the warp's 16, columns 2t, 2t + 1 of every 8
//   f32 1-D tile          this lane's two rows, g and g + 8
//
// dot takes its A operand from shared memory (ldmatrix, kept in registers
// across a loop when small) or from a C fragment (the FlashAttention-2
// property: two adjacent 16x8 C tiles are one A fragment), its B operand
// from shared memory (ldmatrix, .trans unless the operand is transposed).
// f32 tiles are read element by element instead and every product is three
// mma of bf16 halves (WarpConfig::splitF32).
// reduce folds in the lane and over the quad with xor shuffles; map
// evaluates its body per fragment element with that element's position
// (rows past the tile's row count clamped to its last row, so expressions
// never read user tensors out of bounds); store writes the rows below its
// count. See the pass description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/NVVM/WarpBuilder.h"
#include "attnc/Dialect/Tile/IR/TileOps.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/Support/FormatVariadic.h"

namespace attnc {
#define GEN_PASS_DEF_TILETONVGPU
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
namespace tile = attnc::tile;

namespace {

constexpr int64_t kStages = 2;

bool isTile(Value value) { return isa<RankedTensorType>(value.getType()); }
bool holdsTiles(Operation *op) {
  WalkResult found = op->walk([](Operation *nested) {
    for (Value value : nested->getOperands())
      if (isTile(value))
        return WalkResult::interrupt();
    for (Value value : nested->getResults())
      if (isTile(value))
        return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return found.wasInterrupted();
}
/// Whether `value` is defined outside `op` (so it dominates op's results).
bool definedOutside(Value value, Operation *op) {
  return !op->isAncestor(value.getParentBlock()->getParentOp());
}
bool dependsOn(Value value, Value on, llvm::SmallPtrSetImpl<Value> &seen) {
  if (value == on)
    return true;
  if (!seen.insert(value).second)
    return false;
  Operation *def = value.getDefiningOp();
  return def && llvm::any_of(def->getOperands(), [&](Value operand) {
           return dependsOn(operand, on, seen);
         });
}

/// Where a tile lives on the GPU.
struct Fragment {
  enum Kind { Accumulator, Rows, Shared } kind = Accumulator;
  /// Accumulator: 4 registers per 8 columns (c[0][0], c[0][1], c[1][0],
  /// c[1][1] of each 16x8 C tile); Rows: the values of rows g and g + 8.
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
  ProgramBuilder(LoweringBuilder &rb, const WarpConfig &config,
                 int64_t blockRows)
      : WarpBuilder(rb, config), mapping(rb.params),
        blockRows(blockRows) {}

  /// Builds the CTA of `grid` at the builder's insertion point.
  LogicalResult build(tile::GridOp grid) {
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
    // cp.async needs sources whose rows are contiguous (checked at launch).
    grid.walk([&](tile::LoadOp load) {
      Value source = mapping.lookup(load.getSource());
      if (!contiguous.count(source))
        contiguous[source] = withUnitInnerStride(source);
    });
    mapping.map(grid.getQueryBlock(), queryBlock);
    mapping.map(grid.getHead(), head);
    mapping.map(grid.getBatch(), batch);
    return lowerBlock(grid.getBody().front());
  }

  int64_t sharedBytes() const { return sharedEnd; }

private:
  LogicalResult lowerBlock(Block &block) {
    for (Operation &op : block.without_terminator())
      if (failed(lowerOp(&op)))
        return failure();
    return success();
  }

  LogicalResult lowerOp(Operation *op) {
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
    if (auto splat = dyn_cast<tensor::SplatOp>(op))
      return lowerSplat(splat);
    if (auto forOp = dyn_cast<scf::ForOp>(op))
      return lowerFor(forOp);
    if (auto ifOp = dyn_cast<scf::IfOp>(op))
      return lowerIf(ifOp);
    if (holdsTiles(op))
      return op->emitOpError("has no GPU lowering yet (attn-tile-to-nvgpu "
                             "handles load, dot, map, reduce, store and "
                             "splat of tiles, in scf.for and scf.if)");
    b.clone(*op, mapping);
    return success();
  }

  //===--------------------------------------------------------------------===//
  // Positions
  //===--------------------------------------------------------------------===//

  /// The tile row of this lane's row `half` (g or g + 8 of the warp's 16).
  Value laneRow(int64_t half) {
    return rb.add(warpRow0, rb.add(group, idx(8 * half)));
  }
  /// The column of element `e` of this lane in C tile `nt`.
  Value laneCol(int64_t nt, int64_t e) {
    return rb.add(idx(nt * 8 + e), rb.mul(inGroup, idx(2)));
  }
  /// A row as expressions see it: rows past the tile's end are its last.
  Value clampedRow(Value row, Value rows) {
    return rows ? minIndex(row, rb.sub(rows, idx(1))) : row;
  }

  //===--------------------------------------------------------------------===//
  // Shared tiles
  //===--------------------------------------------------------------------===//

  /// The element type of shared tiles: the mma operand type, or f32 that
  /// the operands split.
  Type sharedType() {
    return config.splitF32 ? Type(b.getF32Type()) : config.element;
  }

  /// Element type and shape checks for a tile copied to shared memory.
  LogicalResult checkCopiedTile(tile::LoadOp load) {
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
  int64_t tileRows(tile::LoadOp load) {
    auto type = cast<RankedTensorType>(load.getType());
    return type.isDynamicDim(0) ? blockRows : type.getDimSize(0);
  }

  /// Shared memory for `stages` copies of the rows of `load`, rows padded
  /// by 16 bytes.
  Value allocateShared(tile::LoadOp load, int64_t stages) {
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

  /// Starts the copies of `load` (its position and count given as lowered
  /// values) into `buffer` after `prefix`, and commits them.
  void copyLoad(tile::LoadOp load, Value buffer, ValueRange prefix,
                ValueRange position, Value count) {
    Value source = contiguous.lookup(mapping.lookup(load.getSource()));
    int64_t rowDim = load.getRowDim();
    SmallVector<Value> at(position);
    SmallVector<Value> tokens = copyRows(
        buffer, prefix, source,
        [&](Value row, Value col) {
          SmallVector<Value> indices(at);
          indices[rowDim] = rb.add(at[rowDim], row);
          indices.push_back(col);
          return indices;
        },
        count, tileRows(load),
        cast<RankedTensorType>(load.getType()).getDimSize(1));
    commitCopies(tokens);
  }

  /// A load that is not streamed by its loop: one buffer, copied where the
  /// load is (after a barrier when inside a loop, as the previous
  /// iteration's readers may not be done).
  LogicalResult lowerLoad(tile::LoadOp load) {
    if (failed(checkCopiedTile(load)))
      return failure();
    Value buffer = allocateShared(load, 1);
    if (loopDepth > 0)
      barrier();
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

  /// Shared tiles are read only after this: completes the copies in flight.
  void awaitCopies() {
    if (!copiesPending)
      return;
    waitForCopiesAndBarrier();
    copiesPending = false;
  }

  /// The A operand (4 registers, split or not) of rows [16w, 16w + 16) and
  /// columns [16 kk, 16 kk + 16) of a shared tile.
  MmaOperand sharedAOperand(const Fragment &tile, int64_t kk) {
    if (config.splitF32)
      return loadElementwiseOperand(tile.buffer, tile.prefix, lane, warpRow0,
                                    idx(kk * 16), nvvm::kARegisters,
                                    nvvm::mmaACoord, /*transposed=*/false);
    return {loadAOperand(tile.buffer, lane, warpRow0, idx(kk * 16),
                         tile.prefix),
            {}};
  }

  //===--------------------------------------------------------------------===//
  // Tile ops
  //===--------------------------------------------------------------------===//

  LogicalResult lowerSplat(tensor::SplatOp splat) {
    auto type = cast<RankedTensorType>(splat.getType());
    Value value = mapping.lookup(splat.getInput());
    Fragment fragment;
    if (!splat.getDynamicSizes().empty())
      fragment.rows = mapping.lookup(splat.getDynamicSizes().front());
    if (type.getRank() == 1) {
      fragment.kind = Fragment::Rows;
      fragment.regs.assign(2, value);
    } else {
      if (type.isDynamicDim(1) || type.getDimSize(1) % nvvm::kMmaN)
        return splat.emitOpError("on the GPU needs a column count that is a "
                                 "multiple of 8");
      fragment.cols = type.getDimSize(1);
      fragment.regs.assign(fragment.cols / 2, value);
    }
    tiles[splat] = fragment;
    return success();
  }

  /// acc + lhs rhs on mma.sync.m16n8k16.
  LogicalResult lowerDot(tile::DotOp dot) {
    if (dot.getTransposeLhs())
      return dot.emitOpError("with a transposed lhs has no GPU lowering yet");
    const Fragment &lhs = tiles[dot.getLhs()];
    const Fragment &rhs = tiles[dot.getRhs()];
    const Fragment &acc = tiles[dot.getAcc()];
    if (rhs.kind != Fragment::Shared || lhs.kind == Fragment::Rows ||
        acc.kind != Fragment::Accumulator)
      return dot.emitOpError("on the GPU needs a loaded rhs, a loaded or "
                             "2-D f32 lhs and a 2-D f32 accumulator");
    auto lhsType = cast<RankedTensorType>(dot.getLhs().getType());
    int64_t depth = lhsType.getDimSize(1);
    if (depth == ShapedType::kDynamic || depth % 16)
      return dot.emitOpError("on the GPU needs a depth that is a multiple of "
                             "16");
    if (lhs.kind == Fragment::Shared || rhs.kind == Fragment::Shared)
      awaitCopies();
    Fragment result = acc;
    int64_t steps = depth / 16, outTiles = acc.cols / nvvm::kMmaN;
    auto aOperand = [&](int64_t kk) -> MmaOperand {
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
              rhs.buffer, rhs.prefix, lane, idx(transposed ? nt * 8 : kk * 16),
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
              ldmatrix(rhs.buffer, rhs.prefix, rb.add(laneMod8, idx(nt * 8)),
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
              rhs.buffer, rhs.prefix, rb.add(idx(kk * 16), row),
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

  /// The body of `map` once per fragment element.
  LogicalResult lowerMap(tile::MapOp map) {
    auto type = cast<RankedTensorType>(map.getType());
    Block &body = map.getBody().front();
    SmallVector<const Fragment *> inputs;
    Value rows;
    for (Value input : map.getInputs()) {
      const Fragment &fragment = tiles[input];
      auto inputType = cast<RankedTensorType>(input.getType());
      bool sameShape = inputType.getRank() == type.getRank();
      if (fragment.kind == Fragment::Shared ||
          (!sameShape && fragment.kind != Fragment::Rows))
        return map.emitOpError("on the GPU takes f32 tiles of its own shape "
                               "or rows broadcast along the columns");
      if (sameShape && !rows)
        rows = fragment.rows;
      inputs.push_back(&fragment);
    }
    auto yielded = [&]() {
      return mapping.lookup(
          cast<tile::YieldOp>(body.getTerminator()).getValues().front());
    };
    auto evaluate = [&](ValueRange position, int64_t slot, int64_t half) {
      unsigned arg = 0;
      for (Value index : position)
        mapping.map(body.getArgument(arg++), index);
      for (const Fragment *input : inputs)
        mapping.map(body.getArgument(arg++), input->kind == Fragment::Rows
                                                 ? input->regs[half]
                                                 : input->regs[slot]);
      for (Operation &op : body.without_terminator())
        b.clone(op, mapping);
      return yielded();
    };
    Fragment result;
    result.rows = rows;
    if (type.getRank() == 1) {
      result.kind = Fragment::Rows;
      for (int64_t half = 0; half < 2; ++half)
        result.regs.push_back(
            evaluate({clampedRow(laneRow(half), rows)}, half, half));
    } else {
      if (type.isDynamicDim(1) || type.getDimSize(1) % nvvm::kMmaN)
        return map.emitOpError("on the GPU needs a column count that is a "
                               "multiple of 8");
      result.cols = type.getDimSize(1);
      Value row[2] = {clampedRow(laneRow(0), rows),
                      clampedRow(laneRow(1), rows)};
      for (int64_t slot = 0; slot < result.cols / 2; ++slot) {
        int64_t nt = slot / 4, half = (slot % 4) / 2, e = slot % 2;
        result.regs.push_back(
            evaluate({row[half], laneCol(nt, e)}, slot, half));
      }
    }
    tiles[map] = result;
    return success();
  }

  /// Row reductions: in the lane, then over the quad that shares the row.
  LogicalResult lowerReduce(tile::ReduceOp reduce) {
    const Fragment &input = tiles[reduce.getInput()];
    if (input.kind != Fragment::Accumulator)
      return reduce.emitOpError("of a 1-D tile has no GPU lowering yet");
    bool max = reduce.getKind() == tile::ReduceKind::max;
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

  LogicalResult lowerStore(tile::StoreOp store) {
    const Fragment &value = tiles[store.getValue()];
    if (value.kind == Fragment::Shared)
      return store.emitOpError("of a loaded tile has no GPU lowering yet");
    Value dest = mapping.lookup(store.getDest());
    Value count = mapping.lookup(store.getCount());
    SmallVector<Value> position = lookup(store.getPosition());
    int64_t rowDim = store.getRowDim();
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
            element.push_back(laneCol(nt, e));
            rb.storeF32(value.regs[4 * nt + 2 * half + e], dest, element);
          }
      });
    }
    return success();
  }

  //===--------------------------------------------------------------------===//
  // Control flow: tiles travel as their registers
  //===--------------------------------------------------------------------===//

  LogicalResult flatten(ValueRange values, Operation *at,
                        SmallVector<Value> &flat) {
    for (Value value : values) {
      if (!isTile(value)) {
        flat.push_back(mapping.lookup(value));
        continue;
      }
      const Fragment &fragment = tiles[value];
      if (fragment.kind == Fragment::Shared)
        return at->emitOpError("carries a loaded tile, which has no GPU "
                               "lowering yet");
      llvm::append_range(flat, fragment.regs);
    }
    return success();
  }
  /// Binds `values` (typed like `like`) to consecutive `flat` values, tiles
  /// taking the fragment shape of `shapes`.
  void unflatten(ValueRange values, ArrayRef<Fragment> shapes,
                 ValueRange flat) {
    size_t next = 0;
    for (auto [value, shape] : llvm::zip(values, shapes)) {
      if (!isTile(value)) {
        mapping.map(value, flat[next++]);
        continue;
      }
      Fragment fragment = shape;
      fragment.regs.assign(flat.begin() + next,
                           flat.begin() + next + shape.regs.size());
      next += shape.regs.size();
      tiles[value] = fragment;
    }
  }
  SmallVector<Fragment> shapesOf(ValueRange values) {
    SmallVector<Fragment> shapes;
    for (Value value : values)
      shapes.push_back(isTile(value) ? tiles[value] : Fragment());
    return shapes;
  }

  /// `value`, an operand of a load in `loop`'s body that isAheadComputable,
  /// for iteration `iv`; `ahead` maps what it has computed so far.
  Value valueAt(Value value, scf::ForOp loop, Value iv, IRMapping &ahead) {
    if (Value known = ahead.lookupOrNull(value))
      return known;
    Value result;
    if (value == loop.getInductionVar()) {
      result = iv;
    } else if (definedOutside(value, loop)) {
      result = mapping.lookup(value);
    } else {
      Operation *def = value.getDefiningOp();
      for (Value operand : def->getOperands())
        valueAt(operand, loop, iv, ahead);
      Operation *clone = b.clone(*def, ahead);
      result = clone->getResult(cast<OpResult>(value).getResultNumber());
    }
    ahead.map(value, result);
    return result;
  }

  /// A loop over key blocks (or any scf.for): loads in its body that can
  /// be issued an iteration ahead get two stages; the copy of iteration
  /// k + 1 starts right after the barrier that opens iteration k, so it is
  /// in flight while k computes. A lhs loaded before the loop is held in
  /// registers across it when its A fragments are few.
  LogicalResult lowerFor(scf::ForOp forOp) {
    SmallVector<tile::LoadOp> streamed;
    for (auto load : forOp.getBody()->getOps<tile::LoadOp>()) {
      if (failed(checkCopiedTile(load)))
        return failure();
      bool ahead = llvm::all_of(load->getOperands().drop_front(), [&](Value v) {
        return isAheadComputable(v, forOp);
      });
      if (ahead)
        streamed.push_back(load);
    }
    Value lb = mapping.lookup(forOp.getLowerBound());
    Value ub = mapping.lookup(forOp.getUpperBound());
    Value step = mapping.lookup(forOp.getStep());
    SmallVector<Value> buffers;
    for (tile::LoadOp load : streamed)
      buffers.push_back(allocateShared(load, kStages));
    auto copyIteration = [&](Value iv, Value stage) {
      IRMapping ahead; // the loads share their address arithmetic
      for (auto [load, buffer] : llvm::zip(streamed, buffers)) {
        SmallVector<Value> position =
            llvm::map_to_vector(load.getPosition(), [&](Value index) {
              return valueAt(index, forOp, iv, ahead);
            });
        copyLoad(load, buffer, {stage}, position,
                 valueAt(load.getCount(), forOp, iv, ahead));
      }
    };
    if (!streamed.empty())
      rb.ifThen(lessThan(lb, ub), [&] { copyIteration(lb, idx(0)); });

    // Operands loaded before the loop, held in registers: at most 32 per
    // lane (16 rows up to head dim 128, or 64 split into bf16 pairs).
    DenseMap<Value, SmallVector<MmaOperand>> savedHeld = heldOperands;
    for (auto dot : forOp.getBody()->getOps<tile::DotOp>()) {
      Value lhs = dot.getLhs();
      auto found = tiles.find(lhs);
      if (found == tiles.end() || found->second.kind != Fragment::Shared ||
          heldOperands.count(lhs) || dot.getTransposeLhs())
        continue;
      int64_t steps = found->second.cols / 16;
      if (steps * 4 * (config.splitF32 ? 2 : 1) > 32)
        continue;
      awaitCopies();
      for (int64_t kk = 0; kk < steps; ++kk)
        heldOperands[lhs].push_back(sharedAOperand(found->second, kk));
    }

    SmallVector<Value> init;
    if (failed(flatten(forOp.getInitArgs(), forOp, init)))
      return failure();
    SmallVector<Fragment> shapes = shapesOf(forOp.getInitArgs());
    bool pendingBefore = copiesPending;
    LogicalResult bodyResult = success();
    ++loopDepth;
    ValueRange results = rb.loop(
        lb, ub, init,
        [&](Value iv, ValueRange carried) -> SmallVector<Value> {
          mapping.map(forOp.getInductionVar(), iv);
          unflatten(forOp.getRegionIterArgs(), shapes, carried);
          if (!streamed.empty()) {
            // Iteration k's copies are done and every thread has left
            // iteration k - 1, whose stage the next copies overwrite.
            waitForCopiesAndBarrier();
            copiesPending = false;
            Value iteration = arith::DivUIOp::create(b, rb.sub(iv, lb), step);
            Value stage = arith::RemUIOp::create(b, iteration, idx(kStages));
            Value next = rb.add(iv, step);
            rb.ifThen(lessThan(next, ub),
                      [&] { copyIteration(next, rb.sub(idx(1), stage)); });
            for (auto [load, buffer] : llvm::zip(streamed, buffers)) {
              Fragment &fragment = tiles[load];
              fragment.kind = Fragment::Shared;
              fragment.buffer = buffer;
              fragment.prefix = {stage};
              fragment.cols =
                  cast<RankedTensorType>(load.getType()).getDimSize(1);
              fragment.rows = mapping.lookup(load.getCount());
            }
          }
          SmallVector<Value> yielded;
          if (failed(bodyResult = lowerBlock(*forOp.getBody())) ||
              failed(bodyResult = flatten(
                         forOp.getBody()->getTerminator()->getOperands(), forOp,
                         yielded)))
            yielded = SmallVector<Value>(carried.begin(), carried.end());
          return yielded;
        },
        step);
    --loopDepth;
    if (failed(bodyResult))
      return failure();
    copiesPending = pendingBefore;
    heldOperands = std::move(savedHeld);
    unflatten(forOp.getResults(), shapes, results);
    return success();
  }
  bool isAheadComputable(Value value, scf::ForOp loop) {
    if (value == loop.getInductionVar() || definedOutside(value, loop))
      return true;
    Operation *def = value.getDefiningOp();
    return def && !def->getNumRegions() && isPure(def) &&
           def->getBlock() == loop.getBody() &&
           llvm::all_of(def->getOperands(), [&](Value operand) {
             return isAheadComputable(operand, loop);
           });
  }

  /// The registers of a tile carried by control flow (its fragment).
  LogicalResult registerTypes(Value value, Operation *at,
                              SmallVector<Type> &types) {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    if (!type) {
      types.push_back(value.getType());
      return success();
    }
    if (!type.getElementType().isF32() ||
        (type.getRank() == 2 &&
         (type.isDynamicDim(1) || type.getDimSize(1) % nvvm::kMmaN)))
      return at->emitOpError("carries a tile that is not f32 rows or f32 "
                             "columns in multiples of 8, which has no GPU "
                             "lowering yet");
    types.append(type.getRank() == 1 ? 2 : type.getDimSize(1) / 2,
                 b.getF32Type());
    return success();
  }

  LogicalResult lowerIf(scf::IfOp ifOp) {
    if (!holdsTiles(ifOp)) {
      b.clone(*ifOp, mapping);
      return success();
    }
    SmallVector<Type> types;
    for (Value value : ifOp.getResults())
      if (failed(registerTypes(value, ifOp, types)))
        return failure();
    LogicalResult result = success();
    bool pendingBefore = copiesPending, pendingAfter = false;
    auto branch = [&](Region &region) -> SmallVector<Value> {
      copiesPending = pendingBefore;
      SmallVector<Value> yielded;
      if (region.empty())
        return yielded;
      Block &block = region.front();
      if (failed(lowerBlock(block)) ||
          failed(
              flatten(block.getTerminator()->getOperands(), ifOp, yielded))) {
        result = failure(); // the pass fails; the IR is not used
        yielded.clear();
      }
      pendingAfter |= copiesPending;
      return yielded;
    };
    ValueRange results = rb.ifThen(
        mapping.lookup(ifOp.getCondition()), types,
        [&] { return branch(ifOp.getThenRegion()); },
        [&] { return branch(ifOp.getElseRegion()); });
    if (failed(result))
      return failure();
    copiesPending = pendingAfter;
    if (ifOp.getNumResults() == 0)
      return success();
    // Result fragments take the then branch's shapes, with a row count
    // from a branch that defines it outside the if.
    Operation *lowered = results.front().getDefiningOp();
    SmallVector<Fragment> shapes = shapesOf(ifOp.thenYield().getOperands());
    SmallVector<Fragment> elseShapes = shapesOf(ifOp.elseYield().getOperands());
    for (auto [shape, other] : llvm::zip(shapes, elseShapes)) {
      if (shape.rows && !definedOutside(shape.rows, lowered))
        shape.rows = other.rows;
      if (shape.rows && !definedOutside(shape.rows, lowered))
        return ifOp.emitOpError("yields a tile whose row count is defined "
                                "inside it, which the GPU lowering cannot "
                                "carry");
    }
    unflatten(ifOp.getResults(), shapes, results);
    return success();
  }

  SmallVector<Value> lookup(ValueRange values) {
    return llvm::map_to_vector(
        values, [&](Value value) { return mapping.lookup(value); });
  }

  IRMapping &mapping;
  int64_t blockRows;
  Value lane, group, inGroup, warpRow0, base;
  int64_t sharedEnd = 0;
  DenseMap<Value, Fragment> tiles;
  /// Unit-stride views of the loaded parameters.
  DenseMap<Value, Value> contiguous;
  /// A fragments of shared tiles held in registers across the current loop.
  DenseMap<Value, SmallVector<MmaOperand>> heldOperands;
  /// Whether copies were issued that no wait has covered yet.
  bool copiesPending = false;
  int64_t loopDepth = 0;
};

/// exp(x) as exp2(x log2 e), as FlashAttention computes it: one
/// ex2.approx and a multiply, where libdevice's expf spends two more FMAs
/// on range reduction. Rounding x log2 e adds a relative error of about
/// |x| 2^-24, far below the bf16 rounding of P; exp(-inf) stays 0.
void useExp2(Operation *kernel) {
  kernel->walk([](math::ExpOp exp) {
    if (!exp.getType().isF32())
      return;
    ImplicitLocOpBuilder b(exp.getLoc(), exp);
    Value log2e = arith::ConstantFloatOp::create(
        b, b.getF32Type(), APFloat(static_cast<float>(llvm::numbers::log2e)));
    Value scaled = arith::MulFOp::create(b, exp.getOperand(), log2e);
    exp.replaceAllUsesWith(math::Exp2Op::create(b, scaled).getResult());
    exp.erase();
  });
}

/// The grid, copied parameters, cu_seqlens and head dim of a program.
FailureOr<LaunchFacts> deriveLaunchFacts(func::FuncOp func, tile::GridOp grid) {
  LaunchFacts facts;
  int64_t blockRows = grid.getBlockRows();
  auto argOf = [&](Value value) -> int64_t {
    auto arg = dyn_cast<BlockArgument>(value);
    return arg && arg.getOwner() == &func.front() ? arg.getArgNumber() : -1;
  };
  // dim(param, d) or dim(param, d) - 1: [param, d, 1, minus].
  auto axis = [&](Value extent) -> std::optional<std::array<int64_t, 4>> {
    int64_t minus = 0;
    if (auto sub = extent.getDefiningOp<arith::SubIOp>()) {
      std::optional<int64_t> one = getConstantIntValue(sub.getRhs());
      if (!one || *one != 1)
        return std::nullopt;
      extent = sub.getLhs();
      minus = 1;
    }
    auto dim = extent.getDefiningOp<memref::DimOp>();
    if (!dim)
      return std::nullopt;
    std::optional<int64_t> index = dim.getConstantIndex();
    int64_t param = argOf(dim.getSource());
    if (!index || param < 0)
      return std::nullopt;
    return std::array<int64_t, 4>{param, *index, 1, minus};
  };
  std::optional<std::array<int64_t, 4>> heads = axis(grid.getHeads());
  std::optional<std::array<int64_t, 4>> batches = axis(grid.getBatches());
  if (!heads || !batches || (*heads)[3])
    return grid.emitOpError("needs heads that are a dim of a parameter and "
                            "batches that are one, or one less (cu_seqlens)"),
           failure();
  // The query block count: a load at row qb * block_rows (+ a sequence
  // start) of a parameter, whose rows bound every sequence's.
  tile::LoadOp query;
  grid.walk([&](tile::LoadOp load) {
    llvm::SmallPtrSet<Value, 16> seen;
    if (!query && dependsOn(load.getPosition()[load.getRowDim()],
                            grid.getQueryBlock(), seen))
      query = load;
  });
  if (!query || argOf(query.getSource()) < 0)
    return grid.emitOpError("loads no parameter at a row of its query block, "
                            "from which the launch grid is sized"),
           failure();
  facts.grid = {{{argOf(query.getSource()),
                  static_cast<int64_t>(query.getRowDim()), blockRows, 0},
                 *heads,
                 *batches}};
  for (auto [position, index] : llvm::enumerate(query.getPosition()))
    if (index == grid.getHead())
      facts.headDim = position;
  grid.walk([&](tile::LoadOp load) {
    int64_t param = argOf(load.getSource());
    if (param >= 0 && !llvm::is_contained(facts.copiedParams, param))
      facts.copiedParams.push_back(param);
  });
  if (auto offsets =
          func->getAttrOfType<DenseI64ArrayAttr>(kSequenceOffsetsAttrName))
    llvm::append_range(facts.offsetParams, offsets.asArrayRef());
  return facts;
}

struct TileToNvgpuPass : public attnc::impl::TileToNvgpuBase<TileToNvgpuPass> {
  using TileToNvgpuBase::TileToNvgpuBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    gpu::GPUModuleOp gpuModule;
    for (auto func :
         llvm::make_early_inc_range(module.getOps<func::FuncOp>())) {
      SmallVector<tile::GridOp> grids =
          llvm::to_vector(func.getOps<tile::GridOp>());
      if (grids.empty())
        continue;
      if (failed(lowerProgram(func, grids, gpuModule)))
        return signalPassFailure();
    }
  }

  LogicalResult lowerProgram(func::FuncOp func, ArrayRef<tile::GridOp> grids,
                             gpu::GPUModuleOp &gpuModule) {
    tile::GridOp grid = grids.front();
    if (grids.size() > 1)
      return func.emitOpError("holds more than one attn_tile.grid");
    if (grid.getPerSequence())
      return grid.emitOpError("walks whole sequences (a linear kernel), "
                              "which attn-tile-to-nvgpu does not lower yet; "
                              "attn-gpu-chunk-linear does");
    // Ops with no GPU layout yet, reported before any other complaint.
    WalkResult unsupported = grid.walk([](Operation *op) {
      if (!isa<tile::ScanOp, tile::SliceOp, tile::TransposeOp, tile::DecayDotOp,
               tile::TopKInsertOp>(op))
        return WalkResult::advance();
      op->emitOpError("has no GPU lowering yet (attn-tile-to-nvgpu handles "
                      "load, dot, map, reduce, store and splat of tiles)");
      return WalkResult::interrupt();
    });
    if (unsupported.wasInterrupted())
      return failure();
    int64_t blockRows = grid.getBlockRows();
    if (blockRows % nvvm::kMmaM || blockRows > 256)
      return grid.emitOpError()
             << "needs block_rows that are a multiple of 16 up to 256 on the "
                "GPU (one warp per 16 rows), got "
             << blockRows;
    WarpConfig config;
    config.warps = blockRows / nvvm::kMmaM;
    grid.walk([&](tile::LoadOp load) {
      if (!config.element)
        config.element = load.getType().getElementType();
    });
    if (!config.element)
      return grid.emitOpError("loads no tiles: there is nothing for the "
                              "tensor cores to multiply");
    // f32 tiles: bf16 pairs on the tensor cores.
    if (config.element.isF32()) {
      config.splitF32 = true;
      config.element = BFloat16Type::get(grid.getContext());
    }
    if (!config.element.isF16() && !config.element.isBF16())
      return grid.emitOpError()
             << "loads " << config.element
             << " tiles: tensor cores need f16, bf16 or f32 operands (run it "
                "on the CPU)";
    FailureOr<LaunchFacts> facts = deriveLaunchFacts(func, grid);
    if (failed(facts))
      return failure();
    facts->threads = config.threads();

    // The kernel function, named like the program, replaces it.
    std::string name = func.getSymName().str();
    func.setSymName(name + ".program");
    Operation *kernel = createKernelFunction(
        func->getParentOfType<ModuleOp>(), name, func.getLoc(),
        func.getArgumentTypes(), config, gpuModule);
    Block *entry = &kernel->getRegion(0).front();
    ImplicitLocOpBuilder b(grid.getLoc(), entry, entry->end());
    IRMapping params;
    for (auto [from, to] :
         llvm::zip(func.getArguments(), entry->getArguments()))
      params.map(from, to);
    LoweringBuilder rb(b, params,
                       entry->getArgument(func.getNumArguments() - 1));
    // The scalars the program computes before the grid (sizes, scale).
    for (Operation &op : func.front().without_terminator()) {
      if (&op == grid.getOperation())
        break;
      b.clone(op, params);
    }
    ProgramBuilder builder(rb, config, blockRows);
    if (failed(builder.build(grid)))
      return failure();
    facts->sharedBytes = builder.sharedBytes();
    if (facts->sharedBytes > maxSharedBytes)
      return func.emitOpError()
             << "needs " << facts->sharedBytes
             << " bytes of shared memory on the GPU, more than the "
             << static_cast<int64_t>(maxSharedBytes)
             << " a CTA may use (hint: smaller key tiles, block-k)";
    gpu::ReturnOp::create(b);
    useExp2(kernel);
    setLaunchAttributes(kernel, *facts);
    func.erase();
    return success();
  }
};

} // namespace
