"""AOTInductor package of a bare LSTM: dynamic sequence and batch, checked against nn.LSTM.

One small config is compiled once per session (about 30 s on 2 cores) and run at
shapes other than the export example (T=7, N=3).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy_lstm import LSTM
from deploy_lstm.aoti import export_aoti
from deploy_lstm.errors import ExportError

pytestmark = pytest.mark.slow

INPUT_SIZE, HIDDEN_SIZE = 5, 6


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(package path, nn.LSTM with the same weights, loaded package)."""
    torch.manual_seed(0)
    model = LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    ref = torch.nn.LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    ref.load_state_dict(model.state_dict())
    path = export_aoti(model, tmp_path_factory.mktemp("aoti") / "model.pt2")
    return path, ref, torch._inductor.aoti_load_package(str(path))


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
    with pytest.raises(ExportError, match=r"is a torch.nn.LSTM.*convert it first: model = deploy_lstm.swap_lstms"):
        export_aoti(torch.nn.LSTM(2, 3), tmp_path / "m.pt2")  # type: ignore[arg-type]


# --- the C++ runner (serving/cpp/aoti) -----------------------------------------------

CPP_DIR = Path(__file__).resolve().parent.parent / "serving" / "cpp" / "aoti"


def _write(path: Path, t: torch.Tensor) -> None:
    """The runner's tensor file: int64 ndim, int64 dims, then the raw data."""
    header = torch.tensor([t.dim(), *t.shape], dtype=torch.int64)
    path.write_bytes(header.numpy().tobytes() + t.contiguous().numpy().tobytes())


def _read(path: Path) -> torch.Tensor:
    raw = path.read_bytes()
    ndim = int(np.frombuffer(raw[:8], dtype=np.int64)[0])
    dims = np.frombuffer(raw[8 : 8 + 8 * ndim], dtype=np.int64).tolist()
    return torch.from_numpy(np.frombuffer(raw[8 + 8 * ndim :], dtype=np.float32).copy()).reshape(dims)


@pytest.fixture(scope="session")
def aoti_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("aoti_build")
    for cmd in (
        ["cmake", "-S", str(CPP_DIR), "-B", str(build), "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        ["cmake", "--build", str(build), "-j", "2"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return build / "aoti_run"


def test_cpp_runner_matches_nn_lstm(compiled, aoti_run: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    package, ref, _ = compiled
    T, N = 11, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, N, INPUT_SIZE, generator=g)
    h0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    c0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    files = []
    for name, t in (("input", x), ("h0", h0), ("c0", c0)):
        files.append(tmp_path / f"{name}.bin")
        _write(files[-1], t)
    proc = subprocess.run(
        [str(aoti_run), str(package), *map(str, files), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        expected, (ehn, ecn) = ref(x, (h0, c0))
    for i, e in enumerate((expected, ehn, ecn)):
        torch.testing.assert_close(_read(tmp_path / f"out{i}.bin"), e, atol=1e-5, rtol=0)


@pytest.fixture(scope="session")
def compiled_proj(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Projection, 2 layers, batch_first, lengths: the Scan-only configuration."""
    torch.manual_seed(1)
    model = LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, proj_size=4, batch_first=True).eval()
    return model, export_aoti(model, tmp_path_factory.mktemp("aoti-proj") / "model.pt2", lengths=True)


def test_validate_reports_the_package_against_nn_lstm(compiled_proj, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import deploy_lstm

    model, path = compiled_proj
    loads = []
    real = torch._inductor.aoti_load_package
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda p, *a, **k: loads.append(p) or real(p, *a, **k))
    model.train()
    report = deploy_lstm.validate(model, aoti_path=path)
    assert len(loads) == 1, f"the package was loaded {len(loads)} times"
    assert model.training, "validate switched the caller's model to eval mode"
    model.eval()
    assert report.passed, "\n" + report.table()
    assert {c.reference for c in report.checks if c.backend == "aotinductor"} == {"deploy_lstm eager", "torch.nn.LSTM"}
    assert any("lengths" in c for c in report.cases)


def test_nan_and_inf_padding_never_reach_the_result(compiled_proj, pad_past_lengths) -> None:  # type: ignore[no-untyped-def]
    """Values past each length (NaN, inf) change nothing: the same result as nn.LSTM on a packed batch."""
    model, path = compiled_proj
    runner = torch._inductor.aoti_load_package(str(path))
    N, T = 4, 9
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([9, 3, 1, 6])
    x = pad_past_lengths(torch.randn(N, T, INPUT_SIZE, generator=g), lengths, batch_first=True)
    h0 = torch.randn(2, N, 4, generator=g)
    c0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    output, hn, cn = runner(x, h0, c0, lengths)
    ref = model.to_torch().eval()
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out_p, (ehn, ecn) = ref(packed, (h0, c0))
        expected, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=T)
    assert torch.isfinite(output).all() and torch.isfinite(hn).all() and torch.isfinite(cn).all()
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(hn, ehn, atol=1e-5, rtol=0)
    torch.testing.assert_close(cn, ecn, atol=1e-5, rtol=0)
