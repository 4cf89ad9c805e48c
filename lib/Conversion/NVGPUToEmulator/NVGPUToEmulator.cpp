//===- NVGPUToEmulator.cpp - GPU kernels as host code for the emulator ----===//
//
// The warp emulator must check the IR that becomes PTX, so the strategies
// build one kernel and this pass rewrites its GPU operations, one pattern
// per op, into host code with the same meaning: calls of the emulator's
// runtime (EmulatorAbi.def), or loads and stores. Fragment layouts, wgmma
// descriptors and mbarrier addresses stay as the strategies computed them.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/NVGPUToEmulator/EmulatorAbi.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Dialect/Attn/IR/AttnAttrs.h"
#include "attnc/Target/NVVM/MmaLayout.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/Transforms/DialectConversion.h"

namespace attnc {
#define GEN_PASS_DEF_NVGPUTOEMULATOR
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

Value i32Constant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIntOp::create(b, loc, b.getI32Type(), value);
}
Value i64Constant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIntOp::create(b, loc, b.getI64Type(), value);
}
Value toI32(OpBuilder &b, Location loc, Value value) {
  if (value.getType().isInteger(32))
    return value;
  if (isa<VectorType>(value.getType())) // two 16-bit elements
    return LLVM::BitcastOp::create(b, loc, b.getI32Type(), value);
  return arith::IndexCastOp::create(b, loc, b.getI32Type(), value);
}
/// An emulator index primitive (i64) as an index.
Value emulatedIndex(OpBuilder &b, Location loc, StringRef name,
                    ValueRange args) {
  return arith::IndexCastOp::create(
      b, loc, b.getIndexType(), callEmulatorFunction(b, loc, name, args));
}
int64_t axisOf(gpu::Dimension dim) {
  switch (dim) {
  case gpu::Dimension::x:
    return 0;
  case gpu::Dimension::y:
    return 1;
  case gpu::Dimension::z:
    return 2;
  }
  llvm_unreachable("a dimension");
}

/// Whether `memref` is the CTA's shared memory (the trailing argument of a
/// kernel moved by hostKernels) or a memref.view chain of it.
bool isSharedMemory(Value memref) {
  while (auto view = memref.getDefiningOp<memref::ViewOp>())
    memref = view.getSource();
  auto argument = dyn_cast<BlockArgument>(memref);
  if (!argument || !argument.getOwner()->isEntryBlock())
    return false;
  auto func = dyn_cast<func::FuncOp>(argument.getOwner()->getParentOp());
  return func && func->hasAttr(attn::kLaunchAttrName) &&
         argument.getArgNumber() == func.getNumArguments() - 1;
}

/// The byte offset of shared `memref` (isSharedMemory) in the CTA's shared
/// memory, as an index.
Value sharedByteOffset(OpBuilder &b, Location loc, Value memref) {
  auto view = memref.getDefiningOp<memref::ViewOp>();
  if (!view)
    return arith::ConstantIndexOp::create(b, loc, 0);
  return arith::AddIOp::create(b, loc, sharedByteOffset(b, loc, view.getSource()),
                               view.getByteShift());
}

/// The byte offset in shared memory of element `indices` of `memref`, as i64.
FailureOr<Value> sharedElementAddress(OpBuilder &b, Location loc, Value memref,
                                      ValueRange indices) {
  auto type = cast<MemRefType>(memref.getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (!isSharedMemory(memref) ||
      failed(type.getStridesAndOffset(strides, offset)) ||
      ShapedType::isDynamic(offset) ||
      llvm::any_of(strides, ShapedType::isDynamic))
    return failure();
  int64_t elementBytes = type.getElementTypeBitWidth() / 8;
  Value base = sharedByteOffset(b, loc, memref);
  Value linear = arith::ConstantIndexOp::create(b, loc, offset);
  for (auto [index, stride] : llvm::zip(indices, strides))
    linear = arith::AddIOp::create(
        b, loc, linear,
        arith::MulIOp::create(b, loc, index,
                              arith::ConstantIndexOp::create(b, loc, stride)));
  Value byte = arith::AddIOp::create(
      b, loc, base,
      arith::MulIOp::create(
          b, loc, linear, arith::ConstantIndexOp::create(b, loc, elementBytes)));
  return Value(arith::IndexCastOp::create(b, loc, b.getI64Type(), byte));
}

/// A shared-memory pointer (an mbarrier's) as the emulator's i32 byte.
Value sharedPointerByte(OpBuilder &b, Location loc, Value pointer) {
  Value address = LLVM::PtrToIntOp::create(b, loc, b.getI64Type(), pointer);
  return arith::TruncIOp::create(b, loc, b.getI32Type(), address);
}

/// A struct of `values` of `type` (an LLVM literal struct).
Value makeStruct(OpBuilder &b, Location loc, Type type, ValueRange values) {
  Value result = LLVM::PoisonOp::create(b, loc, type);
  for (auto [position, value] : llvm::enumerate(values))
    result = LLVM::InsertValueOp::create(b, loc, result, value,
                                         ArrayRef<int64_t>{int64_t(position)});
  return result;
}

//===----------------------------------------------------------------------===//
// gpu
//===----------------------------------------------------------------------===//

struct ThreadIdLowering : OpConversionPattern<gpu::ThreadIdOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(gpu::ThreadIdOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (op.getDimension() != gpu::Dimension::x)
      return rewriter.notifyMatchFailure(op, "CTAs are one-dimensional");
    rewriter.replaceOp(op, emulatedIndex(rewriter, op.getLoc(),
                                         "attnc_emu_thread_id", {}));
    return success();
  }
};

template <typename OpTy>
struct GridIndexLowering : OpConversionPattern<OpTy> {
  GridIndexLowering(MLIRContext *context, StringRef function)
      : OpConversionPattern<OpTy>(context), function(function) {}
  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    rewriter.replaceOp(
        op, emulatedIndex(rewriter, loc, function,
                          i64Constant(rewriter, loc, axisOf(op.getDimension()))));
    return success();
  }
  StringRef function;
};

struct BarrierLowering : OpConversionPattern<gpu::BarrierOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(gpu::BarrierOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    callEmulatorFunction(rewriter, op.getLoc(), "attnc_emu_barrier", {});
    rewriter.eraseOp(op);
    return success();
  }
};

struct ShuffleLowering : OpConversionPattern<gpu::ShuffleOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(gpu::ShuffleOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    std::optional<int64_t> width = getConstantIntValue(op.getWidth());
    if (op.getMode() != gpu::ShuffleMode::XOR ||
        !op.getValue().getType().isF32() || width != nvvm::kWarpSize)
      return rewriter.notifyMatchFailure(
          op, "the emulator has xor shuffles of f32 across the warp");
    Location loc = op.getLoc();
    Value other = callEmulatorFunction(
        rewriter, loc, "attnc_emu_shfl_xor",
        {adaptor.getValue(), toI32(rewriter, loc, adaptor.getOffset())});
    Value valid = arith::ConstantIntOp::create(rewriter, loc, 1, 1);
    rewriter.replaceOp(op, {other, valid});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nvgpu
//===----------------------------------------------------------------------===//

/// ldmatrix.x{count}: each lane hands the emulator the address of its row;
/// register r comes back as two 16-bit elements.
struct LdMatrixLowering : OpConversionPattern<nvgpu::LdMatrixOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(nvgpu::LdMatrixOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    FailureOr<Value> address = sharedElementAddress(
        rewriter, loc, op.getSrcMemref(), adaptor.getIndices());
    if (failed(address))
      return rewriter.notifyMatchFailure(
          op, "reads no static tile of shared memory");
    VectorType type = op.getRes().getType();
    auto pairType = VectorType::get({2}, type.getElementType());
    Value result = ub::PoisonOp::create(rewriter, loc, type);
    int64_t count = op.getNumTiles();
    for (int64_t r = 0; r < count; ++r) {
      Value reg = callEmulatorFunction(
          rewriter, loc, "attnc_emu_ldmatrix",
          {*address, i32Constant(rewriter, loc, count),
           i32Constant(rewriter, loc, op.getTranspose()),
           i32Constant(rewriter, loc, r)});
      Value pair = LLVM::BitcastOp::create(rewriter, loc, pairType, reg);
      result = vector::InsertOp::create(rewriter, loc, pair, result,
                                        ArrayRef<int64_t>{r});
    }
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// cp.async of `dstElements` contiguous elements, the last `dstElements -
/// srcElements` zero-filled, done at once.
struct AsyncCopyLowering : OpConversionPattern<nvgpu::DeviceAsyncCopyOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(nvgpu::DeviceAsyncCopyOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Type element = op.getDst().getType().getElementType();
    Value srcElements = adaptor.getSrcElements();
    auto shifted = [&](ValueRange indices, int64_t e) {
      SmallVector<Value> at(indices);
      at.back() = arith::AddIOp::create(
          rewriter, loc, at.back(), arith::ConstantIndexOp::create(rewriter, loc, e));
      return at;
    };
    for (int64_t e = 0, n = op.getDstElements().getZExtValue(); e < n; ++e) {
      SmallVector<Value> from = shifted(adaptor.getSrcIndices(), e);
      auto load = [&](OpBuilder &b, Location loc) {
        scf::YieldOp::create(
            b, loc, ValueRange{memref::LoadOp::create(b, loc, adaptor.getSrc(), from)});
      };
      Value value;
      if (!srcElements) {
        value = memref::LoadOp::create(rewriter, loc, adaptor.getSrc(), from);
      } else {
        Value copied = arith::CmpIOp::create(
            rewriter, loc, arith::CmpIPredicate::ult,
            arith::ConstantIndexOp::create(rewriter, loc, e), srcElements);
        value = scf::IfOp::create(
                    rewriter, loc, copied, load,
                    [&](OpBuilder &b, Location loc) {
                      scf::YieldOp::create(
                          b, loc,
                          ValueRange{arith::ConstantOp::create(
                              b, loc, element, b.getZeroAttr(element))});
                    })
                    .getResult(0);
      }
      memref::StoreOp::create(rewriter, loc, value, adaptor.getDst(),
                              shifted(adaptor.getDstIndices(), e));
    }
    rewriter.replaceOp(op, ub::PoisonOp::create(rewriter, loc, op.getType()));
    return success();
  }
};

/// Copies are complete when issued: a group is a token of nothing.
struct AsyncGroupLowering
    : OpConversionPattern<nvgpu::DeviceAsyncCreateGroupOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(nvgpu::DeviceAsyncCreateGroupOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    rewriter.replaceOp(op,
                       ub::PoisonOp::create(rewriter, op.getLoc(), op.getType()));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nvvm
//===----------------------------------------------------------------------===//

/// mma.sync.m16n8k16 with f32 accumulators: one call per result register.
struct MmaLowering : OpConversionPattern<NVVM::MmaOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(NVVM::MmaOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    std::optional<NVVM::MMATypes> type = op.getMultiplicandAPtxType();
    NVVM::MMAShapeAttr shape = op.getShape();
    if (shape.getM() != nvvm::kMmaM || shape.getN() != nvvm::kMmaN ||
        shape.getK() != nvvm::kMmaK || adaptor.getOperandA().size() != 4 ||
        adaptor.getOperandB().size() != 2 || adaptor.getOperandC().size() != 4 ||
        !llvm::all_of(adaptor.getOperandC().getTypes(),
                      [](Type t) { return t.isF32(); }) ||
        (type != NVVM::MMATypes::bf16 && type != NVVM::MMATypes::f16))
      return rewriter.notifyMatchFailure(
          op, "the emulator has m16n8k16 with 16-bit operands and f32 "
              "accumulators");
    Location loc = op.getLoc();
    SmallVector<Value> args;
    for (Value reg : llvm::concat<Value>(adaptor.getOperandA(),
                                         adaptor.getOperandB()))
      args.push_back(toI32(rewriter, loc, reg));
    llvm::append_range(args, adaptor.getOperandC());
    args.push_back(i32Constant(rewriter, loc, type == NVVM::MMATypes::bf16));
    args.push_back(Value());
    SmallVector<Value> d;
    for (int64_t which = 0; which < 4; ++which) {
      args.back() = i32Constant(rewriter, loc, which);
      d.push_back(callEmulatorFunction(rewriter, loc, "attnc_emu_mma", args));
    }
    rewriter.replaceOp(op, makeStruct(rewriter, loc, op.getType(), d));
    return success();
  }
};

/// The wgmma inline PTX of nvvm::wgmmaAsmText, recognised by its exact text
/// and constraints.
struct WgmmaLowering : OpConversionPattern<LLVM::InlineAsmOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(LLVM::InlineAsmOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    auto resultType =
        dyn_cast_or_null<LLVM::LLVMStructType>(op.getRes() ? op.getRes().getType()
                                                           : Type());
    if (!resultType)
      return rewriter.notifyMatchFailure(op, "is not a wgmma");
    int n = 2 * static_cast<int>(resultType.getBody().size());
    for (bool bf16 : {true, false})
      for (bool fromRegisters : {true, false})
        for (bool transposeB : {false, true}) {
          if (op.getAsmString() !=
                  nvvm::wgmmaAsmText(n, bf16, fromRegisters, transposeB) ||
              op.getConstraints() !=
                  nvvm::wgmmaAsmConstraints(n, fromRegisters))
            continue;
          return rewrite(op, adaptor.getOperands(), n, bf16, fromRegisters,
                         transposeB, rewriter);
        }
    return rewriter.notifyMatchFailure(op, "is not a wgmma");
  }

  LogicalResult rewrite(LLVM::InlineAsmOp op, ValueRange operands, int n,
                        bool bf16, bool fromRegisters, bool transposeB,
                        ConversionPatternRewriter &rewriter) const {
    Location loc = op.getLoc();
    // A (4 registers or a descriptor), B's descriptor, scale-d, then the
    // accumulators.
    size_t aCount = fromRegisters ? 4 : 1;
    Value descB = operands[aCount];
    if (getConstantIntValue(operands[aCount + 1]) != 1)
      return rewriter.notifyMatchFailure(op, "the emulator's wgmma accumulates");
    ValueRange acc = operands.drop_front(aCount + 2);
    for (auto [reg, value] : llvm::enumerate(acc))
      callEmulatorFunction(rewriter, loc, "attnc_emu_wgmma_set",
                           {i32Constant(rewriter, loc, reg), value});
    Value zero = i32Constant(rewriter, loc, 0);
    SmallVector<Value> args = {fromRegisters ? i64Constant(rewriter, loc, 0)
                                             : operands[0]};
    for (size_t r = 0; r < 4; ++r)
      args.push_back(fromRegisters ? operands[r] : zero);
    llvm::append_range(args, ArrayRef<Value>{
                                 i32Constant(rewriter, loc, fromRegisters), descB,
                                 i32Constant(rewriter, loc, n),
                                 i32Constant(rewriter, loc, transposeB),
                                 i32Constant(rewriter, loc, bf16)});
    callEmulatorFunction(rewriter, loc, "attnc_emu_wgmma", args);
    SmallVector<Value> out;
    for (size_t reg = 0; reg < acc.size(); ++reg)
      out.push_back(callEmulatorFunction(rewriter, loc, "attnc_emu_wgmma_get",
                                         {i32Constant(rewriter, loc, reg)}));
    rewriter.replaceOp(op, makeStruct(rewriter, loc, op.getRes().getType(), out));
    return success();
  }
};

struct WgmmaCommitLowering : OpConversionPattern<NVVM::WgmmaGroupSyncAlignedOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(NVVM::WgmmaGroupSyncAlignedOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    callEmulatorFunction(rewriter, op.getLoc(), "attnc_emu_wgmma_commit", {});
    rewriter.eraseOp(op);
    return success();
  }
};

struct WgmmaWaitLowering : OpConversionPattern<NVVM::WgmmaWaitGroupSyncOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(NVVM::WgmmaWaitGroupSyncOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    callEmulatorFunction(
        rewriter, op.getLoc(), "attnc_emu_wgmma_wait",
        {i32Constant(rewriter, op.getLoc(), static_cast<int64_t>(op.getGroup()))});
    rewriter.eraseOp(op);
    return success();
  }
};

struct MBarrierInitLowering : OpConversionPattern<NVVM::MBarrierInitOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(NVVM::MBarrierInitOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (adaptor.getPredicate())
      return rewriter.notifyMatchFailure(op, "has a predicate");
    Location loc = op.getLoc();
    callEmulatorFunction(rewriter, loc, "attnc_emu_mbarrier_init",
                         {sharedPointerByte(rewriter, loc, adaptor.getAddr()),
                          adaptor.getCount()});
    rewriter.eraseOp(op);
    return success();
  }
};

/// mbarrier.arrive, and cp.async.mbarrier.arrive.noinc (the copies have
/// landed when issued).
template <typename OpTy>
struct MBarrierArriveLowering : OpConversionPattern<OpTy> {
  using OpConversionPattern<OpTy>::OpConversionPattern;
  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    if constexpr (std::is_same_v<OpTy, NVVM::MBarrierArriveOp>) {
      if (adaptor.getCount() || op->getNumResults() != 1)
        return rewriter.notifyMatchFailure(op, "arrives more than once");
    } else if (!op.getNoinc()) {
      return rewriter.notifyMatchFailure(op, "is not .noinc");
    }
    callEmulatorFunction(rewriter, loc, "attnc_emu_mbarrier_arrive",
                         {sharedPointerByte(rewriter, loc, adaptor.getAddr())});
    SmallVector<Value> state;
    for (Type type : op->getResultTypes()) // the arrival's state: unused
      state.push_back(ub::PoisonOp::create(rewriter, loc, type));
    rewriter.replaceOp(op, state);
    return success();
  }
};

struct MBarrierWaitLowering : OpConversionPattern<NVVM::MBarrierTryWaitParityOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(NVVM::MBarrierTryWaitParityOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    callEmulatorFunction(rewriter, loc, "attnc_emu_mbarrier_wait",
                         {sharedPointerByte(rewriter, loc, adaptor.getAddr()),
                          adaptor.getPhase()});
    rewriter.eraseOp(op);
    return success();
  }
};

/// Operations with no effect in the emulator, whose threads run one at a
/// time and whose copies and wgmma complete when issued: fences, the
/// wgmma register fence, cp.async waits and setmaxnreg.
template <typename OpTy> struct EraseLowering : OpConversionPattern<OpTy> {
  using OpConversionPattern<OpTy>::OpConversionPattern;
  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    rewriter.eraseOp(op);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// memref and llvm
//===----------------------------------------------------------------------===//

/// A shared memref's aligned pointer is its byte offset in shared memory.
struct SharedPointerLowering
    : OpConversionPattern<memref::ExtractAlignedPointerAsIndexOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(memref::ExtractAlignedPointerAsIndexOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (!isSharedMemory(op.getSource()))
      return rewriter.notifyMatchFailure(op, "is not of shared memory");
    rewriter.replaceOp(op, sharedByteOffset(rewriter, op.getLoc(), op.getSource()));
    return success();
  }
};

/// An acquire load waits for a flag another CTA releases; the emulator has
/// run that CTA already, so the flag must be set.
struct AcquireLoadLowering : OpConversionPattern<LLVM::LoadOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(LLVM::LoadOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (!op.getType().isInteger(32))
      return rewriter.notifyMatchFailure(op, "flags are i32");
    Location loc = op.getLoc();
    Value flag = LLVM::LoadOp::create(rewriter, loc, op.getType(),
                                      adaptor.getAddr(), op.getAlignment().value_or(0));
    callEmulatorFunction(rewriter, loc, "attnc_emu_expect_published", {flag});
    rewriter.replaceOp(op, flag);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

/// `type` without a GPU address space (the emulator's memory is the host's).
Type hostType(Type type) {
  auto memref = dyn_cast<MemRefType>(type);
  if (!memref || !isa_and_nonnull<gpu::AddressSpaceAttr>(memref.getMemorySpace()))
    return type;
  return MemRefType::get(memref.getShape(), memref.getElementType(),
                         memref.getLayout());
}

/// Moves each gpu.func of `gpuModule` to a func.func at the end of `module`
/// whose trailing memref<?xi8> argument is the CTA's shared memory.
LogicalResult hostKernels(ModuleOp module, gpu::GPUModuleOp gpuModule) {
  OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());
  for (auto kernel :
       llvm::make_early_inc_range(gpuModule.getOps<gpu::GPUFuncOp>())) {
    if (kernel.getNumWorkgroupAttributions() ||
        kernel.getNumPrivateAttributions())
      return kernel.emitError(
          "the emulator has dynamic shared memory only (no attributions)");
    if (!kernel->hasAttr(attn::kLaunchAttrName))
      return kernel.emitError("carries no launch facts (attn.launch)");
    auto shared =
        MemRefType::get({ShapedType::kDynamic}, builder.getI8Type());
    SmallVector<Type> types(kernel.getArgumentTypes());
    types.push_back(shared);
    auto func = func::FuncOp::create(builder, kernel.getLoc(), kernel.getName(),
                                     builder.getFunctionType(types, {}));
    func->setAttr(attn::kLaunchAttrName,
                  kernel->getAttr(attn::kLaunchAttrName));
    func->setAttr("llvm.emit_c_interface", builder.getUnitAttr());
    func.getBody().takeBody(kernel.getBody());
    Value sharedArgument = func.front().addArgument(shared, kernel.getLoc());
    func.walk([&](Operation *op) {
      if (isa<gpu::DynamicSharedMemoryOp>(op)) {
        op->getResult(0).replaceAllUsesWith(sharedArgument);
        op->erase();
      } else if (isa<gpu::ReturnOp>(op)) {
        OpBuilder b(op);
        func::ReturnOp::create(b, op->getLoc());
        op->erase();
      }
    });
    kernel.erase();
  }
  return success();
}

struct NVGPUToEmulatorPass
    : public attnc::impl::NVGPUToEmulatorBase<NVGPUToEmulatorPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();
    for (auto gpuModule :
         llvm::make_early_inc_range(module.getOps<gpu::GPUModuleOp>())) {
      if (failed(hostKernels(module, gpuModule)))
        return signalPassFailure();
      gpuModule.erase();
    }
    module->removeAttr(gpu::GPUDialect::getContainerModuleAttrName());
    module.walk([](Operation *op) {
      for (Value result : op->getResults())
        result.setType(hostType(result.getType()));
      for (Region &region : op->getRegions())
        for (Block &block : region)
          for (BlockArgument argument : block.getArguments())
            argument.setType(hostType(argument.getType()));
    });
    // Calls are declared up front: a pattern may not insert into the module.
    SmallVector<func::FuncOp> declared;
#define ATTNC_EMULATOR_FUNCTION(NAME, ...)                                     \
  if (!module.lookupSymbol(#NAME))                                             \
    declared.push_back(declareEmulatorFunction(module, #NAME));
#include "attnc/Conversion/NVGPUToEmulator/EmulatorAbi.def"
#undef ATTNC_EMULATOR_FUNCTION

    ConversionTarget target(*context);
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    target.addIllegalDialect<gpu::GPUDialect, nvgpu::NVGPUDialect,
                             NVVM::NVVMDialect>();
    target.addIllegalOp<LLVM::FenceOp, LLVM::InlineAsmOp>();
    target.addDynamicallyLegalOp<LLVM::LoadOp>([](LLVM::LoadOp load) {
      return load.getOrdering() != LLVM::AtomicOrdering::acquire;
    });
    target.addDynamicallyLegalOp<memref::ExtractAlignedPointerAsIndexOp>(
        [](memref::ExtractAlignedPointerAsIndexOp op) {
          return !isSharedMemory(op.getSource());
        });
    RewritePatternSet patterns(context);
    patterns.add<ThreadIdLowering, BarrierLowering, ShuffleLowering,
                 LdMatrixLowering, AsyncCopyLowering, AsyncGroupLowering,
                 MmaLowering, WgmmaLowering, WgmmaCommitLowering,
                 WgmmaWaitLowering, MBarrierInitLowering,
                 MBarrierArriveLowering<NVVM::MBarrierArriveOp>,
                 MBarrierArriveLowering<NVVM::CpAsyncMBarrierArriveOp>,
                 MBarrierWaitLowering, SharedPointerLowering,
                 AcquireLoadLowering, EraseLowering<nvgpu::DeviceAsyncWaitOp>,
                 EraseLowering<NVVM::WgmmaFenceAlignedOp>,
                 EraseLowering<NVVM::FenceProxyOp>,
                 EraseLowering<NVVM::SetMaxRegisterOp>,
                 EraseLowering<LLVM::FenceOp>>(context);
    patterns.add<GridIndexLowering<gpu::BlockIdOp>>(context,
                                                    "attnc_emu_block_id");
    patterns.add<GridIndexLowering<gpu::GridDimOp>>(context,
                                                    "attnc_emu_grid_dim");
    if (failed(applyPartialConversion(module, target, std::move(patterns))))
      return signalPassFailure();
    // The tokens of cp.async groups and the states of mbarrier arrivals,
    // whose users are gone.
    module.walk([](ub::PoisonOp poison) {
      if (poison->use_empty())
        poison.erase();
    });
    for (func::FuncOp callee : declared)
      if (SymbolTable::symbolKnownUseEmpty(callee, module))
        callee.erase();
  }
};

} // namespace
