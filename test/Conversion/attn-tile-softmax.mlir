// RUN: attnc-opt %s -split-input-file -attn-tile-softmax="block-q=16 block-k=8" -canonicalize | FileCheck %s
// RUN: attnc-opt %s -split-input-file -attn-tile-softmax="block-q=16 block-k=8" -canonicalize -attn-tile-to-loops -attnc-reference-pipeline | FileCheck %s --check-prefix=LLVM
// RUN: not attnc-opt %s -attn-tile-softmax="block-q=0" -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD

// Bad option values are reported while the pipeline is parsed, before any
// input is read, without pointing at the module.
// BAD: error: attn-tile-softmax needs positive block sizes
// BAD-NOT: see current operation

// The tile programs lower to the LLVM dialect on the CPU.
// LLVM-COUNT-4: llvm.func @_mlir_ciface_

// The FlashAttention-2 tile program of a causal softcapped kernel: a grid
// of 16-row query blocks; per block the Q tile, then the key blocks of 8 keys
// up to the causal diagonal (jEnd = min(m, iLast + (m - n) + 1)), carrying
// the row max m, the row sum l and the accumulator as tiles (of the block's
// rows: fewer than 16 in a last block). A block wholly
// under the diagonal (and inside the keys) takes the scores without the
// mask, the others with it. Only tiles exist: nothing of size N x M.

// CHECK-LABEL: func.func @causal(
// CHECK-SAME:    %{{[^:]*}}: memref<?xi64>) {
// CHECK:       attn_tile.grid (%[[QB:.*]], %[[H:.*]], %[[B:.*]]) heads %{{.*}} batches %{{.*}} block_rows 16 {
// CHECK:         scf.if
// CHECK:           %[[Q:.*]] = attn_tile.load %arg0[%[[B]], %[[H]], %{{.*}}] rows %{{.*}} row_dim 2 : {{.*}} -> tensor<?x16xf32>
//                  Band end from the causal mask, then the key blocks.
// CHECK:           %[[JEND:.*]] = arith.minsi
// CHECK:           %[[KEND:.*]] = arith.ceildivui %{{.*}}, %c8
// CHECK:           %[[STATE:.*]]:3 = scf.for %[[KB:.*]] = %{{.*}} to %[[KEND]] {{.*}} iter_args(%[[M:.*]] = %{{.*}}, %[[L:.*]] = %{{.*}}, %[[ACC:.*]] = %{{.*}}) -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>)
// CHECK:             %[[K:.*]] = attn_tile.load %arg1{{.*}} -> tensor<8x16xf32>
// CHECK:             %[[V:.*]] = attn_tile.load %arg2{{.*}} -> tensor<8x16xf32>
// CHECK:             %[[S:.*]] = attn_tile.dot %[[Q]], %[[K]], %{{.*}} {transpose_rhs} : tensor<?x16xf32>, tensor<8x16xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
// CHECK:             %[[FULL:.*]] = arith.andi
// CHECK:             scf.if %[[FULL]] -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>) {
//                      Full block: the score expression, no mask.
// CHECK:               attn_tile.map(%[[S]])
// CHECK-NOT:           arith.cmpi ule
// CHECK:               math.tanh
// CHECK:               attn_tile.yield
//                      m' = max(m, rowmax(S)); alpha = exp(m - m'); P; l'.
// CHECK:               attn_tile.reduce max
// CHECK:               arith.maximumf
// CHECK:               math.exp
// CHECK:               %[[P:.*]] = attn_tile.map
// CHECK:               math.exp
// CHECK:               attn_tile.reduce add %[[P]]
//                      acc' = acc * alpha + P V
// CHECK:               %[[SCALED:.*]] = attn_tile.map(%[[ACC]], %{{.*}})
// CHECK:               attn_tile.dot %[[P]], %[[V]], %[[SCALED]] : tensor<?x8xf32>, tensor<8x16xf32>, tensor<?x16xf32> -> tensor<?x16xf32>
// CHECK:             } else {
//                      Partial block: keys past the end and the mask
//                      (j + n <= i + m) first.
// CHECK:               attn_tile.map(%[[S]])
// CHECK:               arith.cmpi ult
// CHECK:               arith.cmpi ule
// CHECK:               scf.if %{{.*}} -> (f32) {
// CHECK:                 math.tanh
// CHECK:             }
//                  o = acc / l, stored for the block's rows.
// CHECK:           %[[O:.*]] = attn_tile.map(%[[STATE]]#2, %[[STATE]]#1)
// CHECK:             arith.divf
// CHECK:           attn_tile.store %[[O]], %arg3[%[[B]], %[[H]], %{{.*}}] rows %{{.*}} row_dim 2

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

// A mask with a conjunct the band analysis does not understand (a document
// id lookup) keeps the causal bound for the block range but evaluates the
// mask, reads of doc[b, i] and doc[b, j] included, on every block: no
// full-block copy.

// CHECK-LABEL: func.func @documents(
// CHECK-NOT:   attnc.sequence_offsets
// CHECK:       arith.minsi
// CHECK:       scf.for
// CHECK-NOT:     scf.if %{{.*}} -> (tensor
// CHECK:         attn_tile.map
// CHECK:           memref.load %arg3
// CHECK:           memref.load %arg3
// CHECK:         attn_tile.reduce max
// CHECK-NOT:   scf.if %{{.*}} -> (tensor
// CHECK:       return
attn.kernel @documents(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, N, 16]>, %v: !attn.tensor<f32[B, H, N, 16]>, %doc: !attn.tensor<i32[B, N]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, N, 16]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = attn.load %doc[%b, %i] : <i32[B, N]> -> index
    %1 = attn.load %doc[%b, %j] : <i32[B, N]> -> index
    %2 = arith.cmpi eq, %0, %1 : index
    %3 = arith.addi %j, %n : index
    %4 = arith.addi %i, %m : index
    %5 = arith.cmpi ule, %3, %4 : index
    %6 = arith.andi %2, %5 : i1
    attn.yield %6 : i1
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// Packed sequences: the function names its cu_seqlens parameter for the GPU
// launcher, which cannot tell it from other 1-D integer inputs by the loads.

// CHECK-LABEL: func.func @varlen(
// CHECK-SAME:    attnc.sequence_offsets = array<i64: 3>
// CHECK:         memref.load %arg3
attn.kernel @varlen(%q: !attn.tensor<bf16[T, H, 64]>, %k: !attn.tensor<bf16[T, H, 64]>, %v: !attn.tensor<bf16[T, H, 64]>, %cu: !attn.tensor<i32[S1]>) -> (o: !attn.tensor<bf16[T, H, 64]>) {
  %o = attn.softmax %q, %k, %v cu_seqlens_q(%cu) {layout = #attn<layout thd>} : (!attn.tensor<bf16[T, H, 64]>, !attn.tensor<bf16[T, H, 64]>, !attn.tensor<bf16[T, H, 64]>, !attn.tensor<i32[S1]>) -> !attn.tensor<bf16[T, H, 64]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[T, H, 64]>
}

// -----

// Block lists: the tiles are the sparsity blocks (4 x 5); the key-block loop
// runs over the first `count` entries of the query block's list (a count
// outside [0, width] is reported, status 6, and clamped); an entry that
// names no key block is reported (status 7); an entry is visited if it is
// in the band and did not appear earlier in the list, else the loop state
// passes through unchanged.

// CHECK-LABEL: func.func @lists(
// CHECK:       attn_tile.grid {{.*}} block_rows 4 {
// CHECK:         attn_tile.load %arg0{{.*}} -> tensor<?x16xf32>
//                kv_num_blocks[b, h, qb] (a checked read)
// CHECK:         scf.if %{{.*}} -> (i32)
// CHECK:         %[[RAW:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK:         arith.cmpi slt, %[[RAW]], %c0
// CHECK:         arith.cmpi sgt, %[[RAW]], %[[WIDTH:.*]] : index
// CHECK:         %[[INVALID:.*]] = arith.ori
// CHECK:         scf.if %[[INVALID]] {
// CHECK:           llvm.cmpxchg %{{.*}}, %c0_i64, %c6_i64
// CHECK:         %[[CLAMPED:.*]] = arith.minsi %[[RAW]], %[[WIDTH]]
// CHECK:         %[[COUNT:.*]] = arith.maxsi %[[CLAMPED]], %c0
// CHECK:         scf.for %[[ENTRY:.*]] = %c0{{.*}} to %[[COUNT]] {{.*}} -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>)
// CHECK:           llvm.cmpxchg %{{.*}}, %c0_i64, %c7_i64
//                  Seen before? A scan of the earlier entries.
// CHECK:           scf.for %{{.*}} = %c0{{.*}} to %[[ENTRY]] {{.*}} -> (i1)
// CHECK:           scf.if %{{.*}} -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>) {
// CHECK:             attn_tile.load %arg1{{.*}} -> tensor<5x16xf32>
// CHECK:             attn_tile.dot
//                  Not visited: the state passes through.
// CHECK:             scf.yield %arg{{[0-9]+}}, %arg{{[0-9]+}}, %arg{{[0-9]+}} : tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>
attn.kernel @lists(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %counts: !attn.tensor<i32[B, H, QB]>, %lists: !attn.tensor<i32[B, H, QB, W]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.sparse_softmax %q, %k, %v kv_num_blocks(%counts) kv_indices(%lists) {block_k = 5 : i64, block_q = 4 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i32[B, H, QB]>, !attn.tensor<i32[B, H, QB, W]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}

// -----

// Top-k selection: 16-row tiles (the pass's block-q; rows select their own
// blocks) and key tiles of the selection block (4). First the group's query
// sum, then one pass over the band's key blocks: the mean key (a dot with a
// column of ones, over the key count), each row's score against it, the row's
// eligibility from the band, and the insertion into the row's list of its 2
// best. Then the online softmax visits a block only if some row kept it,
// masking each row by its own list.

// CHECK-LABEL: func.func @topk(
// CHECK:       attn_tile.grid {{.*}} block_rows 16 {
// CHECK:         %[[Q:.*]] = attn_tile.load %arg0{{.*}} -> tensor<?x16xf32>
//                The error for more blocks than f32 numbers them exactly.
// CHECK:         arith.cmpi ugt, %{{.*}}, %c16777216
// CHECK:         %[[SUM:.*]] = scf.for {{.*}} -> (tensor<?x16xf32>) {
// CHECK:           attn_tile.load %arg0
// CHECK:           attn_tile.map
// CHECK:           arith.addf
// CHECK:         }
// CHECK:         %[[LISTS:.*]]:2 = scf.for %[[J:.*]] = {{.*}} -> (tensor<?x2xf32>, tensor<?x2xf32>) {
// CHECK:           %[[K:.*]] = attn_tile.load %arg1{{.*}} -> tensor<4x16xf32>
// CHECK:           %[[KSUM:.*]] = attn_tile.dot %{{.*}}, %[[K]], %{{.*}} {transpose_lhs} : tensor<4x1xf32>, tensor<4x16xf32>, tensor<1x16xf32> -> tensor<1x16xf32>
// CHECK:           %[[MEAN:.*]] = attn_tile.map(%[[KSUM]])
// CHECK:             arith.divf
// CHECK:           %[[PRODUCTS:.*]] = attn_tile.map(%[[SUM]], %[[MEAN]]) : (tensor<?x16xf32>, tensor<1x16xf32>) -> tensor<?x16xf32>
// CHECK:           %[[DOTS:.*]] = attn_tile.reduce add %[[PRODUCTS]]
// CHECK:           %[[SCORES:.*]] = attn_tile.map(%[[DOTS]])
// CHECK:             arith.mulf
// CHECK:           %[[CANDIDATES:.*]] = attn_tile.map(%[[DOTS]])
// CHECK:             arith.cmpi sle
// CHECK:             arith.select
// CHECK:           attn_tile.top_k_insert %{{.*}}, %{{.*}}, %[[SCORES]], %[[CANDIDATES]] : tensor<?x2xf32>, tensor<?xf32>
// CHECK:         }
// CHECK:         scf.for {{.*}} -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>) {
// CHECK:           %[[KEEPS:.*]] = attn_tile.map(%[[LISTS]]#1)
// CHECK:             arith.cmpf oeq
// CHECK:           %[[ROWS:.*]] = attn_tile.reduce max %[[KEEPS]] : tensor<?x2xf32> -> tensor<?xf32>
// CHECK:           %[[ANY:.*]] = attn_tile.reduce max %[[ROWS]] : tensor<?xf32> -> f32
// CHECK:           %[[VISIT:.*]] = arith.cmpf ogt, %[[ANY]]
// CHECK:           scf.if %[[VISIT]] -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>) {
// CHECK:             %[[S:.*]] = attn_tile.dot %[[Q]], %{{.*}} {transpose_rhs}
// CHECK:             attn_tile.map(%[[S]], %[[ROWS]])
// CHECK:               arith.cmpf ogt
// CHECK:             attn_tile.reduce max
// CHECK:           } else {
attn.kernel @topk(%q: !attn.tensor<f32[B, Hq, N, 16]>, %k: !attn.tensor<f32[B, Hk, N, 16]>, %v: !attn.tensor<f32[B, Hk, N, 16]>) -> (o: !attn.tensor<f32[B, Hq, N, 16]>) {
  %o = attn.sparse_softmax %q, %k, %v {block_k = 4 : i64, block_q = 4 : i64, topk = 2 : i64} : (!attn.tensor<f32[B, Hq, N, 16]>, !attn.tensor<f32[B, Hk, N, 16]>, !attn.tensor<f32[B, Hk, N, 16]>) -> !attn.tensor<f32[B, Hq, N, 16]> score {
  } mask {
  ^bb0(%b: index, %h: index, %i: index, %j: index, %n: index, %m: index, %qstart: index, %kstart: index):
    %0 = arith.cmpi ule, %j, %i : index
    attn.yield %0 : i1
  }
  attn.return %o : !attn.tensor<f32[B, Hq, N, 16]>
}
