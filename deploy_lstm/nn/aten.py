"""aten::lstm, the kernel nn.LSTM runs, with ``lengths``: a right-padded batch through a
packed one, written once for ``LSTM``'s fused path and the ``deploy_lstm::fused_lstm`` op.

Compiles with ``torch.jit.script``.
"""

# No `from __future__ import annotations`: TorchScript must see real annotation objects.
from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["aten_lstm"]


def aten_lstm(
    x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor],
    has_biases: bool, num_layers: int, dropout: float, train: bool, bidirectional: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """nn.LSTM's layer stack, time-major, through ``torch.lstm``.

    x (T, N, I); h0 (L*D, N, P) with P = proj_size or hidden_size; c0 (L*D, N, H);
    weights in nn.LSTM's ``_flat_weights`` order; lengths None or int64 (N,), each in
    1..T.  With lengths the batch is sorted by length, packed, run and padded back to T
    in its own order, as nn.LSTM runs ``pack_padded_sequence(..., enforce_sorted=False)``:
    zeros past each length, states at each sequence's last step.

    Returns:
        (output (T, N, D*P), h_n, c_n).
    """
    if lengths is None:
        out, h_n, c_n = torch.lstm(x, [h0, c0], weights, has_biases, num_layers, dropout, train, bidirectional, False)
        return out, h_n, c_n
    sorted_lengths, order = torch.sort(lengths.cpu(), descending=True)
    order = order.to(x.device)
    data, batch_sizes = torch._pack_padded_sequence(x.index_select(1, order), sorted_lengths, False)
    hx = [h0.index_select(1, order), c0.index_select(1, order)]
    out, h_n, c_n = torch.lstm(data, batch_sizes, hx, weights, has_biases, num_layers, dropout, train, bidirectional)
    padded, _ = torch._pad_packed_sequence(out, batch_sizes, False, 0.0, x.size(0))  # (T, N, D*P)
    inverse = torch.argsort(order)
    return padded.index_select(1, inverse), h_n.index_select(1, inverse), c_n.index_select(1, inverse)
