// RUN: attnc-opt %s -attn-gpu-tile-softmax="block-k=32 split-keys=128" -canonicalize | FileCheck %s
// RUN: not attnc-opt %s -attn-gpu-tile-softmax="block-k=32 split-keys=48" -o /dev/null 2>&1 | FileCheck %s --check-prefix=UNEVEN
// RUN: attnc-opt %s -attn-gpu-tile-softmax="block-k=32 split-keys=-1" -canonicalize | FileCheck %s --check-prefix=AUTO
// RUN: not attnc-opt %s -attn-gpu-tile-softmax="split-keys=-64" -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD

// split-keys=128: grid x is query blocks times ceil(M / 128) (the segments
// term on k's length), splits minor; the kernel takes the workspace after
// the status words, 64 x (32 + 1) floats per CTA. Only the splits that meet
// the query block's band run (an scf.if around the rest of the body); each
// stores its normalised partial output and row lse as f32 bit patterns,
// then a release fence, a barrier and one atomic add by thread 0 count it
// done. The CTA that counts last acquires and combines: the maximum of the
// partial lse, then weights exp(lse_s - max).

// CHECK-LABEL: gpu.func @causal(
// CHECK-SAME:    %{{.*}}: memref<?xi64>, %[[WS:.*]]: memref<?xi32>)
// CHECK-SAME:    grid = [array<i64: 0, 2, 64, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK-SAME:    segments = [1, 2, 128, 0]
// CHECK-SAME:    segmentStateBytes = 8448
// CHECK:         %[[X:.*]] = gpu.block_id  x
// CHECK:         arith.divui %[[X]]
// CHECK:         arith.remui %[[X]]
// CHECK:         scf.if
// CHECK:           scf.if
// CHECK:             nvgpu.device_async_copy
// CHECK:             scf.for
// CHECK:               nvvm.mma.sync
// CHECK:             arith.bitcast {{.*}} : f32 to i32
// CHECK:             memref.store {{.*}}, %[[WS]]
// CHECK:             llvm.fence syncscope("device") release
// CHECK-NEXT:        gpu.barrier
// CHECK:             memref.atomic_rmw addi %{{.*}}, %[[WS]]
// CHECK:             gpu.barrier
// CHECK:             scf.if
// CHECK-NEXT:          llvm.fence syncscope("device") acquire
// CHECK:               scf.for
// CHECK:                 arith.maximumf
// CHECK:               scf.for
// CHECK:                 math.exp
// CHECK:                 math.fma
// CHECK:         gpu.return

// split-keys=-1 (auto): the segments term counts key blocks (ceil(M / 32)),
// the most splits a launch may choose; the kernel reads the number chosen
// from the grid (grid x / query blocks) and gives each split
// ceil(key blocks / splits) blocks.

// AUTO-LABEL: gpu.func @causal(
// AUTO-SAME:    segments = [1, 2, 32, 0]
// AUTO-SAME:    segmentStateBytes = 8448
// AUTO-SAME:    splitsAtLaunch
// AUTO:         %[[GRID:.*]] = gpu.grid_dim  x
// AUTO:         %[[SPLITS:.*]] = arith.divui %[[GRID]]
// AUTO:         arith.ceildivui %{{.*}}, %[[SPLITS]]
// AUTO:         %[[X:.*]] = gpu.block_id  x
// AUTO:         arith.divui %[[X]], %[[SPLITS]]
// AUTO:         arith.remui %[[X]], %[[SPLITS]]
// AUTO:         memref.atomic_rmw addi

// BAD: error: attn-gpu-tile-softmax: split-keys must be a non-negative number of keys or -1 (auto), got -64
// BAD-NOT: see current operation

// UNEVEN: error: kernel 'causal' cannot run on the GPU: split-keys (48) must be a multiple of the key tile (32 keys)

attn.kernel @causal(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>, lse: !attn.tensor<f32[B, H, N]>) {
  %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<f32[B, H, N]>) score {
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
    attn.yield %2 : i1
  }
  attn.return %o, %lse : !attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<f32[B, H, N]>
}
