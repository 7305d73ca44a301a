"""fused=True: aten::lstm (nn.LSTM's kernel) behind the same module, eager and scripted.

Validated against nn.LSTM (values and gradients) and against the static loop.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from deploy_lstm import LSTM

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")

# (input_size, hidden_size, num_layers, bidirectional, proj_size, bias, batch_first)
CONFIGS = [
    (3, 4, 1, False, 0, True, False),
    (3, 4, 2, True, 0, True, True),
    (3, 5, 3, True, 2, False, False),
    (1, 2, 2, True, 1, True, True),
]
T, N = 6, 4
LENGTHS = torch.tensor([3, 6, 1, 4])


def make(cfg, dtype):
    i, h, n, bi, p, b, bf = cfg
    torch.manual_seed(0)
    ref = nn.LSTM(i, h, n, bias=b, batch_first=bf, bidirectional=bi, proj_size=p, dtype=dtype)
    fused = LSTM(i, h, n, bias=b, batch_first=bf, bidirectional=bi, proj_size=p, dtype=dtype, fused=True)
    fused.load_state_dict(ref.state_dict())
    loop = LSTM.from_torch(ref)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((N, T, i) if bf else (T, N, i), generator=g, dtype=dtype)
    hx = (torch.randn(n * (2 if bi else 1), N, p or h, generator=g, dtype=dtype),
          torch.randn(n * (2 if bi else 1), N, h, generator=g, dtype=dtype))
    return fused, loop, ref, x, hx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("use_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_fused_matches_nn_lstm_values_and_grads(cfg, use_hx, use_lengths, dtype, assert_lstm_parity):
    fused, _, ref, x, hx = make(cfg, dtype)
    assert_lstm_parity(fused, ref, x, hx if use_hx else None, LENGTHS if use_lengths else None)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fused_matches_the_static_loop_scripted(cfg, tol):
    fused, loop, _, x, hx = make(cfg, torch.float32)
    scripted_fused, scripted_loop = torch.jit.script(fused), torch.jit.script(loop)
    for lengths in (None, LENGTHS):
        a = scripted_fused(x, hx, lengths)
        b = scripted_loop(x, hx, lengths)
        c = fused(x, hx, lengths)
        for u, v, w in zip((a[0], *a[1]), (b[0], *b[1]), (c[0], *c[1])):
            torch.testing.assert_close(u, v, **tol(torch.float32))
            torch.testing.assert_close(u, w, atol=0, rtol=0)


def test_fused_unbatched_packed_and_dropout():
    fused, _, ref, _, _ = make(CONFIGS[1], torch.float32)
    x = torch.randn(5, 3)
    torch.testing.assert_close(fused(x)[0], ref(x)[0], atol=1e-6, rtol=0)
    packed = pack_padded_sequence(torch.randn(4, 6, 3), LENGTHS, batch_first=True, enforce_sorted=False)
    torch.testing.assert_close(fused(packed)[0].data, ref(packed)[0].data, atol=1e-6, rtol=0)
    # dropout=1.0 in training: every layer after the first sees zeros, as in nn.LSTM
    d_fused = LSTM(3, 4, 2, dropout=1.0, fused=True).train()
    d_ref = nn.LSTM(3, 4, 2, dropout=1.0).train()
    d_ref.load_state_dict(d_fused.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(d_fused(x)[0], d_ref(x)[0], atol=1e-6, rtol=0)


def test_fused_checks_inputs_like_the_loop():
    fused = LSTM(3, 4, fused=True)
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.5"):
        fused(torch.randn(5, 2, 3), lengths=torch.tensor([5, 0]))
    with pytest.raises(ValueError, match=r"input.size\(-1\) must be equal to input_size"):
        fused(torch.randn(5, 2, 4))


def _ops_run(module: torch.nn.Module, x: torch.Tensor) -> set:
    with torch.no_grad(), torch.profiler.profile() as prof:
        module(x)
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("fused,cell,kernel", [
    (None, "lstm", True),  # the default: scripting gives nn.LSTM's kernel
    (True, "lstm", True),
    (False, "lstm", False),  # the loop stays selectable
    (None, "peephole", False),  # a variant has no aten kernel
])
def test_what_a_scripted_module_runs(fused, cell, kernel) -> None:
    torch.manual_seed(0)
    model = LSTM(3, 5, num_layers=2, fused=fused, cell=cell).eval()
    x = torch.randn(6, 2, 3)
    assert "aten::lstm" not in _ops_run(model, x) or fused is True  # eager: the loop unless fused=True
    scripted = torch.jit.script(model)
    assert ("aten::lstm" in _ops_run(scripted, x)) == kernel
    torch.testing.assert_close(scripted(x), model(x), atol=1e-6, rtol=0)
