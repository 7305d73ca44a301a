"""The demo model: an LSTM forecaster for a generated, seeded signal.

Everything the demo needs lives here, as plain functions:

* the signal: :func:`make_series` (a seeded sum of three sinusoids plus noise);
* the model: :class:`Forecaster` (``deploy_lstm.LSTM`` + a linear head), whose
  ``forward(x, h0, c0) -> (y, hn, cn)`` is the exported unit, state in and out;
* the shipped weights: :func:`load_demo`, :func:`demo_config`;
* forecasting: :func:`forecast`, autoregressive over any step function
  ``(x, h0, c0) -> (y, hn, cn)`` on numpy arrays (an eager or scripted module,
  or an onnxruntime session wrapped by :func:`session_step`);
* scoring: :func:`errors`, :func:`naive_forecast`, :func:`seasonal_forecast`,
  :func:`forecasts`, :func:`evaluate` (the printed report is in ``report.py``).
"""

# No `from __future__ import annotations`: Forecaster is compiled by TorchScript,
# which needs real annotation objects.
import importlib.resources
import json
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from deploy_lstm.formats import contract
from deploy_lstm.nn.lstm import LSTM

__all__ = [
    "Forecaster",
    "StepFn",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "DYNAMIC_AXES",
    "HISTORY",
    "HORIZON",
    "HELD_OUT_SEEDS",
    "make_series",
    "make_batch",
    "load_demo",
    "export_spec",
    "demo_config",
    "zero_state",
    "as_step",
    "session_step",
    "forecast",
    "naive_forecast",
    "seasonal_forecast",
    "errors",
    "forecasts",
    "evaluate",
]

# -- the I/O contract of the exported forecaster: deploy_lstm.contract's names --------------

INPUT_NAMES = (contract.INPUT, contract.H0, contract.C0)
OUTPUT_NAMES = (contract.OUTPUT, contract.HN, contract.CN)
DYNAMIC_AXES: Dict[str, Dict[int, str]] = {
    contract.INPUT: {0: contract.BATCH, 1: contract.SEQUENCE},  # (N, T, 1)
    contract.H0: {1: contract.BATCH},  # (num_layers, N, hidden_size)
    contract.C0: {1: contract.BATCH},
    contract.OUTPUT: {0: contract.BATCH, 1: contract.SEQUENCE},  # (N, T, 1)
    contract.HN: {1: contract.BATCH},
    contract.CN: {1: contract.BATCH},
}

HISTORY = 96  # steps of observed signal the demo forecasts from
HORIZON = 12  # steps forecast autoregressively
# The held-out series of the demo's figures (README, demo_report, tests): seeds apart from
# training's (0..) and validation's (1_000_000.., train.VAL_SEED0).
HELD_OUT_SEEDS = tuple(range(3_000_000, 3_000_064))

# -- the signal ------------------------------------------------------------------------

# (period_lo, period_hi, amplitude_lo, amplitude_hi) of each sinusoid, in steps.
# Periods are drawn per series, so no fixed seasonal lag fits every series, and
# the three are incommensurate, so no single lag fits one series exactly either.
COMPONENTS: Tuple[Tuple[float, float, float, float], ...] = (
    (30.0, 60.0, 0.6, 1.0),  # slow wave
    (10.0, 20.0, 0.3, 0.6),  # medium wave
    (4.0, 8.0, 0.1, 0.3),  # fast ripple
)
NOISE_STD = 0.03  # Gaussian observation noise


def make_series(seed: int, length: int) -> np.ndarray:
    """A deterministic test signal: three sinusoids plus a little noise.

    For each component of ``COMPONENTS`` a period and an amplitude are drawn
    uniformly from its ranges and a phase uniformly from [0, 2*pi); then
    ``x[t] = sum_k a_k * sin(2*pi*t / P_k + phi_k) + N(0, NOISE_STD**2)``.
    Values stay within about +-2.

    Args:
        seed: seeds ``numpy.random.default_rng``; the same seed gives the same series.
        length: number of steps.

    Returns:
        float32 array of shape (length,).

    Raises:
        ValueError: ``length`` is not positive.
    """
    if length <= 0:
        raise ValueError(f"expected a positive series length, got {length}")
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    x = np.zeros(length, dtype=np.float64)
    for p_lo, p_hi, a_lo, a_hi in COMPONENTS:
        period = rng.uniform(p_lo, p_hi)
        amplitude = rng.uniform(a_lo, a_hi)
        phase = rng.uniform(0.0, 2.0 * math.pi)
        x += amplitude * np.sin(2.0 * math.pi * t / period + phase)
    x += rng.normal(0.0, NOISE_STD, size=length)
    return x.astype(np.float32)


def make_batch(seeds: Sequence[int], length: int) -> np.ndarray:
    """``make_series`` for each seed, stacked: float32 (len(seeds), length)."""
    return np.stack([make_series(int(s), length) for s in seeds])


# -- the model ---------------------------------------------------------------------------


class Forecaster(nn.Module):
    """One-step-ahead forecaster: ``deploy_lstm.LSTM`` (batch_first) + linear head.

    ``y[:, t]`` is the forecast of the signal at step ``t + 1`` given steps
    ``0..t`` and the initial state.  State goes in and comes out, so the same
    module serves a whole history (T steps) and each autoregressive step (T = 1).

    Args:
        hidden_size: features of the LSTM state.
        num_layers: stacked LSTM layers.
    """

    __constants__ = ["input_size", "hidden_size", "num_layers"]

    input_size: int
    hidden_size: int
    num_layers: int

    def __init__(self, hidden_size: int = 48, num_layers: int = 2) -> None:
        super().__init__()
        self.input_size = 1
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = LSTM(1, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def config(self) -> Dict[str, int]:
        """Constructor arguments (JSON-serialisable) that rebuild this module."""
        return {"hidden_size": self.hidden_size, "num_layers": self.num_layers}

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Forecast the next value after every step of ``x``.

        Args:
            x: (N, T, 1) signal.
            h0, c0: (num_layers, N, hidden_size) state (zeros to start).

        Returns:
            (y (N, T, 1), hn, cn), the states shaped like ``h0`` and ``c0``.
        """
        out, (hn, cn) = self.lstm(x, (h0, c0))  # (N, T, H)
        y = self.head(out)  # (N, T, 1)
        return y, hn, cn


# -- the shipped weights -------------------------------------------------------------------

WEIGHTS_FILE = "forecaster.safetensors"
CONFIG_FILE = "forecaster.json"


def demo_config() -> Dict[str, Any]:
    """The metadata shipped next to the demo weights (``forecaster.json``).

    Returns:
        A dict with ``model`` (``Forecaster`` constructor arguments), ``signal``
        (generator settings), ``io`` (input/output names, history, horizon) and
        ``training`` (seed, steps, seconds, losses, validation RMSE of the model
        and of the baselines, torch version).
    """
    text = importlib.resources.files(__package__).joinpath(CONFIG_FILE).read_text("utf-8")
    return json.loads(text)


def load_demo() -> Forecaster:
    """The trained demo ``Forecaster``, from the package data, in eval mode.

    Raises:
        FileNotFoundError: the package was installed without its data files.
    """
    from safetensors.torch import load as load_safetensors

    cfg = demo_config()
    data = importlib.resources.files(__package__).joinpath(WEIGHTS_FILE).read_bytes()
    state = load_safetensors(data)
    model = Forecaster(**cfg["model"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    for k, v in state.items():
        assert v.shape == expected[k].shape, f"{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}"
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_spec() -> contract.ModelSpec:
    """The demo as a model factory (``deploy-lstm export --model deploy_lstm.demo:export_spec``):
    the trained forecaster, an example call (x, h0, c0) and its graph names and axes."""
    model = load_demo()
    N, T = 3, 7
    h0, c0 = zero_state(N, model.num_layers, model.hidden_size)
    x = torch.from_numpy(make_batch(range(N), T)[:, :, None].astype(np.float32))  # (N, T, 1)
    return contract.ModelSpec(
        model, (x, torch.from_numpy(h0), torch.from_numpy(c0)),
        list(INPUT_NAMES), list(OUTPUT_NAMES), {k: dict(v) for k, v in DYNAMIC_AXES.items()},
    )


# -- forecasting over any step function ---------------------------------------------------

# (x (N, T, 1), h0, c0) -> (y (N, T, 1), hn, cn), all float32 numpy arrays.
StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]


def zero_state(batch: int, num_layers: int, hidden_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(h0, c0), float32 zeros of shape (num_layers, batch, hidden_size)."""
    h0 = np.zeros((num_layers, batch, hidden_size), dtype=np.float32)
    return h0, h0.copy()


def as_step(model: Union[nn.Module, StepFn]) -> StepFn:
    """A numpy step function for a torch module (eager or scripted) or a callable.

    A module is run under ``torch.no_grad`` on CPU tensors; anything else is
    assumed to already map numpy arrays to numpy arrays and is returned as is.
    """
    if not isinstance(model, nn.Module):  # ScriptModule is an nn.Module too
        return model

    def step(x: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            y, hn, cn = model(torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0))
        return y.numpy(), hn.numpy(), cn.numpy()

    return step


def session_step(session: Any) -> StepFn:
    """A step function over an ``onnxruntime.InferenceSession`` (or anything with
    its ``run(output_names, feeds)`` API, such as ``onnx.reference.ReferenceEvaluator``)
    of an exported ``Forecaster`` with inputs ``INPUT_NAMES`` and outputs ``OUTPUT_NAMES``."""

    def step(x: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        feeds = dict(zip(INPUT_NAMES, (x, h0, c0)))
        y, hn, cn = session.run(list(OUTPUT_NAMES), feeds)
        return y, hn, cn

    return step


def _state_size(model: Union[nn.Module, StepFn], num_layers: Optional[int], hidden_size: Optional[int]) -> Tuple[int, int]:
    """(num_layers, hidden_size): given, else the module's, else the shipped config's."""
    if num_layers is None:
        num_layers = getattr(model, "num_layers", None)
    if hidden_size is None:
        hidden_size = getattr(model, "hidden_size", None)
    if num_layers is None or hidden_size is None:
        cfg = demo_config()["model"]
        num_layers = cfg["num_layers"] if num_layers is None else num_layers
        hidden_size = cfg["hidden_size"] if hidden_size is None else hidden_size
    return int(num_layers), int(hidden_size)


def forecast(
    model: Union[nn.Module, StepFn],
    history: np.ndarray,
    steps: int,
    *,
    num_layers: Optional[int] = None,
    hidden_size: Optional[int] = None,
    one_step: bool = False,
) -> np.ndarray:
    """Forecast ``steps`` values after ``history``, feeding each forecast back in.

    The whole history goes through the model in one call from a zero state; then
    each further call takes one step (T = 1) and the state of the call before.
    With ``one_step`` the history also goes in one step per call, so a model
    exported for a fixed sequence length of 1 serves too (same result).

    Args:
        model: a ``Forecaster`` (eager or ``torch.jit.script``-ed) or a step
            function ``(x, h0, c0) -> (y, hn, cn)`` over float32 numpy arrays,
            e.g. ``session_step(onnxruntime.InferenceSession(path))``.
        history: (T,) or (N, T) observed signal, T >= 1.
        steps: values to forecast, >= 1.
        num_layers, hidden_size: state size for a step function; read from a
            module, or from the shipped config when not given.
        one_step: feed the history one step per call (T = 1 throughout).

    Returns:
        float32 (steps,) or (N, steps), matching ``history``.

    Raises:
        ValueError: ``history`` is not 1-D or 2-D with T >= 1, or ``steps`` < 1.
    """
    hist = np.asarray(history, dtype=np.float32)
    if hist.ndim not in (1, 2) or hist.shape[-1] < 1:
        raise ValueError(f"expected history of shape (T,) or (N, T) with T >= 1, got {hist.shape}")
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    x = np.ascontiguousarray(hist.reshape(-1, hist.shape[-1], 1))  # (N, T, 1)
    layers, hidden = _state_size(model, num_layers, hidden_size)
    step = as_step(model)
    h, c = zero_state(x.shape[0], layers, hidden)
    if one_step:
        for t in range(x.shape[1]):
            y, h, c = step(np.ascontiguousarray(x[:, t : t + 1, :]), h, c)  # (N, 1, 1)
    else:
        y, h, c = step(x, h, c)  # (N, T, 1)
    nxt = np.ascontiguousarray(y[:, -1:, :])  # (N, 1, 1)
    out: List[np.ndarray] = [nxt]
    for _ in range(steps - 1):
        y, h, c = step(nxt, h, c)
        nxt = np.ascontiguousarray(y[:, -1:, :])
        out.append(nxt)
    pred = np.concatenate(out, axis=1)[:, :, 0].astype(np.float32)  # (N, steps)
    return pred if hist.ndim == 2 else pred[0]


# -- baselines and errors -------------------------------------------------------------------


def naive_forecast(history: np.ndarray, steps: int) -> np.ndarray:
    """Repeat the last observed value: (T,) or (N, T) in, (steps,) or (N, steps) out."""
    hist = np.asarray(history, dtype=np.float32)
    return np.repeat(hist[..., -1:], steps, axis=-1)


def seasonal_forecast(history: np.ndarray, steps: int, min_lag: int = 4) -> np.ndarray:
    """Seasonal naive: repeat the history from one season back.

    The season of each series is the lag in ``min_lag..T//2`` with the highest
    autocorrelation of its history (so the baseline gets to see the same data
    as the model); forecast ``t`` steps ahead is ``history[T - lag + t - 1]``,
    wrapping round the last season when ``steps`` > lag.
    """
    hist = np.asarray(history, dtype=np.float64)
    rows = hist.reshape(-1, hist.shape[-1])  # (S, T)
    T = rows.shape[1]
    z = rows - rows.mean(axis=1, keepdims=True)
    lags = np.arange(min_lag, max(min_lag + 1, T // 2 + 1))
    autocorr = np.stack([(z[:, k:] * z[:, :-k]).sum(axis=1) / (T - k) for k in lags], axis=1)  # (S, lags)
    out = np.empty((rows.shape[0], steps), dtype=np.float32)
    for i, lag in enumerate(lags[np.argmax(autocorr, axis=1)]):  # the first of equal maxima
        out[i] = np.resize(rows[i, T - lag :], steps)
    return out if hist.ndim == 2 else out[0]


def errors(truth: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """{"mae", "rmse"} of ``pred`` against ``truth`` (same shapes, any)."""
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"expected forecast of the truth's shape {t.shape}, got {p.shape}")
    d = p - t
    return {"mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d * d).mean()))}


def forecasts(
    model: Union[nn.Module, StepFn],
    seeds: Sequence[int],
    history: int = HISTORY,
    steps: int = HORIZON,
) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The truth and the forecasts of ``model`` and of the baselines, one series per seed.

    Each series has ``history + steps`` values; all are forecast from the first
    ``history``, in one batch.

    Returns:
        (truth (S, steps), {"model": (S, steps), "naive": ..., "seasonal": ...}).
    """
    data = make_batch(seeds, history + steps)
    hist, truth = data[:, :history], data[:, history:]
    preds = {
        "model": forecast(model, hist, steps),
        "naive": naive_forecast(hist, steps),
        "seasonal": seasonal_forecast(hist, steps),
    }
    return truth, preds


def evaluate(
    model: Union[nn.Module, StepFn],
    seeds: Sequence[int],
    history: int = HISTORY,
    steps: int = HORIZON,
) -> Dict[str, Dict[str, float]]:
    """Errors of ``model`` and of the baselines over one series per seed (see :func:`forecasts`).

    Returns:
        {"model": errors, "naive": errors, "seasonal": errors}, each {"mae", "rmse"}.
    """
    truth, preds = forecasts(model, seeds, history, steps)
    return {name: errors(truth, pred) for name, pred in preds.items()}
