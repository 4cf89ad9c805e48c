//===- SoftmaxWgmma.cpp - Q K^T and P V with wgmma (sm_90a) ---------------===//
//
// With mma=wgmma a warpgroup computes S and P V with wgmma.mma_async: Q and
// K as K-major core-matrix tiles in shared memory, P from registers and V
// MN-major. The next block's S is in flight while this block's softmax
// runs (see visit), so the first block's S is computed before the loop.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

Value SoftmaxKernelBuilder::stageAddress(Value tiles, Value stage,
                                         int64_t width) {
  return rb.add(sharedAddress(tiles),
                rb.mul(arith::IndexCastOp::create(b, b.getI64Type(), stage),
                       i64(shape.blockK * width * shape.elementBytes())));
}

SmallVector<Value> SoftmaxKernelBuilder::wgmmaScores(Value queryTile,
                                                     Value keyTiles, Value warp,
                                                     Value stage,
                                                     ArrayRef<Value> scores,
                                                     bool wait) {
  // Q and K rows both hold Dk elements: 8 rows (a row block) are 16 Dk
  // bytes.
  int64_t rowBlockBytes = shape.dimK * 16;
  Value warpgroup = arith::IndexCastOp::create(
      b, b.getI64Type(),
      arith::DivUIOp::create(b, warp, idx(nvvm::kWarpgroupWarps)));
  Value queryAddress =
      rb.add(sharedAddress(queryTile),
             rb.mul(warpgroup, i64(nvvm::kWgmmaM / 8 * rowBlockBytes)));
  Value keyAddress = stageAddress(keyTiles, stage, shape.dimK);
  SmallVector<Value> acc(scores);
  wgmmaFence();
  // Step kk covers Dk columns [16 kk, 16 kk + 16): two core matrices on.
  for (int64_t kk = 0; kk < shape.dimK / 16; ++kk)
    acc = wgmma(
        wgmmaDescriptor(rb.add(queryAddress, i64(256 * kk)), 128,
                        rowBlockBytes),
        {},
        wgmmaDescriptor(rb.add(keyAddress, i64(256 * kk)), 128, rowBlockBytes),
        /*transposeB=*/false, acc);
  if (wait)
    wgmmaCommitAndWait();
  else
    wgmmaCommit();
  return acc;
}

void SoftmaxKernelBuilder::wgmmaWeightedValues(
    Value valueTiles, Value stage, ArrayRef<SmallVector<Value>> weights,
    MutableArrayRef<Value> acc) {
  int64_t valueRowBlockBytes = shape.dimV * 16;
  Value valueAddress = stageAddress(valueTiles, stage, shape.dimV);
  SmallVector<Value> out(acc.begin(), acc.end());
  wgmmaFence();
  // Keys [16 kk, 16 kk + 16) are two row blocks of the tile.
  for (auto [kk, a] : llvm::enumerate(weights))
    out = wgmma(
        Value(), a,
        wgmmaDescriptor(rb.add(valueAddress, i64(2 * static_cast<int64_t>(kk) *
                                                 valueRowBlockBytes)),
                        valueRowBlockBytes, 128),
        /*transposeB=*/true, out);
  wgmmaCommitAndWait();
  llvm::copy(out, acc.begin());
}

void SoftmaxKernelBuilder::accumulateValuesWgmma(Value stage, ArrayRef<Value> p,
                                                 MutableArrayRef<Value> next) {
  SmallVector<SmallVector<Value>> a;
  for (int64_t kk = 0; kk < shape.blockK / 16; ++kk)
    a.push_back(weightRegisters(p, 0, kk));
  wgmmaWeightedValues(
      valueTiles, stage, a,
      MutableArrayRef<Value>(&next[accIndex(0, 0)], outputTiles * 4));
}

ValueRange SoftmaxKernelBuilder::firstBlockScores() {
  SmallVector<Type> scoreTypes(scoreCount, f32);
  SmallVector<Value> zeros(scoreCount, rb.f32(0));
  return rb.ifThen(
      lessThan(firstCursor, schedule.end), scoreTypes,
      [&] {
        if (shape.specialized())
          awaitFilled(kKeysFull, idx(0));
        SmallVector<Value> scores = wgmmaScores(queryTile, keyTiles, warp,
                                                idx(0), zeros, /*wait=*/true);
        // Every warpgroup has read stage 0's keys before the first
        // visit refills it.
        if (shape.specialized())
          mbarrierArrive(barrierOf(kKeysEmpty, idx(0)));
        else
          barrier();
        return scores;
      },
      [&] { return zeros; });
}
