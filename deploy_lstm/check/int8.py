"""int8 you can trust: the measured error against float32, and whether int8 pays (its tolerance rule: :mod:`deploy_lstm.check.tolerance`)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple
import numpy as np
from torch import nn
from deploy_lstm.check.harness import random_inputs
from deploy_lstm.check.tolerance import INT8_ATOL_FACTOR, int8_step, int8_tolerance  # noqa: F401 -- their home before check.tolerance
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.onnx import OnnxRunner


#: int8 is worth its error when it runs at least this much faster than the float32 model on
#: onnxruntime.  Its cost is a ~1% max error (of the output scale, measured) against ~1e-7 for
#: float32, and a second model to ship and validate; 1.5x is the project's int8 target at N=32
#: (benchmarks/targets.py).  Measured (benchmarks/results/results.md, H256, T=128): 2.1-2.5x
#: without projection (worth it); with projection 1.14-1.21x at N=1 (not worth it: the float32
#: Scan graph already runs at ~0.47x nn.LSTM eager) and 1.49-1.69x at N=32 (borderline).
INT8_WORTH_IT = 1.5


#: (batch, sequence) shapes of :func:`int8_error`: the benchmark's N=1 and N=32 at T=128
INT8_SHAPES: Tuple[Tuple[int, int], ...] = ((1, 128), (32, 128))


def int8_error(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    shapes: Sequence[Tuple[int, int]] = INT8_SHAPES,
    rng: Optional[np.random.Generator] = None,
) -> Dict[str, Any]:
    """Error of the int8 model against the float32 one, both on onnxruntime (CPU), on random inputs.

    Args:
        fp32_path: ``model.onnx``.
        int8_path: its :func:`quantize_int8` result.
        shapes: (batch, sequence) pairs; every float input is standard normal (``h0``/``c0`` too).
        rng: input generator (default: seed 0).

    Returns:
        ``{"max_abs", "mean_abs", "rel", "scale", "shapes": [{"batch", "sequence", "max_abs",
        "mean_abs", "scale"}, ...]}``: over every output element of every shape, the max and
        mean ``|int8 - fp32|``; ``scale`` the max ``|fp32|``; ``rel = max_abs / scale``.

    Raises:
        ArtifactError: a file onnxruntime cannot load.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    fp32, int8 = OnnxRunner(fp32_path), OnnxRunner(int8_path, kind="onnx-int8")
    per_shape, total, count = [], 0.0, 0
    for N, T in shapes:
        feeds = random_inputs(fp32.io, N, T, rng, lengths="full")  # other integer inputs 0
        a, b = fp32.run(feeds), int8.run(feeds)
        diffs = [np.abs(b[k].astype(np.float64) - a[k].astype(np.float64)).ravel() for k in fp32.output_names]
        d = np.concatenate(diffs)
        total, count = total + float(d.sum()), count + d.size
        per_shape.append({"batch": N, "sequence": T, "max_abs": float(d.max()), "mean_abs": float(d.mean()),
                          "scale": max(float(np.abs(a[k]).max()) for k in fp32.output_names)})
    max_abs = max(s["max_abs"] for s in per_shape)
    scale = max(s["scale"] for s in per_shape)
    return {"max_abs": max_abs, "mean_abs": total / max(count, 1), "rel": max_abs / scale if scale > 0 else max_abs,
            "scale": scale, "shapes": per_shape}


def int8_advice(speedup: float, max_abs: float, mean_abs: float, scale: Optional[float] = None) -> str:
    """One line: is int8 worth its error, given a measured speedup over float32 onnxruntime?

    Worth it at ``speedup >= INT8_WORTH_IT`` (see there for why 1.5x).

    Args:
        speedup: float32 onnxruntime median / int8 median, same shape, same run.
        max_abs: the max abs error, from :func:`int8_error`.
        mean_abs: the mean abs error, from :func:`int8_error`.
        scale: the float32 output's max ``|y|``, to state the error relative to it.
    """
    err = f"max error {max_abs:.1e}" + (f" ({max_abs / scale:.1%} of the output scale)" if scale else "") + f", mean {mean_abs:.1e}"
    if speedup >= INT8_WORTH_IT:
        return f"worth it: {speedup:.2f}x faster than float32 onnxruntime for {err}"
    return f"not worth it: only {speedup:.2f}x faster than float32 onnxruntime (< {INT8_WORTH_IT:g}x) for {err}; ship model.onnx"


#: below this hidden size int8 is not expected to pay: measured 1.22-1.33x at hidden 48 (the demo
#: forecaster, benchmarks/results/int8/) against 2.0-2.6x at hidden 256; the cut lies between the two
#: sizes measured, where the weights stop being the bulk of a step's work
INT8_SMALL_HIDDEN = 128


def int8_expectation(model: nn.Module) -> Tuple[bool, str]:
    """Whether int8 is expected to pay for ``model`` where nothing was timed, and why.

    From the measured benchmarks (``benchmarks/results/int8/``, T=128): at hidden 256 without
    projection onnxruntime's ``DynamicQuantizeLSTM`` runs 2.0-2.6x faster than the float32
    ``LSTM`` kernel; with projection the float32 model is a ``Scan`` graph of MatMuls and int8
    gained only 1.14-1.21x at batch 1 (1.5-1.8x at batch 32); at hidden 48 (the demo
    forecaster) 1.22-1.33x.  Returns (expected worth it, one line saying so).
    """
    lstms = [m for m in model.modules() if isinstance(m, (LSTM, nn.LSTM))]
    if any(getattr(m, "proj_size", 0) for m in lstms):
        return False, ("probably not worth it: with a projection (proj_size > 0) onnxruntime's int8 ran only "
                       f"1.14-1.21x faster than float32 at batch 1 in our benchmark (< {INT8_WORTH_IT:g}x; 1.5-1.8x at "
                       "batch 32); ship model.onnx unless 'deploy-lstm bench DIR' shows otherwise on this machine")
    hidden = max((m.hidden_size for m in lstms), default=0)
    if hidden < INT8_SMALL_HIDDEN:
        return False, (f"probably not worth it: at hidden size {hidden} the weights are a small part of the work; at hidden 48 "
                       f"onnxruntime's int8 ran only 1.22-1.33x faster than float32 in our benchmark (< {INT8_WORTH_IT:g}x); "
                       "ship model.onnx unless 'deploy-lstm bench DIR' shows otherwise on this machine")
    return True, ("expected to pay: without projection onnxruntime's int8 LSTM ran 2.0-2.6x faster than float32 "
                  "in our benchmark (hidden 256); 'deploy-lstm bench DIR' measures it on this machine")
