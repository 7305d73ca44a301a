"""``LSTM``: the scriptable drop-in replacement for ``torch.nn.LSTM``.

Everything here compiles with ``torch.jit.script``: static loops over layers,
directions and time, ``typing`` annotations where TorchScript needs them.  The
parameters carry ``nn.LSTM``'s names, order, shapes and initialisation, so
state dicts move both ways unchanged.

The time loop is written the way a fused kernel works: the input projection of
every step is one matmul before the loop, and each step does one ``addmm`` for
all four gates of the recurrence.  Beside it: aten's kernel (:mod:`.aten`), the
streaming step (:mod:`.step`), nn.LSTM's checks (:mod:`.checks`, :mod:`.layout`).
"""

# No `from __future__ import annotations`: TorchScript must see real annotation
# objects on the class (string annotations such as "List[Tensor]" fail to resolve).
import dataclasses
import warnings
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from deploy_lstm.errors import LSTMInputError
from deploy_lstm.nn.aten import aten_lstm
from deploy_lstm.nn.checks import check_lstm_args, check_step
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.flat import FlatWeights, reset_uniform
from deploy_lstm.nn.layout import caller_layout, time_major
from deploy_lstm.nn.recurrence import (
    cell_code,
    cell_weights,
    length_mask,
    lstm_direction,
    project_input,
    stack_parameter_shapes,
)
from deploy_lstm.nn.step import StepCache, pack_step_weights, step_in_place, weights_key

__all__ = ["LSTM"]

#: the child that :meth:`LSTM.set_layer_stack` adds
LAYER_STACK = "layer_stack"


class LSTM(FlatWeights):
    r"""Drop-in, scriptable replacement for :class:`torch.nn.LSTM`.

    Same constructor, defaults, argument checks, parameter names/shapes/order and
    initialisation as ``nn.LSTM``.  ``forward`` also takes ``lengths``: the
    scriptable, exportable form of a packed batch.

    Args:
        input_size: features of the input.
        hidden_size: features of the cell state (and of ``h`` when ``proj_size=0``).
        num_layers: stacked layers.
        bias: use ``bias_ih``/``bias_hh``.
        batch_first: input and output are (N, T, F) instead of (T, N, F).
        dropout: dropout on the output of each layer but the last, in training.
        bidirectional: add a reverse direction to every layer.
        proj_size: project ``h`` to this size (LSTMP); 0 disables.
        device: factory argument for the parameters.
        dtype: factory argument for the parameters.
        fused: (keyword-only, not in nn.LSTM) ``True``: run ``aten::lstm``, the kernel
            nn.LSTM uses, instead of the static time loop, in eager mode and inside
            TorchScript; ``False``: the loop everywhere.  ``None`` (the default): the loop in
            eager mode, ``aten::lstm`` once scripted (``torch.jit.script(lstm)`` gets nn.LSTM's
            speed; both paths are checked against nn.LSTM).  Fixed when the module is
            scripted.  ONNX/AOTInductor export always uses their own graphs, whatever this
            flag says.  Only ``cell="lstm"`` has a kernel: a variant always runs the loop.
        cell: (keyword-only, not in nn.LSTM) ``"lstm"`` (nn.LSTM's cell, the default),
            ``"peephole"`` (the ONNX ``LSTM`` operator's peepholes, ``weight_ph_l{k}``),
            ``"layernorm"`` (layer-normalised gates and cell state, ``ln_*_l{k}``) or
            ``"cell_gated"`` (gates read c_{t-1} instead of h_{t-1}: Wikipedia's peephole
            LSTM; ``weight_ch_l{k}``, no projection).  Equations:
            :func:`deploy_lstm.nn.recurrence.cell_step`.
    """

    __constants__ = [
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
        "num_directions",
        "_weights_per_cell",
        "fused",
        "script_fused",
        "cell",
        "_cell",
    ]

    __jit_unused_properties__ = ["all_weights"]

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    num_directions: int
    _weights_per_cell: int
    fused: bool
    script_fused: bool
    cell: str
    _cell: int
    _flat_weights: List[Tensor]
    _step_weights: List[Tensor]  # packed by prepare_step() inside TorchScript; see step_()


    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        fused: Optional[bool] = None,
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        code = cell_code(cell)  # ValueError for an unknown cell
        # nn.RNNBase's checks, in its order, with its messages
        check_lstm_args(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size, cell, fused)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.num_directions = 2 if bidirectional else 1
        self.fused = bool(fused)
        self.script_fused = (fused is None or bool(fused)) and cell == "lstm"  # what runs once scripted
        self.cell = cell
        self._cell = code

        shapes = stack_parameter_shapes(cell, input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
        for name, shape in shapes:
            self.register_parameter(name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self._weights_per_cell = len(shapes) // (num_layers * self.num_directions)
        self._flat_weights_names = [name for name, _ in shapes]
        self._init_flat_weights()
        self._step_weights = []  # filled inside TorchScript only (eager mode: _step_cache)
        self._step_cache = StepCache()
        self.reset_parameters()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        ret = super()._apply(fn, recurse)
        # .to()/.double() may swap parameter data without bumping _version: re-pack on next step
        self._step_cache = StepCache()
        return ret

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) over ``parameters()``, as nn.LSTM does; layer
        norm weights 1 and biases 0, as nn.LayerNorm."""
        reset_uniform(self, self.hidden_size)

    def flatten_parameters(self) -> None:
        """No-op kept for API compatibility with nn.LSTM (which uses it for cuDNN)."""

    @property
    def all_weights(self) -> List[List[nn.Parameter]]:
        k = self._weights_per_cell
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i : i + k]] for i in range(0, len(names), k)]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        if self.cell != "lstm":
            s += ", cell={cell!r}"
        return s.format(**self.__dict__)

    # -- conversion ----------------------------------------------------------------

    @classmethod
    def from_torch(cls, lstm: nn.LSTM) -> "LSTM":
        """A ``deploy_lstm.LSTM`` with ``lstm``'s configuration, weights, device,
        dtype and training flag."""
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"expected a torch.nn.LSTM, got {type(lstm).__name__}")
        w = lstm.weight_ih_l0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nn.LSTM already warned about dropout
            new = cls(**_config_of(lstm), device=w.device, dtype=w.dtype)  # cell "lstm"
        new.load_state_dict(lstm.state_dict(), strict=True)
        return new.train(lstm.training)

    def to_torch(self) -> nn.LSTM:
        """The equivalent ``torch.nn.LSTM`` with the same weights, device, dtype and flag.

        Raises:
            ValueError: a variant cell, which nn.LSTM does not have.
        """
        if self.cell != "lstm":
            raise ValueError(f"torch.nn.LSTM has no {self.cell!r} cell: only cell='lstm' converts to it")
        w = self.weight_ih_l0
        config = _config_of(self)
        del config["cell"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lstm = nn.LSTM(**config, device=w.device, dtype=w.dtype)
        lstm.load_state_dict(self.state_dict(), strict=True)
        return lstm.train(self.training)

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable) that rebuild this module."""
        return _config_of(self)

    # -- forward ---------------------------------------------------------------------

    def forward(
        self,
        input: Tensor,
        hx: Optional[Tuple[Tensor, Tensor]] = None,
        lengths: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """Run the LSTM, like ``nn.LSTM.forward``.

        Args:
            input: (T, N, input_size), or (N, T, input_size) with ``batch_first``,
                or unbatched (T, input_size).  In eager mode a ``PackedSequence``
                is also accepted and gives a ``PackedSequence`` output.
            hx: optional (h_0, c_0), each (num_layers * num_directions, N, size)
                with size = proj_size or hidden_size for h_0, hidden_size for c_0
                (2-D without N for unbatched input).  Zeros when omitted.
            lengths: optional int64 (N,) lengths of a right-padded batch, each in
                1..T.  The result equals ``nn.LSTM`` on
                ``pack_padded_sequence(input, lengths, enforce_sorted=False)``
                padded back to T: zeros past each length, ``h_n``/``c_n`` at each
                sequence's last step.

        Returns:
            (output, (h_n, c_n)) with ``nn.LSTM``'s shapes.

        Raises:
            LSTMInputError: the input, state or lengths do not fit the module.
        """
        if not torch.jit.is_scripting():
            if isinstance(input, PackedSequence):
                return self._forward_packed(input, hx, lengths)
        weights = self._weights()
        num_states = self.num_layers * self.num_directions
        x, h0, c0, lens = time_major(
            input, hx, lengths, weights, self.input_size, self.hidden_size, self.proj_size, num_states, self.batch_first
        )
        output, h_n, c_n = self._run(x, h0, c0, weights, lens)
        return caller_layout(input, output, h_n, c_n, self.batch_first)

    def _run(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The layer stack, time-major in and out: the static loop, or aten::lstm when
        ``fused``; in eager mode the stack given to :meth:`set_layer_stack`, if any."""
        if not torch.jit.is_scripting():
            stack = self._modules.get(LAYER_STACK)
            if stack is not None:
                return stack(x, h0, c0, weights, lengths)
        if self.fused:
            return self._forward_fused(x, h0, c0, weights, lengths)
        if torch.jit.is_scripting():
            if self.script_fused:  # a constant of the scripted module
                return self._forward_fused(x, h0, c0, weights, lengths)
        mask: Optional[Tensor] = None
        if lengths is not None:
            mask = length_mask(x.size(0), lengths, x.device)  # (T, N, 1)
        return self._forward_time_major(x, h0, c0, weights, mask)

    def set_layer_stack(self, stack: Optional[nn.Module]) -> None:
        """Run ``stack`` in place of this module's layer stack, in eager mode (``None``: its own again).

        ``stack(x, h0, c0, weights, lengths) -> (output, h_n, c_n)`` takes and returns what
        the module's own stack does: x (T, N, I) time-major, h0/c0 (L*D, N, P or H), the
        flat weights, lengths (N,) int64 or None; output (T, N, D*P).  ``forward``'s checks
        and layouts stay the module's.  ``stack`` becomes the child ``layer_stack``.  For
        a tool that computes the same stack another way on its own copy of the module (the
        exporters' graph-friendly routes); a scripted module runs its own stack.
        """
        if stack is None:
            self._modules.pop(LAYER_STACK, None)
        else:
            self.add_module(LAYER_STACK, stack)

    def _forward_fused(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """aten::lstm, nn.LSTM's kernel; ``lengths`` through a packed batch, as nn.LSTM does."""
        return aten_lstm(
            x, h0, c0, weights, lengths, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional
        )

    def _forward_time_major(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], mask: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """(T, N, I) input and (L*D, N, *) states in; output and final states out."""
        h_n: List[Tensor] = []
        c_n: List[Tensor] = []
        layer_input = x
        for layer in range(self.num_layers):
            outs: List[Tensor] = []
            for direction in range(self.num_directions):
                idx = layer * self.num_directions + direction
                w_ih, w_hh, bias, w_hr, ex_in, ex_step = cell_weights(
                    weights, idx, self._weights_per_cell, self.bias, self.proj_size > 0, self._cell
                )
                xw = project_input(layer_input, w_ih, bias, self._cell, ex_in)  # (T, N, 4H)
                out, h, c = lstm_direction(
                    xw, h0[idx], c0[idx], w_hh, w_hr, mask, direction == 1, self._cell, ex_step
                )
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_output = outs[0] if self.num_directions == 1 else torch.cat(outs, 2)
            if self.dropout > 0.0 and self.training and layer < self.num_layers - 1:
                layer_output = F.dropout(layer_output, self.dropout, True)
            layer_input = layer_output
        return layer_input, torch.stack(h_n), torch.stack(c_n)

    # -- streaming: one time step ---------------------------------------------------------

    @torch.jit.export
    def step_(self, input: Tensor, h: Tensor, c: Tensor) -> Tensor:
        """One time step in place, for streaming inference: ``(h, c)`` advance by ``input``.

        Equals ``forward(input.unsqueeze(0), (h, c))`` (nn.LSTM's numerics, to float
        rounding), without its per-call setup: for nn.LSTM's cell each layer is one
        batched GEMM over weights packed once (:meth:`prepare_step`) -- [W_ih | W_hh] with
        its summed bias, split by gates into two halves ([i, f] and [o, g]) that
        ``baddbmm`` runs on two threads -- and the cell update writes straight into
        ``h`` and ``c``.  A variant cell, or dropout in training mode, runs forward's layer
        stack for the step and copies its state into ``h``, ``c``.

        Args:
            input: (N, input_size), one time step.
            h: (num_layers, N, proj_size or hidden_size), overwritten with h_n.
            c: (num_layers, N, hidden_size), overwritten with c_n.

        Returns:
            The output (N, proj_size or hidden_size): a view of ``h[-1]``, overwritten by
            the next step (clone it to keep it).

        Raises:
            LSTMInputError: a bidirectional module, or shapes or dtypes that do not fit.
        """
        self._check_step(input, h, c)
        L = self.num_layers
        if self._cell != 0 or (self.training and self.dropout > 0.0):
            # 0 = LSTM_CELL (TorchScript cannot read module globals).  forward's own layer stack
            # (not forward itself: torch.jit.trace compiles this method and then defines forward)
            _, h_n, c_n = self._run(input.unsqueeze(0), h, c, self._weights(), None)
            h.copy_(h_n)
            c.copy_(c_n)
            return h[L - 1]
        if torch.jit.is_scripting():
            if len(self._step_weights) == 0:
                self.prepare_step()
            packed = self._step_weights
        else:
            packed = self._packed_eager()
        return step_in_place(input, h, c, packed, L, self.proj_size > 0)

    @torch.jit.export
    def step(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """One time step: ``(output, (h_n, c_n))`` for ``input`` (N, input_size) from ``hx``
        (zeros when omitted), as ``forward`` on a sequence of length 1 without its time
        axis.  New tensors; see :meth:`step_` for the in-place form streams use.

        Raises:
            LSTMInputError: as :meth:`step_`.
        """
        if input.dim() != 2:
            self._check_step(input, input, input)  # raises with the expected shape
        N = input.size(0)
        P = self.proj_size if self.proj_size > 0 else self.hidden_size
        if hx is None:
            h = torch.zeros(self.num_layers, N, P, dtype=input.dtype, device=input.device)
            c = torch.zeros(self.num_layers, N, self.hidden_size, dtype=input.dtype, device=input.device)
        else:
            h = hx[0].clone(memory_format=torch.contiguous_format)
            c = hx[1].clone(memory_format=torch.contiguous_format)
        output = self.step_(input, h, c).clone()
        return output, (h, c)

    @torch.jit.export
    def prepare_step(self) -> None:
        """Pack the weights :meth:`step_` reads (once; again after the weights change).

        In eager mode this happens by itself when a parameter changes; a scripted module
        packs on its first step and keeps that packing: call this after loading other
        weights into it (the C++ ``LstmStream`` calls it when a stream starts).
        """
        packed: List[Tensor] = []
        if self._cell == 0 and not self.bidirectional:
            packed = pack_step_weights(
                self._weights(), self.num_layers, self._weights_per_cell, self.bias, self.proj_size > 0, self.hidden_size
            )
        if torch.jit.is_scripting():
            self._step_weights = packed
        else:
            self._step_cache = StepCache(weights_key(self._weights()), packed)

    @torch.jit.unused
    def _packed_eager(self) -> List[Tensor]:
        """The packed step weights in eager mode, packed again when a parameter changed."""
        if self._step_cache.key != weights_key(self._weights()):
            self.prepare_step()
        return self._step_cache.packed

    def _check_step(self, input: Tensor, h: Tensor, c: Tensor) -> None:
        """Cheap checks of a step: ranks, sizes and dtypes, with expected and got."""
        check_step(
            input, h, c, self.weight_ih_l0, self.bidirectional,
            self.input_size, self.hidden_size, self.proj_size, self.num_layers,
        )

    @torch.jit.unused
    def _forward_packed(
        self,
        input: PackedSequence,
        hx: Optional[Tuple[Tensor, Tensor]],
        lengths: Optional[Tensor],
    ) -> Tuple[PackedSequence, Tuple[Tensor, Tensor]]:
        """Eager-only: PackedSequence in, PackedSequence out, as nn.LSTM does."""
        if lengths is not None:
            raise LSTMInputError(
                "lengths cannot be given with a PackedSequence input: it carries its own"
            )
        padded, lens = pad_packed_sequence(input, batch_first=self.batch_first)
        output, (h_n, c_n) = self.forward(padded, hx, lens.to(torch.int64))
        output = output.transpose(0, 1) if self.batch_first else output  # (T, N, F)
        if input.sorted_indices is not None:
            output = output.index_select(1, input.sorted_indices)
            lens = lens.index_select(0, input.sorted_indices.cpu())
        packed = pack_padded_sequence(output, lens, enforce_sorted=True)
        out = PackedSequence(
            packed.data, input.batch_sizes, input.sorted_indices, input.unsorted_indices
        )
        return out, (h_n, c_n)


def _config_of(lstm: nn.Module) -> dict:
    """Constructor arguments of an ``nn.LSTM`` or ``deploy_lstm.LSTM``."""
    return dataclasses.asdict(LSTMConfig.of(lstm))
