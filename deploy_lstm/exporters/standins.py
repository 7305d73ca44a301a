"""What an exporter traces: a copy of the model with each LSTM swapped for a stand-in.

A tracer would unroll ``deploy_lstm.LSTM``'s Python time loop and freeze the
sequence length.  So before tracing, :func:`traceable` makes a copy of the model's
module tree (sharing every parameter, in eval mode) in which each ``LSTM`` instance
is replaced by a stand-in that computes the same thing as a graph-friendly layer
stack.  The caller's model is never touched, so two exports in two threads do not
interfere, and ``model.py`` does not know that exporters exist.

The stand-ins (routes):

* ``native``: the ONNX ``LSTM`` operator, one node per layer, through the custom op
  ``deploy_lstm::onnx_lstm`` that ``onnx_export.py`` translates for both exporters.
  Used where the operator can express the layer: no projection, float32.
* ``scan``: each direction as ``torch._higher_order_ops.scan`` (ONNX ``Scan`` through
  the dynamo exporter; a while loop in AOTInductor).
* ``loop``: each direction as a scripted loop (ONNX ``Loop`` through the TorchScript
  exporter).
* ``fused``: the whole layer stack as one call of the custom op
  ``deploy_lstm::fused_lstm``, which runs aten's LSTM kernel (``torch.lstm``, what
  ``nn.LSTM`` runs).  Used by AOTInductor where that kernel fits (``cell="lstm"``):
  the package calls the op by name, so a C++ process needs the same op registered
  (``serving/cpp/aoti/fused_lstm_op.cpp``).  ``torch.export`` of ``aten::lstm`` itself
  would fix the sequence length (pytorch/pytorch#115092, #123089); behind a custom op
  with a fake kernel, T and N stay dynamic.

The loop bodies call ``recurrence.py``'s cell step and mask rule, the same
functions as the eager loop.
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Tuple
import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan
from deploy_lstm.nn.gates import onnx_weights
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.nn.recurrence import (
    cell_step,
    cell_weights,
    hold_past_end,
    length_mask,
    project_input,
    zero_past_end,
)


def _scan_direction(
    xw: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Optional[Tensor], mask: Optional[Tensor], reverse: bool,
    cell: int, ex: Tensor,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One direction as ``scan`` over the projected input ``xw`` (T, N, 4H)."""
    w_hh_t = w_hh.t()  # (P, 4H)
    w_hr_t = w_hr.t() if w_hr is not None else None  # (H, P)
    n = h.size(0)  # the batch, used in the step (see the reshape below)

    def step(carry, xs):  # type: ignore[no-untyped-def]
        h, c = carry
        xw_t, m = xs if mask is not None else (xs, None)
        h_new, c_new = cell_step(xw_t, h, c, w_hh_t, w_hr_t, cell, ex)
        if m is not None:
            h_new = hold_past_end(m, h_new, h)
            c_new = hold_past_end(m, c_new, c)
            y = zero_past_end(m, h_new)
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
    xw: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Tensor, has_proj: bool, mask: Tensor, cell: int, ex: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """One direction as a scripted loop (the TorchScript exporter makes it an ONNX ``Loop``).

    ``mask`` (T, N, 1) bool is always given (all True without lengths) and ``w_hr``
    always a tensor (ignored unless ``has_proj``): a traced call into a scripted
    function cannot pass ``None`` (the exporter writes a tensor of data type 0).
    """
    w_hh_t = w_hh.t()
    w_hr_t: Optional[Tensor] = None
    if has_proj:
        w_hr_t = w_hr.t()
    outputs: List[Tensor] = []
    for t in range(xw.size(0)):
        h_new, c_new = cell_step(xw[t], h, c, w_hh_t, w_hr_t, cell, ex)
        m = mask[t]  # (N, 1)
        h = hold_past_end(m, h_new, h)
        c = hold_past_end(m, c_new, c)
        outputs.append(zero_past_end(m, h))
    return torch.stack(outputs), h, c


class _TracedLSTM(LSTM):
    """Base of the stand-ins: ``LSTM``'s checks and layouts, another layer stack."""

    route = ""

    def _layer_stack(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], direction_fn: Callable
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Layers and directions in order; ``direction_fn(xw, h, c, w_hh, w_hr, reverse, ex)`` runs one."""
        D = self.num_directions
        h_n: List[Tensor] = []
        c_n: List[Tensor] = []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                idx = layer * D + direction
                w_ih, w_hh, bias, w_hr, ex_in, ex_step = cell_weights(
                    weights, idx, self._weights_per_cell, self.bias, self.proj_size > 0, self._cell
                )
                xw = project_input(inp, w_ih, bias, self._cell, ex_in)  # (T, N, 4H)
                y, h, c = direction_fn(xw, h0[idx], c0[idx], w_hh, w_hr, direction == 1, ex_step)
                outs.append(y)
                h_n.append(h)
                c_n.append(c)
            inp = outs[0] if D == 1 else torch.cat(outs, 2)
        return inp, torch.stack(h_n), torch.stack(c_n)


class _ScanLSTM(_TracedLSTM):
    route = "scan"

    def _run(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def,override]
        mask = None if lengths is None else length_mask(x.size(0), lengths, x.device)

        def direction(xw, h, c, w_hh, w_hr, reverse, ex):  # type: ignore[no-untyped-def]
            return _scan_direction(xw, h, c, w_hh, w_hr, mask, reverse, self._cell, ex)

        return self._layer_stack(x, h0, c0, weights, direction)


class _LoopLSTM(_TracedLSTM):
    route = "loop"

    def _run(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def,override]
        if lengths is None:
            mask = torch.ones(x.size(0), x.size(1), 1, dtype=torch.bool, device=x.device)
        else:
            mask = length_mask(x.size(0), lengths, x.device)

        def direction(xw, h, c, w_hh, w_hr, reverse, ex):  # type: ignore[no-untyped-def]
            m = mask.flip(0) if reverse else mask
            xw = xw.flip(0) if reverse else xw
            y, h, c = _loop_direction(xw, h, c, w_hh, w_hr if w_hr is not None else w_hh, w_hr is not None, m, self._cell, ex)
            return (y.flip(0) if reverse else y), h, c

        return self._layer_stack(x, h0, c0, weights, direction)


class _NativeLSTM(_TracedLSTM):
    """One ``deploy_lstm::onnx_lstm`` (an ONNX ``LSTM`` node) per layer."""

    route = "native"

    def _prepare(self) -> None:
        with torch.no_grad():
            for layer, (W, R, B) in onnx_weights(self).items():
                for kind, t in (("W", W), ("R", R), ("B", B)):
                    self.register_buffer(f"onnx_{kind}_l{layer}", t.detach().clone(), persistent=False)
                if self.cell == "peephole":  # P (D, 3H): weight_ph is in ONNX's order already
                    sfx = ["", "_reverse"][: self.num_directions]
                    P = torch.stack([getattr(self, f"weight_ph_l{layer}{s}") for s in sfx])
                    self.register_buffer(f"onnx_P_l{layer}", P.detach().clone(), persistent=False)

    def _run(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def,override]
        D, H = self.num_directions, self.hidden_size
        h_n: List[Tensor] = []
        c_n: List[Tensor] = []
        inp = x
        for layer in range(self.num_layers):
            W, R, B = (getattr(self, f"onnx_{k}_l{layer}") for k in "WRB")
            # Fewer glue nodes around the LSTM node: they cost per call when streaming.
            if self.num_layers == 1:
                h_l, c_l = h0, c0
            else:
                h_l, c_l = h0[layer * D : (layer + 1) * D], c0[layer * D : (layer + 1) * D]
            P = getattr(self, f"onnx_P_l{layer}") if self.cell == "peephole" else None
            y, y_h, y_c = torch.ops.deploy_lstm.onnx_lstm(inp, W, R, B, lengths, h_l, c_l, H, self.bidirectional, P)
            # y (T, D, N, H)
            inp = y.squeeze(1) if D == 1 else y.permute(0, 2, 1, 3).reshape(y.size(0), y.size(2), D * H)
            h_n.append(y_h)
            c_n.append(y_c)
        if self.num_layers == 1:
            return inp, h_n[0], c_n[0]
        return inp, torch.cat(h_n), torch.cat(c_n)


class _FusedLSTM(_TracedLSTM):
    """The whole layer stack as one ``deploy_lstm::fused_lstm`` (aten::lstm) call."""

    route = "fused"

    def _run(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def,override]
        return torch.ops.deploy_lstm.fused_lstm(x, h0, c0, weights, lengths, self.bias, self.num_layers, self.bidirectional)


_STAND_INS = {cls.route: cls for cls in (_NativeLSTM, _ScanLSTM, _LoopLSTM, _FusedLSTM)}


def route_for(lstm: LSTM, loop: str, native_lstm: bool = True, fused: bool = False) -> str:
    """The route an exporter takes for ``lstm``: ``fused`` when asked for and aten's kernel
    fits (nn.LSTM's cell, any layers, directions, projection, dtype); else ``native`` where
    the ONNX op fits (nn.LSTM's cell or peepholes, no projection, float32); else ``loop``."""
    if fused and lstm.cell == "lstm":
        return "fused"
    fits = lstm.cell in ("lstm", "peephole") and lstm.proj_size == 0
    if native_lstm and fits and lstm.weight_ih_l0.dtype == torch.float32:
        return "native"
    return loop


def _shallow_copy(module: nn.Module, cls: Optional[type] = None) -> nn.Module:
    """A new module object of ``cls`` (default: the same class) sharing ``module``'s
    parameters, buffers and children, with its own containers (parameter, buffer and
    module dicts, hooks, ``_flat_weights``), so changes to the copy stay local."""
    cls = cls or type(module)
    new = cls.__new__(cls)
    new.__dict__.update(
        {k: copy.copy(v) if isinstance(v, (dict, set, list)) else v for k, v in module.__dict__.items()}
    )
    return new


def with_fused(lstm: LSTM, fused: bool) -> LSTM:
    """A copy of ``lstm`` sharing its parameters, running aten::lstm (``True``) or the loop."""
    new = _shallow_copy(lstm)
    new.fused = fused
    new.script_fused = fused
    return new  # type: ignore[return-value]


def module_tree_copy(model: nn.Module, replace: Callable[[nn.Module], Optional[nn.Module]]) -> nn.Module:
    """A copy of ``model``'s module tree sharing every parameter, in eval mode.

    Each module ``m`` becomes ``replace(m)`` where that is not None, else a shallow
    copy of ``m`` (a ``deploy_lstm.LSTM`` is always at least copied, so flags set on
    the copy stay there).  A module used at several places stays one module in the
    copy; script modules are kept as they are.  ``model`` is not changed.
    """
    memo: Dict[int, nn.Module] = {}

    def visit(m: nn.Module) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        new = replace(m)
        if new is None and isinstance(m, torch.jit.ScriptModule):
            new = m
        elif new is None:
            new = _shallow_copy(m)
            new._modules = {k: (visit(c) if c is not None else None) for k, c in m._modules.items()}
        memo[id(m)] = new
        return new

    return visit(model).eval()


def traceable(
    model: nn.Module, loop: str, native_lstm: bool = True, fused: bool = False
) -> Tuple[nn.Module, Dict[str, str]]:
    """The module an exporter should trace in place of ``model``.

    Args:
        model: a ``deploy_lstm.LSTM`` or any model containing some.
        loop: the route for what the ONNX ``LSTM`` op cannot express: ``"scan"``
            (torch.export: the dynamo exporter, AOTInductor) or ``"loop"`` (the
            TorchScript exporter).
        native_lstm: use the ``native`` route where it fits.
        fused: use the ``fused`` route (one ``deploy_lstm::fused_lstm`` call) where it
            fits, before any other; for AOTInductor only (ONNX has no such op).

    Returns:
        (the copy to trace, {submodule name: route}).
    """
    if loop not in ("scan", "loop"):
        raise ValueError(f"unknown loop route {loop!r}; expected 'scan' or 'loop'")

    def stand_in(lstm: LSTM) -> nn.Module:
        new = _shallow_copy(lstm, _STAND_INS[route_for(lstm, loop, native_lstm, fused)])
        if isinstance(new, _NativeLSTM):
            new._prepare()
        return new

    copied = module_tree_copy(model, lambda m: stand_in(m) if isinstance(m, LSTM) else None)
    routes = {name: m.route for name, m in copied.named_modules(remove_duplicate=False) if isinstance(m, _TracedLSTM)}
    return copied, routes
