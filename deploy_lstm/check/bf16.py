"""bf16 you can trust: the measured error of a bf16 artifact against float32, and whether it pays here.

Its tolerance rule is :mod:`deploy_lstm.check.tolerance`'s (:func:`~deploy_lstm.check.tolerance.bf16_tolerance`).
At export (:func:`deploy_lstm.pipeline.export_folder` with ``precision="bf16"``) each bf16 artifact is

* timed against its float32 sibling (or the float32 eager model) at batch 1 and 32
  (:func:`bf16_speed`): one that is slower at every batch size is not written unless forced;
* measured against the float32 eager model (:func:`bf16_error`), recorded in the manifest with
  its tolerance and rule, and validated like every artifact at validation's shapes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from deploy_lstm.check.harness import EAGER, TORCH, FeedsFn, module_fn, random_inputs, reference_models
from deploy_lstm.exporters.signature import Signature

__all__ = ["BF16_SHAPES", "SPEED_SHAPES", "bf16_error", "bf16_speed", "speed_verdict"]

#: (batch, sequence) shapes of :func:`bf16_error`: batch 1 and 32 at T=100 (the issue's shapes;
#: neither is the export example (3, 7) nor a validation case)
BF16_SHAPES: Tuple[Tuple[int, int], ...] = ((1, 100), (32, 100))

#: (batch, sequence) shapes of :func:`bf16_speed`: short, so an export stays quick
SPEED_SHAPES: Tuple[Tuple[int, int], ...] = ((1, 50), (32, 50))


def bf16_error(
    sig: Signature, bf16: FeedsFn, shapes: Sequence[Tuple[int, int]] = BF16_SHAPES, seed: int = 0
) -> Dict[str, Any]:
    """Error of a bf16 artifact against the float32 eager model ``sig.model``, on random inputs.

    Args:
        sig: the export's signature; the reference is ``sig.model`` (eval mode) holding ``torch.nn.LSTM``
            with its weights (the eager model itself for variant cells).
        bf16: the artifact as a function of feeds (:func:`~deploy_lstm.check.harness.runner_fn`).
        shapes: (batch, sequence) pairs; float inputs standard normal (``h0``/``c0`` too).
        seed: input generator seed.

    Returns:
        ``{"max_abs", "mean_abs", "scale", "shapes": [{"batch", "sequence", "max_abs", "mean_abs"}]}``
        over every output element of every shape; ``scale`` the max ``|float32 output|``.
    """
    rng = np.random.default_rng(seed)
    reference = _float32_reference(sig)
    per_shape: List[Dict[str, Any]] = []
    total, count, scale = 0.0, 0, 0.0
    for N, T in shapes:
        feeds = random_inputs(sig.io, N, T, rng, lengths="omit" if sig.bare is not None else "full")
        a, b = reference(feeds), bf16(feeds)
        d = np.concatenate([np.abs(b[k].astype(np.float64) - a[k].astype(np.float64)).ravel() for k in sig.output_names])
        total, count = total + float(d.sum()), count + d.size
        scale = max(scale, max(float(np.abs(a[k]).max()) for k in sig.output_names))
        per_shape.append({"batch": N, "sequence": T, "max_abs": float(d.max()), "mean_abs": float(d.mean())})
    return {
        "max_abs": max(s["max_abs"] for s in per_shape), "mean_abs": total / max(count, 1), "scale": scale, "shapes": per_shape,
    }


def _float32_reference(sig: Signature) -> FeedsFn:
    """The float32 model as nn.LSTM runs it (oneDNN's kernel), or the eager model for variant cells."""
    refs = reference_models(sig)
    return module_fn(refs.get(TORCH, refs[EAGER]), sig)


def _best_of(fn: FeedsFn, feeds: Dict[str, np.ndarray], calls: int) -> float:
    """The fastest of ``calls`` calls, after a ~50 ms idle pause (2 shared cores: let the other settle)."""
    time.sleep(0.05)
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(feeds)
        best = min(best, time.perf_counter() - t0)
    return best


def bf16_speed(
    sig: Signature, bf16: FeedsFn, float32: Optional[FeedsFn] = None, *,
    shapes: Sequence[Tuple[int, int]] = SPEED_SHAPES, rounds: int = 5, calls: int = 3, seed: int = 0,
    threads: int = 1,
) -> Dict[str, Any]:
    """A short timing of a bf16 artifact against float32, interleaved, one round after the other.

    Args:
        sig: the export's signature.
        bf16: the bf16 artifact (a function of feeds).
        float32: its float32 sibling; default the float32 eager model as ``torch.nn.LSTM`` runs it
            (the eager ``deploy_lstm`` model for variant cells).
        shapes: (batch, sequence) pairs.
        rounds: paired rounds per shape (the ratio is their median).
        calls: calls per round (the fastest counts).
        seed: input generator seed.
        threads: torch's intra-op threads while timing (restored after): 1 by default, because on a
            busy machine two threads' barriers wait on each other's preemption and both timings turn
            to noise, while bf16 against float32 at one thread keeps its ratio.

    Returns:
        ``{"shapes": [{"batch", "sequence", "ratio"}], "slower_at": [batch, ...], "threads": threads}``: ``ratio`` is the
        bf16 time / the float32 time (< 1: bf16 is faster); ``slower_at`` the batch sizes where it is > 1.
    """
    rng = np.random.default_rng(seed)
    reference = float32 if float32 is not None else _float32_reference(sig)
    rows = []
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for N, T in shapes:
            feeds = random_inputs(sig.io, N, T, rng, lengths="omit" if sig.bare is not None else "full")
            for _ in range(3):  # warm up: first calls allocate, TorchScript profiles its first runs
                bf16(feeds), reference(feeds)
            ratios = [_best_of(bf16, feeds, calls) / _best_of(reference, feeds, calls) for _ in range(rounds)]
            rows.append({"batch": N, "sequence": T, "ratio": statistics.median(ratios)})
    finally:
        torch.set_num_threads(before)
    return {"shapes": rows, "slower_at": [r["batch"] for r in rows if r["ratio"] > 1.0], "threads": threads}


def speed_verdict(speed: Dict[str, Any], baseline: str) -> str:
    """One line on a :func:`bf16_speed` result: where bf16 is faster and where it is not."""
    parts = ", ".join(f"{r['ratio']:.2f}x at N={r['batch']} T={r['sequence']}" for r in speed["shapes"])
    if not speed["slower_at"]:
        return f"faster than {baseline} at every batch measured ({parts})"
    if len(speed["slower_at"]) == len(speed["shapes"]):
        return f"slower than {baseline} at every batch measured ({parts})"
    return f"slower than {baseline} at N={', '.join(map(str, speed['slower_at']))} ({parts})"
