// RUN: attnc-opt %s -split-input-file -attn-gpu-chunk-linear=segment-chunks=0 -canonicalize -verify-diagnostics | FileCheck %s
// RUN: attnc-opt %s -split-input-file -attn-gpu-chunk-linear=segment-chunks=0 -verify-diagnostics | FileCheck %s --check-prefix=DECAY

// Every decay is an exp2 (no libdevice expf; the gates are in log2 units).
// DECAY-NOT: math.exp {{.*}}

// Chunkwise linear attention on tensor cores for a Mamba2-style kernel (a
// decay per head and step) with the final state and chunks of 32: one CTA
// per (block of value columns, head, batch), here all 32 columns in one
// block (grid x = ceil(Dv / 32)); shared memory holds the chunk's Q, K and V tiles, the
// 32x32 f32 state and its bf16 copy (the B operand of Q S, whose space the
// decayed keys of the state update reuse), and the chunk's gates and their
// prefix sums. Per chunk: cp.async copies, the
// gates, the state operand, outputs (Q S and (Q K^T o D) V on mma.sync),
// then the state update (K~^T V). No buffer grows with T. Here one CTA
// walks the whole sequence (segment-chunks=0; attn-gpu-chunk-linear-
// segments.mlir shows the segments of the default).

// CHECK-LABEL: gpu.module @attnc_kernels
// CHECK:       gpu.func @ssd(
// CHECK-SAME:    threads = 128
// CHECK-SAME:    sharedBytes = 14592
// CHECK-SAME:    grid = [array<i64: 2, 3, 32, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK-NOT:   memref.alloc
// CHECK:       memref.view {{.*}} to memref<32x40xbf16, #gpu.address_space<workgroup>>
// CHECK:       memref.view {{.*}} to memref<32x32xf32, #gpu.address_space<workgroup>>
// CHECK:       memref.view {{.*}} to memref<32xf32, #gpu.address_space<workgroup>>
//              The initial state (zero here), then the chunk loop.
// CHECK:       gpu.barrier
// CHECK:       scf.for
// CHECK:         nvgpu.device_async_copy
//                While the copies are in flight, the gates are read and
//                checked (positive or non-finite ones are recorded); after
//                the wait, their prefix sums.
// CHECK:         arith.cmpf ole
// CHECK:         nvgpu.device_async_wait
// CHECK-NEXT:    gpu.barrier
// CHECK:         scf.for {{.*}} iter_args
// CHECK:         gpu.barrier
//                Outputs: Q S, then Q K^T with the decay (tiles of keys
//                after the warp's rows skipped), then A V. Decays are
//                exp2 of gates in log2 units.
// CHECK:         nvgpu.ldmatrix {{.*}}transpose = false
// CHECK:         nvgpu.ldmatrix {{.*}}transpose = true
// CHECK:         nvvm.mma.sync
// CHECK:         scf.if
// CHECK:         nvvm.mma.sync
// CHECK:         math.exp2
// CHECK:         nvvm.mma.sync
// CHECK:         gpu.barrier
//                State update: K~^T V accumulated onto exp(G_last) S.
// CHECK:         nvgpu.ldmatrix {{.*}}transpose = true
// CHECK:         nvvm.mma.sync
// CHECK:         memref.store {{.*}} : memref<32x32xf32, #gpu.address_space<workgroup>>
// CHECK:         gpu.barrier
// CHECK:       memref.store {{.*}} : memref<?x?x?x?xf32
// CHECK:       gpu.return
  attn.kernel @ssd(%q: !attn.tensor<bf16[B, H, T, 32]>, %k: !attn.tensor<bf16[B, H, T, 32]>, %v: !attn.tensor<bf16[B, H, T, 32]>, %a: !attn.tensor<f32[B, H, T]>) -> (o: !attn.tensor<bf16[B, H, T, 32]>, st: !attn.tensor<f32[B, H, 32, 32]>) {
    %o, %state = attn.linear %q, %k, %v {chunk = 32 : i64, gate_kind = #attn<gate_kind per_head>} : (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>) -> (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>) gate {
    ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
      %0 = attn.load %a[%b, %h, %t] : <f32[B, H, T]> -> f32
      attn.yield %0 : f32
    } feature {
    }
    attn.return %o, %state : !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>
  }

// -----

// Per-key-dimension gates at Dk 128: besides the tiles and the state, only
// the 64 x 128 table of cumulative gates (rows padded to 132 floats) joins
// shared memory. Q and K reach Q S and Q K^T through elementwise loads,
// scaled by exp2 of gate differences in registers (no ldmatrix without
// .trans, no scaled copies), so the kernel fits: Q and K tiles of 64 x 136
// and V of 64 x 72 bf16, the 128 x 64 f32 state and its 128 x 72 bf16 copy
// (where the decayed keys live too), the gates and the table.

// CHECK-LABEL: gpu.func @gla(
// CHECK-SAME:    sharedBytes = 129536
// CHECK-NOT:   nvgpu.ldmatrix {{.*}}transpose = false
// CHECK:       memref.view {{.*}} to memref<64x132xf32, #gpu.address_space<workgroup>>
// CHECK-NOT:   nvgpu.ldmatrix {{.*}}transpose = false
// CHECK:       scf.for
// CHECK:         memref.load {{.*}} : memref<64x136xbf16, #gpu.address_space<workgroup>>
// CHECK:         memref.load {{.*}} : memref<64x132xf32, #gpu.address_space<workgroup>>
// CHECK:         math.exp2
// CHECK:         nvvm.mma.sync
// CHECK-NOT:   nvgpu.ldmatrix {{.*}}transpose = false
// CHECK:       gpu.return
  attn.kernel @gla(%q: !attn.tensor<bf16[B, H, T, 128]>, %k: !attn.tensor<bf16[B, H, T, 128]>, %v: !attn.tensor<bf16[B, H, T, 128]>, %g: !attn.tensor<f32[B, H, T, 128]>) -> (o: !attn.tensor<bf16[B, H, T, 128]>) {
    %o = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<bf16[B, H, T, 128]>, !attn.tensor<bf16[B, H, T, 128]>, !attn.tensor<bf16[B, H, T, 128]>) -> !attn.tensor<bf16[B, H, T, 128]> gate {
    ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
      %0 = attn.load %g[%b, %h, %t, %d] : <f32[B, H, T, 128]> -> f32
      attn.yield %0 : f32
    } feature {
    }
    attn.return %o : !attn.tensor<bf16[B, H, T, 128]>
  }

// -----

// expected-error @+1 {{kernel 'big' cannot run on the GPU: the chunk must be a multiple of 16 up to 64 on the GPU (got 128)}}
  attn.kernel @big(%q: !attn.tensor<bf16[B, H, T, 32]>, %k: !attn.tensor<bf16[B, H, T, 32]>, %v: !attn.tensor<bf16[B, H, T, 32]>) -> (o: !attn.tensor<bf16[B, H, T, 32]>) {
    %o = attn.linear %q, %k, %v {chunk = 128 : i64} : (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>) -> !attn.tensor<bf16[B, H, T, 32]> gate {
    } feature {
    }
    attn.return %o : !attn.tensor<bf16[B, H, T, 32]>
  }
