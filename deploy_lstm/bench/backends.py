"""The backends the LSTM benchmark times, and how each is built for one configuration.

``bench.py`` times them; this module names them (:data:`BACKENDS`), makes their
inputs, and builds each from a configuration or an export folder's files
(:func:`build_backends`), recording a backend that cannot be built as an
:class:`~deploy_lstm.bench_report.Unavailable`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from deploy_lstm.bench.report import Unavailable
from deploy_lstm.formats.contract import C0, CN, H0, HN, INPUT, LENGTHS, OUTPUT, lstm_io
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.errors import ExportError
from deploy_lstm.exporters.common import quiet_exporter
from deploy_lstm.formats.folder import FILES
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.exporters.aoti import export_aoti
from deploy_lstm.exporters.onnx import export_onnx, graph_ops
from deploy_lstm.exporters.int8 import QUANTIZED_LSTM, quantize_int8
from deploy_lstm.check.int8 import int8_error
from deploy_lstm.runtime.aoti import AotiPackage
from deploy_lstm.exporters.torchscript import export_torchscript

__all__ = [
    "NN", "EAGER", "TS_LOOP", "TS_FUSED", "TS_USER", "AOTI", "ORT_DYNAMO", "ORT_TS", "ORT_NN", "ORT_INT8", "BACKENDS", "NOT_FLOAT32",
    "ORT_EXPORTERS", "ARTIFACT_OF", "Shape", "Inputs", "make_inputs", "Sources", "build_backends", "export_nn_lstm", "torch_runner",
    "ort_runner", "Runner",
]


NN = "nn.LSTM eager"
EAGER = "deploy_lstm eager"
TS_LOOP = "deploy_lstm torchscript"
TS_FUSED = "deploy_lstm torchscript (fused)"
TS_USER = "torch.jit.script(deploy_lstm.LSTM)"  # as a user scripts it, in memory: the defaults decide what runs
AOTI = "aotinductor (.pt2)"
ORT_DYNAMO = "ort: ours (dynamo)"
ORT_TS = "ort: ours (torchscript)"
ORT_NN = "ort: nn.LSTM export"
ORT_INT8 = "ort: ours int8"
BACKENDS = [NN, EAGER, TS_LOOP, TS_FUSED, TS_USER, AOTI, ORT_DYNAMO, ORT_TS, ORT_NN, ORT_INT8]
ORT_EXPORTERS = {ORT_DYNAMO: "dynamo", ORT_TS: "torchscript"}
#: the export folder's artifact kind each backend times (the others are references)
ARTIFACT_OF = {TS_LOOP: "torchscript", TS_FUSED: "torchscript", AOTI: "aoti", ORT_DYNAMO: "onnx", ORT_TS: "onnx",
               ORT_INT8: "onnx-int8"}

#: backends that do not compute in float32: their GFLOP/s are float-equivalent (the same
#: count), and they are neither part of nor compared with the float32 reference
NOT_FLOAT32 = frozenset({ORT_INT8})


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str  # "stream N=1 x64" or "N=.. T=.."
    batch: int  # N
    steps: int  # T: sequence length, or steps streamed one at a time
    stream: bool = False  # one call per step, carrying (h, c)



# --- building the backends -----------------------------------------------------------


class _NNWrapper(nn.Module):
    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, input, h0, c0):  # type: ignore[no-untyped-def]
        output, (hn, cn) = self.lstm(input, (h0, c0))
        return output, hn, cn


def export_nn_lstm(lstm: nn.LSTM, path: str | os.PathLike) -> Path:
    """``torch.nn.LSTM``'s own ONNX export (``torch.onnx.export(dynamo=False)``, opset 17).

    The graph has this library's I/O contract (``contract.lstm_io``: names and
    dynamic batch and sequence axes), so it runs with the same feeds as our exports.

    Raises:
        ExportError: ``proj_size > 0`` (the exporter has no LSTM-with-projection
            symbolic), or the exporter's own failure.
    """
    if lstm.proj_size > 0:
        # torch.onnx.export(dynamo=False) raises "Unsupported: ONNX export of operator LSTM,
        # LSTMs with projections" (symbolic_opset9), after printing the whole TorchScript IR to
        # stdout; refuse before that.  Users rewrite LSTMP by hand instead: k2-fsa/icefall#621.
        raise ExportError(
            "torch.onnx.export cannot export nn.LSTM with proj_size > 0 "
            "(Unsupported: ONNX export of operator LSTM, LSTMs with projections)"
        )
    cfg = LSTMConfig.of(lstm)
    io = lstm_io(cfg)
    N, T = 3, 5
    x = torch.zeros(N, T, cfg.input_size) if cfg.batch_first else torch.zeros(T, N, cfg.input_size)
    args = (x, torch.zeros(cfg.num_states, N, cfg.real_hidden_size), torch.zeros(cfg.num_states, N, cfg.hidden_size))
    path = Path(path)
    try:
        with quiet_exporter(), warnings.catch_warnings():
            # "Exporting a model to ONNX with a batch_size other than 1...": h0/c0 are graph inputs here
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                _NNWrapper(lstm).eval(), args, str(path), dynamo=False, opset_version=17,
                input_names=io.input_names, output_names=io.output_names, dynamic_axes=io.dynamic_axes(),
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export of nn.LSTM failed: {e}") from e
    return path


Runner = Callable[[], Any]
Built = Dict[str, Union[Callable[["Inputs"], Runner], Unavailable]]


@dataclasses.dataclass
class Inputs:
    """One shape's inputs, as numpy arrays (onnxruntime) and tensors sharing their memory (torch)."""

    shape: Shape
    batch_first: bool
    arrays: Tuple[np.ndarray, np.ndarray, np.ndarray]  # x, h0, c0
    tensors: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    def steps(self, x: Any) -> List[Any]:
        """``x`` cut into one-step slices along the time axis (contiguous)."""
        T = self.shape.steps
        if self.batch_first:
            return [x[:, t : t + 1].copy() if isinstance(x, np.ndarray) else x[:, t : t + 1].contiguous() for t in range(T)]
        return [x[t : t + 1].copy() if isinstance(x, np.ndarray) else x[t : t + 1].contiguous() for t in range(T)]


def make_inputs(cfg: LSTMConfig, shape: Shape, rng: np.random.Generator) -> Inputs:
    N, T = shape.batch, shape.steps
    x = rng.standard_normal((N, T, cfg.input_size) if cfg.batch_first else (T, N, cfg.input_size)).astype(np.float32)
    h0 = rng.standard_normal((cfg.num_states, N, cfg.real_hidden_size)).astype(np.float32)
    c0 = rng.standard_normal((cfg.num_states, N, cfg.hidden_size)).astype(np.float32)
    arrays = (x, h0, c0)
    return Inputs(shape, cfg.batch_first, arrays, tuple(torch.from_numpy(a) for a in arrays))  # type: ignore[arg-type]


def torch_runner(module: Callable[..., Any], native: bool) -> Callable[[Inputs], Runner]:
    def make(inp: Inputs) -> Runner:
        x, h0, c0 = inp.tensors
        call = (lambda x, h, c: module(x, (h, c))) if native else (lambda x, h, c: module(x, (h, c), None))
        if not inp.shape.stream:
            return lambda: call(x, h0, c0)
        steps = inp.steps(x)

        def stream() -> None:
            h, c = h0, c0
            for xt in steps:
                _, (h, c) = call(xt, h, c)

        return stream

    return make


def ort_runner(session: ort.InferenceSession) -> Callable[[Inputs], Runner]:
    run = session.run
    names = [OUTPUT, HN, CN]
    lengths = LENGTHS in {i.name for i in session.get_inputs()}  # an export with lengths: full lengths

    def make(inp: Inputs) -> Runner:
        x, h0, c0 = inp.arrays
        N = inp.shape.batch
        if not inp.shape.stream:
            feeds = {INPUT: x, H0: h0, C0: c0}
            if lengths:
                feeds[LENGTHS] = np.full(N, inp.shape.steps, np.int64)
            return lambda: run(names, feeds)
        steps = inp.steps(x)
        one = {LENGTHS: np.ones(N, np.int64)} if lengths else {}

        def stream() -> None:
            h, c = h0, c0
            for xt in steps:
                _, h, c = run(names, {INPUT: xt, H0: h, C0: c, **one})

        return stream

    return make


def aoti_runner(package: AotiPackage) -> Callable[[Inputs], Runner]:
    """Calls the compiled model on tensors, as a Python user of the ``.pt2`` does (no numpy round trip)."""
    run = package.runner.loader.boxed_run  # flat tensors in (the list is consumed), flat outputs
    lengths = LENGTHS in package.input_names

    def make(inp: Inputs) -> Runner:
        x, h0, c0 = inp.tensors
        N = inp.shape.batch
        if not inp.shape.stream:
            full = [torch.full((N,), inp.shape.steps, dtype=torch.int64)] if lengths else []
            return lambda: run([x, h0, c0, *full])
        steps = inp.steps(x)
        one = [torch.ones(N, dtype=torch.int64)] if lengths else []

        def stream() -> None:
            h, c = h0, c0
            for xt in steps:
                _, h, c = run([xt, h, c, *one])

        return stream

    return make


@dataclasses.dataclass
class Sources:
    """Where the artifacts come from: exported here, or an export folder's files."""

    weights: Optional[Dict[str, torch.Tensor]] = None
    onnx: Optional[Tuple[str, Path]] = None  # (exporter, path)
    torchscript: Optional[Tuple[bool, Path]] = None  # (fused, path)
    int8: Optional[Path] = None
    aoti: Optional[Path] = None
    folder: Optional[Path] = None


def build_backends(cfg: LSTMConfig, workdir: Path, threads: int, sources: Sources, log: Callable[[str], None]
                   ) -> Tuple[Built, Dict[str, Any], Optional[Dict[str, Any]]]:
    """({backend: make-runner | Unavailable}, {backend: ONNX recurrent ops}, int8's error) for one configuration.

    int8's error is :func:`deploy_lstm.quantize.int8_error` of the int8 model against the float32
    ONNX model it was made from (None without an int8 model), so the report can put its accuracy
    beside its speed.

    From an export folder, our backends run its files only (one missing is n/a); the
    references (nn.LSTM eager and its own export, deploy_lstm eager) use its weights.  For a
    variant cell the nn.LSTM references are the plain cell of the same shape (the baseline of
    a variant's cost).
    onnxruntime sessions are opened here and live only as long as the returned dict.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = LSTM(**dataclasses.asdict(cfg)).eval()
    if sources.weights is not None:
        ours.load_state_dict(sources.weights)
    if cfg.cell == "lstm":
        reference = ours.to_torch().eval()
    else:  # torch.nn has no variant cell: the baselines are nn.LSTM's plain cell of the same shape,
        # so a variant's ratios show its cost relative to the plain cell
        with torch.random.fork_rng():
            torch.manual_seed(0)
            reference = LSTM(**{**dataclasses.asdict(cfg), "cell": "lstm"}).to_torch().eval()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3  # errors only: not "Removing initializer ..." per session
    built: Built = {NN: torch_runner(reference, native=True), EAGER: torch_runner(ours, native=False)}
    graphs: Dict[str, Any] = {}

    def attempt(name: str, make: Callable[[], Union[Callable[[Inputs], Runner], Unavailable]]) -> None:
        t0 = time.perf_counter()
        try:
            built[name] = make()
        except Exception as e:  # recorded in the results, not raised
            built[name] = Unavailable.of(name, e)
        b = built[name]
        log(f"  {name}: n/a ({b.reason})" if isinstance(b, Unavailable) else f"  built {name} in {time.perf_counter() - t0:.1f}s")

    def session(name: str, path: Path) -> Callable[[Inputs], Runner]:
        ops = graph_ops(onnx.load(str(path), load_external_data=False))
        graphs[name] = {op: n for op, n in sorted(ops.items()) if op in ("LSTM", "Scan", "Loop", QUANTIZED_LSTM)}
        return ort_runner(ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"]))

    def missing(name: str, kind: str) -> Unavailable:
        return Unavailable(name, f"the export folder has no {FILES[kind]}")

    def ts(fused: bool) -> Union[Callable[[Inputs], Runner], Unavailable]:
        name = TS_FUSED if fused else TS_LOOP
        if fused and cfg.cell != "lstm":
            return Unavailable(name, f"the {cfg.cell!r} cell has no aten kernel: its TorchScript runs the loop")
        if sources.folder is not None:  # an export folder holds at most one model.ts
            if sources.torchscript is None:
                return missing(name, "torchscript")
            have_fused, path = sources.torchscript
            if have_fused != fused:
                return Unavailable(name, f"the export folder's {FILES['torchscript']} is the {'fused' if have_fused else 'loop'} one")
        else:
            path = export_torchscript(ours, workdir / f"model-{'fused' if fused else 'loop'}.ts", fused=fused)
        return torch_runner(torch.jit.load(str(path), map_location="cpu").eval(), native=False)

    attempt(TS_LOOP, lambda: ts(False))
    attempt(TS_FUSED, lambda: ts(True))
    # not an artifact: what torch.jit.script gives a user who never heard of fused=
    attempt(TS_USER, lambda: torch_runner(torch.jit.script(ours), native=False))

    def aoti() -> Union[Callable[[Inputs], Runner], Unavailable]:
        if sources.folder is not None:
            return aoti_runner(AotiPackage(sources.aoti)) if sources.aoti is not None else missing(AOTI, "aoti")
        return aoti_runner(AotiPackage(export_aoti(ours, workdir / "model.pt2")))

    attempt(AOTI, aoti)
    onnx_paths: Dict[str, Path] = {}
    if sources.onnx is not None:
        onnx_paths[sources.onnx[0]] = sources.onnx[1]
    for name, exporter in ORT_EXPORTERS.items():

        def ours_session(name: str = name, exporter: str = exporter) -> Union[Callable[[Inputs], Runner], Unavailable]:
            if exporter not in onnx_paths:
                if sources.folder is not None and sources.onnx is None:
                    return missing(name, "onnx")
                if sources.folder is not None:
                    return Unavailable(name, f"the export folder's {FILES['onnx']} is from the {sources.onnx[0]} exporter")
                onnx_paths[exporter] = export_onnx(ours, workdir / f"{exporter}.onnx", exporter=exporter)
            return session(name, onnx_paths[exporter])

        attempt(name, ours_session)
    attempt(ORT_NN, lambda: session(ORT_NN, export_nn_lstm(reference, workdir / "nn_lstm.onnx")))

    accuracy: List[Dict[str, Any]] = []

    def int8() -> Union[Callable[[Inputs], Runner], Unavailable]:
        src = next(iter(onnx_paths.values()), None)
        if sources.folder is not None:
            if sources.int8 is None:
                return missing(ORT_INT8, "onnx-int8")
            path = sources.int8
        elif src is None:
            return Unavailable(ORT_INT8, "no float ONNX model to quantize")
        else:
            path = quantize_int8(src, workdir / "int8.onnx")
        runner = session(ORT_INT8, path)
        if src is not None:
            accuracy.append({"against": str(src.name), **int8_error(src, path)})
        return runner

    attempt(ORT_INT8, int8)
    return built, graphs, (accuracy[0] if accuracy else None)
