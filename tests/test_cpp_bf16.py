"""deploy_lstm_run on an export folder's bf16 artifacts (model.bf16.pt2, model.bf16.ts).

One folder (a bare 2-layer LSTM exported with ``precision="bf16"``: model.ts, model.pt2 and
their bf16 siblings) is exported per session; each test copies it, writes a recommendation
by hand where it needs one, and runs the C++ binary of the shared session build (``binary``,
tests/conftest.py) at a shape other than the export's.  The outputs are compared with
``torch.nn.LSTM`` in float32 holding the same weights, within the bf16 tolerance the manifest
recorded for that artifact; and they must differ from float32 by more than float32's own
tolerance, so a runner that quietly ran the float32 sibling fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
import torch
from torch import Tensor

import deploy_lstm
from test_cpp import run_cli  # `binary` is the session build fixture of tests/conftest.py
from test_cpp_folder import copy_folder, nn_lstm, outputs, recommend, run

pytestmark = pytest.mark.slow

CONFIG = dict(input_size=16, hidden_size=32, num_layers=2)
FILES = {"aoti-bf16": "model.bf16.pt2", "torchscript-bf16": "model.bf16.ts", "torchscript": "model.ts", "aoti": "model.pt2"}


@pytest.fixture(scope="session")
def bf16_folder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(folder with model.ts, model.pt2, model.bf16.ts, model.bf16.pt2, the eager model); never modified."""
    torch.manual_seed(0)
    model = deploy_lstm.LSTM(**CONFIG).eval()  # type: ignore[arg-type]
    out = tmp_path_factory.mktemp("folder-bf16") / "lstm"
    # force_bf16: the bf16 artifacts are written even where this small model gains nothing from them
    deploy_lstm.export_folder(model, out, artifacts=["torchscript", "aoti"], precision="bf16", force_bf16=True,
                              devices=("cpu",))
    return out, model


def feeds(T: int, N: int, seed: int) -> Dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    L, H = CONFIG["num_layers"], CONFIG["hidden_size"]
    return {"input": torch.randn(T, N, CONFIG["input_size"], generator=g), "h0": torch.randn(L, N, H, generator=g),
            "c0": torch.randn(L, N, H, generator=g)}


def recorded_atol(folder: Path, kind: str) -> float:
    entry = json.loads((folder / "manifest.json").read_text())["artifacts"][kind]
    return float(entry["details"]["atol"])


def ran(proc, kind: str) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, f"deploy_lstm_run failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("deploy_lstm_run: running ")]
    assert len(lines) == 1 and lines[0].startswith(f"deploy_lstm_run: running {kind} artifact "), proc.stderr
    assert f"/{FILES[kind]}: " in lines[0], lines[0]
    return lines[0]


def max_error(got: Dict[str, Tensor], want: Dict[str, Tensor]) -> float:
    assert sorted(got) == sorted(want), f"outputs written: {sorted(got)}, expected {sorted(want)}"
    assert all(got[k].dtype == torch.float32 and got[k].shape == want[k].shape for k in want), {k: (v.dtype, v.shape) for k, v in got.items()}
    return max(float((got[k] - want[k]).abs().max()) for k in want)


@pytest.mark.parametrize("kind,how", [("aoti-bf16", "recommended"), ("torchscript-bf16", "asked"),
                                      ("aoti-bf16", "asked")])
def test_bf16_artifact_runs_within_its_recorded_tolerance(binary: Path, bf16_folder, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          kind: str, how: str) -> None:
    src, model = bf16_folder
    folder = copy_folder(src, tmp_path)
    recommend(folder, kind if how == "recommended" else "torchscript", ratio=0.61)
    f = feeds(T=23, N=5, seed=7)  # the export's example is T=7, N=3
    extra = ["--artifact", kind] if how == "asked" else []
    line = ran(run(binary, folder, f, tmp_path / "run", *extra), kind)
    assert ("recommended by deploy-lstm bench" if how == "recommended" else "asked with --artifact") in line, line
    err, atol = max_error(outputs(tmp_path / "run"), nn_lstm(model, f)), recorded_atol(folder, kind)
    assert err <= atol, f"{kind}: max error {err:.2e} against float32 nn.LSTM, recorded tolerance {atol:.2e}"
    assert err > 1e-5, f"{kind}: max error {err:.2e} is float32's: the bf16 artifact did not run in bfloat16"


def test_without_a_recommendation_the_float32_artifact_runs(binary: Path, bf16_folder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, model = bf16_folder
    folder = copy_folder(src, tmp_path)
    f = feeds(T=6, N=2, seed=8)
    line = ran(run(binary, folder, f, tmp_path / "run"), "torchscript")
    assert "no recommendation recorded" in line, line
    assert max_error(outputs(tmp_path / "run"), nn_lstm(model, f)) <= 1e-5


def test_an_unknown_artifact_kind_is_refused_with_the_kinds(binary: Path, bf16_folder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, _ = bf16_folder
    proc = run_cli(binary, src, tmp_path / "x.npy", "--artifact", "aoti-fp16")
    assert proc.returncode == 2, proc.stderr
    assert "aoti-bf16" in proc.stderr and "torchscript-bf16" in proc.stderr and "'aoti-fp16'" in proc.stderr, proc.stderr
