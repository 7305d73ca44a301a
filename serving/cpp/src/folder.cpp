// Reading an export folder's manifest.json from C++; see include/deploy_lstm/folder.h.
#include "deploy_lstm/folder.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/io_spec.h"
#include "deploy_lstm/printable.h"

namespace deploy_lstm {
namespace {

namespace fs = std::filesystem;

// -- SHA-256 (FIPS 180-4), enough to check a manifest's checksums -----------------------------

constexpr std::array<uint32_t, 64> kSha256K = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

class Sha256 {
 public:
  void update(const unsigned char* data, std::size_t n) {
    total_ += n;
    while (n > 0) {
      const std::size_t take = std::min(n, block_.size() - used_);
      std::copy(data, data + take, block_.begin() + static_cast<std::ptrdiff_t>(used_));
      used_ += take;
      data += take;
      n -= take;
      if (used_ == block_.size()) {
        compress();
        used_ = 0;
      }
    }
  }

  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(length, 8);
    std::string out;
    char digits[9];
    for (const uint32_t word : h_) {
      std::snprintf(digits, sizeof digits, "%08x", word);
      out += digits;
    }
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress() {
    std::array<uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      w[i] = static_cast<uint32_t>(block_[4 * i]) << 24 | static_cast<uint32_t>(block_[4 * i + 1]) << 16 |
             static_cast<uint32_t>(block_[4 * i + 2]) << 8 | static_cast<uint32_t>(block_[4 * i + 3]);
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    const std::array<uint32_t, 8> add = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) h_[i] += add[i];
  }

  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<unsigned char, 64> block_{};
  std::size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string number_string(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

// Why `name` (an artifact's "file") is not a plain file name inside the folder; "" when it is.
// folder.py writes plain names (model.ts, ...); anything else is a corrupt or hostile manifest.
std::string bad_file_name(const std::string& name) {
  if (name.empty()) return "an empty name";
  if (name.find('\0') != std::string::npos) return "a NUL byte in the name";
  if (name.front() == '/') return "an absolute path";
  if (name == "." || name == ".." || name.rfind("../", 0) == 0 || name.find("/../") != std::string::npos ||
      (name.size() >= 3 && name.compare(name.size() - 3, 3, "/..") == 0))
    return "a '..' component";
  if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos) return "a directory separator";
  return "";
}

// "aoti, torchscript" (each kind quoted for a one-line message), or "none".
std::string kinds_list(const std::vector<std::string>& kinds) {
  std::vector<std::string> shown;
  for (const std::string& k : kinds) shown.push_back(printable(k, 40));
  return shown.empty() ? "none" : join(shown);
}

// Whether `inner` (canonical) lies inside the folder `dir` (canonical), not the folder itself.
bool inside(const fs::path& dir, const fs::path& inner) {
  auto d = dir.begin(), i = inner.begin();
  for (; d != dir.end(); ++d, ++i)
    if (i == inner.end() || *d != *i) return false;
  return i != inner.end();
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open '" + path + "'");
  Sha256 sha;
  std::vector<char> buffer(1 << 20);
  while (f) {
    f.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    sha.update(reinterpret_cast<const unsigned char*>(buffer.data()), static_cast<std::size_t>(f.gcount()));
  }
  if (f.bad()) throw std::runtime_error("cannot read '" + path + "'");
  return sha.hex();
}

bool ExportFolder::looks_like_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(fs::path(path) / kManifestFile, ec);
}

ExportFolder ExportFolder::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ModelLoadError("'" + dir + "' is not a folder; expected one written by 'deploy-lstm export'");
  const std::string manifest_path = (fs::path(dir) / kManifestFile).string();
  std::ifstream f(manifest_path, std::ios::binary);
  if (!fs::is_regular_file(manifest_path, ec) || !f) {
    throw ModelLoadError("'" + dir + "' has no " + kManifestFile +
                         "; expected a folder written by 'deploy-lstm export' (or give the model file itself)");
  }
  return from_manifest(dir, std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()));
}

ExportFolder ExportFolder::from_manifest(const std::string& dir, std::string manifest_text) {
  ExportFolder folder;
  folder.path_ = dir;
  folder.manifest_text_ = std::move(manifest_text);
  const std::string where = "'" + (fs::path(dir) / kManifestFile).string() + "'";
  const Json doc = parse_json(folder.manifest_text_, where);  // ModelLoadError: "... malformed JSON at offset N"
  const Json* format = doc.field("format");
  if (doc.kind != Json::Kind::kObject || format == nullptr || format->kind != Json::Kind::kString ||
      format->string != kFolderFormat) {
    throw ModelLoadError(where + " is not a deploy-lstm manifest (expected \"format\": \"" + kFolderFormat + "\")");
  }
  const Json* version = doc.field("format_version");
  if (version == nullptr || version->kind != Json::Kind::kNumber || !version->integral ||
      version->integer != kFolderFormatVersion) {
    const std::string got = version == nullptr ? "none" : version->kind == Json::Kind::kNumber ? number_string(version->number) : "not a number";
    throw ModelLoadError("'" + dir + "' was written in export format version " + got + "; this runner reads version " +
                         std::to_string(kFolderFormatVersion) + ": re-export it with a matching deploy-lstm");
  }
  const Json* artifacts = doc.field("artifacts");
  if (artifacts == nullptr || artifacts->kind != Json::Kind::kObject)
    throw ModelLoadError(where + " is incomplete or malformed: no \"artifacts\" object");
  for (const auto& [kind, entry] : artifacts->fields) {
    const Json* file = entry.field("file");
    const Json* sha = entry.field("sha256");
    const Json* bytes = entry.field("bytes");
    if (file == nullptr || file->kind != Json::Kind::kString || sha == nullptr || sha->kind != Json::Kind::kString ||
        bytes == nullptr || bytes->kind != Json::Kind::kNumber || !bytes->integral || bytes->integer < 0) {
      throw ModelLoadError(where + " is incomplete or malformed: artifact '" + printable(kind) +
                           "' needs a string \"file\", a string \"sha256\" and an integer \"bytes\"");
    }
    if (const std::string why = bad_file_name(file->string); !why.empty()) {
      throw ModelLoadError(where + ": artifact '" + printable(kind) + "' has file '" + printable(file->string) +
                           "' (" + why + "); expected a plain file name inside the folder, as deploy-lstm export "
                           "writes (model.ts, model.pt2, ...)");
    }
    folder.artifacts_[kind] = FolderArtifact{kind, file->string, sha->string, bytes->integer};
  }
  return folder;
}

std::vector<std::string> ExportFolder::kinds() const {
  std::vector<std::string> out;
  for (const auto& [kind, _] : artifacts_)
    if (kind != "weights") out.push_back(kind);  // the weights are no model to run
  return out;
}

const FolderArtifact& ExportFolder::artifact(const std::string& kind) const {
  const auto it = artifacts_.find(kind);
  if (it == artifacts_.end()) {
    throw ModelLoadError("'" + path_ + "' has no " + printable(kind) + " artifact (it has: " + kinds_list(kinds()) +
                         "); re-export with it, e.g. deploy-lstm export ... --artifacts " + printable(kind));
  }
  return it->second;
}

std::optional<Recommendation> ExportFolder::recommendation(const std::string& target) const {
  const std::string where = "'" + (fs::path(path_) / kManifestFile).string() + "'";
  const Json doc = parse_json(manifest_text_, where);
  const Json* rec = doc.field("recommendation");
  if (rec == nullptr || rec->kind == Json::Kind::kNull) return std::nullopt;
  const auto bad = [&](const std::string& what) {
    return ModelLoadError(where + ": malformed \"recommendation\" (written by deploy-lstm bench): " + what +
                          "; run deploy-lstm bench on the folder again, or choose with --artifact");
  };
  if (rec->kind != Json::Kind::kObject) throw bad("not an object");
  const Json* targets = rec->field("targets");
  if (targets == nullptr || targets->kind != Json::Kind::kObject) throw bad("no \"targets\" object");
  const Json* entry = targets->field(target);
  if (entry == nullptr || entry->kind == Json::Kind::kNull) return std::nullopt;
  const Json* artifact = entry->kind == Json::Kind::kObject ? entry->field("artifact") : nullptr;
  // bench records "artifact": null for a target no artifact of the folder serves: no recommendation
  if (artifact != nullptr && artifact->kind == Json::Kind::kNull) return std::nullopt;
  if (entry->kind != Json::Kind::kObject || artifact == nullptr || artifact->kind != Json::Kind::kString)
    throw bad("target '" + target + "' has no string \"artifact\"");
  Recommendation out;
  out.artifact = artifact->string;
  // Shown on stderr: one line whatever the manifest holds.
  const auto text = [](const Json* v) { return v != nullptr && v->kind == Json::Kind::kString ? printable(v->string) : ""; };
  out.backend = text(entry->field("backend"));
  out.why = text(entry->field("why"));
  out.measured = text(rec->field("measured"));
  if (const Json* ratio = entry->field("ratio"); ratio != nullptr && ratio->kind == Json::Kind::kNumber)
    out.ratio = ratio->number;
  return out;
}

std::string ExportFolder::verified_file(const std::string& kind) const {
  const FolderArtifact& a = artifact(kind);
  const std::string path = (fs::path(path_) / a.file).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw ModelLoadError("'" + path + "' is listed in " + kManifestFile + " but missing; re-export the folder");
  // A symlink may point anywhere: what runs must be the folder's own file.
  const fs::path dir = fs::canonical(path_, ec);
  const fs::path target = ec ? fs::path() : fs::canonical(path, ec);
  if (ec || !inside(dir, target)) {
    throw ModelLoadError("'" + path + "' resolves to '" + printable(target.string()) + "', outside the folder '" +
                         printable(dir.string()) + "'; expected the artifact file inside the folder (re-export it "
                         "rather than linking to a file elsewhere)");
  }
  const auto size = fs::file_size(path, ec);
  if (ec || static_cast<int64_t>(size) != a.bytes || sha256_file(path) != a.sha256) {
    throw ModelLoadError("'" + path + "' does not match its checksum in " + kManifestFile +
                         " (changed after export?); re-export the folder");
  }
  return path;
}

ArtifactChoice choose_cpp_artifact(const ExportFolder& folder, const std::optional<std::string>& asked) {
  const auto runnable = [](const std::string& kind) {
    return std::find(kCppArtifacts.begin(), kCppArtifacts.end(), kind) != kCppArtifacts.end();
  };
  if (asked) {
    if (!runnable(*asked))
      throw ModelLoadError("--artifact " + *asked + ": the C++ runner runs " + join(kCppArtifacts, " or "));
    folder.artifact(*asked);  // names what the folder holds when it is missing
    return {*asked, folder.verified_file(*asked), "asked with --artifact"};
  }
  // As folder.py's ExportFolder.recommended: a recommendation of an artifact that is not here
  // (or not one the runner runs) counts as none; the line on stderr says so.
  std::string why_not = "no recommendation recorded (deploy-lstm bench DIR records one)";
  if (const auto rec = folder.recommendation("cpp")) {
    if (runnable(rec->artifact) && folder.has(rec->artifact)) {
      std::string reason = "recommended by deploy-lstm bench";
      if (!rec->measured.empty()) reason += " on " + rec->measured;
      if (rec->ratio) reason += " at ratio " + number_string(*rec->ratio);
      if (!rec->backend.empty()) reason += " (" + rec->backend + ")";
      return {rec->artifact, folder.verified_file(rec->artifact), reason};
    }
    why_not = "deploy-lstm bench recommended " + printable(rec->artifact) + ", which " +
              (runnable(rec->artifact) ? "the folder does not hold" : "the C++ runner does not run");
  }
  for (const std::string& kind : kCppDefaultArtifacts)
    if (folder.has(kind)) return {kind, folder.verified_file(kind), why_not + "; the folder's " + kind + " artifact"};
  for (const std::string& kind : kCppArtifacts) {
    if (folder.has(kind)) {
      throw ModelLoadError("'" + folder.path() + "' holds only reduced-precision artifacts for C++ (" + kind +
                           "): " + why_not + "; run one with --artifact " + kind +
                           " or let deploy-lstm bench --allow-bf16 recommend it");
    }
  }
  throw ModelLoadError("'" + folder.path() + "' has no artifact the C++ runner runs (" + join(kCppArtifacts, " or ") +
                       "; it has: " + kinds_list(folder.kinds()) +
                       "); re-export with e.g. deploy-lstm export ... --artifacts onnx,torchscript");
}

}  // namespace deploy_lstm
