//===- DeriveBackward.cpp - The backward kernel of a spec -----------------===//
//
// attn-derive-backward: from `attn.kernel @f` holding a softmax-family op, the
// kernel @f_backward of docs/semantics.md section 8 (see Passes.td).
//
//===----------------------------------------------------------------------===//

#include "attnc/Transforms/DeriveBackward.h"
#include "attnc/Analysis/Differentiability.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Transforms/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/StringSet.h"

#include <type_traits>

namespace attnc {
#define GEN_PASS_DEF_DERIVEBACKWARD
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

namespace {

/// f32 [B, H, N] (or [H, T] when packed), from q's dims.
AttnTensorType lseTypeFor(AttnTensorType q, Layout layout) {
  LayoutDims dims = getLayoutDims(layout);
  ArrayRef<Attribute> qDims = q.getDims().getValue();
  SmallVector<Attribute> lse;
  if (layout == Layout::thd)
    lse = {qDims[dims.head], qDims[dims.seq]};
  else
    lse = {qDims[dims.batch], qDims[dims.head], qDims[dims.seq]};
  MLIRContext *context = q.getContext();
  return AttnTensorType::get(context, Float32Type::get(context),
                             ArrayAttr::get(context, lse));
}

/// A top-k selection: f32, lse's dims and `topk` entries per row.
AttnTensorType topkBlocksTypeFor(AttnTensorType q, Layout layout,
                                 uint64_t topk) {
  MLIRContext *context = q.getContext();
  SmallVector<Attribute> dims(lseTypeFor(q, layout).getDims().getValue());
  dims.push_back(IntegerAttr::get(IntegerType::get(context, 64), topk));
  return AttnTensorType::get(context, Float32Type::get(context),
                             ArrayAttr::get(context, dims));
}

/// The name under which `forward` returns `result`.
StringRef resultNameOf(KernelOp forward, Value result) {
  for (OpOperand &use : result.getUses())
    if (isa<ReturnOp>(use.getOwner()))
      return cast<StringAttr>(forward.getResultNames()[use.getOperandNumber()])
          .getValue();
  return StringRef();
}

/// The name of `forward`'s parameter `param`.
StringRef paramNameOf(KernelOp forward, Value param) {
  return cast<StringAttr>(
             forward.getParamNames()[cast<BlockArgument>(param).getArgNumber()])
      .getValue();
}

/// A backward kernel without its body's op: `forward`'s parameters, then
/// `extraParams`; one result d_<name> per tensor of `differentiated`.
struct BackwardShell {
  KernelOp kernel;
  /// From `forward`'s parameters to the backward's.
  IRMapping mapping;
  /// The block arguments of `extraParams`.
  SmallVector<Value> extra;
  SmallVector<Type> results;
};

/// Creates the shell after `forward`, with `b` inside its body; fails
/// (reported on `forward`) when two of its tensors would share a name.
FailureOr<BackwardShell>
createBackwardShell(OpBuilder &b, KernelOp forward,
                    ArrayRef<std::pair<Type, std::string>> extraParams,
                    ArrayRef<Value> differentiated) {
  Location loc = forward.getLoc();
  FunctionType type = forward.getFunctionType();
  SmallVector<Type> params(type.getInputs());
  SmallVector<Attribute> paramNames(forward.getParamNames().getValue());
  SmallVector<bool> optional(forward.getOptionalParams());
  for (const auto &[paramType, name] : extraParams) {
    params.push_back(paramType);
    paramNames.push_back(b.getStringAttr(name));
    optional.push_back(false);
  }
  BackwardShell shell;
  SmallVector<Attribute> resultNames;
  for (Value input : differentiated) {
    shell.results.push_back(input.getType());
    resultNames.push_back(b.getStringAttr("d_" + paramNameOf(forward, input)));
  }
  // Names are unique within a kernel, parameters and results together.
  llvm::StringSet<> seen;
  for (Attribute name : llvm::concat<Attribute>(paramNames, resultNames))
    if (!seen.insert(cast<StringAttr>(name).getValue()).second)
      return forward.emitOpError("cannot be differentiated: its backward "
                                 "kernel would have two tensors named '")
             << cast<StringAttr>(name).getValue() << "'";
  b.setInsertionPointAfter(forward);
  shell.kernel = KernelOp::create(
      b, loc, b.getStringAttr(forward.getSymName() + "_backward"),
      TypeAttr::get(b.getFunctionType(params, shell.results)),
      b.getArrayAttr(paramNames), b.getArrayAttr(resultNames),
      b.getDenseBoolArrayAttr(optional));
  Block *body = b.createBlock(&shell.kernel.getBody());
  for (BlockArgument arg : forward.getBody().front().getArguments())
    shell.mapping.map(arg, body->addArgument(arg.getType(), arg.getLoc()));
  for (const auto &[paramType, name] : extraParams)
    shell.extra.push_back(body->addArgument(paramType, loc));
  return shell;
}

/// `softmax` is an attn.softmax or attn.chunk_softmax.
template <typename OpTy>
FailureOr<KernelOp> deriveSoftmaxBackward(KernelOp forward, OpTy softmax) {
  if (failed(checkDifferentiable(softmax.getScore(), "the score expression")))
    return failure();
  OpBuilder b(forward);
  Location loc = forward.getLoc();
  SmallVector<std::pair<Type, std::string>> extraParams;
  auto addParam = [&](Type paramType, StringRef name) {
    extraParams.push_back({paramType, name.str()});
  };
  auto resultName = [&](Value result) { return resultNameOf(forward, result); };
  StringRef outName = resultName(softmax.getOut());
  addParam(softmax.getOut().getType(), outName);
  bool needsLse = softmax.getNormalizer() == Normalizer::softmax;
  std::string lseName = softmax.getLse() ? resultName(softmax.getLse()).str()
                                         : std::string("lse");
  if (needsLse)
    addParam(
        softmax.getLse()
            ? softmax.getLse().getType()
            : Type(lseTypeFor(cast<AttnTensorType>(softmax.getQ().getType()),
                              softmax.getLayout())),
        lseName);
  // Top-k: the forward's selection (addTrainingResults).
  bool savesSelection = false;
  if constexpr (std::is_same_v<OpTy, SparseSoftmaxOp>)
    if (std::optional<uint64_t> topk = softmax.getTopk()) {
      savesSelection = true;
      addParam(topkBlocksTypeFor(cast<AttnTensorType>(softmax.getQ().getType()),
                                 softmax.getLayout(), *topk),
               "topk_blocks");
    }
  addParam(softmax.getOut().getType(), ("d_" + outName).str());
  if (softmax.getLse())
    addParam(softmax.getLse().getType(), "d_" + lseName);

  SmallVector<Value> inputs = getFloatTensorsRead(softmax.getScore());
  SmallVector<Value> differentiated = {softmax.getQ(), softmax.getK(),
                                       softmax.getV()};
  llvm::append_range(differentiated, inputs);
  FailureOr<BackwardShell> shell =
      createBackwardShell(b, forward, extraParams, differentiated);
  if (failed(shell))
    return failure();
  IRMapping &mapping = shell->mapping;
  ArrayRef<Value> extra = shell->extra;
  unsigned next = 0;
  Value out = extra[next++];
  Value lse = needsLse ? extra[next++] : Value();
  Value topkBlocks = savesSelection ? extra[next++] : Value();
  Value dOut = extra[next++];
  Value dLse = softmax.getLse() ? extra[next++] : Value();
  auto lookup = [&](Value value) { return mapping.lookupOrNull(value); };
  SmallVector<Value> mappedInputs = llvm::map_to_vector(inputs, lookup);
  Value blockMask, kvNumBlocks, kvIndices;
  IntegerAttr chunk, blockQ, blockK, topk;
  if constexpr (std::is_same_v<OpTy, ChunkSoftmaxOp>)
    chunk = softmax.getChunkAttr();
  if constexpr (std::is_same_v<OpTy, SparseSoftmaxOp>) {
    blockMask = lookup(softmax.getBlockMask());
    kvNumBlocks = lookup(softmax.getKvNumBlocks());
    kvIndices = lookup(softmax.getKvIndices());
    blockK = softmax.getBlockKAttr();
    topk = softmax.getTopkAttr();
    if (!topk) // top-k rows choose key blocks; query tiles are free
      blockQ = softmax.getBlockQAttr();
  }
  auto op = SoftmaxBackwardOp::create(
      b, softmax.getLoc(), shell->results, lookup(softmax.getQ()),
      lookup(softmax.getK()), lookup(softmax.getV()),
      lookup(softmax.getCuSeqlensQ()), lookup(softmax.getCuSeqlensK()),
      softmax.getScaleAttr(), softmax.getNormalizerAttr(),
      softmax.getLayoutAttr(), out, lse, dOut, dLse, mappedInputs, blockMask,
      kvNumBlocks, kvIndices, topkBlocks, chunk, blockQ, blockK, topk);
  op.getScore().getBlocks().clear();
  softmax.getScore().cloneInto(&op.getScore(), mapping);
  softmax.getMask().cloneInto(&op.getMask(), mapping);
  ReturnOp::create(b, loc, op.getResults());
  return shell->kernel;
}

/// The backward of an attn.linear kernel: its parameters, then d_<o> and,
/// when it returns its final state, d_<state>; it returns d_q, d_k, d_v,
/// d_<initial state> (when it takes one) and d_<x> for each float tensor
/// the gate and feature expressions read.
FailureOr<KernelOp> deriveLinearBackward(KernelOp forward, LinearOp linear) {
  if (failed(checkDifferentiable(linear.getGate(), "the gate expression")) ||
      failed(checkDifferentiable(linear.getFeature(), "the feature map")))
    return failure();
  OpBuilder b(forward);
  Location loc = forward.getLoc();
  SmallVector<std::pair<Type, std::string>> extraParams = {
      {linear.getOut().getType(),
       ("d_" + resultNameOf(forward, linear.getOut())).str()}};
  if (Value state = linear.getFinalState())
    extraParams.push_back(
        {state.getType(), ("d_" + resultNameOf(forward, state)).str()});

  SmallVector<Value> inputs = getFloatTensorsRead(linear.getGate());
  for (Value tensor : getFloatTensorsRead(linear.getFeature()))
    if (!llvm::is_contained(inputs, tensor))
      inputs.push_back(tensor);
  SmallVector<Value> differentiated = {linear.getQ(), linear.getK(),
                                       linear.getV()};
  if (Value initial = linear.getInitialState())
    differentiated.push_back(initial);
  llvm::append_range(differentiated, inputs);
  FailureOr<BackwardShell> shell =
      createBackwardShell(b, forward, extraParams, differentiated);
  if (failed(shell))
    return failure();
  IRMapping &mapping = shell->mapping;
  ArrayRef<Value> extra = shell->extra;
  auto lookup = [&](Value value) { return mapping.lookupOrNull(value); };
  auto op = LinearBackwardOp::create(
      b, linear.getLoc(), shell->results, lookup(linear.getQ()),
      lookup(linear.getK()), lookup(linear.getV()),
      lookup(linear.getCuSeqlens()), lookup(linear.getInitialState()),
      extra[0], linear.getFinalState() ? extra[1] : Value(),
      llvm::map_to_vector(inputs, lookup), linear.getScaleAttr(),
      linear.getGateKindAttr(), linear.getCausalAttr(), linear.getChunkAttr(),
      linear.getLayoutAttr());
  op.getGate().getBlocks().clear();
  op.getFeature().getBlocks().clear();
  linear.getGate().cloneInto(&op.getGate(), mapping);
  linear.getFeature().cloneInto(&op.getFeature(), mapping);
  ReturnOp::create(b, loc, op.getResults());
  return shell->kernel;
}

} // namespace

LogicalResult attnc::addTrainingResults(KernelOp forward) {
  Operation *family = forward.getFamilyOp();
  std::optional<std::pair<Normalizer, AttnTensorType>> facts;
  auto factsOf = [](auto softmax) {
    return std::make_pair(
        softmax.getNormalizer(),
        lseTypeFor(cast<AttnTensorType>(softmax.getQ().getType()),
                   softmax.getLayout()));
  };
  if (auto softmax = dyn_cast<SoftmaxOp>(family))
    facts = factsOf(softmax);
  else if (auto chunked = dyn_cast<ChunkSoftmaxOp>(family))
    facts = factsOf(chunked);
  auto sparse = dyn_cast<SparseSoftmaxOp>(family);
  if (sparse)
    facts = factsOf(sparse);
  if (!facts)
    return success();
  // The family op's results are out, lse (softmax), topk_blocks (top-k).
  AttnTensorType lseType = facts->second;
  SmallVector<std::pair<StringRef, Type>> added;
  if (facts->first == Normalizer::softmax && family->getNumResults() == 1)
    added.push_back({"lse", lseType});
  if (sparse && sparse.getTopk() && !sparse.getTopkBlocks())
    added.push_back(
        {"topk_blocks",
         topkBlocksTypeFor(cast<AttnTensorType>(sparse.getQ().getType()),
                           sparse.getLayout(), *sparse.getTopk())});
  if (added.empty())
    return success();
  for (Attribute name : llvm::concat<const Attribute>(
           forward.getParamNames().getValue(),
           forward.getResultNames().getValue()))
    for (auto [addedName, type] : added)
      if (cast<StringAttr>(name).getValue() == addedName)
        return failure();

  // The same op with more results; its regions move over.
  OpBuilder b(family);
  OperationState state(family->getLoc(), family->getName());
  state.addOperands(family->getOperands());
  state.addAttributes(family->getAttrs());
  state.addTypes(family->getResultTypes());
  for (auto [name, type] : added)
    state.addTypes(type);
  for (Region &region : family->getRegions())
    state.addRegion()->takeBody(region);
  Operation *training = b.create(state);
  family->replaceAllUsesWith(
      training->getResults().take_front(family->getNumResults()));
  unsigned first = family->getNumResults();
  family->erase();

  auto ret = cast<ReturnOp>(forward.getBody().front().getTerminator());
  ret->insertOperands(ret->getNumOperands(),
                      training->getResults().drop_front(first));
  FunctionType type = forward.getFunctionType();
  SmallVector<Type> results(type.getResults());
  SmallVector<Attribute> names(forward.getResultNames().getValue());
  for (auto [name, resultType] : added) {
    results.push_back(resultType);
    names.push_back(b.getStringAttr(name));
  }
  forward.setFunctionTypeAttr(
      TypeAttr::get(b.getFunctionType(type.getInputs(), results)));
  forward.setResultNamesAttr(b.getArrayAttr(names));
  return success();
}

FailureOr<KernelOp> attnc::deriveBackwardKernel(KernelOp forward) {
  Operation *family = forward.getFamilyOp();
  if (auto softmax = dyn_cast<SoftmaxOp>(family))
    return deriveSoftmaxBackward(forward, softmax);
  if (auto chunked = dyn_cast<ChunkSoftmaxOp>(family))
    return deriveSoftmaxBackward(forward, chunked);
  if (auto sparse = dyn_cast<SparseSoftmaxOp>(family))
    return deriveSoftmaxBackward(forward, sparse);
  if (auto linear = dyn_cast<LinearOp>(family))
    return deriveLinearBackward(forward, linear);
  family->emitOpError("has no backward: it is a backward kernel already");
  return failure();
}

FailureOr<KernelOp> attnc::deriveBackwardKernel(KernelOp forward,
                                                std::string &error) {
  ScopedDiagnosticHandler handler(
      forward.getContext(), [&](Diagnostic &diagnostic) {
        if (!error.empty() ||
            diagnostic.getSeverity() != DiagnosticSeverity::Error)
          return success();
        if (auto at = dyn_cast<FileLineColLoc>(diagnostic.getLocation()))
          error = (at.getFilename().getValue() + ":" + Twine(at.getLine()) +
                   ":" + Twine(at.getColumn()) + ": ")
                      .str();
        error += diagnostic.str();
        return success();
      });
  return deriveBackwardKernel(forward);
}

namespace {

struct DeriveBackwardPass
    : attnc::impl::DeriveBackwardBase<DeriveBackwardPass> {
  using DeriveBackwardBase::DeriveBackwardBase;

  void runOnOperation() override {
    bool found = false;
    for (KernelOp forward :
         llvm::to_vector(getOperation().getOps<KernelOp>())) {
      if (!kernel.empty() && forward.getSymName() != kernel)
        continue;
      found = true;
      if (failed(deriveBackwardKernel(forward)))
        return signalPassFailure();
    }
    if (!found && !kernel.empty()) {
      getOperation().emitError("no kernel named '") << kernel << "'";
      signalPassFailure();
    }
  }
};

} // namespace
