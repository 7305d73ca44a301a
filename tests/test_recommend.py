"""Picking the fastest artifact per target, recording it in the folder, and using it.

The choice itself is a pure function of the benchmark's results and the validation
report (tested on made-up timings, where the right answer is known); the folder, the
``bench`` command, the server and memory measurement are tested for real on a small export.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from deploy_lstm import LSTM
from deploy_lstm import bench
from deploy_lstm.bench import recommend
from deploy_lstm.bench.memory import measure_memory, memory_markdown
from deploy_lstm.serve.model import ServedModel, ServeOptions, choose_artifact
from deploy_lstm.errors import ArtifactError, ConfigError
from deploy_lstm.formats.folder import load
from deploy_lstm.pipeline import export_folder

# --- the choice, on made-up results --------------------------------------------------------


def _res(ratios: Dict[str, list], labels: Dict[str, str] = None) -> Dict[str, Any]:
    """A bare-LSTM benchmark result: {backend label: [ratio per shape]} (None = not measured)."""
    shapes = len(next(iter(ratios.values())))
    cases = []
    for i in range(shapes):
        results = {"nn.LSTM eager": {"median_ms": 1.0, "ratio_vs_nn": 1.0}}
        for label, rs in ratios.items():
            results[label] = {"median_ms": rs[i], "ratio_vs_nn": rs[i]} if rs[i] is not None else {"backend": label, "reason": "it broke"}
        cases.append({"config": "L1 uni H8", "shape": f"s{i}", "results": results})
    return {"machine": {"cpu": "test cpu", "cores": 2}, "settings": {"threads": 2}, "cases": cases}


def _report(**passed: bool) -> Dict[str, Any]:
    names = {"onnx": "onnxruntime-cpu", "torchscript": "torchscript", "aoti": "aotinductor", "onnx_int8": "onnxruntime-int8"}
    return {"checks": [{"backend": names[k], "passed": True} for k in passed]
            + [{"backend": names[k], "passed": v} for k, v in passed.items()]}


LABELS = bench.ARTIFACT_LABELS  # benchmark label -> the artifact kind it times
ALL = ["weights", "onnx", "torchscript", "aoti", "onnx-int8"]
TIMES = {"ort: ours (dynamo)": [0.8, 1.2], "deploy_lstm torchscript (fused)": [1.0, 1.0],
         "aotinductor (.pt2)": [0.9, 1.0], "ort: ours int8": [0.3, 0.4]}


def test_each_target_gets_its_fastest_validated_artifact_by_geometric_mean():
    rec = recommend.recommend(_res(TIMES), ALL, _report(onnx=True, torchscript=True, aoti=True, onnx_int8=True), LABELS)
    t = rec["targets"]
    # python: aoti 0.949 < onnx 0.980 < torchscript 1.0 (geometric means); int8 not allowed by default
    assert t["python"]["artifact"] == "aoti" and t["python"]["ratio"] == pytest.approx((0.9 * 1.0) ** 0.5, abs=1e-4)
    assert t["cpp"]["artifact"] == "aoti" and t["cpp"]["backend"] == "aotinductor (.pt2)"
    assert t["server"]["artifact"] == "onnx" and t["server"]["ratios"] == {"L1 uni H8 | s0": 0.8, "L1 uni H8 | s1": 1.2}
    assert "would be 0.35x" in t["server"]["why"] and "--allow-int8" in t["server"]["why"]
    assert rec["shapes"] == ["L1 uni H8 | s0", "L1 uni H8 | s1"] and rec["threads"] == 2 and not rec["allow_int8"]
    allowed = recommend.recommend(_res(TIMES), ALL, _report(onnx=True, torchscript=True, aoti=True, onnx_int8=True), LABELS, allow_int8=True)
    assert allowed["targets"]["server"]["artifact"] == "onnx-int8" and allowed["targets"]["python"]["artifact"] == "onnx-int8"
    assert allowed["targets"]["cpp"]["artifact"] == "aoti"  # C++ cannot run ONNX


BF16_TIMES = {**TIMES, "aotinductor bf16 (.bf16.pt2)": [0.5, 0.6], "torchscript bf16 (.bf16.ts)": [0.7, 0.7]}
BF16_ALL = ALL + ["aoti-bf16", "torchscript-bf16"]


def _bf16_report(aoti_bf16: bool = True) -> Dict[str, Any]:
    report = _report(onnx=True, torchscript=True, aoti=True, onnx_int8=True)
    report["checks"] += [{"backend": "aotinductor-bf16", "passed": aoti_bf16}, {"backend": "torchscript-bf16", "passed": True}]
    return report


def test_a_bf16_artifact_is_chosen_only_with_allow_bf16_and_otherwise_named_with_its_gain():
    rec = recommend.recommend(_res(BF16_TIMES), BF16_ALL, _bf16_report(), LABELS)
    t = rec["targets"]
    assert t["python"]["artifact"] == "aoti" and t["cpp"]["artifact"] == "aoti" and not rec["allow_bf16"]
    bf16 = (0.5 * 0.6) ** 0.5  # aoti-bf16's geometric mean: the faster of the two bf16 artifacts
    for target in ("python", "cpp"):
        why = t[target]["why"]
        assert f"aoti-bf16 would be {bf16:.2f}x ({t[target]['ratio'] / bf16:.2f}x faster)" in why and "--allow-bf16" in why, why
    assert "bf16" not in t["server"]["why"]  # the server runs ONNX: no bf16 artifact to offer there
    allowed = recommend.recommend(_res(BF16_TIMES), BF16_ALL, _bf16_report(), LABELS, allow_bf16=True)
    assert allowed["allow_bf16"] and allowed["targets"]["cpp"]["artifact"] == "aoti-bf16"
    assert allowed["targets"]["cpp"]["backend"] == "aotinductor bf16 (.bf16.pt2)"
    assert allowed["targets"]["python"]["artifact"] == "aoti-bf16"
    assert allowed["targets"]["server"]["artifact"] == "onnx"  # --allow-bf16 does not allow int8
    both = recommend.recommend(_res(BF16_TIMES), BF16_ALL, _bf16_report(), LABELS, allow_bf16=True, allow_int8=True)
    assert both["targets"]["python"]["artifact"] == "onnx-int8"  # 0.35x beats bf16's 0.55x


def test_a_bf16_artifact_that_failed_validation_is_never_chosen():
    rec = recommend.recommend(_res(BF16_TIMES), BF16_ALL, _bf16_report(aoti_bf16=False), LABELS, allow_bf16=True)
    cpp = rec["targets"]["cpp"]
    assert cpp["artifact"] == "torchscript-bf16" and cpp["others"]["aoti-bf16"] == "failed validation"


def test_only_bf16_timed_and_not_allowed_says_what_it_would_be():
    times = {"aotinductor bf16 (.bf16.pt2)": [0.5, 0.6]}
    report = {"checks": [{"backend": "aotinductor-bf16", "passed": True}]}
    cpp = recommend.recommend(_res(times), ["weights", "aoti-bf16"], report, LABELS)["targets"]["cpp"]
    assert cpp["artifact"] is None and "aoti-bf16: 0.55x, not allowed (bench --allow-bf16)" in cpp["why"], cpp["why"]


def _device(ratio, reason: str = "it broke") -> Dict[str, Any]:
    """``res["device"]``: one chunk of model.pte timed against nn.LSTM (ratio None: it could not run)."""
    pte = {"median_ms": ratio} if ratio is not None else {"backend": "pte", "reason": reason}
    return {"label": "executorch (.pte), one chunk", "chunk": 1, "batch": 1, "ratio": ratio,
            "results": {"nn.LSTM eager": {"median_ms": 1.0}, "executorch (.pte), one chunk": pte}}


def test_the_device_target_is_the_validated_pte_scored_per_chunk():
    res = {**_res(TIMES), "device": _device(0.25)}
    report = _report(onnx=True, torchscript=True)
    report["checks"].append({"backend": "executorch", "passed": True})
    rec = recommend.recommend(res, ALL + ["executorch"], report, LABELS)
    device = rec["targets"]["device"]
    assert device["artifact"] == "executorch" and device["ratio"] == 0.25 and device["ratios"] == {"chunk=1 batch=1": 0.25}
    assert "one chunk, chunk=1 batch=1" in device["why"]
    assert rec["targets"]["python"]["artifact"] in ("onnx", "torchscript")  # the .pte is the device's only
    report["checks"].append({"backend": "executorch", "passed": False})
    failed = recommend.recommend(res, ALL + ["executorch"], report, LABELS)["targets"]["device"]
    assert failed["artifact"] is None and failed["others"] == {"executorch": "failed validation"}
    broken = recommend.recommend({**res, "device": _device(None)}, ALL + ["executorch"], report, LABELS)["targets"]["device"]
    assert broken["artifact"] is None and broken["others"] == {"executorch": "not timed: it broke"}
    assert "device" not in recommend.recommend(res, ALL, report, LABELS)["targets"]  # timed, but not in this folder


def test_failed_unvalidated_or_partly_timed_artifacts_are_not_candidates():
    times = {**TIMES, "aotinductor (.pt2)": [0.5, None]}  # fastest where it ran, but broke at one shape
    rec = recommend.recommend(_res(times), ALL, _report(onnx=False, torchscript=True, aoti=True), LABELS)
    t = rec["targets"]
    assert t["cpp"]["artifact"] == "torchscript"
    assert t["cpp"]["others"]["aoti"] == "timed at 1 of 2 shapes"
    assert t["python"]["artifact"] == "torchscript" and t["python"]["others"]["onnx"] == "failed validation"
    assert t["python"]["others"]["onnx-int8"] == "not in the folder's validation report"
    assert t["server"]["artifact"] is None and t["server"]["ratio"] is None
    assert t["server"]["why"].startswith("no candidate (onnx: failed validation")
    md = recommend.to_markdown(rec)
    assert "| cpp | torchscript | 1.00x |" in md and "| server | none | - | no candidate" in md


def test_only_the_folders_artifacts_count_and_whole_model_labels_map():
    res = {"machine": {}, "settings": {}, "cases": [
        {"shape": "N=1 T=32", "results": {"original (torch.nn LSTMs) eager": {"median_ms": 1.0, "ratio_vs_original": 1.0},
                                          "torchscript": {"median_ms": 0.9, "ratio_vs_original": 0.9},
                                          "onnxruntime": {"median_ms": 0.5, "ratio_vs_original": 0.5}}}]}
    rec = recommend.recommend(res, ["weights", "torchscript"], _report(onnx=True, torchscript=True), LABELS)
    assert rec["baseline"] == "the model with torch.nn LSTMs, eager"
    assert rec["targets"]["python"]["artifact"] == "torchscript"  # onnx was timed but is not in this folder
    assert rec["targets"]["server"]["artifact"] is None


# --- for real: export, bench, record, serve -----------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("rec") / "lstm"
    export_folder(LSTM(4, 8, num_layers=2).eval(), out, quantize="int8", devices=("cpu",))
    return out


def _bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bench_of_a_folder_records_its_recommendation_and_keeps_the_folder_valid(folder, tmp_path, capsys):
    assert load(folder).recommendation is None and choose_artifact(load(folder), None) == (
        "onnx", "no recommendation recorded (deploy-lstm bench DIR records one)")
    out = tmp_path / "b"
    assert bench.run(_bench_args(str(folder), "--quick", "--rounds", "1", "--threads", "1", "--no-memory", "--out", str(out))) == 0
    printed = capsys.readouterr().out
    assert "## Recommendation" in printed and f"recorded the recommendation in the export folder {folder}" in printed
    f = load(folder)  # checksums still verify: only the manifest changed
    rec = f.recommendation
    assert set(rec["targets"]) == {"python", "cpp", "server"}  # no model.pte: no device target
    assert f.recommended("cpp") == "torchscript"  # the only C++ artifact here
    assert f.recommended("server") == "onnx"  # int8 is not chosen unless allowed
    assert f.recommended("python") in ("onnx", "torchscript")
    results = json.loads((out / "results.json").read_text())
    assert results["recommendation"] == rec and "## Recommendation" in (out / "results.md").read_text()
    assert choose_artifact(f, None)[1].startswith(f"recommended by deploy-lstm bench on {rec['measured']} at ")


def test_no_record_leaves_the_manifest_alone(folder, tmp_path):
    before = (folder / "manifest.json").read_bytes()
    bench.run(_bench_args(str(folder), "--quick", "--rounds", "1", "--threads", "1", "--no-memory", "--no-record",
                          "--out", str(tmp_path)))
    assert (folder / "manifest.json").read_bytes() == before


def test_the_server_runs_the_recommended_artifact_unless_told_otherwise(folder):
    f = load(folder)
    saved = f.manifest.get("recommendation")
    try:
        f.record("recommendation", {"measured": "then", "targets": {"server": {"artifact": "onnx-int8", "ratio": 0.5}}})
        model = ServedModel(load(folder), ServeOptions())
        assert model.artifact == "onnx-int8" and model.runner.path == folder / "model.int8.onnx"
        assert model.artifact_why == "recommended by deploy-lstm bench on then at 0.50x the eager model"
        asked = ServedModel(load(folder), ServeOptions(artifact="onnx"))
        assert asked.artifact == "onnx" and asked.artifact_why == "asked with --artifact"
        f.record("recommendation", {"targets": {"server": {"artifact": "aoti"}}})  # not in this folder
        assert choose_artifact(load(folder), None)[0] == "onnx"
    finally:
        f.record("recommendation", saved)
    ServeOptions(artifact="torchscript").check()  # every runner kind serves (the repository server)
    with pytest.raises(ConfigError, match=r"artifact must be one of onnx, onnx-int8, torchscript, aoti, .*got 'tensorrt'"):
        ServeOptions(artifact="tensorrt").check()


def test_record_is_atomic_and_cannot_rewrite_what_describes_the_artifacts(folder):
    f = load(folder)
    with pytest.raises(ArtifactError, match="manifest entry 'artifacts' describes the artifacts"):
        f.record("artifacts", {})
    f.record("note", {"x": 1})
    assert json.loads((folder / "manifest.json").read_text())["note"] == {"x": 1}
    assert not [p for p in folder.iterdir() if p.name.startswith(".manifest-")]  # no temporary left behind


@pytest.mark.slow
def test_memory_of_sessions_and_exports_is_measured_in_fresh_processes(folder):
    mem = measure_memory(folder, batch=2, sequence=16, sessions=("eager", "onnx", "torchscript"), exports=("torchscript",))
    assert mem["artifacts"]["onnx"] == (folder / "model.onnx").stat().st_size
    for kind in ("eager", "onnx", "torchscript"):
        m = mem["sessions"][kind]
        assert m["peak_bytes"] >= m["before_bytes"] > 100 << 20, (kind, m)  # torch imported: well over 100 MiB
        assert 0 <= m["added_bytes"] < 1 << 30
    assert mem["sessions"]["onnx"]["added_bytes"] > 0  # an onnxruntime session allocates
    assert mem["exports"]["torchscript"]["added_bytes"] >= 0
    md = memory_markdown(mem)
    assert "| onnx | " in md and "session peak added" in md and "MiB" in md
    assert "| onnx-int8 | " in md and md.count("| - |") >= 2  # int8's session and export were not asked for


@pytest.mark.slow
def test_bench_of_a_folder_with_a_pte_recommends_it_for_the_device(tmp_path):
    pytest.importorskip("executorch")
    out = tmp_path / "pte"
    # torchscript too: a target without a candidate records artifact null, which load() refuses (see the report)
    export_folder(LSTM(4, 8).eval(), out, artifacts=("onnx", "torchscript", "executorch"), devices=("cpu",))
    res = bench.run(_bench_args(str(out), "--quick", "--rounds", "1", "--threads", "1", "--no-memory", "--out", str(tmp_path / "b")))
    assert res == 0
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    timed = results["device"]["results"]
    assert results["device"]["ratio"] == pytest.approx(timed["executorch (.pte), one chunk"]["median_ms"] / timed["nn.LSTM eager"]["median_ms"])
    assert load(out).recommended("device") == "executorch"
