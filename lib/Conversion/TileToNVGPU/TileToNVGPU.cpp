//===- TileToNvgpu.cpp - Tile programs to mma.sync kernels ----------------===//
//
// Gives the tiles of a program GPU layouts and builds its CTA from warp
// primitives (WarpBuilder.h): the grid becomes the launch grid, a block of
// `block_rows` rows is one CTA of block_rows / 16 warps, and each warp owns
// 16 rows of every row tile. Where a tile lives:
//
//   loaded tile           shared memory, copied with cp.async; two stages
//                         when its load is in a loop and can be issued one
//                         iteration ahead (the next block is in flight
//                         while the current one is used). f16/bf16, or f32
//                         whose mma operands split into bf16 pairs
//   f32 2-D tile          this lane's mma C fragments: rows g and g + 8 of
//                         the warp's 16, columns 2t, 2t + 1 of every 8
//   f32 1-D tile          this lane's two rows, g and g + 8
//
// dot takes its A operand from shared memory (ldmatrix, kept in registers
// across a loop when small) or from a C fragment (the FlashAttention-2
// property: two adjacent 16x8 C tiles are one A fragment), its B operand
// from shared memory (ldmatrix, .trans unless the operand is transposed).
// f32 tiles are read element by element instead and every product is three
// mma of bf16 halves (WarpConfig::splitF32).
// reduce folds in the lane and over the quad with xor shuffles; map
// evaluates its body per fragment element with that element's position
// (rows past the tile's row count clamped to its last row, so expressions
// never read user tensors out of bounds); store writes the rows below its
// count. See the pass description in Passes.td.
//
// This file holds the pass and the launch facts it derives from the grid;
// ProgramBuilder (TileProgramBuilder.h lists its files) builds the CTA.
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "llvm/Support/FormatVariadic.h"

namespace attnc {
#define GEN_PASS_DEF_TILETONVGPU
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
namespace tile = attnc::tile;
using namespace attnc::lowering::tile_to_nvgpu;

namespace {

bool dependsOn(Value value, Value on, llvm::SmallPtrSetImpl<Value> &seen) {
  if (value == on)
    return true;
  if (!seen.insert(value).second)
    return false;
  Operation *def = value.getDefiningOp();
  return def && llvm::any_of(def->getOperands(), [&](Value operand) {
           return dependsOn(operand, on, seen);
         });
}

/// exp(x) as exp2(x log2 e), as FlashAttention computes it: one
/// ex2.approx and a multiply, where libdevice's expf spends two more FMAs
/// on range reduction. Rounding x log2 e adds a relative error of about
/// |x| 2^-24, far below the bf16 rounding of P; exp(-inf) stays 0.
void useExp2(Operation *kernel) {
  kernel->walk([](math::ExpOp exp) {
    if (!exp.getType().isF32())
      return;
    ImplicitLocOpBuilder b(exp.getLoc(), exp);
    Value log2e = arith::ConstantFloatOp::create(
        b, b.getF32Type(), APFloat(static_cast<float>(llvm::numbers::log2e)));
    Value scaled = arith::MulFOp::create(b, exp.getOperand(), log2e);
    exp.replaceAllUsesWith(math::Exp2Op::create(b, scaled).getResult());
    exp.erase();
  });
}

/// The grid, copied parameters, cu_seqlens and head dim of a program.
FailureOr<LaunchFacts> deriveLaunchFacts(func::FuncOp func, tile::GridOp grid,
                                         Type shared) {
  LaunchFacts facts;
  int64_t blockRows = grid.getBlockRows();
  auto argOf = [&](Value value) -> int64_t {
    auto arg = dyn_cast<BlockArgument>(value);
    return arg && arg.getOwner() == &func.front() ? arg.getArgNumber() : -1;
  };
  // dim(param, d) or dim(param, d) - 1: [param, d, 1, minus].
  auto axis = [&](Value extent) -> std::optional<std::array<int64_t, 4>> {
    int64_t minus = 0;
    if (auto sub = extent.getDefiningOp<arith::SubIOp>()) {
      std::optional<int64_t> one = getConstantIntValue(sub.getRhs());
      if (!one || *one != 1)
        return std::nullopt;
      extent = sub.getLhs();
      minus = 1;
    }
    auto dim = extent.getDefiningOp<memref::DimOp>();
    if (!dim)
      return std::nullopt;
    std::optional<int64_t> index = dim.getConstantIndex();
    int64_t param = argOf(dim.getSource());
    if (!index || param < 0)
      return std::nullopt;
    return std::array<int64_t, 4>{param, *index, 1, minus};
  };
  std::optional<std::array<int64_t, 4>> heads = axis(grid.getHeads());
  std::optional<std::array<int64_t, 4>> batches = axis(grid.getBatches());
  if (!heads || !batches || (*heads)[3])
    return grid.emitOpError("needs heads that are a dim of a parameter and "
                            "batches that are one, or one less (cu_seqlens)"),
           failure();
  // The query block count: a load at row qb * block_rows (+ a sequence
  // start) of a parameter, whose rows bound every sequence's. A program
  // that walks whole sequences is one CTA per (head, batch entry).
  std::array<int64_t, 4> blocks{0, 0, 0, 0};
  if (!grid.getPerSequence()) {
    tile::LoadOp query;
    grid.walk([&](tile::LoadOp load) {
      llvm::SmallPtrSet<Value, 16> seen;
      if (!query && dependsOn(load.getPosition()[load.getRowDim()],
                              grid.getQueryBlock(), seen))
        query = load;
    });
    if (!query || argOf(query.getSource()) < 0)
      return grid.emitOpError("loads no parameter at a row of its query "
                              "block, from which the launch grid is sized"),
             failure();
    blocks = {argOf(query.getSource()),
              static_cast<int64_t>(query.getRowDim()), blockRows, 0};
  }
  facts.grid = {{blocks, *heads, *batches}};
  // The head dim of the first load that the grid's head indexes; the
  // copied parameters (2-D tiles) in parameter order, q and k first.
  bool headFound = false;
  grid.walk([&](tile::LoadOp load) {
    for (auto [position, index] : llvm::enumerate(load.getPosition()))
      if (index == grid.getHead() && !headFound) {
        facts.headDim = position;
        headFound = true;
      }
    int64_t param = argOf(load.getSource());
    if (param >= 0 && isCopied(load, shared) &&
        !llvm::is_contained(facts.copiedParams, param))
      facts.copiedParams.push_back(param);
  });
  llvm::sort(facts.copiedParams);
  if (auto offsets =
          func->getAttrOfType<DenseI64ArrayAttr>(kSequenceOffsetsAttrName))
    llvm::append_range(facts.offsetParams, offsets.asArrayRef());
  if (auto result = func->getAttrOfType<IntegerAttr>(kSequenceResultAttrName))
    facts.sequenceResult = result.getInt();
  return facts;
}

/// Builds the CTA of `grid` into `kernel`'s entry block: the scalars the
/// program computes before the grid (sizes, scale), its allocations as
/// scratch views (setWorkspace) and the grid's body; `sharedBytes` gets
/// the shared memory it uses.
LogicalResult buildKernel(func::FuncOp func, tile::GridOp grid,
                          Operation *kernel, const WarpConfig &config,
                          DenseI64ArrayAttr partial,
                          ArrayRef<memref::AllocOp> allocs, bool streamLoads,
                          int64_t &sharedBytes) {
  Block *entry = &kernel->getRegion(0).front();
  ImplicitLocOpBuilder b(grid.getLoc(), entry, entry->end());
  IRMapping params;
  for (auto [from, to] : llvm::zip(func.getArguments(), entry->getArguments()))
    params.map(from, to);
  LoweringBuilder rb(b, params, entry->getArgument(func.getNumArguments() - 1));
  for (Operation &op : func.front().without_terminator()) {
    if (&op == grid.getOperation())
      break;
    if (!isa<memref::AllocOp>(op))
      b.clone(op, params);
  }
  ProgramBuilder builder(rb, config, grid.getBlockRows(), streamLoads);
  if (partial || !allocs.empty()) {
    unsigned words = func.getNumArguments();
    SmallVector<Value> results;
    if (partial)
      for (int64_t argument : partial.asArrayRef())
        results.push_back(entry->getArgument(argument));
    builder.setWorkspace(entry->getArgument(words),
                         allocs.empty() ? Value()
                                        : entry->getArgument(words + 1),
                         results, allocs);
  }
  if (failed(builder.build(grid)))
    return failure();
  sharedBytes = builder.sharedBytes();
  return success();
}

struct TileToNvgpuPass : public attnc::impl::TileToNvgpuBase<TileToNvgpuPass> {
  using TileToNvgpuBase::TileToNvgpuBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    gpu::GPUModuleOp gpuModule;
    for (auto func :
         llvm::make_early_inc_range(module.getOps<func::FuncOp>())) {
      SmallVector<tile::GridOp> grids =
          llvm::to_vector(func.getOps<tile::GridOp>());
      if (grids.empty())
        continue;
      if (failed(lowerProgram(func, grids, gpuModule)))
        return signalPassFailure();
    }
  }

  LogicalResult lowerProgram(func::FuncOp func, ArrayRef<tile::GridOp> grids,
                             gpu::GPUModuleOp &gpuModule) {
    tile::GridOp grid = grids.front();
    if (grids.size() > 1)
      return func.emitOpError("holds more than one attn_tile.grid");
    // Ops with no GPU layout yet, reported before any other complaint.
    WalkResult unsupported = grid.walk([](Operation *op) {
      if (!isa<tile::TopKInsertOp>(op))
        return WalkResult::advance();
      op->emitOpError("has no GPU lowering yet (attn-tile-to-nvgpu handles "
                      "load, dot, decay_dot, decay_combine, map, reduce, "
                      "scan, slice, transpose, store, scatter_add and splat "
                      "of tiles)");
      return WalkResult::interrupt();
    });
    if (unsupported.wasInterrupted())
      return failure();
    int64_t blockRows = grid.getBlockRows();
    if (blockRows % nvvm::kMmaM || blockRows > 256)
      return grid.emitOpError()
             << "needs block_rows that are a multiple of 16 up to 256 on the "
                "GPU (one warp per 16 rows), got "
             << blockRows;
    WarpConfig config;
    config.warps = blockRows / nvvm::kMmaM;
    // The operand type: the first 16-bit 2-D load's, else f32.
    grid.walk([&](tile::LoadOp load) {
      auto type = cast<RankedTensorType>(load.getType());
      if (type.getRank() == 2 &&
          (!config.element || config.element.isF32()))
        config.element = type.getElementType();
    });
    if (!config.element)
      return grid.emitOpError("loads no tiles: there is nothing for the "
                              "tensor cores to multiply");
    // f32 tiles: bf16 pairs on the tensor cores.
    if (config.element.isF32()) {
      config.splitF32 = true;
      config.element = BFloat16Type::get(grid.getContext());
    }
    if (!config.element.isF16() && !config.element.isBF16())
      return grid.emitOpError()
             << "loads " << config.element
             << " tiles: tensor cores need f16, bf16 or f32 operands (run it "
                "on the CPU)";
    FailureOr<LaunchFacts> facts = deriveLaunchFacts(
        func, grid,
        config.splitF32 ? Float32Type::get(grid.getContext()) : config.element);
    if (failed(facts))
      return failure();
    facts->threads = config.threads();

    // Partial results are the results' own buffers on the GPU (the CTAs'
    // f32 copies live in a workspace after the status words).
    SmallVector<Type> argTypes(func.getArgumentTypes());
    auto partial = func->getAttrOfType<DenseI64ArrayAttr>(kPartialResultsAttrName);
    if (partial) {
      auto types = func->getAttrOfType<ArrayAttr>(kPartialResultTypesAttrName);
      if (!types || static_cast<int64_t>(types.size()) != partial.size())
        return func.emitOpError("needs ")
               << kPartialResultTypesAttrName << " beside "
               << kPartialResultsAttrName << ", one type per result";
      for (auto [argument, type] : llvm::zip(partial.asArrayRef(), types))
        argTypes[argument] = cast<TypeAttr>(type).getValue();
      facts->partialResults.assign(partial.asArrayRef().begin(),
                                   partial.asArrayRef().end());
    }
    // Buffers the program allocates before its grid: the CTA's scratch.
    SmallVector<memref::AllocOp> allocs;
    for (Operation &op : func.front()) {
      if (&op == grid.getOperation())
        break;
      if (auto alloc = dyn_cast<memref::AllocOp>(op))
        allocs.push_back(alloc);
    }
    if (!allocs.empty()) {
      FailureOr<SmallVector<int64_t>> words = scratchSizeProgram(func, allocs);
      if (failed(words))
        return failure();
      facts->scratchWords = std::move(*words);
    }
    if (partial || !allocs.empty())
      argTypes.push_back(workspaceType(func.getContext()));
    if (!allocs.empty())
      argTypes.push_back(MemRefType::get({ShapedType::kDynamic},
                                         Float32Type::get(func.getContext())));
    // The kernel function, named like the program, replaces it. Loads
    // streamed an iteration ahead take two stages of shared memory; a
    // kernel that then does not fit is built again without streaming.
    std::string name = func.getSymName().str();
    func.setSymName(name + ".program");
    Operation *kernel = nullptr;
    for (bool streamLoads : {true, false}) {
      kernel = createKernelFunction(func->getParentOfType<ModuleOp>(), name,
                                    func.getLoc(), argTypes, config, gpuModule);
      if (failed(buildKernel(func, grid, kernel, config, partial, allocs,
                             streamLoads, facts->sharedBytes)))
        return failure();
      if (facts->sharedBytes <= maxSharedBytes)
        break;
      if (!streamLoads)
        return func.emitOpError()
               << "needs " << facts->sharedBytes
               << " bytes of shared memory on the GPU, more than the "
               << static_cast<int64_t>(maxSharedBytes)
               << " a CTA may use (hint: smaller key tiles, block-k)";
      kernel->erase();
    }
    ImplicitLocOpBuilder b(grid.getLoc(), &kernel->getRegion(0).front(),
                           kernel->getRegion(0).front().end());
    gpu::ReturnOp::create(b);
    useExp2(kernel);
    setLaunchAttributes(kernel, *facts);
    func.erase();
    return success();
  }
};

} // namespace
