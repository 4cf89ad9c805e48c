//===- LoweringBuilder.cpp - Loops, conditions and arithmetic -------------===//

#include "attnc/Conversion/KernelLowering/LoweringBuilder.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

Value LoweringBuilder::indexToF32(Value index) {
  return arith::UIToFPOp::create(
      b, b.getF32Type(),
      arith::IndexCastUIOp::create(b, b.getI64Type(), index));
}

std::pair<Value, Value> LoweringBuilder::scatterPosition(Value position,
                                                         Value size) {
  Value integer = arith::FPToSIOp::create(b, b.getI64Type(), position);
  Value zero = arith::ConstantIntOp::create(b, b.getI64Type(), 0);
  Value inside = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::sge, integer, zero),
      arith::CmpIOp::create(
          b, arith::CmpIPredicate::slt, integer,
          arith::IndexCastOp::create(b, b.getI64Type(), size)));
  return {arith::IndexCastOp::create(b, b.getIndexType(), integer), inside};
}

Value LoweringBuilder::dim(Value memref, int64_t position) {
  return memref::DimOp::create(b, memref, position);
}

Value LoweringBuilder::add(Value lhs, Value rhs) {
  return isa<FloatType>(lhs.getType()) ? Value(arith::AddFOp::create(b, lhs, rhs))
                                       : Value(arith::AddIOp::create(b, lhs, rhs));
}

Value LoweringBuilder::mul(Value lhs, Value rhs) {
  return isa<FloatType>(lhs.getType()) ? Value(arith::MulFOp::create(b, lhs, rhs))
                                       : Value(arith::MulIOp::create(b, lhs, rhs));
}

Value LoweringBuilder::loadF32(Value memref, ValueRange indices) {
  Value value = memref::LoadOp::create(b, memref, indices);
  if (!value.getType().isF32())
    value = arith::ExtFOp::create(b, b.getF32Type(), value);
  return value;
}

void LoweringBuilder::storeF32(Value value, Value memref, ValueRange indices) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  if (element != value.getType())
    value = arith::TruncFOp::create(b, element, value);
  memref::StoreOp::create(b, value, memref, indices);
}

Value LoweringBuilder::loadIndex(Value memref, ValueRange indices) {
  Value value = memref::LoadOp::create(b, memref, indices);
  return arith::IndexCastOp::create(b, b.getIndexType(), value);
}

ValueRange
LoweringBuilder::loop(Value lb, Value ub, ValueRange init,
                      function_ref<SmallVector<Value>(Value, ValueRange)> body,
                      Value step) {
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

void LoweringBuilder::loop(Value lb, Value ub, function_ref<void(Value)> body) {
  loop(lb, ub, {}, [&](Value iv, ValueRange) {
    body(iv);
    return SmallVector<Value>{};
  });
}

ValueRange
LoweringBuilder::ifThen(Value cond, TypeRange types,
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

void LoweringBuilder::ifThen(Value cond, function_ref<void()> thenBody) {
  ifThen(cond, {}, [&] { thenBody(); return SmallVector<Value>{}; },
         [] { return SmallVector<Value>{}; });
}

Value LoweringBuilder::softmaxScale(std::optional<APFloat> given, Value dimK) {
  if (given)
    return f32(given->convertToDouble());
  return arith::DivFOp::create(b, f32(1.0),
                               math::SqrtOp::create(b, indexToF32(dimK)));
}

Value LoweringBuilder::inRange(Value x, Value begin, Value end) {
  Value atLeast = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, x, begin);
  Value below = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, x, end);
  return arith::AndIOp::create(b, atLeast, below);
}

Value LoweringBuilder::logSumExp(Value hasWeight, Value max, Value sum) {
  return arith::SelectOp::create(
      b, hasWeight, add(max, math::LogOp::create(b, sum)),
      f32(-std::numeric_limits<double>::infinity()));
}

Value LoweringBuilder::isPresent(Value memref) {
  Value pointer =
      memref::ExtractAlignedPointerAsIndexOp::create(b, memref);
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, pointer,
                               index(0));
}

Value LoweringBuilder::paddedToValueGroups(Value size) {
  Value group = index(kLanes * kValueGroup);
  return mul(arith::CeilDivUIOp::create(b, size, group), group);
}

void LoweringBuilder::zeroFill(Value buffer) {
  Value zero = index(0);
  loop(zero, dim(buffer, 0), [&](Value r) {
    loop(zero, dim(buffer, 1), [&](Value c) {
      memref::StoreOp::create(b, f32(0), buffer, ValueRange{r, c});
    });
  });
}

Value LoweringBuilder::vectorDotLoop(
    Value lb, Value ub, Value init,
    function_ref<std::pair<Value, Value>(Value)> terms) {
  return vectorDotLoops(lb, ub, {init}, [&](Value i) {
    auto [scalar, row] = terms(i);
    return std::make_pair(scalar, SmallVector<Value>{row});
  })[0];
}

SmallVector<Value> LoweringBuilder::vectorDotLoops(
    Value lb, Value ub, ValueRange inits,
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

void LoweringBuilder::rowTimesTransposed(Value depth,
                                         function_ref<Value(Value)> scalarAt,
                                         Value columnsT, int64_t width,
                                         Value dest, ValueRange prefix) {
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

Value LoweringBuilder::loadLanes(Value buffer, ValueRange indices) {
  return mlir::vector::LoadOp::create(b, lanes(), buffer, indices);
}

Value LoweringBuilder::zeroLanes() {
  return arith::ConstantOp::create(b, lanes(), b.getZeroAttr(lanes()));
}

void LoweringBuilder::gridLoop(
    Value numBatches, Value heads,
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

void LoweringBuilder::rowBlockGridLoop(
    Value numBatches, Value heads,
    function_ref<void(Value batch, Value head, Value rowBlock)> body) {
  assert(workBegin && "row-block grids need the CPU work range");
  Value perBatch = mul(heads, workRowBlocks);
  forEachWorkItem(mul(numBatches, perBatch), [&](Value item) {
    Value rest = arith::RemUIOp::create(b, item, perBatch);
    body(arith::DivUIOp::create(b, item, perBatch),
         arith::DivUIOp::create(b, rest, workRowBlocks),
         arith::RemUIOp::create(b, rest, workRowBlocks));
  });
}

void LoweringBuilder::forEachWorkItem(Value gridSize,
                                      function_ref<void(Value)> body) {
  Value end = arith::MinUIOp::create(b, workEnd, gridSize);
  Value begin = arith::MinUIOp::create(b, workBegin, end);
  loop(begin, end, body);
}
