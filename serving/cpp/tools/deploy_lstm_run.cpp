// deploy_lstm_run: run a TorchScript deploy_lstm.LSTM on .npy inputs, write .npy outputs.
//
// Exit status: 0 on success, 2 on bad command-line arguments, 1 on any other
// error (missing model, not TorchScript, input that does not fit, malformed .npy).
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include "deploy_lstm/lstm_runner.h"
#include "deploy_lstm/npy.h"

namespace {

constexpr const char* kUsage =
    "usage: deploy_lstm_run MODEL.pt INPUT.npy [--h0 H0.npy --c0 C0.npy] [--lengths LENGTHS.npy]\n"
    "                       [--chunk K] [--out DIR] [--threads N]\n"
    "  MODEL.pt   a scripted deploy_lstm.LSTM saved with torch.jit.save\n"
    "  INPUT.npy  (T, N, input_size), (N, T, input_size) if batch_first, or (T, input_size);\n"
    "             little-endian float32/float64 (the model's dtype), C order\n"
    "  --h0/--c0  initial state, (num_layers*num_directions, N, proj_size or hidden_size) / (.., hidden_size)\n"
    "  --lengths  int64 (N,) lengths of a right-padded batch\n"
    "  --chunk K  stream the input K time steps at a time, carrying (h, c) (unidirectional models)\n"
    "  --out DIR  where to write output.npy, hn.npy, cn.npy (default: current directory)\n"
    "  --threads N  intra-op threads (default: torch's choice)\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string model, input, out = ".";
  std::optional<std::string> h0, c0, lengths;
  int64_t chunk = 0;
  int threads = 0;
};

int64_t parse_positive(const std::string& flag, const std::string& value) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || v < 1) throw UsageError(flag + " expects a positive integer, got '" + value + "'");
  return v;
}

Args parse_args(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--h0") {
      args.h0 = value();
    } else if (a == "--c0") {
      args.c0 = value();
    } else if (a == "--lengths") {
      args.lengths = value();
    } else if (a == "--chunk") {
      args.chunk = parse_positive(a, value());
    } else if (a == "--out") {
      args.out = value();
    } else if (a == "--threads") {
      const int64_t threads = parse_positive(a, value());
      if (threads > 1024) throw UsageError("--threads expects at most 1024, got " + std::to_string(threads));
      args.threads = static_cast<int>(threads);
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2)
    throw UsageError("expected MODEL.pt and INPUT.npy, got " + std::to_string(positional.size()) + " positional arguments");
  args.model = positional[0];
  args.input = positional[1];
  if (args.h0.has_value() != args.c0.has_value()) throw UsageError("--h0 and --c0 must be given together");
  if (args.chunk > 0 && args.lengths) throw UsageError("--chunk cannot be combined with --lengths");
  return args;
}

torch::Tensor to_tensor(const deploy_lstm::NpyArray& a) {
  const auto dtype = a.dtype == deploy_lstm::NpyDtype::kFloat32   ? torch::kFloat32
                     : a.dtype == deploy_lstm::NpyDtype::kFloat64 ? torch::kFloat64
                                                                  : torch::kInt64;
  // from_blob does not copy; clone so the tensor owns its memory.
  return torch::from_blob(const_cast<char*>(a.data.data()), a.shape, torch::TensorOptions().dtype(dtype)).clone();
}

deploy_lstm::NpyArray to_npy(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  deploy_lstm::NpyArray a;
  if (c.scalar_type() == torch::kFloat32) {
    a.dtype = deploy_lstm::NpyDtype::kFloat32;
  } else if (c.scalar_type() == torch::kFloat64) {
    a.dtype = deploy_lstm::NpyDtype::kFloat64;
  } else if (c.scalar_type() == torch::kInt64) {
    a.dtype = deploy_lstm::NpyDtype::kInt64;
  } else {
    throw std::runtime_error(std::string("cannot write a tensor of dtype ") + c10::toString(c.scalar_type()) + " as .npy");
  }
  a.shape.assign(c.sizes().begin(), c.sizes().end());
  const auto* bytes = static_cast<const char*>(c.data_ptr());
  a.data.assign(bytes, bytes + c.numel() * c.element_size());
  return a;
}

std::string describe(const torch::Tensor& t) {
  return deploy_lstm::shape_string(t.sizes().vec()) + " " +
         (t.scalar_type() == torch::kFloat32 ? "float32" : t.scalar_type() == torch::kFloat64 ? "float64" : "int64");
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

int run(const Args& args) {
  if (args.threads > 0) at::set_num_threads(args.threads);

  auto t0 = std::chrono::steady_clock::now();
  deploy_lstm::LstmRunner runner(args.model);
  const double load_ms = ms_since(t0);
  const auto& cfg = runner.config();

  const torch::Tensor input = to_tensor(deploy_lstm::read_npy(args.input));
  std::optional<deploy_lstm::LstmState> state;
  if (args.h0) state = deploy_lstm::LstmState{to_tensor(deploy_lstm::read_npy(*args.h0)), to_tensor(deploy_lstm::read_npy(*args.c0))};
  std::optional<torch::Tensor> lengths;
  if (args.lengths) lengths = to_tensor(deploy_lstm::read_npy(*args.lengths));

  runner.validate(input, state, lengths);  // whole-input messages, also in --chunk mode

  deploy_lstm::LstmOutput out;
  int64_t chunks = 1;
  t0 = std::chrono::steady_clock::now();
  if (args.chunk > 0) {
    deploy_lstm::LstmStream stream = runner.stream(state);
    const int64_t time_dim = input.dim() == 3 && cfg.batch_first ? 1 : 0;
    const int64_t T = input.size(time_dim);
    std::vector<torch::Tensor> outputs;
    for (int64_t start = 0; start < T; start += args.chunk) {
      outputs.push_back(stream.push(input.narrow(time_dim, start, std::min(args.chunk, T - start))).output);
    }
    chunks = static_cast<int64_t>(outputs.size());
    out = deploy_lstm::LstmOutput{torch::cat(outputs, time_dim), stream.state()->first, stream.state()->second};
  } else {
    out = runner.run(input, state, lengths);
  }
  const double run_ms = ms_since(t0);

  std::filesystem::create_directories(args.out);
  const std::filesystem::path dir(args.out);
  deploy_lstm::write_npy((dir / "output.npy").string(), to_npy(out.output));
  deploy_lstm::write_npy((dir / "hn.npy").string(), to_npy(out.h_n));
  deploy_lstm::write_npy((dir / "cn.npy").string(), to_npy(out.c_n));

  std::cout << "model:  " << args.model << " (" << cfg.to_string() << ")\n"
            << "input:  " << describe(input);
  if (state) std::cout << "  h0: " << describe(state->first) << "  c0: " << describe(state->second);
  if (lengths) std::cout << "  lengths: " << describe(*lengths);
  std::cout << "\noutput: " << describe(out.output) << "  h_n: " << describe(out.h_n) << "  c_n: " << describe(out.c_n)
            << "\ntime:   load " << load_ms << " ms, run " << run_ms << " ms";
  if (args.chunk > 0) std::cout << " in " << chunks << " chunks of up to " << args.chunk << " steps";
  std::cout << " (first run: includes TorchScript warm-up)";
  std::cout << "\nwrote:  " << (dir / "output.npy").string() << ", " << (dir / "hn.npy").string() << ", "
            << (dir / "cn.npy").string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    return run(args);
  } catch (const deploy_lstm::ModelLoadError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const deploy_lstm::InputError& e) {
    std::cerr << "error: bad input: " << e.what() << "\n";
  } catch (const deploy_lstm::NpyError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  }
  return 1;
}
