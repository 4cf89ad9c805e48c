//===- TileMapLowering.cpp - Tile maps as loops over buffers --------------===//
//
// The pattern lowering attn_tile.map: its body once per element,
// or, where the body allows, for kLanes columns at once on vectors
// (VectorMapBody), then the last columns one by one.
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

#include "mlir/Transforms/RegionUtils.h"

#include <optional>

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;
namespace vector = mlir::vector;

namespace {

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

/// Whether a map body can run on vectors of columns: elementwise arith
/// and math ops without side effects or undefined behaviour (they may be
/// evaluated where the scalar code would not), constants, and scf.if with
/// such branches (both evaluated, then selected). Loads stay scalar.
bool vectorizableBody(Block &body) {
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

struct MapLowering : TileLowering<tile::MapOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::MapOp map) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
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
      inputs.push_back(lowering.tileOf(input));
      bool full = llvm::none_of(llvm::seq<int64_t>(0, rank), [&](int64_t d) {
        return broadcasts(input, d);
      });
      if (full && (!shaped || input.getType() == type))
        shaped = inputs.back();
    }
    if (!shaped)
      return lowering.error(map,
                            "needs an input of its result's shape on the CPU");
    TileBuffer result;
    if (lowering.prefersTransposed(map)) {
      result = lowering.allocate(shaped->capacity, shaped->cols, true);
      result.rows = shaped->rows;
      lowering.assign(map, result);
    } else {
      result = lowering.bufferFor(map, map, *shaped, map.getInputs());
    }
    Block &body = map.getBody().front();
    // The scalars the body reads from outside the map, as lowered.
    IRMapping outside;
    llvm::SetVector<Value> captured;
    getUsedValuesDefinedAbove(map.getBody(), captured);
    for (Value value : captured)
      outside.map(value, lowering.remapped(value));
    Value zero = rb.index(0);
    auto element = [&](Value r, Value c) {
      IRMapping element = outside;
      element.map(body.getArgument(0), r);
      if (rank == 2)
        element.map(body.getArgument(1), c);
      for (auto [index, input, tile] :
           llvm::enumerate(map.getInputs(), inputs)) {
        BlockArgument arg = body.getArgument(rank + index);
        Value value =
            tile.cols
                ? lowering.loadElement(tile, broadcasts(input, 0) ? zero : r,
                                       broadcasts(input, 1) ? zero : c)
                : lowering.loadElement(tile, r, Value());
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
      lowering.storeElement(yielded, result, r, c);
    };
    // Inputs read per column must be row-major for vector loads.
    bool vectorize =
        rank == 2 && !result.transposed && vectorizableBody(body) &&
        llvm::all_of(llvm::zip(map.getInputs(), inputs), [&](auto pair) {
          auto [input, tile] = pair;
          return !tile.cols || broadcasts(input, 1) || !tile.transposed;
        });
    if (!vectorize) {
      lowering.forEachElement(result, element);
      lowering.replaceOp(map, {});
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
        VectorMapBody vectorBody(b, outside);
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
            Value value = tile.cols ? lowering.loadElement(tile, row, zero)
                                    : lowering.loadElement(tile, r, Value());
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
    lowering.replaceOp(map, {});
    return success();
  }
};

} // namespace

void attnc::lowering::tile_to_loops::populateTileMapLoweringPatterns(
    RewritePatternSet &patterns, ProgramLowering &lowering) {
  patterns.add<MapLowering>(lowering, patterns.getContext());
}
