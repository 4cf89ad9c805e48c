//===- AttnAttrs.h - Attention dialect attributes ---------------*- C++ -*-===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNATTRS_H
#define ATTNC_DIALECT_ATTN_IR_ATTNATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "attnc/Dialect/Attn/IR/AttnEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "attnc/Dialect/Attn/IR/AttnAttrs.h.inc"

namespace attnc::attn {
/// The name of the LaunchAttr a GPU kernel function carries.
inline constexpr llvm::StringLiteral kLaunchAttrName = "attn.launch";
} // namespace attnc::attn

#endif // ATTNC_DIALECT_ATTN_IR_ATTNATTRS_H
