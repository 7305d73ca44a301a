"""Hostile files against deploy_lstm_run's readers, and the libFuzzer targets behind them.

What fuzzing the C++ readers found (issue 19, item 9), one test per finding, each driving the
real ``deploy_lstm_run`` on a crafted file: the .npy reader allocated what a header declared
before looking at the file (a 12-byte file took 4.3 GB); numel and the byte size overflowed,
so impossible shapes passed the reader; the JSON reader kept the first of two equal keys (Python
the last); a manifest "file" with a NUL byte or a symlink out of the folder ran a file the
manifest did not name.  Every refusal is exit 1 with one ``error: ...`` line that says what was
expected and what came (the tools' convention: 2 is a bad command line), and the allocation
cases stay small and fast: the child runs under an address-space limit and its peak RSS is
measured.

The last tests build serving/cpp/fuzz (clang, -fsanitize=fuzzer,address,undefined) and run each
target for a bounded time on its committed seed corpus.  Nothing here imports deploy_lstm: the
model is a scripted module defined below and the folders' manifests are written by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
import torch
from torch import Tensor, nn

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FUZZ_DIR = REPO / "serving" / "cpp" / "fuzz"
FUZZ_TARGETS = {"fuzz_npy": "npy", "fuzz_json": "json", "fuzz_folder": "folder"}
FUZZ_SECONDS = 20  # per target; -max_total_time
FUZZ_RSS_MB = 512  # -rss_limit_mb (and libFuzzer's malloc limit)
# What CI installs for the fuzz targets (Debian 12); without it the fuzz tests skip, unless
# DEPLOY_LSTM_REQUIRE_FUZZ=1 makes that a failure.
FUZZ_APT = "apt-get install clang libclang-rt-14-dev"

AS_LIMIT = 2 << 30  # the child's address space: a regression fails inside it, never takes the machine
PEAK_RSS_MB = 300  # deploy_lstm_run with libtorch loaded is ~130 MB
SECONDS = 10.0  # ~0.3 s here; the unfixed reader took 5-15 s on the big cases


# -- running the binary: exit status, stderr, wall time and peak RSS of that one child ---------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


# Forks and execs a program (under an address-space limit, when one is given), reports its exit
# status, wall time and peak RSS.  A small process of its own because Linux counts the pre-exec
# image of a forked child in its ru_maxrss: forked from this test process (torch imported, 500 MB
# and more), every child would report at least that -- and libFuzzer, which reads its own
# ru_maxrss against -rss_limit_mb, would stop at once.
_LAUNCHER = """
import json, os, resource, signal, sys, time
limit, timeout, report, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
start = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.alarm(timeout)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    json.dump({"returncode": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - start,
               "peak_rss_mb": usage.ru_maxrss / 1024}, f)  # ru_maxrss: KiB on Linux
"""


def launch(program: Path, *args: object, timeout: int = 120, as_limit: int = 0, cwd: Optional[Path] = None) -> Run:
    """Run ``program args`` from the small launcher above; ``as_limit``: RLIMIT_AS in bytes (0: none)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, str(as_limit), str(timeout), str(report), str(program),
             *map(str, args)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=timeout + 60, cwd=cwd)
        assert proc.returncode == 0 and report.is_file(), f"launcher failed:\n{proc.stderr}"
        result = json.loads(report.read_text())
    return Run(result["returncode"], proc.stdout, proc.stderr, result["seconds"], result["peak_rss_mb"])


def run_limited(binary: Path, *args: object, timeout: int = 120) -> Run:
    """Run ``binary args`` under an address-space limit of AS_LIMIT: exit status, output, wall time
    and its own peak RSS.  Never a crash: a signal or an uncaught exception fails the test."""
    run = launch(binary, *args, timeout=timeout, as_limit=AS_LIMIT)
    assert run.returncode >= 0, f"killed by signal {-run.returncode}:\n{run.stderr}"
    assert "terminate called" not in run.stderr, run.stderr
    return run


def assert_refused(run: Run, *messages: str) -> None:
    """Exit 1, one ``error: `` line holding every message, small and fast."""
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    for message in messages:
        assert message in run.stderr, run.stderr
    assert run.seconds < SECONDS, f"took {run.seconds:.1f} s: {run.stderr}"
    assert run.peak_rss_mb < PEAK_RSS_MB, f"peak RSS {run.peak_rss_mb:.0f} MB: {run.stderr}"


# -- a model that takes one tensor (a whole model: the input count is checked, then the .npy read) ----


class AddOne(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x + 1


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.ts"
    torch.jit.save(torch.jit.script(AddOne()), str(path))
    return path


# -- the .npy reader ----------------------------------------------------------------------------------


def npy(header: str, data: bytes = b"", major: int = 1) -> bytes:
    """A .npy file with this header text as given (no padding) and these data bytes."""
    h = header.encode("latin-1")
    length = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + length + h + data


def f4(shape: str, data: bytes = b"") -> bytes:
    return npy("{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape, data)


HOSTILE_NPY: List[tuple] = [
    # 12 bytes declaring a 4 GiB version-3 header: was 4.3 GB and 5 s before the error.
    ("header-4GiB", b"\x93NUMPY\x03\x00" + struct.pack("<I", 0xFFFFFFFF),
     ["header shorter than its declared 4294967295 bytes: the file has 0 bytes after its 12-byte prefix"]),
    # 76 bytes declaring 1 Gi float64: was 8.5 GB and 15 s.
    ("f8-1Gi-elements-no-data", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1073741824,), }"),
     ["shape (1073741824,) of float64 needs 8589934592 data bytes, got 0 (truncated file?)"]),
    # 600 MB declared, 1 byte there: fits under the address-space limit, so only the peak RSS tells.
    ("f4-600MB-one-byte", f4("(150000000,)", b"x"),
     ["shape (150000000,) of float32 needs 600000000 data bytes, got 1 (truncated file?)"]),
    # numel wraps to 0 (signed overflow, UBSan): was accepted with 0 data bytes.
    ("numel-overflow", f4("(4294967296, 4294967296, 4)"),
     ["shape (4294967296, 4294967296, 4) of float32 takes more than 2^63-1 bytes"]),
    # numel fits, numel x 4 wraps to 0: was accepted with 0 data bytes.
    ("nbytes-wrap", f4("(4611686018427387904,)"),
     ["shape (4611686018427387904,) of float32 takes more than 2^63-1 bytes"]),
    ("header-over-numpy-limit", f4("(2,)" + " " * 20000, b"\0" * 8),
     ["bytes, expected at most 10000 (numpy's np.load limit)"]),
    ("rank-65", f4("(" + "1, " * 65 + ")", b"\0" * 4), ["'shape' has more than 64 dimensions"]),
    ("newline-in-descr", npy("{'descr': '<f\n4', 'fortran_order': False, 'shape': (), }"),
     ["unsupported .npy dtype '<f\\x0a4'"]),
]


@pytest.mark.parametrize("data,messages", [c[1:] for c in HOSTILE_NPY], ids=[c[0] for c in HOSTILE_NPY])
def test_hostile_npy(binary: Path, model_file: Path, tmp_path: Path, data: bytes, messages: List[str]) -> None:
    (tmp_path / "x.npy").write_bytes(data)
    run = run_limited(binary, model_file, tmp_path / "x.npy", "--out", tmp_path / "o")
    assert_refused(run, f"{tmp_path / 'x.npy'}: ", *messages)
    assert not (tmp_path / "o").exists()


def test_npy_that_is_not_a_regular_file(binary: Path, model_file: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.npy")  # opening it would block: refused before it is opened
    run = run_limited(binary, model_file, tmp_path / "pipe.npy", "--out", tmp_path / "o", timeout=30)
    assert_refused(run, "expected a regular .npy file, got a special file (pipe, device or socket)")
    (tmp_path / "dir.npy").mkdir()
    assert_refused(run_limited(binary, model_file, tmp_path / "dir.npy"), "expected a regular .npy file, got a directory")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npy_versions_still_read(binary: Path, model_file: Path, tmp_path: Path, version, dtype) -> None:  # type: ignore[no-untyped-def]
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    with open(tmp_path / "x.npy", "wb") as f:
        np.lib.format.write_array(f, x, version=version)
    run = run_limited(binary, model_file, tmp_path / "x.npy", "--out", tmp_path / "o")
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "output_0.npy"), x + 1)


# -- the JSON reader, through an export folder's manifest ------------------------------------------


def write_folder(folder: Path, model_file: Path, files: Optional[Dict[str, str]] = None,
                 edit: Callable[[str], str] = lambda text: text, **extra: object) -> Path:
    """An export folder holding ``model_file`` as model.ts and a manifest (folder.py's layout)
    whose artifacts name ``files`` ({kind: file}); ``edit`` rewrites the manifest's text."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, folder / "model.ts")
    data = model_file.read_bytes()
    artifacts = {kind: {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "details": {}}
                 for kind, name in (files or {"torchscript": "model.ts"}).items()}
    manifest = {
        "format": "deploy-lstm-export", "format_version": 1, "created": "2026-01-02T10:20:30+00:00",
        "model": {"kind": "factory", "factory": "tests:add_one"},
        "io": {"inputs": [{"name": "x", "shape": ["batch", 3], "dtype": "float32"}],
               "outputs": [{"name": "y", "shape": ["batch", 3], "dtype": "float32"}]},
        "artifacts": artifacts, "report": {"max_abs_diff": 0.0}, **extra,
    }
    (folder / "manifest.json").write_text(edit(json.dumps(manifest, indent=2)))
    return folder


def run_folder(binary: Path, folder: Path, tmp_path: Path) -> Run:
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    return run_limited(binary, folder, tmp_path / "x.npy", "--out", tmp_path / "o")


def test_folder_as_written_runs(binary: Path, model_file: Path, tmp_path: Path) -> None:
    run = run_folder(binary, write_folder(tmp_path / "f", model_file), tmp_path)
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "output_0.npy"), np.ones((2, 3), np.float32))


BAD_JSON = [
    # C++ kept the first, Python the last: the same file meant two things.
    ("duplicate-key", lambda t: t.replace('"format_version": 1,', '"format_version": 1, "format_version": 2,'),
     'duplicate key "format_version" in an object; expected each key once'),
    ("duplicate-artifact", lambda t: t.replace('"artifacts": {', '"artifacts": {"torchscript": {}, ', 1),
     'duplicate key "torchscript" in an object; expected each key once'),
    ("nan", lambda t: t.replace('"max_abs_diff": 0.0', '"max_abs_diff": NaN'),
     "non-finite number NaN; expected strict JSON (RFC 8259 has no NaN or Infinity"),
    ("infinity", lambda t: t.replace('"max_abs_diff": 0.0', '"max_abs_diff": Infinity'),
     "non-finite number Infinity; expected strict JSON"),
    ("minus-infinity", lambda t: t.replace('"max_abs_diff": 0.0', '"max_abs_diff": -Infinity'),
     "non-finite number -Infinity; expected strict JSON"),
    ("overflowing-number", lambda t: t.replace('"max_abs_diff": 0.0', '"max_abs_diff": 1e999'),
     "bad number '1e999': out of the range of a double"),
    ("leading-zero", lambda t: t.replace('"max_abs_diff": 0.0', '"max_abs_diff": 01'), "bad number '01': leading zero"),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON])
def test_manifest_that_is_not_strict_json(binary: Path, model_file: Path, tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = write_folder(tmp_path / "f", model_file, edit=edit)
    assert_refused(run_folder(binary, folder, tmp_path), "manifest.json': malformed JSON at offset ", message)
    assert not (tmp_path / "o").exists()


# -- the export folder's artifact paths ---------------------------------------------------------------


def _link_outside(folder: Path) -> None:
    outside = folder.parent / "elsewhere"
    outside.mkdir()
    shutil.copy(folder / "model.ts", outside / "model.ts")  # the very bytes the manifest records
    (folder / "linked.ts").symlink_to(Path("..") / "elsewhere" / "model.ts")


BAD_PATHS = [
    # The name was cut at the NUL when opened: model.ts ran under another name.
    ("nul-in-name", "model.ts\0.evil", None, "has file 'model.ts\\x00.evil' (a NUL byte in the name); "
                                            "expected a plain file name inside the folder"),
    ("absolute", "/etc/passwd", None, "has file '/etc/passwd' (an absolute path); expected a plain file name"),
    ("dotdot", "../f/model.ts", None, "has file '../f/model.ts' (a '..' component); expected a plain file name"),
    ("subfolder", "sub/model.ts", None, "has file 'sub/model.ts' (a directory separator); expected a plain file name"),
    # A symlink inside the folder to the same bytes elsewhere: the checksum matched, so it ran.
    ("symlink-outside", "linked.ts", _link_outside, "elsewhere/model.ts', outside the folder"),
]


@pytest.mark.parametrize("name,prepare,message", [c[1:] for c in BAD_PATHS], ids=[c[0] for c in BAD_PATHS])
def test_manifest_path_outside_the_folder(binary: Path, model_file: Path, tmp_path: Path, name: str,
                                          prepare: Optional[Callable[[Path], None]], message: str) -> None:
    folder = write_folder(tmp_path / "f", model_file, {"torchscript": name})
    if prepare is not None:
        prepare(folder)
    assert_refused(run_folder(binary, folder, tmp_path), message)
    assert not (tmp_path / "o").exists()


def test_symlink_inside_the_folder_runs(binary: Path, model_file: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", model_file, {"torchscript": "linked.ts"})
    (folder / "linked.ts").symlink_to("model.ts")
    run = run_folder(binary, folder, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "running torchscript artifact" in run.stderr and "linked.ts" in run.stderr, run.stderr


def test_control_characters_in_a_manifest_stay_on_one_line(binary: Path, model_file: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", model_file, {"torchscript": "model.ts", "torch\nscript": "model.ts"},
                          recommendation={"targets": {"cpp": {"artifact": "ao\nti"}}})
    run = run_folder(binary, folder, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("\n") == 1 and "deploy-lstm bench recommended ao\\x0ati" in run.stderr, run.stderr
    run = run_limited(binary, folder, tmp_path / "x.npy", "--artifact", "aoti")
    assert_refused(run, "has no aoti artifact (it has: torch\\x0ascript, torchscript)")


# -- libFuzzer: build the targets, run each for a bounded time ---------------------------------------


def _libfuzzer_missing(clang: Optional[str], work: Path) -> Optional[str]:
    """Why clang cannot build a libFuzzer target here; None when it can."""
    if clang is None:
        return "no clang++ on PATH"
    (work / "probe.cpp").write_text(
        '#include <cstddef>\n#include <cstdint>\n'
        'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, std::size_t) { return 0; }\n')
    proc = subprocess.run([clang, "-fsanitize=fuzzer,address,undefined", str(work / "probe.cpp"), "-o",
                           str(work / "probe")], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"clang++ cannot link -fsanitize=fuzzer: {proc.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def fuzzers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """serving/cpp/fuzz built with clang; the build directory."""
    build = tmp_path_factory.mktemp("fuzz-build")
    clang = shutil.which("clang++")
    why = _libfuzzer_missing(clang, build)
    if why is not None:
        message = f"{why}; the fuzz targets need clang with libFuzzer ({FUZZ_APT})"
        if os.environ.get("DEPLOY_LSTM_REQUIRE_FUZZ") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cmake, ninja = shutil.which("cmake"), shutil.which("ninja")
    if not (cmake and ninja):
        pytest.fail("cmake and ninja are needed to build the fuzz targets (pip install cmake ninja)")
    for cmd in ([cmake, "-S", str(FUZZ_DIR), "-B", str(build), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                 f"-DCMAKE_CXX_COMPILER={clang}"],
                [cmake, "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"fuzz build step failed ({' '.join(cmd)}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return build


@pytest.mark.parametrize("target", sorted(FUZZ_TARGETS))
def test_fuzz_target(fuzzers: Path, tmp_path: Path, target: str) -> None:
    seeds = FUZZ_DIR / "corpus" / FUZZ_TARGETS[target]
    assert len(list(seeds.iterdir())) >= 10, f"seed corpus {seeds} is missing (python {FUZZ_DIR / 'make_corpus.py'})"
    corpus = tmp_path / "corpus"  # new inputs go here, never into the committed seeds
    corpus.mkdir()
    run = launch(fuzzers / target, f"-max_total_time={FUZZ_SECONDS}", f"-rss_limit_mb={FUZZ_RSS_MB}", "-timeout=10",
                 f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", corpus, seeds,
                 timeout=FUZZ_SECONDS + 120, cwd=tmp_path)
    tail = run.stderr[-6000:]
    assert run.returncode == 0, f"{target} found a crash (reproducer in {tmp_path}):\n{tail}"
    assert "ERROR: libFuzzer" not in run.stderr and "SUMMARY: " not in run.stderr, tail
    assert "stat::number_of_executed_units" in run.stderr, tail
