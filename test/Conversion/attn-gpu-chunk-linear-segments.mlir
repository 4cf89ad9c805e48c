// RUN: attnc-opt %s -split-input-file -attn-gpu-chunk-linear=segment-chunks=4 -canonicalize | FileCheck %s

// Segments: a causal kernel splits each sequence into segments of 4 chunks
// of 32 steps (grid x = 1 block of value columns times ceil(T / 128)
// segments), walked by different CTAs that hand their states on through
// the workspace (the trailing memref<?xi32>; GpuImage.h has its layout).
// A CTA takes a ticket instead of reading its block ids, so it only waits
// for CTAs that already run. A segment with a successor first sums what its
// chunks add to a zero state, awaits its predecessor's end state (acquire
// loads of its flag), stores exp(decay) S_start + S_own (no gate here:
// decay 0) and releases its own flag after a fence and a barrier; then it
// walks its chunks from S_start.

// CHECK-LABEL: gpu.func @retnet(
// CHECK-SAME:    %{{.*}}: memref<?xi64>, %[[WS:.*]]: memref<?xi32>)
// CHECK-SAME:    grid = [array<i64: 2, 3, 32, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK-SAME:    segments = [0, 2, 128, 0]
// CHECK-SAME:    segmentStateBytes = 4096
// CHECK-NOT:     gpu.block_id
// CHECK:         memref.atomic_rmw addi %{{.*}}, %[[WS]][%c0]
// CHECK:         gpu.barrier
//                The segment's own contribution: K and V only.
// CHECK:         scf.for
// CHECK:           nvgpu.device_async_copy
// CHECK:           nvvm.mma.sync
// CHECK:         scf.while
// CHECK:           llvm.load {{.*}} atomic syncscope("device") acquire
// CHECK:         memref.load %[[WS]]
// CHECK:         arith.bitcast {{.*}} : i32 to f32
// CHECK:         math.fma
// CHECK:         arith.bitcast {{.*}} : f32 to i32
// CHECK:         memref.store {{.*}}, %[[WS]]
// CHECK:         llvm.fence syncscope("device") release
// CHECK-NEXT:    gpu.barrier
// CHECK:         llvm.store {{.*}} atomic syncscope("device") release
//                Then the segment's outputs.
// CHECK:         scf.for
// CHECK:           nvvm.mma.sync
// CHECK:         gpu.return
  attn.kernel @retnet(%q: !attn.tensor<bf16[B, H, T, 32]>, %k: !attn.tensor<bf16[B, H, T, 32]>, %v: !attn.tensor<bf16[B, H, T, 32]>) -> (o: !attn.tensor<bf16[B, H, T, 32]>, st: !attn.tensor<f32[B, H, 32, 32]>) {
    %o, %state = attn.linear %q, %k, %v {chunk = 32 : i64} : (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>) -> (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>) gate {
    } feature {
    }
    attn.return %o, %state : !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<f32[B, H, 32, 32]>
  }

// -----

// A non-causal kernel has no segments: every output needs the whole sum.

// CHECK-LABEL: gpu.func @noncausal(
// CHECK-SAME:    %{{.*}}: memref<?xi64>)
// CHECK-NOT:     segments =
// CHECK:         gpu.block_id  x
  attn.kernel @noncausal(%q: !attn.tensor<bf16[B, H, T, 32]>, %k: !attn.tensor<bf16[B, H, T, 32]>, %v: !attn.tensor<bf16[B, H, T, 32]>) -> (o: !attn.tensor<bf16[B, H, T, 32]>) {
    %o = attn.linear %q, %k, %v {chunk = 32 : i64, causal = false} : (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>) -> !attn.tensor<bf16[B, H, T, 32]> gate {
    } feature {
    }
    attn.return %o : !attn.tensor<bf16[B, H, T, 32]>
  }
