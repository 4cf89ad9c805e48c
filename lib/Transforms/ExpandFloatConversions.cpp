//===- ExpandFloatConversions.cpp - Half-precision without builtins -------===//
//
// LLVM lowers bf16/f16 conversions to calls of compiler-runtime builtins
// (__truncsfbf2, __extendhfsf2, ...) on CPUs without native conversions, and
// a host's libgcc may lack them. Computing the conversions on the bit
// patterns keeps JIT-compiled kernels independent of the host CPU.
//
//===----------------------------------------------------------------------===//

#include "attnc/Transforms/Passes.h"

#include "mlir/IR/TypeUtilities.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace attnc {
#define GEN_PASS_DEF_EXPANDFLOATCONVERSIONS
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

bool isHalfPrecision(Type type) {
  Type element = getElementTypeOrSelf(type);
  return element.isBF16() || element.isF16();
}

/// An IEEE binary format: `bits` wide, `mantissa` stored fraction bits.
struct Format {
  unsigned bits, mantissa;
  unsigned exponentBits() const { return bits - 1 - mantissa; }
  int64_t bias() const { return (int64_t{1} << (exponentBits() - 1)) - 1; }
  uint64_t infinity() const {
    return ((uint64_t{1} << exponentBits()) - 1) << mantissa;
  }
  uint64_t mantissaMask() const { return (uint64_t{1} << mantissa) - 1; }
};

Format formatOf(Type type) {
  auto floatType = cast<FloatType>(getElementTypeOrSelf(type));
  return {floatType.getWidth(), floatType.getFPMantissaWidth() - 1};
}

/// Builds integer ops on scalars or vectors of one integer type.
struct BitBuilder {
  OpBuilder &b;
  Location loc;
  Type type; // iN or vector<...xiN>

  Value constant(uint64_t value) const {
    auto element = cast<IntegerType>(getElementTypeOrSelf(type));
    auto attr = IntegerAttr::get(element, APInt(element.getWidth(), value));
    if (auto vector = dyn_cast<VectorType>(type))
      return arith::ConstantOp::create(b, loc, type,
                                       DenseElementsAttr::get(vector, attr));
    return arith::ConstantOp::create(b, loc, type, attr);
  }
  Value add(Value x, Value y) const {
    return b.createOrFold<arith::AddIOp>(loc, x, y);
  }
  Value sub(Value x, Value y) const {
    return b.createOrFold<arith::SubIOp>(loc, x, y);
  }
  Value andOf(Value x, Value y) const {
    return b.createOrFold<arith::AndIOp>(loc, x, y);
  }
  Value orOf(Value x, Value y) const {
    return b.createOrFold<arith::OrIOp>(loc, x, y);
  }
  Value shl(Value x, Value y) const {
    return b.createOrFold<arith::ShLIOp>(loc, x, y);
  }
  Value shr(Value x, Value y) const {
    return b.createOrFold<arith::ShRUIOp>(loc, x, y);
  }
  Value cmp(arith::CmpIPredicate predicate, Value x, Value y) const {
    return b.createOrFold<arith::CmpIOp>(loc, predicate, x, y);
  }
  Value select(Value condition, Value x, Value y) const {
    return b.createOrFold<arith::SelectOp>(loc, condition, x, y);
  }
  Value minUnsigned(Value x, Value y) const {
    return b.createOrFold<arith::MinUIOp>(loc, x, y);
  }
  /// v / 2^s rounded to nearest, ties to even, for 0 < s < width - 1 and
  /// v + 2^(s-1) not overflowing: (v + 2^(s-1) - 1 + ((v >> s) & 1)) >> s.
  Value shiftRightRoundingToEven(Value v, Value s) const {
    Value one = constant(1);
    Value half = sub(shl(one, sub(s, one)), one);
    Value odd = andOf(shr(v, s), one);
    return shr(add(add(v, half), odd), s);
  }
};

Type integerTypeLike(Type type, unsigned width) {
  Type integer = IntegerType::get(type.getContext(), width);
  if (auto vector = dyn_cast<VectorType>(type))
    return vector.clone(integer);
  return integer;
}

/// truncf from a wider format S to bf16 or f16 (D), rounding to nearest even.
/// With e the source's biased exponent (1 for subnormals, whose implicit bit
/// is 0) and eD = e - biasS + biasD:
///  - eD >= 1: D is normal; rebias the exponent in place and drop
///    mantissaS - mantissaD bits with rounding (a carry into the exponent is
///    the correct next binade, and past the largest finite value reaches
///    infinity, where the result is clamped);
///  - eD <= 0: D is subnormal, n = significand >> (mantissaS - mantissaD +
///    1 - eD) with rounding; shifts past the significand give 0.
struct TruncateToHalf : OpRewritePattern<arith::TruncFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::TruncFOp op,
                                PatternRewriter &rewriter) const override {
    if (!isHalfPrecision(op.getType()) || op.getRoundingmodeAttr())
      return failure();
    Type sourceType = op.getIn().getType();
    Format source = formatOf(sourceType), target = formatOf(op.getType());
    if (isHalfPrecision(sourceType)) // bf16 <-> f16 goes through f32
      return failure();
    Location loc = op.getLoc();
    BitBuilder i{rewriter, loc, integerTypeLike(sourceType, source.bits)};
    using P = arith::CmpIPredicate;
    Value bits = arith::BitcastOp::create(rewriter, loc, i.type, op.getIn());
    Value sign = i.andOf(bits, i.constant(uint64_t{1} << (source.bits - 1)));
    Value magnitude = i.sub(bits, sign);
    Value fraction = i.andOf(magnitude, i.constant(source.mantissaMask()));
    int64_t rebias = source.bias() - target.bias();
    unsigned dropped = source.mantissa - target.mantissa;

    Value rebiased =
        i.sub(magnitude, i.constant(uint64_t(rebias) << source.mantissa));
    Value rounded =
        i.minUnsigned(i.shiftRightRoundingToEven(rebiased, i.constant(dropped)),
                      i.constant(target.infinity()));
    // With the source's exponent range (f32 -> bf16) every value takes the
    // normal path, subnormals included.
    if (rebias != 0) {
      Value exponent = i.shr(magnitude, i.constant(source.mantissa));
      Value isSubnormal = i.cmp(P::eq, exponent, i.constant(0));
      Value effectiveExponent = i.select(isSubnormal, i.constant(1), exponent);
      Value significand = i.orOf(
          fraction, i.select(isSubnormal, i.constant(0),
                             i.constant(uint64_t{1} << source.mantissa)));
      // shift = dropped + 1 - eD = dropped + 1 + rebias - e, capped at
      // mantissaS + 2 (beyond that the result is 0 as well).
      Value shift = i.minUnsigned(
          i.sub(i.constant(dropped + 1 + rebias), effectiveExponent),
          i.constant(source.mantissa + 2));
      Value subnormal = i.shiftRightRoundingToEven(significand, shift);
      // eD >= 1 <=> e > biasS - biasD.
      Value normalInTarget =
          i.cmp(P::sgt, effectiveExponent, i.constant(rebias));
      rounded = i.select(normalInTarget, rounded, subnormal);
    }
    Value isNaN = i.cmp(P::ugt, magnitude, i.constant(source.infinity()));
    Value nan = i.orOf(
        i.constant(target.infinity() | (uint64_t{1} << (target.mantissa - 1))),
        i.shr(fraction, i.constant(dropped)));
    rounded = i.select(isNaN, nan, rounded);
    Value withSign =
        i.orOf(rounded, i.shr(sign, i.constant(source.bits - target.bits)));
    Type narrow = integerTypeLike(sourceType, target.bits);
    Value truncated = arith::TruncIOp::create(rewriter, loc, narrow, withSign);
    rewriter.replaceOpWithNewOp<arith::BitcastOp>(op, op.getType(), truncated);
    return success();
  }
};

/// extf from bf16 or f16 (S) to f32 or f64 (D), exactly. With the same
/// exponent range (bf16 -> f32) it is a shift of the bits. Otherwise normal
/// values are rebiased, infinities and NaNs keep their payload, and
/// subnormals are normalised: with k the top set bit of the fraction,
/// value = 2^(k + 1 - biasS - mantissaS) * 1.f.
struct ExtendFromHalf : OpRewritePattern<arith::ExtFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::ExtFOp op,
                                PatternRewriter &rewriter) const override {
    Type sourceType = op.getIn().getType();
    if (!isHalfPrecision(sourceType) || isHalfPrecision(op.getType()))
      return failure();
    Format source = formatOf(sourceType), target = formatOf(op.getType());
    Location loc = op.getLoc();
    BitBuilder i{rewriter, loc, integerTypeLike(sourceType, target.bits)};
    using P = arith::CmpIPredicate;
    Value narrowBits = arith::BitcastOp::create(
        rewriter, loc, integerTypeLike(sourceType, source.bits), op.getIn());
    Value bits = arith::ExtUIOp::create(rewriter, loc, i.type, narrowBits);
    Value sign = i.andOf(bits, i.constant(uint64_t{1} << (source.bits - 1)));
    Value magnitude = i.sub(bits, sign);
    Value wideSign = i.shl(sign, i.constant(target.bits - source.bits));
    Value widened =
        i.shl(magnitude, i.constant(target.mantissa - source.mantissa));
    int64_t rebias = target.bias() - source.bias();
    Value result;
    if (rebias == 0) {
      result = widened;
    } else {
      Value exponent = i.shr(magnitude, i.constant(source.mantissa));
      Value fraction = i.andOf(magnitude, i.constant(source.mantissaMask()));
      Value normal =
          i.add(widened, i.constant(uint64_t(rebias) << target.mantissa));
      Value special =
          i.orOf(i.constant(target.infinity()),
                 i.andOf(widened, i.constant(target.mantissaMask())));
      // k = width - 1 - ctlz(f); the fraction shifted to put bit k at the
      // implicit position, then masked.
      Value leadingZeros =
          math::CountLeadingZerosOp::create(rewriter, loc, fraction);
      Value topBit = i.sub(i.constant(target.bits - 1), leadingZeros);
      Value subnormalExponent =
          i.add(topBit, i.constant(uint64_t(1 + rebias - source.mantissa)));
      Value normalised =
          i.andOf(i.shl(fraction, i.sub(i.constant(target.mantissa), topBit)),
                  i.constant(target.mantissaMask()));
      Value subnormal = i.orOf(
          i.shl(subnormalExponent, i.constant(target.mantissa)), normalised);
      Value maxExponent =
          i.constant((uint64_t{1} << source.exponentBits()) - 1);
      Value isZero = i.cmp(P::eq, magnitude, i.constant(0));
      Value isSubnormal = i.cmp(P::eq, exponent, i.constant(0));
      result = i.select(i.cmp(P::eq, exponent, maxExponent), special,
                        i.select(isZero, i.constant(0),
                                 i.select(isSubnormal, subnormal, normal)));
    }
    rewriter.replaceOpWithNewOp<arith::BitcastOp>(op, op.getType(),
                                                  i.orOf(result, wideSign));
    return success();
  }
};

/// bf16 <-> f16 through f32 (exact extension, then one rounding).
struct ConvertBetweenHalves : OpRewritePattern<arith::TruncFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::TruncFOp op,
                                PatternRewriter &rewriter) const override {
    Type sourceType = op.getIn().getType();
    if (!isHalfPrecision(sourceType) || !isHalfPrecision(op.getType()) ||
        op.getRoundingmodeAttr())
      return failure();
    Type f32 = rewriter.getF32Type();
    if (auto vector = dyn_cast<VectorType>(sourceType))
      f32 = vector.clone(f32);
    Value wide = arith::ExtFOp::create(rewriter, op.getLoc(), f32, op.getIn());
    rewriter.replaceOpWithNewOp<arith::TruncFOp>(op, op.getType(), wide);
    return success();
  }
};

struct ExpandFloatConversionsPass
    : attnc::impl::ExpandFloatConversionsBase<ExpandFloatConversionsPass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    // Arithmetic on half-precision values: in f32, between ext and trunc.
    TypeConverter converter;
    Type halves[] = {BFloat16Type::get(context), Float16Type::get(context)};
    arith::populateEmulateUnsupportedFloatsConversions(
        converter, halves, Float32Type::get(context));
    RewritePatternSet emulation(context);
    arith::populateEmulateUnsupportedFloatsPatterns(emulation, converter);
    ConversionTarget target(*context);
    arith::populateEmulateUnsupportedFloatsLegality(target, converter);
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(emulation))))
      return signalPassFailure();

    // One walk each (no fixpoint, no folding of the whole module): bf16 <->
    // f16 first, whose ext and trunc the second walk expands; the
    // expansions fold their constant parts as they are built.
    RewritePatternSet betweenHalves(context);
    betweenHalves.add<ConvertBetweenHalves>(context);
    walkAndApplyPatterns(getOperation(), std::move(betweenHalves));
    RewritePatternSet expansion(context);
    expansion.add<TruncateToHalf, ExtendFromHalf>(context);
    walkAndApplyPatterns(getOperation(), std::move(expansion));
  }
};

} // namespace
