"""Import an LSTM back from ONNX: ``LSTM`` nodes' W, R, B, P and attributes -> ``deploy_lstm.LSTM``.

Reads the graph only (no runtime).  Everything is read and checked before any module
is built, so a refused model leaves nothing half-built.

How the imported module's call maps onto the ONNX node's: graph inputs map to the
module's arguments: ``sequence_lens`` -> ``lengths`` (int64, each in 1..T),
``initial_h``/``initial_c`` -> ``(h0, c0)``.  Outputs differ in shape: ONNX ``Y`` is
(T, D, N, H) (layout 1: (N, T, D, H)) with a num_directions axis, the module's
``output`` is (T, N, D*H) (batch_first: (N, T, D*H)), i.e.
``Y.transpose(1, 2).reshape(T, N, D * H)`` (layout 1: ``Y.reshape(N, T, D * H)``).
``Y_h``/``Y_c`` are (D, N, H) (layout 1: (N, D, H)); ``h_n``/``c_n`` (and
``h0``/``c0``) are always (num_layers * D, N, H), as in ``nn.LSTM``.  Transposes
around the nodes (e.g. an exporter's ``batch_first`` handling) are not part of the
import: ``batch_first`` follows ``layout`` only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor

from deploy_lstm.nn.gates import from_onnx_gate_order
from deploy_lstm.errors import ArtifactError, ConfigError
from deploy_lstm.nn.lstm import LSTM

__all__ = ["lstm_from_onnx", "ALL_NODES"]

#: ``node=ALL_NODES`` ("*"): every LSTM node as its own single-layer module, in graph order
ALL_NODES = "*"

_DIRECTIONS = {"forward": 1, "bidirectional": 2}
_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")  # per direction (f, g, h), compared case-insensitively
_KNOWN_ATTRIBUTES = {
    "hidden_size", "direction", "layout", "activations", "activation_alpha", "activation_beta",
    "clip", "input_forget",
}
_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One ONNX ``LSTM`` node, read and checked (ONNX names and gate order i, o, f, c)."""

    name: str  # how messages and ``node=`` refer to it
    node: onnx.NodeProto
    num_directions: int  # D
    layout: int  # 0: X (T, N, I); 1: X (N, T, I)
    hidden_size: int  # H
    input_size: int  # I
    W: np.ndarray  # (D, 4H, I)
    R: np.ndarray  # (D, 4H, H)
    B: Optional[np.ndarray]  # (D, 8H) = [Wb, Rb], or None when absent
    P: Optional[np.ndarray]  # (D, 3H) in ONNX order [p_i, p_o, p_f], or None when absent


def lstm_from_onnx(
    model: Union[str, os.PathLike, onnx.ModelProto], node: Optional[str] = None
) -> Union[LSTM, List[LSTM]]:
    """Build a ``deploy_lstm.LSTM`` from the ``LSTM`` node(s) of an ONNX model.

    Public as ``deploy_lstm.lstm_from_onnx``.  The weights come from each node's ``W``,
    ``R``, ``B`` (optional) and ``P`` (optional) inputs, which must be initializers or
    outputs of ``Constant`` nodes; gates are reordered from ONNX's
    (i, o, f, c) to ``nn.LSTM``'s (i, f, g, o), ``B = [Wb, Rb]`` becomes ``bias_ih`` and
    ``bias_hh``.  The configuration comes from the attributes and weight shapes:

    - ``direction``: ``"forward"`` -> ``bidirectional=False``, ``"bidirectional"`` ->
      ``bidirectional=True``.  ``"reverse"`` is refused: ``nn.LSTM`` has a reverse
      direction only inside a bidirectional layer.
    - ``layout``: 0 -> ``batch_first=False``, 1 -> ``batch_first=True``.
    - ``B`` absent -> ``bias=False`` (no bias parameters at all); present, even all
      zeros -> ``bias=True``.  ``P`` present -> ``cell="peephole"`` with
      ``weight_ph{suffix} = P[direction]`` (ONNX order i, o, f, unchanged).
    - ``input_size``/``hidden_size`` from ``W``/``R`` (the ``hidden_size`` attribute,
      when set, must agree); the dtype from ``W`` (float32 or float64).

    How the module's inputs and outputs correspond to the node's (``sequence_lens`` ->
    ``lengths``, ``Y`` (T, D, N, H) -> ``output`` (T, N, D*H), ...): the module docstring.

    Which nodes:

    - one ``LSTM`` node: imported.
    - several, ``node=None``: when they form exactly a stack (each node's ``X`` is the
      previous node's ``Y`` passed only through the Transpose/Reshape/Squeeze that
      turns it into (T, N, D*H); the same direction, layout and hidden size; nothing
      else reads the tensors in between but ``Shape`` nodes), one multi-layer LSTM.
      This is what ``deploy_lstm.export_onnx`` (both exporters) and
      ``torch.onnx.export(nn.LSTM(...), dynamo=False)`` write.  Otherwise an error
      lists the nodes.
    - ``node="name"``: that node alone (a node without a name is called by its
      ``Y`` output name).
    - ``node="*"`` (``ALL_NODES``): a list with one single-layer module per node, in
      graph order.

    The result is a fresh module on the CPU in training mode, as ``LSTM(...)`` is
    (``dropout`` is 0, so training mode computes the same as eval mode); its
    parameters require grad, so it can be fine-tuned, scripted and exported again.

    Args:
        model: an ONNX file path or a loaded ``onnx.ModelProto``.
        node: ``None``, a node name, or ``"*"``.

    Returns:
        One ``deploy_lstm.LSTM``, or a list of them for ``node="*"``.

    Raises:
        ArtifactError: the file is missing or is not a valid ONNX model.
        ConfigError: no LSTM node; several that are not a stack and no ``node=``; an
            unknown ``node=``; a weight that is not a constant or has the wrong shape
            or dtype; an attribute the module cannot express (``direction="reverse"``,
            non-default ``activations``, ``activation_alpha``/``activation_beta``,
            ``clip``, ``input_forget=1``), named with its value.
    """
    proto = _load(model)
    graph = proto.graph
    constants = _constants(graph)
    nodes = [n for n in graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    if not nodes:
        ops = sorted({n.op_type for n in graph.node})
        raise ConfigError(f"the ONNX model has no LSTM node (its operators: {', '.join(ops) or 'none'})")
    names = [n.name or n.output[0] for n in nodes]
    listing = f"{', '.join(repr(s) for s in names)}, or node={ALL_NODES!r} for all"
    if node is None:
        if len(nodes) == 1:
            return _build([_read(nodes[0], names[0], constants)])
        return _build(_one_stack(graph, nodes, names, constants, listing))
    if node == ALL_NODES:
        layers = [_read(n, name, constants) for n, name in zip(nodes, names)]
        return [_build([layer]) for layer in layers]
    picked = [i for i, s in enumerate(names) if s == node]
    if not picked:
        raise ConfigError(f"node={node!r} is not an LSTM node of the ONNX model; LSTM nodes: {listing}")
    if len(picked) > 1:
        raise ConfigError(f"{len(picked)} LSTM nodes are called {node!r}; rename them or use node={ALL_NODES!r}")
    return _build([_read(nodes[picked[0]], node, constants)])


def _one_stack(
    graph: onnx.GraphProto, nodes: List[onnx.NodeProto], names: List[str], constants: Dict[str, np.ndarray], listing: str
) -> List[_Layer]:
    """The layers of several LSTM nodes that form exactly one stack (see :func:`lstm_from_onnx`).

    Raises:
        ConfigError: a node that cannot be read, or nodes that are not one stack.
    """
    try:
        layers = [_read(n, name, constants) for n, name in zip(nodes, names)]
    except ConfigError as e:
        raise ConfigError(f"{e} (the model has {len(nodes)} LSTM nodes; pick one with node=, one of: {listing})") from None
    reason = _stack_problem(graph, layers, constants)
    if reason is not None:
        raise ConfigError(
            f"the ONNX model has {len(nodes)} LSTM nodes that do not form one stack ({reason}); "
            f"pick one with node=, one of: {listing}"
        )
    return layers


# -- reading -------------------------------------------------------------------------------


def _load(model: Union[str, os.PathLike, onnx.ModelProto]) -> onnx.ModelProto:
    """The checked ``ModelProto`` of a path or a loaded model."""
    if isinstance(model, onnx.ModelProto):
        proto, where = model, "the given ONNX model"
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ArtifactError(f"no ONNX model at {path}")
        where = str(path)
        try:
            proto = onnx.load(str(path))
        except Exception as e:  # protobuf's DecodeError, onnx's external-data errors, ...
            raise ArtifactError(f"{path} is not an ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    else:
        raise TypeError(f"expected an ONNX file path or onnx.ModelProto, got {type(model).__name__}")
    # Not onnx.checker: it refuses models onnxruntime runs (e.g. outputs typed without a
    # shape), and every tensor the import reads is checked below.
    if proto.ir_version == 0 or not proto.HasField("graph"):
        raise ArtifactError(f"{where} is not an ONNX model (no IR version or graph)")
    return proto


def _constants(graph: onnx.GraphProto) -> Dict[str, np.ndarray]:
    """{tensor name: value} of the initializers and the ``Constant`` nodes' outputs."""
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or not n.attribute:
            continue
        a = n.attribute[0]
        if a.name == "value":
            out[n.output[0]] = numpy_helper.to_array(a.t)
        elif a.name in ("value_float", "value_int", "value_floats", "value_ints"):
            dtype = np.float32 if "float" in a.name else np.int64
            out[n.output[0]] = np.asarray(onnx.helper.get_attribute_value(a), dtype=dtype)
    return out


def _read(node: onnx.NodeProto, name: str, constants: Dict[str, np.ndarray]) -> _Layer:
    """Read and check one LSTM node: attributes, then weight values and shapes."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    unknown = sorted(set(attrs) - _KNOWN_ATTRIBUTES)
    if unknown:
        raise ConfigError(f"LSTM node {name!r} has attributes the LSTM operator does not define: {unknown}")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction == "reverse":
        raise ConfigError(
            f"LSTM node {name!r} has direction='reverse', which nn.LSTM cannot express (its reverse "
            "direction exists only inside a bidirectional layer); flip the time axis of the input and output "
            "around a forward LSTM with the same weights instead"
        )
    if direction not in _DIRECTIONS:
        raise ConfigError(f"LSTM node {name!r} has direction={direction!r}; expected 'forward', 'bidirectional' or 'reverse'")
    D = _DIRECTIONS[direction]
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise ConfigError(f"LSTM node {name!r} has layout={layout}; expected 0 or 1")
    if "activations" in attrs:
        got = [s.decode() if isinstance(s, bytes) else str(s) for s in attrs["activations"]]
        if [s.lower() for s in got] != list(_DEFAULT_ACTIVATIONS) * D:
            raise ConfigError(
                f"LSTM node {name!r} has activations={got}; the module computes only the default "
                f"{['Sigmoid', 'Tanh', 'Tanh'] * D}"
            )
    for key in ("activation_alpha", "activation_beta"):
        if key in attrs:
            raise ConfigError(f"LSTM node {name!r} has {key}={list(attrs[key])}; the module has no activation parameters")
    if "clip" in attrs:
        raise ConfigError(f"LSTM node {name!r} has clip={attrs['clip']}; the module does not clip the cell input")
    if int(attrs.get("input_forget", 0)) != 0:
        raise ConfigError(
            f"LSTM node {name!r} has input_forget={attrs['input_forget']}; the module's input and forget gates are independent"
        )

    inputs = list(node.input) + [""] * (8 - len(node.input))
    W = _weight(node, name, "W", inputs[1], constants)
    R = _weight(node, name, "R", inputs[2], constants)
    B = _weight(node, name, "B", inputs[3], constants) if inputs[3] else None
    P = _weight(node, name, "P", inputs[7], constants) if inputs[7] else None
    if W.ndim != 3 or R.ndim != 3:
        raise ConfigError(f"LSTM node {name!r}: expected W (D, 4H, I) and R (D, 4H, H), got W {W.shape}, R {R.shape}")
    H = R.shape[2]
    I = W.shape[2]
    if "hidden_size" in attrs and int(attrs["hidden_size"]) != H:
        raise ConfigError(f"LSTM node {name!r} has hidden_size={attrs['hidden_size']} but R {R.shape} says {H}")
    expected = {"W": (D, 4 * H, I), "R": (D, 4 * H, H), "B": (D, 8 * H), "P": (D, 3 * H)}
    for key, value in (("W", W), ("R", R), ("B", B), ("P", P)):
        if value is not None and value.shape != expected[key]:
            raise ConfigError(
                f"LSTM node {name!r} (direction={direction!r}, hidden_size={H}): expected {key} of shape "
                f"{expected[key]}, got {value.shape}"
            )
        if value is not None and value.dtype not in _DTYPES:
            raise ConfigError(f"LSTM node {name!r}: {key} is {value.dtype}; the import supports float32 and float64")
        if value is not None and value.dtype != W.dtype:
            raise ConfigError(f"LSTM node {name!r}: {key} is {value.dtype} but W is {W.dtype}")
    if H == 0 or I == 0:
        raise ConfigError(f"LSTM node {name!r}: expected hidden and input size >= 1, got H={H}, I={I}")
    return _Layer(name, node, D, layout, H, I, W, R, B, P)


def _weight(node: onnx.NodeProto, name: str, key: str, tensor: str, constants: Dict[str, np.ndarray]) -> np.ndarray:
    if tensor not in constants:
        raise ConfigError(
            f"LSTM node {name!r}: its {key} input {tensor!r} is not an initializer or a Constant node's output; "
            "the import reads constant weights only"
        )
    return constants[tensor]


# -- stacks: each node's X is the previous node's Y, only reshaped ------------------------


def _stack_problem(graph: onnx.GraphProto, layers: List[_Layer], constants: Dict[str, np.ndarray]) -> Optional[str]:
    """None when ``layers`` (in graph order) form one stack; else why not.  Reorders nothing:
    a stack is a chain, and graph order is topological, so the chain order is graph order."""
    first = layers[0]
    for layer in layers[1:]:
        for what, a, b in (
            ("direction", first.num_directions, layer.num_directions),
            ("layout", first.layout, layer.layout),
            ("hidden_size", first.hidden_size, layer.hidden_size),
        ):
            if a != b:
                return f"{first.name!r} and {layer.name!r} differ in {what}: {a} != {b}"
        if (layer.B is None) != (first.B is None):
            return f"{first.name!r} and {layer.name!r} differ in having a bias B"
        if (layer.P is None) != (first.P is None):
            return f"{first.name!r} and {layer.name!r} differ in having peepholes P"
        if layer.W.dtype != first.W.dtype:
            return f"{first.name!r} and {layer.name!r} differ in dtype"
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in set(n.input):
            consumers.setdefault(t, []).append(n)
    producers = {t: n for n in graph.node for t in n.output}
    outputs = {o.name for o in graph.output}
    for prev, layer in zip(layers, layers[1:]):
        problem = _link_problem(prev, layer, consumers, producers, outputs, constants)
        if problem is not None:
            return problem
    return None


def _link_problem(
    prev: _Layer,
    nxt: _Layer,
    consumers: Dict[str, List[onnx.NodeProto]],
    producers: Dict[str, onnx.NodeProto],
    outputs: set,
    constants: Dict[str, np.ndarray],
) -> Optional[str]:
    """None when ``nxt``'s X is ``prev``'s Y turned into (T, N, D*H) (layout 1: (N, T, D*H))."""
    D, H = prev.num_directions, prev.hidden_size
    if len(prev.node.output) == 0 or not prev.node.output[0]:
        return f"{prev.name!r} has no Y output"
    # Axis labels of the tensor followed so far: T time, N batch, D directions, H hidden, F = D*H merged.
    labels = ["T", "D", "N", "H"] if prev.layout == 0 else ["N", "T", "D", "H"]
    want = ["T", "N"] if prev.layout == 0 else ["N", "T"]
    tensor = prev.node.output[0]
    if nxt.input_size != D * H:
        return f"{nxt.name!r} takes {nxt.input_size} input features, {prev.name!r} gives {D * H}"
    for _ in range(16):  # a handful of reshaping nodes at most
        if tensor in outputs:
            return f"{tensor!r} between {prev.name!r} and {nxt.name!r} is a graph output"
        readers = [n for n in consumers.get(tensor, []) if n.op_type != "Shape"]  # Shape reads no values
        if len(readers) != 1:
            return f"{tensor!r} after {prev.name!r} is read by {len(readers)} nodes, not 1"
        n = readers[0]
        if n is nxt.node:
            merged = [("F" if (lab == "H" and D == 1) else lab) for lab in labels if not (lab == "D" and D == 1)]
            if list(n.input).count(tensor) != 1 or n.input[0] != tensor or merged != want + ["F"]:
                return f"{nxt.name!r}'s X is not {prev.name!r}'s Y reshaped to ({', '.join(want)}, D*H)"
            return None
        if n.input[0] != tensor or len(n.output) != 1:
            return f"{tensor!r} after {prev.name!r} goes into {n.op_type} {n.name!r}"
        if n.op_type == "Identity":
            pass
        elif n.op_type == "Transpose":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            perm = list(attrs.get("perm", range(len(labels) - 1, -1, -1)))
            if sorted(perm) != list(range(len(labels))):
                return f"Transpose {n.name!r} after {prev.name!r} has perm {perm}"
            labels = [labels[p] for p in perm]
        elif n.op_type == "Squeeze":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            axes = attrs.get("axes")  # opset < 13
            if axes is None and len(n.input) > 1 and n.input[1]:
                axes = constants.get(n.input[1])
            if axes is None:
                return f"Squeeze {n.name!r} after {prev.name!r} has no constant axes"
            axes = sorted({int(a) % len(labels) for a in np.asarray(axes).reshape(-1)})
            if D != 1 or [labels[a] for a in axes] != ["D"]:
                return f"Squeeze {n.name!r} after {prev.name!r} removes axes {axes}, not the directions axis"
            labels = [lab for i, lab in enumerate(labels) if i not in axes]
        elif n.op_type == "Reshape":
            problem = _reshape_problem(n, labels, want, D, H, constants, producers)
            if problem is not None:
                return f"Reshape {n.name!r} after {prev.name!r}: {problem}"
            labels = want + ["F"]
        else:
            return f"{tensor!r} after {prev.name!r} goes into {n.op_type} {n.name!r}"
        tensor = n.output[0]
    return f"too many nodes between {prev.name!r} and {nxt.name!r}"


def _reshape_problem(
    n: onnx.NodeProto,
    labels: List[str],
    want: List[str],
    D: int,
    H: int,
    constants: Dict[str, np.ndarray],
    producers: Dict[str, onnx.NodeProto],
) -> Optional[str]:
    """None when Reshape ``n`` merges the trailing (D, H) of ``want + [D, H]`` into one axis of D*H."""
    kept = [lab for lab in labels if not (lab == "D" and D == 1)]  # a size-1 axis moves no data
    if kept not in (want + ["D", "H"], want + ["H"], want + ["F"]):
        return f"its input's axes are ({', '.join(labels)}), not ({', '.join(want)}, D, H)"
    allowzero = next((int(onnx.helper.get_attribute_value(a)) for a in n.attribute if a.name == "allowzero"), 0)
    shape = _shape_vector(n.input[1], constants, producers)
    if shape is None or len(shape) != 3:
        return "its target shape is not a 3-element vector built from constants and Shape"
    first, second, last = shape
    if last not in (D * H, -1):
        return f"its target shape ends in {last}, not {D * H}"
    for dim in (first, second):
        if dim is not None and (dim < -1 or (dim == 0 and allowzero)):
            return f"its target shape {shape} does not keep the ({', '.join(want)}) axes"
    if [first, second, last].count(-1) > 1:
        return f"its target shape {shape} has several -1"
    return None


def _shape_vector(
    tensor: str, constants: Dict[str, np.ndarray], producers: Dict[str, onnx.NodeProto]
) -> Optional[List[Optional[int]]]:
    """The elements of a 1-D int64 shape tensor, None for each one known only at run time;
    None when not even its length is known.  Follows Concat, Cast, Shape, Gather, Unsqueeze."""
    if tensor in constants:
        return [int(v) for v in np.asarray(constants[tensor]).reshape(-1)]
    node = producers.get(tensor)
    if node is None:
        return None
    if node.op_type == "Concat":
        parts = [_shape_vector(t, constants, producers) for t in node.input]
        if any(p is None for p in parts):
            return None
        return [v for p in parts for v in p]  # type: ignore[union-attr]
    if node.op_type == "Cast":
        return _shape_vector(node.input[0], constants, producers)
    if node.op_type == "Gather":  # of a Shape, at constant indices: values known at run time
        idx = constants.get(node.input[1])
        return None if idx is None or np.asarray(idx).ndim != 1 else [None] * int(np.asarray(idx).size)
    if node.op_type == "Unsqueeze":  # of a scalar Gather of a Shape: one run-time value
        inner = producers.get(node.input[0])
        idx = constants.get(inner.input[1]) if inner is not None and inner.op_type == "Gather" else None
        return [None] if idx is not None and np.asarray(idx).ndim == 0 else None
    if node.op_type == "Shape":
        attrs = {a.name: int(onnx.helper.get_attribute_value(a)) for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end")
        if end is not None and 0 <= start <= end:
            return [None] * (end - start)
        return None
    return None


# -- building -------------------------------------------------------------------------------


def _build(layers: Sequence[_Layer]) -> LSTM:
    """The module whose layer k is ``layers[k]`` (all checked: same D, layout, H, dtype)."""
    first = layers[0]
    D, H = first.num_directions, first.hidden_size
    kwargs: Dict[str, object] = dict(
        input_size=first.input_size,
        hidden_size=H,
        num_layers=len(layers),
        bias=first.B is not None,
        batch_first=first.layout == 1,
        bidirectional=D == 2,
        dtype=_DTYPES[first.W.dtype],
    )
    if first.P is not None:
        kwargs["cell"] = "peephole"
    state: Dict[str, Tensor] = {}
    for k, layer in enumerate(layers):
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d == 1 else "")
            state["weight_ih" + sfx] = from_onnx_gate_order(torch.from_numpy(layer.W[d].copy()), H)
            state["weight_hh" + sfx] = from_onnx_gate_order(torch.from_numpy(layer.R[d].copy()), H)
            if layer.B is not None:
                b = torch.from_numpy(layer.B[d].copy())
                state["bias_ih" + sfx] = from_onnx_gate_order(b[: 4 * H], H)
                state["bias_hh" + sfx] = from_onnx_gate_order(b[4 * H :], H)
            if layer.P is not None:
                state["weight_ph" + sfx] = torch.from_numpy(layer.P[d].copy())
    module = LSTM(**kwargs)  # type: ignore[arg-type]
    module.load_state_dict(state, strict=True)
    return module
