"""A Triton Inference Server model repository (and a KServe manifest) from an export folder.

:func:`write_repository` writes, for one export folder::

    <repo>/<name>/config.pbtxt            backend "onnxruntime", dynamic batching
    <repo>/<name>/1/model.onnx            batch-first graph, zero initial state inside (bare LSTM)
    <repo>/<name>_stream/config.pbtxt     sequence batching; (h, c) carried by Triton as implicit state
    <repo>/<name>_stream/1/model.onnx     batch-first graph: input, h0, c0, START, END, CORRID -> output, hn, cn
    <repo>/kserve.yaml                    a KServe InferenceService (serving.kserve.io/v1beta1) for the repository

Triton puts the batch dimension first on every tensor of a model with
``max_batch_size > 0`` (state included), so both graphs are exported again from the
folder's eager model, each tensor's batch axis (:func:`~deploy_lstm.contract.batch_axis`)
moved to 0.  Before anything is moved into ``repo`` each graph is run in onnxruntime at
shapes other than the export example and compared with the eager model, the stream graph
chunk by chunk the way Triton's sequence batcher drives it, and each ``config.pbtxt`` is
parsed with Triton's own ``ModelConfig`` protobuf (from ``tritonclient``) and checked
against the graph's inputs and outputs (names, dtypes, dims).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.utils._pytree as pytree
from google.protobuf import text_format
from torch import Tensor, nn
from tritonclient.grpc import model_config_pb2

from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, TensorSpec
from deploy_lstm.errors import ArtifactError, ConfigError, ExportError
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.exporters.signature import lstm_configs
from deploy_lstm.formats.folder import ExportFolder, writable_parent
from deploy_lstm.exporters.onnx import export_onnx
from deploy_lstm.runtime.onnx import providers_for

__all__ = ["write_repository", "TritonRepository", "TritonModel", "TRITON_DTYPES", "check_config", "START", "END", "CORRID"]

#: control inputs of the stream model (Triton's sequence batcher fills them per request)
START = "START"  # int32 (N, 1): 1 on a sequence's first request
END = "END"  # int32 (N, 1): 1 on its last request
CORRID = "CORRID"  # uint64 (N, 1): the correlation ID (tritonclient's integer sequence_id is a uint64)

#: numpy dtype name -> Triton data type
TRITON_DTYPES: Dict[str, str] = {
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int16": "TYPE_INT16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
}
#: ONNX element type -> Triton data type (for checking a config against its graph)
_ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT16: "TYPE_INT16",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.UINT64: "TYPE_UINT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}

ATOL = {"float32": 1e-5, "float64": 1e-10}  # eager vs exported graph, absolute
KSERVE_FILE = "kserve.yaml"
VERSION = "1"  # the model version folder written


@dataclasses.dataclass(frozen=True)
class TritonModel:
    """One model of the repository."""

    name: str  # the Triton model name (its folder in the repository)
    path: Path  # <repo>/<name>
    config: Path  # <repo>/<name>/config.pbtxt
    onnx: Path  # <repo>/<name>/1/model.onnx
    inputs: Tuple[TensorSpec, ...]  # what a client sends (batch-first; state and controls excluded)
    outputs: Tuple[TensorSpec, ...]  # what a client gets back
    states: Tuple[Tuple[str, str], ...] = ()  # (state input, state output) carried by Triton, stream model only


@dataclasses.dataclass(frozen=True)
class TritonRepository:
    """What :func:`write_repository` wrote."""

    repo: Path  # the model repository (give it to ``tritonserver --model-repository``)
    model: TritonModel  # dynamic batching, one request = whole sequences
    stream: Optional[TritonModel]  # sequence batching with implicit (h, c) state; None when skipped
    stream_skipped: Optional[str]  # why there is no stream model
    kserve: Path  # <repo>/kserve.yaml, the InferenceService manifest (JSON, which is YAML)


# --- the batch-first graphs ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Call:
    """How the folder's eager model is called: module, pytree of its flat inputs, their contract."""

    module: nn.Module
    tree: Any  # pytree spec of (args, kwargs)
    io: IOSpec  # flat inputs/outputs in the model's own layout
    examples: Tuple[Tensor, ...]  # one example per flat input (value ranges of integer inputs)


class _BatchFirst(nn.Module):
    """The model with every flat tensor batch-first: ``forward(flat) -> tuple of outputs``.

    ``zeros`` are inputs not taken from the caller but filled with zeros (a bare LSTM's
    h0/c0 in the dynamic model).  ``reset`` are inputs multiplied by ``1 - START`` (the
    state of a stream model: a sequence's first request starts from zeros whatever comes
    in); START is then the last flat input, shape (N, 1).
    """

    def __init__(self, call: _Call, zeros: Sequence[str] = (), reset: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = call.module
        self.tree = call.tree
        self.specs = call.io.inputs
        self.in_axes = [_batch(s) for s in call.io.inputs]
        self.out_axes = [_batch(s) for s in call.io.outputs]
        self.zeros = set(zeros)
        self.reset = set(reset)

    def forward(self, flat: List[Tensor]) -> Tuple[Tensor, ...]:
        given = iter(flat)
        first = flat[0]  # (N, ...): batch size of the zeros
        start = flat[-1] if self.reset else None  # (N, 1)
        moved = []
        for spec, axis in zip(self.specs, self.in_axes):
            if spec.name in self.zeros:
                shape = [first.size(0) if i == axis else int(d) for i, d in enumerate(spec.shape)]
                moved.append(torch.zeros(shape, dtype=first.dtype, device=first.device))
                continue
            t = next(given)  # batch-first
            if start is not None and spec.name in self.reset:
                keep = start.to(t.dtype).neg().add(1).reshape([-1] + [1] * (t.dim() - 1))  # (N, 1, ...): 0 at START
                t = t * keep
            moved.append(torch.movedim(t, 0, axis))  # the model's own layout
        args, kwargs = pytree.tree_unflatten(moved, self.tree)
        out = pytree.tree_flatten(self.model(*args, **kwargs))[0]
        return tuple(torch.movedim(t, axis, 0) for t, axis in zip(out, self.out_axes))


def _batch(spec: TensorSpec) -> int:
    axis = contract.batch_axis(spec)
    assert axis is not None, f"{spec.name} has no batch axis"  # checked by _call_of
    return axis


def _first(spec: TensorSpec) -> TensorSpec:
    """``spec`` with its batch axis moved to 0."""
    axis = _batch(spec)
    shape = list(spec.shape)
    return TensorSpec(spec.name, tuple([shape.pop(axis)] + shape), spec.dtype)


def _call_of(folder: ExportFolder) -> _Call:
    """The eager model of ``folder`` as a flat call.

    Raises:
        ConfigError: a tensor without a batch axis (Triton needs the batch first on every tensor).
    """
    spec = folder.model_spec()
    cfg = folder.config
    if cfg is not None:  # bare LSTM: (input, h0, c0) -> (output, hn, cn); lengths not offered
        io = contract.lstm_io(cfg, dtype=folder.io.inputs[0].dtype)
        dtype = getattr(torch, io.inputs[0].dtype)
        examples = tuple(torch.zeros([3 if isinstance(d, str) else d for d in t.shape], dtype=dtype) for t in io.inputs)
        tree = pytree.tree_flatten((examples, {}))[1]
        call = _Call(BareLSTM(spec.model), tree, io, examples)
    else:
        flat, tree = pytree.tree_flatten((tuple(spec.example_inputs), dict(spec.example_kwargs or {})))
        call = _Call(spec.model, tree, folder.io, tuple(flat))
        if len(flat) != len(folder.io.inputs):
            raise ArtifactError(
                f"{folder.path}: the model factory's example has {len(flat)} input tensors, the manifest "
                f"{len(folder.io.inputs)}; re-export the folder"
            )
    missing = [t.name for t in _io_tensors(call.io) if contract.batch_axis(t) is None]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no batch axis (a dynamic axis named "
            "'batch'); Triton with max_batch_size > 0 puts the batch first on every tensor. Export the folder "
            "with a 'batch' dynamic axis on every input and output"
        )
    return call


def _io_tensors(io: IOSpec) -> Tuple[TensorSpec, ...]:
    return io.inputs + io.outputs


def _export(module: nn.Module, path: Path, example: List[Tensor], inputs: Sequence[TensorSpec],
            outputs: Sequence[TensorSpec], exporter: str, opset: Optional[int], native_lstm: bool) -> None:
    axes = {t.name: t.dynamic_axes() for t in list(inputs) + list(outputs) if t.dynamic_axes()}
    export_onnx(
        module, path, exporter=exporter, opset=opset, native_lstm=native_lstm, example_inputs=(example,),
        input_names=[t.name for t in inputs], output_names=[t.name for t in outputs], dynamic_axes=axes,
    )


def _add_unused_inputs(path: Path, inputs: Sequence[Tuple[str, int]]) -> None:
    """Declare (name, ONNX element type) graph inputs of shape (batch, 1) the graph does not read.

    Triton's onnxruntime backend refuses a config whose control inputs the model lacks.
    """
    proto = onnx.load(str(path))
    have = {i.name for i in proto.graph.input}
    meta = {m.key: m for m in proto.metadata_props}
    io = IOSpec.from_json(meta[contract.META_IO].value)
    for name, elem in inputs:
        if name not in have:
            proto.graph.input.append(onnx.helper.make_tensor_value_info(name, elem, [contract.BATCH, 1]))
            spec = TensorSpec(name, (contract.BATCH, 1), onnx.helper.tensor_dtype_to_np_dtype(elem).name)
            io = IOSpec(io.inputs + (spec,), io.outputs)
    meta[contract.META_IO].value = io.to_json()
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)


# --- numbers: the graphs against the eager model -------------------------------------------------


class _Session:
    """An onnxruntime session on CPU: ``run(feeds) -> {output name: array}``."""

    def __init__(self, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=providers_for("cpu"))
        self.names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(None, feeds)))


def _random_inputs(call: _Call, N: int, T: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Inputs in the model's own layout at batch N and sequence T."""
    feeds = {}
    for spec, ex in zip(call.io.inputs, call.examples):
        shape = tuple(d if isinstance(d, int) else (N if contract.BATCH in d else T) for d in spec.shape)
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:  # token ids stay in the example's range
            feeds[spec.name] = rng.integers(int(ex.min()), int(ex.max()) + 1, size=shape).astype(spec.dtype)
    return feeds


def _eager(call: _Call, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The eager model on feeds in its own layout."""
    flat = [torch.from_numpy(feeds[t.name]) for t in call.io.inputs]
    args, kwargs = pytree.tree_unflatten(flat, call.tree)
    with torch.no_grad():
        out = pytree.tree_flatten(call.module(*args, **kwargs))[0]
    return {t.name: o.numpy() for t, o in zip(call.io.outputs, out)}


def _to_first(spec: TensorSpec, a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, _batch(spec), 0))


def _max_diff(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], names: Sequence[str]) -> Dict[str, float]:
    diffs = {}
    for n in names:
        a, b = got[n], want[n]
        diffs[n] = float("inf") if a.shape != b.shape else float(np.abs(a.astype(np.float64) - b).max(initial=0.0))
    return diffs


def _check_values(what: str, diffs: Dict[str, float], atol: float) -> None:
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    if bad:
        raise ExportError(
            f"{what}: values not close enough to the eager model, max diff "
            + ", ".join(f"{k}: {v:.3g}" for k, v in bad.items()) + f" (atol: {atol})"
        )


def _check_dynamic(call: _Call, path: Path, zeros: Sequence[str], atol: float, label: str) -> None:
    """The dynamic graph equals the eager model at shapes other than the export example."""
    session = _Session(path)
    rng = np.random.default_rng(1)
    for N, T in ((2, 5), (1, 11)):
        feeds = _random_inputs(call, N, T, rng)
        for z in zeros:
            feeds[z] = np.zeros_like(feeds[z])
        want = {t.name: _to_first(t, v) for t, v in zip(call.io.outputs, _eager(call, feeds).values())}
        got = session.run({t.name: _to_first(t, feeds[t.name]) for t in call.io.inputs if t.name not in zeros})
        _check_values(f"the Triton model {label!r} at batch {N}, sequence {T}", _max_diff(got, want, list(want)), atol)


def _check_stream(call: _Call, path: Path, pairs: Sequence[Tuple[str, str]], atol: float, label: str) -> Optional[str]:
    """Run the stream graph chunk by chunk as the sequence batcher does and compare with the
    eager model on the whole sequences.

    Returns:
        None, or why the model cannot be streamed (its outputs over chunks differ from the
        whole sequence: the model is not causal in its state).

    Raises:
        ExportError: the graph differs from the eager model on one whole chunk (a bug).
    """
    session = _Session(path)
    rng = np.random.default_rng(2)
    N, chunks = 2, (3, 1, 4)
    feeds = _random_inputs(call, N, sum(chunks), rng)
    states = {i for i, _ in pairs}
    for s in states:
        feeds[s] = np.zeros_like(feeds[s])
    want = {t.name: _to_first(t, v) for t, v in zip(call.io.outputs, _eager(call, feeds).values())}
    first = {t.name: _to_first(t, feeds[t.name]) for t in call.io.inputs}
    seq_in = {t.name: contract.sequence_axis(_first(t)) for t in call.io.inputs}
    seq_out = {t.name: contract.sequence_axis(_first(t)) for t in call.io.outputs}
    control = {START: np.zeros((N, 1), np.int32), END: np.zeros((N, 1), np.int32), CORRID: np.arange(1, N + 1, dtype=np.uint64)[:, None]}

    def run(lo: int, hi: int, carried: Dict[str, np.ndarray], start: bool) -> Dict[str, np.ndarray]:
        step = {}
        for name, a in first.items():
            axis = seq_in[name]
            step[name] = carried[name] if name in carried else (a if axis is None else np.take(a, range(lo, hi), axis))
        step.update(control, **{START: np.full((N, 1), int(start), np.int32), END: np.full((N, 1), int(hi == sum(chunks)), np.int32)})
        return session.run(step)

    # one chunk holding everything, from garbage state that START must discard
    garbage = {s: rng.standard_normal(first[s].shape).astype(first[s].dtype) for s in states}
    whole = run(0, sum(chunks), garbage, True)
    _check_values(f"the Triton model {label!r} on whole sequences (one chunk, from START)", _max_diff(whole, want, list(want)), atol)
    # chunk by chunk, the state out fed back in
    carried, pieces, lo = dict(garbage), [], 0
    for i, size in enumerate(chunks):
        got = run(lo, lo + size, carried, i == 0)
        carried = {s_in: got[s_out] for s_in, s_out in pairs}
        pieces.append(got)
        lo += size
    chunked = {}
    for name, axis in seq_out.items():
        chunked[name] = pieces[-1][name] if axis is None else np.concatenate([p[name] for p in pieces], axis)
    diffs = _max_diff(chunked, want, list(want))
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    if bad:
        return (
            "the model's outputs over chunks differ from the whole sequence (max diff "
            + ", ".join(f"{k}: {v:.3g}" for k, v in bad.items())
            + f", atol {atol}): it is not causal in its state, so a stream of chunks cannot reproduce it"
        )
    return None


# --- config.pbtxt ---------------------------------------------------------------------------------


def _dims(spec: TensorSpec) -> str:
    """Triton dims of a batch-first spec: the batch left out, dynamic axes -1."""
    return "[" + ", ".join("-1" if isinstance(d, str) else str(d) for d in spec.shape[1:]) + "]"


def _tensor(spec: TensorSpec) -> str:
    return f'  {{ name: "{spec.name}" data_type: {TRITON_DTYPES[spec.dtype]} dims: {_dims(spec)} }}'


def _config_text(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], max_batch: int,
                 instances: int, batching: str) -> str:
    return "\n".join([
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch}",
        "input [", ",\n".join(_tensor(t) for t in inputs), "]",
        "output [", ",\n".join(_tensor(t) for t in outputs), "]",
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]",
        batching,
    ]) + "\n"


def _dynamic_batching(max_queue_delay_us: int) -> str:
    return f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}"


def _sequence_batching(states: Sequence[Tuple[TensorSpec, TensorSpec]], max_batch: int, max_queue_delay_us: int,
                       sequence_idle_us: int) -> str:
    lines = [
        "sequence_batching {",
        f"  max_sequence_idle_microseconds: {sequence_idle_us}",
        f"  oldest {{ max_candidate_sequences: {max_batch} max_queue_delay_microseconds: {max_queue_delay_us} }}",
        "  control_input [",
        f'    {{ name: "{START}" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},',
        f'    {{ name: "{END}" control [ {{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }} ] }},',
        f'    {{ name: "{CORRID}" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }} ] }}',
        "  ]",
        "  state [",
    ]
    entries = []
    for s_in, s_out in states:
        dtype, dims = TRITON_DTYPES[s_in.dtype], _dims(s_in)
        entries.append(
            f'    {{ input_name: "{s_in.name}" output_name: "{s_out.name}" data_type: {dtype} dims: {dims}\n'
            f'      initial_state {{ name: "{s_in.name}_zero" data_type: {dtype} dims: {dims} zero_data: true }} }}'
        )
    return "\n".join(lines + [",\n".join(entries), "  ]", "}"])


def check_config(text: str, onnx_path: str | os.PathLike) -> Any:
    """Parse a ``config.pbtxt`` with Triton's ``ModelConfig`` and check it against its ONNX graph.

    Checked: every config input, output, state and control input is a graph input/output
    with the same data type, rank (batch first plus ``dims``) and fixed sizes (``-1`` only
    where the graph is dynamic); the batch axis is dynamic; every graph input is fed by
    the config (an input, a state or a control input); state input and output agree, and
    pair as the contract names them (``h0`` -> ``hn``, ``c0`` -> ``cn``).

    Returns:
        The parsed ``model_config_pb2.ModelConfig``.

    Raises:
        ArtifactError: the text does not parse, or lists every mismatch found.
    """
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ArtifactError(f"config.pbtxt does not parse as a Triton ModelConfig: {e}") from e
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    g_in = {v.name: v for v in graph.input}
    g_out = {v.name: v for v in graph.output}
    problems: List[str] = []
    type_name = model_config_pb2.DataType.Name
    batched = config.max_batch_size > 0

    def check(kind: str, name: str, dtype: int, dims: Sequence[int], where: Dict[str, Any]) -> None:
        vi = where.get(name)
        if vi is None:
            problems.append(f"{kind} {name!r} is not a graph {'input' if where is g_in else 'output'} (graph has {sorted(where)})")
            return
        tt = vi.type.tensor_type
        want_type = _ONNX_TO_TRITON.get(tt.elem_type, f"ONNX type {tt.elem_type}")
        if type_name(dtype) != want_type:
            problems.append(f"{kind} {name!r}: data_type {type_name(dtype)}, graph {want_type}")
        graph_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        full = ([-1] if batched else []) + list(dims)
        if len(graph_dims) != len(full):
            problems.append(f"{kind} {name!r}: dims {list(dims)} (rank {len(full)} with the batch), graph shape {graph_dims}")
            return
        if batched and graph_dims[0] != -1:
            problems.append(f"{kind} {name!r}: the graph fixes the batch axis to {graph_dims[0]}")
        for i, (c, g) in enumerate(zip(full, graph_dims)):
            if (i > 0 or not batched) and c != g:
                problems.append(f"{kind} {name!r}: dims {list(dims)}, graph shape {graph_dims}")
                break

    fed = set()
    for t in config.input:
        check("input", t.name, t.data_type, t.dims, g_in)
        fed.add(t.name)
    for t in config.output:
        check("output", t.name, t.data_type, t.dims, g_out)
    seq = config.sequence_batching
    control_kinds = model_config_pb2.ModelSequenceBatching.Control
    for ci in seq.control_input:
        for c in ci.control:
            dtype = model_config_pb2.TYPE_INT32 if c.int32_false_true else (
                model_config_pb2.TYPE_FP32 if c.fp32_false_true else (
                    model_config_pb2.TYPE_BOOL if c.bool_false_true else c.data_type))
            check(f"control {control_kinds.Kind.Name(c.kind)}", ci.name, dtype, [1], g_in)
        fed.add(ci.name)
    initial_names = []
    for s in seq.state:
        check("state input", s.input_name, s.data_type, s.dims, g_in)
        check("state output", s.output_name, s.data_type, s.dims, g_out)
        fed.add(s.input_name)
        if s.input_name.endswith(("h0", "c0")) and s.output_name != s.input_name[:-1] + "n":
            problems.append(f"state {s.input_name!r} -> {s.output_name!r}: the contract pairs {s.input_name!r} "
                            f"with {s.input_name[:-1] + 'n'!r} (contract.state_pairs)")
        for init in s.initial_state:
            initial_names.append(init.name)
            if list(init.dims) != list(s.dims) or init.data_type != s.data_type:
                problems.append(f"initial_state {init.name!r} of {s.input_name!r}: {type_name(init.data_type)} "
                                f"{list(init.dims)}, the state is {type_name(s.data_type)} {list(s.dims)}")
    if len(set(initial_names)) != len(initial_names):
        problems.append(f"initial_state names must be distinct, got {initial_names}")
    unfed = sorted(set(g_in) - fed)
    if unfed:
        problems.append(f"graph inputs {unfed} are not fed by the config (input, state or control_input)")
    if problems:
        raise ArtifactError(f"config.pbtxt of {config.name!r} does not fit {onnx_path}: " + "; ".join(problems))
    return config


# --- the repository -------------------------------------------------------------------------------


def _sanitise(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    return clean or "model"


def _write_model(stage: Path, name: str, config_text: str, onnx_tmp: Path) -> None:
    (stage / name / VERSION).mkdir(parents=True)
    os.replace(onnx_tmp, stage / name / VERSION / "model.onnx")
    (stage / name / "config.pbtxt").write_text(config_text)
    check_config((stage / name / "config.pbtxt").read_text(), stage / name / VERSION / "model.onnx")


def _kserve(service: str, storage_uri: str) -> Dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": service},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "triton"},
                    "protocolVersion": "v2",
                    "runtime": "kserve-tritonserver",
                    "storageUri": storage_uri,
                }
            }
        },
    }


def write_repository(
    folder: ExportFolder,
    repo: str | os.PathLike,
    *,
    name: Optional[str] = None,
    max_batch: int = 32,
    max_queue_delay_us: int = 2000,
    sequence_idle_us: int = 60_000_000,
    instances: int = 1,
    storage_uri: Optional[str] = None,
    kserve_name: Optional[str] = None,
    overwrite: bool = False,
) -> TritonRepository:
    """Write a Triton model repository (and a KServe manifest) serving ``folder``'s model.

    Two models, both ``backend: "onnxruntime"`` with every tensor batch-first:

    * ``<name>``: dynamic batching.  A bare LSTM takes ``input`` (N, T, input_size) and
      returns ``output`` (N, T, D*P), ``hn`` (N, S, P), ``cn`` (N, S, H) from a zero initial
      state (S = num_layers * num_directions); a whole model takes and returns its own
      tensors, each with its batch axis moved first.
    * ``<name>_stream``: sequence batching; a sequence arrives in chunks (``sequence_id``,
      ``sequence_start``, ``sequence_end``) and Triton carries each state pair
      (:func:`~deploy_lstm.contract.state_pairs`, e.g. h0/hn and c0/cn) from chunk to chunk
      as implicit state, zero at START.  The client sends ``input`` and gets ``output``.
      Skipped (reason in :attr:`TritonRepository.stream_skipped`) for a model without
      state pairs, with a bidirectional LSTM, or whose chunked outputs differ from the
      whole sequence.

    ``<repo>/kserve.yaml``: an ``InferenceService`` (``serving.kserve.io/v1beta1``; JSON,
    which is YAML) whose predictor runs ``kserve-tritonserver`` on the repository.

    Everything is staged beside ``repo`` and moved in only when every graph matched the
    eager model (onnxruntime, at shapes other than the export's; 1e-5 float32) and every
    config parsed as a Triton ``ModelConfig`` matching its graph.  Other models already in
    ``repo`` are left alone.

    Args:
        folder: an export folder (:func:`deploy_lstm.folder.load`) with an ``onnx`` artifact;
            its exporter, opset and native_lstm settings are reused.
        repo: the model repository folder (created if missing).
        name: the model name; default: the folder's directory name, sanitised.
        max_batch: ``max_batch_size`` of both models (and the stream's candidate sequences).
        max_queue_delay_us: how long a batcher waits to fill a batch.
        sequence_idle_us: a stream sequence idle this long is dropped (its state freed).
        instances: model instances (``instance_group`` on CPU).
        storage_uri: the manifest's ``storageUri`` (e.g. ``s3://bucket/repo``); default the
            repository's ``file://`` URI, to be replaced where the repository is uploaded.
        kserve_name: the InferenceService's name; default the repository's directory name.
        overwrite: replace ``<name>`` and ``<name>_stream`` if they exist (else refuse).

    Returns:
        The :class:`TritonRepository` written.

    Raises:
        ArtifactError: the folder has no onnx artifact; ``repo`` is not a writable folder;
            a model of that name exists (without ``overwrite``); a config that does not fit its graph.
        ConfigError: bad settings, or a tensor without a batch axis.
        ExportError: an export failed, or a graph does not match the eager model.
    """
    for key, value in (("max_batch", max_batch), ("instances", instances), ("sequence_idle_us", sequence_idle_us)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    if not isinstance(max_queue_delay_us, int) or max_queue_delay_us < 0:
        raise ConfigError(f"max_queue_delay_us must be an integer >= 0, got {max_queue_delay_us!r}")
    folder.file("onnx")  # ArtifactError naming what the folder has
    details = folder.artifacts["onnx"].details
    exporter, opset, native_lstm = details.get("exporter", "dynamo"), details.get("opset"), details.get("native_lstm", True)
    name = _sanitise(name if name is not None else folder.path.resolve().name)
    stream_name = f"{name}_stream"
    repo = Path(repo)
    writable_parent(repo, "a model repository")
    taken = [n for n in (name, stream_name) if (repo / n).exists()]
    if taken and not overwrite:
        raise ArtifactError(f"{repo} already holds {', '.join(taken)}; pick another name or pass overwrite=True (--overwrite)")

    call = _call_of(folder)
    ins = [_first(t) for t in call.io.inputs]
    outs = [_first(t) for t in call.io.outputs]
    atol = ATOL.get(ins[0].dtype, 1e-5)
    pairs = contract.state_pairs(call.io)
    by_name = {t.name: t for t in ins + outs}
    bare = folder.config is not None
    zeros = [i for i, _ in pairs] if bare else []
    model_ins = [t for t in ins if t.name not in zeros]

    if not pairs:
        skipped: Optional[str] = "the model has no state pair (an input h0/c0 with an output hn/cn of the same shape)"
    elif any(c["bidirectional"] for c in lstm_configs(call.module).values()):
        skipped = "a bidirectional LSTM reads the sequence backwards from its end: chunks cannot reproduce it"
    else:
        skipped = None

    # staged beside the repository (same file system: the moves are renames), never inside
    # it, where a polling tritonserver could see a half-written model
    stage_parent = repo.parent if os.access(repo.parent, os.W_OK | os.X_OK) and repo.parent.exists() else repo
    if stage_parent == repo:
        repo.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{repo.name}.{name}.staging-", dir=stage_parent))
    try:
        # dynamic batching
        tmp = stage / "tmp"
        tmp.mkdir()
        rng = torch.Generator().manual_seed(0)
        example = [_example(call, t, rng) for t in ins]
        dynamic_graph = _BatchFirst(call, zeros=zeros).eval()
        _export(dynamic_graph, tmp / "dynamic.onnx", [e for t, e in zip(ins, example) if t.name not in zeros],
                model_ins, outs, exporter, opset, native_lstm)
        _check_dynamic(call, tmp / "dynamic.onnx", zeros, atol, name)
        text = _config_text(name, model_ins, outs, max_batch, instances, _dynamic_batching(max_queue_delay_us))
        _write_model(stage, name, text, tmp / "dynamic.onnx")
        written = [name]
        stream_model = None
        # sequence batching
        if skipped is None:
            states = {i for i, _ in pairs} | {o for _, o in pairs}
            stream_graph = _BatchFirst(call, reset=[i for i, _ in pairs]).eval()
            start = torch.zeros(example[0].size(0), 1, dtype=torch.int32)
            _export(stream_graph, tmp / "stream.onnx", example + [start], ins + [TensorSpec(START, (contract.BATCH, 1), "int32")],
                    outs, exporter, opset, native_lstm)
            _add_unused_inputs(tmp / "stream.onnx", [(END, onnx.TensorProto.INT32), (CORRID, onnx.TensorProto.UINT64)])
            skipped = _check_stream(call, tmp / "stream.onnx", pairs, atol, stream_name)
            if skipped is None:
                text = _config_text(
                    stream_name, [t for t in ins if t.name not in states], [t for t in outs if t.name not in states],
                    max_batch, instances,
                    _sequence_batching([(by_name[i], by_name[o]) for i, o in pairs], max_batch, max_queue_delay_us, sequence_idle_us),
                )
                _write_model(stage, stream_name, text, tmp / "stream.onnx")
                written.append(stream_name)
        service = _kserve_name(kserve_name if kserve_name is not None else repo.resolve().name)
        uri = storage_uri if storage_uri is not None else repo.resolve().as_uri()
        (stage / KSERVE_FILE).write_text(json.dumps(_kserve(service, uri), indent=2) + "\n")
        repo.mkdir(parents=True, exist_ok=True)
        _move_in(stage, repo, written)
        os.replace(stage / KSERVE_FILE, repo / KSERVE_FILE)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    def model(n: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], st: Sequence[Tuple[str, str]] = ()) -> TritonModel:
        return TritonModel(n, repo / n, repo / n / "config.pbtxt", repo / n / VERSION / "model.onnx", tuple(inputs), tuple(outputs), tuple(st))

    if skipped is None:
        states = {i for i, _ in pairs} | {o for _, o in pairs}
        stream_model = model(stream_name, [t for t in ins if t.name not in states], [t for t in outs if t.name not in states], pairs)
    return TritonRepository(repo, model(name, model_ins, outs), stream_model, skipped, repo / KSERVE_FILE)


def _kserve_name(name: str) -> str:
    """A Kubernetes resource name (DNS-1035 label): lower case, digits, '-'; starts with a letter."""
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not clean or not clean[0].isalpha():
        clean = f"m-{clean}".rstrip("-")
    return clean[:63].rstrip("-")


def _example(call: _Call, spec: TensorSpec, gen: torch.Generator) -> Tensor:
    """A batch-first example for the export: batch 3, sequence 7 (odd sizes no feature size equals)."""
    ex = call.examples[[t.name for t in call.io.inputs].index(spec.name)]
    shape = [d if isinstance(d, int) else (3 if contract.BATCH in d else 7) for d in spec.shape]
    if ex.dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=ex.dtype)
    if ex.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randint(int(ex.min()), int(ex.max()) + 1, shape, generator=gen, dtype=ex.dtype)


def _move_in(stage: Path, repo: Path, names: Sequence[str]) -> None:
    """Move the staged model folders into ``repo``; an old folder of the same name is replaced
    and restored if any move fails."""
    old = stage / "old"
    old.mkdir()
    moved: List[str] = []
    try:
        for n in names:
            if (repo / n).exists():
                os.replace(repo / n, old / n)
            os.replace(stage / n, repo / n)
            moved.append(n)
    except OSError as e:
        for n in moved:
            os.replace(repo / n, stage / n)
        for n in names:
            if (old / n).exists():
                os.replace(old / n, repo / n)
        raise ArtifactError(f"cannot move the models into {repo}: {e}") from e
