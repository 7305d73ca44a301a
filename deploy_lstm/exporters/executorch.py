"""ExecuTorch export of a bare ``deploy_lstm.LSTM``: one ``model.pte`` for phones and small boards.

ExecuTorch runs a program of fixed shapes: ``torch.export`` specialises the sequence
length of a time loop ("You marked T as dynamic but your code specialized it to be a
constant"), and the ``scan`` stand-in that keeps it dynamic is not delegated (~2.7 ms per
one-step chunk, 40x slower).  So the program streams: its method ``forward(input, h0, c0)
-> (output, hn, cn)`` takes a chunk of a fixed length and a fixed batch, and a caller
runs a sequence chunk by chunk, carrying ``(hn, cn)`` into the next call.  A second method
``step`` (one time step) takes the remainder of a sequence shorter than the chunk.

Every matmul goes to XNNPACK: its partitioner takes a linear only when the weight and
the bias are constants of the program ("Expected bias to be a static param"), so
:class:`ChunkLSTM` holds nn.LSTM's weights as buffers with ``bias_ih + bias_hh``
summed once, here, and calls ``F.linear``.  Refused, with the reason: bidirectional
LSTMs (the reverse direction of a chunk needs the steps after it), cell variants (not
written for the delegate; export ``cell="lstm"``), float64 (XNNPACK computes float32).

A whole model (an embedding or a linear head around ``deploy_lstm.LSTM`` s, such as the
demo forecaster's step) exports the same way at the fixed shapes of its example inputs:
on the exporter's copy of the model each LSTM stays an LSTM (its checks and layouts
hold) and runs :class:`ChunkLayers`, ChunkLSTM's delegatable loop, as its layer stack
(``LSTM.set_layer_stack``) for the duration of ``torch.export``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_map_only

from deploy_lstm.errors import ExportError
from deploy_lstm.exporters.common import export_errors, quiet_exporter
from deploy_lstm.exporters.standins import module_tree_copy
from deploy_lstm.formats.files import atomic_path, check_target
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.nn.swap import shallow_copy

__all__ = ["export_executorch", "ChunkLSTM", "ChunkLayers", "delegatable_copy", "model_program", "STEP_METHOD", "lowered_program", "undelegated_ops", "method_lengths", "details"]

#: the method of one time step, beside ``forward``, when the chunk is longer than 1
STEP_METHOD = "step"


class ChunkLSTM(nn.Module):
    """A unidirectional ``deploy_lstm.LSTM`` with ``cell="lstm"`` over a chunk of fixed length,
    written so that XNNPACK takes every matmul: weights and pre-summed biases are buffers
    (constants once exported), every matmul an ``F.linear``.

    ``forward(input, h0, c0) -> (output, hn, cn)`` as ``nn.LSTM``'s ``lstm(input, (h0, c0))``,
    ``input`` (T, N, I) or (N, T, I) with ``batch_first``; T is whatever the trace sees.
    """

    def __init__(self, lstm: LSTM) -> None:
        super().__init__()
        self.config = LSTMConfig.of(lstm)
        self.num_layers = lstm.num_layers
        self.batch_first = lstm.batch_first
        self.has_proj = lstm.proj_size > 0
        for layer in range(lstm.num_layers):
            weight_ih = getattr(lstm, f"weight_ih_l{layer}").detach()
            self.register_buffer(f"weight_ih_{layer}", weight_ih.clone())  # (4H, I)
            self.register_buffer(f"weight_hh_{layer}", getattr(lstm, f"weight_hh_l{layer}").detach().clone())  # (4H, P)
            if lstm.bias:
                bias = getattr(lstm, f"bias_ih_l{layer}").detach() + getattr(lstm, f"bias_hh_l{layer}").detach()
            else:
                bias = weight_ih.new_zeros(weight_ih.size(0))
            self.register_buffer(f"bias_{layer}", bias)  # (4H,): summed once, a constant for XNNPACK
            if self.has_proj:
                self.register_buffer(f"weight_hr_{layer}", getattr(lstm, f"weight_hr_l{layer}").detach().clone())  # (P, H)

    def forward(self, input: Tensor, h0: Tensor, c0: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        x = input.transpose(0, 1) if self.batch_first else input  # (T, N, I)
        hn: List[Tensor] = []
        cn: List[Tensor] = []
        for layer in range(self.num_layers):
            xw = F.linear(x, getattr(self, f"weight_ih_{layer}"), getattr(self, f"bias_{layer}"))  # (T, N, 4H)
            weight_hh = getattr(self, f"weight_hh_{layer}")
            weight_hr = getattr(self, f"weight_hr_{layer}") if self.has_proj else None
            h, c = h0[layer], c0[layer]  # (N, P), (N, H)
            steps: List[Tensor] = []
            for t in range(xw.size(0)):
                gates = xw[t] + F.linear(h, weight_hh)  # (N, 4H)
                ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
                c = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)  # (N, H)
                h = torch.sigmoid(outgate) * torch.tanh(c)  # (N, H)
                if weight_hr is not None:
                    h = F.linear(h, weight_hr)  # (N, P)
                steps.append(h)
            x = torch.stack(steps)  # (T, N, P)
            hn.append(h)
            cn.append(c)
        output = x.transpose(0, 1) if self.batch_first else x
        return output, torch.stack(hn), torch.stack(cn)


class ChunkLayers(ChunkLSTM):
    """:class:`ChunkLSTM` as an LSTM's layer stack (``LSTM.set_layer_stack``), for a whole model:
    ``(x, h0, c0, weights, lengths) -> (output, hn, cn)`` time-major, without ``lengths``
    (a padded batch is not streamed chunk by chunk)."""

    def __init__(self, lstm: LSTM) -> None:
        super().__init__(lstm)
        self.batch_first = False  # the LSTM's forward hands its stack time-major input

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        if lengths is not None:
            raise ExportError("an LSTM called with lengths cannot be exported to ExecuTorch (fixed chunks, no padding); call it without lengths")
        return super().forward(x, h0, c0)


def delegatable_copy(model: nn.Module) -> nn.Module:
    """The copy of ``model`` that ``torch.export`` traces for ExecuTorch: each ``deploy_lstm.LSTM``
    in it (checked as :func:`_check_lstm` does) runs :class:`ChunkLayers`; ``model`` is not changed."""

    def stand_in(m: nn.Module) -> Optional[nn.Module]:
        if isinstance(m, nn.LSTM) and not isinstance(m, LSTM):
            raise ExportError("the model holds a torch.nn.LSTM; swap it first: deploy_lstm.swap_lstms(model)")
        if not isinstance(m, LSTM):
            return None
        new = shallow_copy(m)  # an LSTM still: the model's own isinstance checks hold in the trace
        new.set_layer_stack(ChunkLayers(_check_lstm(m)))
        return new

    return module_tree_copy(model, stand_in)


def _check_streamable(lstm: object, chunk: int, batch: int) -> LSTM:
    """``lstm`` is a ``deploy_lstm.LSTM`` ExecuTorch can stream; else ExportError with the reason."""
    if isinstance(lstm, nn.LSTM) and not isinstance(lstm, LSTM):
        raise ExportError("expected a deploy_lstm.LSTM, got a torch.nn.LSTM; convert it first: deploy_lstm.LSTM.from_torch(lstm)")
    if not isinstance(lstm, LSTM):
        raise ExportError(
            f"ExecuTorch export of a {type(lstm).__name__} (not a bare deploy_lstm.LSTM) needs example_inputs, "
            "which fix every shape of the program: export_executorch(model, path, example_inputs=(x, h0, c0))"
        )
    for name, value in (("chunk", chunk), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ExportError(f"expected {name} >= 1 (an int), got {value!r}")
    return _check_lstm(lstm)


def _check_lstm(lstm: LSTM) -> LSTM:
    """``lstm`` has what ChunkLSTM computes on XNNPACK; else ExportError with the reason."""
    if lstm.bidirectional:
        raise ExportError(
            "a bidirectional LSTM cannot be exported to ExecuTorch: the program streams chunk by chunk, "
            "and the reverse direction of a chunk needs the steps after it; export it to onnx or aoti"
        )
    if lstm.cell != "lstm":
        raise ExportError(
            f"cell={lstm.cell!r} has no ExecuTorch export: only nn.LSTM's cell is written so that XNNPACK "
            "takes every matmul; export cell='lstm', or this cell to onnx or aoti"
        )
    dtype = lstm.weight_ih_l0.dtype
    if dtype != torch.float32:
        raise ExportError(f"ExecuTorch export needs float32 weights (XNNPACK computes float32), got {dtype}; call lstm.float() first")
    return lstm


def _example(cfg: LSTMConfig, chunk: int, batch: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Example (input, h0, c0) of one chunk."""
    x = torch.zeros(batch, chunk, cfg.input_size) if cfg.batch_first else torch.zeros(chunk, batch, cfg.input_size)
    return x, torch.zeros(cfg.num_layers, batch, cfg.real_hidden_size), torch.zeros(cfg.num_layers, batch, cfg.hidden_size)


def lowered_program(lstm: LSTM, chunk: int = 1, batch: int = 1):  # type: ignore[no-untyped-def]
    """The ExecuTorch edge program, lowered to XNNPACK, of ``forward`` at ``chunk`` (and ``step``
    when ``chunk > 1``); for :func:`undelegated_ops` and :func:`export_executorch`.

    Raises:
        ExportError: an LSTM ExecuTorch cannot stream (the reason in the message), or no executorch package.
    """
    lstm = _check_streamable(lstm, chunk, batch)
    module = ChunkLSTM(lstm).eval()
    return _lowered(module, {name: _example(module.config, T, batch) for name, T in method_lengths(chunk).items()})


def model_program(model: nn.Module, example_inputs: Tuple[Any, ...]):  # type: ignore[no-untyped-def]
    """The ExecuTorch edge program, lowered to XNNPACK, of a whole model's ``forward`` at the
    shapes of ``example_inputs`` (:func:`delegatable_copy` traced); for :func:`export_executorch`."""
    if not isinstance(example_inputs, tuple):
        raise ExportError(f"expected example_inputs as a tuple of forward's arguments, got {type(example_inputs).__name__}")
    # a tensor given twice, as in (x, h, h), would become one input of the program: copy each
    examples = tree_map_only(Tensor, lambda t: t.detach().clone(), example_inputs)
    return _lowered(delegatable_copy(model), {"forward": examples})


def _lowered(module: nn.Module, examples: Dict[str, Tuple[Any, ...]]):  # type: ignore[no-untyped-def]
    """{method: ``module`` exported at its example}, lowered to XNNPACK (ExportError without executorch)."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as e:
        raise ExportError(f"exporting model.pte needs the executorch package: pip install 'deploy-lstm[executorch]' ({e})") from None
    with torch.no_grad():
        programs = {name: torch.export.export(module, example) for name, example in examples.items()}
    return to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])


def undelegated_ops(edge) -> Dict[str, List[str]]:  # type: ignore[no-untyped-def]
    """{method: the compute ops left outside the XNNPACK delegate} of a lowered program."""
    shape_only = ("getitem", "view", "squeeze", "unsqueeze", "alloc", "permute_copy", "expand_copy")
    left: Dict[str, List[str]] = {}
    for name in edge.methods:
        ops = []
        for node in edge.exported_program(name).graph.nodes:
            if node.op != "call_function":
                continue
            target = str(node.target)
            if "executorch_call_delegate" in target or any(s in target for s in shape_only):
                continue
            ops.append(target)
        left[name] = ops
    return left


def export_executorch(
    lstm: nn.Module, path: str | os.PathLike, chunk: int = 1, batch: int = 1, *, example_inputs: Optional[Tuple[Any, ...]] = None
) -> Path:
    """Export ``lstm`` (or a whole model) to an ExecuTorch program (``.pte``), XNNPACK-delegated, atomically.

    The program's method ``forward(input, h0, c0) -> (output, hn, cn)`` runs ``chunk`` time
    steps of ``batch`` sequences (input (chunk, batch, input_size), or (batch, chunk,
    input_size) with ``batch_first``); with ``chunk > 1`` a method ``step`` runs one
    step, for the remainder of a sequence.  Stream a sequence by feeding each call's
    ``hn``/``cn`` to the next (``deploy_lstm.runtime.executorch.ExecutorchRunner`` does).

    Args:
        lstm: a unidirectional float32 ``deploy_lstm.LSTM`` with ``cell="lstm"`` (any
            layers, projection, ``batch_first``; ``LSTM.from_torch(nn_lstm)`` for an nn.LSTM).
        path: the ``.pte`` file to write.
        chunk: time steps per ``forward`` call.
        batch: sequences per call.
        example_inputs: for a whole model (any module holding ``deploy_lstm.LSTM`` s, such
            as an embedding or a head around one): ``forward``'s arguments, whose shapes
            are the program's (``chunk`` and ``batch`` are then unused); its one method
            ``forward`` takes and returns what the model's does.

    Returns:
        The path written.

    Raises:
        ExportError: an LSTM ExecuTorch cannot stream (bidirectional, a cell variant,
            float64), a bad chunk or batch, or a failed export (with its cause).
    """
    path = Path(path)
    check_target(path)
    if example_inputs is None:
        _check_streamable(lstm, chunk, batch)
    else:
        delegatable_copy(lstm)  # refuses an LSTM it cannot stream before the export starts
    with atomic_path(path) as tmp, export_errors(f"ExecuTorch export of {type(lstm).__name__}"), quiet_exporter():
        lowered = lowered_program(lstm, chunk, batch) if example_inputs is None else model_program(lstm, example_inputs)  # type: ignore[arg-type]
        program = lowered.to_executorch()
        tmp.write_bytes(program.buffer)
    return path


def method_lengths(chunk: int) -> Dict[str, int]:
    """{method: time steps per call} of a program exported at ``chunk``."""
    return {"forward": chunk} if chunk == 1 else {"forward": chunk, STEP_METHOD: 1}


def details(chunk: int, batch: int) -> Dict[str, object]:
    """The manifest's ``details`` of a ``model.pte``: chunk, batch, its methods and delegate."""
    return {"chunk": chunk, "batch": batch, "methods": method_lengths(chunk), "delegate": "XnnpackBackend"}
