// RUN: attnc-opt %s -split-input-file -verify-diagnostics
//
// One case per verifier rule of the attn dialect.
// expected-error @+1 {{unsupported element type 'f64'}}
func.func private @bad_type(!attn.tensor<f64[N]>)

// -----

// expected-error @+1 {{result name 'q' is used more than once}}
attn.kernel @dup(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (q: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// expected-error @+1 {{result 'o' has dimension 'X' that no parameter has}}
attn.kernel @unbound(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, X, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, X, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, X, 16]>
}

// -----

// expected-error @+1 {{must hold exactly one attention op, found 0}}
attn.kernel @no_family(%q: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  attn.return %q : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @foreign_op(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{cannot appear in a kernel body}}
  %c = arith.constant 0 : index
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @ret_mismatch(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  // expected-error @+1 {{returns 1 values whose types differ from the kernel's results}}
  attn.return %k : !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @ret_param(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  // expected-error @+1 {{can only return results of the attention op}}
  attn.return %q : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @optional_q(%q: !attn.tensor<f32[B, H, N, 16]>?, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{uses optional parameter 'q'; an optional parameter can only be an initial state}}
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @load_rank(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    // expected-error @+1 {{indexes a rank-1 tensor with 2 indices}}
    %x = attn.load %slope[%h, %h] : !attn.tensor<f32[H]> -> f32
    attn.yield %x : f32
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @load_type(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    // expected-error @+1 {{loads 'f32' elements as 'f32', not 'index'}}
    %x = attn.load %slope[%h] : !attn.tensor<f32[H]> -> index
    attn.yield %s : f32
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @rank(%q: !attn.tensor<f32[B, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{q must have rank 4 [batch, heads, seq, dim], got '!attn.tensor<f32[B, N, 16]>'}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @int_q(%q: !attn.tensor<i32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{q must have f32, f16 or bf16 elements, got 'i32'}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<i32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @mixed(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f16[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{q, k and v must share one element type}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f16[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @batch(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[C, H, M, 16]>, %v: !attn.tensor<f32[C, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{the batch size of k (C) must equal the batch size of q (B)}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[C, H, M, 16]>, !attn.tensor<f32[C, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @head_dim(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 32]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{the head dim of k (32) must equal the head dim of q (16)}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 32]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @kv_len(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, L, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{the sequence length of v (L) must equal the sequence length of k (M)}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, L, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @gqa(%q: !attn.tensor<f32[B, 6, N, 16]>, %k: !attn.tensor<f32[B, 4, M, 16]>, %v: !attn.tensor<f32[B, 4, M, 16]>) -> (o: !attn.tensor<f32[B, 6, N, 16]>) {
  // expected-error @+1 {{q has 6 heads, which is not a multiple of the 4 kv heads of k and v}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, 6, N, 16]>, !attn.tensor<f32[B, 4, M, 16]>, !attn.tensor<f32[B, 4, M, 16]>) -> !attn.tensor<f32[B, 6, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, 6, N, 16]>
}

// -----

attn.kernel @out_dv(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 32]>) {
  // expected-error @+1 {{the head dim of the output (32) must equal the head dim of v (16)}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 32]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 32]>
}

// -----

attn.kernel @lse_sigmoid(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<f32[B, H, N]>) {
  // expected-error @+1 {{an lse output needs the softmax normalizer}}
  %r0, %r1 = attn.softmax %q, %k, %v {normalizer = #attn<normalizer sigmoid>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>) score {
  } mask {
  }
  attn.return %r0, %r1 : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>
}

// -----

attn.kernel @lse_shape(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<f32[B, H, M]>) {
  // expected-error @+1 {{the sequence length of lse (M) must equal the sequence length of q (N)}}
  %r0, %r1 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M]>) score {
  } mask {
  }
  attn.return %r0, %r1 : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M]>
}

// -----

attn.kernel @lse_type(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<bf16[B, H, N]>) {
  // expected-error @+1 {{lse must have 'f32' elements, got 'bf16'}}
  %r0, %r1 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<bf16[B, H, N]>) score {
  } mask {
  }
  attn.return %r0, %r1 : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<bf16[B, H, N]>
}

// -----

attn.kernel @thd_no_cu(%q: !attn.tensor<f32[T, H, 16]>, %k: !attn.tensor<f32[T, H, 16]>, %v: !attn.tensor<f32[T, H, 16]>) -> (o: !attn.tensor<f32[T, H, 16]>) {
  // expected-error @+1 {{layout thd (packed varlen) needs cu_seqlens_q}}
  %r0 = attn.softmax %q, %k, %v {layout = #attn<layout thd>} : (!attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[T, H, 16]>) -> !attn.tensor<f32[T, H, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[T, H, 16]>
}

// -----

attn.kernel @cu_dense(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %cu: !attn.tensor<i32[S]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{cu_seqlens_q is only meaningful with layout thd}}
  %r0 = attn.softmax %q, %k, %v cu_seqlens_q(%cu)  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i32[S]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @cu_type(%q: !attn.tensor<f32[T, H, 16]>, %k: !attn.tensor<f32[T, H, 16]>, %v: !attn.tensor<f32[T, H, 16]>, %cu: !attn.tensor<i8[S]>) -> (o: !attn.tensor<f32[T, H, 16]>) {
  // expected-error @+1 {{cu_seqlens_q must have 'i32' elements, got 'i8'}}
  %r0 = attn.softmax %q, %k, %v cu_seqlens_q(%cu) {layout = #attn<layout thd>} : (!attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[T, H, 16]>, !attn.tensor<i8[S]>) -> !attn.tensor<f32[T, H, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[T, H, 16]>
}

// -----

attn.kernel @region_args(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{'score' region must take 9 arguments}}
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32):
    attn.yield %s : f32
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @region_yield(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %c = arith.constant 1.0 : f32
    // expected-error @+1 {{in the 'mask' region must yield 'i1', got 'f32'}}
    attn.yield %c : f32
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @region_op(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %r0 = attn.softmax %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    // expected-error @+1 {{cannot appear in the 'score' expression}}
    %x = func.call @f(%s) : (f32) -> f32
    attn.yield %x : f32
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @sparse_none(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{needs exactly one source of sparsity}}
  %r0 = attn.sparse_softmax %q, %k, %v {block_q = 16 : i64, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @sparse_two(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %bm: !attn.tensor<i1[B, H, QB, KB]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{needs exactly one source of sparsity}}
  %r0 = attn.sparse_softmax %q, %k, %v block_mask(%bm) {block_q = 16 : i64, block_k = 16 : i64, topk = 2 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i1[B, H, QB, KB]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @sparse_float_mask(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %bm: !attn.tensor<f32[B, H, QB, KB]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{block_mask must have i1, i8 or i32 elements, got 'f32'}}
  %r0 = attn.sparse_softmax %q, %k, %v block_mask(%bm) {block_q = 16 : i64, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, QB, KB]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @sparse_half_list(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %nb: !attn.tensor<i32[B, H, QB]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{kv_num_blocks and kv_indices go together; only kv_num_blocks is given}}
  %r0 = attn.sparse_softmax %q, %k, %v kv_num_blocks(%nb) {block_q = 16 : i64, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i32[B, H, QB]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @topk_head_mask(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{top-k block selection needs a mask that does not depend on the head index h}}
  %r0 = attn.sparse_softmax %q, %k, %v {block_q = 16 : i64, block_k = 16 : i64, topk = 2 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %c = arith.cmpi ule, %h, %i : index
    attn.yield %c : i1
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_noncausal_gate(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{non-causal linear attention takes no gate}}
  %r0 = attn.linear %q, %k, %v {causal = false, gate_kind = #attn<gate_kind per_head>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
    %c = arith.constant -1.0 : f32
    attn.yield %c : f32
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_kind_none(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{has a gate expression but gate_kind none}}
  %r0 = attn.linear %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
    %c = arith.constant -1.0 : f32
    attn.yield %c : f32
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_kind_missing(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{gate_kind per_head needs a gate expression}}
  %r0 = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind per_head>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_kind_uses_t(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{gate_kind constant_per_head promises a gate that does not depend on 't', but the gate expression uses it}}
  %r0 = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind constant_per_head>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
    %i = arith.index_cast %t : index to i64
    %f = arith.sitofp %i : i64 to f32
    attn.yield %f : f32
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_state_type(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, s: !attn.tensor<bf16[B, H, 16, 16]>) {
  // expected-error @+1 {{final_state must have 'f32' elements, got 'bf16'}}
  %r0, %r1 = attn.linear %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<bf16[B, H, 16, 16]>) gate {
  } feature {
  }
  attn.return %r0, %r1 : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<bf16[B, H, 16, 16]>
}

// -----

attn.kernel @linear_state_shape(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, s: !attn.tensor<f32[B, H, 16, 8]>) {
  // expected-error @+1 {{the value dim of final_state (8) must equal the value dim of v (16)}}
  %r0, %r1 = attn.linear %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, 16, 8]>) gate {
  } feature {
  }
  attn.return %r0, %r1 : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, 16, 8]>
}

// -----

attn.kernel @linear_kv_len(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{the sequence length of k (M) must equal the sequence length of q (N)}}
  %r0 = attn.linear %q, %k, %v  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @scale_inf(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{scale must be finite}}
  %r0 = attn.softmax %q, %k, %v {scale = 0x7F800000 : f32} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @chunk_zero(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %r0 = attn.chunk_softmax %q, %k, %v {chunk = 0 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @partial_return(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>) score {
  } mask {
  }
  // expected-error @+1 {{must return every result of the attention op}}
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @lists_qb(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %nb: !attn.tensor<i32[B, H, QB]>, %idx: !attn.tensor<i32[B, H, QC, W]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{the query block count of kv_indices (QC) must equal the query block count of kv_num_blocks (QB)}}
  %r0 = attn.sparse_softmax %q, %k, %v kv_num_blocks(%nb) kv_indices(%idx) {block_q = 16 : i64, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i32[B, H, QB]>, !attn.tensor<i32[B, H, QC, W]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @lse_packed(%q: !attn.tensor<f32[T, H, 16]>, %k: !attn.tensor<f32[T, H, 16]>, %v: !attn.tensor<f32[T, H, 16]>, %cu: !attn.tensor<i32[S]>) -> (o: !attn.tensor<f32[T, H, 16]>, lse: !attn.tensor<f32[S, H, T]>) {
  // expected-error @+1 {{lse must have rank 2 [heads, total_tokens]}}
  %r0, %r1 = attn.softmax %q, %k, %v cu_seqlens_q(%cu) {layout = #attn<layout thd>} : (!attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[T, H, 16]>, !attn.tensor<i32[S]>) -> (!attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[S, H, T]>) score {
  } mask {
  }
  attn.return %r0, %r1 : !attn.tensor<f32[T, H, 16]>, !attn.tensor<f32[S, H, T]>
}

// -----

attn.kernel @linear_per_head_d(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{gate_kind per_head promises a gate that does not depend on 'd', but the gate expression uses it}}
  %r0 = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind per_head>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
    %i = arith.index_cast %d : index to i64
    %f = arith.sitofp %i : i64 to f32
    attn.yield %f : f32
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_initial_shape(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>, %h0: !attn.tensor<f32[B, H, 8, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{the key dim of initial_state (8) must equal the key dim of q (16)}}
  %r0 = attn.linear %q, %k, %v initial_state(%h0)  : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, 8, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// A fixed size of 0 would divide by zero in tile and grid computations.
// expected-error @+1 {{fixed dimension sizes must be positive, got 0}}
attn.kernel @zero_head_dim(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 0]>) -> (o: !attn.tensor<f32[B, H, N, 0]>) {
}

// -----

attn.kernel @topk_too_many(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{attribute 'topk' failed to satisfy constraint}}
  %r0 = attn.sparse_softmax %q, %k, %v {block_q = 16 : i64, block_k = 16 : i64, topk = 1073741824 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @block_too_large(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{attribute 'block_k' failed to satisfy constraint}}
  %r0 = attn.sparse_softmax %q, %k, %v {block_q = 16 : i64, block_k = 65536 : i64, topk = 2 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @linear_chunk_too_large(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  // expected-error @+1 {{attribute 'chunk' failed to satisfy constraint}}
  %r0 = attn.linear %q, %k, %v {chunk = 100000 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> gate {
  } feature {
  }
  attn.return %r0 : !attn.tensor<f32[B, H, N, 16]>
}

// -----

attn.kernel @backward_without_lse(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %o: !attn.tensor<f32[B, H, N, 16]>, %do: !attn.tensor<f32[B, H, N, 16]>) -> (dq: !attn.tensor<f32[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>) {
  // expected-error @+1 {{needs the forward's lse with the softmax normalizer}}
  %dq, %dk, %dv = attn.softmax_backward %q, %k, %v out(%o) d_out(%do) : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) score {
  } mask {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @backward_wrong_dq(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %o: !attn.tensor<f32[B, H, N, 16]>, %do: !attn.tensor<f32[B, H, N, 16]>) -> (dq: !attn.tensor<bf16[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>) {
  // expected-error @+1 {{dq, dk and dv must have the types of q, k and v}}
  %dq, %dk, %dv = attn.softmax_backward %q, %k, %v out(%o) d_out(%do) {normalizer = #attn<normalizer none>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> (!attn.tensor<bf16[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) score {
  } mask {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<bf16[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @backward_missing_input(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %slope: !attn.tensor<f32[H]>, %o: !attn.tensor<f32[B, H, N, 16]>, %do: !attn.tensor<f32[B, H, N, 16]>) -> (dq: !attn.tensor<f32[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>) {
  // expected-error @+1 {{inputs must be the 1 floating-point tensors the score expression reads, in the order it first reads them}}
  %dq, %dk, %dv = attn.softmax_backward %q, %k, %v out(%o) d_out(%do) {normalizer = #attn<normalizer none>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) score {
  ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qs: index, %ks: index):
    %x = attn.load %slope[%h] : !attn.tensor<f32[H]> -> f32
    attn.yield %x : f32
  } mask {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @backward_blocks_without_sizes(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %blocks: !attn.tensor<i1[B, H, NB, MB]>, %o: !attn.tensor<f32[B, H, N, 16]>, %do: !attn.tensor<f32[B, H, N, 16]>) -> (dq: !attn.tensor<f32[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>) {
  // expected-error @+1 {{needs block_q and block_k exactly when it has a block_mask or block lists, and block_k alone with topk_blocks}}
  %dq, %dk, %dv = attn.softmax_backward %q, %k, %v out(%o) d_out(%do) block_mask(%blocks) {normalizer = #attn<normalizer none>} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<i1[B, H, NB, MB]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) score {
  } mask {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @backward_blocks_rank(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %blocks: !attn.tensor<i1[B, H, NB]>, %o: !attn.tensor<f32[B, H, N, 16]>, %do: !attn.tensor<f32[B, H, N, 16]>) -> (dq: !attn.tensor<f32[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>) {
  // expected-error @+1 {{block_mask must have rank 4 [batch, heads, query_blocks, key_blocks]}}
  %dq, %dk, %dv = attn.softmax_backward %q, %k, %v out(%o) d_out(%do) block_mask(%blocks) {normalizer = #attn<normalizer none>, block_q = 16 : i64, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<i1[B, H, NB]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) score {
  } mask {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @topk_blocks_width(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<f32[B, H, N]>, topk_blocks: !attn.tensor<f32[B, H, N, 3]>) {
  // expected-error @+1 {{topk_blocks must have 2 entries per row (topk), got 3}}
  %o, %lse, %sel = attn.sparse_softmax %q, %k, %v {block_q = 16 : i64, block_k = 16 : i64, topk = 2 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>, !attn.tensor<f32[B, H, N, 3]>) score {
  } mask {
  }
  attn.return %o, %lse, %sel : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>, !attn.tensor<f32[B, H, N, 3]>
}

// -----

attn.kernel @selection_without_topk(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %bm: !attn.tensor<i1[B, H, QB, KB]>) -> (o: !attn.tensor<f32[B, H, N, 16]>, lse: !attn.tensor<f32[B, H, N]>, sel: !attn.tensor<f32[B, H, N, 2]>) {
  // expected-error @+1 {{has at most 2 results here: out, lse (softmax normalizer) and topk_blocks (topk), in that order; got 3}}
  %o, %lse, %sel = attn.sparse_softmax %q, %k, %v block_mask(%bm) {block_q = 16 : i64, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i1[B, H, QB, KB]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>, !attn.tensor<f32[B, H, N, 2]>) score {
  } mask {
  }
  attn.return %o, %lse, %sel : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N]>, !attn.tensor<f32[B, H, N, 2]>
}

// -----

attn.kernel @backward_selection_without_topk(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %sel: !attn.tensor<f32[B, H, N, 2]>, %o: !attn.tensor<f32[B, H, N, 16]>, %do: !attn.tensor<f32[B, H, N, 16]>) -> (dq: !attn.tensor<f32[B, H, N, 16]>, dk: !attn.tensor<f32[B, H, M, 16]>, dv: !attn.tensor<f32[B, H, M, 16]>) {
  // expected-error @+1 {{needs topk exactly when it has topk_blocks}}
  %dq, %dk, %dv = attn.softmax_backward %q, %k, %v out(%o) d_out(%do) topk_blocks(%sel) {normalizer = #attn<normalizer none>, block_k = 16 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 2]>) -> (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>) score {
  } mask {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>
}

// -----

attn.kernel @linear_backward_without_state_gradient(%q: !attn.tensor<f32[B, H, T, 4]>, %k: !attn.tensor<f32[B, H, T, 4]>, %v: !attn.tensor<f32[B, H, T, 4]>, %h0: !attn.tensor<f32[B, H, 4, 4]>, %do: !attn.tensor<f32[B, H, T, 4]>) -> (dq: !attn.tensor<f32[B, H, T, 4]>, dk: !attn.tensor<f32[B, H, T, 4]>, dv: !attn.tensor<f32[B, H, T, 4]>) {
  // expected-error @+1 {{yields 0 gradients after dv, expected 1 (the initial state's, then one per input)}}
  %dq, %dk, %dv = attn.linear_backward %q, %k, %v initial_state(%h0) d_out(%do) : (!attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, 4, 4]>, !attn.tensor<f32[B, H, T, 4]>) -> (!attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>) gate {
  } feature {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>
}

// -----

attn.kernel @linear_backward_missing_input(%q: !attn.tensor<f32[B, H, T, 4]>, %k: !attn.tensor<f32[B, H, T, 4]>, %v: !attn.tensor<f32[B, H, T, 4]>, %g: !attn.tensor<f32[H]>, %do: !attn.tensor<f32[B, H, T, 4]>) -> (dq: !attn.tensor<f32[B, H, T, 4]>, dk: !attn.tensor<f32[B, H, T, 4]>, dv: !attn.tensor<f32[B, H, T, 4]>) {
  // expected-error @+1 {{inputs must be the 1 floating-point tensors the gate and feature expressions read, in the order they first read them}}
  %dq, %dk, %dv = attn.linear_backward %q, %k, %v d_out(%do) {gate_kind = #attn<gate_kind constant_per_head>} : (!attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>) -> (!attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>) gate {
  ^bb0(%b: index, %h: index, %t: index, %d: index, %ts: index):
    %x = attn.load %g[%h] : !attn.tensor<f32[H]> -> f32
    attn.yield %x : f32
  } feature {
  }
  attn.return %dq, %dk, %dv : !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>, !attn.tensor<f32[B, H, T, 4]>
}
