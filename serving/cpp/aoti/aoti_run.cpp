// Run an AOTInductor package written by deploy_lstm.aoti.export_aoti.
// Tensor files: int64 ndim, int64 dims[ndim], then the data (float32; int64 for a
// file whose name ends in ".i64", e.g. lengths).  Outputs are float32 files
// <out_prefix>0.bin, <out_prefix>1.bin, ... (output, hn, cn).
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

static torch::Tensor read_tensor(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  int64_t ndim = 0;
  f.read(reinterpret_cast<char*>(&ndim), sizeof ndim);
  if (!f || ndim < 0 || ndim > 8) throw std::runtime_error(path + ": bad header");
  std::vector<int64_t> dims(ndim);
  f.read(reinterpret_cast<char*>(dims.data()), ndim * sizeof(int64_t));
  bool is_int = path.size() > 4 && path.compare(path.size() - 4, 4, ".i64") == 0;
  auto t = torch::empty(dims, is_int ? torch::kInt64 : torch::kFloat32);
  f.read(reinterpret_cast<char*>(t.data_ptr()), t.nbytes());
  if (!f) throw std::runtime_error(path + ": truncated data");
  return t;
}

static void write_tensor(const std::string& path, const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kFloat32);
  std::ofstream f(path, std::ios::binary);
  int64_t ndim = c.dim();
  f.write(reinterpret_cast<const char*>(&ndim), sizeof ndim);
  f.write(reinterpret_cast<const char*>(c.sizes().data()), ndim * sizeof(int64_t));
  f.write(reinterpret_cast<const char*>(c.data_ptr()), c.nbytes());
  if (!f) throw std::runtime_error("cannot write " + path);
}

int main(int argc, char** argv) {
  if (argc < 6) {
    std::cerr << "usage: aoti_run model.pt2 input.bin h0.bin c0.bin [lengths.i64] out_prefix\n";
    return 2;
  }
  try {
    torch::inductor::AOTIModelPackageLoader loader(argv[1]);
    std::vector<torch::Tensor> inputs;
    for (int i = 2; i < argc - 1; ++i) inputs.push_back(read_tensor(argv[i]));
    std::vector<torch::Tensor> outputs = loader.run(inputs);
    std::string prefix = argv[argc - 1];
    for (size_t i = 0; i < outputs.size(); ++i) write_tensor(prefix + std::to_string(i) + ".bin", outputs[i]);
    std::cout << outputs.size() << " outputs written\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
