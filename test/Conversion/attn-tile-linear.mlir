// RUN: attnc-opt %s -split-input-file -attn-tile-linear="sub-tile=8" -canonicalize | FileCheck %s
// RUN: attnc-opt %s -split-input-file -attn-tile-linear="sub-tile=8" -canonicalize -attn-tile-to-loops -attnc-reference-pipeline | FileCheck %s --check-prefix=LLVM
// RUN: not attnc-opt %s -attn-tile-linear="sub-tile=0" -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD

// Bad option values are reported while the pipeline is parsed.
// BAD: error: attn-tile-linear: sub-tile must be positive, got 0
// BAD-NOT: see current operation

// The tile programs lower to the LLVM dialect on the CPU.
// LLVM-COUNT-3: llvm.func @_mlir_ciface_

// GLA (one gate per key dim), chunks of 16, sub-tiles of 8: one program per
// sequence carries the 16x8 state through the chunks. Per chunk: the Q rows,
// whole K and V tiles, the checked gates (a map over the chunk's positions)
// and their running sum; the outputs by sub-tiles (Q S with exp(G), earlier
// sub-tiles decayed to the pivot row, the sub-tile's own keys by
// decay_dot), then the state: keys decayed by exp(G_L - G), the state by
// exp(G_L) (a column, broadcast along the rows), K^T V added.

// CHECK-LABEL: func.func @gla(
// CHECK:       attn_tile.grid ({{.*}}) heads %{{.*}} batches %{{.*}} block_rows 16 per_sequence {
// CHECK:         %[[STATE:.*]] = scf.for %{{.*}} = %c0 to %{{.*}} step %c1 iter_args(%[[S:.*]] = %{{.*}}) -> (tensor<16x8xf32>) {
// CHECK:           %[[Q:.*]] = attn_tile.load %arg0{{.*}} -> tensor<?x16xf32>
// CHECK:           %[[K:.*]] = attn_tile.load %arg1{{.*}} -> tensor<16x16xf32>
// CHECK:           %[[V:.*]] = attn_tile.load %arg2{{.*}} -> tensor<16x8xf32>
// CHECK:           %[[GATES:.*]] = attn_tile.map
// CHECK:             arith.cmpf ole
// CHECK:           %[[G:.*]] = attn_tile.scan add %[[GATES]] : tensor<16x16xf32>
// CHECK:           %[[GL:.*]] = attn_tile.slice %[[G]][%{{.*}}] rows %c1 : tensor<16x16xf32> -> tensor<1x16xf32>
// CHECK:           %[[GLT:.*]] = attn_tile.transpose %[[GL]] : tensor<1x16xf32> -> tensor<16x1xf32>
// CHECK:           scf.for %[[SUB:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK:             %[[QS:.*]] = attn_tile.slice %[[Q]]
// CHECK:             %[[GS:.*]] = attn_tile.slice %[[G]]{{.*}} -> tensor<?x16xf32>
// CHECK:             %[[PIVOT:.*]] = attn_tile.slice %[[G]][%{{.*}}] rows %c1 : tensor<16x16xf32> -> tensor<1x16xf32>
// CHECK:             %[[QG:.*]] = attn_tile.map(%[[QS]], %[[GS]])
// CHECK:             %[[INTER:.*]] = attn_tile.dot %[[QG]], %[[S]], %{{.*}} : tensor<?x16xf32>, tensor<16x8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
// CHECK:             %[[QP:.*]] = attn_tile.map(%[[QS]], %[[GS]], %[[PIVOT]])
// CHECK:             %[[EARLIER:.*]] = scf.for %{{.*}} = %c0 to %[[SUB]] step %c1 iter_args(%[[ACC:.*]] = %[[INTER]])
// CHECK:               %[[KP:.*]] = attn_tile.map({{.*}}, %[[PIVOT]], {{.*}}) : (tensor<8x16xf32>, tensor<1x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
// CHECK:               %[[A:.*]] = attn_tile.dot %[[QP]], %[[KP]], %{{.*}} {transpose_rhs}
// CHECK:               attn_tile.dot %[[A]], %{{.*}}, %[[ACC]] : tensor<?x8xf32>, tensor<8x8xf32>
// CHECK:             %[[OWN:.*]] = attn_tile.decay_dot %[[QS]], %{{.*}}, %[[GS]], %{{.*}}, %{{.*}} {lower_triangular}
// CHECK:             %[[O:.*]] = attn_tile.dot %[[OWN]], %{{.*}}, %[[EARLIER]]
// CHECK:             %[[SCALED:.*]] = attn_tile.map(%[[O]])
// CHECK:             attn_tile.store %[[SCALED]], %arg4
// CHECK:           %[[KD:.*]] = attn_tile.map(%[[K]], %[[GL]], %[[G]])
// CHECK:           %[[SD:.*]] = attn_tile.map(%[[S]], %[[GLT]]) : (tensor<16x8xf32>, tensor<16x1xf32>) -> tensor<16x8xf32>
// CHECK:           %[[NEXT:.*]] = attn_tile.dot %[[KD]], %[[V]], %[[SD]] {transpose_lhs}
// CHECK:           scf.yield %[[NEXT]]
// CHECK:         attn_tile.store %[[STATE]], %arg5[{{.*}}, %c0] rows %{{.*}} row_dim 2 : tensor<16x8xf32>
attn.kernel @gla(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %g: !attn.tensor<f32[B, H, T, 16]>) -> (o: !attn.tensor<f32[B, H, T, 8]>, hT: !attn.tensor<f32[B, H, 16, 8]>) {
  %o, %state = attn.linear %q, %k, %v {chunk = 16 : i64, gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>) -> (!attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %g[%b, %h, %t, %d] : <f32[B, H, T, 16]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o, %state : !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>
}

// -----

// A scalar gate per (head, step) (Mamba2/SSD) with f16 inputs: one gate
// column per chunk; the chunk's scores are a single dot of the f16 tiles,
// then one map applies exp(G_r - G_u) (G as a column and, transposed, as a
// row) and the causal mask u <= r. No sub-tiles.

// CHECK-LABEL: func.func @ssd(
// CHECK:       attn_tile.grid ({{.*}}) heads %{{.*}} batches %{{.*}} block_rows 64 per_sequence {
// CHECK:         scf.for
// CHECK:           %[[Q:.*]] = attn_tile.load %arg0{{.*}} -> tensor<?x64xf16>
// CHECK:           %[[K:.*]] = attn_tile.load %arg1{{.*}} -> tensor<64x64xf16>
// CHECK:           %[[G:.*]] = attn_tile.scan add %{{.*}} : tensor<64x1xf32>
// CHECK:           attn_tile.map(%[[Q]], %[[G]]) : (tensor<?x64xf16>, tensor<64x1xf32>) -> tensor<?x64xf32>
// CHECK:           %[[A:.*]] = attn_tile.dot %[[Q]], %[[K]], %{{.*}} {transpose_rhs} : tensor<?x64xf16>, tensor<64x64xf16>
// CHECK:           %[[GT:.*]] = attn_tile.transpose %[[G]] : tensor<64x1xf32> -> tensor<1x64xf32>
// CHECK:           attn_tile.map(%[[A]], %[[G]], %[[GT]]) : (tensor<?x64xf32>, tensor<64x1xf32>, tensor<1x64xf32>) -> tensor<?x64xf32> {
// CHECK:             math.exp
// CHECK:             arith.cmpi ule
// CHECK:             arith.select
// CHECK-NOT:       attn_tile.decay_dot
// CHECK:           attn_tile.dot {{.*}} {transpose_lhs}
attn.kernel @ssd(%q: !attn.tensor<f16[B, H, T, 64]>, %k: !attn.tensor<f16[B, H, T, 64]>, %v: !attn.tensor<f16[B, H, T, 64]>, %a: !attn.tensor<f32[B, H, T]>) -> (o: !attn.tensor<f16[B, H, T, 64]>, state: !attn.tensor<f32[B, H, 64, 64]>) {
  %o, %state = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind per_head>} : (!attn.tensor<f16[B, H, T, 64]>, !attn.tensor<f16[B, H, T, 64]>, !attn.tensor<f16[B, H, T, 64]>) -> (!attn.tensor<f16[B, H, T, 64]>, !attn.tensor<f32[B, H, 64, 64]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %a[%b, %h, %t] : <f32[B, H, T]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o, %state : !attn.tensor<f16[B, H, T, 64]>, !attn.tensor<f32[B, H, 64, 64]>
}

// -----

// Non-causal with a feature map: the state is summed over every chunk
// first (phi(K)^T V, with phi's value at the zero rows past the end masked
// off), then every chunk's outputs come from it.

// CHECK-LABEL: func.func @linear_elu(
// CHECK:       attn_tile.grid
// CHECK:         %[[S:.*]] = scf.for {{.*}} -> (tensor<32x32xf32>) {
// CHECK:           %[[K:.*]] = attn_tile.load %arg1
// CHECK:           %[[PHI:.*]] = attn_tile.map(%[[K]])
// CHECK:             math.exp
// CHECK:             arith.cmpi ult
// CHECK:           attn_tile.dot %[[PHI]], %{{.*}}, %{{.*}} {transpose_lhs}
// CHECK:         scf.for
// CHECK:           %[[Q:.*]] = attn_tile.load %arg0
// CHECK:           %[[PHIQ:.*]] = attn_tile.map(%[[Q]])
// CHECK:           attn_tile.dot %[[PHIQ]], %[[S]], %{{.*}} : tensor<?x32xf32>, tensor<32x32xf32>
// CHECK:           attn_tile.store
// CHECK-NOT:       attn_tile.decay_dot
attn.kernel @linear_elu(%q: !attn.tensor<f32[B, H, T, 32]>, %k: !attn.tensor<f32[B, H, T, 32]>, %v: !attn.tensor<f32[B, H, T, 32]>) -> (o: !attn.tensor<f32[B, H, T, 32]>) {
  %o = attn.linear %q, %k, %v {causal = false} : (!attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>) -> !attn.tensor<f32[B, H, T, 32]> gate {
  } feature {
  ^bb0(%x: f32):
    %cst = arith.constant 0.000000e+00 : f32
    %0 = arith.cmpf ogt, %x, %cst : f32
    %1 = math.exp %x : f32
    %cst_0 = arith.constant 1.000000e+00 : f32
    %2 = arith.subf %1, %cst_0 : f32
    %3 = arith.select %0, %x, %2 : f32
    %4 = arith.addf %3, %cst_0 : f32
    attn.yield %4 : f32
  }
  attn.return %o : !attn.tensor<f32[B, H, T, 32]>
}
