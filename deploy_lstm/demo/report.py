"""The demo's printed report: one held-out series forecast step by step beside the truth and
both baselines, then that series' errors beside the errors over all the held-out series.

The series shown is chosen, not drawn: by default the typical one (:func:`typical_series`),
so a first look at the model shows neither its best case nor its worst.
"""

from __future__ import annotations

import copy
import io
import sys
from typing import Any, Dict, Optional, TextIO, Union

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn

from deploy_lstm.nn.lstm import LSTM

from .forecaster import HELD_OUT_SEEDS, HISTORY, HORIZON, StepFn, errors, forecasts

ROWS = (("forecast", "model"), ("naive", "naive"), ("seasonal", "seasonal"))  # (printed label, key of forecasts())


def series_rmse(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RMSE of each series: (S, steps) in, (S,) out."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return np.sqrt((d * d).mean(axis=-1))


def typical_series(truth: np.ndarray, preds: Dict[str, np.ndarray]) -> int:
    """The row of the median series by the model's RMSE over the better baseline's on that series.

    The lower median of an even count; ties go to the earlier row. Deterministic for given
    forecasts, and a loss to a baseline only if most series are.
    """
    best_baseline = np.minimum(series_rmse(truth, preds["naive"]), series_rmse(truth, preds["seasonal"]))
    ratio = series_rmse(truth, preds["model"]) / best_baseline  # (S,)
    return int(np.argsort(ratio, kind="stable")[(len(ratio) - 1) // 2])


def _cast(tree: Any, dtype: torch.dtype) -> Any:
    return pytree.tree_map(lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, tree)


def bf16_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose LSTMs compute in bfloat16 behind a float32 boundary, as a bf16
    artifact (``model.bf16.pt2``, ``model.bf16.ts``) runs them: weights rounded once, the input and
    state cast in, the results cast back; aten's LSTM kernel where the cell has one."""
    copied = copy.deepcopy(model).eval()
    for m in copied.modules():
        if isinstance(m, LSTM):
            m.to(torch.bfloat16)
            m.fused = m.cell == "lstm"
            m.register_forward_pre_hook(lambda _m, args, kwargs: (_cast(args, torch.bfloat16), _cast(kwargs, torch.bfloat16)), with_kwargs=True)
            m.register_forward_hook(lambda _m, _args, out: _cast(out, torch.float32))
    return copied


def demo_report(
    model: Union[nn.Module, StepFn],
    seed: Optional[int] = None,
    history: int = HISTORY,
    steps: int = HORIZON,
    file: Optional[TextIO] = None,
) -> str:
    """Print and return a forecast-vs-truth table for one series, and the errors over the held-out series.

    All the held-out series (``HELD_OUT_SEEDS``) and the one shown are forecast in one batch.

    Args:
        model: a ``Forecaster`` or a step function ``(x, h0, c0) -> (y, hn, cn)``
            over numpy arrays, e.g. ``session_step(onnxruntime.InferenceSession(p))``.
        seed: series to show (``make_series(seed, history + steps)``); None: the typical
            held-out series (:func:`typical_series`).
        history, steps: observed and forecast lengths.
        file: where to print; ``sys.stdout`` when None.

    Returns:
        The printed text.
    """
    held_out = list(HELD_OUT_SEEDS)
    seeds = held_out + ([seed] if seed is not None and seed not in held_out else [])
    truth, preds = forecasts(model, seeds, history, steps)
    n = len(held_out)
    row = typical_series(truth[:n], {k: p[:n] for k, p in preds.items()}) if seed is None else seeds.index(seed)
    typical = " (typical*)" if seed is None else ""
    buf = io.StringIO()
    buf.write(f"forecast of series seed={seeds[row]}{typical}: {steps} steps after {history} observed\n")
    buf.write(f"{'step':>4}  {'truth':>8}  {'forecast':>8}  {'naive':>8}  {'seasonal':>8}\n")
    for i in range(steps):
        values = "  ".join(f"{v:>8.3f}" for v in (truth[row, i], *(preds[key][row, i] for _, key in ROWS)))
        buf.write(f"{i + 1:>4}  {values}\n")
    buf.write(f"\n{'':8}  {'this series':<14}   {n} held-out series\n")
    buf.write(f"{'':8}  {'RMSE':<6}  {'MAE':<6}   {'RMSE':<6}  MAE\n")
    for label, key in ROWS:
        one, every = errors(truth[row], preds[key][row]), errors(truth[:n], preds[key][:n])
        buf.write(f"{label:>8}  {one['rmse']:.4f}  {one['mae']:.4f}   {every['rmse']:.4f}  {every['mae']:.4f}\n")
    if isinstance(model, nn.Module):  # the same forecast with the LSTMs in bf16: its held-out error beside float32's
        _, bf16 = forecasts(bf16_model(model), held_out, history, steps)
        every = errors(truth[:n], bf16["model"][:n])
        buf.write(f"{'bf16':>8}  {'':<6}  {'':<6}   {every['rmse']:.4f}  {every['mae']:.4f}   (forecast, LSTM in bfloat16 as model.bf16.pt2 runs it)\n")
    if seed is None:
        buf.write(f"* typical: the median of the {n} held-out series (seeds {held_out[0]}..{held_out[-1]}) "
                  "in forecast RMSE / the better baseline's\n")
    text = buf.getvalue()
    print(text, end="", file=sys.stdout if file is None else file)
    return text
