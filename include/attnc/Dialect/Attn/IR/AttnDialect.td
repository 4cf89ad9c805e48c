//===- AttnDialect.td - The attention dialect --------------*- tablegen -*-===//

#ifndef ATTNC_DIALECT_ATTN_ATTNDIALECT_TD
#define ATTNC_DIALECT_ATTN_ATTNDIALECT_TD

include "mlir/IR/OpBase.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::attnc::attn";
  let summary = "Attention kernels as one op per family";
  let description = [{
    The `attn` dialect describes an attention kernel at the level of its
    definition: an `attn.kernel` lists the tensor parameters and results with
    their element types and (symbolic or fixed) dimensions, and its body holds
    one family op (`attn.softmax`, `attn.chunk_softmax`, `attn.sparse_softmax`
    or `attn.linear`). Score, mask, gate and feature-map expressions are
    regions of scalar `arith`/`math` ops that may read extra input tensors
    through `attn.load`. Nothing is tiled yet: strategy passes and the
    reference lowering start from here.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerTypes();
    void registerAttributes();
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

#endif // ATTNC_DIALECT_ATTN_ATTNDIALECT_TD
