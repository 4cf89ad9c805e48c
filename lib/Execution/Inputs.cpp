//===- Inputs.cpp - Inputs for running a kernel from the CLI --------------===//

#include "attnc/Execution/Inputs.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include <algorithm>
#include <cstring>
#include <random>

using namespace mlir;
using namespace attnc;

ParamRoles attnc::getParamRoles(attn::KernelOp kernel) {
  ParamRoles result;
  Block &body = kernel.getBody().front();
  result.roles.assign(body.getNumArguments(), ParamRole::Other);
  auto mark = [&](Value value, ParamRole role) {
    if (auto arg = dyn_cast_or_null<BlockArgument>(value))
      if (arg.getOwner() == &body)
        result.roles[arg.getArgNumber()] = role;
  };
  Operation *family = kernel.getFamilyOp();
  if (auto layout = family->getAttrOfType<attn::LayoutAttr>("layout"))
    result.keySeqDim = attn::getLayoutDims(layout.getValue()).seq;
  mark(family->getOperand(0), ParamRole::Query);
  mark(family->getOperand(1), ParamRole::Key);
  mark(family->getOperand(2), ParamRole::Value);
  auto markLinear = [&](auto linear) {
    mark(linear.getCuSeqlens(), ParamRole::Offsets);
    mark(linear.getInitialState(), ParamRole::InitialState);
    linear.getGate().walk(
        [&](attn::LoadOp load) { mark(load.getTensor(), ParamRole::Gate); });
    return result;
  };
  if (auto linear = dyn_cast<attn::LinearOp>(family))
    return markLinear(linear);
  if (auto linear = dyn_cast<attn::LinearBackwardOp>(family))
    return markLinear(linear);
  auto markOffsets = [&](auto op) {
    mark(op.getCuSeqlensQ(), ParamRole::Offsets);
    mark(op.getCuSeqlensK(), ParamRole::Offsets);
  };
  if (auto op = dyn_cast<attn::SoftmaxOp>(family))
    markOffsets(op);
  if (auto op = dyn_cast<attn::ChunkSoftmaxOp>(family))
    markOffsets(op);
  if (auto op = dyn_cast<attn::SparseSoftmaxOp>(family)) {
    markOffsets(op);
    mark(op.getBlockMask(), ParamRole::BlockMask);
    mark(op.getKvNumBlocks(), ParamRole::BlockCounts);
    mark(op.getKvIndices(), ParamRole::BlockIndices);
    result.blockK = op.getBlockK();
  }
  if (auto op = dyn_cast<attn::SoftmaxBackwardOp>(family)) {
    markOffsets(op);
    mark(op.getBlockMask(), ParamRole::BlockMask);
    mark(op.getKvNumBlocks(), ParamRole::BlockCounts);
    mark(op.getKvIndices(), ParamRole::BlockIndices);
    mark(op.getTopkBlocks(), ParamRole::TopkBlocks);
    if (std::optional<uint64_t> blockK = op.getBlockK())
      result.blockK = *blockK;
  }
  return result;
}


