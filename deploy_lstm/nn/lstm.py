"""Scriptable drop-in replacements for ``torch.nn.LSTM`` and ``torch.nn.LSTMCell``.

Everything here compiles with ``torch.jit.script``: static loops over layers,
directions and time, ``typing`` annotations where TorchScript needs them.  The
parameters carry ``nn.LSTM``'s names, order, shapes and initialisation, so
state dicts move both ways unchanged.

The time loop is written the way a fused kernel works: the input projection of
every step is one matmul before the loop, and each step does one ``addmm`` for
all four gates of the recurrence.
"""

# No `from __future__ import annotations`: TorchScript must see real annotation
# objects on the class (string annotations such as "List[Tensor]" fail to resolve).
import importlib
import math
import numbers
import warnings
import dataclasses
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.errors import LSTMInputError
from deploy_lstm.nn.recurrence import (
    cell_code,
    cell_parameter_shapes,
    cell_step,
    cell_weights,
    length_mask,
    lstm_direction,
    project_input,
)

__all__ = ["LSTM", "LSTMCell"]


def _dtype_name(dtype: torch.dtype) -> str:
    """``str(dtype)`` that also works in TorchScript, where a dtype is an int."""
    if not torch.jit.is_scripting():
        return str(dtype)
    known = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]
    names = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
    for i in range(len(known)):
        if dtype == known[i]:
            return "torch." + names[i]
    return "dtype code " + str(int(dtype))


def _check_state_dtypes(states: List[Tensor], dtype: torch.dtype, what: str, note: str) -> None:
    """Each state has the input's dtype: "{what}[i] of dtype {dtype}{note}, got {its dtype}"."""
    for i, state in enumerate(states):
        if state.dtype != dtype:
            raise LSTMInputError(f"{what}[{i}] of dtype {_dtype_name(dtype)}{note}, got {_dtype_name(state.dtype)}")


def _value_checks_enabled() -> bool:
    """False while tracing or exporting, where data-dependent checks cannot run."""
    if torch.jit.is_scripting():
        enabled = True
    else:
        enabled = not (torch.jit.is_tracing() or torch.compiler.is_compiling())
    return enabled


class _FlatWeights(nn.Module):
    """Keeps ``_flat_weights`` (what TorchScript reads) in step with the parameters named
    ``_flat_weights_names``, as nn.RNNBase does."""

    def _init_flat_weights(self) -> None:
        # Fix: an absent weight (deleted, not yet set again) is None, as in nn.RNNBase,
        # so ``.to()`` / ``.double()`` in between no longer raise AttributeError.
        self._flat_weights = [
            getattr(self, name) if hasattr(self, name) else None  # type: ignore[misc]
            for name in self._flat_weights_names
        ]

    def _keep_flat_weight(self, name: str, value: Optional[Tensor]) -> None:
        """Mirror weight ``name`` into ``_flat_weights`` (what TorchScript reads)."""
        names = self.__dict__.get("_flat_weights_names")
        if names is not None and name in names and "_flat_weights" in self.__dict__:
            self._flat_weights[names.index(name)] = value  # type: ignore[call-overload]

    def __setattr__(self, attr: str, value: object) -> None:
        self._keep_flat_weight(attr, value)  # type: ignore[arg-type]
        super().__setattr__(attr, value)

    def __delattr__(self, attr: str) -> None:
        # Fix: a deleted weight is absent (None) until it is set again, as weight-norm
        # tools do: ``del m.weight_hh_l0; m.weight_hh_l0 = w``.
        super().__delattr__(attr)
        self._keep_flat_weight(attr, None)

    def register_parameter(self, name: str, param: Optional[nn.Parameter]) -> None:
        # Fix: torch.nn.utils.parametrize restores a weight with register_parameter,
        # which bypasses __setattr__.
        super().register_parameter(name, param)
        self._keep_flat_weight(name, param)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        ret = super()._apply(fn, recurse)
        self._init_flat_weights()
        return ret


class LSTM(_FlatWeights):
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
        device, dtype: factory arguments for the parameters.
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
            :func:`deploy_lstm.recurrence.cell_step`.
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
        if fused and cell != "lstm":
            raise ValueError(f"fused=True runs aten::lstm, which has no {cell!r} cell; use fused=False")
        if cell == "cell_gated" and proj_size != 0:
            raise ValueError("the 'cell_gated' cell has no projection (its h is tanh(o * c)); use proj_size=0")
        # The same checks, in the same order, with the same messages as nn.RNNBase.
        # Fix: nn.RNNBase runs float(dropout) before its checks, so e.g. dropout=None
        # raises float()'s TypeError and dropout="a" its ValueError; match that.
        float(dropout)
        if (
            not isinstance(dropout, numbers.Number)
            or not 0 <= dropout <= 1
            or isinstance(dropout, bool)
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the "
                "probability of an element being zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so "
                "non-zero dropout expects num_layers greater than 1, but got "
                f"dropout={dropout} and num_layers={num_layers}",
                stacklevel=2,
            )
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(
                f"batch_first should be of type bool, got: {type(batch_first).__name__}"
            )
        if not isinstance(input_size, int):
            raise TypeError(
                f"input_size should be of type int, got: {type(input_size).__name__}"
            )
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(
                f"hidden_size should be of type int, got: {type(hidden_size).__name__}"
            )
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")

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

        factory = {"device": device, "dtype": dtype}
        real_hidden = proj_size if proj_size > 0 else hidden_size
        names: List[str] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * self.num_directions
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = cell_parameter_shapes(cell, layer_input, hidden_size, real_hidden, bias, proj_size)
                for name, shape in shapes:
                    self.register_parameter(name + sfx, nn.Parameter(torch.empty(shape, **factory)))
                    names.append(name + sfx)
                self._weights_per_cell = len(shapes)
        self._flat_weights_names = names
        self._init_flat_weights()
        self._step_weights = []  # filled inside TorchScript only (eager mode: _StepCache)
        self._step_cache = _StepCache()
        self.reset_parameters()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        ret = super()._apply(fn, recurse)
        # .to()/.double() may swap parameter data without bumping _version: re-pack on next step
        self._step_cache = _StepCache()
        return ret

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) over ``parameters()``, as nn.LSTM does; layer
        norm weights 1 and biases 0, as nn.LayerNorm."""
        _reset(self, self.hidden_size)

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

    @classmethod
    def from_onnx(cls, path_or_model: object, node: Optional[str] = None) -> object:
        """The module of an ONNX ``LSTM`` node (or a stack of them): its W, R, B, P and
        attributes become a ``deploy_lstm.LSTM`` that scripts, fine-tunes and re-exports.

        See :func:`deploy_lstm.onnx_import.lstm_from_onnx` (loaded on first use: this module
        itself does not import onnx).
        """
        return importlib.import_module(".onnx_import", __package__).lstm_from_onnx(path_or_model, node)

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
        # nn.LSTM's checks in nn.LSTM's order: input rank, state rank, input dtype and
        # features, state sizes; then aten::lstm's: devices, sequence length; ours between.
        if input.dim() != 2 and input.dim() != 3:
            raise LSTMInputError(
                f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead"
            )
        is_batched = input.dim() == 3
        if hx is not None:
            want = 3 if is_batched else 2
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise LSTMInputError(
                    f"For {kind} input, hx and cx should also be {want}-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
        if is_batched:
            x = input.transpose(0, 1) if self.batch_first else input  # (T, N, I)
        else:
            x = input.unsqueeze(1)  # (T, 1, I)
        if torch.jit.is_scripting():
            weights = self._flat_weights
        else:
            weights = [getattr(self, name) for name in self._flat_weights_names]
        self._check_input(input, weights[0])
        T, N = x.size(0), x.size(1)
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        num_states = self.num_layers * self.num_directions

        if hx is None:
            h0 = torch.zeros(num_states, N, real_hidden, dtype=x.dtype, device=x.device)
            c0 = torch.zeros(num_states, N, self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h0, c0 = hx
            if not is_batched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1)
            self._check_state(h0, (num_states, N, real_hidden), 0)
            self._check_state(c0, (num_states, N, self.hidden_size), 1)
        self._check_placement(h0, c0, weights, x)
        self._check_steps(x, input)

        lens: Optional[Tensor] = None
        if lengths is not None:
            lens = self._check_lengths(lengths, T, N, is_batched)

        output, h_n, c_n = self._run(x, h0, c0, weights, lens)

        if is_batched:
            if self.batch_first:
                output = output.transpose(0, 1)
        else:
            output = output.squeeze(1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1)
        return output, (h_n, c_n)

    def _run(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The layer stack, time-major in and out: the static loop, or aten::lstm when
        ``fused``.  An exporter's stand-in (``tracing.py``) overrides this method."""
        if self.fused:
            return self._forward_fused(x, h0, c0, weights, lengths)
        if torch.jit.is_scripting():
            if self.script_fused:  # a constant of the scripted module
                return self._forward_fused(x, h0, c0, weights, lengths)
        mask: Optional[Tensor] = None
        if lengths is not None:
            mask = length_mask(x.size(0), lengths, x.device)  # (T, N, 1)
        return self._forward_time_major(x, h0, c0, weights, mask)

    def _forward_fused(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """aten::lstm, nn.LSTM's kernel; ``lengths`` through a packed batch, as nn.LSTM does."""
        if lengths is None:
            out, h_n, c_n = torch.lstm(
                x, [h0, c0], weights, self.bias, self.num_layers, self.dropout,
                self.training, self.bidirectional, False,
            )
            return out, h_n, c_n
        sorted_lengths, order = torch.sort(lengths.cpu(), descending=True)
        order = order.to(x.device)
        data, batch_sizes = torch._pack_padded_sequence(x.index_select(1, order), sorted_lengths, False)
        hx = [h0.index_select(1, order), c0.index_select(1, order)]
        out, h_n, c_n = torch.lstm(
            data, batch_sizes, hx, weights, self.bias, self.num_layers, self.dropout,
            self.training, self.bidirectional,
        )
        padded, _ = torch._pad_packed_sequence(out, batch_sizes, False, 0.0, x.size(0))  # (T, N, D*P)
        inverse = torch.argsort(order)
        return padded.index_select(1, inverse), h_n.index_select(1, inverse), c_n.index_select(1, inverse)

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
            if torch.jit.is_scripting():
                weights = self._flat_weights
            else:
                weights = [getattr(self, name) for name in self._flat_weights_names]
            _, h_n, c_n = self._run(input.unsqueeze(0), h, c, weights, None)
            h.copy_(h_n)
            c.copy_(c_n)
            return h[L - 1]
        if torch.jit.is_scripting():
            if len(self._step_weights) == 0:
                self.prepare_step()
            packed = self._step_weights
        else:
            packed = self._packed_eager()
        N = input.size(0)
        layer_input = input
        for layer in range(L):
            xh = torch.cat([layer_input, h[layer]], 1)  # (N, I_l + P)
            gates = torch.baddbmm(packed[3 * layer + 1], xh.expand(2, N, xh.size(1)), packed[3 * layer])  # (2, N, 2H)
            ingate, forgetgate = torch.sigmoid(gates[0]).chunk(2, 1)  # (N, H) each
            outgate, cellgate = gates[1].chunk(2, 1)
            c_l = c[layer]  # (N, H), written in place
            torch.addcmul(forgetgate * c_l, ingate, torch.tanh(cellgate), out=c_l)
            h_l = h[layer]  # (N, P), written in place
            if self.proj_size > 0:
                torch.mm(torch.sigmoid(outgate) * torch.tanh(c_l), packed[3 * layer + 2], out=h_l)
            else:
                torch.mul(torch.sigmoid(outgate), torch.tanh(c_l), out=h_l)
            layer_input = h_l
        return layer_input

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
        if torch.jit.is_scripting():
            weights = self._flat_weights
        else:
            weights = [getattr(self, name) for name in self._flat_weights_names]
        packed: List[Tensor] = []
        if self._cell == 0 and not self.bidirectional:
            H = self.hidden_size
            for layer in range(self.num_layers):
                w_ih, w_hh, bias, w_hr, _, _ = cell_weights(
                    weights, layer, self._weights_per_cell, self.bias, self.proj_size > 0, self._cell
                )
                w = torch.cat([w_ih, w_hh], 1).detach()  # (4H, I_l + P), rows i, f, g, o
                b = bias.detach() if bias is not None else w.new_zeros(4 * H)  # (4H,)
                halves = torch.stack([w[: 2 * H], torch.cat([w[3 * H :], w[2 * H : 3 * H]])])  # (2, 2H, K): [i f], [o g]
                bh = torch.stack([b[: 2 * H], torch.cat([b[3 * H :], b[2 * H : 3 * H]])])  # (2, 2H)
                packed.append(halves.transpose(1, 2).contiguous())  # (2, K, 2H)
                packed.append(bh.unsqueeze(1).contiguous())  # (2, 1, 2H)
                packed.append(w_hr.detach().t().contiguous() if w_hr is not None else w.new_empty(0))  # (H, P)
        if torch.jit.is_scripting():
            self._step_weights = packed
        else:
            self._step_cache = _StepCache(self._weights_key(), packed)

    @torch.jit.unused
    def _weights_key(self) -> List[int]:
        """Identity and version of every parameter: changes when a weight does."""
        params = [getattr(self, name) for name in self._flat_weights_names]
        return [id(p) for p in params] + [p._version for p in params]

    @torch.jit.unused
    def _packed_eager(self) -> List[Tensor]:
        """The packed step weights in eager mode, packed again when a parameter changed."""
        if self._step_cache.key != self._weights_key():
            self.prepare_step()
        return self._step_cache.packed

    def _check_step(self, input: Tensor, h: Tensor, c: Tensor) -> None:
        """Cheap checks of a step: ranks, sizes and dtypes, with expected and got."""
        if self.bidirectional:
            raise LSTMInputError(
                "step needs a unidirectional LSTM: the reverse direction reads the whole sequence; "
                "this module has bidirectional=True, run forward on the whole sequence"
            )
        I = self.input_size
        if input.dim() != 2 or input.size(1) != I:
            raise LSTMInputError(
                f"step: expected input of shape (N, {I}), one time step, got {list(input.size())}"
            )
        w = self.weight_ih_l0
        if input.dtype != w.dtype:
            raise LSTMInputError(
                f"step: expected input of dtype {_dtype_name(w.dtype)} (the weights'), got {_dtype_name(input.dtype)}"
            )
        N = input.size(0)
        P = self.proj_size if self.proj_size > 0 else self.hidden_size
        want_h = [self.num_layers, N, P]
        want_c = [self.num_layers, N, self.hidden_size]
        if list(h.size()) != want_h or list(c.size()) != want_c:
            raise LSTMInputError(
                f"step: expected h of shape {want_h} and c of shape {want_c} (num_layers, N, size) for input "
                f"of shape {list(input.size())}, got {list(h.size())} and {list(c.size())}"
            )
        if h.dtype != input.dtype or c.dtype != input.dtype:
            raise LSTMInputError(
                f"step: expected h and c of dtype {_dtype_name(input.dtype)} (the input's), got "
                f"{_dtype_name(h.dtype)} and {_dtype_name(c.dtype)}"
            )

    # -- checks ------------------------------------------------------------------------

    def _check_input(self, input: Tensor, weight: Tensor) -> None:
        """nn.RNNBase.check_input: the input's dtype, then its features."""
        if input.dtype != weight.dtype:
            raise LSTMInputError(
                f"RNN input dtype ({_dtype_name(input.dtype)}) does not match weight dtype "
                f"({_dtype_name(weight.dtype)}). Convert input: "
                f"input.to({_dtype_name(weight.dtype)}), or convert model: "
                f"model.to({_dtype_name(input.dtype)})"
            )
        if torch.jit.is_tracing():
            return  # sizes are traced values here; comparing them would only warn
        if input.size(-1) != self.input_size:
            raise LSTMInputError(
                "input.size(-1) must be equal to input_size. Expected "
                f"{self.input_size}, got {input.size(-1)} (input of shape {list(input.size())})"
            )

    def _check_steps(self, x: Tensor, input: Tensor) -> None:
        """At least one step (aten::lstm's check and message) and one sequence (ours)."""
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

    def _check_state(self, state: Tensor, expected: Tuple[int, int, int], which: int) -> None:
        """nn.LSTM.check_forward_args: the size of hidden[0] or hidden[1]."""
        # Fix: while tracing, sizes are traced values and this comparison only emits a
        # TracerWarning (as _check_input already knew); the trace fixes the shapes anyway.
        if not torch.jit.is_tracing() and state.size() != expected:
            raise LSTMInputError(
                f"Expected hidden[{which}] size {expected}, got {list(state.size())}"
            )

    def _check_placement(self, h0: Tensor, c0: Tensor, weights: List[Tensor], x: Tensor) -> None:
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
        _check_state_dtypes([h0, c0], x.dtype, "Expected hidden", " (the input's)")

    def _check_lengths(self, lengths: Tensor, T: int, N: int, is_batched: bool) -> Tensor:
        """Check ``lengths``; return it as (N,) int64."""
        if lengths.dtype != torch.int64:
            raise LSTMInputError(
                f"lengths must be an int64 tensor, got {_dtype_name(lengths.dtype)}"
            )
        if not is_batched and lengths.dim() == 0:
            lengths = lengths.unsqueeze(0)
        # Fix: the batch-size comparison only emits a TracerWarning while tracing (see
        # _check_state); the rank check is static and stays.
        if lengths.dim() != 1 or (not torch.jit.is_tracing() and lengths.size(0) != N):
            raise LSTMInputError(
                f"lengths must have shape ({N},), one length per sequence, "
                f"got shape {list(lengths.size())}"
            )
        if _value_checks_enabled():
            lo = int(lengths.min())
            hi = int(lengths.max())
            if lo < 1 or hi > T:
                raise LSTMInputError(
                    f"lengths must lie in 1..{T} (the sequence length), got values "
                    f"from {lo} to {hi}"
                )
        return lengths

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


class _StepCache:
    """Eager mode's packed step weights and the parameter key they were packed from
    (a plain object: TorchScript leaves it out of the scripted module)."""

    def __init__(self, key: Optional[List[int]] = None, packed: Optional[List[Tensor]] = None) -> None:
        self.key = key
        self.packed = packed if packed is not None else []


def _reset(module: nn.Module, hidden_size: int) -> None:
    """Uniform(-1/sqrt(H), 1/sqrt(H)), layer norm weights 1 and biases 0."""
    stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    with torch.no_grad():
        for name, weight in module.named_parameters():
            if name.startswith("ln_"):
                weight.fill_(1.0 if "_weight" in name else 0.0)
            else:
                nn.init.uniform_(weight, -stdv, stdv)


def _config_of(lstm: nn.Module) -> dict:
    """Constructor arguments of an ``nn.LSTM`` or ``deploy_lstm.LSTM``."""
    return dataclasses.asdict(LSTMConfig.of(lstm))


class LSTMCell(_FlatWeights):
    r"""Drop-in, scriptable replacement for :class:`torch.nn.LSTMCell`.

    Args:
        input_size: features of the input.
        hidden_size: features of ``h`` and ``c``.
        bias: use ``bias_ih``/``bias_hh``.
        device, dtype: factory arguments for the parameters.
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
        _reset(self, self.hidden_size)

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
        # nn.LSTMCell's checks in its order and with its messages: ranks (in Python),
        # then aten::lstm_cell's input size, batch and hidden size of hx[0], of hx[1];
        # our own checks (rank of hx against the input, empty batch, dtypes) in between.
        if input.dim() != 1 and input.dim() != 2:
            raise LSTMInputError(
                f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead"
            )
        if hx is not None:
            for idx, value in enumerate([hx[0], hx[1]]):
                if value.dim() != 1 and value.dim() != 2:
                    raise LSTMInputError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead"
                    )
        is_batched = input.dim() == 2
        x = input if is_batched else input.unsqueeze(0)  # (N, I)
        if x.size(1) != self.input_size:
            # Fix: aten::lstm_cell's message, which nn.LSTMCell raises.
            raise LSTMInputError(
                f"input has inconsistent input_size: got {x.size(1)} expected {self.input_size} "
                f"(input of shape {list(input.size())})"
            )
        N = x.size(0)
        if N == 0:
            raise LSTMInputError("LSTMCell: expected a batch of at least one, got 0")
        if hx is None:
            h = torch.zeros(N, self.hidden_size, dtype=x.dtype, device=x.device)
            c = torch.zeros(N, self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h, c = hx
            for idx, value in enumerate([h, c]):
                if value.dim() != input.dim():
                    raise LSTMInputError(
                        f"LSTMCell: Expected hx[{idx}] to be {input.dim()}D like the input, "
                        f"got {value.dim()}D instead"
                    )
            h, c = (h, c) if is_batched else (h.unsqueeze(0), c.unsqueeze(0))  # (N, H)
            for idx, value in enumerate([h, c]):
                # Fix: aten::lstm_cell's messages, which nn.LSTMCell raises.
                if value.size(0) != N:
                    raise LSTMInputError(
                        f"Input batch size {N} doesn't match hidden{idx} batch size {value.size(0)}"
                    )
                if value.size(1) != self.hidden_size:
                    raise LSTMInputError(
                        f"hidden{idx} has inconsistent hidden_size: got {value.size(1)}, "
                        f"expected {self.hidden_size}"
                    )
        # Dtypes last: nn.LSTMCell finds a mismatch only in its matmul, after the size checks.
        if input.dtype != self.weight_ih.dtype:
            raise LSTMInputError(
                f"LSTMCell: input dtype ({_dtype_name(input.dtype)}) does not match weight "
                f"dtype ({_dtype_name(self.weight_ih.dtype)})"
            )
        _check_state_dtypes([h, c], x.dtype, "LSTMCell: Expected hx", "")
        if torch.jit.is_scripting():
            weights = self._flat_weights
        else:
            weights = [getattr(self, name) for name in self._flat_weights_names]
        w_ih, w_hh, bias, _, ex_in, ex_step = cell_weights(weights, 0, self._weights_per_cell, self.bias, False, self._cell)
        xw = project_input(x.unsqueeze(0), w_ih, bias, self._cell, ex_in)[0]  # (N, 4H)
        h1, c1 = cell_step(xw, h, c, w_hh.t(), None, self._cell, ex_step)
        if not is_batched:
            return h1.squeeze(0), c1.squeeze(0)
        return h1, c1
