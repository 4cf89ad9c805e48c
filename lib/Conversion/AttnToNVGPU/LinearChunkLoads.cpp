//===- LinearChunkLoads.cpp - The q, k, v tiles and gates of a chunk ------===//
//
// A chunk's inputs in shared memory: cp.async copies of its rows of q, k
// and v, the feature map, and (gated) the chunk's gates and their prefix
// sums G_r in log2 units, per key dim in the table G[r][d].
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

void LinearKernelBuilder::loadChunk(Value t0, Value rows, bool withQuery,
                                    bool withKeys) {
  Value row0 = rb.add(start, t0);
  SmallVector<Value> tokens;
  if (withQuery)
    tokens = copyTile(queryTile, {}, q, batch, head, row0, rows, C, dimK);
  if (withKeys) {
    llvm::append_range(tokens, copyTile(keyTile, {}, k, batch, headK, row0,
                                        rows, C, dimK));
    llvm::append_range(tokens, copyTile(valueTile, {}, v, batch, headK, row0,
                                        rows, C, sliceV, col0));
  }
  commitCopies(tokens);
  // The gates are read while the copies are in flight, so that the two
  // latencies overlap; the previous chunk ended with a barrier, so their
  // tables are free.
  if (gated && perKeyDim) {
    // G[r][d]: the gates (16 loads of a thread in flight at once), then
    // prefix sums down each column. Rows past the chunk read the last
    // row's gate (in bounds, so the loads need no branch) and keep 0.
    forEachElementGroup(C * dimK, 16, [&](ArrayRef<Value> group) {
      SmallVector<Value> rowOfGate, dimOfGate, inChunk, raw;
      for (Value i : group) {
        Value r = arith::DivUIOp::create(b, i, idx(dimK));
        rowOfGate.push_back(r);
        dimOfGate.push_back(arith::RemUIOp::create(b, i, idx(dimK)));
        inChunk.push_back(lessThan(r, rows));
        Value t = rb.add(t0, arith::MinUIOp::create(b, r, rb.sub(rows, idx(1))));
        raw.push_back(rb.inlineExpression(
            op.getGate(), {batch, head, t, dimOfGate.back(), start},
            rb.f32(0)));
      }
      SmallVector<Value> groupGates, positions;
      for (size_t u = 0; u < group.size(); ++u) {
        groupGates.push_back(
            arith::SelectOp::create(b, inChunk[u], raw[u], rb.f32(0)));
        positions.append(
            {batch, head, rb.add(t0, rowOfGate[u]), dimOfGate[u]});
      }
      for (auto [u, g] :
           llvm::enumerate(rb.checkedGates(groupGates, positions)))
        memref::StoreOp::create(b, inLog2Units(g), gateTable,
                                ValueRange{rowOfGate[u], dimOfGate[u]});
    });
  } else if (gated) {
    forEachElement(C, [&](Value r) {
      Value t = rb.add(t0, r);
      Value g = rb.ifThen(
          lessThan(r, rows), {f32},
          [&]() -> SmallVector<Value> {
            Value raw = rb.inlineExpression(
                op.getGate(), {batch, head, t, idx(0), start}, rb.f32(0));
            return {rb.checkedGate(raw, {batch, head, t, idx(0)})};
          },
          [&]() -> SmallVector<Value> { return {rb.f32(0)}; })[0];
      memref::StoreOp::create(b, inLog2Units(g), gates, r);
    });
  }
  waitForCopiesAndBarrier();
  auto featureMap = [&](Value tile, bool zeroPastEnd) {
    if (op.getFeature().empty() && !zeroPastEnd)
      return;
    forEachElement(C * dimK, [&](Value i) {
      Value r = arith::DivUIOp::create(b, i, idx(dimK));
      Value d = arith::RemUIOp::create(b, i, idx(dimK));
      Value x = loadF32(tile, {r, d});
      Value y = rb.inlineExpression(op.getFeature(), {x}, x);
      if (zeroPastEnd)
        y = arith::SelectOp::create(b, lessThan(r, rows), y, rb.f32(0));
      storeElement(y, tile, {r, d});
    });
  };
  if (withQuery)
    featureMap(queryTile, /*zeroPastEnd=*/false);
  if (withKeys)
    featureMap(keyTile, /*zeroPastEnd=*/true);
  if (gated && perKeyDim) {
    // A column's running sum stays in a register; its gates are loaded 8
    // rows at a time, so that only the additions wait on each other.
    constexpr int64_t kRowsPerLoad = 8;
    forEachElement(dimK, [&](Value d) {
      rb.loop(idx(0), idx(C / kRowsPerLoad), {rb.f32(0)},
              [&](Value block, ValueRange carried) {
                SmallVector<Value> rowsOfBlock, values;
                for (int64_t i = 0; i < kRowsPerLoad; ++i) {
                  rowsOfBlock.push_back(
                      rb.add(rb.mul(block, idx(kRowsPerLoad)), idx(i)));
                  values.push_back(memref::LoadOp::create(
                      b, gateTable, ValueRange{rowsOfBlock.back(), d}));
                }
                Value sum = carried[0];
                for (int64_t i = 0; i < kRowsPerLoad; ++i) {
                  sum = rb.add(sum, values[i]);
                  memref::StoreOp::create(b, sum, gateTable,
                                          ValueRange{rowsOfBlock[i], d});
                }
                return SmallVector<Value>{sum};
              });
    });
  } else if (gated) {
    forEachElement(C, [&](Value r) {
      Value sum = rb.loop(idx(0), rb.add(r, idx(1)), {rb.f32(0)},
                          [&](Value u, ValueRange acc) {
                            return SmallVector<Value>{rb.add(
                                acc[0], memref::LoadOp::create(b, gates, u))};
                          })[0];
      memref::StoreOp::create(b, sum, cumulative, r);
    });
  }
  barrier();
}

Value LinearKernelBuilder::cumulativeAt(Value r, Value d) {
  if (!gated)
    return rb.f32(0);
  if (perKeyDim)
    return memref::LoadOp::create(b, gateTable, ValueRange{r, d});
  return memref::LoadOp::create(b, cumulative, r);
}
