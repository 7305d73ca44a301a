// An ExecuTorch LSTM program streamed chunk by chunk; see pte_lstm.h.
#include "pte_lstm.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/platform.h>

#include "deploy_lstm/errors.h"
#include "deploy_lstm/folder.h"
#include "deploy_lstm/io_spec.h"

namespace deploy_lstm {

using executorch::extension::module::Module;
using executorch::runtime::Error;

namespace {

constexpr const char* kForward = "forward";
constexpr const char* kStep = "step";

// ExecuTorch's own log lines (cpuinfo probing at load, ...) only with PTE_LOG set: a tool's
// refusal stays one line, and every failure is reported by the tool with the runtime's error code.
void runtime_log(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*, size_t line,
                 const char* message, size_t) {
  if (std::getenv("PTE_LOG") != nullptr) std::fprintf(stderr, "%c executorch %s:%zu] %s\n", static_cast<char>(level), filename, line, message);
}

const bool kLogRegistered = executorch::runtime::register_pal(executorch::runtime::PalImpl::create(runtime_log, __FILE__));

std::string error_text(Error e) {
  std::ostringstream s;
  s << "ExecuTorch error 0x" << std::hex << static_cast<int>(e);
  return s.str();
}

// The sizes of a method's tensor input `index`; throws ModelLoadError unless it has `rank` dims.
std::vector<int64_t> input_sizes(Module& module, const std::string& pte, const char* method, size_t index, size_t rank) {
  auto meta = module.method_meta(method);
  if (!meta.ok()) throw ModelLoadError(pte + ": no method \"" + method + "\" (" + error_text(meta.error()) + "); re-export it");
  if (meta->num_inputs() != 3 || meta->num_outputs() != 3)
    throw ModelLoadError(pte + ": method \"" + method + "\" is not an LSTM's (input, h0, c0) -> (output, hn, cn)");
  auto info = meta->input_tensor_meta(index);
  if (!info.ok() || info->sizes().size() != rank)
    throw ModelLoadError(pte + ": method \"" + method + "\" input " + std::to_string(index) + " is not a rank-" +
                         std::to_string(rank) + " tensor");
  return std::vector<int64_t>(info->sizes().begin(), info->sizes().end());
}

}  // namespace

PteSource resolve_pte(const std::string& path, bool batch_first) {
  if (!ExportFolder::looks_like_folder(path)) return {path, batch_first};
  ExportFolder folder = ExportFolder::open(path);
  PteSource source{folder.verified_file("executorch"), false};
  const std::string manifest = path + "/" + kManifestFile;
  std::ifstream in(manifest, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Json root = parse_json(text, manifest);
  const Json* flag = root.path({"model", "config", "batch_first"});
  if (flag == nullptr || flag->kind != Json::Kind::kBool)
    throw ModelLoadError(manifest + ": model.config.batch_first missing: model.pte is a bare LSTM's; re-export the folder");
  source.batch_first = flag->boolean;
  return source;
}

PteLstm::PteLstm(const PteSource& source) : module_(std::make_unique<Module>(source.pte, Module::LoadMode::Mmap)) {
  const std::string& pte = source.pte;
  if (Error e = module_->load(); e != Error::Ok) throw ModelLoadError("cannot load the ExecuTorch program " + pte + " (" + error_text(e) + ")");
  const auto x = input_sizes(*module_, pte, kForward, 0, 3);
  const auto h = input_sizes(*module_, pte, kForward, 1, 3);
  const auto c = input_sizes(*module_, pte, kForward, 2, 3);
  shape_.batch_first = source.batch_first;
  shape_.batch = h[1];
  shape_.chunk = source.batch_first ? x[1] : x[0];
  shape_.input_size = x[2];
  shape_.layers = h[0];
  shape_.proj = h[2];
  shape_.hidden = c[2];
  auto out_meta = module_->method_meta(kForward)->output_tensor_meta(0);
  if (!out_meta.ok() || out_meta->sizes().size() != 3) throw ModelLoadError(pte + ": method \"forward\" output 0 is not a rank-3 tensor");
  shape_.output_size = out_meta->sizes()[2];
  if ((source.batch_first ? x[0] : x[1]) != shape_.batch || c[0] != h[0] || c[1] != h[1])
    throw ModelLoadError(pte + ": forward's input, h0 and c0 disagree on the batch or layers (a batch_first program given as time-major?)");
  for (const char* method : {kForward, kStep}) {
    if (method == std::string(kStep) && shape_.chunk == 1) break;
    if (Error e = module_->load_method(method); e != Error::Ok)
      throw ModelLoadError(pte + ": cannot load method \"" + method + "\" (" + error_text(e) + "); re-export it");
  }
}

PteLstm::~PteLstm() = default;

void PteLstm::call(int64_t steps, float* x, float* h, float* c, float* out) {
  using executorch::extension::from_blob;
  const PteShape& s = shape_;
  const auto T = static_cast<int32_t>(steps), N = static_cast<int32_t>(s.batch), L = static_cast<int32_t>(s.layers);
  auto xt = s.batch_first ? from_blob(x, {N, T, static_cast<int32_t>(s.input_size)}) : from_blob(x, {T, N, static_cast<int32_t>(s.input_size)});
  auto ht = from_blob(h, {L, N, static_cast<int32_t>(s.proj)});
  auto ct = from_blob(c, {L, N, static_cast<int32_t>(s.hidden)});
  auto result = module_->execute(steps == s.chunk ? kForward : kStep, {xt, ht, ct});
  if (!result.ok()) throw RunError("running " + std::string(steps == s.chunk ? kForward : kStep) + " failed (" + error_text(result.error()) + ")");
  const auto& outputs = *result;
  std::memcpy(out, outputs[0].toTensor().const_data_ptr<float>(), sizeof(float) * steps * s.batch * s.output_size);
  std::memcpy(h, outputs[1].toTensor().const_data_ptr<float>(), sizeof(float) * s.layers * s.batch * s.proj);
  std::memcpy(c, outputs[2].toTensor().const_data_ptr<float>(), sizeof(float) * s.layers * s.batch * s.hidden);
}

std::vector<float> PteLstm::run(const std::vector<float>& x, int64_t steps, std::vector<float>& h, std::vector<float>& c) {
  const PteShape& s = shape_;
  std::vector<float> output(static_cast<size_t>(steps * s.batch * s.output_size));
  std::vector<float> xs(static_cast<size_t>(s.chunk * s.batch * s.input_size)), ys(static_cast<size_t>(s.chunk * s.batch * s.output_size));
  for (int64_t t0 = 0; t0 < steps;) {
    const int64_t len = steps - t0 >= s.chunk ? s.chunk : 1;
    // gather the chunk's rows: time-major, one slice; batch-major, one slice per sequence
    const int64_t rows = s.batch_first ? s.batch : 1, per_in = len * s.input_size * (s.batch_first ? 1 : s.batch);
    const int64_t per_out = len * s.output_size * (s.batch_first ? 1 : s.batch);
    for (int64_t n = 0; n < rows; ++n) {
      const int64_t from = s.batch_first ? (n * steps + t0) * s.input_size : t0 * s.batch * s.input_size;
      std::memcpy(xs.data() + n * per_in, x.data() + from, sizeof(float) * per_in);
    }
    call(len, xs.data(), h.data(), c.data(), ys.data());
    for (int64_t n = 0; n < rows; ++n) {
      const int64_t to = s.batch_first ? (n * steps + t0) * s.output_size : t0 * s.batch * s.output_size;
      std::memcpy(output.data() + to, ys.data() + n * per_out, sizeof(float) * per_out);
    }
    t0 += len;
  }
  return output;
}

}  // namespace deploy_lstm
