//===- TensorTestUtils.h - Host tensors and tolerances in tests -*- C++ -*-===//
//
// Seeded random host tensors, layout helpers and element-wise comparison with
// per-dtype tolerances. No MLIR: the C API test uses it too.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TEST_UNIT_TENSORTESTUTILS_H
#define ATTNC_TEST_UNIT_TENSORTESTUTILS_H

#include "attnc/Runtime/Tensor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace attnc::testing {

struct Tolerance {
  double atol, rtol;
};

inline Tolerance toleranceFor(ElementType type) {
  switch (type) {
  case ElementType::F16:
    return {2e-3, 2e-3};
  case ElementType::BF16:
    return {1e-2, 1e-2};
  default:
    return {2e-5, 2e-4};
  }
}

inline HostTensor randomTensor(ElementType type, std::vector<int64_t> shape,
                        std::mt19937_64 &rng, double lo, double hi) {
  HostTensor tensor(type, std::move(shape));
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t index = 0; index < tensor.numElements(); ++index)
    tensor.set(index, dist(rng));
  return tensor;
}

inline std::vector<double> values(const HostTensor &tensor) {
  std::vector<double> result(tensor.numElements());
  for (int64_t index = 0; index < tensor.numElements(); ++index)
    result[index] = tensor.get(index);
  return result;
}

/// [B, N, H, D] -> [B, H, N, D].
inline std::vector<double> bnhdToBhnd(const HostTensor &tensor) {
  const std::vector<int64_t> &s = tensor.shape();
  std::vector<double> result(tensor.numElements());
  for (int64_t b = 0; b < s[0]; ++b)
    for (int64_t n = 0; n < s[1]; ++n)
      for (int64_t h = 0; h < s[2]; ++h)
        for (int64_t d = 0; d < s[3]; ++d)
          result[((b * s[2] + h) * s[1] + n) * s[3] + d] =
              tensor.get(((b * s[1] + n) * s[2] + h) * s[3] + d);
  return result;
}

/// Compares element-wise: |a - e| <= atol * scale + rtol * |e|, where scale
/// is max(1, the largest finite |e| of the tensor). Rounding errors of a sum
/// follow the size of its terms, not of the result, so an output element
/// that cancels to near zero among large ones (unnormalised linear
/// attention) is held to the tensor's scale. Reports the first few
/// mismatches with the seed.
inline void expectClose(const std::vector<double> &actual,
                 const std::vector<double> &expected, Tolerance tolerance,
                 const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double scale = 1;
  for (double e : expected)
    if (std::isfinite(e))
      scale = std::max(scale, std::fabs(e));
  int reported = 0;
  for (size_t index = 0; index < actual.size(); ++index) {
    double a = actual[index], e = expected[index];
    bool bothNegInf = std::isinf(a) && std::isinf(e) && a < 0 && e < 0;
    bool close = bothNegInf || std::fabs(a - e) <= tolerance.atol * scale +
                                                       tolerance.rtol *
                                                           std::fabs(e);
    if (!close && reported++ < 5)
      ADD_FAILURE() << what << ": element " << index << " is " << a
                    << ", expected " << e << " (tensor scale " << scale << ")";
  }
}

inline std::vector<int64_t> randomOffsets(int64_t sequences, int64_t total,
                                   std::mt19937_64 &rng) {
  std::uniform_int_distribution<int64_t> cut(0, total);
  std::vector<int64_t> offsets{0};
  std::vector<int64_t> cuts;
  for (int64_t index = 1; index < sequences; ++index)
    cuts.push_back(cut(rng));
  std::sort(cuts.begin(), cuts.end());
  offsets.insert(offsets.end(), cuts.begin(), cuts.end());
  offsets.push_back(total);
  return offsets;
}

inline HostTensor offsetsTensor(const std::vector<int64_t> &offsets) {
  HostTensor tensor(ElementType::I32, {static_cast<int64_t>(offsets.size())});
  for (size_t index = 0; index < offsets.size(); ++index)
    tensor.set(index, offsets[index]);
  return tensor;
}

} // namespace attnc::testing

#endif // ATTNC_TEST_UNIT_TENSORTESTUTILS_H
