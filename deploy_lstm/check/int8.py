"""int8 you can trust: the tolerance that follows from the weights, the measured error, and whether int8 pays."""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional, Sequence, Tuple
import numpy as np
from torch import nn
from deploy_lstm.formats import contract
from deploy_lstm.errors import ConfigError
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.onnx import OnnxLSTM


#: int8 is worth its error when it runs at least this much faster than the float32 model on
#: onnxruntime.  Its cost is a ~1% max error (of the output scale, measured) against ~1e-7 for
#: float32, and a second model to ship and validate; 1.5x is the project's int8 target at N=32
#: (benchmarks/targets.py).  Measured (benchmarks/results/results.md, H256, T=128): 2.1-2.5x
#: without projection (worth it); with projection 1.14-1.21x at N=1 (not worth it: the float32
#: Scan graph already runs at ~0.47x nn.LSTM eager) and 1.49-1.69x at N=32 (borderline).
INT8_WORTH_IT = 1.5


#: int8 tolerance = INT8_ATOL_FACTOR x int8_step(model).  Measured max error / int8_step: 0.49-1.22
#: at the validation shapes on 17 models (hidden 8 to 512, with and without projection, the
#: trained demo forecaster 1.11); at N=32 T=128 up to 1.1 for the benchmark's H256 models and
#: up to 3.7 for the demo forecaster (standard-normal inputs lie outside its training signal, and
#: its trained forget gates carry errors further).  4 covers every measurement, 3.3x over the
#: validation shapes' worst; it still fails a model whose weights are off by 4 quantization
#: steps or whose int8 scales are 10% wrong (tests/test_quantize.py).
INT8_ATOL_FACTOR = 4.0


#: (batch, sequence) shapes of :func:`int8_error`: the benchmark's N=1 and N=32 at T=128
INT8_SHAPES: Tuple[Tuple[int, int], ...] = ((1, 128), (32, 128))


def int8_step(model: nn.Module) -> float:
    """The int8 rounding error of one LSTM gate, at unit input scale: the scale of the error.

    ``quantize_dynamic`` stores each weight tensor (``W``, ``R`` of a layer, both
    directions) as int8 with one scale ``s = max|W| / 127``; the inputs of each product are
    quantized per call (uint8) too.  A gate's pre-activation sums ``fan_in = I_l + P``
    products, each off by a rounding error proportional to ``s`` with independent signs, so
    its error grows as ``s * sqrt(fan_in)``; the gate nonlinearities have slopes <= 1 and the
    forget gate damps what the recurrence carries, so the output error stays of that size.
    Returns the largest ``s * sqrt(fan_in)`` over the LSTM layers of ``model`` (a bare LSTM
    or a whole model; ``deploy_lstm.LSTM`` and ``torch.nn.LSTM`` submodules).

    Raises:
        ConfigError: ``model`` has no LSTM.
    """
    step = 0.0
    lstms = [m for m in model.modules() if isinstance(m, (LSTM, nn.LSTM))]
    if not lstms:
        raise ConfigError(f"expected a model with an LSTM, got {type(model).__name__} with none: no int8 tolerance to derive")
    for m in lstms:
        P = m.proj_size or m.hidden_size  # width of h
        D = 2 if m.bidirectional else 1
        suffixes = [""] + (["_reverse"] if m.bidirectional else [])
        for layer in range(m.num_layers):
            fan_in = (m.input_size if layer == 0 else D * P) + P
            for kind in ("ih", "hh", "hr"):
                ws = [getattr(m, f"weight_{kind}_l{layer}{s}", None) for s in suffixes]
                peak = max((float(w.detach().abs().max()) for w in ws if w is not None), default=0.0)
                step = max(step, peak / 127 * math.sqrt(fan_in if kind != "hr" else m.hidden_size))
    return step


def int8_tolerance(model: nn.Module) -> float:
    """Max abs error allowed for ``model``'s int8 export: ``INT8_ATOL_FACTOR * int8_step(model)``.

    The rule follows from measurements (see :data:`INT8_ATOL_FACTOR`) and scales with the
    weights, which a constant cannot: the former fixed 5e-2 failed the trained demo forecaster
    (6.9e-2 at the validation shapes; its tolerance here is 2.5e-1) yet passed an LSTM(16, 32)
    whose weights were off by 2 quantization steps (4.1e-2; its tolerance here is 5.4e-2, and
    4 steps fail it).

    Raises:
        ConfigError: ``model`` has no LSTM.
    """
    return INT8_ATOL_FACTOR * int8_step(model)


def _feeds(session: OnnxLSTM, N: int, T: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Standard-normal float inputs at batch N, sequence T (dims named like "batch" are N, other
    dynamic dims T); ``lengths`` = T; other integer inputs 0."""
    feeds = {}
    for spec in session.inputs:
        shape = tuple(d if isinstance(d, int) else (N if "batch" in str(d) else T) for d in spec.shape)
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.name == contract.LENGTHS:
            feeds[spec.name] = np.full(shape, T, dtype=spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


def int8_error(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    shapes: Sequence[Tuple[int, int]] = INT8_SHAPES,
    rng: Optional[np.random.Generator] = None,
) -> Dict[str, Any]:
    """Error of the int8 model against the float32 one, both on onnxruntime (CPU), on random inputs.

    Args:
        fp32_path, int8_path: ``model.onnx`` and its :func:`quantize_int8` result.
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
    fp32, int8 = OnnxLSTM(fp32_path), OnnxLSTM(int8_path)
    per_shape, total, count = [], 0.0, 0
    for N, T in shapes:
        feeds = _feeds(fp32, N, T, rng)
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
        max_abs, mean_abs: from :func:`int8_error`.
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
