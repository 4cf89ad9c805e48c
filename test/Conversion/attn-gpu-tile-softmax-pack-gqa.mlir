// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="pack-gqa" -verify-diagnostics | FileCheck %s

// pack-gqa: a CTA's rows are (query, head) pairs of one kv head's group.
// Grid x counts blocks of N * G rows of q (the image scales q's length by
// the group size: packsQueryHeads) and grid y takes k's heads
// (param 1). The Q copy reads row p of query p / G and query head
// hk * G + p % G. slope[h] depends on each row's head: it is loaded once
// per row slot of a lane (two with 16 rows per warp), before the key-block
// loop, not per CTA and not per score element.

// CHECK-LABEL: gpu.func @alibi(
// CHECK-SAME:    grid = [array<i64: 0, 2, 64, 0>, array<i64: 1, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK-SAME:    packsQueryHeads
// CHECK:       %[[HQ:.*]] = memref.dim %arg0, %c1
// CHECK:       %[[HK:.*]] = memref.dim %arg1, %c1
// CHECK:       %[[G:.*]] = arith.divui %[[HQ]], %[[HK]]
// CHECK:       %[[KVHEAD:.*]] = gpu.block_id  y
// CHECK:       nvgpu.device_async_copy
// CHECK-NOT:   scf.for
// CHECK:       arith.divui %{{.*}}, %[[G]]
// CHECK-NOT:   scf.for
// CHECK:       %[[FIRST:.*]] = arith.muli %[[KVHEAD]], %[[G]]
// CHECK-NOT:   scf.for
// CHECK:       arith.remui %{{.*}}, %[[G]]
// CHECK-NOT:   scf.for
// CHECK:       memref.load %arg3[%{{.*}}] : memref<?xf32, strided<[?], offset: ?>>
// CHECK-NOT:   scf.for
// CHECK:       memref.load %arg3[%{{.*}}] : memref<?xf32, strided<[?], offset: ?>>
// CHECK-NOT:   memref.load %arg3
// CHECK:       scf.for
// CHECK-NOT:   memref.load %arg3
// CHECK:       gpu.return
attn.kernel @alibi(%q: !attn.tensor<bf16[B, Hq, N, 64]>, %k: !attn.tensor<bf16[B, Hk, M, 64]>, %v: !attn.tensor<bf16[B, Hk, M, 64]>, %slope: !attn.tensor<f32[Hq]>) -> (o: !attn.tensor<bf16[B, Hq, N, 64]>, lse: !attn.tensor<f32[B, Hq, N]>) {
  %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<bf16[B, Hk, M, 64]>, !attn.tensor<bf16[B, Hk, M, 64]>) -> (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>) score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = attn.load %slope[%h] : <f32[Hq]> -> f32
    %1 = arith.subi %i, %j : index
    %2 = arith.index_cast %1 : index to i64
    %3 = arith.sitofp %2 : i64 to f32
    %4 = arith.mulf %0, %3 : f32
    %5 = arith.subf %s, %4 : f32
    attn.yield %5 : f32
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
    attn.yield %2 : i1
  }
  attn.return %o, %lse : !attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>
}

// -----

// Block-sparse kernels take block_q query rows of one head: refused.

// expected-error @+1 {{kernel 'sparse' cannot run on the GPU: pack-gqa packs the query heads of dense and chunk-local kernels only}}
attn.kernel @sparse(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>, %blocks: !attn.tensor<i1[B, H, NB, MB]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.sparse_softmax %q, %k, %v block_mask(%blocks) {block_k = 32 : i64, block_q = 32 : i64} : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<i1[B, H, NB, MB]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}
