// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="block-k=16 mma=wgmma warp-specialize warps=8" -canonicalize -verify-diagnostics | FileCheck %s
// RUN: not attnc-opt %s -attn-gpu-tile-softmax="block-k=16 warp-specialize" -o /dev/null 2>&1 | FileCheck %s --check-prefix=SYNC

// warp-specialize with two consumer warpgroups (8 warps, 128 query rows):
// 384 threads, the last warpgroup the producer. Shared memory: Q (128 x 32),
// two stages of K and V (16 x 32), then 8 mbarriers (64 bytes). Thread 0
// initialises them (full: 128 producer arrivals; empty: 256 consumer
// arrivals) before the prologue's barrier, the only CTA barrier. The
// consumers raise their registers to 232, wait for stage 0's keys, compute
// S(0) and hand the stage back; each visit waits for the next keys
// (look-ahead S) and this block's values, and after P V's wait hands
// back the values and the next keys. The producer lowers its registers to
// 40 and, per block, waits for a stage to be empty, copies into it and
// arrives with cp.async.mbarrier.arrive.noinc; it waits for its copies
// before exiting.

// CHECK-LABEL: gpu.func @dense(
// CHECK-SAME:    threads = 384
// CHECK-SAME:    sharedBytes = 12352
// CHECK-SAME:    known_block_size = array<i32: 384, 1, 1>
// CHECK-COUNT-2: nvvm.mbarrier.init {{.*}}, %c128_i32
// CHECK-COUNT-2: nvvm.mbarrier.init {{.*}}, %c256_i32
// CHECK:         gpu.barrier
// CHECK-NOT:     gpu.barrier
// CHECK:         nvvm.setmaxregister  increase 232
// CHECK:         nvvm.mbarrier.try_wait.parity
// CHECK-NEXT:    nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK:         nvvm.wgmma.wait.group.sync.aligned 0
// CHECK:         nvvm.mbarrier.arrive
// CHECK:         scf.for
// CHECK:           nvvm.mbarrier.try_wait.parity
// CHECK:           wgmma.mma_async
// CHECK:           nvvm.wgmma.commit.group.sync.aligned
// CHECK:           nvvm.mbarrier.try_wait.parity
// CHECK:           nvvm.wgmma.wait.group.sync.aligned 0
// CHECK:           nvvm.mbarrier.arrive
// CHECK:           nvvm.mbarrier.arrive
// CHECK:         nvvm.setmaxregister  decrease 40
// CHECK:         scf.for
// CHECK:           nvvm.mbarrier.try_wait.parity
// CHECK:           nvgpu.device_async_copy
// CHECK:           nvvm.cp.async.mbarrier.arrive {{.*}} {noinc = true}
// CHECK:           nvvm.mbarrier.try_wait.parity
// CHECK:           nvgpu.device_async_copy
// CHECK:           nvvm.cp.async.mbarrier.arrive {{.*}} {noinc = true}
// CHECK:         nvgpu.device_async_wait
// CHECK-NOT:     gpu.barrier
// CHECK:         gpu.return

// SYNC: error: kernel 'dense' cannot run on the GPU: warp specialisation needs mma=wgmma

attn.kernel @dense(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}

