// RUN: attnc-opt %s -split-input-file | attnc-opt -split-input-file | FileCheck %s
//
// Round trip of every attn_tile op.

!Src = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>
!Lse = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// CHECK-LABEL: func.func @program(
func.func @program(%q: !Src, %k: !Src, %o: !Src, %lse: !Lse, %heads: index, %batches: index, %rows: index) {
  // CHECK: attn_tile.grid (%[[QB:.*]], %[[H:.*]], %[[B:.*]]) heads %{{.*}} batches %{{.*}} block_rows 64 {
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 64 {
    %c0 = arith.constant 0 : index
    // CHECK: attn_tile.load %{{.*}}[%[[B]], %[[H]], %{{.*}}] rows %{{.*}} row_dim 2 : {{.*}} -> tensor<64x64xbf16>
    %qt = attn_tile.load %q[%b, %h, %c0] rows %rows row_dim 2 : !Src -> tensor<64x64xbf16>
    %kt = attn_tile.load %k[%b, %h, %c0] rows %rows row_dim 2 : !Src -> tensor<32x64xbf16>
    %zero = arith.constant 0.0 : f32
    %acc = tensor.splat %zero : tensor<64x32xf32>
    // CHECK: attn_tile.dot %{{.*}}, %{{.*}}, %{{.*}} {transpose_rhs} : tensor<64x64xbf16>, tensor<32x64xbf16>, tensor<64x32xf32> -> tensor<64x32xf32>
    %s = attn_tile.dot %qt, %kt, %acc {transpose_rhs} : tensor<64x64xbf16>, tensor<32x64xbf16>, tensor<64x32xf32> -> tensor<64x32xf32>
    // CHECK: attn_tile.reduce max %{{.*}} : tensor<64x32xf32> -> tensor<64xf32>
    %max = attn_tile.reduce max %s : tensor<64x32xf32> -> tensor<64xf32>
    // CHECK: attn_tile.map(%{{.*}}, %{{.*}}) : (tensor<64x32xf32>, tensor<64xf32>) -> tensor<64x32xf32> {
    // CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %{{.*}}: f32, %{{.*}}: f32):
    // CHECK: attn_tile.yield %{{.*}} : f32
    %p = attn_tile.map (%s, %max) : (tensor<64x32xf32>, tensor<64xf32>) -> tensor<64x32xf32> {
    ^bb0(%r: index, %c: index, %sv: f32, %mv: f32):
      %d = arith.subf %sv, %mv : f32
      %e = math.exp %d : f32
      attn_tile.yield %e : f32
    }
    // CHECK: attn_tile.reduce add
    %sum = attn_tile.reduce add %p : tensor<64x32xf32> -> tensor<64xf32>
    %vt = attn_tile.load %k[%b, %h, %c0] rows %rows row_dim 2 : !Src -> tensor<32x64xbf16>
    %acc2 = tensor.splat %zero : tensor<64x64xf32>
    // CHECK: attn_tile.dot %{{.*}}, %{{.*}}, %{{.*}} : tensor<64x32xf32>, tensor<32x64xbf16>, tensor<64x64xf32> -> tensor<64x64xf32>
    %out = attn_tile.dot %p, %vt, %acc2 : tensor<64x32xf32>, tensor<32x64xbf16>, tensor<64x64xf32> -> tensor<64x64xf32>
    // CHECK: attn_tile.store %{{.*}}, %{{.*}}[%[[B]], %[[H]], %{{.*}}] rows %{{.*}} row_dim 2 : tensor<64x64xf32> -> memref
    attn_tile.store %out, %o[%b, %h, %c0] rows %rows row_dim 2 : tensor<64x64xf32> -> !Src
    // A block of columns: the position's last index is its first column.
    // CHECK: attn_tile.store %{{.*}}, %{{.*}}[%[[B]], %[[H]], %{{.*}}, %{{.*}}] rows %{{.*}} row_dim 2 : tensor<64x32xf32> -> memref
    attn_tile.store %p, %o[%b, %h, %c0, %c0] rows %rows row_dim 2 : tensor<64x32xf32> -> !Src
    // CHECK: attn_tile.store %{{.*}}, %{{.*}}[%[[B]], %[[H]], %{{.*}}] rows %{{.*}} row_dim 2 : tensor<64xf32> -> memref
    attn_tile.store %sum, %lse[%b, %h, %c0] rows %rows row_dim 2 : tensor<64xf32> -> !Lse
    // CHECK: attn_tile.query_blocks
    %stride = attn_tile.query_blocks
  }
  return
}

// -----

// Head dims unknown at compile time (CPU only).
// CHECK-LABEL: func.func @dynamic_head_dim(
func.func @dynamic_head_dim(%q: memref<?x?x?xf32>, %rows: index, %d: index) {
  %c0 = arith.constant 0 : index
  // CHECK: attn_tile.load {{.*}} -> tensor<16x?xf32>
  %t = attn_tile.load %q[%c0, %c0] rows %rows row_dim 0 : memref<?x?x?xf32> -> tensor<16x?xf32>
  %one = arith.constant 1.0 : f32
  %u = tensor.splat %one[%d] : tensor<16x?xf32>
  // CHECK: attn_tile.map(%{{.*}}, %{{.*}}) : (tensor<16x?xf32>, tensor<16x?xf32>) -> tensor<16x?xf32>
  %w = attn_tile.map (%t, %u) : (tensor<16x?xf32>, tensor<16x?xf32>) -> tensor<16x?xf32> {
  ^bb0(%r: index, %c: index, %a: f32, %b: f32):
    %x = arith.addf %a, %b : f32
    attn_tile.yield %x : f32
  }
  return
}

// -----

// The ops of chunkwise linear programs: a grid per sequence, cumulative
// gates, rows of a tile, broadcasts of one row or column, transposed dots
// and the decayed intra-chunk scores.
// CHECK-LABEL: func.func @linear_ops(
func.func @linear_ops(%heads: index, %batches: index, %g: tensor<64x16xf32>,
                      %k: tensor<64x16xbf16>, %v: tensor<64x32xbf16>,
                      %s: tensor<16x32xf32>, %q: tensor<?x16xf32>, %n: index) {
  // CHECK: attn_tile.grid (%{{.*}}, %{{.*}}, %{{.*}}) heads %{{.*}} batches %{{.*}} block_rows 64 per_sequence {
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 64 per_sequence {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c63 = arith.constant 63 : index
    // CHECK: attn_tile.scan add %{{.*}} : tensor<64x16xf32>
    %cum = attn_tile.scan add %g : tensor<64x16xf32>
    // CHECK: attn_tile.slice %{{.*}}[%{{.*}}] rows %{{.*}} : tensor<64x16xf32> -> tensor<1x16xf32>
    %last = attn_tile.slice %cum[%c63] rows %c1 : tensor<64x16xf32> -> tensor<1x16xf32>
    // CHECK: attn_tile.transpose %{{.*}} : tensor<1x16xf32> -> tensor<16x1xf32>
    %col = attn_tile.transpose %last : tensor<1x16xf32> -> tensor<16x1xf32>
    // CHECK: attn_tile.map(%{{.*}}, %{{.*}}) : (tensor<16x32xf32>, tensor<16x1xf32>) -> tensor<16x32xf32>
    %decayed = attn_tile.map (%s, %col) : (tensor<16x32xf32>, tensor<16x1xf32>) -> tensor<16x32xf32> {
    ^bb0(%r: index, %c: index, %x: f32, %gl: f32):
      %e = math.exp %gl : f32
      %y = arith.mulf %x, %e : f32
      attn_tile.yield %y : f32
    }
    // CHECK: attn_tile.dot %{{.*}}, %{{.*}}, %{{.*}} {transpose_lhs} : tensor<64x16xbf16>, tensor<64x32xbf16>, tensor<16x32xf32> -> tensor<16x32xf32>
    %state = attn_tile.dot %k, %v, %decayed {transpose_lhs} : tensor<64x16xbf16>, tensor<64x32xbf16>, tensor<16x32xf32> -> tensor<16x32xf32>
    %rows = attn_tile.slice %cum[%c0] rows %n : tensor<64x16xf32> -> tensor<?x16xf32>
    %kf = attn_tile.map (%k) : (tensor<64x16xbf16>) -> tensor<64x16xf32> {
    ^bb0(%r: index, %c: index, %x: bf16):
      %y = arith.extf %x : bf16 to f32
      attn_tile.yield %y : f32
    }
    %zero = arith.constant 0.0 : f32
    %acc = tensor.splat %zero[%n] : tensor<?x64xf32>
    // CHECK: attn_tile.decay_dot %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<64x16xf32>, tensor<?x16xf32>, tensor<64x16xf32>, tensor<?x64xf32> -> tensor<?x64xf32>
    %a = attn_tile.decay_dot %q, %kf, %rows, %cum, %acc : tensor<?x16xf32>, tensor<64x16xf32>, tensor<?x16xf32>, tensor<64x16xf32>, tensor<?x64xf32> -> tensor<?x64xf32>
    // The backward's pieces: sums from each row on, before it, and rows of
    // keys mixed by weights under their column's decay.
    // CHECK: attn_tile.scan add %{{.*}} {exclusive, reverse} : tensor<64x16xf32>
    %later = attn_tile.scan add %g {reverse, exclusive} : tensor<64x16xf32>
    %w = tensor.splat %zero : tensor<64x64xf32>
    %acc2 = tensor.splat %zero : tensor<64x16xf32>
    // CHECK: attn_tile.decay_combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {upper_triangular} : tensor<64x64xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<64x16xf32> -> tensor<64x16xf32>
    %dk = attn_tile.decay_combine %w, %kf, %cum, %cum, %acc2 {upper_triangular} : tensor<64x64xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<64x16xf32> -> tensor<64x16xf32>
    // Each row's own diagonal block of 16 only.
    // CHECK: attn_tile.decay_combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {diagonal_block = 16 : i64, lower_triangular}
    %dq = attn_tile.decay_combine %w, %kf, %cum, %cum, %acc2 {lower_triangular, diagonal_block = 16} : tensor<64x64xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<64x16xf32> -> tensor<64x16xf32>
  }
  return
}

// -----

// Top-k selection: per-row lists of the k best blocks, and a reduction of a
// row vector to one scalar.
// CHECK-LABEL: func.func @top_k(
func.func @top_k(%scores: tensor<?x4xf32>, %blocks: tensor<?x4xf32>,
                 %score: tensor<?xf32>, %block: tensor<?xf32>) -> f32 {
  // CHECK: %{{.*}}, %{{.*}} = attn_tile.top_k_insert %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x4xf32>, tensor<?xf32>
  %best:2 = attn_tile.top_k_insert %scores, %blocks, %score, %block : tensor<?x4xf32>, tensor<?xf32>
  // CHECK: attn_tile.reduce max %{{.*}} : tensor<?x4xf32> -> tensor<?xf32>
  %rows = attn_tile.reduce max %best#1 : tensor<?x4xf32> -> tensor<?xf32>
  // CHECK: attn_tile.reduce max %{{.*}} : tensor<?xf32> -> f32
  %any = attn_tile.reduce max %rows : tensor<?xf32> -> f32
  return %any : f32
}

// -----

// A deterministic scatter-add, one index tile per destination dim.
// CHECK-LABEL: func.func @scatter(
func.func @scatter(%values: tensor<4x8xf32>, %rows: tensor<4x8xf32>, %cols: tensor<4x8xf32>, %dest: memref<?x?xf32, strided<[?, ?], offset: ?>>) {
  // CHECK: attn_tile.scatter_add %{{.*}}, %{{.*}}, %{{.*}} into %{{.*}} : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32> -> memref<?x?xf32, strided<[?, ?], offset: ?>>
  attn_tile.scatter_add %values, %rows, %cols into %dest : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32> -> memref<?x?xf32, strided<[?, ?], offset: ?>>
  return
}
