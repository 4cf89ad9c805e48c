//===- GpuImage.h - A compiled GPU kernel and its launch facts --*- C++ -*-===//
//
// What the compiler hands to the GPU runtime: the PTX (or cubin) of one
// kernel plus everything needed to launch it without LLVM or MLIR: the
// entry name, the signature, threads per CTA, dynamic shared memory and the
// grid as a function of the input shapes. Serialised as a small text header
// followed by the image bytes, which is also the disk cache's entry format.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_GPUIMAGE_H
#define ATTNC_RUNTIME_GPUIMAGE_H

#include "attnc/Runtime/RandomInputs.h"
#include "attnc/Runtime/Tensor.h"

#include <array>
#include <cstdint>
#include <string>

namespace attnc {

/// grid = ceil(dim(param, dim) / divisor) - minus, for one grid axis; a
/// divisor of 0 means the axis is 1.
struct GridTerm {
  int64_t param = 0, dim = 0, divisor = 1, minus = 0;
};

/// A size that the launch computes from the shapes of the kernel's
/// arguments (its parameters, then its results): a postfix program whose
/// entries are an opcode and its immediates, [Const, value], [Dim, argument,
/// dim], or a binary opcode that pops two sizes and pushes one.
enum class SizeOp : int64_t { Const, Dim, Add, Sub, Mul, CeilDiv, Div, Max, Min };
/// The value of `program` for arguments of shapes `argShapes` (an omitted
/// optional input has an empty shape: its sizes read as 0; division by 0
/// gives 0); false for a program that is not well formed.
bool evaluateSizeProgram(const std::vector<int64_t> &program,
                         const std::vector<std::vector<int64_t>> &argShapes,
                         int64_t &value);

struct GpuImage {
  /// "sm_80", "sm_90a".
  std::string target;
  /// "ptx" or "cubin".
  std::string format;
  KernelSignature signature;
  int64_t threads = 0, sharedBytes = 0;
  std::array<GridTerm, 3> grid;
  /// Parameters copied to shared memory in 16-byte rows (q, k, v): they need
  /// a unit inner stride and 16-byte aligned rows.
  std::vector<int64_t> copiedParams;
  /// The head dim of q and k (copiedParams[0], [1]): query heads must be a
  /// multiple of kv heads.
  int64_t headDim = 1;
  /// cu_seqlens parameters (query, key); they must hold as many entries.
  std::vector<int64_t> offsetParams;
  /// A result with one entry per packed sequence (a final state), whose
  /// leading dim is dim(offsetParams[0], 0) - 1; -1 when none.
  int64_t sequenceResult = -1;
  /// Kernels whose CTAs split a sequence and hand partial states around
  /// through a workspace: causal linear kernels (segments of a sequence,
  /// each handing its end state to the next; docs/gpu.md, "Segments") and
  /// softmax kernels with key splits (runs of keys, combined by the last
  /// CTA; "Key splits"). Grid x is multiplied by this term (at least 1) and
  /// the kernel takes the workspace after the status words. A divisor of 0
  /// means no split and no workspace.
  GridTerm segments{0, 0, 0, 0};
  /// Workspace bytes of the state each CTA leaves.
  int64_t segmentStateBytes = 0;
  /// Key splits chosen per launch (split-keys=auto): `segments` counts the
  /// key blocks, and chooseKeySplits decides how many CTAs share them.
  bool splitsAtLaunch = false;
  /// Softmax kernels that pack the query heads of a GQA group into one
  /// CTA's rows (pack-gqa): grid x counts query rows times the group size,
  /// heads(copiedParams[0]) / heads(copiedParams[1]) at dim headDim.
  bool packsQueryHeads = false;
  bool segmented() const { return segments.divisor != 0; }
  /// Results that every CTA scatter-adds into its own f32 copy in the
  /// workspace (gradients of float inputs a score reads at computed
  /// positions); the last CTA to finish sums the copies in CTA order, so
  /// the sums do not depend on which CTAs run first.
  std::vector<int64_t> partialResults;
  /// Scratch memory of each CTA (tile programs' buffers, such as a linear
  /// backward's chunk start states), in f32 words: a size program
  /// (evaluateSizeProgram); empty when none. The kernel takes the workspace
  /// a second time, as f32, and finds its scratch after every CTA's header
  /// state and partial copies.
  std::vector<int64_t> scratchWords;
  bool usesWorkspace() const {
    return segmented() || !partialResults.empty() || !scratchWords.empty();
  }
  /// Parameter roles, so a runner without the spec draws the same random
  /// inputs as `attnc run --seed`.
  ParamRoles roles;
  std::string bytes;

  /// The output shapes for inputs whose symbols are in `bindings`; false
  /// (with a message) when a size is unknown.
  bool outputShapes(const std::vector<const TensorView *> &inputs,
                    const DimBindings &bindings,
                    std::vector<std::vector<int64_t>> &shapes,
                    std::string &error) const;

  /// The grid for these input shapes (one per parameter; empty shape for an
  /// omitted optional one). `residentCtas`, how many CTAs of this kernel
  /// the GPU runs at once, sizes the splits of splitsAtLaunch kernels
  /// (others ignore it; 0 there means one split).
  std::array<int64_t, 3>
  gridFor(const std::vector<std::vector<int64_t>> &inputShapes,
          int64_t residentCtas = 0) const;
  /// The same for input views (null: an omitted optional input).
  std::array<int64_t, 3> gridFor(const std::vector<const TensorView *> &inputs,
                                 int64_t residentCtas) const;
};

/// How many CTAs split each query block's `keyBlocks` key blocks when
/// `ctas` CTAs (query blocks x heads x batch) would run unsplit on a GPU
/// that holds `residentCtas` of them at once. One when the unsplit grid
/// already fills most of the GPU; else the fewest splits whose last wave
/// is nearly as full as the best choice's (up to kMaxKeySplits), trimmed
/// so that every split gets a key block.
constexpr int64_t kMaxKeySplits = 128;
int64_t chooseKeySplits(int64_t ctas, int64_t keyBlocks, int64_t residentCtas);

/// The workspace of a launch of `ctas` CTAs, in 4-byte words: a header of
/// 1 + ctas words, zeroed before every launch (linear segments: a ticket
/// counter and one flag per CTA; key splits: a finished-splits counter per
/// query block; partial results: a finished-CTAs counter), padded to 16
/// bytes, then each CTA's state: segmentStateBytes, then its f32 copy of
/// each partial result (of its shape in `argShapes`, the parameters' shapes
/// then the results'), zeroed before the launch too; then each CTA's
/// scratch (GpuImage::scratchWords), not zeroed. The kernel computes the
/// same layout. Empty when the image needs no workspace.
struct LaunchWorkspace {
  int64_t headerWords = 0, totalBytes = 0;
  /// Each CTA's scratch words (GpuImage::scratchWords).
  int64_t scratchWords = 0;
  /// Bytes to zero before the launch: the header, and the CTAs' states and
  /// copies when there are partial results.
  int64_t zeroedBytes = 0;
};
LaunchWorkspace
launchWorkspace(const GpuImage &image, const std::array<int64_t, 3> &grid,
                const std::vector<std::vector<int64_t>> &argShapes);

/// The shapes of a launch's arguments, as size programs and
/// launchWorkspace read them: the inputs' (empty for an omitted one), then
/// `resultShapes`.
std::vector<std::vector<int64_t>>
argumentShapes(const std::vector<const TensorView *> &inputs,
               const std::vector<std::vector<int64_t>> &resultShapes);

/// Header + bytes. The header ends with the byte count and an FNV-1a hash
/// of the bytes, so truncated or corrupted files are detected on load.
std::string serialize(const GpuImage &image);
bool deserialize(const std::string &data, GpuImage &image, std::string &error);

/// The status words a GPU kernel takes after its results (docs/pipeline.md).
constexpr int64_t kStatusWords = 8;
constexpr size_t kStatusBytes = kStatusWords * sizeof(int64_t);

/// Decodes the status words a GPU kernel leaves (docs/pipeline.md): true
/// when 0, else false with a message naming the input that was bad.
bool checkKernelStatus(const KernelSignature &signature, const int64_t *words,
                       std::string &error);

/// The launch check of sequence offsets that needs no values: `offsets`
/// (named `name`) holds at least one offset, and a sequence when there are
/// `tokens` > 0 packed tokens. The CPU and GPU launchers share it.
bool checkOffsetCount(const std::string &name, const TensorView &offsets,
                      int64_t tokens, std::string &error);

/// 64-bit FNV-1a (stable across builds and machines).
uint64_t fnv1a(const std::string &data, uint64_t seed = 1469598103934665603ull);

} // namespace attnc

#endif // ATTNC_RUNTIME_GPUIMAGE_H
