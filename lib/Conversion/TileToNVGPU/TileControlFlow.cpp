//===- TileControlFlow.cpp - Tiles carried by scf.for and scf.if ----------===//
//
// Control flow carries a tile as its fragment's registers (flatten and
// unflatten). Innermost loops stream the loads in their body that can be
// computed an iteration ahead through two shared-memory stages, and hold small A
// operands loaded before them in registers; branches take their result
// fragments' shapes from the then branch.
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"

#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_nvgpu;
namespace tile = attnc::tile;

namespace {

constexpr int64_t kStages = 2;

/// Whether `value` is defined outside `op` (so it dominates op's results).
/// Walks up from the value: the loop body being built around `op` has no
/// parent op yet.
bool definedOutside(Value value, Operation *op) {
  for (Operation *parent = value.getParentBlock()->getParentOp(); parent;
       parent = parent->getParentOp())
    if (parent == op)
      return false;
  return true;
}

} // namespace

LogicalResult ProgramBuilder::flatten(ValueRange values,
                                      SmallVector<Value> &flat) {
  for (Value value : values) {
    if (!isTile(value)) {
      flat.push_back(mapping.lookup(value));
      continue;
    }
    // A loaded tile travels in the registers of a computed one (made for
    // this use: the loop or if may be nested in the load's block).
    if (tiles[value].kind == Fragment::Shared)
      llvm::append_range(flat, toRegisters(value).regs);
    else
      llvm::append_range(flat, tiles[value].regs);
  }
  return success();
}

void ProgramBuilder::unflatten(ValueRange values, ArrayRef<Fragment> shapes,
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

SmallVector<Fragment> ProgramBuilder::shapesOf(ValueRange values) {
  SmallVector<Fragment> shapes;
  for (Value value : values)
    shapes.push_back(isTile(value) ? tiles[value] : Fragment());
  return shapes;
}

Value ProgramBuilder::valueAt(Value value, scf::ForOp loop, Value iv,
                              IRMapping &ahead) {
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

LogicalResult ProgramBuilder::lowerFor(scf::ForOp forOp) {
  SmallVector<tile::LoadOp> streamed;
  // Only innermost loops stream: an iteration that runs a loop of its own
  // hides little of a copy and would hold two stages through it.
  bool innermost = !forOp.getBody()
                        ->walk([](scf::ForOp) { return WalkResult::interrupt(); })
                        .wasInterrupted();
  // Memory the loop writes (scratch) is read where the program reads it.
  llvm::SmallPtrSet<Value, 4> written;
  forOp.getBody()->walk([&](Operation *op) {
    if (auto store = dyn_cast<tile::StoreOp>(op))
      written.insert(store.getDest());
    else if (auto scatter = dyn_cast<tile::ScatterAddOp>(op))
      written.insert(scatter.getDest());
  });
  for (auto load : forOp.getBody()->getOps<tile::LoadOp>()) {
    if (!isCopied(load, sharedType()))
      continue; // read into registers where it is
    if (failed(checkCopiedTile(load)))
      return failure();
    bool ahead = streamLoads && innermost &&
                 !written.contains(load.getSource()) &&
                 llvm::all_of(load->getOperands().drop_front(),
                                           [&](Value v) {
                                             return isAheadComputable(v, forOp);
                                           });
    if (ahead)
      streamed.push_back(load);
  }
  Value lb = mapping.lookup(forOp.getLowerBound());
  Value ub = mapping.lookup(forOp.getUpperBound());
  Value step = mapping.lookup(forOp.getStep());
  // The loop's shared tiles die with it (tiles leave a loop as registers):
  // the memory after them serves what follows the loop.
  int64_t sharedBefore = sharedEnd;
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
  if (!streamed.empty()) {
    if (transientReads) // the stages may overlap released memory
      barrier();
    transientReads = false;
    orderStores();
    rb.ifThen(lessThan(lb, ub), [&] { copyIteration(lb, idx(0)); });
  }

  // Operands loaded before the loop, held in registers: at most 32 per
  // lane for all of them (16 rows up to head dim 128, or 64 split into
  // bf16 pairs), and none in a body of more than two products of its own
  // (the backward's dQ sweep: S, dP, dQ), whose score tiles need the
  // registers (held, head dim 128 spilled there).
  DenseMap<Value, SmallVector<MmaOperand>> savedHeld = heldOperands;
  int64_t heldRegisters = 0;
  bool manyProducts =
      llvm::range_size(forOp.getBody()->getOps<tile::DotOp>()) > 2;
  for (auto dot : forOp.getBody()->getOps<tile::DotOp>()) {
    if (manyProducts)
      break;
    Value lhs = dot.getLhs();
    auto found = tiles.find(lhs);
    if (found == tiles.end() || found->second.kind != Fragment::Shared ||
        heldOperands.count(lhs) || dot.getTransposeLhs())
      continue;
    int64_t steps = found->second.cols / 16;
    int64_t registers = steps * 4 * (config.splitF32 ? 2 : 1);
    if (heldRegisters + registers > 32)
      continue;
    heldRegisters += registers;
    awaitCopies();
    for (int64_t kk = 0; kk < steps; ++kk)
      heldOperands[lhs].push_back(sharedAOperand(found->second, kk));
  }

  SmallVector<Value> init;
  if (failed(flatten(forOp.getInitArgs(), init)))
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
        // The previous iteration's stores.
        if (!written.empty())
          unorderedStores = true;
        if (!streamed.empty()) {
          // Iteration k's copies are done and every thread has left
          // iteration k - 1, whose stage the next copies overwrite.
          waitForCopiesAndBarrier();
          copiesPending = false;
          unorderedStores = false;
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
            failed(bodyResult =
                       flatten(forOp.getBody()->getTerminator()->getOperands(),
                               yielded)))
          yielded = SmallVector<Value>(carried.begin(), carried.end());
        return yielded;
      },
      step);
  --loopDepth;
  if (failed(bodyResult))
    return failure();
  if (!written.empty())
    unorderedStores = true;
  copiesPending = pendingBefore;
  if (sharedEnd > sharedBefore) {
    // No copy may still be writing, nor a warp reading, what is reused.
    sharedPeak = std::max(sharedPeak, sharedEnd);
    sharedEnd = sharedBefore;
    waitForCopiesAndBarrier();
    copiesPending = false;
  }
  heldOperands = std::move(savedHeld);
  unflatten(forOp.getResults(), shapes, results);
  return success();
}

bool ProgramBuilder::isAheadComputable(Value value, scf::ForOp loop) {
  if (value == loop.getInductionVar() || definedOutside(value, loop))
    return true;
  Operation *def = value.getDefiningOp();
  return def && !def->getNumRegions() && isPure(def) &&
         def->getBlock() == loop.getBody() &&
         llvm::all_of(def->getOperands(), [&](Value operand) {
           return isAheadComputable(operand, loop);
         });
}

LogicalResult ProgramBuilder::registerTypes(Value value, Operation *at,
                                            SmallVector<Type> &types) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type) {
    types.push_back(value.getType());
    return success();
  }
  FailureOr<Fragment::Kind> kind = registerKind(at, type);
  if (failed(kind))
    return failure();
  int64_t cols = type.getRank() == 1 ? 1 : type.getDimSize(1);
  int64_t count = *kind == Fragment::Rows ? 2
                  : *kind == Fragment::Cols ? (cols == 1 ? 1 : cols / 4)
                                            : cols / 2;
  types.append(count, b.getF32Type());
  return success();
}

LogicalResult ProgramBuilder::lowerIf(scf::IfOp ifOp) {
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
        failed(flatten(block.getTerminator()->getOperands(), yielded))) {
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

SmallVector<Value> ProgramBuilder::lookup(ValueRange values) {
  return llvm::map_to_vector(
      values, [&](Value value) { return mapping.lookup(value); });
}
