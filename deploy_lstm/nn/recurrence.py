"""The LSTM recurrence, written once: weight access, the input projection, one cell
step, the length mask and the rule that applies it.

The eager loop (:func:`lstm_direction`), ``LSTMCell``, and every exported loop body
(the ``scan`` step, the scripted ``Loop`` body of the exporters' stand-ins) call these same
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
    "CELLS",
    "cell_code",
    "cell_parameter_shapes",
    "stack_parameter_shapes",
    "cell_weights",
    "layer_norm",
    "length_mask",
    "project_input",
    "cell_step",
    "hold_past_end",
    "zero_past_end",
    "lstm_direction",
]


#: the cells: "lstm" is nn.LSTM's; the variants' equations are in :func:`cell_step`
CELLS = ("lstm", "peephole", "layernorm", "cell_gated")
LSTM_CELL, PEEPHOLE, LAYERNORM, CELL_GATED = 0, 1, 2, 3  # cell codes (an int for TorchScript)


def cell_code(cell: str) -> int:
    """The code of a cell name.

    Raises:
        ValueError: an unknown cell.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(repr(c) for c in CELLS)}")
    return CELLS.index(cell)


def cell_parameter_shapes(
    cell: str, input_size: int, hidden_size: int, real_hidden: int, bias: bool, proj_size: int
) -> List[Tuple[str, List[int]]]:
    """(name without the ``_l{k}`` suffix, shape) of one cell's parameters, in order.

    nn.LSTM's first (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, ``weight_hr``),
    then the variant's: ``weight_ph`` (3H,) for "peephole" (ONNX order i, o, f); six layer
    norm vectors for "layernorm"; "cell_gated" has ``weight_ch`` (3H, H) and ``bias_ch``
    (3H,) (gates i, f, o read c) in place of ``weight_hh``/``bias_hh``.
    """
    H = hidden_size
    gated = cell == "cell_gated"
    shapes = [("weight_ih", [4 * H, input_size]), ("weight_ch", [3 * H, H]) if gated else ("weight_hh", [4 * H, real_hidden])]
    if bias:
        shapes += [("bias_ih", [4 * H]), ("bias_ch", [3 * H]) if gated else ("bias_hh", [4 * H])]
    if proj_size > 0:
        shapes.append(("weight_hr", [proj_size, H]))
    if cell == "peephole":
        shapes.append(("weight_ph", [3 * H]))
    if cell == "layernorm":
        shapes += [(f"ln_{part}_{kind}", [n]) for part, n in (("ih", 4 * H), ("hh", 4 * H), ("c", H)) for kind in ("weight", "bias")]
    return shapes


def stack_parameter_shapes(
    cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool, bidirectional: bool, proj_size: int
) -> List[Tuple[str, List[int]]]:
    """(name, shape) of every parameter of a layer stack, in nn.LSTM's flat order: per
    layer and direction, :func:`cell_parameter_shapes` with the suffix ``_l{k}`` (and
    ``_reverse`` for the reverse direction)."""
    real_hidden = proj_size if proj_size > 0 else hidden_size
    num_directions = 2 if bidirectional else 1
    shapes: List[Tuple[str, List[int]]] = []
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else real_hidden * num_directions
        for direction in range(num_directions):
            sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            cell_shapes = cell_parameter_shapes(cell, layer_input, hidden_size, real_hidden, bias, proj_size)
            shapes += [(name + sfx, shape) for name, shape in cell_shapes]
    return shapes


def cell_weights(
    weights: List[Tensor], index: int, per_cell: int, has_bias: bool, has_proj: bool, cell: int
) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor], Tensor, Tensor]:
    """The weights of cell ``index`` (= layer * num_directions + direction).

    ``weights`` is the flat list of :func:`cell_parameter_shapes` per cell (``nn.LSTM``'s
    flat list for the plain cell).

    Returns:
        (w_ih (4H, I), w_hh (4H, P) -- ``weight_ch`` (3H, H) for "cell_gated" --,
        the summed bias (4H,) or None, w_hr (P, H) or None,
        ``ex_in``: what the input projection needs besides (layer norm ``ln_ih``, else empty),
        ``ex_step``: what the step needs besides (peepholes, or layer norm ``ln_hh``/``ln_c``, else empty)).
    """
    base = index * per_cell
    w_ih = weights[base]
    bias: Optional[Tensor] = None
    nxt = base + 2
    if has_bias:
        b_ih = weights[base + 2]
        b_rec = weights[base + 3]
        if cell == 3:  # CELL_GATED (TorchScript cannot read module globals)
            H = b_rec.size(0) // 3  # bias_ch rows i, f, o -> i, f, (no g), o
            b_rec = torch.cat([b_rec[: 2 * H], b_rec.new_zeros(H), b_rec[2 * H :]])
        bias = b_ih + b_rec
        nxt = base + 4
    w_hr: Optional[Tensor] = None
    if has_proj:
        w_hr = weights[nxt]
        nxt += 1
    empty = w_ih.new_empty(0)
    ex_in = empty
    ex_step = empty
    if cell == 1:  # PEEPHOLE
        ex_step = weights[nxt]
    elif cell == 2:  # LAYERNORM
        ex_in = torch.cat([weights[nxt], weights[nxt + 1]])  # ln_ih weight, bias (8H,)
        ex_step = torch.cat(weights[nxt + 2 : nxt + 6])  # ln_hh weight, bias, ln_c weight, bias (10H,)
    return w_ih, weights[base + 1], bias, w_hr, ex_in, ex_step


def length_mask(steps: int, lengths: Tensor, device: torch.device) -> Tensor:
    """(T, N, 1) bool: True where step t lies inside sequence n (t < lengths[n])."""
    t = torch.arange(steps, device=device, dtype=torch.int64).unsqueeze(1)  # (T, 1)
    return (t < lengths.to(device=device, dtype=torch.int64).unsqueeze(0)).unsqueeze(2)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``F.layer_norm`` over the last dim (eps 1e-5), written out: the TorchScript ONNX
    exporter cannot take ``F.layer_norm`` inside a loop, whose normalized shape is not
    constant there."""
    mean = x.mean(-1, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdim=True)
    return centered * torch.rsqrt(var + 1e-5) * weight + bias


def project_input(x: Tensor, w_ih: Tensor, bias: Optional[Tensor], cell: int, ex_in: Tensor) -> Tensor:
    """Every step's input projection at once: (T, N, I) -> (T, N, 4H), bias included.

    For the "layernorm" cell, ``ex_in`` is ``ln_ih`` (weight, bias; 8H), applied to
    ``x @ w_ih.T`` before the bias.
    """
    x2 = x.reshape(-1, x.size(2))  # (T*N, I)
    if cell == 2:  # LAYERNORM
        G = w_ih.size(0)  # 4H
        xw = layer_norm(torch.mm(x2, w_ih.t()), ex_in[:G], ex_in[G:])
        if bias is not None:
            xw = xw + bias
    elif bias is not None:
        xw = torch.addmm(bias, x2, w_ih.t())
    else:
        xw = torch.mm(x2, w_ih.t())
    return xw.view(x.size(0), x.size(1), -1)  # (T, N, 4H)


def cell_step(
    xw_t: Tensor, h: Tensor, c: Tensor, w_hh_t: Tensor, w_hr_t: Optional[Tensor], cell: int, ex: Tensor
) -> Tuple[Tensor, Tensor]:
    """One step from the projected input ``xw_t`` (N, 4H), gates i, f, g, o.

    ``w_hh_t`` (P, 4H) and ``w_hr_t`` (H, P) come transposed, once per sequence; ``ex``
    holds the variant's step parameters (:func:`cell_weights`).  sigma = sigmoid:

    * "lstm": gates = xw + h R; c' = sigma(f) c + sigma(i) tanh(g); h' = sigma(o) tanh(c').
    * "peephole" (ONNX ``LSTM`` with ``P`` = ``ex`` = [p_i, p_o, p_f]): i += p_i c,
      f += p_f c, then c' as above, o += p_o c' (the new cell state); h' = sigma(o) tanh(c').
    * "layernorm" (custom_lstms.py's LayerNormLSTMCell): gates = xw + LN_hh(h R);
      c' = LN_c(sigma(f) c + sigma(i) tanh(g)); h' = sigma(o) tanh(c').
    * "cell_gated" (the peephole LSTM of Wikipedia; ``w_hh_t`` is ``weight_ch``.T (H, 3H)):
      i, f, o = sigma(xw_{i,f,o} + c U_{i,f,o}); c' = f c + i tanh(xw_g); h' = tanh(o c').

    With a projection h' becomes h' W_hr.T.  Returns (h' (N, P), c' (N, H)).
    """
    H = c.size(1)
    if cell == 3:  # CELL_GATED (TorchScript cannot read module globals)
        rec = torch.mm(c, w_hh_t)  # (N, 3H): i, f, o
        ingate = torch.sigmoid(xw_t[:, :H] + rec[:, :H])
        forgetgate = torch.sigmoid(xw_t[:, H : 2 * H] + rec[:, H : 2 * H])
        cellgate = torch.tanh(xw_t[:, 2 * H : 3 * H])
        outgate = torch.sigmoid(xw_t[:, 3 * H :] + rec[:, 2 * H :])
        c_new = torch.addcmul(forgetgate * c, ingate, cellgate)  # (N, H)
        return torch.tanh(outgate * c_new), c_new
    if cell == 2:  # LAYERNORM
        gates = xw_t + layer_norm(torch.mm(h, w_hh_t), ex[: 4 * H], ex[4 * H : 8 * H])
    else:
        gates = torch.addmm(xw_t, h, w_hh_t)  # (N, 4H)
    ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
    if cell == 1:  # PEEPHOLE
        ingate = torch.addcmul(ingate, ex[:H], c)
        forgetgate = torch.addcmul(forgetgate, ex[2 * H :], c)
    c_new = torch.addcmul(
        torch.sigmoid(forgetgate) * c, torch.sigmoid(ingate), torch.tanh(cellgate)
    )  # (N, H)
    if cell == 2:  # LAYERNORM
        c_new = layer_norm(c_new, ex[8 * H : 9 * H], ex[9 * H :])
    if cell == 1:  # PEEPHOLE
        outgate = torch.addcmul(outgate, ex[H : 2 * H], c_new)
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
    cell: int,
    ex: Tensor,
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
        cell, ex: the cell's code and its step parameters (:func:`cell_weights`).

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
        h_new, c_new = cell_step(xw[t], h, c, w_hh_t, w_hr_t, cell, ex)
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
