"""The custom ops deploy_lstm registers with torch: ``deploy_lstm::onnx_lstm`` and ``deploy_lstm::fused_lstm``.

Both the exporters (which trace calls to them) and the runtimes (which run AOTInductor
packages that call ``fused_lstm`` by name) import this module; neither imports the other.
"""

from __future__ import annotations

from typing import List, Optional, Tuple
import torch
from torch import Tensor
from deploy_lstm.nn.aten import aten_lstm
from deploy_lstm.nn.gates import from_onnx_gate_order
from deploy_lstm.nn.recurrence import (
    LSTM_CELL,
    PEEPHOLE,
    length_mask,
    lstm_direction,
    project_input,
)


@torch.library.custom_op("deploy_lstm::onnx_lstm", mutates_args=())
def onnx_lstm(
    x: Tensor,
    w: Tensor,
    r: Tensor,
    b: Tensor,
    sequence_lens: Optional[Tensor],
    initial_h: Tensor,
    initial_c: Tensor,
    hidden_size: int,
    bidirectional: bool,
    p: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """ONNX ``LSTM`` (opset 7+ semantics, layout 0) computed in PyTorch.

    x (T, N, I); w (D, 4H, I); r (D, 4H, H); b (D, 8H); sequence_lens (N,);
    initial_h/c (D, N, H); p (D, 3H) peepholes or None.  Returns Y (T, D, N, H),
    Y_h and Y_c (D, N, H).
    """
    H = hidden_size
    mask = None if sequence_lens is None else length_mask(x.size(0), sequence_lens, x.device)
    empty = x.new_empty(0)
    ys, hs, cs = [], [], []
    for d in range(w.size(0)):
        bias = from_onnx_gate_order(b[d, : 4 * H], H) + from_onnx_gate_order(b[d, 4 * H :], H)
        xw = project_input(x, from_onnx_gate_order(w[d], H), bias, LSTM_CELL, empty)
        cell, ex = (PEEPHOLE, p[d]) if p is not None else (LSTM_CELL, empty)
        y, h, c = lstm_direction(xw, initial_h[d], initial_c[d], from_onnx_gate_order(r[d], H), None, mask, d == 1, cell, ex)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    return torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)


@onnx_lstm.register_fake
def _onnx_lstm_fake(x, w, r, b, sequence_lens, initial_h, initial_c, hidden_size, bidirectional, p=None):  # type: ignore[no-untyped-def]
    y = x.new_empty(x.shape[0], w.shape[0], x.shape[1], hidden_size)
    return y, initial_h.new_empty(initial_h.shape), initial_c.new_empty(initial_c.shape)


#: its schema, given explicitly (inferred from the signature, ``num_layers`` would be a
#: ``SymInt``); the C++ registration (serving/cpp/aoti/fused_lstm_op.h) declares exactly this string
FUSED_LSTM_SCHEMA = (
    "deploy_lstm::fused_lstm(Tensor input, Tensor h0, Tensor c0, Tensor[] weights, Tensor? lengths, "
    "bool has_biases, int num_layers, bool bidirectional) -> (Tensor, Tensor, Tensor)"
)


@torch.library.custom_op(
    "deploy_lstm::fused_lstm", mutates_args=(), schema=FUSED_LSTM_SCHEMA[len("deploy_lstm::fused_lstm") :]
)
def fused_lstm(
    input: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights: List[Tensor],
    lengths: Optional[Tensor],
    has_biases: bool,
    num_layers: int,
    bidirectional: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """nn.LSTM's layer stack in eval mode (aten::lstm), time-major.

    input (T, N, I); h0 (L*D, N, P) with P = proj_size or hidden_size; c0 (L*D, N, H);
    weights in nn.LSTM's ``_flat_weights`` order; lengths None or int64 (N,), each in
    1..T, through a packed batch exactly as ``LSTM``'s fused path (:func:`aten_lstm`:
    zeros past each length, states at each sequence's last step).  Returns output
    (T, N, D*P), h_n, c_n.
    """
    return aten_lstm(input, h0, c0, weights, lengths, has_biases, num_layers, 0.0, False, bidirectional)


@fused_lstm.register_fake
def _fused_lstm_fake(input, h0, c0, weights, lengths, has_biases, num_layers, bidirectional):  # type: ignore[no-untyped-def]
    D = 2 if bidirectional else 1
    out = input.new_empty(input.shape[0], input.shape[1], D * h0.shape[2])  # (T, N, D*P)
    return out, h0.new_empty(h0.shape), c0.new_empty(c0.shape)
