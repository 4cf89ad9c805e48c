//===- TileWorkspace.cpp - The launch's workspace: copies and scratch -----===//
//
// What each CTA keeps in the launch's workspace (GpuImage.h,
// launchWorkspace), after a header of status words:
//
// Partial copies. The gradients of float inputs that a score reads at
// computed positions (slope[h], rel[h, i - j + c]) are scatter-adds, and the
// function marks the results they go to (kPartialResultsAttrName). Each CTA
// adds into its own f32 copy of those results in one order: the tiles are
// staged in shared memory and thread 0 adds their elements row by row. The
// last CTA to finish (a counter in the workspace's first word) sums the
// copies in CTA order into the results. No float atomics, so the gradients
// are the same on every run whichever CTA ends last; the price is a copy
// per CTA and one serial add per element of each scattered tile.
//
// Scratch. Buffers that a program allocates before its grid (memref.alloc:
// per call on the CPU, so per CTA here) are views of the CTA's scratch, a
// slice after every CTA's copies, their sizes from the arguments' shapes.
// The launcher sizes it with the same sizes as a program over the shapes
// (scratchSizeProgram), so the kernel and the launcher agree.
//
//===----------------------------------------------------------------------===//

#include "TileProgramBuilder.h"
#include "attnc/Runtime/GpuImage.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::lowering;
using namespace attnc::lowering::tile_to_nvgpu;
namespace tile = attnc::tile;

/// The number of elements of `memref`.
static Value elementCount(LoweringBuilder &rb, Value memref) {
  Value count = rb.index(1);
  for (int64_t d = 0; d < cast<MemRefType>(memref.getType()).getRank(); ++d)
    count = rb.mul(count, rb.dim(memref, d));
  return count;
}

void ProgramBuilder::setUpWorkspace() {
  // The linear CTA number (x fastest, as the emulator numbers them), which
  // orders the final sum.
  Value gridX = gridSize(gpu::Dimension::x),
        gridY = gridSize(gpu::Dimension::y);
  ctaCount = rb.mul(rb.mul(gridX, gridY), gridSize(gpu::Dimension::z));
  Value cta = rb.add(
      blockIndex(gpu::Dimension::x),
      rb.mul(gridX, rb.add(blockIndex(gpu::Dimension::y),
                           rb.mul(gridY, blockIndex(gpu::Dimension::z)))));
  // The header: a counter and a word per CTA, padded to 16 bytes.
  Value headerWords = rb.mul(
      arith::DivUIOp::create(b, rb.add(ctaCount, idx(4)), idx(4)), idx(4));
  copyWords.clear();
  partialElements.clear();
  Value words = idx(0);
  for (Value result : partialResults) {
    copyWords.push_back(words);
    partialElements.push_back(elementCount(rb, result));
    words = rb.add(words, partialElements.back());
  }
  wordsPerCta = words;
  firstCopyWord = headerWords;
  Value own = rb.add(headerWords, rb.mul(cta, wordsPerCta));
  for (Value &offset : copyWords)
    offset = rb.add(own, offset);
  if (scratchAllocs.empty())
    return;
  // Each allocation, row-major, one after another in the CTA's scratch.
  SmallVector<SmallVector<OpFoldResult>> shapes;
  Value scratchWords = idx(0);
  for (memref::AllocOp alloc : scratchAllocs) {
    SmallVector<OpFoldResult> &shape = shapes.emplace_back();
    unsigned dynamic = 0;
    for (int64_t size : alloc.getType().getShape())
      shape.push_back(ShapedType::isDynamic(size)
                          ? OpFoldResult(mapping.lookup(
                                alloc.getDynamicSizes()[dynamic++]))
                          : OpFoldResult(idx(size)));
    Value elements = idx(1);
    for (OpFoldResult size : shape)
      elements = rb.mul(elements, getValueOrCreateConstantIndexOp(
                                      b, b.getLoc(), size));
    scratchWords = rb.add(scratchWords, elements);
  }
  Value offset = rb.add(rb.add(headerWords, rb.mul(ctaCount, wordsPerCta)),
                        rb.mul(cta, scratchWords));
  for (auto [alloc, shape] : llvm::zip_equal(scratchAllocs, shapes)) {
    int64_t rank = alloc.getType().getRank();
    SmallVector<OpFoldResult> strides(rank);
    Value stride = idx(1);
    for (int64_t d = rank; d-- > 0;) {
      strides[d] = stride;
      stride = rb.mul(stride, getValueOrCreateConstantIndexOp(b, b.getLoc(),
                                                              shape[d]));
    }
    // Dynamic sizes, as the kernel's parameters have.
    auto type = MemRefType::get(
        SmallVector<int64_t>(rank, ShapedType::kDynamic), b.getF32Type(),
        StridedLayoutAttr::get(
            b.getContext(), ShapedType::kDynamic,
            SmallVector<int64_t>(rank, ShapedType::kDynamic)));
    mapping.map(alloc.getResult(),
                memref::ReinterpretCastOp::create(b, type, scratch, offset,
                                                  shape, strides)
                    .getResult());
    offset = rb.add(offset, stride);
  }
}

FailureOr<SmallVector<int64_t>>
attnc::lowering::tile_to_nvgpu::scratchSizeProgram(
    func::FuncOp func, ArrayRef<memref::AllocOp> allocs) {
  SmallVector<int64_t> program;
  auto emit = [&](SizeOp op) { program.push_back(static_cast<int64_t>(op)); };
  // Appends the program of `size`; fails on what shapes do not determine.
  std::function<LogicalResult(Value)> append = [&](Value size) {
    Operation *def = size.getDefiningOp();
    if (std::optional<int64_t> constant = getConstantIntValue(size)) {
      emit(SizeOp::Const);
      program.push_back(*constant);
      return success();
    }
    if (auto dim = dyn_cast_or_null<memref::DimOp>(def)) {
      auto arg = dyn_cast<BlockArgument>(dim.getSource());
      std::optional<int64_t> index = dim.getConstantIndex();
      if (!arg || arg.getOwner() != &func.front() || !index)
        return failure();
      emit(SizeOp::Dim);
      program.append({arg.getArgNumber(), *index});
      return success();
    }
    std::optional<SizeOp> op;
    if (isa_and_nonnull<arith::AddIOp>(def))
      op = SizeOp::Add;
    else if (isa_and_nonnull<arith::SubIOp>(def))
      op = SizeOp::Sub;
    else if (isa_and_nonnull<arith::MulIOp>(def))
      op = SizeOp::Mul;
    else if (isa_and_nonnull<arith::CeilDivUIOp>(def))
      op = SizeOp::CeilDiv;
    else if (isa_and_nonnull<arith::DivUIOp>(def))
      op = SizeOp::Div;
    else if (isa_and_nonnull<arith::MaxUIOp>(def))
      op = SizeOp::Max;
    else if (isa_and_nonnull<arith::MinUIOp>(def))
      op = SizeOp::Min;
    if (!op || failed(append(def->getOperand(0))) ||
        failed(append(def->getOperand(1))))
      return failure();
    emit(*op);
    return success();
  };
  for (auto [number, constAlloc] : llvm::enumerate(allocs)) {
    memref::AllocOp alloc = constAlloc;
    unsigned dynamic = 0;
    for (auto [d, size] : llvm::enumerate(alloc.getType().getShape())) {
      if (!ShapedType::isDynamic(size)) {
        emit(SizeOp::Const);
        program.push_back(size);
      } else if (failed(append(alloc.getDynamicSizes()[dynamic++]))) {
        return alloc.emitOpError()
               << "on the GPU needs sizes that the arguments' shapes give "
                  "(constants, dims of arguments, + - * / ceildiv min max): "
                  "size "
               << d << " is not";
      }
      if (d > 0)
        emit(SizeOp::Mul);
    }
    if (alloc.getType().getRank() == 0) {
      emit(SizeOp::Const);
      program.push_back(1);
    }
    if (number > 0)
      emit(SizeOp::Add);
  }
  return program;
}

LogicalResult ProgramBuilder::lowerScatterAdd(tile::ScatterAddOp scatter) {
  Value dest = mapping.lookup(scatter.getDest());
  auto found = llvm::find(partialResults, dest);
  if (found == partialResults.end())
    return scatter.emitOpError(
        "on the GPU adds into one of the function's partial results "
        "(attnc.partial_results), of which each CTA has a copy");
  Value copy = copyWords[found - partialResults.begin()];
  SmallVector<const Fragment *> planes{&tiles[scatter.getValues()]};
  for (Value index : scatter.getIndices())
    planes.push_back(&tiles[index]);
  Fragment::Kind kind = planes.front()->kind;
  for (const Fragment *plane : planes)
    if (plane->kind != kind ||
        (kind != Fragment::Accumulator && kind != Fragment::Rows))
      return scatter.emitOpError("of a loaded tile or a tile of one row has "
                                 "no GPU lowering (it scatters computed f32 "
                                 "tiles of one layout)");
  // Rows: one column, a value per row.
  int64_t cols = kind == Fragment::Rows ? 1 : planes.front()->cols;
  // Every lane stages its elements of each plane (values, then one index
  // per dim of dest) in shared memory past the live tiles.
  Value staged =
      sharedTile(base, sharedEnd,
                 {static_cast<int64_t>(planes.size()), blockRows, cols}, f32);
  sharedPeak =
      std::max(sharedPeak, sharedEnd + static_cast<int64_t>(planes.size()) *
                                           blockRows * cols * 4);
  barrier(); // an earlier user of that memory may still read it
  for (auto [p, plane] : llvm::enumerate(planes))
    for (int64_t half = 0; half < 2; ++half) {
      if (kind == Fragment::Rows) { // the quad's lanes hold the same rows
        memref::StoreOp::create(b, plane->regs[half], staged,
                                ValueRange{idx(p), laneRow(half), idx(0)});
        continue;
      }
      for (int64_t nt = 0; nt < cols / nvvm::kMmaN; ++nt)
        for (int64_t e = 0; e < 2; ++e)
          memref::StoreOp::create(
              b, plane->regs[4 * nt + 2 * half + e], staged,
              ValueRange{idx(p), laneRow(half), laneCol(nt, e)});
    }
  barrier();
  // Thread 0 adds the rows below the count in row-major order, skipping
  // positions outside dest (-1: masked).
  Value rows = planes.front()->rows ? planes.front()->rows : idx(blockRows);
  Value first =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0));
  rb.ifThen(first, [&] {
    rb.loop(idx(0), rows, [&](Value r) {
      rb.loop(idx(0), idx(cols), [&](Value c) {
        Value inside = arith::ConstantIntOp::create(b, b.getI1Type(), 1);
        Value linear = idx(0);
        for (int64_t d = 0; d + 1 < static_cast<int64_t>(planes.size()); ++d) {
          Value size = rb.dim(dest, d);
          auto [position, inRange] = rb.scatterPosition(
              memref::LoadOp::create(b, staged, ValueRange{idx(d + 1), r, c}),
              size);
          inside = arith::AndIOp::create(b, inside, inRange);
          linear = rb.add(rb.mul(linear, size), position);
        }
        rb.ifThen(inside, [&] {
          Value word = rb.add(copy, linear);
          Value value =
              memref::LoadOp::create(b, staged, ValueRange{idx(0), r, c});
          storeWordF32(rb.add(loadWordF32(workspace, word), value), workspace,
                       word);
        });
      });
    });
  });
  barrier();
  return success();
}

// As the key splits finish (SoftmaxKeySplits.cpp): each thread's release
// fence orders its writes before the barrier, one thread counts the CTA
// done, and the last CTA's threads acquire before reading the others'
// copies. Each thread then sums elements e, e + threads, ... over the CTAs
// in order and stores them in the result's type and strides.
void ProgramBuilder::sumPartialCopies() {
  LLVM::FenceOp::create(b, LLVM::AtomicOrdering::release, "device");
  barrier();
  // Every tile is dead: the first shared word passes the count around.
  Value arrived = sharedTile(base, 0, {1}, b.getI32Type());
  sharedPeak = std::max<int64_t>(sharedPeak, 4);
  rb.ifThen(
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)),
      [&] {
        Value before =
            memref::AtomicRMWOp::create(b, arith::AtomicRMWKind::addi, i32(1),
                                        workspace, ValueRange{idx(0)});
        memref::StoreOp::create(b, before, arrived, ValueRange{idx(0)});
      });
  barrier();
  Value finishedBefore = arith::IndexCastOp::create(
      b, b.getIndexType(),
      memref::LoadOp::create(b, arrived, ValueRange{idx(0)}));
  Value last = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                     finishedBefore, rb.sub(ctaCount, idx(1)));
  rb.ifThen(last, [&] {
    LLVM::FenceOp::create(b, LLVM::AtomicOrdering::acquire, "device");
    Value offset = idx(0);
    for (size_t index = 0; index < partialResults.size(); ++index) {
      Value result = partialResults[index], elements = partialElements[index];
      forEachIndex(idx(0), elements, [&](Value e) {
        Value word = rb.add(firstCopyWord, rb.add(offset, e));
        Value sum = rb.loop(
            idx(0), ctaCount, {rb.f32(0)},
            [&](Value c, ValueRange acc) -> SmallVector<Value> {
              return {rb.add(
                  acc[0], loadWordF32(workspace,
                                      rb.add(word, rb.mul(c, wordsPerCta))))};
            })[0];
        // e as indices of the result, its last dim fastest.
        int64_t rank = cast<MemRefType>(result.getType()).getRank();
        SmallVector<Value> at(rank);
        Value rest = e;
        for (int64_t d = rank; d-- > 0;) {
          Value size = rb.dim(result, d);
          at[d] = arith::RemUIOp::create(b, rest, size);
          rest = arith::DivUIOp::create(b, rest, size);
        }
        rb.storeF32(sum, result, at);
      });
      offset = rb.add(offset, elements);
    }
  });
}
