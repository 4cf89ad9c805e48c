//===- CheckedLoads.cpp - Expressions, checked loads and status records ---===//

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

Value LoweringBuilder::inlineExpression(Region &region, ValueRange args,
                                        Value fallback) {
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

void LoweringBuilder::hoistInvariantLoads(
    Region &region, ArrayRef<std::pair<unsigned, Value>> invariant) {
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

void LoweringBuilder::hoistSoftmaxInvariantLoads(Region &score, Region &mask,
                                                 Value batch, Value head,
                                                 Value n, Value m, Value startQ,
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

Value LoweringBuilder::lowerCheckedOp(Operation &op, IRMapping &mapping) {
  if (auto load = dyn_cast<LoadOp>(op))
    return lowerLoad(load, mapping);
  return lowerFloorDivision(cast<arith::FloorDivSIOp>(op), mapping);
}

Value LoweringBuilder::lowerFloorDivision(arith::FloorDivSIOp division,
                                          IRMapping &mapping) {
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

Value LoweringBuilder::lowerLoad(LoadOp load, IRMapping &mapping) {
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

Value LoweringBuilder::checkedLoad(Value memref, ValueRange indices) {
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

Value LoweringBuilder::checkedBlockCount(Value counts, Value batch, Value head,
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

Value LoweringBuilder::listedBlock(Value lists, Value batch, Value head,
                                   Value queryBlock, Value entry) {
  return arith::IndexCastOp::create(
      b, b.getIndexType(), checkedLoad(lists, {batch, head, queryBlock, entry}));
}

Value LoweringBuilder::blockPresent(Value blockMask, Value batch, Value head,
                                    Value queryBlock, Value keyBlock) {
  Value raw = checkedLoad(blockMask, {batch, head, queryBlock, keyBlock});
  return arith::CmpIOp::create(
      b, arith::CmpIPredicate::ne, raw,
      arith::ConstantIntOp::create(b, raw.getType(), 0));
}

Value LoweringBuilder::blockListed(Value lists, Value count, Value batch,
                                   Value head, Value queryBlock,
                                   Value keyBlock) {
  return loop(index(0), count,
              {arith::ConstantIntOp::create(b, b.getI1Type(), 0)},
              [&](Value entry, ValueRange found) {
                Value same = arith::CmpIOp::create(
                    b, arith::CmpIPredicate::eq,
                    listedBlock(lists, batch, head, queryBlock, entry),
                    keyBlock);
                return SmallVector<Value>{
                    arith::OrIOp::create(b, found[0], same)};
              })[0];
}

void LoweringBuilder::checkListedBlock(Value lists, Value batch, Value head,
                                       Value queryBlock, Value entry,
                                       Value block, Value blocks) {
  Value bad = arith::OrIOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::slt, block, index(0)),
      arith::CmpIOp::create(b, arith::CmpIPredicate::sge, block, blocks));
  ifThen(bad, [&] {
    recordError(7, {index(cast<BlockArgument>(lists).getArgNumber()), batch,
                    head, queryBlock, entry, block, blocks});
  });
}

void LoweringBuilder::checkSelectionRow(Value selection, ArrayRef<Value> rowAt,
                                        int64_t topk, Value blocks,
                                        Value batch, Value head, Value row) {
  loop(index(0), index(topk), [&](Value entryNumber) {
    SmallVector<Value> at(rowAt);
    at.push_back(entryNumber);
    Value entry = loadF32(selection, at);
    Value none =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, entry, f32(-1));
    Value whole = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, entry,
                                        math::FloorOp::create(b, entry));
    Value inRange = arith::AndIOp::create(
        b, arith::CmpFOp::create(b, arith::CmpFPredicate::OGE, entry, f32(0)),
        arith::CmpFOp::create(b, arith::CmpFPredicate::OLT, entry,
                              indexToF32(blocks)));
    Value valid =
        arith::OrIOp::create(b, none, arith::AndIOp::create(b, whole, inRange));
    ifThen(arith::XOrIOp::create(
               b, valid, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
           [&] {
             Value wide = arith::ExtFOp::create(b, b.getF64Type(), entry);
             recordError(8,
                         {index(cast<BlockArgument>(selection).getArgNumber()),
                          batch, head, row, entryNumber},
                         arith::BitcastOp::create(b, b.getI64Type(), wide));
           });
  });
}

SmallVector<Value>
LoweringBuilder::selectFirst(ArrayRef<Value> chosen,
                             ArrayRef<SmallVector<Value>> candidates) {
  SmallVector<Value> first(candidates.back());
  for (int64_t i = static_cast<int64_t>(candidates.size()) - 2; i >= 0; --i)
    for (auto [slot, value] : llvm::enumerate(candidates[i]))
      first[slot] = arith::SelectOp::create(b, chosen[i], value, first[slot]);
  return first;
}

void LoweringBuilder::recordError(int64_t code, ArrayRef<Value> details,
                                  Value rawBits) {
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
      memref::StoreOp::create(b, rawBits, status, index(details.size() + 1));
  });
}

Value LoweringBuilder::checkedGate(Value gate, ArrayRef<Value> position) {
  return checkedGates(gate, position).front();
}

SmallVector<Value> LoweringBuilder::checkedGates(ValueRange gates,
                                                 ArrayRef<Value> positions) {
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
