"""nn.LSTM's and nn.LSTMCell's argument checks, with their messages, and ours beside them.

Each check raises what ``torch.nn`` raises for the same mistake (the same type and,
where torch has one, the same text), so code written against ``torch.nn`` behaves the
same.  Where torch only fails later inside a kernel, or not at all, the message says
what was expected and what came.  The call-time checks compile with ``torch.jit.script``.
"""

# No `from __future__ import annotations`: TorchScript must see real annotation objects.
import numbers
import warnings
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from deploy_lstm.errors import LSTMInputError

__all__ = [
    "dtype_name",
    "value_checks_enabled",
    "check_lstm_args",
    "check_ranks",
    "check_input",
    "check_state",
    "check_placement",
    "check_steps",
    "check_lengths",
    "check_step",
    "check_cell_call",
]


def dtype_name(dtype: torch.dtype) -> str:
    """``str(dtype)`` that also works in TorchScript, where a dtype is an int."""
    if not torch.jit.is_scripting():
        return str(dtype)
    known = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]
    names = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
    for i in range(len(known)):
        if dtype == known[i]:
            return "torch." + names[i]
    return "dtype code " + str(int(dtype))


def check_state_dtypes(states: List[Tensor], dtype: torch.dtype, what: str, note: str) -> None:
    """Each state has the input's dtype: "{what}[i] of dtype {dtype}{note}, got {its dtype}"."""
    for i, state in enumerate(states):
        if state.dtype != dtype:
            raise LSTMInputError(f"{what}[{i}] of dtype {dtype_name(dtype)}{note}, got {dtype_name(state.dtype)}")


def value_checks_enabled() -> bool:
    """False while tracing or exporting, where data-dependent checks cannot run."""
    if torch.jit.is_scripting():
        enabled = True
    else:
        enabled = not (torch.jit.is_tracing() or torch.compiler.is_compiling())
    return enabled


# -- the constructor ---------------------------------------------------------------------------


def check_lstm_args(
    input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool, dropout: float,
    proj_size: int, cell: str, fused: Optional[bool],
) -> None:
    """``LSTM``'s constructor arguments: our cell rules, then nn.RNNBase's checks in its
    order and with its messages (a warning for dropout on a single layer)."""
    if fused and cell != "lstm":
        raise ValueError(f"fused=True runs aten::lstm, which has no {cell!r} cell; use fused=False")
    if cell == "cell_gated" and proj_size != 0:
        raise ValueError("the 'cell_gated' cell has no projection (its h is tanh(o * c)); use proj_size=0")
    # Fix: nn.RNNBase runs float(dropout) before its checks, so e.g. dropout=None
    # raises float()'s TypeError and dropout="a" its ValueError; match that.
    float(dropout)
    if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the "
            "probability of an element being zeroed"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so "
            "non-zero dropout expects num_layers greater than 1, but got "
            f"dropout={dropout} and num_layers={num_layers}",
            stacklevel=3,  # the caller of LSTM(...)
        )
    for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool), ("input_size", input_size, int)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if not isinstance(hidden_size, int):
        raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


# -- a call of LSTM.forward, in nn.LSTM's order ---------------------------------------------------


def check_ranks(input: Tensor, hx: Optional[Tuple[Tensor, Tensor]]) -> None:
    """nn.LSTM.forward: the input is 2-D or 3-D, the states of the same kind."""
    if input.dim() != 2 and input.dim() != 3:
        raise LSTMInputError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
    if hx is not None:
        is_batched = input.dim() == 3
        want = 3 if is_batched else 2
        if hx[0].dim() != want or hx[1].dim() != want:
            kind = "batched 3-D" if is_batched else "unbatched 2-D"
            raise LSTMInputError(
                f"For {kind} input, hx and cx should also be {want}-D but got "
                f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
            )


def check_input(input: Tensor, weight: Tensor, input_size: int) -> None:
    """nn.RNNBase.check_input: the input's dtype, then its features."""
    if input.dtype != weight.dtype:
        raise LSTMInputError(
            f"RNN input dtype ({dtype_name(input.dtype)}) does not match weight dtype "
            f"({dtype_name(weight.dtype)}). Convert input: "
            f"input.to({dtype_name(weight.dtype)}), or convert model: "
            f"model.to({dtype_name(input.dtype)})"
        )
    if torch.jit.is_tracing():
        return  # sizes are traced values here; comparing them would only warn
    if input.size(-1) != input_size:
        raise LSTMInputError(
            "input.size(-1) must be equal to input_size. Expected "
            f"{input_size}, got {input.size(-1)} (input of shape {list(input.size())})"
        )


def check_state(state: Tensor, expected: Tuple[int, int, int], which: int) -> None:
    """nn.LSTM.check_forward_args: the size of hidden[0] or hidden[1]."""
    # Fix: while tracing, sizes are traced values and this comparison only emits a
    # TracerWarning (as check_input already knew); the trace fixes the shapes anyway.
    if not torch.jit.is_tracing() and state.size() != expected:
        raise LSTMInputError(f"Expected hidden[{which}] size {expected}, got {list(state.size())}")


def check_placement(h0: Tensor, c0: Tensor, weights: List[Tensor], x: Tensor) -> None:
    """Devices as aten::lstm checks them (states, then parameters), then state dtypes."""
    for state in [h0, c0]:
        if state.device != x.device:
            # Fix: aten::lstm's message, which nn.LSTM raises.
            raise LSTMInputError(
                "Input and hidden tensors are not at the same device, found input tensor "
                f"at {x.device} and hidden tensor at {state.device}"
            )
    for w in weights:
        if w.device != x.device:
            # Fix: aten::lstm's message; before, a matmul failed with another text.
            raise LSTMInputError(
                "Input and parameter tensors are not at the same device, found input "
                f"tensor at {x.device} and parameter tensor at {w.device}"
            )
    check_state_dtypes([h0, c0], x.dtype, "Expected hidden", " (the input's)")


def check_steps(x: Tensor, input: Tensor) -> None:
    """At least one step (aten::lstm's check and message) and one sequence (ours);
    ``x`` is the time-major (T, N, I) form of ``input``."""
    if torch.jit.is_tracing():
        return
    if x.size(0) == 0:
        # Fix: nn.LSTM's own message for a sequence of length 0.
        raise LSTMInputError(
            "Expected sequence length to be larger than 0 in RNN "
            f"(input of shape {list(input.size())})"
        )
    if x.size(1) == 0:
        raise LSTMInputError(
            f"LSTM: expected a batch of at least one sequence, got an empty batch "
            f"(input of shape {list(input.size())})"
        )


def check_lengths(lengths: Tensor, T: int, N: int, is_batched: bool) -> Tensor:
    """Check ``lengths`` (ours: nn.LSTM takes a PackedSequence instead); return it as (N,) int64."""
    if lengths.dtype != torch.int64:
        raise LSTMInputError(f"lengths must be an int64 tensor, got {dtype_name(lengths.dtype)}")
    if not is_batched and lengths.dim() == 0:
        lengths = lengths.unsqueeze(0)
    # Fix: the batch-size comparison only emits a TracerWarning while tracing (see
    # check_state); the rank check is static and stays.
    if lengths.dim() != 1 or (not torch.jit.is_tracing() and lengths.size(0) != N):
        raise LSTMInputError(
            f"lengths must have shape ({N},), one length per sequence, "
            f"got shape {list(lengths.size())}"
        )
    if value_checks_enabled():
        lo = int(lengths.min())
        hi = int(lengths.max())
        if lo < 1 or hi > T:
            raise LSTMInputError(f"lengths must lie in 1..{T} (the sequence length), got values from {lo} to {hi}")
    return lengths


# -- one streaming step (ours) ---------------------------------------------------------------------


def check_step(
    input: Tensor, h: Tensor, c: Tensor, weight: Tensor, bidirectional: bool,
    input_size: int, hidden_size: int, proj_size: int, num_layers: int,
) -> None:
    """Cheap checks of ``LSTM.step_``: ranks, sizes and dtypes, with expected and got;
    ``weight`` is ``weight_ih_l0``, whose dtype the input must have."""
    if bidirectional:
        raise LSTMInputError(
            "step needs a unidirectional LSTM: the reverse direction reads the whole sequence; "
            "this module has bidirectional=True, run forward on the whole sequence"
        )
    if input.dim() != 2 or input.size(1) != input_size:
        raise LSTMInputError(
            f"step: expected input of shape (N, {input_size}), one time step, got {list(input.size())}"
        )
    if input.dtype != weight.dtype:
        raise LSTMInputError(
            f"step: expected input of dtype {dtype_name(weight.dtype)} (the weights'), got {dtype_name(input.dtype)}"
        )
    N = input.size(0)
    P = proj_size if proj_size > 0 else hidden_size
    want_h = [num_layers, N, P]
    want_c = [num_layers, N, hidden_size]
    if list(h.size()) != want_h or list(c.size()) != want_c:
        raise LSTMInputError(
            f"step: expected h of shape {want_h} and c of shape {want_c} (num_layers, N, size) for input "
            f"of shape {list(input.size())}, got {list(h.size())} and {list(c.size())}"
        )
    if h.dtype != input.dtype or c.dtype != input.dtype:
        raise LSTMInputError(
            f"step: expected h and c of dtype {dtype_name(input.dtype)} (the input's), got "
            f"{dtype_name(h.dtype)} and {dtype_name(c.dtype)}"
        )


# -- a call of LSTMCell.forward ------------------------------------------------------------------------


def check_cell_call(
    input: Tensor, hx: Optional[Tuple[Tensor, Tensor]], input_size: int, hidden_size: int, weight: Tensor
) -> None:
    """nn.LSTMCell's checks in its order and with its messages: ranks (in Python), then
    aten::lstm_cell's input size, batch and hidden size of hx[0], of hx[1]; ours (rank of
    hx against the input, empty batch, dtypes) in between.  ``weight`` is ``weight_ih``."""
    if input.dim() != 1 and input.dim() != 2:
        raise LSTMInputError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
    if hx is not None:
        for idx, value in enumerate([hx[0], hx[1]]):
            if value.dim() != 1 and value.dim() != 2:
                raise LSTMInputError(f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead")
    is_batched = input.dim() == 2
    features = input.size(1) if is_batched else input.size(0)
    if features != input_size:
        # Fix: aten::lstm_cell's message, which nn.LSTMCell raises.
        raise LSTMInputError(
            f"input has inconsistent input_size: got {features} expected {input_size} "
            f"(input of shape {list(input.size())})"
        )
    N = input.size(0) if is_batched else 1
    if N == 0:
        raise LSTMInputError("LSTMCell: expected a batch of at least one, got 0")
    if hx is not None:
        _check_cell_state(hx[0], hx[1], input.dim(), N, hidden_size)
    # Dtypes last: nn.LSTMCell finds a mismatch only in its matmul, after the size checks.
    if input.dtype != weight.dtype:
        raise LSTMInputError(
            f"LSTMCell: input dtype ({dtype_name(input.dtype)}) does not match weight "
            f"dtype ({dtype_name(weight.dtype)})"
        )
    if hx is not None:
        check_state_dtypes([hx[0], hx[1]], input.dtype, "LSTMCell: Expected hx", "")


def _check_cell_state(h: Tensor, c: Tensor, rank: int, N: int, hidden_size: int) -> None:
    """The states of an LSTMCell call: the input's rank, then aten::lstm_cell's sizes."""
    for idx, value in enumerate([h, c]):
        if value.dim() != rank:
            raise LSTMInputError(
                f"LSTMCell: Expected hx[{idx}] to be {rank}D like the input, got {value.dim()}D instead"
            )
    for idx, value in enumerate([h, c]):
        state = value if rank == 2 else value.unsqueeze(0)  # (N, H)
        # Fix: aten::lstm_cell's messages, which nn.LSTMCell raises.
        if state.size(0) != N:
            raise LSTMInputError(f"Input batch size {N} doesn't match hidden{idx} batch size {state.size(0)}")
        if state.size(1) != hidden_size:
            raise LSTMInputError(
                f"hidden{idx} has inconsistent hidden_size: got {state.size(1)}, expected {hidden_size}"
            )
