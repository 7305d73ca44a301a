// pte_run: stream a .npy sequence through an LSTM's ExecuTorch program (model.pte), chunk by chunk,
// without libtorch.
//
//   pte_run MODEL.pte|EXPORT_DIR INPUT.npy [--h0 H0.npy --c0 C0.npy] [--out PREFIX] [--batch-first]
//
// INPUT is float32 (T, batch, input_size) ((batch, T, input_size) for a batch_first LSTM; an export
// folder's manifest says which, --batch-first says it for a bare .pte); any T >= 1: whole chunks run
// through "forward", the remainder through "step".  Writes PREFIXoutput.npy, PREFIXhn.npy,
// PREFIXcn.npy.  An export folder's model.pte is checked against its manifest (size, SHA-256) first.
// A whole model's program of the same signature (a head around the LSTM; export_executorch(model,
// path, example_inputs=...)) runs the same way: OUTPUT has the program's output features.
// Exit status: 0 done; 2 bad arguments, inputs or model (one line on stderr); 1 the runtime failed.
#include <cstring>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/npy.h"
#include "pte_lstm.h"

using namespace deploy_lstm;

namespace {

constexpr const char* kUsage =
    "usage: pte_run MODEL.pte|EXPORT_DIR INPUT.npy [--h0 H0.npy --c0 C0.npy] [--out PREFIX] [--batch-first]";

struct Args {
  std::string model, input, out;
  std::optional<std::string> h0, c0;
  bool batch_first = false;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError(arg + " needs a value; " + kUsage);
      return argv[++i];
    };
    if (arg == "--h0") a.h0 = value();
    else if (arg == "--c0") a.c0 = value();
    else if (arg == "--out") a.out = value();
    else if (arg == "--batch-first") a.batch_first = true;
    else if (arg == "-h" || arg == "--help") { std::cout << kUsage << "\n"; std::exit(0); }
    else if (arg.rfind("--", 0) == 0) throw InputError("unknown option " + arg + "; " + kUsage);
    else positional.push_back(arg);
  }
  if (positional.size() != 2) throw InputError("expected MODEL and INPUT, got " + std::to_string(positional.size()) + " arguments; " + kUsage);
  if (a.h0.has_value() != a.c0.has_value()) throw InputError("give --h0 and --c0 together (or neither: zeros)");
  a.model = positional[0];
  a.input = positional[1];
  return a;
}

// A float32 array of exactly `want`, read from `path`, as floats.
std::vector<float> read_floats(const std::string& path, const std::vector<int64_t>& want, const std::string& what) {
  NpyArray a = read_npy(path);
  if (a.dtype != NpyDtype::kFloat32 || a.shape != want)
    throw InputError(what + " " + path + ": expected float32 " + shape_string(want) + ", got " + npy_dtype_name(a.dtype) + " " + shape_string(a.shape));
  std::vector<float> v(a.data.size() / sizeof(float));
  std::memcpy(v.data(), a.data.data(), a.data.size());
  return v;
}

void write_floats(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& v) {
  NpyArray a;
  a.shape = shape;
  a.data.resize(v.size() * sizeof(float));
  std::memcpy(a.data.data(), v.data(), a.data.size());
  write_npy(path, a);
}

int run(const Args& args) {
  PteLstm lstm(resolve_pte(args.model, args.batch_first));
  const PteShape& s = lstm.shape();
  NpyArray x = read_npy(args.input);
  const int64_t batch_axis = s.batch_first ? 0 : 1, time_axis = 1 - batch_axis;
  if (x.dtype != NpyDtype::kFloat32 || x.shape.size() != 3 || x.shape[batch_axis] != s.batch || x.shape[2] != s.input_size || x.shape[time_axis] < 1)
    throw InputError("input " + args.input + ": expected float32 " + (s.batch_first ? "(" + std::to_string(s.batch) + ", T, " : "(T, " + std::to_string(s.batch) + ", ") +
                     std::to_string(s.input_size) + ") with T >= 1 (the program's batch and input_size), got " + npy_dtype_name(x.dtype) + " " + shape_string(x.shape));
  const int64_t T = x.shape[time_axis];
  std::vector<float> input(x.data.size() / sizeof(float));
  std::memcpy(input.data(), x.data.data(), x.data.size());
  const std::vector<int64_t> h_shape{s.layers, s.batch, s.proj}, c_shape{s.layers, s.batch, s.hidden};
  std::vector<float> h = args.h0 ? read_floats(*args.h0, h_shape, "h0") : std::vector<float>(s.layers * s.batch * s.proj, 0.f);
  std::vector<float> c = args.c0 ? read_floats(*args.c0, c_shape, "c0") : std::vector<float>(s.layers * s.batch * s.hidden, 0.f);
  std::vector<float> y = lstm.run(input, T, h, c);
  write_floats(args.out + "output.npy", s.batch_first ? std::vector<int64_t>{s.batch, T, s.output_size} : std::vector<int64_t>{T, s.batch, s.output_size}, y);
  write_floats(args.out + "hn.npy", h_shape, h);
  write_floats(args.out + "cn.npy", c_shape, c);
  return 0;
}

std::string one_line(std::string text) {
  for (char& ch : text) if (ch == '\n' || ch == '\r') ch = ' ';
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const RunError& e) {
    std::cerr << "pte_run: error: " << one_line(e.what()) << "\n";
    return 1;
  } catch (const std::exception& e) {  // InputError, NpyError, ModelLoadError: what was given does not fit
    std::cerr << "pte_run: error: " << one_line(e.what()) << "\n";
    return 2;
  }
}
