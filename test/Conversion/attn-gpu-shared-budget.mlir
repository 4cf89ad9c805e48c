// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="max-shared-bytes=166912" -attn-gpu-chunk-linear="max-shared-bytes=40000" -verify-diagnostics | FileCheck %s

// Both GPU strategies keep a CTA's dynamic shared memory within
// max-shared-bytes (the pipeline passes 163 KiB for sm_80, 227 KiB for
// sm_90). Dense softmax at head dim 256 halves its key tile: Q (64 x 264
// bf16, rows padded by 8) plus two stages of K and V at 64 keys would be
// 168960 bytes; at 32 keys they are 33792 + 2 * 2 * 16896 = 101376.

// CHECK-LABEL: gpu.func @wide(
// CHECK-SAME:    sharedBytes = 101376
// CHECK:       memref.view {{.*}} to memref<2x32x264xbf16, #gpu.address_space<workgroup>>
  attn.kernel @wide(%q: !attn.tensor<bf16[B, H, N, 256]>, %k: !attn.tensor<bf16[B, H, M, 256]>, %v: !attn.tensor<bf16[B, H, M, 256]>) -> (o: !attn.tensor<bf16[B, H, N, 256]>) {
    %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 256]>, !attn.tensor<bf16[B, H, M, 256]>, !attn.tensor<bf16[B, H, M, 256]>) -> !attn.tensor<bf16[B, H, N, 256]> score {
    } mask {
    }
    attn.return %o : !attn.tensor<bf16[B, H, N, 256]>
  }

// -----

// A block-sparse kernel's key tile is its sparsity block: it cannot shrink.
// expected-error @+1 {{kernel 'sparse' cannot run on the GPU: the Q, K and V tiles (128 query rows, 128 keys, head dims 256 and 256) need 337920 bytes of shared memory, more than the 166912 a CTA may use}}
  attn.kernel @sparse(%q: !attn.tensor<bf16[B, H, N, 256]>, %k: !attn.tensor<bf16[B, H, M, 256]>, %v: !attn.tensor<bf16[B, H, M, 256]>, %counts: !attn.tensor<i32[B, H, QB]>, %lists: !attn.tensor<i32[B, H, QB, W]>) -> (o: !attn.tensor<bf16[B, H, N, 256]>) {
    %o = attn.sparse_softmax %q, %k, %v kv_num_blocks(%counts) kv_indices(%lists) {block_k = 128 : i64, block_q = 128 : i64} : (!attn.tensor<bf16[B, H, N, 256]>, !attn.tensor<bf16[B, H, M, 256]>, !attn.tensor<bf16[B, H, M, 256]>, !attn.tensor<i32[B, H, QB]>, !attn.tensor<i32[B, H, QB, W]>) -> !attn.tensor<bf16[B, H, N, 256]> score {
    } mask {
    }
    attn.return %o : !attn.tensor<bf16[B, H, N, 256]>
  }

// -----

// Linear kernels: Q, K and V tiles of 32 x 40, the 32 x 32 f32 state, its
// bf16 copy (where the decayed keys of the state update also live) and the
// gates with their prefix sums: 3 * 2560 + 4096 + 2560 + 2 * 128 = 14592;
// a causal kernel's segments add the CTA's ticket (16 bytes) and the log
// decay of its segment per key dim (32 * 4): 14736.

// CHECK-LABEL: gpu.func @small(
// CHECK-SAME:    sharedBytes = 14736
  attn.kernel @small(%q: !attn.tensor<bf16[B, H, T, 32]>, %k: !attn.tensor<bf16[B, H, T, 32]>, %v: !attn.tensor<bf16[B, H, T, 32]>) -> (o: !attn.tensor<bf16[B, H, T, 32]>) {
    %o = attn.linear %q, %k, %v {chunk = 32 : i64} : (!attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>, !attn.tensor<bf16[B, H, T, 32]>) -> !attn.tensor<bf16[B, H, T, 32]> gate {
    } feature {
    }
    attn.return %o : !attn.tensor<bf16[B, H, T, 32]>
  }

// -----

// Left open, block-v halves from 64 to 16 columns before the kernel is
// refused, and the message no longer suggests a smaller one.
// expected-error @+1 {{kernel 'large' cannot run on the GPU: chunks of 64 steps with head dims 128 and 128 need 64528 bytes of shared memory with block-v 16, more than the 40000 a CTA may use; use a smaller chunk}}
  attn.kernel @large(%q: !attn.tensor<bf16[B, H, T, 128]>, %k: !attn.tensor<bf16[B, H, T, 128]>, %v: !attn.tensor<bf16[B, H, T, 128]>) -> (o: !attn.tensor<bf16[B, H, T, 128]>) {
    %o = attn.linear %q, %k, %v {chunk = 64 : i64} : (!attn.tensor<bf16[B, H, T, 128]>, !attn.tensor<bf16[B, H, T, 128]>, !attn.tensor<bf16[B, H, T, 128]>) -> !attn.tensor<bf16[B, H, T, 128]> gate {
    } feature {
    }
    attn.return %o : !attn.tensor<bf16[B, H, T, 128]>
  }

// -----

// Left open, block-v halves until the tiles fit: 64 value columns per CTA
// need 53760 bytes here, 32 need 41472, 16 fit (grid x: 128 / 16 CTAs).

// CHECK-LABEL: gpu.func @halved(
// CHECK-SAME:    sharedBytes = 35600
// CHECK-SAME:    grid = [array<i64: 2, 3, 16, 0>
  attn.kernel @halved(%q: !attn.tensor<bf16[B, H, T, 64]>, %k: !attn.tensor<bf16[B, H, T, 64]>, %v: !attn.tensor<bf16[B, H, T, 128]>) -> (o: !attn.tensor<bf16[B, H, T, 128]>) {
    %o = attn.linear %q, %k, %v {chunk = 64 : i64} : (!attn.tensor<bf16[B, H, T, 64]>, !attn.tensor<bf16[B, H, T, 64]>, !attn.tensor<bf16[B, H, T, 128]>) -> !attn.tensor<bf16[B, H, T, 128]> gate {
    } feature {
    }
    attn.return %o : !attn.tensor<bf16[B, H, T, 128]>
  }
