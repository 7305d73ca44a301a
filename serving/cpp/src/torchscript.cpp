#include "deploy_lstm/torchscript.h"

#include <filesystem>

namespace deploy_lstm {

std::string first_line(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  const std::size_t advice = line.find(" This is an internal miniz error.");
  return advice == std::string::npos ? line : line.substr(0, advice);
}

std::string error_reason(const std::string& message) {
  // The interpreter's message is "The following operation failed ...", the
  // TorchScript tracebacks, then "RuntimeError: <reason>" (or the raised Python
  // class, "deploy_lstm.errors.LSTMInputError: <reason>") on the last line.
  if (message.find("Traceback of TorchScript") == std::string::npos) return first_line(message);
  const std::size_t end = message.find_last_not_of(" \n\r\t");
  const std::size_t newline = message.rfind('\n', end);
  const std::size_t start = newline == std::string::npos ? 0 : newline + 1;
  return message.substr(start, end + 1 - start);
}

LoadedModule load_torchscript(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ModelLoadError("model file not found: '" + path + "'");
  if (std::filesystem::is_directory(path, ec))
    throw ModelLoadError("model path is a directory, expected a TorchScript file: '" + path + "'");
  LoadedModule loaded;
  torch::jit::ExtraFilesMap extra{{kTorchScriptMetadataFile, ""}};
  try {
    loaded.module = torch::jit::load(path, torch::kCPU, extra);
  } catch (const c10::Error& e) {
    throw ModelLoadError("cannot load '" + path +
                         "' as a TorchScript archive (write one with torch.jit.save, e.g. "
                         "export/export_torchscript.py): " +
                         first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw ModelLoadError("cannot load '" + path + "' as a TorchScript archive: " + first_line(e.what()));
  }
  loaded.module.eval();
  if (!loaded.module.find_method("forward"))
    throw ModelLoadError("'" + path + "' has no forward method (was it saved with torch.jit.script?)");
  loaded.metadata = extra[kTorchScriptMetadataFile];
  return loaded;
}

}  // namespace deploy_lstm
