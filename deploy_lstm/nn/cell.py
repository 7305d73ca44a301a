"""``LSTMCell``: the scriptable drop-in replacement for ``torch.nn.LSTMCell``: one step,
the same cells as ``LSTM`` (:mod:`deploy_lstm.nn.recurrence`)."""

# No `from __future__ import annotations`: TorchScript must see real annotation objects.
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from deploy_lstm.nn.checks import check_cell_call
from deploy_lstm.nn.flat import FlatWeights, reset_uniform
from deploy_lstm.nn.recurrence import cell_code, cell_parameter_shapes, cell_step, cell_weights, project_input

__all__ = ["LSTMCell"]


class LSTMCell(FlatWeights):
    r"""Drop-in, scriptable replacement for :class:`torch.nn.LSTMCell`.

    Args:
        input_size: features of the input.
        hidden_size: features of ``h`` and ``c``.
        bias: use ``bias_ih``/``bias_hh``.
        device: factory argument for the parameters.
        dtype: factory argument for the parameters.
        cell: (keyword-only) ``"lstm"`` (the default: nn.LSTMCell), ``"peephole"``,
            ``"layernorm"`` or ``"cell_gated"``, as in :class:`LSTM`; the parameters are
            :class:`LSTM`'s without the ``_l0`` suffix.
    """

    __constants__ = ["input_size", "hidden_size", "bias", "cell", "_cell", "_weights_per_cell"]

    input_size: int
    hidden_size: int
    bias: bool
    cell: str
    _cell: int
    _weights_per_cell: int
    _flat_weights: List[Tensor]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self._cell = cell_code(cell)  # ValueError for an unknown cell
        self.cell = cell
        shapes = cell_parameter_shapes(cell, input_size, hidden_size, hidden_size, bias, 0)
        for name, shape in shapes:
            self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        if not bias:  # as nn.LSTMCell: the attributes exist, as None
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self._weights_per_cell = len(shapes)
        self._flat_weights_names = [name for name, _ in shapes]
        self._init_flat_weights()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) over ``parameters()``, as nn.LSTMCell does; layer
        norm weights 1 and biases 0."""
        reset_uniform(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        s = s if self.bias else s + ", bias=False"
        return s if self.cell == "lstm" else s + f", cell={self.cell!r}"

    @classmethod
    def from_torch(cls, cell: nn.LSTMCell) -> "LSTMCell":
        """A ``deploy_lstm.LSTMCell`` with ``cell``'s weights, device, dtype and flag."""
        if not isinstance(cell, nn.LSTMCell):
            raise TypeError(f"expected a torch.nn.LSTMCell, got {type(cell).__name__}")
        w = cell.weight_ih
        new = cls(cell.input_size, cell.hidden_size, cell.bias, device=w.device, dtype=w.dtype)
        new.load_state_dict(cell.state_dict(), strict=True)
        return new.train(cell.training)

    def to_torch(self) -> nn.LSTMCell:
        """The equivalent ``torch.nn.LSTMCell``."""
        if self.cell != "lstm":
            raise ValueError(f"torch.nn.LSTMCell has no {self.cell!r} cell: only cell='lstm' converts to it")
        w = self.weight_ih
        cell = nn.LSTMCell(
            self.input_size, self.hidden_size, self.bias, device=w.device, dtype=w.dtype
        )
        cell.load_state_dict(self.state_dict(), strict=True)
        return cell.train(self.training)

    def forward(
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tensor]:
        """One step: (N, input_size) or (input_size,) in, (h', c') out.

        Raises:
            LSTMInputError: the input or state does not fit the cell.
        """
        check_cell_call(input, hx, self.input_size, self.hidden_size, self.weight_ih)
        is_batched = input.dim() == 2
        x = input if is_batched else input.unsqueeze(0)  # (N, I)
        N = x.size(0)
        if hx is None:
            h = torch.zeros(N, self.hidden_size, dtype=x.dtype, device=x.device)
            c = torch.zeros(N, self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h, c = hx
            h, c = (h, c) if is_batched else (h.unsqueeze(0), c.unsqueeze(0))  # (N, H)
        weights = self._weights()
        w_ih, w_hh, bias, _, ex_in, ex_step = cell_weights(weights, 0, self._weights_per_cell, self.bias, False, self._cell)
        xw = project_input(x.unsqueeze(0), w_ih, bias, self._cell, ex_in)[0]  # (N, 4H)
        h1, c1 = cell_step(xw, h, c, w_hh.t(), None, self._cell, ex_step)
        if not is_batched:
            return h1.squeeze(0), c1.squeeze(0)
        return h1, c1
