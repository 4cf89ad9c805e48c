// RUN: attnc-opt %s -attn-gpu-chunk-linear=segment-chunks=0 -canonicalize | FileCheck %s

// f32 q, k and v on the linear kernels: the Q, K and V tiles hold f32 (rows
// padded by 4 elements, 16-byte cp.async copies of 4 elements), the f32
// state is itself the B operand of Q S (padded like V, no bf16 copy), and
// every mma operand is split into bf16 high and low parts, hi = bf16(x) and
// lo = bf16(x - hi): a product is three mma.sync, lo*hi, hi*lo and hi*hi.
// There is no ldmatrix (it moves 16-bit elements).

// CHECK-LABEL: gpu.func @ssd(
// CHECK-SAME:    sharedBytes = 23296
// CHECK-NOT:     nvgpu.ldmatrix
// CHECK:         memref.view {{.*}} to memref<32x36xf32, #gpu.address_space<workgroup>>
// CHECK:         memref.view {{.*}} to memref<32x36xf32, #gpu.address_space<workgroup>>
// CHECK-NOT:     memref.view {{.*}}xbf16
// CHECK:         scf.for
// CHECK:           nvgpu.device_async_copy {{.*}} : memref<?x?x?x?xf32, {{.*}}> to memref<32x36xf32, #gpu.address_space<workgroup>>
//                  Outputs: Q S from the f32 state, Q K^T, A V; then the
//                  state update. Each product splits its operands.
// CHECK:           %[[HI:.*]] = arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK:           %[[BACK:.*]] = arith.extf %[[HI]] : vector<2xbf16> to vector<2xf32>
// CHECK:           %[[REST:.*]] = arith.subf %{{.*}}, %[[BACK]] : vector<2xf32>
// CHECK:           arith.truncf %[[REST]] : vector<2xf32> to vector<2xbf16>
// CHECK:           nvvm.mma.sync A[%[[ALO:[0-9]+]], {{.*}}] B[%[[BHI:[0-9]+]], {{.*}}] C[{{.*}}] {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// CHECK:           nvvm.mma.sync A[%[[AHI:[0-9]+]], {{.*}}] B[%[[BLO:[0-9]+]], {{.*}}]
// CHECK:           nvvm.mma.sync A[%[[AHI]], {{.*}}] B[%[[BHI]], {{.*}}]
// CHECK:           math.exp
// CHECK:           nvvm.mma.sync
// CHECK:           gpu.barrier
// CHECK:           nvvm.mma.sync
// CHECK:           memref.store {{.*}} : memref<32x36xf32, #gpu.address_space<workgroup>>
// CHECK:         gpu.return

attn.kernel @ssd(%q: !attn.tensor<f32[B, H, T, 32]>, %k: !attn.tensor<f32[B, H, T, 32]>, %v: !attn.tensor<f32[B, H, T, 32]>, %a: !attn.tensor<f32[B, H, T]>) -> (o: !attn.tensor<f32[B, H, T, 32]>, st: !attn.tensor<f32[B, H, 32, 32]>) {
  %o, %state = attn.linear %q, %k, %v {chunk = 32 : i64, gate_kind = #attn<gate_kind per_head>} : (!attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>) -> (!attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %a[%b, %h, %t] : <f32[B, H, T]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o, %state : !attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>
}
