// RUN: attnc-opt %s -split-input-file -attn-tile-to-nvgpu -verify-diagnostics | FileCheck %s

// A tile program of one 16-row block (one warp) against 16-key blocks: the
// loop's K and V loads get two stages, the first copied before the loop
// and the next one at the top of each iteration, after the wait and
// barrier; Q is copied once and its A fragments held across the loop;
// both dots are mma.sync on ldmatrix fragments (V through .trans), the row
// max is an xor shuffle over the quad, exp becomes exp2; the 2-D store
// writes the rows below the count, the 1-D one a lane per row.

!in = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>
!rows = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// CHECK-LABEL: gpu.module @attnc_kernels
// CHECK:       gpu.func @dense(
// CHECK-SAME:    threads = 32
// CHECK-SAME:    sharedBytes = 6400
// CHECK-SAME:    grid = [array<i64: 0, 2, 16, 0>, array<i64: 0, 1, 1, 0>, array<i64: 0, 0, 1, 0>]
// CHECK-SAME:    copiedParams = [0, 1, 2]
// CHECK-SAME:    offsetParams = []
// CHECK-SAME:    headDim = 1
// CHECK-SAME:    known_block_size = array<i32: 32, 1, 1>
// CHECK-NOT:   memref.alloc
// CHECK:       memref.view {{.*}} to memref<16x40xbf16, #gpu.address_space<workgroup>>
// CHECK:       nvgpu.device_async_copy {{.*}}, 8, %{{.*}} {bypassL1} : memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>> to memref<16x40xbf16
// CHECK:       memref.view {{.*}} to memref<2x16x40xbf16, #gpu.address_space<workgroup>>
// CHECK:       memref.view {{.*}} to memref<2x16x40xbf16, #gpu.address_space<workgroup>>
//              The first key block, then Q's fragments once Q has landed.
// CHECK:       scf.if
// CHECK:         nvgpu.device_async_copy
// CHECK:       nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
// CHECK-NEXT:  gpu.barrier
// CHECK:       nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<16x40xbf16
// CHECK:       scf.for
// CHECK:         nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
// CHECK-NEXT:    gpu.barrier
// CHECK:         scf.if
// CHECK:           nvgpu.device_async_copy
// CHECK:           nvgpu.device_async_create_group
// CHECK:         nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<2x16x40xbf16
// CHECK:         nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>
// CHECK:         gpu.shuffle  xor %{{.*}}, %c1_i32, %c32_i32
// CHECK:         gpu.shuffle  xor %{{.*}}, %c2_i32, %c32_i32
//                exp(x) is ex2(x log2 e).
// CHECK:         arith.mulf %{{.*}}, %cst{{.*}} : f32
// CHECK-NEXT:    math.exp2
// CHECK:         nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true} : memref<2x16x40xbf16
// CHECK:         nvvm.mma.sync
// CHECK:         scf.yield
// CHECK:       scf.if
// CHECK:         memref.store {{.*}} : memref<?x?x?x?xbf16
// CHECK:       arith.cmpi eq
// CHECK:       scf.if
// CHECK:         memref.store {{.*}} : memref<?x?x?xf32
// CHECK:       gpu.return
func.func @dense(%q: !in, %k: !in, %v: !in, %o: !in, %lse: !rows,
                 %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %batches = memref.dim %q, %c0 : !in
  %heads = memref.dim %q, %c1 : !in
  %n = memref.dim %q, %c2 : !in
  %m = memref.dim %k, %c2 : !in
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 {
    %c16 = arith.constant 16 : index
    %ninf = arith.constant 0xFF800000 : f32
    %zero = arith.constant 0.0 : f32
    %i0 = arith.muli %qb, %c16 : index
    %left = arith.subi %n, %i0 : index
    %rows = arith.minui %left, %c16 : index
    %qt = attn_tile.load %q[%b, %h, %i0] rows %rows row_dim 2 : !in -> tensor<?x32xbf16>
    %blocks = arith.ceildivui %m, %c16 : index
    %m0 = tensor.splat %ninf[%rows] : tensor<?xf32>
    %acc0 = tensor.splat %zero[%rows] : tensor<?x32xf32>
    %s0 = tensor.splat %zero[%rows] : tensor<?x16xf32>
    %r:2 = scf.for %kb = %c0 to %blocks step %c1
        iter_args(%mi = %m0, %acc = %acc0) -> (tensor<?xf32>, tensor<?x32xf32>) {
      %j0 = arith.muli %kb, %c16 : index
      %kleft = arith.subi %m, %j0 : index
      %krows = arith.minui %kleft, %c16 : index
      %kt = attn_tile.load %k[%b, %h, %j0] rows %krows row_dim 2 : !in -> tensor<16x32xbf16>
      %vt = attn_tile.load %v[%b, %h, %j0] rows %krows row_dim 2 : !in -> tensor<16x32xbf16>
      %s = attn_tile.dot %qt, %kt, %s0 {transpose_rhs}
          : tensor<?x32xbf16>, tensor<16x32xbf16>, tensor<?x16xf32> -> tensor<?x16xf32>
      %masked = attn_tile.map(%s) : (tensor<?x16xf32>) -> tensor<?x16xf32> {
      ^bb0(%i: index, %j: index, %x: f32):
        %key = arith.addi %j0, %j : index
        %in = arith.cmpi ult, %key, %m : index
        %y = arith.select %in, %x, %ninf : f32
        attn_tile.yield %y : f32
      }
      %tileMax = attn_tile.reduce max %masked : tensor<?x16xf32> -> tensor<?xf32>
      %mNew = attn_tile.map(%mi, %tileMax) : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32> {
      ^bb0(%i: index, %x: f32, %y: f32):
        %z = arith.maximumf %x, %y : f32
        attn_tile.yield %z : f32
      }
      %p = attn_tile.map(%masked, %mNew) : (tensor<?x16xf32>, tensor<?xf32>) -> tensor<?x16xf32> {
      ^bb0(%i: index, %j: index, %x: f32, %mx: f32):
        %d = arith.subf %x, %mx : f32
        %e = math.exp %d : f32
        attn_tile.yield %e : f32
      }
      %accNew = attn_tile.dot %p, %vt, %acc
          : tensor<?x16xf32>, tensor<16x32xbf16>, tensor<?x32xf32> -> tensor<?x32xf32>
      scf.yield %mNew, %accNew : tensor<?xf32>, tensor<?x32xf32>
    }
    attn_tile.store %r#1, %o[%b, %h, %i0] rows %rows row_dim 2 : tensor<?x32xf32> -> !in
    attn_tile.store %r#0, %lse[%b, %h, %i0] rows %rows row_dim 2 : tensor<?xf32> -> !rows
  }
  return
}

// -----

// A program that walks whole sequences (the backward's shape): one CTA
// per (head, batch entry), grid x of 1. Its 1-D load is read into each
// lane's two rows; a map reads a loaded tile at the fragment positions;
// the dot with a transposed lhs stages the C fragment in shared memory
// (rows past the count as zeros) between barriers and takes its A
// operands by ldmatrix.trans. The loop's tiles are released after it.

!in = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>
!rows = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// CHECK-LABEL: gpu.func @per_sequence(
// CHECK-SAME:    sharedBytes = 4608
// CHECK-SAME:    grid = [array<i64: 0, 0, 0, 0>, array<i64: 1, 1, 1, 0>, array<i64: 1, 0, 1, 0>]
// CHECK-SAME:    copiedParams = [0, 1]
// CHECK:         scf.for
// CHECK:           memref.load {{.*}} : memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>
// CHECK:           memref.load {{.*}} : memref<2x16x40xbf16, #gpu.address_space<workgroup>>
// CHECK:           gpu.barrier
// CHECK:           arith.select
// CHECK:           memref.store {{.*}} : memref<16x24xbf16, #gpu.address_space<workgroup>>
// CHECK:           gpu.barrier
// CHECK:           nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true}
// CHECK:           nvvm.mma.sync
// CHECK:         nvgpu.device_async_wait
// CHECK-NEXT:    gpu.barrier
func.func @per_sequence(%q: !in, %k: !in, %lse: !rows, %dk: !in,
                        %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %batches = memref.dim %k, %c0 : !in
  %heads = memref.dim %k, %c1 : !in
  %n = memref.dim %q, %c2 : !in
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %kt = attn_tile.load %k[%b, %h, %c0] rows %c16 row_dim 2 : !in -> tensor<16x32xbf16>
    %acc0 = tensor.splat %zero : tensor<16x32xf32>
    %blocks = arith.ceildivui %n, %c16 : index
    %sum = scf.for %block = %c0 to %blocks step %c1 iter_args(%acc = %acc0) -> (tensor<16x32xf32>) {
      %i0 = arith.muli %block, %c16 : index
      %left = arith.subi %n, %i0 : index
      %rows = arith.minui %c16, %left : index
      %qt = attn_tile.load %q[%b, %h, %i0] rows %rows row_dim 2 : !in -> tensor<?x32xbf16>
      %l = attn_tile.load %lse[%b, %h, %i0] rows %rows row_dim 2 : !rows -> tensor<?xf32>
      %wide = attn_tile.map(%qt) : (tensor<?x32xbf16>) -> tensor<?x32xf32> {
      ^bb0(%i: index, %j: index, %x: bf16):
        %y = arith.extf %x : bf16 to f32
        attn_tile.yield %y : f32
      }
      %r = attn_tile.reduce add %wide : tensor<?x32xf32> -> tensor<?xf32>
      %zeros = tensor.splat %zero[%rows] : tensor<?x16xf32>
      %s = attn_tile.dot %qt, %kt, %zeros {transpose_rhs}
          : tensor<?x32xbf16>, tensor<16x32xbf16>, tensor<?x16xf32> -> tensor<?x16xf32>
      %p = attn_tile.map(%s, %l, %r) : (tensor<?x16xf32>, tensor<?xf32>, tensor<?xf32>) -> tensor<?x16xf32> {
      ^bb0(%i: index, %j: index, %x: f32, %m: f32, %d: f32):
        %t = arith.subf %x, %m : f32
        %u = arith.subf %t, %d : f32
        %e = math.exp %u : f32
        attn_tile.yield %e : f32
      }
      %next = attn_tile.dot %p, %qt, %acc {transpose_lhs}
          : tensor<?x16xf32>, tensor<?x32xbf16>, tensor<16x32xf32> -> tensor<16x32xf32>
      scf.yield %next : tensor<16x32xf32>
    }
    attn_tile.store %sum, %dk[%b, %h, %c0] rows %c16 row_dim 2 : tensor<16x32xf32> -> !in
  }
  return
}

// -----

!in = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>

// The result's rows are lhs^T's: one warp per 16, so lhs has at most
// block_rows columns, in whole mma tiles of 16.
func.func @transposed_lhs_columns(%q: !in, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : !in
  %heads = memref.dim %q, %c1 : !in
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %qt = attn_tile.load %q[%b, %h, %c0] rows %c16 row_dim 2 : !in -> tensor<16x32xbf16>
    %s = tensor.splat %zero : tensor<16x8xf32>
    %acc = tensor.splat %zero : tensor<8x32xf32>
    // expected-error @below {{with a transposed lhs on the GPU needs an lhs of at most 16 columns (block_rows), a multiple of 16, and an untransposed rhs}}
    %d = attn_tile.dot %s, %qt, %acc {transpose_lhs}
        : tensor<16x8xf32>, tensor<16x32xbf16>, tensor<8x32xf32> -> tensor<8x32xf32>
  }
  return
}

// -----

!in = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>

func.func @scatter(%q: !in, %slope: memref<?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : !in
  %heads = memref.dim %q, %c1 : !in
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %qt = attn_tile.load %q[%b, %h, %c0] rows %c16 row_dim 2 : !in -> tensor<16x32xbf16>
    %g = tensor.splat %zero : tensor<16x32xf32>
    // expected-error @below {{on the GPU adds into one of the function's partial results (attnc.partial_results)}}
    attn_tile.scatter_add %g, %g into %slope : tensor<16x32xf32>, tensor<16x32xf32> -> memref<?xf32>
  }
  return
}

// -----

// A partial result: the kernel takes the result in its own type and a
// workspace after the status words; thread 0 adds the staged tile into the
// CTA's copy, and the last CTA to count itself done sums the copies.

!in = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>

// CHECK-LABEL: gpu.func @scatter_partial(
// CHECK-SAME:    %{{.*}}: memref<?xbf16>, %{{.*}}: memref<?xi64>, %[[WS:.*]]: memref<?xi32>)
// CHECK-SAME:    partialResults = [1]
// CHECK:         scf.for
// CHECK:           scf.for
// CHECK:             memref.load %[[WS]]
// CHECK:             memref.store {{.*}}, %[[WS]]
// CHECK:         llvm.fence syncscope("device") release
// CHECK:         memref.atomic_rmw addi {{.*}}, %[[WS]]
// CHECK:         llvm.fence syncscope("device") acquire
// CHECK:         arith.truncf {{.*}} : f32 to bf16
func.func @scatter_partial(%q: !in, %slope: memref<?xf32>, %status: memref<?xi64>)
    attributes {attnc.partial_results = array<i64: 1>,
                attnc.partial_result_types = [memref<?xbf16>]} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : !in
  %heads = memref.dim %q, %c1 : !in
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %qt = attn_tile.load %q[%b, %h, %c0] rows %c16 row_dim 2 : !in -> tensor<16x32xbf16>
    %g = tensor.splat %zero : tensor<16x32xf32>
    attn_tile.scatter_add %g, %g into %slope : tensor<16x32xf32>, tensor<16x32xf32> -> memref<?xf32>
  }
  return
}

// -----

// f32 tiles stay f32 in shared memory (rows padded by 4 elements, copies
// of 4 elements); their mma operands split into bf16 pairs.

// CHECK-LABEL: gpu.func @f32_operands(
// CHECK:         nvgpu.device_async_copy {{.*}}, 4, {{.*}} to memref<16x36xf32, #gpu.address_space<workgroup>>
func.func @f32_operands(%q: memref<?x?x?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xf32>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xf32>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 {
    %c16 = arith.constant 16 : index
    %i0 = arith.muli %qb, %c16 : index
    %qt = attn_tile.load %q[%b, %h, %i0] rows %c16 row_dim 2 : memref<?x?x?x?xf32> -> tensor<16x32xf32>
  }
  return
}

// -----

func.func @f64_operands(%q: memref<?x?x?x?xf64>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xf64>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xf64>
  // expected-error @below {{loads 'f64' tiles: tensor cores need f16, bf16 or f32 operands}}
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 {
    %c16 = arith.constant 16 : index
    %i0 = arith.muli %qb, %c16 : index
    %qt = attn_tile.load %q[%b, %h, %i0] rows %c16 row_dim 2 : memref<?x?x?x?xf64> -> tensor<16x32xf64>
  }
  return
}

// -----

func.func @top_k(%q: memref<?x?x?x?xbf16>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xbf16>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xbf16>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 {
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %i0 = arith.muli %qb, %c16 : index
    %qt = attn_tile.load %q[%b, %h, %i0] rows %c16 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<16x32xbf16>
    %lists = tensor.splat %zero : tensor<16x8xf32>
    %candidates = tensor.splat %zero : tensor<16xf32>
    // expected-error @below {{has no GPU lowering yet}}
    %best:2 = attn_tile.top_k_insert %lists, %lists, %candidates, %candidates : tensor<16x8xf32>, tensor<16xf32>
  }
  return
}

// -----

// Moves between rows go through shared memory. The gates' scan: a column
// of 16 (a value per row, 2 per lane) is written to an f32 copy by one
// lane per quad between two barriers, scanned down by one thread, read
// back per row. The last row's slice is a 1 x 1 tile every lane reads
// (replicated), which a map broadcasts along the rows of the loaded tile.

// CHECK-LABEL: gpu.func @gates(
// CHECK:         gpu.barrier
// CHECK:         scf.if
// CHECK:           memref.store {{.*}} : memref<16x1xf32, #gpu.address_space<workgroup>>
// CHECK:         gpu.barrier
// CHECK:         scf.for
// CHECK:           scf.for {{.*}} iter_args
// CHECK:             memref.load {{.*}} : memref<16x1xf32, #gpu.address_space<workgroup>>
// CHECK:             arith.addf
// CHECK:             memref.store {{.*}} : memref<16x1xf32, #gpu.address_space<workgroup>>
// CHECK:         gpu.barrier
// CHECK:         memref.load {{.*}} : memref<16x1xf32, #gpu.address_space<workgroup>>
// CHECK:         gpu.barrier
// CHECK:         memref.store {{.*}} : memref<16x1xf32, #gpu.address_space<workgroup>>
// CHECK:         gpu.barrier
// CHECK:         memref.load {{.*}} : memref<16x1xf32, #gpu.address_space<workgroup>>
// CHECK:         math.exp2
func.func @gates(%q: memref<?x?x?x?xbf16>, %o: memref<?x?x?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xbf16>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xbf16>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    %c15 = arith.constant 15 : index
    %c16 = arith.constant 16 : index
    %gate = arith.constant -0.5 : f32
    %qt = attn_tile.load %q[%b, %h, %c0] rows %c16 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<16x32xbf16>
    %g = tensor.splat %gate : tensor<16x1xf32>
    %cum = attn_tile.scan add %g : tensor<16x1xf32>
    %last = attn_tile.slice %cum[%c15] rows %c1 : tensor<16x1xf32> -> tensor<1x1xf32>
    %d = attn_tile.map (%qt, %last) : (tensor<16x32xbf16>, tensor<1x1xf32>) -> tensor<16x32xf32> {
    ^bb0(%r: index, %c: index, %x: bf16, %l: f32):
      %e = math.exp %l : f32
      %y = arith.extf %x : bf16 to f32
      %z = arith.mulf %y, %e : f32
      attn_tile.yield %z : f32
    }
    attn_tile.store %d, %o[%b, %h, %c0] rows %c16 row_dim 2 : tensor<16x32xf32> -> memref<?x?x?x?xf32>
  }
  return
}

// -----

// 256 query rows and 64-key tiles at head dim 256: 270336 bytes of shared
// memory with the keys streamed in two stages, and still 202752 in one
// (the retry without streaming), over the default budget (the A100's
// 166912).
// expected-error @below {{needs 202752 bytes of shared memory on the GPU, more than the 166912 a CTA may use}}
func.func @too_big(%q: memref<?x?x?x?xbf16>, %k: memref<?x?x?x?xbf16>,
                   %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xbf16>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xbf16>
  %blocks = memref.dim %k, %c1 : memref<?x?x?x?xbf16>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 256 {
    %c64 = arith.constant 64 : index
    %c256 = arith.constant 256 : index
    %zero = arith.constant 0.0 : f32
    %i0 = arith.muli %qb, %c256 : index
    %qt = attn_tile.load %q[%b, %h, %i0] rows %c256 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<256x256xbf16>
    %s0 = tensor.splat %zero : tensor<256x64xf32>
    scf.for %kb = %c0 to %blocks step %c1 {
      %j0 = arith.muli %kb, %c64 : index
      %kt = attn_tile.load %k[%b, %h, %j0] rows %c64 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<64x256xbf16>
      %vt = attn_tile.load %k[%b, %h, %j0] rows %c64 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<64x256xbf16>
      %s = attn_tile.dot %qt, %kt, %s0 {transpose_rhs}
          : tensor<256x256xbf16>, tensor<64x256xbf16>, tensor<256x64xf32> -> tensor<256x64xf32>
    }
  }
  return
}

// -----

// attn_tile.query_blocks is the launch grid's x size.

!in = memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>

// CHECK-LABEL: gpu.func @strided(
// CHECK:         %[[BLOCKS:.*]] = gpu.grid_dim x
// CHECK:         scf.for %{{.*}} = %{{.*}} to %{{.*}} step %[[BLOCKS]]
func.func @strided(%q: !in, %o: !in, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %batches = memref.dim %q, %c0 : !in
  %heads = memref.dim %q, %c1 : !in
  %n = memref.dim %q, %c2 : !in
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 {
    %c16 = arith.constant 16 : index
    %i = arith.muli %qb, %c16 : index
    %first = attn_tile.load %q[%b, %h, %i] rows %c16 row_dim 2 : !in -> tensor<16x32xbf16>
    %stride = attn_tile.query_blocks
    %blocks = arith.ceildivui %n, %c16 : index
    scf.for %block = %qb to %blocks step %stride {
      %i0 = arith.muli %block, %c16 : index
      %t = attn_tile.load %q[%b, %h, %i0] rows %c16 row_dim 2 : !in -> tensor<16x32xbf16>
      %w = attn_tile.map(%t) : (tensor<16x32xbf16>) -> tensor<16x32xf32> {
      ^bb0(%r: index, %c: index, %x: bf16):
        %y = arith.extf %x : bf16 to f32
        attn_tile.yield %y : f32
      }
      attn_tile.store %w, %o[%b, %h, %i0] rows %c16 row_dim 2 : tensor<16x32xf32> -> !in
    }
  }
  return
}

// -----

// decay_dot: each lane's result elements (c <= r only) sum their terms in
// order, the operands read from their f32 copies in shared memory, each
// term with its own exponential (exp2 of the scaled difference).

// CHECK-LABEL: gpu.func @decayed(
// CHECK:         scf.if
// CHECK:           scf.for {{.*}} iter_args
// CHECK:             memref.load {{.*}} : memref<16x16xf32, #gpu.address_space<workgroup>>
// CHECK:             arith.subf
// CHECK:             math.exp2
// CHECK:             math.fma
func.func @decayed(%q: memref<?x?x?x?xbf16>, %o: memref<?x?x?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xbf16>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xbf16>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 16 per_sequence {
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %gate = arith.constant -0.5 : f32
    %qt = attn_tile.load %q[%b, %h, %c0] rows %c16 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<16x16xbf16>
    %g = tensor.splat %gate : tensor<16x16xf32>
    %cum = attn_tile.scan add %g : tensor<16x16xf32>
    %acc = tensor.splat %zero : tensor<16x16xf32>
    %a = attn_tile.decay_dot %qt, %qt, %cum, %cum, %acc {lower_triangular} : tensor<16x16xbf16>, tensor<16x16xbf16>, tensor<16x16xf32>, tensor<16x16xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
    attn_tile.store %a, %o[%b, %h, %c0] rows %c16 row_dim 2 : tensor<16x16xf32> -> memref<?x?x?x?xf32>
  }
  return
}

// -----

// decay_combine over diagonal blocks of 16 in a CTA of two warps: each
// lane's result element (r, c) sums k from r's block start (r / 16) * 16
// to r; the computed weights and the gate, given twice, are each copied
// to shared memory once.

// CHECK-LABEL: gpu.func @diagonal_blocks(
// CHECK:         memref.view {{.*}} to memref<32x32xf32, #gpu.address_space<workgroup>>
// CHECK:         %[[GATE:.*]] = memref.view {{.*}} to memref<32x16xf32, #gpu.address_space<workgroup>>
// CHECK-NOT:     memref.view
// CHECK:         %[[LAST:.*]] = arith.minui %[[R:[0-9]+]], %c31
// CHECK:         %[[END:.*]] = arith.addi %[[LAST]]
// CHECK:         %[[BLOCK:.*]] = arith.divui %[[R]], %c16
// CHECK:         %[[START:.*]] = arith.muli %[[BLOCK]], %c16
// CHECK:         %[[BEGIN:.*]] = arith.minui %[[START]], %[[END]]
// CHECK:         scf.for %[[K:.*]] = %[[BEGIN]] to %[[END]]
// CHECK:           memref.load %[[GATE]][%[[K]],
// CHECK:           math.exp2
func.func @diagonal_blocks(%q: memref<?x?x?x?xbf16>, %o: memref<?x?x?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xbf16>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xbf16>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 32 per_sequence {
    %c32 = arith.constant 32 : index
    %zero = arith.constant 0.0 : f32
    %gate = arith.constant -0.5 : f32
    %kt = attn_tile.load %q[%b, %h, %c0] rows %c32 row_dim 2 : memref<?x?x?x?xbf16> -> tensor<32x16xbf16>
    %g = tensor.splat %gate : tensor<32x16xf32>
    %cum = attn_tile.scan add %g : tensor<32x16xf32>
    %w = tensor.splat %gate : tensor<32x32xf32>
    %acc = tensor.splat %zero : tensor<32x16xf32>
    %d = attn_tile.decay_combine %w, %kt, %cum, %cum, %acc {lower_triangular, diagonal_block = 16} : tensor<32x32xf32>, tensor<32x16xbf16>, tensor<32x16xf32>, tensor<32x16xf32>, tensor<32x16xf32> -> tensor<32x16xf32>
    attn_tile.store %d, %o[%b, %h, %c0] rows %c32 row_dim 2 : tensor<32x16xf32> -> memref<?x?x?x?xf32>
  }
  return
}

// -----

// A load after stores to scratch waits at a barrier: its rows (16 from
// row 16) were written by other threads (the second warp's).

// CHECK-LABEL: gpu.func @ordered(
// CHECK:         memref.store %{{.*}}, %reinterpret_cast[
// CHECK:         gpu.barrier
// CHECK-NOT:     memref.store %{{.*}}, %reinterpret_cast[
// CHECK:         nvgpu.device_async_copy %reinterpret_cast
func.func @ordered(%q: memref<?x?x?x?xbf16>, %o: memref<?x?x?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batches = memref.dim %q, %c0 : memref<?x?x?x?xbf16>
  %heads = memref.dim %q, %c1 : memref<?x?x?x?xbf16>
  %scratch = memref.alloc() : memref<32x16xf32>
  attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 32 per_sequence {
    %c16 = arith.constant 16 : index
    %c32 = arith.constant 32 : index
    %gate = arith.constant -0.5 : f32
    %g = tensor.splat %gate : tensor<32x16xf32>
    %cum = attn_tile.map(%g) : (tensor<32x16xf32>) -> tensor<32x16xf32> {
    ^bb0(%r: index, %c: index, %x: f32):
      %y = arith.addf %x, %x : f32
      attn_tile.yield %y : f32
    }
    attn_tile.store %cum, %scratch[%c0] rows %c32 row_dim 0 : tensor<32x16xf32> -> memref<32x16xf32>
    %later = attn_tile.load %scratch[%c16] rows %c16 row_dim 0 : memref<32x16xf32> -> tensor<16x16xf32>
    attn_tile.store %later, %o[%b, %h, %c0] rows %c16 row_dim 2 : tensor<16x16xf32> -> memref<?x?x?x?xf32>
  }
  memref.dealloc %scratch : memref<32x16xf32>
  return
}
