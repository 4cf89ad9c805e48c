//===- AttnAttrs.td - Attention dialect attributes ---------*- tablegen -*-===//

#ifndef ATTNC_DIALECT_ATTN_ATTNATTRS_TD
#define ATTNC_DIALECT_ATTN_ATTNATTRS_TD

include "attnc/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Attn_Normalizer : I32EnumAttr<"Normalizer",
    "how scores become attention weights", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>,
      I32EnumAttrCase<"none", 2>]> {
  let cppNamespace = "::attnc::attn";
  let genSpecializedAttr = 0;
}
def Attn_NormalizerAttr : EnumAttr<Attn_Dialect, Attn_Normalizer, "normalizer">;

// Dimension order of q, k, v and the output. `thd` is a packed varlen batch
// addressed through cu_seqlens.
def Attn_Layout : I32EnumAttr<"Layout", "dimension order of q, k, v and o", [
      I32EnumAttrCase<"bhnd", 0>,
      I32EnumAttrCase<"bnhd", 1>,
      I32EnumAttrCase<"thd", 2>]> {
  let cppNamespace = "::attnc::attn";
  let genSpecializedAttr = 0;
}
def Attn_LayoutAttr : EnumAttr<Attn_Dialect, Attn_Layout, "layout">;

// Which indices the log-space gate of the linear family depends on.
def Attn_GateKind : I32EnumAttr<"GateKind", "dependence of the decay gate", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"constant_per_head", 1>,
      I32EnumAttrCase<"per_head", 2>,
      I32EnumAttrCase<"per_key_dim", 3>]> {
  let cppNamespace = "::attnc::attn";
  let genSpecializedAttr = 0;
}
def Attn_GateKindAttr : EnumAttr<Attn_Dialect, Attn_GateKind, "gate_kind">;

#endif // ATTNC_DIALECT_ATTN_ATTNATTRS_TD
