//===- SoftmaxWarpSpecialize.cpp - Producer and consumer warpgroups -------===//
//
// Warp-specialised softmax kernels (sm_90a, with wgmma): a producer
// warpgroup copies K and V for the `warps` that compute, handing stages
// over through mbarriers in shared memory (GpuTileShape::mbarrierOffset);
// with two consumer warpgroups setmaxnreg moves registers from the producer
// to the consumers.
//
//===----------------------------------------------------------------------===//

#include "SoftmaxKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
using namespace attnc::lowering;
using namespace attnc::lowering::gpu_softmax;

// Warp-specialised kernels hand stages over through mbarriers: thread
// 0 sets them up and the prologue's barrier publishes them. The
// visit-th visited block uses stage visit % 2, whose barriers complete
// their (visit / 2)-th phase for it.
Value SoftmaxKernelBuilder::barrierOf(MBarrierKind kind, Value stage) {
  return rb.add(idx(kind), stage);
}

Value SoftmaxKernelBuilder::stageOf(Value visit) {
  return arith::RemUIOp::create(b, visit, idx(kStages));
}

Value SoftmaxKernelBuilder::parityOf(Value visit) {
  return arith::RemUIOp::create(
      b, arith::DivUIOp::create(b, visit, idx(kStages)), idx(2));
}

void SoftmaxKernelBuilder::awaitFilled(MBarrierKind kind, Value visit) {
  mbarrierWait(barrierOf(kind, stageOf(visit)), parityOf(visit));
  fenceForWgmma();
}

void SoftmaxKernelBuilder::initMBarriers() {
  mbarrierOffset = shape.mbarrierOffset();
  rb.ifThen(
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)),
      [&] {
        for (int64_t stage = 0; stage < kStages; ++stage) {
          mbarrierInit(idx(kKeysFull + stage), producerThreads);
          mbarrierInit(idx(kValuesFull + stage), producerThreads);
          mbarrierInit(idx(kKeysEmpty + stage), consumerThreads);
          mbarrierInit(idx(kValuesEmpty + stage), consumerThreads);
        }
      });
}

// The producer warpgroup: for each visited block, K into its stage once
// the consumers' S no longer reads the stage, then V once their P V no
// longer does. Its copies are shared by its 128 threads; each thread's
// cp.async.mbarrier.arrive counts once the copies it started landed.
void SoftmaxKernelBuilder::produce() {
  copyGroup = {rb.sub(threadId, idx(consumerThreads)), producerThreads};
  loopOverVisited(schedule, {idx(0)},
                  [&](Value cursor, ValueRange carried) -> SmallVector<Value> {
                    Value visit = carried[0], stage = stageOf(visit);
                    Value block = schedule.blockAt(cursor);
                    // The stage's previous phase of "empty": the one before the
                    // first counts as complete.
                    Value emptied = rb.sub(idx(1), parityOf(visit));
                    mbarrierWait(barrierOf(kKeysEmpty, stage), emptied);
                    copyKeys(block, stage);
                    mbarrierArriveAfterCopies(barrierOf(kKeysFull, stage));
                    mbarrierWait(barrierOf(kValuesEmpty, stage), emptied);
                    copyValues(block, stage);
                    mbarrierArriveAfterCopies(barrierOf(kValuesFull, stage));
                    return {rb.add(visit, idx(1))};
                  });
  // No copy outlives the thread.
  waitForCopies();
  copyGroup = {};
}

void SoftmaxKernelBuilder::specializeWarps() {
  // Two consumer warpgroups need more registers than 384 threads start
  // with: the producer gives up most of its own.
  bool rebalance = shape.warps > nvvm::kWarpgroupWarps;
  Value consumer = lessThan(threadId, idx(consumerThreads));
  rb.ifThen(consumer, [&] {
    if (rebalance)
      setMaxRegisters(kConsumerRegisters, /*increase=*/true);
    consume();
  });
  rb.ifThen(arith::XOrIOp::create(
                b, consumer, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
            [&] {
              if (rebalance)
                setMaxRegisters(kProducerRegisters, /*increase=*/false);
              produce();
            });
}
