// deploy_lstm_run: run a TorchScript model, an AOTInductor package, or an export folder's
// recommended artifact on .npy inputs, write .npy outputs.
//
// MODEL is one of:
//   * an export folder (deploy-lstm export): the artifact `deploy-lstm bench DIR` recommended
//     for C++ (manifest "recommendation.targets.cpp"), else its model.ts, else its model.pt2;
//     --artifact torchscript|aoti|torchscript-bf16|aoti-bf16 chooses (the bf16 ones run their
//     LSTMs in bfloat16 behind a float32 boundary: same inputs and outputs).  The file is checked against the manifest's size and
//     SHA-256 first, and one line on stderr says which artifact runs and why;
//   * a TorchScript archive (.ts, .pt, ...), told apart by the module itself:
//     - a scripted deploy_lstm.LSTM (it has the configuration constants): one INPUT.npy,
//       --h0/--c0/--lengths, --chunk streaming; writes output.npy, hn.npy, cn.npy;
//     - any other scripted model ("whole model"): forward's Tensor and (nested) Tuple
//       arguments flattened, one .npy per tensor in order; one .npy per flat output;
//   * an AOTInductor package (.pt2, deploy_lstm.export_aoti): its flat inputs in the order of
//     its I/O contract, one .npy each, outputs named from the contract; a bare LSTM's package
//     also takes the first form (one INPUT.npy, --h0/--c0 or zeros, --lengths, --chunk), so a
//     folder's command line works whichever artifact runs.
//
// Exit status: 0 on success, 2 on bad command-line arguments, 1 on any other
// error (missing model, not TorchScript, input that does not fit, malformed .npy).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include "deploy_lstm/aoti_runner.h"
#include "deploy_lstm/cli.h"
#include "deploy_lstm/folder.h"
#include "deploy_lstm/lstm_runner.h"
#include "deploy_lstm/model_runner.h"
#include "deploy_lstm/npy.h"
#include "deploy_lstm/tensor_npy.h"
#include "deploy_lstm/torchscript.h"

namespace {

using deploy_lstm::UsageError;

constexpr const char* kUsage =
    "usage: deploy_lstm_run MODEL.pt INPUT.npy [--h0 H0.npy --c0 C0.npy] [--lengths LENGTHS.npy]\n"
    "                       [--chunk K] [--out DIR] [--threads N] [--artifact KIND]\n"
    "       deploy_lstm_run MODEL.pt INPUT.npy [INPUT.npy ...] [--out DIR] [--threads N] [--artifact ...]\n"
    "  MODEL.pt   a TorchScript archive (torch.jit.save): a scripted deploy_lstm.LSTM (first form),\n"
    "             or a whole model whose forward takes Tensors and (nested) Tuples of Tensors (second form);\n"
    "             or an AOTInductor package MODEL.pt2 (deploy_lstm.export_aoti): its inputs in the order of\n"
    "             its I/O contract (second form; a bare LSTM's: input h0 c0 [lengths]), or for a bare LSTM\n"
    "             the first form (h0/c0 zeros when not given);\n"
    "             or an export folder DIR (deploy-lstm export): runs the artifact deploy-lstm bench recommended\n"
    "             for C++, else model.ts, else model.pt2 (a line on stderr says which and why)\n"
    "  INPUT.npy  deploy_lstm.LSTM: (T, N, input_size), (N, T, input_size) if batch_first, or (T, input_size)\n"
    "             (TorchScript only); little-endian float32/float64 (the model's dtype), C order\n"
    "             whole model: one file per tensor of forward's arguments flattened in order, e.g.\n"
    "             input.npy h0.npy c0.npy for forward(input, hidden=(h0, c0)); float32, float64 or int64\n"
    "  --h0/--c0  initial state, (num_layers*num_directions, N, proj_size or hidden_size) / (.., hidden_size)\n"
    "  --lengths  int64 (N,) lengths of a right-padded batch\n"
    "  --chunk K  stream the input K time steps at a time, carrying (h, c) (unidirectional models)\n"
    "  --out DIR  where to write output.npy, hn.npy, cn.npy; for a whole model one .npy per flattened\n"
    "             output, named as in the archive's I/O contract or output_0.npy, output_1.npy, ...\n"
    "             (default: current directory)\n"
    "  --threads N  intra-op threads (default: torch's choice)\n"
    "  --artifact KIND  with an export folder: run this artifact, not the recommended one: torchscript, aoti,\n"
    "             torchscript-bf16 or aoti-bf16 (LSTMs in bfloat16, float32 in and out)\n";

struct Args {
  std::string model, out = ".";
  std::vector<std::string> inputs;  // one for a deploy_lstm.LSTM, forward's flat inputs for a whole model
  std::optional<std::string> h0, c0, lengths;
  std::optional<std::string> artifact;  // --artifact: which of an export folder's artifacts
  int64_t chunk = 0;
  int threads = 0;
};

Args parse_args(int argc, char** argv) {
  Args args;
  const std::vector<std::string> positional =
      deploy_lstm::parse_command_line(argc, argv, kUsage, [&args](const std::string& a, const auto& value) {
        if (a == "--h0") args.h0 = value();
        else if (a == "--c0") args.c0 = value();
        else if (a == "--lengths") args.lengths = value();
        else if (a == "--chunk") args.chunk = deploy_lstm::parse_int(a, value(), 1);
        else if (a == "--out") args.out = value();
        else if (a == "--threads") args.threads = deploy_lstm::parse_threads(a, value());
        else if (a == "--artifact") args.artifact = value();
        else return false;
        return true;
      });
  if (positional.size() < 2)
    throw UsageError("expected MODEL.pt and INPUT.npy, got " + std::to_string(positional.size()) + " positional arguments");
  args.model = positional[0];
  args.inputs.assign(positional.begin() + 1, positional.end());
  if (args.h0.has_value() != args.c0.has_value()) throw UsageError("--h0 and --c0 must be given together");
  if (args.chunk > 0 && args.lengths) throw UsageError("--chunk cannot be combined with --lengths");
  if (args.artifact && std::find(deploy_lstm::kCppArtifacts.begin(), deploy_lstm::kCppArtifacts.end(), *args.artifact) ==
                           deploy_lstm::kCppArtifacts.end()) {
    throw UsageError("--artifact expects " + deploy_lstm::join(deploy_lstm::kCppArtifacts, " or ") + ", got '" +
                     *args.artifact + "'");
  }
  return args;
}

torch::Tensor read_tensor(const std::string& path) { return deploy_lstm::npy_to_tensor(deploy_lstm::read_npy(path)); }

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

using deploy_lstm::describe;
using deploy_lstm::tensor_to_npy;

// A scripted deploy_lstm.LSTM: configuration from its constants, --h0/--c0/--lengths, --chunk.
int run_lstm(const Args& args, deploy_lstm::LstmRunner& runner, double load_ms) {
  if (args.inputs.size() != 1) {
    throw UsageError("'" + args.model + "' is a deploy_lstm.LSTM: it takes one INPUT.npy (the state and lengths "
                     "through --h0/--c0/--lengths), got " + std::to_string(args.inputs.size()) + " input files");
  }
  const auto& cfg = runner.config();

  const torch::Tensor input = read_tensor(args.inputs[0]);
  std::optional<deploy_lstm::LstmState> state;
  if (args.h0) state = deploy_lstm::LstmState{read_tensor(*args.h0), read_tensor(*args.c0)};
  std::optional<torch::Tensor> lengths;
  if (args.lengths) lengths = read_tensor(*args.lengths);

  runner.validate(input, state, lengths);  // whole-input messages, also in --chunk mode

  deploy_lstm::LstmOutput out;
  int64_t chunks = 1;
  const auto t0 = std::chrono::steady_clock::now();
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
  deploy_lstm::write_npy((dir / "output.npy").string(), tensor_to_npy(out.output));
  deploy_lstm::write_npy((dir / "hn.npy").string(), tensor_to_npy(out.h_n));
  deploy_lstm::write_npy((dir / "cn.npy").string(), tensor_to_npy(out.c_n));

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

// Writes `outputs` as DIR/<name>.npy, converting every one before writing any (no partial
// results on failure); the paths written.
std::vector<std::string> write_outputs(const std::string& out, const std::vector<std::string>& names,
                                       const std::vector<torch::Tensor>& outputs) {
  std::vector<deploy_lstm::NpyArray> arrays;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    try {
      arrays.push_back(tensor_to_npy(outputs[i]));
    } catch (const deploy_lstm::NpyError& e) {
      throw deploy_lstm::NpyError("output '" + names[i] + "': " + e.what());
    }
  }
  std::filesystem::create_directories(out);
  const std::filesystem::path dir(out);
  std::vector<std::string> written;
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    written.push_back((dir / (names[i] + ".npy")).string());
    deploy_lstm::write_npy(written.back(), arrays[i]);
  }
  return written;
}

// Any other scripted model: forward's flattened inputs in, its flattened outputs out.
int run_model(const Args& args, deploy_lstm::ModelRunner& runner, double load_ms) {
  if (args.h0 || args.lengths || args.chunk > 0) {
    throw UsageError("--h0/--c0, --lengths and --chunk are for a deploy_lstm.LSTM; '" + args.model +
                     "' is a whole model, " + runner.signature() + ": give its inputs as .npy files in order (" +
                     runner.inputs_string() + ")");
  }
  runner.check_count(args.inputs.size());  // before reading: the count is the likelier mistake
  std::vector<torch::Tensor> inputs;
  for (const std::string& path : args.inputs) inputs.push_back(read_tensor(path));

  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<torch::Tensor> outputs = runner.run(inputs);
  const double run_ms = ms_since(t0);

  const std::vector<std::string> names = runner.output_names(outputs.size());
  const std::vector<std::string> written = write_outputs(args.out, names, outputs);

  const std::vector<std::string>& input_names = runner.input_names();
  std::cout << "model:  " << args.model << " (whole model: " << runner.signature() << ")\ninputs: ";
  for (std::size_t i = 0; i < inputs.size(); ++i) std::cout << (i ? "  " : "") << input_names[i] << ": " << describe(inputs[i]);
  std::cout << "\noutput: ";
  for (std::size_t i = 0; i < outputs.size(); ++i) std::cout << (i ? "  " : "") << names[i] << ": " << describe(outputs[i]);
  std::cout << "\ntime:   load " << load_ms << " ms, run " << run_ms << " ms (first run: includes TorchScript warm-up)"
            << "\nwrote:  " << deploy_lstm::join(written) << "\n";
  return 0;
}

// The index of the dimension of `spec` named `axis`; -1 when it has none.
int64_t axis_index(const deploy_lstm::TensorSpec& spec, const std::string& axis) {
  for (std::size_t d = 0; d < spec.shape.size(); ++d)
    if (spec.shape[d].axis == axis) return static_cast<int64_t>(d);
  return -1;
}

// A bare LSTM's package run chunk by chunk, carrying (h, c): the same result as one run.
std::vector<torch::Tensor> run_aoti_chunks(const Args& args, deploy_lstm::AotiRunner& runner,
                                           std::vector<torch::Tensor> flat, int64_t* chunks) {
  if (runner.bidirectional()) {
    throw deploy_lstm::InputError("--chunk streams a unidirectional LSTM; '" + args.model +
                                  "' is bidirectional (its reverse direction needs the whole sequence)");
  }
  const int64_t time_dim = axis_index(runner.io()->inputs[0], "sequence");
  if (time_dim < 0) throw deploy_lstm::InputError("'" + args.model + "' has no 'sequence' axis in its input to chunk");
  runner.validate(flat);  // whole-input messages first
  const torch::Tensor input = flat[0];
  const int64_t T = input.size(time_dim);
  std::vector<torch::Tensor> pieces, outputs;
  for (int64_t start = 0; start < T; start += args.chunk) {
    const int64_t steps = std::min(args.chunk, T - start);
    flat[0] = input.narrow(time_dim, start, steps).contiguous();
    if (flat.size() == 4) flat[3] = torch::full_like(flat[3], steps);  // lengths: every sequence whole (no --lengths)
    outputs = runner.run(flat);  // output, hn, cn
    pieces.push_back(outputs[0]);
    flat[1] = outputs[1];
    flat[2] = outputs[2];
  }
  *chunks = static_cast<int64_t>(pieces.size());
  outputs[0] = torch::cat(pieces, time_dim);
  return outputs;
}

// An AOTInductor package: its flat inputs in contract order, or a bare LSTM's first form.
int run_aoti(const Args& args) {
  const auto t0 = std::chrono::steady_clock::now();
  deploy_lstm::AotiRunner runner(args.model);
  const double load_ms = ms_since(t0);

  const bool lstm_form = runner.is_lstm() && args.inputs.size() == 1;
  if (!lstm_form && (args.h0 || args.lengths || args.chunk > 0)) {
    throw UsageError("--h0/--c0, --lengths and --chunk are for a bare deploy_lstm.LSTM given one INPUT.npy; give '" +
                     args.model + "' its inputs as .npy files in order (" + runner.inputs_string() + ")");
  }
  std::vector<torch::Tensor> inputs;
  if (lstm_form) {
    std::optional<std::pair<torch::Tensor, torch::Tensor>> state;
    if (args.h0) state = std::make_pair(read_tensor(*args.h0), read_tensor(*args.c0));
    std::optional<torch::Tensor> lengths;
    if (args.lengths) lengths = read_tensor(*args.lengths);
    inputs = runner.lstm_inputs(read_tensor(args.inputs[0]), state, lengths);
  } else {
    runner.check_count(args.inputs.size());  // before reading: the count is the likelier mistake
    for (const std::string& path : args.inputs) inputs.push_back(read_tensor(path));
  }

  int64_t chunks = 1;
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<torch::Tensor> outputs =
      args.chunk > 0 ? run_aoti_chunks(args, runner, inputs, &chunks) : runner.run(inputs);
  const double run_ms = ms_since(t1);

  const std::vector<std::string> names = runner.output_names(outputs.size());
  const std::vector<std::string> written = write_outputs(args.out, names, outputs);

  std::cout << "model:  " << args.model << " (AOTInductor package" << (runner.is_lstm() ? ", bare LSTM" : "") << ": "
            << (runner.io() ? runner.inputs_string() : std::to_string(inputs.size()) + " inputs") << ")\ninputs: ";
  for (std::size_t i = 0; i < inputs.size(); ++i)
    std::cout << (i ? "  " : "") << runner.input_name(i) << ": " << describe(inputs[i]);
  if (lstm_form && !args.h0) std::cout << " (h0, c0 zeros)";
  std::cout << "\noutput: ";
  for (std::size_t i = 0; i < outputs.size(); ++i) std::cout << (i ? "  " : "") << names[i] << ": " << describe(outputs[i]);
  std::cout << "\ntime:   load " << load_ms << " ms, run " << run_ms << " ms";
  if (args.chunk > 0) std::cout << " in " << chunks << " chunks of up to " << args.chunk << " steps";
  std::cout << "\nwrote:  " << deploy_lstm::join(written) << "\n";
  return 0;
}

int run_torchscript(const Args& args) {
  const auto t0 = std::chrono::steady_clock::now();
  deploy_lstm::LoadedModule loaded = deploy_lstm::load_torchscript(args.model);
  if (deploy_lstm::LstmRunner::is_lstm(loaded.module)) {
    deploy_lstm::LstmRunner runner(std::move(loaded.module), args.model);
    return run_lstm(args, runner, ms_since(t0));
  }
  deploy_lstm::ModelRunner runner(std::move(loaded), args.model);
  return run_model(args, runner, ms_since(t0));
}

int run(const Args& given) {
  if (given.threads > 0) at::set_num_threads(given.threads);

  Args args = given;
  std::string kind = deploy_lstm::is_aoti_package(args.model) ? "aoti" : "torchscript";
  std::error_code ec;
  if (std::filesystem::is_directory(args.model, ec)) {
    if (!deploy_lstm::ExportFolder::looks_like_folder(args.model)) {
      throw deploy_lstm::ModelLoadError("model path is a directory, expected a TorchScript file, an AOTInductor package "
                                        "(.pt2) or an export folder, but '" + args.model + "' has no " +
                                        deploy_lstm::kManifestFile + " (write one with deploy-lstm export)");
    }
    // An export folder: the recommended artifact (or the one asked for), checked against the manifest.
    const deploy_lstm::ExportFolder folder = deploy_lstm::ExportFolder::open(args.model);
    const deploy_lstm::ArtifactChoice choice = deploy_lstm::choose_cpp_artifact(folder, args.artifact);
    std::cerr << "deploy_lstm_run: running " << choice.kind << " artifact " << choice.file << ": " << choice.reason
              << "\n";
    args.model = choice.file;
    kind = choice.kind;
  } else if (args.artifact) {
    throw UsageError("--artifact chooses among an export folder's artifacts; '" + args.model +
                     "' is not a folder (give the folder, or drop --artifact)");
  }
  return deploy_lstm::is_aoti_kind(kind) ? run_aoti(args) : run_torchscript(args);
}

}  // namespace

int main(int argc, char** argv) { return deploy_lstm::run_tool(argc, argv, kUsage, parse_args, run); }
