// deploy_lstm::fused_lstm in C++: the custom op that an AOTInductor package exported with
// the "fused" route (deploy_lstm.export_aoti, the default for cell="lstm") calls by name.
//
// Linking libdeploy_lstm_ops registers the op (TORCH_LIBRARY in fused_lstm_op.cpp) when
// the library loads; the schema must stay exactly deploy_lstm.tracing.FUSED_LSTM_SCHEMA.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace deploy_lstm {

// The registered schema (same string as the Python op's).
inline constexpr const char* kFusedLstmSchema =
    "deploy_lstm::fused_lstm(Tensor input, Tensor h0, Tensor c0, Tensor[] weights, Tensor? lengths, "
    "bool has_biases, int num_layers, bool bidirectional) -> (Tensor, Tensor, Tensor)";

// nn.LSTM's layer stack in eval mode (at::lstm), time-major: input (T, N, I), h0 (L*D, N, P),
// c0 (L*D, N, H), weights in nn.LSTM's _flat_weights order, lengths none or int64 (N,) each
// in 1..T (through a packed batch: zeros past each length, states at each last step).
// Returns output (T, N, D*P), h_n, c_n.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_lstm(const at::Tensor& input, const at::Tensor& h0,
                                                          const at::Tensor& c0, at::TensorList weights,
                                                          const std::optional<at::Tensor>& lengths, bool has_biases,
                                                          int64_t num_layers, bool bidirectional);

}  // namespace deploy_lstm
