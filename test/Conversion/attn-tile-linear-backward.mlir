// RUN: attnc-opt %s -attn-derive-backward -attn-tile-linear -canonicalize | FileCheck %s
// RUN: attnc-opt %s -attn-derive-backward -attn-tile-linear -canonicalize -attn-tile-to-loops -attnc-reference-pipeline | FileCheck %s --check-prefix=LLVM
//
// The chunkwise linear backward (docs/tile.md, "The linear backward") for
// a learnable per-head decay w[h] with an initial state: scratch for the
// chunks' start states and each head's dH is allocated before the grid
// (one per call); per instance (kv head, sequence) a sweep forward per
// query head stores the start states, then a sweep backward over the
// chunks (last first) computes the products, the gate's gradient (a scan
// of W^T for the pairs of steps around t) scatter-added into w's partial
// copy, dq, and dk and dv summed over the group's heads; then d_h0.

// CHECK-LABEL: func.func @ssd_backward(
// CHECK-SAME:    attnc.partial_results = array<i64: 10>
// CHECK:         %[[STARTS:.*]] = memref.alloc({{.*}}) : memref<?x16x8xf32>
// CHECK:         %[[DSTATES:.*]] = memref.alloc({{.*}}) : memref<?x16x8xf32>
// CHECK:         attn_tile.grid ({{.*}}) heads %{{.*}} batches %{{.*}} block_rows 16 per_sequence {
// CHECK:           scf.for
// CHECK:             attn_tile.store %{{.*}}, %[[STARTS]]
// CHECK:             scf.for
// CHECK:               attn_tile.scan add
// CHECK:               attn_tile.store %{{.*}}, %[[STARTS]]
// CHECK:           scf.for
// CHECK:             scf.for {{.*}} -> (tensor<16x16xf32>, tensor<16x8xf32>)
// CHECK:               attn_tile.load %[[STARTS]]
// CHECK:               attn_tile.load %[[DSTATES]]
// CHECK:               attn_tile.transpose {{.*}} : tensor<16x16xf32> -> tensor<16x16xf32>
// CHECK:               attn_tile.scan add {{.*}} : tensor<16x16xf32>
// CHECK:               attn_tile.scatter_add
// CHECK:               attn_tile.store %{{.*}}, %[[DSTATES]]
// CHECK:               attn_tile.store
// CHECK:             attn_tile.store
// CHECK:             attn_tile.store
// CHECK:           scf.for
// CHECK:             attn_tile.load %[[DSTATES]]
// CHECK:             attn_tile.store
// CHECK:         memref.dealloc %[[STARTS]]
// CHECK:         memref.dealloc %[[DSTATES]]

// LLVM: llvm.func @_mlir_ciface_ssd_backward(

attn.kernel @ssd(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %w: !attn.tensor<f32[H]>, %h0: !attn.tensor<f32[B, H, 16, 8]>) -> (o: !attn.tensor<f32[B, H, T, 8]>) {
  %o = attn.linear %q, %k, %v initial_state(%h0) {chunk = 16 : i64, gate_kind = #attn<gate_kind constant_per_head>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>) -> !attn.tensor<f32[B, H, T, 8]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %w[%h] : <f32[H]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o : !attn.tensor<f32[B, H, T, 8]>
}

