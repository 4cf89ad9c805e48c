//===- attnc-opt.cpp - attnc's mlir-opt -----------------------------------===//
//
// Runs any attnc pass or pipeline on MLIR input; every stage of the `attnc`
// driver can be reproduced (and lit-tested) with it.
//
//===----------------------------------------------------------------------===//

#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Tile/IR/TileDialect.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  attnc::registerAttncPassesAndPipelines();
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  registry.insert<attnc::attn::AttnDialect, attnc::tile::TileDialect>();
  attnc::registerGpuCompilation(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "attnc optimizer driver\n", registry));
}
