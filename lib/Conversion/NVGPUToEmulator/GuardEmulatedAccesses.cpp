//===- GuardEmulatedAccesses.cpp - Bounds checks for the emulator ---------===//
//
// The emulator runs GPU kernels in its own heap, where a tile index one row
// too far lands in the next tile or in some other allocation and nothing
// faults. Checking every index against its dim turns such a slip into a
// report naming the access, the indices and the shape.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/NVGPUToEmulator/EmulatorAbi.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "llvm/ADT/TypeSwitch.h"

namespace attnc {
#define GEN_PASS_DEF_GUARDEMULATEDACCESSES
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

/// The memref an access reads or writes and its indices.
struct Access {
  Value memref;
  ValueRange indices;
};

std::optional<Access> accessOf(Operation *op) {
  return llvm::TypeSwitch<Operation *, std::optional<Access>>(op)
      .Case([](memref::LoadOp load) {
        return Access{load.getMemRef(), load.getIndices()};
      })
      .Case([](memref::StoreOp store) {
        return Access{store.getMemRef(), store.getIndices()};
      })
      .Case([](memref::AtomicRMWOp rmw) {
        return Access{rmw.getMemref(), rmw.getIndices()};
      })
      .Default([](Operation *) { return std::nullopt; });
}

/// What the access touches, for the report: the function argument it is a
/// view or cast of (with the view's byte offset), or a local buffer.
DictionaryAttr describeSite(Operation *op, Value memref) {
  MLIRContext *context = op->getContext();
  Builder b(context);
  SmallVector<NamedAttribute> fields = {
      b.getNamedAttr("op", b.getStringAttr(op->getName().getStringRef())),
      b.getNamedAttr("type", TypeAttr::get(memref.getType()))};
  Value root = memref;
  while (Operation *def = root.getDefiningOp()) {
    if (auto view = dyn_cast<memref::ViewOp>(def)) {
      if (std::optional<int64_t> byte =
              getConstantIntValue(view.getByteShift()))
        fields.push_back(b.getNamedAttr("byte", b.getI64IntegerAttr(*byte)));
      root = view.getSource();
    } else if (auto viewLike = dyn_cast<ViewLikeOpInterface>(def)) {
      root = viewLike.getViewSource();
    } else if (auto metadata =
                   dyn_cast<memref::ExtractStridedMetadataOp>(def)) {
      root = metadata.getSource();
    } else {
      if (isa<memref::AllocaOp>(def))
        fields.push_back(b.getNamedAttr("local", b.getUnitAttr()));
      break;
    }
  }
  if (auto argument = dyn_cast<BlockArgument>(root);
      argument && argument.getOwner()->isEntryBlock())
    fields.push_back(b.getNamedAttr(
        "argument", b.getI64IntegerAttr(argument.getArgNumber())));
  return b.getDictionaryAttr(fields);
}

/// Before `op`: the hook, told whether any index is outside its dim. A call
/// rather than a branch per access: thousands of cold blocks made the
/// greedy rewrites of the lowering (their region simplification) slower
/// than the rest of the compilation.
void guard(Operation *op, const Access &access, int64_t site,
           func::FuncOp hook) {
  OpBuilder b(op);
  Location loc = op->getLoc();
  Value outside;
  SmallVector<Value> sizes;
  for (auto [dim, index] : llvm::enumerate(access.indices)) {
    Value size = b.createOrFold<memref::DimOp>(loc, access.memref, dim);
    sizes.push_back(size);
    Value beyond =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, index, size);
    outside = outside ? arith::OrIOp::create(b, loc, outside, beyond) : beyond;
  }
  SmallVector<Value> arguments = {
      arith::ExtUIOp::create(b, loc, b.getI32Type(), outside),
      arith::ConstantIntOp::create(b, loc, b.getI32Type(), site)};
  Value zero = arith::ConstantIntOp::create(b, loc, b.getI64Type(), 0);
  for (ValueRange values : {ValueRange(access.indices), ValueRange(sizes)}) {
    for (Value value : values)
      arguments.push_back(
          arith::IndexCastOp::create(b, loc, b.getI64Type(), value));
    arguments.append(kMaxGuardedRank - values.size(), zero);
  }
  func::CallOp::create(b, loc, hook, arguments);
}

struct GuardEmulatedAccessesPass
    : public attnc::impl::GuardEmulatedAccessesBase<GuardEmulatedAccessesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> functions;
    for (func::FuncOp func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        functions.push_back(func);
    for (func::FuncOp func : functions) {
      SmallVector<std::pair<Operation *, Access>> accesses;
      WalkResult walk = func.walk([&](Operation *op) {
        std::optional<Access> access = accessOf(op);
        if (!access)
          return WalkResult::advance();
        if (static_cast<int64_t>(access->indices.size()) > kMaxGuardedRank) {
          op->emitError() << "cannot guard an access of rank "
                          << access->indices.size() << " (at most "
                          << kMaxGuardedRank << ")";
          return WalkResult::interrupt();
        }
        accesses.push_back({op, *access});
        return WalkResult::advance();
      });
      if (walk.wasInterrupted())
        return signalPassFailure();
      SmallVector<Attribute> sites;
      func::FuncOp hook;
      for (auto &[op, access] : accesses) {
        if (access.indices.empty())
          continue;
        if (!hook)
          hook = declareEmulatorFunction(module, "attnc_emu_check_access");
        guard(op, access, sites.size(), hook);
        sites.push_back(describeSite(op, access.memref));
      }
      func->setAttr(kAccessSitesAttrName,
                    ArrayAttr::get(module.getContext(), sites));
    }
  }
};

} // namespace
