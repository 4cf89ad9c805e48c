// RUN: attnc-opt %s -split-input-file | attnc-opt -split-input-file | FileCheck %s
//
// Round trip of every attn op; one case per family variant.

// -----

// CHECK-LABEL: attn.kernel @alibi(
// CHECK-SAME: %q: !attn.tensor<bf16[B, Hq, N, 64]>, %k: !attn.tensor<bf16[B, Hk, M, 64]>, %v: !attn.tensor<bf16[B, Hk, M, 64]>, %slope: !attn.tensor<f32[Hq]>
// CHECK-SAME: ) -> (o: !attn.tensor<bf16[B, Hq, N, 64]>, lse: !attn.tensor<f32[B, Hq, N]>)
attn.kernel @alibi(%q: !attn.tensor<bf16[B, Hq, N, 64]>, %k: !attn.tensor<bf16[B, Hk, M, 64]>, %v: !attn.tensor<bf16[B, Hk, M, 64]>, %slope: !attn.tensor<f32[Hq]>) -> (o: !attn.tensor<bf16[B, Hq, N, 64]>, lse: !attn.tensor<f32[B, Hq, N]>) {
// CHECK: %o, %lse = attn.softmax %q, %k, %v
  %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<bf16[B, Hk, M, 64]>, !attn.tensor<bf16[B, Hk, M, 64]>) -> (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>) score {
// CHECK: ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
// CHECK: %0 = attn.load %slope[%h]
    %0 = attn.load %slope[%h] : <f32[Hq]> -> f32
    %1 = arith.subi %i, %j : index
    %2 = arith.index_cast %1 : index to i64
    %3 = arith.sitofp %2 : i64 to f32
    %4 = arith.mulf %0, %3 : f32
    %5 = arith.subf %s, %4 : f32
// CHECK: attn.yield %5 : f32
    attn.yield %5 : f32
  } mask {
// CHECK: ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
// CHECK: attn.yield %2 : i1
    attn.yield %2 : i1
  }
// CHECK: attn.return %o, %lse : !attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>
  attn.return %o, %lse : !attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>
}

// -----

// CHECK-LABEL: attn.kernel @chunk_local(
// CHECK-SAME: %q: !attn.tensor<f32[B, H, N, 64]>, %k: !attn.tensor<f32[B, H, N, 64]>, %v: !attn.tensor<f32[B, H, N, 64]>
// CHECK-SAME: ) -> (o: !attn.tensor<f32[B, H, N, 64]>)
attn.kernel @chunk_local(%q: !attn.tensor<f32[B, H, N, 64]>, %k: !attn.tensor<f32[B, H, N, 64]>, %v: !attn.tensor<f32[B, H, N, 64]>) -> (o: !attn.tensor<f32[B, H, N, 64]>) {
// CHECK: %o = attn.chunk_softmax %q, %k, %v {chunk = 64
  %o = attn.chunk_softmax %q, %k, %v {chunk = 64 : i64} : (!attn.tensor<f32[B, H, N, 64]>, !attn.tensor<f32[B, H, N, 64]>, !attn.tensor<f32[B, H, N, 64]>) -> !attn.tensor<f32[B, H, N, 64]> score {
  } mask {
// CHECK: ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.cmpi sle, %j, %i : index
// CHECK: attn.yield %0 : i1
    attn.yield %0 : i1
  }
// CHECK: attn.return %o : !attn.tensor<f32[B, H, N, 64]>
  attn.return %o : !attn.tensor<f32[B, H, N, 64]>
}

// -----

// CHECK-LABEL: attn.kernel @block_sparse(
// CHECK-SAME: %q: !attn.tensor<bf16[B, H, N, 64]>, %k: !attn.tensor<bf16[B, H, N, 64]>, %v: !attn.tensor<bf16[B, H, N, 64]>, %blocks: !attn.tensor<i1[B, H, NB, MB]>
// CHECK-SAME: ) -> (o: !attn.tensor<bf16[B, H, N, 64]>)
attn.kernel @block_sparse(%q: !attn.tensor<bf16[B, H, N, 64]>, %k: !attn.tensor<bf16[B, H, N, 64]>, %v: !attn.tensor<bf16[B, H, N, 64]>, %blocks: !attn.tensor<i1[B, H, NB, MB]>) -> (o: !attn.tensor<bf16[B, H, N, 64]>) {
// CHECK: %o = attn.sparse_softmax %q, %k, %v block_mask(%blocks) {block_k = 32
  %o = attn.sparse_softmax %q, %k, %v block_mask(%blocks) {block_k = 32 : i64, block_q = 32 : i64} : (!attn.tensor<bf16[B, H, N, 64]>, !attn.tensor<bf16[B, H, N, 64]>, !attn.tensor<bf16[B, H, N, 64]>, !attn.tensor<i1[B, H, NB, MB]>) -> !attn.tensor<bf16[B, H, N, 64]> score {
  } mask {
// CHECK: ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
// CHECK: attn.yield %2 : i1
    attn.yield %2 : i1
  }
// CHECK: attn.return %o : !attn.tensor<bf16[B, H, N, 64]>
  attn.return %o : !attn.tensor<bf16[B, H, N, 64]>
}

// -----

// CHECK-LABEL: attn.kernel @kv_lists(
// CHECK-SAME: %q: !attn.tensor<f32[B, H, N, 64]>, %k: !attn.tensor<f32[B, H, M, 64]>, %v: !attn.tensor<f32[B, H, M, 64]>, %counts: !attn.tensor<i32[B, H, QB]>, %indices: !attn.tensor<i32[B, H, QB, W]>
// CHECK-SAME: ) -> (o: !attn.tensor<f32[B, H, N, 64]>)
attn.kernel @kv_lists(%q: !attn.tensor<f32[B, H, N, 64]>, %k: !attn.tensor<f32[B, H, M, 64]>, %v: !attn.tensor<f32[B, H, M, 64]>, %counts: !attn.tensor<i32[B, H, QB]>, %indices: !attn.tensor<i32[B, H, QB, W]>) -> (o: !attn.tensor<f32[B, H, N, 64]>) {
// CHECK: %o = attn.sparse_softmax %q, %k, %v kv_num_blocks(%counts) kv_indices(%indices) {block_k = 16
  %o = attn.sparse_softmax %q, %k, %v kv_num_blocks(%counts) kv_indices(%indices) {block_k = 16 : i64, block_q = 16 : i64} : (!attn.tensor<f32[B, H, N, 64]>, !attn.tensor<f32[B, H, M, 64]>, !attn.tensor<f32[B, H, M, 64]>, !attn.tensor<i32[B, H, QB]>, !attn.tensor<i32[B, H, QB, W]>) -> !attn.tensor<f32[B, H, N, 64]> score {
  } mask {
  }
// CHECK: attn.return %o : !attn.tensor<f32[B, H, N, 64]>
  attn.return %o : !attn.tensor<f32[B, H, N, 64]>
}

// -----

// CHECK-LABEL: attn.kernel @topk(
// CHECK-SAME: %q: !attn.tensor<bf16[B, Hq, N, 64]>, %k: !attn.tensor<bf16[B, Hk, N, 64]>, %v: !attn.tensor<bf16[B, Hk, N, 64]>
// CHECK-SAME: ) -> (o: !attn.tensor<bf16[B, Hq, N, 64]>)
attn.kernel @topk(%q: !attn.tensor<bf16[B, Hq, N, 64]>, %k: !attn.tensor<bf16[B, Hk, N, 64]>, %v: !attn.tensor<bf16[B, Hk, N, 64]>) -> (o: !attn.tensor<bf16[B, Hq, N, 64]>) {
// CHECK: %o = attn.sparse_softmax %q, %k, %v {block_k = 16
  %o = attn.sparse_softmax %q, %k, %v {block_k = 16 : i64, block_q = 16 : i64, topk = 4 : i64} : (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<bf16[B, Hk, N, 64]>, !attn.tensor<bf16[B, Hk, N, 64]>) -> !attn.tensor<bf16[B, Hq, N, 64]> score {
  } mask {
// CHECK: ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
// CHECK: attn.yield %2 : i1
    attn.yield %2 : i1
  }
// CHECK: attn.return %o : !attn.tensor<bf16[B, Hq, N, 64]>
  attn.return %o : !attn.tensor<bf16[B, Hq, N, 64]>
}

// -----

// CHECK-LABEL: attn.kernel @varlen(
// CHECK-SAME: %q: !attn.tensor<bf16[T, H, 64]>, %k: !attn.tensor<bf16[T, H, 64]>, %v: !attn.tensor<bf16[T, H, 64]>, %cu: !attn.tensor<i32[S1]>
// CHECK-SAME: ) -> (o: !attn.tensor<bf16[T, H, 64]>, lse: !attn.tensor<f32[H, T]>)
attn.kernel @varlen(%q: !attn.tensor<bf16[T, H, 64]>, %k: !attn.tensor<bf16[T, H, 64]>, %v: !attn.tensor<bf16[T, H, 64]>, %cu: !attn.tensor<i32[S1]>) -> (o: !attn.tensor<bf16[T, H, 64]>, lse: !attn.tensor<f32[H, T]>) {
// CHECK: %o, %lse = attn.softmax %q, %k, %v cu_seqlens_q(%cu) {layout = #attn<layout thd>}
  %o, %lse = attn.softmax %q, %k, %v cu_seqlens_q(%cu) {layout = #attn<layout thd>} : (!attn.tensor<bf16[T, H, 64]>, !attn.tensor<bf16[T, H, 64]>, !attn.tensor<bf16[T, H, 64]>, !attn.tensor<i32[S1]>) -> (!attn.tensor<bf16[T, H, 64]>, !attn.tensor<f32[H, T]>) score {
  } mask {
// CHECK: ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.addi %j, %n : index
    %1 = arith.addi %i, %m : index
    %2 = arith.cmpi ule, %0, %1 : index
// CHECK: attn.yield %2 : i1
    attn.yield %2 : i1
  }
// CHECK: attn.return %o, %lse : !attn.tensor<bf16[T, H, 64]>, !attn.tensor<f32[H, T]>
  attn.return %o, %lse : !attn.tensor<bf16[T, H, 64]>, !attn.tensor<f32[H, T]>
}

// -----

// CHECK-LABEL: attn.kernel @gla(
// CHECK-SAME: %q: !attn.tensor<bf16[B, T, H, 64]>, %k: !attn.tensor<bf16[B, T, H, 64]>, %v: !attn.tensor<bf16[B, T, H, 128]>, %g: !attn.tensor<f32[B, T, H, 64]>, %h0: !attn.tensor<f32[B, H, 64, 128]>?
// CHECK-SAME: ) -> (o: !attn.tensor<bf16[B, T, H, 128]>, hT: !attn.tensor<f32[B, H, 64, 128]>)
attn.kernel @gla(%q: !attn.tensor<bf16[B, T, H, 64]>, %k: !attn.tensor<bf16[B, T, H, 64]>, %v: !attn.tensor<bf16[B, T, H, 128]>, %g: !attn.tensor<f32[B, T, H, 64]>, %h0: !attn.tensor<f32[B, H, 64, 128]>?) -> (o: !attn.tensor<bf16[B, T, H, 128]>, hT: !attn.tensor<f32[B, H, 64, 128]>) {
// CHECK: %o, %state = attn.linear %q, %k, %v initial_state(%h0) {gate_kind = #attn<gate_kind per_key_dim>, layout = #attn<layout bnhd>}
  %o, %state = attn.linear %q, %k, %v initial_state(%h0) {gate_kind = #attn<gate_kind per_key_dim>, layout = #attn<layout bnhd>} : (!attn.tensor<bf16[B, T, H, 64]>, !attn.tensor<bf16[B, T, H, 64]>, !attn.tensor<bf16[B, T, H, 128]>, !attn.tensor<f32[B, H, 64, 128]>) -> (!attn.tensor<bf16[B, T, H, 128]>, !attn.tensor<f32[B, H, 64, 128]>) gate {
// CHECK: ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
// CHECK: %0 = attn.load %g[%b, %t, %h, %d]
    %0 = attn.load %g[%b, %t, %h, %d] : <f32[B, T, H, 64]> -> f32
// CHECK: attn.yield %0 : f32
    attn.yield %0 : f32
  } feature {
  }
// CHECK: attn.return %o, %state : !attn.tensor<bf16[B, T, H, 128]>, !attn.tensor<f32[B, H, 64, 128]>
  attn.return %o, %state : !attn.tensor<bf16[B, T, H, 128]>, !attn.tensor<f32[B, H, 64, 128]>
}

// -----

// CHECK-LABEL: attn.kernel @retnet(
// CHECK-SAME: %q: !attn.tensor<f32[B, H, T, 64]>, %k: !attn.tensor<f32[B, H, T, 64]>, %v: !attn.tensor<f32[B, H, T, 64]>
// CHECK-SAME: ) -> (o: !attn.tensor<f32[B, H, T, 64]>)
attn.kernel @retnet(%q: !attn.tensor<f32[B, H, T, 64]>, %k: !attn.tensor<f32[B, H, T, 64]>, %v: !attn.tensor<f32[B, H, T, 64]>) -> (o: !attn.tensor<f32[B, H, T, 64]>) {
// CHECK: %o = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind constant_per_head>, scale = 1.250000e-01
  %o = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind constant_per_head>, scale = 1.250000e-01 : f32} : (!attn.tensor<f32[B, H, T, 64]>, !attn.tensor<f32[B, H, T, 64]>, !attn.tensor<f32[B, H, T, 64]>) -> !attn.tensor<f32[B, H, T, 64]> gate {
// CHECK: ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %c1 = arith.constant 1 : index
    %c5 = arith.constant 5 : index
    %c0 = arith.constant 0 : index
    %0 = arith.subi %c0, %c5 : index
    %1 = arith.subi %0, %h : index
    %2 = arith.index_cast %1 : index to i64
    %3 = arith.sitofp %2 : i64 to f32
    %4 = math.exp2 %3 : f32
    %5 = arith.index_cast %c1 : index to i64
    %6 = arith.sitofp %5 : i64 to f32
    %7 = arith.subf %6, %4 : f32
    %8 = math.log %7 : f32
// CHECK: attn.yield %8 : f32
    attn.yield %8 : f32
  } feature {
  }
// CHECK: attn.return %o : !attn.tensor<f32[B, H, T, 64]>
  attn.return %o : !attn.tensor<f32[B, H, T, 64]>
}

// -----

// CHECK-LABEL: attn.kernel @linear_elu(
// CHECK-SAME: %q: !attn.tensor<f32[B, H, T, 32]>, %k: !attn.tensor<f32[B, H, T, 32]>, %v: !attn.tensor<f32[B, H, T, 32]>
// CHECK-SAME: ) -> (o: !attn.tensor<f32[B, H, T, 32]>)
attn.kernel @linear_elu(%q: !attn.tensor<f32[B, H, T, 32]>, %k: !attn.tensor<f32[B, H, T, 32]>, %v: !attn.tensor<f32[B, H, T, 32]>) -> (o: !attn.tensor<f32[B, H, T, 32]>) {
// CHECK: %o = attn.linear %q, %k, %v {causal = false}
  %o = attn.linear %q, %k, %v {causal = false} : (!attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>, !attn.tensor<f32[B, H, T, 32]>) -> !attn.tensor<f32[B, H, T, 32]> gate {
  } feature {
// CHECK: ^bb0(%x: f32):
  ^bb0(%x: f32):
    %cst = arith.constant 0.000000e+00 : f32
    %0 = arith.cmpf ogt, %x, %cst : f32
    %1 = math.exp %x : f32
    %cst_0 = arith.constant 1.000000e+00 : f32
    %2 = arith.subf %1, %cst_0 : f32
    %3 = arith.select %0, %x, %2 : f32
    %c1 = arith.constant 1 : index
    %4 = arith.index_cast %c1 : index to i64
    %5 = arith.sitofp %4 : i64 to f32
    %6 = arith.addf %3, %5 : f32
// CHECK: attn.yield %6 : f32
    attn.yield %6 : f32
  }
// CHECK: attn.return %o : !attn.tensor<f32[B, H, T, 32]>
  attn.return %o : !attn.tensor<f32[B, H, T, 32]>
}


// -----

// CHECK-LABEL: attn.kernel @backward(
// CHECK: %dq, %dk, %dv, %dinput = attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%do) d_lse(%dlse) inputs(%slope) :
attn.kernel @backward(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>, %o: !attn.tensor<f32[B, H, N, 16]>, %lse: !attn.tensor<f32[B, H, N]>, %do: !attn.tensor<f32[B, H, N, 16]>, %dlse: !attn.tensor<f32[B, H, N]>) -> (dq: !attn.tensor<f32[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>, dslope: !attn.tensor<f32[H]>) {
  %dq, %dk, %dv, %dslope = attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%do) d_lse(%dlse) inputs(%slope) : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>, !attn.tensor<f32[H]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[H]>) score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %x = attn.load %slope[%h] : !attn.tensor<f32[H]> -> f32
    %y = arith.mulf %s, %x : f32
    attn.yield %y : f32
  } mask {
  }
  attn.return %dq, %dk, %dv, %dslope : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[H]>
}
