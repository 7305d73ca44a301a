"""deploy_lstm.LSTMCell against the oracle torch.nn.LSTMCell."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deploy_lstm import LSTMCell

TOL = {torch.float32: {"atol": 1e-5, "rtol": 0.0}, torch.float64: {"atol": 1e-10, "rtol": 0.0}}


def _run(cell, x, hx, seed=0):
    """Values and grads (input, h0, c0, parameters by name) of a random functional."""
    x = x.detach().clone().requires_grad_(True)
    if hx is not None:
        hx = tuple(t.detach().clone().requires_grad_(True) for t in hx)
    cell.zero_grad(set_to_none=True)
    h1, c1 = cell(x, hx)
    g = torch.Generator().manual_seed(seed)
    loss = (h1 * torch.randn(h1.shape, generator=g, dtype=h1.dtype)).sum() + (
        c1 * torch.randn(c1.shape, generator=g, dtype=c1.dtype)
    ).sum()
    loss.backward()
    grads = {"input": x.grad}
    if hx is not None:
        grads.update(h0=hx[0].grad, c0=hx[1].grad)
    grads.update({k: p.grad for k, p in cell.named_parameters()})
    return (h1.detach(), c1.detach()), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("use_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("sizes,bias", [((3, 4), True), ((3, 4), False), ((1, 1), True), ((5, 2), False)])
def test_cell_parity(sizes, bias, batched, use_hx, dtype):
    i, h = sizes
    torch.manual_seed(0)
    ref = nn.LSTMCell(i, h, bias=bias, dtype=dtype)
    ours = LSTMCell.from_torch(ref)
    batch = (3,) if batched else ()
    x = torch.randn(*batch, i, dtype=dtype)
    hx = (torch.randn(*batch, h, dtype=dtype), torch.randn(*batch, h, dtype=dtype)) if use_hx else None
    got_v, got_g = _run(ours, x, hx)
    want_v, want_g = _run(ref, x, hx)
    torch.testing.assert_close(got_v, want_v, **TOL[dtype])
    assert sorted(got_g) == sorted(want_g)
    for k in want_g:
        torch.testing.assert_close(got_g[k], want_g[k], **TOL[dtype], msg=lambda m, k=k: f"grad {k}: {m}")


@pytest.mark.parametrize("bias", [True, False])
def test_cell_names_shapes_init(bias):
    torch.manual_seed(5)
    ref = nn.LSTMCell(3, 4, bias=bias)
    torch.manual_seed(5)
    ours = LSTMCell(3, 4, bias=bias)
    assert [(k, v.shape) for k, v in ours.named_parameters()] == [
        (k, v.shape) for k, v in ref.named_parameters()
    ]
    torch.testing.assert_close(dict(ours.named_parameters()), dict(ref.named_parameters()), atol=0, rtol=0)
    assert (ours.bias_ih is None) == (not bias)
    assert repr(ours).split("(", 1)[1] == repr(ref).split("(", 1)[1]
    # state dicts load strictly both ways
    ours.load_state_dict(nn.LSTMCell(3, 4, bias=bias).state_dict(), strict=True)
    ref.load_state_dict(LSTMCell(3, 4, bias=bias).state_dict(), strict=True)


def test_cell_round_trip_keeps_dtype_and_flag():
    ref = nn.LSTMCell(2, 3, dtype=torch.float64).eval()
    ours = LSTMCell.from_torch(ref)
    assert ours.weight_ih.dtype == torch.float64 and not ours.training
    back = ours.to_torch()
    assert type(back) is nn.LSTMCell and not back.training
    torch.testing.assert_close(back.state_dict(), ref.state_dict(), atol=0, rtol=0)
    with pytest.raises(TypeError, match="expected a torch.nn.LSTMCell, got LSTM"):
        LSTMCell.from_torch(nn.LSTM(2, 3))


def test_cell_unrolled_equals_lstm_layer():
    """Stepping the cell over time equals a one-layer nn.LSTM with the same weights."""
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4)
    cell = LSTMCell(3, 4)
    cell.load_state_dict({k[:-3]: v for k, v in ref.state_dict().items()})
    x = torch.randn(6, 2, 3)
    hc = None
    outs = []
    for t in range(6):
        hc = cell(x[t], hc)
        outs.append(hc[0])
    want, (h_n, c_n) = ref(x)
    torch.testing.assert_close(torch.stack(outs), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(hc[1], c_n[0], atol=1e-5, rtol=0)
