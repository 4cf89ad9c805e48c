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

std::string attnc::nvvm::wgmmaAsmText(int n, bool bf16, bool aFromRegisters,
                                      bool transposeB) {
  int outputs = n / 2;
  auto operand = [](int number) { return "$" + std::to_string(number); };
  std::string type = bf16 ? "bf16" : "f16";
  std::string text = "{\n.reg .pred p;\nsetp.ne.b32 p, " +
                     operand(outputs + (aFromRegisters ? 5 : 2)) + ", 0;\n" +
                     "wgmma.mma_async.sync.aligned.m64n" + std::to_string(n) +
                     "k16.f32." + type + "." + type + " {";
  for (int r = 0; r < outputs; ++r)
    text += (r ? ", " : "") + operand(r);
  text += "}, ";
  std::string flip = std::to_string(transposeB ? 1 : 0);
  if (aFromRegisters)
    text += "{" + operand(outputs) + ", " + operand(outputs + 1) + ", " +
            operand(outputs + 2) + ", " + operand(outputs + 3) + "}, " +
            operand(outputs + 4) + ", p, 1, 1, " + flip + ";\n}";
  else
    text += operand(outputs) + ", " + operand(outputs + 1) + ", p, 1, 1, 0, " +
            flip + ";\n}";
  return text;
}

std::string attnc::nvvm::wgmmaAsmConstraints(int n, bool aFromRegisters) {
  int outputs = n / 2;
  std::string constraints;
  for (int r = 0; r < outputs; ++r)
    constraints += "=f,";
  constraints += aFromRegisters ? "r,r,r,r," : "l,";
  constraints += "l,r";
  for (int r = 0; r < outputs; ++r)
    constraints += "," + std::to_string(r);
  return constraints;
}
