//===- MmaLayout.cpp - Fragment layouts of mma.sync and wgmma -------------===//

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

MatrixCoord attnc::nvvm::wgmmaACoord(int thread, int reg, int element) {
  MatrixCoord coord = mmaACoord(thread % kWarpSize, reg, element);
  return {coord.row + kMmaM * (thread / kWarpSize), coord.col};
}

MatrixCoord attnc::nvvm::wgmmaDCoord(int thread, int reg) {
  int lane = thread % kWarpSize, tile = reg / 4;
  MatrixCoord coord = mmaCCoord(lane, (reg % 4) / 2, reg % 2);
  return {coord.row + kMmaM * (thread / kWarpSize), coord.col + kMmaN * tile};
}

long SharedOperand::offset(int mn, int k) const {
  int perRow = 16 / elementBytes; // T: elements in 16 bytes
  if (majorness == Majorness::K)
    return (mn % 8) * 16 + (mn / 8) * strideBytes +
           (k % perRow) * elementBytes + (k / perRow) * leadingBytes;
  return (mn % perRow) * elementBytes + (mn / perRow) * strideBytes +
         (k % 8) * 16 + (k / 8) * leadingBytes;
}

namespace {
unsigned long long encode(long bytes) {
  return static_cast<unsigned long long>((bytes & 0x3FFFF) >> 4);
}
} // namespace

unsigned long long attnc::nvvm::wgmmaDescriptor(long start,
                                               const SharedOperand &operand) {
  return encode(start) | encode(operand.leadingBytes) << 16 |
         encode(operand.strideBytes) << 32;
}

DescriptorFields attnc::nvvm::decodeWgmmaDescriptor(
    unsigned long long descriptor) {
  auto field = [&](int shift) {
    return static_cast<long>((descriptor >> shift) & 0x3FFF) << 4;
  };
  return {field(0), field(16), field(32),
          static_cast<int>(descriptor >> 62)};
}
