"""Benchmark harness and targets: structure, measurement rules (int8 accuracy: test_quantize.py).

No speed is asserted; what is asserted is that every backend that exists here gets a
number, that failures are data, how the timing is organised (interleaved rounds, an
idle pause before each block), the measured reference, the reports and the errors.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from deploy_lstm import LSTM, export_onnx
from deploy_lstm import bench
from deploy_lstm.bench import bf16 as bf16_bench, lstm_matrix, timing
from deploy_lstm.check.tolerance import bf16_tolerance
from deploy_lstm.pipeline import export_folder
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.formats.contract import lstm_io
from deploy_lstm.errors import ArtifactError, ConfigError, DeployLSTMError
from deploy_lstm.formats.folder import ExportFolder, load
from deploy_lstm.check.int8 import INT8_WORTH_IT, int8_tolerance
from deploy_lstm.exporters.int8 import QUANTIZED_LSTM, quantize_int8
from deploy_lstm.exporters.torchscript import export_torchscript

REPO = Path(__file__).resolve().parents[1]

#: every backend this machine has: each must produce a number, never n/a
REQUIRED = [bench.NN, bench.EAGER, bench.TS_LOOP, bench.TS_FUSED, bench.TS_USER, bench.AOTI, bench.ORT_DYNAMO, bench.ORT_TS,
            bench.ORT_INT8]
TIMING_KEYS = {"median_ms", "p10_ms", "p90_ms", "rounds", "samples", "round_medians_ms", "ratio_vs_nn", "gflops", "reference_fraction"}
ROUNDS = 2

SMOKE_CONFIGS = [LSTMConfig(4, 8, num_layers=2, bidirectional=True), LSTMConfig(4, 8, bidirectional=True, proj_size=4)]
SMOKE_SHAPES = [bench.Shape("stream N=1 x2", 1, 2, True), bench.Shape("N=2 T=3", 2, 3)]


def _load_targets():
    """benchmarks/targets.py (the project's targets live beside its benchmark script); run_path
    names a module while the script runs, which its dataclasses look up."""
    return SimpleNamespace(**runpy.run_path(str(REPO / "benchmarks" / "targets.py"), run_name="bench_targets"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One small run (a config with and one without projection), watching the root logger."""
    root = logging.getLogger()
    level = root.level
    changes = []
    original = root.setLevel

    def recording(new):  # any call that would change the root level, even if restored later
        changes.append((root.level, logging._checkLevel(new)))
        original(new)

    root.setLevel(logging.INFO + 1)  # an unusual level: nothing may touch it
    root.setLevel = recording
    try:
        # bf16=False: the bf16 columns are tested on an export folder below (no second AOTInductor compile here)
        res = bench.benchmark(SMOKE_CONFIGS, SMOKE_SHAPES, threads=1, rounds=ROUNDS, warmup=1, block_ms=2, retries=0,
                              bf16=False, log=lambda s: None)
        level_after = root.level
    finally:
        del root.setLevel
        root.setLevel(level)
    out = tmp_path_factory.mktemp("bench")
    return res, bench.write_results(res, out), {"changes": [c for c in changes if c[0] != c[1]], "after": level_after}


def test_smoke_run_requires_a_number_from_every_backend_that_exists_here(smoke):
    res, _, _ = smoke
    assert [(c["config"], c["shape"]) for c in res["cases"]] == [
        (bench.config_name(cfg), s.name) for cfg in SMOKE_CONFIGS for s in SMOKE_SHAPES
    ]
    for case in res["cases"]:
        results = case["results"]
        assert list(results) == bench.BACKENDS
        for name in REQUIRED:
            assert TIMING_KEYS <= set(results[name]), (case["config"], case["shape"], name, results[name])
            assert results[name]["rounds"] == ROUNDS and len(results[name]["round_medians_ms"]) == ROUNDS
            assert results[name]["p10_ms"] <= results[name]["median_ms"] <= results[name]["p90_ms"]
        assert results[bench.NN]["ratio_vs_nn"] == pytest.approx(1.0)
        nn_export = results[bench.ORT_NN]
        if case["config_dict"]["proj_size"] == 0:
            assert "median_ms" in nn_export, nn_export
        else:  # torch.onnx.export has no LSTM-with-projection: recorded as data, not a string
            assert nn_export == {"backend": bench.ORT_NN, "reason": nn_export["reason"], "stage": "build"}
            assert "proj" in nn_export["reason"]


def test_results_record_how_they_were_measured(smoke):
    res, paths, _ = smoke
    data = json.loads(paths["json"].read_text())
    assert set(data) >= {"machine", "settings", "reference", "flop_formula", "backends", "cases", "graphs", "chart"}
    assert {"cpu", "cores", "torch", "onnxruntime", "python"} <= set(data["machine"])
    assert not any("peak" in k for k in data["machine"])  # no cpuinfo-derived peak
    s = data["settings"]
    assert (s["threads"], s["rounds"], s["configs_done"], s["configs"]) == (1, ROUNDS, 2, 2)
    assert s["pause_ms"] >= 10 and s["wall_s"] > 0
    if Path("/proc/stat").is_file():  # CPU other processes used while each case was timed
        assert {"other_share", "steal_share", "worst_case", "cases_over_limit", "cases_retried"} <= set(s["interference"])
        assert all(0 <= c["interference"]["other_share"] <= 1 for c in data["cases"])
    assert data["flop_formula"] == bench.FLOP_FORMULA and "2*4H*(I_l + P)*T*N" in bench.FLOP_FORMULA
    # which ONNX recurrent operators each graph runs on: the native LSTM, or Scan/Loop with projection
    assert data["graphs"]["L2 bi H8"][bench.ORT_DYNAMO] == {"LSTM": 2}
    assert data["graphs"]["L2 bi H8"][bench.ORT_INT8] == {QUANTIZED_LSTM: 2}
    assert "Scan" in data["graphs"]["L1 bi H8 P4"][bench.ORT_DYNAMO]


def test_gflops_are_a_fraction_of_a_measured_reference(smoke):
    res, paths, _ = smoke
    ref = res["reference"]
    timed = [(n, r) for c in res["cases"] for n, r in c["results"].items() if "gflops" in r and n != bench.ORT_INT8]
    fastest = max(r["gflops"] for _, r in timed)
    assert all(c["results"][bench.ORT_INT8]["reference_fraction"] is None for c in res["cases"])  # int8 is not float32
    assert ref["sgemm"]["n"] == bench.SGEMM_N and ref["sgemm"]["threads"] == 1 and ref["sgemm"]["gflops"] > 0
    assert len(ref["sgemm"]["runs_gflops"]) == 2  # measured before and after the backends
    assert ref["gflops"] == pytest.approx(max(ref["sgemm"]["gflops"], fastest))
    assert ref["fastest_backend"]["gflops"] == pytest.approx(fastest)
    for name, r in timed:  # the reference includes the fastest backend: nothing exceeds it
        assert 0 < r["reference_fraction"] <= 1.0 + 1e-12, (name, r)
        assert r["reference_fraction"] == pytest.approx(r["gflops"] / ref["gflops"])
    table = paths["md"].read_text().split("\nFLOPs:")[0]  # the latency table, not the sections after it
    percents = [int(cell.split("(")[1].rstrip("%) |")) for line in table.splitlines() if line.startswith("| L") for cell in [line.rsplit("|", 2)[1]]]
    assert percents and all(0 <= p <= 100 for p in percents)


def test_a_backend_faster_than_the_sgemm_becomes_the_reference():
    """On this VM nn.LSTM (oneDNN) outruns a large torch.mm: the reference must include it (int8 aside)."""
    cfg = LSTMConfig(4, 8)
    shape = bench.Shape("N=1 T=1", 1, 1)
    gflop = bench.flops(cfg, 1, 1) / 1e9
    timed = lambda gflops: {"median_ms": gflop / gflops * 1e3, "p10_ms": 0.0, "p90_ms": 0.0}  # noqa: E731
    speed = {bench.NN: 30.0, bench.ORT_INT8: 90.0}  # int8's float-equivalent GFLOP/s are not float32 work
    case = lstm_matrix.case_result(cfg, shape, {n: timed(speed.get(n, 5.0)) for n in bench.BACKENDS})
    sgemm = [{"n": 2048, "threads": 2, "gflops": 20.0, "calls": 5}]
    res = lstm_matrix.results_of(bench.machine(), {"threads": 2}, sgemm, [case], {})
    assert res["reference"]["gflops"] == pytest.approx(30.0) and res["reference"]["source"] == "backend"
    assert res["reference"]["fastest_backend"]["backend"] == bench.NN
    assert case["results"][bench.NN]["reference_fraction"] == pytest.approx(1.0)
    assert case["results"][bench.EAGER]["reference_fraction"] == pytest.approx(5.0 / 30.0)
    assert case["results"][bench.ORT_INT8]["reference_fraction"] is None


def test_bench_never_changes_the_root_logger_level(smoke):
    _, _, logging_seen = smoke
    assert logging_seen["changes"] == []
    assert logging_seen["after"] == logging.INFO + 1


def test_markdown_reports_every_backend_and_the_missing_ones_as_data(smoke):
    _, paths, _ = smoke
    md = paths["md"].read_text()
    assert md.startswith("# deploy-lstm benchmark") and "| config | shape |" in md
    assert all(name in md for name in bench.BACKENDS)


def test_int8_accuracy_is_reported_beside_its_speed(smoke):
    res, paths, _ = smoke
    md = paths["md"].read_text()
    assert "## int8: speed and accuracy" in md
    for c in res["cases"]:
        err = c["int8_error"]  # measured against the float32 model it was made from
        assert err["against"] == "dynamo.onnx" and 0 < err["mean_abs"] <= err["max_abs"] < 0.5 and err["scale"] > 0
        speedup = c["results"][bench.ORT_DYNAMO]["median_ms"] / c["results"][bench.ORT_INT8]["median_ms"]
        verdict = "worth it" if speedup >= INT8_WORTH_IT else "not worth it"
        assert f"| {c['config']} | {c['shape']} | " in md and f"{err['max_abs']:.1e} ({100 * err['rel']:.1f}%)" in md
        row = next(line for line in md.splitlines() if line.startswith(f"| {c['config']} | {c['shape']} | ") and "e-0" in line)
        assert row.endswith(f"| {verdict} |"), row
    assert f"{ROUNDS} interleaved rounds" in md and "Reference:" in md
    assert "## Not measured" in md and "LSTMs with projections" in md
    assert "## Targets" not in md  # the library's report carries no project targets
    assert "n/a:" not in md


def test_chart_is_written_when_matplotlib_is_there(smoke):
    pytest.importorskip("matplotlib")  # in the test extra; a skip here means the test env is incomplete
    res, paths, _ = smoke
    assert paths["png"] is not None and paths["png"].is_file()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["chart"] == {"file": "results.png", "written": True}
    assert not [p for p in paths["png"].parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_without_matplotlib_the_reason_is_recorded(smoke, tmp_path, monkeypatch):
    res, _, _ = smoke
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    res = json.loads(json.dumps(res))
    paths = bench.write_results(res, tmp_path)
    assert paths["png"] is None and not (tmp_path / "results.png").exists()
    chart = json.loads(paths["json"].read_text())["chart"]
    assert chart["written"] is False and "matplotlib" in chart["reason"]
    assert "No chart: matplotlib is not installed" in paths["md"].read_text()


def test_rounds_interleave_backends_with_an_idle_pause_before_each_block(monkeypatch):
    events = []
    monkeypatch.setattr(timing.time, "sleep", lambda s: events.append(("pause", s)))

    def runner(name):
        return lambda: events.append(("call", name))

    out = bench.measure_case({n: runner(n) for n in "abc"}, rounds=3, warmup=1, block_s=0.0, max_calls=5, pause_s=0.05)
    timed = events[3 * 3 :]  # after warm-up: pause, warm-up call, sizing call per runner
    blocks = [timed[i : i + 2] for i in range(0, len(timed), 2)]
    assert all(b[0] == ("pause", 0.05) and b[1][0] == "call" for b in blocks), timed
    order = [b[1][1] for b in blocks]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # one block each per round, order rotated
    assert all(out[n]["rounds"] == 3 and out[n]["samples"] == 3 for n in "abc")


def test_a_backend_failing_at_run_time_is_recorded_and_the_others_still_timed(monkeypatch):
    monkeypatch.setattr(timing.time, "sleep", lambda s: None)
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("onnxruntime said no\nsecond line")

    out = bench.measure_case({"ok": lambda: None, "flaky": flaky}, rounds=2, warmup=1, block_s=0.0, max_calls=1, pause_s=0)
    assert out["flaky"] == bench.Unavailable("flaky", "RuntimeError: onnxruntime said no", "run")
    assert out["ok"]["rounds"] == 2


def test_a_disturbed_case_is_measured_again_and_the_quietest_attempt_kept(monkeypatch):
    shares = iter([0.40, 0.30, 0.01])  # other processes' CPU share during each attempt
    monkeypatch.setattr(timing, "foreign_cpu", lambda a, b: {"wall_s": 1.0, "other_cpu_s": 0.0, "other_share": next(shares), "steal_share": 0.0})
    attempts = []
    real = timing.measure_case
    monkeypatch.setattr(timing, "measure_case", lambda calls, **kw: attempts.append(1) or real(calls, **kw))
    res = bench.benchmark([LSTMConfig(2, 3)], [bench.Shape("N=1 T=2", 1, 2)], threads=1, rounds=1, warmup=0,
                          block_ms=0, pause_ms=0, retries=2, retry_wait_s=0, log=lambda s: None)
    case = res["cases"][0]
    assert len(attempts) == 3 and case["interference"]["attempts"] == [0.4, 0.3, 0.01]
    assert case["interference"]["other_share"] == 0.01
    assert res["settings"]["interference"]["cases_retried"] == 1 and res["settings"]["interference"]["cases_over_limit"] == 0


def test_flops_formula():
    cfg = LSTMConfig(64, 256, num_layers=2, bidirectional=True, proj_size=128)
    per_dir_l0 = 2 * 4 * 256 * (64 + 128) + 2 * 256 * 128
    per_dir_l1 = 2 * 4 * 256 * (2 * 128 + 128) + 2 * 256 * 128
    assert bench.flops(cfg, 3, 5) == 2 * (per_dir_l0 + per_dir_l1) * 3 * 5


# --- command line and configuration errors -------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_config_parsing():
    assert bench.parse_config("input_size=4,hidden_size=8") == LSTMConfig(4, 8)
    assert bench.parse_config("input_size=4 hidden_size=8 bidirectional=true dropout=0.5 num_layers=2") == LSTMConfig(
        4, 8, num_layers=2, dropout=0.5, bidirectional=True
    )
    assert bench.parse_config('{"input_size": 4, "hidden_size": 8, "bidirectional": true}').bidirectional


@pytest.mark.parametrize(
    "text, message",
    [
        ("foo", r"expected key=value, got 'foo'"),
        ("input_size=4,hidden=8", r"unknown LSTM config keys \['hidden'\]"),
        ("input_size=4", r"needs \['hidden_size'\]"),
        ("input_size=4,hidden_size=eight", r"hidden_size expects an integer, got 'eight'"),
        ("input_size=4,hidden_size=8,bidirectional=maybe", r"bidirectional expects true or false"),
        ("input_size=4,hidden_size=8,input_size=5", r"input_size is given twice"),
        ("input_size=4,hidden_size=8,proj_size=8", r"proj_size has to be smaller than hidden_size"),
        ('{"input_size": 4, "hidden_size": true}', r"hidden_size must be int, got True"),
        ("{input_size: 4}", r"not valid JSON"),
        ("", r"--config is empty"),
    ],
)
def test_bad_config_raises_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        bench.parse_config(text)


def test_bench_config_foo_raises_config_error_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value") as e:
        bench.run(_args("--quick", "--config", "foo", "--out", str(tmp_path)))
    assert isinstance(e.value, DeployLSTMError)  # the family the CLI maps to exit code 2
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="--threads"):
        bench.run(_args("--config", "input_size=4,hidden_size=8", "--threads", "0", "--out", str(tmp_path)))


def test_cli_end_to_end_under_python_OO(tmp_path):
    """``run()`` writes the three files; -OO strips docstrings, which the report must not need."""
    code = (
        "import argparse, sys; from deploy_lstm import bench; p = argparse.ArgumentParser(); "
        "bench.add_arguments(p); sys.exit(bench.run(p.parse_args(sys.argv[1:])))"
    )
    out = tmp_path / "res"
    r = subprocess.run(
        [sys.executable, "-OO", "-c", code, "--quick", "--config", "input_size=4,hidden_size=8", "--rounds", "1",
         "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# deploy-lstm benchmark") and "FLOPs: multiply-adds" in r.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["mode"] == "quick" and data["settings"]["rounds"] == 1
    assert all("median_ms" in data["cases"][0]["results"][n] for n in REQUIRED + [bench.ORT_NN])
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


# --- export folders: read only through deploy_lstm.folder ----------------------------------


def _folder(path: Path, model: LSTM, *, fused: bool, int8: bool) -> Path:
    """A bare-LSTM export folder with model.onnx (dynamo), one model.ts [and model.int8.onnx], by the folder API."""
    with ExportFolder.create(path) as w:
        w.save_weights(model)
        w.lstm(LSTMConfig.of(model))
        w.io = lstm_io(LSTMConfig.of(model))
        export_onnx(model, w.path("onnx"), exporter="dynamo")
        w.add("onnx", exporter="dynamo", opset=18)
        export_torchscript(model, w.path("torchscript"), fused=fused)
        w.add("torchscript", fused=fused)
        if int8:
            quantize_int8(w.path("onnx"), w.path("onnx-int8"))
            w.add("onnx-int8", scheme="int8-dynamic", atol=int8_tolerance(model))
    return path


@pytest.mark.parametrize("int8", [True, False])
def test_bench_of_an_export_folder_times_its_files_only(tmp_path, int8):
    torch.manual_seed(1)
    model = LSTM(4, 8).eval()
    folder = _folder(tmp_path / "f", model, fused=not int8, int8=int8)
    res = bench.measure(_args(str(folder), "--quick", "--rounds", "1", "--threads", "1", "--out", str(tmp_path / "o")))
    assert res["settings"]["folder"] == str(folder)
    ts_have, ts_not = (bench.TS_LOOP, bench.TS_FUSED) if int8 else (bench.TS_FUSED, bench.TS_LOOP)
    for case in res["cases"]:
        r = case["results"]
        for name in (bench.NN, bench.EAGER, ts_have, bench.ORT_DYNAMO, bench.ORT_NN) + ((bench.ORT_INT8,) if int8 else ()):
            assert "median_ms" in r[name], (name, r[name])
        assert r[ts_not]["reason"] == f"the export folder's model.ts is the {'loop' if int8 else 'fused'} one"
        assert r[bench.ORT_TS]["reason"] == "the export folder's model.onnx is from the dynamo exporter"
        if not int8:  # nothing is exported in its place
            assert r[bench.ORT_INT8] == {"backend": bench.ORT_INT8, "reason": "the export folder has no model.int8.onnx", "stage": "build"}


def test_bf16_columns_show_the_error_against_float32_and_a_verdict_beside_the_speed(tmp_path):
    """A folder with model.ts and model.bf16.ts (no AOTInductor compile: quick): the bf16 artifact
    is timed, its error against float32 nn.LSTM measured per case (a stream: its final state)
    within the export rule's tolerance, and the report's bf16 table gives its verdict."""
    torch.manual_seed(3)
    folder = tmp_path / "f"
    export_folder(LSTM(4, 8).eval(), folder, artifacts=["torchscript"], precision="bf16", force_bf16=True, devices=("cpu",))
    res = bench.measure(_args(str(folder), "--quick", "--rounds", "1", "--threads", "1", "--out", str(tmp_path / "o")))
    assert res["settings"]["bf16"] is True
    for case in res["cases"]:
        r, err = case["results"], case["bf16_error"]
        assert "median_ms" in r[bench.TS_BF16] and "ratio_vs_nn" in r[bench.TS_BF16], r[bench.TS_BF16]
        assert r[bench.AOTI_BF16]["reason"] == "the export folder has no model.bf16.pt2"
        assert r[bench.TS_BF16]["reference_fraction"] is None  # not float32 work: outside the reference
        e = err[bench.TS_BF16]
        assert set(err) == {bench.TS_BF16} and e["atol"] == pytest.approx(bf16_tolerance(load(folder).model_spec().model, case["steps"]))
        assert 1e-6 < e["max_abs"] <= e["atol"] and 0 < e["mean_abs"] <= e["max_abs"], e  # bf16's error, not float32's
    md = bench.to_markdown(res)
    assert "## bf16: speed and accuracy" in md and f"Worth it at >= {bench.BF16_WORTH_IT:g}x" in md
    rows = [line for line in md.splitlines() if f"| {bench.TS_BF16} |" in line and not line.startswith("| config |")]
    assert len(rows) == len(res["cases"])
    for case, row in zip(res["cases"], rows):
        best = min(case["results"][n]["median_ms"] for n in bf16_bench.FLOAT32_ARTIFACTS if "median_ms" in case["results"][n])
        speedup = best / case["results"][bench.TS_BF16]["median_ms"]
        verdict = "worth it" if speedup >= bench.BF16_WORTH_IT else "not worth it"
        assert row.startswith(f"| {case['config']} | {case['shape']} | ") and f"| {speedup:.2f}x |" in row, row
        assert row.endswith(f"| {verdict} |"), row


def test_bf16_verdict_needs_the_speedup_and_the_tolerance():
    assert bench.bf16_advice(bench.BF16_WORTH_IT, 1e-3, 2e-3).startswith("worth it: 1.25x faster")
    assert bench.bf16_advice(1.1, 1e-3, 2e-3).startswith("not worth it: only 1.10x faster")
    assert bench.bf16_advice(3.0, 3e-3, 2e-3).startswith("not worth it: max error 3.0e-03 (tolerance 2.0e-03) is outside")
    assert bench.bf16_advice(3.0, float("nan"), 2e-3).startswith("not worth it")  # a NaN is never within tolerance
    with pytest.raises(ValueError, match="do not match"):
        bf16_bench.case_error((torch.zeros(2, 3), (torch.zeros(1, 3), torch.zeros(1, 3))), [torch.zeros(2, 3), torch.zeros(1, 3)])


def test_the_folder_benchmark_times_every_artifact_through_its_runner(tmp_path):
    """benchmark_model (deploy-lstm export --bench) opens each artifact through the runtime's
    runner: every one gets a number, none is n/a, each a ratio to the original nn.LSTM."""
    torch.manual_seed(2)
    folder = load(_folder(tmp_path / "f", LSTM(4, 8).eval(), fused=False, int8=True))
    res = bench.benchmark_model(folder, cases=((1, 3), (2, 5)), threads=1, rounds=1, warmup=1, block_ms=1, pause_ms=0)
    artifacts = [bench.MODEL_BACKENDS[k] for k in ("torchscript", "onnx", "onnx-int8")]
    assert res["backends"] == [bench.ORIGINAL, bench.EAGER, *artifacts]
    for case in res["cases"]:
        for name in res["backends"]:
            assert "median_ms" in case["results"][name] and "ratio_vs_original" in case["results"][name], (name, case)
        assert case["results"][bench.ORIGINAL]["ratio_vs_original"] == 1.0


def test_bench_refuses_a_whole_model_folder_it_cannot_rebuild_and_an_old_one(tmp_path):
    """A whole-model folder is timed through its factory (test_cli covers a real one); one whose
    factory cannot be imported is a ConfigError, not a traceback."""
    model = torch.nn.Sequential(LSTM(4, 8))
    with ExportFolder.create(tmp_path / "whole") as w:
        w.save_weights(model)
        w.factory("some.module:make")
        w.io = lstm_io(LSTMConfig(4, 8))
    with pytest.raises(ConfigError, match=r"cannot import 'some.module' for the model factory 'some.module:make'"):
        bench.run(_args(str(tmp_path / "whole"), "--out", str(tmp_path / "o")))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        bench.run(_args(str(tmp_path / "old"), "--out", str(tmp_path / "o")))


# --- the library module's boundaries --------------------------------------------------------


BENCH_MODULES = sorted((REPO / "deploy_lstm" / "bench").glob("*.py"))


@pytest.mark.parametrize("path", BENCH_MODULES, ids=lambda p: p.name)
def test_bench_modules_import_public_names_at_the_top_and_use_the_io_contract(path):
    """Imports at the top (matplotlib aside, and the room's lazy face), no private names across
    modules, the I/O names from the contract, folders read only through the export folder."""
    source = path.read_text()
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            lazy_face = path.name == "__init__.py" and isinstance(node, ast.ImportFrom) and node.module == "deploy_lstm.bench"
            assert lazy_face or all(n and n.startswith("matplotlib") for n in names), f"function-local import: {ast.unparse(node)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deploy_lstm"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"private names imported from {node.module}: {private}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in {"input", "h0", "c0", "lengths", "output", "hn", "cn"}, "I/O names come from the contract"
            assert node.value not in {"config.json", "manifest.json"}, "folders are read by deploy_lstm.formats.folder"
        assert not (isinstance(node, ast.Attribute) and node.attr == "manifest"), "folders are read by deploy_lstm.formats.folder"
    assert "setLevel" not in source and "__doc__" not in source
    assert not hasattr(bench, "targets")


def test_importing_the_bench_room_loads_no_chart_library():
    code = "import sys, deploy_lstm.bench as b; b.benchmark; b.write_results; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_face_names_every_public_name_of_the_room():
    from deploy_lstm.bench import backends, command, lstm_matrix, memory, report, whole_model

    for module in (backends, command, lstm_matrix, memory, report, timing, whole_model):
        for name in module.__all__:
            if name in bench.__all__:
                assert getattr(bench, name) is getattr(module, name), (module.__name__, name)
    assert {"benchmark", "benchmark_model", "measure_case", "add_arguments", "run", "Shape", "Unavailable"} <= set(bench.__all__)


# --- the project's targets (benchmarks/targets.py) ------------------------------------------


def _case(config, batch, proj, **medians):
    return {"config": config, "shape": f"N={batch}", "batch": batch, "config_dict": {"proj_size": proj},
            "results": {n: ({"median_ms": m, "p10_ms": m} if m else {"backend": n, "reason": "it broke", "stage": "build"})
                        for n, m in medians.items()}}


def test_targets_verdicts_count_a_missing_backend_as_missed():
    targets = _load_targets()
    fast = _case("a", 32, 0, **{bench.NN: 10.0, bench.ORT_DYNAMO: 9.0, bench.ORT_NN: 9.0, bench.ORT_INT8: 5.0})
    slow = _case("b", 32, 0, **{bench.NN: 10.0, bench.ORT_DYNAMO: 12.0, bench.ORT_NN: 9.0, bench.ORT_INT8: None})
    got = {(v["target"], v["case"]): v for v in targets.check([fast, slow])}
    vs_nn = f"{bench.ORT_DYNAMO} <= 1.0x {bench.NN}"
    assert got[(vs_nn, "a (N=32)")]["met"] and got[(vs_nn, "a (N=32)")]["ratio"] == pytest.approx(0.9)
    assert not got[(vs_nn, "b (N=32)")]["met"] and got[(vs_nn, "b (N=32)")]["ratio"] == pytest.approx(1.2)
    int8 = f"int8 >= 1.5x faster than {bench.ORT_DYNAMO} at N=32"
    assert got[(int8, "a (N=32)")]["met"] and got[(int8, "a (N=32)")]["ratio"] == pytest.approx(1.8)
    assert got[(int8, "b (N=32)")] == {"target": int8, "case": "b (N=32)", "limit": 1.5, "ratio": None, "met": False,
                                       "missing": f"{bench.ORT_INT8}: it broke"}
    md = targets.to_markdown(targets.verdicts({"cases": [fast, slow]}))
    assert "## Targets (same-run ratios of medians)" in md and "## Targets (same-run ratios of p10" in md
    assert f"| {vs_nn} | 1/2 MISSED | b (N=32) | 1.20x | 1.0x |" in md
    assert f"| {int8} | 1/2 MISSED | b (N=32) | not measured ({bench.ORT_INT8}: it broke) | 1.5x |" in md


def test_the_bf16_target_takes_the_fastest_bf16_artifact_without_projection():
    targets = _load_targets()
    name = f"fastest bf16 artifact <= 0.7x {bench.NN} (no projection, N=1 and N=32)"
    one = _case("a", 1, 0, **{bench.NN: 10.0, bench.AOTI_BF16: 8.0, bench.TS_BF16: 6.0})  # ts-bf16 is the fastest: 0.6x
    many = _case("a", 32, 0, **{bench.NN: 10.0, bench.AOTI_BF16: 7.5, bench.TS_BF16: None})  # only aoti-bf16: 0.75x
    gone = _case("b", 32, 0, **{bench.NN: 10.0, bench.AOTI_BF16: None, bench.TS_BF16: None})
    proj = _case("p", 32, 128, **{bench.NN: 10.0, bench.AOTI_BF16: 20.0})  # projection: not this target's case
    got = {v["case"]: v for v in targets.check([one, many, gone, proj]) if v["target"] == name}
    assert sorted(got) == ["a (N=1)", "a (N=32)", "b (N=32)"]
    assert got["a (N=1)"]["met"] and got["a (N=1)"]["ratio"] == pytest.approx(0.6)
    assert not got["a (N=32)"]["met"] and got["a (N=32)"]["ratio"] == pytest.approx(0.75)
    assert not got["b (N=32)"]["met"] and got["b (N=32)"]["missing"] == f"{bench.AOTI_BF16}: it broke"


@pytest.mark.parametrize("cell", ["peephole", "layernorm", "cell_gated"])
def test_a_variant_cell_is_timed_against_the_plain_cell(cell):
    """nn.LSTM has no variant: its rows are the plain cell of the same shape (the variant's cost
    relative to it); TorchScript's fused row is n/a (no aten kernel), every other backend timed."""
    cfg = LSTMConfig(4, 8, num_layers=2, cell=cell)
    res = bench.benchmark([cfg], [bench.Shape("N=2 T=3", 2, 3)], threads=1, rounds=1, warmup=1, block_ms=2, retries=0,
                          log=lambda s: None)
    [case] = res["cases"]
    assert case["config"].endswith(cell)
    results = case["results"]
    for name in (bench.NN, bench.EAGER, bench.TS_LOOP, bench.ORT_DYNAMO, bench.ORT_TS, bench.ORT_NN):
        assert "median_ms" in results[name], (name, results[name])
    assert "no aten kernel" in results[bench.TS_FUSED]["reason"]
