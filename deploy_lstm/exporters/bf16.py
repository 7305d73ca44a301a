"""bf16 artifacts: each LSTM of a model runs in bfloat16 behind a float32 boundary.

:func:`with_bf16` gives the copy an exporter scripts or traces for ``precision="bf16"``:
every ``deploy_lstm.LSTM`` in the tree becomes a :class:`Bf16Boundary` around a bfloat16
copy of it (weights rounded once, at export).  The boundary casts the input and the state
to bfloat16, runs the LSTM there (oneDNN's bf16 LSTM kernel on CPUs with ``avx512_bf16``
or AMX, through ``aten::lstm``), and casts the output and the final state back to the
caller's dtype.  So the artifact takes and returns float32 exactly like its float32
sibling: every runner, the server and the C++ app call it unchanged.  Layers around the
LSTMs (a whole model's embedding, decoder, ...) stay float32.

A bfloat16 boundary (bf16 tensors in and out) is not offered: numpy has no bfloat16, so
no runner of this package could feed it, and the two casts cost < 1% of an LSTM call.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor, nn

from deploy_lstm.exporters.standins import module_tree_copy
from deploy_lstm.nn.lstm import LSTM

__all__ = ["BF16", "PRECISIONS", "Bf16Boundary", "with_bf16", "check_precision"]

BF16 = torch.bfloat16

#: what ``precision=`` takes: the artifact's arithmetic (its boundary is float32 either way)
PRECISIONS = ("float32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        ValueError: another value.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


class Bf16Boundary(nn.Module):
    """A bfloat16 ``deploy_lstm.LSTM`` called in float32: the same ``forward`` as ``LSTM``.

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))``: ``input`` and
    ``hx`` are cast to bfloat16, the results back to ``input``'s dtype.  Scriptable.
    """

    def __init__(self, lstm: LSTM) -> None:
        super().__init__()
        self.lstm = lstm  # its parameters are bfloat16

    def forward(
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None, lengths: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        dtype = input.dtype
        state: Optional[Tuple[Tensor, Tensor]] = None
        if hx is not None:
            state = (hx[0].to(torch.bfloat16), hx[1].to(torch.bfloat16))
        output, (h_n, c_n) = self.lstm(input.to(torch.bfloat16), state, lengths)
        return output.to(dtype), (h_n.to(dtype), c_n.to(dtype))


def bf16_copy(lstm: LSTM) -> LSTM:
    """A deep copy of ``lstm`` (with whatever layer stack an exporter set on it) in bfloat16;
    ``lstm``'s own parameters are not touched."""
    return copy.deepcopy(lstm).to(BF16).eval()


def with_bf16(model: nn.Module, prepare: Callable[[LSTM], LSTM] = lambda m: m) -> nn.Module:
    """The copy of ``model`` a bf16 export works on: each ``deploy_lstm.LSTM`` ``m`` becomes
    ``Bf16Boundary(bf16_copy(prepare(m)))``; the rest is shared with ``model`` (float32).

    A bare LSTM becomes a :class:`Bf16Boundary` itself, which its graph wrapper
    (``BareLSTM``) calls as it calls an LSTM.  ``model`` is not changed.
    """
    return module_tree_copy(model, lambda m: Bf16Boundary(bf16_copy(prepare(m))) if isinstance(m, LSTM) else None)
