"""Running exported artifacts and proving them equal to ``torch.nn.LSTM``.

* :class:`OnnxLSTM` wraps an onnxruntime ``InferenceSession`` of an exported LSTM:
  provider choice, zero initial state, inputs checked before onnxruntime sees them,
  numpy in and out.
* :func:`validate` runs every artifact at shapes other than the export example and
  compares ``output``, ``hn``, ``cn`` with the eager ``deploy_lstm`` model and with
  ``torch.nn.LSTM`` holding the same weights.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import contract
from .contract import IOSpec, LSTMConfig
from .errors import LSTMInputError
from .model import LSTM

__all__ = [
    "OnnxLSTM",
    "providers_for",
    "validate",
    "ValidationReport",
    "Check",
    "DEFAULT_CASES",
    "RuntimeUnavailable",
]

Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


class RuntimeUnavailable(RuntimeError):
    """A requested execution provider (e.g. CUDA) is not available here."""


def providers_for(device: str) -> List[str]:
    """onnxruntime providers for ``device`` ("cpu" or "cuda").

    Raises:
        RuntimeUnavailable: CUDA asked for but this onnxruntime build or machine lacks it.
    """
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeUnavailable(
                "device='cuda' asked for, but onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu on a machine "
                "with CUDA, or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def cuda_available() -> bool:
    try:
        providers_for("cuda")
    except RuntimeUnavailable:
        return False
    return True


class OnnxLSTM:
    """An onnxruntime session over a ``deploy_lstm`` ONNX export.

    Args:
        path: the ``.onnx`` file.
        device: "cpu" or "cuda" (CUDA execution provider, falling back to CPU for
            nodes it lacks).
        intra_op_num_threads, inter_op_num_threads: onnxruntime thread pools (0 = its
            default).
        session_options: a prepared ``onnxruntime.SessionOptions`` (overrides threads).

    For a bare LSTM export (graph inputs ``input``, ``h0``, ``c0`` [, ``lengths``]),
    :meth:`__call__` fills zero ``h0``/``c0`` and checks every input first.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        session_options: Optional[object] = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        self.providers = providers_for(device)
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.intra_op_num_threads = intra_op_num_threads
            session_options.inter_op_num_threads = inter_op_num_threads
        self.session = ort.InferenceSession(
            str(self.path), sess_options=session_options, providers=self.providers
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: Dict[str, str] = dict(meta)
        self.io: Optional[IOSpec] = IOSpec.from_json(meta[contract.META_IO]) if contract.META_IO in meta else None
        cfg = json.loads(meta[contract.META_CONFIG]) if contract.META_CONFIG in meta else None
        self.config: Optional[LSTMConfig] = (
            LSTMConfig.from_dict(cfg) if self.io is not None and cfg is not None else None
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def has_lengths(self) -> bool:
        return contract.LENGTHS in self.input_names

    def __call__(
        self,
        input: np.ndarray,
        h0: Optional[np.ndarray] = None,
        c0: Optional[np.ndarray] = None,
        lengths: Optional[np.ndarray] = None,
    ) -> Arrays:
        """Run a bare LSTM export: returns (output, hn, cn) as numpy arrays.

        Raises:
            LSTMInputError: an input does not fit the exported model.
        """
        if self.io is None or self.config is None:
            raise LSTMInputError(
                f"{self.path} is not a bare deploy_lstm LSTM export (no {contract.META_IO} "
                "metadata); use run() with a feed dict"
            )
        cfg, io = self.config, self.io
        x = np.asarray(input)
        spec = io.inputs[0]
        if x.ndim != 3:
            raise LSTMInputError(f"expected input of rank 3 with shape {_shape_str(spec.shape)}, got shape {x.shape}")
        if x.dtype != np.dtype(spec.dtype):
            raise LSTMInputError(f"expected input of dtype {spec.dtype}, got {x.dtype}; convert with x.astype(np.{spec.dtype})")
        if x.shape[2] != cfg.input_size:
            raise LSTMInputError(
                f"expected input of shape {_shape_str(spec.shape)} with {cfg.input_size} features, got shape {x.shape}"
            )
        N, T = (x.shape[0], x.shape[1]) if cfg.batch_first else (x.shape[1], x.shape[0])
        if N < 1 or T < 1:
            raise LSTMInputError(f"expected batch >= 1 and sequence >= 1, got batch {N}, sequence {T} (input shape {x.shape})")
        feeds = {contract.INPUT: np.ascontiguousarray(x)}
        for name, value, size in ((contract.H0, h0, cfg.real_hidden_size), (contract.C0, c0, cfg.hidden_size)):
            want = (cfg.num_states, N, size)
            if value is None:
                value = np.zeros(want, dtype=x.dtype)
            value = np.asarray(value)
            if value.shape != want:
                raise LSTMInputError(f"expected {name} of shape {want}, got {value.shape}")
            if value.dtype != x.dtype:
                raise LSTMInputError(f"expected {name} of dtype {x.dtype} (the input's), got {value.dtype}")
            feeds[name] = np.ascontiguousarray(value)
        if lengths is not None and not self.has_lengths:
            raise LSTMInputError(
                f"{self.path.name} was exported without a lengths input; re-export with lengths=True"
            )
        if self.has_lengths:
            if lengths is None:
                lengths = np.full((N,), T, dtype=np.int64)
            lengths = np.asarray(lengths)
            if lengths.dtype != np.int64 or lengths.shape != (N,):
                raise LSTMInputError(
                    f"expected lengths of dtype int64 and shape ({N},), got {lengths.dtype} of shape {lengths.shape}"
                )
            if lengths.min() < 1 or lengths.max() > T:
                raise LSTMInputError(
                    f"lengths must lie in 1..{T} (the sequence length), got values from {lengths.min()} to {lengths.max()}"
                )
            feeds[contract.LENGTHS] = lengths
        out = self.session.run(None, feeds)
        return out[0], out[1], out[2]

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run any export with a feed dict; names, ranks and dtypes are checked first."""
        expected = {i.name: i for i in self.session.get_inputs()}
        unknown = sorted(set(feeds) - set(expected))
        missing = sorted(set(expected) - set(feeds))
        if unknown or missing:
            raise LSTMInputError(
                f"expected inputs {sorted(expected)}, got {sorted(feeds)}"
                + (f" (unknown: {unknown})" if unknown else "")
                + (f" (missing: {missing})" if missing else "")
            )
        for name, value in feeds.items():
            arg = expected[name]
            value = np.asarray(value)
            if value.ndim != len(arg.shape):
                raise LSTMInputError(f"expected {name} of rank {len(arg.shape)} {arg.shape}, got shape {value.shape}")
            want = _ORT_TYPES.get(arg.type)
            if want is not None and value.dtype != want:
                raise LSTMInputError(f"expected {name} of dtype {want}, got {value.dtype}")
            for i, (d, got) in enumerate(zip(arg.shape, value.shape)):
                if isinstance(d, int) and d != got:
                    raise LSTMInputError(f"expected {name} of shape {arg.shape}, got {value.shape} (axis {i})")
        outs = self.session.run(None, {k: np.asarray(v) for k, v in feeds.items()})
        return dict(zip(self.output_names, outs))


_ORT_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(float16)": np.dtype(np.float16),
}


def _shape_str(shape: Sequence[object]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# --- validation ----------------------------------------------------------------------

#: (batch, sequence) pairs validated by default: batch 1 and odd sizes; sequence 1,
#: short and long.  None of them is the export example (3, 7).
DEFAULT_CASES: Tuple[Tuple[int, int], ...] = ((1, 1), (1, 13), (2, 1), (5, 4), (4, 50))


@dataclasses.dataclass
class Check:
    """One backend × reference × output comparison, worst case over all shapes."""

    backend: str  # "deploy_lstm eager", "torchscript", "onnxruntime-cpu", ...
    reference: str  # "deploy_lstm eager" or "torch.nn.LSTM"
    output: str  # "output", "hn", "cn"
    max_abs: float
    max_rel: float  # max |a - b| / max |b|
    atol: float
    worst_case: str  # "batch=4 sequence=50 lengths"

    @property
    def passed(self) -> bool:
        return bool(self.max_abs <= self.atol)


@dataclasses.dataclass
class ValidationReport:
    checks: List[Check]
    cases: List[str]
    config: Dict[str, object]
    skipped: Dict[str, str]  # backend -> why

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and bool(self.checks)

    def failures(self) -> List[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> Dict[str, object]:
        return {
            "passed": self.passed,
            "config": self.config,
            "cases": self.cases,
            "skipped": self.skipped,
            "checks": [dict(dataclasses.asdict(c), passed=c.passed) for c in self.checks],
        }

    def table(self) -> str:
        """A table a person reads at a glance: backend × output, errors, ✓/✗."""
        rows = [("backend", "vs", "output", "max abs", "max rel", "tol", "")]
        for c in self.checks:
            rows.append(
                (c.backend, c.reference, c.output, f"{c.max_abs:.2e}", f"{c.max_rel:.2e}", f"{c.atol:.0e}", "✓" if c.passed else "✗")
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for backend, why in self.skipped.items():
            lines.append(f"{backend}: skipped ({why})")
        return "\n".join(lines)


Runner = Callable[[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]], Arrays]


def _torch_reference(lstm: torch.nn.LSTM) -> Runner:
    def run(x, h0, c0, lengths):  # type: ignore[no-untyped-def]
        with torch.no_grad(), warnings.catch_warnings():
            # torch notes that oneDNN lacks projections and falls back: not our concern here
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            xt, h, c = torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0)
            if lengths is None:
                out, (hn, cn) = lstm(xt, (h, c))
            else:
                packed = pack_padded_sequence(xt, torch.from_numpy(lengths), batch_first=lstm.batch_first, enforce_sorted=False)
                out, (hn, cn) = lstm(packed, (h, c))
                T = x.shape[1] if lstm.batch_first else x.shape[0]
                out, _ = pad_packed_sequence(out, batch_first=lstm.batch_first, total_length=T)
        return out.numpy(), hn.numpy(), cn.numpy()

    return run


def _module_runner(module: torch.nn.Module, bare: bool = True) -> Runner:
    """A bare LSTM (``(x, (h0, c0), lengths)``) or a whole stateful model (``(x, h0, c0)``)."""

    def run(x, h0, c0, lengths):  # type: ignore[no-untyped-def]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            xt, h, c = torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0)
            if bare:
                L = torch.from_numpy(lengths) if lengths is not None else None
                out, (hn, cn) = module(xt, (h, c), L)
            else:
                out, hn, cn = module(xt, h, c)
        return out.numpy(), hn.numpy(), cn.numpy()

    return run


def _onnx_runner(session: OnnxLSTM) -> Runner:
    def run(x, h0, c0, lengths):  # type: ignore[no-untyped-def]
        if session.io is not None:
            return session(x, h0, c0, lengths)
        outs = session.run(dict(zip(session.input_names, (x, h0, c0))))
        return tuple(outs[n] for n in session.output_names[:3])  # type: ignore[return-value]

    return run


def _aoti_io(runner) -> Tuple[Optional[LSTMConfig], Optional[IOSpec]]:  # type: ignore[no-untyped-def]
    meta = runner.get_metadata()
    cfg = LSTMConfig.from_dict(json.loads(meta[contract.META_CONFIG])) if contract.META_CONFIG in meta else None
    io = IOSpec.from_json(meta[contract.META_IO]) if contract.META_IO in meta else None
    return cfg, io


def _aoti_has_lengths(path: str | os.PathLike) -> bool:
    _, io = _aoti_io(torch._inductor.aoti_load_package(str(path)))
    return io is not None and contract.LENGTHS in io.input_names


def _aoti_runner(path: str | os.PathLike) -> Runner:
    """An AOTInductor package of a bare LSTM (inputs as recorded in its metadata)."""
    runner = torch._inductor.aoti_load_package(str(path))
    cfg, io = _aoti_io(runner)
    has_lengths = io is not None and contract.LENGTHS in io.input_names

    def run(x, h0, c0, lengths):  # type: ignore[no-untyped-def]
        args = [torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0)]
        if has_lengths:
            assert cfg is not None
            N, T = (x.shape[0], x.shape[1]) if cfg.batch_first else (x.shape[1], x.shape[0])
            args.append(torch.from_numpy(lengths if lengths is not None else np.full((N,), T, dtype=np.int64)))
        out, hn, cn = runner(*args)
        return out.numpy(), hn.numpy(), cn.numpy()

    return run


def single_lstm(model: torch.nn.Module) -> LSTM:
    """The one ``deploy_lstm.LSTM`` of a whole model (its configuration drives validation)."""
    if isinstance(model, LSTM):
        return model
    found = [m for m in model.modules() if isinstance(m, LSTM)]
    if len(found) != 1:
        raise ValueError(
            f"validate needs a deploy_lstm.LSTM or a model with exactly one inside, found {len(found)} in "
            f"{type(model).__name__}"
        )
    return found[0]


def _inputs(cfg: LSTMConfig, N: int, T: int, dtype: np.dtype, lengths: bool, rng: np.random.Generator):
    shape = (N, T, cfg.input_size) if cfg.batch_first else (T, N, cfg.input_size)
    x = rng.standard_normal(shape).astype(dtype)
    h0 = rng.standard_normal((cfg.num_states, N, cfg.real_hidden_size)).astype(dtype)
    c0 = rng.standard_normal((cfg.num_states, N, cfg.hidden_size)).astype(dtype)
    L = None
    if lengths:
        L = rng.integers(1, T + 1, size=N).astype(np.int64)
        L[0] = T  # the full length is always covered; 1 whenever T > 1 and N > 1
        if N > 1:
            L[-1] = 1
    return x, h0, c0, L


def validate(
    model: torch.nn.Module,
    onnx_path: Optional[str | os.PathLike] = None,
    torchscript_path: Optional[str | os.PathLike] = None,
    *,
    cases: Iterable[Tuple[int, int]] = DEFAULT_CASES,
    lengths: Optional[bool] = None,
    atol: Optional[float] = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    extra_onnx: Optional[Dict[str, Tuple[str | os.PathLike, float]]] = None,
    aoti_path: Optional[str | os.PathLike] = None,
    seed: int = 0,
) -> ValidationReport:
    """Run each artifact at ``cases`` (batch, sequence) and compare with the references.

    Args:
        model: the eager ``deploy_lstm.LSTM`` the artifacts were made from, or a whole
            model with one inside whose forward is ``(x, h0, c0) -> (y, hn, cn)``
            (compared with the same model holding ``torch.nn.LSTM``).
        onnx_path: an exported ``.onnx`` (run on every available device in ``devices``).
        torchscript_path: a ``torch.jit.save``-d scripted model, reloaded from disk.
        cases: (batch, sequence) shapes; the defaults differ from the export example.
        lengths: also feed random ``lengths`` (each case once with, once without);
            default: when the ONNX export has a lengths input.
        atol: max abs error allowed; default 1e-5 for float32, 1e-10 for float64.
        devices: onnxruntime devices to try; CUDA is reported as skipped, with the
            reason, where it is not available.
        extra_onnx: {backend name: (path, atol)} for more ONNX files (e.g. int8).
        aoti_path: an AOTInductor ``.pt2`` package from ``deploy_lstm.aoti.export_aoti``.
        seed: input generator seed (random ``h0``/``c0`` and ``lengths`` included).

    Returns:
        A report: per backend, reference and output, the worst max abs and rel error.
    """
    lstm = single_lstm(model)
    bare = lstm is model
    cfg = LSTMConfig.of(lstm)
    dtype = np.dtype(str(lstm.weight_ih_l0.dtype).replace("torch.", ""))
    if atol is None:
        atol = 1e-10 if dtype == np.float64 else 1e-5
    model = model.eval()
    if bare:
        reference = _torch_reference(lstm.to_torch().eval())
    else:  # the same model with torch.nn.LSTM inside
        from .convert import restore_lstms

        reference = _module_runner(restore_lstms(copy.deepcopy(model)).eval(), bare=False)
    references: Dict[str, Runner] = {
        "deploy_lstm eager": _module_runner(model, bare),
        "torch.nn.LSTM": reference,
    }
    backends: Dict[str, Tuple[Runner, float]] = {"deploy_lstm eager": (references["deploy_lstm eager"], atol)}
    skipped: Dict[str, str] = {}
    onnx_sessions: Dict[str, OnnxLSTM] = {}
    if torchscript_path is not None:
        scripted = torch.jit.load(str(torchscript_path), map_location="cpu")
        backends["torchscript"] = (_module_runner(scripted, bare), atol)
    if onnx_path is not None:
        for device in devices:
            try:
                session = OnnxLSTM(onnx_path, device=device)
            except RuntimeUnavailable as e:
                skipped[f"onnxruntime-{device}"] = str(e)
                continue
            onnx_sessions[f"onnxruntime-{device}"] = session
    if aoti_path is not None:
        backends["aotinductor"] = (_aoti_runner(aoti_path), atol)
    for name, (path, tol) in (extra_onnx or {}).items():
        onnx_sessions[name] = OnnxLSTM(path, device="cpu")
        backends[name] = (_onnx_runner(onnx_sessions[name]), tol)
    for name, session in onnx_sessions.items():
        backends.setdefault(name, (_onnx_runner(session), atol))
    if lengths is None:
        lengths = any(s.has_lengths for s in onnx_sessions.values()) or (
            aoti_path is not None and _aoti_has_lengths(aoti_path)
        )
    lengths = lengths and bare  # a whole model takes its own inputs
    variants = [False, True] if lengths else [False]
    onnx_without_lengths = {name for name, s in onnx_sessions.items() if not s.has_lengths}
    if aoti_path is not None and not _aoti_has_lengths(aoti_path):
        onnx_without_lengths.add("aotinductor")

    rng = np.random.default_rng(seed)
    worst: Dict[Tuple[str, str, str], Tuple[float, float, str]] = {}
    case_names: List[str] = []
    for N, T in cases:
        for use_lengths in variants:
            x, h0, c0, L = _inputs(cfg, N, T, dtype, use_lengths, rng)
            case = f"batch={N} sequence={T}" + (" lengths" if use_lengths else "")
            case_names.append(case)
            ref_out = {name: run(x, h0, c0, L) for name, run in references.items()}
            for backend, (run, _) in backends.items():
                if use_lengths and backend in onnx_without_lengths:
                    continue
                got = run(x, h0, c0, L)
                for ref_name, ref in ref_out.items():
                    if ref_name == backend:
                        continue
                    for out_name, a, b in zip((contract.OUTPUT, contract.HN, contract.CN), got, ref):
                        if a.shape != b.shape:
                            err, rel = float("inf"), float("inf")
                        else:
                            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                            err = float(diff.max()) if diff.size else 0.0
                            scale = float(np.abs(b).max()) if b.size else 0.0
                            rel = err / scale if scale > 0 else err
                        key = (backend, ref_name, out_name)
                        if key not in worst or err > worst[key][0]:
                            worst[key] = (err, rel, case)
    checks = [
        Check(backend, ref, out, err, rel, backends[backend][1], case)
        for (backend, ref, out), (err, rel, case) in worst.items()
    ]
    return ValidationReport(checks, case_names, dataclasses.asdict(cfg), skipped)
