//===- WarpBuilder.cpp - Warp primitives and GPU kernel functions ---------===//

#include "attnc/Target/NVVM/WarpBuilder.h"
#include "attnc/Dialect/Attn/IR/AttnAttrs.h"

#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::lowering;

MemRefType attnc::lowering::workspaceType(MLIRContext *context) {
  return MemRefType::get({ShapedType::kDynamic}, IntegerType::get(context, 32));
}

Operation *attnc::lowering::createKernelFunction(ModuleOp module,
                                                 StringRef name, Location loc,
                                                 ArrayRef<Type> argTypes,
                                                 const WarpConfig &config,
                                                 gpu::GPUModuleOp &gpuModule) {
  OpBuilder builder(module.getContext());
  if (!gpuModule) {
    gpuModule = *module.getOps<gpu::GPUModuleOp>().begin();
  }
  if (!gpuModule) {
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(module.getContext()));
    builder.setInsertionPointToEnd(module.getBody());
    gpuModule = gpu::GPUModuleOp::create(builder, loc, "attnc_kernels");
  }
  builder.setInsertionPointToEnd(gpuModule.getBody());
  auto func = gpu::GPUFuncOp::create(builder, loc, name,
                                     builder.getFunctionType(argTypes, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), builder.getUnitAttr());
  func.setKnownBlockSizeAttr(builder.getDenseI32ArrayAttr(
      {static_cast<int32_t>(config.threads()), 1, 1}));
  // Without a floor on resident CTAs ptxas may cap registers at 128 to fit
  // four CTAs per SM and spill the accumulators; one CTA per SM is enough
  // to keep the tensor cores busy with 4+ warps.
  func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                builder.getI32IntegerAttr(1));
  return func;
}

/// The end of the furthest static shared tile (memref.view of the dynamic
/// shared memory) in `func`, in bytes.
static int64_t sharedExtent(Operation *func) {
  int64_t extent = 0;
  func->walk([&](memref::ViewOp view) {
    bool shared =
        view.getSource().getDefiningOp<gpu::DynamicSharedMemoryOp>() != nullptr;
    std::optional<int64_t> offset = getConstantIntValue(view.getByteShift());
    MemRefType type = view.getType();
    if (!shared || !offset || !type.hasStaticShape())
      return;
    int64_t bytes = type.getNumElements() * type.getElementTypeBitWidth() / 8;
    extent = std::max(extent, *offset + bytes);
  });
  return extent;
}

LogicalResult attnc::lowering::lowerToKernelFunction(
    KernelOp kernel, const WarpConfig &config, gpu::GPUModuleOp &gpuModule,
    const LaunchFacts &facts,
    llvm::function_ref<void(Operation *, LoweringBuilder &, ValueRange, Value)>
        buildBody) {
  SmallVector<Type> argTypes = getCallingConventionTypes(kernel);
  bool segmented = facts.segments[2] != 0;
  if (segmented)
    argTypes.push_back(workspaceType(kernel.getContext()));
  Operation *func = createKernelFunction(kernel->getParentOfType<ModuleOp>(),
                                         kernel.getSymName(), kernel.getLoc(),
                                         argTypes, config, gpuModule);
  setLaunchAttributes(func, facts);
  Block *entry = &func->getRegion(0).front();
  Value workspace =
      segmented ? entry->getArgument(argTypes.size() - 1) : Value();
  lowerKernelBody(
      kernel, entry, /*clearStatus=*/false,
      [&](Operation *familyOp, LoweringBuilder &rb, ValueRange results) {
        buildBody(familyOp, rb, results, workspace);
      });
  OpBuilder builder = OpBuilder::atBlockEnd(entry);
  gpu::ReturnOp::create(builder, kernel.getLoc());
  // A layout that outgrew the declared shared memory would overwrite
  // whatever follows it, on the GPU and in the emulator alike.
  int64_t extent = sharedExtent(func);
  if (extent > facts.sharedBytes) {
    kernel.emitError() << "internal error: kernel '" << kernel.getSymName()
                       << "' uses " << extent
                       << " bytes of shared memory but declares "
                       << facts.sharedBytes;
    return failure();
  }
  kernel.erase();
  return success();
}

void attnc::lowering::setLaunchAttributes(Operation *func,
                                          const LaunchFacts &facts) {
  Builder builder(func->getContext());
  SmallVector<Attribute> grid;
  for (const std::array<int64_t, 4> &term : facts.grid)
    grid.push_back(builder.getDenseI64ArrayAttr(term));
  bool segmented = facts.segments[2] != 0;
  func->setAttr(
      kLaunchAttrName,
      LaunchAttr::get(
          func->getContext(), facts.threads, facts.sharedBytes,
          builder.getArrayAttr(grid),
          builder.getDenseI64ArrayAttr(facts.copiedParams),
          builder.getDenseI64ArrayAttr(facts.offsetParams), facts.headDim,
          facts.sequenceResult,
          segmented ? builder.getDenseI64ArrayAttr(facts.segments)
                    : DenseI64ArrayAttr(),
          segmented ? facts.segmentStateBytes : 0,
          segmented && facts.splitsAtLaunch ? builder.getUnitAttr()
                                            : UnitAttr(),
          facts.packsQueryHeads ? builder.getUnitAttr() : UnitAttr(),
          facts.partialResults.empty()
              ? DenseI64ArrayAttr()
              : builder.getDenseI64ArrayAttr(facts.partialResults),
          facts.scratchWords.empty()
              ? DenseI64ArrayAttr()
              : builder.getDenseI64ArrayAttr(facts.scratchWords)));
}

std::string attnc::lowering::checkTensorCoreOperands(Operation *familyOp,
                                                     int64_t maxHeadDim,
                                                     WarpConfig &config,
                                                     int64_t &dimK,
                                                     int64_t &dimV) {
  auto q = cast<AttnTensorType>(familyOp->getOperand(0).getType());
  auto k = cast<AttnTensorType>(familyOp->getOperand(1).getType());
  auto v = cast<AttnTensorType>(familyOp->getOperand(2).getType());
  // The attn verifiers allow f32, f16 and bf16 q only.
  Type element = q.getElementType();
  if (k.getElementType() != element || v.getElementType() != element)
    return "q, k and v must have the same element type on the GPU";
  config.splitF32 = element.isF32();
  config.element =
      config.splitF32 ? BFloat16Type::get(element.getContext()) : element;
  int64_t feature = q.getRank() - 1;
  std::optional<int64_t> fixedK = q.getFixedSize(feature);
  std::optional<int64_t> fixedV = v.getFixedSize(feature);
  if (!fixedK || !fixedV)
    return "the head dims of q and v must be fixed numbers on the GPU "
           "(registers are allocated per head dim)";
  if (*fixedK % 16 || *fixedV % 16 || *fixedK > maxHeadDim ||
      *fixedV > maxHeadDim)
    return llvm::formatv("head dims must be multiples of 16 up to {0} on the "
                         "GPU (got {1} and {2})",
                         maxHeadDim, *fixedK, *fixedV)
        .str();
  dimK = *fixedK;
  dimV = *fixedV;
  return "";
}

//===----------------------------------------------------------------------===//
// WarpBuilder
//===----------------------------------------------------------------------===//

Value WarpBuilder::operand(Value pair) {
  if (config.element.isBF16())
    return LLVM::BitcastOp::create(b, b.getI32Type(), pair);
  return pair;
}

Value WarpBuilder::pack(Value x, Value y) {
  Value pair = vector::FromElementsOp::create(
      b, VectorType::get({2}, f32), ValueRange{x, y});
  return operand(arith::TruncFOp::create(
      b, VectorType::get({2}, config.element), pair));
}

SmallVector<Value> WarpBuilder::ldmatrix(Value tile, ValueRange prefix,
                                         Value row, Value col, int count,
                                         bool transpose) {
  SmallVector<Value> indices(prefix.begin(), prefix.end());
  indices.push_back(row);
  indices.push_back(col);
  auto type = VectorType::get({count, 2}, config.element);
  Value loaded =
      nvgpu::LdMatrixOp::create(b, type, tile, indices, transpose, count);
  SmallVector<Value> registers;
  for (int r = 0; r < count; ++r)
    registers.push_back(operand(vector::ExtractOp::create(b, loaded, r)));
  return registers;
}

SmallVector<Value> WarpBuilder::loadAOperand(Value tile, Value lane, Value row0,
                                             Value col0, ValueRange prefix) {
  Value row = rb.add(
      row0,
      rb.add(arith::RemUIOp::create(b, lane, idx(8)),
             rb.mul(arith::RemUIOp::create(
                        b, arith::DivUIOp::create(b, lane, idx(8)), idx(2)),
                    idx(8))));
  Value col =
      rb.add(col0, rb.mul(arith::DivUIOp::create(b, lane, idx(16)), idx(8)));
  return ldmatrix(tile, prefix, row, col, 4, /*transpose=*/false);
}

void WarpBuilder::appendSplit(Value x, Value y, MmaOperand &out) {
  auto pairType = VectorType::get({2}, f32);
  Value pair = vector::FromElementsOp::create(b, pairType, ValueRange{x, y});
  auto halves = VectorType::get({2}, config.element);
  Value hi = arith::TruncFOp::create(b, halves, pair);
  Value rest =
      arith::SubFOp::create(b, pair, arith::ExtFOp::create(b, pairType, hi));
  out.hi.push_back(operand(hi));
  out.lo.push_back(operand(arith::TruncFOp::create(b, halves, rest)));
}

WarpBuilder::MmaOperand
WarpBuilder::operandFromAccumulators(ArrayRef<Value> values) {
  MmaOperand a;
  for (int64_t pair = 0; pair < 4; ++pair) {
    Value x = values[2 * pair], y = values[2 * pair + 1];
    if (config.splitF32)
      appendSplit(x, y, a);
    else
      a.hi.push_back(pack(x, y));
  }
  return a;
}

WarpBuilder::MmaOperand WarpBuilder::loadElementwiseOperand(
    Value tile, ValueRange prefix, Value lane, Value row0, Value col0,
    int registers,
    llvm::function_ref<nvvm::MatrixCoord(int lane, int reg, int element)> coord,
    bool transposed, ElementTransform transform) {
  // The coordinates are g or 2t (g = lane / 4, t = lane % 4) plus a
  // constant per register and element: lane 0's coordinate.
  Value g = arith::DivUIOp::create(b, lane, idx(4));
  Value twoT = rb.mul(arith::RemUIOp::create(b, lane, idx(4)), idx(2));
  nvvm::MatrixCoord probe = coord(4, 0, 0); // g = 1, t = 0
  Value laneRow = probe.row ? g : twoT, laneCol = probe.row ? twoT : g;
  MmaOperand out;
  for (int r = 0; r < registers; ++r) {
    Value pair[2];
    for (int e = 0; e < 2; ++e) {
      nvvm::MatrixCoord at = coord(0, r, e);
      Value row = rb.add(laneRow, idx(at.row));
      Value col = rb.add(laneCol, idx(at.col));
      if (transposed)
        std::swap(row, col);
      row = rb.add(row0, row);
      col = rb.add(col0, col);
      SmallVector<Value> indices(prefix.begin(), prefix.end());
      indices.append({row, col});
      pair[e] = loadF32(tile, indices);
      if (transform)
        pair[e] = transform(pair[e], row, col);
    }
    if (config.splitF32)
      appendSplit(pair[0], pair[1], out);
    else
      out.hi.push_back(pack(pair[0], pair[1]));
  }
  return out;
}

SmallVector<Value> WarpBuilder::mma(const MmaOperand &a, const MmaOperand &bOp,
                                    ArrayRef<Value> c) {
  if (a.lo.empty())
    return mma(a.hi, bOp.hi, c);
  SmallVector<Value> d = mma(a.lo, bOp.hi, c);
  d = mma(a.hi, bOp.lo, d);
  return mma(a.hi, bOp.hi, d);
}

SmallVector<Value> WarpBuilder::mma(ArrayRef<Value> a, ArrayRef<Value> bRegs,
                                    ArrayRef<Value> c) {
  MLIRContext *ctx = b.getContext();
  auto resultType =
      LLVM::LLVMStructType::getLiteral(ctx, SmallVector<Type>(4, f32));
  NVVM::MMATypes type = config.element.isBF16() ? NVVM::MMATypes::bf16
                                               : NVVM::MMATypes::f16;
  Value d = NVVM::MmaOp::create(
      b, resultType, a, bRegs, c,
      ArrayRef<int64_t>{nvvm::kMmaM, nvvm::kMmaN, nvvm::kMmaK},
      std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{type, type},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  SmallVector<Value> out;
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(LLVM::ExtractValueOp::create(b, d, i));
  return out;
}

Value WarpBuilder::quadReduce(Value value, bool max) {
  for (int32_t offset : {1, 2}) {
    Value other = gpu::ShuffleOp::create(b, value, offset, nvvm::kWarpSize,
                                         gpu::ShuffleMode::XOR)
                      .getShuffleResult();
    value = max ? Value(arith::MaximumFOp::create(b, value, other))
                : Value(arith::AddFOp::create(b, value, other));
  }
  return value;
}

SmallVector<Value> WarpBuilder::copyTile(Value tile, ValueRange prefix,
                                         Value src, Value batch, Value head,
                                         Value row0, Value validRows,
                                         int64_t rows, int64_t width,
                                         Value srcCol0) {
  return copyRows(
      tile, prefix, src,
      [&](Value row, Value col) {
        return layoutIndices(layout, batch, head, rb.add(row0, row),
                             srcCol0 ? rb.add(srcCol0, col) : col);
      },
      validRows, rows, width);
}

SmallVector<Value> WarpBuilder::copyRows(Value tile, ValueRange prefix,
                                         Value src, SourceIndices sourceAt,
                                         Value validRows, int64_t rows,
                                         int64_t width) {
  int64_t chunksPerRow = width / config.chunkElements();
  int64_t chunks = rows * chunksPerRow;
  Value thread = copyGroup.count ? copyGroup.thread : threadId;
  int64_t threads = copyGroup.count ? copyGroup.count : config.threads();
  int64_t rounds = (chunks + threads - 1) / threads;
  SmallVector<Value> tokens;
  for (int64_t u = 0; u < rounds; ++u) {
    Value chunk = rb.add(thread, idx(u * threads));
    // The last round may have fewer chunks than threads.
    if ((u + 1) * threads > chunks) {
      Value inTile = lessThan(chunk, idx(chunks));
      // Its tokens cannot leave the branch; commit_group covers every
      // earlier cp.async of the thread anyway.
      rb.ifThen(inTile, [&] {
        SmallVector<Value> local;
        copyChunk(tile, prefix, src, sourceAt, validRows, chunk, chunksPerRow,
                  local);
      });
      continue;
    }
    copyChunk(tile, prefix, src, sourceAt, validRows, chunk, chunksPerRow,
              tokens);
  }
  return tokens;
}

void WarpBuilder::copyChunk(Value tile, ValueRange prefix, Value src,
                            SourceIndices sourceAt, Value validRows,
                            Value chunk, int64_t chunksPerRow,
                            SmallVector<Value> &tokens) {
  Value row, col;
  if (coreMatrixTiles.contains(tile)) {
    // Eight consecutive chunks fill the 8 rows of one core matrix (128
    // contiguous bytes), so a quarter warp's stores hit distinct banks.
    Value rowBlock = arith::DivUIOp::create(b, chunk, idx(8 * chunksPerRow));
    row = rb.add(rb.mul(rowBlock, idx(8)),
                 arith::RemUIOp::create(b, chunk, idx(8)));
    col = rb.mul(
        arith::RemUIOp::create(b, arith::DivUIOp::create(b, chunk, idx(8)),
                               idx(chunksPerRow)),
        idx(8));
  } else {
    row = arith::DivUIOp::create(b, chunk, idx(chunksPerRow));
    col = rb.mul(arith::RemUIOp::create(b, chunk, idx(chunksPerRow)),
                 idx(config.chunkElements()));
  }
  Value valid = lessThan(row, validRows);
  Value srcRow = arith::SelectOp::create(b, valid, row, idx(0));
  Value srcElements =
      arith::SelectOp::create(b, valid, idx(config.chunkElements()), idx(0));
  SmallVector<Value> dst = tileIndices(tile, prefix, row, col);
  tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
      b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tile, dst, src,
      sourceAt(srcRow, col), b.getIndexAttr(config.chunkElements()),
      srcElements, b.getUnitAttr()));
}

void WarpBuilder::waitForCopies() {
  Value group = nvgpu::DeviceAsyncCreateGroupOp::create(
      b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), ValueRange{});
  nvgpu::DeviceAsyncWaitOp::create(b, group, b.getI32IntegerAttr(0));
}

void WarpBuilder::waitForCopiesAndBarrier() {
  waitForCopies();
  if (config.wgmma)
    fenceForWgmma();
  barrier();
}

void WarpBuilder::commitCopies(ValueRange tokens) {
  nvgpu::DeviceAsyncCreateGroupOp::create(
      b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tokens);
}

Value WarpBuilder::withUnitInnerStride(Value memref) {
  auto type = cast<MemRefType>(memref.getType());
  int64_t rank = type.getRank();
  auto metadata = memref::ExtractStridedMetadataOp::create(b, memref);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  strides.back() = 1;
  auto resultType = MemRefType::get(
      type.getShape(), type.getElementType(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, strides));
  SmallVector<OpFoldResult> sizes, strideValues;
  for (int64_t d = 0; d < rank; ++d) {
    sizes.push_back(metadata.getSizes()[d]);
    strideValues.push_back(d + 1 == rank ? OpFoldResult(b.getIndexAttr(1))
                                         : metadata.getStrides()[d]);
  }
  return memref::ReinterpretCastOp::create(
      b, resultType, metadata.getBaseBuffer(),
      OpFoldResult(metadata.getOffset()), sizes, strideValues);
}

void WarpBuilder::forEachElement(int64_t count,
                                 llvm::function_ref<void(Value)> body) {
  forEachIndex(idx(0), idx(count), body);
}

void WarpBuilder::forEachElementGroup(
    int64_t count, int64_t group,
    llvm::function_ref<void(ArrayRef<Value>)> body) {
  int64_t threads = config.threads();
  int64_t rounds = count / threads;
  while (group > 1 && rounds % group)
    group /= 2;
  if (count % threads || group <= 1) {
    forEachElement(count, [&](Value i) { body({i}); });
    return;
  }
  rb.loop(idx(0), idx(rounds / group), [&](Value outer) {
    SmallVector<Value> indices;
    for (int64_t u = 0; u < group; ++u)
      indices.push_back(rb.add(
          threadId, rb.mul(rb.add(rb.mul(outer, idx(group)), idx(u)),
                           idx(threads))));
    body(indices);
  });
}

void WarpBuilder::forEachIndex(Value begin, Value end,
                               llvm::function_ref<void(Value)> body) {
  Value threads = idx(config.threads());
  Value count = rb.sub(arith::MaxSIOp::create(b, end, begin), begin);
  rb.loop(idx(0), arith::CeilDivUIOp::create(b, count, threads),
          [&](Value round) {
            Value i = rb.add(begin, rb.add(threadId, rb.mul(round, threads)));
            rb.ifThen(lessThan(i, end), [&] { body(i); });
          });
}

Value WarpBuilder::loadWordF32(Value words, Value index) {
  return arith::BitcastOp::create(
      b, f32, memref::LoadOp::create(b, words, ValueRange{index}));
}

void WarpBuilder::storeWordF32(Value value, Value words, Value index) {
  memref::StoreOp::create(b,
                          arith::BitcastOp::create(b, b.getI32Type(), value),
                          words, ValueRange{index});
}

Value WarpBuilder::loadF32(Value tile, ValueRange at) {
  Value value = memref::LoadOp::create(b, tile, at);
  return value.getType().isF32()
             ? value
             : Value(arith::ExtFOp::create(b, f32, value));
}

void WarpBuilder::storeElement(Value value, Value tile, ValueRange at) {
  Type element = cast<MemRefType>(tile.getType()).getElementType();
  if (element != value.getType())
    value = arith::TruncFOp::create(b, element, value);
  memref::StoreOp::create(b, value, tile, at);
}

Value WarpBuilder::sharedBase() {
  auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(),
                                              gpu::AddressSpace::Workgroup);
  return gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                         MemRefLayoutAttrInterface(), workgroup));
}

Value WarpBuilder::sharedTile(Value base, int64_t offset,
                              ArrayRef<int64_t> tileShape, Type element) {
  Attribute space = gpu::AddressSpaceAttr::get(b.getContext(),
                                               gpu::AddressSpace::Workgroup);
  return memref::ViewOp::create(
      b, MemRefType::get(tileShape, element, MemRefLayoutAttrInterface(), space),
      base, idx(offset), ValueRange{});
}

Value WarpBuilder::coreMatrixTile(Value base, int64_t offset,
                                  ArrayRef<int64_t> prefixShape, int64_t rows,
                                  int64_t cols, Type element) {
  SmallVector<int64_t> tileShape(prefixShape);
  tileShape.append({rows / 8, cols / 8, 8, 8});
  Value tile = sharedTile(base, offset, tileShape, element);
  coreMatrixTiles.insert(tile);
  return tile;
}

SmallVector<Value> WarpBuilder::tileIndices(Value tile, ValueRange prefix,
                                            Value row, Value col) {
  SmallVector<Value> at(prefix.begin(), prefix.end());
  if (!coreMatrixTiles.contains(tile)) {
    at.append({row, col});
    return at;
  }
  at.append({arith::DivUIOp::create(b, row, idx(8)),
             arith::DivUIOp::create(b, col, idx(8)),
             arith::RemUIOp::create(b, row, idx(8)),
             arith::RemUIOp::create(b, col, idx(8))});
  return at;
}

Value WarpBuilder::sharedAddress(Value tile) {
  return arith::IndexCastOp::create(
      b, b.getI64Type(),
      memref::ExtractAlignedPointerAsIndexOp::create(b, tile));
}

Value WarpBuilder::wgmmaDescriptor(Value address, int64_t leadingBytes,
                                   int64_t strideBytes) {
  nvvm::SharedOperand operand;
  operand.leadingBytes = leadingBytes;
  operand.strideBytes = strideBytes;
  Value start = arith::ShRUIOp::create(
      b, arith::AndIOp::create(b, address, i64(0x3FFFF)), i64(4));
  return arith::OrIOp::create(
      b, start, i64(static_cast<int64_t>(nvvm::wgmmaDescriptor(0, operand))));
}

void WarpBuilder::wgmmaWait(int64_t pending) {
  NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(pending));
}

Value WarpBuilder::mbarrierPointer(Value id) {
  Value base = arith::IndexCastOp::create(
      b, b.getI64Type(),
      memref::ExtractAlignedPointerAsIndexOp::create(b, sharedBase()));
  Value address = rb.add(
      base, rb.add(i64(mbarrierOffset),
                   rb.mul(arith::IndexCastOp::create(b, b.getI64Type(), id),
                          i64(8))));
  return LLVM::IntToPtrOp::create(
      b, LLVM::LLVMPointerType::get(b.getContext(), 3), address);
}

void WarpBuilder::mbarrierInit(Value id, int64_t count) {
  NVVM::MBarrierInitOp::create(b, mbarrierPointer(id), i32(count), Value());
}

void WarpBuilder::mbarrierArrive(Value id) {
  NVVM::MBarrierArriveOp::create(b, b.getI64Type(), mbarrierPointer(id),
                                 Value());
}

void WarpBuilder::mbarrierArriveAfterCopies(Value id) {
  NVVM::CpAsyncMBarrierArriveOp::create(b, mbarrierPointer(id),
                                        /*noinc=*/true);
}

void WarpBuilder::mbarrierWait(Value id, Value parity) {
  Value parity32 = arith::IndexCastOp::create(b, b.getI32Type(), parity);
  NVVM::MBarrierTryWaitParityOp::create(b, mbarrierPointer(id), parity32,
                                        i32(0x989680));
}

void WarpBuilder::fenceForWgmma() {
  NVVM::FenceProxyOp::create(
      b,
      NVVM::ProxyKindAttr::get(b.getContext(), NVVM::ProxyKind::async_shared),
      NVVM::SharedSpaceAttr::get(b.getContext(),
                                 NVVM::SharedSpace::shared_cta));
}

void WarpBuilder::setMaxRegisters(int64_t count, bool increase) {
  NVVM::SetMaxRegisterOp::create(b, static_cast<uint32_t>(count),
                                 increase
                                     ? NVVM::SetMaxRegisterAction::increase
                                     : NVVM::SetMaxRegisterAction::decrease);
}

void WarpBuilder::wgmmaCommitAndWait() {
  wgmmaCommit();
  wgmmaWait(0);
}

SmallVector<Value> WarpBuilder::wgmma(Value descA, ArrayRef<Value> aRegisters,
                                      Value descB, bool transposeB,
                                      ArrayRef<Value> acc) {
  int64_t n = 2 * acc.size();
  bool fromRegisters = !aRegisters.empty();
  SmallVector<Value> a;
  for (Value reg : aRegisters)
    a.push_back(reg.getType().isInteger(32)
                    ? reg
                    : Value(LLVM::BitcastOp::create(b, b.getI32Type(), reg)));
  SmallVector<Value> operands;
  if (fromRegisters)
    llvm::append_range(operands, a);
  else
    operands.push_back(descA);
  operands.push_back(descB);
  operands.push_back(i32(1));
  llvm::append_range(operands, acc);
  auto resultType = LLVM::LLVMStructType::getLiteral(
      b.getContext(), SmallVector<Type>(acc.size(), f32));
  auto call = LLVM::InlineAsmOp::create(
      b, resultType, operands,
      nvvm::wgmmaAsmText(n, config.element.isBF16(), fromRegisters,
                         transposeB),
      nvvm::wgmmaAsmConstraints(n, fromRegisters),
      /*has_side_effects=*/true, /*is_align_stack=*/false,
      LLVM::tailcallkind::TailCallKind::None,
      LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT),
      mlir::ArrayAttr());
  SmallVector<Value> out;
  for (int64_t r = 0; r < (int64_t)acc.size(); ++r)
    out.push_back(LLVM::ExtractValueOp::create(b, call.getRes(), r));
  return out;
}

int64_t attnc::lowering::paramIndex(Value value) {
  return static_cast<int64_t>(mlir::cast<BlockArgument>(value).getArgNumber());
}
