//===- AttnOps.cpp - Attention dialect operations -------------------------===//

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "ShapeChecker.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace attnc::attn;
using attnc::attn::detail::nameRegionArguments;
using attnc::attn::detail::verifyExpressionRegion;

#define GET_OP_CLASSES
#include "attnc/Dialect/Attn/IR/AttnOps.cpp.inc"

std::pair<Value, Value>
attnc::attn::getSequenceOffsets(Operation *familyOp) {
  Value cuQ, cuK;
  if (auto op = dyn_cast<LinearOp>(familyOp))
    cuQ = cuK = op.getCuSeqlens();
  else if (auto op = dyn_cast<SoftmaxOp>(familyOp))
    cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
  else if (auto op = dyn_cast<ChunkSoftmaxOp>(familyOp))
    cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
  else if (auto op = dyn_cast<SparseSoftmaxOp>(familyOp))
    cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
  else if (auto op = dyn_cast<SoftmaxBackwardOp>(familyOp))
    cuQ = op.getCuSeqlensQ(), cuK = op.getCuSeqlensK();
  else if (auto op = dyn_cast<LinearBackwardOp>(familyOp))
    cuQ = cuK = op.getCuSeqlens();
  return {cuQ, cuK ? cuK : cuQ};
}

SmallVector<Value> attnc::attn::getFloatTensorsRead(Region &expression) {
  SmallVector<Value> tensors;
  expression.walk([&](LoadOp load) {
    if (load.getType().isF32() && !llvm::is_contained(tensors, load.getTensor()))
      tensors.push_back(load.getTensor());
  });
  return tensors;
}

LayoutDims attnc::attn::getLayoutDims(Layout layout) {
  switch (layout) {
  case Layout::bhnd:
    return {0, 1, 2, 3, 4};
  case Layout::bnhd:
    return {0, 2, 1, 3, 4};
  case Layout::thd:
    return {-1, 1, 0, 2, 3};
  }
  llvm_unreachable("unknown layout");
}

bool attnc::attn::isSoftmaxFamily(Operation *op) {
  return isa<SoftmaxOp, ChunkSoftmaxOp, SparseSoftmaxOp>(op);
}

//===----------------------------------------------------------------------===//
// KernelOp
//===----------------------------------------------------------------------===//

// attn.kernel @name(%q: T, %h0: T?) -> (o: T) attributes {...} { body }
ParseResult KernelOp::parse(OpAsmParser &parser, OperationState &result) {
  Builder &builder = parser.getBuilder();
  StringAttr name;
  if (parser.parseSymbolName(name, getSymNameAttrName(result.name),
                             result.attributes))
    return failure();

  SmallVector<OpAsmParser::Argument> params;
  SmallVector<bool> optional;
  auto parseParam = [&]() -> ParseResult {
    OpAsmParser::Argument &param = params.emplace_back();
    if (parser.parseArgument(param, /*allowType=*/true))
      return failure();
    optional.push_back(succeeded(parser.parseOptionalQuestion()));
    return success();
  };
  if (parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Paren, parseParam))
    return failure();

  SmallVector<Attribute> resultNames;
  SmallVector<Type> resultTypes;
  auto parseResult = [&]() -> ParseResult {
    std::string resultName;
    Type type;
    if (parser.parseKeywordOrString(&resultName) || parser.parseColon() ||
        parser.parseType(type))
      return failure();
    resultNames.push_back(builder.getStringAttr(resultName));
    resultTypes.push_back(type);
    return success();
  };
  if (parser.parseArrow() ||
      parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Paren,
                                     parseResult) ||
      parser.parseOptionalAttrDictWithKeyword(result.attributes))
    return failure();

  SmallVector<Type> paramTypes;
  SmallVector<Attribute> paramNames;
  for (OpAsmParser::Argument &param : params) {
    paramTypes.push_back(param.type);
    // Parameter names are the SSA names as written, without the '%'.
    paramNames.push_back(builder.getStringAttr(param.ssaName.name.drop_front()));
  }
  result.addAttribute(getFunctionTypeAttrName(result.name),
                      TypeAttr::get(builder.getFunctionType(paramTypes,
                                                            resultTypes)));
  result.addAttribute(getParamNamesAttrName(result.name),
                      builder.getArrayAttr(paramNames));
  result.addAttribute(getResultNamesAttrName(result.name),
                      builder.getArrayAttr(resultNames));
  result.addAttribute(getOptionalParamsAttrName(result.name),
                      builder.getDenseBoolArrayAttr(optional));
  return parser.parseRegion(*result.addRegion(), params);
}

void KernelOp::print(OpAsmPrinter &p) {
  p << " ";
  p.printSymbolName(getSymName());
  p << "(";
  Block &entry = getBody().front();
  for (auto [index, param] : llvm::enumerate(entry.getArguments())) {
    if (index)
      p << ", ";
    p.printRegionArgument(param);
    if (isOptionalParam(index))
      p << "?";
  }
  p << ") -> (";
  for (auto [index, type] : llvm::enumerate(getFunctionType().getResults())) {
    if (index)
      p << ", ";
    p << cast<StringAttr>(getResultNames()[index]).getValue() << ": " << type;
  }
  p << ")";
  p.printOptionalAttrDictWithKeyword(
      (*this)->getAttrs(),
      {getSymNameAttrName(), getFunctionTypeAttrName(), getParamNamesAttrName(),
       getResultNamesAttrName(), getOptionalParamsAttrName()});
  p << " ";
  p.printRegion(getBody(), /*printEntryBlockArgs=*/false);
}

void KernelOp::getAsmBlockArgumentNames(Region &region,
                                        OpAsmSetValueNameFn setNameFn) {
  ArrayAttr names = getParamNames();
  for (BlockArgument param : region.getArguments())
    if (param.getArgNumber() < names.size())
      setNameFn(param,
                cast<StringAttr>(names[param.getArgNumber()]).getValue());
}

Operation *KernelOp::getFamilyOp() {
  for (Operation &op : getBody().front())
    if (!isa<ReturnOp>(op))
      return &op;
  return nullptr;
}

LogicalResult KernelOp::verify() {
  FunctionType type = getFunctionType();
  Block &entry = getBody().front();
  if (entry.getNumArguments() != type.getNumInputs() ||
      getParamNames().size() != type.getNumInputs() ||
      getOptionalParams().size() != type.getNumInputs())
    return emitOpError("has ") << entry.getNumArguments()
                               << " block arguments but its signature lists "
                               << type.getNumInputs() << " parameters";
  if (getResultNames().size() != type.getNumResults())
    return emitOpError("names ") << getResultNames().size()
                                 << " results but its signature has "
                                 << type.getNumResults();
  if (type.getNumInputs() + type.getNumResults() > kMaxKernelTensors)
    return emitOpError("passes ")
           << type.getNumInputs() + type.getNumResults()
           << " tensors; a kernel takes at most " << kMaxKernelTensors
           << " parameters and results";

  llvm::StringSet<> seen;
  auto checkName = [&](Attribute name, StringRef what) -> LogicalResult {
    StringRef value = cast<StringAttr>(name).getValue();
    if (!seen.insert(value).second)
      return emitOpError() << what << " name '" << value
                           << "' is used more than once";
    return success();
  };
  for (auto [param, argument, paramType] :
       llvm::zip(getParamNames(), entry.getArguments(), type.getInputs())) {
    if (failed(checkName(param, "parameter")))
      return failure();
    if (argument.getType() != paramType)
      return emitOpError("parameter '")
             << cast<StringAttr>(param).getValue() << "' has type "
             << argument.getType() << " but the signature says " << paramType;
    if (!isa<AttnTensorType>(paramType))
      return emitOpError("parameter '") << cast<StringAttr>(param).getValue()
                                        << "' must be an !attn.tensor";
  }
  for (Attribute name : getResultNames())
    if (failed(checkName(name, "result")))
      return failure();

  // Result shapes are computed at launch from the dimensions the inputs bind.
  llvm::StringSet<> boundSymbols;
  for (Type paramType : type.getInputs())
    for (unsigned dim = 0, e = cast<AttnTensorType>(paramType).getRank(); dim < e;
         ++dim)
      if (StringRef symbol = cast<AttnTensorType>(paramType).getSymbol(dim);
          !symbol.empty())
        boundSymbols.insert(symbol);
  for (auto [name, resultType] :
       llvm::zip(getResultNames(), type.getResults())) {
    auto tensor = dyn_cast<AttnTensorType>(resultType);
    if (!tensor)
      return emitOpError("result '") << cast<StringAttr>(name).getValue()
                                     << "' must be an !attn.tensor";
    for (unsigned dim = 0, e = tensor.getRank(); dim < e; ++dim) {
      StringRef symbol = tensor.getSymbol(dim);
      if (!symbol.empty() && !boundSymbols.contains(symbol))
        return emitOpError("result '")
               << cast<StringAttr>(name).getValue() << "' has dimension '"
               << symbol
               << "' that no parameter has, so its size is unknown at launch";
    }
  }

  unsigned familyOps = 0;
  for (Operation &op : entry) {
    if (isa<ReturnOp>(op))
      continue;
    if (!isSoftmaxFamily(&op) &&
        !isa<LinearOp, SoftmaxBackwardOp, LinearBackwardOp>(op))
      return op.emitOpError("cannot appear in a kernel body; expected one of "
                            "attn.softmax, attn.chunk_softmax, "
                            "attn.sparse_softmax, attn.linear, "
                            "attn.softmax_backward, attn.linear_backward");
    ++familyOps;
  }
  if (familyOps != 1)
    return emitOpError("must hold exactly one attention op, found ")
           << familyOps;

  auto ret = cast<ReturnOp>(entry.getTerminator());
  if (ret.getResults().getTypes() != type.getResults())
    return ret.emitOpError("returns ")
           << ret.getResults().size()
           << " values whose types differ from the kernel's results "
           << type.getResults();
  // Every result of the attention op is an output of the kernel, once.
  Operation *family = getFamilyOp();
  llvm::SmallDenseSet<Value> returned;
  for (Value value : ret.getResults())
    if (value.getDefiningOp() != family || !returned.insert(value).second)
      return ret.emitOpError("can only return results of the attention op, "
                             "each once");
  if (returned.size() != family->getNumResults())
    return ret.emitOpError("must return every result of the attention op");

  // Optional inputs may be absent at launch, so only roles that have a
  // meaning for "absent" may read them.
  for (BlockArgument param : entry.getArguments()) {
    if (!isOptionalParam(param.getArgNumber()))
      continue;
    for (OpOperand &use : param.getUses()) {
      Value initial;
      if (auto linear = dyn_cast<LinearOp>(use.getOwner()))
        initial = linear.getInitialState();
      else if (auto backward = dyn_cast<LinearBackwardOp>(use.getOwner()))
        initial = backward.getInitialState();
      if (!initial || use.get() != initial)
        return use.getOwner()->emitOpError("uses optional parameter '")
               << cast<StringAttr>(getParamNames()[param.getArgNumber()])
                      .getValue()
               << "'; an optional parameter can only be an initial state";
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// LoadOp
//===----------------------------------------------------------------------===//

LogicalResult LoadOp::verify() {
  auto tensor = cast<AttnTensorType>(getTensor().getType());
  if (static_cast<int64_t>(getIndices().size()) != tensor.getRank())
    return emitOpError("indexes a rank-")
           << tensor.getRank() << " tensor with " << getIndices().size()
           << " indices";
  Type element = tensor.getElementType();
  Type expected = isa<FloatType>(element) ? Type(Float32Type::get(getContext()))
                  : element.isInteger(1)
                      ? Type(IntegerType::get(getContext(), 1))
                      : Type(IndexType::get(getContext()));
  if (getResult().getType() != expected)
    return emitOpError("loads ")
           << element << " elements as " << expected << ", not "
           << getResult().getType();
  auto param = dyn_cast<BlockArgument>(getTensor());
  if (!param || !isa<KernelOp>(param.getOwner()->getParentOp()))
    return emitOpError("can only read kernel parameters");
  return success();
}

//===----------------------------------------------------------------------===//
// Readable names for the family ops' results and region arguments
//===----------------------------------------------------------------------===//

void attnc::attn::detail::nameRegionArguments(
    Region &region, ArrayRef<StringRef> names, OpAsmSetValueNameFn setNameFn) {
  if (region.empty())
    return;
  for (auto [arg, name] : llvm::zip(region.getArguments(), names))
    setNameFn(arg, name);
}

static constexpr StringRef kScoreArgNames[] = {
    "s", "b", "h", "i", "j", "n", "m", "qstart", "kstart"};
static constexpr StringRef kMaskArgNames[] = {"b", "h", "i", "j",
                                              "n", "m", "qstart", "kstart"};

template <typename OpTy>
static void nameSoftmaxFamily(OpTy op, Region &region,
                              OpAsmSetValueNameFn setNameFn) {
  nameRegionArguments(region,
                      &region == &op.getScore() ? ArrayRef(kScoreArgNames)
                                                : ArrayRef(kMaskArgNames),
                      setNameFn);
}

#define ATTN_SOFTMAX_FAMILY_ASM_NAMES(OpTy)                                    \
  void OpTy::getAsmBlockArgumentNames(Region &region,                          \
                                      OpAsmSetValueNameFn setNameFn) {         \
    nameSoftmaxFamily(*this, region, setNameFn);                               \
  }                                                                            \
  void OpTy::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {                \
    setNameFn(getOut(), "o");                                                  \
    if (getLse())                                                              \
      setNameFn(getLse(), "lse");                                              \
  }
ATTN_SOFTMAX_FAMILY_ASM_NAMES(SoftmaxOp)
ATTN_SOFTMAX_FAMILY_ASM_NAMES(ChunkSoftmaxOp)
ATTN_SOFTMAX_FAMILY_ASM_NAMES(SparseSoftmaxOp)
#undef ATTN_SOFTMAX_FAMILY_ASM_NAMES

void SoftmaxBackwardOp::getAsmBlockArgumentNames(
    Region &region, OpAsmSetValueNameFn setNameFn) {
  nameSoftmaxFamily(*this, region, setNameFn);
}
void SoftmaxBackwardOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setNameFn(getDq(), "dq");
  setNameFn(getDk(), "dk");
  setNameFn(getDv(), "dv");
  for (Value gradient : getDInputs())
    setNameFn(gradient, "dinput");
}

//===----------------------------------------------------------------------===//
// Shared verification of the family ops
//===----------------------------------------------------------------------===//

using attnc::attn::detail::ShapeChecker;

/// Checks that an expression region is empty or has one block with the given
/// argument types, only scalar arith/math/attn.load ops, and yields `result`.
LogicalResult attnc::attn::detail::verifyExpressionRegion(
    Operation *op, Region &region, StringRef name, ArrayRef<Type> argTypes,
    Type result) {
  if (region.empty())
    return success();
  if (!region.hasOneBlock())
    return op->emitOpError("'") << name << "' region must have one block";
  Block &block = region.front();
  if (block.getArgumentTypes() != TypeRange(argTypes))
    return op->emitOpError("'")
           << name << "' region must take " << argTypes.size()
           << " arguments of types (" << TypeRange(argTypes) << "), got ("
           << block.getArgumentTypes() << ")";
  for (Operation &inner : block) {
    Dialect *dialect = inner.getDialect();
    bool allowed = isa<LoadOp, YieldOp>(inner) ||
                   isa_and_nonnull<arith::ArithDialect, math::MathDialect>(
                       dialect);
    if (!allowed || inner.getNumRegions() != 0)
      return inner.emitOpError("cannot appear in the '")
             << name << "' expression; only arith and math ops on scalars "
             << "and attn.load are allowed";
  }
  auto yield = dyn_cast<YieldOp>(block.getTerminator());
  if (!yield)
    return op->emitOpError("'") << name << "' region must end in attn.yield";
  if (yield.getValue().getType() != result)
    return yield.emitOpError("in the '")
           << name << "' region must yield " << result << ", got "
           << yield.getValue().getType();
  return success();
}

template <typename OpTy>
static LogicalResult verifySoftmaxFamilyRegions(OpTy op) {
  Builder b(op.getContext());
  Type index = b.getIndexType();
  SmallVector<Type> scoreArgs(score_arg::Count, index);
  scoreArgs[score_arg::S] = b.getF32Type();
  SmallVector<Type> maskArgs(mask_arg::Count, index);
  return failure(
      failed(verifyExpressionRegion(op, op.getScore(), "score", scoreArgs,
                                    b.getF32Type())) ||
      failed(verifyExpressionRegion(op, op.getMask(), "mask", maskArgs,
                                    b.getI1Type())));
}

template <typename OpTy>
static LogicalResult verifySoftmaxFamily(OpTy op) {
  ShapeChecker check(op, op.getLayout());
  auto q = cast<AttnTensorType>(op.getQ().getType());
  auto k = cast<AttnTensorType>(op.getK().getType());
  auto v = cast<AttnTensorType>(op.getV().getType());
  auto out = cast<AttnTensorType>(op.getOut().getType());
  bool packed = op.getLayout() == Layout::thd;
  if (failed(check.qkv(q, k, v)) || failed(check.output(out, q, v)) ||
      failed(check.offsets("cu_seqlens_q", op.getCuSeqlensQ(), packed)) ||
      failed(check.offsets("cu_seqlens_k", op.getCuSeqlensK(), false)))
    return failure();
  if (op.getScale() && !std::isfinite(op.getScale()->convertToFloat()))
    return op.emitOpError("scale must be finite");

  if (Value lse = op.getLse()) {
    if (op.getNormalizer() != Normalizer::softmax)
      return op.emitOpError("an lse output needs the softmax normalizer; "
                            "log-sum-exp is undefined for ")
             << stringifyNormalizer(op.getNormalizer());
    auto lseType = cast<AttnTensorType>(lse.getType());
    LayoutDims dims = check.dims;
    if (failed(check.elements("lse", lseType, Float32Type::get(op.getContext()))))
      return failure();
    if (packed)
      return failure(
          failed(check.rank("lse", lseType, 2, "[heads, total_tokens]")) ||
          failed(check.same("lse", lseType, 0, "q", q, dims.head,
                            "head count")) ||
          failed(check.same("lse", lseType, 1, "q", q, dims.seq,
                            "token count")));
    return failure(
        failed(check.rank("lse", lseType, 3, "[batch, heads, seq]")) ||
        failed(check.same("lse", lseType, 0, "q", q, dims.batch,
                          "batch size")) ||
        failed(check.same("lse", lseType, 1, "q", q, dims.head,
                          "head count")) ||
        failed(check.same("lse", lseType, 2, "q", q, dims.seq,
                          "sequence length")));
  }
  return success();
}

LogicalResult SoftmaxOp::verify() { return verifySoftmaxFamily(*this); }
LogicalResult SoftmaxOp::verifyRegions() {
  return verifySoftmaxFamilyRegions(*this);
}

/// The shapes and types of a block-sparse op's block mask or lists.
static LogicalResult verifyBlockSources(Operation *op, ShapeChecker &check,
                                       AttnTensorType q, Value blockMask,
                                       Value kvNumBlocks, Value kvIndices) {
  LayoutDims dims = check.dims;
  Type i32 = IntegerType::get(op->getContext(), 32);
  // The leading dims are [batch (or sequence), query head, query block].
  auto leading = [&](StringRef name, AttnTensorType type) -> LogicalResult {
    if (dims.batch >= 0 &&
        failed(check.same(name, type, 0, "q", q, dims.batch, "batch size")))
      return failure();
    return check.same(name, type, 1, "q", q, dims.head, "head count");
  };
  if (Value mask = blockMask) {
    auto type = cast<AttnTensorType>(mask.getType());
    if (failed(check.rank("block_mask", type, 4,
                          "[batch, heads, query_blocks, key_blocks]")) ||
        failed(leading("block_mask", type)))
      return failure();
    if (isa<FloatType>(type.getElementType()))
      return op->emitOpError("block_mask must have i1, i8 or i32 elements, got ")
             << type.getElementType();
  }
  if (kvNumBlocks || kvIndices) {
    if (!kvNumBlocks || !kvIndices)
      return op->emitOpError("kv_num_blocks and kv_indices go together; only ")
             << (kvNumBlocks ? "kv_num_blocks" : "kv_indices")
             << " is given";
    auto numBlocks = cast<AttnTensorType>(kvNumBlocks.getType());
    auto indices = cast<AttnTensorType>(kvIndices.getType());
    if (failed(check.rank("kv_num_blocks", numBlocks, 3,
                          "[batch, heads, query_blocks]")) ||
        failed(check.elements("kv_num_blocks", numBlocks, i32)) ||
        failed(leading("kv_num_blocks", numBlocks)) ||
        failed(check.rank("kv_indices", indices, 4,
                          "[batch, heads, query_blocks, max_blocks]")) ||
        failed(check.elements("kv_indices", indices, i32)) ||
        failed(leading("kv_indices", indices)) ||
        failed(check.same("kv_indices", indices, 2, "kv_num_blocks", numBlocks,
                          2, "query block count")))
      return failure();
  }
  return success();
}

LogicalResult SoftmaxBackwardOp::verify() {
  if (failed(verifySoftmaxFamily(*this)))
    return failure();
  if (getNormalizer() == Normalizer::softmax && !getLse())
    return emitOpError("needs the forward's lse with the softmax normalizer");
  if (getDOut().getType() != getOut().getType())
    return emitOpError("d_out must have the type of out, ")
           << getOut().getType() << ", got " << getDOut().getType();
  if (Value dlse = getDLse())
    if (dlse.getType() != getLse().getType())
      return emitOpError("d_lse must have the type of lse, ")
             << getLse().getType() << ", got " << dlse.getType();
  if (getDq().getType() != getQ().getType() ||
      getDk().getType() != getK().getType() ||
      getDv().getType() != getV().getType())
    return emitOpError("dq, dk and dv must have the types of q, k and v");
  if (getInputs().getTypes() != getDInputs().getTypes())
    return emitOpError("must yield one gradient of each input's type");
  if (bool(getTopk()) != bool(getTopkBlocks()))
    return emitOpError("needs topk exactly when it has topk_blocks");
  bool sparse = getBlockMask() || getKvNumBlocks() || getKvIndices() ||
                getTopkBlocks();
  if (int(bool(getBlockMask())) + int(getKvNumBlocks() || getKvIndices()) +
          int(bool(getTopkBlocks())) > 1)
    return emitOpError("takes one of block_mask, kv_num_blocks with "
                       "kv_indices, or topk_blocks");
  // Top-k rows choose blocks of block_k keys; a query tile is any size.
  bool blockLists = sparse && !getTopkBlocks();
  if (blockLists != bool(getBlockQ()) || sparse != bool(getBlockK()))
    return emitOpError("needs block_q and block_k exactly when it has a "
                       "block_mask or block lists, and block_k alone with "
                       "topk_blocks");
  if (sparse && getChunk())
    return emitOpError("is the backward of a chunk-local or of a block-sparse "
                       "softmax, not both");
  if (!sparse)
    return success();
  ShapeChecker check(*this, getLayout());
  if (Value blocks = getTopkBlocks())
    return check.topkBlocks(cast<AttnTensorType>(blocks.getType()),
                            cast<AttnTensorType>(getQ().getType()), *getTopk());
  return verifyBlockSources(*this, check,
                            cast<AttnTensorType>(getQ().getType()),
                            getBlockMask(), getKvNumBlocks(), getKvIndices());
}
LogicalResult SoftmaxBackwardOp::verifyRegions() {
  if (failed(verifySoftmaxFamilyRegions(*this)))
    return failure();
  SmallVector<Value> read = getFloatTensorsRead(getScore());
  if (!llvm::equal(read, getInputs()))
    return emitOpError("inputs must be the ")
           << read.size()
           << " floating-point tensors the score expression reads, in the "
              "order it first reads them";
  return success();
}

LogicalResult ChunkSoftmaxOp::verify() { return verifySoftmaxFamily(*this); }
LogicalResult ChunkSoftmaxOp::verifyRegions() {
  return verifySoftmaxFamilyRegions(*this);
}

Value SparseSoftmaxOp::getLse() {
  ValueRange saved = getSaved();
  return getNormalizer() == Normalizer::softmax && !saved.empty() ? saved[0]
                                                                  : Value();
}

Value SparseSoftmaxOp::getTopkBlocks() {
  ValueRange saved = getSaved();
  return saved.size() == (getNormalizer() == Normalizer::softmax ? 2u : 1u)
             ? saved.back()
             : Value();
}

LogicalResult SparseSoftmaxOp::verify() {
  if (failed(verifySoftmaxFamily(*this)))
    return failure();
  ShapeChecker check(*this, getLayout());
  auto q = cast<AttnTensorType>(getQ().getType());
  size_t savedLimit = (getNormalizer() == Normalizer::softmax ? 1 : 0) +
                      (getTopk() ? 1 : 0);
  if (getSaved().size() > savedLimit)
    return emitOpError("has at most ")
           << savedLimit + 1
           << " results here: out, lse (softmax normalizer) and topk_blocks "
              "(topk), in that order; got "
           << getNumResults();
  if (Value blocks = getTopkBlocks())
    if (failed(check.topkBlocks(cast<AttnTensorType>(blocks.getType()), q,
                                *getTopk())))
      return failure();
  int sources = (getBlockMask() ? 1 : 0) +
                (getKvNumBlocks() || getKvIndices() ? 1 : 0) +
                (getTopk() ? 1 : 0);
  if (sources != 1)
    return emitOpError("needs exactly one source of sparsity: block_mask, "
                       "kv_num_blocks with kv_indices, or topk; got ")
           << sources;
  return verifyBlockSources(*this, check, q, getBlockMask(), getKvNumBlocks(),
                            getKvIndices());
}

LogicalResult SparseSoftmaxOp::verifyRegions() {
  if (failed(verifySoftmaxFamilyRegions(*this)))
    return failure();
  // Top-k selection is shared by the query heads of a group, so the blocks
  // it may choose from cannot depend on the query head.
  if (getTopk() && !getMask().empty() &&
      !getMask().front().getArgument(mask_arg::H).use_empty())
    return emitOpError("top-k block selection needs a mask that does not "
                       "depend on the head index h");
  return success();
}
