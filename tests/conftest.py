"""Shared, general test helpers: tolerances, the nn.LSTM oracle, the C++ build.

Helpers are fixtures (not imports from conftest) so test files need no
``sys.path`` assumptions.  The fixtures are session-scoped so Hypothesis tests can
use them too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Max abs difference allowed against the nn.LSTM oracle (rtol 0: absolute only).
TOLERANCES: Dict[torch.dtype, Dict[str, float]] = {
    torch.float32: {"atol": 1e-5, "rtol": 0.0},
    torch.float64: {"atol": 1e-10, "rtol": 0.0},
}


@pytest.fixture(scope="session")
def tol() -> Callable[[torch.dtype], Dict[str, float]]:
    """``tol(dtype)`` -> kwargs for ``torch.testing.assert_close``."""
    return lambda dtype: TOLERANCES[dtype]


def _run(
    module: nn.Module,
    x: Tensor,
    hx: Optional[Tuple[Tensor, Tensor]],
    lengths: Optional[Tensor],
    oracle: bool,
    seed: int,
) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """Forward + backward of a random linear functional of (output, h_n, c_n).

    Returns (values, grads): values of output/h_n/c_n; grads of input, h0, c0 and
    every parameter by name.
    """
    x = x.detach().clone().requires_grad_(True)
    if hx is not None:
        hx = tuple(t.detach().clone().requires_grad_(True) for t in hx)  # type: ignore[assignment]
    module.zero_grad(set_to_none=True)
    batch_first = bool(getattr(module, "batch_first", False))
    if oracle and lengths is not None:
        # nn.LSTM on a packed batch, padded back to the full length T.
        T = x.size(1) if batch_first else x.size(0)
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out_p, (h_n, c_n) = module(packed, hx)
        output, _ = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)
    elif lengths is not None:
        output, (h_n, c_n) = module(x, hx, lengths)
    else:
        output, (h_n, c_n) = module(x, hx)
    values = {"output": output, "h_n": h_n, "c_n": c_n}
    gen = torch.Generator().manual_seed(seed)
    loss = sum(
        (v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum() for v in values.values()
    )
    loss.backward()
    grads = {"input": x.grad}
    if hx is not None:
        grads["h0"] = hx[0].grad
        grads["c0"] = hx[1].grad
    for name, p in module.named_parameters():
        grads[name] = p.grad
    return {k: v.detach() for k, v in values.items()}, grads


@pytest.fixture(scope="session")
def assert_lstm_parity() -> Callable[..., None]:
    """``assert_lstm_parity(ours, ref, x, hx=None, lengths=None)``.

    Runs ``ours(x, hx, lengths)`` and the oracle ``ref`` (an ``nn.LSTM`` with the
    same weights; packed with ``enforce_sorted=False`` when ``lengths`` is given),
    then compares output, h_n, c_n and the gradients of input, h0, c0 and every
    parameter by name, at the tolerance of ``x.dtype``.
    """

    def check(
        ours: nn.Module,
        ref: nn.LSTM,
        x: Tensor,
        hx: Optional[Tuple[Tensor, Tensor]] = None,
        lengths: Optional[Tensor] = None,
        seed: int = 0,
    ) -> None:
        got_v, got_g = _run(ours, x, hx, lengths, oracle=False, seed=seed)
        want_v, want_g = _run(ref, x, hx, lengths, oracle=True, seed=seed)
        kw = TOLERANCES[x.dtype]
        for key in want_v:
            torch.testing.assert_close(got_v[key], want_v[key], **kw, msg=lambda m, k=key: f"{k}: {m}")
        assert sorted(got_g) == sorted(want_g), "gradient keys differ"
        for key in want_g:
            assert got_g[key] is not None, f"no gradient for {key}"
            torch.testing.assert_close(got_g[key], want_g[key], **kw, msg=lambda m, k=key: f"grad {k}: {m}")

    return check


def _pad_past_lengths(x: Tensor, lengths: Tensor, batch_first: bool = False) -> Tensor:
    """A copy of ``x`` whose steps past each length hold NaN, +inf and -inf (common padding)."""
    x = x.clone()
    fill = (float("nan"), float("inf"), float("-inf"))
    for n, L in enumerate(lengths.tolist()):
        if batch_first:
            x[n, L:] = fill[n % 3]
        else:
            x[L:, n] = fill[n % 3]
    return x


@pytest.fixture(scope="session")
def pad_past_lengths() -> Callable[..., Tensor]:
    """``pad_past_lengths(x, lengths, batch_first=False)``: NaN/inf written past each length."""
    return _pad_past_lengths


# -- the C++ programs (serving/cpp): built once per session, for every test file that runs them ---

CPP_TOOLS = ["deploy_lstm_run", "seq2seq_greedy", "stream_bench"]


def _build_tools() -> Tuple[str, str]:
    """Paths of cmake and ninja; installed from PyPI into this interpreter if missing."""
    cmake, ninja = shutil.which("cmake"), shutil.which("ninja")
    if cmake and ninja:
        return cmake, ninja
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "cmake", "ninja"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cmake/ninja missing and `pip install cmake ninja` failed:\n{proc.stderr[-3000:]}")
    scripts = Path(sysconfig.get_path("scripts"))
    cmake = cmake or shutil.which("cmake", path=str(scripts))
    ninja = ninja or shutil.which("ninja", path=str(scripts))
    if not (cmake and ninja):
        pytest.fail(f"installed cmake and ninja from PyPI but cannot find them in {scripts}")
    return cmake, ninja


def cpp_build_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where to build a C++ project: a fresh temporary directory, or with DEPLOY_LSTM_CPP_BUILD_DIR
    set, ``$DEPLOY_LSTM_CPP_BUILD_DIR/<name>-torch-<version>``, kept between sessions so that the
    build (always run) is incremental; one directory per torch version, as CMake caches Torch_DIR,
    and emptied when the ``cmake`` that configured it is gone (its path is in the build rules)."""
    root = os.environ.get("DEPLOY_LSTM_CPP_BUILD_DIR")
    if not root:
        return tmp_path_factory.mktemp(name)
    build = Path(root) / f"{name}-torch-{torch.__version__}"
    cache = build / "CMakeCache.txt"
    if cache.is_file():
        recorded = [line.split("=", 1)[1] for line in cache.read_text().splitlines()
                    if line.startswith("CMAKE_COMMAND:INTERNAL=")]
        if not recorded or not Path(recorded[0]).is_file():
            shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    return build


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configure and build serving/cpp once per session; the path of deploy_lstm_run (the other
    programs of :data:`CPP_TOOLS` beside it)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.fail("no C++ compiler on PATH (need g++ or clang++; C++17, or C++20 for torch >= 2.14)")
    cmake, ninja = _build_tools()
    build = cpp_build_dir(tmp_path_factory, "cpp-build")
    steps = [
        [
            cmake, "-S", str(Path(__file__).resolve().parents[1] / "serving" / "cpp"), "-B", str(build), "-G", "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={ninja}",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
        ],
        [cmake, "--build", str(build), "--target", *CPP_TOOLS, "-j", "2"],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"C++ build step failed ({' '.join(cmd)}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    for tool in CPP_TOOLS:
        assert (build / tool).is_file(), f"build succeeded but {build / tool} is missing"
    return build / "deploy_lstm_run"


# --- a real tritonserver's own environment ------------------------------------------------------

#: what the tritonserver venv holds: the server binary (nvidia-pytriton, which pins numpy<2) and
#: what the onnxruntime stand-in backend imports; never installed beside the library
TRITON_REQUIREMENTS = ["nvidia-pytriton==0.7.0", "onnxruntime>=1.20", "numpy<2"]


@pytest.fixture(scope="session")
def triton_env() -> Callable[[], Path]:
    """The python of a venv holding tritonserver (``$DEPLOY_LSTM_TRITON_VENV``, else
    ``.venv-triton`` beside the repository; ``.ci/run`` makes it), created on first use when
    missing.  A call, so only the tests that start tritonserver pay for it."""

    def python() -> Path:
        venv = Path(os.environ.get("DEPLOY_LSTM_TRITON_VENV", Path(__file__).resolve().parent.parent / ".venv-triton"))
        exe = venv / "bin" / "python"
        probe = [str(exe), "-c", "import pytriton, onnxruntime, numpy"]
        if exe.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return exe
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(exe), "-m", "pip", "install", "--quiet", *TRITON_REQUIREMENTS], capture_output=True, text=True)
        if pip.returncode != 0:  # CI must run the real server: there it fails, elsewhere it skips
            why = f"cannot install tritonserver's venv at {venv}: {pip.stderr.strip().splitlines()[-1:]}"
            (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
        return exe

    return python


# --- KServe's Python SDK in its own environment ----------------------------------------------------

#: KServe's SDK (~450 MB: kubernetes, pandas, ...) for its own clients (tests/test_kserve.py); never beside the library
KSERVE_REQUIREMENTS = ["kserve==0.21.*"]


@pytest.fixture(scope="session")
def kserve_env() -> Callable[[], Path]:
    """The python of a venv holding KServe's SDK (``$DEPLOY_LSTM_KSERVE_VENV``, else
    ``.venv-kserve`` beside the repository; ``.ci/run`` makes it), created on first use when
    missing.  A call, so only the tests that run KServe's clients pay for it."""

    def python() -> Path:
        venv = Path(os.environ.get("DEPLOY_LSTM_KSERVE_VENV", Path(__file__).resolve().parent.parent / ".venv-kserve"))
        exe = venv / "bin" / "python"
        if exe.exists() and subprocess.run([str(exe), "-c", "import kserve"], capture_output=True).returncode == 0:
            return exe
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(exe), "-m", "pip", "install", "--quiet", *KSERVE_REQUIREMENTS], capture_output=True, text=True)
        if pip.returncode != 0:  # CI must run KServe's clients: there it fails, elsewhere it skips
            why = f"cannot install KServe's venv at {venv}: {pip.stderr.strip().splitlines()[-1:]}"
            (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
        return exe

    return python
