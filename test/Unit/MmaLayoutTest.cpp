//===- MmaLayoutTest.cpp - mma.sync fragment layouts ------------------------===//
//
// The layouts against the PTX ISA's fragment tables (written out here from
// the ISA's element numbering a0..a7, b0..b3, c0..c3), bijectivity, a CPU
// emulation of one warp's mma.sync.m16n8k16 built from the layouts, and the
// FlashAttention-2 property that two adjacent C tiles are the next A operand.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/NVVM/MmaLayout.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <utility>

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

} // namespace
