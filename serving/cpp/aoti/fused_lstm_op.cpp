// deploy_lstm::fused_lstm registered with the dispatcher for C++ processes (no Python):
// the same schema and computation as deploy_lstm/tracing.py's torch.library.custom_op.
#include "fused_lstm_op.h"

#include <torch/library.h>

namespace deploy_lstm {

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_lstm(const at::Tensor& input, const at::Tensor& h0,
                                                          const at::Tensor& c0, at::TensorList weights,
                                                          const std::optional<at::Tensor>& lengths, bool has_biases,
                                                          int64_t num_layers, bool bidirectional) {
  if (!lengths.has_value()) {
    return at::lstm(input, {h0, c0}, weights, has_biases, num_layers, /*dropout=*/0.0, /*train=*/false, bidirectional,
                    /*batch_first=*/false);
  }
  // A packed batch, as nn.LSTM on pack_padded_sequence(..., enforce_sorted=False).
  auto [sorted_lengths, order] = at::sort(lengths->cpu(), /*dim=*/0, /*descending=*/true);
  order = order.to(input.device());
  auto [data, batch_sizes] = at::_pack_padded_sequence(input.index_select(1, order), sorted_lengths,
                                                       /*batch_first=*/false);
  auto [out, h_n, c_n] = at::lstm(data, batch_sizes, {h0.index_select(1, order), c0.index_select(1, order)}, weights,
                                  has_biases, num_layers, /*dropout=*/0.0, /*train=*/false, bidirectional);
  auto padded = std::get<0>(at::_pad_packed_sequence(out, batch_sizes, /*batch_first=*/false, /*padding_value=*/0.0,
                                                     /*total_length=*/input.size(0)));  // (T, N, D*P)
  const at::Tensor inverse = at::argsort(order);
  return {padded.index_select(1, inverse), h_n.index_select(1, inverse), c_n.index_select(1, inverse)};
}

}  // namespace deploy_lstm

TORCH_LIBRARY(deploy_lstm, m) { m.def(deploy_lstm::kFusedLstmSchema); }

TORCH_LIBRARY_IMPL(deploy_lstm, CPU, m) { m.impl("fused_lstm", &deploy_lstm::fused_lstm); }
