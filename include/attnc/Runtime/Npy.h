//===- Npy.h - Reading and writing NumPy .npy files -------------*- C++ -*-===//
//
// A small, dependency-free reader/writer for the .npy format, used to exchange
// kernel inputs and outputs with NumPy. Only little-endian, C-ordered arrays
// of the dtypes in NpyDType are supported.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_NPY_H
#define ATTNC_RUNTIME_NPY_H

#include "attnc/Runtime/Tensor.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace attnc {

enum class NpyDType { F64, F32, F16, U16, I64, I32, I8, U8, Bool };

struct NpyArray {
  NpyDType dtype = NpyDType::F32;
  std::vector<int64_t> shape; // empty for a 0-d array (one element)
  std::vector<uint8_t> data;  // C order, little-endian

  int64_t numElements() const;
  size_t elementSize() const;
};

/// Reads a .npy file (format versions 1.0, 2.0 and 3.0). Supported descr
/// values are '<f8', '<f4', '<f2', '<u2', '<i8', '<i4', '|i1', '|u1' and
/// '|b1'; '=' (native, which is little-endian here) is accepted in place of
/// '<', and any byte-order mark is accepted for one-byte types. Fortran-order
/// arrays are rejected. On failure returns false and sets `error` to a
/// one-line message naming the file and the problem.
bool readNpy(const std::string &path, NpyArray &out, std::string &error);

/// Writes `array` as a version 1.0 .npy file, byte for byte as NumPy's
/// np.save would (header padded so the data starts at a multiple of 64
/// bytes, ending in '\n'). The data size must match the shape and dtype.
bool writeNpy(const std::string &path, const NpyArray &array,
              std::string &error);

/// Converts a .npy array to a host tensor of `type` (f64/f32/f16 for float
/// types, uint16 bit patterns for bf16, integer arrays for integer and bool
/// types). Returns false with a message naming `name` on a mismatch.
bool npyToTensor(const NpyArray &array, ElementType type,
                 const std::string &name, HostTensor &tensor,
                 std::string &error);

/// Converts a host tensor for writing; bf16 is widened to float32 since NumPy
/// has no bf16 type.
NpyArray tensorToNpy(const HostTensor &tensor);
/// NumPy's name for the dtype: "float64", "float32", ..., "bool".
std::string toString(NpyDType dtype);

} // namespace attnc

#endif // ATTNC_RUNTIME_NPY_H
