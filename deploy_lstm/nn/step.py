"""The streaming step kernel: one time step of nn.LSTM's cell over weights packed once.

Per layer, [W_ih | W_hh] with its summed bias is packed once, split by gates into two
halves ([i, f] and [o, g]), so a step is one ``baddbmm`` (two GEMMs on two threads) and
the cell update writes straight into the caller's ``h`` and ``c``.  ``LSTM.step_`` runs
it; the packing is redone only when a weight changes.  The kernel and the packing
compile with ``torch.jit.script``.
"""

# No `from __future__ import annotations`: TorchScript must see real annotation objects.
from typing import List, Optional

import torch
from torch import Tensor

from deploy_lstm.nn.recurrence import cell_weights

__all__ = ["StepCache", "pack_step_weights", "step_in_place", "weights_key"]


class StepCache:
    """Eager mode's packed step weights and the parameter key they were packed from
    (a plain object: TorchScript leaves it out of the scripted module)."""

    def __init__(self, key: Optional[List[int]] = None, packed: Optional[List[Tensor]] = None) -> None:
        self.key = key
        self.packed = packed if packed is not None else []


def weights_key(weights: List[Tensor]) -> List[int]:
    """Identity and version of every weight: changes when a weight does (eager mode only)."""
    return [id(w) for w in weights] + [w._version for w in weights]


def pack_step_weights(
    weights: List[Tensor], num_layers: int, per_cell: int, has_bias: bool, has_proj: bool, hidden_size: int
) -> List[Tensor]:
    """Three tensors per layer of a unidirectional nn.LSTM-cell stack: the gate halves
    (2, I_l + P, 2H), their bias (2, 1, 2H) and the transposed projection (H, P) (empty
    without one), detached from autograd."""
    H = hidden_size
    packed: List[Tensor] = []
    for layer in range(num_layers):
        w_ih, w_hh, bias, w_hr, _, _ = cell_weights(weights, layer, per_cell, has_bias, has_proj, 0)  # 0 = LSTM_CELL
        w = torch.cat([w_ih, w_hh], 1).detach()  # (4H, I_l + P), rows i, f, g, o
        b = bias.detach() if bias is not None else w.new_zeros(4 * H)  # (4H,)
        halves = torch.stack([w[: 2 * H], torch.cat([w[3 * H :], w[2 * H : 3 * H]])])  # (2, 2H, K): [i f], [o g]
        bh = torch.stack([b[: 2 * H], torch.cat([b[3 * H :], b[2 * H : 3 * H]])])  # (2, 2H)
        packed.append(halves.transpose(1, 2).contiguous())  # (2, K, 2H)
        packed.append(bh.unsqueeze(1).contiguous())  # (2, 1, 2H)
        packed.append(w_hr.detach().t().contiguous() if w_hr is not None else w.new_empty(0))  # (H, P)
    return packed


def step_in_place(input: Tensor, h: Tensor, c: Tensor, packed: List[Tensor], num_layers: int, has_proj: bool) -> Tensor:
    """One step of the stack over ``packed`` (:func:`pack_step_weights`): ``h`` (L, N, P)
    and ``c`` (L, N, H) are overwritten with the new state.  Returns the output
    (N, P), a view of ``h[-1]``."""
    N = input.size(0)
    layer_input = input  # (N, I)
    for layer in range(num_layers):
        xh = torch.cat([layer_input, h[layer]], 1)  # (N, I_l + P)
        gates = torch.baddbmm(packed[3 * layer + 1], xh.expand(2, N, xh.size(1)), packed[3 * layer])  # (2, N, 2H)
        ingate, forgetgate = torch.sigmoid(gates[0]).chunk(2, 1)  # (N, H) each
        outgate, cellgate = gates[1].chunk(2, 1)
        c_l = c[layer]  # (N, H), written in place
        torch.addcmul(forgetgate * c_l, ingate, torch.tanh(cellgate), out=c_l)
        h_l = h[layer]  # (N, P), written in place
        if has_proj:
            torch.mm(torch.sigmoid(outgate) * torch.tanh(c_l), packed[3 * layer + 2], out=h_l)
        else:
            torch.mul(torch.sigmoid(outgate), torch.tanh(c_l), out=h_l)
        layer_input = h_l
    return layer_input
