//===- AttnTypes.td - Attention dialect types --------------*- tablegen -*-===//

#ifndef ATTNC_DIALECT_ATTN_ATTNTYPES_TD
#define ATTNC_DIALECT_ATTN_ATTNTYPES_TD

include "attnc/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"

def Attn_TensorType : TypeDef<Attn_Dialect, "AttnTensor"> {
  let mnemonic = "tensor";
  let summary = "a kernel parameter: element type and symbolic or fixed dims";
  let description = [{
    The type of a kernel parameter or result. Each dimension is either a
    fixed size or a symbol bound when the kernel is launched; two dimensions
    with the same symbol must have the same size.

    ```mlir
    !attn.tensor<bf16[B, Hq, N, 128]>
    ```
  }];
  let parameters = (ins "::mlir::Type":$elementType,
                        "::mlir::ArrayAttr":$dims);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getDims().size(); }
    /// The symbol of dimension `index`, or an empty StringRef when fixed.
    ::llvm::StringRef getSymbol(unsigned index) const;
    /// The fixed size of dimension `index`, or std::nullopt when symbolic.
    std::optional<int64_t> getFixedSize(unsigned index) const;
    /// True when the two dimensions are known to be equal (same symbol or
    /// same fixed size).
    bool sameDim(unsigned index, AttnTensorType other, unsigned otherIndex) const;
    /// True when the two dimensions are known to differ (different symbols
    /// or different fixed sizes).
    bool conflictingDim(unsigned index, AttnTensorType other,
                        unsigned otherIndex) const;
    /// Prints dimension `index` as written in a spec: `N` or `128`.
    std::string dimString(unsigned index) const;
  }];
}

def Attn_Tensor : Type<CPred<"::llvm::isa<::attnc::attn::AttnTensorType>($_self)">,
                       "attn tensor", "::attnc::attn::AttnTensorType">;

#endif // ATTNC_DIALECT_ATTN_ATTNTYPES_TD
