// libFuzzer target: deploy_lstm::read_npy on arbitrary bytes (src/npy.cpp).
//
// Beyond sanitizer findings: a refused file gives one printable line; an accepted one holds
// exactly the bytes its shape and dtype need, all taken from the input (nothing the header
// declared was allocated beyond the file); and malloc above -malloc_limit_mb (default: the
// -rss_limit_mb) is reported by libFuzzer itself.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "deploy_lstm/npy.h"
#include "fuzz_common.h"

using deploy_lstm_fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::istringstream in(bytes);
  try {
    const deploy_lstm::NpyArray array = deploy_lstm::read_npy(in, size, "fuzz.npy");
    const auto nbytes = deploy_lstm::checked_nbytes(array.shape, deploy_lstm::npy_itemsize(array.dtype));
    check(nbytes.has_value(), "accepted a shape whose byte size overflows", deploy_lstm::shape_string(array.shape));
    check(array.data.size() == static_cast<uint64_t>(*nbytes), "data size differs from the shape's");
    check(array.data.size() < size, "more data than the file holds");
    check(array.shape.size() <= deploy_lstm::kNpyMaxRank, "rank above the limit");
    check(array.numel() >= 0, "negative element count");
  } catch (const deploy_lstm::NpyError& e) {
    deploy_lstm_fuzz::check_message(e.what());
  }
  // The header parser alone, on the whole input as a header.
  try {
    deploy_lstm::parse_npy_header(bytes, "fuzz header");
  } catch (const deploy_lstm::NpyError& e) {
    deploy_lstm_fuzz::check_message(e.what());
  }
  return 0;
}
