// Running an AOTInductor package from C++; see include/deploy_lstm/aoti_runner.h.
#include "deploy_lstm/aoti_runner.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>

#include <filesystem>

#include "deploy_lstm/tensor_npy.h"

namespace deploy_lstm {
namespace {

constexpr const char* kFusedOp = "deploy_lstm::fused_lstm";

std::string first_line_of(const std::string& message) { return message.substr(0, message.find('\n')); }

// From torch 2.14 a package's compiled model names libtorch.so as a dependency (2.13's: libtorch_cpu
// only) and carries no RPATH, so dlopen finds it only when the process has it loaded already -- as
// Python has.  The programs link only libtorch_cpu and libc10 (cmake/DeployLstmTorch.cmake): for a
// CUDA wheel libtorch.so pulls in libtorch_cuda and the CUDA libraries (measured with 2.14.1: peak
// RSS 518 MB instead of 122 MB, +0.8 s), which only a package needs.  So it is loaded here, once,
// from beside the libtorch_cpu this process runs.
void load_libtorch_for_packages() {
  static const bool loaded = [] {
    if (dlopen("libtorch.so", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) != nullptr) return true;
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&at::globalContext), &info) == 0 || info.dli_fname == nullptr) return false;
    const std::filesystem::path libtorch = std::filesystem::path(info.dli_fname).parent_path() / "libtorch.so";
    std::error_code ec;
    if (!std::filesystem::exists(libtorch, ec)) return false;  // a libtorch without it: the loader says what is missing
    if (dlopen(libtorch.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr)
      throw ModelLoadError("cannot load " + libtorch.string() + ", which AOTInductor packages need: " + dlerror());
    return true;
  }();
  (void)loaded;
}

}  // namespace

bool is_aoti_package(const std::string& path) {
  return std::filesystem::path(path).extension() == ".pt2";
}

AotiRunner::AotiRunner(const std::string& path) : path_(path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw ModelLoadError("package not found: '" + path + "'");
  load_libtorch_for_packages();
  try {
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    // A "fused" package in a runner built without libdeploy_lstm_ops: name the op and the ways out.
    if (what.find(kFusedOp) != std::string::npos && !c10::Dispatcher::singleton().findSchema({kFusedOp, ""})) {
      throw ModelLoadError("'" + path + "' calls the custom op " + kFusedOp +
                           " (the \"fused\" LSTM route), which this runner does not register: link "
                           "libdeploy_lstm_ops (serving/cpp/aoti) or re-export with "
                           "deploy_lstm.export_aoti(..., fused=False)");
    }
    throw ModelLoadError("cannot load '" + path + "' as an AOTInductor package: " + first_line_of(what));
  }
  for (const auto& [key, value] : loader_->get_metadata()) metadata_[key] = value;
  if (const auto it = metadata_.find(kMetaIo); it != metadata_.end())
    io_ = parse_io_spec(it->second, "'" + path + "' metadata");
}

bool AotiRunner::is_lstm() const {
  if (!io_ || metadata_.count(kMetaConfig) == 0) return false;
  const std::vector<std::string> names = io_->input_names();
  const std::vector<std::string> bare = {"input", "h0", "c0"};
  return (names.size() == 3 || (names.size() == 4 && names[3] == "lengths")) &&
         std::equal(bare.begin(), bare.end(), names.begin());
}

bool AotiRunner::bidirectional() const {
  const auto it = metadata_.find(kMetaConfig);
  if (it == metadata_.end()) return false;
  const Json config = parse_json(it->second, "'" + path_ + "' metadata (" + kMetaConfig + ")");
  const Json* b = config.field("bidirectional");
  return b != nullptr && b->kind == Json::Kind::kBool && b->boolean;
}

std::string AotiRunner::input_name(std::size_t i) const {
  return io_ && i < io_->inputs.size() ? io_->inputs[i].name : "input " + std::to_string(i);
}

std::string AotiRunner::inputs_string() const { return io_ ? join(io_->input_names()) : ""; }

std::vector<std::string> AotiRunner::output_names(std::size_t n) const { return output_file_names(io_, n); }

std::vector<torch::Tensor> AotiRunner::lstm_inputs(const torch::Tensor& input,
                                                   const std::optional<std::pair<torch::Tensor, torch::Tensor>>& state,
                                                   const std::optional<torch::Tensor>& lengths) const {
  TORCH_INTERNAL_ASSERT(is_lstm(), "lstm_inputs on a package that is not a bare LSTM");
  const bool takes_lengths = io_->inputs.size() == 4;
  if (lengths && !takes_lengths) {
    throw InputError("'" + path_ + "' was exported without a lengths input (it takes " + inputs_string() +
                     "): re-export with lengths (deploy-lstm export --lengths) or leave out --lengths");
  }
  // The input alone against its spec: rank, dtype, fixed sizes; then the axis sizes it fixes.
  const IoSpec first{{io_->inputs[0]}, {}};
  first.check_inputs({input.sizes().vec()}, {dtype_name(input.scalar_type())});
  std::map<std::string, int64_t> axes;
  for (std::size_t d = 0; d < io_->inputs[0].shape.size(); ++d)
    if (io_->inputs[0].shape[d].dynamic()) axes[io_->inputs[0].shape[d].axis] = input.size(static_cast<int64_t>(d));

  std::vector<torch::Tensor> flat = {input};
  if (state) {
    flat.push_back(state->first);
    flat.push_back(state->second);
  } else {
    for (std::size_t i = 1; i <= 2; ++i) {  // h0, c0: zeros, as nn.LSTM without hx
      std::vector<int64_t> shape;
      for (const SpecDim& d : io_->inputs[i].shape) {
        if (!d.dynamic()) {
          shape.push_back(d.size);
        } else if (const auto it = axes.find(d.axis); it != axes.end()) {
          shape.push_back(it->second);
        } else {
          throw InputError("cannot make a zero " + io_->inputs[i].name + ": its axis '" + d.axis +
                           "' is not one of input's; give --h0 and --c0");
        }
      }
      flat.push_back(torch::zeros(shape, input.options()));
    }
  }
  if (takes_lengths) {
    if (lengths) {
      flat.push_back(*lengths);
    } else {  // every sequence full length: the same as no padding
      const TensorSpec& in = io_->inputs[0];
      int64_t T = -1, N = -1;
      for (std::size_t d = 0; d < in.shape.size(); ++d) {
        if (in.shape[d].axis == "sequence") T = input.size(static_cast<int64_t>(d));
        if (in.shape[d].axis == "batch") N = input.size(static_cast<int64_t>(d));
      }
      if (T < 0 || N < 0)
        throw InputError("'" + path_ + "' takes lengths; give them with --lengths (int64, one per sequence)");
      flat.push_back(torch::full({N}, T, torch::kInt64));
    }
  }
  return flat;
}

void AotiRunner::check_count(std::size_t n) const {
  if (io_ && io_->inputs.size() != n) {
    throw InputError("'" + path_ + "' takes " + std::to_string(io_->inputs.size()) + " inputs (" + inputs_string() +
                     "), got " + std::to_string(n));
  }
}

void AotiRunner::validate(const std::vector<torch::Tensor>& inputs) const {
  check_count(inputs.size());
  if (io_) check_tensors(*io_, inputs);
}

std::vector<torch::Tensor> AotiRunner::run(const std::vector<torch::Tensor>& inputs) {
  validate(inputs);
  try {
    c10::InferenceMode guard;
    return loader_->run(inputs);
  } catch (const std::exception& e) {
    std::vector<std::string> got;
    for (std::size_t i = 0; i < inputs.size(); ++i) got.push_back(input_name(i) + "=" + describe(inputs[i]));
    const std::string what = e.what();
    throw RunError("the package failed on " + join(got) + ": " + first_line_of(what));
  }
}

}  // namespace deploy_lstm
