//===- MLIRGenFamilies.cpp - The family ops and their regions -------------===//
//
// attn.softmax, attn.chunk_softmax and attn.sparse_softmax (chosen by the
// mask's structure and the options: a chunk-local conjunct, a block-mask
// conjunct, index lists or top-k selection) and attn.linear, with their
// score, mask, gate and feature regions.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mlirgen;
using llvm::SMLoc;
using llvm::StringRef;

namespace {

/// Flattens `a && b && c` into its conjuncts.
void collectConjuncts(const ast::Expr *expr,
                      std::vector<const ast::Expr *> &conjuncts) {
  if (auto *binary = llvm::dyn_cast<ast::BinaryExpr>(expr);
      binary && binary->op == ast::BinaryOp::And) {
    collectConjuncts(binary->lhs.get(), conjuncts);
    collectConjuncts(binary->rhs.get(), conjuncts);
    return;
  }
  conjuncts.push_back(expr);
}

bool isName(const ast::Expr *expr, StringRef name) {
  auto *nameExpr = llvm::dyn_cast<ast::NameExpr>(expr);
  return nameExpr && nameExpr->name == name;
}

/// Matches `index / C` with a positive integer literal C.
std::optional<int64_t> matchDivByConstant(const ast::Expr *expr,
                                          StringRef index) {
  auto *div = llvm::dyn_cast<ast::BinaryExpr>(expr);
  if (!div || div->op != ast::BinaryOp::Div || !isName(div->lhs.get(), index))
    return std::nullopt;
  auto *number = llvm::dyn_cast<ast::NumberExpr>(div->rhs.get());
  if (!number || !number->isInteger || number->intValue <= 0)
    return std::nullopt;
  return number->intValue;
}

/// Matches `i / C == j / C` and returns C.
std::optional<int64_t> matchChunkConjunct(const ast::Expr *expr) {
  auto *eq = llvm::dyn_cast<ast::BinaryExpr>(expr);
  if (!eq || eq->op != ast::BinaryOp::Eq)
    return std::nullopt;
  std::optional<int64_t> lhs = matchDivByConstant(eq->lhs.get(), "i");
  std::optional<int64_t> rhs = matchDivByConstant(eq->rhs.get(), "j");
  if (!lhs || !rhs || *lhs != *rhs)
    return std::nullopt;
  return lhs;
}

/// Matches `P[b, h, i / BQ, j / BK]`.
std::optional<BlockMaskMatch> matchBlockMaskConjunct(const ast::Expr *expr) {
  auto *index = llvm::dyn_cast<ast::IndexExpr>(expr);
  if (!index || index->indices.size() != 4 ||
      !isName(index->indices[0].get(), "b") ||
      !isName(index->indices[1].get(), "h"))
    return std::nullopt;
  std::optional<int64_t> blockQ =
      matchDivByConstant(index->indices[2].get(), "i");
  std::optional<int64_t> blockK =
      matchDivByConstant(index->indices[3].get(), "j");
  if (!blockQ || !blockK)
    return std::nullopt;
  return BlockMaskMatch{index->base, *blockQ, *blockK};
}

} // namespace

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

FailureOr<Operation *>
MLIRGenImpl::generateSoftmax(Location opLoc, const ast::Statement &statement,
                             ArrayRef<Value> qkv, Value cuQ, Value cuK,
                             attn::Layout layout,
                             llvm::StringMap<const ast::Option *> &options,
                             ArrayRef<Type> resultTypes) {
  FloatAttr scale;
  if (const ast::Option *option = options.lookup("scale")) {
    FailureOr<FloatAttr> parsed = scaleOption(*option);
    if (failed(parsed))
      return failure();
    scale = *parsed;
  }
  attn::Normalizer normalizer = attn::Normalizer::softmax;
  if (const ast::Option *option = options.lookup("normalizer")) {
    auto *name = llvm::dyn_cast<ast::NameExpr>(option->value.get());
    std::optional<attn::Normalizer> parsed =
        name ? attn::symbolizeNormalizer(name->name) : std::nullopt;
    if (!parsed) {
      error(option->value->loc, "unknown normalizer",
            "normalizers: softmax, sigmoid, none");
      return failure();
    }
    normalizer = *parsed;
  }

  // Structure from the mask: chunk-local and block-mask conjuncts.
  std::optional<int64_t> chunk;
  std::optional<BlockMaskMatch> blockMask;
  std::vector<const ast::Expr *> remaining;
  if (failed(softmaxMaskStructure(options, chunk, blockMask, remaining)))
    return failure();

  // Sparsity sources: block mask, index lists, or top-k selection.
  std::optional<int64_t> topk, blockQ, blockK;
  Value numBlocks, indices;
  bool sparse = false;
  if (failed(softmaxSparsity(statement, options, chunk, blockMask, topk, blockQ,
                             blockK, numBlocks, indices, sparse)))
    return failure();

  Type f32 = builder.getF32Type(), index = builder.getIndexType();
  SmallVector<Type> resultTypesVec(resultTypes);
  Operation *op;
  Region *scoreRegion, *maskRegion;
  if (sparse) {
    Value maskTensor = blockMask ? params.lookup(blockMask->tensor) : Value();
    auto sparseOp = attn::SparseSoftmaxOp::create(
        builder, opLoc, resultTypesVec[0],
        TypeRange(resultTypesVec).drop_front(), qkv[0],
        qkv[1], qkv[2], cuQ, cuK, scale,
        attn::NormalizerAttr::get(builder.getContext(), normalizer),
        attn::LayoutAttr::get(builder.getContext(), layout), maskTensor,
        numBlocks, indices,
        builder.getI64IntegerAttr(*blockQ), builder.getI64IntegerAttr(*blockK),
        topk ? builder.getI64IntegerAttr(*topk) : IntegerAttr());
    op = sparseOp;
    scoreRegion = &sparseOp.getScore();
    maskRegion = &sparseOp.getMask();
  } else if (chunk) {
    auto chunkOp = attn::ChunkSoftmaxOp::create(
        builder, opLoc, resultTypesVec[0],
        resultTypesVec.size() > 1 ? resultTypesVec[1] : Type(), qkv[0],
        qkv[1], qkv[2], cuQ, cuK, scale,
        attn::NormalizerAttr::get(builder.getContext(), normalizer),
        attn::LayoutAttr::get(builder.getContext(), layout),
        builder.getI64IntegerAttr(*chunk));
    op = chunkOp;
    scoreRegion = &chunkOp.getScore();
    maskRegion = &chunkOp.getMask();
  } else {
    auto softmaxOp = attn::SoftmaxOp::create(
        builder, opLoc, resultTypesVec[0],
        resultTypesVec.size() > 1 ? resultTypesVec[1] : Type(), qkv[0],
        qkv[1], qkv[2], cuQ, cuK, scale,
        attn::NormalizerAttr::get(builder.getContext(), normalizer),
        attn::LayoutAttr::get(builder.getContext(), layout));
    op = softmaxOp;
    scoreRegion = &softmaxOp.getScore();
    maskRegion = &softmaxOp.getMask();
  }
  OpBuilder::InsertionGuard guard(builder);

  if (const ast::Option *option = options.lookup("score")) {
    SmallVector<Type> argTypes(attn::score_arg::Count, index);
    argTypes[attn::score_arg::S] = f32;
    Block *block = createRegionBlock(*scoreRegion, argTypes, opLoc);
    Scope scope("score");
    scope.add("s", ScalarKind::Float, block->getArgument(attn::score_arg::S));
    addSoftmaxIndices(scope, block, /*offset=*/1);
    if (failed(emitYield(*option->value, scope, ScalarKind::Float)))
      return failure();
  }
  if (!remaining.empty()) {
    SmallVector<Type> argTypes(attn::mask_arg::Count, index);
    Block *block = createRegionBlock(*maskRegion, argTypes, opLoc);
    Scope scope("mask");
    addSoftmaxIndices(scope, block, /*offset=*/0);
    FailureOr<Typed> value = emitConjunction(remaining, scope);
    if (failed(value))
      return failure();
    attn::YieldOp::create(builder, value->value.getLoc(), value->value);
  }
  return op;
}

LogicalResult MLIRGenImpl::softmaxMaskStructure(
    llvm::StringMap<const ast::Option *> &options,
    std::optional<int64_t> &chunk, std::optional<BlockMaskMatch> &blockMask,
    std::vector<const ast::Expr *> &remaining) {
  std::vector<const ast::Expr *> conjuncts;
  if (const ast::Option *mask = options.lookup("mask"))
    collectConjuncts(mask->value.get(), conjuncts);
  for (const ast::Expr *conjunct : conjuncts) {
    if (!blockMask) {
      if (std::optional<BlockMaskMatch> match =
              matchBlockMaskConjunct(conjunct)) {
        auto decl = paramDecls.find(match->tensor);
        if (decl != paramDecls.end() &&
            decl->second->dtype == ast::DType::Bool) {
          if (std::max(match->blockQ, match->blockK) > attn::kMaxBlockSize) {
            error(conjunct->loc,
                  "block mask blocks of " + std::to_string(match->blockQ) +
                      " x " + std::to_string(match->blockK) +
                      " exceed the limit of " +
                      std::to_string(attn::kMaxBlockSize),
                  "use blocks of at most " +
                      std::to_string(attn::kMaxBlockSize) +
                      " positions (docs/language.md, \"Limits\")");
            return failure();
          }
          blockMask = match;
          continue;
        }
      }
    }
    if (!chunk)
      if ((chunk = matchChunkConjunct(conjunct)))
        continue;
    remaining.push_back(conjunct);
  }
  if (const ast::Option *option = options.lookup("chunk")) {
    FailureOr<int64_t> value = positiveInteger(*option);
    if (failed(value))
      return failure();
    if (chunk && *chunk != *value) {
      error(option->loc, "chunk = " + std::to_string(*value) +
                             " contradicts the mask's i / " +
                             std::to_string(*chunk) + " == j / " +
                             std::to_string(*chunk));
      return failure();
    }
    chunk = *value;
  }
  return success();
}

LogicalResult MLIRGenImpl::softmaxSparsity(
    const ast::Statement &statement,
    llvm::StringMap<const ast::Option *> &options,
    const std::optional<int64_t> &chunk,
    const std::optional<BlockMaskMatch> &blockMask,
    std::optional<int64_t> &topk, std::optional<int64_t> &blockQ,
    std::optional<int64_t> &blockK, Value &numBlocks, Value &indices,
    bool &sparse) {
  if (const ast::Option *option = options.lookup("select")) {
    auto *call = llvm::dyn_cast<ast::CallExpr>(option->value.get());
    if (!call || call->callee != "topk" || call->args.size() != 2 ||
        call->args[0].isNamed() || call->args[1].name != "block") {
      error(option->value->loc, "select must be topk(n, block = size)",
            "e.g. select = topk(16, block = 64)");
      return failure();
    }
    auto *n = llvm::dyn_cast<ast::NumberExpr>(call->args[0].value.get());
    auto *size = llvm::dyn_cast<ast::NumberExpr>(call->args[1].value.get());
    if (!n || !n->isInteger || n->intValue <= 0 || !size ||
        !size->isInteger || size->intValue <= 0) {
      error(option->value->loc,
            "topk needs a positive number of blocks and a positive block "
            "size",
            "e.g. select = topk(16, block = 64)");
      return failure();
    }
    if (n->intValue > attn::kMaxTopk ||
        size->intValue > attn::kMaxBlockSize) {
      bool count = n->intValue > attn::kMaxTopk;
      error(count ? n->loc : size->loc,
            count ? "topk selects " + std::to_string(n->intValue) +
                        " blocks, above the limit of " +
                        std::to_string(attn::kMaxTopk)
                  : "topk blocks of " + std::to_string(size->intValue) +
                        " exceed the limit of " +
                        std::to_string(attn::kMaxBlockSize),
            "docs/language.md, \"Limits\", says why sizes are bounded");
      return failure();
    }
    topk = n->intValue;
    blockQ = blockK = size->intValue;
  }
  for (StringRef name : {"block_q", "block_k"})
    if (const ast::Option *option = options.lookup(name)) {
      FailureOr<int64_t> value =
          positiveInteger(*option, attn::kMaxBlockSize);
      if (failed(value))
        return failure();
      (name == "block_q" ? blockQ : blockK) = *value;
    }
  for (StringRef name : {"kv_num_blocks", "kv_indices"})
    if (const ast::Option *option = options.lookup(name)) {
      FailureOr<Value> tensor = paramArgument(*option->value, name);
      if (failed(tensor))
        return failure();
      (name == "kv_num_blocks" ? numBlocks : indices) = *tensor;
    }
  bool indexLists = numBlocks || indices;
  if (indexLists && (!blockQ || !blockK)) {
    error(statement.familyLoc,
          "kv_num_blocks/kv_indices need the block sizes",
          "add block_q = 128; block_k = 128 (or your sizes)");
    return failure();
  }
  if (blockMask) {
    if (topk || indexLists) {
      error(statement.familyLoc,
            "a block-mask conjunct cannot be combined with select or "
            "kv_indices");
      return failure();
    }
    blockQ = blockMask->blockQ;
    blockK = blockMask->blockK;
  }
  sparse = blockMask || topk || indexLists;
  if (!sparse && (options.lookup("block_q") || options.lookup("block_k"))) {
    error((options.lookup("block_q") ? options.lookup("block_q")
                                     : options.lookup("block_k"))
              ->loc,
          "block sizes need a source of block sparsity",
          "add kv_num_blocks and kv_indices, select = topk(...), or a "
          "blocks[b, h, i / BQ, j / BK] conjunct in the mask");
    return failure();
  }
  if (sparse && chunk) {
    error(options.lookup("chunk") ? options.lookup("chunk")->loc
                                  : options.lookup("mask")->loc,
          "chunk-local attention cannot be combined with block sparsity",
          "express one of them in the mask instead");
    return failure();
  }
  return success();
}

Block *MLIRGenImpl::createRegionBlock(Region &region, ArrayRef<Type> types,
                                      Location at) {
  SmallVector<Location> locs(types.size(), at);
  return builder.createBlock(&region, {}, types, locs);
}

void MLIRGenImpl::addSoftmaxIndices(Scope &scope, Block *block,
                                    unsigned offset) {
  static constexpr StringRef names[] = {"b", "h", "i", "j",
                                        "n", "m", "qstart", "kstart"};
  for (auto [position, name] : llvm::enumerate(names))
    scope.add(name, ScalarKind::Int, block->getArgument(offset + position));
  scope.addLazy("causal", [this, block, offset]() {
    auto arg = [&](unsigned position) {
      return block->getArgument(offset + position);
    };
    Location at = arg(0).getLoc();
    Value lhs = arith::AddIOp::create(builder, at, arg(3), arg(4));
    Value rhs = arith::AddIOp::create(builder, at, arg(2), arg(5));
    return Typed{arith::CmpIOp::create(builder, at, arith::CmpIPredicate::ule,
                                       lhs, rhs),
                 ScalarKind::Bool};
  });
}

FailureOr<Typed>
MLIRGenImpl::emitConjunction(ArrayRef<const ast::Expr *> conjuncts,
                             Scope &scope) {
  FailureOr<Typed> result = failure();
  for (const ast::Expr *conjunct : conjuncts) {
    FailureOr<Typed> value = emitExpr(*conjunct, scope);
    if (failed(value))
      return failure();
    if (value->kind != ScalarKind::Bool) {
      error(conjunct->loc,
            "the mask must be a bool expression, got " +
                toString(value->kind),
            "compare values, e.g. j <= i, or use causal");
      return failure();
    }
    result = succeeded(result)
                 ? Typed{arith::AndIOp::create(builder, loc(conjunct->loc),
                                               result->value, value->value),
                         ScalarKind::Bool}
                 : *value;
  }
  return result;
}

//===----------------------------------------------------------------------===//
// Linear
//===----------------------------------------------------------------------===//

FailureOr<Operation *>
MLIRGenImpl::generateLinear(Location opLoc, ArrayRef<Value> qkv, Value cu,
                            Value initial, attn::Layout layout,
                            llvm::StringMap<const ast::Option *> &options,
                            ArrayRef<Type> resultTypes) {
  FloatAttr scale = builder.getF32FloatAttr(1.0f);
  if (const ast::Option *option = options.lookup("scale")) {
    FailureOr<FloatAttr> parsed = scaleOption(*option);
    if (failed(parsed))
      return failure();
    scale = *parsed;
  }
  bool causal = true;
  if (const ast::Option *option = options.lookup("causal")) {
    FailureOr<bool> parsed = boolOption(*option);
    if (failed(parsed))
      return failure();
    causal = *parsed;
  }
  int64_t chunk = 64;
  if (const ast::Option *option = options.lookup("chunk")) {
    FailureOr<int64_t> parsed = positiveInteger(*option, attn::kMaxBlockSize);
    if (failed(parsed))
      return failure();
    chunk = *parsed;
  }
  const ast::Option *gateOption = options.lookup("gate");
  if (!causal && gateOption) {
    error(gateOption->loc, "non-causal linear attention takes no gate",
          "decay needs an order of time steps; drop the gate or causal");
    return failure();
  }

  auto op = attn::LinearOp::create(
      builder, opLoc, resultTypes[0],
      resultTypes.size() > 1 ? resultTypes[1] : Type(), qkv[0], qkv[1],
      qkv[2], cu, initial, scale,
      attn::GateKindAttr::get(builder.getContext(), attn::GateKind::none),
      builder.getBoolAttr(causal), builder.getI64IntegerAttr(chunk),
      attn::LayoutAttr::get(builder.getContext(), layout));
  OpBuilder::InsertionGuard guard(builder);
  Type f32 = builder.getF32Type(), index = builder.getIndexType();

  if (gateOption) {
    SmallVector<Type> argTypes(attn::gate_arg::Count, index);
    Block *block = createRegionBlock(op.getGate(), argTypes, opLoc);
    Scope scope("gate");
    scope.add("b", ScalarKind::Int, block->getArgument(attn::gate_arg::B));
    scope.add("h", ScalarKind::Int, block->getArgument(attn::gate_arg::H));
    scope.add("t", ScalarKind::Int, block->getArgument(attn::gate_arg::T));
    scope.add("d", ScalarKind::Int, block->getArgument(attn::gate_arg::D));
    scope.add("tstart", ScalarKind::Int,
              block->getArgument(attn::gate_arg::TStart));
    if (failed(emitYield(*gateOption->value, scope, ScalarKind::Float)))
      return failure();
    // The gate's kind follows from the indices it reads.
    auto used = [&](unsigned arg) {
      return !block->getArgument(arg).use_empty();
    };
    attn::GateKind kind = attn::GateKind::constant_per_head;
    if (used(attn::gate_arg::D))
      kind = attn::GateKind::per_key_dim;
    else if (used(attn::gate_arg::B) || used(attn::gate_arg::T) ||
             used(attn::gate_arg::TStart))
      kind = attn::GateKind::per_head;
    op.setGateKind(kind);
  }
  if (const ast::Option *option = options.lookup("feature")) {
    Block *block = createRegionBlock(op.getFeature(), {f32}, opLoc);
    Scope scope("feature");
    scope.add("x", ScalarKind::Float, block->getArgument(0));
    if (failed(emitYield(*option->value, scope, ScalarKind::Float)))
      return failure();
  }
  return op.getOperation();
}
