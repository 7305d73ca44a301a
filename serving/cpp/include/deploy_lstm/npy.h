// Minimal reader/writer for NumPy .npy files (format versions 1.0, 2.0, 3.0).
//
// Supported subset: little-endian float32 ('<f4'), float64 ('<f8') and int64
// ('<i8'), C order (fortran_order False), any rank including 0.  Anything else
// is rejected with an NpyError that names the file and what was found.
#pragma once

#include <cstdint>
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

// "float32", "float64" or "int64".
const char* npy_dtype_name(NpyDtype dtype);
// 4 or 8.
std::size_t npy_itemsize(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<int64_t> shape;  // empty for a 0-d array
  std::vector<char> data;      // C-order, little-endian, numel() * itemsize bytes

  int64_t numel() const;
};

// Reads `path`.  Throws NpyError on a missing file, bad magic, unparsable
// header, unsupported dtype/order, or a data size that does not match the shape.
NpyArray read_npy(const std::string& path);

// Parses the header dictionary, e.g. "{'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }", into dtype and shape (data left empty).  `where` names
// the source in error messages.
NpyArray parse_npy_header(const std::string& header, const std::string& where);

// Writes `array` as a version 1.0 .npy file; throws NpyError on I/O failure.
void write_npy(const std::string& path, const NpyArray& array);

// "(2, 3)"-style rendering of a shape, for messages.
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace deploy_lstm
