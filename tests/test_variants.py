"""Oracle tests for the cell variants ``peephole``, ``layernorm`` and ``cell_gated``.

Written from the specification of the variants (the equations and names in the
variants brief), not from the implementation:

- ``peephole`` is checked against the ONNX ``LSTM`` operator with its ``P`` input, run
  by onnxruntime and by ``onnx.reference.ReferenceEvaluator`` (one node per layer);
- ``layernorm`` against a plain PyTorch cell written here step by step, as
  ``benchmarks/fastrnns/custom_lstms.py``'s ``LayerNormLSTMCell`` (``F.layer_norm``);
- ``cell_gated`` against its equations written out in NumPy (values) and the same
  equations in torch (gradients);
- every variant also against a torch step reference for gradients, projection and
  ``LSTMCell``; layers, directions and ``lengths`` are handled here, one sequence at a
  time (each sequence cut to its length: what a packed batch means).

The references compute in float64; a float32 module is compared with them at 1e-5.
The harness itself is checked against ``nn.LSTM`` and the two peephole oracles
against each other (``test_oracle_*``), so a failure elsewhere is the module's.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from torch import Tensor, nn

import deploy_lstm as dl
from deploy_lstm.exporters.onnx import graph_ops, read_metadata

VARIANTS = ["peephole", "layernorm", "cell_gated"]
CELLS = ["lstm", *VARIANTS]
I, H, PROJ = 4, 5, 3  # input, hidden, proj sizes: all different, so a transposed weight cannot fit
N, T = 4, 6
LENGTHS = torch.tensor([4, 6, 1, 3])  # unsorted, includes T and 1
TOL = {torch.float32: dict(atol=1e-5, rtol=0.0), torch.float64: dict(atol=1e-10, rtol=0.0)}
GRAD32_REL = 3e-5  # float32 gradients: atol = max(1e-5, GRAD32_REL * max|grad|); see close()

# (id, constructor kwargs). proj_size only where the variant allows it (not cell_gated).
CONFIGS = [
    ("1l", {}),
    ("1l-nobias", dict(bias=False)),
    ("2l-bidir", dict(num_layers=2, bidirectional=True)),
    ("bf-bidir", dict(batch_first=True, bidirectional=True)),
    ("2l-bf-nobias", dict(num_layers=2, batch_first=True, bias=False)),
    ("proj-bidir", dict(proj_size=PROJ, bidirectional=True)),
    ("proj-2l-bidir-bf", dict(proj_size=PROJ, num_layers=2, bidirectional=True, batch_first=True)),
]
NO_PROJ = [c for c in CONFIGS if "proj_size" not in c[1]]


def configs_for(cell: str) -> List[Tuple[str, dict]]:
    return NO_PROJ if cell == "cell_gated" else CONFIGS


MATRIX = [pytest.param(cell, kw, id=f"{cell}-{cid}") for cell in VARIANTS for cid, kw in configs_for(cell)]


# --- the spec's parameter names --------------------------------------------------------------


def cell_param_specs(cell: str, in_size: int, bias: bool, proj: int) -> List[Tuple[str, Tuple[int, ...]]]:
    """(kind, shape) of one (layer, direction)'s parameters, in the spec's order."""
    P = proj or H
    if cell == "cell_gated":
        out = [("weight_ih", (4 * H, in_size)), ("weight_ch", (3 * H, H))]
        return out + ([("bias_ih", (4 * H,)), ("bias_ch", (3 * H,))] if bias else [])
    out = [("weight_ih", (4 * H, in_size)), ("weight_hh", (4 * H, P))]
    if bias:
        out += [("bias_ih", (4 * H,)), ("bias_hh", (4 * H,))]
    if proj:
        out += [("weight_hr", (proj, H))]
    if cell == "peephole":
        out += [("weight_ph", (3 * H,))]
    if cell == "layernorm":
        out += [(f"ln_{k}_{w}", (4 * H if k != "c" else H,)) for k in ("ih", "hh", "c") for w in ("weight", "bias")]
    return out


def expected_params(cell: str, num_layers: int = 1, bidirectional: bool = False, bias: bool = True,
                    proj_size: int = 0, **_: object) -> List[Tuple[str, Tuple[int, ...]]]:
    """The spec's state_dict of an LSTM: [(name, shape)] in order."""
    D = 2 if bidirectional else 1
    out = []
    for layer in range(num_layers):
        in_size = I if layer == 0 else D * (proj_size or H)
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            out += [(k + sfx, s) for k, s in cell_param_specs(cell, in_size, bias, proj_size)]
    return out


# --- building modules with random weights ------------------------------------------------------


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random LN affine parameters and peephole weights (their init 1/0 would hide bugs)."""
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if name.startswith("ln_") and "_weight" in name:
                p.copy_(1.0 + 0.5 * r)
            elif name.startswith("ln_") or name.startswith("weight_ph") or name.startswith("bias_ch"):
                p.copy_(0.5 * r)
    return module


def make(cell: str, dtype: torch.dtype = torch.float64, seed: int = 0, **kw: object) -> dl.LSTM:
    torch.manual_seed(seed)
    return randomise(dl.LSTM(I, H, cell=cell, dtype=dtype, **kw), seed).eval()  # type: ignore[return-value]


def inputs(m: dl.LSTM, n: int = N, t: int = T, seed: int = 0, batched: bool = True):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    dt = m.weight_ih_l0.dtype
    S, P = m.num_layers * (2 if m.bidirectional else 1), m.proj_size or m.hidden_size
    if not batched:
        return (torch.randn(t, I, generator=g, dtype=torch.float64).to(dt),
                torch.randn(S, P, generator=g, dtype=torch.float64).to(dt),
                torch.randn(S, H, generator=g, dtype=torch.float64).to(dt))
    shape = (n, t, I) if m.batch_first else (t, n, I)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dt)
    return (x, torch.randn(S, n, P, generator=g, dtype=torch.float64).to(dt),
            torch.randn(S, n, H, generator=g, dtype=torch.float64).to(dt))


def pad(x: Tensor, lengths: Tensor, batch_first: bool, values=(float("nan"), float("inf"), float("-inf"))) -> Tensor:
    """A copy of x holding ``values`` (cycled over the batch) past each length."""
    x = x.clone()
    for n, L in enumerate(lengths.tolist()):
        if batch_first:
            x[n, L:] = values[n % len(values)]
        else:
            x[L:, n] = values[n % len(values)]
    return x


# --- the reference: one cell step per variant, written from the spec ---------------------------


def rows(w, k: int):  # type: ignore[no-untyped-def]
    """``k`` equal blocks along dim 0 (gate blocks of a weight or bias)."""
    n = w.shape[0] // k
    return [w[j * n:(j + 1) * n] for j in range(k)]


def cols(v, k: int):  # type: ignore[no-untyped-def]
    """``k`` equal blocks along the last dim (gate blocks of a (N, kH) pre-activation)."""
    n = v.shape[-1] // k
    return [v[..., j * n:(j + 1) * n] for j in range(k)]


def project(p: dict, h):  # type: ignore[no-untyped-def]
    return h @ p["weight_hr"].T if "weight_hr" in p else h


def step_lstm(p: dict, x: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
    """nn.LSTM's cell (to check the harness against nn.LSTM)."""
    gates = x @ p["weight_ih"].T + h @ p["weight_hh"].T
    if "bias_ih" in p:
        gates = gates + p["bias_ih"] + p["bias_hh"]
    i, f, g, o = cols(gates, 4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return project(p, torch.sigmoid(o) * torch.tanh(c)), c


def step_peephole(p: dict, x: Tensor, h: Tensor, c_prev: Tensor) -> Tuple[Tensor, Tensor]:
    gates = x @ p["weight_ih"].T + h @ p["weight_hh"].T  # (N, 4H) in i, f, g, o
    if "bias_ih" in p:
        gates = gates + p["bias_ih"] + p["bias_hh"]
    a_i, a_f, a_g, a_o = cols(gates, 4)
    p_i, p_o, p_f = rows(p["weight_ph"], 3)  # ONNX order
    i = torch.sigmoid(a_i + p_i * c_prev)
    f = torch.sigmoid(a_f + p_f * c_prev)
    g = torch.tanh(a_g)
    c = f * c_prev + i * g
    o = torch.sigmoid(a_o + p_o * c)  # the new cell state
    return project(p, o * torch.tanh(c)), c


def step_layernorm(p: dict, x: Tensor, h: Tensor, c_prev: Tensor) -> Tuple[Tensor, Tensor]:
    def ln(v: Tensor, k: str) -> Tensor:
        return F.layer_norm(v, (v.shape[-1],), p[f"ln_{k}_weight"], p[f"ln_{k}_bias"], eps=1e-5)

    gates = ln(x @ p["weight_ih"].T, "ih") + ln(h @ p["weight_hh"].T, "hh")  # (N, 4H), one LN over 4H
    if "bias_ih" in p:
        gates = gates + p["bias_ih"] + p["bias_hh"]
    ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
    c = ln(torch.sigmoid(forgetgate) * c_prev + torch.sigmoid(ingate) * torch.tanh(cellgate), "c")
    return project(p, torch.sigmoid(outgate) * torch.tanh(c)), c


def step_cell_gated(p: dict, x, h, c_prev, xp=torch):  # type: ignore[no-untyped-def]
    """The cell_gated equations for numpy (``xp=np``) or torch arrays; h_{t-1} unused."""

    def sigma(v):  # type: ignore[no-untyped-def]
        return 1.0 / (1.0 + xp.exp(-v))

    W_i, W_f, W_g, W_o = rows(p["weight_ih"], 4)
    U_i, U_f, U_o = rows(p["weight_ch"], 3)
    if "bias_ih" in p:
        bi_i, bi_f, bi_g, bi_o = rows(p["bias_ih"], 4)
        bc_i, bc_f, bc_o = rows(p["bias_ch"], 3)
        b_i, b_f, b_o, b_g = bi_i + bc_i, bi_f + bc_f, bi_o + bc_o, bi_g
    else:
        b_i = b_f = b_o = b_g = 0.0
    i = sigma(x @ W_i.T + c_prev @ U_i.T + b_i)
    f = sigma(x @ W_f.T + c_prev @ U_f.T + b_f)
    o = sigma(x @ W_o.T + c_prev @ U_o.T + b_o)
    c = f * c_prev + i * xp.tanh(x @ W_g.T + b_g)
    return xp.tanh(o * c), c


STEPS: Dict[str, Callable] = {
    "lstm": step_lstm, "peephole": step_peephole, "layernorm": step_layernorm, "cell_gated": step_cell_gated,
}


def reference(step: Callable, params: dict, cfg: dict, x, hx=None, lengths=None, xp=torch):  # type: ignore[no-untyped-def]
    """The stack, as nn.LSTM defines it, one sequence at a time, cut to its length.

    ``params`` are named as the module's; ``cfg`` holds num_layers, bidirectional,
    batch_first, proj_size.  Works on torch tensors or (``xp=np``) numpy arrays.
    Returns (output, h_n, c_n) shaped as the module's.
    """
    L_, D = cfg.get("num_layers", 1), 2 if cfg.get("bidirectional") else 1
    P = cfg.get("proj_size", 0) or H
    batched = x.ndim == 3
    if not batched:
        x = x[:, None]
        hx = None if hx is None else (hx[0][:, None], hx[1][:, None])
    elif cfg.get("batch_first"):
        x = xp.swapaxes(x, 0, 1)  # (T, N, I)
    T_, N_ = x.shape[0], x.shape[1]
    h0, c0 = hx if hx is not None else (xp.zeros((L_ * D, N_, P), dtype=x.dtype), xp.zeros((L_ * D, N_, H), dtype=x.dtype))
    lens = [T_] * N_ if lengths is None else [int(v) for v in lengths]
    outs, hns, cns = [], [], []
    for n in range(N_):
        Ln = lens[n]
        seq = [x[t, n:n + 1] for t in range(Ln)]  # Ln x (1, I): the padding is never read
        hn, cn = [], []
        for layer in range(L_):
            ys_dirs = []
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                p = {k[:-len(sfx)]: v for k, v in params.items() if k.endswith(sfx)}
                h, c = h0[layer * D + d, n:n + 1], c0[layer * D + d, n:n + 1]
                ys = [None] * Ln
                for t in (range(Ln) if d == 0 else range(Ln - 1, -1, -1)):
                    h, c = step(p, seq[t], h, c) if xp is torch else step(p, seq[t], h, c, xp=xp)
                    ys[t] = h
                ys_dirs.append(ys)
                hn.append(h)
                cn.append(c)
            seq = [xp.concatenate([ys[t] for ys in ys_dirs], -1) for t in range(Ln)]
        zero = xp.zeros((1, D * P), dtype=x.dtype)
        outs.append(xp.stack(seq + [zero] * (T_ - Ln), 0))  # (T, 1, D*P)
        hns.append(xp.stack(hn, 0))  # (L*D, 1, P)
        cns.append(xp.stack(cn, 0))
    out, h_n, c_n = (xp.concatenate(a, 1) for a in (outs, hns, cns))
    if not batched:
        return out[:, 0], h_n[:, 0], c_n[:, 0]
    if cfg.get("batch_first"):
        out = xp.swapaxes(out, 0, 1)
    return out, h_n, c_n


def cfg_of(m: dl.LSTM) -> dict:
    return dict(num_layers=m.num_layers, bidirectional=m.bidirectional, batch_first=m.batch_first, proj_size=m.proj_size)


# --- forward + backward of a module and of the reference ---------------------------------------


def loss_weights(shapes: List[Tuple[int, ...]], seed: int) -> List[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def grads_of(fn: Callable, x: Tensor, hx: Optional[Tuple[Tensor, Tensor]], params: Dict[str, Tensor], seed: int):  # type: ignore[no-untyped-def]
    """Values and gradients (input, h0, c0, every parameter) of ``fn(x, hx)`` under a random
    linear loss.  A gradient that does not arrive is None."""
    x = x.detach().clone().requires_grad_(True)
    if hx is not None:
        hx = tuple(t.detach().clone().requires_grad_(True) for t in hx)  # type: ignore[assignment]
    for p in params.values():
        p.grad = None
    values = fn(x, hx)
    ws = loss_weights([tuple(v.shape) for v in values], seed)
    sum((v * w.to(v.dtype)).sum() for v, w in zip(values, ws)).backward()
    grads = {"input": x.grad}
    if hx is not None:
        grads["h0"], grads["c0"] = hx[0].grad, hx[1].grad
    grads.update({k: p.grad for k, p in params.items()})
    return [v.detach() for v in values], grads


def close(got: Tensor, want: Tensor, dtype: torch.dtype, what: str, scaled: bool = False) -> None:
    """``got`` within TOL[dtype] of the float64 ``want``; ``scaled``: the float32 tolerance is
    relative to the tensor's largest entry (for gradients, which reach ~20 here)."""
    tol = dict(TOL[dtype])
    if scaled and dtype == torch.float32:
        # Float32 layernorm gradients (magnitude up to ~20 here) cannot meet 1e-5 absolute:
        # a plain float32 F.layer_norm cell is itself up to 4e-5 off the float64 one, and a
        # written-out LN up to 1.4e-4 (LN of the zero initial h has rstd 1/sqrt(eps) = 316).
        # Measured worst: 1.02e-5 of the tensor's largest entry; allowed: 3e-5 of it.
        tol["atol"] = max(tol["atol"], GRAD32_REL * float(want.abs().max()))
    torch.testing.assert_close(got, want.to(got.dtype), **tol, msg=lambda m: f"{what}: {m}")


def check_module(m: nn.Module, cell: str, x: Tensor, hx, lengths=None, cell_module: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Values (NaN/inf padding past lengths) and gradients (finite padding) of ``m`` against
    the float64 torch reference of ``cell``."""
    dtype = x.dtype
    params = dict(m.named_parameters())
    ref_params = {k: v.detach().double().clone().requires_grad_(True) for k, v in params.items()}
    step = STEPS[cell]
    if cell_module:
        def ours(x_, hx_):  # type: ignore[no-untyped-def]
            return list(m(x_, hx_))

        def ref(x_, hx_):  # type: ignore[no-untyped-def]
            xx = x_ if x_.ndim == 2 else x_[None]
            if hx_ is None:
                hx_ = (xx.new_zeros(xx.shape[0], H), xx.new_zeros(xx.shape[0], H))
            elif x_.ndim == 1:
                hx_ = (hx_[0][None], hx_[1][None])
            h, c = step(ref_params, xx, hx_[0], hx_[1])
            return [h, c] if x_.ndim == 2 else [h[0], c[0]]
    else:
        def ours(x_, hx_):  # type: ignore[no-untyped-def]
            out, (h_n, c_n) = m(x_, hx_, lengths) if lengths is not None else m(x_, hx_)
            return [out, h_n, c_n]

        def ref(x_, hx_):  # type: ignore[no-untyped-def]
            return list(reference(step, ref_params, cfg_of(m), x_, hx_, lengths))

    names = ["h", "c"] if cell_module else ["output", "h_n", "c_n"]
    # values; with lengths, the padding is NaN/inf and must never show
    x_val = x if lengths is None else pad(x, lengths, m.batch_first)
    with torch.no_grad():
        got = ours(x_val, hx)
        want = ref(x.double(), None if hx is None else tuple(t.double() for t in hx))
    for name, a, b in zip(names, got, want):
        assert torch.isfinite(a).all(), f"{name} is not finite (padding leaked?)"
        close(a, b, dtype, name)
    # gradients, with finite padding (0 * NaN is NaN in any weight gradient)
    x_grad = x if lengths is None else pad(x, lengths, m.batch_first, values=(7.0, -3.0))
    got_v, got_g = grads_of(ours, x_grad, hx, params, seed=1)
    want_v, want_g = grads_of(ref, x_grad.double(), None if hx is None else tuple(t.double() for t in hx), ref_params, seed=1)
    for name, a, b in zip(names, got_v, want_v):
        close(a, b, dtype, f"{name} (finite padding)")
    assert list(got_g) == list(want_g)
    for key in want_g:
        a, b = got_g[key], want_g[key]
        if key in ("input", "h0", "c0"):  # an input that does not reach the loss: zero gradient
            like = (x_grad if key == "input" else hx[0 if key == "h0" else 1]).to(dtype)  # type: ignore[index]
            a = torch.zeros_like(like) if a is None else a
            b = torch.zeros_like(like, dtype=torch.float64) if b is None else b
        assert a is not None, f"no gradient for {key}"
        assert b is not None, f"the reference has no gradient for {key}"
        close(a, b, dtype, f"grad {key}", scaled=True)


# --- the ONNX LSTM operator as an oracle (peephole) ---------------------------------------------


def onnx_gates(w: np.ndarray) -> np.ndarray:
    """Gate blocks along dim 0: nn.LSTM's i, f, g, o -> ONNX's i, o, f, c."""
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


@functools.lru_cache(maxsize=None)
def lstm_node(direction: str, in_size: int, with_lens: bool, elem: int) -> bytes:
    """A model of one ONNX ``LSTM`` node; every operand (P included) is a graph input."""
    D = 2 if direction == "bidirectional" else 1
    vi = helper.make_tensor_value_info
    ins = [
        vi("X", elem, ["T", "N", in_size]), vi("W", elem, [D, 4 * H, in_size]), vi("R", elem, [D, 4 * H, H]),
        vi("B", elem, [D, 8 * H]), vi("initial_h", elem, [D, "N", H]), vi("initial_c", elem, [D, "N", H]),
        vi("P", elem, [D, 3 * H]),
    ]
    if with_lens:
        ins.append(vi("sequence_lens", TensorProto.INT32, ["N"]))
    node = helper.make_node(
        "LSTM", ["X", "W", "R", "B", "sequence_lens" if with_lens else "", "initial_h", "initial_c", "P"],
        ["Y", "Y_h", "Y_c"], hidden_size=H, direction=direction, layout=0,
    )
    outs = [vi("Y", elem, ["T", D, "N", H]), vi("Y_h", elem, [D, "N", H]), vi("Y_c", elem, [D, "N", H])]
    model = helper.make_model(helper.make_graph([node], "peephole", ins, outs), opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def node_runner(runtime: str, direction: str, in_size: int, with_lens: bool, elem: int):  # type: ignore[no-untyped-def]
    model = lstm_node(direction, in_size, with_lens, elem)
    if runtime == "onnxruntime":
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return ReferenceEvaluator(onnx.load_from_string(model))


def run_node(runtime: str, direction: str, feeds: dict, lengths: Optional[np.ndarray]):  # type: ignore[no-untyped-def]
    """Y, Y_h, Y_c of one LSTM node.  ReferenceEvaluator ignores sequence_lens, so with
    lengths it runs each sequence cut to its length (what sequence_lens means) and pads Y."""
    elem = TensorProto.DOUBLE if feeds["X"].dtype == np.float64 else TensorProto.FLOAT
    in_size = feeds["X"].shape[2]
    if runtime == "onnxruntime" or lengths is None:
        f = dict(feeds)
        if lengths is not None:
            f["sequence_lens"] = lengths.astype(np.int32)
        return node_runner(runtime, direction, in_size, lengths is not None, elem).run(None, f)
    Ys, Yhs, Ycs = [], [], []
    for n, L in enumerate(lengths.tolist()):
        f = dict(feeds, X=feeds["X"][:L, n:n + 1], initial_h=feeds["initial_h"][:, n:n + 1],
                 initial_c=feeds["initial_c"][:, n:n + 1])
        Y, Yh, Yc = node_runner(runtime, direction, in_size, False, elem).run(None, f)
        Ys.append(np.concatenate([Y, np.zeros((feeds["X"].shape[0] - L,) + Y.shape[1:], Y.dtype)], 0))
        Yhs.append(Yh)
        Ycs.append(Yc)
    return np.concatenate(Ys, 2), np.concatenate(Yhs, 1), np.concatenate(Ycs, 1)


def onnx_peephole(params: Dict[str, np.ndarray], cfg: dict, x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                  lengths: Optional[np.ndarray], runtime: str, split: bool):  # type: ignore[no-untyped-def]
    """A peephole stack through ONNX LSTM nodes, one per layer (``split``: a forward and a
    reverse node per bidirectional layer instead of one bidirectional node).  x is
    time-major (T, N, I) with clean padding; returns (output (T, N, D*H), h_n, c_n)."""
    D = 2 if cfg.get("bidirectional") else 1
    T_, N_ = x.shape[:2]
    hns, cns = [], []
    for layer in range(cfg.get("num_layers", 1)):
        per_dir = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih = params["weight_ih" + sfx]
            b = (np.concatenate([onnx_gates(params["bias_ih" + sfx]), onnx_gates(params["bias_hh" + sfx])])
                 if "bias_ih" + sfx in params else np.zeros(8 * H, w_ih.dtype))
            per_dir.append(dict(W=onnx_gates(w_ih), R=onnx_gates(params["weight_hh" + sfx]), B=b,
                                P=params["weight_ph" + sfx], initial_h=h0[layer * D + d], initial_c=c0[layer * D + d]))
        groups = [[0], [1]] if split and D == 2 else [list(range(D))]
        Ys = []
        for dirs in groups:
            direction = {(0,): "forward", (1,): "reverse", (0, 1): "bidirectional"}[tuple(dirs)]
            feeds = {k: np.stack([per_dir[d][k] for d in dirs]) for k in per_dir[0]}
            feeds["X"] = x
            Y, Yh, Yc = run_node(runtime, direction, feeds, lengths)
            Ys.append(Y)  # (T, len(dirs), N, H)
            hns.append(Yh)
            cns.append(Yc)
        Y = np.concatenate(Ys, 1)  # (T, D, N, H)
        x = Y.transpose(0, 2, 1, 3).reshape(T_, N_, D * H)
    return x, np.concatenate(hns, 0), np.concatenate(cns, 0)


# ================================================================================================
# 0. The oracles themselves (no deploy_lstm variant needed)
# ================================================================================================


def _param_dict(cell: str, cfg: dict, seed: int) -> Dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.5 * torch.randn(s, generator=g, dtype=torch.float64) + (1.0 if "ln_" in k and "_weight" in k else 0.0)
            for k, s in expected_params(cell, **cfg)}


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cid,kw", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_oracle_harness_is_nn_lstm(cid, kw, lengths) -> None:
    """The reference harness (layers, directions, lengths) with nn.LSTM's cell is nn.LSTM."""
    torch.manual_seed(0)
    lstm = nn.LSTM(I, H, dtype=torch.float64, **kw)
    x = torch.randn((N, T, I) if lstm.batch_first else (T, N, I), dtype=torch.float64)
    S = lstm.num_layers * (2 if lstm.bidirectional else 1)
    hx = (torch.randn(S, N, lstm.proj_size or H, dtype=torch.float64), torch.randn(S, N, H, dtype=torch.float64))
    with torch.no_grad():
        if lengths is None:
            want_out, (want_h, want_c) = lstm(x, hx)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=lstm.batch_first, enforce_sorted=False)
            out, (want_h, want_c) = lstm(packed, hx)
            want_out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=lstm.batch_first, total_length=T)
        got = reference(step_lstm, dict(lstm.named_parameters()), kw, x, hx, lengths)
    for a, b in zip(got, (want_out, want_h, want_c)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("runtime", ["onnxruntime", "reference"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cid,kw", [c for c in NO_PROJ if c[0] in ("1l", "2l-bidir")], ids=["1l", "2l-bidir"])
def test_oracle_peephole_torch_is_onnx(cid, kw, lengths, runtime) -> None:
    """The torch peephole step (used for gradients and projection) is the ONNX LSTM with P;
    with P = 0 the ONNX nodes are nn.LSTM (so the gate reordering is right)."""
    params = _param_dict("peephole", kw, seed=3)
    g = torch.Generator().manual_seed(4)
    D = 2 if kw.get("bidirectional") else 1
    S = kw.get("num_layers", 1) * D
    x, h0, c0 = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((T, N, I), (S, N, H), (S, N, H)))
    want = reference(step_peephole, params, kw, x, (h0, c0), lengths)
    ln = None if lengths is None else lengths.numpy()
    dt, atol = (np.float32, 1e-5) if runtime == "onnxruntime" else (np.float64, 1e-10)  # ORT's LSTM: float only
    np_params = {k: v.numpy().astype(dt) for k, v in params.items()}
    xs = [t.numpy().astype(dt) for t in (x, h0, c0)]
    got = onnx_peephole(np_params, kw, *xs, ln, runtime, split=False)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), atol=atol, rtol=0)
    zero_p = {k: (v * 0 if k.startswith("weight_ph") else v) for k, v in np_params.items()}
    lstm_ref = reference(step_lstm, {k: v for k, v in params.items() if not k.startswith("weight_ph")}, kw, x, (h0, c0), lengths)
    got = onnx_peephole(zero_p, kw, *xs, ln, runtime, split=True)
    for a, b in zip(got, lstm_ref):
        np.testing.assert_allclose(a, b.numpy(), atol=atol, rtol=0)


def test_oracle_cell_gated_numpy_is_torch_and_ignores_h() -> None:
    p = _param_dict("cell_gated", {}, seed=5)
    p = {k[: -len("_l0")]: v for k, v in p.items()}
    g = torch.Generator().manual_seed(6)
    x, h, c = torch.randn(3, I, generator=g, dtype=torch.float64), torch.randn(3, H, generator=g, dtype=torch.float64), torch.randn(3, H, generator=g, dtype=torch.float64)
    h1, c1 = step_cell_gated(p, x, h, c)
    h2, c2 = step_cell_gated({k: v.numpy() for k, v in p.items()}, x.numpy(), 0 * h.numpy(), c.numpy(), xp=np)
    np.testing.assert_allclose(h1.numpy(), h2, atol=1e-14)
    np.testing.assert_allclose(c1.numpy(), c2, atol=1e-14)


# ================================================================================================
# 1. Eager module vs the oracles
# ================================================================================================


@pytest.mark.parametrize("runtime,dtype", [("onnxruntime", torch.float32), ("reference", torch.float32), ("reference", torch.float64)],
                         ids=["ort-f32", "refeval-f32", "refeval-f64"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cid,kw,split", [
    pytest.param(cid, kw, split, id=cid + ("-fwd+rev-nodes" if split else ""))
    for cid, kw in NO_PROJ for split in ([False, True] if kw.get("bidirectional") else [False])
])
def test_peephole_is_onnx_lstm_with_P(cid, kw, split, lengths, runtime, dtype) -> None:
    """peephole == the ONNX LSTM operator with P = weight_ph, one node per layer (``split``:
    a forward and a reverse node per bidirectional layer)."""
    m = make("peephole", dtype, **kw)
    x, h0, c0 = inputs(m)
    x_in = x if lengths is None else pad(x, lengths, m.batch_first)
    with torch.no_grad():
        out, (h_n, c_n) = m(x_in, (h0, c0), lengths) if lengths is not None else m(x_in, (h0, c0))
    x_tm = x.transpose(0, 1) if m.batch_first else x
    if lengths is not None:  # the oracle gets clean padding: its result does not depend on it
        x_tm = pad(x_tm, lengths, False, values=(0.0,))
    params = {k: v.detach().numpy() for k, v in m.named_parameters()}
    want = onnx_peephole(params, kw, x_tm.numpy(), h0.numpy(), c0.numpy(),
                         None if lengths is None else lengths.numpy(), runtime, split)
    want_out = torch.from_numpy(want[0])
    want_out = want_out.transpose(0, 1) if m.batch_first else want_out
    tol = dict(atol=1e-5, rtol=0) if dtype == torch.float32 else TOL[dtype]
    for name, a, b in zip(("output", "h_n", "c_n"), (out, h_n, c_n), (want_out, torch.from_numpy(want[1]), torch.from_numpy(want[2]))):
        assert torch.isfinite(a).all(), f"{name} is not finite (padding leaked?)"
        torch.testing.assert_close(a, b, **tol, msg=lambda msg, n=name: f"{n}: {msg}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("hx", [True, False], ids=["hx", "no-hx"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cell,kw", MATRIX)
def test_eager_matches_reference(cell, kw, lengths, hx, dtype) -> None:
    """Values and gradients (input, h0, c0, every parameter) against the torch reference."""
    m = make(cell, dtype, **kw)
    x, h0, c0 = inputs(m)
    check_module(m, cell, x, (h0, c0) if hx else None, lengths)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cid,kw", NO_PROJ, ids=[c[0] for c in NO_PROJ])
def test_cell_gated_matches_numpy(cid, kw, lengths, dtype) -> None:
    """cell_gated's equations in NumPy, float64."""
    m = make("cell_gated", dtype, **kw)
    x, h0, c0 = inputs(m)
    x_in = x if lengths is None else pad(x, lengths, m.batch_first)
    with torch.no_grad():
        got = m(x_in, (h0, c0), lengths) if lengths is not None else m(x_in, (h0, c0))
    params = {k: v.detach().double().numpy() for k, v in m.named_parameters()}
    want = reference(step_cell_gated, params, kw, x.double().numpy(), (h0.double().numpy(), c0.double().numpy()),
                     None if lengths is None else lengths.tolist(), xp=np)
    for name, a, b in zip(("output", "h_n", "c_n"), (got[0], *got[1]), want):
        assert torch.isfinite(a).all(), f"{name} is not finite"
        close(a, torch.from_numpy(b), dtype, name)


def test_cell_gated_does_not_read_h0() -> None:
    """h_{t-1} is not read: any h0 gives the same result, bit for bit."""
    m = make("cell_gated", num_layers=2, bidirectional=True)
    x, h0, c0 = inputs(m)
    a = m(x, (h0, c0))
    b = m(x, (100 * torch.randn_like(h0), c0))
    for u, v in zip((a[0], *a[1]), (b[0], *b[1])):
        torch.testing.assert_close(u, v, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("hx", [True, False], ids=["hx", "no-hx"])
@pytest.mark.parametrize("cell", VARIANTS)
def test_unbatched(cell, hx, dtype) -> None:
    kw = dict(num_layers=2, bidirectional=True, **({} if cell == "cell_gated" else {"proj_size": PROJ}))
    m = make(cell, dtype, **kw)
    x, h0, c0 = inputs(m, batched=False)
    check_module(m, cell, x, (h0, c0) if hx else None)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", ["batched", "unbatched", "no-hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", VARIANTS)
def test_lstm_cell(cell, bias, shape, dtype) -> None:
    """LSTMCell(cell=...) is one step of the same equations (values and gradients)."""
    torch.manual_seed(0)
    m = randomise(dl.LSTMCell(I, H, bias=bias, dtype=dtype, cell=cell), 0)
    want = [k for k, _ in cell_param_specs(cell, I, bias, 0)]
    assert list(m.state_dict()) == want
    g = torch.Generator().manual_seed(2)
    lead = () if shape == "unbatched" else (3,)
    x, h, c = (torch.randn(lead + (s,), generator=g, dtype=torch.float64).to(dtype) for s in (I, H, H))
    check_module(m, cell, x, None if shape == "no-hx" else (h, c), cell_module=True)


@pytest.mark.parametrize("cell", VARIANTS)
def test_lstm_matches_lstm_cell(cell) -> None:
    """A 1-layer LSTM is its LSTMCell stepped over time (same weights, suffix removed)."""
    m = make(cell)
    cellm = dl.LSTMCell(I, H, dtype=torch.float64, cell=cell)
    cellm.load_state_dict({k[: -len("_l0")]: v for k, v in m.state_dict().items()}, strict=True)
    x, h0, c0 = inputs(m)
    out, (h_n, c_n) = m(x, (h0, c0))
    h, c = h0[0], c0[0]
    ys = []
    for t in range(T):
        h, c = cellm(x[t], (h, c))
        ys.append(h)
    for a, b in zip((out, h_n[0], c_n[0]), (torch.stack(ys), h, c)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("cell", VARIANTS)
def test_dropout_between_layers_only_in_training(cell) -> None:
    """eval: dropout changes nothing; training with dropout=1: layer 2 sees zeros."""
    kw = dict(num_layers=2, dropout=1.0)
    m = make(cell, **kw)
    x, h0, c0 = inputs(m)
    check_module(m, cell, x, (h0, c0))  # eval mode
    m.train()
    with torch.no_grad():
        out, (h_n, c_n) = m(x, (h0, c0))
        params = {k: v.detach() for k, v in m.named_parameters()}
        want = reference(STEPS[cell], {k.replace("_l1", "_l0"): v for k, v in params.items() if k.endswith("_l1")},
                         dict(num_layers=1), torch.zeros(T, N, H, dtype=torch.float64), (h0[1:], c0[1:]))
    torch.testing.assert_close(out, want[0], **TOL[torch.float64])
    torch.testing.assert_close(h_n[1:], want[1], **TOL[torch.float64])
    torch.testing.assert_close(c_n[1:], want[2], **TOL[torch.float64])


# ================================================================================================
# 2. TorchScript
# ================================================================================================

_LOAD_AND_RUN = textwrap.dedent("""
    import sys, torch
    m = torch.jit.load(sys.argv[1])
    x, h0, c0, lengths = torch.load(sys.argv[2])
    with torch.no_grad():
        out, (h_n, c_n) = m(x, (h0, c0), lengths)
    torch.save((out, h_n, c_n), sys.argv[3])
    assert not any(k.startswith("deploy_lstm") for k in sys.modules), "deploy_lstm was imported"
""")


@pytest.mark.parametrize("cell", VARIANTS)
def test_scripted_equals_eager_and_reloads_clean(cell, tmp_path) -> None:
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, **({} if cell == "cell_gated" else {"proj_size": PROJ}))
    m = make(cell, torch.float32, **kw)
    x, h0, c0 = inputs(m, n=3, t=8, seed=9)
    lengths = torch.tensor([5, 8, 2])
    x = pad(x, lengths, True)
    with torch.no_grad():
        want = m(x, (h0, c0), lengths)
        want = (want[0], *want[1])
        scripted = torch.jit.script(m)
        for _ in range(3):  # the profiling executor optimises after a few runs
            got = scripted(x, (h0, c0), lengths)
            for a, b in zip((got[0], *got[1]), want):
                torch.testing.assert_close(a, b, **TOL[torch.float32])
    path = tmp_path / "m.pt"
    torch.jit.save(scripted, str(path))
    torch.save((x, h0, c0, lengths), tmp_path / "in.pt")
    r = subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, str(path), str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


# ================================================================================================
# 3. ONNX export, both exporters, at shapes other than the export example (batch 3, seq 7)
# ================================================================================================

# (id, cell, kwargs, dtype, expected route: "native" or "loop" (Scan/Loop))
EXPORTS = [
    ("peephole-uni-2l", "peephole", dict(num_layers=2), torch.float32, "native"),
    ("peephole-bi-bf", "peephole", dict(bidirectional=True, batch_first=True), torch.float32, "native"),
    ("peephole-proj-bi", "peephole", dict(bidirectional=True, proj_size=PROJ), torch.float32, "loop"),
    ("peephole-f64-uni", "peephole", {}, torch.float64, "loop"),
    ("layernorm-uni-2l-bf", "layernorm", dict(num_layers=2, batch_first=True), torch.float32, "loop"),
    ("layernorm-bi-proj", "layernorm", dict(bidirectional=True, proj_size=PROJ), torch.float32, "loop"),
    ("cell_gated-uni-2l", "cell_gated", dict(num_layers=2), torch.float32, "loop"),
    ("cell_gated-bi-bf-nobias", "cell_gated", dict(bidirectional=True, batch_first=True, bias=False), torch.float32, "loop"),
]
EXPORTERS = ["dynamo", "torchscript"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("variants-onnx")
    cache: dict = {}

    def get(eid: str, exporter: str):  # type: ignore[no-untyped-def]
        if (eid, exporter) not in cache:
            _, cell, kw, dtype, _ = next(e for e in EXPORTS if e[0] == eid)
            m = make(cell, dtype, seed=2, **kw)
            path = dl.export_onnx(m, root / f"{eid}-{exporter}.onnx", exporter=exporter, lengths=True)
            cache[eid, exporter] = (m, path)
        return cache[eid, exporter]

    return get


def _constant_value(proto: onnx.ModelProto, name: str) -> Optional[np.ndarray]:
    for t in proto.graph.initializer:
        if t.name == name:
            return onnx.numpy_helper.to_array(t)
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return onnx.numpy_helper.to_array(n.attribute[0].t)
    return None


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("eid", [e[0] for e in EXPORTS])
def test_onnx_matches_eager(exported, eid, exporter) -> None:
    m, path = exported(eid, exporter)
    session = dl.OnnxLSTM(path, intra_op_num_threads=1)
    assert session.config is not None and session.config.cell == m.config()["cell"]
    assert read_metadata(path).config.cell == m.config()["cell"]
    dtype = m.weight_ih_l0.dtype
    for n, t, lens in ((2, 5, [5, 2]), (5, 11, [3, 11, 1, 7, 11]), (1, 1, [1])):
        x, h0, c0 = inputs(m, n=n, t=t, seed=n + t)
        lengths = torch.tensor(lens)
        x = pad(x, lengths, m.batch_first)
        with torch.no_grad():
            out, (h_n, c_n) = m(x, (h0, c0), lengths)
        got = session(x.numpy(), h0.numpy(), c0.numpy(), lengths.numpy())
        tol = TOL[dtype] if dtype == torch.float32 else dict(atol=1e-9, rtol=0)
        for name, a, b in zip(("output", "hn", "cn"), got, (out, h_n, c_n)):
            assert np.isfinite(a).all(), f"{name} at batch {n}, seq {t}: not finite"
            torch.testing.assert_close(torch.from_numpy(a), b, **tol, msg=lambda msg, nm=name: f"{nm} at ({n}, {t}): {msg}")


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("eid", [e[0] for e in EXPORTS])
def test_onnx_route(exported, eid, exporter) -> None:
    """peephole float32 without projection: the native ONNX LSTM op with P = weight_ph;
    otherwise (projection, float64, other variants) Scan (dynamo) / Loop (torchscript)."""
    m, path = exported(eid, exporter)
    route = next(e[4] for e in EXPORTS if e[0] == eid)
    proto = onnx.load(str(path))
    ops = graph_ops(proto)
    routes = set(read_metadata(path).routes.values())
    if route == "native":
        assert ops.get("LSTM") == m.num_layers, ops
        assert "Scan" not in ops and "Loop" not in ops, ops
        assert routes == {"native"}
        nodes = [n for n in proto.graph.node if n.op_type == "LSTM"]
        for layer, node in enumerate(nodes):
            assert len(node.input) >= 8 and node.input[7], f"LSTM node {node.name} has no P input: {list(node.input)}"
            P = _constant_value(proto, node.input[7])
            if P is not None:  # a constant: it must be weight_ph, per direction
                sfx = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if m.bidirectional else [])
                want = np.stack([getattr(m, "weight_ph" + s).detach().numpy() for s in sfx])
                np.testing.assert_allclose(P.reshape(want.shape), want, atol=0, rtol=0)
    else:
        loop = "Scan" if exporter == "dynamo" else "Loop"
        assert "LSTM" not in ops, f"a {m.config()['cell']} LSTM must not use the ONNX LSTM op: {ops}"
        assert ops.get(loop, 0) >= 1, ops
        assert routes == {"scan" if exporter == "dynamo" else "loop"}


# ================================================================================================
# 4. Bad input
# ================================================================================================


@pytest.mark.parametrize("ctor", [lambda **k: dl.LSTM(I, H, **k), lambda **k: dl.LSTMCell(I, H, **k)], ids=["LSTM", "LSTMCell"])
@pytest.mark.parametrize("name", ["gru", "Peephole", "", "layer_norm"])
def test_unknown_cell(ctor, name) -> None:
    msg = f"unknown cell '{name}'; expected one of 'lstm', 'peephole', 'layernorm', 'cell_gated'"
    with pytest.raises(ValueError) as e:
        ctor(cell=name)
    assert msg in str(e.value)


@pytest.mark.parametrize("cell", VARIANTS)
def test_fused_refused(cell) -> None:
    with pytest.raises(ValueError) as e:
        dl.LSTM(I, H, cell=cell, fused=True)
    assert "fused" in str(e.value) and cell in str(e.value), str(e.value)
    dl.LSTM(I, H, cell="lstm", fused=True)  # the plain cell still fuses


def test_cell_gated_refuses_projection() -> None:
    with pytest.raises(ValueError) as e:
        dl.LSTM(I, H, proj_size=2, cell="cell_gated")
    assert "proj_size" in str(e.value) and "cell_gated" in str(e.value), str(e.value)
    for cell in ("peephole", "layernorm"):
        dl.LSTM(I, H, proj_size=2, cell=cell)


@pytest.mark.parametrize("src,dst", [(a, b) for a in CELLS for b in CELLS if a != b])
def test_state_dict_of_another_cell_is_refused(src, dst) -> None:
    kw = dict(num_layers=2, bidirectional=True)
    a, b = dl.LSTM(I, H, cell=src, **kw), dl.LSTM(I, H, cell=dst, **kw)
    have, want = set(a.state_dict()), set(b.state_dict())
    with pytest.raises(RuntimeError) as e:
        b.load_state_dict(a.state_dict(), strict=True)
    msg = str(e.value)
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing:
        assert "Missing key(s)" in msg
    if unexpected:
        assert "Unexpected key(s)" in msg
    for k in missing + unexpected:
        assert f'"{k}"' in msg, f"{k} not named in: {msg}"


# ================================================================================================
# 5. Weights by name
# ================================================================================================


@pytest.mark.parametrize("cell,kw", [pytest.param("lstm", c[1], id=f"lstm-{c[0]}") for c in CONFIGS] + MATRIX)
def test_state_dict_names_shapes_order(cell, kw) -> None:
    m = dl.LSTM(I, H, cell=cell, **kw)
    got = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert got == expected_params(cell, **kw)
    assert m.config()["cell"] == cell
    if cell == "layernorm":  # init like nn.LayerNorm
        for k, v in m.state_dict().items():
            if k.startswith("ln_"):
                assert torch.equal(v, torch.ones_like(v) if "_weight" in k else torch.zeros_like(v)), k


@pytest.mark.parametrize("cell,kw", MATRIX)
def test_lstm_from_state_dict(cell, kw) -> None:
    from deploy_lstm.formats.checkpoint import lstm_from_state_dict

    m = make(cell, torch.float64, **kw)
    bf = bool(kw.get("batch_first", False))
    sd = {"encoder.rnn." + k: v for k, v in m.state_dict().items()}
    sd["encoder.head.weight"] = torch.zeros(2, 2)
    rebuilt = lstm_from_state_dict(sd, prefix="encoder.rnn.", batch_first=bf)
    assert isinstance(rebuilt, dl.LSTM)
    assert rebuilt.config() == m.config()
    assert list(rebuilt.state_dict()) == list(m.state_dict())
    x, h0, c0 = inputs(m)
    with torch.no_grad():
        a, b = m(x, (h0, c0)), rebuilt(x, (h0, c0))
    for u, v in zip((a[0], *a[1]), (b[0], *b[1])):
        torch.testing.assert_close(u, v, atol=0, rtol=0)
