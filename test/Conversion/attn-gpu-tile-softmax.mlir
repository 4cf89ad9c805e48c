// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="warps=1 block-k=16" -canonicalize -verify-diagnostics | FileCheck %s

// FlashAttention-2 on tensor cores for a causal bf16 kernel with lse, one
// warp (16 query rows) per CTA and 16-key tiles. Shared memory holds the Q
// tile and two stages of K and V (rows padded to 40 elements); the
// next key block is copied with cp.async while the current one is used;
// S = Q K^T and acc += P V are mma.sync on ldmatrix fragments; row
// statistics are reduced over the quad with xor shuffles. No buffer of
// N x M (nor any memref.alloc) exists.

// CHECK-LABEL: gpu.module @attnc_kernels
// CHECK:       gpu.func @causal(
// CHECK-SAME:    threads = 32
// CHECK-SAME:    sharedBytes = 6400
// CHECK-SAME:    grid = [array<i64: 0, 2, 16, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK-SAME:    copiedParams = [0, 1, 2]
// CHECK-SAME:    offsetParams = []
// CHECK-SAME:    headDim = 1
// CHECK-SAME:    known_block_size = array<i32: 32, 1, 1>
// CHECK-NOT:   memref.alloc
// CHECK-DAG:   %[[SCALE_LOG2E:.*]] = arith.constant 0.255034864 : f32
// CHECK-DAG:   %[[SCALE:.*]] = arith.constant 0.176776692 : f32
// CHECK:       memref.view {{.*}} to memref<16x40xbf16, #gpu.address_space<workgroup>>
// CHECK:       memref.view {{.*}} to memref<2x16x40xbf16, #gpu.address_space<workgroup>>
// CHECK:       memref.view {{.*}} to memref<2x16x40xbf16, #gpu.address_space<workgroup>>
//              Prologue: Q and the first key block, then wait and barrier.
// CHECK:       nvgpu.device_async_copy {{.*}}, 8, %{{.*}} {bypassL1}
// CHECK:       nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
// CHECK-NEXT:  gpu.barrier
//              Q fragments (A operands) stay in registers.
// CHECK:       nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<16x40xbf16
// CHECK:       scf.for
//              Prefetch of the next key block into the other stage.
// CHECK:         scf.if
// CHECK:           nvgpu.device_async_copy
// CHECK:           nvgpu.device_async_create_group
//              Full tile (no mask) or partial tile (mask applied).
// CHECK:         scf.if %{{.*}} -> (f32, f32, f32, f32
// CHECK:           nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<2x16x40xbf16
// CHECK:           nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>
//              No score expression: the scale 1/sqrt(32) is not applied per
//              score but to the row max, and folded with log2 e into each
//              weight's exponent FMA.
// CHECK-NOT:       arith.mulf
// CHECK:           gpu.shuffle  xor %{{.*}}, %c1_i32, %c32_i32
// CHECK:           gpu.shuffle  xor %{{.*}}, %c2_i32, %c32_i32
// CHECK:           arith.mulf %{{.*}}, %[[SCALE]] : f32
// CHECK:           math.fma %{{.*}}, %[[SCALE_LOG2E]], %{{.*}} : f32
// CHECK:           math.exp2
// CHECK:           arith.truncf {{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK:           nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true}
// CHECK:           nvvm.mma.sync
// CHECK:         } else {
// CHECK:           arith.cmpi ule
// CHECK:           arith.select
// CHECK:         nvgpu.device_async_wait
// CHECK-NEXT:    gpu.barrier
//              Epilogue: l over the quad, o = acc / l, lse from lane t = 0.
// CHECK:       gpu.shuffle  xor
// CHECK:       arith.divf
// CHECK:       memref.store {{.*}} : memref<?x?x?x?xbf16
// CHECK:       memref.store {{.*}} : memref<?x?x?xf32
// CHECK:       gpu.return
  attn.kernel @causal(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>, lse: !attn.tensor<f32[B, H, N]>) {
    %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<f32[B, H, N]>) score {
    } mask {
    ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
      %0 = arith.addi %j, %n : index
      %1 = arith.addi %i, %m : index
      %2 = arith.cmpi ule, %0, %1 : index
      attn.yield %2 : i1
    }
    attn.return %o, %lse : !attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<f32[B, H, N]>
  }

// -----

// Kernels the strategy cannot handle are errors that name the feature.
// expected-error @+1 {{kernel 'narrow' cannot run on the GPU: head dims must be multiples of 16 up to 256 on the GPU (got 20 and 20)}}
attn.kernel @narrow(%q: !attn.tensor<f32[B, H, N, 20]>, %k: !attn.tensor<f32[B, H, N, 20]>, %v: !attn.tensor<f32[B, H, N, 20]>) -> (o: !attn.tensor<f32[B, H, N, 20]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 20]>, !attn.tensor<f32[B, H, N, 20]>, !attn.tensor<f32[B, H, N, 20]>) -> !attn.tensor<f32[B, H, N, 20]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 20]>
}

// -----

// expected-error @+1 {{kernel 'symbolic' cannot run on the GPU: the head dims of q and v must be fixed numbers on the GPU}}
attn.kernel @symbolic(%q: !attn.tensor<bf16[B, H, N, D]>, %k: !attn.tensor<bf16[B, H, N, D]>, %v: !attn.tensor<bf16[B, H, N, D]>) -> (o: !attn.tensor<bf16[B, H, N, D]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, D]>, !attn.tensor<bf16[B, H, N, D]>, !attn.tensor<bf16[B, H, N, D]>) -> !attn.tensor<bf16[B, H, N, D]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, D]>
}

// -----

// A load in the score expression that depends only on b and h (ALiBi's
// slope[h]) is read once per CTA, before the key-block loop, not once per
// score element.

// CHECK-LABEL: gpu.func @alibi(
// CHECK-NOT:   scf.for
// CHECK:       memref.load %arg3[%{{.*}}] : memref<?xf32, strided<[?], offset: ?>>
// CHECK:       scf.for
  attn.kernel @alibi(%q: !attn.tensor<bf16[B, Hq, N, 64]>, %k: !attn.tensor<bf16[B, Hk, M, 64]>, %v: !attn.tensor<bf16[B, Hk, M, 64]>, %slope: !attn.tensor<f32[Hq]>) -> (o: !attn.tensor<bf16[B, Hq, N, 64]>, lse: !attn.tensor<f32[B, Hq, N]>) {
    %o, %lse = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<bf16[B, Hk, M, 64]>, !attn.tensor<bf16[B, Hk, M, 64]>) -> (!attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>) score {
    ^bb0(%s: f32, %b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
      %0 = attn.load %slope[%h] : <f32[Hq]> -> f32
      %1 = arith.subi %i, %j : index
      %2 = arith.index_cast %1 : index to i64
      %3 = arith.sitofp %2 : i64 to f32
      %4 = arith.mulf %0, %3 : f32
      %5 = arith.subf %s, %4 : f32
      attn.yield %5 : f32
    } mask {
    ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
      %0 = arith.addi %j, %n : index
      %1 = arith.addi %i, %m : index
      %2 = arith.cmpi ule, %0, %1 : index
      attn.yield %2 : i1
    }
    attn.return %o, %lse : !attn.tensor<bf16[B, Hq, N, 64]>, !attn.tensor<f32[B, Hq, N]>
  }

// -----

// Top-k selection: one pass over the band's key blocks scores each against
// every row (the block copied with cp.async, its mean key in shared memory),
// each row keeps its 2 best blocks in shared memory, and the union is marked
// in a bitmap with shared-memory atomics. The key loop then visits only
// marked blocks (a scan for the next one) and masks per row. Shared memory:
// Q, two stages of K and V (16 x 40 bf16 each), then per row the query sum
// (32 f32), 2 scores, 2 blocks and a count, the mean key and the bitmap of
// 32768 bits: 1280 + 4 * 1280 + 16 * 128 + 128 + 16 * 20 + 4096 = 12992.

// CHECK-LABEL: gpu.func @topk(
// CHECK-SAME:    sharedBytes = 12992
//              Selection: per key block of the band, copy, mean, score, insert.
// CHECK:       scf.for
// CHECK:         nvgpu.device_async_copy
// CHECK:         arith.divf
// CHECK:         arith.cmpf oge
// CHECK:       memref.atomic_rmw ori {{.*}} : (i32, memref<1024xi32, #gpu.address_space<workgroup>>) -> i32
//              Attention over the marked blocks.
// CHECK:       scf.while
// CHECK:       scf.for
// CHECK:         nvvm.mma.sync
  attn.kernel @topk(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, M, 32]>, %v: !attn.tensor<bf16[B, H, M, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
    %o = attn.sparse_softmax %q, %k, %v {block_k = 16 : i64, block_q = 16 : i64, topk = 2 : i64} : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, M, 32]>, !attn.tensor<bf16[B, H, M, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
    } mask {
    ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
      %0 = arith.cmpi ule, %j, %i : index
      attn.yield %0 : i1
    }
    attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
  }

// -----

// attnc-nvgpu-to-emulator turns the same kernel into a host function for
// the CPU warp emulator: shared memory is a trailing argument and the warp
// primitives are calls.
// RUN: attnc-opt %s -split-input-file -attn-gpu-tile-softmax="warps=1 block-k=16" -attnc-nvgpu-to-emulator -verify-diagnostics | FileCheck %s --check-prefix=EMU

// EMU-LABEL: func.func private @attnc_emu_
// EMU:       func.func @emulated(
// EMU-SAME:    %{{.*}}: memref<?xi64>, %[[SHARED:.*]]: memref<?xi8>)
// EMU-SAME:    llvm.emit_c_interface
// EMU:       call @attnc_emu_thread_id()
// EMU:       memref.view %[[SHARED]]
// EMU:       call @attnc_emu_barrier()
// EMU:       call @attnc_emu_ldmatrix(
// EMU:       call @attnc_emu_mma(
// EMU:       call @attnc_emu_shfl_xor(
// EMU-NOT:   nvgpu.
// EMU-NOT:   nvvm.
attn.kernel @emulated(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, N, 32]>, %v: !attn.tensor<bf16[B, H, N, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, N, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}
