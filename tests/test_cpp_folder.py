"""deploy_lstm_run on an export folder: the artifact deploy-lstm bench recommends, and .pt2 packages.

One folder (a bare 2-layer LSTM with a lengths input, model.ts and model.pt2) is exported
per session; each test copies it and writes the ``recommendation`` entry into its
manifest.json by hand, the way ``deploy-lstm bench DIR`` records it.  The binary runs at
shapes other than the export's, and its .npy outputs are compared with ``torch.nn.LSTM``
holding the same weights (on the packed batch when lengths are given).  The build and the
subprocess helpers are tests/test_cpp.py's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import deploy_lstm
from test_cpp import run_cli  # `binary` is the session build fixture of tests/conftest.py

pytestmark = pytest.mark.slow

CONFIG = dict(input_size=5, hidden_size=6, num_layers=2)
MEASURED = "2031-05-04T10:20:30+00:00"  # a time no real run wrote, so the stderr line must quote it


# -- the folder and its recommendation ---------------------------------------------------------


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(folder with model.ts and model.pt2, the eager model); shared, never modified: tests copy it."""
    torch.manual_seed(0)
    model = deploy_lstm.LSTM(**CONFIG).eval()  # type: ignore[arg-type]
    out = tmp_path_factory.mktemp("folder") / "lstm"
    deploy_lstm.export_folder(model, out, artifacts=["torchscript", "aoti"], lengths=True, devices=("cpu",))
    return out, model


@pytest.fixture(scope="session")
def ts_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding model.ts only."""
    out = tmp_path_factory.mktemp("folder-ts") / "lstm"
    deploy_lstm.export_folder(deploy_lstm.LSTM(3, 4), out, artifacts=["torchscript"], devices=("cpu",))
    return out


def copy_folder(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "folder"))


def recommend(folder: Path, cpp: Optional[str], ratio: float = 1.01) -> None:
    """Write manifest "recommendation" as deploy-lstm bench does (cpp=None: no C++ target)."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    targets: Dict[str, dict] = {
        "python": {"artifact": "torchscript", "backend": "torchscript", "ratio": 0.84, "why": "fastest in Python"},
        "server": {"artifact": "onnx", "backend": "onnxruntime", "ratio": 0.9, "why": "the server runs ONNX"},
    }
    if cpp is not None:
        targets["cpp"] = {"artifact": cpp, "backend": f"libtorch {cpp}", "ratio": ratio, "why": "fastest from C++"}
    manifest["recommendation"] = {"measured": MEASURED, "machine": "test", "threads": 2, "targets": targets}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


# -- running and the oracle ----------------------------------------------------------------------


def feeds(T: int, N: int, seed: int = 1) -> Dict[str, Tensor]:
    """input (T, N, I), h0, c0 (L, N, H) and int64 lengths (N,) with one full-length sequence."""
    g = torch.Generator().manual_seed(seed)
    L, H = CONFIG["num_layers"], CONFIG["hidden_size"]
    lengths = torch.randint(1, T + 1, (N,), generator=g, dtype=torch.int64)
    lengths[0] = T
    return {
        "input": torch.randn(T, N, CONFIG["input_size"], generator=g),
        "h0": torch.randn(L, N, H, generator=g),
        "c0": torch.randn(L, N, H, generator=g),
        "lengths": lengths,
    }


def nn_lstm(model: deploy_lstm.LSTM, f: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """torch.nn.LSTM with the same weights; on the packed batch when f has lengths."""
    ref = model.to_torch().eval()
    hx = (f["h0"], f["c0"]) if "h0" in f else None
    with torch.no_grad():
        if "lengths" in f:
            packed = pack_padded_sequence(f["input"], f["lengths"], enforce_sorted=False)
            out_p, (hn, cn) = ref(packed, hx)
            output, _ = pad_packed_sequence(out_p, total_length=f["input"].size(0))
        else:
            output, (hn, cn) = ref(f["input"], hx)
    return {"output": output, "hn": hn, "cn": cn}


def run(binary: Path, model: Path, f: Dict[str, Tensor], tmp_path: Path, *extra: object,
        flat: bool = False) -> subprocess.CompletedProcess:
    """Run deploy_lstm_run on ``f`` saved as .npy: the LSTM form (INPUT.npy --h0 --c0 --lengths),
    or with flat=True every tensor positional in contract order."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    args: List[object] = [model]
    for name, t in f.items():
        path = tmp_path / f"in_{name}.npy"
        np.save(path, t.numpy())
        args += [path] if flat or name == "input" else [f"--{name}", path]
    return run_cli(binary, *args, "--out", tmp_path / "result", *extra)


def outputs(tmp_path: Path) -> Dict[str, Tensor]:
    return {p.stem: torch.from_numpy(np.load(p)) for p in sorted((tmp_path / "result").glob("*.npy"))}


def check_outputs(tmp_path: Path, want: Dict[str, Tensor]) -> None:
    got = outputs(tmp_path)
    assert sorted(got) == sorted(want), f"outputs written: {sorted(got)}, expected {sorted(want)}"
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def ran(proc: subprocess.CompletedProcess, kind: str) -> str:
    """The stderr line naming the artifact run; asserts the run succeeded and ran `kind`."""
    assert proc.returncode == 0, f"deploy_lstm_run failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("deploy_lstm_run: running ")]
    assert len(lines) == 1, proc.stderr
    file = {"torchscript": "model.ts", "aoti": "model.pt2"}[kind]
    assert lines[0].startswith(f"deploy_lstm_run: running {kind} artifact ") and file in lines[0], lines[0]
    says = "model.ts (input_size=" if kind == "torchscript" else "model.pt2 (AOTInductor package"
    assert says in proc.stdout, proc.stdout  # the file that ran, as the runner reports it
    return lines[0]


# -- which artifact runs ---------------------------------------------------------------------------


def test_recommended_aoti_runs_the_package(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, model = exported
    folder = copy_folder(src, tmp_path)
    recommend(folder, "aoti", ratio=1.01)
    f = feeds(T=13, N=4)  # export validated at T=7, N=3
    line = ran(run(binary, folder, f, tmp_path / "run"), "aoti")
    assert f"recommended by deploy-lstm bench on {MEASURED} at ratio 1.01" in line, line
    check_outputs(tmp_path / "run", nn_lstm(model, f))


def test_recommended_torchscript_runs_the_archive(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, model = exported
    folder = copy_folder(src, tmp_path)
    recommend(folder, "torchscript", ratio=0.97)
    f = feeds(T=9, N=2, seed=2)
    line = ran(run(binary, folder, f, tmp_path / "run"), "torchscript")
    assert f"recommended by deploy-lstm bench on {MEASURED} at ratio 0.97" in line, line
    check_outputs(tmp_path / "run", nn_lstm(model, f))


@pytest.mark.parametrize("cpp", [None, "no-entry", "null"], ids=["no-recommendation", "no-cpp-target", "cpp-target-null"])
def test_without_a_recommendation_torchscript_runs(binary: Path, exported, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   cpp: Optional[str]) -> None:
    src, model = exported
    folder = copy_folder(src, tmp_path)
    if cpp == "no-entry":
        recommend(folder, None)  # bench ran, but recorded nothing for C++
    elif cpp == "null":  # bench found no artifact for C++ and recorded so
        recommend(folder, None)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["recommendation"]["targets"]["cpp"] = {"artifact": None, "why": "no C++ artifact validated"}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    f = feeds(T=5, N=1, seed=3)
    line = ran(run(binary, folder, f, tmp_path / "run"), "torchscript")
    assert "no recommendation recorded" in line, line
    check_outputs(tmp_path / "run", nn_lstm(model, f))


@pytest.mark.parametrize("recommended,asked", [("aoti", "torchscript"), ("torchscript", "aoti")])
def test_artifact_option_overrides_the_recommendation(binary: Path, exported, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      recommended: str, asked: str) -> None:
    src, model = exported
    folder = copy_folder(src, tmp_path)
    recommend(folder, recommended)
    f = feeds(T=8, N=3, seed=4)
    line = ran(run(binary, folder, f, tmp_path / "run", "--artifact", asked), asked)
    assert "asked with --artifact" in line, line
    check_outputs(tmp_path / "run", nn_lstm(model, f))


def test_recommendation_of_an_absent_artifact_falls_back(binary: Path, ts_only: Path, tmp_path: Path) -> None:
    folder = copy_folder(ts_only, tmp_path)
    recommend(folder, "aoti")
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 3), np.float32))
    line = ran(run_cli(binary, folder, tmp_path / "x.npy", "--out", tmp_path / "o"), "torchscript")
    assert "deploy-lstm bench recommended aoti, which the folder does not hold" in line, line


# -- errors ------------------------------------------------------------------------------------------


def test_artifact_option_naming_a_missing_kind(binary: Path, ts_only: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 3), np.float32))
    proc = run_cli(binary, ts_only, tmp_path / "x.npy", "--artifact", "aoti", "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "has no aoti artifact (it has: torchscript)" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_artifact_option_outside_a_folder_is_a_usage_error(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, _ = exported
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 5), np.float32))
    proc = run_cli(binary, src / "model.pt2", tmp_path / "x.npy", "--artifact", "aoti")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--artifact chooses among an export folder's artifacts" in proc.stderr
    proc = run_cli(binary, src, tmp_path / "x.npy", "--artifact", "onnx")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--artifact expects torchscript or aoti or torchscript-bf16 or aoti-bf16, got 'onnx'" in proc.stderr


def _truncate_manifest(folder: Path) -> None:
    path = folder / "manifest.json"
    path.write_text(path.read_text()[:200])


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _tamper(folder: Path) -> None:
    data = bytearray((folder / "model.ts").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the checksum tells
    (folder / "model.ts").write_bytes(bytes(data))


BAD_FOLDERS = [
    ("no-manifest", lambda d: (d / "manifest.json").unlink(), "has no manifest.json"),
    ("truncated-manifest", _truncate_manifest, "manifest.json': malformed JSON at offset"),
    ("other-format", lambda d: _edit_manifest(d, format="something-else"), "is not a deploy-lstm manifest"),
    ("future-version", lambda d: _edit_manifest(d, format_version=2),
     "was written in export format version 2; this runner reads version 1"),
    ("no-artifacts", lambda d: _edit_manifest(d, artifacts=[]), "is incomplete or malformed: no \"artifacts\" object"),
    ("artifact-missing", lambda d: (d / "model.ts").unlink(), "model.ts' is listed in manifest.json but missing"),
    ("artifact-changed", _tamper, "model.ts' does not match its checksum in manifest.json (changed after export?)"),
    ("malformed-recommendation", lambda d: _edit_manifest(d, recommendation={"targets": {"cpp": {"ratio": 1}}}),
     "malformed \"recommendation\""),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_FOLDERS], ids=[c[0] for c in BAD_FOLDERS])
def test_bad_folder(binary: Path, ts_only: Path, tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = copy_folder(ts_only, tmp_path)
    edit(folder)
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 3), np.float32))
    proc = run_cli(binary, folder, tmp_path / "x.npy", "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


# -- a .pt2 package given directly --------------------------------------------------------------------


def test_package_flat_inputs_with_lengths(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, model = exported
    f = feeds(T=11, N=5, seed=5)  # input, h0, c0, lengths: the package's contract order
    proc = run(binary, src / "model.pt2", f, tmp_path, flat=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AOTInductor package, bare LSTM: input, h0, c0, lengths" in proc.stdout, proc.stdout
    assert "deploy_lstm_run: running" not in proc.stderr  # no folder, no choice to report
    check_outputs(tmp_path, nn_lstm(model, f))


def test_package_lstm_form_zero_state_and_full_lengths(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, model = exported
    f = feeds(T=6, N=3, seed=6)
    x = {"input": f["input"]}  # no h0/c0 (zeros), no lengths (every sequence whole)
    proc = run(binary, src / "model.pt2", x, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(h0, c0 zeros)" in proc.stdout, proc.stdout
    check_outputs(tmp_path, nn_lstm(model, x))


def test_package_chunks_equal_one_run(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, model = exported
    f = feeds(T=10, N=2, seed=7)
    x = {"input": f["input"], "h0": f["h0"], "c0": f["c0"]}
    proc = run(binary, src / "model.pt2", x, tmp_path, "--chunk", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "in 4 chunks of up to 3 steps" in proc.stdout, proc.stdout
    check_outputs(tmp_path, nn_lstm(model, x))


def test_package_input_count_checked_against_the_contract(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, _ = exported
    f = feeds(T=4, N=2, seed=8)
    del f["c0"]
    proc = run(binary, src / "model.pt2", f, tmp_path, flat=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: bad input: "), proc.stderr
    assert "takes 4 inputs (input, h0, c0, lengths), got 3" in proc.stderr, proc.stderr
    assert not (tmp_path / "result").exists()


def test_package_h0_of_the_wrong_batch(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, _ = exported
    f = feeds(T=4, N=3, seed=9)
    f["h0"] = f["h0"][:, :2]
    proc = run(binary, src / "model.pt2", f, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "inputs disagree on axis 'batch': input 'input' dim 1 is 3, input 'h0' dim 1 is 2" in proc.stderr


def test_a_folder_without_model_ts_runs_its_package(binary: Path, exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A torch that refuses TorchScript exports no model.ts (tests/test_torchscript_deprecation.py):
    the folder mode runs the .pt2 it has instead."""
    src, model = exported
    folder = copy_folder(src, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["artifacts"]["torchscript"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "model.ts").unlink()
    f = feeds(T=6, N=2, seed=4)
    ran(run(binary, folder, f, tmp_path / "run"), "aoti")
    check_outputs(tmp_path / "run", nn_lstm(model, f))
