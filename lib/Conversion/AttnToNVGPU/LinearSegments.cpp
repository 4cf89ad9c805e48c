//===- LinearSegments.cpp - States handed between segments ----------------===//
//
// Causal kernels split a sequence into segments of `segmentChunks` chunks
// on different CTAs. A CTA takes a ticket (segment-major, so it only ever
// waits for CTAs that already run), sums what its chunks add to a zero
// state, waits for its predecessor's state in the workspace, publishes
// exp(decay) S_start + S_own for its successor, and walks its chunks from
// S_start. The workspace layout is GpuImage.h's launchWorkspace: a ticket
// counter, a flag per CTA, then their states.
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;

Value LinearKernelBuilder::takeTicket(Value ticketWord) {
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

Value LinearKernelBuilder::workspaceAddress(Value word) {
  Value base = memref::ExtractAlignedPointerAsIndexOp::create(b, workspace);
  Value address = arith::IndexCastOp::create(
      b, b.getI64Type(), rb.add(base, rb.mul(word, idx(4))));
  return LLVM::IntToPtrOp::create(
      b, LLVM::LLVMPointerType::get(b.getContext()), address);
}

void LinearKernelBuilder::awaitState(Value ticket) {
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

void LinearKernelBuilder::publishState(Value ticket) {
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

void LinearKernelBuilder::enterSegment(Value first, Value end,
                                       Value hasSuccessor) {
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
  // The workspace layout of GpuImage.h's launchWorkspace.
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
}
