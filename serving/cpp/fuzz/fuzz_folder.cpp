// libFuzzer target: an export folder's manifest.json on arbitrary text (src/folder.cpp):
// ExportFolder::from_manifest, recommendation, choose_cpp_artifact, verified_file.
//
// The manifest describes a real folder made once per run (see make_folder): model.ts and
// model.pt2 with the contents make_corpus.py records, a symlink to a file outside the folder
// (link-out.ts), one to a file inside it (link-in.ts) and a subfolder.  Beyond sanitizer
// findings: a refused manifest gives one printable line, and every file the reader hands out
// lies inside the folder.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/folder.h"
#include "fuzz_common.h"

namespace fs = std::filesystem;
using deploy_lstm_fuzz::check;

namespace {

fs::path g_root;    // a temporary directory: folder/ and outside.ts
fs::path g_folder;  // g_root/folder, canonical

void write(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

void make_folder() {
  std::string tmpl = (fs::temp_directory_path() / "dl-fuzz-folder-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  g_root = tmpl;
  fs::create_directory(g_root / "folder");
  fs::create_directory(g_root / "folder" / "sub");
  // Keep in step with make_corpus.py (FOLDER_FILES): the corpus's manifests record these sizes and SHA-256s.
  write(g_root / "folder" / "model.ts", "deploy-lstm fuzz: torchscript\n");
  write(g_root / "folder" / "model.pt2", "deploy-lstm fuzz: aoti\n");
  write(g_root / "folder" / "sub" / "model.ts", "deploy-lstm fuzz: torchscript\n");
  write(g_root / "outside.ts", "deploy-lstm fuzz: torchscript\n");
  fs::create_symlink("../outside.ts", g_root / "folder" / "link-out.ts");
  fs::create_symlink("model.ts", g_root / "folder" / "link-in.ts");
  g_folder = fs::canonical(g_root / "folder");
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(g_root, ec);
  });
}

void check_inside(const std::string& file) {
  check(file.find('\0') == std::string::npos, "handed out a path with a NUL byte (opened as a shorter name)", file);
  const fs::path target = fs::canonical(file);
  auto d = g_folder.begin(), t = target.begin();
  for (; d != g_folder.end(); ++d, ++t) check(t != target.end() && *d == *t, "handed out a file outside the folder", file);
  check(t != target.end(), "handed out the folder itself", file);
}

void choose(const deploy_lstm::ExportFolder& folder, const std::optional<std::string>& asked) {
  try {
    check_inside(deploy_lstm::choose_cpp_artifact(folder, asked).file);
  } catch (const deploy_lstm::ModelLoadError& e) {
    deploy_lstm_fuzz::check_message(e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  make_folder();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::optional<deploy_lstm::ExportFolder> folder;
  try {
    folder = deploy_lstm::ExportFolder::from_manifest(g_folder.string(),
                                                      std::string(reinterpret_cast<const char*>(data), size));
  } catch (const deploy_lstm::ModelLoadError& e) {
    deploy_lstm_fuzz::check_message(e.what());
    return 0;
  }
  for (const char* target : {"cpp", "python"}) {
    try {
      (void)folder->recommendation(target);
    } catch (const deploy_lstm::ModelLoadError& e) {
      deploy_lstm_fuzz::check_message(e.what());
    }
  }
  choose(*folder, std::nullopt);
  choose(*folder, std::string("torchscript"));
  choose(*folder, std::string("aoti"));
  for (const std::string& kind : folder->kinds()) {
    try {
      check_inside(folder->verified_file(kind));
    } catch (const deploy_lstm::ModelLoadError& e) {
      deploy_lstm_fuzz::check_message(e.what());
    }
  }
  return 0;
}
