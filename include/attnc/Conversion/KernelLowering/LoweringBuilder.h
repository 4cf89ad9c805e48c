//===- LoweringBuilder.h - Loops, conditions and checked loads --*- C++ -*-===//
//
// The builder a kernel lowering fills a kernel with: the memrefs of the
// parameters, the status buffer and helpers for loops, conditions,
// arithmetic, vectors and checked loads (LoweringBuilder.cpp; the
// expression inlining, checked loads and status records in
// CheckedLoads.cpp). The `using` declarations below are those of the
// whole attnc::lowering namespace.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_LOWERINGBUILDER_H
#define ATTNC_CONVERSION_KERNELLOWERING_LOWERINGBUILDER_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/DenseSet.h"

#include <limits>
#include <optional>
#include <utility>

namespace attnc::lowering {

using mlir::ArrayRef;
using mlir::Block;
using mlir::Location;
using mlir::MemRefType;
using mlir::OpBuilder;
using mlir::Operation;
using mlir::Region;
using mlir::SmallVector;
using mlir::Type;
using mlir::TypeRange;
using mlir::Value;
using mlir::ValueRange;
using mlir::ImplicitLocOpBuilder;
using mlir::IRMapping;
using mlir::BlockArgument;
using mlir::FloatType;
using mlir::IntegerType;
using mlir::ShapedType;
using mlir::StridedLayoutAttr;
using llvm::APFloat;
using llvm::cast;
using llvm::dyn_cast;
using llvm::function_ref;
using llvm::isa;
namespace OpTrait = mlir::OpTrait;
namespace arith = mlir::arith;
namespace math = mlir::math;
namespace memref = mlir::memref;
namespace scf = mlir::scf;
using namespace attnc::attn;

/// Builds the loops of one lowered kernel: the memrefs of the parameters,
/// the status buffer and small helpers for loops, conditions, arithmetic and
/// checked loads.
class LoweringBuilder {
public:
  LoweringBuilder(ImplicitLocOpBuilder &b, IRMapping &params, Value status)
      : b(b), params(params), status(status) {}

  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, value);
  }
  Value f32(double value) {
    return arith::ConstantFloatOp::create(b, b.getF32Type(),
                                          APFloat(static_cast<float>(value)));
  }
  /// A count or position as an f32.
  Value indexToF32(Value index);
  /// A scatter position held in f32 (attn_tile.scatter_add's index tiles) as
  /// an index, and whether it lies in [0, size) (-1 marks "none").
  std::pair<Value, Value> scatterPosition(Value position, Value size);
  Value dim(Value memref, int64_t position);
  Value add(Value lhs, Value rhs);
  Value mul(Value lhs, Value rhs);
  Value sub(Value lhs, Value rhs) { return arith::SubIOp::create(b, lhs, rhs); }

  /// Loads an element as f32 (f16/bf16 are extended).
  Value loadF32(Value memref, ValueRange indices);
  /// Stores an f32 value, rounding it to the memref's element type.
  void storeF32(Value value, Value memref, ValueRange indices);
  Value loadIndex(Value memref, ValueRange indices);

  /// for (iv = lb; iv < ub; iv += step) body(iv, iterArgs) -> results
  /// (step 1 when null).
  ValueRange loop(Value lb, Value ub, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body,
                  Value step = Value());
  void loop(Value lb, Value ub, function_ref<void(Value)> body);

  /// if (cond) then() else yield elseValues.
  ValueRange ifThen(Value cond, TypeRange types,
                    function_ref<SmallVector<Value>()> thenBody,
                    function_ref<SmallVector<Value>()> elseBody);
  void ifThen(Value cond, function_ref<void()> thenBody);

  /// Clones an expression region with its block arguments bound to `args`;
  /// returns the yielded value, or `fallback` when the region is empty.
  Value inlineExpression(Region &region, ValueRange args, Value fallback);

  /// Loads (checked) once, at the insertion point, every attn.load of
  /// `region` whose indices depend only on the block arguments bound in
  /// `invariant` (argument number -> value); inlineExpression then reuses
  /// them. For loads like slope[h] that every element of a tile would
  /// otherwise repeat. The values must dominate every later inlining.
  void hoistInvariantLoads(Region &region,
                           ArrayRef<std::pair<unsigned, Value>> invariant);

  /// hoistInvariantLoads for the score and mask expressions of a
  /// softmax-family op, given what one (batch, head) of a sequence binds.
  void hoistSoftmaxInvariantLoads(Region &score, Region &mask, Value batch,
                                  Value head, Value n, Value m, Value startQ,
                                  Value startK);

  /// The expression ops that can meet bad input: loads of parameters and
  /// integer divisions.
  Value lowerCheckedOp(Operation &op, IRMapping &mapping);

  /// Integer `a / b` of an expression (floor division; `%` is built on it).
  /// A divisor of 0, or INT64_MIN / -1, would trap (SIGFPE on x86) or be
  /// undefined: the first such division of a run is recorded in the status
  /// buffer (5, line, col, dividend, divisor, the divisor's tensor or -1)
  /// and yields 0. Divisions by a constant other than 0 and -1 need no check.
  Value lowerFloorDivision(arith::FloorDivSIOp division, IRMapping &mapping);

  Value lowerLoad(LoadOp load, IRMapping &mapping);

  /// Loads memref[indices] from a kernel parameter whose indices come from
  /// user expressions or user data. The first index outside the tensor is
  /// recorded in the status buffer (2, parameter, dim, index, size) and the
  /// load yields 0 instead of reading out of bounds. One branch per load:
  /// the failing dim is chosen with selects, not a branch per dim.
  Value checkedLoad(Value memref, ValueRange indices);

  /// The number of listed key blocks of query block (batch, head, qb) in a
  /// kv_num_blocks tensor. A count outside [0, width] (width: the lists'
  /// last dim) is recorded in the status buffer (6, the parameter, batch,
  /// head, qb, count, width) and clamped into it.
  Value checkedBlockCount(Value counts, Value batch, Value head,
                          Value queryBlock, Value width);

  /// kv_indices[batch, head, qb, entry] as an index (a checked load).
  Value listedBlock(Value lists, Value batch, Value head, Value queryBlock,
                    Value entry);
  /// Whether block_mask[batch, head, qb, kb] is non-zero (a checked load).
  Value blockPresent(Value blockMask, Value batch, Value head,
                     Value queryBlock, Value keyBlock);
  /// Whether one of the first `count` entries of kv_indices[batch, head,
  /// qb, :] names key block `keyBlock`.
  Value blockListed(Value lists, Value count, Value batch, Value head,
                    Value queryBlock, Value keyBlock);

  /// Records a kv_indices entry that names no key block: `block` outside
  /// [0, blocks) at (batch, head, qb, entry) is recorded in the status
  /// buffer (7, the parameter, batch, head, qb, entry, block, blocks).
  void checkListedBlock(Value lists, Value batch, Value head, Value queryBlock,
                        Value entry, Value block, Value blocks);

  /// Checks the `topk` entries of query `row`'s top-k selection at
  /// `selection[rowAt..., :]`: an entry that is neither -1 nor a whole
  /// block number in [0, blocks) is recorded (8, the parameter, batch,
  /// head, row, entry number, the value's f64 bits).
  void checkSelectionRow(Value selection, ArrayRef<Value> rowAt, int64_t topk,
                         Value blocks, Value batch, Value head, Value row);

  /// The values of the first of `candidates` whose flag in `chosen` is set
  /// (the last one's when none is), by selects from the last to the first.
  SmallVector<Value> selectFirst(ArrayRef<Value> chosen,
                                 ArrayRef<SmallVector<Value>> candidates);

  /// Writes the first error of a run into the status buffer:
  /// status[0] = code, status[1..] = `details` (index values as i64), then
  /// `rawBits` (at most 7 words in all; kStatusWords).
  void recordError(int64_t code, ArrayRef<Value> details,
                   Value rawBits = Value());

  /// Gates must be finite and <= 0. The first violation is recorded in the
  /// status buffer (1, b, h, t, d, value bits) and the gate replaced by 0, so
  /// the run ends normally and the caller reports the error.
  Value checkedGate(Value gate, ArrayRef<Value> position);
  /// checkedGate for a thread's group of gates, with one branch that
  /// reports the first violation among them (in their order): a branch per
  /// gate would make a group's code several times larger. `positions` holds
  /// each gate's position, 4 values apiece.
  SmallVector<Value> checkedGates(ValueRange gates, ArrayRef<Value> positions);

  /// The softmax scale: the given constant, or 1 / sqrt(Dk).
  Value softmaxScale(std::optional<APFloat> given, Value dimK);
  /// begin <= x < end, signed (block numbers read from user tensors).
  Value inRange(Value x, Value begin, Value end);


  /// max + log(sum), or -inf for a row without weight (sum = 0).
  Value logSumExp(Value hasWeight, Value max, Value sum);

  /// True when the optional parameter was passed (non-null pointer).
  Value isPresent(Value memref);

  /// f32 lanes of the CPU tiles' vectors (one AVX register).
  static constexpr int64_t kLanes = 8;
  mlir::VectorType lanes() {
    return mlir::VectorType::get({kLanes}, b.getF32Type());
  }
  /// Independent accumulators per loop (see vectorDotLoops), enough to hide
  /// the FMA latency and few enough to stay in 16 vector registers:
  /// kDotGroup vectors of keys per loop over d, kValueGroup vectors of Dv
  /// per loop over keys.
  static constexpr int64_t kDotGroup = 8, kValueGroup = 4;
  /// `size` rounded up to whole groups of kValueGroup vectors.
  Value paddedToValueGroups(Value size);
  /// Zeroes a 2-D f32 buffer (tiles whose padding must read as 0).
  void zeroFill(Value buffer);
  /// init + sum over i in [lb, ub) of scalarAt(i) * rowAt(i), on vectors
  /// of kLanes: `terms(i)` gives the scalar (broadcast) and the vector.
  Value vectorDotLoop(Value lb, Value ub, Value init,
                      function_ref<std::pair<Value, Value>(Value)> terms);
  /// inits[k] + sum over i in [lb, ub) of scalarAt(i) * rowsAt(i)[k] for
  /// every k in one loop: the accumulators are independent, so an FMA need
  /// not wait for the previous one's result (a single accumulator chain runs
  /// at the FMA latency, not its throughput). Each lane still sums in index
  /// order, so the results are those of one vectorDotLoop per accumulator.
  SmallVector<Value>
  vectorDotLoops(Value lb, Value ub, ValueRange inits,
                 function_ref<std::pair<Value, SmallVector<Value>>(Value)> terms);
  /// dest[prefix..., c] = sum over d in [0, depth) of scalarAt(d) *
  /// columnsT[d, c], for c < width (a multiple of kLanes): one row times a
  /// tile staged transposed, kDotGroup vectors of columns per loop over d.
  void rowTimesTransposed(Value depth, function_ref<Value(Value)> scalarAt,
                          Value columnsT, int64_t width, Value dest,
                          ValueRange prefix);
  Value loadLanes(Value buffer, ValueRange indices);
  Value zeroLanes();

  /// for each (batch, head) of the numBatches x heads grid, in row-major
  /// order. When the function has a work range (the CPU calling convention),
  /// only the flattened indices in [workBegin, workEnd) are visited, so that
  /// host threads can share the grid; indices past the grid visit nothing.
  void gridLoop(Value numBatches, Value heads,
                function_ref<void(Value batch, Value head)> body);

  /// for each (batch, head, row block) item of the caller's share
  /// [workBegin, workEnd) of the numBatches x heads x workRowBlocks grid, in
  /// row-major order. The caller sizes workRowBlocks for the longest
  /// sequence, so `body` skips row blocks past its own sequence's end. For
  /// strategies whose items are row blocks of one head (the CPU calling
  /// convention only).
  void rowBlockGridLoop(Value numBatches, Value heads,
                        function_ref<void(Value batch, Value head,
                                          Value rowBlock)>
                            body);

  /// for each item of this call's share [workBegin, workEnd) of a grid of
  /// `gridSize` items; indices past the grid visit nothing.
  void forEachWorkItem(Value gridSize, function_ref<void(Value)> body);

  ImplicitLocOpBuilder &b;
  IRMapping &params;
  Value status;
  /// The share of the grid this call computes (flattened items in
  /// [workBegin, workEnd)) and the row blocks per (batch, head) of a
  /// row-block grid; null when the function computes all of it.
  Value workBegin, workEnd, workRowBlocks;
  /// attn.load results already loaded by hoistInvariantLoads.
  IRMapping hoistedLoads;
};

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_LOWERINGBUILDER_H
