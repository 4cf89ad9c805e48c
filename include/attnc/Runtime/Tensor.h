//===- Tensor.h - Kernel signatures and host tensors ------------*- C++ -*-===//
//
// What a caller needs to launch a compiled kernel, with no MLIR or LLVM in
// it: the kernel's parameter list (names, element types, symbolic or fixed
// dims), strided views of caller memory, and the binding of symbolic dims to
// sizes, which is where shape mismatches are reported.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_TENSOR_H
#define ATTNC_RUNTIME_TENSOR_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace attnc {

enum class ElementType { F32, F16, BF16, I32, I8, Bool };

size_t elementSize(ElementType type);
/// The spec spelling: "f32", "bf16", "bool", ...
const char *toString(ElementType type);
bool isFloat(ElementType type);

struct DimSpec {
  std::string symbol; // empty when fixed
  int64_t size = 0;   // meaningful when fixed
  bool isSymbolic() const { return !symbol.empty(); }
};

struct TensorSpec {
  std::string name;
  ElementType type = ElementType::F32;
  std::vector<DimSpec> dims;
  bool optional = false;
};

/// "f32[B, H, N, 64]"
std::string toString(const TensorSpec &spec);

struct KernelSignature {
  std::string name;
  std::vector<TensorSpec> params, results;
};

/// A strided view of caller memory; strides count elements.
struct TensorView {
  void *data = nullptr;
  ElementType type = ElementType::F32;
  std::vector<int64_t> shape, strides;

  int64_t numElements() const;
};

/// Gradients scatter-added at computed positions (partial results) travel
/// their positions as f32, exact below 2^24: false, naming the result, when
/// a dim of `shape` is larger. `fix` says what to do instead.
bool checkScatterPositions(const std::string &name,
                           const std::vector<int64_t> &shape,
                           const std::string &fix, std::string &error);

/// Whether the view's elements are packed in row-major order.
bool isContiguous(const TensorView &view);
/// Sets every element of a view of host memory to zero.
void zeroElements(const TensorView &view);

/// "[2, 4, 128, 64]"
std::string shapeString(const std::vector<int64_t> &shape);

/// The storage size of a contiguous tensor; false when it overflows 64 bits.
bool storageBytes(ElementType type, const std::vector<int64_t> &shape,
                  uint64_t &bytes);

/// False (with a message naming the tensor) when a tensor of this shape
/// cannot fit in the machine's physical memory; checked before allocating.
bool checkAllocatable(const std::string &name, ElementType type,
                      const std::vector<int64_t> &shape, std::string &error);

/// A contiguous tensor that owns its storage.
class HostTensor {
public:
  HostTensor() = default;
  HostTensor(ElementType type, std::vector<int64_t> shape);

  TensorView view();
  ElementType type() const { return elementType; }
  const std::vector<int64_t> &shape() const { return dims; }
  int64_t numElements() const;
  void *data() { return bytes.data(); }
  const void *data() const { return bytes.data(); }

  /// Element `index` (row-major) read or written as double.
  double get(int64_t index) const;
  void set(int64_t index, double value);

private:
  ElementType elementType = ElementType::F32;
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;
};

/// Symbolic dim name -> size.
using DimBindings = std::map<std::string, int64_t>;

/// Binds the symbols of the given (present) inputs and checks fixed sizes,
/// ranks and element types; `inputs[i]` is null for an omitted optional
/// parameter. On a mismatch returns false with a message that names the
/// tensor, the expected shape and the actual one.
bool bindInputShapes(const KernelSignature &signature,
                     const std::vector<const TensorView *> &inputs,
                     DimBindings &bindings, std::string &error);

/// The shape of `spec` under `bindings`; false (with a message) when a
/// symbol is unbound.
bool resolveShape(const TensorSpec &spec, const DimBindings &bindings,
                  std::vector<int64_t> &shape, std::string &error);

} // namespace attnc

#endif // ATTNC_RUNTIME_TENSOR_H
