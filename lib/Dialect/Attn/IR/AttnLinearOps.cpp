//===- AttnLinearOps.cpp - The linear family's operations -----------------===//
//
// attn.linear and attn.linear_backward: printer names and verification.
//
//===----------------------------------------------------------------------===//

#include "ShapeChecker.h"

#include <cmath>

using namespace mlir;
using namespace attnc::attn;
using attnc::attn::detail::nameRegionArguments;
using attnc::attn::detail::ShapeChecker;
using attnc::attn::detail::verifyExpressionRegion;

/// Gate arguments (b, h, t, d, tstart) and the feature map's x.
static void nameLinearRegion(Region &region, Region &gate,
                             OpAsmSetValueNameFn setNameFn) {
  static constexpr StringRef gateNames[] = {"b", "h", "t", "d", "tstart"};
  static constexpr StringRef featureNames[] = {"x"};
  nameRegionArguments(
      region, &region == &gate ? ArrayRef(gateNames) : ArrayRef(featureNames),
      setNameFn);
}

void LinearOp::getAsmBlockArgumentNames(Region &region,
                                        OpAsmSetValueNameFn setNameFn) {
  nameLinearRegion(region, getGate(), setNameFn);
}

void LinearOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setNameFn(getOut(), "o");
  if (getFinalState())
    setNameFn(getFinalState(), "state");
}

void LinearBackwardOp::getAsmBlockArgumentNames(Region &region,
                                                OpAsmSetValueNameFn setNameFn) {
  nameLinearRegion(region, getGate(), setNameFn);
}

void LinearBackwardOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setNameFn(getDq(), "dq");
  setNameFn(getDk(), "dk");
  setNameFn(getDv(), "dv");
  if (Value state = getDInitialState())
    setNameFn(state, "dstate");
  for (Value gradient : getDInputs())
    setNameFn(gradient, "dinput");
}

Value LinearBackwardOp::getDInitialState() {
  return getInitialState() ? getRest().front() : Value();
}

ValueRange LinearBackwardOp::getDInputs() {
  return getRest().drop_front(getInitialState() ? 1 : 0);
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

/// The shapes an attn.linear and its backward share: q, k, v, the output
/// (or its gradient) `out`, the offsets, the scale, the gate's causality,
/// and the states (f32 [batch (or sequence), query heads, Dk, Dv]).
template <typename OpTy>
static LogicalResult
verifyLinearShapes(OpTy op, Value out,
                   ArrayRef<std::pair<StringRef, Value>> states) {
  ShapeChecker check(op, op.getLayout());
  auto q = cast<AttnTensorType>(op.getQ().getType());
  auto k = cast<AttnTensorType>(op.getK().getType());
  auto v = cast<AttnTensorType>(op.getV().getType());
  bool packed = op.getLayout() == Layout::thd;
  LayoutDims dims = check.dims;
  if (failed(check.qkv(q, k, v)) ||
      failed(check.output(cast<AttnTensorType>(out.getType()), q, v)) ||
      failed(
          check.same("k", k, dims.seq, "q", q, dims.seq, "sequence length")) ||
      failed(check.offsets("cu_seqlens", op.getCuSeqlens(), packed)))
    return failure();
  if (!std::isfinite(op.getScale().convertToFloat()))
    return op.emitOpError("scale must be finite");
  if (!op.getCausal() && op.getGateKind() != GateKind::none)
    return op.emitOpError("non-causal linear attention takes no gate (decay "
                          "needs an order of time steps)");
  Type f32 = Float32Type::get(op.getContext());
  for (auto [name, state] : states) {
    if (!state)
      continue;
    auto type = cast<AttnTensorType>(state.getType());
    if (failed(
            check.rank(name, type, 4, "[batch, heads, key_dim, value_dim]")) ||
        failed(check.elements(name, type, f32)) ||
        (!packed &&
         failed(check.same(name, type, 0, "q", q, dims.batch, "batch size"))) ||
        failed(check.same(name, type, 1, "q", q, dims.head, "head count")) ||
        failed(check.same(name, type, 2, "q", q, dims.feature, "key dim")) ||
        failed(check.same(name, type, 3, "v", v, dims.feature, "value dim")))
      return failure();
  }
  return success();
}

LogicalResult LinearOp::verify() {
  return verifyLinearShapes(
      *this, getOut(),
      {{"initial_state", getInitialState()}, {"final_state", getFinalState()}});
}

LogicalResult LinearBackwardOp::verify() {
  if (failed(verifyLinearShapes(*this, getDOut(),
                                {{"initial_state", getInitialState()},
                                 {"d_final_state", getDFinalState()}})))
    return failure();
  if (getDq().getType() != getQ().getType() ||
      getDk().getType() != getK().getType() ||
      getDv().getType() != getV().getType())
    return emitOpError("dq, dk and dv must have the types of q, k and v");
  size_t expected = (getInitialState() ? 1 : 0) + getInputs().size();
  if (getRest().size() != expected)
    return emitOpError("yields ")
           << getRest().size() << " gradients after dv, expected " << expected
           << " (the initial state's, then one per input)";
  if (Value state = getDInitialState();
      state && state.getType() != getInitialState().getType())
    return emitOpError("the initial state's gradient must have its type");
  if (getInputs().getTypes() != getDInputs().getTypes())
    return emitOpError("must yield one gradient of each input's type");
  return success();
}

/// The gate region takes (b, h, t, d, tstart) and the feature map x; both
/// yield f32.
template <typename OpTy> static LogicalResult verifyLinearRegionForms(OpTy op) {
  Builder b(op.getContext());
  SmallVector<Type> gateArgs(gate_arg::Count, b.getIndexType());
  return failure(
      failed(verifyExpressionRegion(op, op.getGate(), "gate", gateArgs,
                                    b.getF32Type())) ||
      failed(verifyExpressionRegion(op, op.getFeature(), "feature",
                                    {b.getF32Type()}, b.getF32Type())));
}

LogicalResult LinearBackwardOp::verifyRegions() {
  if (failed(verifyLinearRegionForms(*this)))
    return failure();
  if (getGate().empty() != (getGateKind() == GateKind::none))
    return emitOpError("needs a gate expression exactly when gate_kind is "
                       "not none");
  SmallVector<Value> read = getFloatTensorsRead(getGate());
  for (Value tensor : getFloatTensorsRead(getFeature()))
    if (!llvm::is_contained(read, tensor))
      read.push_back(tensor);
  if (!llvm::equal(read, getInputs()))
    return emitOpError("inputs must be the ")
           << read.size()
           << " floating-point tensors the gate and feature expressions "
              "read, in the order they first read them";
  return success();
}

LogicalResult LinearOp::verifyRegions() {
  if (failed(verifyLinearRegionForms(*this)))
    return failure();

  GateKind kind = getGateKind();
  if (getGate().empty()) {
    if (kind != GateKind::none)
      return emitOpError("gate_kind ")
             << stringifyGateKind(kind) << " needs a gate expression";
    return success();
  }
  if (kind == GateKind::none)
    return emitOpError("has a gate expression but gate_kind none");
  // The kind promises which indices the gate reads; strategies rely on it.
  Block &gate = getGate().front();
  auto uses = [&](unsigned arg) { return !gate.getArgument(arg).use_empty(); };
  static constexpr std::pair<unsigned, StringRef> indexNames[] = {
      {gate_arg::B, "b"},
      {gate_arg::T, "t"},
      {gate_arg::D, "d"},
      {gate_arg::TStart, "tstart"}};
  for (auto [arg, name] : indexNames) {
    bool allowed = kind == GateKind::per_key_dim ||
                   (kind == GateKind::per_head && arg != gate_arg::D);
    if (uses(arg) && !allowed)
      return emitOpError("gate_kind ")
             << stringifyGateKind(kind) << " promises a gate that does not "
             << "depend on '" << name << "', but the gate expression uses it";
  }
  return success();
}
