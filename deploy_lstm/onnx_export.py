"""ONNX export of ``deploy_lstm`` LSTMs and of any model containing them.

While an exporter traces the model, every ``deploy_lstm.LSTM`` swaps its Python
time loop (which a tracer would unroll, freezing the sequence length) for a
graph-friendly layer stack:

* ``native``: the ONNX ``LSTM`` operator, one node per layer (both directions),
  through the custom op ``deploy_lstm::onnx_lstm`` that both exporters translate.
  onnxruntime then runs its fused kernel.  Used where the operator can express the
  configuration: no projection, float32.
* ``scan`` (dynamo exporter) / ``loop`` (TorchScript exporter): the recurrence as an
  ONNX ``Scan`` or ``Loop`` with the input projection hoisted out of the loop.  Used
  for projections (LSTMP), float64, or when ``native_lstm=False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import onnx
import torch
from torch import Tensor, nn

from . import contract, model as model_mod
from .contract import LSTMConfig
from .convert import onnx_weights
from .errors import ExportError
from .model import LSTM

__all__ = ["export_onnx", "OPSETS", "graph_ops", "read_metadata", "export_layers"]

#: Supported opset range per exporter (both ends are tested).
OPSETS: Dict[str, Tuple[int, int]] = {"dynamo": (18, 23), "torchscript": (11, 20)}
DEFAULT_OPSET: Dict[str, int] = {"dynamo": 18, "torchscript": 17}

_GB2 = 2**31 - 2**20  # protobuf's hard 2 GB limit, with a margin for the graph itself


# --- the custom op both exporters translate to ONNX LSTM ---------------------------


def _from_onnx_gates(t: Tensor, hidden_size: int) -> Tensor:
    """ONNX gate order (i, o, f, c) back to PyTorch's (i, f, g, o), along dim 0."""
    i, o, f, c = t.split(hidden_size, 0)
    return torch.cat([i, f, c, o], 0)


@torch.library.custom_op("deploy_lstm::onnx_lstm", mutates_args=())
def onnx_lstm(
    x: Tensor,
    w: Tensor,
    r: Tensor,
    b: Tensor,
    sequence_lens: Optional[Tensor],
    initial_h: Tensor,
    initial_c: Tensor,
    hidden_size: int,
    bidirectional: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """ONNX ``LSTM`` (opset 7+ semantics, layout 0) computed in PyTorch.

    x (T, N, I); w (D, 4H, I); r (D, 4H, H); b (D, 8H); sequence_lens (N,) int32;
    initial_h/c (D, N, H).  Returns Y (T, D, N, H), Y_h and Y_c (D, N, H).
    """
    H = hidden_size
    T = x.size(0)
    mask: Optional[Tensor] = None
    if sequence_lens is not None:
        steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        mask = (steps < sequence_lens.to(torch.int64).unsqueeze(0)).unsqueeze(2)  # (T, N, 1)
    ys, hs, cs = [], [], []
    for d in range(w.size(0)):
        bias = _from_onnx_gates(b[d, : 4 * H], H) + _from_onnx_gates(b[d, 4 * H :], H)
        y, h, c = model_mod.lstm_direction(
            x,
            initial_h[d],
            initial_c[d],
            _from_onnx_gates(w[d], H),
            _from_onnx_gates(r[d], H),
            bias,
            None,
            mask,
            d == 1,
        )
        ys.append(y)
        hs.append(h)
        cs.append(c)
    return torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)


@onnx_lstm.register_fake
def _onnx_lstm_fake(x, w, r, b, sequence_lens, initial_h, initial_c, hidden_size, bidirectional):  # type: ignore[no-untyped-def]
    y = x.new_empty(x.shape[0], w.shape[0], x.shape[1], hidden_size)
    return y, initial_h.new_empty(initial_h.shape), initial_c.new_empty(initial_c.shape)


def _onnx_lstm_dynamo(x, w, r, b, sequence_lens, initial_h, initial_c, hidden_size: int, bidirectional: bool):  # type: ignore[no-untyped-def]
    """onnxscript translation of ``deploy_lstm::onnx_lstm`` for the dynamo exporter."""
    from onnxscript import opset18 as op

    if sequence_lens is not None:
        sequence_lens = op.Cast(sequence_lens, to=onnx.TensorProto.INT32)
    direction = "bidirectional" if bidirectional else "forward"
    y, y_h, y_c = op.LSTM(
        x, w, r, b, sequence_lens, initial_h, initial_c, direction=direction, hidden_size=hidden_size
    )
    return y, y_h, y_c


def _onnx_lstm_torchscript(g, x, w, r, b, sequence_lens, initial_h, initial_c, hidden_size, bidirectional):  # type: ignore[no-untyped-def]
    """Symbolic of ``deploy_lstm::onnx_lstm`` for the TorchScript-based exporter."""
    from torch.onnx import symbolic_helper as sh

    H = sh._get_const(hidden_size, "i", "hidden_size")
    bidir = sh._get_const(bidirectional, "b", "bidirectional")
    if sh._is_none(sequence_lens):
        sequence_lens = g.op("prim::Constant")  # a missing optional input
        sequence_lens.setType(torch._C.OptionalType.ofTensor())
    else:
        sequence_lens = g.op("Cast", sequence_lens, to_i=onnx.TensorProto.INT32)
    return g.op(
        "LSTM",
        x,
        w,
        r,
        b,
        sequence_lens,
        initial_h,
        initial_c,
        direction_s="bidirectional" if bidir else "forward",
        hidden_size_i=H,
        outputs=3,
    )


_TS_REGISTERED: set = set()


def _register_torchscript_symbolic(opset: int) -> None:
    if opset not in _TS_REGISTERED:
        torch.onnx.register_custom_op_symbolic("deploy_lstm::onnx_lstm", _onnx_lstm_torchscript, opset)
        _TS_REGISTERED.add(opset)


# --- graph-friendly layer stacks used while tracing ---------------------------------


def _cells(m: LSTM, weights: List[Tensor], layer: int, direction: int):  # type: ignore[no-untyped-def]
    """(w_ih, w_hh, bias or None, w_hr or None) of one layer and direction."""
    k = m._weights_per_cell
    base = (layer * m.num_directions + direction) * k
    bias = weights[base + 2] + weights[base + 3] if m.bias else None
    w_hr = weights[base + k - 1] if m.proj_size > 0 else None
    return weights[base], weights[base + 1], bias, w_hr


def _float_mask(x: Tensor, lengths: Optional[Tensor]) -> Optional[Tensor]:
    """(T, N, 1) in x's dtype: 1 inside each sequence, 0 past its end."""
    if lengths is None:
        return None
    steps = torch.arange(x.size(0), device=x.device).unsqueeze(1)  # (T, 1)
    return (steps < lengths.unsqueeze(0)).unsqueeze(2).to(x.dtype)


def _project_inputs(x: Tensor, w_ih: Tensor, bias: Optional[Tensor]) -> Tensor:
    xw = torch.matmul(x, w_ih.t())  # (T, N, 4H): every step's input projection at once
    return xw + bias if bias is not None else xw


def _scan_direction(
    xw: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Optional[Tensor], mask: Optional[Tensor], reverse: bool
) -> Tuple[Tensor, Tensor, Tensor]:
    """One direction as ``torch._higher_order_ops.scan`` (exports to ONNX ``Scan``)."""
    from torch._higher_order_ops.scan import scan

    n = h.size(0)  # the batch, used in the step (see the reshape below)

    def step(carry, xs):  # type: ignore[no-untyped-def]
        h, c = carry
        xw_t, m = xs if mask is not None else (xs, None)
        gates = xw_t + torch.matmul(h, w_hh.t())  # (N, 4H)
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        c_new = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
        h_new = torch.sigmoid(outgate) * torch.tanh(c_new)
        if w_hr is not None:
            h_new = torch.matmul(h_new, w_hr.t())
        if m is not None:
            # exact for a 0/1 mask: 1*a + 0*b == a
            h_new = m * h_new + (1.0 - m) * h
            c_new = m * c_new + (1.0 - m) * c
            y = h_new * m
        else:
            y = h_new.clone()
        # A no-op that makes the step use the batch size: torch 2.13's Inductor
        # (decompose_scan_to_while_loop) sizes stacked outputs only from SymInts passed
        # into the scan, and fails with "InductorError: KeyError: s<N>" for a dynamic
        # batch that appears only in tensor shapes (no upstream issue found).
        return (h_new, c_new), y.reshape(n, y.size(1))

    xs = (xw, mask) if mask is not None else xw
    (h, c), ys = scan(step, (h, c), xs, reverse=reverse)
    return ys, h, c


@torch.jit.script
def _loop_direction(
    xw: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Tensor, has_proj: bool, mask: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """One direction as a scripted loop (the TorchScript exporter makes it an ONNX ``Loop``).

    ``mask`` (T, N, 1) is float: 1 inside the sequence.  A float blend rather than
    ``torch.where``: the TorchScript exporter mis-infers Where's shapes inside Loop.
    """
    outputs: List[Tensor] = []
    w_hh_t = w_hh.t()
    for t in range(xw.size(0)):
        gates = torch.addmm(xw[t], h, w_hh_t)  # (N, 4H)
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        c_new = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
        h_new = torch.sigmoid(outgate) * torch.tanh(c_new)
        if has_proj:
            h_new = torch.mm(h_new, w_hr.t())
        m = mask[t]  # (N, 1)
        h = m * h_new + (1.0 - m) * h
        c = m * c_new + (1.0 - m) * c
        outputs.append(h * m)
    return torch.stack(outputs), h, c


@dataclasses.dataclass
class _Plan:
    exporter: str
    native: Dict[int, bool]  # id(module) -> uses the ONNX LSTM op


def _uses_native(m: LSTM, native_lstm: bool) -> bool:
    return native_lstm and m.proj_size == 0 and m.weight_ih_l0.dtype == torch.float32


def _make_layers(plan: _Plan):  # type: ignore[no-untyped-def]
    def layers(m: LSTM, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], lengths: Optional[Tensor]):  # type: ignore[no-untyped-def]
        D = m.num_directions
        h_n: List[Tensor] = []
        c_n: List[Tensor] = []
        inp = x
        if plan.native[id(m)]:
            for layer in range(m.num_layers):
                W = getattr(m, f"_onnx_W_l{layer}")
                R = getattr(m, f"_onnx_R_l{layer}")
                B = getattr(m, f"_onnx_B_l{layer}")
                # Fewer glue nodes around the LSTM node: they cost per call when streaming.
                if m.num_layers == 1:
                    h_l, c_l = h0, c0
                else:
                    h_l, c_l = h0[layer * D : (layer + 1) * D], c0[layer * D : (layer + 1) * D]
                y, y_h, y_c = torch.ops.deploy_lstm.onnx_lstm(
                    inp, W, R, B, lengths, h_l, c_l, m.hidden_size, m.bidirectional
                )  # y (T, D, N, H)
                if D == 1:
                    inp = y.squeeze(1)  # (T, N, H)
                else:
                    inp = y.permute(0, 2, 1, 3).reshape(y.size(0), y.size(2), D * m.hidden_size)
                h_n.append(y_h)
                c_n.append(y_c)
            if m.num_layers == 1:
                return inp, h_n[0], c_n[0]
            return inp, torch.cat(h_n), torch.cat(c_n)
        for layer in range(m.num_layers):
            mask = _float_mask(inp, lengths)
            outs = []
            for direction in range(D):
                w_ih, w_hh, bias, w_hr = _cells(m, weights, layer, direction)
                idx = layer * D + direction
                xw = _project_inputs(inp, w_ih, bias)
                if plan.exporter == "dynamo":
                    y, h, c = _scan_direction(xw, h0[idx], c0[idx], w_hh, w_hr, mask, direction == 1)
                else:
                    fm = mask if mask is not None else xw.new_ones(xw.size(0), xw.size(1), 1)
                    if direction == 1:
                        xw, fm = xw.flip(0), fm.flip(0)
                    y, h, c = _loop_direction(
                        xw, h0[idx], c0[idx], w_hh, w_hr if w_hr is not None else w_hh, w_hr is not None, fm
                    )
                    if direction == 1:
                        y = y.flip(0)
                outs.append(y)
                h_n.append(h)
                c_n.append(c)
            inp = outs[0] if D == 1 else torch.cat(outs, 2)
        return inp, torch.stack(h_n), torch.stack(c_n)

    return layers


@contextlib.contextmanager
def export_layers(model: nn.Module, exporter: str, native_lstm: bool = True) -> Iterator[Dict[str, str]]:
    """While active, every ``deploy_lstm.LSTM`` in ``model`` traces as an exportable graph.

    Yields {submodule name: "native" | "scan" | "loop"}.  Restores everything on exit.
    """
    lstms = {name: m for name, m in model.named_modules() if isinstance(m, LSTM)}
    plan = _Plan(exporter, {id(m): _uses_native(m, native_lstm) for m in lstms.values()})
    added: List[Tuple[LSTM, str]] = []
    try:
        for m in lstms.values():
            if plan.native[id(m)]:
                with torch.no_grad():
                    for layer, (W, R, B) in onnx_weights(m).items():
                        for kind, t in (("W", W), ("R", R), ("B", B)):
                            name = f"_onnx_{kind}_l{layer}"
                            m.register_buffer(name, t.detach().clone(), persistent=False)
                            added.append((m, name))
        model_mod._EXPORT_LAYERS = _make_layers(plan)
        loop_kind = "scan" if exporter == "dynamo" else "loop"
        yield {n: ("native" if plan.native[id(m)] else loop_kind) for n, m in lstms.items()}
    finally:
        model_mod._EXPORT_LAYERS = None
        for m, name in added:
            delattr(m, name)


# --- the public export function ----------------------------------------------------


class _BareLSTM(nn.Module):
    """Graph signature of a bare LSTM: (input, h0, c0[, lengths]) -> (output, hn, cn)."""

    def __init__(self, lstm: LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, input: Tensor, h0: Tensor, c0: Tensor, lengths: Optional[Tensor] = None):  # type: ignore[no-untyped-def]
        output, (hn, cn) = self.lstm(input, (h0, c0), lengths)
        return output, hn, cn


def _example_for(cfg: LSTMConfig, dtype: torch.dtype, device: torch.device, lengths: bool) -> Tuple[Tensor, ...]:
    # Odd sizes no feature dimension is likely to equal, so nothing unifies by accident.
    N, T = 3, 7
    shape = (N, T, cfg.input_size) if cfg.batch_first else (T, N, cfg.input_size)
    g = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=dtype).to(device)  # noqa: E731
    ex: Tuple[Tensor, ...] = (
        mk(*shape),
        mk(cfg.num_states, N, cfg.real_hidden_size),
        mk(cfg.num_states, N, cfg.hidden_size),
    )
    if lengths:
        ex += (torch.tensor([T, 2, 5], dtype=torch.int64, device=device),)
    return ex


def _check_target(path: Path) -> None:
    if path.exists() and path.is_dir():
        raise ExportError(f"cannot write the model to {path}: it is a directory; give a file path such as {path / 'model.onnx'}")
    parent = path.parent
    if not parent.is_dir():
        raise ExportError(f"cannot write the model to {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ExportError(f"cannot write the model to {path}: folder {parent} is not writable")


def _check_exportable(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, (nn.LSTM, nn.LSTMCell)) and not isinstance(m, LSTM):
            where = name or "the model itself"
            raise ExportError(
                f"{where} is a torch.nn.{type(m).__name__}, whose export fixes the sequence "
                "length or fails; convert it first: model = deploy_lstm.swap_lstms(model)"
            )


def _dynamic_shapes(
    model: nn.Module, names: Sequence[str], dynamic_axes: Dict[str, Dict[int, str]], n_args: int
) -> Tuple[Any, ...]:
    """``dynamic_axes`` ({input name: {axis: dim name}}) as torch.export dynamic_shapes."""
    dims: Dict[str, Any] = {}
    out: List[Any] = []
    for name in list(names)[:n_args]:
        axes = dynamic_axes.get(name)
        if not axes:
            out.append(None)
            continue
        spec = {}
        for axis, dim_name in axes.items():
            if dim_name not in dims:
                dims[dim_name] = torch.export.Dim(dim_name, min=1)
            spec[int(axis)] = dims[dim_name]
        out.append(spec)
    return tuple(out)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    lengths: bool = False,
    example_inputs: Optional[Tuple[Any, ...]] = None,
    input_names: Optional[Sequence[str]] = None,
    output_names: Optional[Sequence[str]] = None,
    dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None,
    exporter: str = "dynamo",
    opset: Optional[int] = None,
    native_lstm: bool = True,
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
        example_inputs: positional example arguments for a whole model.
        input_names, output_names, dynamic_axes: for a whole model, as in
            ``torch.onnx.export`` ({name: {axis: dim name}}).
        exporter: ``"dynamo"`` (torch.export based, default) or ``"torchscript"``.
        opset: ONNX opset; see ``OPSETS`` for each exporter's range.
        native_lstm: use the ONNX ``LSTM`` operator where it can express the layer
            (no projection, float32); otherwise ``Scan``/``Loop``.

    Returns:
        The path written.

    Raises:
        ExportError: unsupported exporter or opset, a model that cannot be exported,
            or a path that cannot be written (all before any work).
    """
    if exporter not in OPSETS:
        raise ExportError(f"unknown exporter {exporter!r}; expected one of {sorted(OPSETS)}")
    lo, hi = OPSETS[exporter]
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    if not isinstance(opset, int) or not lo <= opset <= hi:
        raise ExportError(f"opset {opset!r} is not supported by the {exporter} exporter; expected {lo}..{hi}")
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}")
    _check_exportable(model)
    path = Path(path)
    _check_target(path)

    weights = next(model.parameters(), None)
    dtype = weights.dtype if weights is not None else torch.float32
    device = weights.device if weights is not None else torch.device("cpu")
    if isinstance(model, LSTM):
        cfg = LSTMConfig.of(model)
        io = contract.lstm_io(cfg, lengths=lengths, dtype=str(dtype).replace("torch.", ""))
        graph: nn.Module = _BareLSTM(model)
        args = _example_for(cfg, dtype, device, lengths)
        input_names, output_names = io.input_names, io.output_names
        dynamic_axes = io.dynamic_axes()
        config_meta: Any = dataclasses.asdict(cfg)
        io_meta: Optional[str] = io.to_json()
    else:
        if example_inputs is None:
            raise ExportError("a whole model needs example_inputs (a tuple of positional arguments)")
        if lengths:
            raise ExportError("lengths=True is for a bare deploy_lstm.LSTM; a whole model takes its own inputs")
        graph = model
        args = tuple(example_inputs)
        input_names = list(input_names or [f"input_{i}" for i in range(len(args))])
        dynamic_axes = dict(dynamic_axes or {})
        config_meta = {n: dataclasses.asdict(LSTMConfig.of(m)) for n, m in model.named_modules() if isinstance(m, LSTM)}
        io_meta = None

    was_training = model.training
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        graph.eval()  # dropout off: the artifact is for inference
        tmp = tmpdir / path.name
        with export_layers(graph, exporter, native_lstm) as kinds, _quiet_exporter():
            common = dict(
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names) if output_names else None,
            )
            if exporter == "dynamo":
                torch.onnx.export(
                    graph, args, str(tmp), dynamo=True, **common,
                    dynamic_shapes=_dynamic_shapes(graph, input_names, dynamic_axes, len(args)),
                    custom_translation_table={torch.ops.deploy_lstm.onnx_lstm.default: _onnx_lstm_dynamo},
                    external_data=True, optimize=True, verbose=False,
                )
            else:
                _register_torchscript_symbolic(opset)
                torch.onnx.export(
                    graph, args, str(tmp), dynamo=False, **common,
                    dynamic_axes=dynamic_axes, do_constant_folding=True,
                )
        proto = onnx.load(str(tmp))
        meta = {
            contract.META_CONFIG: json.dumps(config_meta, sort_keys=True),
            contract.META_VERSION: _version(),
            contract.META_TORCH: torch.__version__,
            "deploy_lstm.exporter": exporter,
            "deploy_lstm.lstm_ops": json.dumps(kinds, sort_keys=True),
        }
        if io_meta is not None:
            meta[contract.META_IO] = io_meta
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        _lstm_weights_as_initializers(proto)
        if io_meta is not None:
            _stamp_io(proto, contract.IOSpec.from_json(io_meta))
        _check_dynamic(proto, dynamic_axes)
        final_tmp = tmpdir / "final"
        final_tmp.mkdir()
        staged = final_tmp / path.name
        big = sum(_tensor_bytes(t) for t in proto.graph.initializer) > _GB2
        if big:
            onnx.save_model(
                proto, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                location=path.name + ".data", size_threshold=1024,
            )
        else:
            onnx.save_model(proto, str(staged))
        onnx.checker.check_model(str(staged), full_check=True)
        if big:
            os.replace(final_tmp / (path.name + ".data"), path.parent / (path.name + ".data"))
        os.replace(staged, path)
    except ExportError:
        raise
    except Exception as e:  # keep the cause, say what failed
        cause = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the dynamo exporter colours its text
        raise ExportError(f"ONNX export with the {exporter} exporter (opset {opset}) failed: {cause}") from e
    finally:
        model.train(was_training)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def _tensor_bytes(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n * max(1, onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize)


def _lstm_weights_as_initializers(proto: onnx.ModelProto) -> None:
    """Make every LSTM node's W, R, B an initializer, not a Constant node.

    The TorchScript exporter folds them into Constant nodes; onnxruntime's
    quantize_dynamic only turns an LSTM into DynamicQuantizeLSTM when W and R are
    initializers.
    """
    g = proto.graph
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and len(n.output) == 1}
    wanted = {name for n in g.node if n.op_type == "LSTM" for name in n.input[1:4] if name in consts}
    for name in wanted:
        node = consts[name]
        attr = next((a for a in node.attribute if a.name == "value"), None)
        if attr is None:
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(attr.t)
        tensor.name = name
        g.initializer.append(tensor)
        g.node.remove(node)


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


def _check_dynamic(proto: onnx.ModelProto, dynamic_axes: Dict[str, Dict[int, str]]) -> None:
    """Every declared dynamic axis of every graph input/output is symbolic in the file."""
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for axis in dynamic_axes.get(vi.name, {}):
            if int(axis) < len(dims) and dims[int(axis)].HasField("dim_value"):
                raise ExportError(
                    f"the exported graph fixed axis {axis} of {vi.name!r} to {dims[int(axis)].dim_value}; "
                    "expected a dynamic dimension"
                )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' chatter (progress lines, torchvision notes, TracerWarnings)."""
    names = ["torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._export"]
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*")
            warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"The feature will be removed\. Please remove usage of this function", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*scan.*prototype.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used", category=UserWarning)
            yield
    finally:
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)


def _version() -> str:
    from . import __version__

    return __version__


def read_metadata(path: str | os.PathLike) -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


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
