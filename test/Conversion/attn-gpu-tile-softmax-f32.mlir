// RUN: attnc-opt %s -attn-gpu-tile-softmax -canonicalize | FileCheck %s
// RUN: not attnc-opt %s -attn-gpu-tile-softmax="mma=wgmma" -o /dev/null 2>&1 | FileCheck %s --check-prefix=WGMMA

// f32 q, k and v: the tiles in shared memory hold f32 (rows padded by 4
// elements, 16-byte cp.async copies of 4 elements), and every mma operand
// is split into bf16 high and low parts, hi = bf16(x) and lo = bf16(x - hi).
// A product is three mma.sync, lo*hi, hi*lo and hi*hi, for S = Q K^T and for
// acc += P V alike; there is no ldmatrix (it moves 16-bit elements).

// CHECK-LABEL: gpu.func @dense(
// CHECK-NOT:     nvgpu.ldmatrix
// CHECK:         nvgpu.device_async_copy {{.*}} : memref<?x?x?x?xf32, {{.*}}> to memref<64x36xf32, #gpu.address_space<workgroup>>
// CHECK:         scf.for
// CHECK:           %[[HI:.*]] = arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK:           %[[BACK:.*]] = arith.extf %[[HI]] : vector<2xbf16> to vector<2xf32>
// CHECK:           %[[REST:.*]] = arith.subf %{{.*}}, %[[BACK]] : vector<2xf32>
// CHECK:           arith.truncf %[[REST]] : vector<2xf32> to vector<2xbf16>
// CHECK:           nvvm.mma.sync A[%[[ALO:[0-9]+]], {{.*}}] B[%[[BHI:[0-9]+]], {{.*}}] C[{{.*}}] {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// CHECK:           nvvm.mma.sync A[%[[AHI:[0-9]+]], {{.*}}] B[%[[BLO:[0-9]+]], {{.*}}]
// CHECK:           nvvm.mma.sync A[%[[AHI]], {{.*}}] B[%[[BHI]], {{.*}}]
// CHECK:         gpu.return

// WGMMA: error: kernel 'dense' cannot run on the GPU: f32 q, k and v are split into bf16 pairs by the mma.sync kernels only; drop mma=wgmma

attn.kernel @dense(%q: !attn.tensor<f32[B, H, N, 32]>, %k: !attn.tensor<f32[B, H, M, 32]>, %v: !attn.tensor<f32[B, H, M, 32]>) -> (o: !attn.tensor<f32[B, H, N, 32]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 32]>, !attn.tensor<f32[B, H, M, 32]>, !attn.tensor<f32[B, H, M, 32]>) -> !attn.tensor<f32[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 32]>
}
