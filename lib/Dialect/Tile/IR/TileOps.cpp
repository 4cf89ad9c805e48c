//===- TileOps.cpp - Target-neutral tile program operations ---------------===//

#include "attnc/Dialect/Tile/IR/TileOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace attnc::tile;

#define GET_OP_CLASSES
#include "attnc/Dialect/Tile/IR/TileOps.cpp.inc"

namespace {

/// Whether two dimensions can be equal (either may be dynamic).
bool compatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

std::string shapeString(ShapedType type) {
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      type.getShape(), os,
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          os << "?";
        else
          os << d;
      },
      "x");
  return text;
}

/// The checks shared by load and store: `position` names every source
/// dimension but the columns of a 2-D tile (or every one, the last being
/// the first column of a tile with a static column count that fits), and
/// `row_dim` is one of the row dimensions.
LogicalResult verifyRowAddressing(Operation *op, RankedTensorType tile,
                                  MemRefType memref, size_t positions,
                                  int64_t rowDim) {
  int64_t expected = memref.getRank() - (tile.getRank() == 2 ? 1 : 0);
  bool firstColumn =
      tile.getRank() == 2 && static_cast<int64_t>(positions) == expected + 1;
  if (static_cast<int64_t>(positions) != expected && !firstColumn)
    return op->emitOpError("needs ")
           << expected << " position indices for a rank-" << tile.getRank()
           << " tile of a rank-" << memref.getRank() << " memref"
           << (tile.getRank() == 2 ? " (or one more, its first column)" : "")
           << ", got " << positions;
  if (rowDim < 0 || rowDim >= expected)
    return op->emitOpError("row_dim ")
           << rowDim << " is not one of the " << expected
           << " position dimensions";
  if (firstColumn) {
    int64_t cols = tile.getDimSize(1), sourceCols = memref.getShape().back();
    if (ShapedType::isDynamic(cols))
      return op->emitOpError("tile that starts at a column needs a static "
                             "column count");
    if (!ShapedType::isDynamic(sourceCols) && cols > sourceCols)
      return op->emitOpError("tile has ")
             << cols << " columns but the memref's rows have " << sourceCols;
    return success();
  }
  if (tile.getRank() == 2 &&
      !compatible(tile.getDimSize(1), memref.getShape().back()))
    return op->emitOpError("tile has ")
           << tile.getDimSize(1) << " columns but the memref's rows have "
           << memref.getShape().back();
  return success();
}

/// Whether the position of a load or store of `tile` names its first column.
bool namesFirstColumn(Value tile, Value memref, size_t positions) {
  return cast<RankedTensorType>(tile.getType()).getRank() == 2 &&
         static_cast<int64_t>(positions) ==
             cast<MemRefType>(memref.getType()).getRank();
}

} // namespace

//===----------------------------------------------------------------------===//
// GridOp
//===----------------------------------------------------------------------===//

void GridOp::build(OpBuilder &builder, OperationState &state, Value heads,
                   Value batches, int64_t blockRows, bool perSequence) {
  state.addOperands({heads, batches});
  Properties &properties = state.getOrAddProperties<Properties>();
  properties.block_rows = builder.getI64IntegerAttr(blockRows);
  if (perSequence)
    properties.per_sequence = builder.getUnitAttr();
  Region *body = state.addRegion();
  Block *block = new Block();
  body->push_back(block);
  Type index = builder.getIndexType();
  for (int i = 0; i < 3; ++i)
    block->addArgument(index, state.location);
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToEnd(block);
  YieldOp::create(builder, state.location);
}

ParseResult GridOp::parse(OpAsmParser &parser, OperationState &result) {
  SmallVector<OpAsmParser::Argument> args;
  llvm::SMLoc argsLoc = parser.getCurrentLocation();
  if (parser.parseArgumentList(args, OpAsmParser::Delimiter::Paren))
    return failure();
  if (args.size() != 3)
    return parser.emitError(argsLoc,
                            "expected (query block, head, batch) arguments");
  Type index = parser.getBuilder().getIndexType();
  for (OpAsmParser::Argument &arg : args)
    arg.type = index;
  OpAsmParser::UnresolvedOperand heads, batches;
  int64_t blockRows = 0;
  if (parser.parseKeyword("heads") || parser.parseOperand(heads) ||
      parser.parseKeyword("batches") || parser.parseOperand(batches) ||
      parser.parseKeyword("block_rows") || parser.parseInteger(blockRows) ||
      parser.resolveOperand(heads, index, result.operands) ||
      parser.resolveOperand(batches, index, result.operands))
    return failure();
  Properties &properties = result.getOrAddProperties<Properties>();
  properties.block_rows = parser.getBuilder().getI64IntegerAttr(blockRows);
  if (succeeded(parser.parseOptionalKeyword("per_sequence")))
    properties.per_sequence = parser.getBuilder().getUnitAttr();
  if (parser.parseOptionalAttrDictWithKeyword(result.attributes))
    return failure();
  Region *body = result.addRegion();
  if (parser.parseRegion(*body, args))
    return failure();
  GridOp::ensureTerminator(*body, parser.getBuilder(), result.location);
  return success();
}

void GridOp::print(OpAsmPrinter &p) {
  p << " (";
  llvm::interleaveComma(getBody().getArguments(), p,
                        [&](BlockArgument arg) { p.printOperand(arg); });
  p << ") heads " << getHeads() << " batches " << getBatches()
    << " block_rows " << getBlockRows();
  if (getPerSequence())
    p << " per_sequence";
  p.printOptionalAttrDictWithKeyword(
      (*this)->getAttrs(), {getBlockRowsAttrName(), getPerSequenceAttrName()});
  p << " ";
  p.printRegion(getBody(), /*printEntryBlockArgs=*/false,
                /*printBlockTerminators=*/false);
}

LogicalResult GridOp::verify() {
  if (getBlockRows() <= 0)
    return emitOpError("block_rows must be positive, got ") << getBlockRows();
  Block &body = getBody().front();
  if (body.getNumArguments() != 3 ||
      !llvm::all_of(body.getArgumentTypes(),
                    [](Type type) { return type.isIndex(); }))
    return emitOpError("body must take three index arguments (query block, "
                       "head, batch)");
  return success();
}

LogicalResult QueryBlocksOp::verify() {
  auto grid = (*this)->getParentOfType<GridOp>();
  if (!grid || grid.getPerSequence())
    return emitOpError("must be inside an attn_tile.grid of query blocks "
                       "(not per_sequence)");
  return success();
}

//===----------------------------------------------------------------------===//
// LoadOp, StoreOp
//===----------------------------------------------------------------------===//

LogicalResult LoadOp::verify() {
  auto tile = cast<RankedTensorType>(getResult().getType());
  auto memref = cast<MemRefType>(getSource().getType());
  if (tile.getElementType() != memref.getElementType())
    return emitOpError("tile element type ")
           << tile.getElementType() << " differs from the memref's "
           << memref.getElementType();
  return verifyRowAddressing(*this, tile, memref, getPosition().size(),
                             getRowDim());
}

bool LoadOp::hasFirstColumn() {
  return namesFirstColumn(getResult(), getSource(), getPosition().size());
}

bool StoreOp::hasFirstColumn() {
  return namesFirstColumn(getValue(), getDest(), getPosition().size());
}

LogicalResult StoreOp::verify() {
  auto tile = cast<RankedTensorType>(getValue().getType());
  auto memref = cast<MemRefType>(getDest().getType());
  if (!isa<FloatType>(memref.getElementType()))
    return emitOpError("stores floats, not ") << memref.getElementType();
  return verifyRowAddressing(*this, tile, memref, getPosition().size(),
                             getRowDim());
}

//===----------------------------------------------------------------------===//
// ScatterAddOp
//===----------------------------------------------------------------------===//

LogicalResult ScatterAddOp::verify() {
  auto memref = cast<MemRefType>(getDest().getType());
  if (!memref.getElementType().isF32())
    return emitOpError("adds into f32, not ") << memref.getElementType();
  if (static_cast<int64_t>(getIndices().size()) != memref.getRank())
    return emitOpError("needs one index tile per dimension of the destination (")
           << memref.getRank() << "), got " << getIndices().size();
  for (Value index : getIndices())
    if (index.getType() != getValues().getType())
      return emitOpError("index tile ")
             << index.getType() << " does not have the values' type "
             << getValues().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// DotOp
//===----------------------------------------------------------------------===//

LogicalResult DotOp::verify() {
  auto lhs = cast<RankedTensorType>(getLhs().getType());
  auto rhs = cast<RankedTensorType>(getRhs().getType());
  auto acc = cast<RankedTensorType>(getAcc().getType());
  if (lhs.getRank() != 2 || rhs.getRank() != 2 || acc.getRank() != 2)
    return emitOpError("multiplies 2-D tiles");
  if (acc != getResult().getType())
    return emitOpError("accumulator and result types differ");
  if (!acc.getElementType().isF32())
    return emitOpError("accumulates in f32, not ") << acc.getElementType();
  int64_t rows = lhs.getDimSize(getTransposeLhs() ? 1 : 0);
  int64_t lhsDepth = lhs.getDimSize(getTransposeLhs() ? 0 : 1);
  int64_t depth = rhs.getDimSize(getTransposeRhs() ? 1 : 0);
  int64_t columns = rhs.getDimSize(getTransposeRhs() ? 0 : 1);
  if (!compatible(lhsDepth, depth))
    return emitOpError("lhs ")
           << (getTransposeLhs() ? "(transposed) " : "") << shapeString(lhs)
           << " and rhs " << (getTransposeRhs() ? "(transposed) " : "")
           << shapeString(rhs) << " do not share the contracted dimension";
  if (!compatible(acc.getDimSize(0), rows) ||
      !compatible(acc.getDimSize(1), columns))
    return emitOpError("accumulator ")
           << shapeString(acc) << " is not rows(lhs) x columns(rhs)";
  return success();
}

//===----------------------------------------------------------------------===//
// MapOp
//===----------------------------------------------------------------------===//

LogicalResult MapOp::verify() {
  auto result = cast<RankedTensorType>(getResult().getType());
  for (auto [index, input] : llvm::enumerate(getInputs())) {
    auto type = cast<RankedTensorType>(input.getType());
    bool sameShape = type.getRank() == result.getRank() &&
                     llvm::all_of(llvm::seq<int64_t>(0, type.getRank()),
                                  [&](int64_t d) {
                                    return compatible(type.getDimSize(d),
                                                      result.getDimSize(d));
                                  });
    bool rowBroadcast = type.getRank() == 1 && result.getRank() == 2 &&
                        compatible(type.getDimSize(0), result.getDimSize(0));
    // One row (or column) of values stands for every row (or column).
    bool unitBroadcast =
        type.getRank() == 2 && result.getRank() == 2 &&
        llvm::all_of(llvm::seq<int64_t>(0, 2), [&](int64_t d) {
          return type.getDimSize(d) == 1 ||
                 compatible(type.getDimSize(d), result.getDimSize(d));
        });
    if (!sameShape && !rowBroadcast && !unitBroadcast)
      return emitOpError("input ")
             << index << " of shape " << shapeString(type)
             << " is neither the result's shape " << shapeString(result)
             << " nor one value per row or column of it";
  }
  return success();
}

LogicalResult MapOp::verifyRegions() {
  auto result = cast<RankedTensorType>(getResult().getType());
  Block &body = getBody().front();
  SmallVector<Type> expected(result.getRank(),
                             IndexType::get(getContext()));
  for (Value input : getInputs())
    expected.push_back(cast<RankedTensorType>(input.getType()).getElementType());
  if (body.getArgumentTypes() != ArrayRef<Type>(expected))
    return emitOpError("body must take ")
           << result.getRank()
           << " position indices, then one element of each input";
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield || yield.getValues().size() != 1 ||
      yield.getValues()[0].getType() != result.getElementType())
    return emitOpError("body must yield one ")
           << result.getElementType() << " with attn_tile.yield";
  return success();
}

//===----------------------------------------------------------------------===//
// ReduceOp
//===----------------------------------------------------------------------===//

LogicalResult ReduceOp::verify() {
  auto input = cast<RankedTensorType>(getInput().getType());
  if (input.getRank() == 1) {
    if (getResult().getType() != input.getElementType())
      return emitOpError("reduces a 1-D tile to one ")
             << input.getElementType() << ", not " << getResult().getType();
    return success();
  }
  auto result = dyn_cast<RankedTensorType>(getResult().getType());
  if (!result || result.getRank() != 1)
    return emitOpError("reduces a 2-D tile to a 1-D tile");
  if (!compatible(input.getDimSize(0), result.getDimSize(0)) ||
      input.getElementType() != result.getElementType())
    return emitOpError("result must hold one ")
           << input.getElementType() << " per row of the input";
  return success();
}

//===----------------------------------------------------------------------===//
// SliceOp, TransposeOp
//===----------------------------------------------------------------------===//

LogicalResult SliceOp::verify() {
  auto input = cast<RankedTensorType>(getInput().getType());
  auto result = cast<RankedTensorType>(getResult().getType());
  if (input.getRank() != result.getRank() ||
      input.getElementType() != result.getElementType() ||
      (input.getRank() == 2 &&
       !compatible(input.getDimSize(1), result.getDimSize(1))))
    return emitOpError("result ")
           << shapeString(result) << " must take rows of the input "
           << shapeString(input) << " (same columns and element type)";
  return success();
}

LogicalResult TransposeOp::verify() {
  auto input = cast<RankedTensorType>(getInput().getType());
  auto result = cast<RankedTensorType>(getResult().getType());
  if (input.getRank() != 2 || result.getRank() != 2 ||
      input.getElementType() != result.getElementType() ||
      !compatible(input.getDimSize(0), result.getDimSize(1)) ||
      !compatible(input.getDimSize(1), result.getDimSize(0)))
    return emitOpError("result ")
           << shapeString(result) << " is not the transpose of "
           << shapeString(input);
  return success();
}

//===----------------------------------------------------------------------===//
// DecayDotOp and DecayCombineOp
//===----------------------------------------------------------------------===//

/// The checks the decayed products share: 2-D operands, an f32 accumulator
/// of the result's type, and each gate of its named tile's shape.
static LogicalResult
verifyDecayedProduct(Operation *op, Value lhs, Value rhs, Value acc,
                     ArrayRef<std::tuple<StringRef, Value, Value>> gates) {
  auto rank2 = [](Value tile) {
    return cast<RankedTensorType>(tile.getType()).getRank() == 2;
  };
  if (!rank2(lhs) || !rank2(rhs) || !rank2(acc))
    return op->emitOpError("multiplies 2-D tiles");
  auto accType = cast<RankedTensorType>(acc.getType());
  if (accType != op->getResult(0).getType() ||
      !accType.getElementType().isF32())
    return op->emitOpError("accumulates in f32: the accumulator and the "
                           "result must both be that type");
  for (auto [name, tile, gate] : gates) {
    auto shape = cast<RankedTensorType>(tile.getType());
    auto gateType = cast<RankedTensorType>(gate.getType());
    if (gateType.getRank() != 2 || !gateType.getElementType().isF32() ||
        !compatible(gateType.getDimSize(0), shape.getDimSize(0)) ||
        !compatible(gateType.getDimSize(1), shape.getDimSize(1)))
      return op->emitOpError("needs an f32 ")
             << name << " gate of the " << name << "'s shape "
             << shapeString(shape) << ", got " << shapeString(gateType);
  }
  return success();
}

LogicalResult DecayDotOp::verify() {
  if (failed(verifyDecayedProduct(*this, getLhs(), getRhs(), getAcc(),
                                  {{"lhs", getLhs(), getLhsGate()},
                                   {"rhs", getRhs(), getRhsGate()}})))
    return failure();
  if (static_cast<int64_t>(getDiagonalBlock()) < 0)
    return emitOpError("needs a diagonal_block of 0 (none) or more rows, got ")
           << static_cast<int64_t>(getDiagonalBlock());
  auto lhs = cast<RankedTensorType>(getLhs().getType());
  auto rhs = cast<RankedTensorType>(getRhs().getType());
  auto acc = cast<RankedTensorType>(getAcc().getType());
  if (!compatible(lhs.getDimSize(1), rhs.getDimSize(1)))
    return emitOpError("lhs ") << shapeString(lhs) << " and rhs (transposed) "
                               << shapeString(rhs)
                               << " do not share the contracted dimension";
  if (!compatible(acc.getDimSize(0), lhs.getDimSize(0)) ||
      !compatible(acc.getDimSize(1), rhs.getDimSize(0)))
    return emitOpError("accumulator ")
           << shapeString(acc) << " is not rows(lhs) x rows(rhs)";
  return success();
}

LogicalResult DecayCombineOp::verify() {
  if (failed(verifyDecayedProduct(*this, getLhs(), getRhs(), getAcc(),
                                  {{"result", getAcc(), getGate()},
                                   {"rhs", getRhs(), getRhsGate()}})))
    return failure();
  if (getLowerTriangular() == getUpperTriangular())
    return emitOpError("sums over one triangle: needs exactly one of "
                       "lower_triangular and upper_triangular");
  if (static_cast<int64_t>(getDiagonalBlock()) < 0)
    return emitOpError("needs a diagonal_block of 0 (none) or more rows, got ")
           << static_cast<int64_t>(getDiagonalBlock());
  auto lhs = cast<RankedTensorType>(getLhs().getType());
  auto rhs = cast<RankedTensorType>(getRhs().getType());
  auto acc = cast<RankedTensorType>(getAcc().getType());
  if (!compatible(lhs.getDimSize(1), rhs.getDimSize(0)))
    return emitOpError("lhs ") << shapeString(lhs) << " and rhs "
                               << shapeString(rhs)
                               << " do not share the contracted dimension";
  if (!compatible(acc.getDimSize(0), lhs.getDimSize(0)) ||
      !compatible(acc.getDimSize(1), rhs.getDimSize(1)))
    return emitOpError("accumulator ")
           << shapeString(acc) << " is not rows(lhs) x cols(rhs)";
  return success();
}

//===----------------------------------------------------------------------===//
// TopKInsertOp
//===----------------------------------------------------------------------===//

LogicalResult TopKInsertOp::verify() {
  auto lists = cast<RankedTensorType>(getScores().getType());
  auto candidates = cast<RankedTensorType>(getCandidateScore().getType());
  if (lists.getRank() != 2 || !lists.getElementType().isF32() ||
      ShapedType::isDynamic(lists.getDimSize(1)))
    return emitOpError("keeps its lists in 2-D f32 tiles of k static "
                       "columns, not ")
           << lists;
  if (candidates.getRank() != 1 || !candidates.getElementType().isF32() ||
      !compatible(candidates.getDimSize(0), lists.getDimSize(0)))
    return emitOpError("needs one f32 candidate per row of its lists ")
           << shapeString(lists) << ", got " << candidates;
  return success();
}
