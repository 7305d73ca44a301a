// An export folder written by `deploy-lstm export` (deploy_lstm/folder.py), read from C++
// (no torch dependency): its manifest.json, the artifacts it lists, and the recommendation
// `deploy-lstm bench DIR` records in it.
//
// The manifest (format "deploy-lstm-export", format_version 1) holds, among others,
//   "artifacts": {"torchscript": {"file": "model.ts", "sha256": "...", "bytes": 123, "details": {...}}, ...}
//   "recommendation": {"measured": "<iso time>", "machine": "...", "threads": 2,
//                      "targets": {"cpp": {"artifact": "aoti", "backend": "...", "ratio": 1.01, "why": "..."},
//                                  "python": {...}, "server": {...}}}
// folder.py is the writer; this reader checks the format and version the same way.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace deploy_lstm {

inline constexpr const char* kManifestFile = "manifest.json";    // folder.MANIFEST
inline constexpr const char* kFolderFormat = "deploy-lstm-export";  // folder.FORMAT
inline constexpr int64_t kFolderFormatVersion = 1;                // folder.FORMAT_VERSION

// The artifact kinds the C++ runner runs: the float32 ones, then their bf16 siblings (LSTMs in
// bfloat16 behind a float32 boundary: the same inputs and outputs, run the same way).
inline const std::vector<std::string> kCppArtifacts = {"torchscript", "aoti", "torchscript-bf16", "aoti-bf16"};
// The kinds it falls back to without a recommendation, in this order: float32 only (a bf16
// artifact runs when deploy-lstm bench --allow-bf16 recommended it, or with --artifact).
inline const std::vector<std::string> kCppDefaultArtifacts = {"torchscript", "aoti"};

// True for the kinds that are AOTInductor packages ("aoti", "aoti-bf16").
inline bool is_aoti_kind(const std::string& kind) { return kind == "aoti" || kind == "aoti-bf16"; }

// One entry of manifest "artifacts".
struct FolderArtifact {
  std::string kind;  // "onnx", "torchscript", "aoti", "onnx-int8", "weights"
  std::string file;  // name inside the folder
  std::string sha256;
  int64_t bytes = 0;
};

// One target of manifest "recommendation" (e.g. "cpp"): what deploy-lstm bench found best there.
struct Recommendation {
  std::string artifact;         // an artifact kind
  std::string backend;          // the benchmark's label of it
  std::optional<double> ratio;  // its time relative to the reference
  std::string why;
  std::string measured;  // ISO time of the measurement ("" when not recorded)
};

class ExportFolder {
 public:
  // Reads `dir`/manifest.json.  Throws ModelLoadError: not a folder, no manifest, a manifest
  // that is not JSON, of another format or version, or without a well-formed "artifacts".
  static ExportFolder open(const std::string& dir);
  // The folder `dir` as `manifest_text` (its manifest.json's text) describes it, with open()'s
  // checks: what open() does once it has read the file (and what the fuzz target calls).
  // An artifact's "file" must be a plain name (no NUL, '/', '\\', '..', not absolute).
  static ExportFolder from_manifest(const std::string& dir, std::string manifest_text);

  // Whether `path` is a folder holding a manifest.json (what the tools take for an export folder).
  static bool looks_like_folder(const std::string& path);

  const std::string& path() const { return path_; }
  bool has(const std::string& kind) const { return artifacts_.count(kind) > 0; }
  // The kinds the folder holds, sorted: "aoti, onnx, torchscript".
  std::vector<std::string> kinds() const;
  // Throws ModelLoadError "<dir> has no <kind> artifact (it has: ...)".
  const FolderArtifact& artifact(const std::string& kind) const;
  // The recommendation for `target` ("cpp", "python", "server"); nullopt when the manifest has
  // none.  Throws ModelLoadError when "recommendation" is there but malformed.
  std::optional<Recommendation> recommendation(const std::string& target) const;

  // The path of `kind`'s file, after checking it exists inside the folder (a symlink that
  // resolves elsewhere is refused) with the size and SHA-256 the manifest records.  Throws
  // ModelLoadError naming the file that is missing, outside or changed.
  std::string verified_file(const std::string& kind) const;

 private:
  std::string path_;
  std::string manifest_text_;  // kept whole: the recommendation is parsed when asked for
  std::map<std::string, FolderArtifact> artifacts_;
};

// Which artifact of a folder the C++ runner runs, and why.
struct ArtifactChoice {
  std::string kind;    // one of kCppArtifacts
  std::string file;    // its path, checked against the manifest (ExportFolder::verified_file)
  std::string reason;  // "recommended by deploy-lstm bench on <time> at ratio 1.01", ...
};

// `asked` (--artifact) when given; else the folder's "cpp" recommendation when the folder holds
// that artifact (as folder.py's ExportFolder.recommended); else its torchscript artifact; else
// its aoti one (kCppDefaultArtifacts: never a bf16 one unless recommended or asked).  Throws ModelLoadError when the asked kind is not one of kCppArtifacts or not in
// the folder, the folder holds nothing the runner runs, or the chosen file fails verified_file.
ArtifactChoice choose_cpp_artifact(const ExportFolder& folder, const std::optional<std::string>& asked);

// The SHA-256 of a file's contents, as 64 lowercase hex digits.  Throws std::runtime_error
// when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace deploy_lstm
