//===- LinearBackwardProgram.h - Builder of the linear backward -*- C++ -*-===//
//
// Private to attn-tile-linear: the builder of attn.linear_backward's tile
// program (TileLinearBackward.cpp: the chunks, states and dq, dk, dv;
// TileLinearBackwardGates.cpp: the gates' gradients and the sub-tiles of
// gates per key dimension).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOTILE_LINEARBACKWARDPROGRAM_H
#define ATTNC_LIB_CONVERSION_ATTNTOTILE_LINEARBACKWARDPROGRAM_H

#include "TileBuilding.h"
#include "attnc/Conversion/KernelLowering/ExpressionGradient.h"
#include "attnc/Conversion/KernelLowering/KernelLowering.h"

namespace attnc::lowering {

using mlir::RankedTensorType;

class LinearBackwardProgram {
public:
  LinearBackwardProgram(LinearBackwardOp op, LoweringBuilder &rb,
                        int64_t maxSubTile, int64_t stateBlock)
      : op(op), rb(rb), b(rb.b), shape(getAttentionOperands(op, rb)),
        chunk(op.getChunk()) {
    f32 = b.getF32Type();
    dimK = tileHeadDim(op.getQ());
    dimV = tileHeadDim(op.getV());
    gated = op.getCausal() && !op.getGate().empty();
    perKeyDim = gated && op.getGateKind() == GateKind::per_key_dim;
    // Sub-tiles divide the chunk, so that none reaches past it (where a
    // zero cumulative gate would make the decays grow).
    subTile = std::min(maxSubTile, chunk);
    while (chunk % subTile)
      --subTile;
    // Scalar (or no) gates take v, dO, dv and the states' columns by
    // blocks of value columns when Dv is a larger static multiple of the
    // block, and q, k, dq, dk and the states' rows by blocks of key
    // columns likewise (fewer registers per tile on the GPU); gates per
    // key dim take whole rows.
    wholeValues = perKeyDim;
    auto blockOf = [&](int64_t dim) {
      return !wholeValues && stateBlock > 0 && !ShapedType::isDynamic(dim) &&
                     dim > stateBlock && dim % stateBlock == 0
                 ? stateBlock
                 : dim;
    };
    valueCols = blockOf(dimV);
    keyCols = blockOf(dimK);
    wholeKeys = keyCols == dimK;
    if (op.getInitialState())
      initial = rb.params.lookup(op.getInitialState());
    if (op.getDFinalState())
      dFinal = rb.params.lookup(op.getDFinalState());
    dOut = rb.params.lookup(op.getDOut());
    for (Region *region : {&op.getGate(), &op.getFeature()})
      if (!region->empty())
        region->walk([&](LoadOp load) {
          if (load.getType().isF32())
            floatLoads.push_back({load, region});
        });
    // Only a gate that reads float inputs has gradients to compute.
    gateReadsFloats =
        gated && llvm::any_of(floatLoads, [&](const auto &floatLoad) {
          return floatLoad.second == &op.getGate();
        });
  }

  void build(ValueRange results);

private:
  /// One chunk's tiles, all of C rows (rows past the sequence end are
  /// zero); `queriesIn`/`keysIn` are before the feature map; `values` and
  /// `dOut` only with wholeValues, the queries and keys only with
  /// wholeKeys (else loaded per block).
  struct Chunk {
    Value t0, rows;
    Value queriesIn, queries, keysIn, keys, values, dOut;
    /// Cumulative log gates (C x 1, or C x Dk per key dim; null without
    /// gates), the last step's as a row (1 x ...) and as a column (... x 1).
    /// Read through gatesOf.
    Value gates, lastGate, lastGateColumn;
    /// Whether `gates` went to gateScratch (per key dim, by loadQueries).
    bool gatesStored = false;
  };

  /// The chunk's cumulative gates: per key dim loaded from gateScratch at
  /// each use, so that no C x Dk tile of them stays alive through the
  /// chunk's work (on the GPU: Dk / 2 registers a lane).
  Value gatesOf(const Chunk &c) {
    return c.gatesStored
               ? scratchRows(gateScratch, zero, rb.index(chunk), gateType)
               : c.gates;
  }
  /// Rows [first, first + count) of the stored gates (per key dim).
  Value gateRows(Value first, int64_t count) {
    return scratchRows(gateScratch, first, rb.index(count),
                       tileType(count, dimK));
  }

  RankedTensorType tileType(int64_t rows, int64_t cols) {
    return RankedTensorType::get({rows, cols}, f32);
  }
  /// The f32 tile type of `x`'s shape.
  RankedTensorType asF32(Value x) {
    return cast<RankedTensorType>(x.getType()).clone(f32);
  }
  /// A map element as f32 (q and k without a feature map keep their type).
  Value widened(Value x) {
    return x.getType().isF32() ? x : Value(arith::ExtFOp::create(b, f32, x));
  }
  /// Zeros of a tile of C rows and `cols` columns (when dynamic).
  Value zeros(RankedTensorType type, Value cols = Value()) {
    return splatTile(b, rb.f32(0), type, Value(), cols);
  }
  Value zeroState() {
    return splatTile(b, rb.f32(0), stateType, shape.dimK, shape.dimV);
  }
  /// Zeros of a state's value block (the whole state when rows are whole:
  /// stateBlockType is then stateType).
  Value zeroStateBlock() {
    return splatTile(b, rb.f32(0), stateBlockType, shape.dimK, shape.dimV);
  }
  Value dot(RankedTensorType type, Value lhs, Value rhs, Value acc,
            bool transposeLhs = false, bool transposeRhs = false) {
    return tile::DotOp::create(b, type, lhs, rhs, acc, transposeLhs,
                               transposeRhs);
  }
  /// x * exp(a - bTile) (or x * exp(a)), broadcasting the gate tiles.
  Value decayed(Value x, Value a, Value bTile = Value()) {
    SmallVector<Value> inputs = {x, a};
    if (bTile)
      inputs.push_back(bTile);
    return buildMap(
        b, asF32(x), inputs, [&](ValueRange, ValueRange e) -> Value {
          Value exponent =
              bTile ? Value(arith::SubFOp::create(b, e[1], e[2])) : e[1];
          return rb.mul(widened(e[0]), math::ExpOp::create(b, exponent));
        });
  }
  /// scale x, or scale exp(B) o x with `gates` B (one map).
  Value scaled(Value x, Value gates = Value()) {
    SmallVector<Value> inputs = {x};
    if (gates)
      inputs.push_back(gates);
    return buildMap(
        b, asF32(x), inputs, [&](ValueRange, ValueRange e) -> Value {
          Value value = rb.mul(scale, widened(e[0]));
          return gates ? rb.mul(value, math::ExpOp::create(b, e[1])) : value;
        });
  }
  SmallVector<Value> rowPosition(Value h, Value t) {
    return rowLayoutIndices(shape.layout, batch, h, rb.add(start, t));
  }

  /// Chunk `chunkIndex`'s steps and, unless `withKeys` is false, its keys
  /// and values (shared by the group).
  Chunk loadKeys(Value chunkIndex, bool withKeys = true);
  /// Adds the gates of query head `head` to `c` and, unless `withRows` is
  /// false, its queries and dO.
  void loadQueries(Chunk &c, Value head, bool withRows = true);
  /// C-row tile of `source` at the chunk's rows of head `h`: whole rows of
  /// `cols` columns, or the value block from `column` (when not null).
  Value loadRows(Value source, Value h, const Chunk &c, int64_t cols,
                 Value column = Value());
  /// The value block from `column` of the chunk's values (dO of head `h`
  /// when `h` is given): c.values / c.dOut with wholeValues.
  Value valueRows(const Chunk &c, Value column, Value h = Value()) {
    if (wholeValues)
      return h ? c.dOut : c.values;
    return h ? loadRows(dOut, h, c, valueCols, column)
             : loadRows(shape.v, headK, c, valueCols, column);
  }
  /// The key block from `column` of the chunk's keys (queries of head `h`
  /// when `h` is given), before and after the feature map: those of `c`
  /// with wholeKeys.
  std::pair<Value, Value> keyRows(const Chunk &c, Value column,
                                  Value h = Value()) {
    if (wholeKeys)
      return h ? std::pair(c.queriesIn, c.queries)
               : std::pair(c.keysIn, c.keys);
    Value loaded = h ? loadRows(shape.q, h, c, keyCols, column)
                     : loadRows(shape.k, headK, c, keyCols, column);
    return {loaded, features(loaded, c.rows)};
  }
  /// `body(column)` for each block of `blockCols` of `cols` columns in
  /// order, carrying `init`; once, with a null column, when the block is
  /// whole.
  SmallVector<Value> overBlocks(
      int64_t cols, int64_t blockCols, ValueRange init,
      function_ref<SmallVector<Value>(Value column, ValueRange carried)> body) {
    if (blockCols == cols)
      return body(Value(), init);
    return rb.loop(zero, rb.index(cols / blockCols), init,
                   [&](Value block, ValueRange carried) {
                     return body(rb.mul(block, rb.index(blockCols)), carried);
                   });
  }
  SmallVector<Value> overValueBlocks(
      ValueRange init,
      function_ref<SmallVector<Value>(Value column, ValueRange carried)> body) {
    return overBlocks(dimV, valueCols, init, body);
  }
  SmallVector<Value> overKeyBlocks(
      ValueRange init,
      function_ref<SmallVector<Value>(Value column, ValueRange carried)> body) {
    return overBlocks(dimK, keyCols, init, body);
  }
  void overValueBlocks(function_ref<void(Value column)> body) {
    overValueBlocks({}, [&](Value column, ValueRange) {
      body(column);
      return SmallVector<Value>();
    });
  }
  void overKeyBlocks(function_ref<void(Value column)> body) {
    overKeyBlocks({}, [&](Value column, ValueRange) {
      body(column);
      return SmallVector<Value>();
    });
  }
  /// `body(row, column)` for each block of a state: its key rows from
  /// `row`, its value columns from `column` (null when whole).
  void overStateBlocks(function_ref<void(Value row, Value column)> body) {
    overKeyBlocks([&](Value row) {
      overValueBlocks([&](Value column) { body(row, column); });
    });
  }
  /// The scores Q K^T of head `head`'s queries in `c` (summed over the key
  /// blocks).
  Value scores(const Chunk &c, Value head);
  /// `position`, and `column` after it when not null.
  static SmallVector<Value> atColumn(SmallVector<Value> position,
                                     Value column) {
    if (column)
      position.push_back(column);
    return position;
  }
  /// phi of a loaded tile, rows past the chunk's end zero.
  Value features(Value loaded, Value rows);
  /// The state at the start of each chunk of query head `head` (the
  /// group's `member`) into `starts`.
  void chunkStartStates(Value head, Value member);
  /// scale (x o D), zero above the diagonal: D[r][u] = exp(B_r - B_u).
  Value causalDecay(Value x, Value gates);
  /// The causal gradients: the sweep backward over the chunks.
  void causalGradients(Value firstHead);
  /// Row sums of x o y, one per step.
  Value rowSums(Value x, Value y);
  /// sum_{r >= t > u} W[r][u] per step t, W = A o dP = dA o (Q K^T)
  /// below the diagonal (see gateGradients' definition), from dA and the
  /// scores Q K^T.
  Value gatePairTerms(Value dAttention, Value scores);
  /// The gradients of the gate's inputs at one head's chunk from its
  /// terms (see the definition): the pairs, the row sums of q o fromState
  /// (X) and k o toState (Y), and the row sums of exp(B_L) H o dH
  /// (`stateRows`).
  void gateGradients(Value head, const Chunk &c, Value pairs, Value fromStart,
                     Value toEnd, Value stateRows);
  /// hoistInvariantLoads of the gate for query head `head`.
  void hoistGateLoads(Value head);
  /// The sizes of a [count, Dk, Dv] scratch memref's dynamic dims (`count`
  /// null when static).
  SmallVector<Value> scratchSizes(Value count) {
    SmallVector<Value> sizes;
    if (count)
      sizes.push_back(count);
    if (ShapedType::isDynamic(dimK))
      sizes.push_back(shape.dimK);
    if (ShapedType::isDynamic(dimV))
      sizes.push_back(shape.dimV);
    return sizes;
  }
  /// The intra-chunk gradients of one head of a kernel with gates per key
  /// dimension, by sub-tiles (see perKeyDimIntra's comment): dq's into
  /// `dqScratch`, dk's and dv's added to `dkScratch` and `dvScratch`, the
  /// gates' pair terms into `dgScratch`.
  void perKeyDimIntra(const Chunk &c);
  /// Adds to `dgScratch` the gate terms of a product through the states
  /// per key dim: sum_{r >= t} of q o fromState (`queries`), or
  /// sum_{u < t} of k o toState.
  void addStateGateTerms(Value keysOrQueries, Value stateTerm, bool queries);
  /// The gradient of each step's log gates per key dim: the terms in
  /// `dgScratch` plus exp(B_L) <H, dH> per key dim from the chunk's start
  /// state and dH.
  Value perKeyDimGateGradients(const Chunk &c, Value state, Value dState);
  /// Rows [first, first + count) of a [C, cols] scratch memref (the
  /// block of `type`'s columns from `column` when not null).
  Value scratchRows(Value memref, Value first, Value count,
                    RankedTensorType type, Value column = Value()) {
    return tile::LoadOp::create(b, type, memref, atColumn({first}, column),
                                count, /*row_dim=*/0);
  }
  void storeScratchRows(Value value, Value memref, Value first, Value count,
                        Value column = Value()) {
    tile::StoreOp::create(b, value, memref, atColumn({first}, column), count,
                          /*row_dim=*/0);
  }
  /// The non-causal gradients (S = S_0 + sum_t k_t^T v_t, no gates).
  void nonCausalGradients(Value firstHead);
  /// d phi(x) / dx times `upstream`, and the feature map's float inputs'
  /// gradients scatter-added.
  Value throughFeatures(Value loaded, Value upstream, const Chunk &c);
  /// The gradients of the gate's float inputs at the chunk's steps, given
  /// each step's dg.
  void gateInputGradients(Value head, const Chunk &c, Value dg);
  /// Stores `value` at the chunk's rows of `dest` (head `h`).
  void storeRows(Value value, Value dest, Value h, const Chunk &c,
                 Value column = Value()) {
    tile::StoreOp::create(b, value, dest,
                          atColumn(rowPosition(h, c.t0), column), c.rows,
                          shape.dims.seq);
  }
  /// The gradient of float load `number` over a tile of `type` whose first
  /// `rows` rows are the chunk's steps (0 past them): `gradientAt` gives
  /// the expression's gradient at a position from the map's inputs there.
  /// With `positions`, also the tiles of the load's indices (-1 past the
  /// rows), as f32.
  Value loadGradient(
      size_t number, RankedTensorType type, Value rows, ValueRange inputs,
      llvm::function_ref<ExpressionGradient(ValueRange at, ValueRange x)>
          gradientAt,
      SmallVector<Value> *positions = nullptr);
  /// scatter_add of loadGradient into the input's partial copy.
  void scatterLoad(
      size_t number, RankedTensorType type, Value rows, ValueRange inputs,
      llvm::function_ref<ExpressionGradient(ValueRange at, ValueRange x)>
          gradientAt);
  /// The row dim of a gate load that reads each step of each query head at
  /// its own element, covering its tensor: indices b, h, t (tstart + t when
  /// sequences are packed) and, for gates per key dim, d last, each once,
  /// over the dims of q. Only such a load reads its tensor. Its gradient is
  /// then stored, not scatter-added (no copies, any thread count).
  std::optional<unsigned> directRowDim(LoadOp load);
  /// Stores the gradient of gate load `number` (directRowDim) at the
  /// chunk's steps of query head `head`.
  void storeGateInputGradient(size_t number, Value head, const Chunk &c,
                              Value gradient);
  Value inputGradient(LoadOp load) {
    auto input = llvm::find(op.getInputs(), load.getTensor());
    return inputGradients[input - op.getInputs().begin()];
  }
  /// The [B, H, Dk, Dv] tile of head `h` of `memref`, or its block of key
  /// rows from `row` and value columns from `column` (each when not null);
  /// an omitted optional one reads as zeros.
  Value stateTile(Value memref, Value h, Value row = Value(),
                  Value column = Value());
  /// Scratch state `index` of `memref` ([?, Dk, Dv]), or its block from
  /// `row` and `column`.
  Value scratchState(Value memref, Value index, Value row = Value(),
                     Value column = Value());
  void storeScratchState(Value state, Value memref, Value index,
                         Value row = Value(), Value column = Value());
  /// Sums down the rows of `x`: up to each row, or from it (`reverse`),
  /// with or without the row itself (`exclusive`).
  Value scanSums(Value x, bool reverse = false, bool exclusive = false) {
    auto scan = tile::ScanOp::create(b, x.getType(), tile::ReduceKind::add, x);
    scan.setReverse(reverse);
    scan.setExclusive(exclusive);
    return scan;
  }
  Value add(Value x, Value y) {
    return buildMap(
        b, cast<RankedTensorType>(x.getType()), {x, y},
        [&](ValueRange, ValueRange e) -> Value { return rb.add(e[0], e[1]); });
  }

  LinearBackwardOp op;
  LoweringBuilder &rb;
  ImplicitLocOpBuilder &b;
  AttentionOperands shape;
  int64_t chunk, subTile;
  Type f32;
  int64_t dimK, dimV;
  /// Columns per value block and per key block (dimV, dimK when whole).
  int64_t valueCols, keyCols;
  bool gated = false, perKeyDim = false, gateReadsFloats = false,
       wholeValues = true, wholeKeys = true;
  Value initial, dFinal, dOut;
  /// The float loads of the gate and feature regions (the op's `inputs`
  /// order), and each input's partial copy.
  SmallVector<std::pair<LoadOp, Region *>> floatLoads;
  SmallVector<Value> inputGradients;
  Value dq, dk, dv, dInitial;
  Value zero, one, scale, batch, headK, start, steps, numChunks;
  /// The rows of a state block (Dk when whole), defined at the grid's
  /// start: a tile that an scf.if yields (stateTile of an optional state)
  /// must not count its rows with a value defined inside it.
  Value stateBlockRows;
  /// Causal scratch: chunk start states ([G x chunkSlots, Dk, Dv], head
  /// `member`'s from member x chunkSlots) and each head's dH ([G, Dk, Dv]);
  /// non-causal: KV and the group's summed dS ([2, Dk, Dv]).
  Value starts, dStates, chunkSlots, stateSums;
  /// Per key dim: one chunk's intra-chunk dq, dg of a head and dk, dv
  /// summed over the group ([C, Dk] and [C, Dv]); by key blocks: dk summed
  /// over the group.
  Value dqScratch, dgScratch, dkScratch, dvScratch;
  /// Per key dim: one head's cumulative gates of a chunk ([C, Dk]).
  Value gateScratch;
  RankedTensorType stateType, keyType, valueType, scoreType, gateType;
  /// A state's block (keyCols x valueCols) and a chunk's value and key
  /// blocks (C x valueCols, C x keyCols).
  RankedTensorType stateBlockType, valueBlockType, keyBlockType;
  /// One f32 per step of a chunk.
  RankedTensorType stepType;
};

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTOTILE_LINEARBACKWARDPROGRAM_H
