"""Validating an export folder: every artifact it holds, each opened by the folder's runner,
against the weights it holds (what ``deploy-lstm validate DIR`` runs)."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

from deploy_lstm.check import executorch as executorch_check
from deploy_lstm.check.tolerance import folder_bf16_atol, folder_int8_atol
from deploy_lstm.check.validate import (
    BACKEND_NAMES, DEFAULT_CASES, ValidationReport, onnx_runners, signature_for, validate_runners,
)
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.runtime.folder import RunnableFolder

__all__ = ["validate_folder"]


def validate_folder(
    folder: ExportFolder,
    *,
    atol: Optional[float] = None,
    int8_atol: Optional[float] = None,
    bf16_atol: Optional[float] = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    cases: Iterable[Tuple[int, int]] = DEFAULT_CASES,
) -> ValidationReport:
    """Validate every artifact of an export folder against its weights, each opened by the
    folder's runner (:meth:`deploy_lstm.runtime.folder.RunnableFolder.runner`).

    Args:
        folder: a loaded folder (:func:`deploy_lstm.load`).
        atol: tolerance of the float artifacts (default: :func:`~deploy_lstm.check.tolerance.float_atol`).
        int8_atol: tolerance of ``model.int8.onnx``; default the one recorded at export, or for
            a folder that records none, :func:`~deploy_lstm.check.tolerance.int8_tolerance` of its weights.
        bf16_atol: tolerance of the bf16 artifacts (``model.bf16.pt2``, ``model.bf16.ts``); default the one
            recorded at export, else :func:`~deploy_lstm.check.tolerance.bf16_tolerance` of its weights.
        devices: onnxruntime devices to try (CUDA is reported as skipped where it is missing).
        cases: (batch, sequence) shapes; a ``model.pte`` runs its own batch and chunk multiples
            (:func:`~deploy_lstm.check.executorch.executorch_cases`).

    Returns:
        One report over every artifact.
    """
    runnable = RunnableFolder.of(folder)
    spec = folder.model_spec()
    opened, skipped = onnx_runners(lambda device: runnable.runner("onnx", device=device), devices) if folder.has("onnx") else ({}, {})
    if folder.has("onnx-int8"):
        opened[BACKEND_NAMES["onnx-int8"]] = (runnable.runner("onnx-int8"), folder_int8_atol(folder, spec.model, int8_atol))
    for kind in ("torchscript", "aoti"):
        if folder.has(kind):
            opened[BACKEND_NAMES[kind]] = (runnable.runner(kind), None)
    for kind in ("torchscript-bf16", "aoti-bf16"):
        if folder.has(kind):
            opened[BACKEND_NAMES[kind]] = (runnable.runner(kind), folder_bf16_atol(folder, kind, spec.model, bf16_atol))
    lengths = folder.config is not None and any(r.has_lengths for r, _ in opened.values())
    sig = signature_for(spec.model.eval(), None, lengths, {} if folder.config is not None else spec.call_arguments())
    report = validate_runners(sig, opened, skipped=skipped, cases=cases, lengths=lengths, atol=atol)
    if folder.has("executorch"):
        more = executorch_check.validate_executorch(signature_for(sig.model, None, False, {}), runnable.runner("executorch"), atol=atol)
        report = executorch_check.merged(report, more)
    return report
