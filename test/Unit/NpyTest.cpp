//===- NpyTest.cpp - Tests for the .npy reader/writer and 16-bit floats ---===//

#include "attnc/Runtime/Npy.h"
#include "attnc/Runtime/HalfFloat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

using namespace attnc;

namespace {

//===----------------------------------------------------------------------===//
// HalfFloat
//===----------------------------------------------------------------------===//

bool isHalfNaN(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
bool isBFloat16NaN(uint16_t h) {
  return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu);
}

// Independent decoding of binary16 from its definition.
double halfValueByDefinition(uint16_t h) {
  int exponent = (h >> 10) & 0x1f;
  int mantissa = h & 0x3ff;
  double sign = (h & 0x8000u) ? -1.0 : 1.0;
  if (exponent == 0)
    return sign * std::ldexp(mantissa, -24);
  if (exponent == 31)
    return mantissa ? std::nan("") : sign * HUGE_VAL;
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

TEST(HalfFloatTest, EveryHalfMatchesDefinitionAndRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    uint16_t h = static_cast<uint16_t>(bits);
    float f = halfToFloat(h);
    if (isHalfNaN(h)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << bits;
      EXPECT_TRUE(isHalfNaN(floatToHalf(f))) << std::hex << bits;
      continue;
    }
    double expected = halfValueByDefinition(h);
    EXPECT_EQ(static_cast<double>(f), expected) << std::hex << bits;
    EXPECT_EQ(std::signbit(f), (bits & 0x8000u) != 0) << std::hex << bits;
    EXPECT_EQ(floatToHalf(f), h) << std::hex << bits;
  }
}

TEST(HalfFloatTest, EveryBFloat16RoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    uint16_t h = static_cast<uint16_t>(bits);
    float f = bfloat16ToFloat(h);
    if (isBFloat16NaN(h)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << bits;
      EXPECT_TRUE(isBFloat16NaN(floatToBFloat16(f))) << std::hex << bits;
      continue;
    }
    EXPECT_EQ(floatToBFloat16(f), h) << std::hex << bits;
  }
}

// For every pair of adjacent positive finite halves (and the largest half
// with infinity), checks both sides of the midpoint and the tie itself.
TEST(HalfFloatTest, RoundsToNearestEvenAtEveryMidpoint) {
  for (uint16_t h = 0; h < 0x7c00u; ++h) {
    uint16_t next = static_cast<uint16_t>(h + 1);
    double low = halfToFloat(h);
    // Past the largest half, rounding treats 2^16 as the next value.
    double high = next == 0x7c00u ? 65536.0 : halfToFloat(next);
    float mid = static_cast<float>((low + high) / 2); // exact in float
    uint16_t even = (h & 1u) ? next : h;
    EXPECT_EQ(floatToHalf(mid), even) << std::hex << h;
    EXPECT_EQ(floatToHalf(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    EXPECT_EQ(floatToHalf(std::nextafter(mid, HUGE_VALF)), next)
        << std::hex << h;
    EXPECT_EQ(floatToHalf(-mid), even | 0x8000u) << std::hex << h;
  }
}

TEST(HalfFloatTest, BFloat16RoundsToNearestEvenAtEveryMidpoint) {
  for (uint16_t h = 0; h < 0x7f80u; ++h) {
    uint16_t next = static_cast<uint16_t>(h + 1);
    double low = bfloat16ToFloat(h);
    double high =
        next == 0x7f80u ? std::ldexp(1.0, 128) : bfloat16ToFloat(next);
    float mid = static_cast<float>((low + high) / 2);
    uint16_t even = (h & 1u) ? next : h;
    EXPECT_EQ(floatToBFloat16(mid), even) << std::hex << h;
    EXPECT_EQ(floatToBFloat16(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    EXPECT_EQ(floatToBFloat16(std::nextafter(mid, HUGE_VALF)), next)
        << std::hex << h;
    EXPECT_EQ(floatToBFloat16(-mid), even | 0x8000u) << std::hex << h;
  }
}

TEST(HalfFloatTest, SpecialValues) {
  EXPECT_EQ(floatToHalf(1.0f), 0x3c00u);
  EXPECT_EQ(floatToHalf(-2.5f), 0xc100u);
  EXPECT_EQ(floatToHalf(65504.0f), 0x7bffu);
  EXPECT_EQ(floatToHalf(65519.0f), 0x7bffu);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00u);
  EXPECT_EQ(floatToHalf(1e10f), 0x7c00u);
  EXPECT_EQ(floatToHalf(-HUGE_VALF), 0xfc00u);
  EXPECT_EQ(floatToHalf(-0.0f), 0x8000u);
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -24)), 0x0001u); // smallest subnormal
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -25)), 0x0000u); // tie to even: 0
  EXPECT_EQ(floatToHalf(std::ldexp(3.0f, -26)), 0x0001u); // above the tie
  EXPECT_EQ(floatToHalf(std::ldexp(3.0f, -25)), 0x0002u); // tie to even: 2
  EXPECT_EQ(floatToHalf(1e-30f), 0x0000u);
  EXPECT_EQ(floatToHalf(std::ldexp(1023.5f, -24)), 0x0400u);     // into normals
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00u); // tie: even
  EXPECT_EQ(floatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);
  // A NaN whose payload is only in the low bits must not become infinity.
  float lowPayloadNaN;
  uint32_t nanBits = 0x7f800001u;
  std::memcpy(&lowPayloadNaN, &nanBits, sizeof(nanBits));
  EXPECT_TRUE(isHalfNaN(floatToHalf(lowPayloadNaN)));
  EXPECT_TRUE(isBFloat16NaN(floatToBFloat16(lowPayloadNaN)));
  EXPECT_TRUE(isHalfNaN(floatToHalf(std::nanf(""))));

  EXPECT_EQ(floatToBFloat16(1.0f), 0x3f80u);
  EXPECT_EQ(floatToBFloat16(-HUGE_VALF), 0xff80u);
  EXPECT_EQ(floatToBFloat16(std::numeric_limits<float>::max()), 0x7f80u);
  EXPECT_EQ(floatToBFloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80u); // tie
  EXPECT_EQ(floatToBFloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82u);
  EXPECT_EQ(bfloat16ToFloat(0x4049u), 3.140625f);
}

//===----------------------------------------------------------------------===//
// Npy
//===----------------------------------------------------------------------===//

// Files written by NumPy 2.4 (np.save; numpy.lib.format.write_array for the
// version 2.0 and 3.0 ones), embedded byte for byte.
// f4_2x3
const char kF4_2x3[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    "                                                          \n"
    "\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40"
    "\x00\x00\x80\x40\x00\x00\xa0\x40";
// f2_3
const char kF2_3[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }"
    "                                                            \n"
    "\x00\x3c\x00\xc1\xff\x7b";
// b1_2x2
const char kB1_2x2[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }"
    "                                                          \n"
    "\x01\x00\x00\x01";
// i8_scalar
const char kI8Scalar[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '<i8', 'fortran_order': False, 'shape': (), }"
    "                                                            "
    "  \n"
    "\xf9\xff\xff\xff\xff\xff\xff\xff";
// u1_empty
const char kU1Empty[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '|u1', 'fortran_order': False, 'shape': (0,), }"
    "                                                            \n";
// i1_2x0x3
const char kI1_2x0x3[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '|i1', 'fortran_order': False, 'shape': (2, 0, 3), }"
    "                                                       \n";
// i4_v2
const char kI4Version2[] =
    "\x93\x4e\x55\x4d\x50\x59\x02\x00\x74\x00\x00\x00"
    "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }"
    "                                                          \n"
    "\x01\x00\x00\x00\xfe\xff\xff\xff";
// u2_v3
const char kU2Version3[] =
    "\x93\x4e\x55\x4d\x50\x59\x03\x00\x74\x00\x00\x00"
    "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }"
    "                                                          \n"
    "\x01\x00\xff\xff";
// f8_fortran
const char kF8Fortran[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }"
    "                                                           \n"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40"
    "\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x08\x40";
// c8
const char kC8[] =
    "\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00"
    "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }"
    "                                                            \n"
    "\x00\x00\x80\x3f\x00\x00\x00\x40";

template <size_t Size> std::string bytesOf(const char (&literal)[Size]) {
  return std::string(literal, Size - 1); // drop the literal's terminator
}

std::string tempPath(const std::string &name) {
  const ::testing::TestInfo *info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "attnc_npy_" + info->name() + "_" + name;
}

std::string writeBytes(const std::string &name, const std::string &bytes) {
  std::string path = tempPath(name);
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string readBytes(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file),
                     std::istreambuf_iterator<char>());
}

template <typename T> std::vector<T> valuesOf(const NpyArray &array) {
  std::vector<T> values(array.data.size() / sizeof(T));
  if (!values.empty())
    std::memcpy(values.data(), array.data.data(), array.data.size());
  return values;
}

// Reads `bytes` and expects failure with a message naming the file and
// containing `problem`.
void expectReadError(const std::string &bytes, const std::string &problem) {
  std::string path = writeBytes("bad.npy", bytes);
  NpyArray array;
  std::string error;
  EXPECT_FALSE(readNpy(path, array, error));
  EXPECT_EQ(error.rfind(path + ": ", 0), 0u) << error;
  EXPECT_NE(error.find(problem), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

// A version 1.0 file with the given header dict, padded as NumPy does.
std::string npyWithHeader(const std::string &dict, const std::string &data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0)
    header += ' ';
  header += '\n';
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  return bytes + header + data;
}

TEST(NpyTest, ReadsNumpyFiles) {
  NpyArray array;
  std::string error;

  ASSERT_TRUE(readNpy(writeBytes("f4.npy", bytesOf(kF4_2x3)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::F32);
  EXPECT_EQ(array.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(valuesOf<float>(array), (std::vector<float>{0, 1, 2, 3, 4, 5}));

  ASSERT_TRUE(readNpy(writeBytes("f2.npy", bytesOf(kF2_3)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::F16);
  EXPECT_EQ(array.shape, (std::vector<int64_t>{3}));
  std::vector<uint16_t> halves = valuesOf<uint16_t>(array);
  ASSERT_EQ(halves.size(), 3u);
  EXPECT_EQ(halfToFloat(halves[0]), 1.0f);
  EXPECT_EQ(halfToFloat(halves[1]), -2.5f);
  EXPECT_EQ(halfToFloat(halves[2]), 65504.0f);

  ASSERT_TRUE(readNpy(writeBytes("b1.npy", bytesOf(kB1_2x2)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::Bool);
  EXPECT_EQ(array.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(array.data, (std::vector<uint8_t>{1, 0, 0, 1}));

  ASSERT_TRUE(readNpy(writeBytes("i8.npy", bytesOf(kI8Scalar)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::I64);
  EXPECT_TRUE(array.shape.empty());
  EXPECT_EQ(array.numElements(), 1);
  EXPECT_EQ(valuesOf<int64_t>(array), (std::vector<int64_t>{-7}));

  ASSERT_TRUE(readNpy(writeBytes("u1.npy", bytesOf(kU1Empty)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::U8);
  EXPECT_EQ(array.shape, (std::vector<int64_t>{0}));
  EXPECT_TRUE(array.data.empty());

  ASSERT_TRUE(readNpy(writeBytes("i1.npy", bytesOf(kI1_2x0x3)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::I8);
  EXPECT_EQ(array.shape, (std::vector<int64_t>{2, 0, 3}));
  EXPECT_EQ(array.numElements(), 0);

  ASSERT_TRUE(readNpy(writeBytes("i4.npy", bytesOf(kI4Version2)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::I32);
  EXPECT_EQ(valuesOf<int32_t>(array), (std::vector<int32_t>{1, -2}));

  ASSERT_TRUE(readNpy(writeBytes("u2.npy", bytesOf(kU2Version3)), array, error))
      << error;
  EXPECT_EQ(array.dtype, NpyDType::U16);
  EXPECT_EQ(valuesOf<uint16_t>(array), (std::vector<uint16_t>{1, 65535}));
}

TEST(NpyTest, WritesTheSameBytesAsNumpy) {
  const std::string fixtures[] = {bytesOf(kF4_2x3),  bytesOf(kF2_3),
                                  bytesOf(kB1_2x2),  bytesOf(kI8Scalar),
                                  bytesOf(kU1Empty), bytesOf(kI1_2x0x3)};
  for (const std::string &fixture : fixtures) {
    NpyArray array;
    std::string error;
    ASSERT_TRUE(readNpy(writeBytes("in.npy", fixture), array, error)) << error;
    std::string outPath = tempPath("out.npy");
    ASSERT_TRUE(writeNpy(outPath, array, error)) << error;
    EXPECT_EQ(readBytes(outPath), fixture);
  }
}

TEST(NpyTest, RoundTripsEveryDTypeAndShape) {
  const NpyDType dtypes[] = {NpyDType::F64, NpyDType::F32, NpyDType::F16,
                             NpyDType::U16, NpyDType::I64, NpyDType::I32,
                             NpyDType::I8,  NpyDType::U8,  NpyDType::Bool};
  const std::vector<int64_t> shapes[] = {
      {}, {0}, {3}, {2, 0, 3}, {2, 3, 4}, {1, 1, 1, 1, 5}, {12345678901LL, 0}};
  for (NpyDType dtype : dtypes) {
    for (const std::vector<int64_t> &shape : shapes) {
      NpyArray array;
      array.dtype = dtype;
      array.shape = shape;
      array.data.resize(static_cast<size_t>(array.numElements()) *
                        array.elementSize());
      for (size_t i = 0; i < array.data.size(); ++i)
        array.data[i] =
            static_cast<uint8_t>(dtype == NpyDType::Bool ? i % 2 : i * 37 + 11);

      std::string path = tempPath("roundtrip.npy");
      std::string error;
      ASSERT_TRUE(writeNpy(path, array, error)) << error;

      std::string bytes = readBytes(path);
      ASSERT_GE(bytes.size(), 10u);
      EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
      size_t headerLen = static_cast<uint8_t>(bytes[8]) |
                         static_cast<size_t>(static_cast<uint8_t>(bytes[9]))
                             << 8;
      EXPECT_EQ((10 + headerLen) % 64, 0u);
      EXPECT_EQ(bytes[10 + headerLen - 1], '\n');
      EXPECT_EQ(bytes.size(), 10 + headerLen + array.data.size());

      NpyArray back;
      ASSERT_TRUE(readNpy(path, back, error)) << error;
      EXPECT_EQ(back.dtype, dtype) << toString(dtype);
      EXPECT_EQ(back.shape, shape) << toString(dtype);
      EXPECT_EQ(back.data, array.data) << toString(dtype);
    }
  }
}

TEST(NpyTest, DTypeNames) {
  EXPECT_EQ(toString(NpyDType::F64), "float64");
  EXPECT_EQ(toString(NpyDType::F32), "float32");
  EXPECT_EQ(toString(NpyDType::F16), "float16");
  EXPECT_EQ(toString(NpyDType::U16), "uint16");
  EXPECT_EQ(toString(NpyDType::I64), "int64");
  EXPECT_EQ(toString(NpyDType::I32), "int32");
  EXPECT_EQ(toString(NpyDType::I8), "int8");
  EXPECT_EQ(toString(NpyDType::U8), "uint8");
  EXPECT_EQ(toString(NpyDType::Bool), "bool");
}

TEST(NpyTest, AcceptsAlternativeByteOrderMarks) {
  const char *dicts[] = {
      "{'descr': '=f4', 'fortran_order': False, 'shape': (1,), }",
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1L,)}",
      "{'shape': (1,), 'descr': '<f4', 'fortran_order': False}"};
  for (const char *dict : dicts) {
    NpyArray array;
    std::string error;
    std::string path =
        writeBytes("order.npy", npyWithHeader(dict, std::string(4, '\0')));
    EXPECT_TRUE(readNpy(path, array, error)) << dict << ": " << error;
    EXPECT_EQ(array.dtype, NpyDType::F32);
  }
  const char *byteDescrs[] = {"<u1", ">u1", "=u1", "|u1"};
  for (const char *descr : byteDescrs) {
    NpyArray array;
    std::string error;
    std::string dict = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': (2,), }";
    std::string path =
        writeBytes("byte.npy", npyWithHeader(dict, std::string(2, '\0')));
    EXPECT_TRUE(readNpy(path, array, error)) << descr << ": " << error;
    EXPECT_EQ(array.dtype, NpyDType::U8);
  }
}

TEST(NpyTest, ReportsMissingFile) {
  NpyArray array;
  std::string error;
  std::string path = tempPath("does_not_exist.npy");
  EXPECT_FALSE(readNpy(path, array, error));
  EXPECT_EQ(error, path + ": file not found");

  EXPECT_FALSE(readNpy(::testing::TempDir(), array, error));
  EXPECT_NE(error.find("not a regular file"), std::string::npos) << error;
}

TEST(NpyTest, RejectsBadFiles) {
  std::string valid = bytesOf(kF4_2x3);

  std::string badMagic = valid;
  badMagic[1] = 'X';
  expectReadError(badMagic, "bad magic");
  expectReadError("", "truncated header");
  expectReadError("\x93NUM", "truncated header");
  expectReadError("PK\x03\x04", "bad magic");

  std::string badVersion = valid;
  badVersion[6] = 4;
  expectReadError(badVersion, "unsupported format version 4.0");

  expectReadError(valid.substr(0, valid.size() - 1), "truncated data");
  std::string scalar = bytesOf(kI8Scalar);
  expectReadError(scalar.substr(0, scalar.size() - 8), "truncated data");
  expectReadError(valid.substr(0, 100), "truncated header");
  expectReadError(valid + "x", "unexpected 1 bytes after the array data");

  expectReadError(bytesOf(kF8Fortran), "fortran_order=True is not supported");
  expectReadError(bytesOf(kC8), "unsupported dtype '<c8' (supported: '<f8', "
                                "'<f4', '<f2', '<u2', '<i8', '<i4', '|i1', "
                                "'|u1', '|b1')");
  expectReadError(
      npyWithHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
                    std::string(4, '\0')),
      "unsupported dtype '>f4'");
  expectReadError(
      npyWithHeader("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }",
                    std::string(4, '\0')),
      "unsupported dtype '|f4'");
  expectReadError(npyWithHeader("{'descr': [('a', '<f4')], 'fortran_order': "
                                "False, 'shape': (1,), }",
                                std::string(4, '\0')),
                  "unsupported structured dtype");
}

TEST(NpyTest, RejectsMalformedHeaders) {
  const char *dicts[] = {
      "",
      "{",
      "{'descr': '<f4', 'fortran_order': False}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x",
      "{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}",
      "{'descr: '<f4', 'fortran_order': False, 'shape': (1,)}",
      ("{'descr': '<f4', 'fortran_order': False, 'shape': "
       "(99999999999999999999,)}"),
  };
  for (const char *dict : dicts)
    expectReadError(npyWithHeader(dict, std::string(4, '\0')),
                    "malformed header");
}

TEST(NpyTest, HugeSizesFailWithoutAllocating) {
  // A version 2.0 header length near 4 GiB in a tiny file.
  std::string hugeHeader("\x93NUMPY\x02\x00\xf0\xff\xff\xff{}", 14);
  expectReadError(hugeHeader, "truncated header (header length 4294967280");

  // A shape whose byte size overflows 64 bits, backed by four bytes.
  expectReadError(
      npyWithHeader("{'descr': '<f8', 'fortran_order': False, 'shape': "
                    "(4611686018427387904, 4611686018427387904), }",
                    std::string(4, '\0')),
      "truncated data");
  expectReadError(
      npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': "
                    "(9223372036854775807,), }",
                    std::string(4, '\0')),
      "truncated data");
}

// Every truncation and many single-byte corruptions of a valid file must be
// handled without crashing (run under the sanitizers); whatever succeeds must
// be self-consistent.
TEST(NpyTest, SurvivesCorruption) {
  std::string valid = bytesOf(kF4_2x3);
  NpyArray array;
  std::string error;
  for (size_t len = 0; len < valid.size(); ++len)
    EXPECT_FALSE(
        readNpy(writeBytes("cut.npy", valid.substr(0, len)), array, error))
        << len;

  const char replacements[] = {'\0', '\xff', '(', ')', '\'',
                               ',',  '9',    ' ', '{', '}'};
  for (size_t pos = 0; pos < valid.size(); ++pos) {
    for (char replacement : replacements) {
      std::string corrupted = valid;
      corrupted[pos] = replacement;
      if (readNpy(writeBytes("corrupt.npy", corrupted), array, error)) {
        EXPECT_EQ(array.data.size(), static_cast<size_t>(array.numElements()) *
                                         array.elementSize());
      }
    }
  }
}

TEST(NpyTest, WriteRejectsInconsistentArrays) {
  std::string path = tempPath("bad_write.npy");
  std::string error;
  NpyArray array;
  array.dtype = NpyDType::F32;
  array.shape = {2, 3};
  array.data.resize(23);
  EXPECT_FALSE(writeNpy(path, array, error));
  EXPECT_EQ(error, path + ": data size 23 does not match shape (2, 3) of "
                          "dtype float32");

  array.shape = {};
  array.data.clear();
  EXPECT_FALSE(writeNpy(path, array, error));

  array.shape = {-1, 0};
  EXPECT_FALSE(writeNpy(path, array, error));
  EXPECT_NE(error.find("negative dimension"), std::string::npos) << error;

  array.shape.assign(30000, 1); // "1, " each: header over 65535 bytes
  array.data.resize(4);
  EXPECT_FALSE(writeNpy(path, array, error));
  EXPECT_NE(error.find("too many dimensions"), std::string::npos) << error;

  array.shape = {0};
  array.data.clear();
  EXPECT_FALSE(writeNpy(tempPath("no_such_dir/x.npy"), array, error));
  EXPECT_NE(error.find("cannot open for writing"), std::string::npos) << error;
}

} // namespace
