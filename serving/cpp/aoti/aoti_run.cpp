// aoti_run: run an AOTInductor package (model.pt2) written by deploy_lstm.export_aoti.
//
//   aoti_run MODEL.pt2 INPUT... OUT_PREFIX
//
// INPUT...: the package's flattened inputs, in its order -- a bare LSTM's input, h0,
// c0 [, lengths]; a whole model's own, e.g. tokens, h0, c0 for forward(tokens, (h0, c0)).
// A tensor file is: int64 ndim, int64 dims[ndim], then the data (C order,
// little-endian).  The extension says the dtype: .bin or .f32 float32, .f64 float64,
// .i64 int64.  Outputs are written the same way, one per flattened output in the
// package's order: <OUT_PREFIX>0.bin, <OUT_PREFIX>1.bin, ... (.f64 / .i64 for float64 /
// int64 outputs).
//
// A package whose LSTMs took the "fused" route (metadata "deploy_lstm.lstm_ops") calls the
// custom op deploy_lstm::fused_lstm, registered by libdeploy_lstm_ops (fused_lstm_op.cpp),
// which this runner links; a "scan" package needs nothing but libtorch.
//
// When the package carries deploy_lstm's I/O contract (metadata "deploy_lstm.io"), the
// inputs are checked against it before running: count, dtype, rank, fixed sizes, and
// one size per named axis (every "batch" the same).
//
// Exit status: 0 on success, 2 on bad command-line arguments (with the usage line),
// 1 on any other error, with one "error: ..." line on stderr.
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "deploy_lstm/aoti_runner.h"
#include "deploy_lstm/cli.h"
#include "deploy_lstm/errors.h"
#include "deploy_lstm/io_spec.h"
#include "deploy_lstm/npy.h"
#include "deploy_lstm/tensor_npy.h"

namespace {

using deploy_lstm::UsageError;

constexpr const char* kUsage =
    "usage: aoti_run MODEL.pt2 INPUT... OUT_PREFIX\n"
    "  MODEL.pt2   an AOTInductor package (deploy_lstm.export_aoti)\n"
    "  INPUT...    the package's flattened inputs in order; each file: int64 ndim, int64 dims[ndim], data;\n"
    "              the extension gives the dtype: .bin or .f32 float32, .f64 float64, .i64 int64\n"
    "  OUT_PREFIX  outputs go to OUT_PREFIX0.bin, OUT_PREFIX1.bin, ... (.f64 / .i64 for float64 / int64)\n";

constexpr int64_t kMaxRank = 16;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The dtype a tensor file's extension declares.
std::optional<c10::ScalarType> file_dtype(const std::string& path) {
  if (ends_with(path, ".bin") || ends_with(path, ".f32")) return torch::kFloat32;
  if (ends_with(path, ".f64")) return torch::kFloat64;
  if (ends_with(path, ".i64")) return torch::kInt64;
  return std::nullopt;
}

// The extension an output of `dtype` is written with; nullptr when none is.
const char* file_extension(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return ".bin";
    case torch::kFloat64: return ".f64";
    case torch::kInt64: return ".i64";
    default: return nullptr;
  }
}

struct Args {
  std::string package, out_prefix;
  std::vector<std::string> inputs;
};

Args parse_args(int argc, char** argv) {
  // No options: every "-..." argument but -h/--help is unknown.
  const std::vector<std::string> positional =
      deploy_lstm::parse_command_line(argc, argv, kUsage, [](const std::string&, const auto&) { return false; });
  if (positional.size() < 2) {
    throw UsageError("expected MODEL.pt2, the inputs and OUT_PREFIX, got " + std::to_string(positional.size()) +
                     " arguments");
  }
  Args args{positional.front(), positional.back(), {positional.begin() + 1, positional.end() - 1}};
  if (file_dtype(args.out_prefix)) {
    throw UsageError("the last argument is OUT_PREFIX, but '" + args.out_prefix +
                     "' looks like an input file; add a prefix such as out/result_");
  }
  for (const std::string& in : args.inputs) {
    if (!file_dtype(in)) {
      throw UsageError("input '" + in + "' has no dtype extension: name it .bin or .f32 (float32), .f64 (float64) "
                       "or .i64 (int64)");
    }
  }
  return args;
}

torch::Tensor read_tensor(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("cannot open '" + path + "' (does it exist?)");
  const auto file_size = static_cast<int64_t>(f.tellg());
  f.seekg(0);
  int64_t ndim = -1;
  f.read(reinterpret_cast<char*>(&ndim), sizeof ndim);
  if (!f || ndim < 0 || ndim > kMaxRank) {
    throw std::runtime_error(path + ": bad header: expected int64 ndim in 0.." + std::to_string(kMaxRank) +
                             (f ? ", got " + std::to_string(ndim) : ", got a truncated file"));
  }
  std::vector<int64_t> dims(static_cast<std::size_t>(ndim));
  f.read(reinterpret_cast<char*>(dims.data()), ndim * static_cast<int64_t>(sizeof(int64_t)));
  if (!f) throw std::runtime_error(path + ": bad header: truncated dims");
  for (const int64_t d : dims)
    if (d < 0) throw std::runtime_error(path + ": bad header: negative dimension in " + deploy_lstm::shape_string(dims));
  const c10::ScalarType dtype = *file_dtype(path);
  // The size the header declares, checked against the file before allocating it.
  const auto header = static_cast<int64_t>(sizeof(int64_t)) * (1 + ndim);
  const std::string what = "shape " + deploy_lstm::shape_string(dims) + " of " + deploy_lstm::dtype_name(dtype);
  const std::optional<int64_t> want = deploy_lstm::checked_nbytes(dims, c10::elementSize(dtype));
  if (!want) throw std::runtime_error(path + ": bad header: " + what + " takes more than 2^63-1 bytes");
  if (file_size - header != *want) {
    throw std::runtime_error(path + ": " + what + " needs " + std::to_string(*want) + " data bytes, got " +
                             std::to_string(file_size - header));
  }
  auto t = torch::empty(dims, dtype);
  f.read(reinterpret_cast<char*>(t.data_ptr()), *want);
  if (!f) throw std::runtime_error(path + ": read failed");
  return t;
}

void write_tensor(const std::string& path, const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const int64_t ndim = c.dim();
  f.write(reinterpret_cast<const char*>(&ndim), sizeof ndim);
  f.write(reinterpret_cast<const char*>(c.sizes().data()), ndim * static_cast<int64_t>(sizeof(int64_t)));
  f.write(reinterpret_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  if (!f) throw std::runtime_error("cannot write '" + path + "'");
}

int run(const Args& args) {
  // Loading, the I/O contract and its checks are deploy_lstm_run's too (src/aoti_runner.cpp).
  deploy_lstm::AotiRunner runner(args.package);
  runner.check_count(args.inputs.size());  // before reading: the count is the likelier mistake
  std::vector<torch::Tensor> inputs;
  for (const std::string& path : args.inputs) inputs.push_back(read_tensor(path));
  const std::vector<torch::Tensor> outputs = runner.run(inputs);
  const std::optional<deploy_lstm::IoSpec>& io = runner.io();

  // Check every output's dtype before writing any: no partial results on failure.
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const char* ext = file_extension(outputs[i].scalar_type());
    if (ext == nullptr) {
      throw std::runtime_error("output " + std::to_string(i) + " has dtype " +
                               deploy_lstm::dtype_name(outputs[i].scalar_type()) +
                               "; the tensor files hold float32, float64 or int64");
    }
    paths.push_back(args.out_prefix + std::to_string(i) + ext);
  }
  const std::filesystem::path parent = std::filesystem::path(args.out_prefix).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    write_tensor(paths[i], outputs[i]);
    const std::string name = io && io->outputs.size() == outputs.size() ? io->outputs[i].name + " " : "";
    std::cout << paths[i] << ": " << name << deploy_lstm::describe(outputs[i]) << "\n";
  }
  std::cout << outputs.size() << " outputs written\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // c10 errors (e.g. from the package loader) span several lines: keep the first.
  return deploy_lstm::run_tool(argc, argv, kUsage, parse_args, run, deploy_lstm::C10Message::kFirstLine);
}
