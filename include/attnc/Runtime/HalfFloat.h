//===- HalfFloat.h - IEEE binary16 and bfloat16 conversions -----*- C++ -*-===//
//
// Bit-exact scalar conversions between float and the two 16-bit formats used
// for kernel inputs and outputs. Narrowing rounds to nearest, ties to even;
// NaN stays NaN (quieted), infinities and subnormals are handled exactly.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_HALFFLOAT_H
#define ATTNC_RUNTIME_HALFFLOAT_H

#include <cstdint>
#include <cstring>

namespace attnc {

namespace detail {
inline uint32_t floatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}
inline float bitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
} // namespace detail

inline uint16_t floatToHalf(float value) {
  uint32_t bits = detail::floatBits(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t mag = bits & 0x7fffffffu;

  if (mag >= 0x7f800000u) {
    if (mag == 0x7f800000u)
      return sign | 0x7c00u;
    // Keep the top payload bits and force the quiet bit so a NaN whose payload
    // lives only in the low bits cannot turn into infinity.
    return static_cast<uint16_t>(sign | 0x7e00u | ((mag >> 13) & 0x3ffu));
  }
  // 65520 is the midpoint between the largest half (65504) and 2^16; the tie
  // goes to the even neighbour, which is infinity.
  if (mag >= 0x477ff000u)
    return sign | 0x7c00u;

  if (mag < 0x38800000u) {
    // Result is a half subnormal (or zero): count in units of 2^-24.
    // Anything at or below 2^-25 (half the smallest subnormal) rounds to zero.
    if (mag <= 0x33000000u)
      return sign;
    uint32_t exponent = mag >> 23;                     // 102..112 here
    uint32_t mantissa = (mag & 0x7fffffu) | 0x800000u; // with implicit bit
    uint32_t shift = 126 - exponent;                   // 14..24
    uint32_t result = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (result & 1u)))
      ++result; // may carry into the smallest normal, which encodes correctly
    return static_cast<uint16_t>(sign | result);
  }

  // Normal: rebias the exponent (127 -> 15) and drop 13 mantissa bits. A
  // rounding carry into the exponent field yields the right next binade.
  uint32_t result = (mag - 0x38000000u) >> 13;
  uint32_t rest = mag & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (result & 1u)))
    ++result;
  return static_cast<uint16_t>(sign | result);
}

inline float halfToFloat(uint16_t half) {
  uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  uint32_t exponent = (half >> 10) & 0x1fu;
  uint32_t mantissa = half & 0x3ffu;

  if (exponent == 0x1f)
    return detail::bitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0)
      return detail::bitsToFloat(sign);
    // Subnormal half: normalise so it becomes a normal float.
    uint32_t floatExponent = 113;
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      --floatExponent;
    }
    return detail::bitsToFloat(sign | (floatExponent << 23) |
                               ((mantissa & 0x3ffu) << 13));
  }
  return detail::bitsToFloat(sign | ((exponent + 112) << 23) |
                             (mantissa << 13));
}

inline uint16_t floatToBFloat16(float value) {
  uint32_t bits = detail::floatBits(value);
  // Truncating a NaN could leave an all-zero mantissa (infinity); set the
  // quiet bit instead.
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even;
  // the carry into the exponent also rounds overflow to infinity correctly.
  uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

inline float bfloat16ToFloat(uint16_t value) {
  return detail::bitsToFloat(static_cast<uint32_t>(value) << 16);
}

/// The float nearest `value` in the direction of zero, with its lowest bit set
/// when that is inexact ("round to odd"). Rounding this float to a format
/// with at least 2 fewer mantissa bits gives the same result as rounding
/// `value` directly: no double rounding.
inline float doubleToFloatRoundedToOdd(double value) {
  if (value != value)
    return static_cast<float>(value);
  float nearest = static_cast<float>(value);
  if (static_cast<double>(nearest) == value)
    return nearest;
  uint32_t bits = detail::floatBits(nearest);
  // Past `value` (rounded away from zero, or to infinity): one step back.
  if ((value < 0) == (static_cast<double>(nearest) < value))
    bits -= 1;
  return detail::bitsToFloat(bits | 1u);
}

inline uint16_t doubleToHalf(double value) {
  return floatToHalf(doubleToFloatRoundedToOdd(value));
}

inline uint16_t doubleToBFloat16(double value) {
  return floatToBFloat16(doubleToFloatRoundedToOdd(value));
}

} // namespace attnc

#endif // ATTNC_RUNTIME_HALFFLOAT_H
