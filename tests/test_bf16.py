"""bf16 artifacts (issue 22): export --precision bf16, the runners, validation, and a tolerance shown to catch broken ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest
import torch

import deploy_lstm
from deploy_lstm import pipeline
from deploy_lstm.check.folder import validate_folder
from deploy_lstm.check.tolerance import BF16_RULE, bf16_step, bf16_tolerance
from deploy_lstm.check.validate import validate
from deploy_lstm.cli import main
from deploy_lstm.errors import ConfigError
from deploy_lstm.exporters import bf16 as bf16_exporter
from deploy_lstm.exporters.torchscript import export_torchscript
from deploy_lstm.formats.metadata import read_torchscript_metadata
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.torchscript import TorchScriptRunner

BF16_KINDS = ("aoti-bf16", "torchscript-bf16")


@pytest.fixture(scope="session")
def lstm_state(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    torch.manual_seed(0)
    ref = torch.nn.LSTM(8, 16, 2).eval()
    path = tmp_path_factory.mktemp("bf16-ckpt") / "lstm.pt"
    torch.save(ref.state_dict(), path)
    return {"path": path, "ref": ref}


@pytest.fixture(scope="session")
def bf16_folder(lstm_state: Dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export through the CLI: model.ts, model.pt2 and their bf16 siblings (forced: a model this small
    may well be slower in bf16 on a busy machine; the skip rule has its own test)."""
    out = tmp_path_factory.mktemp("bf16") / "out"
    code = main(["export", str(lstm_state["path"]), "--out", str(out), "--artifacts", "torchscript,aoti",
                 "--precision", "bf16", "--force-bf16", "--quiet"])
    assert code == 0
    return out


def test_manifest_records_each_bf16_artifact(bf16_folder: Path) -> None:
    folder = deploy_lstm.load(bf16_folder)
    manifest = json.loads((bf16_folder / "manifest.json").read_text())  # strict JSON: json reads it back
    assert set(manifest["artifacts"]) >= {"torchscript", "aoti", *BF16_KINDS}
    assert folder.artifacts["aoti-bf16"].file == "model.bf16.pt2" and folder.artifacts["torchscript-bf16"].file == "model.bf16.ts"
    atol = bf16_tolerance(folder.model_spec().model)
    for kind in BF16_KINDS:
        d = folder.artifacts[kind].details
        assert d["precision"] == "bf16" and d["boundary"] == "float32"
        assert d["atol"] == pytest.approx(atol) and d["atol_rule"] == BF16_RULE
        assert 0 < d["mean_abs"] < d["max_abs"] <= d["atol"]
        assert [s["batch"] for s in d["speed"]["shapes"]] == [1, 32] and all(s["ratio"] > 0 for s in d["speed"]["shapes"])
        assert d["speed"]["baseline"] == folder.artifacts[kind.removesuffix("-bf16")].file
    backends = {c["backend"] for c in folder.report["checks"]}
    assert {"aotinductor-bf16", "torchscript-bf16"} <= backends and folder.report["passed"]


@pytest.mark.parametrize("kind", BF16_KINDS)
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_runner_runs_bf16_within_recorded_error_of_nn_lstm(
    bf16_folder: Path, lstm_state: Dict[str, Any], kind: str, as_torch: bool
) -> None:
    folder = deploy_lstm.load(bf16_folder)
    runner = folder.runner(kind)
    assert runner.kind == kind and runner.precision == "bf16"
    g = torch.Generator().manual_seed(1)
    x, h0, c0 = torch.randn(11, 5, 8, generator=g), torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    args = (x, h0, c0) if as_torch else (x.numpy(), h0.numpy(), c0.numpy())
    output, hn, cn = runner(*args)
    with torch.no_grad():
        want, (want_h, want_c) = lstm_state["ref"](x, (h0, c0))
    atol = folder.artifacts[kind].details["atol"]
    for got, ref in ((output, want), (hn, want_h), (cn, want_c)):
        got = np.asarray(got)
        assert got.dtype == np.float32
        err = float(np.abs(got - ref.numpy()).max())
        assert 0 < err <= atol  # bf16: not bit-equal to float32, within the recorded tolerance


def test_validate_cli_checks_bf16_artifacts(bf16_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(bf16_folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    bf16 = [c for c in report["checks"] if c["backend"].endswith("-bf16")]
    assert {c["reference"] for c in bf16} == {"deploy_lstm eager", "torch.nn.LSTM"} and all(c["passed"] for c in bf16)
    # a tolerance below the error bf16 really has fails them: the check compares, it does not wave through
    assert main(["validate", str(bf16_folder), "--bf16-atol", "1e-6", "--quiet"]) == 1


# --- the tolerance catches broken bf16 artifacts -------------------------------------------------


def _demo_lstm() -> LSTM:
    from deploy_lstm.demo.forecaster import load_demo

    return copy.deepcopy(next(m for m in load_demo().modules() if isinstance(m, LSTM))).eval()


def _ulps_up(lstm: LSTM, ulps: int) -> LSTM:
    with torch.no_grad():
        for p in lstm.parameters():
            p.mul_(1 + ulps * 2.0**-7)  # bf16 keeps 8 significant bits: one ulp is 2^-7 of a value near 1
    return lstm


def _forget_gate_halved(lstm: LSTM) -> LSTM:
    H = lstm.hidden_size
    with torch.no_grad():
        lstm.weight_hh_l0[H:2 * H] *= 0.5  # gate order i, f, g, o: the forget gate's recurrent weights
    return lstm


class _Float8Input(bf16_exporter.Bf16Boundary):
    """A wrong cast: the input goes through float8 (3 mantissa bits) on its way to bf16."""

    def forward(
        self, input: torch.Tensor, hx: Optional[Tuple[torch.Tensor, torch.Tensor]] = None, lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        if hx is not None:
            state = (hx[0].to(torch.bfloat16), hx[1].to(torch.bfloat16))
        output, (h_n, c_n) = self.lstm(input.to(torch.float8_e4m3fn).to(torch.bfloat16), state, lengths)
        return output.float(), (h_n.float(), c_n.float())


BROKEN = {
    "weights-2-ulps-off": (_demo_lstm, lambda m: _ulps_up(m, 2)),
    "forget-gate-wrong": (lambda: LSTM(8, 16, 2).eval(), _forget_gate_halved),
    "input-cast-float8": (_demo_lstm, None),
}


@pytest.mark.parametrize("broken", [False, True], ids=["correct", "broken"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bf16_tolerance_fails_a_broken_artifact(
    case: str, broken: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    make, breaks = BROKEN[case]
    model = make()
    if broken and breaks is not None:  # the exporter's bf16 copy is wrong; the float32 model stays right
        real_copy = bf16_exporter.bf16_copy
        monkeypatch.setattr(bf16_exporter, "bf16_copy", lambda m: real_copy(breaks(copy.deepcopy(m))))
    if broken and case == "input-cast-float8":
        monkeypatch.setattr(bf16_exporter, "Bf16Boundary", _Float8Input)
    path = export_torchscript(model, tmp_path / "model.bf16.ts", fused=True, precision="bf16")
    atol = bf16_tolerance(model)
    report = validate(model, extra_runners={"torchscript-bf16": (TorchScriptRunner(path), atol)}, devices=())
    bf16 = [c for c in report.checks if c.backend == "torchscript-bf16"]
    worst = max(c.max_abs for c in bf16)
    assert all(c.passed for c in bf16) is not broken, f"{case}: worst {worst:.2e} = {worst / bf16_step(model):.1f} steps, atol {atol:.2e}"


# --- what is written, and what is refused -----------------------------------------------------


def test_bf16_slower_everywhere_is_not_written_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision on a measured timing (here: a timing that says slower at both batch sizes)."""
    slower = {"shapes": [{"batch": 1, "sequence": 50, "ratio": 1.6}, {"batch": 32, "sequence": 50, "ratio": 1.2}], "slower_at": [1, 32]}
    monkeypatch.setattr(pipeline, "bf16_speed", lambda *a, **k: dict(slower))
    model = LSTM(4, 8).eval()
    folder, report = pipeline.export_folder(model, tmp_path / "a", artifacts=("torchscript",), precision="bf16", devices=())
    assert not folder.has("torchscript-bf16") and not (tmp_path / "a" / "model.bf16.ts").exists()
    assert "slower than model.ts at every batch" in report.skipped["torchscript-bf16"] and report.passed
    folder, report = pipeline.export_folder(
        model, tmp_path / "b", artifacts=("torchscript",), precision="bf16", force_bf16=True, devices=()
    )
    assert folder.artifacts["torchscript-bf16"].details["speed"]["slower_at"] == [1, 32] and report.passed


def test_bf16_needs_aoti_or_torchscript(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="add aoti or torchscript"):
        pipeline.export_folder(LSTM(4, 8), tmp_path / "x", artifacts=("onnx",), precision="bf16")
    with pytest.raises(ConfigError, match="precision='fp8'"):
        pipeline.export_folder(LSTM(4, 8), tmp_path / "x", artifacts=("torchscript",), precision="fp8")


def test_bf16_archive_says_its_precision(bf16_folder: Path) -> None:
    assert read_torchscript_metadata(bf16_folder / "model.bf16.ts").precision == "bf16"
    assert read_torchscript_metadata(bf16_folder / "model.ts").precision is None
    runner = TorchScriptRunner(bf16_folder / "model.bf16.ts")  # alone, without the manifest: float32 boundary
    assert {t.dtype for t in runner.io.inputs} == {"float32"}


def test_demo_prints_the_held_out_error_in_bf16_beside_float32() -> None:
    import io
    import re

    from deploy_lstm.demo.forecaster import load_demo
    from deploy_lstm.demo.report import demo_report

    text = demo_report(load_demo(), file=io.StringIO())
    fp32 = re.search(r"^forecast +[\d.]+ +[\d.]+ +([\d.]+) +([\d.]+)$", text, re.M)
    bf16 = re.search(r"^ +bf16 +([\d.]+) +([\d.]+) +\(forecast, LSTM in bfloat16", text, re.M)
    assert fp32 and bf16, text
    rmse32, rmse16 = float(fp32[1]), float(bf16[1])
    assert rmse16 == pytest.approx(rmse32, rel=0.05)  # bf16 costs the forecast little ...
    assert (bf16[1], bf16[2]) != (fp32[1], fp32[2]) or rmse32 == 0  # ... but it is computed in bf16, not copied


@pytest.mark.parametrize("key, value", [("atol", "0.03"), ("max_abs", True), ("atol_rule", None), ("speed", [])])
def test_manifest_refuses_a_malformed_bf16_entry(bf16_folder: Path, tmp_path: Path, key: str, value: Any) -> None:
    import shutil

    from deploy_lstm.errors import ArtifactError

    copy_dir = tmp_path / "f"
    shutil.copytree(bf16_folder, copy_dir)
    manifest = json.loads((copy_dir / "manifest.json").read_text())
    manifest["artifacts"]["aoti-bf16"]["details"][key] = value
    (copy_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"artifacts.aoti-bf16.details.*{key}"):
        deploy_lstm.load(copy_dir, verify=False)


@pytest.mark.parametrize("kind", BF16_KINDS)
def test_bf16_stream_of_chunks_equals_the_whole_sequence(bf16_folder: Path, lstm_state: Dict[str, Any], kind: str) -> None:
    """The state crosses the float32 boundary between chunks: bf16 -> float32 -> bf16 is exact, so chunks equal the whole."""
    runner = deploy_lstm.load(bf16_folder).runner(kind)
    g = torch.Generator().manual_seed(2)
    x, h0, c0 = torch.randn(9, 3, 8, generator=g), torch.randn(2, 3, 16, generator=g), torch.randn(2, 3, 16, generator=g)
    stream = runner.stream(batch=3, h0=h0, c0=c0)
    pieces = np.concatenate([stream.push(x[:4].numpy()), stream.push(x[4:].numpy())], axis=0)
    whole = runner(x.numpy(), h0.numpy(), c0.numpy())
    np.testing.assert_array_equal(pieces, whole[0])
    with torch.no_grad():
        want = lstm_state["ref"](x, (h0, c0))[0].numpy()
    assert np.abs(pieces - want).max() <= deploy_lstm.load(bf16_folder).artifacts[kind].details["atol"]
