//===- RandomInputs.cpp - Seeded random kernel inputs ---------------------===//

#include "attnc/Runtime/RandomInputs.h"

#include <algorithm>
#include <random>

using namespace attnc;

void attnc::fillRandom(HostTensor &tensor, ParamRole role, uint64_t seed,
                       int64_t keyLength, int64_t blockK, int64_t listWidth) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int64_t count = tensor.numElements();
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
    int64_t width = numBlocks > 0 ? std::max<int64_t>(listWidth, 0) : 0;
    for (int64_t index = 0; index < count; ++index)
      tensor.set(index, role == ParamRole::BlockCounts
                            ? static_cast<int64_t>(unit(rng) * (width + 1)) %
                                  (width + 1)
                            : static_cast<int64_t>(unit(rng) * numBlocks) %
                                  std::max<int64_t>(numBlocks, 1));
    return;
  }
  case ParamRole::TopkBlocks: {
    // Per row: distinct key blocks (a partial shuffle), -1 past them.
    int64_t numBlocks = blockK > 0 ? (keyLength + blockK - 1) / blockK : 0;
    int64_t width = std::max<int64_t>(listWidth, 1);
    std::vector<int64_t> blocks(numBlocks);
    for (int64_t row = 0; row * width < count; ++row) {
      for (int64_t block = 0; block < numBlocks; ++block)
        blocks[block] = block;
      for (int64_t entry = 0; entry < width; ++entry) {
        int64_t value = -1;
        if (entry < numBlocks) {
          int64_t pick = entry + static_cast<int64_t>(
                                     unit(rng) * (numBlocks - entry)) %
                                     (numBlocks - entry);
          std::swap(blocks[entry], blocks[pick]);
          value = blocks[entry];
        }
        tensor.set(row * width + entry, static_cast<double>(value));
      }
    }
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

bool attnc::fillMissingInputs(const KernelSignature &signature,
                              const ParamRoles &roles,
                              const DimBindings &bindings, uint64_t seed,
                              std::vector<HostTensor> &tensors,
                              std::vector<bool> &present, std::string &error) {
  for (size_t index = 0; index < signature.params.size(); ++index) {
    const TensorSpec &spec = signature.params[index];
    if (present[index] || spec.optional)
      continue;
    std::vector<int64_t> shape;
    if (!resolveShape(spec, bindings, shape, error)) {
      error += " (pass --dim or --input " + spec.name + "=FILE.npy)";
      return false;
    }
    if (!checkAllocatable(spec.name, spec.type, shape, error))
      return false;
    tensors[index] = HostTensor(spec.type, shape);
    // Offsets split the packed tokens of q; block lists index key blocks.
    ParamRole role =
        index < roles.roles.size() ? roles.roles[index] : ParamRole::Other;
    ParamRole lengthOf =
        role == ParamRole::Offsets ? ParamRole::Query : ParamRole::Key;
    int64_t length = 0, listWidth = 1;
    std::string ignored;
    for (size_t other = 0; other < roles.roles.size(); ++other) {
      std::vector<int64_t> otherShape;
      if (!resolveShape(signature.params[other], bindings, otherShape, ignored))
        continue;
      if (roles.roles[other] == lengthOf)
        length = otherShape[lengthOf == ParamRole::Query ? 0 : roles.keySeqDim];
      if (roles.roles[other] == ParamRole::BlockIndices && !otherShape.empty())
        listWidth = otherShape.back();
    }
    if (role == ParamRole::TopkBlocks && !shape.empty())
      listWidth = shape.back();
    fillRandom(tensors[index], role, seed + index, length, roles.blockK,
               listWidth);
    present[index] = true;
  }
  return true;
}
