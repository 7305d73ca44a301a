"""ONNX export of ``deploy_lstm`` LSTMs and of any model containing them.

The exporter traces :func:`~deploy_lstm.exporters.standins.traceable`'s copy of the model, in
which each LSTM is an ONNX ``LSTM`` node per layer (``native``: no projection,
float32) or an ONNX ``Scan`` (dynamo exporter) / ``Loop`` (TorchScript exporter) per
direction.  This module translates the ``deploy_lstm::onnx_lstm`` op for both
exporters, writes the metadata, and checks the file before moving it into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import onnx
import torch
from onnxscript import opset18 as op
from torch import nn
from torch.onnx import symbolic_helper
from typing_extensions import Unpack

import deploy_lstm.nn.ops  # noqa: F401 -- registers deploy_lstm::onnx_lstm, which this module translates
from deploy_lstm.errors import ExportError
from deploy_lstm.exporters.common import export_errors, quiet_exporter
from deploy_lstm.exporters.signature import GraphArgs, Signature, export_signature
from deploy_lstm.exporters.standins import traceable
from deploy_lstm.formats import contract
from deploy_lstm.formats.files import atomic_path, check_target
from deploy_lstm.formats.metadata import ArtifactMetadata, read_onnx_metadata

__all__ = ["export_onnx", "OPSETS", "DEFAULT_OPSET", "checked_opset", "graph_ops", "read_metadata", "fold_constants"]

#: Supported opset range per exporter (both ends are tested).
OPSETS: Dict[str, Tuple[int, int]] = {"dynamo": (18, 23), "torchscript": (11, 20)}
DEFAULT_OPSET: Dict[str, int] = {"dynamo": 18, "torchscript": 17}

_GB2 = 2**31 - 2**20  # protobuf's hard 2 GB limit, with a margin for the graph itself


# --- deploy_lstm::onnx_lstm as an ONNX LSTM node, for each exporter --------------------------


def _onnx_lstm_dynamo(x, w, r, b, sequence_lens, initial_h, initial_c, hidden_size: int, bidirectional: bool, p=None):  # type: ignore[no-untyped-def]
    """onnxscript translation of ``deploy_lstm::onnx_lstm`` for the dynamo exporter."""
    if sequence_lens is not None:
        sequence_lens = op.Cast(sequence_lens, to=onnx.TensorProto.INT32)
    direction = "bidirectional" if bidirectional else "forward"
    y, y_h, y_c = op.LSTM(
        x, w, r, b, sequence_lens, initial_h, initial_c, p, direction=direction, hidden_size=hidden_size
    )
    return y, y_h, y_c


def _onnx_lstm_torchscript(g, x, w, r, b, sequence_lens, initial_h, initial_c, hidden_size, bidirectional, p=None):  # type: ignore[no-untyped-def]
    """Symbolic of ``deploy_lstm::onnx_lstm`` for the TorchScript-based exporter."""
    H = symbolic_helper._get_const(hidden_size, "i", "hidden_size")
    bidir = symbolic_helper._get_const(bidirectional, "b", "bidirectional")
    if symbolic_helper._is_none(sequence_lens):
        sequence_lens = g.op("prim::Constant")  # a missing optional input
        sequence_lens.setType(torch._C.OptionalType.ofTensor())
    else:
        sequence_lens = g.op("Cast", sequence_lens, to_i=onnx.TensorProto.INT32)
    peepholes = [] if p is None or symbolic_helper._is_none(p) else [p]
    return g.op(
        "LSTM", x, w, r, b, sequence_lens, initial_h, initial_c, *peepholes,
        direction_s="bidirectional" if bidir else "forward", hidden_size_i=H, outputs=3,
    )


def _register_torchscript_symbolic(opset: int) -> None:
    # Idempotent: registering again for the same opset replaces the same function.
    torch.onnx.register_custom_op_symbolic("deploy_lstm::onnx_lstm", _onnx_lstm_torchscript, opset)


# --- the public export function ------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    lengths: bool = False,
    exporter: str = "dynamo",
    opset: Optional[int] = None,
    native_lstm: bool = True,
    signature: Optional[Signature] = None,
    **graph: Unpack[GraphArgs],
) -> Path:
    """Export ``model`` to ONNX with dynamic batch and sequence axes, atomically.

    Args:
        model: a bare ``deploy_lstm.LSTM`` (no example needed: graph inputs ``input``,
            ``h0``, ``c0`` [, ``lengths``], outputs ``output``, ``hn``, ``cn``), or any
            model containing ``deploy_lstm`` LSTMs (give ``example_inputs``, names and
            ``dynamic_axes``).
        path: the ``.onnx`` file to write.  Written atomically; weights over 2 GB go to
            ``<path>.data`` beside it.
        lengths: bare LSTM only: add the int64 ``lengths`` (batch,) input.
        exporter: ``"dynamo"`` (torch.export based, default) or ``"torchscript"``.
        opset: ONNX opset; see ``OPSETS`` for each exporter's range.
        native_lstm: use the ONNX ``LSTM`` operator where it can express the layer
            (no projection, float32); otherwise ``Scan``/``Loop``.
        signature: ``model``'s :class:`~deploy_lstm.exporters.signature.Signature`, when
            the caller computed it already (``export_folder`` does, once for every
            exporter); then ``lengths`` and ``**graph`` are not given.
        **graph: a whole model's call and names (:class:`~deploy_lstm.exporters.signature.GraphArgs`):
            ``example_inputs`` (e.g. ``(x, (h0, c0))``), ``example_kwargs``,
            ``input_names``/``output_names`` (one per flattened tensor, in torch.export's
            order), and ``dynamic_axes`` (``{name: {axis: dim name}}``) or
            ``dynamic_shapes`` (torch.export's nested form).

    Returns:
        The path written.

    Raises:
        ExportError: unsupported exporter or opset, a model that cannot be exported,
            names or axes that do not fit it, or a path that cannot be written (all
            before any work); or the exporter's failure, with its cause.
    """
    opset = checked_opset(exporter, opset)
    sig = export_signature(model, "export fixes the sequence length or fails", signature, lengths=lengths, **graph)
    path = Path(path)
    check_target(path)
    with atomic_path(path, sidecars=[path.name + ".data"]) as tmp, export_errors(
        f"ONNX export with the {exporter} exporter (opset {opset})"
    ):
        copied, routes = traceable(model, "scan" if exporter == "dynamo" else "loop", native_lstm)
        raw = tmp.parent / "raw" / path.name
        raw.parent.mkdir()
        _trace(sig.wrap(copied).eval(), sig, raw, exporter, opset)
        proto = onnx.load(str(raw))
        del proto.metadata_props[:]
        for key, value in ArtifactMetadata.describe(model, io=sig.io, exporter=exporter, routes=routes).to_strings().items():
            proto.metadata_props.add(key=key, value=value)
        fold_constants(proto, only_lstm_weights=True)
        _stamp_io(proto, sig.io)
        _check_dynamic(proto, sig.dynamic_axes())
        _save_checked(proto, tmp, path.name + ".data")
    return path


def checked_opset(exporter: str, opset: Optional[int]) -> int:
    """``opset``, or the exporter's default, checked against ``OPSETS``.

    Raises:
        ExportError: an unknown exporter, or an opset outside its range.
    """
    if exporter not in OPSETS:
        raise ExportError(f"unknown exporter {exporter!r}; expected one of {sorted(OPSETS)}")
    lo, hi = OPSETS[exporter]
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    if not isinstance(opset, int) or not lo <= opset <= hi:
        raise ExportError(f"opset {opset!r} is not supported by the {exporter} exporter; expected {lo}..{hi}")
    return opset


def _trace(graph: nn.Module, sig: Signature, raw: Path, exporter: str, opset: int) -> None:
    """``torch.onnx.export`` of the stand-in graph to ``raw``, with either exporter."""
    with quiet_exporter():
        common: Dict[str, Any] = dict(
            kwargs=sig.kwargs or None, opset_version=opset, input_names=sig.input_names, output_names=sig.output_names
        )
        if exporter == "dynamo":
            torch.onnx.export(
                graph, sig.args, str(raw), dynamo=True, **common, dynamic_shapes=sig.dynamic_shapes(),
                custom_translation_table={torch.ops.deploy_lstm.onnx_lstm.default: _onnx_lstm_dynamo},
                external_data=True, optimize=True, verbose=False,
            )
        else:
            _register_torchscript_symbolic(opset)
            torch.onnx.export(
                graph, sig.args, str(raw), dynamo=False, **common,
                dynamic_axes=sig.dynamic_axes(), do_constant_folding=True,
            )


def _save_checked(proto: onnx.ModelProto, tmp: Path, data_name: str) -> None:
    """Save ``proto`` to ``tmp`` (weights over 2 GB to ``data_name`` beside it) and run the full checker."""
    if sum(_tensor_bytes(t) for t in proto.graph.initializer) > _GB2:
        onnx.save_model(
            proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
            location=data_name, size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(tmp))
    onnx.checker.check_model(str(tmp), full_check=True)


def _tensor_bytes(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n * max(1, onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize)


def fold_constants(proto: onnx.ModelProto, only_lstm_weights: bool = False) -> int:
    """Move top-level ``Constant`` nodes holding a tensor into graph initializers, in place.

    The TorchScript exporter folds an LSTM's W, R, B into Constant nodes;
    onnxruntime's ``quantize_dynamic`` only turns an ``LSTM`` into
    ``DynamicQuantizeLSTM`` when W and R are initializers.

    Args:
        only_lstm_weights: move only the Constants feeding an ``LSTM`` node's W, R, B.

    Returns:
        The number of constants moved.
    """
    g = proto.graph
    wanted = {name for n in g.node if n.op_type == "LSTM" for name in n.input[1:4]}
    keep, moved = [], 0
    for node in g.node:
        attrs = {a.name: a for a in node.attribute}
        is_tensor_constant = node.op_type == "Constant" and node.domain in ("", "ai.onnx") and set(attrs) == {"value"}
        if is_tensor_constant and (not only_lstm_weights or node.output[0] in wanted):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attrs["value"].t)
            tensor.name = node.output[0]
            g.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    return moved


def _stamp_io(proto: onnx.ModelProto, io: contract.IOSpec) -> None:
    """Write the contract's shapes on the graph inputs/outputs.

    The TorchScript exporter loses static feature sizes behind a Loop (it names
    them like 'Transposeoutput_dim_2'); the contract knows them.
    """
    specs = {t.name: t for t in io.inputs + io.outputs}
    for vi in list(proto.graph.input) + list(proto.graph.output):
        spec = specs.get(vi.name)
        if spec is None:
            continue
        shape = vi.type.tensor_type.shape
        if len(shape.dim) != len(spec.shape):
            raise ExportError(f"exported {vi.name!r} has rank {len(shape.dim)}; the contract says {spec.shape}")
        for d, want in zip(shape.dim, spec.shape):
            if isinstance(want, int):
                d.dim_value = want
            else:
                d.dim_param = want


def _check_dynamic(proto: onnx.ModelProto, dynamic_axes: Mapping[str, Mapping[int, str]]) -> None:
    """Every declared dynamic axis of every graph input/output is symbolic in the file."""
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for axis in dynamic_axes.get(vi.name, {}):
            if int(axis) < len(dims) and dims[int(axis)].HasField("dim_value"):
                raise ExportError(
                    f"the exported graph fixed axis {axis} of {vi.name!r} to {dims[int(axis)].dim_value}; "
                    "expected a dynamic dimension"
                )


def read_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    """The metadata of an ONNX file, decoded (without loading its weights).

    Raises:
        ArtifactError: not an ONNX model, or metadata that does not decode.
    """
    return read_onnx_metadata(path)


def graph_ops(proto: onnx.ModelProto) -> Dict[str, int]:
    """Operator counts over the graph and every subgraph (Scan/Loop bodies)."""
    counts: Dict[str, int] = {}

    def walk(g: onnx.GraphProto) -> None:
        for n in g.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)

    walk(proto.graph)
    return counts
