//===- Npy.cpp - Reading and writing NumPy .npy files ---------------------===//
//
// Format reference: numpy/lib/format.py. A file is the magic "\x93NUMPY", a
// major and minor version byte, a little-endian header length (2 bytes for
// version 1.0, 4 bytes for 2.0 and 3.0), an ASCII (3.0: UTF-8) Python dict
// literal with the keys 'descr', 'fortran_order' and 'shape', and the raw data.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/Npy.h"
#include "attnc/Runtime/HalfFloat.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>

namespace attnc {

namespace {

struct DTypeInfo {
  NpyDType dtype;
  const char *descr; // canonical descr as NumPy writes it
  const char *name;
  size_t size;
};

// Ordered like NpyDType so a dtype indexes its own row.
constexpr DTypeInfo kDTypes[] = {
    {NpyDType::F64, "<f8", "float64", 8}, {NpyDType::F32, "<f4", "float32", 4},
    {NpyDType::F16, "<f2", "float16", 2}, {NpyDType::U16, "<u2", "uint16", 2},
    {NpyDType::I64, "<i8", "int64", 8},   {NpyDType::I32, "<i4", "int32", 4},
    {NpyDType::I8, "|i1", "int8", 1},     {NpyDType::U8, "|u1", "uint8", 1},
    {NpyDType::Bool, "|b1", "bool", 1},
};
constexpr size_t kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);

constexpr bool tableMatchesEnum() {
  for (size_t i = 0; i < kNumDTypes; ++i)
    if (static_cast<size_t>(kDTypes[i].dtype) != i)
      return false;
  return true;
}
static_assert(tableMatchesEnum(), "kDTypes must be ordered like NpyDType");

const DTypeInfo &info(NpyDType dtype) {
  return kDTypes[static_cast<size_t>(dtype)];
}

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;
// NumPy reserves room for the first axis to grow to 21 digits so appending
// tools can rewrite the header in place; mirrored to produce identical files.
constexpr size_t kGrowthAxisMaxDigits = 21;
// NumPy refuses headers over 10000 bytes by default; this looser cap only
// keeps a corrupted length field from causing a large allocation.
constexpr uint32_t kMaxHeaderLen = 1u << 20;

std::string supportedDescrs() {
  std::string list;
  for (const DTypeInfo &entry : kDTypes) {
    if (!list.empty())
      list += ", ";
    list += "'";
    list += entry.descr;
    list += "'";
  }
  return list;
}

/// Maps a descr string to a dtype. '=' means native order, which is
/// little-endian on every supported host; byte order is irrelevant for
/// one-byte types.
bool parseDescr(const std::string &descr, NpyDType &dtype) {
  if (descr.size() != 3)
    return false;
  char order = descr[0];
  for (const DTypeInfo &entry : kDTypes) {
    if (descr.compare(1, 2, entry.descr + 1) != 0)
      continue;
    bool orderOk = entry.size == 1 ? std::strchr("<>=|", order) != nullptr
                                   : (order == '<' || order == '=');
    if (!orderOk)
      return false;
    dtype = entry.dtype;
    return true;
  }
  return false;
}

/// Number of elements of `shape`, or false if it exceeds `maxElements`. A zero
/// dimension makes the count zero whatever the other dimensions are, so the
/// product is only formed when it cannot overflow.
bool elementCountAtMost(const std::vector<int64_t> &shape, uint64_t maxElements,
                        uint64_t &count) {
  for (int64_t dim : shape) {
    if (dim == 0) {
      count = 0;
      return true;
    }
  }
  count = 1;
  for (int64_t dim : shape) {
    if (static_cast<uint64_t>(dim) > maxElements / count)
      return false;
    count *= static_cast<uint64_t>(dim);
  }
  return count <= maxElements; // also covers a 0-d array
}

/// Parser for the restricted Python dict literal NumPy writes as the header.
class HeaderParser {
public:
  explicit HeaderParser(const std::string &text) : text(text) {}

  bool parse(std::string &descr, bool &fortranOrder,
             std::vector<int64_t> &shape, std::string &problem) {
    bool haveDescr = false, haveFortran = false, haveShape = false;
    skipSpace();
    if (!consume('{'))
      return malformed("expected '{'", problem);
    while (true) {
      skipSpace();
      if (consume('}'))
        break;
      std::string key;
      if (!parseString(key))
        return malformed("expected a quoted key", problem);
      skipSpace();
      if (!consume(':'))
        return malformed("expected ':' after '" + key + "'", problem);
      skipSpace();
      if (key == "descr") {
        if (haveDescr)
          return malformed("duplicate key 'descr'", problem);
        if (peek() == '[') {
          problem =
              "unsupported structured dtype (supported: " + supportedDescrs() +
              ")";
          return false;
        }
        if (!parseString(descr))
          return malformed("bad 'descr' value", problem);
        haveDescr = true;
      } else if (key == "fortran_order") {
        if (haveFortran)
          return malformed("duplicate key 'fortran_order'", problem);
        if (!parseBool(fortranOrder))
          return malformed("bad 'fortran_order' value", problem);
        haveFortran = true;
      } else if (key == "shape") {
        if (haveShape)
          return malformed("duplicate key 'shape'", problem);
        if (!parseShape(shape))
          return malformed("bad 'shape' value", problem);
        haveShape = true;
      } else {
        return malformed("unexpected key '" + key + "'", problem);
      }
      skipSpace();
      if (consume(','))
        continue;
      if (consume('}'))
        break;
      return malformed("expected ',' or '}'", problem);
    }
    skipSpace();
    if (pos != text.size())
      return malformed("unexpected text after '}'", problem);
    if (!haveDescr || !haveFortran || !haveShape)
      return malformed("missing 'descr', 'fortran_order' or 'shape'", problem);
    return true;
  }

private:
  static bool malformed(const std::string &what, std::string &problem) {
    problem = "malformed header: " + what;
    return false;
  }

  char peek() const { return pos < text.size() ? text[pos] : '\0'; }

  bool consume(char c) {
    if (pos >= text.size() || text[pos] != c)
      return false;
    ++pos;
    return true;
  }

  bool consumeWord(const char *word) {
    size_t len = std::strlen(word);
    if (text.compare(pos, len, word) != 0)
      return false;
    pos += len;
    return true;
  }

  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' ||
                                 text[pos] == '\r' || text[pos] == '\n'))
      ++pos;
  }

  // NumPy's descrs and keys never contain escapes, so none are supported.
  bool parseString(std::string &out) {
    char quote = peek();
    if (quote != '\'' && quote != '"')
      return false;
    size_t end = text.find(quote, pos + 1);
    if (end == std::string::npos)
      return false;
    out = text.substr(pos + 1, end - pos - 1);
    if (out.find('\\') != std::string::npos)
      return false;
    pos = end + 1;
    return true;
  }

  bool parseBool(bool &out) {
    if (consumeWord("True")) {
      out = true;
      return true;
    }
    if (consumeWord("False")) {
      out = false;
      return true;
    }
    return false;
  }

  bool parseDim(int64_t &out) {
    if (!std::isdigit(static_cast<unsigned char>(peek())))
      return false;
    uint64_t value = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      uint64_t digit = static_cast<uint64_t>(text[pos++] - '0');
      if (value > (static_cast<uint64_t>(INT64_MAX) - digit) / 10)
        return false;
      value = value * 10 + digit;
    }
    // Files written under Python 2 may carry long-integer suffixes ("3L").
    consume('L');
    out = static_cast<int64_t>(value);
    return true;
  }

  bool parseShape(std::vector<int64_t> &out) {
    out.clear();
    if (!consume('('))
      return false;
    while (true) {
      skipSpace();
      if (consume(')'))
        return true;
      int64_t dim;
      if (!parseDim(dim))
        return false;
      out.push_back(dim);
      skipSpace();
      if (consume(','))
        continue;
      if (consume(')'))
        return true;
      return false;
    }
  }

  const std::string &text;
  size_t pos = 0;
};

struct FileCloser {
  void operator()(std::FILE *file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

uint32_t readLittleEndian(const unsigned char *bytes, size_t count) {
  uint32_t value = 0;
  for (size_t i = count; i-- > 0;)
    value = (value << 8) | bytes[i];
  return value;
}

std::string shapeRepr(const std::vector<int64_t> &shape) {
  std::string repr = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0)
      repr += ", ";
    repr += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    repr += ",";
  return repr + ")";
}

} // namespace

int64_t NpyArray::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

size_t NpyArray::elementSize() const { return info(dtype).size; }

std::string toString(NpyDType dtype) { return info(dtype).name; }

bool readNpy(const std::string &path, NpyArray &out, std::string &error) {
  auto fail = [&](const std::string &problem) {
    error = path + ": " + problem;
    return false;
  };

  std::error_code ec;
  std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    return fail("file not found");
  if (!std::filesystem::is_regular_file(status))
    return fail("not a regular file");
  uint64_t fileSize = std::filesystem::file_size(path, ec);
  if (ec)
    return fail("cannot determine file size: " + ec.message());

  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file)
    return fail(std::string("cannot open: ") + std::strerror(errno));

  // Prefix: magic, version, and a header length of up to 4 bytes.
  unsigned char prefix[kMagicLen + 2 + 4];
  size_t available = fileSize < sizeof(prefix) ? static_cast<size_t>(fileSize)
                                               : sizeof(prefix);
  if (std::fread(prefix, 1, available, file.get()) != available)
    return fail("read error");
  size_t magicBytes = available < kMagicLen ? available : kMagicLen;
  if (std::memcmp(prefix, kMagic, magicBytes) != 0)
    return fail("bad magic (not a .npy file)");
  if (available < kMagicLen + 2)
    return fail("truncated header");
  unsigned major = prefix[kMagicLen], minor = prefix[kMagicLen + 1];
  if (major < 1 || major > 3 || minor != 0)
    return fail("unsupported format version " + std::to_string(major) + "." +
                std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  size_t lengthBytes = major == 1 ? 2 : 4;
  size_t preludeSize = kMagicLen + 2 + lengthBytes;
  if (available < preludeSize)
    return fail("truncated header");
  uint32_t headerLen = readLittleEndian(prefix + kMagicLen + 2, lengthBytes);
  if (headerLen > fileSize - preludeSize)
    return fail("truncated header (header length " + std::to_string(headerLen) +
                " exceeds the file size)");
  if (headerLen > kMaxHeaderLen)
    return fail("header length " + std::to_string(headerLen) + " is too large");

  std::string header(headerLen, '\0');
  if (std::fseek(file.get(), static_cast<long>(preludeSize), SEEK_SET) != 0 ||
      std::fread(&header[0], 1, headerLen, file.get()) != headerLen)
    return fail("read error");

  std::string descr, problem;
  bool fortranOrder = false;
  NpyArray array;
  if (!HeaderParser(header).parse(descr, fortranOrder, array.shape, problem))
    return fail(problem);
  if (!parseDescr(descr, array.dtype))
    return fail("unsupported dtype '" + descr +
                "' (supported: " + supportedDescrs() + ")");
  if (fortranOrder)
    return fail("fortran_order=True is not supported; save a C-ordered array "
                "(e.g. numpy.ascontiguousarray)");

  // Validate the size against the file before allocating anything.
  uint64_t dataBytes = fileSize - preludeSize - headerLen;
  uint64_t elementSize = array.elementSize();
  uint64_t count;
  if (!elementCountAtMost(array.shape, dataBytes / elementSize, count))
    return fail("truncated data: shape " + shapeRepr(array.shape) +
                " needs more than the " + std::to_string(dataBytes) +
                " bytes present");
  uint64_t expectedBytes = count * elementSize;
  if (expectedBytes != dataBytes)
    return fail("unexpected " + std::to_string(dataBytes - expectedBytes) +
                " bytes after the array data");

  array.data.resize(static_cast<size_t>(expectedBytes));
  if (expectedBytes != 0 && std::fread(array.data.data(), 1, array.data.size(),
                                       file.get()) != array.data.size())
    return fail("read error");
  out = std::move(array);
  return true;
}

bool writeNpy(const std::string &path, const NpyArray &array,
              std::string &error) {
  auto fail = [&](const std::string &problem) {
    error = path + ": " + problem;
    return false;
  };

  for (int64_t dim : array.shape)
    if (dim < 0)
      return fail("negative dimension in shape " + shapeRepr(array.shape));
  uint64_t elementSize = array.elementSize();
  uint64_t count;
  if (!elementCountAtMost(array.shape, array.data.size() / elementSize,
                          count) ||
      count * elementSize != array.data.size())
    return fail("data size " + std::to_string(array.data.size()) +
                " does not match shape " + shapeRepr(array.shape) +
                " of dtype " + toString(array.dtype));

  std::string dict =
      "{'descr': '" + std::string(info(array.dtype).descr) +
      "', 'fortran_order': False, 'shape': " + shapeRepr(array.shape) + ", }";
  if (!array.shape.empty())
    dict.append(kGrowthAxisMaxDigits - std::to_string(array.shape[0]).size(),
                ' ');

  // Prelude, dict, padding and the final '\n' together are a multiple of
  // kAlign, as NumPy requires.
  size_t unpadded = kMagicLen + 2 + 2 + dict.size() + 1;
  size_t headerLen = dict.size() + 1 + (kAlign - unpadded % kAlign) % kAlign;
  // Only thousands of dimensions overflow the 2-byte length (NumPy allows 64).
  if (headerLen > 0xffff)
    return fail("too many dimensions for a version 1.0 header");

  std::string bytes(kMagic, kMagicLen);
  bytes += '\x01'; // version 1.0
  bytes += '\0';
  bytes += static_cast<char>(headerLen & 0xff);
  bytes += static_cast<char>(headerLen >> 8);
  bytes += dict;
  bytes.append(headerLen - dict.size() - 1, ' ');
  bytes += '\n';

  FilePtr file(std::fopen(path.c_str(), "wb"));
  if (!file)
    return fail(std::string("cannot open for writing: ") +
                std::strerror(errno));
  if (std::fwrite(bytes.data(), 1, bytes.size(), file.get()) != bytes.size() ||
      (!array.data.empty() &&
       std::fwrite(array.data.data(), 1, array.data.size(), file.get()) !=
           array.data.size()))
    return fail(std::string("write error: ") + std::strerror(errno));
  // fclose flushes; a failure there (e.g. disk full) is a write failure too.
  if (std::fclose(file.release()) != 0)
    return fail(std::string("write error: ") + std::strerror(errno));
  return true;
}


bool npyToTensor(const NpyArray &array, ElementType type,
                        const std::string &name, HostTensor &tensor,
                        std::string &error) {
  bool floatSource = array.dtype == NpyDType::F64 ||
                     array.dtype == NpyDType::F32 ||
                     array.dtype == NpyDType::F16;
  bool bitsSource = array.dtype == NpyDType::U16 && type == ElementType::BF16;
  bool intSource = !floatSource && array.dtype != NpyDType::U16;
  bool accepted = isFloat(type) ? (floatSource || bitsSource) : intSource;
  if (!accepted) {
    error = "input '" + name + "' is " + toString(type) +
            " but the .npy file holds " + toString(array.dtype) +
            (type == ElementType::BF16
                 ? " (give bf16 as float32/float64, or as uint16 bit patterns)"
                 : "");
    return false;
  }
  tensor = HostTensor(type, array.shape);
  const uint8_t *data = array.data.data();
  for (int64_t index = 0, count = array.numElements(); index < count; ++index) {
    const uint8_t *at = data + index * array.elementSize();
    double value = 0;
    switch (array.dtype) {
    case NpyDType::F64:
      std::memcpy(&value, at, 8);
      break;
    case NpyDType::F32: {
      float narrow;
      std::memcpy(&narrow, at, 4);
      value = narrow;
      break;
    }
    case NpyDType::F16:
    case NpyDType::U16: {
      uint16_t bits;
      std::memcpy(&bits, at, 2);
      value = array.dtype == NpyDType::F16 ? halfToFloat(bits)
                                           : bfloat16ToFloat(bits);
      break;
    }
    case NpyDType::I64: {
      int64_t wide;
      std::memcpy(&wide, at, 8);
      value = static_cast<double>(wide);
      break;
    }
    case NpyDType::I32: {
      int32_t narrow;
      std::memcpy(&narrow, at, 4);
      value = narrow;
      break;
    }
    case NpyDType::I8:
      value = static_cast<int8_t>(*at);
      break;
    case NpyDType::U8:
    case NpyDType::Bool:
      value = *at;
      break;
    }
    tensor.set(index, value);
  }
  return true;
}

NpyArray tensorToNpy(const HostTensor &tensor) {
  NpyArray array;
  array.shape = tensor.shape();
  switch (tensor.type()) {
  case ElementType::F32:
  case ElementType::BF16:
    array.dtype = NpyDType::F32;
    break;
  case ElementType::F16:
    array.dtype = NpyDType::F16;
    break;
  case ElementType::I32:
    array.dtype = NpyDType::I32;
    break;
  case ElementType::I8:
    array.dtype = NpyDType::I8;
    break;
  case ElementType::Bool:
    array.dtype = NpyDType::Bool;
    break;
  }
  int64_t count = tensor.numElements();
  size_t size = array.elementSize();
  array.data.resize(static_cast<size_t>(count) * size);
  for (int64_t index = 0; index < count; ++index) {
    uint8_t *at = array.data.data() + index * size;
    double value = tensor.get(index);
    switch (array.dtype) {
    case NpyDType::F32: {
      float narrow = static_cast<float>(value);
      std::memcpy(at, &narrow, 4);
      break;
    }
    case NpyDType::F16: {
      uint16_t bits = floatToHalf(static_cast<float>(value));
      std::memcpy(at, &bits, 2);
      break;
    }
    case NpyDType::I32: {
      int32_t narrow = static_cast<int32_t>(value);
      std::memcpy(at, &narrow, 4);
      break;
    }
    default:
      *at = static_cast<uint8_t>(static_cast<int64_t>(value));
      break;
    }
  }
  return array;
}

} // namespace attnc
