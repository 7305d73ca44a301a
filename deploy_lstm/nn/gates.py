"""Gate order and weight layout between PyTorch (i, f, g, o) and ONNX (i, o, f, c): pure tensor functions."""

from __future__ import annotations

from typing import Dict, Tuple
import torch
from torch import Tensor, nn
from deploy_lstm.nn.lstm import LSTM


def onnx_gate_order(w: Tensor, hidden_size: int) -> Tensor:
    """Reorder gate blocks along dim 0 from PyTorch's (i, f, g, o) to ONNX's (i, o, f, c)."""
    i, f, g, o = w.split(hidden_size, dim=0)
    return torch.cat([i, o, f, g], dim=0)


def from_onnx_gate_order(w: Tensor, hidden_size: int) -> Tensor:
    """Reorder gate blocks along dim 0 from ONNX's (i, o, f, c) back to PyTorch's (i, f, g, o)."""
    i, o, f, c = w.split(hidden_size, dim=0)
    return torch.cat([i, f, c, o], dim=0)


def onnx_weights(lstm: LSTM | nn.LSTM) -> Dict[int, Tuple[Tensor, Tensor, Tensor]]:
    """ONNX ``LSTM`` inputs ``W``, ``R``, ``B`` for each layer of a projection-free LSTM.

    Returns:
        {layer: (W (D, 4H, I), R (D, 4H, H), B (D, 8H))}, gates in ONNX order, biases
        ``[Wb, Rb]`` (zeros when the LSTM has no bias), directions forward then reverse.
    """
    if lstm.proj_size > 0:
        raise ValueError("the ONNX LSTM operator has no projection; proj_size must be 0")
    H = lstm.hidden_size
    dirs = ["", "_reverse"] if lstm.bidirectional else [""]
    out: Dict[int, Tuple[Tensor, Tensor, Tensor]] = {}
    for layer in range(lstm.num_layers):
        Ws, Rs, Bs = [], [], []
        for sfx in dirs:
            w_ih = getattr(lstm, f"weight_ih_l{layer}{sfx}")
            w_hh = getattr(lstm, f"weight_hh_l{layer}{sfx}")
            Ws.append(onnx_gate_order(w_ih, H))
            Rs.append(onnx_gate_order(w_hh, H))
            if lstm.bias:
                b_ih = getattr(lstm, f"bias_ih_l{layer}{sfx}")
                b_hh = getattr(lstm, f"bias_hh_l{layer}{sfx}")
                Bs.append(torch.cat([onnx_gate_order(b_ih, H), onnx_gate_order(b_hh, H)]))
            else:
                Bs.append(w_ih.new_zeros(8 * H))
        out[layer] = (torch.stack(Ws), torch.stack(Rs), torch.stack(Bs))
    return out
