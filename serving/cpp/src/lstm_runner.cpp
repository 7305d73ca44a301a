#include "deploy_lstm/lstm_runner.h"

#include "deploy_lstm/npy.h"
#include "deploy_lstm/tensor_npy.h"
#include "deploy_lstm/torchscript.h"

#include <sstream>

namespace deploy_lstm {
namespace {

// One formatter for shapes, shared with the .npy code: "(2, 3)", "(5,)".
std::string shape_str(c10::IntArrayRef sizes) { return shape_string(sizes.vec()); }

constexpr const char* kConstants[] = {"input_size", "hidden_size", "num_layers", "bias",
                                      "batch_first", "bidirectional", "proj_size"};

c10::IValue constant(const torch::jit::Module& m, const std::string& name, const std::string& path) {
  if (!m.hasattr(name)) {
    throw ModelLoadError("'" + path + "' is TorchScript but not a deploy_lstm.LSTM: it has no '" + name +
                         "' constant (script and save a deploy_lstm.LSTM, e.g. with "
                         "export/export_torchscript.py)");
  }
  return m.attr(name);
}

int64_t int_constant(const torch::jit::Module& m, const std::string& name, const std::string& path) {
  const c10::IValue v = constant(m, name, path);
  if (!v.isInt()) throw ModelLoadError("'" + path + "': constant '" + name + "' is not an int");
  return v.toInt();
}

bool bool_constant(const torch::jit::Module& m, const std::string& name, const std::string& path) {
  const c10::IValue v = constant(m, name, path);
  if (!v.isBool()) throw ModelLoadError("'" + path + "': constant '" + name + "' is not a bool");
  return v.toBool();
}

// Where the configuration constants are: the module itself (a scripted deploy_lstm.LSTM), or
// the "lstm" submodule of a bf16 artifact's boundary (deploy_lstm.exporters.bf16.Bf16Boundary:
// a bfloat16 LSTM called with float32 in and out, the same forward as the LSTM's).
torch::jit::Module config_module(const torch::jit::Module& m) {
  if (!m.hasattr("input_size") && m.hasattr("lstm") && m.attr("lstm").isModule()) return m.attr("lstm").toModule();
  return m;
}

bool has_constants(const torch::jit::Module& m) {
  for (const char* name : kConstants)
    if (!m.hasattr(name)) return false;
  return m.hasattr("weight_ih_l0");
}

}  // namespace

std::string LstmConfig::to_string() const {
  std::ostringstream out;
  out << std::boolalpha << "input_size=" << input_size << " hidden_size=" << hidden_size
      << " num_layers=" << num_layers << " bidirectional=" << bidirectional << " proj_size=" << proj_size
      << " batch_first=" << batch_first << " bias=" << bias << " dtype=" << dtype_name(dtype);
  return out.str();
}

LstmRunner::LstmRunner(const std::string& path) : LstmRunner(load_torchscript(path).module, path) {}

bool LstmRunner::is_lstm(const torch::jit::Module& module) {
  if (has_constants(module)) return true;
  const torch::jit::Module inner = config_module(module);
  // a bf16 boundary: bfloat16 weights inside, float32 at the boundary
  return has_constants(inner) && inner.attr("weight_ih_l0").isTensor() &&
         inner.attr("weight_ih_l0").toTensor().scalar_type() == c10::ScalarType::BFloat16;
}

LstmRunner::LstmRunner(torch::jit::Module module, const std::string& path) : path_(path), module_(std::move(module)) {
  module_.eval();
  const torch::jit::Module cm = config_module(module_);
  config_.input_size = int_constant(cm, "input_size", path);
  config_.hidden_size = int_constant(cm, "hidden_size", path);
  config_.num_layers = int_constant(cm, "num_layers", path);
  config_.bias = bool_constant(cm, "bias", path);
  config_.batch_first = bool_constant(cm, "batch_first", path);
  config_.bidirectional = bool_constant(cm, "bidirectional", path);
  config_.proj_size = int_constant(cm, "proj_size", path);
  const c10::IValue w = constant(cm, "weight_ih_l0", path);
  if (!w.isTensor()) throw ModelLoadError("'" + path + "': weight_ih_l0 is not a tensor");
  config_.dtype = w.toTensor().scalar_type();
  // A bf16 artifact (model.bf16.ts): bfloat16 weights behind a float32 boundary; it is fed float32.
  if (!has_constants(module_) && config_.dtype == c10::ScalarType::BFloat16)
    config_.dtype = c10::ScalarType::Float;
  if (config_.dtype != c10::ScalarType::Float && config_.dtype != c10::ScalarType::Double) {
    throw ModelLoadError("'" + path + "' has " + dtype_name(config_.dtype) +
                         " weights; only float32 and float64 models are supported");
  }
}

int64_t LstmRunner::batch_size(const torch::Tensor& input) const {
  if (input.dim() == 2) return 0;
  return config_.batch_first ? input.size(0) : input.size(1);
}

void LstmRunner::check_input(const torch::Tensor& input) const {
  const int64_t I = config_.input_size;
  const std::string layout = config_.batch_first ? "(N, T, " + std::to_string(I) + ")"
                                                 : "(T, N, " + std::to_string(I) + ")";
  const std::string expected = "expected input of shape " + layout + " or unbatched (T, " +
                               std::to_string(I) + ")";
  if (!input.defined()) throw InputError(expected + ", got an undefined tensor");
  if (input.dim() != 2 && input.dim() != 3) {
    throw InputError(expected + ", got rank " + std::to_string(input.dim()) + " input of shape " +
                     shape_str(input.sizes()));
  }
  if (input.scalar_type() != config_.dtype) {
    throw InputError("expected input of dtype " + dtype_name(config_.dtype) + " (the model's), got " +
                     dtype_name(input.scalar_type()) + "; convert the input (e.g. arr.astype(np." +
                     dtype_name(config_.dtype) + ")) or export a " + dtype_name(input.scalar_type()) +
                     " model");
  }
  if (input.size(-1) != I) {
    throw InputError(expected + ", got " + shape_str(input.sizes()) + ": the last dimension must be input_size=" +
                     std::to_string(I));
  }
  const int64_t T = input.dim() == 2 ? input.size(0) : (config_.batch_first ? input.size(1) : input.size(0));
  if (T == 0) throw InputError(expected + ", got " + shape_str(input.sizes()) + ": T must be at least 1");
  if (input.dim() == 3 && batch_size(input) == 0)
    throw InputError(expected + ", got " + shape_str(input.sizes()) + ": N must be at least 1");
}

void LstmRunner::check_state(const LstmState& state, const torch::Tensor& input) const {
  const int64_t LD = config_.num_layers * config_.num_directions();
  std::vector<int64_t> want_h{LD, config_.real_hidden()};
  std::vector<int64_t> want_c{LD, config_.hidden_size};
  if (input.dim() == 3) {
    want_h.insert(want_h.begin() + 1, batch_size(input));
    want_c.insert(want_c.begin() + 1, batch_size(input));
  }
  const char* names[2] = {"h0", "c0"};
  const torch::Tensor* tensors[2] = {&state.first, &state.second};
  const std::vector<int64_t>* wants[2] = {&want_h, &want_c};
  for (int k = 0; k < 2; ++k) {
    const torch::Tensor& t = *tensors[k];
    if (!t.defined()) throw InputError(std::string(names[k]) + " is undefined");
    if (t.sizes() != c10::IntArrayRef(*wants[k])) {
      throw InputError("expected " + std::string(names[k]) + " of shape " + shape_str(*wants[k]) +
                       " (num_layers * num_directions, N, " + (k == 0 ? "proj_size or hidden_size" : "hidden_size") +
                       ") for input of shape " + shape_str(input.sizes()) + ", got " + shape_str(t.sizes()));
    }
    if (t.scalar_type() != config_.dtype) {
      throw InputError("expected " + std::string(names[k]) + " of dtype " + dtype_name(config_.dtype) +
                       " (the model's), got " + dtype_name(t.scalar_type()));
    }
  }
}

void LstmRunner::check_lengths(const torch::Tensor& lengths, const torch::Tensor& input) const {
  if (input.dim() != 3) throw InputError("lengths need batched (rank 3) input, got rank " + std::to_string(input.dim()));
  const int64_t N = batch_size(input);
  const int64_t T = config_.batch_first ? input.size(1) : input.size(0);
  if (lengths.scalar_type() != c10::ScalarType::Long)
    throw InputError("expected lengths of dtype int64, got " + dtype_name(lengths.scalar_type()));
  if (lengths.dim() != 1 || lengths.size(0) != N) {
    throw InputError("expected lengths of shape (" + std::to_string(N) + ",), one per sequence, got " +
                     shape_str(lengths.sizes()));
  }
  const int64_t lo = lengths.min().item<int64_t>();
  const int64_t hi = lengths.max().item<int64_t>();
  if (lo < 1 || hi > T) {
    throw InputError("expected lengths in 1..T=" + std::to_string(T) + ", got values from " + std::to_string(lo) +
                     " to " + std::to_string(hi));
  }
}

void LstmRunner::validate(const torch::Tensor& input, const std::optional<LstmState>& state,
                          const std::optional<torch::Tensor>& lengths) const {
  check_input(input);
  if (state) check_state(*state, input);
  if (lengths) check_lengths(*lengths, input);
}

LstmOutput LstmRunner::run(const torch::Tensor& input, const std::optional<LstmState>& state,
                           const std::optional<torch::Tensor>& lengths) {
  validate(input, state, lengths);

  c10::InferenceMode guard;
  std::vector<c10::IValue> args;
  args.emplace_back(input);
  args.emplace_back(state ? c10::IValue(c10::ivalue::Tuple::create(state->first, state->second)) : c10::IValue());
  args.emplace_back(lengths ? c10::IValue(*lengths) : c10::IValue());
  const c10::IValue result = module_.forward(std::move(args));

  // (output, (h_n, c_n))
  const auto& outer = result.toTupleRef().elements();
  const auto& hc = outer.at(1).toTupleRef().elements();
  return LstmOutput{outer.at(0).toTensor(), hc.at(0).toTensor(), hc.at(1).toTensor()};
}

LstmStream LstmRunner::stream(const std::optional<LstmState>& initial_state) {
  if (config_.bidirectional) {
    throw InputError("streaming in chunks needs a unidirectional model (the reverse direction reads the "
                     "whole sequence); this model has bidirectional=true, run it on the whole sequence");
  }
  return LstmStream(this, initial_state);
}

LstmStream::LstmStream(LstmRunner* runner, std::optional<LstmState> initial_state) : runner_(runner) {
  if (auto method = runner_->module_.find_method("step_")) {
    step_fn_ = &method->function();
    self_ = runner_->module_._ivalue();
    stack_.reserve(4);
    // Pack the weights now, from the weights the module holds now (a scripted module
    // packs once and keeps it; see deploy_lstm.LSTM.prepare_step).
    if (auto prepare = runner_->module_.find_method("prepare_step")) {
      c10::InferenceMode guard;
      (*prepare)(std::vector<c10::IValue>{});
    }
  }
  reset(initial_state);
}

void LstmStream::check_batch(int64_t n) const {
  if (batch_ >= 0 && n != batch_) {
    auto describe = [](int64_t b) { return b == 0 ? std::string("unbatched") : "batch size " + std::to_string(b); };
    throw InputError("stream chunk is " + describe(n) + " but the stream carries state for " + describe(batch_) +
                     "; call reset() to start a new stream");
  }
}

void LstmStream::ensure_state(int64_t n) {
  if (batch_ >= 0) return;
  const LstmConfig& cfg = runner_->config_;
  const int64_t L = cfg.num_layers, N = n == 0 ? 1 : n;
  const auto options = torch::TensorOptions().dtype(cfg.dtype);
  h_ = torch::zeros({L, N, cfg.real_hidden()}, options);
  c_ = torch::zeros({L, N, cfg.hidden_size}, options);
  batch_ = n;
  state_ = n == 0 ? LstmState{h_.select(1, 0), c_.select(1, 0)} : LstmState{h_, c_};
}

torch::Tensor LstmStream::run_step(const torch::Tensor& x) {
  // The interpreter takes its arguments from the stack and leaves the result there;
  // the vector's capacity is kept, so a step allocates no argument storage.
  stack_.clear();
  stack_.emplace_back(self_);
  stack_.emplace_back(x);
  stack_.emplace_back(h_);
  stack_.emplace_back(c_);
  step_fn_->run(stack_);
  torch::Tensor y = stack_.back().toTensor();
  stack_.clear();
  return y;
}

torch::Tensor LstmStream::step(const torch::Tensor& x) {
  const LstmConfig& cfg = runner_->config_;
  const bool batched = x.dim() == 2;
  if (!x.defined() || (x.dim() != 1 && x.dim() != 2) || x.size(-1) != cfg.input_size) {
    throw InputError("step: expected input of shape (N, " + std::to_string(cfg.input_size) + ") or (" +
                     std::to_string(cfg.input_size) + ",), one time step, got " +
                     (x.defined() ? shape_str(x.sizes()) : std::string("an undefined tensor")));
  }
  if (x.scalar_type() != cfg.dtype) {
    throw InputError("step: expected input of dtype " + dtype_name(cfg.dtype) + " (the model's), got " +
                     dtype_name(x.scalar_type()));
  }
  const int64_t n = batched ? x.size(0) : 0;
  if (batched && n == 0) throw InputError("step: expected a batch of at least one, got input of shape " + shape_str(x.sizes()));
  check_batch(n);
  c10::InferenceMode guard;
  if (!step_fn_) {  // an archive without step_: one forward on a chunk of length 1
    const int64_t time_dim = batched && cfg.batch_first ? 1 : 0;
    return push(x.unsqueeze(time_dim)).output.select(time_dim, 0);
  }
  ensure_state(n);
  torch::Tensor y = run_step(batched ? x : x.unsqueeze(0));
  ++steps_;
  return batched ? y : y.select(0, 0);
}

LstmOutput LstmStream::push(const torch::Tensor& chunk) {
  runner_->check_input(chunk);
  const int64_t n = runner_->batch_size(chunk);
  check_batch(n);
  const LstmConfig& cfg = runner_->config_;
  const int64_t time_dim = chunk.dim() == 3 && cfg.batch_first ? 1 : 0;
  const int64_t T = chunk.size(time_dim);
  if (!step_fn_) {
    LstmOutput out = runner_->run(chunk, state_);
    state_ = LstmState{out.h_n, out.c_n};
    batch_ = n;
    steps_ += T;
    return out;
  }
  c10::InferenceMode guard;
  ensure_state(n);
  // output (T, N, P), (N, T, P) if batch_first, (T, P) unbatched: each step's h[-1] copied in
  std::vector<int64_t> out_shape = chunk.sizes().vec();
  out_shape.back() = cfg.real_hidden();
  torch::Tensor output = torch::empty(out_shape, chunk.options());
  for (int64_t t = 0; t < T; ++t) {
    torch::Tensor x = chunk.select(time_dim, t);  // (N, I) or (I,)
    torch::Tensor y = run_step(n == 0 ? x.unsqueeze(0) : x);
    output.select(time_dim, t).copy_(n == 0 ? y.select(0, 0) : y);
  }
  steps_ += T;
  return LstmOutput{output, state_->first.clone(), state_->second.clone()};
}

void LstmStream::reset(const std::optional<LstmState>& initial_state) {
  steps_ = 0;
  if (initial_state) {
    const LstmConfig& cfg = runner_->config_;
    const torch::Tensor& h = initial_state->first;
    const torch::Tensor& c = initial_state->second;
    const bool batched = h.defined() && h.dim() == 3;
    std::vector<int64_t> want_h{cfg.num_layers, cfg.real_hidden()}, want_c{cfg.num_layers, cfg.hidden_size};
    if (batched) {
      want_h.insert(want_h.begin() + 1, h.size(1));
      want_c.insert(want_c.begin() + 1, h.size(1));
    }
    if (!h.defined() || !c.defined() || h.sizes() != c10::IntArrayRef(want_h) || c.sizes() != c10::IntArrayRef(want_c)) {
      throw InputError("expected an initial state of shapes " + shape_str(want_h) + " and " + shape_str(want_c) +
                       " (num_layers, [N,] proj_size or hidden_size / hidden_size), got " +
                       (h.defined() ? shape_str(h.sizes()) : "undefined") + " and " +
                       (c.defined() ? shape_str(c.sizes()) : "undefined"));
    }
    if (h.scalar_type() != cfg.dtype || c.scalar_type() != cfg.dtype) {
      throw InputError("expected an initial state of dtype " + dtype_name(cfg.dtype) + " (the model's), got " +
                       dtype_name(h.scalar_type()) + " and " + dtype_name(c.scalar_type()));
    }
  }
  if (!step_fn_) {
    state_ = initial_state;
    batch_ = -1;
    return;
  }
  batch_ = -1;
  state_.reset();
  if (initial_state) {
    // A (L, N, *) or unbatched (L, *) state: copied into the stream's own tensors.
    const int64_t n = initial_state->first.dim() == 3 ? initial_state->first.size(1) : 0;
    ensure_state(n);
    c10::InferenceMode guard;
    state_->first.copy_(initial_state->first);
    state_->second.copy_(initial_state->second);
  }
}

}  // namespace deploy_lstm
