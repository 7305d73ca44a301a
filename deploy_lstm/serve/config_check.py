"""A Triton model configuration checked against the ONNX graph it configures.

:func:`check_config` parses a ``config.pbtxt`` with Triton's own ``ModelConfig``
(:func:`~deploy_lstm.serve.triton_config.parse_text`) and lists every way it does not
fit the graph, before a tritonserver ever loads it.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

import onnx
from tritonclient.grpc import model_config_pb2 as pb

from deploy_lstm.errors import ArtifactError
from deploy_lstm.serve.triton_config import TRITON_DTYPES, parse_text

__all__ = ["check_config"]

_type_name = pb.DataType.Name


def _triton_type(elem_type: int) -> str:
    """Triton's data type name of an ONNX element type ("ONNX type N" where Triton has none)."""
    try:
        return TRITON_DTYPES[onnx.helper.tensor_dtype_to_np_dtype(elem_type).name]
    except (KeyError, ValueError, TypeError):
        return f"ONNX type {elem_type}"


class _Fit:
    """The graph's inputs and outputs, and every mismatch found against them."""

    def __init__(self, graph: onnx.GraphProto, batched: bool) -> None:
        self.inputs: Dict[str, Any] = {v.name: v for v in graph.input}
        self.outputs: Dict[str, Any] = {v.name: v for v in graph.output}
        self.batched = batched
        self.problems: List[str] = []

    def check(self, kind: str, name: str, dtype: int, dims: Sequence[int], where: Dict[str, Any]) -> None:
        """A config tensor is a graph tensor of the same type, rank and fixed sizes."""
        vi = where.get(name)
        if vi is None:
            self.problems.append(f"{kind} {name!r} is not a graph {'input' if where is self.inputs else 'output'} (graph has {sorted(where)})")
            return
        tt = vi.type.tensor_type
        want_type = _triton_type(tt.elem_type)
        if _type_name(dtype) != want_type:
            self.problems.append(f"{kind} {name!r}: data_type {_type_name(dtype)}, graph {want_type}")
        graph_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        full = ([-1] if self.batched else []) + list(dims)
        if len(graph_dims) != len(full):
            self.problems.append(f"{kind} {name!r}: dims {list(dims)} (rank {len(full)} with the batch), graph shape {graph_dims}")
            return
        if self.batched and graph_dims[0] != -1:
            self.problems.append(f"{kind} {name!r}: the graph fixes the batch axis to {graph_dims[0]}")
        for i, (c, g) in enumerate(zip(full, graph_dims)):
            if (i > 0 or not self.batched) and c != g:
                self.problems.append(f"{kind} {name!r}: dims {list(dims)}, graph shape {graph_dims}")
                break

    def sequence_batching(self, seq: pb.ModelSequenceBatching) -> List[str]:
        """Check the control inputs and the states; the graph inputs they feed."""
        fed = []
        for ci in seq.control_input:
            for c in ci.control:
                dtype = pb.TYPE_INT32 if c.int32_false_true else (
                    pb.TYPE_FP32 if c.fp32_false_true else (pb.TYPE_BOOL if c.bool_false_true else c.data_type))
                self.check(f"control {pb.ModelSequenceBatching.Control.Kind.Name(c.kind)}", ci.name, dtype, [1], self.inputs)
            fed.append(ci.name)
        initial_names = []
        for s in seq.state:
            self.check("state input", s.input_name, s.data_type, s.dims, self.inputs)
            self.check("state output", s.output_name, s.data_type, s.dims, self.outputs)
            fed.append(s.input_name)
            if s.input_name.endswith(("h0", "c0")) and s.output_name != s.input_name[:-1] + "n":
                self.problems.append(f"state {s.input_name!r} -> {s.output_name!r}: the contract pairs {s.input_name!r} "
                                     f"with {s.input_name[:-1] + 'n'!r} (contract.state_pairs)")
            for init in s.initial_state:
                initial_names.append(init.name)
                if list(init.dims) != list(s.dims) or init.data_type != s.data_type:
                    self.problems.append(f"initial_state {init.name!r} of {s.input_name!r}: {_type_name(init.data_type)} "
                                         f"{list(init.dims)}, the state is {_type_name(s.data_type)} {list(s.dims)}")
        if len(set(initial_names)) != len(initial_names):
            self.problems.append(f"initial_state names must be distinct, got {initial_names}")
        return fed


def check_config(text: str, onnx_path: str | os.PathLike) -> pb.ModelConfig:
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
    config = parse_text(text)
    fit = _Fit(onnx.load(str(onnx_path), load_external_data=False).graph, batched=config.max_batch_size > 0)
    fed = set()
    for t in config.input:
        fit.check("input", t.name, t.data_type, t.dims, fit.inputs)
        fed.add(t.name)
    for t in config.output:
        fit.check("output", t.name, t.data_type, t.dims, fit.outputs)
    fed.update(fit.sequence_batching(config.sequence_batching))
    unfed = sorted(set(fit.inputs) - fed)
    if unfed:
        fit.problems.append(f"graph inputs {unfed} are not fed by the config (input, state or control_input)")
    if fit.problems:
        raise ArtifactError(f"config.pbtxt of {config.name!r} does not fit {onnx_path}: " + "; ".join(fit.problems))
    return config
