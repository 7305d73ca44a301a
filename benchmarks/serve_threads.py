"""Threads for several models in one server process: onnxruntime's default pool per session
against one intra-op thread per session (what ``deploy-lstm serve REPO`` chooses).

    python benchmarks/serve_threads.py                 # ~1 min -> benchmarks/results/serve_threads/threads.md
    python benchmarks/serve_threads.py --quick --out /tmp/t

``--models`` sessions of one exported LSTM run concurrently, one Python thread per model
calling ``runner.run`` in a loop, as the server's per-model batchers do under mixed
traffic (several models busy at once).  Per setting: calls per second over all models,
and the median and 90th-percentile call time.  Settings are interleaved in rounds, each
block preceded by an idle pause (NOTES.md, "Benchmarking on a 2-core VM").  The sessions
are the runtime's runners (``load(DIR).runner("onnx", intra_op_num_threads=...)``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

import deploy_lstm
from deploy_lstm.pipeline import export_folder

SETTINGS = {"ort default pool per model (threads=0)": 0, "1 intra-op thread per model (threads=1)": 1}


def block(runners: List, feeds: Dict[str, np.ndarray], seconds: float) -> List[float]:
    """Every runner busy in its own thread for ``seconds``; the call times (s) of all."""
    times: List[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def loop(runner) -> None:  # type: ignore[no-untyped-def]
        mine = []
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            runner.run(feeds)
            mine.append(time.perf_counter() - t0)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=loop, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=1.5, help="per timed block")
    ap.add_argument("--pause-ms", type=float, default=50.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_threads"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds = 2, 0.5
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp()) / "lstm"
    export_folder(deploy_lstm.LSTM(32, 64, num_layers=2), folder, artifacts=["onnx"], lengths=True)
    loaded = deploy_lstm.load(folder)
    runners = {name: [loaded.runner("onnx", intra_op_num_threads=n) for _ in range(args.models)] for name, n in SETTINGS.items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8, 32)).astype(np.float32)
    feeds = {"input": x, "h0": np.zeros((2, 8, 64), np.float32), "c0": np.zeros((2, 8, 64), np.float32),
             "lengths": np.full((8,), 50, np.int64)}
    times: Dict[str, List[float]] = {name: [] for name in SETTINGS}
    calls: Dict[str, int] = {name: 0 for name in SETTINGS}
    for name in SETTINGS:
        block(runners[name], feeds, 0.2)  # warm-up
    names = list(SETTINGS)
    for r in range(args.rounds):
        for name in names[r % 2:] + names[:r % 2]:
            time.sleep(args.pause_ms / 1000)
            got = block(runners[name], feeds, args.seconds)
            times[name] += got
            calls[name] += len(got)
    base = calls[names[0]]
    lines = [
        f"{args.models} models busy at once, each {'a 2-layer LSTM(32, 64)'} on batch 8 x 50 steps; "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end: other work shared them); "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s per setting.",
        "",
        "| setting | calls/s (all models) | vs default | median call ms | p90 call ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        t = np.array(times[name]) * 1000
        rate = calls[name] / (args.rounds * args.seconds)
        lines.append(f"| {name} | {rate:.0f} | {calls[name] / base:.2f}x | {np.median(t):.2f} | {np.percentile(t, 90):.2f} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "threads.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
