// Run an AOTInductor package (model.pt2, deploy_lstm.export_aoti) from C++: flat tensors in,
// flat tensors out -- what deploy_lstm_run and aoti_run share.
//
// The package's inputs are its graph's, flattened in order: a bare LSTM's input, h0, c0
// [, lengths]; a whole model's own, e.g. input, h0, c0 for forward(input, (h0, c0)).  When
// it carries deploy_lstm's I/O contract (metadata "deploy_lstm.io", io_spec.h), inputs are
// checked against it before running (count, dtype, rank, fixed sizes, one size per named
// axis) and outputs take its names.
//
// A package whose LSTMs took the "fused" route calls the custom op deploy_lstm::fused_lstm:
// the process must have it registered, by linking libdeploy_lstm_ops (aoti/fused_lstm_op.cpp)
// with --no-as-needed.  Without it, loading fails with a message naming the op.
#pragma once

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/io_spec.h"

namespace deploy_lstm {

// contract.META_CONFIG: a bare LSTM package's configuration (LSTMConfig JSON).
inline constexpr const char* kMetaConfig = "deploy_lstm.config";

class AotiRunner {
 public:
  // Loads the package on the CPU.  Throws ModelLoadError: a missing file, not a package, a
  // fused package in a process without deploy_lstm::fused_lstm, a malformed I/O contract.
  explicit AotiRunner(const std::string& path);

  const std::string& path() const { return path_; }
  // The package's metadata ("deploy_lstm.io", "deploy_lstm.config", ...).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::optional<IoSpec>& io() const { return io_; }

  // A bare deploy_lstm.LSTM: it has a "deploy_lstm.config" and its contract's inputs are
  // input, h0, c0 [, lengths].
  bool is_lstm() const;
  // A bare LSTM's "bidirectional" (false when the configuration does not say).
  bool bidirectional() const;
  // The contract's name of flat input i, or "input i" without a contract.
  std::string input_name(std::size_t i) const;
  // "input, h0, c0" from the contract; "" without one.
  std::string inputs_string() const;
  // Names to write `n` outputs under: the contract's, else output_0, output_1, ... (output_file_names).
  std::vector<std::string> output_names(std::size_t n) const;

  // A bare LSTM's flat inputs from the LSTM form: `input`, zeros for h0 and c0 when `state`
  // is not given (their sizes from the contract and input's batch), and `lengths` -- every
  // sequence full length when the package takes lengths and none are given.  Throws
  // InputError: `input` does not fit, or `lengths` for a package without a lengths input.
  std::vector<torch::Tensor> lstm_inputs(const torch::Tensor& input,
                                         const std::optional<std::pair<torch::Tensor, torch::Tensor>>& state,
                                         const std::optional<torch::Tensor>& lengths) const;

  // The count against the contract (before reading files: the likelier mistake).  Throws InputError.
  void check_count(std::size_t n) const;
  // The checks run() makes: the count, then each input against the contract.  Throws InputError.
  void validate(const std::vector<torch::Tensor>& inputs) const;
  // Runs the package on the flat inputs (validated first); its flat outputs.  Throws
  // InputError (validate) or RunError naming the inputs and the reason.
  std::vector<torch::Tensor> run(const std::vector<torch::Tensor>& inputs);

 private:
  std::string path_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::map<std::string, std::string> metadata_;
  std::optional<IoSpec> io_;
};

// Whether `path` names an AOTInductor package by its extension (".pt2").
bool is_aoti_package(const std::string& path);

}  // namespace deploy_lstm
