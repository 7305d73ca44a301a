// Loading a TorchScript archive with clear errors, and the metadata deploy_lstm puts in it.
#pragma once

#include <torch/script.h>

#include <string>

#include "deploy_lstm/errors.h"

namespace deploy_lstm {

// The extra file deploy_lstm.export_torchscript writes into the archive
// (torchscript.METADATA_FILE): a JSON object of contract.META_* keys.
inline constexpr const char* kTorchScriptMetadataFile = "deploy_lstm_config.json";

struct LoadedModule {
  torch::jit::Module module;  // on the CPU, in eval mode, with a forward method
  std::string metadata;       // the JSON of kTorchScriptMetadataFile; empty when the archive has none
};

// Loads `path`.  Throws ModelLoadError: a missing file, a directory, a file that
// is not a TorchScript archive, or a module without forward.
LoadedModule load_torchscript(const std::string& path);

// The first line of a c10 message, without miniz's generic advice about corrupted checkpoints.
std::string first_line(const std::string& message);

// The reason in a TorchScript interpreter error: its "SomeError: ..." line (the
// last one), without the TorchScript traceback above it.
std::string error_reason(const std::string& message);

}  // namespace deploy_lstm
