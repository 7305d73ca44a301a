"""A model's export signature: flattened inputs and outputs, names, dynamic axes and examples.

Computed once per export (what optimum's export config is) and handed to every
exporter and to validation.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from typing_extensions import TypedDict, Unpack
import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, NamedIO, TensorSpec
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.errors import ExportError
from deploy_lstm.nn import LSTM, LSTMCell
from deploy_lstm.exporters.standins import module_tree_copy


def check_exportable(model: object, what: str) -> nn.Module:
    """``model`` is a module holding a ``deploy_lstm`` LSTM or LSTMCell, and no
    unconverted ``torch.nn.LSTM``/``LSTMCell``.

    ``what`` completes the sentence "...whose {what}" (e.g. "export fixes the sequence length").
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, (nn.LSTM, nn.LSTMCell)) and not isinstance(m, (LSTM, LSTMCell)):
            raise ExportError(
                f"{name or 'the model itself'} is a torch.nn.{type(m).__name__}, whose {what}; "
                "convert it first: model = deploy_lstm.swap_lstms(model)"
            )
    if not any(isinstance(m, (LSTM, LSTMCell)) for m in model.modules()):
        raise ExportError(
            f"{type(model).__name__} holds no deploy_lstm.LSTM or LSTMCell (and no torch.nn.LSTM to swap): "
            "nothing here for deploy_lstm to export; was this the right module? (torch.onnx.export "
            "and torch.jit.script take models without LSTMs)"
        )
    return model


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (numpy's name)."""
    return str(dtype).replace("torch.", "")


def lstm_configs(model: nn.Module) -> Dict[str, Dict[str, Any]]:
    """{submodule name: LSTM configuration} of every ``deploy_lstm.LSTM`` (``""`` for a bare one)."""
    return {n: dataclasses.asdict(LSTMConfig.of(m)) for n, m in model.named_modules() if isinstance(m, LSTM)}


@dataclasses.dataclass
class Signature(NamedIO):
    """What an exported graph takes and returns."""

    model: nn.Module  # the model itself
    args: Tuple[Any, ...]  # example positional arguments of the graph, any pytree of tensors
    io: IOSpec  # flat graph inputs/outputs: names, shapes (str = dynamic axis), dtypes
    bare: Optional[LSTMConfig]  # the configuration when the model is a bare LSTM
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # example keyword arguments

    @property
    def tree(self) -> Any:
        """The pytree structure of the inputs, ``(args, kwargs)``, for flattening and rebuilding."""
        return pytree.tree_flatten((self.args, self.kwargs))[1]

    def call(self, module: Any, flat: Sequence[Any]) -> Any:
        """Call ``module`` with flat inputs (in ``input_names`` order) rebuilt into the example's structure."""
        args, kwargs = pytree.tree_unflatten(list(flat), self.tree)
        return module(*args, **kwargs)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` (or a stand-in for it) with the graph's call signature."""
        return BareLSTM(model) if self.bare is not None else model

    @property
    def module(self) -> nn.Module:
        """What to call with ``args``: the model, or ``BareLSTM`` around a bare LSTM."""
        return self.wrap(self.model)

    def dynamic_axes(self) -> Dict[str, Dict[int, str]]:
        return self.io.dynamic_axes()

    def dynamic_shapes(self) -> Any:
        """The dynamic axes as ``torch.export`` ``dynamic_shapes``, nested like the inputs
        (a tuple over ``args``; a dict by parameter name when there are ``kwargs``)."""
        dims: Dict[str, Any] = {}
        specs = []
        for spec in self.io.inputs:
            axes = spec.dynamic_axes()
            for name in axes.values():
                dims.setdefault(name, torch.export.Dim(_dim_identifier(name), min=1))
            specs.append({a: dims[n] for a, n in axes.items()} or None)
        args, kwargs = pytree.tree_unflatten(specs, self.tree)
        if not kwargs:
            return tuple(args)
        params = list(inspect.signature(self.module.forward).parameters)
        return {**dict(zip(params, args)), **kwargs}


def _dim_identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident.isidentifier() else f"d_{ident}"


def _example_for(cfg: LSTMConfig, dtype: torch.dtype, device: torch.device, lengths: bool) -> Tuple[Tensor, ...]:
    # Odd sizes no feature dimension is likely to equal, so nothing unifies by accident.
    N, T = 3, 7
    shape = (N, T, cfg.input_size) if cfg.batch_first else (T, N, cfg.input_size)
    g = torch.Generator().manual_seed(0)
    ex: Tuple[Tensor, ...] = tuple(
        torch.randn(*s, generator=g, dtype=dtype).to(device)
        for s in (shape, (cfg.num_states, N, cfg.real_hidden_size), (cfg.num_states, N, cfg.hidden_size))
    )
    if lengths:
        ex += (torch.tensor([T, 2, 5], dtype=torch.int64, device=device),)
    return ex


class GraphArgs(TypedDict, total=False):
    """How a whole model is called and what its graph names, as every exporter and
    ``validate`` take it (keyword arguments)."""

    example_inputs: Sequence[Any]  # positional arguments: tensors, or tuples/lists/dicts of them
    example_kwargs: Mapping[str, Any]  # keyword arguments, flattened after the positional ones
    input_names: Sequence[str]  # one per flattened input tensor (default input_0, ...)
    output_names: Sequence[str]  # one per flattened output tensor (default output_0, ...)
    dynamic_axes: Mapping[str, Mapping[int, str]]  # {flat name: {axis: dim name}}
    dynamic_shapes: Any  # instead of dynamic_axes: torch.export's nested form


def signature(model: nn.Module, *, lengths: bool = False, **graph: Unpack[GraphArgs]) -> Signature:
    """The :class:`Signature` of a bare ``deploy_lstm.LSTM`` or of a whole model.

    A bare LSTM needs nothing more: its graph is ``input``, ``h0``, ``c0``
    [, ``lengths``] -> ``output``, ``hn``, ``cn`` (``contract.lstm_io``).  A whole
    model needs ``example_inputs`` (and ``example_kwargs``), any structure of
    tuples, lists and dicts of tensors.  Names default to ``input_0...``/
    ``output_0...`` over the flattened inputs and outputs (torch.export's pytree
    order: positional arguments, then keyword arguments).  Dynamic axes are given
    either as ``dynamic_axes`` ({flat name: {axis: dim name}}) or as
    ``dynamic_shapes`` in torch.export's own nested form.

    Raises:
        ExportError: names or axes that do not fit the model's inputs and outputs,
            example inputs the model does not run on, or a Python loop over a dynamic
            axis (before any tracing).
    """
    unknown = sorted(set(graph) - set(GraphArgs.__annotations__))
    if unknown:
        raise ExportError(f"unknown arguments {unknown}; a graph is described by {sorted(GraphArgs.__annotations__)}")
    if isinstance(model, LSTM):
        if any(v is not None for v in graph.values()):
            raise ExportError(
                "a bare deploy_lstm.LSTM has a fixed graph signature (input, h0, c0[, lengths]); "
                "do not pass example inputs, names or dynamic axes for it"
            )
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        cfg = LSTMConfig.of(model)
        io = contract.lstm_io(cfg, lengths=lengths, dtype=dtype_name(dtype))
        return Signature(model, _example_for(cfg, dtype, device, lengths), io, cfg)
    if graph.get("example_inputs") is None and not graph.get("example_kwargs"):
        raise ExportError("a whole model needs example_inputs (a tuple of positional arguments) or example_kwargs")
    if lengths:
        raise ExportError("lengths=True is for a bare deploy_lstm.LSTM; a whole model takes its own inputs")
    if graph.get("dynamic_axes") and graph.get("dynamic_shapes") is not None:
        raise ExportError("give dynamic_axes (by flat input name) or dynamic_shapes (torch.export's form), not both")
    return _whole_model_signature(model, graph)


def export_signature(
    model: object, what: str, given: Optional[Signature] = None, *, lengths: bool = False, **graph: Unpack[GraphArgs]
) -> Signature:
    """The signature an exporter works from: ``given`` (computed once by the caller, e.g.
    ``export_folder``, and handed to every exporter), or checked and computed here.

    ``what`` completes :func:`check_exportable`'s sentence when computing.

    Raises:
        ExportError: ``model`` cannot be exported; ``given`` is another model's, or comes
            with ``lengths``/graph arguments (which it already fixes).
    """
    if given is None:
        return signature(check_exportable(model, what), lengths=lengths, **graph)
    if given.model is not model:
        raise ExportError(f"signature= was computed for another model ({type(given.model).__name__}), not this {type(model).__name__}")
    if lengths or any(v is not None for v in graph.values()):
        raise ExportError("give signature= or lengths and the graph arguments (example_inputs, names, axes), not both")
    return given


def _flat_examples(example_inputs: Any, example_kwargs: Any) -> Tuple[List[Tensor], Any]:
    """The example inputs flattened (torch.export's pytree order) and their structure.

    The same tensor passed twice (e.g. zeros as both h0 and c0) would be traced as one
    graph input feeding both places: each place gets its own copy.
    """
    if example_inputs is None:
        args: Tuple[Any, ...] = ()
    else:
        args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    flat_in, tree = pytree.tree_flatten((args, dict(example_kwargs or {})))
    _only_tensors(flat_in, "example inputs must hold only tensors (in tuples, lists or dicts)")
    seen: set = set()
    for i, t in enumerate(flat_in):
        if id(t) in seen:
            flat_in[i] = t.clone()
        seen.add(id(flat_in[i]))
    return flat_in, tree


def _only_tensors(flat: List[Any], what: str) -> None:
    if not all(isinstance(t, Tensor) for t in flat):
        kinds = sorted({type(t).__name__ for t in flat if not isinstance(t, Tensor)})
        raise ExportError(f"{what}, got {', '.join(kinds)}")


def _whole_model_signature(model: nn.Module, graph: Mapping[str, Any]) -> Signature:
    """:func:`signature` of a model that is not a bare LSTM: run it once on its examples."""
    flat_in, tree = _flat_examples(graph.get("example_inputs"), graph.get("example_kwargs"))
    in_names = _names(graph.get("input_names"), len(flat_in), "input")
    args, kwargs = pytree.tree_unflatten(flat_in, tree)
    try:
        with torch.no_grad():
            out = module_tree_copy(model, lambda m: None)(*args, **kwargs)
    except Exception as e:
        raise ExportError(f"the model does not run on its example inputs: {type(e).__name__}: {e}") from e
    flat_out, _ = pytree.tree_flatten(out)
    _only_tensors(flat_out, "the model must return tensors (in tuples, lists or dicts)")
    out_names = _names(graph.get("output_names"), len(flat_out), "output")
    dynamic_axes = graph.get("dynamic_axes")
    if graph.get("dynamic_shapes") is not None:
        dynamic_axes = _axes_from_dynamic_shapes(graph["dynamic_shapes"], in_names, (args, kwargs), model)
    shapes = dict(zip(in_names, (tuple(t.shape) for t in flat_in)))
    shapes.update(zip(out_names, (tuple(t.shape) for t in flat_out)))
    axes = _checked_axes(dynamic_axes or {}, shapes, in_names, out_names)

    def specs(names: List[str], tensors: List[Tensor]) -> Tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(n, tuple(axes.get(n, {}).get(i, d) for i, d in enumerate(t.shape)), dtype_name(t.dtype))
            for n, t in zip(names, tensors)
        )

    sig = Signature(model, args, IOSpec(specs(in_names, flat_in), specs(out_names, flat_out)), None, kwargs)
    _refuse_python_time_loops(sig, flat_in)
    return sig


def _checked_axes(
    dynamic_axes: Mapping[str, Mapping[int, str]], shapes: Mapping[str, Tuple[int, ...]], in_names: List[str], out_names: List[str]
) -> Dict[str, Dict[int, str]]:
    """``dynamic_axes`` as plain dicts, each name a graph input or output and each axis within its rank."""
    axes = {k: dict(v) for k, v in dynamic_axes.items()}
    for name, spec in axes.items():
        if name not in shapes:
            raise ExportError(
                f"dynamic_axes names {name!r}, which is not a graph input or output; "
                f"inputs: {in_names}, outputs: {out_names}"
            )
        for axis in spec:
            if not isinstance(axis, int) or not 0 <= axis < len(shapes[name]):
                raise ExportError(
                    f"dynamic_axes[{name!r}] names axis {axis!r}, but {name!r} has rank "
                    f"{len(shapes[name])} (shape {list(shapes[name])})"
                )
    return axes


def _axes_from_dynamic_shapes(dynamic_shapes: Any, in_names: List[str], inputs: Any, model: nn.Module) -> Dict[str, Dict[int, str]]:
    """torch.export's nested ``dynamic_shapes`` as ``dynamic_axes`` over the flat input names."""
    args, kwargs = inputs
    if isinstance(dynamic_shapes, dict):  # by parameter name, as torch.export takes it
        params = list(inspect.signature(model.forward).parameters)
        by_name = dict(dynamic_shapes)
        unknown = sorted(set(by_name) - set(params))
        if unknown:
            raise ExportError(f"dynamic_shapes names {unknown}, which are not parameters of {type(model).__name__}.forward {params}")
        per_argument = [by_name.get(p) for p in params[: len(args)]] + [by_name.get(k) for k in kwargs]
    else:
        per_argument = list(dynamic_shapes)

    def is_leaf(x: Any) -> bool:
        """One tensor's spec: None, {axis: Dim}, or a list/tuple of Dim-or-None per axis."""
        if x is None or (isinstance(x, dict) and all(isinstance(k, int) for k in x)):
            return True
        return isinstance(x, (list, tuple)) and bool(x) and all(d is None or isinstance(d, _DIM_TYPES) for d in x)

    leaves = [leaf for arg in per_argument for leaf in pytree.tree_flatten(arg, is_leaf=is_leaf)[0]]
    if len(leaves) != len(in_names):
        raise ExportError(
            f"dynamic_shapes has {len(leaves)} entries where the inputs have {len(in_names)} tensors ({in_names}); "
            "give one per tensor, nested like the inputs (None for a static tensor)"
        )
    axes: Dict[str, Dict[int, str]] = {}
    for name, leaf in zip(in_names, leaves):
        if leaf is None:
            continue
        items = leaf.items() if isinstance(leaf, dict) else enumerate(leaf)
        dims = {int(a): getattr(d, "__name__", str(d)) for a, d in items if d is not None}
        if dims:
            axes[name] = dims
    return axes


_DIM_TYPES = (torch.export.Dim("_probe").__class__, int)


def _refuse_python_time_loops(sig: Signature, flat_in: List[Tensor]) -> None:
    """Refuse a model that runs an LSTM or LSTMCell in a Python loop over a dynamic axis.

    A tracer unrolls such a loop: the graph would have that axis frozen at the
    example's size.  Found by counting the calls of each LSTM/LSTMCell at the
    example and again with one dynamic axis one longer.
    """
    if not any(isinstance(m, (LSTM, LSTMCell)) for m in sig.model.modules()):
        return
    sizes: Dict[str, int] = {}
    for spec, t in zip(sig.io.inputs, flat_in):
        for axis, name in spec.dynamic_axes().items():
            sizes.setdefault(name, int(t.shape[axis]))
    if not sizes:
        return

    def calls(flat: List[Tensor]) -> Dict[str, int]:
        counts: Dict[int, int] = {}
        names = {id(m): n or type(m).__name__ for n, m in sig.model.named_modules() if isinstance(m, (LSTM, LSTMCell))}
        copy = module_tree_copy(sig.model, lambda m: _Counted(m, counts) if id(m) in names else None)
        with torch.no_grad():
            sig.call(copy, flat)
        return {names[k]: v for k, v in counts.items()}

    at_example = calls(flat_in)
    for dim, size in sizes.items():
        suspects = {n: c for n, c in at_example.items() if c == size and c > 1}
        if not suspects:
            continue
        longer = [_grow(t, spec, dim) for spec, t in zip(sig.io.inputs, flat_in)]
        try:
            again = calls(longer)
        except Exception:  # e.g. a second dynamic axis that must grow with it: no verdict
            continue
        for name, count in suspects.items():
            if again.get(name) == count + 1:
                raise ExportError(
                    f"{name} runs {count} times when {dim!r} is {size} and {count + 1} times when it is {size + 1}: "
                    f"a Python loop over the dynamic axis {dim!r}, which tracing unrolls, so the exported graph "
                    f"would only work at {dim}={size}. Run the whole sequence through one deploy_lstm.LSTM call, or "
                    "export an encoder graph and a one-step decoder graph with the state (h, c) as explicit inputs "
                    "and outputs and run the loop in your application (recipe: export/export_seq2seq.py)"
                )


class _Counted(nn.Module):
    """Counts the calls of the module it wraps (for :func:`_refuse_python_time_loops`)."""

    def __init__(self, inner: nn.Module, counts: Dict[int, int]) -> None:
        super().__init__()
        self.inner = inner
        self.counts = counts

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.counts[id(self.inner)] = self.counts.get(id(self.inner), 0) + 1
        return self.inner(*args, **kwargs)


def _grow(t: Tensor, spec: TensorSpec, dim: str) -> Tensor:
    """``t`` one longer along every axis named ``dim`` (its first slice repeated)."""
    for axis, name in spec.dynamic_axes().items():
        if name == dim:
            t = torch.cat([t, t.narrow(axis, 0, 1)], axis)
    return t


def _names(given: Optional[Sequence[str]], count: int, stem: str) -> List[str]:
    if given is None:
        return [f"{stem}_{i}" for i in range(count)]
    names = list(given)
    if len(names) != count:
        raise ExportError(f"expected {count} {stem} names (one per flattened {stem} tensor), got {len(names)}: {names}")
    if len(set(names)) != len(names):
        raise ExportError(f"{stem} names must be unique, got {names}")
    return names
