"""How the benchmark times: interleaved rounds with an idle pause, the CPU others used, the machine.

Every timed thing is a :data:`Call` (no arguments; its inputs are bound beforehand, so
nothing but the call itself is timed).  :func:`measure_case` times a set of calls on
one case: warm-up, then rounds in which every call in turn sleeps briefly (so the
previous runtime's spinning worker threads go idle) and runs a block of individually
timed calls; median and p10/p90 over every call of every round.
:func:`measure_quietly` measures a case again while other processes used too much of
the CPU (read from ``/proc/stat``).  :func:`sgemm_reference` and :func:`machine` say
what the machine is.  A call that fails is recorded as data (:class:`Unavailable`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import onnx
import onnxruntime as ort
import torch

__all__ = [
    "Call",
    "Unavailable",
    "Timed",
    "SGEMM_N",
    "machine",
    "sgemm_reference",
    "cpu_probe",
    "foreign_cpu",
    "measure_case",
    "measure_quietly",
]

#: one timed call: everything it needs is bound beforehand
Call = Callable[[], Any]

#: the reference GEMM: (n x n) @ (n x n) float32
SGEMM_N = 2048


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """A backend that could not be built or run, and why (recorded in the results)."""

    backend: str
    reason: str  # "ExceptionType: first line of its message", or a sentence
    stage: str = "build"  # "build" (export, load, session) or "run" (a call failed)

    @classmethod
    def of(cls, backend: str, e: BaseException, stage: str = "build") -> "Unavailable":
        lines = str(e).strip().splitlines()
        return cls(backend, f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__, stage)

    def to_dict(self) -> Dict[str, str]:
        return dataclasses.asdict(self)


#: one case's result per call: its timing ({"median_ms", "p10_ms", ...}) or why it has none
Timed = Dict[str, Union[Dict[str, Any], Unavailable]]


def machine() -> Dict[str, Any]:
    """CPU model (from lscpu), core count and library versions."""
    info: Dict[str, str] = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": info.get("Model name") or platform.processor() or "unknown",
        "vendor": info.get("Vendor ID"),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }


def sgemm_reference(n: int = SGEMM_N, calls: int = 5, pause_s: float = 0.05) -> Dict[str, Any]:
    """GFLOP/s of an (n x n) @ (n x n) float32 ``torch.mm`` at torch's current thread count.

    The best of ``calls`` timed calls (after two untimed ones): what this machine's
    BLAS reaches on a large GEMM, one half of the measured reference.
    """
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    with torch.inference_mode():
        for _ in range(2):
            torch.mm(a, b)
        time.sleep(pause_s)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
    return {"n": n, "threads": torch.get_num_threads(), "gflops": 2 * n**3 / min(times) / 1e9, "calls": calls}


# --- the CPU other processes used ------------------------------------------------------------


def cpu_probe() -> Optional[Tuple[float, float, float, float]]:
    """(wall s, machine busy CPU s, steal s, this process's CPU s) now; None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return time.perf_counter(), (user + nice + system + irq + softirq) / tick, steal / tick, time.process_time()


def foreign_cpu(before: Optional[Tuple[float, ...]], after: Optional[Tuple[float, ...]]) -> Optional[Dict[str, float]]:
    """CPU other processes used between two probes, as seconds and as a share of all cores."""
    if before is None or after is None:
        return None
    wall, busy, steal, own = (a - b for a, b in zip(after, before))
    capacity = max(wall, 1e-9) * (os.cpu_count() or 1)
    other = max(0.0, busy - own)
    return {"wall_s": wall, "other_cpu_s": other, "other_share": other / capacity, "steal_share": steal / capacity}


# --- timing one case ---------------------------------------------------------------------------


def _stats(times_ms: List[float]) -> Dict[str, float]:
    p10, p25, p75, p90 = np.percentile(times_ms, [10, 25, 75, 90])
    return {"median_ms": statistics.median(times_ms), "p10_ms": float(p10), "p90_ms": float(p90), "iqr_ms": float(p75 - p25)}


def _block_sizes(calls: Mapping[str, Call], out: Timed, *, warmup: int, block_s: float, max_calls: int,
                 pause_s: float) -> Dict[str, int]:
    """Warm every call up; {name: calls per timed block} for those that ran (failures into ``out``)."""
    sizes: Dict[str, int] = {}
    for name, fn in calls.items():
        try:
            time.sleep(pause_s)
            for _ in range(warmup):
                fn()
            t0 = time.perf_counter()
            fn()
            est = time.perf_counter() - t0
        except Exception as e:  # e.g. onnxruntime rejects the inputs
            out[name] = Unavailable.of(name, e, stage="run")
            continue
        sizes[name] = max(1, min(max_calls, math.ceil(block_s / max(est, 1e-6))))
    return sizes


def measure_case(
    calls: Mapping[str, Call], *, rounds: int, warmup: int, block_s: float, max_calls: int, pause_s: float
) -> Timed:
    """Time every call on one (configuration, shape), interleaved.

    Warm-up: ``warmup`` untimed calls each, then one timed call that sizes its block.
    Then ``rounds`` rounds; in each, every call in turn (the order rotated by one each
    round) sleeps ``pause_s`` and runs a block of individually timed calls lasting
    about ``block_s`` (1..``max_calls`` calls).

    Returns:
        {name: {"median_ms", "p10_ms", "p90_ms", "iqr_ms", "rounds", "calls_per_round",
        "samples", "round_medians_ms"}, or an :class:`Unavailable` (stage "run") for a
        call that raised}.
    """
    out: Timed = {}
    sizes = _block_sizes(calls, out, warmup=warmup, block_s=block_s, max_calls=max_calls, pause_s=pause_s)
    samples: Dict[str, List[float]] = {name: [] for name in sizes}
    per_round: Dict[str, List[float]] = {name: [] for name in sizes}
    order = list(sizes)
    for r in range(rounds):
        k = r % len(order) if order else 0
        for name in order[k:] + order[:k]:
            if name in out:
                continue
            fn, block = calls[name], []
            time.sleep(pause_s)  # let the previous runtime's worker threads go idle
            try:
                for _ in range(sizes[name]):
                    t0 = time.perf_counter()
                    fn()
                    block.append((time.perf_counter() - t0) * 1e3)
            except Exception as e:
                out[name] = Unavailable.of(name, e, stage="run")
                continue
            samples[name] += block
            per_round[name].append(statistics.median(block))
    for name in order:
        if name not in out:
            out[name] = {**_stats(samples[name]), "rounds": len(per_round[name]), "calls_per_round": sizes[name],
                         "samples": len(samples[name]), "round_medians_ms": per_round[name]}
    return out


def measure_quietly(
    calls: Mapping[str, Call], *, retries: int, max_interference: float, retry_wait_s: float,
    log: Callable[[str], None], label: str, **timing: Any,
) -> Tuple[Timed, Optional[Dict[str, Any]]]:
    """:func:`measure_case`, again while other processes used too much of the CPU.

    A case during which other processes used more than ``max_interference`` of the CPU
    is measured again (up to ``retries`` times, after ``retry_wait_s``); the least
    disturbed attempt is kept.

    Returns:
        (the kept timings, the CPU others used meanwhile with every attempt's share
        under ``"attempts"``; None without ``/proc/stat``).
    """
    attempts: List[Tuple[float, Timed, Optional[Dict[str, float]]]] = []
    for attempt in range(1 + retries):
        if attempt:
            log(f"  {label}: other processes used {attempts[-1][0]:.0%} of the CPU; measuring again in {retry_wait_s:g} s")
            time.sleep(retry_wait_s)
        before = cpu_probe()
        measured = measure_case(calls, **timing)
        interference = foreign_cpu(before, cpu_probe())
        attempts.append((interference["other_share"] if interference else 0.0, measured, interference))
        if interference is None or interference["other_share"] <= max_interference:
            break
    _, measured, interference = min(attempts, key=lambda a: a[0])
    return measured, interference and {**interference, "attempts": [round(a[0], 4) for a in attempts]}
