"""Proving artifacts equal to the eager model and to ``torch.nn.LSTM``.

:func:`validate` runs every artifact at shapes other than the export example and
compares each output with two references: the eager ``deploy_lstm`` model, and the
same model holding ``torch.nn.LSTM`` modules with the same weights (for a bare LSTM
with ``lengths``: ``nn.LSTM`` on a packed batch).  Every backend is a function from
named input arrays to named output arrays, so a bare LSTM and a whole model take
the same path; the graph's flat input/output names come from
:func:`deploy_lstm.exporting.signature`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from typing_extensions import Unpack

from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import ModelSpec
from deploy_lstm.nn.swap import restore_lstms
from deploy_lstm.errors import ConfigError, RuntimeUnavailable
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.exporters.signature import GraphArgs, Signature
from deploy_lstm.exporters.signature import signature as signature_of
from deploy_lstm.check.harness import (
    EAGER, TORCH, Feeds, FeedsFn, example_arrays, full_lengths, max_abs_rel, module_fn, random_inputs, reference_models,
)
from deploy_lstm.check.tolerance import float_atol
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.nn import LSTM, LSTMCell
from deploy_lstm.check.int8 import int8_tolerance
from deploy_lstm.runtime.aoti import AotiPackage
from deploy_lstm.runtime.onnx import OnnxLSTM

__all__ = [
    "validate",
    "validate_folder",
    "ValidationReport",
    "Check",
    "DEFAULT_CASES",
    "inputs_at",
    "module_runner",
    "artifact_runner",
    "TorchLSTMGraph",
]


#: (batch, sequence) pairs validated by default: batch 1 and odd sizes; sequence 1,
#: short and long.  None of them is the export example (3, 7).
DEFAULT_CASES: Tuple[Tuple[int, int], ...] = ((1, 1), (1, 13), (2, 1), (5, 4), (4, 50))



@dataclasses.dataclass
class Check:
    """One backend × reference × output comparison, worst case over all shapes."""

    backend: str  # "deploy_lstm eager", "torchscript", "onnxruntime-cpu", ...
    reference: str  # "deploy_lstm eager" or "torch.nn.LSTM"
    output: str  # a graph output name: "output", "hn", "cn", ...
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


# --- the former names, kept until serve and bench use the harness ---------------------------

#: ``nn.LSTM`` with the bare graph signature: now :class:`~deploy_lstm.nn.graph.BareLSTM`
TorchLSTMGraph = BareLSTM
#: a module called on feeds: now :func:`~deploy_lstm.check.harness.module_fn`
module_runner = module_fn


def artifact_runner(artifact: Any) -> FeedsFn:
    """Run an ``OnnxLSTM`` or ``AotiPackage`` on the feeds it takes."""
    return lambda feeds: artifact.run({n: feeds[n] for n in artifact.input_names})


def inputs_at(sig: Signature, N: int, T: int, rng: np.random.Generator, use_lengths: bool = False) -> Feeds:
    """:func:`~deploy_lstm.check.harness.random_inputs` of a signature (a bare LSTM's
    ``lengths`` only with ``use_lengths``)."""
    lengths = "random" if use_lengths or sig.bare is None else "omit"
    return random_inputs(sig.io, N, T, rng, examples=example_arrays(sig), lengths=lengths)


# --- validate ----------------------------------------------------------------------------------


def validate(
    model: nn.Module,
    onnx_path: Optional[str | os.PathLike] = None,
    torchscript_path: Optional[str | os.PathLike] = None,
    *,
    cases: Iterable[Tuple[int, int]] = DEFAULT_CASES,
    lengths: Optional[bool] = None,
    atol: Optional[float] = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    extra_onnx: Optional[Mapping[str, Tuple[str | os.PathLike, float]]] = None,
    aoti_path: Optional[str | os.PathLike] = None,
    seed: int = 0,
    signature: Optional[Signature] = None,
    **graph: Unpack[GraphArgs],
) -> ValidationReport:
    """Run each artifact at ``cases`` (batch, sequence) and compare with the references.

    Args:
        model: the eager model the artifacts were made from: a bare ``deploy_lstm.LSTM``,
            or a whole model (then give ``example_inputs`` and the names and
            ``dynamic_axes`` used at export; see :func:`deploy_lstm.export_onnx`).
            ``model`` is not changed: it runs as an eval-mode copy.
        onnx_path: an exported ``.onnx`` (run on every available device in ``devices``).
        torchscript_path: a ``torch.jit.save``-d scripted model, reloaded from disk.
        **graph: a whole model's call and graph names, as given to
            :func:`deploy_lstm.export_onnx` (``example_inputs``, ``example_kwargs``,
            ``input_names``, ``output_names``, ``dynamic_axes`` or ``dynamic_shapes``).
            Inputs at each case resize every dynamic axis: dims named like "batch" to
            the batch size, the others to the sequence length.
        cases: (batch, sequence) shapes; the defaults differ from the export example.
        lengths: bare LSTM: also feed random ``lengths`` (each case once with, once
            without); default: when an artifact has a ``lengths`` input.
        atol: max abs error allowed; default 1e-5 for float32, 1e-10 for float64.
        devices: onnxruntime devices to try; CUDA is reported as skipped, with the
            reason, where it is not available.
        extra_onnx: {backend name: (path, atol)} for more ONNX files (e.g. int8).
        aoti_path: an AOTInductor ``.pt2`` package from ``deploy_lstm.export_aoti``.
        seed: input generator seed (random ``h0``/``c0`` and ``lengths`` included).
        signature: the export's signature of ``model`` (:func:`~deploy_lstm.exporters.signature.signature`),
            when the caller computed it already; then ``**graph`` is not needed, and
            ``lengths`` defaults to whether the signature has a ``lengths`` input.

    Returns:
        A report: per backend, reference and output, the worst max abs and rel error.
    """
    eager = copy.deepcopy(model).eval()  # the caller's flags and weights stay as they are
    onnx_sessions: Dict[str, OnnxLSTM] = {}
    skipped: Dict[str, str] = {}
    if onnx_path is not None:
        for device in devices:
            try:
                onnx_sessions[f"onnxruntime-{device}"] = OnnxLSTM(onnx_path, device=device)
            except RuntimeUnavailable as e:
                skipped[f"onnxruntime-{device}"] = str(e)
    for name, (path, _) in (extra_onnx or {}).items():
        onnx_sessions[name] = OnnxLSTM(path, device="cpu")
    aoti = AotiPackage(aoti_path) if aoti_path is not None else None
    artifacts: Dict[str, Any] = dict(onnx_sessions)
    if aoti is not None:
        artifacts["aotinductor"] = aoti

    bare = isinstance(eager, LSTM)
    # torch.nn has no variant cells: those models are checked against the eager model only
    variants = sorted({m.cell for m in eager.modules() if isinstance(m, (LSTM, LSTMCell)) and m.cell != "lstm"})
    if lengths is None:
        lengths = bare and any(contract.LENGTHS in a.input_names for a in artifacts.values())
    if signature is not None:
        sig = dataclasses.replace(signature, model=eager)  # the eval-mode copy runs
        if bare and lengths is None:
            lengths = contract.LENGTHS in sig.io.input_names
        reference = None if variants else reference_models(sig)[TORCH]
        config: Dict[str, object] = dataclasses.asdict(sig.bare) if bare else {"io": dataclasses.asdict(sig.io)}  # type: ignore[arg-type]
    elif bare:
        sig = signature_of(eager, lengths=bool(lengths))
        reference: Optional[nn.Module] = None if variants else BareLSTM(eager.to_torch().eval())
        config = dataclasses.asdict(sig.bare)  # type: ignore[arg-type]
    else:
        if graph.get("example_inputs") is None and not graph.get("example_kwargs"):
            raise ConfigError(
                f"validating a whole model ({type(model).__name__}) needs its example_inputs "
                "(and the input_names, output_names and dynamic_axes used at export)"
            )
        if lengths:
            raise ConfigError("lengths=True is for a bare deploy_lstm.LSTM; a whole model takes its own inputs")
        sig = signature_of(eager, **graph)
        reference = None if variants else restore_lstms(copy.deepcopy(eager)).eval()
        config = {"io": dataclasses.asdict(sig.io)}
    if atol is None:
        atol = float_atol(sig.io, variants)

    references: Dict[str, FeedsFn] = {EAGER: module_runner(sig.module, sig)}
    if reference is not None:
        references[TORCH] = module_runner(reference, sig)
    backends: Dict[str, Tuple[FeedsFn, float]] = {EAGER: (references[EAGER], atol)}
    if torchscript_path is not None:
        scripted = torch.jit.load(str(torchscript_path), map_location="cpu")
        backends["torchscript"] = (module_runner(BareLSTM(scripted) if bare else scripted, sig), atol)
    for name, artifact in artifacts.items():
        tol = extra_onnx[name][1] if extra_onnx and name in extra_onnx else atol
        backends[name] = (artifact_runner(artifact), tol)

    rng = np.random.default_rng(seed)
    worst: Dict[Tuple[str, str, str], Tuple[float, float, str]] = {}
    case_names: List[str] = []
    for N, T in cases:
        for use_lengths in ([False, True] if lengths else [False]):
            feeds = inputs_at(sig, N, T, rng, use_lengths)
            case = f"batch={N} sequence={T}" + (" lengths" if use_lengths else "")
            case_names.append(case)
            ref_out = {name: run(feeds) for name, run in references.items()}
            for backend, (run, _) in backends.items():
                takes_lengths = contract.LENGTHS in getattr(artifacts.get(backend), "input_names", [contract.LENGTHS])
                if use_lengths and not takes_lengths:
                    continue  # exported without a lengths input: only the full-length cases apply
                fed = dict(feeds)
                if bare and takes_lengths and contract.LENGTHS not in fed and backend in artifacts:
                    fed[contract.LENGTHS] = full_lengths(sig.bare, feeds)  # type: ignore[arg-type]
                got = run(fed)
                for ref_name, ref in ref_out.items():
                    if ref_name == backend:
                        continue
                    for out_name in sig.output_names:
                        err, rel = max_abs_rel(got[out_name], ref[out_name])
                        key = (backend, ref_name, out_name)
                        if key not in worst or err > worst[key][0]:
                            worst[key] = (err, rel, case)
    checks = [
        Check(backend, ref, out, err, rel, backends[backend][1], case)
        for (backend, ref, out), (err, rel, case) in worst.items()
    ]
    return ValidationReport(checks, case_names, config, skipped)


def validate_folder(
    folder: ExportFolder,
    *,
    atol: Optional[float] = None,
    int8_atol: Optional[float] = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    cases: Iterable[Tuple[int, int]] = DEFAULT_CASES,
) -> ValidationReport:
    """Validate every artifact of an export folder against its weights.

    ``int8_atol`` defaults to the tolerance recorded at export, or for a folder that
    records none, :func:`~deploy_lstm.quantize.int8_tolerance` of its weights.
    """
    spec: ModelSpec = folder.model_spec()
    extra = {}
    if folder.has("onnx-int8"):
        tol = int8_atol if int8_atol is not None else folder.artifacts["onnx-int8"].details.get("atol")
        extra["onnxruntime-int8"] = (folder.file("onnx-int8"), float(tol if tol is not None else int8_tolerance(spec.model)))
    whole = {} if folder.config is not None else spec.call_arguments()
    return validate(
        spec.model,
        folder.file("onnx") if folder.has("onnx") else None,
        folder.file("torchscript") if folder.has("torchscript") else None,
        atol=atol, devices=devices, cases=cases, extra_onnx=extra,
        aoti_path=folder.file("aoti") if folder.has("aoti") else None,
        **whole,  # type: ignore[arg-type]
    )
