// stream_bench: time LstmStream one time step at a time and print JSON.
//
// For each round: an idle pause (so torch's worker threads go quiet), then a block of
// individually timed calls of LstmStream::step (one time step, state carried in
// place) and a block of LstmStream::push on one-step chunks (new output tensors per
// call).  Prints one JSON object on stdout: per-call median/p10/p90 in microseconds
// over every call of every round.
//
// With --input X.npy --out DIR it instead streams X (T, N, input_size) through
// step() one time step at a time and writes output.npy, hn.npy and cn.npy (tests
// compare them with Python).
//
// Exit status: 0 on success, 2 on bad command-line arguments, 1 on any other error.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>

#include "deploy_lstm/cli.h"
#include "deploy_lstm/lstm_runner.h"
#include "deploy_lstm/npy.h"
#include "deploy_lstm/tensor_npy.h"

namespace {

using deploy_lstm::UsageError;

constexpr const char* kUsage =
    "usage: stream_bench MODEL.pt [--batch N] [--rounds R] [--block K] [--warmup W] [--pause-ms P] [--threads T]\n"
    "       stream_bench MODEL.pt --input X.npy --out DIR [--threads T]\n"
    "  MODEL.pt     a scripted deploy_lstm.LSTM (torch.jit.save), unidirectional\n"
    "  --batch N    sequences per step (default 1)\n"
    "  --rounds R   timed rounds (default 7); each: an idle pause, then K timed step() calls and K push() calls\n"
    "  --block K    calls per block (default 200)\n"
    "  --warmup W   untimed calls first (default 50)\n"
    "  --pause-ms P idle time before each block (default 50)\n"
    "  --threads T  intra-op threads (default: torch's choice)\n"
    "  --input X.npy --out DIR  stream X (T, N, input_size) through step(), write output.npy, hn.npy, cn.npy\n";

struct Args {
  std::string model;
  int64_t batch = 1, rounds = 7, block = 200, warmup = 50, pause_ms = 50;
  int threads = 0;
  std::optional<std::string> input, out;
};

Args parse_args(int argc, char** argv) {
  Args args;
  const std::vector<std::string> positional =
      deploy_lstm::parse_command_line(argc, argv, kUsage, [&args](const std::string& a, const auto& value) {
        if (a == "--batch") args.batch = deploy_lstm::parse_int(a, value(), 1);
        else if (a == "--rounds") args.rounds = deploy_lstm::parse_int(a, value(), 1);
        else if (a == "--block") args.block = deploy_lstm::parse_int(a, value(), 1);
        else if (a == "--warmup") args.warmup = deploy_lstm::parse_int(a, value(), 0);
        else if (a == "--pause-ms") args.pause_ms = deploy_lstm::parse_int(a, value(), 0);
        else if (a == "--threads") args.threads = deploy_lstm::parse_threads(a, value());
        else if (a == "--input") args.input = value();
        else if (a == "--out") args.out = value();
        else return false;
        return true;
      });
  if (positional.size() != 1) throw UsageError("expected MODEL.pt, got " + std::to_string(positional.size()) + " positional arguments");
  if (args.input.has_value() != args.out.has_value()) throw UsageError("--input and --out must be given together");
  args.model = positional[0];
  return args;
}

// {"median_us": .., "p10_us": .., "p90_us": .., "calls": ..}
std::string stats_json(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&us](double q) {
    const double pos = q * static_cast<double>(us.size() - 1);
    const auto lo = static_cast<std::size_t>(pos);
    const std::size_t hi = std::min(lo + 1, us.size() - 1);
    return us[lo] + (us[hi] - us[lo]) * (pos - static_cast<double>(lo));
  };
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"median_us\": %.3f, \"p10_us\": %.3f, \"p90_us\": %.3f, \"calls\": %zu}", at(0.5), at(0.1),
                at(0.9), us.size());
  return buf;
}

template <class F>
void timed_block(F&& call, int64_t calls, std::vector<double>& us) {
  for (int64_t i = 0; i < calls; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
}

// --input/--out: the whole input through step(), one time step at a time.
int stream_file(const Args& args, deploy_lstm::LstmRunner& runner) {
  const torch::Tensor input = deploy_lstm::npy_to_tensor(deploy_lstm::read_npy(*args.input));
  runner.validate(input);
  const bool batch_first = runner.config().batch_first && input.dim() == 3;
  const int64_t time_dim = batch_first ? 1 : 0;
  deploy_lstm::LstmStream stream = runner.stream();
  std::vector<torch::Tensor> outputs;
  for (int64_t t = 0; t < input.size(time_dim); ++t) outputs.push_back(stream.step(input.select(time_dim, t)).clone());
  const std::filesystem::path dir(*args.out);
  std::filesystem::create_directories(dir);
  deploy_lstm::write_npy((dir / "output.npy").string(), deploy_lstm::tensor_to_npy(torch::stack(outputs, time_dim)));
  deploy_lstm::write_npy((dir / "hn.npy").string(), deploy_lstm::tensor_to_npy(stream.state()->first.contiguous()));
  deploy_lstm::write_npy((dir / "cn.npy").string(), deploy_lstm::tensor_to_npy(stream.state()->second.contiguous()));
  std::cout << "{\"uses_step\": " << (stream.uses_step() ? "true" : "false") << ", \"steps\": " << stream.steps() << "}\n";
  return 0;
}

int run(const Args& args) {
  if (args.threads > 0) at::set_num_threads(args.threads);
  deploy_lstm::LstmRunner runner(args.model);
  if (args.input) return stream_file(args, runner);

  const auto& cfg = runner.config();
  const torch::Tensor x = torch::randn({args.batch, cfg.input_size}, torch::TensorOptions().dtype(cfg.dtype));
  const torch::Tensor chunk = cfg.batch_first ? x.unsqueeze(1) : x.unsqueeze(0);  // one-step chunk
  deploy_lstm::LstmStream stream = runner.stream();
  auto step = [&] { stream.step(x); };
  auto push = [&] { stream.push(chunk); };
  for (int64_t i = 0; i < args.warmup; ++i) step();
  for (int64_t i = 0; i < args.warmup; ++i) push();
  std::vector<double> step_us, push_us;
  const auto pause = std::chrono::milliseconds(args.pause_ms);
  for (int64_t r = 0; r < args.rounds; ++r) {
    std::this_thread::sleep_for(pause);
    timed_block(step, args.block, step_us);
    std::this_thread::sleep_for(pause);
    timed_block(push, args.block, push_us);
  }
  std::cout << "{\"uses_step\": " << (stream.uses_step() ? "true" : "false")
            << ", \"batch\": " << args.batch << ", \"threads\": " << at::get_num_threads() << ", \"rounds\": " << args.rounds
            << ", \"block\": " << args.block << ", \"pause_ms\": " << args.pause_ms << ", \"step\": " << stats_json(step_us)
            << ", \"push\": " << stats_json(push_us) << "}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return deploy_lstm::run_tool(argc, argv, kUsage, parse_args, run); }
