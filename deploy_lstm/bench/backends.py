"""What the LSTM benchmark times: the backends, their inputs, and how each is built.

Names every backend (:data:`BACKENDS`), makes one shape's inputs (:func:`make_inputs`),
and builds each backend for one configuration from scratch or from an export folder's
files (:func:`build_backends`).  Artifacts are opened through the runtime's runners
(:class:`~deploy_lstm.runtime.onnx.OnnxRunner`,
:class:`~deploy_lstm.runtime.torchscript.TorchScriptRunner`,
:class:`~deploy_lstm.runtime.aoti.AotiPackage`).  A built backend is a :data:`MakeCall`:
given a shape's inputs it binds them once and returns the
:data:`~deploy_lstm.bench.timing.Call` that is timed: the runner's own session, module
or compiled model called on those inputs, so the runner's feed checks (microseconds,
once per call) stay outside the timer.  A backend that cannot be built is recorded as
an :class:`~deploy_lstm.bench.timing.Unavailable`.
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

from deploy_lstm.bench.timing import Call, Unavailable
from deploy_lstm.check.int8 import int8_error
from deploy_lstm.check.harness import EAGER, random_inputs
from deploy_lstm.errors import ExportError
from deploy_lstm.exporters.aoti import export_aoti
from deploy_lstm.exporters.common import quiet_exporter
from deploy_lstm.exporters.int8 import QUANTIZED_LSTM, quantize_int8
from deploy_lstm.exporters.onnx import export_onnx, graph_ops
from deploy_lstm.exporters.torchscript import export_torchscript
from deploy_lstm.formats.contract import C0, CN, H0, HN, INPUT, LENGTHS, OUTPUT, lstm_io
from deploy_lstm.formats.folder import FILES
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.aoti import AotiPackage
from deploy_lstm.runtime.onnx import OnnxRunner
from deploy_lstm.runtime.torchscript import TorchScriptRunner

__all__ = [
    "NN", "EAGER", "TS_LOOP", "TS_FUSED", "TS_USER", "AOTI", "ORT_DYNAMO", "ORT_TS", "ORT_NN", "ORT_INT8", "BACKENDS",
    "AOTI_BF16", "TS_BF16", "BF16_BACKENDS", "NOT_FLOAT32", "ORT_EXPORTERS", "ARTIFACT_OF", "Shape", "Inputs", "make_inputs", "MakeCall", "Sources",
    "build_backends", "export_nn_lstm", "torch_call", "ort_call", "aoti_call",
]


NN = "nn.LSTM eager"
TS_LOOP = "deploy_lstm torchscript"
TS_FUSED = "deploy_lstm torchscript (fused)"
TS_USER = "torch.jit.script(deploy_lstm.LSTM)"  # as a user scripts it, in memory: the defaults decide what runs
AOTI = "aotinductor (.pt2)"
ORT_DYNAMO = "ort: ours (dynamo)"
ORT_TS = "ort: ours (torchscript)"
ORT_NN = "ort: nn.LSTM export"
ORT_INT8 = "ort: ours int8"
AOTI_BF16 = "aotinductor bf16 (.bf16.pt2)"
TS_BF16 = "torchscript bf16 (.bf16.ts)"
BACKENDS = [NN, EAGER, TS_LOOP, TS_FUSED, TS_USER, AOTI, ORT_DYNAMO, ORT_TS, ORT_NN, ORT_INT8, AOTI_BF16, TS_BF16]
#: the bf16 backends: each LSTM in bfloat16 behind a float32 boundary (``precision="bf16"``)
BF16_BACKENDS = (AOTI_BF16, TS_BF16)
ORT_EXPORTERS = {ORT_DYNAMO: "dynamo", ORT_TS: "torchscript"}
#: the export folder's artifact kind each backend times (the others are references)
ARTIFACT_OF = {TS_LOOP: "torchscript", TS_FUSED: "torchscript", AOTI: "aoti", ORT_DYNAMO: "onnx", ORT_TS: "onnx",
               ORT_INT8: "onnx-int8", AOTI_BF16: "aoti-bf16", TS_BF16: "torchscript-bf16"}

#: backends that do not compute in float32: their GFLOP/s are float-equivalent (the same
#: count), and they are neither part of nor compared with the float32 reference
NOT_FLOAT32 = frozenset({ORT_INT8, *BF16_BACKENDS})


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str  # "stream N=1 x64" or "N=.. T=.."
    batch: int  # N
    steps: int  # T: sequence length, or steps streamed one at a time
    stream: bool = False  # one call per step, carrying (h, c)


# --- inputs, and the timed calls bound to them ---------------------------------------------


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
    """Standard-normal ``input``, ``h0`` and ``c0`` of ``cfg`` at ``shape`` (the check harness's inputs)."""
    feeds = random_inputs(lstm_io(cfg), shape.batch, shape.steps, rng, lengths="omit")
    arrays = (feeds[INPUT], feeds[H0], feeds[C0])
    return Inputs(shape, cfg.batch_first, arrays, tuple(torch.from_numpy(a) for a in arrays))  # type: ignore[arg-type]


#: a built backend: binds one shape's inputs and returns the call that is timed
MakeCall = Callable[[Inputs], Call]


# The stream loops are written out per backend, not shared through a step function: a shared
# loop would put one more Python call inside the timer at every step.


def torch_call(module: Callable[..., Any], native: bool) -> MakeCall:
    """A torch module called as users call it: ``module(x, (h, c))`` (``native``: ``torch.nn.LSTM``) or with ``None`` lengths."""
    call = (lambda x, h, c: module(x, (h, c))) if native else (lambda x, h, c: module(x, (h, c), None))

    def make(inp: Inputs) -> Call:
        x, h0, c0 = inp.tensors
        if not inp.shape.stream:
            return lambda: call(x, h0, c0)
        steps = inp.steps(x)

        def stream() -> Tuple[torch.Tensor, torch.Tensor]:
            h, c = h0, c0
            for xt in steps:
                _, (h, c) = call(xt, h, c)
            return h, c  # the final state: what a stream's error is measured on

        return stream

    return make


def ort_call(runner: OnnxRunner) -> MakeCall:
    """The runner's onnxruntime session's own ``run`` on feeds bound once per shape (no checks inside the timer)."""
    run = runner.session.session.run  # OnnxRunner -> OnnxLSTM -> onnxruntime.InferenceSession
    names = [OUTPUT, HN, CN]
    lengths = runner.has_lengths  # an export with lengths: full lengths

    def make(inp: Inputs) -> Call:
        x, h0, c0 = inp.arrays
        N = inp.shape.batch
        if not inp.shape.stream:
            feeds = {INPUT: x, H0: h0, C0: c0, **({LENGTHS: np.full(N, inp.shape.steps, np.int64)} if lengths else {})}
            return lambda: run(names, feeds)
        steps, one = inp.steps(x), ({LENGTHS: np.ones(N, np.int64)} if lengths else {})

        def stream() -> None:
            h, c = h0, c0
            for xt in steps:
                _, h, c = run(names, {INPUT: xt, H0: h, C0: c, **one})

        return stream

    return make


def aoti_call(package: AotiPackage) -> MakeCall:
    """Calls the compiled model on tensors, as a Python user of the ``.pt2`` does (no numpy round trip)."""
    run = package.runner.loader.boxed_run  # flat tensors in (the list is consumed), flat outputs
    lengths = LENGTHS in package.input_names

    def make(inp: Inputs) -> Call:
        x, h0, c0 = inp.tensors
        N = inp.shape.batch
        if not inp.shape.stream:
            full = [torch.full((N,), inp.shape.steps, dtype=torch.int64)] if lengths else []
            return lambda: run([x, h0, c0, *full])
        steps, one = inp.steps(x), ([torch.ones(N, dtype=torch.int64)] if lengths else [])

        def stream() -> Tuple[torch.Tensor, torch.Tensor]:
            h, c = h0, c0
            for xt in steps:
                _, h, c = run([xt, h, c, *one])
            return h, c

        return stream

    return make


# --- building the backends of one configuration ----------------------------------------------


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
                BareLSTM(lstm).eval(), args, str(path), dynamo=False, opset_version=17,
                input_names=io.input_names, output_names=io.output_names, dynamic_axes=io.dynamic_axes(),
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export of nn.LSTM failed: {e}") from e
    return path


@dataclasses.dataclass
class Sources:
    """Where the artifacts come from: exported here, or an export folder's files."""

    weights: Optional[Dict[str, torch.Tensor]] = None
    onnx: Optional[Tuple[str, Path]] = None  # (exporter, path)
    torchscript: Optional[Tuple[bool, Path]] = None  # (fused, path)
    int8: Optional[Path] = None
    aoti: Optional[Path] = None
    aoti_bf16: Optional[Path] = None
    torchscript_bf16: Optional[Path] = None
    folder: Optional[Path] = None


Built = Dict[str, Union[MakeCall, Unavailable]]
_Made = Union[MakeCall, Unavailable]


def _models(cfg: LSTMConfig, weights: Optional[Dict[str, torch.Tensor]]) -> Tuple[LSTM, nn.LSTM]:
    """(our model, the torch.nn.LSTM reference): seeded weights, or the folder's."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = LSTM(**dataclasses.asdict(cfg)).eval()
    if weights is not None:
        ours.load_state_dict(weights)
    if cfg.cell == "lstm":
        return ours, ours.to_torch().eval()
    # torch.nn has no variant cell: the baselines are nn.LSTM's plain cell of the same shape,
    # so a variant's ratios show its cost relative to the plain cell
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return ours, LSTM(**{**dataclasses.asdict(cfg), "cell": "lstm"}).to_torch().eval()


class _Build:
    """The backends of one configuration, built one by one; a failure is recorded, not raised."""

    def __init__(self, cfg: LSTMConfig, workdir: Path, threads: int, sources: Sources, log: Callable[[str], None]) -> None:
        self.cfg, self.workdir, self.sources, self.log = cfg, workdir, sources, log
        self.from_folder = sources.folder is not None
        self.ours, self.reference = _models(cfg, sources.weights)
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads, self.options.inter_op_num_threads = threads, 1
        self.options.log_severity_level = 3  # errors only: not "Removing initializer ..." per session
        self.built: Built = {NN: torch_call(self.reference, native=True), EAGER: torch_call(self.ours, native=False)}
        self.graphs: Dict[str, Any] = {}  # {backend: the ONNX recurrent ops its graph runs}
        self.onnx_paths: Dict[str, Path] = {sources.onnx[0]: sources.onnx[1]} if sources.onnx is not None else {}
        self.int8_accuracy: Optional[Dict[str, Any]] = None

    def attempt(self, name: str, make: Callable[[], _Made]) -> None:
        t0 = time.perf_counter()
        try:
            self.built[name] = make()
        except Exception as e:  # recorded in the results, not raised
            self.built[name] = Unavailable.of(name, e)
        b = self.built[name]
        self.log(f"  {name}: n/a ({b.reason})" if isinstance(b, Unavailable) else f"  built {name} in {time.perf_counter() - t0:.1f}s")

    def session(self, name: str, path: Path) -> MakeCall:
        ops = graph_ops(onnx.load(str(path), load_external_data=False))
        self.graphs[name] = {op: n for op, n in sorted(ops.items()) if op in ("LSTM", "Scan", "Loop", QUANTIZED_LSTM)}
        return ort_call(OnnxRunner(path, kind="onnx-int8" if name == ORT_INT8 else "onnx", session_options=self.options))

    @staticmethod
    def missing(name: str, kind: str) -> Unavailable:
        return Unavailable(name, f"the export folder has no {FILES[kind]}")

    def torchscript(self, fused: bool) -> _Made:
        name = TS_FUSED if fused else TS_LOOP
        if fused and self.cfg.cell != "lstm":
            return Unavailable(name, f"the {self.cfg.cell!r} cell has no aten kernel: its TorchScript runs the loop")
        if self.from_folder:  # an export folder holds at most one model.ts
            if self.sources.torchscript is None:
                return self.missing(name, "torchscript")
            have_fused, path = self.sources.torchscript
            if have_fused != fused:
                return Unavailable(name, f"the export folder's {FILES['torchscript']} is the {'fused' if have_fused else 'loop'} one")
        else:
            path = export_torchscript(self.ours, self.workdir / f"model-{'fused' if fused else 'loop'}.ts", fused=fused)
        return torch_call(TorchScriptRunner(path).module.eval(), native=False)

    def aoti(self) -> _Made:
        if self.from_folder:
            return aoti_call(AotiPackage(self.sources.aoti)) if self.sources.aoti is not None else self.missing(AOTI, "aoti")
        return aoti_call(AotiPackage(export_aoti(self.ours, self.workdir / "model.pt2")))

    def bf16(self, name: str) -> _Made:
        """A bf16 artifact (float32 boundary): the folder's file, or exported here with ``precision="bf16"``."""
        aoti = name == AOTI_BF16
        if self.from_folder:
            path = self.sources.aoti_bf16 if aoti else self.sources.torchscript_bf16
            if path is None:
                return self.missing(name, ARTIFACT_OF[name])
        elif aoti:
            path = export_aoti(self.ours, self.workdir / FILES["aoti-bf16"], precision="bf16")
        else:
            path = export_torchscript(self.ours, self.workdir / FILES["torchscript-bf16"], fused=True, precision="bf16")
        if aoti:
            return aoti_call(AotiPackage(path))
        return torch_call(TorchScriptRunner(path).module.eval(), native=False)

    def onnx(self, name: str, exporter: str) -> _Made:
        if exporter not in self.onnx_paths:
            if self.from_folder and self.sources.onnx is None:
                return self.missing(name, "onnx")
            if self.from_folder:
                return Unavailable(name, f"the export folder's {FILES['onnx']} is from the {self.sources.onnx[0]} exporter")
            self.onnx_paths[exporter] = export_onnx(self.ours, self.workdir / f"{exporter}.onnx", exporter=exporter)
        return self.session(name, self.onnx_paths[exporter])

    def int8(self) -> _Made:
        src = next(iter(self.onnx_paths.values()), None)
        if self.from_folder:
            if self.sources.int8 is None:
                return self.missing(ORT_INT8, "onnx-int8")
            path = self.sources.int8
        elif src is None:
            return Unavailable(ORT_INT8, "no float ONNX model to quantize")
        else:
            path = quantize_int8(src, self.workdir / "int8.onnx")
        made = self.session(ORT_INT8, path)
        if src is not None:
            self.int8_accuracy = {"against": str(src.name), **int8_error(src, path)}
        return made


def build_backends(cfg: LSTMConfig, workdir: Path, threads: int, sources: Sources, log: Callable[[str], None],
                   bf16: bool = True) -> Tuple[Built, Dict[str, Any], Optional[Dict[str, Any]], LSTM]:
    """({backend: MakeCall | Unavailable}, {backend: ONNX recurrent ops}, int8's error, the model) for one configuration.

    The model is the float32 ``deploy_lstm.LSTM`` every artifact was made from (the bf16
    tolerance follows from its weights).  ``bf16=False``: the bf16 backends are not built
    (recorded as not asked for).

    int8's error is :func:`deploy_lstm.check.int8.int8_error` of the int8 model against the
    float32 ONNX model it was made from (None without an int8 model), so the report can put
    its accuracy beside its speed.

    From an export folder, our backends run its files only (one missing is n/a); the
    references (nn.LSTM eager and its own export, deploy_lstm eager) use its weights.  For a
    variant cell the nn.LSTM references are the plain cell of the same shape (the baseline of
    a variant's cost).
    onnxruntime sessions are opened here and live only as long as the returned dict.
    """
    b = _Build(cfg, workdir, threads, sources, log)
    b.attempt(TS_LOOP, lambda: b.torchscript(False))
    b.attempt(TS_FUSED, lambda: b.torchscript(True))
    # not an artifact: what torch.jit.script gives a user who never heard of fused=
    b.attempt(TS_USER, lambda: torch_call(torch.jit.script(b.ours), native=False))
    b.attempt(AOTI, b.aoti)
    for name, exporter in ORT_EXPORTERS.items():
        b.attempt(name, lambda name=name, exporter=exporter: b.onnx(name, exporter))
    b.attempt(ORT_NN, lambda: b.session(ORT_NN, export_nn_lstm(b.reference, workdir / "nn_lstm.onnx")))
    b.attempt(ORT_INT8, b.int8)
    for name in BF16_BACKENDS:
        if bf16:
            b.attempt(name, lambda name=name: b.bf16(name))
        else:
            b.built[name] = Unavailable(name, "bf16 not asked for (bf16=False)")
    return b.built, b.graphs, b.int8_accuracy, b.ours
