// RUN: attnc-opt %s -attn-derive-backward -attn-tile-linear -canonicalize | FileCheck %s
// RUN: attnc-opt %s -attn-derive-backward -attn-tile-linear -canonicalize -attn-tile-to-loops -attnc-reference-pipeline | FileCheck %s --check-prefix=LLVM
// RUN: attnc-opt %s -attn-derive-backward -attn-tile-linear=state-block=16 -canonicalize | FileCheck %s --check-prefix=BLOCKS
//
// The chunkwise linear backward (docs/tile.md, "The linear backward") for
// a learnable per-head decay w[h] with an initial state: scratch for the
// chunks' start states and each head's dH is allocated before the grid
// (one per call); per instance (kv head, sequence) a sweep forward per
// query head stores the start states, then a sweep backward over the
// chunks (last first) visits the group's heads twice per chunk: the
// products, dq, the gate's gradient (a scan of W^T for the pairs of steps
// around t) scatter-added into w's partial copy, and dk summed over the
// heads; then dv summed over them and each head's dH moved to the chunk's
// start; then d_h0.

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
// CHECK:             scf.for {{.*}} -> (tensor<16x16xf32>)
// CHECK:               attn_tile.transpose {{.*}} : tensor<16x16xf32> -> tensor<16x16xf32>
// CHECK:               attn_tile.scan add {{.*}} : tensor<16x16xf32>
// CHECK:               attn_tile.load %[[STARTS]]
// CHECK:               attn_tile.store
// CHECK:               attn_tile.load %[[DSTATES]]
// CHECK:               attn_tile.scatter_add
// CHECK:             attn_tile.store
// CHECK:             scf.for {{.*}} -> (tensor<16x8xf32>)
// CHECK:               attn_tile.load %[[DSTATES]]
// CHECK:               attn_tile.store %{{.*}}, %[[DSTATES]]
// CHECK:             attn_tile.store
// CHECK:           scf.for
// CHECK:             attn_tile.load %[[DSTATES]]
// CHECK:             attn_tile.store
// CHECK:         memref.dealloc %[[STARTS]]
// CHECK:         memref.dealloc %[[DSTATES]]

// LLVM: llvm.func @_mlir_ciface_ssd_backward(
// LLVM: llvm.func @_mlir_ciface_gla_backward(

attn.kernel @ssd(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %w: !attn.tensor<f32[H]>, %h0: !attn.tensor<f32[B, H, 16, 8]>) -> (o: !attn.tensor<f32[B, H, T, 8]>) {
  %o = attn.linear %q, %k, %v initial_state(%h0) {chunk = 16 : i64, gate_kind = #attn<gate_kind constant_per_head>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>) -> !attn.tensor<f32[B, H, T, 8]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %w[%h] : <f32[H]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o : !attn.tensor<f32[B, H, T, 8]>
}


// Gates per key dimension (GLA), chunks of 32 in sub-tiles of 16: per
// chunk and head, the cumulative gates stored to per-call scratch (read
// back at each use); dq over the chunk's rows from each key sub-tile but
// the last (a loop), then its own pairs below the diagonal (decay_combine
// over diagonal blocks of 16); dk from each query sub-tile but the first,
// then its own pairs above the diagonal; the pair terms of the gate by a
// reverse scan over the chunk; dv from each query sub-tile but the first,
// then A's own pairs (decay_dot over diagonal blocks). The chunk's dq,
// dg, dk and dv go through per-call scratch of one chunk's rows (dk and
// dv summed over the group there, not carried by the loop over heads);
// the terms through the states add a reverse and an exclusive scan to
// dg. Each step reads its own element of g, so d_g (%arg8) is stored at
// the chunk's rows, not scatter-added into copies.

// CHECK-LABEL: func.func @gla_backward(
// CHECK-NOT:     attnc.partial_results
// CHECK:         memref.alloc({{.*}}) : memref<?x16x8xf32>
// CHECK:         memref.alloc({{.*}}) : memref<?x16x8xf32>
// CHECK:         %[[DQ:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK:         %[[DG:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK:         %[[DV:.*]] = memref.alloc() : memref<32x8xf32>
// CHECK:         %[[GATES:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK:         %[[DK:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK:         attn_tile.grid
// CHECK:               attn_tile.scan add
// CHECK:               attn_tile.store %{{.*}}, %[[GATES]]
// CHECK:               scf.for {{.*}} -> (tensor<32x16xf32>)
// CHECK:                 attn_tile.load %[[GATES]][%{{.*}}] rows %c16
// CHECK:                 attn_tile.dot {{.*}} : tensor<32x16xf32>, tensor<16x16xf32>, tensor<32x16xf32> -> tensor<32x16xf32>
// CHECK:               attn_tile.decay_combine {{.*}} {diagonal_block = 16 : i64, lower_triangular} : tensor<32x32xf32>, tensor<32x16xf32>, tensor<32x16xf32>, tensor<32x16xf32>, tensor<32x16xf32> -> tensor<32x16xf32>
// CHECK:               attn_tile.store %{{.*}}, %[[DQ]]
// CHECK:               scf.for {{.*}} -> (tensor<32x16xf32>)
// CHECK:               attn_tile.decay_combine {{.*}} {diagonal_block = 16 : i64, upper_triangular}
// CHECK:               attn_tile.store %{{.*}}, %[[DK]]
// CHECK:               attn_tile.load %[[DG]]
// CHECK:               attn_tile.scan add {{.*}} {reverse} : tensor<32x16xf32>
// CHECK:               attn_tile.store %{{.*}}, %[[DG]]
// CHECK:               scf.for {{.*}} -> (tensor<32x8xf32>)
// CHECK:               attn_tile.decay_dot {{.*}} {diagonal_block = 16 : i64, lower_triangular} : {{.*}} -> tensor<32x32xf32>
// CHECK:               attn_tile.store %{{.*}}, %[[DV]]
// CHECK:               attn_tile.scan add {{.*}} {reverse} : tensor<32x16xf32>
// CHECK:               attn_tile.store %{{.*}}, %[[DG]]
// CHECK:               attn_tile.scan add {{.*}} {exclusive} : tensor<32x16xf32>
// CHECK:               attn_tile.store %{{.*}}, %[[DG]]
// CHECK:               attn_tile.store %{{.*}}, %[[DK]]
// CHECK-NOT:           attn_tile.scatter_add
// CHECK:               attn_tile.store %{{.*}}, %arg8[{{.*}}] rows %{{.*}} row_dim 2 : tensor<32x16xf32>
// CHECK:         memref.dealloc %[[DV]]

attn.kernel @gla(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %g: !attn.tensor<f32[B, H, T, 16]>) -> (o: !attn.tensor<f32[B, H, T, 8]>) {
  %o = attn.linear %q, %k, %v {chunk = 32 : i64, gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>) -> !attn.tensor<f32[B, H, T, 8]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %g[%b, %h, %t, %d] : <f32[B, H, T, 16]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o : !attn.tensor<f32[B, H, T, 8]>
}

// State blocks (here of 16, Dk = Dv = 32; %arg0 is q, %arg1 k, %arg2 v,
// %arg3 dO, %arg4 dq, %arg5 dk, %arg6 dv): q, k, v, dO, dq, dk, dv, the
// chunk start states and dH go by blocks of key and value columns, loaded
// and stored from a first column (the position's last index), the states
// by blocks of key rows and value columns: the start states per block;
// dP summed over the value blocks; per key block dO H^T summed over the
// value blocks, dq's block stored, dk's block of the group's sum added in
// scratch; dk stored by blocks; then the dv/dH pass once per value block,
// K dH and A = Q K^T summed over the key blocks, dH per key block.

// BLOCKS-LABEL: func.func @retnet_backward(
// BLOCKS:         %[[STARTS:.*]] = memref.alloc({{.*}}) : memref<?x32x32xf32>
// BLOCKS:         %[[DSTATES:.*]] = memref.alloc({{.*}}) : memref<?x32x32xf32>
// BLOCKS:         %[[DK:.*]] = memref.alloc() : memref<16x32xf32>
// BLOCKS:         attn_tile.grid {{.*}} block_rows 16 per_sequence
//                   Start states per block of 16 key rows and 16 value
//                   columns.
// BLOCKS:           scf.for
// BLOCKS:             scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:               scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:                 attn_tile.store %{{.*}}, %[[STARTS]][%{{.*}}, %[[ROW:[0-9a-z_]+]], %[[COL:[0-9a-z_]+]]] rows %c16
// BLOCKS:                 scf.for
// BLOCKS:                   attn_tile.load %arg1[%{{.*}}, %{{.*}}, %{{.*}}, %[[ROW]]] {{.*}} -> tensor<16x16xf32>
// BLOCKS:                   attn_tile.load %arg2[%{{.*}}, %{{.*}}, %{{.*}}, %[[COL]]] {{.*}} -> tensor<16x16xf32>
// BLOCKS:                   attn_tile.store %{{.*}}, %[[STARTS]][%{{.*}}, %[[ROW]], %[[COL]]] rows %c16
//                   dk's sum cleared, dP summed over the value blocks.
// BLOCKS:           scf.for
// BLOCKS:             scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:               attn_tile.store %{{.*}}, %[[DK]][%c0, %{{.*}}] rows %c16 row_dim 0
// BLOCKS:             scf.for
// BLOCKS:               scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (tensor<16x16xf32>) {
// BLOCKS:                 attn_tile.load %arg3[{{.*}}, %[[VCOL:[0-9a-z_]+]]]
// BLOCKS:                 attn_tile.load %arg2[{{.*}}, %[[VCOL]]]
//                   Per key block: q, k, dO H^T, dq, dk's block in scratch.
// BLOCKS:               scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:                 attn_tile.load %arg0[{{.*}}, %[[KCOL:[0-9a-z_]+]]]
// BLOCKS:                 attn_tile.load %arg1[{{.*}}, %[[KCOL]]]
// BLOCKS:                 scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (tensor<16x16xf32>) {
// BLOCKS:                   attn_tile.load %[[STARTS]][%{{.*}}, %[[KCOL]], %{{.*}}] rows %c16
// BLOCKS:                 attn_tile.store %{{.*}}, %arg4[{{.*}}, %[[KCOL]]]
// BLOCKS:                 attn_tile.load %[[DK]][%c0, %[[KCOL]]]
// BLOCKS:                 scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (tensor<16x16xf32>) {
// BLOCKS:                   attn_tile.load %[[DSTATES]][%{{.*}}, %[[KCOL]], %{{.*}}] rows %c16
// BLOCKS:                 attn_tile.store %{{.*}}, %[[DK]][%c0, %[[KCOL]]]
// BLOCKS:             scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:               attn_tile.load %[[DK]][%c0, %[[KCOL2:[0-9a-z_]+]]]
// BLOCKS:               attn_tile.store %{{.*}}, %arg5[{{.*}}, %[[KCOL2]]]
//                   The dv/dH pass per value block.
// BLOCKS:             scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:               scf.for
// BLOCKS:                 scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (tensor<16x16xf32>) {
// BLOCKS:                   attn_tile.load %[[DSTATES]][%{{.*}}, %{{.*}}, %[[VCOL2:[0-9a-z_]+]]] rows %c16
// BLOCKS:                 scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (tensor<16x16xf32>) {
// BLOCKS:                 scf.for %{{.*}} = %c0 to %c2 step %c1 {
// BLOCKS:                   attn_tile.store %{{.*}}, %[[DSTATES]][%{{.*}}, %{{.*}}, %[[VCOL2]]] rows %c16
// BLOCKS:               attn_tile.store %{{.*}}, %arg6[%{{.*}}, %{{.*}}, %{{.*}}, %[[VCOL2]]] rows

attn.kernel @retnet(%q: !attn.tensor<f32[B, H, T, 32]>, %k: !attn.tensor<f32[B, H, T, 32]>, %v: !attn.tensor<f32[B, H, T, 32]>) -> (o: !attn.tensor<f32[B, H, T, 32]>) {
  %o = attn.linear %q, %k, %v {chunk = 16 : i64, gate_kind = #attn<gate_kind constant_per_head>} : (!attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>) -> !attn.tensor<f32[B, H, T, 32]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = arith.constant -0.1 : f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o : !attn.tensor<f32[B, H, T, 32]>
}
