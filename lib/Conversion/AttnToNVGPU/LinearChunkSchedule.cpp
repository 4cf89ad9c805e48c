//===- LinearChunkSchedule.cpp - The CTA's walk over the chunks -----------===//
//
// The driver of LinearKernelBuilder: the CTA's indices (from its ticket with
// segments), the views of q, k and v and the shared tiles, the sequence's
// bounds, then the walk over the chunks: causal kernels emit each chunk's
// outputs and then update the state, non-causal ones sum the state over all
// chunks first. Also the initial and final state.
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

void LinearKernelBuilder::build(LinearOp linearOp, ValueRange results) {
  op = linearOp;
  operands = getAttentionOperands(op, rb);
  layout = operands.layout;
  o = results[0];
  finalState = results.size() > 1 ? results[1] : Value();
  initial = op.getInitialState()
                ? rb.params.lookup(op.getInitialState())
                : Value();
  gated = !op.getGate().empty();
  scale = rb.f32(op.getScale().convertToDouble());

  locateCta();
  viewOperandsAndTiles();
  boundSequence();
  if (op.getCausal())
    walkCausal();
  else
    walkNonCausal();
}

void LinearKernelBuilder::locateCta() {
  threadId = threadIndex();
  warp = arith::DivUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  lane = arith::RemUIOp::create(b, threadId, idx(nvvm::kWarpSize));
  group = arith::DivUIOp::create(b, lane, idx(4));
  inGroup = arith::RemUIOp::create(b, lane, idx(4));
  base = sharedBase();
  // The CTA's block of value columns, head and batch entry (or sequence),
  // and with segments its segment of the sequence's chunks.
  segmented = shape.segmentChunks > 0;
  Value vBlock;
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
  col0 = rb.mul(vBlock, idx(sliceV));
  headK = arith::DivUIOp::create(b, head, operands.groupSize);
}

void LinearKernelBuilder::viewOperandsAndTiles() {
  q = withUnitInnerStride(operands.q);
  k = withUnitInnerStride(operands.k);
  v = withUnitInnerStride(operands.v);

  // Tiles hold the operand type, or f32 that the mma operands split.
  Type tileType = shape.splitF32 ? Type(f32) : shape.element;
  queryTile =
      sharedTile(base, shape.queryOffset(), {C, shape.pitchK()}, tileType);
  keyTile =
      sharedTile(base, shape.keyOffset(), {C, shape.pitchK()}, tileType);
  decayedKeys =
      sharedTile(base, shape.decayedKeyOffset(), {C, shape.pitchK()}, tileType);
  valueTile =
      sharedTile(base, shape.valueOffset(), {C, shape.pitchV()}, tileType);
  state =
      sharedTile(base, shape.stateOffset(), {dimK, shape.statePitch()}, f32);
  stateOperand = shape.splitF32
                     ? state
                     : sharedTile(base, shape.stateOperandOffset(),
                                  {dimK, shape.pitchV()}, shape.element);
  gates = sharedTile(base, shape.gateOffset(), {C}, f32);
  cumulative = sharedTile(base, shape.cumulativeOffset(), {C}, f32);
  if (perKeyDim)
    gateTable = sharedTile(base, shape.gateTableOffset(),
                           {C, shape.gateTablePitch()}, f32);
}

void LinearKernelBuilder::boundSequence() {
  std::tie(start, steps) =
      sequenceBounds(rb, operands.cuQ, batch, operands.lengthQ);
  checkSequence(rb, operands.cuQ, batch, start, steps, operands.lengthQ);
  numChunks = arith::CeilDivUIOp::create(b, steps, idx(C));

  hasInitial = initial ? rb.isPresent(initial) : Value();
}

Value LinearKernelBuilder::initialAt(Value d, Value e) {
  return initialStateAt(rb, initial, hasInitial, batch, head, d,
                        rb.add(col0, e));
}

void LinearKernelBuilder::forEachStateElement(
    llvm::function_ref<void(Value, Value, Value)> body) {
  forEachElement(dimK * sliceV, [&](Value i) {
    body(arith::DivUIOp::create(b, i, idx(sliceV)),
         arith::RemUIOp::create(b, i, idx(sliceV)), i);
  });
}

void LinearKernelBuilder::startFromInitialState() {
  forEachStateElement([&](Value d, Value e, Value) {
    memref::StoreOp::create(b, initialAt(d, e), state, ValueRange{d, e});
  });
  barrier();
}

std::pair<Value, Value> LinearKernelBuilder::chunkRows(Value chunkIndex) {
  Value t0 = rb.mul(chunkIndex, idx(C));
  return std::make_pair(t0, arith::MinUIOp::create(b, idx(C), rb.sub(steps, t0)));
}

void LinearKernelBuilder::storeFinalState() {
  forEachStateElement([&](Value d, Value e, Value) {
    memref::StoreOp::create(
        b, memref::LoadOp::create(b, state, ValueRange{d, e}), finalState,
        ValueRange{batch, head, d, rb.add(col0, e)});
  });
}

void LinearKernelBuilder::walkCausal() {
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
      rb.ifThen(last, [&] { storeFinalState(); });
  });
}

void LinearKernelBuilder::walkNonCausal() {
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
