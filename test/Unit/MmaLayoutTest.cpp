//===- MmaLayoutTest.cpp - mma.sync and wgmma layouts ------------------------===//
//
// The layouts against the PTX ISA's fragment tables (written out here from
// the ISA's element numbering a0..a7, b0..b3, c0..c3), bijectivity, a CPU
// emulation of one warp's mma.sync.m16n8k16 built from the layouts, and the
// FlashAttention-2 property that two adjacent C tiles are the next A operand.
// For wgmma: the register fragments, the shared-memory layouts against the
// ISA's worked examples, the descriptor bits, and a CPU emulation of a
// warpgroup's wgmma that reads its operands through descriptors.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/NVVM/MmaLayout.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <utility>
#include <vector>

using namespace attnc::nvvm;

namespace {

// PTX ISA, "Matrix Fragments for mma.m16n8k16" (f16/bf16 A and B, f32 C):
//   groupID = laneid >> 2, threadID_in_group = laneid % 4
//   A: row = groupID for a0, a1, a4, a5 and groupID + 8 for a2, a3, a6, a7;
//      col = threadID_in_group * 2 + (i & 1) for i < 4, + 8 for i >= 4
//   B: row = threadID_in_group * 2 + (i & 1) for i < 2, + 8 for i >= 2;
//      col = groupID
//   C: row = groupID for c0, c1 and groupID + 8 for c2, c3;
//      col = threadID_in_group * 2 + (i & 1)
MatrixCoord isaA(int lane, int i) {
  int g = lane >> 2, t = lane % 4;
  int row = (i == 0 || i == 1 || i == 4 || i == 5) ? g : g + 8;
  int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
  return {row, col};
}
MatrixCoord isaB(int lane, int i) {
  int g = lane >> 2, t = lane % 4;
  return {t * 2 + (i & 1) + (i >= 2 ? 8 : 0), g};
}
MatrixCoord isaC(int lane, int i) {
  int g = lane >> 2, t = lane % 4;
  return {i < 2 ? g : g + 8, t * 2 + (i & 1)};
}

TEST(MmaLayout, MatchesThePtxIsaTables) {
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int element = 0; element < kElementsPerRegister; ++element) {
      for (int reg = 0; reg < kARegisters; ++reg)
        EXPECT_EQ(mmaACoord(lane, reg, element), isaA(lane, 2 * reg + element))
            << "A lane " << lane << " reg " << reg << " element " << element;
      for (int reg = 0; reg < kBRegisters; ++reg)
        EXPECT_EQ(mmaBCoord(lane, reg, element), isaB(lane, 2 * reg + element))
            << "B lane " << lane << " reg " << reg << " element " << element;
      for (int reg = 0; reg < kCRegisters; ++reg)
        EXPECT_EQ(mmaCCoord(lane, reg, element), isaC(lane, 2 * reg + element))
            << "C lane " << lane << " reg " << reg << " element " << element;
    }
}

template <typename Layout>
void expectBijection(Layout layout, int registers, int rows, int cols,
                     const char *what) {
  std::set<std::pair<int, int>> seen;
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int reg = 0; reg < registers; ++reg)
      for (int element = 0; element < kElementsPerRegister; ++element) {
        MatrixCoord coord = layout(lane, reg, element);
        ASSERT_TRUE(coord.row >= 0 && coord.row < rows && coord.col >= 0 &&
                    coord.col < cols)
            << what;
        EXPECT_TRUE(seen.insert({coord.row, coord.col}).second)
            << what << " (" << coord.row << ", " << coord.col << ") twice";
      }
  EXPECT_EQ(static_cast<int>(seen.size()), rows * cols) << what;
}

TEST(MmaLayout, EveryElementHasExactlyOneOwner) {
  expectBijection(mmaACoord, kARegisters, kMmaM, kMmaK, "A");
  expectBijection(mmaBCoord, kBRegisters, kMmaK, kMmaN, "B");
  expectBijection(mmaCCoord, kCRegisters, kMmaM, kMmaN, "C");
}

/// One warp's mma.sync.m16n8k16 on the CPU: the lanes' registers are filled
/// from A, B and C through the layouts; the "hardware" gathers A and B from
/// the registers, multiplies, and scatters D to the lanes through the C
/// layout; the result is read back through the layout.
TEST(MmaLayout, WarpEmulationReproducesAMatmul) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(-4, 4);
  float A[kMmaM][kMmaK], B[kMmaK][kMmaN], C[kMmaM][kMmaN];
  for (auto &row : A)
    for (float &x : row)
      x = static_cast<float>(small(rng));
  for (auto &row : B)
    for (float &x : row)
      x = static_cast<float>(small(rng));
  for (auto &row : C)
    for (float &x : row)
      x = static_cast<float>(small(rng));

  float a[kWarpSize][kARegisters][2], b[kWarpSize][kBRegisters][2],
      c[kWarpSize][kCRegisters][2];
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int e = 0; e < 2; ++e) {
      for (int r = 0; r < kARegisters; ++r) {
        MatrixCoord at = mmaACoord(lane, r, e);
        a[lane][r][e] = A[at.row][at.col];
      }
      for (int r = 0; r < kBRegisters; ++r) {
        MatrixCoord at = mmaBCoord(lane, r, e);
        b[lane][r][e] = B[at.row][at.col];
      }
      for (int r = 0; r < kCRegisters; ++r) {
        MatrixCoord at = mmaCCoord(lane, r, e);
        c[lane][r][e] = C[at.row][at.col];
      }
    }
  // The hardware's view: operands reassembled from the registers.
  float gatheredA[kMmaM][kMmaK], gatheredB[kMmaK][kMmaN], gatheredC[kMmaM][kMmaN];
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int e = 0; e < 2; ++e) {
      for (int r = 0; r < kARegisters; ++r) {
        MatrixCoord at = mmaACoord(lane, r, e);
        gatheredA[at.row][at.col] = a[lane][r][e];
      }
      for (int r = 0; r < kBRegisters; ++r) {
        MatrixCoord at = mmaBCoord(lane, r, e);
        gatheredB[at.row][at.col] = b[lane][r][e];
      }
      for (int r = 0; r < kCRegisters; ++r) {
        MatrixCoord at = mmaCCoord(lane, r, e);
        gatheredC[at.row][at.col] = c[lane][r][e];
      }
    }
  float d[kWarpSize][kCRegisters][2];
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int r = 0; r < kCRegisters; ++r)
      for (int e = 0; e < 2; ++e) {
        MatrixCoord at = mmaCCoord(lane, r, e);
        float sum = gatheredC[at.row][at.col];
        for (int k = 0; k < kMmaK; ++k)
          sum += gatheredA[at.row][k] * gatheredB[k][at.col];
        d[lane][r][e] = sum;
      }
  // Plain matmul, compared through the layout.
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int r = 0; r < kCRegisters; ++r)
      for (int e = 0; e < 2; ++e) {
        MatrixCoord at = mmaCCoord(lane, r, e);
        float expected = C[at.row][at.col];
        for (int k = 0; k < kMmaK; ++k)
          expected += A[at.row][k] * B[k][at.col];
        EXPECT_EQ(d[lane][r][e], expected) << "lane " << lane << " reg " << r;
      }
}

TEST(MmaLayout, AdjacentAccumulatorTilesAreTheNextAOperand) {
  // S = Q K^T is computed in 16x8 tiles; P = softmax(S) feeds P V as the A
  // operand of 16x16 k-steps. For k-step s, A register r, element e must be
  // element e of register (r % 2) of the C tile 2s + r / 2, in the same lane:
  // then P never leaves the registers (no shuffles).
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int r = 0; r < kARegisters; ++r)
      for (int e = 0; e < 2; ++e) {
        MatrixCoord a = mmaACoord(lane, r, e); // column within the k16 step
        int tile = r / 2;                       // which n8 tile of the pair
        MatrixCoord c = mmaCCoord(lane, r % 2, e);
        EXPECT_EQ(a.row, c.row);
        EXPECT_EQ(a.col, tile * kMmaN + c.col);
      }
}

TEST(MmaLayout, LdmatrixRowsAndElements) {
  std::set<std::pair<int, int>> rows;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    LdmatrixRow row = ldmatrixAddressRow(lane);
    EXPECT_TRUE(rows.insert({row.matrix, row.row}).second);
  }
  EXPECT_EQ(rows.size(), 32u); // x4: four 8x8 matrices, 8 row addresses each
  // Without .trans a lane receives the same (row, col) of each 8x8 matrix
  // as the C layout's first register; .trans swaps them.
  for (int lane = 0; lane < kWarpSize; ++lane)
    for (int e = 0; e < 2; ++e) {
      EXPECT_EQ(ldmatrixElement(lane, e, false), mmaCCoord(lane, 0, e));
      MatrixCoord plain = ldmatrixElement(lane, e, false);
      MatrixCoord transposed = ldmatrixElement(lane, e, true);
      EXPECT_EQ(transposed.row, plain.col);
      EXPECT_EQ(transposed.col, plain.row);
    }
}

// PTX ISA, "Matrix Fragments for wgmma.mma_async.m64nNk16": warp w of the
// warpgroup holds rows 16w + groupID (d0, d1) and 16w + groupID + 8 (d2,
// d3) of each 8 columns, columns 8 (i / 4) + threadID_in_group * 2 + (i & 1).
MatrixCoord isaWgmmaD(int thread, int i) {
  int warp = thread / 32, lane = thread % 32, g = lane >> 2, t = lane % 4;
  return {16 * warp + g + 8 * ((i >> 1) & 1), 8 * (i >> 2) + 2 * t + (i & 1)};
}

TEST(WgmmaLayout, RegisterFragmentsMatchTheIsa) {
  constexpr int n = 64;
  std::set<std::pair<int, int>> seen;
  for (int thread = 0; thread < kWarpgroupWarps * kWarpSize; ++thread) {
    for (int reg = 0; reg < n / 2; ++reg) {
      MatrixCoord d = wgmmaDCoord(thread, reg);
      EXPECT_EQ(d, isaWgmmaD(thread, reg)) << "thread " << thread;
      EXPECT_TRUE(seen.insert({d.row, d.col}).second);
    }
    // A in registers: mma.sync's A fragment, 16 rows lower per warp.
    for (int reg = 0; reg < kARegisters; ++reg)
      for (int e = 0; e < 2; ++e) {
        MatrixCoord a = wgmmaACoord(thread, reg, e);
        MatrixCoord isa = isaA(thread % 32, 2 * reg + e);
        EXPECT_EQ(a, (MatrixCoord{isa.row + 16 * (thread / 32), isa.col}));
      }
  }
  EXPECT_EQ(static_cast<int>(seen.size()), kWgmmaM * n);
}

// The ISA's worked examples of unswizzled layouts ("Canonical Layouts"):
//   K-major tf32: ((8,2),(4,4)):((4,32),(1,64)) elements, LBO 64 and SBO 32
//   elements; MN-major bf16: ((8,1,2),(8,2)):((1,8,64),(8,128)), LBO 128
//   and SBO 64 elements.
TEST(WgmmaLayout, SharedLayoutsMatchTheIsaExamples) {
  SharedOperand kMajor{Majorness::K, 4, 64 * 4, 32 * 4};
  for (int r1 = 0; r1 < 2; ++r1)
    for (int r0 = 0; r0 < 8; ++r0)
      for (int c1 = 0; c1 < 4; ++c1)
        for (int c0 = 0; c0 < 4; ++c0)
          EXPECT_EQ(kMajor.offset(r0 + 8 * r1, c0 + 4 * c1),
                    4 * (4 * r0 + 32 * r1 + c0 + 64 * c1));
  SharedOperand mnMajor{Majorness::MN, 2, 128 * 2, 64 * 2};
  for (int n2 = 0; n2 < 2; ++n2)
    for (int n0 = 0; n0 < 8; ++n0)
      for (int k1 = 0; k1 < 2; ++k1)
        for (int k0 = 0; k0 < 8; ++k0)
          EXPECT_EQ(mnMajor.offset(n0 + 8 * n2, k0 + 8 * k1),
                    2 * (n0 + 64 * n2 + 8 * k0 + 128 * k1));
}

TEST(WgmmaLayout, DescriptorBits) {
  // The ISA example's encodings: LBO 64 tf32 = 256 bytes -> 16, SBO 32 tf32
  // = 128 bytes -> 8; the start address >> 4 in bits 0-13.
  SharedOperand operand{Majorness::K, 4, 256, 128};
  unsigned long long descriptor = wgmmaDescriptor(0x1230, operand);
  EXPECT_EQ(descriptor, 0x123ull | 16ull << 16 | 8ull << 32);
  DescriptorFields fields = decodeWgmmaDescriptor(descriptor);
  EXPECT_EQ(fields.start, 0x1230);
  EXPECT_EQ(fields.leadingBytes, 256);
  EXPECT_EQ(fields.strideBytes, 128);
  EXPECT_EQ(fields.swizzle, 0);
}

/// One warpgroup's wgmma.m64nNk16 on the CPU, as the hardware sees it: A
/// (64 x 16) and B (16 x N) written into "shared memory" in the layouts
/// that their descriptors describe (A K-major; B as N x K K-major or as
/// K x N MN-major), or A from the threads' registers; the products land in
/// the threads' D registers; read back through the D layout and compared
/// with a plain matmul.
TEST(WgmmaLayout, WarpgroupEmulationReproducesAMatmul) {
  constexpr int n = 32, threads = kWarpgroupWarps * kWarpSize;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-4, 4);
  float A[kWgmmaM][kWgmmaK], B[kWgmmaK][n];
  for (auto &row : A)
    for (float &x : row)
      x = static_cast<float>(small(rng));
  for (auto &row : B)
    for (float &x : row)
      x = static_cast<float>(small(rng));
  // Core matrices of A: 8 rows of 16 bytes; the two along K adjacent (LBO
  // 128), the 8-row bands after each other (SBO 256). B K-major likewise;
  // B MN-major: 8-row bands of K adjacent (LBO 128), 8 columns of N apart
  // by two core matrices (SBO 256).
  SharedOperand aLayout{Majorness::K, 2, 128, 256};
  SharedOperand bLayouts[] = {{Majorness::K, 2, 128, 256},
                              {Majorness::MN, 2, 128, 256}};
  for (const SharedOperand &bLayout : bLayouts)
    for (bool aInRegisters : {false, true}) {
      std::vector<float> shared(4096, 0.0f); // indexed by byte offset / 2
      const long aStart = 0, bStart = 4096;
      for (int m = 0; m < kWgmmaM; ++m)
        for (int k = 0; k < kWgmmaK; ++k)
          shared[(aStart + aLayout.offset(m, k)) / 2] = A[m][k];
      for (int k = 0; k < kWgmmaK; ++k)
        for (int j = 0; j < n; ++j)
          shared[(bStart + bLayout.offset(j, k)) / 2] = B[k][j];
      unsigned long long aDescriptor = wgmmaDescriptor(aStart, aLayout);
      unsigned long long bDescriptor = wgmmaDescriptor(bStart, bLayout);
      float aRegisters[threads][kARegisters][2];
      for (int thread = 0; thread < threads; ++thread)
        for (int r = 0; r < kARegisters; ++r)
          for (int e = 0; e < 2; ++e) {
            MatrixCoord at = wgmmaACoord(thread, r, e);
            aRegisters[thread][r][e] = A[at.row][at.col];
          }

      // The hardware: operands through the descriptors (majorness is the
      // instruction's imm-trans-b) or the registers.
      float gatheredA[kWgmmaM][kWgmmaK], gatheredB[kWgmmaK][n];
      DescriptorFields a = decodeWgmmaDescriptor(aDescriptor);
      DescriptorFields b = decodeWgmmaDescriptor(bDescriptor);
      SharedOperand aRead{Majorness::K, 2, a.leadingBytes, a.strideBytes};
      SharedOperand bRead{bLayout.majorness, 2, b.leadingBytes, b.strideBytes};
      for (int m = 0; m < kWgmmaM; ++m)
        for (int k = 0; k < kWgmmaK; ++k)
          gatheredA[m][k] = shared[(a.start + aRead.offset(m, k)) / 2];
      if (aInRegisters)
        for (int thread = 0; thread < threads; ++thread)
          for (int r = 0; r < kARegisters; ++r)
            for (int e = 0; e < 2; ++e) {
              MatrixCoord at = wgmmaACoord(thread, r, e);
              gatheredA[at.row][at.col] = aRegisters[thread][r][e];
            }
      for (int k = 0; k < kWgmmaK; ++k)
        for (int j = 0; j < n; ++j)
          gatheredB[k][j] = shared[(b.start + bRead.offset(j, k)) / 2];
      for (int thread = 0; thread < threads; ++thread)
        for (int reg = 0; reg < n / 2; ++reg) {
          MatrixCoord at = wgmmaDCoord(thread, reg);
          float d = 0, expected = 0;
          for (int k = 0; k < kWgmmaK; ++k) {
            d += gatheredA[at.row][k] * gatheredB[k][at.col];
            expected += A[at.row][k] * B[k][at.col];
          }
          EXPECT_EQ(d, expected) << "thread " << thread << " reg " << reg;
        }
    }
}

} // namespace
