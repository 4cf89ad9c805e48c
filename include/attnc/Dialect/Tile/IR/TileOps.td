//===- TileOps.td - Target-neutral tile program operations -*- tablegen -*-===//

#ifndef ATTNC_DIALECT_TILE_TILEOPS_TD
#define ATTNC_DIALECT_TILE_TILEOPS_TD

include "attnc/Dialect/Tile/IR/TileDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

// A tile: a 2-D block (rows x columns) or a 1-D row vector (one value per
// row of a block).
def Tile_Tile : TensorRankOf<[AnyFloat], [1, 2]>;

def Tile_ReduceKind : I32EnumAttr<"ReduceKind", "how a row reduction combines", [
      I32EnumAttrCase<"max", 0>,
      I32EnumAttrCase<"add", 1>]> {
  let cppNamespace = "::attnc::tile";
  let genSpecializedAttr = 0;
}
def Tile_ReduceKindAttr : EnumAttr<Tile_Dialect, Tile_ReduceKind, "reduce_kind"> {
  let assemblyFormat = "$value";
}

//===----------------------------------------------------------------------===//
// Program structure
//===----------------------------------------------------------------------===//

def Tile_GridOp : Tile_Op<"grid", [
    RecursiveMemoryEffects, SingleBlockImplicitTerminator<"YieldOp">]> {
  let summary = "the program instances of a kernel: query blocks x heads x batch entries";
  let description = [{
    The body runs once per (query block, head, batch entry), bound to its
    three index arguments, for `heads` heads and `batches` batch entries (or
    packed sequences). Query blocks are `block_rows` rows; their count is the
    launcher's: enough for the longest sequence, so a body must do nothing
    for blocks past the end of its own sequence. Program instances share
    only the kernel's inputs and write disjoint parts of its outputs, so any
    order, or all at once, computes the same result.

    With `per_sequence`, there is one instance per (head, batch entry), the
    query block argument is 0 and the body walks its whole sequence itself
    (the chunks of a linear kernel, which carry state from one to the next);
    `block_rows` then bounds the rows of its tiles.

    A tile dimension `?` holds either a row count of at most `block_rows`
    or a size defined outside the grid (a head dim the spec leaves open).

    ```mlir
    attn_tile.grid (%qb, %h, %b) heads %heads batches %batches block_rows 64 {
      ...
    }
    ```
  }];
  let arguments = (ins Index:$heads, Index:$batches, I64Attr:$block_rows,
                       UnitAttr:$per_sequence);
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let skipDefaultBuilders = 1;
  let builders = [
    OpBuilder<(ins "::mlir::Value":$heads, "::mlir::Value":$batches,
                   "int64_t":$blockRows, CArg<"bool", "false">:$perSequence)>
  ];
  let extraClassDeclaration = [{
    ::mlir::BlockArgument getQueryBlock() { return getBody().getArgument(0); }
    ::mlir::BlockArgument getHead() { return getBody().getArgument(1); }
    ::mlir::BlockArgument getBatch() { return getBody().getArgument(2); }
  }];
}

def Tile_QueryBlocksOp : Tile_Op<"query_blocks", [Pure]> {
  let summary = "how many query-block instances the launcher runs per head and batch entry";
  let description = [{
    The count of the grid's first index, as the launcher chose it: enough
    query blocks for the longest sequence (its exact value is the
    backend's: on the GPU the packed tokens bound it). A program that
    shares other work among the instances of a (head, batch entry), such
    as the backward's key blocks, strides by it. Only inside a grid
    without `per_sequence`.

    ```mlir
    %stride = attn_tile.query_blocks
    ```
  }];
  let results = (outs Index:$result);
  let assemblyFormat = "attr-dict";
  let hasVerifier = 1;
}

def Tile_YieldOp : Tile_Op<"yield", [
    Pure, Terminator, ReturnLike, ParentOneOf<["GridOp", "MapOp"]>]> {
  let summary = "ends a grid body, or yields the element a map computes";
  let arguments = (ins Variadic<AnyType>:$values);
  let builders = [OpBuilder<(ins), [{ }]>];
  let assemblyFormat = "attr-dict ($values^ `:` type($values))?";
}

//===----------------------------------------------------------------------===//
// Tiles
//===----------------------------------------------------------------------===//

def Tile_LoadOp : Tile_Op<"load", [MemoryEffects<[MemRead]>]> {
  let summary = "loads a block of rows; rows past `count` are zero";
  let description = [{
    Row r < `count` of the tile is the source row at `position` with
    `position[row_dim] + r`; rows from `count` on are zero. For a 2-D tile
    the columns are the source's last dimension (which `position` leaves
    out), or, when `position` names every dimension, the tile's static
    number of columns from the last index on (a block of columns, such as
    the linear backward's value blocks); for a 1-D tile `position` names
    every dimension. The element type is the source's. Rows below `count`
    must lie inside the source.

    ```mlir
    // Rows i0 .. i0 + rows - 1 of q[b, h, :, :] (layout b, h, n, d).
    %q = attn_tile.load %arg0[%b, %h, %i0] rows %rows row_dim 2
        : memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>
          -> tensor<64x64xbf16>
    ```
  }];
  let arguments = (ins AnyMemRef:$source, Variadic<Index>:$position,
                       Index:$count, I64Attr:$row_dim);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = [{
    $source `[` $position `]` `rows` $count `row_dim` $row_dim attr-dict
    `:` type($source) `->` type($result)
  }];
  let extraClassDeclaration = [{
    /// Whether `position`'s last index is the tile's first column.
    bool hasFirstColumn();
  }];
  let hasVerifier = 1;
}

def Tile_StoreOp : Tile_Op<"store", [MemoryEffects<[MemWrite]>]> {
  let summary = "stores the first `count` rows of a tile, rounded to the destination's type";
  let description = [{
    The addressing of `attn_tile.load`: row r < `count` goes to `position`
    with `position[row_dim] + r` (a 2-D tile to the destination's whole
    rows, or to a block of columns from `position`'s last index when it
    names every dimension). Elements are rounded to the destination's
    element type.

    ```mlir
    attn_tile.store %o, %arg4[%b, %h, %i0] rows %rows row_dim 2
        : tensor<64x64xf32> -> memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>
    ```
  }];
  let arguments = (ins Tile_Tile:$value, AnyMemRef:$dest,
                       Variadic<Index>:$position, Index:$count,
                       I64Attr:$row_dim);
  let assemblyFormat = [{
    $value `,` $dest `[` $position `]` `rows` $count `row_dim` $row_dim
    attr-dict `:` type($value) `->` type($dest)
  }];
  let extraClassDeclaration = [{
    /// Whether `position`'s last index is the tile's first column.
    bool hasFirstColumn();
  }];
  let hasVerifier = 1;
}

def Tile_ScatterAddOp : Tile_Op<"scatter_add",
    [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "adds each element of a tile into a memref at positions that index tiles give";
  let description = [{
    For every element (r, c) of `values`, in row-major order,
    `dest[indices#0[r][c], ..., indices#R-1[r][c]] += values[r][c]`, with
    one index tile (of `values`' shape, integers held in f32, exact below
    2^24) per dimension of `dest`. Elements with an index outside `dest`
    (-1 marks "none") are skipped. The fixed order makes the sums the same
    on every run: gradients of tensors a score reads at computed positions
    (`rel[h, i - j + c]`) are scatter-adds, and they go to one copy of
    `dest` per program instance, which the launcher sums in instance order.

    ```mlir
    attn_tile.scatter_add %grad, %rows, %cols into %d_rel
        : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32> -> memref<?x?xf32, strided<[?, ?], offset: ?>>
    ```
  }];
  let arguments = (ins Tile_Tile:$values, Variadic<Tile_Tile>:$indices,
                       AnyMemRef:$dest);
  let assemblyFormat = [{
    $values (`,` $indices^)? `into` $dest attr-dict `:` type($values)
    (`,` type($indices)^)? `->` type($dest)
  }];
  let hasVerifier = 1;
}

def Tile_DotOp : Tile_Op<"dot", [Pure]> {
  let summary = "acc + lhs * rhs, either operand transposed, accumulated in f32";
  let description = [{
    `result[r][c] = acc[r][c] + sum_k lhs[r][k] * rhs[k][c]`, with
    `transpose_lhs` `lhs[k][r]` and with `transpose_rhs` `rhs[c][k]`.
    Operands may be f16, bf16 or f32; products are summed in f32. A lowering
    that feeds tensor cores rounds an f32 operand to the other operand's type
    (f32 x f32 stays f32).

    ```mlir
    %s = attn_tile.dot %q, %k, %zero {transpose_rhs}
        : tensor<64x64xbf16>, tensor<64x64xbf16>, tensor<64x64xf32> -> tensor<64x64xf32>
    ```
  }];
  let arguments = (ins Tile_Tile:$lhs, Tile_Tile:$rhs, Tile_Tile:$acc,
                       UnitAttr:$transpose_lhs, UnitAttr:$transpose_rhs);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs `,` $acc attr-dict `:` type($lhs) `,` type($rhs) `,`
    type($acc) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_MapOp : Tile_Op<"map", [RecursiveMemoryEffects, SingleBlock]> {
  let summary = "an elementwise computation with the element's position";
  let description = [{
    The body computes one element of the result from its position (one
    index per result dimension: row, then column) and the inputs' elements
    at that position. An input of the result's shape contributes its
    element; a 1-D input of a 2-D map contributes its row's value (row
    broadcast), and a 2-D input with one row (or one column) contributes its
    column's (or row's) value. This is where score and mask expressions are fused into a
    tile. The body may read memrefs (e.g. `slope[h]`) and record errors in a
    status buffer: a lowering evaluates it once for every element of the
    result, in no particular order.

    ```mlir
    %p = attn_tile.map (%s, %m) : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<64x64xf32> {
    ^bb0(%r: index, %c: index, %sv: f32, %mv: f32):
      %d = arith.subf %sv, %mv : f32
      %e = math.exp %d : f32
      attn_tile.yield %e : f32
    }
    ```
  }];
  let arguments = (ins Variadic<Tile_Tile>:$inputs);
  let results = (outs Tile_Tile:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    `(` $inputs `)` attr-dict `:` functional-type($inputs, $result) $body
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

def Tile_ReduceOp : Tile_Op<"reduce", [Pure]> {
  let summary = "reduces each row of a 2-D tile to one value, or a 1-D tile to a scalar";
  let description = [{
    `max` starts from -inf, `add` from 0. A 2-D input gives one value per
    row; a 1-D input gives one scalar of its element type (e.g. whether any
    row of a block needs a key block, which an `scf.if` then tests).

    ```mlir
    %rowMax = attn_tile.reduce max %s : tensor<64x64xf32> -> tensor<64xf32>
    %any = attn_tile.reduce max %rowMax : tensor<64xf32> -> f32
    ```
  }];
  let arguments = (ins Tile_ReduceKindAttr:$kind, Tile_Tile:$input);
  let results = (outs AnyTypeOf<[Tile_Tile, AnyFloat]>:$result);
  let assemblyFormat = [{
    `` $kind $input attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_ScanOp : Tile_Op<"scan", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "prefix (or suffix) reduction down the rows of a tile";
  let description = [{
    `result[r][c] = input[0][c] (+ or max) ... input[r][c]`: row r combines
    the rows up to and including r (1-D tiles: the values up to r). With
    `exclusive`, the rows before r only (row 0 gets 0 for add, -inf for
    max); with `reverse`, the rows from r (or after r) to the tile's last,
    combined from the last one up. The cumulative log gates of a chunk are
    a `scan add` of its gates; sums over the steps after t are a reverse
    exclusive scan, not a total minus a prefix, whose difference would
    lose the small sums next to large terms.

    ```mlir
    %G = attn_tile.scan add %g : tensor<64x64xf32>
    %later = attn_tile.scan add %x {reverse, exclusive} : tensor<64x64xf32>
    ```
  }];
  let arguments = (ins Tile_ReduceKindAttr:$kind, Tile_Tile:$input,
                       UnitAttr:$reverse, UnitAttr:$exclusive);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = "`` $kind $input attr-dict `:` type($input)";
}

def Tile_SliceOp : Tile_Op<"slice", [Pure]> {
  let summary = "rows of a tile; rows past `count` are zero";
  let description = [{
    Row r < `count` of the result is row `first` + r of the input, which
    must exist; rows from `count` on are zero, and a result with `?` rows
    has exactly `count`. The columns are the input's.

    ```mlir
    // The last row of a chunk's cumulative gates.
    %GL = attn_tile.slice %G[%last] rows %c1 : tensor<64x64xf32> -> tensor<1x64xf32>
    ```
  }];
  let arguments = (ins Tile_Tile:$input, Index:$first, Index:$count);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = [{
    $input `[` $first `]` `rows` $count attr-dict `:` type($input) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Tile_TransposeOp : Tile_Op<"transpose", [Pure]> {
  let summary = "swaps the rows and columns of a 2-D tile";
  let description = [{
    `result[r][c] = input[c][r]`. Turns a row of per-column values into a
    column of per-row values, e.g. the decay of a chunk's last step, which
    scales the keys (per column) and the state (per row).

    ```mlir
    %t = attn_tile.transpose %GL : tensor<1x64xf32> -> tensor<64x1xf32>
    ```
  }];
  let arguments = (ins Tile_Tile:$input);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Tile_DecayDotOp : Tile_Op<"decay_dot", [Pure]> {
  let summary = "acc + lhs * rhs^T with a log-space decay on every term";
  let description = [{
    `result[r][c] = acc[r][c]
        + sum_k lhs[r][k] * rhs[c][k] * exp(lhs_gate[r][k] - rhs_gate[c][k])`.
    The intra-chunk scores of gated linear attention with one gate per key
    dimension, where the decay depends on k and cannot be split off the
    product: each gate tile has its operand's shape. Sums are f32. With
    `lower_triangular`, only elements with c <= r get the sum (the others
    are `acc`'s): the causal scores of a sub-tile against its own keys,
    whose other terms could overflow. Without it, large exponents are the
    caller's to mask. With `diagonal_block` s > 0, only elements whose c
    lies in r's block of s rows (c / s == r / s) get the sum: the diagonal
    blocks of a chunk's scores, each sub-tile against its own keys, as one
    tile of the chunk's rows.

    ```mlir
    %a = attn_tile.decay_dot %q, %k, %gq, %gk, %zero
        : tensor<16x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>,
          tensor<16x64xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
    ```
  }];
  let arguments = (ins Tile_Tile:$lhs, Tile_Tile:$rhs, Tile_Tile:$lhs_gate,
                       Tile_Tile:$rhs_gate, Tile_Tile:$acc,
                       UnitAttr:$lower_triangular,
                       DefaultValuedAttr<I64Attr, "0">:$diagonal_block);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs `,` $lhs_gate `,` $rhs_gate `,` $acc attr-dict `:`
    type($lhs) `,` type($rhs) `,` type($lhs_gate) `,` type($rhs_gate) `,`
    type($acc) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_DecayCombineOp : Tile_Op<"decay_combine", [Pure]> {
  let summary = "acc + lhs * rhs with a log-space decay on every term, per result column";
  let description = [{
    `result[r][c] = acc[r][c]
        + sum_k lhs[r][k] * rhs[k][c] * exp(gate[r][c] - rhs_gate[k][c])`,
    the sum over k <= r with `lower_triangular`, over k >= r with
    `upper_triangular` (one of them: the other terms could overflow).
    Rows of `rhs` mixed by the weights `lhs`, each column decayed from the
    rhs row's gate to the result row's: the intra-chunk gradients of the
    queries and keys of gated linear attention with one gate per key
    dimension, where the decay depends on the result's column (the
    transpose of `decay_dot`'s case). `gate` has the result's shape,
    `rhs_gate` the rhs's. Sums are f32, in order of k. With
    `diagonal_block` s > 0, k runs over r's block of s rows only
    (k / s == r / s) within the triangle.

    ```mlir
    %dq = attn_tile.decay_combine %da, %k, %g, %g, %zero {lower_triangular}
        : tensor<16x16xf32>, tensor<16x64xf32>, tensor<16x64xf32>,
          tensor<16x64xf32>, tensor<16x64xf32> -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins Tile_Tile:$lhs, Tile_Tile:$rhs, Tile_Tile:$gate,
                       Tile_Tile:$rhs_gate, Tile_Tile:$acc,
                       UnitAttr:$lower_triangular, UnitAttr:$upper_triangular,
                       DefaultValuedAttr<I64Attr, "0">:$diagonal_block);
  let results = (outs Tile_Tile:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs `,` $gate `,` $rhs_gate `,` $acc attr-dict `:`
    type($lhs) `,` type($rhs) `,` type($gate) `,` type($rhs_gate) `,`
    type($acc) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_TopKInsertOp : Tile_Op<"top_k_insert", [Pure,
    AllTypesMatch<["scores", "blocks", "best_scores", "best_blocks"]>,
    AllTypesMatch<["candidate_score", "candidate_block"]>]> {
  let summary = "inserts one candidate per row into the row's list of its k best";
  let description = [{
    Row r of `scores` and `blocks` (rows x k, f32) is a list of up to k
    entries sorted by decreasing score; entry e is listed when
    `blocks[r][e] >= 0` (an empty entry has block -1 and score -inf). The
    candidate of row r is block `candidate_block[r]` with score
    `candidate_score[r]`, or none when the block is negative. It goes right
    after the last listed entry that it does not beat (`candidate > score`
    is false), the entries after it move down one place and the k-th falls
    off; a candidate that would land past the k-th place is dropped.

    Inserting the candidates in increasing block order keeps, per row, the
    k best blocks by score with the lower block first among equal scores:
    the top-k block selection of sparse softmax. Block numbers are f32, so
    exact below 2^24.

    ```mlir
    %s, %ids = attn_tile.top_k_insert %scores, %blocks, %score, %block
        : tensor<?x4xf32>, tensor<?xf32>
    ```
  }];
  let arguments = (ins Tile_Tile:$scores, Tile_Tile:$blocks,
                       Tile_Tile:$candidate_score, Tile_Tile:$candidate_block);
  let results = (outs Tile_Tile:$best_scores, Tile_Tile:$best_blocks);
  let assemblyFormat = [{
    $scores `,` $blocks `,` $candidate_score `,` $candidate_block attr-dict
    `:` type($scores) `,` type($candidate_score)
  }];
  let hasVerifier = 1;
}

#endif // ATTNC_DIALECT_TILE_TILEOPS_TD
