// RUN: attnc-opt %s -attn-derive-backward -attn-tile-linear -verify-diagnostics -o /dev/null

// Gates per key dimension (GLA) have no chunkwise backward yet.
attn.kernel @gla(%q: !attn.tensor<f32[B, H, T, 16]>, %k: !attn.tensor<f32[B, H, T, 16]>, %v: !attn.tensor<f32[B, H, T, 8]>, %g: !attn.tensor<f32[B, H, T, 16]>) -> (o: !attn.tensor<f32[B, H, T, 8]>) {
  // expected-error @below {{with one gate per key dimension (GLA) has no chunkwise backward yet (compile it for target cpu-reference)}}
  %o = attn.linear %q, %k, %v {chunk = 16 : i64, gate_kind = #attn<gate_kind per_key_dim>} : (!attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 16]>, !attn.tensor<f32[B, H, T, 8]>) -> !attn.tensor<f32[B, H, T, 8]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %tstart: index):
    %0 = attn.load %g[%b, %h, %t, %d] : <f32[B, H, T, 16]> -> f32
    attn.yield %0 : f32
  } feature {
  }
  attn.return %o : !attn.tensor<f32[B, H, T, 8]>
}
