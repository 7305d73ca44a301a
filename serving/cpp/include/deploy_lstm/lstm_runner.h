// Run a TorchScript deploy_lstm.LSTM (saved with torch.jit.save) from C++.
//
// The model's configuration is read from the scripted module itself: the
// `__constants__` of deploy_lstm.LSTM (input_size, hidden_size, num_layers,
// bias, batch_first, bidirectional, proj_size) are visible through
// torch::jit::Module::attr, and the dtype is that of `weight_ih_l0`.  No sidecar
// file is needed.  Every input is checked against that configuration before the
// model runs, so a bad input gives an InputError naming expected and got.
#pragma once

#include <torch/script.h>

#include <optional>
#include <string>
#include <utility>

#include "deploy_lstm/errors.h"  // ModelLoadError, InputError

namespace deploy_lstm {

struct LstmConfig {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  bool bidirectional = false;
  int64_t proj_size = 0;
  c10::ScalarType dtype = c10::ScalarType::Float;  // of the weights

  int64_t num_directions() const { return bidirectional ? 2 : 1; }
  // Features of h (and of each direction of the output): proj_size or hidden_size.
  int64_t real_hidden() const { return proj_size > 0 ? proj_size : hidden_size; }
  // "input_size=8 hidden_size=16 ..." for logs.
  std::string to_string() const;
};

using LstmState = std::pair<torch::Tensor, torch::Tensor>;  // (h, c)

struct LstmOutput {
  torch::Tensor output;  // (T, N, D*P), (N, T, D*P) if batch_first, (T, D*P) unbatched
  torch::Tensor h_n;     // (L*D, N, P), (L*D, P) unbatched
  torch::Tensor c_n;     // (L*D, N, H), (L*D, H) unbatched
};

class LstmStream;

class LstmRunner {
 public:
  // Loads a TorchScript archive on the CPU, in eval mode.  Throws ModelLoadError.
  explicit LstmRunner(const std::string& path);
  // Wraps a module already loaded (e.g. by load_torchscript); `path` names it in
  // messages.  Throws ModelLoadError when it is not a deploy_lstm.LSTM.
  LstmRunner(torch::jit::Module module, const std::string& path);

  // Whether `module` is a scripted deploy_lstm.LSTM: it has every configuration
  // constant and weight_ih_l0; or a bf16 artifact of one (model.bf16.ts: a boundary whose
  // "lstm" submodule is such an LSTM with bfloat16 weights, fed and returning float32).
  // Anything else is a whole model (ModelRunner).
  static bool is_lstm(const torch::jit::Module& module);

  const LstmConfig& config() const { return config_; }
  const std::string& path() const { return path_; }

  // One whole batch, like nn.LSTM.forward(input, (h0, c0)) plus optional lengths.
  //   input:   (T, N, input_size), (N, T, input_size) if batch_first, or (T, input_size)
  //   state:   (h0, c0), shapes as in LstmOutput::h_n / c_n; zeros when omitted
  //   lengths: int64 (N,), each in 1..T, for a right-padded batch (batched input only)
  // Throws InputError when anything does not fit the model.
  LstmOutput run(const torch::Tensor& input, const std::optional<LstmState>& state = std::nullopt,
                 const std::optional<torch::Tensor>& lengths = std::nullopt);

  // The checks run() does, without running: throws InputError naming expected and got.
  void validate(const torch::Tensor& input, const std::optional<LstmState>& state = std::nullopt,
                const std::optional<torch::Tensor>& lengths = std::nullopt) const;

  // A stream over this model that carries (h, c) from one chunk to the next.
  // Unidirectional models only (the reverse direction needs the whole sequence).
  LstmStream stream(const std::optional<LstmState>& initial_state = std::nullopt);

 private:
  friend class LstmStream;
  int64_t batch_size(const torch::Tensor& input) const;  // 0 for unbatched input
  void check_input(const torch::Tensor& input) const;
  void check_state(const LstmState& state, const torch::Tensor& input) const;
  void check_lengths(const torch::Tensor& lengths, const torch::Tensor& input) const;

  std::string path_;
  torch::jit::Module module_;
  LstmConfig config_;
};

// Runs a long sequence chunk by chunk: concatenating the outputs of push() along
// the time axis equals one LstmRunner::run over the whole sequence.  Not
// thread-safe; use one stream per sequence.  The runner must outlive the stream.
//
// The fast path: when the archive has deploy_lstm.LSTM's `step_` method (archives
// written since it exists), the stream packs the weights once (`prepare_step`),
// keeps (h, c) in tensors allocated when the batch size is first known, builds the
// method's argument vector once, and runs one `step_` per time step under
// c10::InferenceMode, which advances (h, c) in place.  Older archives: one
// `forward` per chunk, as before.
class LstmStream {
 public:
  // Runs `chunk` (same layout as LstmRunner::run input) from the carried state
  // and keeps the final state for the next call.  The batch size (or
  // batchedness) must stay the same until reset().  Returns new tensors.
  // Throws InputError.
  LstmOutput push(const torch::Tensor& chunk);

  // One time step, the fast path: `x` is (N, input_size), or (input_size,) for an
  // unbatched stream.  Returns the output (N, P) or (P,): a view of the carried
  // state, overwritten by the next call (clone it to keep it).  Only cheap
  // shape/dtype checks.  Throws InputError.
  torch::Tensor step(const torch::Tensor& x);

  // Forgets the carried state: the next push() starts from `initial_state`
  // (zeros when omitted) and may use a new batch size.
  void reset(const std::optional<LstmState>& initial_state = std::nullopt);

  // The carried (h, c), if any chunk has been pushed or an initial state given:
  // (L, N, P) and (L, N, H), or (L, P) and (L, H) for an unbatched stream.
  const std::optional<LstmState>& state() const { return state_; }
  int64_t steps() const { return steps_; }  // time steps pushed since reset
  // Whether the archive's step_ method runs the steps (false: forward per chunk).
  bool uses_step() const { return step_fn_ != nullptr; }

 private:
  friend class LstmRunner;
  LstmStream(LstmRunner* runner, std::optional<LstmState> initial_state);
  // Allocates the carried state for batch size `n` (0: unbatched) if it has none.
  void ensure_state(int64_t n);
  void check_batch(int64_t n) const;
  // Runs one step_ on (N, I) `x`; returns the (N, P) view of h[-1].
  torch::Tensor run_step(const torch::Tensor& x);

  LstmRunner* runner_;
  std::optional<LstmState> state_;  // as the user sees it (views of h_/c_ on the fast path)
  int64_t steps_ = 0;
  torch::jit::Function* step_fn_ = nullptr;  // the archive's step_, or null (forward per chunk)
  c10::IValue self_;                 // the module object, step_'s first argument
  torch::Tensor h_, c_;              // (L, N, P), (L, N, H): the carried state, updated in place
  int64_t batch_ = -1;               // N of the carried state; 0 = unbatched; -1 = none yet
  std::vector<c10::IValue> stack_;   // (self, x, h_, c_) -> step_'s output; capacity kept across calls
};

}  // namespace deploy_lstm
