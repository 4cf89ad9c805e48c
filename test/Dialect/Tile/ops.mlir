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
    // CHECK: attn_tile.store %{{.*}}, %{{.*}}[%[[B]], %[[H]], %{{.*}}] rows %{{.*}} row_dim 2 : tensor<64xf32> -> memref
    attn_tile.store %sum, %lse[%b, %h, %c0] rows %rows row_dim 2 : tensor<64xf32> -> !Lse
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
