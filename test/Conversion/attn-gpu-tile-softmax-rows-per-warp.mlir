// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="warps=1 block-k=16 rows-per-warp=32" -canonicalize | FileCheck %s
// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="warps=1 block-k=16 rows-per-warp=32" -canonicalize | FileCheck %s --check-prefix=HELD
// RUN: not attnc-opt %s -split-input-file -attn-gpu-tile-softmax="rows-per-warp=24" 2>&1 | FileCheck %s --check-prefix=BAD

// Warps of 32 query rows: two mma row tiles per warp, so a CTA of one warp
// owns 32 rows (grid x divides N by 32) and its Q tile has 32 rows. Every K
// fragment (ldmatrix.x4: two 16-column steps of Dk for 8 keys) feeds four
// mma, two per row tile with the same B registers; every V fragment
// (ldmatrix.x4.trans) feeds four as well. At head dim 32 the Q fragments
// (2 row tiles x 2 steps) stay in registers: no ldmatrix of the Q tile
// inside the key loop.

// CHECK-LABEL: gpu.func @dense(
// CHECK-SAME:    sharedBytes = 7680
// CHECK-SAME:    grid = [array<i64: 0, 2, 32, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK:         memref.view {{.*}} to memref<32x40xbf16, #gpu.address_space<workgroup>>
// CHECK-COUNT-4: nvgpu.ldmatrix {{.*}} : memref<32x40xbf16
// CHECK:         scf.for
// CHECK:           nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<2x16x40xbf16
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[K0:.*]], %[[K1:.*]]]  C[
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[K2:.*]], %[[K3:.*]]]  C[
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[K0]], %[[K1]]]  C[
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[K2]], %[[K3]]]  C[
// CHECK:           nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true} : memref<2x16x40xbf16
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[V0:.*]], %[[V1:.*]]]  C[
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[V2:.*]], %[[V3:.*]]]  C[
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[V0]], %[[V1]]]  C[
// CHECK:           nvvm.mma.sync A[{{.*}}]  B[%[[V2]], %[[V3]]]  C[
// CHECK:         gpu.return

// HELD-LABEL: gpu.func @dense(
// HELD:         scf.for
// HELD-NOT:       memref<32x40xbf16
// HELD:         gpu.return

// BAD: error: attn-gpu-tile-softmax: rows-per-warp must be 16 or 32 (one or two mma row tiles), got 24
attn.kernel @dense(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}

// -----

// At head dim 128, 32 rows of Q fragments would take 64 registers per lane:
// the warp reloads them from the Q tile for each key block instead.

// CHECK-LABEL: gpu.func @wide(
// CHECK:         memref.view {{.*}} to memref<32x136xbf16, #gpu.address_space<workgroup>>
// CHECK:         scf.for
// CHECK:           nvgpu.ldmatrix {{.*}} : memref<32x136xbf16
// CHECK:           nvgpu.ldmatrix {{.*}} : memref<2x16x136xbf16
// CHECK:           nvvm.mma.sync
// CHECK:         gpu.return
attn.kernel @wide(%q: !attn.tensor<bf16[B, H, N, 128]>, %k: !attn.tensor<bf16[B, H, M, 128]>, %v: !attn.tensor<bf16[B, H, M, 128]>) -> (o: !attn.tensor<bf16[B, H, N, 128]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 128]>, !attn.tensor<bf16[B, H, M, 128]>, !attn.tensor<bf16[B, H, M, 128]>) -> !attn.tensor<bf16[B, H, N, 128]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 128]>
}
