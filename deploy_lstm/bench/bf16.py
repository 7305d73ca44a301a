"""bf16 in the benchmark: each bf16 artifact's error against float32 beside its speed, and a verdict.

The bf16 backends (:data:`~deploy_lstm.bench.backends.BF16_BACKENDS`: ``model.bf16.pt2``
and ``model.bf16.ts``, float32 in and out) are timed like every backend.  Per case this
module adds what the speed costs: the max and mean abs difference of the bf16 outputs from
``torch.nn.LSTM``'s float32 ones on the case's own inputs (:func:`case_error`; a stream:
its final state), the tolerance the export rule gives the model at that length
(:func:`~deploy_lstm.check.tolerance.bf16_tolerance`), and a verdict (:func:`bf16_advice`):
worth it when it is within that tolerance and at least :data:`BF16_WORTH_IT` times faster
than the fastest float32 artifact of the same run.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from deploy_lstm.bench.backends import ARTIFACT_OF, BF16_BACKENDS, NOT_FLOAT32

__all__ = ["BF16_WORTH_IT", "FLOAT32_ARTIFACTS", "case_error", "fastest_float32", "bf16_advice", "bf16_markdown"]

#: a bf16 artifact is worth its error when it runs at least this much faster than the fastest
#: float32 artifact (same case, same run).  Its cost: ~1e-3 max error against float32's ~1e-6
#: (bf16 keeps 8 bits of mantissa), and a second artifact to ship and validate.  Below 1.25x
#: the gain is within what paired rounds on this 2-core machine move (0.66-0.73x for the same
#: pair in benchmarks/results/bf16/speed.md): not worth 100x the error.
BF16_WORTH_IT = 1.25

#: the float32 artifacts a bf16 one must beat (references such as nn.LSTM eager are not artifacts)
FLOAT32_ARTIFACTS = tuple(b for b in ARTIFACT_OF if b not in NOT_FLOAT32)


def _flat(out: Any) -> List[torch.Tensor]:
    """The tensors of a call's result, in order: ``(y, (h, c))``, ``[y, h, c]``, ``(h, c)``."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return []


def case_error(got: Any, want: Any) -> Dict[str, float]:
    """``{"max_abs", "mean_abs", "scale"}`` of a bf16 call's outputs against the float32 ones
    (``scale``: the max ``|float32 output|``).

    Raises:
        ValueError: the two results do not hold the same tensors (shapes).
    """
    a, b = _flat(got), _flat(want)
    if not a or len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ValueError(f"bf16 outputs {[tuple(x.shape) for x in a]} do not match float32's {[tuple(y.shape) for y in b]}")
    d = torch.cat([(x.double() - y.double()).abs().reshape(-1) for x, y in zip(a, b)])
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "scale": max(float(y.abs().max()) for y in b)}


def fastest_float32(results: Mapping[str, Mapping[str, Any]]) -> Optional[Tuple[str, float]]:
    """(backend, median ms) of the fastest float32 artifact timed in a case's results, or None."""
    timed = [(n, results[n]["median_ms"]) for n in FLOAT32_ARTIFACTS if "median_ms" in results.get(n, {})]
    return min(timed, key=lambda t: t[1], default=None)


def bf16_advice(speedup: float, max_abs: float, atol: Optional[float]) -> str:
    """One line: is the bf16 artifact worth its error, given its speedup over the fastest float32 artifact?

    Worth it at ``speedup >= BF16_WORTH_IT`` (see there for why 1.25x) and ``max_abs <= atol``
    (when a tolerance is known).
    """
    err = f"max error {max_abs:.1e}" + (f" (tolerance {atol:.1e})" if atol is not None else "")
    if atol is not None and not max_abs <= atol:
        return f"not worth it: {err} is outside the tolerance; ship the float32 artifact"
    if speedup >= BF16_WORTH_IT:
        return f"worth it: {speedup:.2f}x faster than the fastest float32 artifact for {err}"
    return (f"not worth it: only {speedup:.2f}x faster than the fastest float32 artifact (< {BF16_WORTH_IT:g}x) "
            f"for {err}; ship the float32 artifact")


def bf16_rows(res: Mapping[str, Any], backends: Sequence[str] = BF16_BACKENDS) -> List[Dict[str, Any]]:
    """Per case and bf16 backend timed: its time, ratio to nn.LSTM, the fastest float32 artifact,
    the speedup over it, the error, the tolerance and the verdict."""
    rows = []
    for c in res["cases"]:
        best = fastest_float32(c["results"])
        for name in backends:
            r, err = c["results"].get(name, {}), (c.get("bf16_error") or {}).get(name)
            if "median_ms" not in r or best is None or err is None:
                continue
            speedup = best[1] / r["median_ms"]
            rows.append({"config": c["config"], "shape": c["shape"], "backend": name, "median_ms": r["median_ms"],
                         "ratio_vs_nn": r.get("ratio_vs_nn"), "float32": best[0], "float32_ms": best[1], "speedup": speedup,
                         **err, "verdict": bf16_advice(speedup, err["max_abs"], err.get("atol"))})
    return rows


def bf16_markdown(res: Mapping[str, Any]) -> List[str]:
    """The bf16 section of the benchmark's markdown (empty without a timed bf16 artifact)."""
    rows = bf16_rows(res)
    if not rows:
        return []
    lines = ["", "## bf16: speed and accuracy", "",
             "Each bf16 artifact runs its LSTMs in bfloat16 behind a float32 boundary. Ratio = its time / nn.LSTM eager "
             "float32 (same run). Speedup = the fastest float32 artifact's time / its time. Error = max and mean "
             "|bf16 - float32 nn.LSTM| over every output on the case's own inputs (a stream: the final state); tolerance = "
             "the export rule (`deploy_lstm.check.tolerance.bf16_tolerance`) at the case's length. Worth it at >= "
             f"{BF16_WORTH_IT:g}x within the tolerance (`deploy_lstm.bench.bf16.BF16_WORTH_IT`).", "",
             "| config | shape | bf16 artifact | ms | ratio vs nn.LSTM | fastest float32 artifact (ms) | speedup | "
             "max abs error (tolerance) | mean abs error | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio_vs_nn']:.2f}x" if r["ratio_vs_nn"] is not None else "-"
        tol = f" ({r['atol']:.1e})" if r.get("atol") is not None else ""
        lines.append(f"| {r['config']} | {r['shape']} | {r['backend']} | {r['median_ms']:.2f} | {ratio} | "
                     f"{r['float32']} ({r['float32_ms']:.2f}) | {r['speedup']:.2f}x | {r['max_abs']:.1e}{tol} | "
                     f"{r['mean_abs']:.1e} | {r['verdict'].split(':')[0]} |")
    return lines
