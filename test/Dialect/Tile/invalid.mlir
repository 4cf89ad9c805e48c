// RUN: attnc-opt %s -split-input-file -verify-diagnostics
//
// One case per verifier rule of the attn_tile dialect.

func.func @grid_rows(%n: index) {
  // expected-error @+1 {{block_rows must be positive, got 0}}
  attn_tile.grid (%qb, %h, %b) heads %n batches %n block_rows 0 {
  }
  return
}

// -----

func.func @load_element(%q: memref<?x?xf32>, %rows: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{tile element type 'bf16' differs from the memref's 'f32'}}
  %t = attn_tile.load %q[%c0] rows %rows row_dim 0 : memref<?x?xf32> -> tensor<16x8xbf16>
  return
}

// -----

func.func @load_positions(%q: memref<?x?x?xf32>, %rows: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{needs 2 position indices for a rank-2 tile of a rank-3 memref (or one more, its first column), got 1}}
  %t = attn_tile.load %q[%c0] rows %rows row_dim 0 : memref<?x?x?xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @load_row_dim(%q: memref<?x?xf32>, %rows: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{row_dim 1 is not one of the 1 position dimensions}}
  %t = attn_tile.load %q[%c0] rows %rows row_dim 1 : memref<?x?xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @load_columns(%q: memref<?x64xf32>, %rows: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{tile has 32 columns but the memref's rows have 64}}
  %t = attn_tile.load %q[%c0] rows %rows row_dim 0 : memref<?x64xf32> -> tensor<16x32xf32>
  return
}

// -----

func.func @load_column_block(%q: memref<?x64xf32>, %rows: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{tile has 128 columns but the memref's rows have 64}}
  %t = attn_tile.load %q[%c0, %c0] rows %rows row_dim 0 : memref<?x64xf32> -> tensor<16x128xf32>
  return
}

// -----

func.func @load_column_count(%q: memref<?x?xf32>, %rows: index, %cols: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{tile that starts at a column needs a static column count}}
  %t = attn_tile.load %q[%c0, %c0] rows %rows row_dim 0 : memref<?x?xf32> -> tensor<16x?xf32>
  return
}

// -----

func.func @store_ints(%t: tensor<16xf32>, %o: memref<?xi32>, %rows: index) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{stores floats, not 'i32'}}
  attn_tile.store %t, %o[%c0] rows %rows row_dim 0 : tensor<16xf32> -> memref<?xi32>
  return
}

// -----

func.func @dot_depth(%a: tensor<16x32xbf16>, %b: tensor<16x16xbf16>, %c: tensor<16x16xf32>) {
  // expected-error @+1 {{lhs 16x32 and rhs (transposed) 16x16 do not share the contracted dimension}}
  %r = attn_tile.dot %a, %b, %c {transpose_rhs} : tensor<16x32xbf16>, tensor<16x16xbf16>, tensor<16x16xf32> -> tensor<16x16xf32>
  return
}

// -----

func.func @dot_acc(%a: tensor<16x32xbf16>, %b: tensor<32x8xbf16>, %c: tensor<16x16xf32>) {
  // expected-error @+1 {{accumulator 16x16 is not rows(lhs) x columns(rhs)}}
  %r = attn_tile.dot %a, %b, %c : tensor<16x32xbf16>, tensor<32x8xbf16>, tensor<16x16xf32> -> tensor<16x16xf32>
  return
}

// -----

func.func @dot_f16_acc(%a: tensor<16x32xbf16>, %b: tensor<32x8xbf16>, %c: tensor<16x8xf16>) {
  // expected-error @+1 {{accumulates in f32, not 'f16'}}
  %r = attn_tile.dot %a, %b, %c : tensor<16x32xbf16>, tensor<32x8xbf16>, tensor<16x8xf16> -> tensor<16x8xf16>
  return
}

// -----

func.func @map_shape(%a: tensor<16x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{input 1 of shape 8 is neither the result's shape 16x8 nor one value per row or column of it}}
  %r = attn_tile.map (%a, %b) : (tensor<16x8xf32>, tensor<8xf32>) -> tensor<16x8xf32> {
  ^bb0(%i: index, %j: index, %x: f32, %y: f32):
    attn_tile.yield %x : f32
  }
  return
}

// -----

func.func @map_args(%a: tensor<16x8xf32>) {
  // expected-error @+1 {{body must take 2 position indices, then one element of each input}}
  %r = attn_tile.map (%a) : (tensor<16x8xf32>) -> tensor<16x8xf32> {
  ^bb0(%x: f32):
    attn_tile.yield %x : f32
  }
  return
}

// -----

func.func @map_yield(%a: tensor<16xf32>) {
  // expected-error @+1 {{body must yield one 'f32' with attn_tile.yield}}
  %r = attn_tile.map (%a) : (tensor<16xf32>) -> tensor<16xf32> {
  ^bb0(%i: index, %x: f32):
    %h = arith.truncf %x : f32 to f16
    attn_tile.yield %h : f16
  }
  return
}

// -----

func.func @reduce_rank(%a: tensor<16xf32>) {
  // expected-error @+1 {{reduces a 1-D tile to one 'f32', not 'tensor<16xf32>'}}
  %r = attn_tile.reduce add %a : tensor<16xf32> -> tensor<16xf32>
  return
}

// -----

func.func @reduce_rows(%a: tensor<16x8xf32>) {
  // expected-error @+1 {{result must hold one 'f32' per row of the input}}
  %r = attn_tile.reduce max %a : tensor<16x8xf32> -> tensor<8xf32>
  return
}

// -----

func.func @dot_transposed_lhs(%a: tensor<64x16xf32>, %b: tensor<32x8xf32>, %acc: tensor<16x8xf32>) {
  // expected-error @+1 {{lhs (transposed) 64x16 and rhs 32x8 do not share the contracted dimension}}
  %r = attn_tile.dot %a, %b, %acc {transpose_lhs} : tensor<64x16xf32>, tensor<32x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @map_broadcast(%a: tensor<16x8xf32>, %b: tensor<2x8xf32>) {
  // expected-error @+1 {{input 1 of shape 2x8 is neither the result's shape 16x8 nor one value per row or column of it}}
  %r = attn_tile.map (%a, %b) : (tensor<16x8xf32>, tensor<2x8xf32>) -> tensor<16x8xf32> {
  ^bb0(%i: index, %j: index, %x: f32, %y: f32):
    attn_tile.yield %x : f32
  }
  return
}

// -----

func.func @scan_type(%a: tensor<16x8xf32>) {
  // expected-error @+1 {{failed to verify that all of {input, result} have same type}}
  %r = "attn_tile.scan"(%a) <{kind = #attn_tile<reduce_kind add>}> : (tensor<16x8xf32>) -> tensor<16x4xf32>
  return
}

// -----

func.func @slice_columns(%a: tensor<16x8xf32>, %n: index) {
  // expected-error @+1 {{result 1x4 must take rows of the input 16x8 (same columns and element type)}}
  %r = attn_tile.slice %a[%n] rows %n : tensor<16x8xf32> -> tensor<1x4xf32>
  return
}

// -----

func.func @transpose_shape(%a: tensor<1x8xf32>) {
  // expected-error @+1 {{result 1x8 is not the transpose of 1x8}}
  %r = attn_tile.transpose %a : tensor<1x8xf32> -> tensor<1x8xf32>
  return
}

// -----

func.func @decay_dot_gate(%a: tensor<16x8xf32>, %g: tensor<16x4xf32>, %acc: tensor<16x16xf32>) {
  // expected-error @+1 {{needs an f32 lhs gate of the lhs's shape 16x8, got 16x4}}
  %r = attn_tile.decay_dot %a, %a, %g, %a, %acc : tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x4xf32>, tensor<16x8xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
  return
}

// -----

func.func @decay_dot_acc(%a: tensor<16x8xf32>, %b: tensor<32x8xf32>, %acc: tensor<16x16xf32>) {
  // expected-error @+1 {{accumulator 16x16 is not rows(lhs) x rows(rhs)}}
  %r = attn_tile.decay_dot %a, %b, %a, %b, %acc : tensor<16x8xf32>, tensor<32x8xf32>, tensor<16x8xf32>, tensor<32x8xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
  return
}

// -----

func.func @decay_combine_triangle(%w: tensor<16x16xf32>, %k: tensor<16x8xf32>) {
  // expected-error @+1 {{sums over one triangle: needs exactly one of lower_triangular and upper_triangular}}
  %r = attn_tile.decay_combine %w, %k, %k, %k, %k : tensor<16x16xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @decay_combine_gate(%w: tensor<16x16xf32>, %k: tensor<16x8xf32>, %g: tensor<16x1xf32>) {
  // expected-error @+1 {{needs an f32 result gate of the result's shape 16x8, got 16x1}}
  %r = attn_tile.decay_combine %w, %k, %g, %k, %k {lower_triangular} : tensor<16x16xf32>, tensor<16x8xf32>, tensor<16x1xf32>, tensor<16x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @decay_dot_block(%a: tensor<16x8xf32>, %acc: tensor<16x16xf32>) {
  // expected-error @+1 {{needs a diagonal_block of 0 (none) or more rows, got -16}}
  %r = attn_tile.decay_dot %a, %a, %a, %a, %acc {diagonal_block = -16} : tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
  return
}

// -----

func.func @decay_combine_block(%w: tensor<16x16xf32>, %k: tensor<16x8xf32>) {
  // expected-error @+1 {{needs a diagonal_block of 0 (none) or more rows, got -1}}
  %r = attn_tile.decay_combine %w, %k, %k, %k, %k {upper_triangular, diagonal_block = -1} : tensor<16x16xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @decay_combine_depth(%w: tensor<16x4xf32>, %k: tensor<16x8xf32>) {
  // expected-error @+1 {{lhs 16x4 and rhs 16x8 do not share the contracted dimension}}
  %r = attn_tile.decay_combine %w, %k, %k, %k, %k {lower_triangular} : tensor<16x4xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
  return
}

// -----

func.func @top_k_dynamic_k(%lists: tensor<8x?xf32>, %c: tensor<8xf32>) {
  // expected-error @+1 {{keeps its lists in 2-D f32 tiles of k static columns, not 'tensor<8x?xf32>'}}
  %r:2 = attn_tile.top_k_insert %lists, %lists, %c, %c : tensor<8x?xf32>, tensor<8xf32>
  return
}

// -----

func.func @top_k_candidates(%lists: tensor<8x4xf32>, %c: tensor<16xf32>) {
  // expected-error @+1 {{needs one f32 candidate per row of its lists 8x4, got 'tensor<16xf32>'}}
  %r:2 = attn_tile.top_k_insert %lists, %lists, %c, %c : tensor<8x4xf32>, tensor<16xf32>
  return
}

// -----

func.func @reduce_to_scalar(%a: tensor<8xf32>) {
  // expected-error @+1 {{reduces a 1-D tile to one 'f32', not 'f16'}}
  %r = attn_tile.reduce add %a : tensor<8xf32> -> f16
  return
}

// -----

func.func @scatter_rank(%values: tensor<4x8xf32>, %dest: memref<?x?xf32>) {
  // expected-error @+1 {{needs one index tile per dimension of the destination (2), got 1}}
  attn_tile.scatter_add %values, %values into %dest : tensor<4x8xf32>, tensor<4x8xf32> -> memref<?x?xf32>
  return
}

// -----

func.func @scatter_type(%values: tensor<4x8xf32>, %dest: memref<?xbf16>) {
  // expected-error @+1 {{adds into f32, not 'bf16'}}
  attn_tile.scatter_add %values, %values into %dest : tensor<4x8xf32>, tensor<4x8xf32> -> memref<?xbf16>
  return
}

// -----

func.func @scatter_shape(%values: tensor<4x8xf32>, %index: tensor<4x4xf32>, %dest: memref<?xf32>) {
  // expected-error @+1 {{index tile 'tensor<4x4xf32>' does not have the values' type 'tensor<4x8xf32>'}}
  attn_tile.scatter_add %values, %index into %dest : tensor<4x8xf32>, tensor<4x4xf32> -> memref<?xf32>
  return
}

// -----

func.func @query_blocks_per_sequence(%heads: index, %batches: index) {
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    // expected-error @+1 {{must be inside an attn_tile.grid of query blocks (not per_sequence)}}
    %stride = attn_tile.query_blocks
  }
  return
}

// -----

func.func @query_blocks_outside() -> index {
  // expected-error @+1 {{must be inside an attn_tile.grid of query blocks (not per_sequence)}}
  %stride = attn_tile.query_blocks
  return %stride : index
}
