"""Print the demo forecast table: ``python -m deploy_lstm.demo [--seed N] [--onnx PATH]``.

Runs the shipped ``Forecaster`` eagerly, or an exported one through onnxruntime, on one series
shown step by step and on all the held-out series, whose errors are printed beside that one's.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from .forecaster import HISTORY, HORIZON, load_demo, session_step
from .report import demo_report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m deploy_lstm.demo", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=None,
                   help="series to show (default: the typical one of the held-out series the errors are given over)")
    p.add_argument("--history", type=int, default=HISTORY, help=f"observed steps (default {HISTORY})")
    p.add_argument("--steps", type=int, default=HORIZON, help=f"steps to forecast (default {HORIZON})")
    p.add_argument("--onnx", default=None, help="run this exported forecaster with onnxruntime instead")
    args = p.parse_args(argv)
    if args.onnx is None:
        model = load_demo()
        demo_report(model, args.seed, args.history, args.steps)
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
        demo_report(session_step(session), args.seed, args.history, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
