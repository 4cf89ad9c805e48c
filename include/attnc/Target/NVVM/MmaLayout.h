//===- MmaLayout.h - Fragment layouts of mma.sync.m16n8k16 ------*- C++ -*-===//
//
// Which element of a matrix each lane of a warp holds in each register of
// the mma.sync.aligned.m16n8k16 operands (f16/bf16 A and B, f32 C/D), and of
// ldmatrix. The one place this mapping lives: the NVIDIA backend builds its
// index maps from it, and the tests check it against the PTX ISA tables and
// by emulating a warp's mma on the CPU. No MLIR here.
//
//   g = lane / 4 (group), t = lane % 4 (thread in group)
//
//   A 16x16 (row-major M x K), 4 registers of 2 halves:
//     a[r][e] = A[g + 8 * (r % 2)][2t + e + 8 * (r / 2)]
//   B 16x8 (K x N), 2 registers of 2 halves:
//     b[r][e] = B[2t + e + 8r][g]
//   C/D 16x8 f32, 2 registers of 2 floats:
//     c[r][e] = C[g + 8r][2t + e]
//
//        C/D tile (16 x 8), lane owning each pair of columns
//        col: 0 1 | 2 3 | 4 5 | 6 7
//   row 0:    0   |  1  |  2  |  3        r = 0
//   row 1:    4   |  5  |  6  |  7
//   ...
//   row 8:    0   |  1  |  2  |  3        r = 1
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TARGET_NVVM_MMALAYOUT_H
#define ATTNC_TARGET_NVVM_MMALAYOUT_H

namespace attnc::nvvm {

struct MatrixCoord {
  int row, col;
  bool operator==(const MatrixCoord &other) const {
    return row == other.row && col == other.col;
  }
};

/// mma.sync.m16n8k16 operand shapes and register counts per lane.
constexpr int kWarpSize = 32;
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;
constexpr int kARegisters = 4, kBRegisters = 2, kCRegisters = 2;
constexpr int kElementsPerRegister = 2;

/// Element `element` (0 or 1) of register `reg` of lane `lane`.
MatrixCoord mmaACoord(int lane, int reg, int element); // A is M x K
MatrixCoord mmaBCoord(int lane, int reg, int element); // B is K x N
MatrixCoord mmaCCoord(int lane, int reg, int element); // C and D are M x N

/// ldmatrix.x4 (8x8 b16 matrices): the row whose address lane `lane`
/// supplies, as (matrix, row); and the element a lane receives in register
/// `matrix`, as (row, col) of that matrix. With .trans the received element
/// is transposed.
struct LdmatrixRow {
  int matrix, row;
};
LdmatrixRow ldmatrixAddressRow(int lane);
MatrixCoord ldmatrixElement(int lane, int element, bool transposed);

} // namespace attnc::nvvm

#endif // ATTNC_TARGET_NVVM_MMALAYOUT_H
