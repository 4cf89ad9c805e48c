//===- MmaLayout.h - Fragment layouts of mma.sync and wgmma ----*- C++ -*-===//
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

#include <string>

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

//===----------------------------------------------------------------------===//
// wgmma.mma_async.m64nNk16 (sm_90a), f16/bf16 operands, f32 accumulators
//===----------------------------------------------------------------------===//
//
// A warpgroup of 4 warps computes a 64 x N tile. Warp w of the group holds
// rows [16w, 16w + 16) of A (when A is in registers) and of D, in the
// layouts of mma.sync: A as mma.sync's A operand, D as N / 8 of mma.sync's
// 16x8 C tiles, tile j in registers 4j .. 4j + 3.
//
// Operands in shared memory are read through 64-bit matrix descriptors:
// bits 0-13 the start address, 16-29 the leading dimension byte offset
// (LBO), 32-45 the stride dimension byte offset (SBO), each in 16-byte
// units, and bits 62-63 the swizzle mode (0: none). Without swizzling the
// matrix is made of core matrices of 8 rows of 16 bytes, each stored
// contiguously (128 bytes); with T = 16 / element bytes:
//
//   K-major (K contiguous: A as M x K, B given as N x K)
//     offset(mn, k) = (mn % 8) 16 + (mn / 8) SBO + (k % T) bytes + (k / T) LBO
//   MN-major (M or N contiguous: B given as K x N, imm-trans-b = 1)
//     offset(mn, k) = (mn % T) bytes + (mn / T) SBO + (k % 8) 16 + (k / 8) LBO
//
// (The PTX ISA's canonical layouts ((8,m),(T,2k)):((1T,SBO),(1,LBO)) and
// ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO)) in elements.)

constexpr int kWarpgroupWarps = 4;
constexpr int kWgmmaM = 64, kWgmmaK = 16;

/// Element `element` of A register `reg` (0-3) of `thread` (0-127) of the
/// warpgroup; A is 64 x 16.
MatrixCoord wgmmaACoord(int thread, int reg, int element);
/// The element of D in f32 register `reg` (0 .. N/2 - 1) of `thread`.
MatrixCoord wgmmaDCoord(int thread, int reg);

enum class Majorness { K, MN };
/// A shared-memory operand without swizzling.
struct SharedOperand {
  Majorness majorness = Majorness::K;
  int elementBytes = 2;
  long leadingBytes = 0, strideBytes = 0;
  /// The byte offset of element (mn, k) from the operand's start.
  long offset(int mn, int k) const;
};

/// The descriptor of `operand` at shared byte address `start` (16-byte
/// aligned, below 256 KiB), no swizzling.
unsigned long long wgmmaDescriptor(long start, const SharedOperand &operand);
/// The fields of a descriptor: start, LBO and SBO in bytes, swizzle mode.
struct DescriptorFields {
  long start, leadingBytes, strideBytes;
  int swizzle;
};
DescriptorFields decodeWgmmaDescriptor(unsigned long long descriptor);

/// The inline PTX of one wgmma.mma_async.m64n{n}k16 with f32 accumulators
/// (the NVVM dialect's wgmma op takes A only as a descriptor): operands $0
/// .. $(n/2 - 1) are the accumulators, then A (4 registers when
/// `aFromRegisters`, else a descriptor), B's descriptor, the scale-d flag (1:
/// accumulate) and the accumulators' inputs, tied to the outputs; B is
/// MN-major when `transposeB`. The constraints go with it.
std::string wgmmaAsmText(int n, bool bf16, bool aFromRegisters,
                         bool transposeB);
std::string wgmmaAsmConstraints(int n, bool aFromRegisters);

} // namespace attnc::nvvm

#endif // ATTNC_TARGET_NVVM_MMALAYOUT_H
