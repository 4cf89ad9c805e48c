// RUN: attnc-opt %s -split-input-file -attn-tile-softmax="block-q=16 block-k=8" -canonicalize | FileCheck %s

// FlashAttention-2 tiling of a causal softcapped kernel. Only tile-sized
// buffers exist (a 16x8 score tile, Q/K/V tiles staged as f32, one row's dot
// products, a 16xDv accumulator, row max and sum); the key blocks of a query
// block stop at the causal diagonal (jEnd = min(m, iLast + (m - n) + 1)); a
// block wholly under the diagonal runs the tile without the mask, the others
// with it. The matmuls are 8-lane vectors: q . k along the keys (K staged
// transposed), P V along Dv (V and the accumulator padded to whole vectors).

// CHECK-LABEL: func.func @causal(
// CHECK-SAME:    %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index, %[[BLOCKS:[^:]*]]: index)
// CHECK-SAME:    attnc.cpu_row_block = 16 : i64
// CHECK:       %[[TILE:.*]] = memref.alloc() : memref<16x8xf32>
//              Staged Q, K transposed, V, the row's dots, the accumulator.
// CHECK:       memref.alloc(%{{.*}}) : memref<16x?xf32>
// CHECK:       memref.alloc(%{{.*}}) : memref<?x8xf32>
// CHECK:       memref.alloc(%{{.*}}) : memref<8x?xf32>
// CHECK:       memref.alloc() : memref<8xf32>
// CHECK:       %[[ACC:.*]] = memref.alloc(%{{.*}}) : memref<16x?xf32>
// CHECK:       %[[MAX:.*]] = memref.alloc() : memref<16xf32>
// CHECK:       %[[SUM:.*]] = memref.alloc() : memref<16xf32>
// CHECK-NOT:   memref.alloc
//              One loop over this call's share of the (b, h, query block)
//              grid; a block past its sequence's end does nothing.
// CHECK:       %[[PERBATCH:.*]] = arith.muli %{{.*}}, %[[BLOCKS]]
// CHECK:       scf.for %[[ITEM:.*]] = %{{.*}} to %{{.*}} step %c1 {
// CHECK:         %[[REST:.*]] = arith.remui %[[ITEM]], %[[PERBATCH]]
// CHECK:         %[[B:.*]] = arith.divui %[[ITEM]], %[[PERBATCH]]
// CHECK:         %[[H:.*]] = arith.divui %[[REST]], %[[BLOCKS]]
// CHECK:         %[[QB:.*]] = arith.remui %[[REST]], %[[BLOCKS]]
// CHECK:         %[[QBLOCKS:.*]] = arith.ceildivui %{{.*}}, %c16
// CHECK:         %[[INSIDE:.*]] = arith.cmpi ult, %[[QB]], %[[QBLOCKS]]
// CHECK:         scf.if %[[INSIDE]] {
//                    Band end from the causal mask, then the key blocks.
// CHECK:             %[[JEND:.*]] = arith.minsi
// CHECK:             %[[KEND:.*]] = arith.ceildivui %{{.*}}, %c8
// CHECK:             scf.for %[[KB:.*]] = %{{.*}} to %[[KEND]]
// CHECK:               %[[FULL:.*]] = arith.cmpi sle
// CHECK:               scf.if %[[FULL]] {
//                        Full block: q . k for 8 keys at a time, then the
//                        score expression but no mask.
// CHECK:                 vector.fma {{.*}} : vector<8xf32>
// CHECK-NOT:             arith.cmpi ule
// CHECK:                 math.tanh
//                        m' = max(m, rowmax(S)); alpha = exp(m - m')
// CHECK:                 arith.maximumf
// CHECK:                 math.exp
//                        acc = acc * alpha + P V, 8 columns at a time.
// CHECK:                 vector.load %[[ACC]]
// CHECK:                 vector.fma {{.*}} : vector<8xf32>
// CHECK:                 vector.store {{.*}}, %[[ACC]]
// CHECK:               } else {
//                        Partial block: the mask (j + n <= i + m) first.
// CHECK:                 arith.cmpi ule
// CHECK:                 math.tanh
// CHECK:               }
//                    o = acc / l
// CHECK:             arith.divf
// CHECK:       memref.dealloc %[[TILE]]

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
// mask on every block: no full-block copy.

// CHECK-LABEL: func.func @documents(
// CHECK:       arith.minsi
// CHECK-NOT:   arith.cmpi sle
// CHECK:       scf.for
// CHECK:         memref.load %arg3
// CHECK-NOT:   arith.cmpi sle
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

// Block lists: the key-block loop runs over the first min(count, width)
// entries of the query block's list; an entry is visited if it is in the band
// and did not appear earlier in the list.

// CHECK-LABEL: func.func @lists(
// CHECK:       memref.alloc() : memref<4x5xf32>
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           scf.for %[[QB:.*]] =
//                    count = min(kv_num_blocks[b, h, qb] (a checked read), width)
// CHECK:             scf.if %{{.*}} -> (i32)
// CHECK:             %[[COUNT:.*]] = arith.minsi
// CHECK:             scf.for %[[ENTRY:.*]] = %c0 to %[[COUNT]]
//                      Seen before? A scan of the earlier entries.
// CHECK:               scf.for %{{.*}} = %c0 to %[[ENTRY]] {{.*}} -> (i1)
// CHECK:               scf.if
attn.kernel @lists(%q: !attn.tensor<f32[B, H, N, 16]>, %k: !attn.tensor<f32[B, H, M, 16]>, %v: !attn.tensor<f32[B, H, M, 16]>, %counts: !attn.tensor<i32[B, H, QB]>, %lists: !attn.tensor<i32[B, H, QB, W]>) -> (o: !attn.tensor<f32[B, H, N, 16]>) {
  %o = attn.sparse_softmax %q, %k, %v kv_num_blocks(%counts) kv_indices(%lists) {block_k = 5 : i64, block_q = 4 : i64} : (!attn.tensor<f32[B, H, N, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<f32[B, H, M, 16]>, !attn.tensor<i32[B, H, QB]>, !attn.tensor<i32[B, H, QB, W]>) -> !attn.tensor<f32[B, H, N, 16]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<f32[B, H, N, 16]>
}
