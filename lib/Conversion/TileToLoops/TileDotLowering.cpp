//===- TileDotLowering.cpp - Tile dots as loops over buffers --------------===//
//
// The patterns lowering attn_tile.dot (on vectors of result
// columns, or along the rows of a transposed rhs, else a scalar fallback)
// attn_tile.decay_dot (on vectors along the depth where every operand is
// row-major) and attn_tile.decay_combine (on vectors of result columns).
//
//===----------------------------------------------------------------------===//

#include "ProgramLowering.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_loops;
namespace tile = attnc::tile;
namespace vector = mlir::vector;

namespace {

struct DotLowering : TileLowering<tile::DotOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::DotOp dot) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer lhs = lowering.tileOf(dot.getLhs()),
               rhs = lowering.tileOf(dot.getRhs()),
               acc = lowering.tileOf(dot.getAcc());
    bool transposeLhs = dot.getTransposeLhs();
    // lhs[r][d] of the product (lhs^T with transpose_lhs).
    auto lhsAt = [&](Value r, Value d) {
      return transposeLhs ? lowering.loadElement(lhs, d, r)
                          : lowering.loadElement(lhs, r, d);
    };
    Value rows = transposeLhs ? lhs.cols : lhs.rows;
    Value depth = transposeLhs ? lhs.rows : lhs.cols;
    bool zeroAcc = lowering.isZeroAccumulator(dot.getAcc());
    auto rhsType = cast<RankedTensorType>(dot.getRhs().getType());
    if (dot.getTransposeRhs() && !rhs.transposed &&
        !rhsType.isDynamicDim(0)) {
      // A rhs stored row-major (it has other uses) is copied transposed
      // first: one pass over its elements buys the vector product below
      // instead of the scalar fallback's loads of single elements.
      TileBuffer staged = lowering.allocate(rhs.capacity, rhs.cols,
                                            /*transposed=*/true);
      staged.rows = rhs.rows;
      lowering.forEachElement(rhs, [&](Value r, Value c) {
        lowering.storeElement(lowering.loadElement(rhs, r, c), staged, r, c);
      });
      rhs = staged;
    }
    if (dot.getTransposeRhs() && rhs.transposed) {
      // result[r, :] = acc[r, :] + lhs[r, :] . rhs^T, on vectors along the
      // columns of the result (rhs staged transposed).
      TileBuffer result = lowering.assign(dot, lowering.allocateLike(acc));
      int64_t width =
          llvm::alignTo(rhsType.getDimSize(0), LoweringBuilder::kLanes);
      rb.loop(rb.index(0), rows, [&](Value r) {
        rb.rowTimesTransposed(depth, [&](Value d) { return lhsAt(r, d); },
                              rhs.buffer, width, result.buffer, {r});
        if (zeroAcc)
          return;
        rb.loop(rb.index(0), result.cols, [&](Value c) {
          lowering.storeElement(rb.add(lowering.loadElement(result, r, c),
                                       lowering.loadElement(acc, r, c)),
                                result, r, c);
        });
      });
      lowering.replaceOp(dot, {});
      return success();
    }
    if (dot.getTransposeRhs()) {
      // Scalar fallback: a rhs of open rows, not staged transposed.
      TileBuffer result = lowering.assign(dot, lowering.allocateLike(acc));
      lowering.forEachElement(result, [&](Value r, Value c) {
        Value init = zeroAcc ? rb.f32(0) : lowering.loadElement(acc, r, c);
        Value sum = rb.loop(
            rb.index(0), depth, {init}, [&](Value d, ValueRange partial) {
              return SmallVector<Value>{math::FmaOp::create(
                  b, lhsAt(r, d), lowering.loadElement(rhs, c, d), partial[0])};
            })[0];
        lowering.storeElement(sum, result, r, c);
      });
      lowering.replaceOp(dot, {});
      return success();
    }
    // result[r, :] = acc[r, :] + sum_k lhs[r, k] rhs[k, :], kValueGroup
    // vectors of result columns per loop over k; in place when acc dies.
    if (rhs.transposed)
      return lowering.error(dot, "needs a row-major rhs on the CPU");
    TileBuffer result = lowering.bufferFor(dot, dot, acc, {dot.getAcc()},
                                           {dot.getLhs(), dot.getRhs()});
    constexpr int64_t group =
        LoweringBuilder::kLanes * LoweringBuilder::kValueGroup;
    Value groups = arith::DivUIOp::create(
        b, rb.paddedToValueGroups(result.cols), rb.index(group));
    rb.loop(rb.index(0), rows, [&](Value r) {
      rb.loop(rb.index(0), groups, [&](Value g) {
        Value c0 = rb.mul(g, rb.index(group));
        auto column = [&](int64_t k) {
          return rb.add(c0, rb.index(k * LoweringBuilder::kLanes));
        };
        SmallVector<Value> inits;
        for (int64_t k = 0; k < LoweringBuilder::kValueGroup; ++k)
          inits.push_back(zeroAcc ? rb.zeroLanes()
                                  : rb.loadLanes(acc.buffer, {r, column(k)}));
        SmallVector<Value> sums =
            rb.vectorDotLoops(rb.index(0), depth, inits, [&](Value d) {
              SmallVector<Value> row;
              for (int64_t k = 0; k < LoweringBuilder::kValueGroup; ++k)
                row.push_back(rb.loadLanes(rhs.buffer, {d, column(k)}));
              return std::make_pair(lhsAt(r, d), row);
            });
        for (int64_t k = 0; k < LoweringBuilder::kValueGroup; ++k)
          vector::StoreOp::create(b, sums[k], result.buffer,
                                  ValueRange{r, column(k)});
      });
    });
    lowering.replaceOp(dot, {});
    return success();
  }
};

/// [begin, end) narrowed to row r's diagonal block of `block` rows.
std::pair<Value, Value> diagonalBlock(LoweringBuilder &rb, Value r,
                                      int64_t block, Value begin, Value end) {
  ImplicitLocOpBuilder &b = rb.b;
  Value blockStart =
      rb.mul(arith::DivUIOp::create(b, r, rb.index(block)), rb.index(block));
  Value blockEnd =
      arith::MinUIOp::create(b, rb.add(blockStart, rb.index(block)), end);
  return {arith::MinUIOp::create(
              b, arith::MaxUIOp::create(b, begin, blockStart), blockEnd),
          blockEnd};
}

/// result[r][c] = acc[r][c] + sum_d lhs[r][d] rhs[c][d]
///                exp(lhsGate[r][d] - rhsGate[c][d]), one term at a time;
/// with lower_triangular only for c <= r, with a diagonal block only for c
/// in r's block.
struct DecayDotLowering : TileLowering<tile::DecayDotOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::DecayDotOp dot) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer lhs = lowering.tileOf(dot.getLhs()),
               rhs = lowering.tileOf(dot.getRhs()),
               lhsGate = lowering.tileOf(dot.getLhsGate()),
               rhsGate = lowering.tileOf(dot.getRhsGate()),
               acc = lowering.tileOf(dot.getAcc());
    TileBuffer result = lowering.bufferFor(
        dot, dot, acc, {dot.getAcc()},
        {dot.getLhs(), dot.getRhs(), dot.getLhsGate(), dot.getRhsGate()});
    Value zero = rb.index(0);
    bool zeroAcc = lowering.isZeroAccumulator(dot.getAcc());
    auto accAt = [&](Value r, Value c) {
      return zeroAcc ? rb.f32(0) : lowering.loadElement(acc, r, c);
    };
    // The sum over d runs on vectors when every operand is row-major.
    bool vectorDepth =
        llvm::none_of(ArrayRef<TileBuffer>{lhs, rhs, lhsGate, rhsGate},
                      [](const TileBuffer &tile) { return tile.transposed; });
    Value lanes = rb.index(LoweringBuilder::kLanes);
    Value groups = arith::DivUIOp::create(b, lhs.cols, lanes);
    rb.loop(zero, result.rows, [&](Value r) {
      Value end = dot.getLowerTriangular()
                      ? Value(arith::MinUIOp::create(b, rb.add(r, rb.index(1)),
                                                     result.cols))
                      : result.cols;
      Value begin = zero;
      if (int64_t block = dot.getDiagonalBlock())
        std::tie(begin, end) = diagonalBlock(rb, r, block, begin, end);
      rb.loop(begin, end, [&](Value c) {
        Value sum = accAt(r, c), tail = zero;
        if (vectorDepth) { // groups of kLanes terms, then one at a time
          tail = rb.mul(groups, lanes);
          Value terms =
              rb.loop(zero, groups, {rb.zeroLanes()},
                      [&](Value group, ValueRange partial) {
                        Value d = rb.mul(group, lanes);
                        Value decay = math::ExpOp::create(
                            b, arith::SubFOp::create(
                                   b, rb.loadLanes(lhsGate.buffer, {r, d}),
                                   rb.loadLanes(rhsGate.buffer, {c, d})));
                        Value product = arith::MulFOp::create(
                            b, rb.loadLanes(lhs.buffer, {r, d}),
                            rb.loadLanes(rhs.buffer, {c, d}));
                        return SmallVector<Value>{
                            math::FmaOp::create(b, product, decay, partial[0])};
                      })[0];
          sum = vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                            terms, sum);
        }
        sum = rb.loop(tail, lhs.cols, {sum}, [&](Value d, ValueRange partial) {
          Value decay = math::ExpOp::create(
              b, arith::SubFOp::create(b, lowering.loadElement(lhsGate, r, d),
                                       lowering.loadElement(rhsGate, c, d)));
          Value product = rb.mul(rb.mul(lowering.loadElement(lhs, r, d),
                                        lowering.loadElement(rhs, c, d)),
                                 decay);
          return SmallVector<Value>{rb.add(partial[0], product)};
        })[0];
        lowering.storeElement(sum, result, r, c);
      });
      if (result.buffer != acc.buffer || zeroAcc) {
        auto copyAcc = [&](Value c) {
          lowering.storeElement(accAt(r, c), result, r, c);
        };
        rb.loop(zero, begin, copyAcc);
        rb.loop(end, result.cols, copyAcc);
      }
    });
    lowering.replaceOp(dot, {});
    return success();
  }
};

/// result[r][c] = acc[r][c] + sum_k lhs[r][k] rhs[k][c]
///                exp(gate[r][c] - rhsGate[k][c]) over k's triangle; on
/// vectors of result columns where every tile but lhs is row-major.
struct DecayCombineLowering : TileLowering<tile::DecayCombineOp> {
  using TileLowering::TileLowering;

  LogicalResult lower(tile::DecayCombineOp combine) const override {
    ImplicitLocOpBuilder &b = lowering.b;
    LoweringBuilder &rb = lowering.rb;
    TileBuffer lhs = lowering.tileOf(combine.getLhs()),
               rhs = lowering.tileOf(combine.getRhs()),
               gate = lowering.tileOf(combine.getGate()),
               rhsGate = lowering.tileOf(combine.getRhsGate()),
               acc = lowering.tileOf(combine.getAcc());
    TileBuffer result = lowering.bufferFor(
        combine, combine, acc, {combine.getAcc()},
        {combine.getLhs(), combine.getRhs(), combine.getGate(),
         combine.getRhsGate()});
    Value zero = rb.index(0), one = rb.index(1);
    bool zeroAcc = lowering.isZeroAccumulator(combine.getAcc());
    bool vectorColumns = llvm::none_of(
        ArrayRef<TileBuffer>{rhs, gate, rhsGate, acc, result},
        [](const TileBuffer &tile) { return tile.transposed; });
    Value lanes = rb.index(LoweringBuilder::kLanes);
    Value vectorCols =
        vectorColumns
            ? rb.mul(arith::DivUIOp::create(b, result.cols, lanes), lanes)
            : zero;
    rb.loop(zero, result.rows, [&](Value r) {
      Value begin = zero, end = lhs.cols;
      if (combine.getLowerTriangular())
        end = arith::MinUIOp::create(b, rb.add(r, one), lhs.cols);
      else
        begin = arith::MinUIOp::create(b, r, lhs.cols);
      if (int64_t block = combine.getDiagonalBlock())
        std::tie(begin, end) = diagonalBlock(rb, r, block, begin, end);
      // The terms of columns from c on: lanes of them, or one.
      auto sumFrom = [&](Value c, Value init, bool vector) {
        auto at = [&](const TileBuffer &tile, Value row) -> Value {
          return vector ? rb.loadLanes(tile.buffer, {row, c})
                        : lowering.loadElement(tile, row, c);
        };
        Value rowGate = at(gate, r);
        return rb.loop(begin, end, {init}, [&](Value k, ValueRange partial) {
          Value weight = lowering.loadElement(lhs, r, k);
          if (vector)
            weight = vector::BroadcastOp::create(b, rb.lanes(), weight);
          Value decay = math::ExpOp::create(
              b, arith::SubFOp::create(b, rowGate, at(rhsGate, k)));
          return SmallVector<Value>{math::FmaOp::create(
              b, arith::MulFOp::create(b, weight, at(rhs, k)), decay,
              partial[0])};
        })[0];
      };
      rb.loop(zero, arith::DivUIOp::create(b, vectorCols, lanes),
              [&](Value group) {
                Value c = rb.mul(group, lanes);
                Value init = zeroAcc ? rb.zeroLanes()
                                     : rb.loadLanes(acc.buffer, {r, c});
                vector::StoreOp::create(b, sumFrom(c, init, true),
                                        result.buffer, ValueRange{r, c});
              });
      rb.loop(vectorCols, result.cols, [&](Value c) {
        Value init = zeroAcc ? rb.f32(0) : lowering.loadElement(acc, r, c);
        lowering.storeElement(sumFrom(c, init, false), result, r, c);
      });
    });
    lowering.replaceOp(combine, {});
    return success();
  }
};

} // namespace

void attnc::lowering::tile_to_loops::populateTileDotLoweringPatterns(
    RewritePatternSet &patterns, ProgramLowering &lowering) {
  patterns.add<DotLowering, DecayDotLowering, DecayCombineLowering>(lowering, patterns.getContext());
}
