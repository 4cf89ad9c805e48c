//===- KernelLowering.h - Shared pieces of the kernel lowerings -*- C++ -*-===//
//
// What the reference lowering and the tiled strategies share: the calling
// convention (memref types, the func skeleton with its status buffer) and a
// builder with helpers for loops, conditions and bounds-checked loads.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_KERNELLOWERING_H
#define ATTNC_CONVERSION_KERNELLOWERING_KERNELLOWERING_H

#include "attnc/Analysis/MaskStructure.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
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

/// The memref type a kernel parameter is passed as: dynamic sizes, strides
/// and offset so that any layout arrives without a copy; bools as i8.
inline mlir::MemRefType getParamMemRefType(AttnTensorType type) {
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  if (element.isInteger(1))
    element = IntegerType::get(type.getContext(), 8);
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(type.getContext(), ShapedType::kDynamic,
                                       strides);
  return MemRefType::get(shape, element, layout);
}

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
  Value indexToF32(Value index) {
    return arith::UIToFPOp::create(
        b, b.getF32Type(),
        arith::IndexCastUIOp::create(b, b.getI64Type(), index));
  }
  Value dim(Value memref, int64_t position) {
    return memref::DimOp::create(b, memref, position);
  }
  Value add(Value lhs, Value rhs) {
    return isa<FloatType>(lhs.getType()) ? Value(arith::AddFOp::create(b, lhs, rhs))
                                         : Value(arith::AddIOp::create(b, lhs, rhs));
  }
  Value mul(Value lhs, Value rhs) {
    return isa<FloatType>(lhs.getType()) ? Value(arith::MulFOp::create(b, lhs, rhs))
                                         : Value(arith::MulIOp::create(b, lhs, rhs));
  }
  Value sub(Value lhs, Value rhs) { return arith::SubIOp::create(b, lhs, rhs); }

  /// Loads an element as f32 (f16/bf16 are extended).
  Value loadF32(Value memref, ValueRange indices) {
    Value value = memref::LoadOp::create(b, memref, indices);
    if (!value.getType().isF32())
      value = arith::ExtFOp::create(b, b.getF32Type(), value);
    return value;
  }
  /// Stores an f32 value, rounding it to the memref's element type.
  void storeF32(Value value, Value memref, ValueRange indices) {
    Type element = cast<MemRefType>(memref.getType()).getElementType();
    if (element != value.getType())
      value = arith::TruncFOp::create(b, element, value);
    memref::StoreOp::create(b, value, memref, indices);
  }
  Value loadIndex(Value memref, ValueRange indices) {
    Value value = memref::LoadOp::create(b, memref, indices);
    return arith::IndexCastOp::create(b, b.getIndexType(), value);
  }

  /// for (iv = lb; iv < ub; iv += step) body(iv, iterArgs) -> results
  /// (step 1 when null).
  ValueRange loop(Value lb, Value ub, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body,
                  Value step = Value()) {
    auto forOp = scf::ForOp::create(
        b, lb, ub, step ? step : index(1), init,
        [&](OpBuilder &nested, Location loc, Value iv, ValueRange args) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nested.getInsertionBlock(),
                              nested.getInsertionPoint());
          SmallVector<Value> results = body(iv, args);
          scf::YieldOp::create(b, results);
        });
    return forOp.getResults();
  }
  void loop(Value lb, Value ub, function_ref<void(Value)> body) {
    loop(lb, ub, {}, [&](Value iv, ValueRange) {
      body(iv);
      return SmallVector<Value>{};
    });
  }

  /// if (cond) then() else yield elseValues.
  ValueRange ifThen(Value cond, TypeRange types,
                    function_ref<SmallVector<Value>()> thenBody,
                    function_ref<SmallVector<Value>()> elseBody) {
    auto ifOp = scf::IfOp::create(b, types, cond, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      SmallVector<Value> values = thenBody();
      if (!types.empty() || ifOp.getThenRegion().front().empty() ||
          !ifOp.getThenRegion().front().back().hasTrait<OpTrait::IsTerminator>())
        scf::YieldOp::create(b, values);
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      values = elseBody();
      if (!types.empty() || ifOp.getElseRegion().front().empty() ||
          !ifOp.getElseRegion().front().back().hasTrait<OpTrait::IsTerminator>())
        scf::YieldOp::create(b, values);
    }
    return ifOp.getResults();
  }
  void ifThen(Value cond, function_ref<void()> thenBody) {
    ifThen(cond, {}, [&] { thenBody(); return SmallVector<Value>{}; },
           [] { return SmallVector<Value>{}; });
  }

  /// Clones an expression region with its block arguments bound to `args`;
  /// returns the yielded value, or `fallback` when the region is empty.
  Value inlineExpression(Region &region, ValueRange args, Value fallback) {
    if (region.empty())
      return fallback;
    IRMapping mapping = params;
    Block &block = region.front();
    for (auto [arg, value] : llvm::zip(block.getArguments(), args))
      mapping.map(arg, value);
    for (Operation &op : block) {
      if (auto yield = dyn_cast<YieldOp>(op))
        return mapping.lookup(yield.getValue());
      if (isa<LoadOp, arith::FloorDivSIOp>(op)) {
        Value hoisted = hoistedLoads.lookupOrNull(op.getResult(0));
        mapping.map(op.getResult(0),
                    hoisted ? hoisted : lowerCheckedOp(op, mapping));
        continue;
      }
      b.clone(op, mapping);
    }
    llvm_unreachable("verified expression regions end in attn.yield");
  }

  /// Loads (checked) once, at the insertion point, every attn.load of
  /// `region` whose indices depend only on the block arguments bound in
  /// `invariant` (argument number -> value); inlineExpression then reuses
  /// them. For loads like slope[h] that every element of a tile would
  /// otherwise repeat. The values must dominate every later inlining.
  void hoistInvariantLoads(Region &region,
                           ArrayRef<std::pair<unsigned, Value>> invariant) {
    if (region.empty())
      return;
    Block &block = region.front();
    IRMapping mapping = params;
    llvm::DenseSet<Value> known;
    for (auto [number, value] : invariant) {
      mapping.map(block.getArgument(number), value);
      known.insert(block.getArgument(number));
    }
    for (Operation &op : block) {
      if (isa<YieldOp>(op))
        break;
      bool invariantOperands = llvm::all_of(op.getOperands(), [&](Value v) {
        return known.contains(v) || params.contains(v);
      });
      if (!invariantOperands)
        continue;
      if (isa<LoadOp, arith::FloorDivSIOp>(op)) {
        Value value = lowerCheckedOp(op, mapping);
        mapping.map(op.getResult(0), value);
        hoistedLoads.map(op.getResult(0), value);
      } else if (mlir::isPure(&op) && op.getNumRegions() == 0) {
        b.clone(op, mapping);
      } else {
        continue;
      }
      for (Value result : op.getResults())
        known.insert(result);
    }
  }

  /// hoistInvariantLoads for the score and mask expressions of a
  /// softmax-family op, given what one (batch, head) of a sequence binds.
  void hoistSoftmaxInvariantLoads(Region &score, Region &mask, Value batch,
                                  Value head, Value n, Value m, Value startQ,
                                  Value startK) {
    hoistInvariantLoads(score, {{score_arg::B, batch},
                                {score_arg::H, head},
                                {score_arg::N, n},
                                {score_arg::M, m},
                                {score_arg::QStart, startQ},
                                {score_arg::KStart, startK}});
    hoistInvariantLoads(mask, {{mask_arg::B, batch},
                               {mask_arg::H, head},
                               {mask_arg::N, n},
                               {mask_arg::M, m},
                               {mask_arg::QStart, startQ},
                               {mask_arg::KStart, startK}});
  }

  /// The expression ops that can meet bad input: loads of parameters and
  /// integer divisions.
  Value lowerCheckedOp(Operation &op, IRMapping &mapping) {
    if (auto load = dyn_cast<LoadOp>(op))
      return lowerLoad(load, mapping);
    return lowerFloorDivision(cast<arith::FloorDivSIOp>(op), mapping);
  }

  /// Integer `a / b` of an expression (floor division; `%` is built on it).
  /// A divisor of 0, or INT64_MIN / -1, would trap (SIGFPE on x86) or be
  /// undefined: the first such division of a run is recorded in the status
  /// buffer (5, line, col, dividend, divisor, the divisor's tensor or -1)
  /// and yields 0. Divisions by a constant other than 0 and -1 need no check.
  Value lowerFloorDivision(arith::FloorDivSIOp division, IRMapping &mapping) {
    Value dividend = mapping.lookup(division.getLhs());
    Value divisor = mapping.lookup(division.getRhs());
    std::optional<int64_t> constant = getConstantIntValue(division.getRhs());
    if (constant && *constant != 0 && *constant != -1)
      return arith::FloorDivSIOp::create(b, dividend, divisor);
    Type type = divisor.getType();
    auto integer = [&](int64_t value) -> Value {
      return arith::ConstantOp::create(b, type, b.getIntegerAttr(type, value));
    };
    unsigned width = type.isIndex() ? 64 : type.getIntOrFloatBitWidth();
    Value byZero =
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, divisor, integer(0));
    Value overflows = arith::AndIOp::create(
        b,
        arith::CmpIOp::create(
            b, arith::CmpIPredicate::eq, dividend,
            integer(llvm::APInt::getSignedMinValue(width).getSExtValue())),
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, divisor,
                              integer(-1)));
    Value bad = arith::OrIOp::create(b, byZero, overflows);
    Value safeDivisor = arith::SelectOp::create(b, bad, integer(1), divisor);
    Value quotient = arith::FloorDivSIOp::create(b, dividend, safeDivisor);
    ifThen(bad, [&] {
      auto position = dyn_cast<mlir::FileLineColLoc>(division.getLoc());
      Value divisorTensor = index(-1);
      Value source = division.getRhs();
      if (auto cast = source.getDefiningOp<arith::IndexCastOp>())
        source = cast.getIn();
      if (auto load = source.getDefiningOp<LoadOp>())
        divisorTensor =
            index(cast<BlockArgument>(load.getTensor()).getArgNumber());
      auto asIndex = [&](Value value) -> Value {
        return value.getType().isIndex()
                   ? value
                   : Value(arith::IndexCastOp::create(b, b.getIndexType(),
                                                      value));
      };
      recordError(5, {index(position ? position.getLine() : 0),
                      index(position ? position.getColumn() : 0),
                      asIndex(dividend), asIndex(divisor), divisorTensor});
    });
    return arith::SelectOp::create(b, bad, integer(0), quotient);
  }

  Value lowerLoad(LoadOp load, IRMapping &mapping) {
    Value memref = mapping.lookup(load.getTensor());
    SmallVector<Value> indices;
    for (Value index : load.getIndices())
      indices.push_back(mapping.lookup(index));
    Value raw = checkedLoad(memref, indices);
    Type result = load.getResult().getType();
    if (result.isF32())
      return raw.getType().isF32()
                 ? raw
                 : Value(arith::ExtFOp::create(b, b.getF32Type(), raw));
    if (result.isInteger(1)) // bools are stored as bytes
      return arith::CmpIOp::create(
          b, arith::CmpIPredicate::ne, raw,
          arith::ConstantIntOp::create(b, raw.getType(), 0));
    return arith::IndexCastOp::create(b, b.getIndexType(), raw);
  }

  /// Loads memref[indices] from a kernel parameter whose indices come from
  /// user expressions or user data. The first index outside the tensor is
  /// recorded in the status buffer (2, parameter, dim, index, size) and the
  /// load yields 0 instead of reading out of bounds. One branch per load:
  /// the failing dim is chosen with selects, not a branch per dim.
  Value checkedLoad(Value memref, ValueRange indices) {
    if (indices.empty())
      return memref::LoadOp::create(b, memref, indices);
    Value inBounds = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
    SmallVector<Value> inside;
    SmallVector<SmallVector<Value>> facts; // (dim, index, size)
    for (auto [dimIndex, position] : llvm::enumerate(indices)) {
      Value size = dim(memref, dimIndex);
      // Unsigned comparison: negative indices are huge and fail too.
      inside.push_back(
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, position, size));
      inBounds = arith::AndIOp::create(b, inBounds, inside.back());
      facts.push_back({index(dimIndex), position, size});
    }
    Type element = cast<MemRefType>(memref.getType()).getElementType();
    return ifThen(
        inBounds, {element},
        [&]() -> SmallVector<Value> {
          return {memref::LoadOp::create(b, memref, indices)};
        },
        [&]() -> SmallVector<Value> {
          SmallVector<Value> outside;
          for (Value ok : inside)
            outside.push_back(arith::XOrIOp::create(
                b, ok, arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
          SmallVector<Value> details = {
              index(cast<BlockArgument>(memref).getArgNumber())};
          llvm::append_range(details, selectFirst(outside, facts));
          recordError(2, details);
          return {arith::ConstantOp::create(b, element,
                                            b.getZeroAttr(element))};
        })[0];
  }

  /// The number of listed key blocks of query block (batch, head, qb) in a
  /// kv_num_blocks tensor. A count outside [0, width] (width: the lists'
  /// last dim) is recorded in the status buffer (6, the parameter, batch,
  /// head, qb, count, width) and clamped into it.
  Value checkedBlockCount(Value counts, Value batch, Value head,
                          Value queryBlock, Value width) {
    Value count = arith::IndexCastOp::create(
        b, b.getIndexType(), checkedLoad(counts, {batch, head, queryBlock}));
    Value bad = arith::OrIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::slt, count, index(0)),
        arith::CmpIOp::create(b, arith::CmpIPredicate::sgt, count, width));
    ifThen(bad, [&] {
      recordError(6, {index(cast<BlockArgument>(counts).getArgNumber()), batch,
                      head, queryBlock, count, width});
    });
    return arith::MaxSIOp::create(
        b, index(0), arith::MinSIOp::create(b, count, width));
  }

  /// Records a kv_indices entry that names no key block: `block` outside
  /// [0, blocks) at (batch, head, qb, entry) is recorded in the status
  /// buffer (7, the parameter, batch, head, qb, entry, block, blocks).
  void checkListedBlock(Value lists, Value batch, Value head, Value queryBlock,
                        Value entry, Value block, Value blocks) {
    Value bad = arith::OrIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::slt, block, index(0)),
        arith::CmpIOp::create(b, arith::CmpIPredicate::sge, block, blocks));
    ifThen(bad, [&] {
      recordError(7, {index(cast<BlockArgument>(lists).getArgNumber()), batch,
                      head, queryBlock, entry, block, blocks});
    });
  }

  /// The values of the first of `candidates` whose flag in `chosen` is set
  /// (the last one's when none is), by selects from the last to the first.
  SmallVector<Value> selectFirst(ArrayRef<Value> chosen,
                                 ArrayRef<SmallVector<Value>> candidates) {
    SmallVector<Value> first(candidates.back());
    for (int64_t i = static_cast<int64_t>(candidates.size()) - 2; i >= 0; --i)
      for (auto [slot, value] : llvm::enumerate(candidates[i]))
        first[slot] = arith::SelectOp::create(b, chosen[i], value, first[slot]);
    return first;
  }

  /// Writes the first error of a run into the status buffer:
  /// status[0] = code, status[1..] = `details` (index values as i64).
  void recordError(int64_t code, ArrayRef<Value> details,
                   Value rawBits = Value()) {
    Type i64 = b.getI64Type();
    // Slot 0 is claimed with a compare-and-swap from 0 to the code: of
    // threads that find errors at once, only the first writes its details,
    // so a message never mixes two. (The status buffer has no offset.)
    Value address = arith::IndexCastOp::create(
        b, i64, memref::ExtractAlignedPointerAsIndexOp::create(b, status));
    Value slot0 = mlir::LLVM::IntToPtrOp::create(
        b, mlir::LLVM::LLVMPointerType::get(b.getContext()), address);
    auto claim = mlir::LLVM::AtomicCmpXchgOp::create(
        b, slot0, arith::ConstantIntOp::create(b, i64, 0),
        arith::ConstantIntOp::create(b, i64, code),
        mlir::LLVM::AtomicOrdering::monotonic,
        mlir::LLVM::AtomicOrdering::monotonic);
    Value first = mlir::LLVM::ExtractValueOp::create(b, claim, 1);
    ifThen(first, [&] {
      for (auto [slot, value] : llvm::enumerate(details))
        memref::StoreOp::create(b, arith::IndexCastOp::create(b, i64, value),
                                status, index(slot + 1));
      if (rawBits)
        memref::StoreOp::create(b, rawBits, status, index(5));
    });
  }

  /// Gates must be finite and <= 0. The first violation is recorded in the
  /// status buffer (1, b, h, t, d, value bits) and the gate replaced by 0, so
  /// the run ends normally and the caller reports the error.
  Value checkedGate(Value gate, ArrayRef<Value> position) {
    return checkedGates(gate, position).front();
  }
  /// checkedGate for a thread's group of gates, with one branch that
  /// reports the first violation among them (in their order): a branch per
  /// gate would make a group's code several times larger. `positions` holds
  /// each gate's position, 4 values apiece.
  SmallVector<Value> checkedGates(ValueRange gates, ArrayRef<Value> positions) {
    assert(positions.size() == 4 * gates.size() &&
           "4 position values per gate");
    SmallVector<Value> checked, invalid;
    Value anyInvalid = arith::ConstantIntOp::create(b, b.getI1Type(), 0);
    for (Value gate : gates) {
      Value nonPositive =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OLE, gate, f32(0));
      Value finite =
          arith::CmpFOp::create(b, arith::CmpFPredicate::ONE, gate,
                                f32(-std::numeric_limits<double>::infinity()));
      Value valid = arith::AndIOp::create(b, nonPositive, finite);
      invalid.push_back(arith::XOrIOp::create(
          b, valid, arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
      anyInvalid = arith::OrIOp::create(b, anyInvalid, invalid.back());
      checked.push_back(arith::SelectOp::create(b, valid, gate, f32(0)));
    }
    ifThen(anyInvalid, [&] {
      // The first invalid gate and its position.
      SmallVector<SmallVector<Value>> candidates;
      for (auto [i, gate] : llvm::enumerate(gates)) {
        candidates.push_back({gate});
        llvm::append_range(candidates.back(), positions.slice(4 * i, 4));
      }
      SmallVector<Value> first = selectFirst(invalid, candidates);
      Value wide = arith::ExtFOp::create(b, b.getF64Type(), first[0]);
      recordError(1, ArrayRef<Value>(first).drop_front(),
                  arith::BitcastOp::create(b, b.getI64Type(), wide));
    });
    return checked;
  }

  /// The softmax scale: the given constant, or 1 / sqrt(Dk).
  Value softmaxScale(std::optional<APFloat> given, Value dimK) {
    if (given)
      return f32(given->convertToDouble());
    return arith::DivFOp::create(b, f32(1.0),
                                 math::SqrtOp::create(b, indexToF32(dimK)));
  }

  /// max + log(sum), or -inf for a row without weight (sum = 0).
  Value logSumExp(Value hasWeight, Value max, Value sum) {
    return arith::SelectOp::create(
        b, hasWeight, add(max, math::LogOp::create(b, sum)),
        f32(-std::numeric_limits<double>::infinity()));
  }

  /// True when the optional parameter was passed (non-null pointer).
  Value isPresent(Value memref) {
    Value pointer =
        memref::ExtractAlignedPointerAsIndexOp::create(b, memref);
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, pointer,
                                 index(0));
  }

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
  Value paddedToValueGroups(Value size) {
    Value group = index(kLanes * kValueGroup);
    return mul(arith::CeilDivUIOp::create(b, size, group), group);
  }
  /// Zeroes a 2-D f32 buffer (tiles whose padding must read as 0).
  void zeroFill(Value buffer) {
    Value zero = index(0);
    loop(zero, dim(buffer, 0), [&](Value r) {
      loop(zero, dim(buffer, 1), [&](Value c) {
        memref::StoreOp::create(b, f32(0), buffer, ValueRange{r, c});
      });
    });
  }
  /// init + sum over i in [lb, ub) of scalarAt(i) * rowAt(i), on vectors
  /// of kLanes: `terms(i)` gives the scalar (broadcast) and the vector.
  Value vectorDotLoop(Value lb, Value ub, Value init,
                      function_ref<std::pair<Value, Value>(Value)> terms) {
    return vectorDotLoops(lb, ub, {init}, [&](Value i) {
      auto [scalar, row] = terms(i);
      return std::make_pair(scalar, SmallVector<Value>{row});
    })[0];
  }
  /// inits[k] + sum over i in [lb, ub) of scalarAt(i) * rowsAt(i)[k] for
  /// every k in one loop: the accumulators are independent, so an FMA need
  /// not wait for the previous one's result (a single accumulator chain runs
  /// at the FMA latency, not its throughput). Each lane still sums in index
  /// order, so the results are those of one vectorDotLoop per accumulator.
  SmallVector<Value>
  vectorDotLoops(Value lb, Value ub, ValueRange inits,
                 function_ref<std::pair<Value, SmallVector<Value>>(Value)> terms) {
    return llvm::to_vector(loop(lb, ub, inits, [&](Value i, ValueRange sums) {
      auto [scalar, rows] = terms(i);
      Value broadcast = mlir::vector::BroadcastOp::create(b, lanes(), scalar);
      SmallVector<Value> next;
      for (auto [row, sum] : llvm::zip_equal(rows, sums))
        next.push_back(mlir::vector::FMAOp::create(b, broadcast, row, sum));
      return next;
    }));
  }
  /// dest[prefix..., c] = sum over d in [0, depth) of scalarAt(d) *
  /// columnsT[d, c], for c < width (a multiple of kLanes): one row times a
  /// tile staged transposed, kDotGroup vectors of columns per loop over d.
  void rowTimesTransposed(Value depth, function_ref<Value(Value)> scalarAt,
                          Value columnsT, int64_t width, Value dest,
                          ValueRange prefix) {
    for (int64_t g0 = 0; g0 < width; g0 += kLanes * kDotGroup) {
      int64_t count = std::min<int64_t>(kDotGroup, (width - g0) / kLanes);
      auto column = [&](int64_t k) { return index(g0 + k * kLanes); };
      SmallVector<Value> dots = vectorDotLoops(
          index(0), depth, SmallVector<Value>(count, zeroLanes()),
          [&](Value d) {
            SmallVector<Value> rows;
            for (int64_t k = 0; k < count; ++k)
              rows.push_back(loadLanes(columnsT, {d, column(k)}));
            return std::make_pair(scalarAt(d), rows);
          });
      for (int64_t k = 0; k < count; ++k) {
        SmallVector<Value> at(prefix.begin(), prefix.end());
        at.push_back(column(k));
        mlir::vector::StoreOp::create(b, dots[k], dest, at);
      }
    }
  }
  Value loadLanes(Value buffer, ValueRange indices) {
    return mlir::vector::LoadOp::create(b, lanes(), buffer, indices);
  }
  Value zeroLanes() {
    return arith::ConstantOp::create(b, lanes(), b.getZeroAttr(lanes()));
  }

  /// for each (batch, head) of the numBatches x heads grid, in row-major
  /// order. When the function has a work range (the CPU calling convention),
  /// only the flattened indices in [workBegin, workEnd) are visited, so that
  /// host threads can share the grid; indices past the grid visit nothing.
  void gridLoop(Value numBatches, Value heads,
                function_ref<void(Value batch, Value head)> body) {
    if (!workBegin) {
      loop(index(0), numBatches,
           [&](Value batch) { loop(index(0), heads, [&](Value head) {
             body(batch, head);
           }); });
      return;
    }
    forEachWorkItem(mul(numBatches, heads), [&](Value item) {
      body(arith::DivUIOp::create(b, item, heads),
           arith::RemUIOp::create(b, item, heads));
    });
  }

  /// for each (batch, head, row block) item of the caller's share
  /// [workBegin, workEnd) of the numBatches x heads x workRowBlocks grid, in
  /// row-major order. The caller sizes workRowBlocks for the longest
  /// sequence, so `body` skips row blocks past its own sequence's end. For
  /// strategies whose items are row blocks of one head (the CPU calling
  /// convention only).
  void rowBlockGridLoop(Value numBatches, Value heads,
                        function_ref<void(Value batch, Value head,
                                          Value rowBlock)>
                            body) {
    assert(workBegin && "row-block grids need the CPU work range");
    Value perBatch = mul(heads, workRowBlocks);
    forEachWorkItem(mul(numBatches, perBatch), [&](Value item) {
      Value rest = arith::RemUIOp::create(b, item, perBatch);
      body(arith::DivUIOp::create(b, item, perBatch),
           arith::DivUIOp::create(b, rest, workRowBlocks),
           arith::RemUIOp::create(b, rest, workRowBlocks));
    });
  }

  /// for each item of this call's share [workBegin, workEnd) of a grid of
  /// `gridSize` items; indices past the grid visit nothing.
  void forEachWorkItem(Value gridSize, function_ref<void(Value)> body) {
    Value end = arith::MinUIOp::create(b, workEnd, gridSize);
    Value begin = arith::MinUIOp::create(b, workBegin, end);
    loop(begin, end, body);
  }

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

/// Index list for q/k/v/o: (batch, head, position, feature) in the layout.
inline SmallVector<Value> layoutIndices(Layout layout, Value batch, Value head,
                                 Value position, Value feature) {
  switch (layout) {
  case Layout::bhnd:
    return {batch, head, position, feature};
  case Layout::bnhd:
    return {batch, position, head, feature};
  case Layout::thd:
    return {position, head, feature};
  }
  llvm_unreachable("unknown layout");
}

/// layoutIndices without the feature: where a row block of q/k/v/o starts,
/// the position of attn_tile loads and stores.
inline SmallVector<Value> rowLayoutIndices(Layout layout, Value batch,
                                           Value head, Value position) {
  SmallVector<Value> at =
      layoutIndices(layout, batch, head, position, Value());
  at.pop_back();
  return at;
}

/// Where lse of query `row` lives: [head, start + row] for packed sequences
/// (`offsets` non-null), else [batch, head, row].
inline SmallVector<Value> lseIndices(Value offsets, Value batch, Value head,
                                     Value packedRow, Value row) {
  if (offsets)
    return {head, packedRow};
  return {batch, head, row};
}

/// Sequence bounds of batch entry `b`: its start in the packed tensor and its
/// length; (0, dense length) when not packed.
inline std::pair<Value, Value> sequenceBounds(LoweringBuilder &rb, Value offsets,
                                       Value batch, Value denseLength) {
  if (!offsets)
    return {rb.index(0), denseLength};
  Value start = rb.loadIndex(offsets, {batch});
  Value end = rb.loadIndex(offsets, {rb.add(batch, rb.index(1))});
  return {start, rb.sub(end, start)};
}

/// Checks the bounds sequenceBounds read. cu_seqlens may live on a device,
/// where the host cannot check them: a sequence that is decreasing or
/// leaves the `total` packed tokens is recorded (3, parameter, batch,
/// start, end) and gets length 0, so that nothing reads or writes outside
/// the packed tensors.
inline void checkSequence(LoweringBuilder &rb, Value offsets, Value batch,
                          Value start, Value &length, Value total) {
  if (!offsets)
    return;
  ImplicitLocOpBuilder &b = rb.b;
  using P = arith::CmpIPredicate;
  Value end = rb.add(start, length);
  // The offsets cover the packed tokens: the first sequence starts at 0,
  // the last ends at `total`, each lies within them.
  Value last = rb.sub(rb.dim(offsets, 0), rb.index(2));
  Value startsAtZero = arith::OrIOp::create(
      b, arith::CmpIOp::create(b, P::ne, batch, rb.index(0)),
      arith::CmpIOp::create(b, P::eq, start, rb.index(0)));
  Value endsAtTotal = arith::OrIOp::create(
      b, arith::CmpIOp::create(b, P::ne, batch, last),
      arith::CmpIOp::create(b, P::eq, end, total));
  Value within = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, P::sle, start, end),
      arith::AndIOp::create(
          b, arith::CmpIOp::create(b, P::sge, start, rb.index(0)),
          arith::CmpIOp::create(b, P::sle, end, total)));
  Value valid = arith::AndIOp::create(
      b, within, arith::AndIOp::create(b, startsAtZero, endsAtTotal));
  rb.ifThen(arith::XOrIOp::create(
                b, valid, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
            [&] {
              rb.recordError(
                  3, {rb.index(cast<BlockArgument>(offsets).getArgNumber()),
                      batch, start, end, total});
            });
  length = arith::SelectOp::create(b, valid, length, rb.index(0));
}

/// The memrefs and sizes that every lowering of a family op starts from.
struct AttentionOperands {
  Layout layout;
  LayoutDims dims;
  Value q, k, v;
  /// Offsets of packed sequences for queries and keys (both the op's
  /// cu_seqlens for the linear family); null when dense.
  Value cuQ, cuK;
  /// Batch entries (or sequences), heads, GQA group size, stored lengths
  /// (packed: total tokens) and head dims.
  Value numBatches, headsQ, headsK, groupSize, lengthQ, lengthK, dimK, dimV;
};
AttentionOperands getAttentionOperands(Operation *familyOp,
                                       LoweringBuilder &rb);

/// constant + nCoeff * n + mCoeff * m at run time.
Value evaluateLength(LoweringBuilder &rb, const LengthAffine &affine, Value n,
                     Value m);

/// The keys [jBegin, jEnd) that query rows [i0, iLast] can see under the
/// band (and the chunk of `chunkSize` when non-null); jBegin == jEnd when
/// none, both in [0, m].
std::pair<Value, Value> visibleKeyRange(LoweringBuilder &rb,
                                        const MaskStructure &band,
                                        Value chunkSize, Value i0, Value iLast,
                                        Value n, Value m);

/// True when every (i, j) with i in [i0, iLast] and j in [j0, jLast] lies
/// inside the band (and one chunk), so the block needs no mask. Only
/// meaningful when the band is exact.
Value blockInsideBand(LoweringBuilder &rb, const MaskStructure &band,
                      Value chunkSize, Value i0, Value iLast, Value j0,
                      Value jLast, Value n, Value m);

/// initial[batch, head, d, e] when `initial` is given and present, else 0.
Value initialStateAt(LoweringBuilder &rb, Value initial, Value hasInitial,
                     Value batch, Value head, Value d, Value e);
/// state[d, e] = initial[batch, head, d, e] when `initial` is given and
/// present, else 0.
void initializeState(LoweringBuilder &rb, Value state, Value initial,
                     Value hasInitial, Value batch, Value head,
                     const AttentionOperands &shape);
/// finalState[batch, head, d, e] = state[d, e].
void storeState(LoweringBuilder &rb, Value state, Value finalState, Value batch,
                Value head, const AttentionOperands &shape);

/// The argument types of the calling convention: parameters, results, then
/// the status buffer.
SmallVector<Type> getCallingConventionTypes(KernelOp kernel);

/// Appends the lowering of `kernel` to `entry`, whose arguments start with
/// the calling convention (more may follow); `lowerFamily` fills in the body for the family op.
/// `clearStatus` zeroes the status buffer first (a GPU launch leaves that to
/// the host, as every thread would race on it).
/// `workRange`, when given, holds the index values of
/// LoweringBuilder::workBegin, workEnd and workRowBlocks.
void lowerKernelBody(
    KernelOp kernel, Block *entry, bool clearStatus,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily,
    ValueRange workRange = {});

/// Replaces `kernel` by a func.func of the same name with the calling
/// convention of docs/pipeline.md (parameters, results, status buffer, the
/// [begin, end) share of the grid to compute and its row blocks per (batch,
/// head)) and lets `lowerFamily` fill in the body for the kernel's family op, given the
/// result buffers in the family op's result order.
mlir::func::FuncOp lowerKernelToFunc(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily);

/// Replaces `kernel` by a func.func of the same name whose arguments are the
/// parameters, the results and the status buffer, and lets `lowerFamily`
/// build a target-neutral tile program in it (docs/tile.md). The status
/// buffer is not cleared: a target lowering adds what its calling
/// convention needs.
mlir::func::FuncOp lowerKernelToProgram(
    KernelOp kernel,
    function_ref<void(Operation *, LoweringBuilder &, ValueRange)> lowerFamily);

/// A pass (`Derived`, generated base `Base`) whose option values
/// `Derived::optionProblem()` checks, returning what is wrong or "". Values
/// from a pipeline string are reported while it is parsed; values set in
/// C++ (create...(options)) when the pass runs, without a location, since
/// no op is at fault.
template <typename Derived, template <typename> class Base>
struct CheckedOptionsPass : public Base<Derived> {
  using Base<Derived>::Base;

  mlir::LogicalResult
  initializeOptions(llvm::StringRef options,
                    llvm::function_ref<mlir::LogicalResult(const llvm::Twine &)>
                        errorHandler) override {
    if (mlir::failed(Base<Derived>::initializeOptions(options, errorHandler)))
      return mlir::failure();
    std::string problem = static_cast<Derived *>(this)->optionProblem();
    return problem.empty() ? mlir::success() : errorHandler(problem);
  }

  /// Reports bad options and fails the pass; false when they are fine.
  bool failedOnBadOptions() {
    std::string problem = static_cast<Derived *>(this)->optionProblem();
    if (problem.empty())
      return false;
    mlir::emitError(mlir::UnknownLoc::get(&this->getContext())) << problem;
    this->signalPassFailure();
    return true;
  }
};

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_KERNELLOWERING_H
