// RUN: attnc-opt %s -split-input-file -attn-lower-to-reference | FileCheck %s
// RUN: attnc-opt %s -split-input-file -attnc-reference-pipeline | FileCheck %s --check-prefix=LLVM

// Softmax: per (b, h, i) a materialised row of scores, then weights, then o.
// The (b, h) grid is one loop over the caller's share [begin, end) of it.
// The mask (causal: j + n <= i + m) and the score (30 * tanh(s / 30)) are
// inlined into the first pass over the keys.

// CHECK-LABEL: func.func @causal(
// CHECK-SAME:    memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME:    %[[STATUS:.*]]: memref<?xi64>, %[[BEGIN:.*]]: index, %[[END:.*]]: index, %{{.*}}: index) attributes {llvm.emit_c_interface}
// CHECK-NOT:   attn.
// CHECK:       %[[SCORES:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK:       %[[GRID:.*]] = arith.muli
// CHECK:       %[[LAST:.*]] = arith.minui %[[END]], %[[GRID]]
// CHECK:       %[[FIRST:.*]] = arith.minui %[[BEGIN]], %[[LAST]]
// CHECK:       scf.for %[[ITEM:.*]] = %[[FIRST]] to %[[LAST]]
// CHECK:         %[[B:.*]] = arith.divui %[[ITEM]]
// CHECK:         %[[H:.*]] = arith.remui %[[ITEM]]
// CHECK:           scf.for %[[I:.*]] =
//                    Pass 1: allowed keys, scores, running maximum.
// CHECK:             scf.for %[[J:.*]] = {{.*}} iter_args(%{{.*}} = %{{.*}}) -> (f32)
// CHECK:               %[[LHS:.*]] = arith.addi %[[J]], %{{.*}} : index
// CHECK:               %[[ALLOWED:.*]] = arith.cmpi ule, %[[LHS]], %{{.*}} : index
// CHECK:               scf.if %[[ALLOWED]] -> (f32)
//                        s = scale * dot(q_i, k_j), then the score expression.
// CHECK:                 arith.mulf
// CHECK:                 math.tanh
// CHECK:                 memref.store %{{.*}}, %[[SCORES]][%[[J]]]
// CHECK:                 arith.maximumf
//                    Pass 2: p_j = exp(s_j - max).
// CHECK:             math.exp
//                    Pass 3: o = sum_j p_j v_j / sum_j p_j.
// CHECK:             arith.divf
// CHECK:       memref.dealloc %[[SCORES]]

// LLVM-LABEL: llvm.func @causal(
// LLVM:       llvm.func @_mlir_ciface_causal(
// LLVM-NOT:   scf.
// LLVM-NOT:   memref.
attn.kernel @causal(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %c30 = arith.constant 30 : index
    %c30_0 = arith.constant 30 : index
    %0 = arith.index_cast %c30_0 : index to i64
    %1 = arith.sitofp %0 : i64 to f32
    %2 = arith.divf %s, %1 : f32
    %3 = math.tanh %2 : f32
    %4 = arith.index_cast %c30 : index to i64
    %5 = arith.sitofp %4 : i64 to f32
    %6 = arith.mulf %5, %3 : f32
    attn.yield %6 : f32
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
    attn.yield %2 : i1
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// Linear: the recurrence per (b, h) with the state in an f32 buffer; the
// optional initial state is read only when its pointer is not null; gates
// that are positive or not finite are recorded in the status buffer.

// CHECK-LABEL: func.func @gla(
// CHECK:       %[[STATE:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xf32>
// CHECK:       %[[PTR:.*]] = memref.extract_aligned_pointer_as_index
// CHECK:       %[[PRESENT:.*]] = arith.cmpi ne, %[[PTR]], %{{.*}} : index
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           scf.if %[[PRESENT]] -> (f32)
// CHECK:           scf.for %[[T:.*]] =
// CHECK:             scf.for %[[D:.*]] =
//                      g = gate(b, h, t, d): a bounds-checked read of the
//                      gate tensor, then checked: 0 >= g > -inf.
// CHECK:               arith.cmpi ult
// CHECK:               %[[G:.*]] = scf.if %{{.*}} -> (f32) {
// CHECK-NEXT:            memref.load %arg3
// CHECK:               arith.cmpf ole, %[[G]]
// CHECK:               arith.cmpf one, %[[G]]
//                      The first error claims status[0] atomically
//                      (0 -> code 1); only the claimant writes details.
// CHECK:               scf.if
// CHECK:                 %[[CLAIM:.*]] = llvm.cmpxchg %{{.*}}, %c0_i64{{.*}}, %c1_i64 monotonic monotonic : !llvm.ptr, i64
// CHECK:                 %[[FIRST:.*]] = llvm.extractvalue %[[CLAIM]][1]
// CHECK:                 scf.if %[[FIRST]]
// CHECK:                   memref.store %{{.*}}, %arg{{[0-9]+}}[%{{.*}}] : memref<?xi64>
// CHECK:               %[[DECAY:.*]] = math.exp
//                      phi(k) = relu(k)
// CHECK:               arith.maximumf
// CHECK:               scf.for
//                        S = exp(g) * S + phi(k)^T v
// CHECK:                 arith.mulf %[[DECAY]]
// CHECK:                 memref.store %{{.*}}, %[[STATE]]
// CHECK:       memref.dealloc %[[STATE]]

// LLVM-LABEL: llvm.func @gla(
// LLVM:       llvm.func @_mlir_ciface_gla(
attn.kernel @gla(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %g: !attn.tensor<f32[B, H, T, 16]>, %h0: !attn.tensor<f32[B, H, 16, 8]>?) -> (o: !attn.tensor<f32[B, H, T, 8]>, hT: !attn.tensor<f32[B, H, 16, 8]>) {
  %o, %state = attn.linear %q, %k, %v initial_state(%h0) {gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>) -> (!attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %g[%b, %h, %t, %d] : <f32[B, H, T, 16]> -> f32
    attn.yield %0 : f32
  } feature {
  ^bb0(%x: f32):
    %cst = arith.constant 0.000000e+00 : f32
    %0 = arith.maximumf %x, %cst : f32
    attn.yield %0 : f32
  }
  attn.return %o, %state : !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 16, 8]>
}
