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
  for (const char* name : kConstants)
    if (!module.hasattr(name)) return false;
  return module.hasattr("weight_ih_l0");
}

LstmRunner::LstmRunner(torch::jit::Module module, const std::string& path) : path_(path), module_(std::move(module)) {
  module_.eval();
  config_.input_size = int_constant(module_, "input_size", path);
  config_.hidden_size = int_constant(module_, "hidden_size", path);
  config_.num_layers = int_constant(module_, "num_layers", path);
  config_.bias = bool_constant(module_, "bias", path);
  config_.batch_first = bool_constant(module_, "batch_first", path);
  config_.bidirectional = bool_constant(module_, "bidirectional", path);
  config_.proj_size = int_constant(module_, "proj_size", path);
  const c10::IValue w = constant(module_, "weight_ih_l0", path);
  if (!w.isTensor()) throw ModelLoadError("'" + path + "': weight_ih_l0 is not a tensor");
  config_.dtype = w.toTensor().scalar_type();
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

LstmStream::LstmStream(LstmRunner* runner, std::optional<LstmState> initial_state)
    : runner_(runner), state_(std::move(initial_state)) {}

LstmOutput LstmStream::push(const torch::Tensor& chunk) {
  runner_->check_input(chunk);
  if (state_ && steps_ > 0) {
    const int64_t n = runner_->batch_size(chunk);
    const int64_t carried = state_->first.dim() == 3 ? state_->first.size(1) : 0;
    if (n != carried) {
      auto describe = [](int64_t b) { return b == 0 ? std::string("unbatched") : "batch size " + std::to_string(b); };
      throw InputError("stream chunk is " + describe(n) + " but the stream carries state for " + describe(carried) +
                       "; call reset() to start a new stream");
    }
  }
  LstmOutput out = runner_->run(chunk, state_);
  state_ = LstmState{out.h_n, out.c_n};
  steps_ += chunk.dim() == 2 ? chunk.size(0) : (runner_->config().batch_first ? chunk.size(1) : chunk.size(0));
  return out;
}

void LstmStream::reset(const std::optional<LstmState>& initial_state) {
  state_ = initial_state;
  steps_ = 0;
}

}  // namespace deploy_lstm
