// .npy reader/writer; see include/deploy_lstm/npy.h for the supported subset.
// Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#include "deploy_lstm/npy.h"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "deploy_lstm/printable.h"

namespace deploy_lstm {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw NpyError(where + ": " + what);
}

// Position just after `'key':` (single or double quotes) in the header, or npos.
std::size_t find_value(const std::string& header, const std::string& key) {
  for (const char q : {'\'', '"'}) {
    const std::string needle = std::string(1, q) + key + std::string(1, q);
    std::size_t pos = header.find(needle);
    if (pos == std::string::npos) continue;
    pos += needle.size();
    while (pos < header.size() && std::isspace(static_cast<unsigned char>(header[pos]))) ++pos;
    if (pos < header.size() && header[pos] == ':') return pos + 1;
  }
  return std::string::npos;
}

std::size_t skip_space(const std::string& s, std::size_t pos) {
  while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
  return pos;
}

}  // namespace

const char* npy_dtype_name(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32: return "float32";
    case NpyDtype::kFloat64: return "float64";
    case NpyDtype::kInt64: return "int64";
  }
  return "unknown";
}

std::size_t npy_itemsize(NpyDtype dtype) { return dtype == NpyDtype::kFloat32 ? 4 : 8; }

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) throw NpyError("shape " + shape_string(shape) + " has more elements than int64 holds");
  return n;
}

std::optional<int64_t> checked_nbytes(const std::vector<int64_t>& shape, std::size_t itemsize) {
  int64_t n = static_cast<int64_t>(itemsize);
  for (const int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  }
  return n;  // itemsize >= 1, so the element count fits too
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) out << ",";
  out << ")";
  return out.str();
}

NpyArray parse_npy_header(const std::string& header, const std::string& where) {
  NpyArray array;

  // 'descr': '<f4'
  std::size_t pos = find_value(header, "descr");
  if (pos == std::string::npos) fail(where, "malformed .npy header: no 'descr' key in " + printable(header));
  pos = skip_space(header, pos);
  if (pos >= header.size() || (header[pos] != '\'' && header[pos] != '"'))
    fail(where, "malformed .npy header: 'descr' is not a string (structured dtypes are not supported)");
  const char quote = header[pos];
  const std::size_t end = header.find(quote, pos + 1);
  if (end == std::string::npos) fail(where, "malformed .npy header: unterminated 'descr' string");
  const std::string descr = header.substr(pos + 1, end - pos - 1);
  if (descr == "<f4") {
    array.dtype = NpyDtype::kFloat32;
  } else if (descr == "<f8") {
    array.dtype = NpyDtype::kFloat64;
  } else if (descr == "<i8") {
    array.dtype = NpyDtype::kInt64;
  } else if (!descr.empty() && descr[0] == '>') {
    fail(where, "unsupported .npy dtype '" + printable(descr) +
                    "': big-endian data is not supported; save with arr.astype(arr.dtype.newbyteorder('<'))");
  } else {
    fail(where, "unsupported .npy dtype '" + printable(descr) +
                    "': expected little-endian float32 '<f4', float64 '<f8' or int64 '<i8'");
  }

  // 'fortran_order': False
  pos = find_value(header, "fortran_order");
  if (pos == std::string::npos) fail(where, "malformed .npy header: no 'fortran_order' key");
  pos = skip_space(header, pos);
  if (header.compare(pos, 4, "True") == 0) {
    fail(where, "Fortran-order .npy arrays are not supported; save np.ascontiguousarray(arr)");
  } else if (header.compare(pos, 5, "False") != 0) {
    fail(where, "malformed .npy header: 'fortran_order' is neither True nor False");
  }

  // 'shape': (2, 3)
  pos = find_value(header, "shape");
  if (pos == std::string::npos) fail(where, "malformed .npy header: no 'shape' key");
  pos = skip_space(header, pos);
  if (pos >= header.size() || header[pos] != '(')
    fail(where, "malformed .npy header: 'shape' is not a tuple");
  const std::size_t close = header.find(')', pos);
  if (close == std::string::npos) fail(where, "malformed .npy header: unterminated 'shape' tuple");
  std::size_t i = pos + 1;
  while (true) {
    i = skip_space(header, i);
    if (i >= close) break;
    if (!std::isdigit(static_cast<unsigned char>(header[i])))
      fail(where, "malformed .npy header: bad 'shape' " + printable(header.substr(pos, close - pos + 1)));
    int64_t dim = 0;
    while (i < close && std::isdigit(static_cast<unsigned char>(header[i]))) {
      if (dim > (std::numeric_limits<int64_t>::max() - 9) / 10)
        fail(where, "malformed .npy header: dimension too large in 'shape'");
      dim = dim * 10 + (header[i] - '0');
      ++i;
    }
    if (array.shape.size() == kNpyMaxRank) {
      fail(where, "malformed .npy header: 'shape' has more than " + std::to_string(kNpyMaxRank) +
                      " dimensions (numpy's limit)");
    }
    array.shape.push_back(dim);
    i = skip_space(header, i);
    if (i < close && header[i] == ',') {
      ++i;
    } else if (i < close) {
      fail(where, "malformed .npy header: bad 'shape' " + printable(header.substr(pos, close - pos + 1)));
    }
  }
  return array;
}

NpyArray read_npy(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) fail(path, "cannot open .npy file (does it exist?)");
  if (!fs::is_regular_file(status)) {
    fail(path, std::string("expected a regular .npy file, got a ") +
                   (fs::is_directory(status) ? "directory" : "special file (pipe, device or socket)"));
  }
  const uint64_t size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) fail(path, "cannot open .npy file (permissions?)");
  return read_npy(in, size, path);
}

NpyArray read_npy(std::istream& in, uint64_t size, const std::string& where) {
  if (!host_is_little_endian()) fail(where, "this .npy reader needs a little-endian host");

  // magic (6 bytes), major and minor version, then the header length: 2 bytes (1.0) or 4 (2.0, 3.0).
  char magic[kMagicLen + 2];
  if (size < sizeof(magic) || !in.read(magic, sizeof(magic)) || std::memcmp(magic, kMagic, kMagicLen) != 0)
    fail(where, "not a .npy file: bad magic (expected \\x93NUMPY at the start)");
  const auto major = static_cast<unsigned char>(magic[kMagicLen]);
  std::size_t len_bytes = 0;
  if (major == 1) {
    len_bytes = 2;
  } else if (major == 2 || major == 3) {
    len_bytes = 4;
  } else {
    fail(where, "unsupported .npy format version " + std::to_string(major) + " (expected 1, 2 or 3)");
  }
  unsigned char len[4] = {0, 0, 0, 0};
  if (size < sizeof(magic) + len_bytes || !in.read(reinterpret_cast<char*>(len), static_cast<std::streamsize>(len_bytes)))
    fail(where, "malformed .npy file: truncated header length");
  const uint64_t header_len = len[0] | (static_cast<uint64_t>(len[1]) << 8) | (static_cast<uint64_t>(len[2]) << 16) |
                              (static_cast<uint64_t>(len[3]) << 24);
  const uint64_t prefix = sizeof(magic) + len_bytes;

  // Every declared size is checked against the file before anything of that size is allocated.
  if (header_len > size - prefix) {
    fail(where, "malformed .npy file: header shorter than its declared " + std::to_string(header_len) +
                    " bytes: the file has " + std::to_string(size - prefix) + " bytes after its " +
                    std::to_string(prefix) + "-byte prefix (truncated file?)");
  }
  if (header_len > kNpyMaxHeaderLen) {
    fail(where, "malformed .npy file: header of " + std::to_string(header_len) + " bytes, expected at most " +
                    std::to_string(kNpyMaxHeaderLen) + " (numpy's np.load limit)");
  }
  std::string header(header_len, '\0');
  if (!in.read(&header[0], static_cast<std::streamsize>(header_len)))
    fail(where, "malformed .npy file: header shorter than its declared " + std::to_string(header_len) + " bytes");

  NpyArray array = parse_npy_header(header, where);
  const std::string what = "shape " + shape_string(array.shape) + " of " + npy_dtype_name(array.dtype);
  const std::optional<int64_t> nbytes = checked_nbytes(array.shape, npy_itemsize(array.dtype));
  if (!nbytes) {
    fail(where, "malformed .npy header: " + what + " takes more than 2^63-1 bytes; expected a size int64 holds "
                    "(corrupt header?)");
  }
  const uint64_t expected = static_cast<uint64_t>(*nbytes);
  const uint64_t available = size - prefix - header_len;
  if (available != expected) {
    fail(where, "malformed .npy file: " + what + " needs " + std::to_string(expected) + " data bytes, got " +
                    std::to_string(available) +
                    (available < expected ? " (truncated file?)"
                                          : " (extra bytes after the " + std::to_string(expected) + " data bytes)"));
  }
  array.data.resize(expected);
  in.read(array.data.data(), static_cast<std::streamsize>(expected));
  const auto got = static_cast<uint64_t>(in.gcount());
  if (got != expected) {
    fail(where, "malformed .npy file: " + what + " needs " + std::to_string(expected) + " data bytes, read " +
                    std::to_string(got) + " (file changed while reading?)");
  }
  return array;
}

void write_npy(const std::string& path, const NpyArray& array) {
  if (!host_is_little_endian()) fail(path, "this .npy writer needs a little-endian host");
  const char* descr = array.dtype == NpyDtype::kFloat32   ? "<f4"
                      : array.dtype == NpyDtype::kFloat64 ? "<f8"
                                                          : "<i8";
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': " + shape_string(array.shape) + ", }";
  // Pad with spaces and end with '\n' so that magic + length + header is a multiple of 64.
  const std::size_t prefix = kMagicLen + 2 + 2;
  const std::size_t total = ((prefix + header.size() + 1 + 63) / 64) * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  if (header.size() > 65535) fail(path, "shape too long for a version 1.0 .npy header");

  const std::optional<int64_t> nbytes = checked_nbytes(array.shape, npy_itemsize(array.dtype));
  if (!nbytes || array.data.size() != static_cast<uint64_t>(*nbytes))
    fail(path, "internal error: " + std::to_string(array.data.size()) + " data bytes for shape " +
                   shape_string(array.shape) + ", expected " + (nbytes ? std::to_string(*nbytes) : "more than 2^63"));

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, "cannot open for writing");
  out.write(kMagic, kMagicLen);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const char len[2] = {static_cast<char>(header.size() & 0xff), static_cast<char>(header.size() >> 8)};
  out.write(len, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(array.data.data(), static_cast<std::streamsize>(array.data.size()));
  if (!out) fail(path, "write failed");
}

}  // namespace deploy_lstm
