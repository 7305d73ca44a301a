"""Proving artifacts equal to the eager model and to ``torch.nn.LSTM``.

:func:`validate` runs every artifact at shapes other than the export example and
compares each output with two references: the eager ``deploy_lstm`` model, and the
same model holding ``torch.nn.LSTM`` modules with the same weights (for a bare LSTM
with ``lengths``: ``nn.LSTM`` on a packed batch).  Artifacts are opened only through
the runtime's runners (:mod:`deploy_lstm.runtime`), and every backend is a function
from named input arrays to named output arrays (:mod:`deploy_lstm.check.harness`),
so a bare LSTM and a whole model take the same path; the graph's flat input/output
names come from the export's signature (:func:`deploy_lstm.exporters.signature.signature`).
:func:`deploy_lstm.check.folder.validate_folder` does the same for an export folder's artifacts.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from torch import nn
from typing_extensions import Unpack

from deploy_lstm.check.harness import (
    EAGER, FeedsFn, cell_variants, example_arrays, max_abs_rel, module_fn, random_inputs,
    reference_models, runner_fn,
)
from deploy_lstm.check.tolerance import float_atol
from deploy_lstm.errors import ConfigError, RuntimeUnavailable
from deploy_lstm.exporters.signature import GraphArgs, Signature
from deploy_lstm.exporters.signature import signature as signature_of
from deploy_lstm.formats import contract
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.aoti import AotiPackage
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.onnx import OnnxRunner
from deploy_lstm.runtime.torchscript import TorchScriptRunner

__all__ = [
    "validate",
    "validate_runners",
    "ValidationReport",
    "Check",
    "DEFAULT_CASES",
    "BACKEND_NAMES",
    "EAGER",
    "Opened",
]


#: (batch, sequence) pairs validated by default: batch 1 and odd sizes; sequence 1,
#: short and long.  None of them is the export example (3, 7).
DEFAULT_CASES: Tuple[Tuple[int, int], ...] = ((1, 1), (1, 13), (2, 1), (5, 4), (4, 50))

#: the report's backend name of each artifact kind ("{device}": onnxruntime's device)
BACKEND_NAMES: Dict[str, str] = {
    "onnx": "onnxruntime-{device}", "onnx-int8": "onnxruntime-int8", "torchscript": "torchscript", "aoti": "aotinductor",
    "aoti-bf16": "aotinductor-bf16", "torchscript-bf16": "torchscript-bf16",
}

#: {backend name: (its runner, its tolerance, or None for the float tolerance)}
Opened = Dict[str, Tuple[Runner, Optional[float]]]


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
        """A table a person reads at a glance: backend × output, errors, and "ok" (✓/✗: within tol)."""
        rows = [("backend", "vs", "output", "max abs", "max rel", "tol", "ok")]
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


# --- opening the artifacts: through the runtime's runners ---------------------------------------


def onnx_runners(open_on: Callable[[str], Runner], devices: Sequence[str]) -> Tuple[Opened, Dict[str, str]]:
    """The ONNX artifact on every device of ``devices`` (``open_on(device)``), and the
    devices skipped with the reason (``RuntimeUnavailable``: e.g. no CUDA here)."""
    opened: Opened = {}
    skipped: Dict[str, str] = {}
    for device in devices:
        name = BACKEND_NAMES["onnx"].format(device=device)
        try:
            opened[name] = (open_on(device), None)
        except RuntimeUnavailable as e:
            skipped[name] = str(e)
    return opened, skipped


def signature_for(eager: nn.Module, given: Optional[Signature], lengths: bool, graph: Mapping[str, Any]) -> Signature:
    """The signature validation runs by: the export's own (run on the eval copy), or computed here."""
    if given is not None:
        return dataclasses.replace(given, model=eager)  # the eval-mode copy runs
    if isinstance(eager, LSTM):
        return signature_of(eager, lengths=lengths)
    if graph.get("example_inputs") is None and not graph.get("example_kwargs"):
        raise ConfigError(
            f"validating a whole model ({type(eager).__name__}) needs its example_inputs "
            "(and the input_names, output_names and dynamic_axes used at export)"
        )
    if lengths:
        raise ConfigError("lengths=True is for a bare deploy_lstm.LSTM; a whole model takes its own inputs")
    return signature_of(eager, **graph)  # type: ignore[arg-type]


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
    extra_runners: Optional[Opened] = None,
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
        atol: max abs error allowed; default 1e-5 for float32, 1e-10 for float64
            (:func:`~deploy_lstm.check.tolerance.float_atol`).
        devices: onnxruntime devices to try; CUDA is reported as skipped, with the
            reason, where it is not available.
        extra_onnx: {backend name: (path, atol)} for more ONNX files (e.g. int8).
        aoti_path: an AOTInductor ``.pt2`` package from ``deploy_lstm.export_aoti``.
        seed: input generator seed (random ``h0``/``c0`` and ``lengths`` included).
        signature: the export's signature of ``model`` (:func:`~deploy_lstm.exporters.signature.signature`),
            when the caller computed it already; then ``**graph`` is not needed, and
            ``lengths`` defaults to whether the signature has a ``lengths`` input.
        extra_runners: {backend name: (runner, tolerance)} of more artifacts, already open
            (e.g. the bf16 ones, at their :func:`~deploy_lstm.check.tolerance.bf16_tolerance`).

    Returns:
        A report: per backend, reference and output, the worst max abs and rel error.
    """
    eager = copy.deepcopy(model).eval()  # the caller's flags and weights stay as they are
    opened, skipped = onnx_runners(lambda device: OnnxRunner(onnx_path, device=device), devices) if onnx_path is not None else ({}, {})
    for name, (path, tol) in (extra_onnx or {}).items():
        opened[name] = (OnnxRunner(path, device="cpu"), tol)
    if aoti_path is not None:
        opened[BACKEND_NAMES["aoti"]] = (AotiPackage(aoti_path), None)
    opened.update(extra_runners or {})
    if lengths is None:
        lengths = contract.LENGTHS in signature.io.input_names if signature is not None else any(r.has_lengths for r, _ in opened.values())
        lengths = lengths and isinstance(eager, LSTM)
    sig = signature_for(eager, signature, bool(lengths), graph)
    if torchscript_path is not None:
        opened[BACKEND_NAMES["torchscript"]] = (TorchScriptRunner(torchscript_path, io=sig.io, tree=sig.tree), None)
    return validate_runners(sig, opened, skipped=skipped, cases=cases, lengths=bool(lengths), atol=atol, seed=seed)


def validate_runners(
    sig: Signature,
    opened: Opened,
    *,
    skipped: Optional[Dict[str, str]] = None,
    cases: Iterable[Tuple[int, int]] = DEFAULT_CASES,
    lengths: bool = False,
    atol: Optional[float] = None,
    seed: int = 0,
) -> ValidationReport:
    """Compare artifacts, already open, with the references of ``sig.model`` (an eval-mode model).

    Args:
        sig: the export's signature; ``sig.model`` is the eager reference.
        opened: {backend name: (runner, tolerance or None for the float tolerance)}.
        skipped: {backend name: why} of artifacts that could not be opened here.
        lengths: a bare LSTM: run each case once more with random ``lengths``.
        cases, atol, seed: as for :func:`validate`.
    """
    variants = cell_variants(sig.model)
    if atol is None:
        atol = float_atol(sig.io, variants)
    references = {name: module_fn(m, sig) for name, m in reference_models(sig).items()}
    backends: Dict[str, Tuple[FeedsFn, float, bool]] = {EAGER: (references[EAGER], atol, True)}
    for name, (runner, tol) in opened.items():
        backends[name] = (runner_fn(runner), atol if tol is None else tol, runner.has_lengths)
    worst, case_names = _worst_errors(sig, references, backends, cases, lengths, seed)
    checks = [
        Check(backend, ref, out, err, rel, backends[backend][1], case)
        for (backend, ref, out), (err, rel, case) in worst.items()
    ]
    config: Dict[str, object] = dataclasses.asdict(sig.bare) if sig.bare is not None else {"io": dataclasses.asdict(sig.io)}
    return ValidationReport(checks, case_names, config, dict(skipped or {}))


Worst = Dict[Tuple[str, str, str], Tuple[float, float, str]]  # (backend, reference, output) -> (abs, rel, case)


def _worst_errors(
    sig: Signature,
    references: Dict[str, FeedsFn],
    backends: Dict[str, Tuple[FeedsFn, float, bool]],
    cases: Iterable[Tuple[int, int]],
    lengths: bool,
    seed: int,
) -> Tuple[Worst, List[str]]:
    """Every backend against every other reference at every case: the worst error of each output."""
    rng = np.random.default_rng(seed)
    examples = example_arrays(sig)
    worst: Worst = {}
    case_names: List[str] = []
    for N, T in cases:
        for use_lengths in ([False, True] if lengths else [False]):
            mode = "random" if use_lengths or sig.bare is None else "omit"
            feeds = random_inputs(sig.io, N, T, rng, examples=examples, lengths=mode)
            case = f"batch={N} sequence={T}" + (" lengths" if use_lengths else "")
            case_names.append(case)
            ref_out = {name: run(feeds) for name, run in references.items()}
            for backend, (run, _, takes_lengths) in backends.items():
                if use_lengths and not takes_lengths:
                    continue  # exported without a lengths input: only the full-length cases apply
                got = ref_out[backend] if backend in ref_out else run(feeds)
                for ref_name, ref in ref_out.items():
                    if ref_name == backend:
                        continue
                    for out_name in sig.output_names:
                        err, rel = max_abs_rel(got[out_name], ref[out_name])
                        key = (backend, ref_name, out_name)
                        if key not in worst or err > worst[key][0]:
                            worst[key] = (err, rel, case)
    return worst, case_names
