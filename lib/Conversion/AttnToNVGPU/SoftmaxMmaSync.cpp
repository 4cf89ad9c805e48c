//===- SoftmaxMmaSync.cpp - Q K^T and P V with mma.sync (sm_80) -----------===//
//
// The softmax kernel's matmuls on mma.sync.m16n8k16: Q's A fragments (held
// in registers for the whole key loop when they are small), S = Q K^T with
// K's B fragments from ldmatrix, and acc += P V with V's from
// ldmatrix.trans; with split f32 operands the fragments are read element by
// element and each product is three mma. With two row tiles every K and V
// fragment read from shared memory feeds two mma.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

// The A operand of Q for row tile t and the 16 columns from 16 kk comes from
// one ldmatrix.x4, kept for the whole loop or reloaded per key block.
SmallVector<Value> SoftmaxKernelBuilder::loadQueryFragment(int64_t t,
                                                           int64_t kk) {
  return loadAOperand(queryTile, lane, rb.add(warpRow0, idx(t * 16)),
                      idx(kk * 16));
}

// Split f32: the high and low bf16 parts from the f32 tile.
SoftmaxKernelBuilder::MmaOperand
SoftmaxKernelBuilder::loadSplitQueryFragment(int64_t t, int64_t kk) {
  return loadElementwiseOperand(queryTile, {}, lane,
                                rb.add(warpRow0, idx(t * 16)), idx(kk * 16),
                                nvvm::kARegisters, nvvm::mmaACoord,
                                /*transposed=*/false);
}

void SoftmaxKernelBuilder::holdQueryFragments() {
  heldQuery.clear();
  heldSplitQuery.clear();
  if (shape.queryInRegisters())
    for (int64_t t = 0; t < rowTiles; ++t)
      for (int64_t kk = 0; kk < depthSteps; ++kk) {
        if (shape.splitF32)
          heldSplitQuery.push_back(loadSplitQueryFragment(t, kk));
        else
          heldQuery.push_back(loadQueryFragment(t, kk));
      }
}

SmallVector<Value> SoftmaxKernelBuilder::queryFragment(int64_t t, int64_t kk) {
  return shape.queryInRegisters() ? heldQuery[t * depthSteps + kk]
                                  : loadQueryFragment(t, kk);
}

SoftmaxKernelBuilder::MmaOperand
SoftmaxKernelBuilder::splitQueryFragment(int64_t t, int64_t kk) {
  return shape.queryInRegisters() ? heldSplitQuery[t * depthSteps + kk]
                                  : loadSplitQueryFragment(t, kk);
}

void SoftmaxKernelBuilder::scoresSplit(Value stage,
                                       MutableArrayRef<Value> scores) {
  // S = Q K^T, three mma per product of split operands.
  for (int64_t kk = 0; kk < depthSteps; ++kk) {
    SmallVector<MmaOperand> query;
    for (int64_t t = 0; t < rowTiles; ++t)
      query.push_back(splitQueryFragment(t, kk));
    for (int64_t nt = 0; nt < scoreTiles; ++nt) {
      // B[d][j] = K[j][d]: the key tile transposed.
      MmaOperand keys = loadElementwiseOperand(
          keyTiles, {stage}, lane, idx(nt * 8), idx(kk * 16), nvvm::kBRegisters,
          nvvm::mmaBCoord, /*transposed=*/true);
      for (int64_t t = 0; t < rowTiles; ++t) {
        MutableArrayRef<Value> c(&scores[scoreIndex(t, nt)], 4);
        llvm::copy(mma(query[t], keys, c), c.begin());
      }
    }
  }
}

void SoftmaxKernelBuilder::scoresMmaSync(Value stage,
                                         MutableArrayRef<Value> scores) {
  // S = Q K^T: per 8 keys, ldmatrix.x4 yields the B operands of two
  // 16-column steps of Dk (x2 for an odd last step), used by every row
  // tile.
  Value keyRow = arith::RemUIOp::create(b, lane, idx(8));
  Value keyCol = rb.mul(arith::DivUIOp::create(b, lane, idx(8)), idx(8));
  Value keyColX2 =
      rb.mul(arith::RemUIOp::create(b, arith::DivUIOp::create(b, lane, idx(8)),
                                    idx(2)),
             idx(8));
  for (int64_t kk = 0; kk < depthSteps; kk += 2) {
    bool pair = kk + 1 < depthSteps;
    SmallVector<SmallVector<Value>> first, second;
    for (int64_t t = 0; t < rowTiles; ++t) {
      first.push_back(queryFragment(t, kk));
      if (pair)
        second.push_back(queryFragment(t, kk + 1));
    }
    for (int64_t nt = 0; nt < scoreTiles; ++nt) {
      SmallVector<Value> regs =
          ldmatrix(keyTiles, {stage}, rb.add(keyRow, idx(nt * 8)),
                   rb.add(idx(kk * 16), pair ? keyCol : keyColX2), pair ? 4 : 2,
                   /*transpose=*/false);
      for (int64_t t = 0; t < rowTiles; ++t) {
        MutableArrayRef<Value> c(&scores[scoreIndex(t, nt)], 4);
        SmallVector<Value> updated = mma(first[t], {regs[0], regs[1]}, c);
        if (pair)
          updated = mma(second[t], {regs[2], regs[3]}, updated);
        llvm::copy(updated, c.begin());
      }
    }
  }
}

void SoftmaxKernelBuilder::accumulateValuesSplit(Value stage, ArrayRef<Value> p,
                                                 MutableArrayRef<Value> next) {
  for (int64_t kk = 0; kk < shape.blockK / 16; ++kk) {
    SmallVector<MmaOperand> a(rowTiles);
    for (int64_t t = 0; t < rowTiles; ++t)
      for (auto [x, y] : weightPairs(p, t, kk))
        appendSplit(x, y, a[t]);
    for (int64_t et = 0; et < outputTiles; ++et) {
      MmaOperand values = loadElementwiseOperand(
          valueTiles, {stage}, lane, idx(kk * 16), idx(et * 8),
          nvvm::kBRegisters, nvvm::mmaBCoord, /*transposed=*/false);
      for (int64_t t = 0; t < rowTiles; ++t) {
        MutableArrayRef<Value> acc(&next[accIndex(t, et)], 4);
        llvm::copy(mma(a[t], values, acc), acc.begin());
      }
    }
  }
}

void SoftmaxKernelBuilder::accumulateValuesMmaSync(
    Value stage, ArrayRef<Value> p, MutableArrayRef<Value> next) {
  // V's B operands via ldmatrix.trans, used by every row tile.
  Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
  Value valueRow =
      rb.add(arith::RemUIOp::create(b, lane, idx(8)),
             rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)), idx(8)));
  Value valueCol = rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8));
  for (int64_t kk = 0; kk < shape.blockK / 16; ++kk) {
    SmallVector<SmallVector<Value>> a;
    for (int64_t t = 0; t < rowTiles; ++t)
      a.push_back(weightRegisters(p, t, kk));
    for (int64_t et = 0; et < outputTiles; et += 2) {
      SmallVector<Value> regs =
          ldmatrix(valueTiles, {stage}, rb.add(idx(kk * 16), valueRow),
                   rb.add(idx(et * 8), valueCol), 4, /*transpose=*/true);
      for (int64_t t = 0; t < rowTiles; ++t)
        for (int64_t pairIndex = 0; pairIndex < 2; ++pairIndex) {
          MutableArrayRef<Value> acc(&next[accIndex(t, et + pairIndex)], 4);
          SmallVector<Value> updated =
              mma(a[t], {regs[2 * pairIndex], regs[2 * pairIndex + 1]}, acc);
          llvm::copy(updated, acc.begin());
        }
    }
  }
}
