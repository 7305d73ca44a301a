"""Proving a ``model.pte`` equal to ``torch.nn.LSTM``: chained chunks, carrying the state,
against one call on the whole sequence.

An ExecuTorch program runs a fixed chunk of a fixed batch (see
:mod:`deploy_lstm.exporters.executorch`), so it is validated at that batch and at
sequence lengths of one, several and many chunks, the last with a remainder shorter
than a chunk (run through the ``step`` method), from random non-zero initial states.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from deploy_lstm.check.validate import ValidationReport, validate_runners
from deploy_lstm.exporters.signature import Signature
from deploy_lstm.runtime.executorch import ExecutorchRunner

__all__ = ["BACKEND", "executorch_cases", "validate_executorch", "merged"]

#: the report's backend name of a ``model.pte``
BACKEND = "executorch"


def executorch_cases(chunk: int, batch: int) -> List[Tuple[int, int]]:
    """(batch, sequence) cases: one chunk, three chunks, seven chunks and a remainder (and a
    lone remainder step when ``chunk > 1``)."""
    lengths = [chunk, 3 * chunk, 7 * chunk + max(chunk - 1, 1)]
    if chunk > 1:
        lengths.insert(0, 1)
    return [(batch, T) for T in lengths]


def validate_executorch(sig: Signature, runner: ExecutorchRunner, *, atol: Optional[float] = None, seed: int = 0) -> ValidationReport:
    """Compare ``runner`` (chunk by chunk, state carried) with the eager model and ``nn.LSTM`` over whole sequences.

    Args:
        sig: the export's signature of the bare LSTM (``sig.model`` is the eager reference).
        runner: the program, at its chunk and batch.
        atol: max abs error allowed (default: the float tolerance, 1e-5 for float32).
        seed: input generator seed (random inputs, ``h0`` and ``c0``).
    """
    cases = executorch_cases(runner.chunk, runner.batch)
    return validate_runners(sig, {BACKEND: (runner, None)}, cases=cases, lengths=False, atol=atol, seed=seed)


def merged(report: ValidationReport, more: ValidationReport) -> ValidationReport:
    """``report`` with the checks of ``more`` beside its own (eager's, already in ``report``, once)."""
    checks = report.checks + [c for c in more.checks if c.backend == BACKEND]
    cases = report.cases + [f"{BACKEND}: {case}" for case in more.cases]
    return ValidationReport(checks, cases, report.config, dict(report.skipped, **more.skipped))
