// The I/O contract deploy_lstm writes into its artifacts, and the JSON reader behind it
// (no torch dependency).
//
// contract.META_IO ("deploy_lstm.io") holds contract.IOSpec.to_json(): the names,
// shapes and dtypes of a graph's flattened inputs and outputs, e.g.
//   {"inputs": [{"name": "input", "shape": ["sequence", "batch"], "dtype": "int64"}, ...],
//    "outputs": [{"name": "logits", "shape": ["sequence", "batch", 50], "dtype": "float32"}, ...]}
// A dimension is a size (fixed) or a string (a dynamic axis; every tensor that
// names the same axis must have the same size there).  AOTInductor packages carry
// it in their metadata; TorchScript archives may carry it in deploy_lstm_config.json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace deploy_lstm {

// contract.META_IO: the metadata key holding the IOSpec JSON.
inline constexpr const char* kMetaIo = "deploy_lstm.io";

// One dimension of a TensorSpec: a fixed size, or a dynamic axis named `axis`.
struct SpecDim {
  int64_t size = -1;  // -1 for a dynamic axis
  std::string axis;   // "batch", "sequence", ...; empty for a fixed size

  bool dynamic() const { return !axis.empty(); }
};

struct TensorSpec {
  std::string name;
  std::vector<SpecDim> shape;
  std::string dtype;  // numpy name: "float32", "float64", "int64"

  // "(sequence, batch, 50)", for messages.
  std::string shape_string() const;
};

struct IoSpec {
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;

  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;

  // Checks the flat inputs (shape and numpy dtype name of each): their count, then
  // each one's dtype, rank and fixed sizes, then that every dynamic axis has one
  // size across the inputs.  Throws InputError with expected and got.
  void check_inputs(const std::vector<std::vector<int64_t>>& shapes, const std::vector<std::string>& dtypes) const;
};

// The names to write `n` outputs under ("<name>.npy"): the contract's when it lists n outputs
// whose names are distinct plain file names (letters, digits, '_', '-', '.', not leading '.'),
// else output_0, output_1, ...
std::vector<std::string> output_file_names(const std::optional<IoSpec>& io, std::size_t n);

// A parsed JSON value (RFC 8259; what Python's json.dumps writes): the IOSpec, the
// TorchScript metadata, an export folder's manifest.json.
struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  bool integral = false;  // a number written without fraction or exponent
  int64_t integer = 0;
  double number = 0.0;
  std::string string;
  std::vector<Json> items;                            // kArray
  std::vector<std::pair<std::string, Json>> fields;  // kObject, in order

  // The value of `key` in an object; nullptr when absent (or this is not an object).
  const Json* field(const std::string& key) const;
  // field(keys[0])->field(keys[1])...; nullptr when any step is absent or not an object.
  const Json* path(const std::vector<std::string>& keys) const;
};

// Parses `text`.  Throws ModelLoadError "<where>: malformed JSON at offset N: ..." when it does not parse.
Json parse_json(const std::string& text, const std::string& where);

// Parses IOSpec JSON.  Throws ModelLoadError naming `where` when it does not parse.
IoSpec parse_io_spec(const std::string& json, const std::string& where);

// The string value of `key` in the JSON object `json` (e.g. the TorchScript
// archive's deploy_lstm_config.json); nullopt when the key is absent.  Throws
// ModelLoadError naming `where` when `json` is not an object or the value not a string.
std::optional<std::string> json_string_field(const std::string& json, const std::string& key,
                                             const std::string& where);

// "a, b, c".
std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

}  // namespace deploy_lstm
