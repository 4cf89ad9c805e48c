//===- MmaLayout.cpp - Fragment layouts of mma.sync.m16n8k16 --------------===//

#include "attnc/Target/NVVM/MmaLayout.h"

using namespace attnc::nvvm;

namespace {
int group(int lane) { return lane / 4; }
int threadInGroup(int lane) { return lane % 4; }
} // namespace

MatrixCoord attnc::nvvm::mmaACoord(int lane, int reg, int element) {
  return {group(lane) + 8 * (reg % 2),
          2 * threadInGroup(lane) + element + 8 * (reg / 2)};
}

MatrixCoord attnc::nvvm::mmaBCoord(int lane, int reg, int element) {
  return {2 * threadInGroup(lane) + element + 8 * reg, group(lane)};
}

MatrixCoord attnc::nvvm::mmaCCoord(int lane, int reg, int element) {
  return {group(lane) + 8 * reg, 2 * threadInGroup(lane) + element};
}

LdmatrixRow attnc::nvvm::ldmatrixAddressRow(int lane) {
  return {lane / 8, lane % 8};
}

MatrixCoord attnc::nvvm::ldmatrixElement(int lane, int element,
                                         bool transposed) {
  MatrixCoord coord{group(lane), 2 * threadInGroup(lane) + element};
  return transposed ? MatrixCoord{coord.col, coord.row} : coord;
}
