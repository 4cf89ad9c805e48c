// RUN: attnc-opt %s -attn-chunk-linear -canonicalize | FileCheck %s

// Chunkwise GLA (chunk 16): chunk-sized buffers for the features, the
// values (padded to whole 8-lane vectors), the cumulative gates and the
// 16x16 intra-chunk scores; per chunk the gates are accumulated
// (G_r = G_{r-1} + g_t), the intra-chunk scores use exp(G_r - G_u) per key
// dim, the queries are scaled by exp(G_r) once, the outputs (Q S and A V)
// and the state update run on 8-lane vectors along Dv, with the keys
// decayed by exp(G_L - G_u) once and the state by exp(G_L).

// CHECK-LABEL: func.func @gla(
// CHECK-DAG:   memref.alloc(%{{.*}}) : memref<16x?xf32>
// CHECK-DAG:   memref.alloc() : memref<16x16xf32>
// CHECK-DAG:   %[[STATE:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xf32>
//              The (batch, head) grid, then the chunks.
// CHECK:       %[[CHUNKS:.*]] = arith.ceildivui %{{.*}}, %c16
// CHECK:       scf.for %{{.*}} = %c0 to %[[CHUNKS]]
//                Load the chunk: features, checked gates, running sum.
// CHECK:         arith.cmpf ole
// CHECK:         arith.addf
//                Intra-chunk scores over u <= r with exp(G_r - G_u).
// CHECK:         arith.subf
// CHECK:         math.exp
//                Scaled queries, then Q S and A V.
// CHECK:         math.exp
// CHECK:         vector.fma {{.*}} : vector<8xf32>
// CHECK:         vector.fma {{.*}} : vector<8xf32>
//                Decayed keys, then the state update.
// CHECK:         math.exp
// CHECK:         math.exp
// CHECK:         vector.fma {{.*}} : vector<8xf32>
// CHECK:         vector.store %{{.*}}, %[[STATE]]
// CHECK-NOT:   memref.alloc
attn.kernel @gla(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %g: !attn.tensor<f32[B, H, T, 16]>) -> (o: !attn.tensor<f32[B, H, T, 8]>, hT: !attn.tensor<f32[B, H, 16, 8]>) {
  %o, %state = attn.linear %q, %k, %v {chunk = 16 : i64, gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>) -> (!attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %g[%b, %h, %t, %d] : <f32[B, H, T, 16]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o, %state : !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>
}
