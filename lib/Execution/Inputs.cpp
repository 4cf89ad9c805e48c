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
  if (auto linear = dyn_cast<attn::LinearOp>(family)) {
    mark(linear.getCuSeqlens(), ParamRole::Offsets);
    mark(linear.getInitialState(), ParamRole::InitialState);
    linear.getGate().walk(
        [&](attn::LoadOp load) { mark(load.getTensor(), ParamRole::Gate); });
    return result;
  }
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
  return result;
}

void attnc::fillRandom(HostTensor &tensor, ParamRole role, uint64_t seed,
                       int64_t keyLength, int64_t blockK) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int64_t count = tensor.numElements();
  const std::vector<int64_t> &shape = tensor.shape();
  switch (role) {
  case ParamRole::Offsets: {
    // Sorted cut points of the packed length: cu[0] = 0, cu[last] = total.
    int64_t total = keyLength;
    std::vector<int64_t> cuts;
    for (int64_t index = 1; index + 1 < count; ++index)
      cuts.push_back(static_cast<int64_t>(unit(rng) * (total + 1)) %
                     (total + 1));
    std::sort(cuts.begin(), cuts.end());
    for (int64_t index = 0; index < count; ++index)
      tensor.set(index, index == 0           ? 0
                        : index == count - 1 ? total
                                             : cuts[index - 1]);
    return;
  }
  case ParamRole::BlockCounts:
  case ParamRole::BlockIndices: {
    // Valid lists: counts within the list width, indices naming real blocks
    // (repeats are harmless: a listed block is visited once).
    int64_t numBlocks = blockK > 0 ? (keyLength + blockK - 1) / blockK : 1;
    int64_t width = shape.empty() ? 1 : shape.back();
    for (int64_t index = 0; index < count; ++index)
      tensor.set(index, role == ParamRole::BlockCounts
                            ? static_cast<int64_t>(unit(rng) * (width + 1)) %
                                  (width + 1)
                            : static_cast<int64_t>(unit(rng) * numBlocks) %
                                  std::max<int64_t>(numBlocks, 1));
    return;
  }
  default:
    break;
  }
  for (int64_t index = 0; index < count; ++index) {
    double value;
    switch (role) {
    case ParamRole::Gate: // log-space decays in (-1, 0]
      value = -unit(rng);
      break;
    case ParamRole::BlockMask:
      value = unit(rng) < 0.5;
      break;
    case ParamRole::Other:
      value = isFloat(tensor.type()) ? unit(rng)
                                     : static_cast<int64_t>(unit(rng) * 4);
      break;
    default: // q, k, v, states
      value = 2 * unit(rng) - 1;
      break;
    }
    tensor.set(index, value);
  }
}

bool attnc::npyToTensor(const NpyArray &array, ElementType type,
                        const std::string &name, HostTensor &tensor,
                        std::string &error) {
  bool floatSource = array.dtype == NpyDType::F64 ||
                     array.dtype == NpyDType::F32 ||
                     array.dtype == NpyDType::F16;
  bool bitsSource = array.dtype == NpyDType::U16 && type == ElementType::BF16;
  bool intSource = !floatSource && array.dtype != NpyDType::U16;
  bool accepted = isFloat(type) ? (floatSource || bitsSource) : intSource;
  if (!accepted) {
    error = "input '" + name + "' is " + toString(type) +
            " but the .npy file holds " + toString(array.dtype) +
            (type == ElementType::BF16
                 ? " (give bf16 as float32/float64, or as uint16 bit patterns)"
                 : "");
    return false;
  }
  tensor = HostTensor(type, array.shape);
  const uint8_t *data = array.data.data();
  for (int64_t index = 0, count = array.numElements(); index < count; ++index) {
    const uint8_t *at = data + index * array.elementSize();
    double value = 0;
    switch (array.dtype) {
    case NpyDType::F64:
      std::memcpy(&value, at, 8);
      break;
    case NpyDType::F32: {
      float narrow;
      std::memcpy(&narrow, at, 4);
      value = narrow;
      break;
    }
    case NpyDType::F16:
    case NpyDType::U16: {
      uint16_t bits;
      std::memcpy(&bits, at, 2);
      value = array.dtype == NpyDType::F16 ? halfToFloat(bits)
                                           : bfloat16ToFloat(bits);
      break;
    }
    case NpyDType::I64: {
      int64_t wide;
      std::memcpy(&wide, at, 8);
      value = static_cast<double>(wide);
      break;
    }
    case NpyDType::I32: {
      int32_t narrow;
      std::memcpy(&narrow, at, 4);
      value = narrow;
      break;
    }
    case NpyDType::I8:
      value = static_cast<int8_t>(*at);
      break;
    case NpyDType::U8:
    case NpyDType::Bool:
      value = *at;
      break;
    }
    tensor.set(index, value);
  }
  return true;
}

NpyArray attnc::tensorToNpy(const HostTensor &tensor) {
  NpyArray array;
  array.shape = tensor.shape();
  switch (tensor.type()) {
  case ElementType::F32:
  case ElementType::BF16:
    array.dtype = NpyDType::F32;
    break;
  case ElementType::F16:
    array.dtype = NpyDType::F16;
    break;
  case ElementType::I32:
    array.dtype = NpyDType::I32;
    break;
  case ElementType::I8:
    array.dtype = NpyDType::I8;
    break;
  case ElementType::Bool:
    array.dtype = NpyDType::Bool;
    break;
  }
  int64_t count = tensor.numElements();
  size_t size = array.elementSize();
  array.data.resize(static_cast<size_t>(count) * size);
  for (int64_t index = 0; index < count; ++index) {
    uint8_t *at = array.data.data() + index * size;
    double value = tensor.get(index);
    switch (array.dtype) {
    case NpyDType::F32: {
      float narrow = static_cast<float>(value);
      std::memcpy(at, &narrow, 4);
      break;
    }
    case NpyDType::F16: {
      uint16_t bits = floatToHalf(static_cast<float>(value));
      std::memcpy(at, &bits, 2);
      break;
    }
    case NpyDType::I32: {
      int32_t narrow = static_cast<int32_t>(value);
      std::memcpy(at, &narrow, 4);
      break;
    }
    default:
      *at = static_cast<uint8_t>(static_cast<int64_t>(value));
      break;
    }
  }
  return array;
}
