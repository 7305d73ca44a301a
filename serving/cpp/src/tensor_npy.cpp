#include "deploy_lstm/tensor_npy.h"

namespace deploy_lstm {

torch::Tensor npy_to_tensor(const NpyArray& array) {
  const auto dtype = array.dtype == NpyDtype::kFloat32   ? torch::kFloat32
                     : array.dtype == NpyDtype::kFloat64 ? torch::kFloat64
                                                         : torch::kInt64;
  // from_blob does not copy; clone so the tensor owns its memory.
  return torch::from_blob(const_cast<char*>(array.data.data()), array.shape, torch::TensorOptions().dtype(dtype))
      .clone();
}

NpyArray tensor_to_npy(const torch::Tensor& tensor) {
  const torch::Tensor c = tensor.contiguous();
  NpyArray array;
  if (c.scalar_type() == torch::kFloat32) {
    array.dtype = NpyDtype::kFloat32;
  } else if (c.scalar_type() == torch::kFloat64) {
    array.dtype = NpyDtype::kFloat64;
  } else if (c.scalar_type() == torch::kInt64) {
    array.dtype = NpyDtype::kInt64;
  } else {
    throw NpyError("cannot write a tensor of dtype " + dtype_name(c.scalar_type()) +
                   " as .npy: supported are float32, float64 and int64");
  }
  array.shape.assign(c.sizes().begin(), c.sizes().end());
  const auto* bytes = static_cast<const char*>(c.data_ptr());
  array.data.assign(bytes, bytes + c.numel() * c.element_size());
  return array;
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return "float32";
    case c10::ScalarType::Double: return "float64";
    case c10::ScalarType::Half: return "float16";
    case c10::ScalarType::BFloat16: return "bfloat16";
    case c10::ScalarType::Long: return "int64";
    case c10::ScalarType::Int: return "int32";
    case c10::ScalarType::Short: return "int16";
    case c10::ScalarType::Char: return "int8";
    case c10::ScalarType::Byte: return "uint8";
    case c10::ScalarType::Bool: return "bool";
    default: return c10::toString(dtype);
  }
}

std::string describe(const torch::Tensor& tensor) {
  if (!tensor.defined()) return "undefined";
  return shape_string(tensor.sizes().vec()) + " " + dtype_name(tensor.scalar_type());
}

void check_tensors(const IoSpec& io, const std::vector<torch::Tensor>& inputs) {
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::string> dtypes;
  for (const torch::Tensor& t : inputs) {
    shapes.push_back(t.sizes().vec());
    dtypes.push_back(dtype_name(t.scalar_type()));
  }
  io.check_inputs(shapes, dtypes);
}

}  // namespace deploy_lstm
