"""What an exporter traces: a copy of the model whose LSTMs run graph-friendly layer stacks.

A tracer would unroll ``deploy_lstm.LSTM``'s Python time loop and freeze the
sequence length.  So before tracing, :func:`traceable` makes a copy of the model's
module tree (:func:`module_tree_copy`: sharing every parameter, in eval mode) and, on
the copy of each ``LSTM`` (still an ``LSTM``: the model's own ``isinstance`` checks
hold), sets a stand-in for its layer stack through the module's documented hook,
``LSTM.set_layer_stack``: a :class:`LayerStack` built from that LSTM, which computes
the same thing as a graph-friendly route.  ``forward``'s checks and layouts stay the
LSTM's.  The caller's model is never touched, so an export does not change another
thread's eager calls and two exports in two threads do not interfere; nothing is set
or restored on it.

The stand-ins (routes):

* ``native``: the ONNX ``LSTM`` operator, one node per layer, through the custom op
  ``deploy_lstm::onnx_lstm`` that ``exporters/onnx.py`` translates for both exporters.
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

The loop bodies call ``deploy_lstm.nn.recurrence``'s cell step and mask rule, the
same functions as the eager loop.

For TorchScript, which scripts the module itself, :func:`with_fused` gives a copy of an
``LSTM`` with the implementation the export asks for.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple
import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan
import deploy_lstm.nn.ops  # noqa: F401 -- registers deploy_lstm::onnx_lstm and ::fused_lstm, which the routes call
from deploy_lstm.nn import jit
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.gates import onnx_weights
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.nn.recurrence import (
    cell_code,
    cell_step,
    cell_weights,
    hold_past_end,
    length_mask,
    project_input,
    zero_past_end,
)
from deploy_lstm.nn.swap import replace_modules, shallow_copy


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


@jit.lazy_script  # scripted on first use: importing the exporters scripts (and warns) nothing
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


class LayerStack(nn.Module):
    """A graph-friendly layer stack for one ``LSTM``, set on the exporter's copy of it
    (``LSTM.set_layer_stack``): the LSTM's configuration, its route's way of computing
    ``(x, h0, c0, weights, lengths) -> (output, h_n, c_n)`` (time-major; the weights are
    the LSTM's own, passed in by its ``forward`` after its checks)."""

    route = ""

    def __init__(self, lstm: LSTM) -> None:
        super().__init__()
        self.config = LSTMConfig.of(lstm)
        self.cell_code = cell_code(self.config.cell)
        self.weights_per_cell = len(lstm.all_weights[0])

    def each_direction(
        self, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor], direction_fn: Callable
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Layers and directions in order; ``direction_fn(xw, h, c, w_hh, w_hr, reverse, ex)`` runs one."""
        c = self.config
        D = c.num_directions
        h_n: List[Tensor] = []
        c_n: List[Tensor] = []
        inp = x
        for layer in range(c.num_layers):
            outs = []
            for direction in range(D):
                idx = layer * D + direction
                w_ih, w_hh, bias, w_hr, ex_in, ex_step = cell_weights(
                    weights, idx, self.weights_per_cell, c.bias, c.proj_size > 0, self.cell_code
                )
                xw = project_input(inp, w_ih, bias, self.cell_code, ex_in)  # (T, N, 4H)
                y, h, cn = direction_fn(xw, h0[idx], c0[idx], w_hh, w_hr, direction == 1, ex_step)
                outs.append(y)
                h_n.append(h)
                c_n.append(cn)
            inp = outs[0] if D == 1 else torch.cat(outs, 2)
        return inp, torch.stack(h_n), torch.stack(c_n)


class ScanLayers(LayerStack):
    """Each direction as ``torch._higher_order_ops.scan``."""

    route = "scan"

    def forward(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def]
        mask = None if lengths is None else length_mask(x.size(0), lengths, x.device)

        def direction(xw, h, c, w_hh, w_hr, reverse, ex):  # type: ignore[no-untyped-def]
            return _scan_direction(xw, h, c, w_hh, w_hr, mask, reverse, self.cell_code, ex)

        return self.each_direction(x, h0, c0, weights, direction)


class LoopLayers(LayerStack):
    """Each direction as a scripted loop (an ONNX ``Loop`` through the TorchScript exporter)."""

    route = "loop"

    def forward(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def]
        if lengths is None:
            mask = torch.ones(x.size(0), x.size(1), 1, dtype=torch.bool, device=x.device)
        else:
            mask = length_mask(x.size(0), lengths, x.device)

        def direction(xw, h, c, w_hh, w_hr, reverse, ex):  # type: ignore[no-untyped-def]
            m = mask.flip(0) if reverse else mask
            xw = xw.flip(0) if reverse else xw
            y, h, c = _loop_direction(xw, h, c, w_hh, w_hr if w_hr is not None else w_hh, w_hr is not None, m, self.cell_code, ex)
            return (y.flip(0) if reverse else y), h, c

        return self.each_direction(x, h0, c0, weights, direction)


class NativeLayers(LayerStack):
    """One ``deploy_lstm::onnx_lstm`` (an ONNX ``LSTM`` node) per layer, over the LSTM's
    weights in ONNX's layout (W, R, B and, for peepholes, P), made once here."""

    route = "native"

    def __init__(self, lstm: LSTM) -> None:
        super().__init__(lstm)
        with torch.no_grad():
            for layer, (W, R, B) in onnx_weights(lstm).items():
                for kind, t in (("W", W), ("R", R), ("B", B)):
                    self.register_buffer(f"onnx_{kind}_l{layer}", t.detach().clone(), persistent=False)
                if self.config.cell == "peephole":  # P (D, 3H): weight_ph is in ONNX's order already
                    sfx = ["", "_reverse"][: self.config.num_directions]
                    P = torch.stack([getattr(lstm, f"weight_ph_l{layer}{s}") for s in sfx])
                    self.register_buffer(f"onnx_P_l{layer}", P.detach().clone(), persistent=False)

    def forward(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def]
        c = self.config
        D, H = c.num_directions, c.hidden_size
        h_n: List[Tensor] = []
        c_n: List[Tensor] = []
        inp = x
        for layer in range(c.num_layers):
            W, R, B = (getattr(self, f"onnx_{k}_l{layer}") for k in "WRB")
            # Fewer glue nodes around the LSTM node: they cost per call when streaming.
            if c.num_layers == 1:
                h_l, c_l = h0, c0
            else:
                h_l, c_l = h0[layer * D : (layer + 1) * D], c0[layer * D : (layer + 1) * D]
            P = getattr(self, f"onnx_P_l{layer}") if c.cell == "peephole" else None
            y, y_h, y_c = torch.ops.deploy_lstm.onnx_lstm(inp, W, R, B, lengths, h_l, c_l, H, c.bidirectional, P)
            # y (T, D, N, H)
            inp = y.squeeze(1) if D == 1 else y.permute(0, 2, 1, 3).reshape(y.size(0), y.size(2), D * H)
            h_n.append(y_h)
            c_n.append(y_c)
        if c.num_layers == 1:
            return inp, h_n[0], c_n[0]
        return inp, torch.cat(h_n), torch.cat(c_n)


class FusedLayers(LayerStack):
    """The whole layer stack as one ``deploy_lstm::fused_lstm`` (aten::lstm) call."""

    route = "fused"

    def forward(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def]
        c = self.config
        return torch.ops.deploy_lstm.fused_lstm(x, h0, c0, weights, lengths, c.bias, c.num_layers, c.bidirectional)


STAND_INS = {cls.route: cls for cls in (NativeLayers, ScanLayers, LoopLayers, FusedLayers)}


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


def with_fused(lstm: LSTM, fused: bool) -> LSTM:
    """A copy of ``lstm`` (:func:`~deploy_lstm.nn.swap.shallow_copy`: the same parameters,
    attributes of its own) whose ``fused`` flags say ``fused``: aten::lstm (``True``) or the
    static loop (``False``), in eager mode and once scripted.  ``lstm`` is not changed.
    Only ``cell="lstm"`` has the kernel: the caller asks ``True`` for no other cell."""
    new = shallow_copy(lstm)
    new.fused = fused
    new.script_fused = fused
    return new  # type: ignore[return-value]


def module_tree_copy(model: nn.Module, replace: Callable[[nn.Module], Optional[nn.Module]]) -> nn.Module:
    """The copy of ``model`` an exporter works on: its module tree in eval mode, sharing
    every parameter, each module ``m`` replaced by ``replace(m)`` where that is not None
    (:func:`~deploy_lstm.nn.swap.replace_modules` with ``copy=True``).  ``model`` is not
    changed."""
    return replace_modules(model, replace, copy=True).eval()


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

    def stand_in(m: nn.Module) -> Optional[nn.Module]:
        if not isinstance(m, LSTM):
            return None
        new = shallow_copy(m)  # an LSTM still: the model's own isinstance checks hold in the trace
        new.set_layer_stack(STAND_INS[route_for(m, loop, native_lstm, fused)](m))
        return new

    copied = module_tree_copy(model, stand_in)
    routes = {
        name: m.layer_stack.route
        for name, m in copied.named_modules(remove_duplicate=False)
        if isinstance(m, LSTM) and isinstance(getattr(m, "layer_stack", None), LayerStack)
    }
    return copied, routes
