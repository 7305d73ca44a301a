// Minimal reader/writer for NumPy .npy files (format versions 1.0, 2.0, 3.0).
//
// Supported subset: little-endian float32 ('<f4'), float64 ('<f8') and int64
// ('<i8'), C order (fortran_order False), rank 0 to 64.  Anything else is rejected
// with an NpyError that names the file and what was found.
//
// Hostile files are refused before anything is allocated: the header length and the
// data size the header declares are checked against the file's actual size, with
// overflow-checked arithmetic, so memory use follows the file, not its header.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace deploy_lstm {

// A malformed or unsupported .npy file, or an I/O failure.
class NpyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class NpyDtype { kFloat32, kFloat64, kInt64 };

// The largest header read_npy accepts: numpy's own np.load limit (max_header_size=10000);
// a header of the supported subset needs under 2000 bytes.
inline constexpr std::size_t kNpyMaxHeaderLen = 10000;
// The highest rank read_npy accepts: numpy's (NPY_MAXDIMS in numpy 2).
inline constexpr std::size_t kNpyMaxRank = 64;

// "float32", "float64" or "int64".
const char* npy_dtype_name(NpyDtype dtype);
// 4 or 8.
std::size_t npy_itemsize(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<int64_t> shape;  // empty for a 0-d array
  std::vector<char> data;      // C-order, little-endian, numel() * itemsize bytes

  // The product of `shape`; throws NpyError when it does not fit in int64.
  int64_t numel() const;
};

// The size in bytes of `shape` of `itemsize`-byte elements; nullopt when the element count
// or the byte count does not fit in int64 (what torch can address).
std::optional<int64_t> checked_nbytes(const std::vector<int64_t>& shape, std::size_t itemsize);

// Reads `path`, a regular file.  Throws NpyError on a missing file or one that is not a
// regular file (a directory, a pipe), and on what read_npy(stream) refuses.
NpyArray read_npy(const std::string& path);

// Reads a .npy file of `size` bytes from `in`; `where` names it in messages.  Throws NpyError
// on bad magic, a header longer than the file or than kNpyMaxHeaderLen, an unparsable header,
// an unsupported dtype or order, a rank above kNpyMaxRank, a shape whose byte size overflows,
// or a data size other than the shape's (checked against `size` before allocating).
NpyArray read_npy(std::istream& in, uint64_t size, const std::string& where);

// Parses the header dictionary, e.g. "{'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }", into dtype and shape (data left empty).  `where` names
// the source in error messages.
NpyArray parse_npy_header(const std::string& header, const std::string& where);

// Writes `array` as a version 1.0 .npy file; throws NpyError on I/O failure.
void write_npy(const std::string& path, const NpyArray& array);

// "(2, 3)"-style rendering of a shape, for messages.
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace deploy_lstm
