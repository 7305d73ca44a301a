"""AOTInductor package of a bare LSTM: dynamic sequence and batch, checked against nn.LSTM.

One small config is compiled once per session (about 30 s on 2 cores) and run at
shapes other than the export example (T=7, N=3).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deploy_lstm import LSTM
from deploy_lstm.aoti import export_aoti
from deploy_lstm.errors import ExportError

pytestmark = pytest.mark.slow

INPUT_SIZE, HIDDEN_SIZE = 5, 6


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(deploy_lstm.LSTM, nn.LSTM with the same weights, loaded package)."""
    torch.manual_seed(0)
    model = LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    ref = torch.nn.LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    ref.load_state_dict(model.state_dict())
    path = export_aoti(model, tmp_path_factory.mktemp("aoti") / "model.pt2")
    return model, ref, torch._inductor.aoti_load_package(str(path))


@pytest.mark.parametrize("T, N", [(1, 1), (11, 4), (2, 9)])
def test_matches_nn_lstm(compiled, T: int, N: int) -> None:  # type: ignore[no-untyped-def]
    _, ref, runner = compiled
    g = torch.Generator().manual_seed(T * 100 + N)
    x = torch.randn(T, N, INPUT_SIZE, generator=g)  # (T, N, F)
    h0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)  # (D, N, H)
    c0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    output, hn, cn = runner(x, h0, c0)
    with torch.no_grad():
        expected, (ehn, ecn) = ref(x, (h0, c0))
    assert output.shape == (T, N, 2 * HIDDEN_SIZE)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(hn, ehn, atol=1e-5, rtol=0)
    torch.testing.assert_close(cn, ecn, atol=1e-5, rtol=0)


def test_rejects_nn_lstm(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="expected a deploy_lstm.LSTM"):
        export_aoti(torch.nn.LSTM(2, 3), tmp_path / "m.pt2")  # type: ignore[arg-type]
