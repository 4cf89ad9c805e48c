//===- TileDialect.td - Target-neutral tile programs -------*- tablegen -*-===//

#ifndef ATTNC_DIALECT_TILE_TILEDIALECT_TD
#define ATTNC_DIALECT_TILE_TILEDIALECT_TD

include "mlir/IR/OpBase.td"

def Tile_Dialect : Dialect {
  let name = "attn_tile";
  let cppNamespace = "::attnc::tile";
  let summary = "Target-neutral tile programs of attention kernels";
  let description = [{
    A tile program says what one program instance of a grid computes, on
    2-D tiles and 1-D row vectors held as builtin `tensor` values of static
    tile shape (a head dimension may be `?` on the CPU): loads of row blocks
    from the kernel's memrefs, matrix products, elementwise maps with the
    element's position, row reductions and stores. Scalar control (sequence
    bounds, the key-block range of a band, block lists) stays in upstream
    `arith`, `memref` and `scf`, and so do the loops over key blocks, whose
    iteration arguments carry tiles.

    Nothing in it names a target: the CPU lowering (`attn-tile-to-loops`)
    gives every tile a buffer and loops over its elements; a GPU lowering
    gives tiles register-fragment and shared-memory layouts. See
    docs/tile.md.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::tensor::TensorDialect"];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class Tile_Op<string mnemonic, list<Trait> traits = []>
    : Op<Tile_Dialect, mnemonic, traits>;

#endif // ATTNC_DIALECT_TILE_TILEDIALECT_TD
