"""nn.LSTM's call convention: from the caller's layout (``batch_first``, unbatched input,
optional state, ``lengths``) to the time-major tensors a layer stack runs on, checked
in nn.LSTM's order, and back.

``LSTM.forward`` calls these two functions around its layer stack; anything else that
computes an ``LSTM``'s layer stack its own way calls the same two, so it takes the same
inputs, refuses the same mistakes and returns the same layout.  Both compile with
``torch.jit.script``.
"""

# No `from __future__ import annotations`: TorchScript must see real annotation objects.
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from deploy_lstm.nn.checks import (
    check_input,
    check_lengths,
    check_placement,
    check_ranks,
    check_state,
    check_steps,
)

__all__ = ["time_major", "caller_layout"]


def time_major(
    input: Tensor, hx: Optional[Tuple[Tensor, Tensor]], lengths: Optional[Tensor], weights: List[Tensor],
    input_size: int, hidden_size: int, proj_size: int, num_states: int, batch_first: bool,
) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Check a call of ``LSTM.forward`` and lay it out time-major.

    nn.LSTM's checks in nn.LSTM's order: input rank, state rank, input dtype and features,
    state sizes; then aten::lstm's: devices, sequence length; ours (lengths) last.

    Args:
        input, hx, lengths: as ``LSTM.forward`` takes them.
        weights: the flat weights (the first one gives the dtype the input must have).
        input_size, hidden_size, proj_size, batch_first: the module's.
        num_states: num_layers * num_directions.

    Returns:
        (x (T, N, I), h0 (num_states, N, P), c0 (num_states, N, H), lengths (N,) int64 or
        None); zeros for an omitted state.

    Raises:
        LSTMInputError: the input, state or lengths do not fit the module.
    """
    check_ranks(input, hx)
    is_batched = input.dim() == 3
    if is_batched:
        x = input.transpose(0, 1) if batch_first else input  # (T, N, I)
    else:
        x = input.unsqueeze(1)  # (T, 1, I)
    check_input(input, weights[0], input_size)
    T, N = x.size(0), x.size(1)
    real_hidden = proj_size if proj_size > 0 else hidden_size
    if hx is None:
        h0 = torch.zeros(num_states, N, real_hidden, dtype=x.dtype, device=x.device)
        c0 = torch.zeros(num_states, N, hidden_size, dtype=x.dtype, device=x.device)
    else:
        h0, c0 = hx
        if not is_batched:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1)
        check_state(h0, (num_states, N, real_hidden), 0)
        check_state(c0, (num_states, N, hidden_size), 1)
    check_placement(h0, c0, weights, x)
    check_steps(x, input)
    lens: Optional[Tensor] = None
    if lengths is not None:
        lens = check_lengths(lengths, T, N, is_batched)
    return x, h0, c0, lens


def caller_layout(
    input: Tensor, output: Tensor, h_n: Tensor, c_n: Tensor, batch_first: bool
) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """A layer stack's time-major result in the layout of the ``input`` it was called with:
    (output, (h_n, c_n)) with nn.LSTM's shapes."""
    if input.dim() == 3:
        if batch_first:
            output = output.transpose(0, 1)
    else:
        output = output.squeeze(1)
        h_n = h_n.squeeze(1)
        c_n = c_n.squeeze(1)
    return output, (h_n, c_n)
