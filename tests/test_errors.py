"""Every error path, eager and scripted, and constructor errors identical to torch.nn."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from deploy_lstm import LSTM, LSTMCell, LSTMInputError

T, N = 5, 2
# LSTM(3, 4, num_layers=2, bidirectional=True): states are (4, N, 4).
x = torch.randn(T, N, 3)
h0 = torch.zeros(4, N, 4)
c0 = torch.zeros(4, N, 4)
full = torch.full((N,), T, dtype=torch.int64)

# (id, args to forward, exact text the message must contain)
LSTM_CASES = [
    ("features", (torch.randn(T, N, 2),), "input.size(-1) must be equal to input_size. Expected 3, got 2"),
    ("rank1", (torch.randn(3),), "LSTM: Expected input to be 2D or 3D, got 1D instead"),
    ("rank4", (torch.randn(1, T, N, 3),), "LSTM: Expected input to be 2D or 3D, got 4D instead"),
    ("input-dtype", (x.double(),), "RNN input dtype (torch.float64) does not match weight dtype (torch.float32)"),
    ("input-int", (x.long(),), "RNN input dtype (torch.int64) does not match weight dtype (torch.float32)"),
    ("empty-batch", (torch.randn(T, 0, 3),), "expected a batch of at least one sequence, got an empty batch"),
    ("zero-length", (torch.randn(0, N, 3),), "Expected sequence length to be larger than 0 in RNN (input of shape [0, 2, 3])"),
    ("h0-batch-1", (x, (torch.zeros(4, 1, 4), c0)), "Expected hidden[0] size (4, 2, 4), got [4, 1, 4]"),
    ("h0-layers", (x, (torch.zeros(2, N, 4), c0)), "Expected hidden[0] size (4, 2, 4), got [2, 2, 4]"),
    ("c0-size", (x, (h0, torch.zeros(4, N, 5))), "Expected hidden[1] size (4, 2, 4), got [4, 2, 5]"),
    ("c0-batch-1", (x, (h0, torch.zeros(4, 1, 4))), "Expected hidden[1] size (4, 2, 4), got [4, 1, 4]"),
    ("h0-rank", (x, (torch.zeros(4, 4), c0)), "For batched 3-D input, hx and cx should also be 3-D but got (2-D, 3-D) tensors"),
    ("c0-rank", (x, (h0, torch.zeros(1, 4, N, 4))), "For batched 3-D input, hx and cx should also be 3-D but got (3-D, 4-D) tensors"),
    ("unbatched-hx-rank", (x[:, 0], (h0, c0)), "For unbatched 2-D input, hx and cx should also be 2-D but got (3-D, 3-D) tensors"),
    ("unbatched-hx-size", (x[:, 0], (h0[:, 0, :3], c0[:, 0])), "Expected hidden[0] size (4, 1, 4), got [4, 1, 3]"),
    ("h0-dtype", (x, (h0.double(), c0)), "Expected hidden[0] of dtype torch.float32 (the input's), got torch.float64"),
    ("c0-dtype", (x, (h0, c0.half())), "Expected hidden[1] of dtype torch.float32 (the input's), got torch.float16"),
    ("lengths-int32", (x, None, full.int()), "lengths must be an int64 tensor, got torch.int32"),
    ("lengths-float", (x, None, full.float()), "lengths must be an int64 tensor, got torch.float32"),
    ("lengths-shape", (x, None, torch.tensor([5, 5, 5])), "lengths must have shape (2,), one length per sequence, got shape [3]"),
    ("lengths-2d", (x, None, full.view(1, N)), "lengths must have shape (2,), one length per sequence, got shape [1, 2]"),
    ("lengths-0d", (x, None, torch.tensor(5)), "lengths must have shape (2,), one length per sequence, got shape []"),
    ("lengths-zero", (x, None, torch.tensor([0, 5])), "lengths must lie in 1..5 (the sequence length), got values from 0 to 5"),
    ("lengths-too-long", (x, None, torch.tensor([6, 1])), "lengths must lie in 1..5 (the sequence length), got values from 1 to 6"),
    ("lengths-negative", (x, None, torch.tensor([-1, 3])), "lengths must lie in 1..5 (the sequence length), got values from -1 to 3"),
    ("unbatched-lengths", (x[:, 0], None, torch.tensor([5, 5])), "lengths must have shape (1,), one length per sequence, got shape [2]"),
]


@pytest.fixture(scope="module")
def lstm() -> LSTM:
    torch.manual_seed(0)
    return LSTM(3, 4, 2, bidirectional=True)


@pytest.fixture(scope="module")
def scripted_lstm(lstm):
    return torch.jit.script(lstm)


@pytest.mark.parametrize("args,text", [c[1:] for c in LSTM_CASES], ids=[c[0] for c in LSTM_CASES])
def test_lstm_errors_eager(lstm, args, text):
    with pytest.raises(LSTMInputError, match=re.escape(text)) as info:
        lstm(*args)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("args,text", [c[1:] for c in LSTM_CASES], ids=[c[0] for c in LSTM_CASES])
def test_lstm_errors_scripted(scripted_lstm, args, text):
    with pytest.raises(torch.jit.Error, match=re.escape(text)):
        scripted_lstm(*args)


# Checks nn.LSTM makes too: the same exception family and the same text.
SHARED_WITH_NN = ["features", "rank1", "rank4", "h0-batch-1", "c0-size", "h0-rank", "unbatched-hx-rank"]


@pytest.mark.parametrize("case", [c for c in LSTM_CASES if c[0] in SHARED_WITH_NN], ids=SHARED_WITH_NN)
def test_lstm_errors_match_nn_lstm(lstm, case):
    _, args, text = case
    ref = nn.LSTM(3, 4, 2, bidirectional=True)
    with pytest.raises((RuntimeError, ValueError), match=re.escape(text)):
        ref(*args)
    with pytest.raises((RuntimeError, ValueError), match=re.escape(text)):
        lstm(*args)


def test_lstm_error_batch_first_names_the_real_shape():
    m = LSTM(3, 4, batch_first=True)
    with pytest.raises(LSTMInputError, match=re.escape("Expected 3, got 2 (input of shape [2, 5, 2])")):
        m(torch.randn(2, 5, 2))
    with pytest.raises(LSTMInputError, match=re.escape("Expected hidden[0] size (1, 2, 4), got [1, 5, 4]")):
        # (L, N, H) even with batch_first, as in nn.LSTM: a (L, T, H) state is wrong
        m(torch.randn(2, 5, 3), (torch.zeros(1, 5, 4), torch.zeros(1, 2, 4)))


def test_lstm_proj_state_sizes():
    m = LSTM(3, 4, proj_size=2)
    ok = m(x, (torch.zeros(1, N, 2), torch.zeros(1, N, 4)))
    assert ok[1][0].shape == (1, N, 2)
    with pytest.raises(LSTMInputError, match=re.escape("Expected hidden[0] size (1, 2, 2), got [1, 2, 4]")):
        m(x, (torch.zeros(1, N, 4), torch.zeros(1, N, 4)))
    with pytest.raises(LSTMInputError, match=re.escape("Expected hidden[1] size (1, 2, 4), got [1, 2, 2]")):
        m(x, (torch.zeros(1, N, 2), torch.zeros(1, N, 2)))


def test_packed_sequence_with_lengths_is_rejected(lstm):
    packed = pack_padded_sequence(x, torch.tensor([5, 3]))
    with pytest.raises(LSTMInputError, match="lengths cannot be given with a PackedSequence"):
        lstm(packed, None, torch.tensor([5, 3]))


# -- LSTMCell ---------------------------------------------------------------------------

cx = torch.randn(3, 3)
ch = torch.zeros(3, 4)
CELL_CASES = [
    ("rank3", (torch.randn(1, 3, 3),), "LSTMCell: Expected input to be 1D or 2D, got 3D instead"),
    ("rank0", (torch.tensor(1.0),), "LSTMCell: Expected input to be 1D or 2D, got 0D instead"),
    ("features", (torch.randn(3, 2),), "input has inconsistent input_size: got 2 expected 3 (input of shape [3, 2])"),
    ("dtype", (cx.double(),), "LSTMCell: input dtype (torch.float64) does not match weight dtype (torch.float32)"),
    ("empty-batch", (torch.randn(0, 3),), "LSTMCell: expected a batch of at least one, got 0"),
    ("h-batch-1", (cx, (torch.zeros(1, 4), ch)), "Input batch size 3 doesn't match hidden0 batch size 1"),
    ("c-size", (cx, (ch, torch.zeros(3, 5))), "hidden1 has inconsistent hidden_size: got 5, expected 4"),
    ("h-rank", (cx, (torch.zeros(4), ch)), "LSTMCell: Expected hx[0] to be 2D like the input, got 1D instead"),
    ("unbatched-h-rank", (cx[0], (ch, ch)), "LSTMCell: Expected hx[0] to be 1D like the input, got 2D instead"),
    ("unbatched-h-size", (cx[0], (torch.zeros(5), torch.zeros(4))), "hidden0 has inconsistent hidden_size: got 5, expected 4"),
    ("h-dtype", (cx, (ch.double(), ch)), "LSTMCell: Expected hx[0] of dtype torch.float32, got torch.float64"),
]


@pytest.fixture(scope="module")
def cell() -> LSTMCell:
    torch.manual_seed(0)
    return LSTMCell(3, 4)


@pytest.mark.parametrize("args,text", [c[1:] for c in CELL_CASES], ids=[c[0] for c in CELL_CASES])
def test_cell_errors_eager(cell, args, text):
    with pytest.raises(LSTMInputError, match=re.escape(text)):
        cell(*args)


@pytest.mark.parametrize("args,text", [c[1:] for c in CELL_CASES], ids=[c[0] for c in CELL_CASES])
def test_cell_errors_scripted(cell, args, text):
    with pytest.raises(torch.jit.Error, match=re.escape(text)):
        torch.jit.script(cell)(*args)


# -- constructor arguments: identical to torch.nn ------------------------------------

BAD_LSTM_ARGS = [
    dict(dropout=1.5),
    dict(dropout=-0.1),
    dict(dropout=True),
    dict(dropout="0.5"),
    dict(dropout="a"),
    dict(dropout=None),
    dict(proj_size=4),
    dict(proj_size=5),
    dict(proj_size=-1),
    dict(proj_size=1.5),
    dict(proj_size="1"),
    dict(input_size=0),
    dict(input_size=-2),
    dict(input_size=3.0),
    dict(input_size="3"),
    dict(hidden_size=0),
    dict(hidden_size=4.0),
    dict(hidden_size=None),
    dict(num_layers=0),
    dict(num_layers=-1),
    dict(num_layers=1.5),
    dict(num_layers="2"),
    dict(bias=1),
    dict(bias=None),
    dict(batch_first=0),
    dict(batch_first="yes"),
]


def _outcome(cls, kwargs):
    kw = dict(input_size=3, hidden_size=4, num_layers=2)
    kw.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cls(**kw)
        except Exception as e:  # noqa: BLE001 - the type is what is compared
            return type(e), str(e)
    return None, None


@pytest.mark.parametrize("kwargs", BAD_LSTM_ARGS, ids=[repr(k) for k in BAD_LSTM_ARGS])
def test_constructor_errors_match_nn_lstm(kwargs):
    want = _outcome(nn.LSTM, kwargs)
    assert want[0] is not None, "the oracle accepted these arguments; the case is useless"
    assert _outcome(LSTM, kwargs) == want


BAD_CELL_ARGS = [dict(hidden_size=-1), dict(input_size=-1), dict(input_size=2.5), dict(hidden_size="4")]


@pytest.mark.parametrize("kwargs", BAD_CELL_ARGS, ids=[repr(k) for k in BAD_CELL_ARGS])
def test_cell_constructor_errors_match_nn(kwargs):
    def outcome(cls):
        kw = dict(input_size=3, hidden_size=4)
        kw.update(kwargs)
        try:
            cls(**kw)
        except Exception as e:  # noqa: BLE001
            return type(e), str(e)
        return None, None

    want = outcome(nn.LSTMCell)
    assert want[0] is not None
    assert outcome(LSTMCell) == want
