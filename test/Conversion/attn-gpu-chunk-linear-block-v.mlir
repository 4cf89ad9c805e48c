// RUN: attnc-opt %s -attn-gpu-chunk-linear="block-v=16 segment-chunks=0" -canonicalize | FileCheck %s
// RUN: not attnc-opt %s -attn-gpu-chunk-linear="block-v=24" 2>&1 | FileCheck %s --check-prefix=BAD

// block-v splits the value columns across CTAs: with Dv = 32 and 16 columns
// per CTA, grid x is ceil(Dv / 16) = 2, and each CTA holds a 32x16 slice of
// the f32 state, a 32x(16 + 8) V tile and the full Q and K tiles. The CTA's
// first column is block_id x * 16: V is copied from there, and O and the
// final state are stored there.

// CHECK-LABEL: gpu.func @retnet(
// CHECK-SAME:    grid = [array<i64: 2, 3, 16, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK:         %[[X:.*]] = gpu.block_id  x
// CHECK:         %[[COL0:.*]] = arith.muli %[[X]], %c16
// CHECK-DAG:     memref.view {{.*}} to memref<32x40xbf16, #gpu.address_space<workgroup>>
// CHECK-DAG:     memref.view {{.*}} to memref<32x24xbf16, #gpu.address_space<workgroup>>
// CHECK-DAG:     memref.view {{.*}} to memref<32x16xf32, #gpu.address_space<workgroup>>
// CHECK:         scf.for
// CHECK:           arith.addi %[[COL0]]
// CHECK:           nvgpu.device_async_copy
// CHECK:         gpu.return

// BAD: error: kernel 'retnet' cannot run on the GPU: block-v must be a multiple of 16 that divides the value head dim 32 (got 24)
  attn.kernel @retnet(%q: !attn.tensor<bf16[B, H, T, 32]>, %k: !attn.tensor<bf16[B, H, T, 32]>, %v: !attn.tensor<bf16[B, H, T, 32]>) -> (o: !attn.tensor<bf16[B, H, T, 32]>, st: !attn.tensor<f32[B, H, 32, 32]>) {
    %o, %state = attn.linear %q, %k, %v {chunk = 32 : i64} : (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>) -> (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>) gate {
    } feature {
    }
    attn.return %o, %state : !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>
  }
