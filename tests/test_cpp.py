"""The C++ runtime (serving/cpp): build it once, run the real binaries, compare with Python.

The session fixture configures and builds ``deploy_lstm_run`` and ``seq2seq_greedy``
with cmake + Ninja against the libtorch inside the installed torch wheel.  Every test
exports a scripted model, writes ``.npy`` inputs, runs a binary through ``subprocess``
and compares its ``.npy`` outputs with the eager model: for a bare LSTM the eager
``deploy_lstm.LSTM`` and ``torch.nn.LSTM`` holding the same weights; for a whole model
(the language model of export/export_language_model.py, the encoder/decoder of
export/export_seq2seq.py) the original model with its ``nn.LSTM``.  Never skipped:
libtorch comes with the wheel, and cmake/ninja are installed from PyPI when missing.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import deploy_lstm

pytestmark = [
    pytest.mark.slow,
    # nn.LSTM itself (the oracle) warns when proj_size > 0; nothing of ours.
    pytest.mark.filterwarnings(
        "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
    ),
]

REPO = Path(__file__).resolve().parents[1]
CPP_DIR = REPO / "serving" / "cpp"
EXPORT_SCRIPT = REPO / "export" / "export_torchscript.py"
LM_SCRIPT = REPO / "export" / "export_language_model.py"
SEQ2SEQ_SCRIPT = REPO / "export" / "export_seq2seq.py"
BUILD_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120


# -- build: the `binary` fixture (tests/conftest.py) builds serving/cpp once per session ------------


@pytest.fixture(scope="session")
def seq2seq_binary(binary: Path) -> Path:
    """seq2seq_greedy, from the same build as deploy_lstm_run."""
    return binary.parent / "seq2seq_greedy"


# -- helpers --------------------------------------------------------------------------


def import_script(path: Path) -> ModuleType:
    """A script of export/ imported as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def exporter() -> ModuleType:
    """export/export_torchscript.py imported as a module."""
    return import_script(EXPORT_SCRIPT)


def run_cli(binary: Path, *args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(binary), *map(str, args)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    # Never a crash: abort/segfault show up as a negative return code.
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}:\n{proc.stderr}"
    assert "terminate called" not in proc.stderr, proc.stderr
    return proc


def run_ok(binary: Path, model: Path, inputs: Dict[str, np.ndarray], out: Path, *extra: object) -> Dict[str, Tensor]:
    """Write ``inputs`` (input, and optionally h0, c0, lengths) as .npy, run, read outputs."""
    out.mkdir(parents=True, exist_ok=True)
    args: List[object] = [model]
    for name, arr in inputs.items():
        path = out / f"in_{name}.npy"
        np.save(path, arr)
        args += [path] if name == "input" else [f"--{name}", path]
    proc = run_cli(binary, *args, "--out", out / "result", *extra)
    assert proc.returncode == 0, f"deploy_lstm_run failed:\n{proc.stdout}\n{proc.stderr}"
    assert "output:" in proc.stdout and "time:" in proc.stdout, proc.stdout
    return {k: torch.from_numpy(np.load(out / "result" / f"{k}.npy")) for k in ("output", "hn", "cn")}


def make_model(tmp: Path, exporter: ModuleType, dtype: torch.dtype = torch.float32, seed: int = 0,
               **cfg: object) -> Tuple[deploy_lstm.LSTM, Path]:
    torch.manual_seed(seed)
    model = deploy_lstm.LSTM(**cfg, dtype=dtype).eval()  # type: ignore[arg-type]
    path = exporter.export_torchscript(model, tmp / "model.pt")
    return model, path


def reference(module: nn.Module, x: Tensor, hx: Optional[Tuple[Tensor, Tensor]],
              lengths: Optional[Tensor]) -> Dict[str, Tensor]:
    """Eager outputs; an nn.LSTM with lengths runs on the packed batch, padded back to T."""
    with torch.no_grad():
        if isinstance(module, deploy_lstm.LSTM):
            output, (h_n, c_n) = module(x, hx, lengths)
        elif lengths is not None:
            bf = module.batch_first
            T = x.size(1) if bf else x.size(0)
            packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
            out_p, (h_n, c_n) = module(packed, hx)
            output, _ = pad_packed_sequence(out_p, batch_first=bf, total_length=T)
        else:
            output, (h_n, c_n) = module(x, hx)
    return {"output": output, "hn": h_n, "cn": c_n}


def random_inputs(model: deploy_lstm.LSTM, T: int, N: Optional[int], state: bool, lengths: bool,
                  seed: int = 1) -> Dict[str, Tensor]:
    """input (and h0/c0/lengths) for ``model``; N=None gives unbatched input."""
    g = torch.Generator().manual_seed(seed)
    dt = model.weight_ih_l0.dtype
    I, LD = model.input_size, model.num_layers * model.num_directions
    P = model.proj_size or model.hidden_size
    batch = () if N is None else (N,)
    shape = (*batch, T, I) if model.batch_first and N is not None else (T, *batch, I)
    feeds = {"input": torch.randn(shape, generator=g, dtype=dt)}
    if state:
        feeds["h0"] = torch.randn((LD, *batch, P), generator=g, dtype=dt)
        feeds["c0"] = torch.randn((LD, *batch, model.hidden_size), generator=g, dtype=dt)
    if lengths:
        assert N is not None
        lens = torch.randint(1, T + 1, (N,), generator=g, dtype=torch.int64)
        lens[0] = T  # at least one full-length sequence
        feeds["lengths"] = lens
    return feeds


def max_errors(got: Dict[str, Tensor], want: Dict[str, Tensor]) -> Dict[str, float]:
    return {k: (got[k] - want[k]).abs().max().item() for k in want}


def check_against_python(got: Dict[str, Tensor], model: deploy_lstm.LSTM, feeds: Dict[str, Tensor],
                         tol: Dict[str, float]) -> Dict[str, float]:
    hx = (feeds["h0"], feeds["c0"]) if "h0" in feeds else None
    lens = feeds.get("lengths")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_lstm = model.to_torch().eval()
    oracle = reference(torch_lstm, feeds["input"], hx, lens)
    for name, module in [("deploy_lstm eager", model), ("torch.nn.LSTM", torch_lstm)]:
        want = reference(module, feeds["input"], hx, lens)
        for key in want:
            assert got[key].dtype == want[key].dtype, f"{key} vs {name}: dtype {got[key].dtype} != {want[key].dtype}"
            torch.testing.assert_close(got[key], want[key], **tol, msg=lambda m, k=key, n=name: f"{k} vs {n}: {m}")
    return max_errors(got, oracle)


# -- parity: the binary against eager deploy_lstm and nn.LSTM ------------------------------

# (id, constructor config, dtype, T, N (None: unbatched), with h0/c0, with lengths).
# Shapes are unlike export's validation batch (T=7, N=3): scripting fixes none.
CASES = [
    ("uni", dict(input_size=5, hidden_size=7), torch.float32, 11, 4, False, False),
    ("2layers-state", dict(input_size=5, hidden_size=7, num_layers=2), torch.float32, 9, 2, True, False),
    ("bidir-2layers-lengths", dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True),
     torch.float32, 13, 5, False, True),
    ("proj-batch_first-state", dict(input_size=4, hidden_size=9, num_layers=2, proj_size=3, batch_first=True),
     torch.float32, 10, 3, True, False),
    ("bidir-proj-batch_first-lengths-state",
     dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=2, batch_first=True),
     torch.float32, 12, 4, True, True),
    ("no-bias-unbatched-state", dict(input_size=3, hidden_size=5, bias=False), torch.float32, 8, None, True, False),
    ("float64-bidir-proj-lengths-state",
     dict(input_size=5, hidden_size=8, num_layers=2, bidirectional=True, proj_size=4),
     torch.float64, 14, 3, True, True),
    # fused=True: the scripted module runs aten::lstm (lengths through a packed batch)
    ("fused-bidir-proj-batch_first-lengths-state",
     dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=2, batch_first=True, fused=True),
     torch.float32, 12, 4, True, True),
    ("fused-uni-unbatched", dict(input_size=3, hidden_size=5, fused=True), torch.float32, 8, None, True, False),
]


@pytest.mark.parametrize("name,cfg,dtype,T,N,state,lengths", CASES, ids=[c[0] for c in CASES])
def test_matches_python(binary: Path, exporter: ModuleType, tmp_path: Path, tol, name: str, cfg: dict,
                        dtype: torch.dtype, T: int, N: Optional[int], state: bool, lengths: bool) -> None:
    model, path = make_model(tmp_path, exporter, dtype, **cfg)
    feeds = random_inputs(model, T, N, state, lengths)
    got = run_ok(binary, path, {k: v.numpy() for k, v in feeds.items()}, tmp_path)
    errs = check_against_python(got, model, feeds, tol(dtype))
    print(f"{name}: max abs error vs nn.LSTM {errs}")


@pytest.mark.parametrize("cell", ["peephole", "layernorm", "cell_gated"])
def test_variant_cells_match_python(binary: Path, exporter: ModuleType, tmp_path: Path, cell: str) -> None:
    """A scripted variant cell runs in the C++ app as in Python (torch.nn has no twin: the
    eager module is the reference, and the variant oracles are in test_variants)."""
    torch.manual_seed(0)
    model = deploy_lstm.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True, cell=cell).eval()
    with torch.no_grad():  # leave the layer norm's 1/0 initialisation: randomise every parameter
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    path = exporter.export_torchscript(model, tmp_path / "model.pt")
    feeds = random_inputs(model, 9, 3, True, True)
    got = run_ok(binary, path, {k: v.numpy() for k, v in feeds.items()}, tmp_path)
    want = reference(model, feeds["input"], (feeds["h0"], feeds["c0"]), feeds["lengths"])
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0, msg=lambda m, k=key: f"{cell} {k}: {m}")


@pytest.mark.parametrize("fused", [False, True], ids=["loop", "fused"])
def test_nan_and_inf_padding_never_reach_the_result(binary: Path, exporter: ModuleType, tmp_path: Path, tol,
                                                     pad_past_lengths, fused: bool) -> None:
    cfg = dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=3, fused=fused)
    model, path = make_model(tmp_path, exporter, torch.float32, **cfg)
    feeds = random_inputs(model, 9, 4, True, True)
    feeds["lengths"] = torch.tensor([9, 3, 1, 6])
    feeds["input"] = pad_past_lengths(feeds["input"], feeds["lengths"])
    assert not torch.isfinite(feeds["input"]).all()
    got = run_ok(binary, path, {k: v.numpy() for k, v in feeds.items()}, tmp_path)
    assert all(torch.isfinite(v).all() for v in got.values())
    check_against_python(got, model, feeds, tol(torch.float32))


# -- streaming: --chunk K equals one whole run ----------------------------------------------


@pytest.mark.parametrize(
    "cfg,T,N,K",
    [
        (dict(input_size=5, hidden_size=8, num_layers=2, proj_size=3), 13, 3, 4),  # uneven last chunk
        (dict(input_size=5, hidden_size=8, num_layers=2, batch_first=True), 12, 2, 5),
        (dict(input_size=4, hidden_size=6), 9, None, 2),  # unbatched
        (dict(input_size=4, hidden_size=6), 6, 2, 1),  # one step at a time
        (dict(input_size=4, hidden_size=6), 6, 2, 100),  # one chunk
        (dict(input_size=5, hidden_size=8, num_layers=2, fused=True), 13, 3, 4),  # aten::lstm inside
    ],
    ids=["2layers-proj-state", "batch_first", "unbatched", "K=1", "K>T", "fused"],
)
def test_stream_chunks_equal_whole_run(binary: Path, exporter: ModuleType, tmp_path: Path, tol, cfg: dict,
                                       T: int, N: Optional[int], K: int) -> None:
    model, path = make_model(tmp_path, exporter, **cfg)
    feeds = random_inputs(model, T, N, state=True, lengths=False)
    arrays = {k: v.numpy() for k, v in feeds.items()}
    whole = run_ok(binary, path, arrays, tmp_path / "whole")
    chunked = run_ok(binary, path, arrays, tmp_path / "chunked", "--chunk", K)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-6, rtol=0.0, msg=lambda m, k=key: f"{k}: {m}")
    check_against_python(chunked, model, feeds, tol(torch.float32))


def test_stream_rejects_bidirectional(binary: Path, exporter: ModuleType, tmp_path: Path) -> None:
    model, path = make_model(tmp_path, exporter, input_size=3, hidden_size=4, bidirectional=True)
    np.save(tmp_path / "x.npy", np.zeros((6, 2, 3), np.float32))
    proc = run_cli(binary, path, tmp_path / "x.npy", "--chunk", 2, "--out", tmp_path / "o")
    assert proc.returncode == 1
    assert "streaming in chunks needs a unidirectional model" in proc.stderr


# -- export script ----------------------------------------------------------------------------


def test_export_script_from_nn_lstm_state_dict(binary: Path, tmp_path: Path, tol) -> None:
    """The copy-me script: an nn.LSTM checkpoint (nested keys) -> TorchScript -> C++ == nn.LSTM."""
    torch.manual_seed(3)
    lstm = nn.LSTM(6, 10, num_layers=2, batch_first=True, proj_size=4)
    torch.save({f"encoder.lstm.{k}": v for k, v in lstm.state_dict().items()}, tmp_path / "ckpt.pt")
    cmd = [sys.executable, str(EXPORT_SCRIPT), str(tmp_path / "out" / "lstm.pt"), "--input-size", "6",
           "--hidden-size", "10", "--num-layers", "2", "--batch-first", "--proj-size", "4",
           "--state-dict", str(tmp_path / "ckpt.pt"), "--prefix", "encoder.lstm."]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lstm.pt"], "temp file left behind"
    x = torch.randn(5, 17, 6)
    got = run_ok(binary, tmp_path / "out" / "lstm.pt", {"input": x.numpy()}, tmp_path)
    want = reference(lstm.eval(), x, None, None)
    for key in want:
        torch.testing.assert_close(got[key], want[key], **tol(torch.float32))


def test_dropout_model_runs_in_eval_mode(binary: Path, exporter: ModuleType, tmp_path: Path, tol) -> None:
    """A model exported while training: the artifact and the C++ run are eval (no dropout)."""
    torch.manual_seed(4)
    model = deploy_lstm.LSTM(5, 7, num_layers=2, dropout=0.5)  # training mode
    path = exporter.export_torchscript(model, tmp_path / "model.pt")
    assert model.training, "export must not change the caller's module"
    feeds = random_inputs(model, 9, 2, state=False, lengths=False)
    got = run_ok(binary, path, {"input": feeds["input"].numpy()}, tmp_path)
    check_against_python(got, model.eval(), feeds, tol(torch.float32))


def test_export_rejects_non_lstm(exporter: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expected a deploy_lstm.LSTM or torch.nn.LSTM, got Linear"):
        exporter.export_torchscript(nn.Linear(2, 3), tmp_path / "m.pt")


# -- errors: clear message, exit status 1 (2 for bad arguments), never a crash ---------------------


@pytest.fixture
def lstm_file(exporter: ModuleType, tmp_path: Path) -> Path:
    """A float32 model with input_size=5, hidden_size=7, 2 layers."""
    return make_model(tmp_path, exporter, input_size=5, hidden_size=7, num_layers=2)[1]


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


GOOD = np.zeros((6, 2, 5), np.float32)

BAD_INPUTS = [
    ("wrong-feature-size", lambda p: np.save(p, np.zeros((6, 2, 4), np.float32)),
     "the last dimension must be input_size=5"),
    ("rank-4", lambda p: np.save(p, np.zeros((6, 2, 1, 5), np.float32)), "got rank 4 input of shape (6, 2, 1, 5)"),
    ("rank-1", lambda p: np.save(p, np.zeros((5,), np.float32)), "got rank 1 input of shape (5,)"),
    ("float64-into-float32", lambda p: np.save(p, GOOD.astype(np.float64)),
     "expected input of dtype float32 (the model's), got float64"),
    ("int64-input", lambda p: np.save(p, GOOD.astype(np.int64)),
     "expected input of dtype float32 (the model's), got int64"),
    ("empty-T", lambda p: np.save(p, np.zeros((0, 2, 5), np.float32)), "T must be at least 1"),
    ("not-npy", lambda p: _write_bytes(p, b"hello, I am text\n"), "not a .npy file: bad magic"),
    ("truncated", lambda p: _write_bytes(p, _npy_bytes(GOOD)[:-7]), "needs 240 data bytes, got 233"),
    ("trailing-bytes", lambda p: _write_bytes(p, _npy_bytes(GOOD) + b"xx"), "extra bytes after the 240 data bytes"),
    ("big-endian", lambda p: np.save(p, GOOD.astype(">f4")), "big-endian data is not supported"),
    ("float16", lambda p: np.save(p, GOOD.astype(np.float16)), "unsupported .npy dtype '<f2'"),
    ("fortran-order", lambda p: np.save(p, np.asfortranarray(GOOD)), "Fortran-order .npy arrays are not supported"),
    ("garbled-header", lambda p: _write_bytes(p, _npy_bytes(GOOD).replace(b"'shape': (6, 2, 5)", b"'shape': [6, 2, 5]")),
     "malformed .npy header: 'shape' is not a tuple"),
    ("header-cut", lambda p: _write_bytes(p, _npy_bytes(GOOD)[:40]), "header shorter than its declared"),
    ("missing", lambda p: None, "cannot open .npy file"),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input(binary: Path, lstm_file: Path, tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "x.npy"
    make(path)
    proc = run_cli(binary, lstm_file, path, "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists(), "no outputs on failure"


BAD_STATE = [
    ("h0-wrong-batch", {"h0": np.zeros((2, 3, 7), np.float32), "c0": np.zeros((2, 2, 7), np.float32)},
     "expected h0 of shape (2, 2, 7)"),
    ("c0-wrong-dtype", {"h0": np.zeros((2, 2, 7), np.float32), "c0": np.zeros((2, 2, 7))},
     "expected c0 of dtype float32 (the model's), got float64"),
    ("lengths-out-of-range", {"lengths": np.array([6, 0], np.int64)}, "expected lengths in 1..T=6, got values from 0 to 6"),
    ("lengths-wrong-count", {"lengths": np.array([6, 1, 2], np.int64)}, "expected lengths of shape (2,)"),
    ("lengths-float", {"lengths": np.array([6.0, 1.0])}, "expected lengths of dtype int64, got float64"),
    # --chunk checks the whole input and state first: the message names the input, not a chunk.
    ("h0-wrong-batch-chunked", {"h0": np.zeros((2, 3, 7), np.float32), "c0": np.zeros((2, 2, 7), np.float32),
                                "chunk": 4}, "expected h0 of shape (2, 2, 7) (num_layers * num_directions, N, "
                                             "proj_size or hidden_size) for input of shape (6, 2, 5)"),
]


@pytest.mark.parametrize("extra,message", [c[1:] for c in BAD_STATE], ids=[c[0] for c in BAD_STATE])
def test_bad_state_or_lengths(binary: Path, lstm_file: Path, tmp_path: Path, extra, message: str) -> None:
    np.save(tmp_path / "x.npy", GOOD)
    args: List[object] = []
    for name, arr in extra.items():
        if name == "chunk":
            args += ["--chunk", arr]
            continue
        np.save(tmp_path / f"{name}.npy", arr)
        args += [f"--{name}", tmp_path / f"{name}.npy"]
    proc = run_cli(binary, lstm_file, tmp_path / "x.npy", *args, "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr


class _TakesAnInt(nn.Module):
    def forward(self, x: Tensor, k: int) -> Tensor:
        return x * k


def _takes_an_int(path: Path) -> None:
    torch.jit.save(torch.jit.script(_TakesAnInt()), str(path))


BAD_MODELS = [
    ("missing", lambda p: None, "model file not found"),
    ("text-file", lambda p: p.write_text("not a model"), "as a TorchScript archive"),
    ("torch-save-state-dict", lambda p: torch.save(nn.LSTM(5, 7).state_dict(), p), "as a TorchScript archive"),
    # Any other TorchScript module is a whole model (see below); one whose forward needs an int is not runnable.
    ("forward-takes-an-int", _takes_an_int, "argument 'k: int' has no default; the runner passes Tensors and "
                                            "(nested) Tuples of Tensors only"),
    ("directory", lambda p: p.mkdir(), "model path is a directory"),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS])
def test_bad_model(binary: Path, tmp_path: Path, make, message: str) -> None:
    model = tmp_path / "model.pt"
    make(model)
    np.save(tmp_path / "x.npy", GOOD)
    proc = run_cli(binary, model, tmp_path / "x.npy", "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ")


BAD_ARGS = [
    ([], "expected MODEL.pt and INPUT.npy, got 0 positional arguments"),
    (["m.pt"], "got 1 positional arguments"),
    (["m.pt", "x.npy", "--bogus"], "unknown option --bogus"),
    (["m.pt", "x.npy", "--chunk"], "--chunk needs a value"),
    (["m.pt", "x.npy", "--chunk", "0"], "--chunk expects a positive integer, got '0'"),
    (["m.pt", "x.npy", "--chunk", "3x"], "--chunk expects a positive integer, got '3x'"),
    (["m.pt", "x.npy", "--h0", "h.npy"], "--h0 and --c0 must be given together"),
    (["m.pt", "x.npy", "--chunk", "2", "--lengths", "l.npy"], "--chunk cannot be combined with --lengths"),
]


@pytest.mark.parametrize("args,message", BAD_ARGS, ids=[" ".join(a) or "none" for a, _ in BAD_ARGS])
def test_bad_arguments_print_usage(binary: Path, args: List[str], message: str) -> None:
    proc = run_cli(binary, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "usage: deploy_lstm_run MODEL.pt INPUT.npy" in proc.stderr


def test_help(binary: Path) -> None:
    proc = run_cli(binary, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: deploy_lstm_run")


# -- whole models: forward's tensors and (nested) tuples, flattened ----------------------------
#
# The word language model of export/export_language_model.py: forward(input, hidden=(h0, c0))
# -> (logits, (hn, cn)), tied weights.  Exported as the user has it (swap_lstms, then
# deploy_lstm.export_torchscript), run by deploy_lstm_run on input.npy h0.npy c0.npy, and
# compared with the ORIGINAL model (nn.LSTM inside) at shapes unlike the example (T=7, N=3).

LM_SIZES = dict(ntoken=50, ninp=16, nhid=16, nlayers=2)


@pytest.fixture(scope="module")
def language_model(tmp_path_factory: pytest.TempPathFactory) -> Tuple[nn.Module, nn.Module, Path]:
    """(original eager model, swapped model, its TorchScript archive)."""
    script = import_script(LM_SCRIPT)
    torch.manual_seed(0)
    original = script.RNNModel(**LM_SIZES).eval()
    model = deploy_lstm.swap_lstms(copy.deepcopy(original))
    path = deploy_lstm.export_torchscript(model, tmp_path_factory.mktemp("lm") / "lm.ts")
    return original, model, path


def lm_inputs(T: int, N: int, seed: int = 1) -> List[Tensor]:
    """input int64 (T, N), h0, c0 float32 (nlayers, N, nhid)."""
    g = torch.Generator().manual_seed(seed)
    shape = (LM_SIZES["nlayers"], N, LM_SIZES["nhid"])
    return [torch.randint(0, LM_SIZES["ntoken"], (T, N), generator=g),
            torch.randn(shape, generator=g), torch.randn(shape, generator=g)]


def run_model(binary: Path, model: Path, inputs: List[np.ndarray], out: Path, *extra: object) -> Dict[str, np.ndarray]:
    """Write ``inputs`` as in_0.npy, in_1.npy, ...; run; the outputs written, by file stem."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, arr in enumerate(inputs):
        files.append(out / f"in_{i}.npy")
        np.save(files[-1], arr)
    proc = run_cli(binary, model, *files, "--out", out / "result", *extra)
    assert proc.returncode == 0, f"deploy_lstm_run failed:\n{proc.stdout}\n{proc.stderr}"
    assert "whole model: forward(" in proc.stdout and "time:" in proc.stdout, proc.stdout
    return {p.stem: np.load(p) for p in sorted((out / "result").glob("*.npy"))}


@pytest.mark.parametrize("T,N", [(11, 2), (1, 5), (23, 1)])
def test_language_model_matches_eager_original(binary: Path, language_model, tmp_path: Path, tol,
                                               T: int, N: int) -> None:
    original, _, path = language_model
    x, h0, c0 = lm_inputs(T, N)
    got = run_model(binary, path, [x.numpy(), h0.numpy(), c0.numpy()], tmp_path)
    with torch.no_grad():
        logits, (hn, cn) = original(x, (h0, c0))
    want = {"output_0": logits, "output_1": hn, "output_2": cn}  # (logits, (hn, cn)) flattened
    assert sorted(got) == sorted(want), f"outputs written: {sorted(got)}"
    errs = {}
    for name, w in want.items():
        g = torch.from_numpy(got[name])
        assert g.dtype == torch.float32 and g.shape == w.shape, f"{name}: {g.dtype} {tuple(g.shape)}"
        torch.testing.assert_close(g, w, **tol(torch.float32), msg=lambda m, k=name: f"{k}: {m}")
        errs[name] = (g - w).abs().max().item()
    print(f"language model T={T} N={N}: max abs error vs the original nn.LSTM model {errs}")


def _save_with_contract(model: nn.Module, scripted_path: Path, path: Path) -> Path:
    """The archive as export_torchscript writes it given the model's call: with its I/O contract."""
    script = import_script(LM_SCRIPT)
    x, h0, c0 = lm_inputs(7, 3)
    return deploy_lstm.export_torchscript(
        model, path, example_inputs=(x, (h0, c0)), input_names=script.INPUT_NAMES,
        output_names=script.OUTPUT_NAMES, dynamic_axes=script.DYNAMIC_AXES,
    )


def test_outputs_take_the_archive_names(binary: Path, language_model, tmp_path: Path, tol) -> None:
    original, model, path = language_model
    named = _save_with_contract(model, path, tmp_path / "lm-named.ts")
    x, h0, c0 = lm_inputs(9, 4)
    got = run_model(binary, named, [x.numpy(), h0.numpy(), c0.numpy()], tmp_path)
    assert sorted(got) == ["cn", "hn", "logits"]
    with torch.no_grad():
        logits, (hn, cn) = original(x, (h0, c0))
    for name, w in (("logits", logits), ("hn", hn), ("cn", cn)):
        torch.testing.assert_close(torch.from_numpy(got[name]), w, **tol(torch.float32))


def _lm_arrays(T: int = 6, N: int = 2) -> List[np.ndarray]:
    return [t.numpy() for t in lm_inputs(T, N)]


BAD_WHOLE_INPUTS = [
    ("two-of-three", lambda a: a[:2],
     "takes 3 input tensors (input, hidden[0], hidden[1]), got 2"),
    ("four-of-three", lambda a: a + [a[2]], "takes 3 input tensors (input, hidden[0], hidden[1]), got 4"),
    ("float-tokens", lambda a: [a[0].astype(np.float32), a[1], a[2]],
     "failed on input=(6, 2) float32, hidden[0]=(2, 2, 16) float32, hidden[1]=(2, 2, 16) float32: "
     "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int"),
    ("float64-h0", lambda a: [a[0], a[1].astype(np.float64), a[2]],
     "LSTMInputError: Expected hidden[0] of dtype torch.float32 (the input's), got torch.float64"),
    ("h0-wrong-batch", lambda a: [a[0], a[1][:, :1], a[2]], "LSTMInputError: Expected hidden[0] size (2, 2, 16)"),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_WHOLE_INPUTS], ids=[c[0] for c in BAD_WHOLE_INPUTS])
def test_whole_model_bad_input(binary: Path, language_model, tmp_path: Path, edit, message: str) -> None:
    _, _, path = language_model
    proc = run_cli(binary, path, *_save_inputs(edit(_lm_arrays()), tmp_path), "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "o").exists(), "no outputs on failure"


def _save_inputs(arrays: List[np.ndarray], tmp_path: Path) -> List[Path]:
    """One .npy per array, in order: in_0.npy, in_1.npy, ..."""
    files = [tmp_path / f"in_{i}.npy" for i in range(len(arrays))]
    for f, arr in zip(files, arrays):
        np.save(f, arr)
    return files


BAD_NAMED_INPUTS = [
    ("float-tokens", lambda a: [a[0].astype(np.float32), a[1], a[2]],
     "expected input 'input' of dtype int64, got float32"),
    ("rank-2-h0", lambda a: [a[0], a[1][0], a[2]],
     "expected input 'h0' of shape (2, batch, 16) (rank 3), got rank 2 shape (2, 16)"),
    ("h0-wrong-batch", lambda a: [a[0], a[1][:, :1], a[2]],
     "inputs disagree on axis 'batch': input 'input' dim 1 is 2, input 'h0' dim 1 is 1"),
    ("wrong-hidden-size", lambda a: [a[0], a[1], a[2][..., :3]],
     "expected input 'c0' of shape (2, batch, 16), got (2, 2, 3): dim 2 must be 16"),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_NAMED_INPUTS], ids=[c[0] for c in BAD_NAMED_INPUTS])
def test_whole_model_inputs_checked_against_the_archive_contract(binary: Path, language_model, tmp_path: Path,
                                                                  edit, message: str) -> None:
    _, model, path = language_model
    named = _save_with_contract(model, path, tmp_path / "lm-named.ts")
    proc = run_cli(binary, named, *_save_inputs(edit(_lm_arrays()), tmp_path), "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: bad input: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr


def test_lstm_flags_on_a_whole_model_are_bad_arguments(binary: Path, language_model, tmp_path: Path) -> None:
    _, _, path = language_model
    arrays = _lm_arrays()
    for i, arr in enumerate(arrays):
        np.save(tmp_path / f"in_{i}.npy", arr)
    proc = run_cli(binary, path, tmp_path / "in_0.npy", "--h0", tmp_path / "in_1.npy", "--c0", tmp_path / "in_2.npy")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--h0/--c0, --lengths and --chunk are for a deploy_lstm.LSTM" in proc.stderr
    assert "give its inputs as .npy files in order (input, hidden[0], hidden[1])" in proc.stderr
    assert "usage: deploy_lstm_run" in proc.stderr


def test_several_inputs_for_a_bare_lstm_are_bad_arguments(binary: Path, lstm_file: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", GOOD)
    proc = run_cli(binary, lstm_file, tmp_path / "x.npy", tmp_path / "x.npy")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is a deploy_lstm.LSTM: it takes one INPUT.npy" in proc.stderr


def test_any_scripted_module_is_a_whole_model(binary: Path, tmp_path: Path) -> None:
    """A scripted nn.Linear (once rejected as "not a deploy_lstm.LSTM") runs: one tensor in, one out."""
    torch.manual_seed(0)
    linear = nn.Linear(5, 3)
    torch.jit.save(torch.jit.script(linear), str(tmp_path / "linear.pt"))
    x = torch.randn(6, 2, 5)
    got = run_model(binary, tmp_path / "linear.pt", [x.numpy()], tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got["output_0"]), linear(x), atol=1e-6, rtol=0)


class _NestedAndOptional(nn.Module):
    """Nested tuples in and out, a trailing Optional argument that may be left out."""

    def forward(self, a: Tensor, bc: Tuple[Tensor, Tuple[Tensor, Tensor]],
                scale: Optional[Tensor] = None) -> Tuple[Tuple[Tensor, Tensor], List[Tensor]]:
        b, (c, d) = bc
        s = scale if scale is not None else torch.ones(1, dtype=a.dtype)
        return (a + b, c * s), [d.sum(0), a.long()]


@pytest.mark.parametrize("with_scale", [False, True], ids=["default-left-out", "given"])
def test_nested_tuples_and_optional_arguments(binary: Path, tmp_path: Path, with_scale: bool) -> None:
    torch.jit.save(torch.jit.script(_NestedAndOptional()), str(tmp_path / "m.pt"))
    g = torch.Generator().manual_seed(0)
    a, b, c, d = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4))
    scale = torch.tensor([2.5], dtype=torch.float64)
    inputs = [a, b, c, d] + ([scale] if with_scale else [])
    got = run_model(binary, tmp_path / "m.pt", [t.numpy() for t in inputs], tmp_path)
    (w0, w1), (w2, w3) = _NestedAndOptional()(a, (b, (c, d)), scale if with_scale else None)
    for i, w in enumerate((w0, w1, w2, w3)):
        g_i = torch.from_numpy(got[f"output_{i}"])
        assert g_i.dtype == w.dtype, f"output_{i}: {g_i.dtype} != {w.dtype}"
        torch.testing.assert_close(g_i, w, atol=0, rtol=0)


def test_nested_signature_in_the_count_message(binary: Path, tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(_NestedAndOptional()), str(tmp_path / "m.pt"))
    np.save(tmp_path / "a.npy", np.zeros((3, 4)))
    proc = run_cli(binary, tmp_path / "m.pt", tmp_path / "a.npy", tmp_path / "a.npy", "--out", tmp_path / "o")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("takes 4 or 5 input tensors (a, bc[0], bc[1][0], bc[1][1] [, scale]), got 2") in proc.stderr, proc.stderr


# -- seq2seq: greedy decoding over the encoder and one-step decoder graphs ---------------------------


@pytest.fixture(scope="module")
def seq2seq_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """export/export_seq2seq.py --out DIR, run as a user would: encoder.ts, decoder.ts (and ONNX)."""
    out = tmp_path_factory.mktemp("seq2seq")
    proc = subprocess.run([sys.executable, str(SEQ2SEQ_SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, f"export_seq2seq.py failed:\n{proc.stdout}\n{proc.stderr}"
    assert (out / "encoder.ts").is_file() and (out / "decoder.ts").is_file(), sorted(p.name for p in out.iterdir())
    return out


@pytest.mark.parametrize("S,N,max_len", [(15, 3, 17), (4, 1, 6)])
def test_seq2seq_greedy_tokens_equal_eager(seq2seq_binary: Path, seq2seq_files: Path, tmp_path: Path,
                                           S: int, N: int, max_len: int) -> None:
    script = import_script(SEQ2SEQ_SCRIPT)
    torch.manual_seed(0)  # as the script does before building its model
    original = script.Seq2Seq().eval()
    g = torch.Generator().manual_seed(S * 100 + N)
    src = torch.randint(3, 40, (S, N), generator=g)  # (S, N); the script's examples are (9, 4) and (13, 2)
    with torch.no_grad():
        want = original(src, max_len).numpy()  # (N, max_len)
    np.save(tmp_path / "src.npy", src.numpy())
    proc = run_cli(seq2seq_binary, seq2seq_files / "encoder.ts", seq2seq_files / "decoder.ts", tmp_path / "src.npy",
                   "--max-len", max_len, "--out", tmp_path / "out" / "tokens.npy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = np.load(tmp_path / "out" / "tokens.npy")
    assert got.dtype == np.int64 and got.shape == (N, max_len), f"{got.dtype} {got.shape}"
    np.testing.assert_array_equal(got, want)
    print(f"seq2seq S={S} N={N}: {got.tolist()}")


def _seq2seq_src(tmp: Path, arr: np.ndarray) -> Path:
    np.save(tmp / "src.npy", arr)
    return tmp / "src.npy"


SEQ2SEQ_ERRORS = [
    ("swapped-graphs", ("decoder.ts", "encoder.ts"), np.full((5, 2), 4, np.int64), 1,
     "is not an encoder graph: expected forward(src) -> (h, c), got forward(token: Tensor, h: Tensor, c: Tensor)"),
    ("float-src", ("encoder.ts", "decoder.ts"), np.full((5, 2), 4.0, np.float32), 1,
     "expected src of shape (S, N) with S, N >= 1, int64 token ids, got (5, 2) float32"),
    ("rank-1-src", ("encoder.ts", "decoder.ts"), np.full((5,), 4, np.int64), 1,
     "expected src of shape (S, N) with S, N >= 1, int64 token ids, got (5,) int64"),
    ("token-out-of-vocabulary", ("encoder.ts", "decoder.ts"), np.full((5, 2), 99, np.int64), 1,
     "failed on src=(5, 2) int64: RuntimeError: index out of range in self"),
]


@pytest.mark.parametrize("graphs,src,code,message", [c[1:] for c in SEQ2SEQ_ERRORS], ids=[c[0] for c in SEQ2SEQ_ERRORS])
def test_seq2seq_errors(seq2seq_binary: Path, seq2seq_files: Path, tmp_path: Path, graphs, src, code: int,
                        message: str) -> None:
    proc = run_cli(seq2seq_binary, *(seq2seq_files / g for g in graphs), _seq2seq_src(tmp_path, src), "--max-len", 4,
                   "--out", tmp_path / "o" / "tokens.npy")
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,message", [
    (["e.ts", "d.ts", "s.npy"], "--max-len K is required"),
    (["e.ts", "d.ts", "--max-len", "3"], "expected ENCODER.ts, DECODER.ts and SRC.npy, got 2 positional arguments"),
    (["e.ts", "d.ts", "s.npy", "--max-len", "0"], "--max-len expects a positive integer, got '0'"),
    (["e.ts", "d.ts", "s.npy", "--max-len", "2", "--bos", "-1"], "--bos expects a non-negative integer, got '-1'"),
], ids=["no-max-len", "two-positional", "max-len-0", "negative-bos"])
def test_seq2seq_bad_arguments(seq2seq_binary: Path, args: List[str], message: str) -> None:
    proc = run_cli(seq2seq_binary, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "usage: seq2seq_greedy ENCODER.ts DECODER.ts SRC.npy --max-len K" in proc.stderr


# == streaming steps: LstmStream's step_ fast path and stream_bench (issue 13) ===============
# An archive with deploy_lstm.LSTM's step_ method streams through it (packed weights, state
# updated in place); an archive without it (older exports) runs forward per chunk.  Both must
# equal nn.LSTM.  stream_bench streams a .npy through LstmStream::step and prints JSON timings.

import json  # noqa: E402  (this section's own import)


@pytest.fixture(scope="session")
def stream_bench(binary: Path) -> Path:
    """stream_bench, built with deploy_lstm_run."""
    return binary.parent / "stream_bench"


class _NoStep(deploy_lstm.LSTM):
    """A deploy_lstm.LSTM scripted without the step methods: what archives made before them hold."""

    step = None
    step_ = None
    prepare_step = None


STEP_CONFIGS = {
    "L2": dict(input_size=5, hidden_size=8, num_layers=2),
    "L2 proj": dict(input_size=5, hidden_size=8, num_layers=2, proj_size=3),
    "batch_first": dict(input_size=5, hidden_size=8, num_layers=2, batch_first=True),
    "f64": dict(input_size=5, hidden_size=8, num_layers=2, dtype=torch.float64),
    "peephole": dict(input_size=5, hidden_size=8, num_layers=2, cell="peephole"),
}


@pytest.mark.parametrize("name", list(STEP_CONFIGS))
def test_stream_bench_steps_equal_nn_lstm(stream_bench: Path, tmp_path: Path, tol, name: str) -> None:
    cfg = dict(STEP_CONFIGS[name])
    dtype = cfg.pop("dtype", torch.float32)
    torch.manual_seed(0)
    model = deploy_lstm.LSTM(**cfg, dtype=dtype).eval()  # type: ignore[arg-type]
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    feeds = random_inputs(model, T=7, N=3, state=False, lengths=False)
    np.save(tmp_path / "x.npy", feeds["input"].numpy())
    proc = run_cli(stream_bench, path, "--input", tmp_path / "x.npy", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"uses_step": True, "steps": 7}
    got = {k: torch.from_numpy(np.load(tmp_path / "o" / f"{k}.npy")) for k in ("output", "hn", "cn")}
    if model.cell == "lstm":
        check_against_python(got, model, feeds, tol(dtype))
    else:  # no nn.LSTM for a variant: the eager module is the oracle
        want = reference(model, feeds["input"], None, None)
        for key in want:
            torch.testing.assert_close(got[key], want[key], **tol(dtype), msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("K", [1, 3])
def test_archive_without_step_streams_through_forward(binary: Path, stream_bench: Path, tmp_path: Path, tol,
                                                      K: int) -> None:
    torch.manual_seed(0)
    model = _NoStep(5, 8, 2).eval()
    path = tmp_path / "old.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    feeds = random_inputs(model, T=7, N=2, state=True, lengths=False)
    arrays = {k: v.numpy() for k, v in feeds.items()}
    check_against_python(run_ok(binary, path, arrays, tmp_path / "chunked", "--chunk", K), model, feeds, tol(torch.float32))
    np.save(tmp_path / "x.npy", arrays["input"])
    proc = run_cli(stream_bench, path, "--input", tmp_path / "x.npy", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["uses_step"] is False


def test_stream_chunks_of_one_step_with_initial_state(binary: Path, exporter: ModuleType, tmp_path: Path, tol) -> None:
    # --chunk 1: every push is one step_ call from the carried (in-place) state
    model, path = make_model(tmp_path, exporter, input_size=5, hidden_size=8, num_layers=3, proj_size=4)
    feeds = random_inputs(model, T=6, N=2, state=True, lengths=False)
    got = run_ok(binary, path, {k: v.numpy() for k, v in feeds.items()}, tmp_path / "c1", "--chunk", 1)
    check_against_python(got, model, feeds, tol(torch.float32))


def test_stream_bench_prints_timings(stream_bench: Path, tmp_path: Path) -> None:
    model = deploy_lstm.LSTM(5, 8, 2).eval()
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    proc = run_cli(stream_bench, path, "--batch", 2, "--rounds", 2, "--block", 5, "--warmup", 1, "--pause-ms", 0, "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["uses_step"] is True and res["batch"] == 2 and res["threads"] == 1
    for key in ("step", "push"):
        s = res[key]
        assert s["calls"] == 10 and 0 < s["p10_us"] <= s["median_us"] <= s["p90_us"]


@pytest.mark.parametrize("args,message", [
    (["m.pt", "--batch", "0"], "--batch expects a positive integer, got '0'"),
    (["m.pt", "--input", "x.npy"], "--input and --out must be given together"),
    ([], "expected MODEL.pt, got 0 positional arguments"),
])
def test_stream_bench_bad_arguments(stream_bench: Path, args: List[str], message: str) -> None:
    proc = run_cli(stream_bench, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "usage: stream_bench MODEL.pt" in proc.stderr


def test_stream_bench_refuses_bidirectional(stream_bench: Path, tmp_path: Path) -> None:
    path = tmp_path / "bi.pt"
    torch.jit.save(torch.jit.script(deploy_lstm.LSTM(5, 8, bidirectional=True).eval()), str(path))
    proc = run_cli(stream_bench, path, "--rounds", 1, "--block", 1)
    assert proc.returncode == 1
    assert "streaming in chunks needs a unidirectional model" in proc.stderr
