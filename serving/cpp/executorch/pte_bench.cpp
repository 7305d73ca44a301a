// pte_bench: time one chunk of an LSTM's ExecuTorch program (model.pte), state carried from call to
// call as a stream would, without libtorch.  JSON on stdout.
//
//   pte_bench MODEL.pte|EXPORT_DIR [--iters N] [--warmup N] [--batch-first]
//
// Exit status: 0 done; 2 bad arguments or model (one line on stderr); 1 the runtime failed.
#include <algorithm>
#include <chrono>
#include <exception>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "deploy_lstm/errors.h"
#include "pte_lstm.h"

using namespace deploy_lstm;

namespace {

constexpr const char* kUsage = "usage: pte_bench MODEL.pte|EXPORT_DIR [--iters N] [--warmup N] [--batch-first]";

int64_t count(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= 1) return v;
  } catch (const std::exception&) {
  }
  throw InputError(flag + " expects an integer >= 1, got \"" + text + "\"");
}

int bench(int argc, char** argv) {
  std::string model;
  int64_t iters = 2000, warmup = 200;
  bool batch_first = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--iters" || arg == "--warmup") && i + 1 < argc) (arg == "--iters" ? iters : warmup) = count(arg, argv[++i]);
    else if (arg == "--batch-first") batch_first = true;
    else if (arg.rfind("--", 0) == 0 || !model.empty()) throw InputError("unexpected argument " + arg + "; " + kUsage);
    else model = arg;
  }
  if (model.empty()) throw InputError(std::string("expected MODEL; ") + kUsage);
  PteLstm lstm(resolve_pte(model, batch_first));
  const PteShape& s = lstm.shape();
  std::mt19937 gen(0);
  std::normal_distribution<float> normal;
  std::vector<float> x(s.chunk * s.batch * s.input_size), y(s.chunk * s.batch * s.output_size);
  std::vector<float> h(s.layers * s.batch * s.proj, 0.f), c(s.layers * s.batch * s.hidden, 0.f);
  for (float& v : x) v = normal(gen);
  std::vector<double> us;
  us.reserve(iters);
  for (int64_t i = 0; i < warmup + iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    lstm.call(s.chunk, x.data(), h.data(), c.data(), y.data());
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[static_cast<size_t>(q * (us.size() - 1))]; };
  std::cout << "{\"chunk\": " << s.chunk << ", \"batch\": " << s.batch << ", \"iters\": " << iters
            << ", \"median_us\": " << at(0.5) << ", \"p10_us\": " << at(0.1) << ", \"p90_us\": " << at(0.9)
            << ", \"mean_us\": " << std::accumulate(us.begin(), us.end(), 0.0) / us.size() << "}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return bench(argc, argv);
  } catch (const RunError& e) {
    std::cerr << "pte_bench: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "pte_bench: error: " << e.what() << "\n";
    return 2;
  }
}
