//===- LinearKernelBuilder.h - Chunkwise linear attention's CTA -*- C++ -*-===//
//
// Private to attn-gpu-chunk-linear (GpuChunkLinear.cpp describes the
// algorithm): the tile shape and its shared-memory layout, and the builder
// of one CTA. Its parts live in files by concern:
//
//   LinearChunkSchedule.cpp  the CTA's setup and its walk over the chunks
//   LinearChunkLoads.cpp     the q, k, v tiles and gates of one chunk
//   LinearStateUpdate.cpp    the state update and the products it shares
//   LinearOutputs.cpp        the outputs of a chunk (Q S and (Q K^T o D) V)
//   LinearSegments.cpp       the hand-off of states between segments
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTONVGPU_LINEARKERNELBUILDER_H
#define ATTNC_LIB_CONVERSION_ATTNTONVGPU_LINEARKERNELBUILDER_H

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Target/NVVM/WarpBuilder.h"

#include <algorithm>
#include <tuple>
#include <utility>

namespace attnc::lowering {

struct LinearTileShape : WarpConfig {
  /// dimV is the head's value dim; blockV of its columns are the CTA's.
  int64_t chunk = 64, dimK = 0, dimV = 0, blockV = 0;
  int64_t pitchK() const { return dimK + chunkElements(); }
  int64_t pitchV() const { return blockV + chunkElements(); }
  // Shared memory: Q, K and V tiles (bf16/f16 or f32), the state in f32 and
  // as an mma operand, the chunk's gates and their prefix sums. The decayed
  // keys of the state update share the state operand's space: the operand
  // is read by the outputs and rebuilt after the update, never live with
  // them. Split f32 reads the state itself as the operand, padded like V so
  // that a warp's fragment loads hit distinct banks.
  int64_t tileBytes(int64_t pitch) const {
    return chunk * pitch * elementBytes();
  }
  int64_t queryOffset() const { return 0; }
  int64_t keyOffset() const { return tileBytes(pitchK()); }
  int64_t valueOffset() const { return 2 * keyOffset(); }
  int64_t stateOffset() const { return valueOffset() + tileBytes(pitchV()); }
  int64_t statePitch() const { return splitF32 ? pitchV() : blockV; }
  int64_t stateOperandOffset() const {
    return stateOffset() + dimK * statePitch() * 4;
  }
  int64_t decayedKeyOffset() const { return stateOperandOffset(); }
  int64_t stateOperandBytes() const {
    if (splitF32)
      return tileBytes(pitchK());
    return std::max(dimK * pitchV() * elementBytes(), tileBytes(pitchK()));
  }
  int64_t gateOffset() const {
    return stateOperandOffset() + stateOperandBytes();
  }
  int64_t cumulativeOffset() const { return gateOffset() + chunk * 4; }
  // Per-key-dimension gates add the table G[r][d] of cumulative gates;
  // the mma operands scale their elements by it as they load them. Its
  // rows are padded by 4 so that the rows of a fragment spread over banks.
  bool perKeyDim = false;
  int64_t gateTableOffset() const { return cumulativeOffset() + chunk * 4; }
  int64_t gateTablePitch() const { return dimK + 4; }
  int64_t chunkBytes() const {
    if (perKeyDim)
      return gateTableOffset() + chunk * gateTablePitch() * 4;
    return cumulativeOffset() + chunk * 4;
  }
  /// Chunks per segment of a causal kernel; 0: one CTA walks the sequence.
  int64_t segmentChunks = 0;
  // Segmented kernels add the CTA's ticket and the log decay of its
  // segment per key dim (one value for scalar gates).
  int64_t ticketOffset() const { return (chunkBytes() + 15) / 16 * 16; }
  int64_t segmentDecayOffset() const { return ticketOffset() + 16; }
  int64_t sharedBytes() const {
    return segmentChunks ? segmentDecayOffset() + dimK * 4 : chunkBytes();
  }
};

class LinearKernelBuilder : public WarpBuilder {
public:
  LinearKernelBuilder(LoweringBuilder &rb, const LinearTileShape &shape,
                      Value workspace)
      : WarpBuilder(rb, shape), shape(shape),
        workspace(workspace), C(shape.chunk), dimK(shape.dimK),
        sliceV(shape.blockV), perKeyDim(shape.perKeyDim) {}

  /// The CTA's body for `linearOp` (LinearChunkSchedule.cpp).
  void build(LinearOp linearOp, ValueRange results);

private:
  /// exp(x) of a log decay x in log2 units. The gate tables hold G log2 e,
  /// so that each decay exp(G_a - G_b) is one ex2.approx of a difference,
  /// as FlashAttention computes its exponentials; libdevice's expf spends
  /// eight more instructions on range reduction. Scaling G adds a relative
  /// error of about |G| 2^-24, far below the bf16 rounding of the operands.
  Value exp2(Value x) { return math::Exp2Op::create(b, x); }
  /// A gate as the tables hold it.
  Value inLog2Units(Value gate) {
    return arith::MulFOp::create(
        b, gate, rb.f32(static_cast<float>(llvm::numbers::log2e)));
  }
  Value isZero(Value x) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::eq, x, idx(0));
  }

  //===--------------------------------------------------------------------===//
  // The CTA and its walk over the chunks (LinearChunkSchedule.cpp)
  //===--------------------------------------------------------------------===//

  /// Thread, lane and warp indices, and the CTA's block of value columns,
  /// head and batch entry (or sequence), with segments from its ticket.
  void locateCta();
  /// Unit-stride views of q, k and v, and the shared tiles.
  void viewOperandsAndTiles();
  /// The sequence's start and steps, its chunk count and whether an
  /// initial state is present.
  void boundSequence();
  /// Causal kernels: each chunk's outputs from the state before it, then
  /// the state update (with segments, from the state the segment starts
  /// from).
  void walkCausal();
  /// Non-causal kernels: the state over all chunks, then every output.
  void walkNonCausal();
  /// The first step t0 of chunk `chunkIndex` and its rows.
  std::pair<Value, Value> chunkRows(Value chunkIndex);
  /// initial[batch, head, d, col0 + e], or 0.
  Value initialAt(Value d, Value e);
  // body(d, e, i) for each element (d, e) of the CTA's state slice, with
  // i = d * sliceV + e its position in the slice.
  void forEachStateElement(llvm::function_ref<void(Value, Value, Value)> body);
  // S = S_0 (or 0)
  void startFromInitialState();
  /// finalState[batch, head, d, col0 + e] = S[d][e].
  void storeFinalState();

  //===--------------------------------------------------------------------===//
  // A chunk's inputs (LinearChunkLoads.cpp)
  //===--------------------------------------------------------------------===//

  // Loads rows [t0, t0 + rows) of q (when `withQuery`), k and v, applies the
  // feature map, zeroes key rows past the chunk, and (gated) computes the
  // cumulative gates G_r of the chunk (in log2 units).
  void loadChunk(Value t0, Value rows, bool withQuery, bool withKeys);
  // The cumulative log gate of chunk row r (at key dim d when per key dim).
  Value cumulativeAt(Value r, Value d = Value());

  //===--------------------------------------------------------------------===//
  // Products and the state update (LinearStateUpdate.cpp)
  //===--------------------------------------------------------------------===//

  /// The A fragment of 16 rows of `tile` from `row0`, columns [16kk,
  /// 16kk + 16), its elements through `transform` when given.
  MmaOperand rowFragment(Value tile, Value row0, int64_t kk,
                         ElementTransform transform = nullptr);
  /// Step kk's A fragment of a product (16 rows, 16 columns per step).
  using FragmentAt = llvm::function_ref<MmaOperand(int64_t kk)>;

  /// acc (outputTiles x 4) += A B for A = 16 rows x (16 * steps) given as
  /// fragments and B rows [16kk, 16kk + 16) of `tile` (row-major, read with
  /// ldmatrix.trans: V, or the state operand). Split f32 fragments take
  /// twice the registers: each is asked for when its step comes.
  void accumulateTimesRows(FragmentAt a, int64_t steps, Value tile,
                           int64_t columns, SmallVector<Value> &acc);

  // S = exp(G_last) S + (K o exp(G_last - G_u))^T V; warp w updates the
  // state rows [16 dt, 16 dt + 16) for dt = w, w + warps, ...
  void updateState(Value rows);
  // The state as an mma operand (rounded to the element type); split f32
  // reads the state itself.
  void refreshStateOperand();

  //===--------------------------------------------------------------------===//
  // Outputs (LinearOutputs.cpp)
  //===--------------------------------------------------------------------===//

  // Outputs of the chunk's rows [16w, 16w + 16) (w < C / 16).
  void emitOutputs(Value t0, Value rows, bool intra);
  /// A = (Q K^T) o D of the warp's rows [r0, r0 + 16) over the chunk's
  /// keys, in the mma accumulator order (n-tile, then register); `queries`
  /// gives Q's fragments, `keyScaled` scales the keys per key dim.
  SmallVector<Value> intraChunkWeights(Value r0, Value rowOf[2], Value rows,
                                       FragmentAt queries,
                                       ElementTransform keyScaled,
                                       bool elementwise);
  // Per key dim: the lane's 8 weights against the keys of warp w's own
  // 16-row tile, sum_d q[r][d] k[u][d] exp(G[r][d] - G[u][d]) for u <= r
  // (0 otherwise), in the mma accumulator order (n-tile, then register).
  SmallVector<Value> diagonalWeights(Value warp, Value rowOf[2], Value rows);

  //===--------------------------------------------------------------------===//
  // Segments: CTAs of one sequence hand their states along the workspace
  // (GpuImage.h: a ticket counter, a flag per CTA, then their states).
  // LinearSegments.cpp.
  //===--------------------------------------------------------------------===//

  /// This CTA's ticket: CTAs take them in the order they start, so a CTA
  /// only ever waits for CTAs that are already running.
  Value takeTicket(Value ticketWord);
  /// The address of workspace word `word` (for atomics with an order).
  Value workspaceAddress(Value word);
  /// Waits until the CTA with ticket `ticket` has published its state.
  /// Every thread acquires the flag itself, so its later reads of the state
  /// see the publisher's writes.
  void awaitState(Value ticket);
  /// Sets the flag of `ticket` once every thread's state words are written:
  /// each thread's release fence orders its writes before the barrier,
  /// after which one thread releases the flag.
  void publishState(Value ticket);
  // The chunks [first, end) of a segment; `hasSuccessor` when more follow.
  // Before its own chunks, a segment that has a successor sums what its
  // chunks add to a zero state (and their log decay), and combines that
  // with the state it starts from, once its predecessor has published it:
  //   S_end = exp(decay) S_start + S_own
  // The CTA then walks its chunks from S_start.
  void enterSegment(Value first, Value end, Value hasSuccessor);

  const LinearTileShape &shape;
  Value workspace;
  Value lane, group, inGroup;

  /// The chunk length, key head dim and the CTA's value columns.
  const int64_t C, dimK, sliceV;
  const bool perKeyDim;

  // What build() sets up before the chunks (in this order).
  LinearOp op;
  AttentionOperands operands;
  Value o, finalState, initial;
  bool gated = false;
  Value scale;
  Value warp, base;
  // The CTA's block of value columns, head and batch entry (or sequence),
  // and with segments its segment of the sequence's chunks.
  bool segmented = false;
  Value head, batch, ticket, perSegment, segment;
  // This CTA's value columns: [col0, col0 + sliceV).
  Value col0, headK;
  Value q, k, v;
  Value queryTile, keyTile, decayedKeys, valueTile, state, stateOperand,
      gates, cumulative, gateTable;
  Value start, steps, numChunks;
  Value hasInitial;
};

} // namespace attnc::lowering

#endif // ATTNC_LIB_CONVERSION_ATTNTONVGPU_LINEARKERNELBUILDER_H
