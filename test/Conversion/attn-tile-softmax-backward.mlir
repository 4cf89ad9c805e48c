// RUN: attnc-opt %s -attn-derive-backward -attn-tile-softmax="block-q=16 block-k=8" -canonicalize | FileCheck %s
// RUN: attnc-opt %s -attn-derive-backward -attn-tile-softmax="block-q=16 block-k=8" -canonicalize -attn-tile-to-loops -canonicalize | FileCheck %s --check-prefix=LOOPS
// RUN: attnc-opt %s -attn-derive-backward -attn-tile-softmax="backward-block=16 backward-key-sum-columns=16" -canonicalize | FileCheck %s --check-prefix=SPLIT
//
// The backward's tile program (docs/tile.md, "The softmax backward"): one
// instance per (kv head, sequence); the key sweep sums dV = P^T dO and
// dK = dR^T Q per key block, the query sweep dQ = dR K per query block and
// scatter-adds the gradient of slope[h] (one f32 copy per work item, marked
// attnc.partial_results) at the positions the score read.

// CHECK-LABEL: func.func @alibi_backward(
// CHECK-SAME: %[[DSLOPE:[^:]*]]: memref<?xf32, strided<[?], offset: ?>>, %{{[^:]*}}: memref<?xi64>)
// CHECK-SAME: attnc.partial_result_types = [memref<?xf32, strided<[?], offset: ?>>], attnc.partial_results = array<i64: 11>
// CHECK: attn_tile.grid ({{.*}}) heads %{{.*}} batches %{{.*}} block_rows 16 per_sequence {
// CHECK: attn_tile.dot {{.*}} {transpose_rhs}
// CHECK: attn_tile.dot {{.*}} {transpose_lhs} : tensor<?x8xf32>, tensor<?x16xf32>, tensor<8x16xf32>
// CHECK: attn_tile.dot {{.*}} {transpose_lhs} : tensor<?x8xf32>, tensor<?x16xf32>, tensor<8x16xf32>
// CHECK: attn_tile.store
// CHECK: attn_tile.scatter_add %{{.*}}, %{{.*}} into %[[DSLOPE]]
// CHECK: attn_tile.dot {{.*}} : tensor<?x8xf32>, tensor<8x16xf32>, tensor<?x16xf32> -> tensor<?x16xf32>

// Head dims of 16 + 16 over backward-key-sum-columns: per key block, a pass
// over the query blocks for dV (S, P), then one for dK (S, dP, dR); square
// tiles of backward-block.
// SPLIT-LABEL: func.func @alibi_backward(
// SPLIT: block_rows 16 per_sequence {
// SPLIT: %[[DV:.*]] = scf.for {{.*}} -> (tensor<16x16xf32>) {
// SPLIT: attn_tile.dot {{.*}} {transpose_rhs}
// SPLIT-NEXT: attn_tile.map
// SPLIT: attn_tile.dot {{.*}} {transpose_lhs}
// SPLIT: %[[DK:.*]] = scf.for {{.*}} -> (tensor<16x16xf32>) {
// SPLIT: attn_tile.dot {{.*}} {transpose_rhs}
// SPLIT: attn_tile.dot {{.*}} {transpose_rhs}
// SPLIT: attn_tile.dot {{.*}} {transpose_lhs}
// SPLIT: attn_tile.store %[[DK]]
// SPLIT-NEXT: attn_tile.store %[[DV]]

// The scatter-add as a loop nest: positions checked against the copy's
// size, then a read-modify-write in row-major order.
// LOOPS-LABEL: func.func @alibi_backward(
// LOOPS-SAME: %[[COPY:arg[0-9]+]]: memref<?xf32, strided<[?], offset: ?>>, %{{[^:]*}}: memref<?xi64>
// LOOPS: %[[SIZE:.*]] = memref.dim %[[COPY]], %c0
// LOOPS-NEXT: %[[POS:.*]] = arith.fptosi %{{.*}} : f32 to i64
// LOOPS-NEXT: %[[LOW:.*]] = arith.cmpi sge, %[[POS]], %c0_i64
// LOOPS-NEXT: %[[SIZE64:.*]] = arith.index_cast %[[SIZE]]
// LOOPS-NEXT: %[[HIGH:.*]] = arith.cmpi slt, %[[POS]], %[[SIZE64]]
// LOOPS-NEXT: %[[INSIDE:.*]] = arith.andi %[[LOW]], %[[HIGH]]
// LOOPS-NEXT: %[[AT:.*]] = arith.index_cast %[[POS]] : i64 to index
// LOOPS-NEXT: scf.if %[[INSIDE]] {
// LOOPS-NEXT: %[[OLD:.*]] = memref.load %[[COPY]][%[[AT]]]
// LOOPS-NEXT: %[[ADDED:.*]] = memref.load
// LOOPS-NEXT: %[[SUM:.*]] = arith.addf %[[OLD]], %[[ADDED]]
// LOOPS-NEXT: memref.store %[[SUM]], %[[COPY]][%[[AT]]]
attn.kernel @alibi(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<f32[B, H, N]>) {
  %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>) score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %slope_h = attn.load %slope[%h] : !attn.tensor<f32[H]> -> f32
    %d = arith.subi %i, %j : index
    %di = arith.index_cast %d : index to i64
    %df = arith.sitofp %di : i64 to f32
    %bias = arith.mulf %slope_h, %df : f32
    %x = arith.subf %s, %bias : f32
    attn.yield %x : f32
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %allowed = arith.cmpi ule, %j, %i : index
    attn.yield %allowed : i1
  }
  attn.return %o, %lse : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>
}
