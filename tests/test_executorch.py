"""ExecuTorch (model.pte): streamed chunk by chunk, carrying the state, equal to nn.LSTM over the
whole sequence; every matmul on XNNPACK; run in Python (ExecutorchRunner) and by the C++ pte_run
(serving/cpp/executorch, no libtorch).  Each program is lowered once per session (20-60 s on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch

import deploy_lstm
from deploy_lstm import LSTM
from deploy_lstm.errors import ConfigError, ExportError, LSTMInputError
from deploy_lstm.exporters.executorch import export_executorch, lowered_program, undelegated_ops
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.pipeline import export_folder
from deploy_lstm.runtime.executorch import ExecutorchRunner

pytestmark = pytest.mark.slow

CPP_DIR = Path(__file__).resolve().parents[1] / "serving" / "cpp" / "executorch"
MATMULS = ("addmm", "aten.mm", "bmm", "linear", "matmul")  # what must never run outside XNNPACK


@pytest.fixture(scope="session")
def pte_folder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(folder, report, nn.LSTM with its weights): LSTM(5, 8, 2, proj_size=3), chunk 3, batch 2."""
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 8, 2, proj_size=3).eval()
    folder, report = export_folder(
        LSTM.from_torch(ref), tmp_path_factory.mktemp("pte") / "out", artifacts=("executorch",), pte_chunk=3, pte_batch=2
    )
    return folder, report, ref


@pytest.fixture(scope="session")
def batch_first_pte(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, torch.nn.LSTM]:
    """(a bare .pte, nn.LSTM): batch_first LSTM(4, 6), chunk 2, batch 1."""
    torch.manual_seed(1)
    ref = torch.nn.LSTM(4, 6, batch_first=True).eval()
    path = export_executorch(LSTM.from_torch(ref), tmp_path_factory.mktemp("pte_bf") / "model.pte", chunk=2, batch=1)
    return path, ref


def _state(ref: torch.nn.LSTM, batch: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A non-zero initial (h0, c0)."""
    g = torch.Generator().manual_seed(seed)
    P = ref.proj_size or ref.hidden_size
    return torch.randn(ref.num_layers, batch, P, generator=g), torch.randn(ref.num_layers, batch, ref.hidden_size, generator=g)


def test_export_folder_validates_chained_chunks(pte_folder) -> None:  # type: ignore[no-untyped-def]
    folder, report, _ = pte_folder
    assert report.passed, report.table()
    checks = {(c.reference, c.output): c for c in report.checks if c.backend == "executorch"}
    assert set(checks) == {(r, o) for r in ("deploy_lstm eager", "torch.nn.LSTM") for o in ("output", "hn", "cn")}
    assert all(c.max_abs <= 1e-5 and c.atol == 1e-5 for c in checks.values())
    # one step (the remainder alone), one chunk, three chunks, seven chunks and a remainder
    assert [c for c in report.cases if c.startswith("executorch")] == [f"executorch: batch=2 sequence={T}" for T in (1, 3, 9, 23)]
    entry = deploy_lstm.load(folder.path).artifacts["executorch"]
    assert entry.file == "model.pte" and entry.details["chunk"] == 3 and entry.details["batch"] == 2
    assert entry.details["methods"] == {"forward": 3, "step": 1}


@pytest.mark.parametrize("T", [1, 2, 3, 10, 14])
def test_runner_over_any_length_equals_nn_lstm(pte_folder, T: int) -> None:  # type: ignore[no-untyped-def]
    folder, _, ref = pte_folder
    runner = deploy_lstm.load(folder.path).runner("executorch")
    x = torch.randn(T, 2, 5, generator=torch.Generator().manual_seed(T))
    h0, c0 = _state(ref, 2, T)
    y, hn, cn = runner(x, h0, c0)
    with torch.no_grad():
        want_y, (want_h, want_c) = ref(x, (h0, c0))
    for got, want in ((y, want_y), (hn, want_h), (cn, want_c)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_stream_carries_the_state(pte_folder) -> None:  # type: ignore[no-untyped-def]
    folder, _, ref = pte_folder
    runner = deploy_lstm.load(folder.path).runner("executorch")
    x = torch.randn(11, 2, 5, generator=torch.Generator().manual_seed(7))
    h0, c0 = _state(ref, 2, 7)
    stream = runner.stream(batch=2, h0=h0, c0=c0)
    pieces = [stream.push(x[0:4].numpy()), stream.push(x[4:5].numpy()), stream.push(x[5:10].numpy()), stream.step(x[10].numpy())[None]]
    with torch.no_grad():
        want_y, (want_h, want_c) = ref(x, (h0, c0))
    np.testing.assert_allclose(np.concatenate(pieces), want_y.numpy(), atol=1e-5, rtol=0)
    h, c = stream.state
    np.testing.assert_allclose(h, want_h.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c, want_c.numpy(), atol=1e-5, rtol=0)
    assert stream.steps == 11


def test_runner_refuses_another_batch(pte_folder) -> None:  # type: ignore[no-untyped-def]
    runner = deploy_lstm.load(pte_folder[0].path).runner("executorch")
    with pytest.raises(LSTMInputError, match=r"runs batch 2 .*got input \(4, 3, 5\) \(batch 3, 4 steps\)"):
        runner(np.zeros((4, 3, 5), np.float32))


def test_batch_first_program(batch_first_pte) -> None:  # type: ignore[no-untyped-def]
    path, ref = batch_first_pte
    runner = ExecutorchRunner(path, LSTMConfig.of(LSTM.from_torch(ref)), chunk=2, batch=1)
    x = torch.randn(1, 7, 4, generator=torch.Generator().manual_seed(3))  # (N, T, I): 3 chunks and a step
    h0, c0 = _state(ref, 1, 3)
    y, hn, cn = runner(x, h0, c0)
    with torch.no_grad():
        want_y, (want_h, want_c) = ref(x, (h0, c0))
    for got, want in ((y, want_y), (hn, want_h), (cn, want_c)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_every_matmul_goes_to_xnnpack() -> None:
    torch.manual_seed(2)
    edge = lowered_program(LSTM(4, 6, num_layers=2, proj_size=3), chunk=2, batch=1)
    left = undelegated_ops(edge)
    assert set(left) == {"forward", "step"}
    for method, ops in left.items():
        outside = [op for op in ops if any(m in op for m in MATMULS)]
        assert not outside, f"{method}: {len(outside)} matmuls outside the XNNPACK delegate: {outside}"


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (lambda: LSTM(3, 4, bidirectional=True), {}, "bidirectional LSTM cannot be exported to ExecuTorch: the program streams chunk by chunk"),
        (lambda: LSTM(3, 4, cell="peephole"), {}, "cell='peephole' has no ExecuTorch export"),
        (lambda: LSTM(3, 4).double(), {}, "needs float32 weights"),
        (lambda: torch.nn.LSTM(3, 4), {}, "convert it first: deploy_lstm.LSTM.from_torch"),
        (lambda: LSTM(3, 4), {"chunk": 0}, "expected chunk >= 1"),
        (lambda: LSTM(3, 4), {"batch": 1.5}, "expected batch >= 1"),
    ],
)
def test_refused_with_the_reason(tmp_path: Path, make, kwargs, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match=message.replace("(", r"\(")):
        export_executorch(make(), tmp_path / "model.pte", **kwargs)
    assert not (tmp_path / "model.pte").exists()


def test_lengths_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.pte streams whole chunks: it has no lengths input"):
        export_folder(LSTM(3, 4), tmp_path / "out", artifacts=("executorch",), lengths=True)
    assert not (tmp_path / "out").exists()


# -- C++: serving/cpp/executorch, built against the executorch wheel's CMake package -----------------


def _cmake_version(cmake: str) -> Tuple[int, ...]:
    out = subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout.split()
    return tuple(int(p) for p in out[2].split(".")[:2]) if len(out) > 2 else (0,)


def _cmake() -> str:
    """A CMake >= 3.28 (executorch's imported targets need it): $EXECUTORCH_CMAKE, the one on PATH,
    or pip's, installed into <venv>/tools/cmake (off PATH, so other projects keep the system's)."""
    for candidate in (os.environ.get("EXECUTORCH_CMAKE"), shutil.which("cmake")):
        if candidate and _cmake_version(candidate) >= (3, 28):
            return candidate
    target = Path(sys.prefix) / "tools" / "cmake"
    binary = target / "cmake" / "data" / "bin" / "cmake"
    if not binary.exists():
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--target", str(target), "cmake>=3.28"], capture_output=True, text=True)
        assert proc.returncode == 0, f"pip install --target {target} cmake failed:\n{proc.stderr[-3000:]}"
    return str(binary)


def executorch_prefix() -> str:
    import importlib.util

    spec = importlib.util.find_spec("executorch")
    assert spec is not None and spec.submodule_search_locations, "the executorch package is not installed"
    return list(spec.submodule_search_locations)[0]


@pytest.fixture(scope="session")
def pte_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build folder holding pte_run and pte_bench."""
    root = os.environ.get("DEPLOY_LSTM_CPP_BUILD_DIR")
    build = Path(root) / "executorch" if root else tmp_path_factory.mktemp("pte_build")
    cmake = _cmake()
    for cmd in (
        [cmake, "-S", str(CPP_DIR), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={executorch_prefix()}"],
        [cmake, "--build", str(build), "-j", "2"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return build


def _run(tool: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_pte_run_streams_a_folder_equal_to_nn_lstm(pte_folder, pte_tools: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, _, ref = pte_folder
    x = torch.randn(10, 2, 5, generator=torch.Generator().manual_seed(5))  # three chunks and a step
    h0, c0 = _state(ref, 2, 5)
    for name, t in (("x", x), ("h0", h0), ("c0", c0)):
        np.save(tmp_path / f"{name}.npy", t.numpy())
    proc = _run(pte_tools / "pte_run", folder.path, tmp_path / "x.npy", "--h0", tmp_path / "h0.npy", "--c0", tmp_path / "c0.npy", "--out", tmp_path / "r_")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    with torch.no_grad():
        want_y, (want_h, want_c) = ref(x, (h0, c0))
    for name, want in (("output", want_y), ("hn", want_h), ("cn", want_c)):
        np.testing.assert_allclose(np.load(tmp_path / f"r_{name}.npy"), want.numpy(), atol=1e-5, rtol=0)


def test_pte_run_bare_batch_first_program(batch_first_pte, pte_tools: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, ref = batch_first_pte
    x = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(6))
    np.save(tmp_path / "x.npy", x.numpy())
    proc = _run(pte_tools / "pte_run", path, tmp_path / "x.npy", "--batch-first", "--out", tmp_path / "r_")
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        want_y, (want_h, want_c) = ref(x)
    for name, want in (("output", want_y), ("hn", want_h), ("cn", want_c)):
        np.testing.assert_allclose(np.load(tmp_path / f"r_{name}.npy"), want.numpy(), atol=1e-5, rtol=0)


def _bad_cases(folder: Path, tmp: Path) -> List[Tuple[List[object], str]]:
    np.save(tmp / "wrong_batch.npy", np.zeros((4, 3, 5), np.float32))
    np.save(tmp / "float64.npy", np.zeros((4, 2, 5)))
    np.save(tmp / "x.npy", np.zeros((4, 2, 5), np.float32))
    np.save(tmp / "bad_h0.npy", np.zeros((2, 2, 8), np.float32))
    tampered = tmp / "tampered"
    shutil.copytree(folder, tampered)
    with open(tampered / "model.pte", "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    return [
        ([folder], "expected MODEL and INPUT, got 1 arguments"),
        ([folder, tmp / "x.npy", "--h0", tmp / "x.npy"], "give --h0 and --c0 together"),
        ([folder, tmp / "x.npy", "--frobnicate"], "unknown option --frobnicate"),
        ([folder, tmp / "wrong_batch.npy"], "expected float32 (T, 2, 5) with T >= 1 (the program's batch and input_size), got float32 (4, 3, 5)"),
        ([folder, tmp / "float64.npy"], "got float64 (4, 2, 5)"),
        ([folder, tmp / "x.npy", "--h0", tmp / "bad_h0.npy", "--c0", tmp / "bad_h0.npy"], "h0 " + str(tmp / "bad_h0.npy") + ": expected float32 (2, 2, 3)"),
        ([folder, tmp / "missing.npy"], "missing.npy"),
        ([tampered, tmp / "x.npy"], "model.pte"),
        ([tmp / "x.npy", tmp / "x.npy"], "cannot load the ExecuTorch program"),
    ]


def test_pte_run_refuses_with_exit_2_and_one_line(pte_folder, pte_tools: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for args, message in _bad_cases(pte_folder[0].path, tmp_path):
        proc = _run(pte_tools / "pte_run", *args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("pte_run: error: "), (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)


def test_pte_tools_need_no_libtorch(pte_folder, pte_tools: Path) -> None:  # type: ignore[no-untyped-def]
    for tool in ("pte_run", "pte_bench"):
        ldd = subprocess.run(["ldd", str(pte_tools / tool)], capture_output=True, text=True, check=True).stdout
        assert "libexecutorch.so" in ldd and "libexecutorch_backend_xnnpack.so" in ldd, ldd
        assert "libtorch" not in ldd and "libc10" not in ldd, ldd
    proc = _run(pte_tools / "pte_bench", pte_folder[0].path, "--iters", "20", "--warmup", "5")
    assert proc.returncode == 0, proc.stderr
    assert '"chunk": 3, "batch": 2, "iters": 20' in proc.stdout


def test_cli_exports_onnx_and_executorch(tmp_path: Path) -> None:
    """The acceptance command: deploy-lstm export CKPT --artifacts onnx,executorch (chunk 2: a remainder step)."""
    torch.manual_seed(4)
    ref = torch.nn.LSTM(3, 5).eval()
    torch.save(ref.state_dict(), tmp_path / "lstm.pt")
    proc = subprocess.run(
        [sys.executable, "-m", "deploy_lstm.cli", "export", str(tmp_path / "lstm.pt"), "--artifacts", "onnx,executorch",
         "--pte-chunk", "2", "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = deploy_lstm.load(tmp_path / "out")
    assert folder.has("onnx") and folder.artifacts["executorch"].details["chunk"] == 2
    assert any(c["backend"] == "executorch" and c["passed"] for c in folder.report["checks"])
    x = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = ref(x)[0]
    torch.testing.assert_close(folder.runner("executorch")(x)[0], want, atol=1e-5, rtol=0)


def test_export_without_executorch_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now fails
    with pytest.raises(ExportError, match=r"needs the executorch package: pip install 'deploy-lstm\[executorch\]'"):
        export_executorch(LSTM(3, 4), tmp_path / "model.pte")
    assert not (tmp_path / "model.pte").exists()
