// RUN: attnc-opt %s -split-input-file -attn-tile-to-loops -canonicalize -verify-diagnostics | FileCheck %s

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// A small tile program: per 16-row query block of head h, S = Q K^T for
// every 16-key block, P = exp(S) and acc += P Q (Q stands in for V).
//
// The function gets the CPU calling convention: the work range arguments,
// llvm.emit_c_interface and the row block for the runner; the status buffer
// is cleared on entry. Tiles become f32 buffers allocated once per call,
// before the loop over the call's items, rows padded to 32 floats: Q
// (16x32), K staged transposed (8 x 32) because it only feeds Q K^T, S
// (16x32), the accumulator (16x32). P takes S's buffer (S dies at the map)
// and the key loop carries the accumulator in its buffer: the splat's,
// since the splat dies at the loop. Nothing is copied at the yield.

// CHECK-LABEL: func.func @program(
// CHECK-SAME:    %[[STATUS:[^:]*]]: memref<?xi64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index, %[[BLOCKS:[^:]*]]: index)
// CHECK-SAME:    attributes {attnc.cpu_row_block = 16 : i64, llvm.emit_c_interface}
// CHECK:       memref.store %c0_i64, %[[STATUS]][%c0]
// CHECK:       %[[Q:.*]] = memref.alloc() : memref<16x32xf32>
// CHECK:       %[[ACC:.*]] = memref.alloc() : memref<16x32xf32>
// CHECK:       %[[KT:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK:       %[[S:.*]] = memref.alloc() : memref<16x32xf32>
// CHECK-NOT:   memref.alloc
// CHECK:       scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1 {
//                Q: rows < count from the source, the rest zero.
// CHECK:         memref.store %{{.*}}, %[[Q]]
// CHECK:         memref.store %{{.*}}, %[[Q]]
//                The accumulator's splat.
// CHECK:         memref.store %{{.*}}, %[[ACC]]
// CHECK:         scf.for %{{.*}} =
//                  K transposed: kt[d, c] = k[h, j0 + c, d].
// CHECK:           memref.store %{{.*}}, %[[KT]][%{{.*}}, %{{.*}}] : memref<8x32xf32>
//                  S = Q K^T on vectors along the keys.
// CHECK:           vector.load %[[KT]]
// CHECK:           vector.fma {{.*}} : vector<8xf32>
// CHECK:           vector.store %{{.*}}, %[[S]]
//                  P = exp(S) in place, on vectors of 8 columns: MLIR's
//                  polynomial (no libm call).
// CHECK:           vector.load %[[S]]
// CHECK-NOT:       math.exp
// CHECK:           math.floor
// CHECK:           arith.bitcast
// CHECK-NEXT:      %[[P:.*]] = arith.mulf {{.*}} : vector<8xf32>
// CHECK-NEXT:      vector.store %[[P]], %[[S]]
//                  acc += P Q, in the accumulator's buffer: nothing is
//                  copied at the yield.
// CHECK:           vector.load %[[ACC]]
// CHECK:           vector.fma {{.*}} : vector<8xf32>
// CHECK:           vector.store %{{.*}}, %[[ACC]]
// CHECK-NEXT:      vector.store %{{.*}}, %[[ACC]]
// CHECK-NEXT:      vector.store %{{.*}}, %[[ACC]]
// CHECK-NEXT:      vector.store %{{.*}}, %[[ACC]]
// CHECK-NEXT:    }
// CHECK-NEXT:  }
//                The store of the block's rows.
// CHECK:         memref.load %[[ACC]]
// CHECK-NEXT:    memref.store %{{.*}}, %arg2
// CHECK:       memref.dealloc %[[Q]]
// CHECK:       memref.dealloc %[[ACC]]
func.func @program(%q: !Src, %k: !Src, %o: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %heads = memref.dim %q, %c0 : !Src
  %n = memref.dim %q, %c1 : !Src
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 16 {
    %i0 = arith.muli %qb, %c16 : index
    %left = arith.subi %n, %i0 : index
    %rows = arith.minui %left, %c16 : index
    %qt = attn_tile.load %q[%h, %i0] rows %rows row_dim 1 : !Src -> tensor<16x8xf32>
    %zero = arith.constant 0.0 : f32
    %init = tensor.splat %zero : tensor<16x8xf32>
    %none = tensor.splat %zero : tensor<16x16xf32>
    %blocks = arith.ceildivui %n, %c16 : index
    %acc = scf.for %kb = %c0 to %blocks step %c1 iter_args(%a = %init) -> tensor<16x8xf32> {
      %j0 = arith.muli %kb, %c16 : index
      %kleft = arith.subi %n, %j0 : index
      %cols = arith.minui %kleft, %c16 : index
      %kt = attn_tile.load %k[%h, %j0] rows %cols row_dim 1 : !Src -> tensor<16x8xf32>
      %s = attn_tile.dot %qt, %kt, %none {transpose_rhs} : tensor<16x8xf32>, tensor<16x8xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
      %p = attn_tile.map (%s) : (tensor<16x16xf32>) -> tensor<16x16xf32> {
      ^bb0(%r: index, %c: index, %x: f32):
        %e = math.exp %x : f32
        attn_tile.yield %e : f32
      }
      %next = attn_tile.dot %p, %qt, %a : tensor<16x16xf32>, tensor<16x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
      scf.yield %next : tensor<16x8xf32>
    }
    attn_tile.store %acc, %o[%h, %i0] rows %rows row_dim 1 : tensor<16x8xf32> -> !Src
  }
  return
}

// -----

// A loop-carried tile that the body replaces by a new one (the running max
// m' = max(m, x) is still read after it is computed) is copied back into
// the carried buffer at the yield.

// CHECK-LABEL: func.func @carried_copy(
// CHECK:       %[[M:.*]] = memref.alloc() : memref<4xf32>
// CHECK:       %[[NEW:.*]] = memref.alloc() : memref<4xf32>
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           arith.maximumf
// CHECK:           memref.store %{{.*}}, %[[NEW]]
// CHECK:           arith.subf
// CHECK:         memref.store %{{.*}}, %arg1
//                The copy at the yield: m = m'.
// CHECK:         scf.for
// CHECK-NEXT:      memref.load %[[NEW]]
// CHECK-NEXT:      memref.store %{{.*}}, %[[M]]
func.func @carried_copy(%x: memref<?x?xf32>, %o: memref<?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %n = memref.dim %x, %c0 : memref<?x?xf32>
  attn_tile.grid (%qb, %h, %b) heads %c1 batches %c1 block_rows 4 {
    %ninf = arith.constant 0xFF800000 : f32
    %init = tensor.splat %ninf : tensor<4xf32>
    %m = scf.for %t = %c0 to %n step %c1 iter_args(%old = %init) -> tensor<4xf32> {
      %xt = attn_tile.load %x[%t, %c0] rows %c4 row_dim 1 : memref<?x?xf32> -> tensor<4xf32>
      %new = attn_tile.map (%old, %xt) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32> {
      ^bb0(%r: index, %a: f32, %y: f32):
        %mx = arith.maximumf %a, %y : f32
        attn_tile.yield %mx : f32
      }
      %gap = attn_tile.map (%old, %new) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32> {
      ^bb0(%r: index, %a: f32, %y: f32):
        %d = arith.subf %a, %y : f32
        attn_tile.yield %d : f32
      }
      attn_tile.store %gap, %o[%t, %c0] rows %c4 row_dim 1 : tensor<4xf32> -> memref<?x?xf32>
      scf.yield %new : tensor<4xf32>
    }
  }
  return
}

// -----

func.func @size_inside(%x: memref<?x?xf32>, %status: memref<?xi64>) {
  %c1 = arith.constant 1 : index
  attn_tile.grid (%qb, %h, %b) heads %c1 batches %c1 block_rows 4 {
    %zero = arith.constant 0.0 : f32
    // expected-error @+1 {{has a tile whose dynamic size is not defined outside the grid}}
    %t = tensor.splat %zero[%qb] : tensor<4x?xf32>
  }
  return
}

// -----

func.func @unsupported(%x: memref<?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  attn_tile.grid (%qb, %h, %b) heads %c1 batches %c1 block_rows 4 {
    %t = attn_tile.load %x[%c0, %c0] rows %c1 row_dim 1 : memref<?x?xf32> -> tensor<4xf32>
    // expected-error @+1 {{holds tiles, which the CPU lowering supports only in attn_tile ops, tensor.splat, scf.for and scf.if}}
    %e = tensor.extract %t[%c0] : tensor<4xf32>
  }
  return
}

// -----

// A tile with a run-time row count (the rows of a last query block) gets a
// buffer of the grid's block_rows and loops over its own rows only.

// CHECK-LABEL: func.func @dynamic_rows(
// CHECK:       %[[BUF:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK:       scf.for
// CHECK:         %[[LEFT:.*]] = arith.subi
// CHECK:         %[[ROWS:.*]] = arith.minui %[[LEFT]], %c8
// CHECK:         scf.for %{{.*}} = %c0 to %[[ROWS]] step %c1 {
// CHECK:           memref.store %{{.*}}, %[[BUF]]
func.func @dynamic_rows(%x: memref<?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %n = memref.dim %x, %c0 : memref<?x?xf32>
  attn_tile.grid (%qb, %h, %b) heads %c1 batches %c1 block_rows 8 {
    %i0 = arith.muli %qb, %c8 : index
    %left = arith.subi %n, %i0 : index
    %rows = arith.minui %left, %c8 : index
    %one = arith.constant 1.0 : f32
    %t = tensor.splat %one[%rows] : tensor<?x4xf32>
    attn_tile.store %t, %x[%i0] rows %rows row_dim 0 : tensor<?x4xf32> -> memref<?x?xf32>
  }
  return
}

// -----

// The then branch yields a tile defined outside the loop; the else branch
// would have to overwrite its buffer, which the next iteration reads.

func.func @branch_clobbers(%x: memref<?x?xf32>, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %n = memref.dim %x, %c0 : memref<?x?xf32>
  %one = arith.constant 1.0 : f32
  %ones = tensor.splat %one : tensor<4xf32>
  attn_tile.grid (%qb, %h, %b) heads %c1 batches %c1 block_rows 4 {
    %cond = arith.cmpi eq, %qb, %c0 : index
    // expected-error @+1 {{yields a tile whose CPU buffer is still in use after it}}
    %t = scf.if %cond -> tensor<4xf32> {
      scf.yield %ones : tensor<4xf32>
    } else {
      %xt = attn_tile.load %x[%c0, %c0] rows %c4 row_dim 1 : memref<?x?xf32> -> tensor<4xf32>
      scf.yield %xt : tensor<4xf32>
    }
    attn_tile.store %t, %x[%c0, %c0] rows %c4 row_dim 1 : tensor<4xf32> -> memref<?x?xf32>
  }
  return
}

// -----

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// The ops of chunkwise linear programs. A per-sequence grid is a loop over
// (batch, head) items with no row block for the runner. The state (16x8)
// is carried in its buffer; the running sum of the scan writes row r from
// row r - 1; the slice copies its row and the transpose turns it into a
// column, which the map broadcasts along the state's rows, in place. The
// decay_dot runs over c <= r only, starting from 0 (its sum over d on
// vectors of 8 terms and reduced at the end): its zero accumulator
// is never filled inside the loop, and the elements above the diagonal are
// stored as 0. The transposed-lhs dot reads K[u][d] one at a time and
// updates the state in place on vectors.

// CHECK-LABEL: func.func @chunks(
// CHECK-SAME:    attributes {llvm.emit_c_interface}
// CHECK-DAG:   %[[STATE:.*]] = memref.alloc() : memref<16x32xf32>
// CHECK-DAG:   %[[K:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK-DAG:   %[[G:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK-DAG:   %[[LAST:.*]] = memref.alloc() : memref<1x32xf32>
// CHECK-DAG:   %[[COL:.*]] = memref.alloc() : memref<16x32xf32>
// CHECK-DAG:   %[[A:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK:       scf.for %[[ITEM:.*]] = %{{.*}} to %{{.*}} step %c1 {
// CHECK:         arith.remui %[[ITEM]]
// CHECK:         scf.for %{{.*}} = %c0 to %c8 step %c1 {
//                  The scan: row 0, then row r from row r - 1.
// CHECK:           scf.for %[[R:.*]] = %c1 to %c8 step %c1 {
// CHECK:             %[[PREV:.*]] = arith.subi %[[R]], %c1
// CHECK:             memref.load %[[G]][%[[PREV]]
// CHECK:             memref.store %{{.*}}, %[[G]][%[[R]]
// CHECK:           memref.store %{{.*}}, %[[LAST]][%c0,
// CHECK:           memref.store %{{.*}}, %[[COL]][%{{.*}}, %c0]
//                  The state times a column broadcast along its rows.
// CHECK:           vector.load %[[STATE]]
// CHECK-NEXT:      memref.load %[[COL]][%{{.*}}, %c0]
// CHECK-NEXT:      vector.broadcast
// CHECK-NEXT:      arith.mulf {{.*}} : vector<8xf32>
// CHECK-NEXT:      vector.store %{{.*}}, %[[STATE]]
// CHECK-NOT:       memref.store %{{.*}}, %[[A]]
// CHECK:           %[[END:.*]] = arith.minui
// CHECK:           scf.for %{{.*}} = %c0 to %[[END]] step %c1 {
//                    The sum over d on vectors of 8 terms (16 = 2 x 8: no
//                    scalar tail), the decays by the polynomial exp.
// CHECK:             scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args({{.*}}) -> (vector<8xf32>) {
// CHECK:               math.floor
// CHECK:               math.fma {{.*}} : vector<8xf32>
// CHECK:             vector.reduction <add>
// CHECK:           scf.for %{{.*}} = %[[END]] to %c8 step %c1 {
// CHECK-NEXT:        memref.store %{{.*}}, %[[A]]
// CHECK:           memref.load %[[K]][%{{.*}}, %{{.*}}] : memref<8x32xf32>
// CHECK:           vector.fma
// CHECK:           vector.store %{{.*}}, %[[STATE]]
func.func @chunks(%k: !Src, %o: !Src, %state: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  %heads = memref.dim %k, %c0 : !Src
  %zero = arith.constant 0.0 : f32
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 8 per_sequence {
    %s0 = tensor.splat %zero : tensor<16x8xf32>
    %s = scf.for %c = %c0 to %c8 step %c1 iter_args(%s1 = %s0) -> (tensor<16x8xf32>) {
      %kt = attn_tile.load %k[%h, %c] rows %c8 row_dim 1 : !Src -> tensor<8x16xf32>
      %g = attn_tile.scan add %kt : tensor<8x16xf32>
      %last = attn_tile.slice %g[%c0] rows %c1 : tensor<8x16xf32> -> tensor<1x16xf32>
      %col = attn_tile.transpose %last : tensor<1x16xf32> -> tensor<16x1xf32>
      %d = attn_tile.map (%s1, %col) : (tensor<16x8xf32>, tensor<16x1xf32>) -> tensor<16x8xf32> {
      ^bb0(%r: index, %cc: index, %x: f32, %y: f32):
        %m = arith.mulf %x, %y : f32
        attn_tile.yield %m : f32
      }
      %acc = tensor.splat %zero : tensor<8x8xf32>
      %a = attn_tile.decay_dot %kt, %kt, %g, %g, %acc {lower_triangular} : tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x8xf32> -> tensor<8x8xf32>
      attn_tile.store %a, %o[%h, %c] rows %c8 row_dim 1 : tensor<8x8xf32> -> !Src
      %n = attn_tile.dot %kt, %a, %d {transpose_lhs} : tensor<8x16xf32>, tensor<8x8xf32>, tensor<16x8xf32> -> tensor<16x8xf32>
      scf.yield %n : tensor<16x8xf32>
    }
    attn_tile.store %s, %state[%h, %c0] rows %c16 row_dim 1 : tensor<16x8xf32> -> !Src
  }
  return
}

// -----

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// top_k_insert updates the loop-carried lists in place: per row with a
// candidate (block >= 0), its place follows the last listed entry it does not
// beat, the entries from there move down one (last first) and it is stored.
// A 1-D reduce gives a scalar for the branch.

// CHECK-LABEL: func.func @top_k(
// CHECK-DAG:   %[[SCORES:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK-DAG:   %[[BLOCKS:.*]] = memref.alloc() : memref<8x32xf32>
// CHECK:         %[[BLOCK:.*]] = memref.load %{{.*}}[%[[R:.*]]] : memref<8xf32>
// CHECK-NEXT:    %[[LISTED:.*]] = arith.cmpf oge, %[[BLOCK]], %cst
// CHECK:         scf.if %[[LISTED]] {
// CHECK:           %[[SCORE:.*]] = memref.load %{{.*}}[%[[R]]] : memref<8xf32>
// CHECK:           %[[PLACE:.*]] = scf.for %[[E:.*]] = %c0 to %c2 step %c1 iter_args(%{{.*}} = %c0) -> (index) {
// CHECK:             memref.load %[[BLOCKS]][%[[R]], %[[E]]]
// CHECK:             memref.load %[[SCORES]][%[[R]], %[[E]]]
// CHECK:             arith.cmpf ogt, %[[SCORE]]
// CHECK:           }
// CHECK:           %[[FITS:.*]] = arith.cmpi ult, %[[PLACE]], %c2
// CHECK:           scf.if %[[FITS]] {
// CHECK:             scf.for
// CHECK:               memref.store %{{.*}}, %[[SCORES]]
// CHECK:               memref.store %{{.*}}, %[[BLOCKS]]
// CHECK:             memref.store %[[SCORE]], %[[SCORES]][%[[R]], %[[PLACE]]]
// CHECK:             memref.store %[[BLOCK]], %[[BLOCKS]][%[[R]], %[[PLACE]]]
//              The rows' maxima, then their sum (from 0).
// CHECK:       arith.maximumf
// CHECK:       %[[ANY:.*]] = scf.for {{.*}} iter_args(%{{.*}} = %cst) -> (f32) {
// CHECK:         arith.addf
// CHECK:       %[[POSITIVE:.*]] = arith.cmpf ogt, %[[ANY]], %cst
// CHECK:       scf.if %[[POSITIVE]] {
// CHECK:         memref.load %[[SCORES]]
func.func @top_k(%x: !Src, %o: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %heads = memref.dim %x, %c0 : !Src
  %none = arith.constant -1.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0.0 : f32
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 8 {
    %s0 = tensor.splat %ninf : tensor<8x2xf32>
    %b0 = tensor.splat %none : tensor<8x2xf32>
    %lists:2 = scf.for %j = %c0 to %c8 step %c1 iter_args(%s = %s0, %ids = %b0) -> (tensor<8x2xf32>, tensor<8x2xf32>) {
      %xt = attn_tile.load %x[%h, %c0, %j] rows %c8 row_dim 1 : !Src -> tensor<8xf32>
      %jf = arith.index_castui %j : index to i64
      %jj = arith.uitofp %jf : i64 to f32
      %cand = attn_tile.map (%xt) : (tensor<8xf32>) -> tensor<8xf32> {
      ^bb0(%r: index, %v: f32):
        attn_tile.yield %jj : f32
      }
      %n:2 = attn_tile.top_k_insert %s, %ids, %xt, %cand : tensor<8x2xf32>, tensor<8xf32>
      scf.yield %n#0, %n#1 : tensor<8x2xf32>, tensor<8x2xf32>
    }
    %rows = attn_tile.reduce max %lists#1 : tensor<8x2xf32> -> tensor<8xf32>
    %any = attn_tile.reduce add %rows : tensor<8xf32> -> f32
    %pos = arith.cmpf ogt, %any, %zero : f32
    scf.if %pos {
      attn_tile.store %lists#0, %o[%h, %c0] rows %c8 row_dim 1 : tensor<8x2xf32> -> !Src
    }
  }
  return
}

// -----

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// Maps run on vectors of 8 columns, then the last columns one at a time:
// the column position is a vector (vector.step), the row and per-row inputs
// stay scalars and are broadcast where a vector op needs them, and scf.if
// evaluates both branches and selects. A map that reads memory per element
// (bias[c]) stays scalar.

// CHECK-LABEL: func.func @vector_maps(
// CHECK:           %[[C:.*]] = vector.step : vector<8xindex>
// CHECK-NEXT:      %[[S:.*]] = vector.load %[[T:.*]][%[[R:.*]], %c0] : memref<4x32xf32>, vector<8xf32>
// CHECK-NEXT:      %[[MAX:.*]] = memref.load %{{.*}}[%[[R]]] : memref<4xf32>
// CHECK-NEXT:      %[[RV:.*]] = vector.broadcast %[[R]] : index to vector<8xindex>
// CHECK-NEXT:      %[[ALLOWED:.*]] = arith.cmpi ule, %[[C]], %[[RV]] : vector<8xindex>
// CHECK-NEXT:      %[[MAXV:.*]] = vector.broadcast %[[MAX]] : f32 to vector<8xf32>
// CHECK-NEXT:      %[[D:.*]] = arith.subf %[[S]], %[[MAXV]] : vector<8xf32>
// CHECK-NEXT:      %[[E:.*]] = arith.mulf %[[D]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:      %[[W:.*]] = arith.select %[[ALLOWED]], %[[E]], %{{.*}} : vector<8xi1>, vector<8xf32>
// CHECK-NEXT:      vector.store %[[W]], %[[T]][%[[R]], %c0]
// CHECK-NEXT:      scf.for %{{.*}} = %c8 to %c12 step %c1 {
// CHECK:             scf.if
// CHECK:         scf.for %{{.*}} = %c0 to %c4 step %c1 {
// CHECK-NEXT:      scf.for %{{.*}} = %c0 to %c12 step %c1 {
// CHECK:             memref.load %arg1
func.func @vector_maps(%x: !Src, %bias: memref<?xf32>, %o: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %heads = memref.dim %x, %c0 : !Src
  %ninf = arith.constant 0xFF800000 : f32
  %scale = arith.constant 0.5 : f32
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 4 {
    %t = attn_tile.load %x[%h, %c0] rows %c4 row_dim 1 : !Src -> tensor<4x12xf32>
    %m = attn_tile.reduce max %t : tensor<4x12xf32> -> tensor<4xf32>
    %w = attn_tile.map (%t, %m) : (tensor<4x12xf32>, tensor<4xf32>) -> tensor<4x12xf32> {
    ^bb0(%r: index, %c: index, %s: f32, %rowmax: f32):
      %allowed = arith.cmpi ule, %c, %r : index
      %v = scf.if %allowed -> (f32) {
        %d = arith.subf %s, %rowmax : f32
        %e = arith.mulf %d, %scale : f32
        scf.yield %e : f32
      } else {
        scf.yield %ninf : f32
      }
      attn_tile.yield %v : f32
    }
    %g = attn_tile.map (%w) : (tensor<4x12xf32>) -> tensor<4x12xf32> {
    ^bb0(%r: index, %c: index, %s: f32):
      %bc = memref.load %bias[%c] : memref<?xf32>
      %y = arith.addf %s, %bc : f32
      attn_tile.yield %y : f32
    }
    attn_tile.store %g, %o[%h, %c0] rows %c4 row_dim 1 : tensor<4x12xf32> -> !Src
  }
  return
}

// -----

// attn_tile.query_blocks is the work range's row-block count (the last
// argument the CPU calling convention adds): a loop strides by it.

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// CHECK-LABEL: func.func @strided(
// CHECK-SAME:    %[[BLOCKS:[^:]*]]: index) attributes
// CHECK:         scf.for %{{.*}} = %{{.*}} to %{{.*}} step %[[BLOCKS]]
func.func @strided(%q: !Src, %o: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %heads = memref.dim %q, %c0 : !Src
  %n = memref.dim %q, %c1 : !Src
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 16 {
    %c16 = arith.constant 16 : index
    %stride = attn_tile.query_blocks
    %blocks = arith.ceildivui %n, %c16 : index
    scf.for %block = %qb to %blocks step %stride {
      %i0 = arith.muli %block, %c16 : index
      %t = attn_tile.load %q[%h, %i0] rows %c16 row_dim 1 : !Src -> tensor<16x8xf32>
      attn_tile.store %t, %o[%h, %i0] rows %c16 row_dim 1 : tensor<16x8xf32> -> !Src
    }
  }
  return
}

// -----

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// The linear backward's pieces. A reverse exclusive scan writes the last
// row as 0 and row r from row r + 1 of itself and of the input, into a
// buffer of its own (the input's rows are still read). decay_combine over
// k <= r: per row, the columns on vectors of 8 (16 = 2 x 8, no scalar
// tail), each a sum over k of the broadcast weight times the rhs row and
// the decay, starting from 0 (its zero accumulator is never filled).

// CHECK-LABEL: func.func @backward_pieces(
// CHECK:         memref.store %cst{{.*}}, %[[LATER:.*]][%c7,
// CHECK:         scf.for %[[I:.*]] = %c1 to %c8 step %c1 {
// CHECK:           %[[R:.*]] = arith.subi %c7, %[[I]]
// CHECK:           %[[NEXT:.*]] = arith.subi %c8, %[[I]]
// CHECK:           memref.load %[[LATER]][%[[NEXT]],
// CHECK:           memref.load %{{.*}}[%[[NEXT]],
// CHECK:           memref.store %{{.*}}, %[[LATER]][%[[R]],
// CHECK:         scf.for %[[ROW:.*]] = %c0 to %c8 step %c1 {
// CHECK:           %[[END:.*]] = arith.minui
// CHECK:           scf.for %{{.*}} = %c0 to %c2 step %c1 {
// CHECK:             scf.for %{{.*}} = %c0 to %[[END]] step %c1 iter_args(%{{.*}} = %cst{{.*}}) -> (vector<8xf32>) {
// CHECK:               vector.broadcast
// CHECK:               math.fma {{.*}} : vector<8xf32>
// CHECK:             vector.store
func.func @backward_pieces(%k: !Src, %o: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %heads = memref.dim %k, %c0 : !Src
  %zero = arith.constant 0.0 : f32
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 8 per_sequence {
    %kt = attn_tile.load %k[%h, %c0] rows %c8 row_dim 1 : !Src -> tensor<8x16xf32>
    %later = attn_tile.scan add %kt {reverse, exclusive} : tensor<8x16xf32>
    %w = attn_tile.load %k[%h, %c0] rows %c8 row_dim 1 : !Src -> tensor<8x8xf32>
    %acc = tensor.splat %zero : tensor<8x16xf32>
    %d = attn_tile.decay_combine %w, %kt, %later, %later, %acc {lower_triangular} : tensor<8x8xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32> -> tensor<8x16xf32>
    attn_tile.store %d, %o[%h, %c0] rows %c8 row_dim 1 : tensor<8x16xf32> -> !Src
  }
  return
}

// -----

!Src = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>

// decay_dot over diagonal blocks of 4 (below the diagonal): per row r,
// the sums run over c from r's block start (r / 4) * 4 to
// min(r + 1, block end); the zero accumulator fills the columns before
// and after.

// CHECK-LABEL: func.func @diagonal_blocks(
// CHECK:           %[[AFTER:.*]] = arith.addi %[[R:[a-z0-9]+]], %c1
// CHECK-NEXT:      %[[TRIANGLE:.*]] = arith.minui %[[AFTER]], %c8
// CHECK-NEXT:      %[[BLOCK:.*]] = arith.divui %[[R]], %c4
// CHECK:           %[[START:.*]] = arith.muli %[[BLOCK]], %c4
// CHECK:           %[[NEXT:.*]] = arith.addi %[[START]], %c4
// CHECK:           %[[END:.*]] = arith.minui %[[NEXT]], %[[TRIANGLE]]
// CHECK:           %[[BEGIN:.*]] = arith.minui %[[START]], %[[END]]
// CHECK:           scf.for %{{.*}} = %[[BEGIN]] to %[[END]] step %c1 {
// CHECK:             math.fma {{.*}} : vector<8xf32>
// CHECK:           scf.for %{{.*}} = %c0 to %[[BEGIN]] step %c1 {
// CHECK:           scf.for %{{.*}} = %[[END]] to %c8 step %c1 {
func.func @diagonal_blocks(%k: !Src, %o: !Src, %status: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %heads = memref.dim %k, %c0 : !Src
  %zero = arith.constant 0.0 : f32
  attn_tile.grid (%qb, %h, %b) heads %heads batches %c1 block_rows 8 per_sequence {
    %kt = attn_tile.load %k[%h, %c0] rows %c8 row_dim 1 : !Src -> tensor<8x16xf32>
    %acc = tensor.splat %zero : tensor<8x8xf32>
    %a = attn_tile.decay_dot %kt, %kt, %kt, %kt, %acc {lower_triangular, diagonal_block = 4} : tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x8xf32> -> tensor<8x8xf32>
    attn_tile.store %a, %o[%h, %c0] rows %c8 row_dim 1 : tensor<8x8xf32> -> !Src
  }
  return
}
