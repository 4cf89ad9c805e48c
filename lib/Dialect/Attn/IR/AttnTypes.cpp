//===- AttnTypes.cpp - Attention dialect types ----------------------------===//

#include "attnc/Dialect/Attn/IR/AttnTypes.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace attnc::attn;

#define GET_TYPEDEF_CLASSES
#include "attnc/Dialect/Attn/IR/AttnOpsTypes.cpp.inc"

void AttnDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "attnc/Dialect/Attn/IR/AttnOpsTypes.cpp.inc"
      >();
}

static bool isSupportedElementType(Type type) {
  return type.isF32() || type.isF16() || type.isBF16() ||
         type.isInteger(32) || type.isInteger(8) || type.isInteger(1);
}

LogicalResult
AttnTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                   Type elementType, ArrayAttr dims) {
  if (!isSupportedElementType(elementType))
    return emitError() << "unsupported element type " << elementType
                       << "; expected f32, f16, bf16, i32, i8 or i1";
  for (Attribute dim : dims) {
    if (auto size = dyn_cast<IntegerAttr>(dim)) {
      if (size.getInt() <= 0)
        return emitError() << "fixed dimension sizes must be positive, got "
                           << size.getInt();
      continue;
    }
    auto symbol = dyn_cast<StringAttr>(dim);
    if (!symbol || symbol.getValue().empty())
      return emitError() << "a dimension is a size or a symbol, got " << dim;
  }
  return success();
}

StringRef AttnTensorType::getSymbol(unsigned index) const {
  if (auto symbol = dyn_cast<StringAttr>(getDims()[index]))
    return symbol.getValue();
  return {};
}

std::optional<int64_t> AttnTensorType::getFixedSize(unsigned index) const {
  if (auto size = dyn_cast<IntegerAttr>(getDims()[index]))
    return size.getInt();
  return std::nullopt;
}

bool AttnTensorType::sameDim(unsigned index, AttnTensorType other,
                         unsigned otherIndex) const {
  return getDims()[index] == other.getDims()[otherIndex];
}

bool AttnTensorType::conflictingDim(unsigned index, AttnTensorType other,
                                unsigned otherIndex) const {
  Attribute lhs = getDims()[index], rhs = other.getDims()[otherIndex];
  // A symbol against a fixed size can only be checked at launch.
  return lhs != rhs && lhs.getTypeID() == rhs.getTypeID();
}

std::string AttnTensorType::dimString(unsigned index) const {
  if (auto size = getFixedSize(index))
    return std::to_string(*size);
  return getSymbol(index).str();
}

// !attn.tensor<bf16[B, H, N, 128]>
Type AttnTensorType::parse(AsmParser &parser) {
  Builder &builder = parser.getBuilder();
  Type elementType;
  SmallVector<Attribute> dims;
  if (parser.parseLess() || parser.parseType(elementType))
    return {};
  auto parseDim = [&]() -> ParseResult {
    int64_t size;
    OptionalParseResult sizeResult = parser.parseOptionalInteger(size);
    if (sizeResult.has_value()) {
      if (failed(*sizeResult))
        return failure();
      dims.push_back(builder.getI64IntegerAttr(size));
      return success();
    }
    StringRef symbol;
    if (parser.parseKeyword(&symbol))
      return failure();
    dims.push_back(builder.getStringAttr(symbol));
    return success();
  };
  if (parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, parseDim) ||
      parser.parseGreater())
    return {};
  return parser.getChecked<AttnTensorType>(parser.getContext(), elementType,
                                       builder.getArrayAttr(dims));
}

void AttnTensorType::print(AsmPrinter &printer) const {
  printer << "<" << getElementType() << "[";
  for (int64_t index = 0, rank = getRank(); index < rank; ++index) {
    if (index)
      printer << ", ";
    printer << dimString(index);
  }
  printer << "]>";
}
