"""TorchScript: script, trace, save/load in a process where deploy_lstm is not importable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Optional, Tuple

import pytest
import torch
from torch import Tensor, nn

import deploy_lstm
from deploy_lstm import LSTM, LSTMCell

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)

EXACT = {"atol": 1e-6, "rtol": 0.0}

# (input_size, hidden_size, num_layers, bidirectional, proj_size, bias, batch_first)
CONFIGS = [
    (3, 4, 1, False, 0, True, False),
    (3, 4, 2, True, 0, True, True),
    (3, 5, 3, True, 2, False, False),
    (1, 2, 2, False, 1, True, True),
]
IDS = ["L1-uni", "L2-bi-bf", "L3-bi-proj-nobias", "L2-proj-bf-I1"]


def _pair(cfg, seed=0):
    i, h, n, bi, p, b, bf = cfg
    torch.manual_seed(seed)
    ref = nn.LSTM(i, h, n, bias=b, batch_first=bf, bidirectional=bi, proj_size=p)
    return LSTM.from_torch(ref), ref


def _inputs(cfg, T, N, seed=1):
    i, h, n, bi, p, b, bf = cfg
    g = torch.Generator().manual_seed(seed)
    L = n * (2 if bi else 1)
    x = torch.randn((N, T, i) if bf else (T, N, i), generator=g)
    hx = (torch.randn(L, N, p or h, generator=g), torch.randn(L, N, h, generator=g))
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = T
    return x, hx, lengths


class Tagger(nn.Module):
    """A user model: embedding -> LSTM (lengths) -> linear, and an LSTMCell head state."""

    def __init__(self, lstm: nn.Module, cell: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 3)
        self.lstm = lstm
        self.cell = cell
        self.head = nn.Linear(4, 5)

    def forward(self, tokens: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        x = self.embed(tokens)  # (N, T, 3)
        if lengths is None:
            out, (h_n, c_n) = self.lstm(x)
        else:
            out, (h_n, c_n) = self.lstm(x, None, lengths)
        h1, _ = self.cell(h_n[-1], None)  # (N, 4)
        return self.head(out), h1


def _tagger() -> Tagger:
    torch.manual_seed(0)
    return Tagger(LSTM(3, 2, 2, batch_first=True, bidirectional=True), LSTMCell(2, 4)).eval()


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_scripted_equals_eager(cfg):
    ours, _ = _pair(cfg)
    scripted = torch.jit.script(ours)
    for T, N in [(5, 3), (1, 1), (9, 2)]:
        x, hx, lengths = _inputs(cfg, T, N)
        for args in [(x,), (x, hx), (x, None, lengths), (x, hx, lengths)]:
            torch.testing.assert_close(scripted(*args), ours(*args), **EXACT)
    # unbatched
    x, (h0, c0), _ = _inputs(cfg, 4, 1)
    x = x[0] if cfg[-1] else x[:, 0]
    torch.testing.assert_close(scripted(x), ours(x), **EXACT)
    torch.testing.assert_close(scripted(x, (h0[:, 0], c0[:, 0])), ours(x, (h0[:, 0], c0[:, 0])), **EXACT)
    torch.testing.assert_close(
        scripted(x, None, torch.tensor([2])), ours(x, None, torch.tensor([2])), **EXACT
    )


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_scripted_gradients_match_nn_lstm(cfg, assert_lstm_parity):
    ours, ref = _pair(cfg)
    scripted = torch.jit.script(ours)
    x, hx, lengths = _inputs(cfg, 5, 3)
    assert_lstm_parity(scripted, ref, x, hx, lengths)
    assert_lstm_parity(scripted, ref, x)


def test_scripted_sees_new_weights_after_load_state_dict():
    ours, _ = _pair(CONFIGS[1])
    scripted = torch.jit.script(ours)
    torch.manual_seed(9)
    other = nn.LSTM(3, 4, 2, batch_first=True, bidirectional=True)
    scripted.load_state_dict(other.state_dict())
    x, hx, _ = _inputs(CONFIGS[1], 5, 3)
    torch.testing.assert_close(scripted(x, hx), other(x, hx), atol=1e-5, rtol=0)


def test_scripted_dropout_train_and_eval():
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, 3, dropout=1.0)
    scripted = torch.jit.script(LSTM.from_torch(ref))
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(scripted(x), ref(x), atol=1e-5, rtol=0)  # train: deterministic
    scripted.eval()
    ref.eval()
    torch.testing.assert_close(scripted(x), ref(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_scripted_cell(bias):
    torch.manual_seed(0)
    ref = nn.LSTMCell(3, 4, bias=bias)
    ours = LSTMCell.from_torch(ref)
    scripted = torch.jit.script(ours)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(scripted(x), ours(x), **EXACT)
    torch.testing.assert_close(scripted(x, (h, c)), ours(x, (h, c)), **EXACT)
    torch.testing.assert_close(scripted(x[0], (h[0], c[0])), ours(x[0], (h[0], c[0])), **EXACT)
    torch.testing.assert_close(scripted(x, (h, c)), ref(x, (h, c)), atol=1e-5, rtol=0)


def test_scripted_user_model():
    model = _tagger()
    scripted = torch.jit.script(model)
    tokens = torch.randint(0, 11, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    torch.testing.assert_close(scripted(tokens), model(tokens), **EXACT)
    torch.testing.assert_close(scripted(tokens, lengths), model(tokens, lengths), **EXACT)
    # and equals the same model built from torch.nn modules
    ref = Tagger(model.lstm.to_torch(), model.cell.to_torch()).eval()
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(scripted(tokens), ref(tokens), atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("error::torch.jit.TracerWarning")
def test_trace_at_traced_shape():
    """Tracing with hx and lengths is warning-free and correct at the traced shape."""
    ours, ref = _pair(CONFIGS[2])
    x, hx, lengths = _inputs(CONFIGS[2], 5, 3)
    traced = torch.jit.trace(ours, (x, hx))
    torch.testing.assert_close(traced(x, hx), ours(x, hx), **EXACT)
    x2, hx2, _ = _inputs(CONFIGS[2], 5, 3, seed=7)
    torch.testing.assert_close(traced(x2, hx2), ref(x2, hx2), atol=1e-5, rtol=0)
    traced_l = torch.jit.trace(ours, (x, hx, lengths))
    other = torch.tensor([1, 5, 2])  # lengths are data in the trace, not constants
    torch.testing.assert_close(traced_l(x2, hx2, other), ours(x2, hx2, other), **EXACT)


# -- save in this process, load in a clean one ---------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    site_dirs, artifacts = sys.argv[1].split(":"), sys.argv[2]
    sys.path.extend(site_dirs)  # torch, but no .pth files: no editable deploy_lstm finder
    try:
        import deploy_lstm
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("deploy_lstm is importable in the child: " + deploy_lstm.__file__)
    import torch
    inputs = torch.load(artifacts + "/inputs.pt")
    out = {}
    lstm = torch.jit.load(artifacts + "/lstm.pt")
    out["lstm_full"] = lstm(inputs["x"], inputs["hx"])
    out["lstm_lengths"] = lstm(inputs["x"], inputs["hx"], inputs["lengths"])
    out["lstm_unbatched"] = lstm(inputs["x1"])
    out["cell"] = torch.jit.load(artifacts + "/cell.pt")(inputs["cx"], None)
    tagger = torch.jit.load(artifacts + "/tagger.pt")
    out["tagger"] = tagger(inputs["tokens"], inputs["tok_lengths"])
    try:
        lstm(inputs["x"], inputs["hx"], inputs["lengths"] * 0)
    except torch.jit.Error as e:
        out["error"] = str(e)
    torch.save(out, artifacts + "/outputs.pt")
    """
)


@pytest.mark.slow
def test_save_load_in_clean_process(tmp_path):
    cfg = CONFIGS[2]
    lstm, _ = _pair(cfg)
    cell = LSTMCell(2, 3)
    tagger = _tagger()
    torch.jit.save(torch.jit.script(lstm), str(tmp_path / "lstm.pt"))
    torch.jit.save(torch.jit.script(cell), str(tmp_path / "cell.pt"))
    torch.jit.save(torch.jit.script(tagger), str(tmp_path / "tagger.pt"))
    # Shapes used nowhere else: T=11, N=7.
    x, hx, lengths = _inputs(cfg, 11, 7, seed=3)
    inputs = {
        "x": x,
        "hx": hx,
        "lengths": lengths,
        "x1": x[:, 0],
        "cx": torch.randn(5, 2),
        "tokens": torch.randint(0, 11, (4, 13)),
        "tok_lengths": torch.tensor([13, 1, 7, 12]),
    }
    torch.save(inputs, tmp_path / "inputs.pt")
    site_dirs = os.path.dirname(os.path.dirname(torch.__file__))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(deploy_lstm.__file__)))
    assert repo not in site_dirs.split(":")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, site_dirs, str(tmp_path)],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = torch.load(tmp_path / "outputs.pt")
    torch.testing.assert_close(out["lstm_full"], lstm(x, hx), **EXACT)
    torch.testing.assert_close(out["lstm_lengths"], lstm(x, hx, lengths), **EXACT)
    torch.testing.assert_close(out["lstm_unbatched"], lstm(x[:, 0]), **EXACT)
    torch.testing.assert_close(out["cell"], cell(inputs["cx"]), **EXACT)
    torch.testing.assert_close(
        out["tagger"], tagger(inputs["tokens"], inputs["tok_lengths"]), **EXACT
    )
    assert "lengths must lie in 1..11" in out["error"]
