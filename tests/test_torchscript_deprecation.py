"""TorchScript is deprecated upstream: torch 2.10+ warns on torch.jit.script/save/load (a
FutureWarning from 2.14), and an upcoming release raises instead.  The library scripts
nothing at import, the CLI shows no raw warning (one note in its own words instead), the
Python API passes torch's warnings through, and a torch that refuses TorchScript still gets
a valid export folder without model.ts, with the reason in the report.

torch 2.13 words these warnings as DeprecationWarnings; the tests make torch.jit's functions
warn (or raise) as 2.14 (or the next release) does, so they hold on every torch CI runs."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

import deploy_lstm as dl
from deploy_lstm import cli
from deploy_lstm.errors import RuntimeUnavailable

WARNING = "`torch.jit.{}` is deprecated. Please switch to `torch.compile` or `torch.export`."
REFUSAL = "`torch.jit.{}` is deprecated and disabled; set TORCH_JIT_ALLOW_DEPRECATED=1 to use it for now"
ORIGINAL = {name: getattr(torch.jit, name) for name in ("script", "save", "load")}


def _warning(name: str) -> Callable:
    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        warnings.warn(WARNING.format(name), FutureWarning, stacklevel=2)
        return ORIGINAL[name](*args, **kwargs)

    return call


def _refusal(name: str) -> Callable:
    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(REFUSAL.format(name))

    return call


@pytest.fixture
def warning_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch.jit.script/save/load warn as torch 2.14 does."""
    for name in ORIGINAL:
        monkeypatch.setattr(torch.jit, name, _warning(name))
    yield


@pytest.fixture
def refusing_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch.jit.script/save/load raise, as the upcoming release will."""
    for name in ORIGINAL:
        monkeypatch.setattr(torch.jit, name, _refusal(name))
    yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "lstm.pt"
    torch.save(torch.nn.LSTM(3, 4, num_layers=2).state_dict(), path)
    return path


def test_nothing_is_scripted_at_import() -> None:
    """Importing the CLI, the pipeline, every exporter and runtime calls torch.jit.script 0 times."""
    code = (
        "import torch, warnings\n"
        "calls = []\n"
        "real = torch.jit.script\n"
        "torch.jit.script = lambda *a, **k: calls.append(1) or real(*a, **k)\n"
        "import deploy_lstm.cli, deploy_lstm.pipeline, deploy_lstm.exporters.standins, deploy_lstm.exporters.torchscript\n"
        "import deploy_lstm.runtime.torchscript, deploy_lstm.check.validate, deploy_lstm.bench\n"
        "print(len(calls))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_the_cli_shows_no_raw_warning_and_one_note(
    warning_torch: None, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # what a user's terminal shows for FutureWarning
        code = cli.main(["export", str(checkpoint), "--out", str(tmp_path / "out"), "--artifacts", "onnx,torchscript"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert "Warning" not in err
        notes = [line for line in err.splitlines() if "TorchScript (model.ts) is deprecated upstream" in line]
        assert len(notes) == 1 and "model.pt2" in notes[0]
        assert cli.main(["validate", str(tmp_path / "out")]) == 0  # loads model.ts
        err = capsys.readouterr().err
        assert "Warning" not in err and err.count("deprecated upstream") == 1
        assert cli.main(["validate", str(tmp_path / "out"), "--quiet"]) == 0  # --quiet: errors only
        assert capsys.readouterr().err == ""


def test_commands_without_torchscript_say_nothing_of_it(
    warning_torch: None, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x")]) == 2
    assert cli.main(["export", str(checkpoint), "--out", str(tmp_path / "o"), "--artifacts", "onnx"]) == 0
    err = capsys.readouterr().err
    assert "deprecated" not in err and "Warning" not in err


def test_the_python_api_keeps_torchs_warnings(warning_torch: None, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dl.export_torchscript(dl.LSTM(3, 4), tmp_path / "m.ts")
    assert any(issubclass(w.category, FutureWarning) and "torch.jit.script" in str(w.message) for w in seen)


def test_a_refusing_torch_still_gets_a_folder(refusing_torch: None, tmp_path: Path) -> None:
    folder, report = dl.export_folder(dl.LSTM(3, 4, num_layers=2), tmp_path / "out", artifacts=["onnx", "torchscript"], devices=("cpu",))
    assert report.passed
    assert sorted(folder.artifacts) == ["onnx", "weights"]
    why = report.skipped["torchscript"]
    assert "deprecated" in why and "model.pt2" in why
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["report"]["skipped"]["torchscript"] == why
    loaded = dl.load(tmp_path / "out")
    assert dl.validate_folder(loaded, devices=("cpu",)).passed
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        want = loaded.model_spec().model(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(loaded.runner()(x)[0], want, atol=1e-5, rtol=0)


def test_a_refusing_torch_through_the_cli(refusing_torch: None, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["export", str(checkpoint), "--out", str(tmp_path / "out"), "--artifacts", "onnx,torchscript"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "torchscript: skipped" in out.out + out.err
    assert not (tmp_path / "out" / "model.ts").exists()
    assert cli.main(["validate", str(tmp_path / "out")]) == 0


def test_loading_model_ts_on_a_refusing_torch_is_a_clear_error(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dl.export_folder(dl.LSTM(3, 4), tmp_path / "out", artifacts=["onnx", "torchscript"], devices=("cpu",))
    monkeypatch.setattr(torch.jit, "load", _refusal("load"))
    with pytest.raises(RuntimeUnavailable, match=r"refuses torch\.jit\.load .*model\.pt2"):
        dl.load(tmp_path / "out").runner("torchscript")
