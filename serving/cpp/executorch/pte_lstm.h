// An LSTM exported to ExecuTorch (deploy_lstm.exporters.executorch: model.pte), streamed chunk by
// chunk without libtorch.  The program's method "forward"(input, h0, c0) -> (output, hn, cn) runs
// `chunk` time steps of `batch` sequences; with chunk > 1, "step" runs one step (the remainder).
// A whole model with that signature (a head around the LSTM, export_executorch(model, path,
// example_inputs=...)) streams the same way; its output features are read from the program.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace executorch::extension::module {
class Module;
}

namespace deploy_lstm {

// What the program's methods take, read from the method metadata.
struct PteShape {
  int64_t chunk = 1;       // time steps of "forward"
  int64_t batch = 1;       // sequences per call
  int64_t input_size = 0;  // I
  int64_t layers = 0;      // L
  int64_t proj = 0;        // P: features of h and of the output (hidden_size, or proj_size)
  int64_t hidden = 0;      // H: features of c
  int64_t output_size = 0; // features of each output step: P for a bare LSTM, a whole model's own (a head's)
  bool batch_first = false;
};

// The model a tool was given: a .pte, or an export folder's model.pte, checked against the folder's
// manifest (size and SHA-256) first; batch_first comes from the manifest (or the caller, for a .pte).
struct PteSource {
  std::string pte;
  bool batch_first = false;
};

// `path` a .pte file or an export folder holding an executorch artifact.  Throws ModelLoadError
// (missing, changed, no executorch artifact) naming the file.
PteSource resolve_pte(const std::string& path, bool batch_first);

class PteLstm {
 public:
  // Loads `source.pte` and its methods (XNNPACK delegate).  Throws ModelLoadError when it is not
  // a program, lacks "forward" (or "step" for chunk > 1), or its methods are not an LSTM's.
  explicit PteLstm(const PteSource& source);
  ~PteLstm();

  const PteShape& shape() const { return shape_; }

  // One call of "forward" (steps == chunk) or "step" (steps == 1) on contiguous buffers laid out as
  // the method takes them: x (steps, batch, I) or (batch, steps, I); h (L, batch, P), c (L, batch, H)
  // are read and replaced by hn, cn; out receives (steps, batch, output_size) or (batch, steps, output_size).
  // Throws RunError when the runtime fails.
  void call(int64_t steps, float* x, float* h, float* c, float* out);

  // Streams `steps` time steps of x ((T, batch, I), or (batch, T, I) with batch_first) chunk by
  // chunk, the remainder one step at a time, carrying (h, c); returns the output, same layout.
  std::vector<float> run(const std::vector<float>& x, int64_t steps, std::vector<float>& h, std::vector<float>& c);

 private:
  std::unique_ptr<executorch::extension::module::Module> module_;
  PteShape shape_;
};

}  // namespace deploy_lstm
