// The exceptions of the deploy_lstm C++ runtime (no torch dependency).
//
// The tools map them to exit status 1 with one "error: ..." line; every message
// says what was expected and what was found.
#pragma once

#include <stdexcept>

namespace deploy_lstm {

// The file is missing, is not a TorchScript archive / AOTInductor package, or is
// not a model the runner can feed (e.g. forward takes an int without a default).
class ModelLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An input does not fit the model: count, rank, size or dtype.
class InputError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The model's forward failed on inputs that passed every check the runner can
// make; the message names the inputs and the interpreter's reason.
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace deploy_lstm
