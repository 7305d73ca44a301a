#!/usr/bin/env python
"""Write a TorchScript ``deploy_lstm.LSTM`` for the C++ runtime (serving/cpp).

Copy and adapt.  The C++ side reads the model's configuration from the scripted
module's constants (input_size, hidden_size, num_layers, bias, batch_first,
bidirectional, proj_size) and its dtype from ``weight_ih_l0``, so the saved
file is the only artifact: no sidecar config.

    # random weights (a smoke test), or an nn.LSTM state dict with --state-dict
    python export/export_torchscript.py lstm.pt --input-size 40 --hidden-size 128 --num-layers 2
    # the LSTM inside a bigger checkpoint: keys "encoder.lstm.weight_ih_l0", ...
    python export/export_torchscript.py lstm.pt --input-size 40 --hidden-size 128 \
        --state-dict ckpt.pt --prefix encoder.lstm.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

import deploy_lstm


def export_torchscript(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Script ``model`` and save it to ``path`` atomically.

    Args:
        model: a ``deploy_lstm.LSTM`` or ``torch.nn.LSTM`` (converted with
            ``deploy_lstm.swap_lstms``; the caller's module is not modified).
    Returns:
        The path written.
    Raises:
        TypeError: ``model`` is not an LSTM (this script writes a bare LSTM; for a whole
            model call ``deploy_lstm.export_torchscript`` on it, as export_language_model.py does).
    """
    if isinstance(model, nn.LSTM):
        model = deploy_lstm.swap_lstms(model)  # returns a new deploy_lstm.LSTM
    if not isinstance(model, deploy_lstm.LSTM):
        raise TypeError(
            f"expected a deploy_lstm.LSTM or torch.nn.LSTM, got {type(model).__name__}; "
            "this script writes a bare LSTM; for a whole model use deploy_lstm.export_torchscript(model, path)"
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # scripts in eval mode (the caller's flag is restored) and writes atomically
    return deploy_lstm.export_torchscript(model, path)


def validate_torchscript(path: str | os.PathLike[str], model: nn.Module, atol: float = 1e-5) -> float:
    """Reload ``path`` and compare it with ``model`` on a random batch; return the max error.

    Raises:
        ValueError: the outputs differ by more than ``atol``.
    """
    loaded = torch.jit.load(str(path))
    w = next(model.parameters())
    T, N = 7, 3  # deliberately unlike any shape a user exports with: scripting has none
    shape = (N, T, model.input_size) if model.batch_first else (T, N, model.input_size)
    x = torch.randn(shape, dtype=w.dtype)
    with torch.no_grad():
        want_out, (want_h, want_c) = model.eval()(x)
        got_out, (got_h, got_c) = loaded(x)
    err = max((a - b).abs().max().item() for a, b in
              [(got_out, want_out), (got_h, want_h), (got_c, want_c)])
    if err > atol:
        raise ValueError(f"{path}: TorchScript output differs from eager, max diff {err:.3g} (atol {atol:g})")
    return err


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="where to write the TorchScript file (e.g. lstm.pt)")
    p.add_argument("--input-size", type=int, required=True)
    p.add_argument("--hidden-size", type=int, required=True)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--batch-first", action="store_true")
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--proj-size", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--state-dict", help="torch.save'd state dict with nn.LSTM parameter names")
    p.add_argument("--prefix", default="", help="key prefix of the LSTM inside --state-dict, e.g. 'encoder.lstm.'")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights (no --state-dict)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.* is deprecated upstream (2.13)
        model = deploy_lstm.LSTM(
            args.input_size, args.hidden_size, args.num_layers, bias=not args.no_bias,
            batch_first=args.batch_first, bidirectional=args.bidirectional,
            proj_size=args.proj_size, dtype=getattr(torch, args.dtype),
        )
        if args.state_dict:
            sd = torch.load(args.state_dict, map_location="cpu", weights_only=True)
            sd = {k[len(args.prefix):]: v for k, v in sd.items() if k.startswith(args.prefix)}
            model.load_state_dict(sd, strict=True)  # names and shapes checked per key
        path = export_torchscript(model, args.output)
        err = validate_torchscript(path, model, atol=1e-5 if args.dtype == "float32" else 1e-10)
    print(f"wrote {path} ({', '.join(f'{k}={v}' for k, v in model.config().items())}, "
          f"dtype={args.dtype}); reloaded max diff {err:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
