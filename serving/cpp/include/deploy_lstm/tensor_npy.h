// torch::Tensor <-> NpyArray, and the dtype vocabulary of messages (numpy's names).
#pragma once

#include <torch/script.h>

#include <string>
#include <vector>

#include "deploy_lstm/io_spec.h"
#include "deploy_lstm/npy.h"

namespace deploy_lstm {

// A tensor that owns a copy of the array's data (float32, float64 or int64).
torch::Tensor npy_to_tensor(const NpyArray& array);

// The tensor as an array (made contiguous).  Throws NpyError for a dtype .npy
// files are not written in here (anything but float32, float64, int64).
NpyArray tensor_to_npy(const torch::Tensor& tensor);

// numpy's name of a dtype: "float32", "float64", "int64", "int32", "bool", ...
std::string dtype_name(c10::ScalarType dtype);

// "(2, 3) float32", for messages and logs.
std::string describe(const torch::Tensor& tensor);

// IoSpec::check_inputs on tensors (their shapes and numpy dtype names).  Throws InputError.
void check_tensors(const IoSpec& io, const std::vector<torch::Tensor>& inputs);

}  // namespace deploy_lstm
