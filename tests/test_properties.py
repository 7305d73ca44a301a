"""Hypothesis: random configs, shapes, states and lengths against nn.LSTM."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deploy_lstm import LSTM, LSTMCell

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)


@st.composite
def lstm_cases(draw):
    hidden = draw(st.integers(1, 5))
    cfg = dict(
        input_size=draw(st.integers(1, 4)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)),
    )
    T = draw(st.integers(1, 6))
    N = draw(st.integers(1, 4))
    lengths = draw(st.none() | st.lists(st.integers(1, T), min_size=N, max_size=N))
    return dict(
        cfg=cfg,
        T=T,
        N=N,
        lengths=None if lengths is None else torch.tensor(lengths, dtype=torch.int64),
        use_hx=draw(st.booleans()),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None)
@given(case=lstm_cases())
def test_lstm_matches_nn_lstm(case, assert_lstm_parity):
    cfg, T, N, dtype = case["cfg"], case["T"], case["N"], case["dtype"]
    torch.manual_seed(case["seed"])
    ref = nn.LSTM(**cfg, dtype=dtype)
    ours = LSTM.from_torch(ref)
    L = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    shape = (N, T, cfg["input_size"]) if cfg["batch_first"] else (T, N, cfg["input_size"])
    x = torch.randn(shape, dtype=dtype)
    hx = None
    if case["use_hx"]:
        hx = (
            torch.randn(L, N, cfg["proj_size"] or cfg["hidden_size"], dtype=dtype),
            torch.randn(L, N, cfg["hidden_size"], dtype=dtype),
        )
    assert_lstm_parity(ours, ref, x, hx, case["lengths"])


@settings(max_examples=30, deadline=None)
@given(
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 5),
    batch=st.none() | st.integers(1, 4),
    bias=st.booleans(),
    use_hx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cell_matches_nn_lstm_cell(input_size, hidden_size, batch, bias, use_hx, seed):
    torch.manual_seed(seed)
    ref = nn.LSTMCell(input_size, hidden_size, bias=bias, dtype=torch.float64)
    ours = LSTMCell.from_torch(ref)
    lead = () if batch is None else (batch,)
    x = torch.randn(*lead, input_size, dtype=torch.float64)
    hx = None
    if use_hx:
        hx = tuple(torch.randn(*lead, hidden_size, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(ours(x, hx), ref(x, hx), atol=1e-10, rtol=0)
