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
  Value operand(Value pair);

  Value i32(int64_t value) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), value);
  }
  Value threadIndex() { return gpu::ThreadIdOp::create(b, gpu::Dimension::x); }
  Value blockIndex(gpu::Dimension dim) { return gpu::BlockIdOp::create(b, dim); }
  /// The grid's size along `dim` (CTAs).
  Value gridSize(gpu::Dimension dim) { return gpu::GridDimOp::create(b, dim); }
  void barrier() { gpu::BarrierOp::create(b); }
  /// Rounds two f32 values into one operand register.
  Value pack(Value x, Value y);

  /// ldmatrix of `count` 8x8 matrices; this lane supplies the address of
  /// row (row, col) of `tile` (after `prefix` indices).
  SmallVector<Value> ldmatrix(Value tile, ValueRange prefix, Value row,
                              Value col, int count, bool transpose);

  /// The A operand of mma for the 16x16 block of `tile` (after `prefix`
  /// indices) at (row0, col0), from one ldmatrix.x4: lanes 0-7, 8-15, 16-23
  /// and 24-31 address rows 0-7 and 8-15 of the left 8 columns, then of the
  /// right 8.
  SmallVector<Value> loadAOperand(Value tile, Value lane, Value row0,
                                  Value col0, ValueRange prefix = {});

  /// An mma operand's registers: `hi` alone from 16-bit tiles; bf16x3
  /// operands (WarpConfig::splitF32) add the low parts in `lo`.
  struct MmaOperand {
    SmallVector<Value> hi, lo;
  };
  /// Two f32 values as one high and one low operand register.
  void appendSplit(Value x, Value y, MmaOperand &out);
  /// The A operand made of two adjacent C tiles (8 f32 values, the first
  /// tile's 4 registers, then the second's), rounded to the operand type or
  /// split: the FlashAttention-2 reuse of P as the A operand of P V.
  MmaOperand operandFromAccumulators(ArrayRef<Value> values);
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
      bool transposed, ElementTransform transform = nullptr);
  /// A B + C for two fragments: with split operands the three products,
  /// the small terms first.
  SmallVector<Value> mma(const MmaOperand &a, const MmaOperand &bOp,
                         ArrayRef<Value> c);

  /// D = A B + C on one m16n8k16 tile; C and D as 4 f32 (c[0][0], c[0][1],
  /// c[1][0], c[1][1]).
  SmallVector<Value> mma(ArrayRef<Value> a, ArrayRef<Value> bRegs,
                         ArrayRef<Value> c);

  /// Combines `value` across the 4 lanes of a quad (the lanes that hold
  /// one row of a C fragment).
  Value quadReduce(Value value, bool max);

  /// Starts cp.async copies of rows [row0, row0 + rows) of `src` (a
  /// q/k/v parameter) into `tile` (after `prefix` indices), 16 bytes per
  /// copy; rows at or past `validRows` are zero-filled.
  SmallVector<Value> copyTile(Value tile, ValueRange prefix, Value src,
                              Value batch, Value head, Value row0,
                              Value validRows, int64_t rows, int64_t width,
                              Value srcCol0 = Value());

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
                              int64_t rows, int64_t width);

  /// One 16-byte copy: chunk `chunk` of the tile, row-major.
  void copyChunk(Value tile, ValueRange prefix, Value src,
                 SourceIndices sourceAt, Value validRows, Value chunk,
                 int64_t chunksPerRow, SmallVector<Value> &tokens);

  /// Waits for every cp.async copy this thread started.
  void waitForCopies();
  /// Waits for every cp.async group of this thread, then for the CTA.
  void waitForCopiesAndBarrier();
  /// Commits the copies started so far as one cp.async group.
  void commitCopies(ValueRange tokens);

  /// A q/k/v parameter with its last stride declared 1 (checked at launch),
  /// as cp.async needs contiguous 16-byte rows.
  Value withUnitInnerStride(Value memref);

  /// for (i = threadId; i < count; i += threads) body(i)
  void forEachElement(int64_t count, llvm::function_ref<void(Value)> body);
  /// forEachElement, handing the body up to `group` indices of a thread at
  /// once (its rounds r, r + 1, ...), so that it can issue their loads
  /// together before using any: a loop of one load per round waits out each
  /// load's latency in turn.
  void forEachElementGroup(int64_t count, int64_t group,
                           llvm::function_ref<void(ArrayRef<Value>)> body);
  /// for (i = begin + threadId; i < end; i += threads) body(i)
  void forEachIndex(Value begin, Value end, llvm::function_ref<void(Value)> body);
  /// f32 values kept as bit patterns in the i32 words of a workspace.
  Value loadWordF32(Value words, Value index);
  void storeWordF32(Value value, Value words, Value index);
  /// An element of a shared tile as f32.
  Value loadF32(Value tile, ValueRange at);
  /// Stores an f32 value into a shared tile, rounded to its element type.
  void storeElement(Value value, Value tile, ValueRange at);

  /// The CTA's dynamic shared memory.
  Value sharedBase();
  /// A static tile of shared memory at byte `offset` of `base`.
  Value sharedTile(Value base, int64_t offset, ArrayRef<int64_t> tileShape,
                   Type element);

  /// A tile of `rows` x `cols` elements (multiples of 8) stored as 8x8
  /// core matrices, the unswizzled layout wgmma reads (MmaLayout.h):
  /// element (r, c) at byte (r / 8) cols 16 + (c / 8) 128 + (r % 8) 16 +
  /// (c % 8) 2, i.e. a memref [prefix..., rows / 8, cols / 8, 8, 8]. As a
  /// K-major operand (rows = M or N, cols = K) its LBO is 128 and its SBO
  /// cols 16; as an MN-major one (rows = K, cols = N) the reverse.
  Value coreMatrixTile(Value base, int64_t offset,
                       ArrayRef<int64_t> prefixShape, int64_t rows,
                       int64_t cols, Type element);
  /// The memref indices of element (row, col) of `tile` (after `prefix`).
  SmallVector<Value> tileIndices(Value tile, ValueRange prefix, Value row,
                                 Value col);

  Value i64(int64_t value) {
    return arith::ConstantIntOp::create(b, b.getI64Type(), value);
  }
  /// The shared-memory address of `tile` as i64.
  Value sharedAddress(Value tile);
  /// The wgmma matrix descriptor of an unswizzled operand at shared
  /// `address` (i64) with the given LBO and SBO in bytes.
  Value wgmmaDescriptor(Value address, int64_t leadingBytes,
                        int64_t strideBytes);
  /// Orders earlier register writes before the next wgmma.
  void wgmmaFence() { NVVM::WgmmaFenceAlignedOp::create(b); }
  /// Commits the wgmma issued since the last commit as one group.
  void wgmmaCommit() { NVVM::WgmmaGroupSyncAlignedOp::create(b); }
  /// Waits until at most `pending` committed groups are in flight.
  void wgmmaWait(int64_t pending);
  /// mbarrier objects (sm_90), 8 bytes each from byte `mbarrierOffset` of
  /// shared memory. `id` is an index.
  int64_t mbarrierOffset = 0;
  Value mbarrierPointer(Value id);
  /// Sets up mbarrier `id` for `count` arrivals per phase (one thread does
  /// this; a CTA barrier then publishes it).
  void mbarrierInit(Value id, int64_t count);
  void mbarrierArrive(Value id);
  /// Arrives on mbarrier `id` once this thread's earlier cp.async copies
  /// have landed (cp.async.mbarrier.arrive.noinc: the arrival is one of the
  /// phase's count).
  void mbarrierArriveAfterCopies(Value id);
  /// Waits until the phase of mbarrier `id` whose parity is `parity` (an
  /// index, 0 or 1) has completed. A barrier starts in phase 0, so waiting
  /// for parity 1 returns at once: "the phase before the first".
  void mbarrierWait(Value id, Value parity);
  /// Makes the generic-proxy writes this thread has seen (cp.async copies
  /// published by an mbarrier) visible to its wgmma, which read shared
  /// memory through the async proxy.
  void fenceForWgmma();
  /// setmaxnreg: hands registers to (`increase`) or takes them from this
  /// warpgroup; every warpgroup of the CTA must adjust (sm_90a).
  void setMaxRegisters(int64_t count, bool increase);

  void wgmmaCommitAndWait();
  /// acc += A B on the warpgroup: wgmma.mma_async.m64n{N}k16 with f32
  /// accumulators (`acc`: N / 2 per thread, in wgmmaDCoord order). A comes
  /// from `aRegisters` (4 per thread, wgmmaACoord) or, when they are empty,
  /// through `descA` (K-major); B through `descB`, K-major or MN-major when
  /// `transposeB`. Between wgmmaFence and wgmmaCommitAndWait.
  ///
  /// Inline PTX: the NVVM dialect's wgmma op takes A only as a descriptor.
  SmallVector<Value> wgmma(Value descA, ArrayRef<Value> aRegisters, Value descB,
                           bool transposeB, ArrayRef<Value> acc);

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
  /// Results summed over CTAs from per-CTA copies in the workspace
  /// (GpuImage::partialResults).
  SmallVector<int64_t> partialResults;
  /// Each CTA's f32 scratch words, a size program (GpuImage::scratchWords).
  SmallVector<int64_t> scratchWords;
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
int64_t paramIndex(Value value);

} // namespace attnc::lowering

#endif // ATTNC_TARGET_NVVM_WARPBUILDER_H
