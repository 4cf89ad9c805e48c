//===- GpuImage.cpp - A compiled GPU kernel and its launch facts ----------===//

#include "attnc/Runtime/GpuImage.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <sstream>

using namespace attnc;

namespace {
// The format version; the checksum covers the header and the image bytes.
constexpr const char *kMagic = "attnc-gpu-image 5";

bool parseElementType(const std::string &text, ElementType &type) {
  for (ElementType candidate :
       {ElementType::F32, ElementType::F16, ElementType::BF16, ElementType::I32,
        ElementType::I8, ElementType::Bool})
    if (text == toString(candidate)) {
      type = candidate;
      return true;
    }
  return false;
}

// "tensor NAME TYPE OPTIONAL RANK DIM..." with DIM a number or a symbol.
void writeTensor(std::ostream &os, const char *kind, const TensorSpec &spec) {
  os << kind << ' ' << spec.name << ' ' << toString(spec.type) << ' '
     << (spec.optional ? 1 : 0) << ' ' << spec.dims.size();
  for (const DimSpec &dim : spec.dims) {
    if (dim.isSymbolic())
      os << ' ' << dim.symbol;
    else
      os << ' ' << dim.size;
  }
  os << '\n';
}

bool readTensor(std::istringstream &line, TensorSpec &spec) {
  std::string type;
  int optional = 0;
  size_t rank = 0;
  if (!(line >> spec.name >> type >> optional >> rank) ||
      !parseElementType(type, spec.type) || rank > 8)
    return false;
  spec.optional = optional != 0;
  for (size_t d = 0; d < rank; ++d) {
    std::string text;
    if (!(line >> text))
      return false;
    DimSpec dim;
    if (!text.empty() && (isdigit(static_cast<unsigned char>(text[0])))) {
      char *end = nullptr;
      errno = 0;
      dim.size = std::strtoll(text.c_str(), &end, 10);
      if (errno != 0 || *end != '\0')
        return false;
    } else {
      dim.symbol = text;
    }
    spec.dims.push_back(dim);
  }
  return true;
}
} // namespace

uint64_t attnc::fnv1a(const std::string &data, uint64_t seed) {
  uint64_t hash = seed;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

namespace {
/// dim(param, dim) of the input shapes; 0 when there is no such dim.
int64_t dimOf(const std::vector<std::vector<int64_t>> &inputShapes,
              int64_t param, int64_t dim) {
  if (param >= 0 && static_cast<size_t>(param) < inputShapes.size() &&
      dim >= 0 && static_cast<size_t>(dim) < inputShapes[param].size())
    return inputShapes[param][dim];
  return 0;
}

/// ceil(dim(param, dim) * factor / divisor) - minus (at least 0); 1 for
/// divisor 0.
int64_t evaluate(const GridTerm &term,
                 const std::vector<std::vector<int64_t>> &inputShapes,
                 int64_t factor = 1) {
  if (term.divisor == 0)
    return 1;
  int64_t size = dimOf(inputShapes, term.param, term.dim) * factor;
  int64_t value = (size + term.divisor - 1) / term.divisor - term.minus;
  return value < 0 ? 0 : value;
}
} // namespace

std::array<int64_t, 3>
GpuImage::gridFor(const std::vector<std::vector<int64_t>> &inputShapes,
                  int64_t residentCtas) const {
  // Packed GQA groups: grid x covers each query's G rows.
  int64_t rowsPerQuery = 1;
  if (packsQueryHeads && copiedParams.size() >= 2) {
    int64_t queryHeads = dimOf(inputShapes, copiedParams[0], headDim);
    int64_t keyHeads = dimOf(inputShapes, copiedParams[1], headDim);
    rowsPerQuery = keyHeads > 0 ? queryHeads / keyHeads : 0;
  }
  std::array<int64_t, 3> result{};
  for (int axis = 0; axis < 3; ++axis)
    result[axis] =
        evaluate(grid[axis], inputShapes, axis == 0 ? rowsPerQuery : 1);
  // At least one segment or split, so that an empty sequence still stores
  // its final state (linear) or o = 0 and lse = -inf (softmax).
  int64_t parts = evaluate(segments, inputShapes);
  if (splitsAtLaunch)
    parts =
        chooseKeySplits(result[0] * result[1] * result[2], parts, residentCtas);
  result[0] *= std::max<int64_t>(1, parts);
  return result;
}

std::array<int64_t, 3>
GpuImage::gridFor(const std::vector<const TensorView *> &inputs,
                  int64_t residentCtas) const {
  std::vector<std::vector<int64_t>> shapes;
  for (const TensorView *view : inputs)
    shapes.push_back(view ? view->shape : std::vector<int64_t>());
  return gridFor(shapes, residentCtas);
}

int64_t attnc::chooseKeySplits(int64_t ctas, int64_t keyBlocks,
                               int64_t residentCtas) {
  // Splitting a grid that nearly fills the GPU only adds the combine.
  if (ctas <= 0 || keyBlocks <= 1 || residentCtas <= 0 ||
      5 * ctas >= 4 * residentCtas)
    return 1;
  int64_t most = std::min(keyBlocks, kMaxKeySplits);
  // The fraction of the GPU busy on average over the waves of s splits.
  auto occupancy = [&](int64_t s) {
    int64_t waves = (ctas * s + residentCtas - 1) / residentCtas;
    return static_cast<double>(ctas * s) /
           static_cast<double>(waves * residentCtas);
  };
  double best = 0;
  for (int64_t s = 1; s <= most; ++s)
    best = std::max(best, occupancy(s));
  int64_t splits = most;
  for (int64_t s = 1; s <= most; ++s)
    if (occupancy(s) >= 0.85 * best) {
      splits = s;
      break;
    }
  // As many splits as ceil(keyBlocks / splits) blocks each needs.
  int64_t blocksPerSplit = (keyBlocks + splits - 1) / splits;
  return (keyBlocks + blocksPerSplit - 1) / blocksPerSplit;
}

bool attnc::evaluateSizeProgram(
    const std::vector<int64_t> &program,
    const std::vector<std::vector<int64_t>> &argShapes, int64_t &value) {
  std::vector<int64_t> stack;
  for (size_t at = 0; at < program.size();) {
    auto op = static_cast<SizeOp>(program[at++]);
    if (op == SizeOp::Const) {
      if (at >= program.size())
        return false;
      stack.push_back(program[at++]);
      continue;
    }
    if (op == SizeOp::Dim) {
      if (at + 1 >= program.size())
        return false;
      int64_t argument = program[at], dim = program[at + 1];
      at += 2;
      if (argument < 0 || argument >= static_cast<int64_t>(argShapes.size()) ||
          dim < 0)
        return false;
      const std::vector<int64_t> &shape = argShapes[argument];
      stack.push_back(dim < static_cast<int64_t>(shape.size()) ? shape[dim]
                                                                : 0);
      continue;
    }
    if (stack.size() < 2)
      return false;
    int64_t rhs = stack.back();
    stack.pop_back();
    int64_t &lhs = stack.back();
    switch (op) {
    case SizeOp::Add: lhs += rhs; break;
    case SizeOp::Sub: lhs -= rhs; break;
    case SizeOp::Mul: lhs *= rhs; break;
    case SizeOp::CeilDiv: lhs = rhs ? (lhs + rhs - 1) / rhs : 0; break;
    case SizeOp::Div: lhs = rhs ? lhs / rhs : 0; break;
    case SizeOp::Max: lhs = std::max(lhs, rhs); break;
    case SizeOp::Min: lhs = std::min(lhs, rhs); break;
    default: return false;
    }
  }
  if (stack.size() != 1)
    return false;
  value = stack.back();
  return true;
}

std::vector<std::vector<int64_t>>
attnc::argumentShapes(const std::vector<const TensorView *> &inputs,
                      const std::vector<std::vector<int64_t>> &resultShapes) {
  std::vector<std::vector<int64_t>> shapes;
  for (const TensorView *input : inputs)
    shapes.push_back(input ? input->shape : std::vector<int64_t>());
  shapes.insert(shapes.end(), resultShapes.begin(), resultShapes.end());
  return shapes;
}

LaunchWorkspace
attnc::launchWorkspace(const GpuImage &image,
                       const std::array<int64_t, 3> &grid,
                       const std::vector<std::vector<int64_t>> &argShapes) {
  LaunchWorkspace workspace;
  if (!image.usesWorkspace())
    return workspace;
  int64_t ctas = grid[0] * grid[1] * grid[2];
  int64_t ctaBytes = image.segmentStateBytes;
  size_t params = image.signature.params.size();
  for (int64_t result : image.partialResults) {
    int64_t elements = 1;
    if (params + result < argShapes.size())
      for (int64_t size : argShapes[params + result])
        elements *= size;
    ctaBytes += 4 * elements;
  }
  // deserialize and the compiler check the program; a malformed one would
  // leave no scratch, which the kernel's guarded accesses would report.
  if (!image.scratchWords.empty() &&
      !evaluateSizeProgram(image.scratchWords, argShapes,
                           workspace.scratchWords))
    workspace.scratchWords = 0;
  workspace.headerWords = (1 + ctas + 3) / 4 * 4;
  int64_t statesEnd = 4 * workspace.headerWords + ctas * ctaBytes;
  workspace.totalBytes = statesEnd + ctas * 4 * workspace.scratchWords;
  workspace.zeroedBytes =
      image.partialResults.empty() ? 4 * workspace.headerWords : statesEnd;
  return workspace;
}

bool GpuImage::outputShapes(const std::vector<const TensorView *> &inputs,
                            const DimBindings &bindings,
                            std::vector<std::vector<int64_t>> &shapes,
                            std::string &error) const {
  shapes.assign(signature.results.size(), {});
  for (size_t r = 0; r < signature.results.size(); ++r) {
    DimBindings withSequences = bindings;
    const TensorSpec &spec = signature.results[r];
    if (static_cast<int64_t>(r) == sequenceResult && !offsetParams.empty() &&
        inputs[offsetParams[0]] && !spec.dims.empty() &&
        spec.dims[0].isSymbolic())
      withSequences.emplace(spec.dims[0].symbol,
                            inputs[offsetParams[0]]->shape[0] - 1);
    if (!resolveShape(spec, withSequences, shapes[r], error))
      return false;
  }
  return true;
}

std::string attnc::serialize(const GpuImage &image) {
  std::ostringstream os;
  os << kMagic << '\n';
  os << "target " << image.target << '\n';
  os << "format " << image.format << '\n';
  os << "entry " << image.signature.name << '\n';
  for (const TensorSpec &spec : image.signature.params)
    writeTensor(os, "param", spec);
  for (const TensorSpec &spec : image.signature.results)
    writeTensor(os, "result", spec);
  os << "threads " << image.threads << '\n';
  os << "shared_bytes " << image.sharedBytes << '\n';
  for (const GridTerm &term : image.grid)
    os << "grid " << term.param << ' ' << term.dim << ' ' << term.divisor << ' '
       << term.minus << '\n';
  const GridTerm &segments = image.segments;
  os << "segments " << segments.param << ' ' << segments.dim << ' '
     << segments.divisor << ' ' << segments.minus << ' '
     << image.segmentStateBytes << '\n';
  if (image.splitsAtLaunch)
    os << "splits_at_launch\n";
  if (image.packsQueryHeads)
    os << "packs_query_heads\n";
  os << "head_dim " << image.headDim << '\n';
  os << "sequence_result " << image.sequenceResult << '\n';
  os << "offsets";
  for (int64_t param : image.offsetParams)
    os << ' ' << param;
  os << '\n';
  os << "roles " << image.roles.blockK << ' ' << image.roles.keySeqDim;
  for (ParamRole role : image.roles.roles)
    os << ' ' << static_cast<int>(role);
  os << '\n';
  os << "copied";
  for (int64_t param : image.copiedParams)
    os << ' ' << param;
  os << '\n';
  os << "partial_results";
  for (int64_t result : image.partialResults)
    os << ' ' << result;
  os << '\n';
  os << "scratch_words";
  for (int64_t entry : image.scratchWords)
    os << ' ' << entry;
  os << '\n';
  std::string header = os.str();
  return header + "bytes " + std::to_string(image.bytes.size()) + ' ' +
         std::to_string(fnv1a(image.bytes, fnv1a(header))) + '\n' +
         image.bytes;
}

bool attnc::deserialize(const std::string &data, GpuImage &image,
                        std::string &error) {
  image = GpuImage();
  size_t position = 0;
  int gridAxis = 0;
  auto fail = [&](const std::string &what) {
    error = "corrupted kernel image: " + what;
    return false;
  };
  bool first = true;
  while (position < data.size()) {
    size_t lineStart = position;
    size_t end = data.find('\n', position);
    if (end == std::string::npos)
      return fail("header has no end");
    std::string text = data.substr(position, end - position);
    position = end + 1;
    if (first) {
      if (text != kMagic)
        return fail("not an attnc GPU image");
      first = false;
      continue;
    }
    std::istringstream line(text);
    std::string key;
    line >> key;
    if (key == "target") {
      line >> image.target;
    } else if (key == "format") {
      line >> image.format;
    } else if (key == "entry") {
      line >> image.signature.name;
    } else if (key == "param" || key == "result") {
      TensorSpec spec;
      if (!readTensor(line, spec))
        return fail("bad tensor line '" + text + "'");
      (key == "param" ? image.signature.params : image.signature.results)
          .push_back(spec);
    } else if (key == "threads") {
      line >> image.threads;
    } else if (key == "shared_bytes") {
      line >> image.sharedBytes;
    } else if (key == "grid") {
      if (gridAxis >= 3)
        return fail("too many grid lines");
      GridTerm &term = image.grid[gridAxis++];
      if (!(line >> term.param >> term.dim >> term.divisor >> term.minus) ||
          term.divisor < 0)
        return fail("bad grid line '" + text + "'");
    } else if (key == "segments") {
      GridTerm &term = image.segments;
      if (!(line >> term.param >> term.dim >> term.divisor >> term.minus >>
            image.segmentStateBytes) ||
          term.divisor < 0 || image.segmentStateBytes < 0)
        return fail("bad segments line '" + text + "'");
    } else if (key == "splits_at_launch") {
      image.splitsAtLaunch = true;
    } else if (key == "packs_query_heads") {
      image.packsQueryHeads = true;
    } else if (key == "head_dim") {
      line >> image.headDim;
    } else if (key == "sequence_result") {
      line >> image.sequenceResult;
    } else if (key == "offsets") {
      int64_t param;
      while (line >> param) {
        if (param < 0 || param >= static_cast<int64_t>(image.signature.params.size()))
          return fail("bad offsets parameter");
        image.offsetParams.push_back(param);
      }
    } else if (key == "roles") {
      int role;
      if (!(line >> image.roles.blockK >> image.roles.keySeqDim))
        return fail("bad roles line");
      while (line >> role) {
        if (role < 0 || role > static_cast<int>(ParamRole::Other))
          return fail("bad parameter role");
        image.roles.roles.push_back(static_cast<ParamRole>(role));
      }
    } else if (key == "copied") {
      int64_t param;
      while (line >> param) {
        if (param < 0 || param >= static_cast<int64_t>(image.signature.params.size()))
          return fail("bad copied parameter");
        image.copiedParams.push_back(param);
      }
    } else if (key == "partial_results") {
      int64_t result;
      while (line >> result) {
        if (result < 0 ||
            result >= static_cast<int64_t>(image.signature.results.size()))
          return fail("bad partial result");
        image.partialResults.push_back(result);
      }
    } else if (key == "scratch_words") {
      int64_t entry;
      while (line >> entry)
        image.scratchWords.push_back(entry);
      std::vector<std::vector<int64_t>> noShapes(
          image.signature.params.size() + image.signature.results.size());
      int64_t words;
      if (!image.scratchWords.empty() &&
          !evaluateSizeProgram(image.scratchWords, noShapes, words))
        return fail("bad scratch size");
    } else if (key == "bytes") {
      uint64_t size = 0, hash = 0;
      if (!(line >> size >> hash))
        return fail("bad bytes line");
      if (data.size() - position != size)
        return fail("expected " + std::to_string(size) + " image bytes, found " +
                    std::to_string(data.size() - position));
      image.bytes = data.substr(position);
      // The header (every line before this one) and the bytes.
      if (fnv1a(image.bytes, fnv1a(data.substr(0, lineStart))) != hash)
        return fail("checksum mismatch");
      if (image.target.empty() || image.signature.name.empty() ||
          image.threads <= 0 || gridAxis != 3)
        return fail("incomplete header");
      return true;
    } else {
      return fail("unknown header line '" + text + "'");
    }
  }
  return fail("no image bytes");
}

bool attnc::checkOffsetCount(const std::string &name,
                             const TensorView &offsets, int64_t tokens,
                             std::string &error) {
  if (offsets.shape.empty() || offsets.shape[0] < 1) {
    error = "'" + name + "' must hold at least one offset (num_seqs + 1)";
    return false;
  }
  if (offsets.shape[0] == 1 && tokens > 0) {
    error = "'" + name + "' holds no sequence but there are " +
            std::to_string(tokens) +
            " packed tokens: the offsets must cover them";
    return false;
  }
  return true;
}

bool attnc::checkKernelStatus(const KernelSignature &signature,
                              const int64_t *words, std::string &error) {
  if (words[0] == 0)
    return true;
  if (words[0] == 2 && words[1] >= 0 &&
      words[1] < static_cast<int64_t>(signature.params.size())) {
    error = "the spec reads '" + signature.params[words[1]].name +
            "' out of bounds: index " + std::to_string(words[3]) + " in dim " +
            std::to_string(words[2]) + " of size " + std::to_string(words[4]) +
            " (check the tensor's shape against the indices the spec uses)";
    return false;
  }
  if (words[0] == 1) {
    double value;
    std::memcpy(&value, &words[5], sizeof(value));
    char printed[32];
    std::snprintf(printed, sizeof(printed), "%g", value);
    error = "gate value " + std::string(printed) + " at b=" +
            std::to_string(words[1]) + ", h=" + std::to_string(words[2]) +
            ", t=" + std::to_string(words[3]) + ", d=" +
            std::to_string(words[4]) +
            " is positive or not finite; gates are log-space decays and must "
            "be finite and <= 0";
    return false;
  }
  if (words[0] == 3 && words[1] >= 0 &&
      words[1] < static_cast<int64_t>(signature.params.size())) {
    error = "'" + signature.params[words[1]].name + "' gives sequence " +
            std::to_string(words[2]) + " the tokens [" +
            std::to_string(words[3]) + ", " + std::to_string(words[4]) +
            ") of " + std::to_string(words[5]) +
            ": offsets must start at 0, be non-decreasing and end at the "
            "number of packed tokens";
    return false;
  }
  if (words[0] == 4 && words[1] >= 0 &&
      words[1] < static_cast<int64_t>(signature.params.size())) {
    error = "'" + signature.params[words[1]].name + "' has a sequence of " +
            std::to_string(words[2]) + " keys: more than the " +
            std::to_string(words[4]) + " blocks of " +
            std::to_string(words[3]) + " that top-k selection handles";
    return false;
  }
  auto paramName = [&](int64_t word) -> std::string {
    return word >= 0 && word < static_cast<int64_t>(signature.params.size())
               ? signature.params[word].name
               : "?";
  };
  if (words[0] == 6) {
    error = "'" + paramName(words[1]) + "'[" + std::to_string(words[2]) +
            ", " + std::to_string(words[3]) + ", " + std::to_string(words[4]) +
            "] = " + std::to_string(words[5]) +
            " is not a block count: counts must lie in [0, " +
            std::to_string(words[6]) + "], the width of the index lists";
    return false;
  }
  if (words[0] == 7) {
    error = "'" + paramName(words[1]) + "'[" + std::to_string(words[2]) +
            ", " + std::to_string(words[3]) + ", " + std::to_string(words[4]) +
            ", " + std::to_string(words[5]) + "] = " +
            std::to_string(words[6]) +
            " names no key block: the first kv_num_blocks entries of a list "
            "must lie in [0, " +
            std::to_string(words[7]) + "), ceil(keys / block_k)";
    return false;
  }
  if (words[0] == 8) {
    double value;
    std::memcpy(&value, &words[6], sizeof(value));
    char printed[32];
    std::snprintf(printed, sizeof(printed), "%g", value);
    error = "'" + paramName(words[1]) + "' entry " + std::to_string(words[5]) +
            " of query " + std::to_string(words[4]) + " (batch entry " +
            std::to_string(words[2]) + ", head " + std::to_string(words[3]) +
            ") is " + printed +
            ", which names no key block: entries are -1 or block numbers in "
            "[0, ceil(keys / block_k)), as the training forward saves them";
    return false;
  }
  if (words[0] == 5) {
    bool named = words[5] >= 0 &&
                 words[5] < static_cast<int64_t>(signature.params.size());
    bool overflow = words[4] != 0;
    error = std::string(overflow ? "integer division overflows"
                                 : "integer division by zero") +
            " at line " + std::to_string(words[1]) + ", column " +
            std::to_string(words[2]) + " of the spec: " +
            std::to_string(words[3]) + " / " + std::to_string(words[4]) +
            (named ? ", the divisor read from '" +
                         signature.params[words[5]].name + "'"
                   : std::string()) +
            " (integer / and % need a nonzero divisor, and the quotient "
            "must fit in 64 bits)";
    return false;
  }
  error = "the kernel reported bad input (status " + std::to_string(words[0]) +
          ")";
  return false;
}
