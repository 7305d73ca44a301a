// Run a whole TorchScript model from C++: flat tensors in, flat tensors out.
//
// forward's schema says which arguments are Tensors and which are (nested) Tuples
// (or Optionals) of Tensors.  The runner takes the tensors flattened depth first in
// argument order -- `input, hidden[0], hidden[1]` for
// forward(input: Tensor, hidden: Tuple[Tensor, Tensor]) -- rebuilds `(input, (h0, c0))`,
// runs, and flattens the result (Tensors, Tuples and Lists of Tensors) the same way.
// Trailing arguments with a default value may be left out; an argument of any other
// type must have a default (it is never passed).
//
// The schema gives the number of inputs.  When the archive also carries deploy_lstm's
// I/O contract (io_spec.h, in deploy_lstm_config.json), inputs are checked against it
// (dtype, rank, fixed sizes, one size per named axis) and outputs take its names.
#pragma once

#include <torch/script.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/io_spec.h"
#include "deploy_lstm/torchscript.h"

namespace deploy_lstm {

class ModelRunner {
 public:
  // Loads a TorchScript archive on the CPU, in eval mode.  Throws ModelLoadError,
  // also for a forward the runner cannot feed (an int argument without default).
  explicit ModelRunner(const std::string& path);
  // Wraps an archive already loaded (load_torchscript); `path` names it in messages.
  ModelRunner(LoadedModule loaded, const std::string& path);

  const std::string& path() const { return path_; }
  // "forward(input: Tensor, hidden: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]".
  const std::string& signature() const { return signature_; }
  // The flat inputs when every argument is given: "input", "hidden[0]", "hidden[1]"
  // (the archive's names when its I/O contract lists as many).
  const std::vector<std::string>& input_names() const { return input_names_; }
  // "input, hidden[0], hidden[1]" with optional trailing arguments in brackets.
  std::string inputs_string() const;
  // The numbers of flat inputs forward accepts, ascending (several when trailing
  // arguments have defaults).
  const std::vector<std::size_t>& input_counts() const { return input_counts_; }
  // The number of flat outputs when the return type fixes it (Tensors and Tuples);
  // nullopt when it does not (a List).
  std::optional<std::size_t> output_count() const { return output_count_; }
  // Names for `n` flat outputs: the archive's when its contract lists n, else output_0, ...
  std::vector<std::string> output_names(std::size_t n) const;
  const std::optional<IoSpec>& io() const { return io_; }

  // Throws InputError unless forward accepts `n` flat inputs.
  void check_count(std::size_t n) const;
  // The checks run() makes before running: the count, then the archive's I/O
  // contract when it has one.  Throws InputError naming expected and got.
  void validate(const std::vector<torch::Tensor>& inputs) const;
  // forward on the flat inputs; the flat outputs.  Throws InputError (validate), or
  // RunError when forward fails (the message names the inputs and the reason).
  std::vector<torch::Tensor> run(const std::vector<torch::Tensor>& inputs);

 private:
  struct Argument {
    std::string name;
    c10::TypePtr type;
    std::size_t tensors;  // flat tensors it takes
    bool has_default;
  };

  std::string path_;
  torch::jit::Module module_;
  std::vector<Argument> arguments_;  // the leading arguments made of tensors
  std::size_t required_ = 0;         // arguments_[required_...] have defaults and may be left out
  std::vector<std::string> input_names_;
  std::vector<std::size_t> input_counts_;
  std::optional<std::size_t> output_count_;
  std::string signature_;
  std::optional<IoSpec> io_;
};

}  // namespace deploy_lstm
