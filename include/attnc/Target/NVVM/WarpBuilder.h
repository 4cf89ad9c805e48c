//===- WarpBuilder.h - Warp-level building blocks of GPU kernels -*- C++ -*-===//
//
// What every tensor-core strategy builds from: thread and block indices,
// shared-memory tiles (padded rows, or core matrices for wgmma), 16-byte
// cp.async copies, ldmatrix, mma.sync.m16n8k16, wgmma.mma_async (sm_90a)
// and quad reductions, as gpu/nvgpu/nvvm operations (the warp emulator runs
// the same IR through attnc-nvgpu-to-emulator). Fragment positions follow
// attnc/Target/NVVM/MmaLayout.h.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TARGET_NVVM_WARPBUILDER_H
#define ATTNC_TARGET_NVVM_WARPBUILDER_H

#include "attnc/Conversion/KernelLowering/KernelLowering.h"
#include "attnc/Target/NVVM/MmaLayout.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <array>
#include <functional>

namespace attnc::lowering {

namespace gpu = mlir::gpu;
namespace nvgpu = mlir::nvgpu;
namespace NVVM = mlir::NVVM;
namespace vector = mlir::vector;
namespace func = mlir::func;
namespace LLVM = mlir::LLVM;
using mlir::MLIRContext;
using mlir::Attribute;
using mlir::ModuleOp;
using mlir::MutableArrayRef;
using mlir::OpFoldResult;
using mlir::StringRef;
using mlir::VectorType;
using mlir::MemRefLayoutAttrInterface;

/// Shared-memory rows of 16-bit elements are padded by 8 elements (16
/// bytes): the 8 row addresses of one ldmatrix then fall into distinct
/// 16-byte bank groups.
constexpr int64_t kRowPadding = 8;

struct WarpConfig {
  int64_t warps = 4;
  Type element; // f16 or bf16: the tensor cores' operand type
  /// f32 q, k and v: tiles hold f32, and each mma operand is split into
  /// bf16 high and low parts (x ~ hi + lo, lo = bf16(x - hi)); a product
  /// is the three mma hi*hi + hi*lo + lo*hi (bf16x3, about 16 bits of
  /// mantissa instead of bf16's 8). `element` is bf16 then.
  bool splitF32 = false;
  /// Shared tiles are read by wgmma (the async proxy), so copies into them
  /// are fenced for it before the barrier that publishes them.
  bool wgmma = false;
  /// Warps that only copy tiles for the others (a warp-specialised
  /// producer), after the `warps` that compute.
  int64_t producerWarps = 0;
  int64_t threads() const { return (warps + producerWarps) * nvvm::kWarpSize; }
  /// Bytes of a tile element in shared memory.
  int64_t elementBytes() const { return splitF32 ? 4 : 2; }
  /// Elements per 16-byte copy, and the padding of a shared-memory row.
  int64_t chunkElements() const { return 16 / elementBytes(); }
};

class WarpBuilder {
public:
  WarpBuilder(LoweringBuilder &rb, const WarpConfig &config)
      : rb(rb), b(rb.b), config(config), f32(b.getF32Type()) {}

protected:
  Value idx(int64_t value) { return rb.index(value); }
  Value minIndex(Value x, Value y) { return arith::MinUIOp::create(b, x, y); }
  Value lessThan(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ult, x, y);
  }

  /// One mma operand register from a pair of 16-bit elements: i32 for bf16
  /// (what the intrinsic takes), vector<2xf16> for f16.
  Value operand(Value pair) {
    if (config.element.isBF16())
      return LLVM::BitcastOp::create(b, b.getI32Type(), pair);
    return pair;
  }

  Value i32(int64_t value) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), value);
  }
  Value threadIndex() { return gpu::ThreadIdOp::create(b, gpu::Dimension::x); }
  Value blockIndex(gpu::Dimension dim) { return gpu::BlockIdOp::create(b, dim); }
  /// The grid's size along `dim` (CTAs).
  Value gridSize(gpu::Dimension dim) { return gpu::GridDimOp::create(b, dim); }
  void barrier() { gpu::BarrierOp::create(b); }
  /// Rounds two f32 values into one operand register.
  Value pack(Value x, Value y) {
    Value pair = vector::FromElementsOp::create(
        b, VectorType::get({2}, f32), ValueRange{x, y});
    return operand(arith::TruncFOp::create(
        b, VectorType::get({2}, config.element), pair));
  }

  /// ldmatrix of `count` 8x8 matrices; this lane supplies the address of
  /// row (row, col) of `tile` (after `prefix` indices).
  SmallVector<Value> ldmatrix(Value tile, ValueRange prefix, Value row,
                              Value col, int count, bool transpose) {
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

  /// The A operand of mma for the 16x16 block of `tile` (after `prefix`
  /// indices) at (row0, col0), from one ldmatrix.x4: lanes 0-7, 8-15, 16-23
  /// and 24-31 address rows 0-7 and 8-15 of the left 8 columns, then of the
  /// right 8.
  SmallVector<Value> loadAOperand(Value tile, Value lane, Value row0,
                                  Value col0, ValueRange prefix = {}) {
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

  /// An mma operand's registers: `hi` alone from 16-bit tiles; bf16x3
  /// operands (WarpConfig::splitF32) add the low parts in `lo`.
  struct MmaOperand {
    SmallVector<Value> hi, lo;
  };
  /// Two f32 values as one high and one low operand register.
  void appendSplit(Value x, Value y, MmaOperand &out) {
    auto pairType = VectorType::get({2}, f32);
    Value pair = vector::FromElementsOp::create(b, pairType, ValueRange{x, y});
    auto halves = VectorType::get({2}, config.element);
    Value hi = arith::TruncFOp::create(b, halves, pair);
    Value rest =
        arith::SubFOp::create(b, pair, arith::ExtFOp::create(b, pairType, hi));
    out.hi.push_back(operand(hi));
    out.lo.push_back(operand(arith::TruncFOp::create(b, halves, rest)));
  }
  /// The A operand made of two adjacent C tiles (8 f32 values, the first
  /// tile's 4 registers, then the second's), rounded to the operand type or
  /// split: the FlashAttention-2 reuse of P as the A operand of P V.
  MmaOperand operandFromAccumulators(ArrayRef<Value> values) {
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
  /// The value an operand element takes, from the tile element `x` at
  /// (row, col) of the tile.
  using ElementTransform =
      llvm::function_ref<Value(Value x, Value row, Value col)>;
  /// The registers of an mma operand read element by element from `tile`
  /// (after `prefix` indices): element e of register r is
  /// tile[row0 + row(r, e)][col0 + col(r, e)], with (row, col) the
  /// operand's fragment coordinate for this lane (MmaLayout.h) transposed
  /// when `transposed` (B operands held as N x K, like K for Q K^T). Each
  /// element passes through `transform` when given, then is rounded to the
  /// operand type or, with split f32, split into bf16 pairs.
  MmaOperand loadElementwiseOperand(
      Value tile, ValueRange prefix, Value lane, Value row0, Value col0,
      int registers,
      llvm::function_ref<nvvm::MatrixCoord(int lane, int reg, int element)>
          coord,
      bool transposed, ElementTransform transform = nullptr) {
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
  /// A B + C for two fragments: with split operands the three products,
  /// the small terms first.
  SmallVector<Value> mma(const MmaOperand &a, const MmaOperand &bOp,
                         ArrayRef<Value> c) {
    if (a.lo.empty())
      return mma(a.hi, bOp.hi, c);
    SmallVector<Value> d = mma(a.lo, bOp.hi, c);
    d = mma(a.hi, bOp.lo, d);
    return mma(a.hi, bOp.hi, d);
  }

  /// D = A B + C on one m16n8k16 tile; C and D as 4 f32 (c[0][0], c[0][1],
  /// c[1][0], c[1][1]).
  SmallVector<Value> mma(ArrayRef<Value> a, ArrayRef<Value> bRegs,
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

  /// Combines `value` across the 4 lanes of a quad (the lanes that hold
  /// one row of a C fragment).
  Value quadReduce(Value value, bool max) {
    for (int32_t offset : {1, 2}) {
      Value other = gpu::ShuffleOp::create(b, value, offset, nvvm::kWarpSize,
                                           gpu::ShuffleMode::XOR)
                        .getShuffleResult();
      value = max ? Value(arith::MaximumFOp::create(b, value, other))
                  : Value(arith::AddFOp::create(b, value, other));
    }
    return value;
  }

  /// Starts cp.async copies of rows [row0, row0 + rows) of `src` (a
  /// q/k/v parameter) into `tile` (after `prefix` indices), 16 bytes per
  /// copy; rows at or past `validRows` are zero-filled.
  SmallVector<Value> copyTile(Value tile, ValueRange prefix, Value src,
                              Value batch, Value head, Value row0,
                              Value validRows, int64_t rows, int64_t width,
                              Value srcCol0 = Value()) {
    return copyRows(
        tile, prefix, src,
        [&](Value row, Value col) {
          return layoutIndices(layout, batch, head, rb.add(row0, row),
                               srcCol0 ? rb.add(srcCol0, col) : col);
        },
        validRows, rows, width);
  }

  /// The indices of the `src` element that tile row `row`, column `col`
  /// copies.
  using SourceIndices =
      llvm::function_ref<SmallVector<Value>(Value row, Value col)>;

  /// The threads that share copies (copyRows): `count` threads numbered
  /// by `thread`; count 0 means every thread of the CTA.
  struct CopyGroup {
    Value thread;
    int64_t count = 0;
  };
  CopyGroup copyGroup;

  /// Starts cp.async copies of `rows` rows of `width` elements of `src`
  /// into `tile` (after `prefix` indices), 16 bytes per copy: row r <
  /// `validRows` from the elements at sourceAt(r, c), the others zero-filled
  /// (their copies read row 0 and keep none of it).
  SmallVector<Value> copyRows(Value tile, ValueRange prefix, Value src,
                              SourceIndices sourceAt, Value validRows,
                              int64_t rows, int64_t width) {
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

  /// One 16-byte copy: chunk `chunk` of the tile, row-major.
  void copyChunk(Value tile, ValueRange prefix, Value src,
                 SourceIndices sourceAt, Value validRows, Value chunk,
                 int64_t chunksPerRow, SmallVector<Value> &tokens) {
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

  /// Waits for every cp.async copy this thread started.
  void waitForCopies() {
    Value group = nvgpu::DeviceAsyncCreateGroupOp::create(
        b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), ValueRange{});
    nvgpu::DeviceAsyncWaitOp::create(b, group, b.getI32IntegerAttr(0));
  }
  /// Waits for every cp.async group of this thread, then for the CTA.
  void waitForCopiesAndBarrier() {
    waitForCopies();
    if (config.wgmma)
      fenceForWgmma();
    barrier();
  }
  /// Commits the copies started so far as one cp.async group.
  void commitCopies(ValueRange tokens) {
    nvgpu::DeviceAsyncCreateGroupOp::create(
        b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tokens);
  }

  /// A q/k/v parameter with its last stride declared 1 (checked at launch),
  /// as cp.async needs contiguous 16-byte rows.
  Value withUnitInnerStride(Value memref) {
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

  /// for (i = threadId; i < count; i += threads) body(i)
  void forEachElement(int64_t count, llvm::function_ref<void(Value)> body) {
    forEachIndex(idx(0), idx(count), body);
  }
  /// forEachElement, handing the body up to `group` indices of a thread at
  /// once (its rounds r, r + 1, ...), so that it can issue their loads
  /// together before using any: a loop of one load per round waits out each
  /// load's latency in turn.
  void forEachElementGroup(int64_t count, int64_t group,
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
  /// for (i = begin + threadId; i < end; i += threads) body(i)
  void forEachIndex(Value begin, Value end, llvm::function_ref<void(Value)> body) {
    Value threads = idx(config.threads());
    Value count = rb.sub(arith::MaxSIOp::create(b, end, begin), begin);
    rb.loop(idx(0), arith::CeilDivUIOp::create(b, count, threads),
            [&](Value round) {
              Value i = rb.add(begin, rb.add(threadId, rb.mul(round, threads)));
              rb.ifThen(lessThan(i, end), [&] { body(i); });
            });
  }
  /// f32 values kept as bit patterns in the i32 words of a workspace.
  Value loadWordF32(Value words, Value index) {
    return arith::BitcastOp::create(
        b, f32, memref::LoadOp::create(b, words, ValueRange{index}));
  }
  void storeWordF32(Value value, Value words, Value index) {
    memref::StoreOp::create(b,
                            arith::BitcastOp::create(b, b.getI32Type(), value),
                            words, ValueRange{index});
  }
  /// An element of a shared tile as f32.
  Value loadF32(Value tile, ValueRange at) {
    Value value = memref::LoadOp::create(b, tile, at);
    return value.getType().isF32()
               ? value
               : Value(arith::ExtFOp::create(b, f32, value));
  }
  /// Stores an f32 value into a shared tile, rounded to its element type.
  void storeElement(Value value, Value tile, ValueRange at) {
    Type element = cast<MemRefType>(tile.getType()).getElementType();
    if (element != value.getType())
      value = arith::TruncFOp::create(b, element, value);
    memref::StoreOp::create(b, value, tile, at);
  }

  /// The CTA's dynamic shared memory.
  Value sharedBase() {
    auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(),
                                                gpu::AddressSpace::Workgroup);
    return gpu::DynamicSharedMemoryOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                           MemRefLayoutAttrInterface(), workgroup));
  }
  /// A static tile of shared memory at byte `offset` of `base`.
  Value sharedTile(Value base, int64_t offset, ArrayRef<int64_t> tileShape,
                   Type element) {
    Attribute space = gpu::AddressSpaceAttr::get(b.getContext(),
                                                 gpu::AddressSpace::Workgroup);
    return memref::ViewOp::create(
        b, MemRefType::get(tileShape, element, MemRefLayoutAttrInterface(), space),
        base, idx(offset), ValueRange{});
  }

  /// A tile of `rows` x `cols` elements (multiples of 8) stored as 8x8
  /// core matrices, the unswizzled layout wgmma reads (MmaLayout.h):
  /// element (r, c) at byte (r / 8) cols 16 + (c / 8) 128 + (r % 8) 16 +
  /// (c % 8) 2, i.e. a memref [prefix..., rows / 8, cols / 8, 8, 8]. As a
  /// K-major operand (rows = M or N, cols = K) its LBO is 128 and its SBO
  /// cols 16; as an MN-major one (rows = K, cols = N) the reverse.
  Value coreMatrixTile(Value base, int64_t offset,
                       ArrayRef<int64_t> prefixShape, int64_t rows,
                       int64_t cols, Type element) {
    SmallVector<int64_t> tileShape(prefixShape);
    tileShape.append({rows / 8, cols / 8, 8, 8});
    Value tile = sharedTile(base, offset, tileShape, element);
    coreMatrixTiles.insert(tile);
    return tile;
  }
  /// The memref indices of element (row, col) of `tile` (after `prefix`).
  SmallVector<Value> tileIndices(Value tile, ValueRange prefix, Value row,
                                 Value col) {
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

  Value i64(int64_t value) {
    return arith::ConstantIntOp::create(b, b.getI64Type(), value);
  }
  /// The shared-memory address of `tile` as i64.
  Value sharedAddress(Value tile) {
    return arith::IndexCastOp::create(
        b, b.getI64Type(),
        memref::ExtractAlignedPointerAsIndexOp::create(b, tile));
  }
  /// The wgmma matrix descriptor of an unswizzled operand at shared
  /// `address` (i64) with the given LBO and SBO in bytes.
  Value wgmmaDescriptor(Value address, int64_t leadingBytes,
                        int64_t strideBytes) {
    nvvm::SharedOperand operand;
    operand.leadingBytes = leadingBytes;
    operand.strideBytes = strideBytes;
    Value start = arith::ShRUIOp::create(
        b, arith::AndIOp::create(b, address, i64(0x3FFFF)), i64(4));
    return arith::OrIOp::create(
        b, start, i64(static_cast<int64_t>(nvvm::wgmmaDescriptor(0, operand))));
  }
  /// Orders earlier register writes before the next wgmma.
  void wgmmaFence() { NVVM::WgmmaFenceAlignedOp::create(b); }
  /// Commits the wgmma issued since the last commit as one group.
  void wgmmaCommit() { NVVM::WgmmaGroupSyncAlignedOp::create(b); }
  /// Waits until at most `pending` committed groups are in flight.
  void wgmmaWait(int64_t pending) {
    NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(pending));
  }
  /// mbarrier objects (sm_90), 8 bytes each from byte `mbarrierOffset` of
  /// shared memory. `id` is an index.
  int64_t mbarrierOffset = 0;
  Value mbarrierPointer(Value id) {
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
  /// Sets up mbarrier `id` for `count` arrivals per phase (one thread does
  /// this; a CTA barrier then publishes it).
  void mbarrierInit(Value id, int64_t count) {
    NVVM::MBarrierInitOp::create(b, mbarrierPointer(id), i32(count), Value());
  }
  void mbarrierArrive(Value id) {
    NVVM::MBarrierArriveOp::create(b, b.getI64Type(), mbarrierPointer(id),
                                   Value());
  }
  /// Arrives on mbarrier `id` once this thread's earlier cp.async copies
  /// have landed (cp.async.mbarrier.arrive.noinc: the arrival is one of the
  /// phase's count).
  void mbarrierArriveAfterCopies(Value id) {
    NVVM::CpAsyncMBarrierArriveOp::create(b, mbarrierPointer(id),
                                          /*noinc=*/true);
  }
  /// Waits until the phase of mbarrier `id` whose parity is `parity` (an
  /// index, 0 or 1) has completed. A barrier starts in phase 0, so waiting
  /// for parity 1 returns at once: "the phase before the first".
  void mbarrierWait(Value id, Value parity) {
    Value parity32 = arith::IndexCastOp::create(b, b.getI32Type(), parity);
    NVVM::MBarrierTryWaitParityOp::create(b, mbarrierPointer(id), parity32,
                                          i32(0x989680));
  }
  /// Makes the generic-proxy writes this thread has seen (cp.async copies
  /// published by an mbarrier) visible to its wgmma, which read shared
  /// memory through the async proxy.
  void fenceForWgmma() {
    NVVM::FenceProxyOp::create(
        b,
        NVVM::ProxyKindAttr::get(b.getContext(), NVVM::ProxyKind::async_shared),
        NVVM::SharedSpaceAttr::get(b.getContext(),
                                   NVVM::SharedSpace::shared_cta));
  }
  /// setmaxnreg: hands registers to (`increase`) or takes them from this
  /// warpgroup; every warpgroup of the CTA must adjust (sm_90a).
  void setMaxRegisters(int64_t count, bool increase) {
    NVVM::SetMaxRegisterOp::create(b, static_cast<uint32_t>(count),
                                   increase
                                       ? NVVM::SetMaxRegisterAction::increase
                                       : NVVM::SetMaxRegisterAction::decrease);
  }

  void wgmmaCommitAndWait() {
    wgmmaCommit();
    wgmmaWait(0);
  }
  /// acc += A B on the warpgroup: wgmma.mma_async.m64n{N}k16 with f32
  /// accumulators (`acc`: N / 2 per thread, in wgmmaDCoord order). A comes
  /// from `aRegisters` (4 per thread, wgmmaACoord) or, when they are empty,
  /// through `descA` (K-major); B through `descB`, K-major or MN-major when
  /// `transposeB`. Between wgmmaFence and wgmmaCommitAndWait.
  ///
  /// Inline PTX: the NVVM dialect's wgmma op takes A only as a descriptor.
  SmallVector<Value> wgmma(Value descA, ArrayRef<Value> aRegisters, Value descB,
                           bool transposeB, ArrayRef<Value> acc) {
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

  LoweringBuilder &rb;
  ImplicitLocOpBuilder &b;
  const WarpConfig &config;
  Type f32;
  Layout layout = Layout::bhnd;
  Value threadId;
  /// The tiles made by coreMatrixTile.
  llvm::DenseSet<Value> coreMatrixTiles;
};

/// The function a GPU strategy fills for a kernel `name` taking `argTypes`
/// (the calling convention): a gpu.func kernel in the module's gpu.module
/// @attnc_kernels (created on first use).
Operation *createKernelFunction(ModuleOp module, StringRef name, Location loc,
                                ArrayRef<Type> argTypes,
                                const WarpConfig &config,
                                gpu::GPUModuleOp &gpuModule);

struct LaunchFacts;
/// The workspace argument of segmented kernels (after the status words).
MemRefType workspaceType(MLIRContext *context);

/// Replaces `kernel` by its kernel function (createKernelFunction) carrying
/// `facts`; `buildBody` fills the body for the family op, given the result
/// buffers and the workspace (null unless `facts` are segmented). Fails, with an internal
/// error on the kernel, when a shared tile of the body reaches past
/// `facts.sharedBytes`.
mlir::LogicalResult
lowerToKernelFunction(KernelOp kernel, const WarpConfig &config,
                      gpu::GPUModuleOp &gpuModule, const LaunchFacts &facts,
                      llvm::function_ref<void(Operation *, LoweringBuilder &,
                                              ValueRange, Value)>
                          buildBody);

/// Launch facts every GPU kernel carries (read by GpuCompiler and the
/// emulator): threads, dynamic shared memory, the grid as three
/// [param, dim, divisor, minus] entries (ceil(dim(param, dim) / divisor) -
/// minus; divisor 0 means the axis is 1), the parameters copied in 16-byte
/// rows, the cu_seqlens parameters and the head dim of q and k.
struct LaunchFacts {
  int64_t threads = 0, sharedBytes = 0;
  std::array<std::array<int64_t, 4>, 3> grid{};
  SmallVector<int64_t> copiedParams, offsetParams;
  int64_t headDim = 1;
  /// A result with one entry per packed sequence, or -1.
  int64_t sequenceResult = -1;
  /// Segmented and key-split kernels (GpuImage::segments): grid x is
  /// multiplied by this [param, dim, divisor, minus] term (divisor 0: no
  /// split), and each CTA leaves `segmentStateBytes` in the workspace.
  std::array<int64_t, 4> segments{};
  int64_t segmentStateBytes = 0;
  /// Key splits chosen at launch (split-keys=auto): `segments` counts key
  /// blocks, the most splits there can be (GpuImage::splitsAtLaunch).
  bool splitsAtLaunch = false;
  /// Query heads of a GQA group packed into a CTA's rows: grid x's size is
  /// multiplied by the group size (GpuImage::packsQueryHeads).
  bool packsQueryHeads = false;
};
void setLaunchAttributes(Operation *func, const LaunchFacts &facts);

/// The tensor-core requirements on q, k and v: one element type (f16,
/// bf16, or f32, which `config` then splits into bf16 pairs), fixed head
/// dims that are multiples of 16 up to `maxHeadDim`. Returns why they are
/// not met, or "" with the operand type in `config` and the head dims.
std::string checkTensorCoreOperands(Operation *familyOp, int64_t maxHeadDim,
                                    WarpConfig &config, int64_t &dimK,
                                    int64_t &dimV);

/// Block-argument position of a kernel parameter.
inline int64_t paramIndex(Value value) {
  return static_cast<int64_t>(mlir::cast<BlockArgument>(value).getArgNumber());
}

} // namespace attnc::lowering

#endif // ATTNC_TARGET_NVVM_WARPBUILDER_H
