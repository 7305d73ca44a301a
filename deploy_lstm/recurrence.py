"""The LSTM recurrence, written once: weight access, the input projection, one cell
step, the length mask and the rule that applies it.

The eager loop (:func:`lstm_direction`), ``LSTMCell``, and every exported loop body
(the ``scan`` step, the scripted ``Loop`` body; see ``tracing.py``) call these same
functions, so all backends compute one thing.  Everything here compiles with
``torch.jit.script``.

The mask rule: where a step lies past its sequence's length, the state is held
with ``torch.where`` (never blended arithmetically) and the output is zero.  So
whatever the padding holds -- NaN and inf included -- it never reaches the state
or the output, as with ``nn.LSTM`` on a packed batch.
"""

# No `from __future__ import annotations`: TorchScript needs real annotation objects.
from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "cell_weights",
    "length_mask",
    "project_input",
    "cell_step",
    "hold_past_end",
    "zero_past_end",
    "lstm_direction",
]


def cell_weights(
    weights: List[Tensor], index: int, per_cell: int, has_bias: bool, has_proj: bool
) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """The weights of cell ``index`` (= layer * num_directions + direction).

    ``weights`` is ``nn.LSTM``'s flat list: per cell ``weight_ih``, ``weight_hh``
    [, ``bias_ih``, ``bias_hh``] [, ``weight_hr``].

    Returns:
        (w_ih (4H, I), w_hh (4H, P), bias_ih + bias_hh (4H,) or None, w_hr (P, H) or None).
    """
    base = index * per_cell
    bias: Optional[Tensor] = None
    if has_bias:
        bias = weights[base + 2] + weights[base + 3]
    w_hr: Optional[Tensor] = None
    if has_proj:
        w_hr = weights[base + per_cell - 1]
    return weights[base], weights[base + 1], bias, w_hr


def length_mask(steps: int, lengths: Tensor, device: torch.device) -> Tensor:
    """(T, N, 1) bool: True where step t lies inside sequence n (t < lengths[n])."""
    t = torch.arange(steps, device=device, dtype=torch.int64).unsqueeze(1)  # (T, 1)
    return (t < lengths.to(device=device, dtype=torch.int64).unsqueeze(0)).unsqueeze(2)


def project_input(x: Tensor, w_ih: Tensor, bias: Optional[Tensor]) -> Tensor:
    """Every step's input projection at once: (T, N, I) -> (T, N, 4H), bias included."""
    x2 = x.reshape(-1, x.size(2))  # (T*N, I)
    if bias is not None:
        xw = torch.addmm(bias, x2, w_ih.t())
    else:
        xw = torch.mm(x2, w_ih.t())
    return xw.view(x.size(0), x.size(1), -1)  # (T, N, 4H)


def cell_step(
    xw_t: Tensor, h: Tensor, c: Tensor, w_hh_t: Tensor, w_hr_t: Optional[Tensor]
) -> Tuple[Tensor, Tensor]:
    """One LSTM step from the projected input ``xw_t`` (N, 4H), gates i, f, g, o.

    ``w_hh_t`` (P, 4H) and ``w_hr_t`` (H, P) come transposed, once per sequence.
    Returns (h' (N, P), c' (N, H)).
    """
    gates = torch.addmm(xw_t, h, w_hh_t)  # (N, 4H)
    ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
    c_new = torch.addcmul(
        torch.sigmoid(forgetgate) * c, torch.sigmoid(ingate), torch.tanh(cellgate)
    )  # (N, H)
    h_new = torch.sigmoid(outgate) * torch.tanh(c_new)  # (N, H)
    if w_hr_t is not None:
        h_new = torch.mm(h_new, w_hr_t)  # (N, P)
    return h_new, c_new


def hold_past_end(m: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """The state rule: ``new`` where ``m`` (N, 1) is True, else ``old`` unchanged."""
    return torch.where(m, new, old)


def zero_past_end(m: Tensor, y: Tensor) -> Tensor:
    """The output rule: ``y`` where ``m`` is True, else 0 (``m`` broadcasts to ``y``)."""
    return y.masked_fill(m.logical_not(), 0.0)


def lstm_direction(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh: Tensor,
    w_hr: Optional[Tensor],
    mask: Optional[Tensor],
    reverse: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Run one direction of one layer over a projected, time-major sequence.

    Args:
        xw: (T, N, 4H) input projection (:func:`project_input`).
        h: (N, P) initial hidden state (P = proj_size or hidden_size).
        c: (N, H) initial cell state.
        w_hh: (4H, P) recurrent weights, gates in nn.LSTM order i, f, g, o.
        w_hr: (P, H) projection, or None.
        mask: (T, N, 1) bool from :func:`length_mask`, or None.
        reverse: run from the last step to the first.

    Returns:
        (output (T, N, P), h_n (N, P), c_n (N, H)).  Past each sequence's end the
        output is zero and the state is held, so the forward direction stops at
        each sequence's end and the reverse direction starts at its own last step.
    """
    w_hh_t = w_hh.t()  # (P, 4H)
    w_hr_t: Optional[Tensor] = None
    if w_hr is not None:
        w_hr_t = w_hr.t()  # (H, P)
    T = xw.size(0)
    outputs: List[Tensor] = []
    for s in range(T):
        t = T - 1 - s if reverse else s
        h_new, c_new = cell_step(xw[t], h, c, w_hh_t, w_hr_t)
        if mask is not None:
            h = hold_past_end(mask[t], h_new, h)
            c = hold_past_end(mask[t], c_new, c)
        else:
            h = h_new
            c = c_new
        outputs.append(h)
    if reverse:
        outputs.reverse()
    out = torch.stack(outputs)  # (T, N, P)
    if mask is not None:
        out = zero_past_end(mask, out)
    return out, h, c
