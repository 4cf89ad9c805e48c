//===- AttnTypes.h - Attention dialect types --------------------*- C++ -*-===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNTYPES_H
#define ATTNC_DIALECT_ATTN_IR_ATTNTYPES_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Types.h"

#define GET_TYPEDEF_CLASSES
#include "attnc/Dialect/Attn/IR/AttnOpsTypes.h.inc"

#endif // ATTNC_DIALECT_ATTN_IR_ATTNTYPES_H
