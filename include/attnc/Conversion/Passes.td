//===- Passes.td - attnc conversions between levels --------*- tablegen -*-===//
//
// Every pass that lowers from one level (attn kernels, tile programs, GPU
// IR) to another, one directory of lib/Conversion each.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_PASSES_TD
#define ATTNC_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def LowerToReference : Pass<"attn-lower-to-reference", "::mlir::ModuleOp"> {
  let summary = "Lower attn kernels to their direct definition on memrefs";
  let description = [{
    Rewrites every `attn.kernel` into a `func.func` of the same name that
    computes the definition of its family op literally, with scf loops over
    memrefs: for the softmax family one row of scores per query is
    materialised (score and mask expressions inlined), then normalised; the
    linear family runs the recurrence step by step with the state in an f32
    buffer. This is the oracle that every optimised path is tested against,
    so it favours obviousness over speed.

    Calling convention of the generated function (with
    `llvm.emit_c_interface`): every parameter, then every result, as a
    strided memref of the tensor's rank with dynamic sizes, strides and
    offset (bool tensors as i8), then a `memref<?xi64>` status buffer of at
    least 8 elements. An optional parameter that the caller omits is passed
    with a null aligned pointer. The status buffer is zero on success. The
    first bad input of a run is recorded there and leaves the outputs
    unspecified: a gate value that is positive or not finite writes 1, the
    position (b, h, t, d) and the value's f64 bits; an out-of-bounds read of
    a parameter writes 2, the parameter's position, the dim, the index and
    the dim's size (the read itself yields 0); an integer division of an
    expression by 0, or of INT64_MIN by -1, writes 5, the operator's line
    and column, the dividend, the divisor and the divisor's parameter (or
    -1), and yields 0.

    Before:
    ```mlir
    attn.kernel @k(%q: !attn.tensor<f32[B, H, N, 64]>, ...) -> (o: ...) {
      %o = attn.softmax %q, %k, %v : ... score {} mask {}
      attn.return %o : ...
    }
    ```
    After:
    ```mlir
    func.func @k(%q: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
                 ..., %status: memref<?xi64>) attributes {llvm.emit_c_interface} {
      scf.for %b = ... { scf.for %h = ... { scf.for %i = ... { ... } } }
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

def TileSoftmax : Pass<"attn-tile-softmax", "::mlir::ModuleOp"> {
  let summary = "FlashAttention-2 tile programs of softmax-family kernels";
  let description = [{
    Rewrites every kernel whose family op is `attn.softmax`,
    `attn.chunk_softmax` or `attn.sparse_softmax` into a func.func (parameters, results, status buffer)
    holding a target-neutral tile program (docs/tile.md): an `attn_tile.grid`
    over (query block of `block-q` rows, head, batch entry) whose body loads
    the Q tile and visits the key blocks of `block-k` keys that can hold an
    allowed key, with the online softmax of FlashAttention-2:

      m' = max(m, rowmax(S)),  P = exp(S - m'),
      l' = l * exp(m - m') + rowsum(P),  acc' = acc * exp(m - m') + P V,
      o = acc / l and lse = m + log(l) after the last block.

    m, l and acc are tiles carried by the key loop; the score and mask
    expressions are fused into one `attn_tile.map` over the score tile.
    Nothing of size N x M exists. The key-block range of each query block
    comes from the band structure of the mask (causal, sliding windows,
    chunk-local: see MaskStructure), so blocks outside the band are not
    visited at all, and a block that lies wholly inside an exactly understood
    band (with all its keys present) runs a copy of the tile code without the
    mask. For block-sparse kernels the tiles are the op's blocks: with a
    block mask, the band's blocks that the mask marks present are visited;
    with lists, only the listed blocks (each once, if in the band).

    Top-k selection (`select = topk(...)`) chooses key blocks per query
    row: tiles of `block-q` rows against the selection's blocks, a first
    pass over the band's key blocks scores each against every row (the
    group's summed query against the block's mean key) and keeps each row's
    `topk` best eligible blocks with `attn_tile.top_k_insert`, then the
    online softmax visits the blocks some row kept, masked per row.

    `attn.softmax_backward` kernels become FlashAttention-2's backward
    (docs/tile.md, "The softmax backward"): instances (query block x, kv
    head, batch entry) computing dQ of query block x and dK, dV of key
    blocks x, x + X, ... (X: `attn_tile.query_blocks`); when the score
    reads float inputs (whose gradients are scatter-adds into a partial
    copy per instance), one `per_sequence` instance per (kv head, batch
    entry) instead. Square tiles of `backward-block` rows
    and keys (0: `block-q` rows, `block-k` keys; block-sparse kernels use
    their blocks, top-k kernels their key blocks as keys and, with
    `backward-block`, as rows too); top-k kernels take the forward's
    saved selection (`topk_blocks`); with head dims over `backward-key-sum-columns`
    together, the key sweep makes a pass for dV and one for dK. Other
    kernels are left for other passes.

    Before:
    ```mlir
    %o = attn.softmax %q, %k, %v : ... score {} mask { causal }
    ```
    After (sketch):
    ```mlir
    attn_tile.grid (%qb, %h, %b) heads %H batches %B block_rows 64 {
      %q = attn_tile.load %arg0[...] rows %rows row_dim 2 : ... -> tensor<64x64xbf16>
      %r:3 = scf.for %kb = %kbBegin to %kbEnd iter_args(%m = ..., %l = ..., %acc = ...) {
        %s = attn_tile.dot %q, %k, %zero {transpose_rhs} : ...
        %w = scf.if %full { map: score } else { map: score, mask }
        ... reduce max, maps, reduce add, dot %p, %v ...
      }
      attn_tile.store %o, %arg4[...] rows %rows row_dim 2 : ...
    }
    ```
  }];
  let options = [
    Option<"blockQ", "block-q", "int64_t", /*default=*/"64",
           "Query rows per tile">,
    Option<"blockK", "block-k", "int64_t", /*default=*/"64",
           "Keys per tile">,
    Option<"backwardBlock", "backward-block", "int64_t", /*default=*/"0",
           "Query rows and keys per tile of backward kernels (0: block-q "
           "and block-k)">,
    Option<"backwardKeySumColumns", "backward-key-sum-columns", "int64_t",
           /*default=*/"0",
           "The most columns of dK and dV together that one pass of a "
           "backward kernel over a key block's query blocks accumulates; "
           "above it, dV and dK take a pass each (0: no limit)">,
  ];
  let dependentDialects = [
    "::attnc::tile::TileDialect",
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def TileToLoops : Pass<"attn-tile-to-loops", "::mlir::ModuleOp"> {
  let summary = "Lowers tile programs to loops over buffers for the CPU";
  let description = [{
    The CPU backend of the tile programs (docs/tile.md). Every func.func
    holding an `attn_tile.grid` gets the CPU calling convention of
    attn-lower-to-reference: three more index arguments, `begin`, `end` and
    `row_blocks`, and `llvm.emit_c_interface`; its status buffer is cleared
    on entry, and the grid becomes one loop over the call's share [begin,
    end) of the (batch, head, query block) items, with `row_blocks` query
    blocks per (batch, head) (`attnc.cpu_row_block` tells the runner the
    block size); a `per_sequence` grid is one loop over (batch, head) items.

    Tiles become f32 buffers allocated once per call, before the loop, and
    reused in place where a tile's last use produces one of the same shape.
    This is the CPU's layout: rows padded to whole groups of 8-lane vectors
    (the padding is never read into a result); a tile with static rows that
    feeds `attn_tile.dot` as its transposed rhs, and is otherwise only read
    element by element, is stored transposed, so that `Q K^T` runs on
    vectors along the keys; `P V` runs on vectors along the value columns,
    several independent accumulators per loop. A 2-D map whose body is
    elementwise arith and math (scf.if included: both branches, then a
    select) runs on vectors of 8 columns: values that depend on the column
    are vectors, the others scalars; the last columns, and maps that read
    memory per element, clone their body per element. decay_dot sums over
    its depth on vectors. Vector exponentials become MLIR's polynomial
    approximation (relative error below 2^-22.5; exactly 0 from -87.8 down
    to -inf); scalar ones stay libm calls. Reductions, scans and
    top_k_insert are scalar loops. Zero splats that only initialize dot accumulators are never
    filled. Loop-carried and branch-yielded tiles stay in their buffers: a
    yielded tile that lives elsewhere is copied.

    Tiles with a dynamic head dimension need their size defined outside the
    grid (a parameter's dimension).
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect"
  ];
}

def TileLinear : Pass<"attn-tile-linear", "::mlir::ModuleOp"> {
  let summary = "Chunkwise-parallel tile programs of linear attention kernels";
  let description = [{
    Rewrites every kernel whose family op is `attn.linear` into a func.func
    (parameters, results, status buffer) holding a tile program
    (docs/tile.md): an `attn_tile.grid` with one program instance per (head,
    sequence) (`per_sequence`) that walks its sequence in chunks of the op's
    `chunk` steps, carrying the Dk x Dv state S in f32 from chunk to chunk.
    Within a chunk with cumulative log gates G_r = g_1 + ... + g_r (a
    `scan add`; one column for scalar gates, Dk for gates per key dim):

      o_r = scale * [ (phi(q_r) o exp(G_r)) S
                      + sum_{u <= r} (sum_d phi(q_r)_d phi(k_u)_d
                                      exp(G_r,d - G_u,d)) v_u ]
      S'  = exp(G_L) o S + (exp(G_L - G_u) o phi(k_u))^T V

    Every exponent is a difference G_r - G_u with u <= r (or G itself), so
    it is <= 0 and nothing overflows however strong the decay; terms whose
    exponent would be positive are masked with selects. Scalar gates split
    the decay off the product: one dot of the chunk's queries and keys, then
    exp(G_r - G_u) elementwise. Gates per key dimension use secondary
    chunking by `sub-tile` query rows from p: the keys before p decayed to
    p and the queries from p are one dot, the sub-tile's own keys an
    `attn_tile.decay_dot`. Non-causal kernels sum the state over all chunks
    first, then produce every output from it. Nothing larger than a chunk's
    C x C scores and the state exists.

    Before:
    ```mlir
    %o, %s = attn.linear %q, %k, %v {gate_kind = #attn<gate_kind per_head>} ...
    ```
    After (sketch):
    ```mlir
    attn_tile.grid (%qb, %h, %b) heads %H batches %B block_rows 64 per_sequence {
      %S = scf.for %c = %c0 to %chunks iter_args(%S = %S0) {
        %G = attn_tile.scan add (map: gates of the chunk)
        %o = attn_tile.dot (map: phi(q) exp(G)), %S, %zero
        %a = map (dot phi(q), phi(k)^T): u <= r ? a exp(G_r - G_u) : 0
        %o2 = attn_tile.dot %a, %v, %o
        attn_tile.store (map: scale o2), %out[...]
        %S2 = attn_tile.dot (map: k exp(G_L - G)), %v, (map: S exp(G_L)) {transpose_lhs}
        scf.yield %S2
      }
      attn_tile.store %S, %final[%b, %h, %c0] rows %dk row_dim 2
    }
    ```
  }];
  let options = [
    Option<"subTile", "sub-tile", "int64_t", /*default=*/"16",
           "Query rows per sub-tile of the per-key-dim intra-chunk scores">,
    Option<"stateBlock", "state-block", "int64_t", /*default=*/"64",
           "Key rows and value columns per block of the backward's states "
           "(scalar or no gates; key blocks when causal) where Dk or Dv is a "
           "larger static multiple of it; 0: whole states">,
  ];
  let dependentDialects = [
    "::attnc::tile::TileDialect",
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::tensor::TensorDialect"
  ];
}

def TileToNvgpu : Pass<"attn-tile-to-nvgpu", "::mlir::ModuleOp"> {
  let summary = "Lowers tile programs to mma.sync kernels";
  let description = [{
    The NVIDIA backend of the tile programs (docs/tile.md, docs/gpu.md):
    every func.func holding an `attn_tile.grid` becomes a kernel of the same
    name and arguments in `gpu.module @attnc_kernels`, with the
    launch facts GPU kernels carry. The grid is the launch grid: x counts
    `block_rows` query blocks of the parameter that the program loads at a
    row of its query block (whose rows bound every sequence's), y and z are
    the grid's `heads` and `batches` (a parameter's dim, or one less for
    cu_seqlens); a `per_sequence` grid has x = 1 (its CTA walks the whole
    sequence, like the backward's). A block is one CTA of `block_rows` / 16
    warps; warp w owns rows [16w, 16w + 16) of every tile with block rows.

    Tile layouts:
    - a loaded f16/bf16 tile lives in shared memory (rows padded by 16
      bytes), copied with 16-byte cp.async, zero-filled past its count (a
      block of columns from its first column, which must keep the copies
      16-byte aligned, as the linear backward's value blocks do). A
      load directly in the body of an innermost scf.for whose position and
      count are pure functions of the induction variable gets two stages:
      the first iteration's copy starts before the loop, and iteration
      k + 1's right after the wait and barrier that open iteration k. A
      loop's shared tiles are released after it (a wait and a barrier);
    - a loaded f32 1-D tile (lse) is read into this lane's two rows;
    - an f32 2-D tile is this lane's mma C fragments (rows g and g + 8,
      columns 2t and 2t + 1 of every 8; g = lane / 4, t = lane % 4);
    - an f32 1-D tile is this lane's two rows.

    `dot` runs on mma.sync.m16n8k16: A from shared memory by ldmatrix (held
    in registers across a loop of at most two products, at most 32 per lane
    for all of them) or
    from a C fragment rounded to the element type; B by ldmatrix (.trans
    unless the rhs is transposed). A transposed lhs of `block_rows` columns
    is stored to shared memory between barriers and read by ldmatrix.trans.
    `reduce` of a 2-D tile folds in the lane and over the quad with xor
    shuffles. `map` evaluates its body per fragment element with its
    position, rows past the tile's row count clamped to its last, reading
    loaded inputs from shared memory. `store` writes the rows below its
    count (one lane per row for 1-D tiles). Tiles carried by scf.for and
    scf.if travel as their registers.

    `scatter_add` into a result the function marks `attnc.partial_results`
    goes to the CTA's f32 copy in a workspace the kernel takes after the
    status words: the tiles are staged in shared memory and thread 0 adds
    them in row-major order; the last CTA to finish (a counter, fences)
    sums the copies in CTA order into the result, in its own type
    (`attnc.partial_result_types`).

    `scan`, `slice` and `transpose` move rows through shared memory;
    `decay_dot` and `decay_combine` sum each lane's elements' terms.
    Not lowered yet (reported naming the op): `top_k_insert`; kernels over
    `max-shared-bytes` are refused with the byte count.
  }];
  let options = [
    Option<"maxSharedBytes", "max-shared-bytes", "int64_t",
           /*default=*/"166912",
           "Dynamic shared memory a CTA may use (163 KiB, the A100's limit; "
           "227 KiB on sm_90)">,
  ];
  let dependentDialects = [
    "::attnc::attn::AttnDialect",
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect", "::mlir::LLVM::LLVMDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::nvgpu::NVGPUDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def GpuTileSoftmax : Pass<"attn-gpu-tile-softmax", "::mlir::ModuleOp"> {
  let summary = "FlashAttention-2 softmax kernels on tensor cores (mma.sync)";
  let description = [{
    Rewrites every kernel whose family op is `attn.softmax` or
    `attn.chunk_softmax` into a `gpu.func` kernel (same calling convention as
    attn-lower-to-reference) in the `gpu.module @attnc_kernels`, built from
    nvgpu and nvvm operations for sm_80 and later:

    - the grid is (query blocks of `rows-per-warp` * `warps` rows, query
      heads, batch entries); a CTA of `warps` warps, each owning
      `rows-per-warp` query rows: 16 (one mma row tile) or 32 (two, as in
      FlashAttention-2's 128-row blocks: every K and V fragment loaded from
      shared memory feeds two mma tiles). A warp keeps its Q fragments in
      registers when they take at most 32 registers per lane (16 rows up to
      head dim 128, 32 rows up to 64), else reloads them from the Q tile in
      shared memory for each key block;
    - Q, then K and V tiles of `block-k` keys are copied into shared memory
      with cp.async (16-byte copies, zero-filled past the sequence end), K
      and V in two stages so the next key block loads while the current one
      is consumed; `block-k` is halved (down to 16) while the tiles need more
      than `max-shared-bytes` (large head dims), except for block-sparse
      kernels, whose key tile is the sparsity block;
    - S = Q K^T and acc += P V use mma.sync.m16n8k16 with f16/bf16 operands
      and f32 accumulators; fragments come from ldmatrix (ldmatrix.trans for
      V); P stays in registers and becomes the A operand of P V;
    - the online softmax keeps m and l per row, reduced over the quad of
      lanes that share a row with warp shuffles, exponentials as exp2 (with
      no score expression and a positive scale, at 16 rows per warp, the
      scale is applied to the row max and folded into each weight's
      exponent FMA instead of multiplying every score);
    - key blocks outside the mask's band are not visited; blocks inside an
      exactly understood band skip the mask; score and mask expressions are
      fused into the tile code.

    Nothing of size N x M exists. The gpu.func carries its launch facts as
    `attn.launch = #attn.launch<...>` (threads, dynamic shared memory, the
    grid as three [param, dim, divisor, minus] entries meaning
    ceil(dim(param, dim) / divisor) - minus, ...; see the attn dialect).

    With `mma=wgmma` (sm_90a) each warpgroup of 4 warps computes its 64
    rows with wgmma.mma_async: the Q, K and V tiles are stored as 8x8 core
    matrices (the unswizzled wgmma operand layout) and fenced for the async
    proxy after their copies; S = Q K^T takes both operands from shared
    memory through matrix descriptors, P V takes P from registers and V
    from shared memory (MN-major). The score tile and the output
    accumulators have mma.sync's C layout per warp, so the softmax, the
    masks and the epilogue are the same code. K tiles are copied a block
    ahead of V tiles so that the next block's Q K^T is in flight while this
    block's softmax runs; P V's wait retires both before the barrier.
    Needs 16 rows per warp, whole warpgroups and no top-k selection.

    With `warp-specialize` (and `mma=wgmma`) the CTA gets a producer
    warpgroup after the `warps` that compute: it copies K and V of every
    visited block (cp.async, 128 threads) and signals a stage's "full"
    mbarrier with cp.async.mbarrier.arrive; the consumers wait on it,
    fence for the async proxy, and arrive on the stage's "empty" mbarrier
    once P V's wait retired their reads. No CTA barrier follows the
    prologue. With two consumer warpgroups setmaxnreg moves registers from
    the producer (40) to the consumers (232).

    With `split-keys=N` (a multiple of the key tile) each query block's
    keys are split into runs of N keys that different CTAs walk (grid x is
    query blocks times ceil(M / N), splits minor), as flash-decoding does
    for few query rows and long key sequences. Only the splits that meet
    the block's band run. Each stores its normalised partial output and its
    row log-sum-exp (f32) in the launch's workspace, then counts itself
    done on the block's counter (a release fence, a barrier and one atomic
    add); the CTA that counts last acquires the others' partials and writes
    o and lse, weighting each split by exp(lse_split - lse). Not with top-k
    selection, nor with two consumer warpgroups of a warp-specialised
    kernel. With `split-keys=auto` the launch chooses the number of splits S
    from the GPU's size (grid x is query blocks times S) and each split
    walks ceil(ceil(M / block-k) / S) key blocks; the kernel reads S from
    the grid.

    With `pack-gqa` a CTA's rows are (query, query head) pairs of one GQA
    group: row p of a kv head's problem is query p / G of query head
    kv_head * G + p % G (G query heads per kv head), grid x counts
    ceil(N * G / block_q) blocks and grid y the kv heads. The group's heads
    then share one copy of each K and V tile, and a decoding step (N = 1)
    fills G rows of the mma tiles instead of one. Score and mask
    expressions see each row's own query head (loads like slope[h] are
    hoisted per row); the key range is that of the block's queries. Dense
    and chunk-local kernels only: block-sparse ones take block_q query rows
    of one head (their block masks and lists are per head and query block).

    Block-sparse kernels take the sparsity block as the CTA tile with 16
    rows per warp (block_q / 16 warps).

    Top-k selection (`attn.sparse_softmax` with `topk`) keeps the CTA's 16 *
    `warps` rows (16 rows per warp whatever `rows-per-warp` says) and takes the selection block as its key tile: one pass over
    the band's key blocks computes each block's mean key in shared memory and
    scores it against every row (the query summed over the GQA group), one
    thread per row keeping its `topk` best eligible blocks sorted in shared
    memory; the union is marked in a shared bitmap (shared-memory atomics)
    that the key loop reads, and every tile masks per row by the row's list.
    Sequences of more than 32768 key blocks are reported (status 4).

    Linear kernels are left to attn-gpu-chunk-linear. Kernels this strategy
    cannot handle are reported as errors naming the feature: f32 or mixed
    q/k/v, head dims that are not fixed multiples of 16 up to 256, sparsity
    blocks that are not multiples of 16 up to 128, tiles that exceed
    `max-shared-bytes`.
  }];
  let options = [
    Option<"warps", "warps", "int64_t", /*default=*/"4",
           "Warps per CTA">,
    Option<"rowsPerWarp", "rows-per-warp", "int64_t", /*default=*/"16",
           "Query rows per warp: 16 or 32 (dense and chunk-local kernels)">,
    Option<"mma", "mma", "std::string", /*default=*/"\"sync\"",
           "Tensor-core instruction: sync (mma.sync, sm_80 and later) or "
           "wgmma (sm_90a: warpgroup mma on shared-memory tiles)">,
    Option<"warpSpecialize", "warp-specialize", "bool", /*default=*/"false",
           "With mma=wgmma: an extra producer warpgroup copies K and V and "
           "hands stages to the computing warps through mbarriers">,
    Option<"blockK", "block-k", "int64_t", /*default=*/"64",
           "Keys per shared-memory tile (a multiple of 16); halved while the "
           "tiles exceed max-shared-bytes">,
    Option<"splitKeys", "split-keys", "int64_t", /*default=*/"0",
           "Keys per split: CTAs of one query block walk different runs of "
           "this many keys and the last one combines them (0: no split; "
           "-1: each launch chooses the number of splits, the option text's "
           "split-keys=auto)">,
    Option<"packGqa", "pack-gqa", "bool", /*default=*/"false",
           "Pack the query heads of a GQA group into one CTA's rows, which "
           "share the group's K and V tiles (dense and chunk-local kernels)">,
    Option<"maxSharedBytes", "max-shared-bytes", "int64_t",
           /*default=*/"166912",
           "Dynamic shared memory a CTA may use (163 KiB, the A100's limit; "
           "227 KiB on sm_90)">,
  ];
  let dependentDialects = [
    "::attnc::attn::AttnDialect",
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect", "::mlir::LLVM::LLVMDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::nvgpu::NVGPUDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def GpuChunkLinear : Pass<"attn-gpu-chunk-linear", "::mlir::ModuleOp"> {
  let summary = "Chunkwise linear attention kernels on tensor cores (mma.sync)";
  let description = [{
    Rewrites every kernel whose family op is `attn.linear` (every gate kind;
    causal or not; feature maps; initial and final states; GQA; varlen) into a `gpu.func` kernel (same calling
    convention as attn-lower-to-reference) in `gpu.module @attnc_kernels`.
    One CTA of `warps` warps per (batch entry or sequence, query head) walks
    the sequence in chunks of the op's `chunk` steps (a multiple of 16, at
    most 16 * warps) with the state S (Dk x Dv, f32) in shared memory. With
    the chunk's cumulative log gates G_r:

      A  = (phi(Q) phi(K)^T) o D,  D[r][u] = exp(G_r - G_u) for u <= r
      O  = scale * (A V + exp(G_r) * phi(Q) S)
      S' = exp(G_last) S + (phi(K) o exp(G_last - G_u))^T V

    Q K^T, A V, Q S and the state update are mma.sync.m16n8k16 on ldmatrix
    fragments (the state rounded to the element type as the B operand of
    Q S; f32 q, k and v split into bf16 pairs, three mma per product);
    every exponent is a difference G_a - G_b with b <= a, so nothing
    overflows, and the gates are kept in log2 units, so each decay is one
    exp2. Score tiles of keys after a warp's rows are skipped.
    Per-key-dimension gates (GLA) use secondary chunking: scores against
    earlier 16-row tiles are mma.sync on Q and K scaled relative to the
    tile's first row, those within the tile are summed elementwise.
    Non-causal kernels sum the state over all chunks first. Refused with the
    reason: head dims that are not fixed multiples of 16 up to 128, chunks
    above 16 * warps, tiles and state that need more than
    `max-shared-bytes`.
    The value columns split across CTAs (`block-v` per CTA, grid x), each
    recomputing Q K^T. Causal kernels also split each sequence into
    segments of `segment-chunks` chunks, walked by different CTAs: a
    segment first sums what its chunks add to a zero state, waits for the
    state its predecessor ends with, publishes its own end state
    (exp(decay) S_start + S_own) through a workspace, and then computes its
    outputs from S_start. CTAs take segment-major tickets from a counter in
    the workspace, so a CTA only waits for CTAs that are running; the
    flags are acquired and released at GPU scope.
  }];
  let options = [
    Option<"warps", "warps", "int64_t", /*default=*/"4", "Warps per CTA">,
    Option<"blockV", "block-v", "int64_t", /*default=*/"0",
           "Value columns per CTA, a multiple of 16 dividing Dv (0: the "
           "default, min(Dv, 64))">,
    Option<"segmentChunks", "segment-chunks", "int64_t", /*default=*/"16",
           "Chunks per segment of causal kernels: CTAs walk segments of a "
           "sequence in parallel and hand their states on (0: one CTA walks "
           "the whole sequence)">,
    Option<"maxSharedBytes", "max-shared-bytes", "int64_t",
           /*default=*/"166912",
           "Dynamic shared memory a CTA may use (163 KiB, the A100's limit; "
           "227 KiB on sm_90)">,
  ];
  let dependentDialects = [
    "::attnc::attn::AttnDialect",
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect", "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::NVVM::NVVMDialect", "::mlir::nvgpu::NVGPUDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect"
  ];
}

def GuardEmulatedAccesses
    : Pass<"attnc-guard-emulated-accesses", "::mlir::ModuleOp"> {
  let summary = "Check every memref index of an emulated kernel at run time";
  let description = [{
    For the CPU warp emulator (after attnc-nvgpu-to-emulator): before every
    `memref.load`, `memref.store` and `memref.atomic_rmw` of a function with
    a body, compares each index with its dim (unsigned, so a negative index
    is caught too) and calls

      attnc_emu_check_access(i32 outside, i32 site, i64 index0..7,
                             i64 size0..7)

    (unused trailing indices and sizes are 0), which, when one index is
    outside, stops the CTA with a report and does not return. A call
    rather than a branch to a cold block per access: the kernels' lowering
    then has a few hundred blocks to simplify, not thousands. On the GPU
    such an access reads or overwrites a neighbouring shared tile or memory
    past a tensor, which corrupts results or faults at random; unguarded,
    the emulator would let it pass in its own heap.

    Each function gets `attnc.access_sites`, an array indexed by `site`:
    `{op = "memref.load", type = memref<...>}` plus `argument = N` when the
    memref is (a view or cast of) argument N, `byte = B` when it is a
    `memref.view` at constant byte offset B of an argument, or `local` when
    it is a `memref.alloca`. Memrefs of rank above 8 are refused.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect"
  ];
}

def NVGPUToEmulator : Pass<"attnc-nvgpu-to-emulator", "::mlir::ModuleOp"> {
  let summary = "Rewrite GPU kernels into host functions for the CPU warp "
                "emulator";
  let description = [{
    The warp emulator (attnc/Execution/GpuEmulator.h) runs the IR that
    becomes PTX: this pass takes the output of the GPU strategies
    (attn-gpu-tile-softmax, attn-gpu-chunk-linear, attn-tile-to-nvgpu) and
    rewrites each of its GPU operations, one pattern per op, into host code
    with the same meaning, mostly calls of the emulator's runtime
    (include/attnc/Conversion/NVGPUToEmulator/EmulatorAbi.def):

    - every `gpu.func` of a `gpu.module` becomes a `func.func` of the same
      name (with `llvm.emit_c_interface` and its `attn.launch` facts)
      whose trailing `memref<?xi8>` argument is the CTA's shared memory,
      which `gpu.dynamic_shared_memory` then reads; memrefs lose the
      workgroup address space;
    - `gpu.thread_id`, `gpu.block_id`, `gpu.grid_dim`, `gpu.barrier` and
      `gpu.shuffle xor` of f32, `nvgpu.ldmatrix`, `nvvm.mma.sync`
      (m16n8k16, f32 accumulators), the wgmma inline PTX that
      attnc/Target/NVVM/MmaLayout.h writes, `nvvm.wgmma.commit.group`,
      `nvvm.wgmma.wait.group` and the mbarrier operations become calls; an
      mbarrier is named by its byte in shared memory;
    - `nvgpu.device_async_copy` becomes loads and stores (zero-filled past
      its source elements), completed at once, so its groups and waits
      vanish, as do fences, `nvvm.wgmma.fence`, `nvvm.fence.proxy` and
      `nvvm.setmaxnreg`;
    - a shared memref's aligned pointer is its byte offset in shared
      memory, the address a shared-window pointer holds on the GPU (wgmma
      descriptors and mbarrier pointers are computed from it unchanged);
    - an acquire `llvm.load` (the wait for a flag another CTA releases)
      becomes a plain load checked by `attnc_emu_expect_published`: the
      emulator runs CTAs in order, so the flag must be set already.

    Any other GPU operation is an error naming it.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::ub::UBDialect",
    "::mlir::vector::VectorDialect"
  ];
}

#endif // ATTNC_CONVERSION_PASSES_TD
