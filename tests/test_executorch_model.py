"""A whole model on the device: the demo forecaster (deploy_lstm.LSTM + a linear head), its
one-step ``forward(x, h0, c0) -> (y, hn, cn)`` exported to model.pte with every matmul on XNNPACK,
streamed step by step in Python (executorch's runtime) and by the C++ pte_run (no libtorch),
equal to the eager model over the whole history.  One lowering per session (~20 s on 2 cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import torch
from torch import nn

from deploy_lstm import LSTM
from deploy_lstm.demo.forecaster import Forecaster, load_demo
from deploy_lstm.errors import ExportError
from deploy_lstm.exporters.executorch import delegatable_copy, export_executorch, model_program, undelegated_ops
from test_executorch import MATMULS, _run, pte_tools  # noqa: F401  (pte_tools: the C++ build fixture)

pytestmark = pytest.mark.slow

BATCH = 2


@pytest.fixture(scope="session")
def forecaster_pte(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Forecaster]:
    """(model.pte of the trained forecaster's one step at batch 2, the eager forecaster)."""
    model = load_demo()
    h = torch.zeros(model.num_layers, BATCH, model.hidden_size)
    path = tmp_path_factory.mktemp("forecaster_pte") / "model.pte"
    export_executorch(model, path, example_inputs=(torch.zeros(BATCH, 1, 1), h, h))  # h given twice: two inputs still
    return path, model


def _history(model: Forecaster, T: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random (x (N, T, 1), h0, c0), the state non-zero."""
    g = torch.Generator().manual_seed(seed)
    shape = (model.num_layers, BATCH, model.hidden_size)
    return torch.randn(BATCH, T, 1, generator=g), torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


def test_every_matmul_of_the_whole_model_is_delegated() -> None:
    model = Forecaster(hidden_size=8, num_layers=2).eval()
    h = torch.zeros(2, 1, 8)
    left = undelegated_ops(model_program(model, (torch.zeros(1, 3, 1), h, h)))
    assert left.keys() == {"forward"}
    assert not [op for op in left["forward"] if any(m in op for m in MATMULS)], left


def test_stand_in_copy_leaves_the_model_alone_and_computes_the_same() -> None:
    model = load_demo()
    copy = delegatable_copy(model)
    assert isinstance(copy.lstm, LSTM) and "layer_stack" in copy.lstm._modules
    assert "layer_stack" not in model.lstm._modules
    x, h0, c0 = _history(model, 9, seed=1)
    with torch.no_grad():
        for got, want in zip(copy(x, h0, c0), model(x, h0, c0)):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("T", [1, 24])
def test_python_runtime_streams_the_model_equal_to_eager(forecaster_pte, T: int) -> None:  # type: ignore[no-untyped-def]
    from executorch.runtime import Runtime

    path, model = forecaster_pte
    method = Runtime.get().load_program(str(path)).load_method("forward")
    x, h, c = _history(model, T, seed=T)
    with torch.no_grad():
        want_y, want_h, want_c = model(x, h, c)
    ys = []
    for t in range(T):
        y, h, c = (o.clone() for o in method.execute([x[:, t : t + 1].contiguous(), h, c]))
        ys.append(y)
    for got, want in ((torch.cat(ys, 1), want_y), (h, want_h), (c, want_c)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_pte_run_streams_the_model_equal_to_eager(forecaster_pte, pte_tools: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, model = forecaster_pte
    x, h0, c0 = _history(model, 30, seed=3)
    for name, a in (("x", x), ("h0", h0), ("c0", c0)):
        np.save(tmp_path / f"{name}.npy", a.numpy())
    proc = _run(pte_tools / "pte_run", path, tmp_path / "x.npy", "--batch-first", "--h0", tmp_path / "h0.npy", "--c0", tmp_path / "c0.npy", "--out", tmp_path / "r_")
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        want = dict(zip(("output", "hn", "cn"), model(x, h0, c0)))
    assert np.load(tmp_path / "r_output.npy").shape == (BATCH, 30, 1)  # the head's features, not the LSTM's
    for name, w in want.items():
        np.testing.assert_allclose(np.load(tmp_path / f"r_{name}.npy"), w.numpy(), atol=1e-5, rtol=0)


class _Bidirectional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = LSTM(2, 4, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class _Torch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


@pytest.mark.parametrize(
    "model, args, reason",
    [
        (_Bidirectional(), (torch.zeros(3, 1, 2),), "bidirectional"),
        (_Torch(), (torch.zeros(3, 1, 2),), "swap_lstms"),
        (Forecaster(8, 1), None, "needs example_inputs"),
    ],
)
def test_refusals_say_why(model: nn.Module, args, reason: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match=reason):
        export_executorch(model, tmp_path / "m.pte", example_inputs=args)
    assert not (tmp_path / "m.pte").exists()
