//===- GpuChunkLinear.cpp - Chunkwise linear attention on tensor cores ----===//
//
// One CTA per (batch or sequence, query head) walks the sequence in chunks
// of C steps with the state S (Dk x Dv, f32) in shared memory. Per chunk,
// with cumulative scalar log gates G_r (G = 0 without a gate):
//
//   A     = (phi(Q) phi(K)^T) o D,    D[r][u] = exp(G_r - G_u) for u <= r
//   O     = scale * (A V + exp(G_r) * (phi(Q) S))
//   S'    = exp(G_last) * S + (phi(K) o exp(G_last - G_u))^T V
//
// Q K^T, A V, Q S and K~^T V are mma.sync.m16n8k16 (f16/bf16 operands, f32
// accumulators; f32 q, k and v stay f32 in shared memory and each operand
// splits into bf16 pairs, three mma per product); warp w computes the output
// rows [16w, 16w + 16) of the chunk and the state rows [16w', ...) for w' = w,
// w + warps, ... Every exponent is G_a - G_b with b <= a, or G itself, so none
// overflows. Non-causal kernels sum the state over all chunks first, then
// compute every output from it.
//
// The value columns split across CTAs (grid x): a CTA owns `blockV` columns
// of V, S and O and recomputes Q K^T. Causal kernels also split each
// sequence into segments of `segmentChunks` chunks on different CTAs: a
// segment sums what its chunks add to a zero state (S_own, with the log
// decay of the whole segment), takes the state S_start that its predecessor
// ends with from the workspace, hands on exp(decay) S_start + S_own, and
// only then walks its chunks from S_start. The chain between segments is
// one short step each; everything else runs in parallel, which is what
// fills the GPU when batch x heads is small and sequences are long.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Target/NVVM/WarpBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "llvm/Support/FormatVariadic.h"

namespace attnc {
#define GEN_PASS_DEF_GPUCHUNKLINEAR
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

namespace {

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

/// Value columns per CTA when the pipeline leaves it open.
int64_t defaultBlockV(int64_t dimV) { return std::min<int64_t>(dimV, 64); }

std::string unsupportedReason(LinearOp op, LinearTileShape &shape,
                              int64_t maxSharedBytes) {
  shape.perKeyDim = op.getGateKind() == GateKind::per_key_dim;
  int64_t chunk = op.getChunk();
  int64_t requestedBlockV = shape.blockV;
  if (chunk % 16 || chunk > 16 * shape.warps)
    return llvm::formatv("the chunk must be a multiple of 16 up to {0} on the "
                         "GPU (got {1})",
                         16 * shape.warps, chunk)
        .str();
  shape.chunk = chunk;
  std::string reason = checkTensorCoreOperands(op, /*maxHeadDim=*/128, shape,
                                               shape.dimK, shape.dimV);
  if (!reason.empty())
    return reason;
  shape.blockV = requestedBlockV ? requestedBlockV : defaultBlockV(shape.dimV);
  if (shape.blockV % 16 || shape.dimV % shape.blockV)
    return llvm::formatv("block-v must be a multiple of 16 that divides the "
                         "value head dim {0} (got {1})",
                         shape.dimV, shape.blockV)
        .str();
  if (shape.segmentChunks < 0)
    return llvm::formatv("segment-chunks must be 0 or more (got {0})",
                         shape.segmentChunks)
        .str();
  if (!op.getCausal())
    shape.segmentChunks = 0; // every output needs the whole sum
  // When the pipeline left block-v open, fewer value columns per CTA until
  // the tiles fit (f32 tiles take twice the space).
  while (!requestedBlockV && shape.sharedBytes() > maxSharedBytes &&
         shape.blockV % 32 == 0)
    shape.blockV /= 2;
  if (shape.sharedBytes() > maxSharedBytes)
    return llvm::formatv("chunks of {0} steps with head dims {1} and {2} need "
                         "{3} bytes of shared memory with block-v {4}, more "
                         "than the {5} a CTA may use; use a smaller chunk{6}",
                         chunk, shape.dimK, shape.dimV, shape.sharedBytes(),
                         shape.blockV, maxSharedBytes,
                         shape.blockV > 16 ? " or block-v" : "")
        .str();
  return "";
}

class LinearKernelBuilder : public WarpBuilder {
public:
  LinearKernelBuilder(LoweringBuilder &rb, const LinearTileShape &shape,
                      Value workspace)
      : WarpBuilder(rb, shape), shape(shape),
        workspace(workspace) {}

  void build(LinearOp op, ValueRange results);

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
  // Segments: CTAs of one sequence hand their states along the workspace
  // (GpuImage.h: a ticket counter, a flag per CTA, then their states).
  //===--------------------------------------------------------------------===//

  /// This CTA's ticket: CTAs take them in the order they start, so a CTA
  /// only ever waits for CTAs that are already running.
  Value takeTicket(Value ticketWord) {
    rb.ifThen(isZero(threadId), [&] {
      Value ticket = memref::AtomicRMWOp::create(
          b, arith::AtomicRMWKind::addi, i32(1), workspace, ValueRange{idx(0)});
      memref::StoreOp::create(b, ticket, ticketWord, ValueRange{idx(0)});
    });
    barrier();
    return arith::IndexCastOp::create(
        b, b.getIndexType(),
        memref::LoadOp::create(b, ticketWord, ValueRange{idx(0)}));
  }
  /// The address of workspace word `word` (for atomics with an order).
  Value workspaceAddress(Value word) {
    Value base = memref::ExtractAlignedPointerAsIndexOp::create(b, workspace);
    Value address = arith::IndexCastOp::create(
        b, b.getI64Type(), rb.add(base, rb.mul(word, idx(4))));
    return LLVM::IntToPtrOp::create(
        b, LLVM::LLVMPointerType::get(b.getContext()), address);
  }
  /// Waits until the CTA with ticket `ticket` has published its state.
  /// Every thread acquires the flag itself, so its later reads of the state
  /// see the publisher's writes.
  void awaitState(Value ticket) {
    Value word = rb.add(ticket, idx(1));
    Value flag = workspaceAddress(word);
    auto wait = scf::WhileOp::create(b, TypeRange{}, ValueRange{});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&wait.getBefore().emplaceBlock());
      Value published = LLVM::LoadOp::create(
          b, b.getI32Type(), flag, /*alignment=*/4, /*isVolatile=*/false,
          /*isNonTemporal=*/false, /*isInvariant=*/false,
          /*isInvariantGroup=*/false, LLVM::AtomicOrdering::acquire, "device");
      scf::ConditionOp::create(
          b,
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq, published, i32(0)),
          ValueRange{});
      b.setInsertionPointToStart(&wait.getAfter().emplaceBlock());
      scf::YieldOp::create(b);
    }
  }
  /// Sets the flag of `ticket` once every thread's state words are written:
  /// each thread's release fence orders its writes before the barrier,
  /// after which one thread releases the flag.
  void publishState(Value ticket) {
    Value word = rb.add(ticket, idx(1));
    LLVM::FenceOp::create(b, LLVM::AtomicOrdering::release, "device");
    barrier();
    rb.ifThen(isZero(threadId), [&] {
      LLVM::StoreOp::create(b, i32(1), workspaceAddress(word), /*alignment=*/4,
                            /*isVolatile=*/false, /*isNonTemporal=*/false,
                            /*isInvariantGroup=*/false,
                            LLVM::AtomicOrdering::release, "device");
    });
  }

  /// The A fragment of 16 rows of `tile` from `row0`, columns [16kk,
  /// 16kk + 16), its elements through `transform` when given.
  MmaOperand rowFragment(Value tile, Value row0, int64_t kk,
                         ElementTransform transform = nullptr) {
    if (config.splitF32 || transform)
      return loadElementwiseOperand(tile, {}, lane, row0, idx(kk * 16),
                                    nvvm::kARegisters, nvvm::mmaACoord,
                                    /*transposed=*/false, transform);
    return {loadAOperand(tile, lane, row0, idx(kk * 16)), {}};
  }
  /// Step kk's A fragment of a product (16 rows, 16 columns per step).
  using FragmentAt = llvm::function_ref<MmaOperand(int64_t kk)>;

  /// acc (outputTiles x 4) += A B for A = 16 rows x (16 * steps) given as
  /// fragments and B rows [16kk, 16kk + 16) of `tile` (row-major, read with
  /// ldmatrix.trans: V, or the state operand). Split f32 fragments take
  /// twice the registers: each is asked for when its step comes.
  void accumulateTimesRows(FragmentAt a, int64_t steps, Value tile,
                           int64_t columns, SmallVector<Value> &acc) {
    if (config.splitF32) {
      for (int64_t kk = 0; kk < steps; ++kk) {
        MmaOperand left = a(kk);
        for (int64_t et = 0; et < columns / 8; ++et) {
          MmaOperand rows = loadElementwiseOperand(
              tile, {}, lane, idx(kk * 16), idx(et * 8), nvvm::kBRegisters,
              nvvm::mmaBCoord, /*transposed=*/false);
          MutableArrayRef<Value> c(&acc[et * 4], 4);
          llvm::copy(mma(left, rows, c), c.begin());
        }
      }
      return;
    }
    SmallVector<MmaOperand> fragments;
    for (int64_t kk = 0; kk < steps; ++kk)
      fragments.push_back(a(kk));
    Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
    Value rowInStep = rb.add(arith::RemUIOp::create(b, lane, idx(8)),
                             rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)),
                                    idx(8)));
    Value colOffset = rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8));
    for (int64_t kk = 0; kk < steps; ++kk)
      for (int64_t et = 0; et < columns / 8; et += 2) {
        SmallVector<Value> regs =
            ldmatrix(tile, {}, rb.add(idx(kk * 16), rowInStep),
                     rb.add(idx(et * 8), colOffset), 4, /*transpose=*/true);
        for (int64_t pair = 0; pair < 2; ++pair) {
          MutableArrayRef<Value> c(&acc[(et + pair) * 4], 4);
          SmallVector<Value> d =
              mma(fragments[kk].hi, {regs[2 * pair], regs[2 * pair + 1]}, c);
          llvm::copy(d, c.begin());
        }
      }
  }

  const LinearTileShape &shape;
  Value workspace;
  Value lane, group, inGroup;
};

void LinearKernelBuilder::build(LinearOp op, ValueRange results) {
  AttentionOperands operands = getAttentionOperands(op, rb);
  layout = operands.layout;
  Value o = results[0];
  Value finalState = results.size() > 1 ? results[1] : Value();
  Value initial = op.getInitialState()
                      ? rb.params.lookup(op.getInitialState())
                      : Value();
  bool gated = !op.getGate().empty();
  Value scale = rb.f32(op.getScale().convertToDouble());
  const int64_t C = shape.chunk, dimK = shape.dimK, sliceV = shape.blockV;

  threadId = threadIndex();
  Value warp = arith::DivUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  lane = arith::RemUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  group = arith::DivUIOp::create(b, lane, idx(4));
  inGroup = arith::RemUIOp::create(b, lane, idx(4));
  Value base = sharedBase();
  // The CTA's block of value columns, head and batch entry (or sequence),
  // and with segments its segment of the sequence's chunks.
  bool segmented = shape.segmentChunks > 0;
  Value vBlock, head, batch, ticket, perSegment, segment;
  if (segmented) {
    // Segment-major tickets: a CTA's predecessor (same columns, head and
    // batch entry, one segment earlier) has the ticket perSegment less.
    ticket =
        takeTicket(sharedTile(base, shape.ticketOffset(), {4}, b.getI32Type()));
    perSegment = rb.mul(idx(shape.dimV / sliceV),
                        rb.mul(operands.headsQ, operands.numBatches));
    segment = arith::DivUIOp::create(b, ticket, perSegment);
    Value rest = arith::RemUIOp::create(b, ticket, perSegment);
    vBlock = arith::RemUIOp::create(b, rest, idx(shape.dimV / sliceV));
    Value headAndBatch =
        arith::DivUIOp::create(b, rest, idx(shape.dimV / sliceV));
    head = arith::RemUIOp::create(b, headAndBatch, operands.headsQ);
    batch = arith::DivUIOp::create(b, headAndBatch, operands.headsQ);
  } else {
    vBlock = blockIndex(gpu::Dimension::x);
    head = blockIndex(gpu::Dimension::y);
    batch = blockIndex(gpu::Dimension::z);
  }
  // This CTA's value columns: [col0, col0 + sliceV).
  Value col0 = rb.mul(vBlock, idx(sliceV));
  Value headK = arith::DivUIOp::create(b, head, operands.groupSize);
  Value q = withUnitInnerStride(operands.q);
  Value k = withUnitInnerStride(operands.k);
  Value v = withUnitInnerStride(operands.v);

  // Tiles hold the operand type, or f32 that the mma operands split.
  Type tileType = shape.splitF32 ? Type(f32) : shape.element;
  Value queryTile =
      sharedTile(base, shape.queryOffset(), {C, shape.pitchK()}, tileType);
  Value keyTile =
      sharedTile(base, shape.keyOffset(), {C, shape.pitchK()}, tileType);
  Value decayedKeys =
      sharedTile(base, shape.decayedKeyOffset(), {C, shape.pitchK()}, tileType);
  Value valueTile =
      sharedTile(base, shape.valueOffset(), {C, shape.pitchV()}, tileType);
  Value state =
      sharedTile(base, shape.stateOffset(), {dimK, shape.statePitch()}, f32);
  Value stateOperand = shape.splitF32
                           ? state
                           : sharedTile(base, shape.stateOperandOffset(),
                                        {dimK, shape.pitchV()}, shape.element);
  Value gates = sharedTile(base, shape.gateOffset(), {C}, f32);
  Value cumulative = sharedTile(base, shape.cumulativeOffset(), {C}, f32);
  bool perKeyDim = shape.perKeyDim;
  Value gateTable;
  if (perKeyDim)
    gateTable = sharedTile(base, shape.gateTableOffset(),
                           {C, shape.gateTablePitch()}, f32);

  Value start, steps;
  std::tie(start, steps) =
      sequenceBounds(rb, operands.cuQ, batch, operands.lengthQ);
  checkSequence(rb, operands.cuQ, batch, start, steps, operands.lengthQ);
  Value numChunks = arith::CeilDivUIOp::create(b, steps, idx(C));

  Value hasInitial = initial ? rb.isPresent(initial) : Value();
  auto initialAt = [&](Value d, Value e) {
    return initialStateAt(rb, initial, hasInitial, batch, head, d,
                          rb.add(col0, e));
  };
  // body(d, e, i) for each element (d, e) of the CTA's state slice, with
  // i = d * sliceV + e its position in the slice.
  auto forEachStateElement =
      [&](llvm::function_ref<void(Value, Value, Value)> body) {
        forEachElement(dimK * sliceV, [&](Value i) {
          body(arith::DivUIOp::create(b, i, idx(sliceV)),
               arith::RemUIOp::create(b, i, idx(sliceV)), i);
        });
      };
  // S = S_0 (or 0)
  auto startFromInitialState = [&] {
    forEachStateElement([&](Value d, Value e, Value) {
      memref::StoreOp::create(b, initialAt(d, e), state, ValueRange{d, e});
    });
    barrier();
  };

  // Loads rows [t0, t0 + rows) of q (when `withQuery`), k and v, applies the
  // feature map, zeroes key rows past the chunk, and (gated) computes the
  // cumulative gates G_r of the chunk (in log2 units).
  auto loadChunk = [&](Value t0, Value rows, bool withQuery, bool withKeys) {
    Value row0 = rb.add(start, t0);
    SmallVector<Value> tokens;
    if (withQuery)
      tokens = copyTile(queryTile, {}, q, batch, head, row0, rows, C, dimK);
    if (withKeys) {
      llvm::append_range(tokens, copyTile(keyTile, {}, k, batch, headK, row0,
                                          rows, C, dimK));
      llvm::append_range(tokens, copyTile(valueTile, {}, v, batch, headK, row0,
                                          rows, C, sliceV, col0));
    }
    commitCopies(tokens);
    // The gates are read while the copies are in flight, so that the two
    // latencies overlap; the previous chunk ended with a barrier, so their
    // tables are free.
    if (gated && perKeyDim) {
      // G[r][d]: the gates (16 loads of a thread in flight at once), then
      // prefix sums down each column. Rows past the chunk read the last
      // row's gate (in bounds, so the loads need no branch) and keep 0.
      forEachElementGroup(C * dimK, 16, [&](ArrayRef<Value> group) {
        SmallVector<Value> rowOfGate, dimOfGate, inChunk, raw;
        for (Value i : group) {
          Value r = arith::DivUIOp::create(b, i, idx(dimK));
          rowOfGate.push_back(r);
          dimOfGate.push_back(arith::RemUIOp::create(b, i, idx(dimK)));
          inChunk.push_back(lessThan(r, rows));
          Value t = rb.add(t0, arith::MinUIOp::create(b, r, rb.sub(rows, idx(1))));
          raw.push_back(rb.inlineExpression(
              op.getGate(), {batch, head, t, dimOfGate.back(), start},
              rb.f32(0)));
        }
        SmallVector<Value> groupGates, positions;
        for (size_t u = 0; u < group.size(); ++u) {
          groupGates.push_back(
              arith::SelectOp::create(b, inChunk[u], raw[u], rb.f32(0)));
          positions.append(
              {batch, head, rb.add(t0, rowOfGate[u]), dimOfGate[u]});
        }
        for (auto [u, g] :
             llvm::enumerate(rb.checkedGates(groupGates, positions)))
          memref::StoreOp::create(b, inLog2Units(g), gateTable,
                                  ValueRange{rowOfGate[u], dimOfGate[u]});
      });
    } else if (gated) {
      forEachElement(C, [&](Value r) {
        Value t = rb.add(t0, r);
        Value g = rb.ifThen(
            lessThan(r, rows), {f32},
            [&]() -> SmallVector<Value> {
              Value raw = rb.inlineExpression(
                  op.getGate(), {batch, head, t, idx(0), start}, rb.f32(0));
              return {rb.checkedGate(raw, {batch, head, t, idx(0)})};
            },
            [&]() -> SmallVector<Value> { return {rb.f32(0)}; })[0];
        memref::StoreOp::create(b, inLog2Units(g), gates, r);
      });
    }
    waitForCopiesAndBarrier();
    auto featureMap = [&](Value tile, bool zeroPastEnd) {
      if (op.getFeature().empty() && !zeroPastEnd)
        return;
      forEachElement(C * dimK, [&](Value i) {
        Value r = arith::DivUIOp::create(b, i, idx(dimK));
        Value d = arith::RemUIOp::create(b, i, idx(dimK));
        Value x = loadF32(tile, {r, d});
        Value y = rb.inlineExpression(op.getFeature(), {x}, x);
        if (zeroPastEnd)
          y = arith::SelectOp::create(b, lessThan(r, rows), y, rb.f32(0));
        storeElement(y, tile, {r, d});
      });
    };
    if (withQuery)
      featureMap(queryTile, /*zeroPastEnd=*/false);
    if (withKeys)
      featureMap(keyTile, /*zeroPastEnd=*/true);
    if (gated && perKeyDim) {
      // A column's running sum stays in a register; its gates are loaded 8
      // rows at a time, so that only the additions wait on each other.
      constexpr int64_t kRowsPerLoad = 8;
      forEachElement(dimK, [&](Value d) {
        rb.loop(idx(0), idx(C / kRowsPerLoad), {rb.f32(0)},
                [&](Value block, ValueRange carried) {
                  SmallVector<Value> rowsOfBlock, values;
                  for (int64_t i = 0; i < kRowsPerLoad; ++i) {
                    rowsOfBlock.push_back(
                        rb.add(rb.mul(block, idx(kRowsPerLoad)), idx(i)));
                    values.push_back(memref::LoadOp::create(
                        b, gateTable, ValueRange{rowsOfBlock.back(), d}));
                  }
                  Value sum = carried[0];
                  for (int64_t i = 0; i < kRowsPerLoad; ++i) {
                    sum = rb.add(sum, values[i]);
                    memref::StoreOp::create(b, sum, gateTable,
                                            ValueRange{rowsOfBlock[i], d});
                  }
                  return SmallVector<Value>{sum};
                });
      });
    } else if (gated) {
      forEachElement(C, [&](Value r) {
        Value sum = rb.loop(idx(0), rb.add(r, idx(1)), {rb.f32(0)},
                            [&](Value u, ValueRange acc) {
                              return SmallVector<Value>{rb.add(
                                  acc[0], memref::LoadOp::create(b, gates, u))};
                            })[0];
        memref::StoreOp::create(b, sum, cumulative, r);
      });
    }
    barrier();
  };
  // The cumulative log gate of chunk row r (at key dim d when per key dim).
  auto cumulativeAt = [&](Value r, Value d = Value()) -> Value {
    if (!gated)
      return rb.f32(0);
    if (perKeyDim)
      return memref::LoadOp::create(b, gateTable, ValueRange{r, d});
    return memref::LoadOp::create(b, cumulative, r);
  };

  // S = exp(G_last) S + (K o exp(G_last - G_u))^T V; warp w updates the
  // state rows [16 dt, 16 dt + 16) for dt = w, w + warps, ...
  auto updateState = [&](Value rows) {
    Value keys = keyTile;
    Value last = rb.sub(rows, idx(1));
    if (gated) {
      forEachElement(C * dimK, [&](Value i) {
        Value u = arith::DivUIOp::create(b, i, idx(dimK));
        Value d = arith::RemUIOp::create(b, i, idx(dimK));
        Value factor = exp2(arith::SubFOp::create(b, cumulativeAt(last, d),
                                                  cumulativeAt(u, d)));
        factor = arith::SelectOp::create(b, lessThan(u, rows), factor, rb.f32(0));
        storeElement(arith::MulFOp::create(b, loadF32(keyTile, {u, d}), factor),
                     decayedKeys, {u, d});
      });
      barrier();
      keys = decayedKeys;
    }
    Value laneBy8 = arith::DivUIOp::create(b, lane, idx(8));
    for (int64_t dtBase = 0; dtBase < dimK / 16; dtBase += config.warps) {
      Value dt = rb.add(warp, idx(dtBase));
      rb.ifThen(lessThan(dt, idx(dimK / 16)), [&] {
        Value d0 = rb.mul(dt, idx(16));
        SmallVector<Value> acc;
        for (int64_t et = 0; et < sliceV / 8; ++et)
          for (int64_t reg = 0; reg < 4; ++reg) {
            Value d = rb.add(d0, rb.add(group, idx(8 * (reg / 2))));
            Value e = rb.add(idx(et * 8 + reg % 2), rb.mul(inGroup, idx(2)));
            // S rows decay by exp(G_last) (at their key dim d).
            Value decay = gated ? exp2(cumulativeAt(last, d)) : rb.f32(1);
            acc.push_back(arith::MulFOp::create(
                b, memref::LoadOp::create(b, state, ValueRange{d, e}), decay));
          }
        // A = keys^T rows d0..: ldmatrix.trans of the key rows u (split
        // f32: the key tile's elements at the transposed coordinates).
        Value u = rb.add(arith::RemUIOp::create(b, lane, idx(8)),
                         rb.mul(arith::DivUIOp::create(b, laneBy8, idx(2)),
                                idx(8)));
        Value d = rb.add(d0, rb.mul(arith::RemUIOp::create(b, laneBy8, idx(2)),
                                    idx(8)));
        auto keysTransposed = [&](int64_t kk) -> MmaOperand {
          if (shape.splitF32)
            return loadElementwiseOperand(keys, {}, lane, idx(kk * 16), d0,
                                          nvvm::kARegisters, nvvm::mmaACoord,
                                          /*transposed=*/true);
          return {ldmatrix(keys, {}, rb.add(idx(kk * 16), u), d, 4,
                           /*transpose=*/true),
                  {}};
        };
        accumulateTimesRows(keysTransposed, C / 16, valueTile, sliceV, acc);
        for (int64_t et = 0; et < sliceV / 8; ++et)
          for (int64_t reg = 0; reg < 4; ++reg) {
            Value dd = rb.add(d0, rb.add(group, idx(8 * (reg / 2))));
            Value e = rb.add(idx(et * 8 + reg % 2), rb.mul(inGroup, idx(2)));
            memref::StoreOp::create(b, acc[et * 4 + reg], state,
                                    ValueRange{dd, e});
          }
      });
    }
    barrier();
  };

  // The state as an mma operand (rounded to the element type); split f32
  // reads the state itself.
  auto refreshStateOperand = [&] {
    if (shape.splitF32)
      return;
    forEachStateElement([&](Value d, Value e, Value) {
      storeElement(memref::LoadOp::create(b, state, ValueRange{d, e}),
                   stateOperand, {d, e});
    });
    barrier();
  };

  // Per key dim: the lane's 8 weights against the keys of warp w's own
  // 16-row tile, sum_d q[r][d] k[u][d] exp(G[r][d] - G[u][d]) for u <= r
  // (0 otherwise), in the mma accumulator order (n-tile, then register).
  auto diagonalWeights = [&](Value warp, Value rowOf[2], Value rows) {
    SmallVector<Value> keyOf; // 4 keys: n-tile half, then register parity
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t parity = 0; parity < 2; ++parity)
        keyOf.push_back(rb.add(rb.mul(warp, idx(16)),
                               rb.add(idx(half * 8 + parity),
                                      rb.mul(inGroup, idx(2)))));
    constexpr int64_t kUnroll = 4;
    SmallVector<Value> init(8, rb.f32(0));
    SmallVector<Value> sums = llvm::to_vector(rb.loop(
        idx(0), idx(dimK / kUnroll), init, [&](Value step, ValueRange acc) {
          SmallVector<Value> next(acc.begin(), acc.end());
          for (int64_t i = 0; i < kUnroll; ++i) {
            Value d = rb.add(rb.mul(step, idx(kUnroll)), idx(i));
            Value query[2], queryGate[2], key[4], keyGate[4];
            for (int row = 0; row < 2; ++row) {
              query[row] = loadF32(queryTile, {rowOf[row], d});
              queryGate[row] = cumulativeAt(rowOf[row], d);
            }
            for (int u = 0; u < 4; ++u) {
              key[u] = loadF32(keyTile, {keyOf[u], d});
              keyGate[u] = cumulativeAt(keyOf[u], d);
            }
            for (int64_t j = 0; j < 8; ++j) {
              int row = (j % 4) / 2, u = (j / 4) * 2 + j % 2;
              // Keys of the tile's second half follow its first rows.
              if (row == 0 && u >= 2)
                continue;
              // G_r - G_u <= 0 for u <= r (prefix sums of gates <= 0 never
              // grow); the sums of later keys may overflow, and are dropped.
              Value decay =
                  exp2(arith::SubFOp::create(b, queryGate[row], keyGate[u]));
              next[j] = math::FmaOp::create(
                  b, arith::MulFOp::create(b, query[row], key[u]), decay,
                  next[j]);
            }
          }
          return next;
        }));
    for (int64_t j = 0; j < 8; ++j) {
      Value r = rowOf[(j % 4) / 2], u = keyOf[(j / 4) * 2 + j % 2];
      Value allowed = arith::AndIOp::create(
          b, arith::CmpIOp::create(b, arith::CmpIPredicate::ule, u, r),
          lessThan(u, rows));
      sums[j] = arith::SelectOp::create(b, allowed, sums[j], rb.f32(0));
    }
    return sums;
  };

  // Outputs of the chunk's rows [16w, 16w + 16) (w < C / 16).
  auto emitOutputs = [&](Value t0, Value rows, bool intra) {
    Value r0 = rb.mul(warp, idx(16));
    rb.ifThen(lessThan(r0, idx(C)), [&] {
      // Per key dim, the decays scale the operands' elements as they are
      // loaded, each exponent G_a - G_b with b <= a, or G_a: Q S takes
      // q[r][d] exp(G[r][d]); Q K^T takes q[r][d] exp(G[r][d] - G[r0][d])
      // against k[u][d] exp(G[r0][d] - G[u][d]) for the keys u < r0 (those
      // of the warp's own tile are summed by diagonalWeights).
      auto gateAt = [&](Value r, Value d) -> Value {
        return memref::LoadOp::create(b, gateTable, ValueRange{r, d});
      };
      auto interScaled = [&](Value x, Value r, Value d) -> Value {
        return arith::MulFOp::create(b, x, exp2(gateAt(r, d)));
      };
      auto intraScaled = [&](Value x, Value r, Value d) -> Value {
        return arith::MulFOp::create(
            b, x, exp2(arith::SubFOp::create(b, gateAt(r, d), gateAt(r0, d))));
      };
      auto keyScaled = [&](Value x, Value u, Value d) -> Value {
        return arith::MulFOp::create(
            b, x, exp2(arith::SubFOp::create(b, gateAt(r0, d), gateAt(u, d))));
      };
      // Plain 16-bit fragments of Q (ldmatrix) serve both products; the
      // others (split, or scaled per key dim) are loaded where they are used.
      bool elementwise = shape.splitF32 || perKeyDim;
      SmallVector<MmaOperand> heldQueries;
      if (!elementwise)
        for (int64_t kk = 0; kk < dimK / 16; ++kk)
          heldQueries.push_back(rowFragment(queryTile, r0, kk));
      auto queries = [&](int64_t kk) {
        if (!elementwise)
          return heldQueries[kk];
        return rowFragment(queryTile, r0, kk,
                           perKeyDim ? ElementTransform(intraScaled) : nullptr);
      };
      auto interQueries = [&](int64_t kk) {
        return rowFragment(queryTile, r0, kk, interScaled);
      };
      Value rowOf[2];
      for (int half = 0; half < 2; ++half)
        rowOf[half] = rb.add(r0, rb.add(group, idx(8 * half)));
      // acc = exp(G_r) (Q S), then A V accumulates onto it: one set of
      // output registers instead of two. Per key dim the decay is already
      // in the scaled queries.
      SmallVector<Value> acc(sliceV / 8 * 4, rb.f32(0));
      accumulateTimesRows(perKeyDim ? FragmentAt(interQueries)
                                    : FragmentAt(queries),
                          dimK / 16, stateOperand, sliceV, acc);
      if (gated && !perKeyDim)
        for (int half = 0; half < 2; ++half) {
          Value decay = exp2(cumulativeAt(rowOf[half]));
          for (int64_t et = 0; et < sliceV / 8; ++et)
            for (int e = 0; e < 2; ++e) {
              Value &value = acc[et * 4 + 2 * half + e];
              value = arith::MulFOp::create(b, value, decay);
            }
        }
      if (intra) {
        // A = (Q K^T) o D over the chunk's keys, then acc = A V.
        Value keyRow = arith::RemUIOp::create(b, lane, idx(8));
        Value keyCol = rb.mul(arith::DivUIOp::create(b, lane, idx(8)), idx(8));
        Value keyColX2 = rb.mul(
            arith::RemUIOp::create(b, arith::DivUIOp::create(b, lane, idx(8)),
                                   idx(2)),
            idx(8));
        // Only keys before `keyEnd` weigh on the warp's rows: later ones
        // follow them (per key dim, the keys of the warp's own tile come
        // from diagonalWeights). The other score tiles are skipped, by a
        // branch that the whole warp takes alike; their weights are 0.
        Value keyEnd = perKeyDim ? r0 : rb.add(r0, idx(16));
        SmallVector<Type> fourFloats(4, f32);
        auto ifKeysNeeded = [&](int64_t nt, ArrayRef<Value> skipped,
                                llvm::function_ref<SmallVector<Value>()> body) {
          return llvm::to_vector(
              rb.ifThen(lessThan(idx(nt * 8), keyEnd), fourFloats, body,
                        [&] { return SmallVector<Value>(skipped); }));
        };
        // Elementwise operands: Q K^T one step of Dk at a time, so that only
        // that step's query fragment is live (B[d][u] = K[u][d], the key
        // tile transposed).
        SmallVector<Value> scores(C / 8 * 4, rb.f32(0));
        if (elementwise)
          for (int64_t kk = 0; kk < dimK / 16; ++kk) {
            MmaOperand query = queries(kk);
            for (int64_t nt = 0; nt < C / 8; ++nt) {
              MutableArrayRef<Value> c(&scores[nt * 4], 4);
              llvm::copy(ifKeysNeeded(
                             nt, c,
                             [&] {
                               MmaOperand keys = loadElementwiseOperand(
                                   keyTile, {}, lane, idx(nt * 8), idx(kk * 16),
                                   nvvm::kBRegisters, nvvm::mmaBCoord,
                                   /*transposed=*/true,
                                   perKeyDim ? ElementTransform(keyScaled)
                                             : nullptr);
                               return mma(query, keys, c);
                             }),
                         c.begin());
            }
          }
        SmallVector<Value> weights;
        for (int64_t nt = 0; nt < C / 8; ++nt) {
          SmallVector<Value> zeros(4, rb.f32(0));
          llvm::append_range(
              weights, ifKeysNeeded(nt, zeros, [&] {
                SmallVector<Value> c(&scores[nt * 4], &scores[nt * 4 + 4]);
                Value row = rb.add(keyRow, idx(nt * 8));
                // 16-bit: per 8 keys, one ldmatrix.x4 yields the B operands of
                // two 16-column steps.
                if (!elementwise)
                  for (int64_t kk = 0; kk < dimK / 16; kk += 2) {
                    bool pair = kk + 1 < dimK / 16;
                    SmallVector<Value> regs =
                        ldmatrix(keyTile, {}, row,
                                 rb.add(idx(kk * 16), pair ? keyCol : keyColX2),
                                 pair ? 4 : 2, /*transpose=*/false);
                    c = mma(queries(kk).hi, {regs[0], regs[1]}, c);
                    if (pair)
                      c = mma(queries(kk + 1).hi, {regs[2], regs[3]}, c);
                  }
                SmallVector<Value> tileWeights;
                for (int64_t reg = 0; reg < 4; ++reg) {
                  Value r = rowOf[reg / 2];
                  Value u =
                      rb.add(idx(nt * 8 + reg % 2), rb.mul(inGroup, idx(2)));
                  Value allowed = arith::AndIOp::create(
                      b,
                      arith::CmpIOp::create(b, arith::CmpIPredicate::ule, u, r),
                      lessThan(u, rows));
                  Value weight = c[reg];
                  if (gated && !perKeyDim) {
                    weight = arith::MulFOp::create(
                        b, weight,
                        exp2(arith::SubFOp::create(
                            b,
                            cumulativeAt(
                                arith::MinUIOp::create(b, r, idx(C - 1))),
                            cumulativeAt(u))));
                  }
                  tileWeights.push_back(
                      arith::SelectOp::create(b, allowed, weight, rb.f32(0)));
                }
                return tileWeights;
              }));
        }
        if (perKeyDim) {
          // Keys of the warp's own 16-row tile (columns [16w, 16w + 16)):
          // the elementwise sum over d, as exp(G_r - G_u) only stays bounded
          // for u <= r. The lane's 8 weights there share 2 rows and 4 keys,
          // so one loop over d loads each operand once and keeps 8
          // independent sums; they replace the mma weights of tile w.
          SmallVector<Value> diagonal = diagonalWeights(warp, rowOf, rows);
          for (int64_t tile = 0; tile < C / 16; ++tile) {
            Value own = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                              idx(tile), warp);
            for (int64_t j = 0; j < 8; ++j) {
              Value &weight = weights[tile * 8 + j];
              weight = arith::SelectOp::create(b, own, diagonal[j], weight);
            }
          }
        }
        // The weights' A fragment of keys [16kk, 16kk + 16): their n-tiles
        // 2kk and 2kk + 1.
        auto weightFragment = [&](int64_t kk) {
          return operandFromAccumulators(
              ArrayRef<Value>(weights).slice(kk * 8, 8));
        };
        accumulateTimesRows(weightFragment, C / 16, valueTile, sliceV, acc);
      }
      for (int half = 0; half < 2; ++half) {
        Value r = rowOf[half];
        rb.ifThen(lessThan(r, rows), [&] {
          Value t = rb.add(rb.add(start, t0), r);
          for (int64_t et = 0; et < sliceV / 8; ++et)
            for (int e = 0; e < 2; ++e) {
              Value col = rb.add(col0, rb.add(idx(et * 8 + e),
                                              rb.mul(inGroup, idx(2))));
              rb.storeF32(
                  arith::MulFOp::create(b, scale, acc[et * 4 + 2 * half + e]),
                  o, layoutIndices(layout, batch, head, t, col));
            }
        });
      }
    });
    barrier();
  };

  auto chunkRows = [&](Value chunkIndex) {
    Value t0 = rb.mul(chunkIndex, idx(C));
    return std::make_pair(t0, arith::MinUIOp::create(b, idx(C), rb.sub(steps, t0)));
  };
  auto storeFinalState = [&] {
    forEachStateElement([&](Value d, Value e, Value) {
      memref::StoreOp::create(
          b, memref::LoadOp::create(b, state, ValueRange{d, e}), finalState,
          ValueRange{batch, head, d, rb.add(col0, e)});
    });
  };
  // The chunks [first, end) of a segment; `hasSuccessor` when more follow.
  // Before its own chunks, a segment that has a successor sums what its
  // chunks add to a zero state (and their log decay), and combines that
  // with the state it starts from, once its predecessor has published it:
  //   S_end = exp(decay) S_start + S_own
  // The CTA then walks its chunks from S_start.
  auto enterSegment = [&](Value first, Value end, Value hasSuccessor) {
    Value decay = sharedTile(base, shape.segmentDecayOffset(), {dimK}, f32);
    rb.ifThen(hasSuccessor, [&] {
      forEachStateElement([&](Value d, Value e, Value) {
        memref::StoreOp::create(b, rb.f32(0), state, ValueRange{d, e});
      });
      forEachElement(dimK, [&](Value d) {
        memref::StoreOp::create(b, rb.f32(0), decay, d);
      });
      barrier();
      rb.loop(first, end, [&](Value chunkIndex) {
        Value t0, rows; // captured below (not a structured binding)
        std::tie(t0, rows) = chunkRows(chunkIndex);
        loadChunk(t0, rows, /*withQuery=*/false, /*withKeys=*/true);
        if (gated)
          forEachElement(perKeyDim ? dimK : 1, [&](Value d) {
            Value sum = rb.add(memref::LoadOp::create(b, decay, d),
                               cumulativeAt(rb.sub(rows, idx(1)), d));
            memref::StoreOp::create(b, sum, decay, d);
          });
        updateState(rows);
      });
    });
    Value notFirst =
        arith::CmpIOp::create(b, arith::CmpIPredicate::ne, segment, idx(0));
    Value predecessor = rb.sub(ticket, perSegment);
    rb.ifThen(notFirst, [&] { awaitState(predecessor); });
    // The workspace layout of GpuImage.h's segmentWorkspace.
    Value segments = arith::MaxUIOp::create(
        b, idx(1),
        arith::CeilDivUIOp::create(b, operands.lengthQ,
                                   idx(C * shape.segmentChunks)));
    Value header =
        rb.mul(arith::CeilDivUIOp::create(
                   b, rb.add(idx(1), rb.mul(perSegment, segments)), idx(4)),
               idx(4));
    // The first word of a CTA's state.
    auto stateWords = [&](Value owner) {
      return rb.add(header, rb.mul(owner, idx(dimK * sliceV)));
    };
    Value predecessorState = stateWords(predecessor);
    Value ownState = stateWords(ticket);
    forEachStateElement([&](Value d, Value e, Value i) {
      Value startState =
          rb.ifThen(
                notFirst, {f32},
                [&]() -> SmallVector<Value> {
                  return {loadWordF32(workspace, rb.add(predecessorState, i))};
                },
                [&]() -> SmallVector<Value> { return {initialAt(d, e)}; })
              .front();
      rb.ifThen(hasSuccessor, [&] {
        Value own = memref::LoadOp::create(b, state, ValueRange{d, e});
        Value factor =
            gated
                ? exp2(memref::LoadOp::create(b, decay, perKeyDim ? d : idx(0)))
                : rb.f32(1);
        storeWordF32(math::FmaOp::create(b, factor, startState, own), workspace,
                     rb.add(ownState, i));
      });
      memref::StoreOp::create(b, startState, state, ValueRange{d, e});
    });
    rb.ifThen(hasSuccessor, [&] { publishState(ticket); });
    barrier();
  };
  if (op.getCausal()) {
    Value first = idx(0), end = numChunks;
    Value active = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
    if (segmented) {
      first = rb.mul(segment, idx(shape.segmentChunks));
      end = arith::MinUIOp::create(b, rb.add(first, idx(shape.segmentChunks)),
                                   numChunks);
      // Segments past a shorter sequence's end have nothing to do; the
      // first always runs, to store the final state of an empty one.
      active = arith::OrIOp::create(
          b, lessThan(first, numChunks),
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq, segment, idx(0)));
    }
    Value last =
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, end, numChunks);
    rb.ifThen(active, [&] {
      if (segmented)
        enterSegment(first, end, lessThan(end, numChunks));
      else
        startFromInitialState();
      rb.loop(first, end, [&](Value chunkIndex) {
        auto [t0, rows] = chunkRows(chunkIndex);
        loadChunk(t0, rows, /*withQuery=*/true, /*withKeys=*/true);
        refreshStateOperand();
        emitOutputs(t0, rows, /*intra=*/true);
        updateState(rows);
      });
      if (finalState)
        rb.ifThen(last, storeFinalState);
    });
  } else {
    startFromInitialState();
    // S = S_0 + sum_t phi(k_t)^T v_t, then o = scale * phi(q) S.
    rb.loop(idx(0), numChunks, [&](Value chunkIndex) {
      auto [t0, rows] = chunkRows(chunkIndex);
      Value chunkStart = t0, chunkLength = rows;
      loadChunk(chunkStart, chunkLength, /*withQuery=*/false, /*withKeys=*/true);
      updateState(chunkLength);
    });
    refreshStateOperand();
    rb.loop(idx(0), numChunks, [&](Value chunkIndex) {
      auto [t0, rows] = chunkRows(chunkIndex);
      Value chunkStart = t0, chunkLength = rows;
      loadChunk(chunkStart, chunkLength, /*withQuery=*/true, /*withKeys=*/false);
      emitOutputs(chunkStart, chunkLength, /*intra=*/false);
    });
    if (finalState)
      storeFinalState();
  }
}

struct GpuChunkLinearPass
    : public attnc::impl::GpuChunkLinearBase<GpuChunkLinearPass> {
  using GpuChunkLinearBase::GpuChunkLinearBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    gpu::GPUModuleOp gpuModule;
    for (KernelOp kernel : llvm::make_early_inc_range(module.getOps<KernelOp>())) {
      auto op = dyn_cast<LinearOp>(kernel.getFamilyOp());
      if (!op)
        continue;
      LinearTileShape shape;
      shape.warps = warps;
      shape.blockV = blockV;
      shape.segmentChunks = segmentChunks;
      std::string reason = unsupportedReason(op, shape, maxSharedBytes);
      if (!reason.empty()) {
        kernel.emitError() << "kernel '" << kernel.getSymName()
                           << "' cannot run on the GPU: " << reason;
        return signalPassFailure();
      }
      if (failed(lowerToKernelFunction(
              kernel, shape, gpuModule, launchFacts(op, shape),
              [&](Operation *familyOp, LoweringBuilder &rb, ValueRange results,
                  Value workspace) {
                LinearKernelBuilder builder(rb, shape, workspace);
                builder.build(cast<LinearOp>(familyOp), results);
              })))
        return signalPassFailure();
    }
  }

  /// One CTA per (block of value columns, query head, batch entry or
  /// sequence).
  LaunchFacts launchFacts(LinearOp op, const LinearTileShape &shape) {
    LayoutDims dims = getLayoutDims(op.getLayout());
    int64_t q = paramIndex(op.getQ());
    LaunchFacts facts;
    facts.threads = shape.threads();
    facts.sharedBytes = shape.sharedBytes();
    Value cu = op.getCuSeqlens();
    facts.grid = {{{paramIndex(op.getV()), dims.feature, shape.blockV, 0},
                   {q, dims.head, 1, 0},
                   cu ? std::array<int64_t, 4>{paramIndex(cu), 0, 1, 1}
                      : std::array<int64_t, 4>{q, dims.batch, 1, 0}}};
    if (cu)
      facts.offsetParams.push_back(paramIndex(cu));
    // A packed kernel's final state has one entry per sequence.
    if (cu && op.getFinalState())
      for (OpOperand &use : op.getFinalState().getUses())
        if (isa<ReturnOp>(use.getOwner()))
          facts.sequenceResult = use.getOperandNumber();
    facts.headDim = dims.head;
    facts.copiedParams = {q, paramIndex(op.getK()), paramIndex(op.getV())};
    if (shape.segmentChunks) {
      facts.segments = {q, dims.seq, shape.chunk * shape.segmentChunks, 0};
      facts.segmentStateBytes = shape.dimK * shape.blockV * 4;
    }
    return facts;
  }
};

} // namespace
