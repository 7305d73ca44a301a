// libFuzzer target: the JSON reader and the I/O contract on arbitrary text (src/io_spec.cpp):
// parse_json, parse_io_spec, json_string_field, IoSpec::check_inputs, output_file_names.
//
// Beyond sanitizer findings: a refused text gives one printable line; an accepted document has
// distinct keys in every object and only finite numbers; a contract accepts inputs built to
// fit it, and its refusals of inputs that do not fit are one line too.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/io_spec.h"
#include "fuzz_common.h"

using deploy_lstm::Json;
using deploy_lstm_fuzz::check;

namespace {

void check_document(const Json& v, int depth) {
  check(depth <= 100, "document nested deeper than the reader's limit");
  if (v.kind == Json::Kind::kNumber) check(std::isfinite(v.number), "accepted a non-finite number");
  if (v.kind == Json::Kind::kObject) {
    std::set<std::string> keys;
    for (const auto& [k, item] : v.fields) {
      check(keys.insert(k).second, "accepted a duplicate key", k);
      check_document(item, depth + 1);
    }
  }
  for (const Json& item : v.items) check_document(item, depth + 1);
}

void check_contract(const deploy_lstm::IoSpec& io) {
  // Inputs that fit: every fixed size as declared, every axis 1.
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::string> dtypes;
  for (const deploy_lstm::TensorSpec& t : io.inputs) {
    std::vector<int64_t> shape;
    for (const deploy_lstm::SpecDim& d : t.shape) shape.push_back(d.dynamic() ? 1 : d.size);
    shapes.push_back(shape);
    dtypes.push_back(t.dtype);
    (void)t.shape_string();
  }
  try {
    io.check_inputs(shapes, dtypes);
  } catch (const deploy_lstm::InputError& e) {
    check(false, "refused inputs built to fit the contract", e.what());
  }
  // Inputs that do not: a wrong dtype, a wrong rank, one input missing.
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    for (int variant = 0; variant < 2; ++variant) {
      auto bad_shapes = shapes;
      auto bad_dtypes = dtypes;
      if (variant == 0) bad_dtypes[i] += "?";
      else bad_shapes[i].push_back(2);
      try {
        io.check_inputs(bad_shapes, bad_dtypes);
        check(false, "accepted an input that does not fit");
      } catch (const deploy_lstm::InputError& e) {
        deploy_lstm_fuzz::check_message(e.what());
      }
    }
  }
  if (!shapes.empty()) {
    shapes.pop_back();
    dtypes.pop_back();
    try {
      io.check_inputs(shapes, dtypes);
      check(false, "accepted one input too few");
    } catch (const deploy_lstm::InputError& e) {
      deploy_lstm_fuzz::check_message(e.what());
    }
  }
  const std::vector<std::string> names = deploy_lstm::output_file_names(io, io.outputs.size());
  check(names.size() == io.outputs.size(), "output_file_names count");
  for (const std::string& name : names)
    for (const char c : name) check(c != '/' && c != '\\' && c != '\0', "unsafe output file name", name);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    check_document(deploy_lstm::parse_json(text, "fuzz.json"), 0);
  } catch (const deploy_lstm::ModelLoadError& e) {
    deploy_lstm_fuzz::check_message(e.what());
  }
  try {
    check_contract(deploy_lstm::parse_io_spec(text, "fuzz"));
  } catch (const deploy_lstm::ModelLoadError& e) {
    deploy_lstm_fuzz::check_message(e.what());
  }
  try {
    (void)deploy_lstm::json_string_field(text, deploy_lstm::kMetaIo, "fuzz config");
  } catch (const deploy_lstm::ModelLoadError& e) {
    deploy_lstm_fuzz::check_message(e.what());
  }
  return 0;
}
