"""The export folder: what export_folder writes load reads back; tampering and failed exports;
and its manifest and the artifacts' metadata are untrusted input until checked.

A manifest names files only inside its folder (no ``..``, no absolute path, no NUL,
no symlink leading out), every field has its type, duplicate keys and non-finite
numbers are refused on reading and never written; every failure is an
``ArtifactError``, which the CLI turns into exit 2 and one line (issue 19).  The
artifact metadata codec (``ArtifactMetadata``) decodes what older versions wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

import deploy_lstm as dl
from deploy_lstm.formats import contract
from deploy_lstm.formats.manifest import FORMAT_VERSION
from deploy_lstm.formats.metadata import ArtifactMetadata
from deploy_lstm.formats.strict_json import dumps, loads


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("folder") / "out"
    dl.export_folder(dl.LSTM(3, 4, num_layers=2), out, lengths=True, artifacts=["onnx", "torchscript"], devices=("cpu",))
    return out


def _manifest(folder: Path) -> Dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def _copy_with(written: Path, tmp_path: Path, change: Callable[[Dict[str, Any], Path], None]) -> Path:
    """A copy of the folder whose manifest ``change(manifest, copy)`` edited in place."""
    folder = tmp_path / "copy"
    shutil.copytree(written, folder)
    manifest = _manifest(folder)
    change(manifest, folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _point_onnx_at(manifest: Dict[str, Any], target: Path, name: str) -> None:
    """The onnx artifact now names ``name``, with ``target``'s real size and SHA-256 (a forged manifest)."""
    data = target.read_bytes()
    manifest["artifacts"]["onnx"].update(file=name, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


# --- what export_folder writes, load reads back, and tampering -------------------------------------


def test_folder_round_trip(written: Path) -> None:
    f = dl.load(written)
    assert f.format_version == FORMAT_VERSION
    assert f.config == dl.LSTMConfig(3, 4, num_layers=2)
    assert sorted(f.artifacts) == ["onnx", "torchscript", "weights"]
    assert f.io.input_names == ["input", "h0", "c0", "lengths"]
    assert f.report is not None and f.report["passed"]
    assert {"deploy_lstm", "torch", "onnx", "onnxruntime", "python"} <= set(f.versions)
    assert f.artifacts["onnx"].details["routes"] == {"": "native"}
    assert dl.validate_folder(f, devices=("cpu",)).passed
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["format"] == "deploy-lstm-export" and len(manifest["artifacts"]["onnx"]["sha256"]) == 64


def test_folder_refuses_tampering_and_other_formats(written: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(written, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"X")
    with pytest.raises(dl.ArtifactError, match=r"model.onnx does not match its checksum"):
        dl.load(copy)
    dl.load(copy, verify=False)  # still readable when asked not to verify
    (copy / "model.onnx").unlink()
    with pytest.raises(dl.ArtifactError, match=r"model.onnx is listed in manifest.json but missing"):
        dl.load(copy)
    manifest = json.loads((written / "manifest.json").read_text())
    manifest["format_version"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(dl.ArtifactError, match=r"format version 0; .* reads version 1"):
        dl.load(copy)
    with pytest.raises(dl.ArtifactError, match=r"has no torchscript|has no aoti artifact"):
        dl.load(written).file("aoti")


def test_a_failed_folder_export_changes_nothing(written: Path, tmp_path: Path) -> None:
    target = tmp_path / "t"
    shutil.copytree(written, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(dl.ExportError):
        dl.export_folder(dl.LSTM(3, 4), target, opset=3, devices=("cpu",))
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- every file a manifest names stays inside its folder -----------------------------------------


def _outside(tmp_path: Path, written: Path) -> Path:
    """A file outside the folder: a working ONNX model, so only the path check can stop it."""
    secret = tmp_path / "outside" / "secret.onnx"
    secret.parent.mkdir()
    shutil.copyfile(written / "model.onnx", secret)
    return secret


def _dotdot(manifest: Dict[str, Any], folder: Path) -> None:
    _point_onnx_at(manifest, folder.parent / "outside" / "secret.onnx", "../outside/secret.onnx")


def _absolute(manifest: Dict[str, Any], folder: Path) -> None:
    _point_onnx_at(manifest, folder.parent / "outside" / "secret.onnx", str(folder.parent / "outside" / "secret.onnx"))


def _symlink_out(manifest: Dict[str, Any], folder: Path) -> None:
    (folder / "link.onnx").symlink_to(folder.parent / "outside" / "secret.onnx")
    _point_onnx_at(manifest, folder.parent / "outside" / "secret.onnx", "link.onnx")


def _nul(manifest: Dict[str, Any], folder: Path) -> None:
    manifest["artifacts"]["onnx"]["file"] = "model.onnx\x00.txt"


ESCAPES = {
    "dotdot": (_dotdot, r"leads out of the folder \('\.\.'\)"),
    "absolute": (_absolute, r"is absolute; a manifest names files inside its folder"),
    "symlink-out": (_symlink_out, r"'link.onnx' resolves to .*outside/secret.onnx, outside the folder"),
    "nul": (_nul, r"holds a NUL character"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_a_manifest_names_files_only_inside_its_folder(written: Path, tmp_path: Path, case: str) -> None:
    _outside(tmp_path, written)
    change, message = ESCAPES[case]
    folder = _copy_with(written, tmp_path, change)
    for verify in (True, False):  # refused when the manifest is read, not only when files are checked
        with pytest.raises(dl.ArtifactError, match=message):
            dl.load(folder, verify=verify)


def test_a_symlink_inside_the_folder_is_fine(written: Path, tmp_path: Path) -> None:
    def link_inside(manifest: Dict[str, Any], folder: Path) -> None:
        (folder / "sub").mkdir()
        (folder / "sub" / "link.onnx").symlink_to(folder / "model.onnx")
        manifest["artifacts"]["onnx"]["file"] = "sub/link.onnx"

    folder = dl.load(_copy_with(written, tmp_path, link_inside))
    assert folder.file("onnx") == folder.path / "sub" / "link.onnx"


def test_file_refuses_a_path_changed_after_loading(written: Path, tmp_path: Path) -> None:
    folder = dl.load(_copy_with(written, tmp_path, lambda m, f: None))
    (folder.path / "model.onnx").unlink()
    (folder.path / "model.onnx").symlink_to(_outside(tmp_path, written))
    with pytest.raises(dl.ArtifactError, match=r"outside the folder"):
        folder.file("onnx")


# --- every manifest field is type-checked when the manifest is read --------------------------------


def _set(path: str, value: Any) -> Callable[[Dict[str, Any], Path], None]:
    def change(manifest: Dict[str, Any], folder: Path) -> None:
        *parents, last = path.split(".")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


WRONG_TYPES = {
    "artifacts.onnx.file": (5, r"'file' must be a string, got an integer"),
    "artifacts.onnx.bytes": ("12", r"'bytes' must be an integer, got a string"),
    "artifacts.onnx.sha256": ("abc", r"'sha256' must be 64 lowercase hex digits"),
    "artifacts.onnx.details": ([], r"'details' must be an object, got an array"),
    "artifacts.onnx.extra": (1, r"unknown members \['extra'\]"),
    "artifacts.onnx": ("model.onnx", r"artifacts.onnx: expected an object, got a string"),
    "artifacts": ([], r"'artifacts' must be an object"),
    "model.kind": (3, r"'kind' must be a string"),
    "model.config.hidden_size": ("4", r"'hidden_size' must be an integer, got a string"),
    "model.config.bias": (1, r"'bias' must be true or false, got an integer"),
    "io.inputs": ({}, r"io: 'inputs' must be an array"),
    "io.inputs.0.shape": ("x", r"inputs\[0\]: 'shape' must be an array"),
    "io.outputs.0.name": (None, r"outputs\[0\]: 'name' must be a string, got null"),
    "versions.torch": (2, r"versions: 'torch' must be a string"),
    "report": ([], r"'report' must be an object or null"),
    "recommendation": ({"targets": []}, r"recommendation: 'targets' must be an object"),
    "format_version": (True, r"export format version True"),
}


@pytest.mark.parametrize("field", list(WRONG_TYPES))
def test_every_manifest_field_is_type_checked(written: Path, tmp_path: Path, field: str) -> None:
    value, message = WRONG_TYPES[field]
    folder = _copy_with(written, tmp_path, _set(field, value))
    with pytest.raises(dl.ArtifactError, match=message):
        dl.load(folder)


# --- strict JSON: duplicate keys and non-finite numbers ---------------------------------------------


def test_a_manifest_with_a_key_twice_is_refused(written: Path, tmp_path: Path) -> None:
    folder = _copy_with(written, tmp_path, lambda m, f: None)
    text = (folder / "manifest.json").read_text()
    # a second "artifacts" after the first: Python's json would silently keep this one, C++ the first
    forged = text[: text.rindex("}")] + ', "artifacts": {}}'
    (folder / "manifest.json").write_text(forged)
    with pytest.raises(dl.ArtifactError, match=r"has the key 'artifacts' twice in one object"):
        dl.load(folder)


def test_a_manifest_with_a_non_finite_number_is_refused(written: Path, tmp_path: Path) -> None:
    folder = _copy_with(written, tmp_path, _set("report.nan_here", float("nan")))  # json.dumps writes NaN
    assert "NaN" in (folder / "manifest.json").read_text()
    with pytest.raises(dl.ArtifactError, match=r"holds NaN, which is not JSON"):
        dl.load(folder)


def test_a_non_finite_measurement_is_written_as_null(written: Path, tmp_path: Path) -> None:
    folder = dl.load(_copy_with(written, tmp_path, lambda m, f: None))
    folder.record("recommendation", {"targets": {"python": {"artifact": "onnx", "speedup": float("inf")}}, "ratio": float("nan")})
    text = (folder.path / "manifest.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    again = dl.load(folder.path)
    assert again.recommendation == {"targets": {"python": {"artifact": "onnx", "speedup": None}}, "ratio": None}
    assert folder.recommendation == again.recommendation and again.recommended("python") == "onnx"


def test_a_manifest_that_would_be_refused_is_never_written(written: Path, tmp_path: Path) -> None:
    folder = dl.load(_copy_with(written, tmp_path, lambda m, f: None))
    before = (folder.path / "manifest.json").read_bytes()
    with pytest.raises(dl.ArtifactError, match=r"'targets' must be an object"):
        folder.record("recommendation", {"targets": ["python"]})
    assert (folder.path / "manifest.json").read_bytes() == before


def test_strict_json_round_trip() -> None:
    assert loads(dumps({"a": [1, 2.5, None]}, "x"), "x") == {"a": [1, 2.5, None]}
    with pytest.raises(dl.ArtifactError, match=r"x: b\[1\] is inf, which JSON cannot hold"):
        dumps({"b": [1.0, math.inf]}, "x")
    assert dumps({"b": [math.nan]}, "x", nonfinite="null") == '{"b": [null]}'
    with pytest.raises(dl.ArtifactError, match=r"nested too deeply"):
        loads("[" * 100_000 + "]" * 100_000, "deep")


# --- the CLI: exit 2 and one line --------------------------------------------------------------------


CLI_CASES = {
    "file-5": _set("artifacts.onnx.file", 5),
    "dotdot": _dotdot,
}


@pytest.mark.parametrize("command", ["validate", "serve"])
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_on_a_forged_folder_exits_2_with_one_line(written: Path, tmp_path: Path, command: str, case: str) -> None:
    _outside(tmp_path, written)
    folder = _copy_with(written, tmp_path, CLI_CASES[case])
    extra = ["--port", "0", "--grpc-port", "0"] if command == "serve" else []
    run = subprocess.run(
        [sys.executable, "-m", "deploy_lstm.cli", command, str(folder), *extra],
        capture_output=True, text=True, timeout=90, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy-lstm: error: "), run.stderr
    assert "Traceback" not in run.stderr


# --- the artifact metadata codec --------------------------------------------------------------------


OLD_BARE_ONNX = {  # what deploy-lstm wrote before the codec (and before the cell variants: no "cell")
    contract.META_IO: '{"inputs": [{"name": "input", "shape": ["sequence", "batch", 3], "dtype": "float32"}], '
    '"outputs": [{"name": "output", "shape": ["sequence", "batch", 4], "dtype": "float32"}]}',
    contract.META_VERSION: "0.1.0",
    contract.META_TORCH: "2.5.1",
    contract.META_EXPORTER: "torchscript",
    contract.META_ROUTES: '{"": "native"}',
    contract.META_CONFIG: '{"batch_first": false, "bias": true, "bidirectional": false, "dropout": 0.0, '
    '"hidden_size": 4, "input_size": 3, "num_layers": 1, "proj_size": 0}',
    "onnx.something_else": "kept out of the way",
}


def test_metadata_of_an_older_version_decodes() -> None:
    meta = ArtifactMetadata.from_strings(OLD_BARE_ONNX, "old.onnx")
    assert meta.config == dl.LSTMConfig(3, 4) and meta.lstms is None
    assert meta.io is not None and meta.io.input_names == ["input"] and meta.io.outputs[0].shape == ("sequence", "batch", 4)
    assert (meta.version, meta.torch, meta.exporter, meta.routes, meta.quantized) == ("0.1.0", "2.5.1", "torchscript", {"": "native"}, None)
    # and encodes back to the same strings, but for the cell field the config now has
    again = meta.to_strings()
    assert json.loads(again.pop(contract.META_CONFIG)) == {**json.loads(OLD_BARE_ONNX[contract.META_CONFIG]), "cell": "lstm"}
    assert again == {k: v for k, v in OLD_BARE_ONNX.items() if k not in (contract.META_CONFIG, "onnx.something_else")}


def test_metadata_round_trips_every_field() -> None:
    meta = ArtifactMetadata(
        version="1", torch="2", lstms={"enc": dl.LSTMConfig(3, 4), "dec": dl.LSTMConfig(4, 5, proj_size=2)},
        io=dl.lstm_io(dl.LSTMConfig(3, 4), lengths=True), exporter="dynamo", routes={"enc": "scan"}, quantized="int8-dynamic",
    )
    assert ArtifactMetadata.from_strings(meta.to_strings()) == meta
    assert ArtifactMetadata.from_json(meta.to_json()) == meta
    assert ArtifactMetadata.from_strings({}) == ArtifactMetadata()  # another tool's artifact: nothing known


@pytest.mark.parametrize(
    "key, value, message",
    [
        (contract.META_CONFIG, "{not json", r"metadata 'deploy_lstm.config' is not readable JSON"),
        (contract.META_CONFIG, '{"input_size": "3", "hidden_size": 4}', r"'input_size' must be an integer, got a string"),
        (contract.META_CONFIG, '{"input_size": 3, "hidden_size": 4, "input_size": 5}', r"has the key 'input_size' twice"),
        (contract.META_IO, '{"inputs": 1, "outputs": []}', r"'inputs' must be an array"),
        (contract.META_LSTMS, "[]", r"must be an object of configurations"),
        (contract.META_ROUTES, '{"": 1}', r"must be an object of strings"),
        (contract.META_VERSION, 1, r"must be a string, got int"),
    ],
)
def test_malformed_metadata_is_an_artifact_error(key: str, value: Any, message: str) -> None:
    with pytest.raises(dl.ArtifactError, match=message):
        ArtifactMetadata.from_strings({**OLD_BARE_ONNX, key: value}, "bad.onnx")


def test_metadata_is_written_as_strict_json() -> None:
    config = dataclasses.replace(dl.LSTMConfig(3, 4), dropout=float("nan"))
    with pytest.raises(dl.ArtifactError, match=r"dropout is nan, which JSON cannot hold"):
        ArtifactMetadata(config=config).to_strings()
    assert ArtifactMetadata(config=dl.LSTMConfig(3, 4)).to_strings()[contract.META_CONFIG] == dl.LSTMConfig(3, 4).to_json()


def test_a_recommendation_with_no_artifact_for_a_target_loads(written: Path, tmp_path: Path) -> None:
    """bench records ``"artifact": null`` for a target no artifact of the folder serves (a folder
    without model.ts or model.pt2 has nothing for "cpp"): such a folder still loads."""
    copy = tmp_path / "copy"
    shutil.copytree(written, copy)
    dl.load(copy).record("recommendation", {"targets": {"cpp": {"artifact": None, "why": "no C++ artifact"}}})
    folder = dl.load(copy)
    assert folder.recommended("cpp") is None
