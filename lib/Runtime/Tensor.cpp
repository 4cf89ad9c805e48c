//===- Tensor.cpp - Kernel signatures and host tensors --------------------===//

#include "attnc/Runtime/Tensor.h"
#include "attnc/Runtime/HalfFloat.h"

#include <cstring>
#include <unistd.h>

using namespace attnc;

size_t attnc::elementSize(ElementType type) {
  switch (type) {
  case ElementType::F32:
  case ElementType::I32:
    return 4;
  case ElementType::F16:
  case ElementType::BF16:
    return 2;
  case ElementType::I8:
  case ElementType::Bool:
    return 1;
  }
  return 0;
}

const char *attnc::toString(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return "f32";
  case ElementType::F16:
    return "f16";
  case ElementType::BF16:
    return "bf16";
  case ElementType::I32:
    return "i32";
  case ElementType::I8:
    return "i8";
  case ElementType::Bool:
    return "bool";
  }
  return "?";
}

bool attnc::isFloat(ElementType type) {
  return type == ElementType::F32 || type == ElementType::F16 ||
         type == ElementType::BF16;
}

std::string attnc::toString(const TensorSpec &spec) {
  std::string text = std::string(toString(spec.type)) + "[";
  for (size_t i = 0; i < spec.dims.size(); ++i) {
    if (i)
      text += ", ";
    text += spec.dims[i].isSymbolic() ? spec.dims[i].symbol
                                      : std::to_string(spec.dims[i].size);
  }
  return text + "]";
}

std::string attnc::shapeString(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

bool attnc::storageBytes(ElementType type, const std::vector<int64_t> &shape,
                         uint64_t &bytes) {
  bytes = elementSize(type);
  for (int64_t size : shape) {
    if (size < 0 || (size != 0 && bytes > UINT64_MAX / static_cast<uint64_t>(size)))
      return false;
    bytes *= static_cast<uint64_t>(size);
  }
  return true;
}

bool attnc::checkAllocatable(const std::string &name, ElementType type,
                             const std::vector<int64_t> &shape,
                             std::string &error) {
  uint64_t bytes;
  uint64_t memory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                    static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  if (storageBytes(type, shape, bytes) && bytes <= memory)
    return true;
  error = "'" + name + "' " + toString(type) + shapeString(shape) +
          " does not fit in this machine's " + std::to_string(memory >> 20) +
          " MiB of memory";
  return false;
}

int64_t TensorView::numElements() const {
  int64_t count = 1;
  for (int64_t size : shape)
    count *= size;
  return count;
}

bool attnc::checkScatterPositions(const std::string &name,
                                  const std::vector<int64_t> &shape,
                                  const std::string &fix, std::string &error) {
  constexpr int64_t kExactPositions = int64_t(1) << 24;
  for (int64_t size : shape)
    if (size > kExactPositions) {
      error = "'" + name + "' has a dim of " + std::to_string(size) +
              ": the kernel scatter-adds into dims of at most 2^24 (" + fix +
              ")";
      return false;
    }
  return true;
}

bool attnc::isContiguous(const TensorView &view) {
  int64_t expected = 1;
  for (size_t d = view.shape.size(); d-- > 0;) {
    if (view.shape[d] != 1 && view.strides[d] != expected)
      return false;
    expected *= view.shape[d];
  }
  return true;
}

void attnc::zeroElements(const TensorView &view) {
  size_t bytes = elementSize(view.type);
  int64_t elements = view.numElements();
  for (int64_t element = 0; element < elements; ++element) {
    int64_t offset = 0, rest = element;
    for (size_t d = view.shape.size(); d-- > 0;) {
      offset += rest % view.shape[d] * view.strides[d];
      rest /= view.shape[d];
    }
    std::memset(static_cast<char *>(view.data) + offset * bytes, 0, bytes);
  }
}

HostTensor::HostTensor(ElementType type, std::vector<int64_t> shape)
    : elementType(type), dims(std::move(shape)) {
  bytes.assign(static_cast<size_t>(numElements()) * elementSize(type), 0);
}

int64_t HostTensor::numElements() const {
  int64_t count = 1;
  for (int64_t size : dims)
    count *= size;
  return count;
}

TensorView HostTensor::view() {
  TensorView view;
  view.data = bytes.data();
  view.type = elementType;
  view.shape = dims;
  view.strides.assign(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i)
    view.strides[i] = view.strides[i + 1] * dims[i + 1];
  return view;
}

double HostTensor::get(int64_t index) const {
  const uint8_t *at = bytes.data() + index * elementSize(elementType);
  switch (elementType) {
  case ElementType::F32: {
    float value;
    std::memcpy(&value, at, 4);
    return value;
  }
  case ElementType::F16:
  case ElementType::BF16: {
    uint16_t bits;
    std::memcpy(&bits, at, 2);
    return elementType == ElementType::F16 ? halfToFloat(bits)
                                           : bfloat16ToFloat(bits);
  }
  case ElementType::I32: {
    int32_t value;
    std::memcpy(&value, at, 4);
    return value;
  }
  case ElementType::I8:
    return static_cast<int8_t>(*at);
  case ElementType::Bool:
    return *at != 0;
  }
  return 0;
}

void HostTensor::set(int64_t index, double value) {
  uint8_t *at = bytes.data() + index * elementSize(elementType);
  switch (elementType) {
  case ElementType::F32: {
    float narrow = static_cast<float>(value);
    std::memcpy(at, &narrow, 4);
    return;
  }
  case ElementType::F16:
  case ElementType::BF16: {
    float narrow = static_cast<float>(value);
    uint16_t bits = elementType == ElementType::F16 ? floatToHalf(narrow)
                                                    : floatToBFloat16(narrow);
    std::memcpy(at, &bits, 2);
    return;
  }
  case ElementType::I32: {
    int32_t narrow = static_cast<int32_t>(value);
    std::memcpy(at, &narrow, 4);
    return;
  }
  case ElementType::I8:
    *at = static_cast<uint8_t>(static_cast<int8_t>(value));
    return;
  case ElementType::Bool:
    *at = value != 0;
    return;
  }
}

bool attnc::bindInputShapes(const KernelSignature &signature,
                            const std::vector<const TensorView *> &inputs,
                            DimBindings &bindings, std::string &error) {
  if (inputs.size() != signature.params.size()) {
    error = "kernel '" + signature.name + "' takes " +
            std::to_string(signature.params.size()) + " inputs, got " +
            std::to_string(inputs.size());
    return false;
  }
  for (size_t index = 0; index < inputs.size(); ++index) {
    const TensorSpec &spec = signature.params[index];
    const TensorView *input = inputs[index];
    if (!input) {
      if (spec.optional)
        continue;
      error = "input '" + spec.name + "' (" + toString(spec) +
              ") is required but was not given";
      return false;
    }
    if (input->type != spec.type) {
      error = "input '" + spec.name + "' must have element type " +
              toString(spec.type) + ", got " + toString(input->type);
      return false;
    }
    auto mismatch = [&](const std::string &why) {
      error = "input '" + spec.name + "' must have shape " + toString(spec) +
              ", got " + shapeString(input->shape) + why;
      return false;
    };
    if (input->shape.size() != spec.dims.size())
      return mismatch(" (rank " + std::to_string(input->shape.size()) +
                      " instead of " + std::to_string(spec.dims.size()) + ")");
    for (size_t dim = 0; dim < spec.dims.size(); ++dim) {
      const DimSpec &expected = spec.dims[dim];
      int64_t actual = input->shape[dim];
      if (actual < 0)
        return mismatch(" (negative size)");
      if (!expected.isSymbolic()) {
        if (actual != expected.size)
          return mismatch(" (dim " + std::to_string(dim) + " must be " +
                          std::to_string(expected.size) + ")");
        continue;
      }
      auto [it, inserted] = bindings.emplace(expected.symbol, actual);
      if (!inserted && it->second != actual)
        return mismatch(" (" + expected.symbol + " = " +
                        std::to_string(it->second) +
                        " from an earlier input, " + std::to_string(actual) +
                        " here)");
    }
  }
  return true;
}

bool attnc::resolveShape(const TensorSpec &spec, const DimBindings &bindings,
                         std::vector<int64_t> &shape, std::string &error) {
  shape.clear();
  for (const DimSpec &dim : spec.dims) {
    if (!dim.isSymbolic()) {
      shape.push_back(dim.size);
      continue;
    }
    auto it = bindings.find(dim.symbol);
    if (it == bindings.end()) {
      error = "the size of '" + dim.symbol + "' in '" + spec.name + "' (" +
              toString(spec) + ") is unknown; give it explicitly";
      return false;
    }
    shape.push_back(it->second);
  }
  return true;
}
