"""AOTInductor packages: dynamic sequence and batch, checked against nn.LSTM.

Bare LSTMs and whole models (the language model of export/export_language_model.py,
a model mixing both routes) are each compiled once per session (5-10 s each with the
``fused`` route, about 25 s with ``scan``, on 2 cores) and run -- in Python and
through the C++ runner serving/cpp/aoti -- at shapes other than the export example.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

import deploy_lstm
from deploy_lstm import LSTM
from deploy_lstm.exporters.aoti import export_aoti
from deploy_lstm.formats.metadata import ArtifactMetadata
from deploy_lstm.errors import ExportError
from deploy_lstm.nn.ops import FUSED_LSTM_SCHEMA

pytestmark = pytest.mark.slow

INPUT_SIZE, HIDDEN_SIZE = 5, 6


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(package path, nn.LSTM with the same weights, loaded package)."""
    torch.manual_seed(0)
    model = LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    ref = torch.nn.LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    ref.load_state_dict(model.state_dict())
    path = export_aoti(model, tmp_path_factory.mktemp("aoti") / "model.pt2")
    return path, ref, torch._inductor.aoti_load_package(str(path))


@pytest.mark.parametrize("T, N", [(1, 1), (11, 4), (2, 9)])
def test_matches_nn_lstm(compiled, T: int, N: int) -> None:  # type: ignore[no-untyped-def]
    _, ref, runner = compiled
    g = torch.Generator().manual_seed(T * 100 + N)
    x = torch.randn(T, N, INPUT_SIZE, generator=g)  # (T, N, F)
    h0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)  # (D, N, H)
    c0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    output, hn, cn = runner(x, h0, c0)
    with torch.no_grad():
        expected, (ehn, ecn) = ref(x, (h0, c0))
    assert output.shape == (T, N, 2 * HIDDEN_SIZE)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(hn, ehn, atol=1e-5, rtol=0)
    torch.testing.assert_close(cn, ecn, atol=1e-5, rtol=0)


def test_rejects_nn_lstm(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"is a torch.nn.LSTM.*convert it first: model = deploy_lstm.swap_lstms"):
        export_aoti(torch.nn.LSTM(2, 3), tmp_path / "m.pt2")  # type: ignore[arg-type]


# --- the C++ runner (serving/cpp/aoti) -----------------------------------------------

CPP_DIR = Path(__file__).resolve().parent.parent / "serving" / "cpp" / "aoti"


# The runner's tensor files: the extension gives the dtype.
EXTENSIONS = {".bin": np.float32, ".f32": np.float32, ".f64": np.float64, ".i64": np.int64}


def _write(path: Path, t: torch.Tensor) -> None:
    """The runner's tensor file: int64 ndim, int64 dims, then the raw data (dtype as the extension says)."""
    assert np.dtype(EXTENSIONS[path.suffix]) == t.numpy().dtype, f"{path.name} cannot hold {t.dtype}"
    header = torch.tensor([t.dim(), *t.shape], dtype=torch.int64)
    path.write_bytes(header.numpy().tobytes() + t.contiguous().numpy().tobytes())


def _read(path: Path) -> torch.Tensor:
    raw = path.read_bytes()
    ndim = int(np.frombuffer(raw[:8], dtype=np.int64)[0])
    dims = np.frombuffer(raw[8 : 8 + 8 * ndim], dtype=np.int64).tolist()
    data = np.frombuffer(raw[8 + 8 * ndim :], dtype=EXTENSIONS[path.suffix]).copy()
    return torch.from_numpy(data).reshape(dims)


@pytest.fixture(scope="session")
def aoti_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("aoti_build")
    for cmd in (
        ["cmake", "-S", str(CPP_DIR), "-B", str(build), "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        ["cmake", "--build", str(build), "-j", "2"],
    ):  # one build per session, shared by the bare-LSTM and whole-model tests
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return build / "aoti_run"


def test_cpp_runner_matches_nn_lstm(compiled, aoti_run: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    package, ref, _ = compiled
    T, N = 11, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, N, INPUT_SIZE, generator=g)
    h0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    c0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    files = []
    for name, t in (("input", x), ("h0", h0), ("c0", c0)):
        files.append(tmp_path / f"{name}.bin")
        _write(files[-1], t)
    proc = subprocess.run(
        [str(aoti_run), str(package), *map(str, files), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        expected, (ehn, ecn) = ref(x, (h0, c0))
    for i, e in enumerate((expected, ehn, ecn)):
        torch.testing.assert_close(_read(tmp_path / f"out{i}.bin"), e, atol=1e-5, rtol=0)


@pytest.fixture(scope="session")
def compiled_proj(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Projection, 2 layers, batch_first, lengths: the Scan-only configuration."""
    torch.manual_seed(1)
    model = LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, proj_size=4, batch_first=True).eval()
    return model, export_aoti(model, tmp_path_factory.mktemp("aoti-proj") / "model.pt2", lengths=True)


def test_validate_reports_the_package_against_nn_lstm(compiled_proj, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import deploy_lstm

    model, path = compiled_proj
    loads = []
    real = torch._inductor.aoti_load_package
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda p, *a, **k: loads.append(p) or real(p, *a, **k))
    model.train()
    report = deploy_lstm.validate(model, aoti_path=path)
    assert len(loads) == 1, f"the package was loaded {len(loads)} times"
    assert model.training, "validate switched the caller's model to eval mode"
    model.eval()
    assert report.passed, "\n" + report.table()
    assert {c.reference for c in report.checks if c.backend == "aotinductor"} == {"deploy_lstm eager", "torch.nn.LSTM"}
    assert any("lengths" in c for c in report.cases)


def test_nan_and_inf_padding_never_reach_the_result(compiled_proj, pad_past_lengths) -> None:  # type: ignore[no-untyped-def]
    """Values past each length (NaN, inf) change nothing: the same result as nn.LSTM on a packed batch."""
    model, path = compiled_proj
    runner = torch._inductor.aoti_load_package(str(path))
    N, T = 4, 9
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([9, 3, 1, 6])
    x = pad_past_lengths(torch.randn(N, T, INPUT_SIZE, generator=g), lengths, batch_first=True)
    h0 = torch.randn(2, N, 4, generator=g)
    c0 = torch.randn(2, N, HIDDEN_SIZE, generator=g)
    output, hn, cn = runner(x, h0, c0, lengths)
    ref = model.to_torch().eval()
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out_p, (ehn, ecn) = ref(packed, (h0, c0))
        expected, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=T)
    assert torch.isfinite(output).all() and torch.isfinite(hn).all() and torch.isfinite(cn).all()
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(hn, ehn, atol=1e-5, rtol=0)
    torch.testing.assert_close(cn, ecn, atol=1e-5, rtol=0)


# --- a whole model: the word language model, forward(input, (h0, c0)) -----------------------

LM_SCRIPT = Path(__file__).resolve().parent.parent / "export" / "export_language_model.py"
NTOKEN, NHID, NLAYERS = 40, 12, 2


@pytest.fixture(scope="session")
def lm_package(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(the original eager model with nn.LSTM, its .pt2 package), exported as the user has it."""
    spec = importlib.util.spec_from_file_location("export_language_model", LM_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    torch.manual_seed(0)
    original = script.RNNModel(NTOKEN, NHID, NHID, NLAYERS).eval()
    model = deploy_lstm.swap_lstms(copy.deepcopy(original))
    example = (torch.randint(0, NTOKEN, (7, 3)), model.init_hidden(3))  # (input, (h0, c0))
    path = deploy_lstm.export_aoti(
        model, tmp_path_factory.mktemp("aoti-lm") / "lm.pt2", example_inputs=example,
        input_names=script.INPUT_NAMES, output_names=script.OUTPUT_NAMES, dynamic_axes=script.DYNAMIC_AXES,
    )
    return original, path


def _lm_inputs(T: int, N: int, seed: int) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, NTOKEN, (T, N), generator=g), torch.randn(NLAYERS, N, NHID, generator=g),
            torch.randn(NLAYERS, N, NHID, generator=g)]


@pytest.mark.parametrize("T, N", [(13, 5), (1, 1)])
def test_cpp_runner_runs_whole_language_model(lm_package, aoti_run: Path, tmp_path: Path, T: int, N: int) -> None:  # type: ignore[no-untyped-def]
    original, package = lm_package
    tokens, h0, c0 = _lm_inputs(T, N, seed=T * 100 + N)
    files = [tmp_path / "input.i64", tmp_path / "h0.bin", tmp_path / "c0.bin"]
    for f, t in zip(files, (tokens, h0, c0)):
        _write(f, t)
    proc = subprocess.run(
        [str(aoti_run), str(package), *map(str, files), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "out0.bin: logits" in proc.stdout, proc.stdout
    with torch.no_grad():
        logits, (hn, cn) = original(tokens, (h0, c0))
    errs = {}
    for i, (name, want) in enumerate((("logits", logits), ("hn", hn), ("cn", cn))):
        got = _read(tmp_path / f"out{i}.bin")
        assert got.shape == want.shape, f"{name}: {tuple(got.shape)} != {tuple(want.shape)}"
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m, k=name: f"{k}: {m}")
        errs[name] = (got - want).abs().max().item()
    print(f"aoti_run language model T={T} N={N}: max abs error vs the original nn.LSTM model {errs}")


BAD_AOTI_INPUTS = [
    ("two-of-three", lambda t: [("input.i64", t[0]), ("h0.bin", t[1])], "takes 3 inputs (input, h0, c0), got 2"),
    ("float-tokens", lambda t: [("input.bin", t[0].float()), ("h0.bin", t[1]), ("c0.bin", t[2])],
     "expected input 'input' of dtype int64, got float32"),
    ("h0-wrong-batch", lambda t: [("input.i64", t[0]), ("h0.bin", t[1][:, :2]), ("c0.bin", t[2])],
     "inputs disagree on axis 'batch': input 'input' dim 1 is 3, input 'h0' dim 1 is 2"),
    ("h0-rank-2", lambda t: [("input.i64", t[0]), ("h0.bin", t[1][0]), ("c0.bin", t[2])],
     "expected input 'h0' of shape (2, batch, 12) (rank 3), got rank 2 shape (3, 12)"),
]


@pytest.mark.parametrize("files,message", [c[1:] for c in BAD_AOTI_INPUTS], ids=[c[0] for c in BAD_AOTI_INPUTS])
def test_cpp_runner_checks_inputs_against_the_package(lm_package, aoti_run: Path, tmp_path: Path, files,  # type: ignore[no-untyped-def]
                                                      message: str) -> None:
    _, package = lm_package
    paths = []
    for name, t in files(_lm_inputs(5, 3, seed=0)):
        paths.append(tmp_path / name)
        _write(paths[-1], t)
    proc = subprocess.run(
        [str(aoti_run), str(package), *map(str, paths), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: bad input: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert not list(tmp_path.glob("out*")), "no outputs on failure"


@pytest.mark.parametrize("args,message", [
    (["m.pt2"], "expected MODEL.pt2, the inputs and OUT_PREFIX, got 1 arguments"),
    (["m.pt2", "x.i64", "h0.bin"], "the last argument is OUT_PREFIX, but 'h0.bin' looks like an input file"),
    (["m.pt2", "x.npy", "out"], "input 'x.npy' has no dtype extension"),
], ids=["no-prefix", "prefix-forgotten", "npy-input"])
def test_cpp_runner_bad_arguments(aoti_run: Path, args: List[str], message: str) -> None:
    proc = subprocess.run([str(aoti_run), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "usage: aoti_run MODEL.pt2 INPUT... OUT_PREFIX" in proc.stderr


def test_cpp_runner_bad_tensor_file(compiled, aoti_run: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    package, _, _ = compiled
    x = torch.randn(4, 2, INPUT_SIZE)
    _write(tmp_path / "x.bin", x)
    (tmp_path / "x.bin").write_bytes((tmp_path / "x.bin").read_bytes()[:-4])  # one float short
    h = torch.zeros(2, 2, HIDDEN_SIZE)
    _write(tmp_path / "h.bin", h)
    proc = subprocess.run([str(aoti_run), str(package), str(tmp_path / "x.bin"), str(tmp_path / "h.bin"),
                           str(tmp_path / "h.bin"), str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "shape (4, 2, 5) of float32 needs 160 data bytes, got 156" in proc.stderr


# --- the two routes: "fused" (deploy_lstm::fused_lstm, aten's kernel) and "scan" ------------


def _routes(path: Path) -> dict:
    return ArtifactMetadata.from_strings(torch._inductor.aoti_load_package(str(path)).get_metadata(), str(path)).routes


def test_fused_op_schema_is_the_declared_one() -> None:
    """The C++ registration copies FUSED_LSTM_SCHEMA: the Python op must have exactly that schema."""
    assert str(torch.ops.deploy_lstm.fused_lstm.default._schema) == FUSED_LSTM_SCHEMA
    assert FUSED_LSTM_SCHEMA in (CPP_DIR / "fused_lstm_op.h").read_text().replace('"\n    "', "")


def test_default_packages_take_the_fused_route(compiled, compiled_proj, lm_package) -> None:  # type: ignore[no-untyped-def]
    assert _routes(compiled[0]) == {"": "fused"}
    assert _routes(compiled_proj[1]) == {"": "fused"}
    assert _routes(lm_package[1]) == {"rnn": "fused"}


ROUTE_CASES = [
    ("lstm", True, "fused"), ("lstm", False, "scan"), ("peephole", True, "scan"), ("layernorm", True, "scan"),
    ("cell_gated", True, "scan"),
]


@pytest.mark.parametrize("cell, fused, route", ROUTE_CASES, ids=[f"{c}-{'fused' if f else 'scan'}" for c, f, _ in ROUTE_CASES])
def test_route_recorded_in_metadata(monkeypatch, tmp_path: Path, cell: str, fused: bool, route: str) -> None:  # type: ignore[no-untyped-def]
    """Variant cells have no aten kernel: scan.  fused=False forces scan.  (Compile stubbed: metadata only.)"""
    seen = {}

    def fake_compile(program, package_path, inductor_configs):  # type: ignore[no-untyped-def]
        seen.update(inductor_configs["aot_inductor.metadata"])
        seen["targets"] = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
        Path(package_path).write_bytes(b"")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", fake_compile)
    export_aoti(LSTM(3, 4, num_layers=2, cell=cell), tmp_path / "m.pt2", lengths=True, fused=fused)
    assert ArtifactMetadata.from_strings(seen).routes == {"": route}
    assert ("deploy_lstm.fused_lstm.default" in seen["targets"]) == (route == "fused"), seen["targets"]


@pytest.fixture(scope="session")
def compiled_f64(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """float64, 2 layers, bidirectional, projection, lengths: (model, package)."""
    torch.manual_seed(2)
    model = LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True, proj_size=3).double().eval()
    return model, export_aoti(model, tmp_path_factory.mktemp("aoti-f64") / "model.pt2", lengths=True)


def _packed_reference(model: LSTM, x, h0, c0, lengths):  # type: ignore[no-untyped-def]
    """nn.LSTM with ``model``'s weights on the packed batch, padded back to T (time-major)."""
    ref = model.to_torch().eval()
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out_p, (hn, cn) = ref(packed, (h0, c0))
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, total_length=x.size(0))
    return out, hn, cn


def _f64_case(T: int, N: int, seed: int, pad_past_lengths):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = T
    x = pad_past_lengths(torch.randn(T, N, INPUT_SIZE, generator=g, dtype=torch.float64), lengths)
    h0 = torch.randn(4, N, 3, generator=g, dtype=torch.float64)
    c0 = torch.randn(4, N, HIDDEN_SIZE, generator=g, dtype=torch.float64)
    return x, h0, c0, lengths


@pytest.mark.parametrize("T, N", [(13, 6), (1, 1), (4, 9)])
def test_fused_float64_with_lengths_matches_nn_lstm(compiled_f64, pad_past_lengths, tol, T: int, N: int) -> None:  # type: ignore[no-untyped-def]
    model, path = compiled_f64
    runner = torch._inductor.aoti_load_package(str(path))
    x, h0, c0, lengths = _f64_case(T, N, T * 10 + N, pad_past_lengths)
    got = runner(x, h0, c0, lengths)
    for name, g, e in zip(("output", "hn", "cn"), got, _packed_reference(model, x, h0, c0, lengths)):
        assert g.dtype == torch.float64 and torch.isfinite(g).all(), name
        torch.testing.assert_close(g, e, **tol(torch.float64), msg=lambda m, k=name: f"{k}: {m}")


def _run_cpp(aoti_run: Path, package: Path, tmp_path: Path, inputs: dict) -> None:
    """aoti_run on the named tensor files (the extension gives the dtype); outputs go to tmp_path/out{i}.*"""
    files = []
    for name, t in inputs.items():
        files.append(tmp_path / name)
        _write(files[-1], t)
    proc = subprocess.run([str(aoti_run), str(package), *map(str, files), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_cpp_runner_fused_float64_with_lengths(compiled_f64, aoti_run: Path, tmp_path: Path, pad_past_lengths, tol) -> None:  # type: ignore[no-untyped-def]
    model, path = compiled_f64
    x, h0, c0, lengths = _f64_case(11, 5, 7, pad_past_lengths)
    _run_cpp(aoti_run, path, tmp_path, {"input.f64": x, "h0.f64": h0, "c0.f64": c0, "lengths.i64": lengths})
    for i, e in enumerate(_packed_reference(model, x, h0, c0, lengths)):
        torch.testing.assert_close(_read(tmp_path / f"out{i}.f64"), e, **tol(torch.float64))


def test_cpp_runner_fused_nan_padding_with_projection(compiled_proj, aoti_run: Path, tmp_path: Path, pad_past_lengths) -> None:  # type: ignore[no-untyped-def]
    """compiled_proj (batch_first, projection, lengths) in C++: NaN/inf past each length change nothing."""
    model, path = compiled_proj
    N, T = 5, 12
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([12, 1, 7, 3, 12])
    x = pad_past_lengths(torch.randn(N, T, INPUT_SIZE, generator=g), lengths, batch_first=True)
    h0, c0 = torch.randn(2, N, 4, generator=g), torch.randn(2, N, HIDDEN_SIZE, generator=g)
    _run_cpp(aoti_run, path, tmp_path, {"input.bin": x, "h0.bin": h0, "c0.bin": c0, "lengths.i64": lengths})
    out, hn, cn = _packed_reference(model, x.transpose(0, 1), h0, c0, lengths)
    for i, e in enumerate((out.transpose(0, 1), hn, cn)):
        got = _read(tmp_path / f"out{i}.bin")
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, e, atol=1e-5, rtol=0)


class _TwoRoutes(torch.nn.Module):
    """An encoder LSTM (fused) feeding a peephole LSTM (no aten kernel: scan)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = LSTM(INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
        self.decoder = LSTM(2 * HIDDEN_SIZE, HIDDEN_SIZE, cell="peephole")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.encoder(x)
        z, _ = self.decoder(y)
        return z


@pytest.fixture(scope="session")
def two_routes(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(eager model, package): one LSTM of each route in one package."""
    torch.manual_seed(3)
    model = _TwoRoutes().eval()
    path = export_aoti(
        model, tmp_path_factory.mktemp("aoti-two") / "model.pt2", example_inputs=(torch.randn(7, 3, INPUT_SIZE),),
        input_names=["x"], output_names=["z"], dynamic_axes={"x": {0: "sequence", 1: "batch"}},
    )
    return model, path


def test_cpp_runner_runs_both_routes_in_one_package(two_routes, aoti_run: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, path = two_routes
    assert _routes(path) == {"decoder": "scan", "encoder": "fused"}
    x = torch.randn(10, 4, INPUT_SIZE, generator=torch.Generator().manual_seed(5))
    _write(tmp_path / "x.bin", x)
    proc = subprocess.run([str(aoti_run), str(path), str(tmp_path / "x.bin"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(_read(tmp_path / "out0.bin"), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch._inductor.aoti_load_package(str(path))(x), expected, atol=1e-5, rtol=0)


_FRESH_PROCESS = """
import sys, numpy as np
{imports}
from deploy_lstm.runtime.aoti import AotiPackage
p = AotiPackage(sys.argv[1])
out = p.run({{"input": np.zeros((3, 2, 5), np.float32), "h0": np.zeros((2, 2, 6), np.float32),
             "c0": np.zeros((2, 2, 6), np.float32)}})
print(out["output"].shape)
"""


@pytest.mark.parametrize("imports", [
    "import deploy_lstm.nn.ops  # registers deploy_lstm::fused_lstm",
    "",  # deploy_lstm.runtime registers it itself
], ids=["tracing-imported", "runtime-alone"])
def test_fresh_python_process_runs_fused_package(compiled, imports: str) -> None:  # type: ignore[no-untyped-def]
    """A Python process that only loads packages needs the op registered (the C++ runner links it)."""
    proc = subprocess.run([sys.executable, "-c", _FRESH_PROCESS.format(imports=imports), str(compiled[0])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "(3, 2, 12)" in proc.stdout, proc.stderr[-2000:]
