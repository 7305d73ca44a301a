"""Train the demo forecaster on generated series; write weights and metadata.

    python -m deploy_lstm.demo.train --out deploy_lstm/demo/forecaster.safetensors

Deterministic on CPU: fixed torch seed, fixed training series (seeds
0..n_series-1), fixed validation series (seeds from VAL_SEED0).  Training runs
the model with its LSTM swapped for ``torch.nn.LSTM`` (``restore_lstms``: same
parameter names, ATen's fused kernel, much faster backward) and swaps it back
to ``deploy_lstm.LSTM`` (``swap_lstms``) before the final evaluation and save.

The loss is the sum of two MSEs on windows of HISTORY + HORIZON steps:
one-step-ahead forecasts over the history (after a short warm-up), and the
HORIZON-step autoregressive rollout from the end of the history, which is
how the model is used.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from deploy_lstm.nn.swap import restore_lstms, swap_lstms
from deploy_lstm.formats import strict_json
from .forecaster import (
    COMPONENTS,
    CONFIG_FILE,
    DYNAMIC_AXES,
    HISTORY,
    HORIZON,
    INPUT_NAMES,
    NOISE_STD,
    OUTPUT_NAMES,
    Forecaster,
    evaluate,
    make_batch,
)

VAL_SEED0 = 1_000_000  # validation series are seeds VAL_SEED0.. (training: 0..)
WARMUP = 16  # history steps before the one-step loss counts


def window_loss(model: Forecaster, window: Tensor) -> Tuple[Tensor, Tensor]:
    """(one-step MSE over the history, rollout MSE over the horizon) of (B, HISTORY+HORIZON)."""
    B = window.size(0)
    h = torch.zeros(model.num_layers, B, model.hidden_size)
    c = torch.zeros_like(h)
    y, h, c = model(window[:, :HISTORY, None], h, c)  # (B, HISTORY, 1)
    one_step = F.mse_loss(y[:, WARMUP : HISTORY - 1, 0], window[:, WARMUP + 1 : HISTORY])
    nxt = y[:, -1:, :]  # (B, 1, 1): forecast of step HISTORY
    preds: List[Tensor] = [nxt]
    for _ in range(HORIZON - 1):
        nxt, h, c = model(nxt, h, c)
        preds.append(nxt)
    rollout = F.mse_loss(torch.cat(preds, 1)[:, :, 0], window[:, HISTORY:])  # (B, HORIZON)
    return one_step, rollout


def train(
    out: Path, steps: int = 2000, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
    n_series: int = 1024, series_length: int = 256, n_val: int = 128,
    hidden_size: int = 48, num_layers: int = 2, log_every: int = 100,
) -> Dict[str, object]:
    """Train, evaluate and save; return the metadata written to ``forecaster.json``.

    Args:
        out: weights file (``.safetensors``); the metadata goes next to it as
            ``forecaster.json``.
        steps: optimizer steps.
        batch_size: windows per step, cropped at random from the training series.
        lr: peak Adam learning rate (cosine decay to lr / 30).
        seed: ``torch.manual_seed`` for initialisation and window sampling.
        n_series, series_length: the fixed training set (seeds 0..n_series-1).
        n_val: validation series (seeds VAL_SEED0..).
        hidden_size, num_layers: the ``Forecaster`` size.
        log_every: steps between printed losses.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    window = HISTORY + HORIZON
    if series_length < window:
        raise ValueError(f"expected series_length >= {window} (history + horizon), got {series_length}")
    train_data = torch.from_numpy(make_batch(range(n_series), series_length))  # (S, L)
    val_seeds = list(range(VAL_SEED0, VAL_SEED0 + n_val))
    val_data = torch.from_numpy(make_batch(val_seeds, window))  # (V, window)

    model = Forecaster(hidden_size=hidden_size, num_layers=num_layers)
    restore_lstms(model)  # train on nn.LSTM's fused kernel; same parameter names
    print(f"training Forecaster(hidden_size={hidden_size}, num_layers={num_layers}) "
          f"for {steps} steps, batch {batch_size}, {n_series} series")
    settings = {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "n_series": n_series,
                "series_length": series_length, "val_seeds": [VAL_SEED0, VAL_SEED0 + n_val]}
    train_loss = optimize(model, train_data, val_data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          log_every=log_every, t0=t0)

    model = swap_lstms(model).eval()  # back to deploy_lstm.LSTM for evaluation and save
    val_loss = validation_loss(model, val_data)
    scores = evaluate(model, val_seeds, HISTORY, HORIZON)
    seconds = time.perf_counter() - t0
    rmse = {k: round(v["rmse"], 5) for k, v in scores.items()}
    print(f"validation RMSE over {HORIZON} steps ({n_val} series): model {rmse['model']:.4f}  "
          f"naive {rmse['naive']:.4f}  seasonal {rmse['seasonal']:.4f}  "
          f"(model/naive {rmse['model'] / rmse['naive']:.3f})")
    meta = metadata(model, {
        **settings,
        "seconds": round(seconds, 1),
        "final_train_loss": {"one_step": round(train_loss[0], 6), "rollout": round(train_loss[1], 6)},
        "final_val_loss": {"one_step": round(val_loss[0], 6), "rollout": round(val_loss[1], 6)},
        "val_rmse": rmse["model"],
        "val_naive_rmse": rmse["naive"],
        "val_seasonal_rmse": rmse["seasonal"],
        "val_mae": round(scores["model"]["mae"], 5),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"format": "pt"})
    (out.parent / CONFIG_FILE).write_text(strict_json.dumps(meta, CONFIG_FILE, nonfinite="null", indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes) and {out.parent / CONFIG_FILE} in {seconds:.0f}s")
    return meta


def validation_loss(model: Forecaster, val_data: Tensor) -> Tuple[float, float]:
    """(one-step, rollout) MSE over the validation windows, in eval mode; the mode is restored."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        one, ro = window_loss(model, val_data)
    model.train(was_training)
    return float(one), float(ro)


def optimize(
    model: Forecaster, train_data: Tensor, val_data: Tensor, *,
    steps: int, batch_size: int, lr: float, seed: int, log_every: int, t0: float,
) -> Tuple[float, float]:
    """Adam with cosine decay over ``steps`` batches of windows cropped at random (``seed``) from
    ``train_data`` (S, L); prints the losses every ``log_every`` steps with the seconds since ``t0``.

    Returns:
        The last step's (one-step, rollout) training loss.
    """
    n_series, series_length = train_data.shape
    window = HISTORY + HORIZON
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1 / 30 + (1 - 1 / 30) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    one = ro = torch.zeros(())
    for step in range(1, steps + 1):
        rows = torch.randint(0, n_series, (batch_size,), generator=gen)
        starts = torch.randint(0, series_length - window + 1, (batch_size,), generator=gen)
        idx = starts[:, None] + torch.arange(window)[None, :]  # (B, window)
        batch = train_data[rows[:, None], idx]  # (B, window)
        one, ro = window_loss(model, batch)
        loss = one + ro
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            v_one, v_ro = validation_loss(model, val_data)
            print(f"step {step:5d}  train one-step {one.item():.5f} rollout {ro.item():.5f}  "
                  f"val one-step {v_one:.5f} rollout {v_ro:.5f}  ({time.perf_counter() - t0:.0f}s)")
    return one.item(), ro.item()


def metadata(model: Forecaster, training: Dict[str, object]) -> Dict[str, object]:
    """What ``forecaster.json`` holds: the model's arguments, the I/O, the signal and ``training``."""
    return {
        "format": "deploy-lstm-demo/1",
        "model": model.config(),
        "io": {
            "input_names": list(INPUT_NAMES),
            "output_names": list(OUTPUT_NAMES),
            "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in DYNAMIC_AXES.items()},
            "history": HISTORY,
            "horizon": HORIZON,
        },
        "signal": {"components": [list(c) for c in COMPONENTS], "noise_std": NOISE_STD},
        "training": training,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m deploy_lstm.demo.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="weights file (.safetensors); forecaster.json goes next to it")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000, as shipped)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    p.add_argument("--tiny", action="store_true", help="smoke-test run: few series, small batch, small model")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.out.suffix != ".safetensors":
        p.error(f"--out must end in .safetensors, got {args.out}")
    if args.tiny:
        train(args.out, steps=args.steps, batch_size=4, seed=args.seed, n_series=8,
              series_length=HISTORY + HORIZON, n_val=4, hidden_size=8, num_layers=2, log_every=1)
    else:
        train(args.out, steps=args.steps, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
