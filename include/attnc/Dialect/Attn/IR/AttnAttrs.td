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

// The launch facts of a GPU kernel: what the GPU strategies know about how
// the runtime must launch the kernel they built, carried on the kernel
// function as `attn.launch` (kLaunchAttrName) and read into a GpuImage.
def Attn_LaunchAttr : AttrDef<Attn_Dialect, "Launch"> {
  let mnemonic = "launch";
  let summary = "How the runtime launches a GPU kernel";
  let description = [{
    - `threads`: threads per CTA; `sharedBytes`: its dynamic shared memory.
    - `grid`: three `[param, dim, divisor, minus]` entries, x, y and z: the
      axis has ceil(dim `dim` of parameter `param` / `divisor`) - `minus`
      CTAs (divisor 0: one CTA).
    - `copiedParams`: the parameters copied in 16-byte rows (their last
      stride must be 1); `offsetParams`: the cu_seqlens parameters;
      `headDim`: the head dim of q and k; `sequenceResult`: a result with
      one entry per packed sequence, or -1.
    - `segments` (segmented and key-split kernels): grid x is multiplied by
      this `[param, dim, divisor, minus]` term, and each CTA leaves
      `segmentStateBytes` in the workspace; `splitsAtLaunch`: the launch
      chooses the number of key splits (split-keys=auto).
    - `packsQueryHeads`: grid x is multiplied by the GQA group size.
    - `partialResults`: the kernel arguments (result buffers) that are sums
      of every CTA's scatter-adds: each CTA has f32 copies of them in the
      workspace after its header, and the last CTA to finish sums the
      copies in CTA order into them.
    - `scratchWords`: each CTA's scratch memory in f32 words, as a size
      program of the arguments' shapes (GpuImage.h, evaluateSizeProgram);
      the kernel takes the workspace a second time, as f32.
  }];
  let parameters = (ins
    "int64_t":$threads,
    "int64_t":$sharedBytes,
    "::mlir::ArrayAttr":$grid,
    "::mlir::DenseI64ArrayAttr":$copiedParams,
    "::mlir::DenseI64ArrayAttr":$offsetParams,
    "int64_t":$headDim,
    "int64_t":$sequenceResult,
    OptionalParameter<"::mlir::DenseI64ArrayAttr">:$segments,
    DefaultValuedParameter<"int64_t", "0">:$segmentStateBytes,
    OptionalParameter<"::mlir::UnitAttr">:$splitsAtLaunch,
    OptionalParameter<"::mlir::UnitAttr">:$packsQueryHeads,
    OptionalParameter<"::mlir::DenseI64ArrayAttr">:$partialResults,
    OptionalParameter<"::mlir::DenseI64ArrayAttr">:$scratchWords
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // ATTNC_DIALECT_ATTN_ATTNATTRS_TD
