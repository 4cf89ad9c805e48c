//===- LinearStateUpdate.cpp - The state update and its products ----------===//
//
// The tensor-core products of the chunk kernels (A fragments of 16 rows,
// times rows of V or of the state operand), the state update
// S' = exp(G_last) S + (phi(K) o exp(G_last - G_u))^T V, and the state as
// an mma operand.
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

LinearKernelBuilder::MmaOperand
LinearKernelBuilder::rowFragment(Value tile, Value row0, int64_t kk,
                                 ElementTransform transform) {
  if (config.splitF32 || transform)
    return loadElementwiseOperand(tile, {}, lane, row0, idx(kk * 16),
                                  nvvm::kARegisters, nvvm::mmaACoord,
                                  /*transposed=*/false, transform);
  return {loadAOperand(tile, lane, row0, idx(kk * 16)), {}};
}

void LinearKernelBuilder::accumulateTimesRows(FragmentAt a, int64_t steps,
                                              Value tile, int64_t columns,
                                              SmallVector<Value> &acc) {
  if (config.splitF32) {
    for (int64_t kk = 0; kk < steps; ++kk) {
      MmaOperand left = a(kk);
      for (int64_t et = 0; et < columns / 8; ++et) {
        MmaOperand rows = loadElementwiseOperand(
            tile, {}, lane, idx(kk * 16), idx(et * 8), nvvm::kBRegisters,
            nvvm::mmaBCoord, /*transposed=*/false);
        MutableArrayRef<Value> c(&acc[et * 4], 4);
        llvm::copy(mma(left, rows, c), c.begin());
      }
    }
    return;
  }
  SmallVector<MmaOperand> fragments;
  for (int64_t kk = 0; kk < steps; ++kk)
    fragments.push_back(a(kk));
  Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
  Value rowInStep = rb.add(arith::RemUIOp::create(b, lane, idx(8)),
                           rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)),
                                  idx(8)));
  Value colOffset = rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8));
  for (int64_t kk = 0; kk < steps; ++kk)
    for (int64_t et = 0; et < columns / 8; et += 2) {
      SmallVector<Value> regs =
          ldmatrix(tile, {}, rb.add(idx(kk * 16), rowInStep),
                   rb.add(idx(et * 8), colOffset), 4, /*transpose=*/true);
      for (int64_t pair = 0; pair < 2; ++pair) {
        MutableArrayRef<Value> c(&acc[(et + pair) * 4], 4);
        SmallVector<Value> d =
            mma(fragments[kk].hi, {regs[2 * pair], regs[2 * pair + 1]}, c);
        llvm::copy(d, c.begin());
      }
    }
}

void LinearKernelBuilder::updateState(Value rows) {
  Value keys = keyTile;
  Value last = rb.sub(rows, idx(1));
  if (gated) {
    forEachElement(C * dimK, [&](Value i) {
      Value u = arith::DivUIOp::create(b, i, idx(dimK));
      Value d = arith::RemUIOp::create(b, i, idx(dimK));
      Value factor = exp2(arith::SubFOp::create(b, cumulativeAt(last, d),
                                                cumulativeAt(u, d)));
      factor = arith::SelectOp::create(b, lessThan(u, rows), factor, rb.f32(0));
      storeElement(arith::MulFOp::create(b, loadF32(keyTile, {u, d}), factor),
                   decayedKeys, {u, d});
    });
    barrier();
    keys = decayedKeys;
  }
  Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
  for (int64_t dtBase = 0; dtBase < dimK / 16; dtBase += config.warps) {
    Value dt = rb.add(warp, idx(dtBase));
    rb.ifThen(lessThan(dt, idx(dimK / 16)), [&] {
      Value d0 = rb.mul(dt, idx(16));
      SmallVector<Value> acc;
      for (int64_t et = 0; et < sliceV / 8; ++et)
        for (int64_t reg = 0; reg < 4; ++reg) {
          Value d = rb.add(d0, rb.add(group, idx(8 * (reg / 2))));
          Value e = rb.add(idx(et * 8 + reg % 2), rb.mul(inGroup, idx(2)));
          // S rows decay by exp(G_last) (at their key dim d).
          Value decay = gated ? exp2(cumulativeAt(last, d)) : rb.f32(1);
          acc.push_back(arith::MulFOp::create(
              b, memref::LoadOp::create(b, state, ValueRange{d, e}), decay));
        }
      // A = keys^T rows d0..: ldmatrix.trans of the key rows u (split
      // f32: the key tile's elements at the transposed coordinates).
      Value u = rb.add(arith::RemUIOp::create(b, lane, idx(8)),
                       rb.mul(arith::DivUIOp::create(b, laneBy8, idx(2)),
                              idx(8)));
      Value d = rb.add(d0, rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)),
                                  idx(8)));
      auto keysTransposed = [&](int64_t kk) -> MmaOperand {
        if (shape.splitF32)
          return loadElementwiseOperand(keys, {}, lane, idx(kk * 16), d0,
                                        nvvm::kARegisters, nvvm::mmaACoord,
                                        /*transposed=*/true);
        return {ldmatrix(keys, {}, rb.add(idx(kk * 16), u), d, 4,
                         /*transpose=*/true),
                {}};
      };
      accumulateTimesRows(keysTransposed, C / 16, valueTile, sliceV, acc);
      for (int64_t et = 0; et < sliceV / 8; ++et)
        for (int64_t reg = 0; reg < 4; ++reg) {
          Value dd = rb.add(d0, rb.add(group, idx(8 * (reg / 2))));
          Value e = rb.add(idx(et * 8 + reg % 2), rb.mul(inGroup, idx(2)));
          memref::StoreOp::create(b, acc[et * 4 + reg], state,
                                  ValueRange{dd, e});
        }
    });
  }
  barrier();
}

void LinearKernelBuilder::refreshStateOperand() {
  if (shape.splitF32)
    return;
  forEachStateElement([&](Value d, Value e, Value) {
    storeElement(memref::LoadOp::create(b, state, ValueRange{d, e}),
                 stateOperand, {d, e});
  });
  barrier();
}
