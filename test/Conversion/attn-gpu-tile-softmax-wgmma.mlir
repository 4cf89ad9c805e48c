// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="block-k=16 mma=wgmma" -canonicalize -verify-diagnostics | FileCheck %s
// RUN: not attnc-opt %s -split-input-file -attn-gpu-tile-softmax="mma=hmma" 2>&1 | FileCheck %s --check-prefix=BAD

// mma=wgmma: one warpgroup (4 warps, 64 query rows) per CTA. The Q, K and
// V tiles are 8x8 core matrices without padding ([rows / 8, 32 / 8, 8, 8]:
// 4 KiB of Q, two stages of 16 keys of K and V), filled by cp.async and
// fenced for the async proxy before the barrier. S = Q K^T is two
// m64n16k16 (head dim 32 = two k-steps) with both operands through
// descriptors (`$8, $9`); P V is one m64n32k16 with P in four registers and
// V MN-major (imm-trans-b = 1). The matmuls are pipelined: the first
// block's S is waited for before the loop (then a barrier, as the loop
// refills its key stage); each visit commits the next block's S without
// waiting, runs this block's softmax, and P V's wait retires both. No
// ldmatrix or mma.sync remains.

// CHECK-LABEL: gpu.func @dense(
// CHECK-SAME:    sharedBytes = 8192
// CHECK:         memref.view {{.*}} to memref<8x4x8x8xbf16, #gpu.address_space<workgroup>>
// CHECK:         memref.view {{.*}} to memref<2x2x4x8x8xbf16, #gpu.address_space<workgroup>>
// CHECK:         memref.view {{.*}} to memref<2x2x4x8x8xbf16, #gpu.address_space<workgroup>>
// CHECK:         nvgpu.device_async_copy {{.*}} to memref<8x4x8x8xbf16
// CHECK:         nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-NEXT:    gpu.barrier
// CHECK:         memref.extract_aligned_pointer_as_index {{.*}} : memref<8x4x8x8xbf16
// CHECK:         nvvm.wgmma.fence.aligned
// CHECK-COUNT-2: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {$0, $1, $2, $3, $4, $5, $6, $7}, $8, $9, p, 1, 1, 0, 0;
// CHECK:         nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT:    nvvm.wgmma.wait.group.sync.aligned 0
// CHECK-NEXT:    gpu.barrier
// CHECK:         scf.for
// CHECK:           nvgpu.device_async_copy
// CHECK:           nvvm.wgmma.fence.aligned
// CHECK-COUNT-2:   wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {$0, $1, $2, $3, $4, $5, $6, $7}, $8, $9, p, 1, 1, 0, 0;
// CHECK:           nvvm.wgmma.commit.group.sync.aligned
// CHECK-NOT:       nvvm.wgmma.wait.group
// CHECK:           nvvm.wgmma.fence.aligned
// CHECK:           wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {{.*}}, {$16, $17, $18, $19}, $20, p, 1, 1, 1;
// CHECK:           nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT:      nvvm.wgmma.wait.group.sync.aligned 0
// CHECK:           nvvm.fence.proxy
// CHECK-NEXT:      gpu.barrier
// CHECK-NEXT:      scf.yield
// CHECK-NOT:     nvgpu.ldmatrix
// CHECK-NOT:     nvvm.mma.sync
// CHECK:         gpu.return
attn.kernel @dense(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}

// -----

// Top-k selection on wgmma: each candidate block is copied into key stage 0
// (core matrices) and averaged from there into the mean key; the key loop
// over the kept blocks then runs the matmuls on wgmma.

// CHECK-LABEL: gpu.func @topk(
// CHECK:         nvgpu.device_async_copy {{.*}} to memref<2x2x4x8x8xbf16
// CHECK:         memref.load {{.*}} : memref<2x2x4x8x8xbf16, #gpu.address_space<workgroup>>
// CHECK:         scf.for
// CHECK:           wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
// CHECK:           wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16
// CHECK-NOT:     nvvm.mma.sync
// CHECK:         gpu.return
attn.kernel @topk(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.sparse_softmax %q, %k, %v {block_k = 16 : i64, block_q = 16 : i64, topk = 2 : i64} : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}

// BAD: error: attn-gpu-tile-softmax: mma must be sync or wgmma, got 'hmma'
