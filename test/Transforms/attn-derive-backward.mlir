// RUN: attnc-opt %s -split-input-file -attn-derive-backward -verify-diagnostics | FileCheck %s
//
// The backward kernel of a softmax kernel: f's parameters, then o, lse and
// the upstream gradients; one gradient per input of q, k, v and each float
// tensor the score reads (slope), none for integer ones (doc).

// CHECK-LABEL: attn.kernel @alibi(
// CHECK-LABEL: attn.kernel @alibi_backward(
// CHECK-SAME: %q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>, %doc: !attn.tensor<i32[N]>
// CHECK-SAME: %o: !attn.tensor<f32[B, H, N, 16]>, %lse: !attn.tensor<f32[B, H, N]>, %d_o: !attn.tensor<f32[B, H, N, 16]>)
// CHECK-SAME: -> (d_q: !attn.tensor<f32[B, H, N, 16]>, d_k: !attn.tensor<f32[B, H, M, 16]>, d_v: !attn.tensor<f32[B, H, M, 16]>, d_slope: !attn.tensor<f32[H]>)
// CHECK: %dq, %dk, %dv, %dinput = attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%d_o) inputs(%slope)
// CHECK: attn.load %slope[%h]
// CHECK: attn.load %doc[%i]
// CHECK: attn.return %dq, %dk, %dv, %dinput
attn.kernel @alibi(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>, %doc: !attn.tensor<i32[N]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %slope_h = attn.load %slope[%h] : !attn.tensor<f32[H]> -> f32
    %x = arith.subf %s, %slope_h : f32
    attn.yield %x : f32
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %d = attn.load %doc[%i] : !attn.tensor<i32[N]> -> index
    %c0 = arith.constant 0 : index
    %same = arith.cmpi eq, %d, %c0 : index
    attn.yield %same : i1
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// With lse among the outputs, d_lse is a parameter; sigmoid needs no lse.

// CHECK-LABEL: attn.kernel @with_lse_backward(
// CHECK-SAME: %o: !attn.tensor<f32[B, H, N, 16]>, %lse: !attn.tensor<f32[B, H, N]>, %d_o: !attn.tensor<f32[B, H, N, 16]>, %d_lse: !attn.tensor<f32[B, H, N]>)
// CHECK: attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%d_o) d_lse(%d_lse) :
attn.kernel @with_lse(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<f32[B, H, N]>) {
  %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>) score {
  } mask {
  }
  attn.return %o, %lse : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>
}

// CHECK-LABEL: attn.kernel @sigmoid_backward(
// CHECK-SAME: %o: !attn.tensor<f32[B, H, N, 16]>, %d_o: !attn.tensor<f32[B, H, N, 16]>)
// CHECK: attn.softmax_backward %q, %k, %v out(%o) d_out(%d_o) {normalizer = #attn<normalizer sigmoid>}
attn.kernel @sigmoid(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.softmax %q, %k, %v {normalizer = #attn<normalizer sigmoid>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// An op without a derivative is reported where it is.
attn.kernel @floor(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    // expected-error @+1 {{'math.floor' has no derivative: the score expression cannot be differentiated through it}}
    %x = math.floor %s : f32
    attn.yield %x : f32
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// A chunk-local kernel's backward carries its chunk.

// CHECK-LABEL: attn.kernel @chunked_backward(
// CHECK: attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%d_o) {chunk = 64 : i64}
attn.kernel @chunked(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.chunk_softmax %q, %k, %v {chunk = 64 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// Block-sparse kernels keep their block sizes and block source.

// CHECK-LABEL: attn.kernel @blocks_backward(
// CHECK: attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%d_o) block_mask(%blocks) {block_k = 8 : i64, block_q = 16 : i64}
attn.kernel @blocks(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %blocks: !attn.tensor<i1[B, H, NB, MB]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.sparse_softmax %q, %k, %v block_mask(%blocks) {block_q = 16 : i64, block_k = 8 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i1[B, H, NB, MB]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// Top-k kernels take the forward's saved selection and keep block_k and
// topk; their query tiles are the pass's (no block_q).

// CHECK-LABEL: attn.kernel @selected_backward(
// CHECK-SAME: topk_blocks: !attn.tensor<f32[B, H, N, 2]>
// CHECK: attn.softmax_backward %q, %k, %v out(%o) lse(%lse) d_out(%d_o) topk_blocks(%topk_blocks) {block_k = 64 : i64, topk = 2 : i64}
attn.kernel @selected(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.sparse_softmax %q, %k, %v {block_q = 64 : i64, block_k = 64 : i64, topk = 2 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// Linear kernels: d_<o> and d_<final state> in, the initial state's and the
// gate tensor's gradients out (after dv), gate and feature regions kept.

// CHECK-LABEL: attn.kernel @gla_backward(
// CHECK-SAME: %d_o: !attn.tensor<f32[B, H, T, 8]>, %d_hT: !attn.tensor<f32[B, H, 4, 8]>) -> (d_q: {{.*}}, d_h0: !attn.tensor<f32[B, H, 4, 8]>, d_g: !attn.tensor<f32[B, H, T, 4]>)
// CHECK: attn.linear_backward %q, %k, %v initial_state(%h0) d_out(%d_o) d_final_state(%d_hT) inputs(%g) {gate_kind = #attn<gate_kind per_key_dim>}
// CHECK: attn.load %g
// CHECK: feature
attn.kernel @gla(%q: !attn.tensor<f32[B, H, T, 4]>, %k: !attn.tensor<f32[B, H, T, 4]>, %v: !attn.tensor<f32[B, H, T, 8]>, %g: !attn.tensor<f32[B, H, T, 4]>, %h0: !attn.tensor<f32[B, H, 4, 8]>) -> (o: !attn.tensor<f32[B, H, T, 8]>, hT: !attn.tensor<f32[B, H, 4, 8]>) {
  %o, %state = attn.linear %q, %k, %v initial_state(%h0) {gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 4, 8]>) -> (!attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 4, 8]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
    %x = attn.load %g[%b, %h, %t, %d] : !attn.tensor<f32[B, H, T, 4]> -> f32
    attn.yield %x : f32
  } feature {
  }
  attn.return %o, %state : !attn.tensor<f32[B, H, T, 8]>, !attn.tensor<f32[B, H, 4, 8]>
}
