// seq2seq_greedy: greedy decoding over an encoder graph and a one-step decoder graph (TorchScript).
//
// The graphs export/export_seq2seq.py writes:
//   encoder.ts  forward(src: int64 (S, N)) -> (h, c), each (N, H)
//   decoder.ts  forward(token: int64 (N,), h, c) -> (logits (N, V), h, c)
// The loop is the script's `greedy`: every sequence starts from BOS, each step feeds
// back the argmax of the logits, for exactly max_len steps (no early stop at EOS).
//
// Exit status: 0 on success, 2 on bad command-line arguments, 1 on any other
// error, with one "error: ..." line on stderr.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include "deploy_lstm/cli.h"
#include "deploy_lstm/model_runner.h"
#include "deploy_lstm/npy.h"
#include "deploy_lstm/tensor_npy.h"

namespace {

using deploy_lstm::parse_int;
using deploy_lstm::UsageError;

constexpr const char* kUsage =
    "usage: seq2seq_greedy ENCODER.ts DECODER.ts SRC.npy --max-len K [--out TOKENS.npy] [--bos ID] [--threads N]\n"
    "  ENCODER.ts   forward(src) -> (h, c): src int64 (S, N); h, c (N, H)\n"
    "  DECODER.ts   forward(token, h, c) -> (logits, h, c): token int64 (N,); logits (N, V)\n"
    "  SRC.npy      int64 (S, N) source token ids\n"
    "  --max-len K  tokens to decode per sequence\n"
    "  --out FILE   int64 (N, K) greedy tokens (default: tokens.npy)\n"
    "  --bos ID     the first decoder input (default: 1, export/export_seq2seq.py's BOS)\n"
    "  --threads N  intra-op threads (default: torch's choice)\n";

struct Args {
  std::string encoder, decoder, src, out = "tokens.npy";
  int64_t max_len = 0;
  int64_t bos = 1;
  int threads = 0;
};

Args parse_args(int argc, char** argv) {
  Args args;
  const std::vector<std::string> positional =
      deploy_lstm::parse_command_line(argc, argv, kUsage, [&args](const std::string& a, const auto& value) {
        if (a == "--max-len") args.max_len = parse_int(a, value(), 1);
        else if (a == "--out") args.out = value();
        else if (a == "--bos") args.bos = parse_int(a, value(), 0);
        else if (a == "--threads") args.threads = deploy_lstm::parse_threads(a, value());
        else return false;
        return true;
      });
  if (positional.size() != 3) {
    throw UsageError("expected ENCODER.ts, DECODER.ts and SRC.npy, got " + std::to_string(positional.size()) +
                     " positional arguments");
  }
  if (args.max_len == 0) throw UsageError("--max-len K is required");
  args.encoder = positional[0];
  args.decoder = positional[1];
  args.src = positional[2];
  return args;
}

// Throws ModelLoadError unless `runner` takes `inputs` tensors and returns `outputs`.
void expect_graph(const deploy_lstm::ModelRunner& runner, const char* role, std::size_t inputs, std::size_t outputs,
                  const char* expected) {
  const auto& counts = runner.input_counts();
  const bool takes = std::find(counts.begin(), counts.end(), inputs) != counts.end();
  const bool returns = !runner.output_count() || *runner.output_count() == outputs;
  if (!takes || !returns) {
    throw deploy_lstm::ModelLoadError("'" + runner.path() + "' is not " + role + " graph: expected " + expected +
                                      ", got " + runner.signature() +
                                      " (export both with export/export_seq2seq.py; is the order ENCODER DECODER?)");
  }
}

void expect_outputs(const std::vector<torch::Tensor>& got, std::size_t n, const deploy_lstm::ModelRunner& runner) {
  if (got.size() != n) {
    throw deploy_lstm::RunError("'" + runner.path() + "' returned " + std::to_string(got.size()) + " tensors, expected " +
                                std::to_string(n));
  }
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

int run(const Args& args) {
  if (args.threads > 0) at::set_num_threads(args.threads);

  deploy_lstm::ModelRunner encoder(args.encoder);
  deploy_lstm::ModelRunner decoder(args.decoder);
  expect_graph(encoder, "an encoder", 1, 2, "forward(src) -> (h, c)");
  expect_graph(decoder, "a one-step decoder", 3, 3, "forward(token, h, c) -> (logits, h, c)");

  const torch::Tensor src = deploy_lstm::npy_to_tensor(deploy_lstm::read_npy(args.src));
  if (src.scalar_type() != torch::kInt64 || src.dim() != 2 || src.size(0) < 1 || src.size(1) < 1) {
    throw deploy_lstm::InputError("expected src of shape (S, N) with S, N >= 1, int64 token ids, got " +
                                  deploy_lstm::describe(src));
  }
  const int64_t N = src.size(1);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> state = encoder.run({src});
  expect_outputs(state, 2, encoder);
  const double encode_ms = ms_since(t0);

  t0 = std::chrono::steady_clock::now();
  torch::Tensor token = torch::full({N}, args.bos, torch::kInt64);  // (N,)
  std::vector<torch::Tensor> tokens;
  for (int64_t step = 0; step < args.max_len; ++step) {
    std::vector<torch::Tensor> out = decoder.run({token, state[0], state[1]});
    expect_outputs(out, 3, decoder);
    const torch::Tensor& logits = out[0];  // (N, V)
    if (logits.dim() != 2 || logits.size(0) != N || !logits.is_floating_point()) {
      throw deploy_lstm::RunError("'" + decoder.path() + "' returned logits " + deploy_lstm::describe(logits) +
                                  ", expected floating-point (N, V) with N=" + std::to_string(N));
    }
    token = logits.argmax(-1);  // (N,) int64
    tokens.push_back(token);
    state = {out[1], out[2]};
  }
  const torch::Tensor result = torch::stack(tokens, 1);  // (N, max_len)
  const double decode_ms = ms_since(t0);

  const std::filesystem::path out(args.out);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  deploy_lstm::write_npy(args.out, deploy_lstm::tensor_to_npy(result));

  std::cout << "encoder: " << args.encoder << " (" << encoder.signature() << ")\n"
            << "decoder: " << args.decoder << " (" << decoder.signature() << ")\n"
            << "src:     " << deploy_lstm::describe(src) << "\n"
            << "tokens:  " << deploy_lstm::describe(result) << "\n"
            << "time:    encode " << encode_ms << " ms, decode " << decode_ms << " ms (" << args.max_len
            << " steps; first runs include TorchScript warm-up)\n"
            << "wrote:   " << args.out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return deploy_lstm::run_tool(argc, argv, kUsage, parse_args, run); }
