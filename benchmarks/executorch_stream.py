"""ExecuTorch rows of the streaming benchmark (issue 21): one chunk of T=1 per call, state carried.

    flock /tmp/bench.lock python benchmarks/executorch_stream.py        # LSTM(64, 256, 2), batch 1
    python benchmarks/executorch_stream.py --quick --out /tmp/e           # smoke: tiny sizes

Rows, each a median over interleaved rounds of per-call times (µs per chunk):

* ``eager nn.LSTM``: ``lstm(x, (h, c))`` under ``no_grad``, the state fed back;
* ``pte method (Python)``: ``model.pte``'s ``forward`` through ``executorch.runtime``, torch
  tensors in and out (what an app calling the runtime directly pays);
* ``pte runner stream (Python)``: ``deploy_lstm.load(DIR).runner("executorch").stream().push``,
  numpy in and out, inputs checked;
* ``pte_bench (C++)``: ``serving/cpp/executorch``'s ``pte_bench`` (no libtorch), in its own process.

Beside them: the memory floor (weight bytes / in-cache copy bandwidth, as ``streaming.py``
computes it), the ``.pte``, binary and library sizes.  The aim: the pte in Python at most
0.5x eager, the C++ pte within 1.3x the floor.  Results: ``benchmarks/results/executorch/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

import deploy_lstm
from deploy_lstm import LSTM
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.pipeline import export_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_floor import copy_bandwidth, weight_bytes  # noqa: E402 -- the floor, computed as the streaming benchmark does

ROOT = Path(__file__).resolve().parents[1]
#: the issue's aims: pte in Python / eager, C++ pte / floor
AIMS = {"python_vs_eager": 0.5, "cpp_vs_floor": 1.3}


def per_call_us(calls: Dict[str, Callable[[], Any]], rounds: int, seconds: float) -> Dict[str, Dict[str, float]]:
    """{name: median, p10, p90 µs per call} over ``rounds`` interleaved rounds of about ``seconds`` each."""
    samples: Dict[str, List[float]] = {name: [] for name in calls}
    for name, fn in calls.items():  # warm up and size a round
        for _ in range(50):
            fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            time.sleep(0.05)  # idle pause before each timed block
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                for _ in range(20):
                    fn()
                n += 20
            samples[name].append((time.perf_counter() - start) / n * 1e6)
    return {
        name: {"median_us": statistics.median(v), "p10_us": float(np.percentile(v, 10)), "p90_us": float(np.percentile(v, 90))}
        for name, v in samples.items()
    }


def python_calls(ref: torch.nn.LSTM, folder: Path) -> Dict[str, Callable[[], Any]]:
    """The Python rows' thunks, each carrying its own state."""
    from executorch.runtime import Runtime

    cfg = LSTMConfig.of(LSTM.from_torch(ref))
    x = torch.randn(1, 1, cfg.input_size)
    zeros = (torch.zeros(cfg.num_layers, 1, cfg.real_hidden_size), torch.zeros(cfg.num_layers, 1, cfg.hidden_size))
    eager_state, pte_state = [zeros], [zeros]
    method = Runtime.get().load_program(str(folder / "model.pte")).load_method("forward")
    stream = deploy_lstm.load(folder).runner("executorch").stream(batch=1)
    xn = x.numpy()

    def eager() -> None:
        with torch.no_grad():
            _, state = ref(x, eager_state[0])
        eager_state[0] = state

    def pte_method() -> None:
        _, h, c = method.execute([x, *pte_state[0]])
        pte_state[0] = (h.clone(), c.clone())

    return {"eager nn.LSTM": eager, "pte method (Python)": pte_method, "pte runner stream (Python)": lambda: stream.push(xn)}


def cpp_row(folder: Path, build: Optional[Path], iters: int) -> Optional[Dict[str, float]]:
    """pte_bench's per-chunk times, or None without a build."""
    if build is None or not (build / "pte_bench").exists():
        return None
    time.sleep(0.05)
    out = subprocess.run([str(build / "pte_bench"), str(folder), "--iters", str(iters)], capture_output=True, text=True, check=True)
    row = json.loads(out.stdout)
    return {k: row[k] for k in ("median_us", "p10_us", "p90_us")}


def sizes(folder: Path, build: Optional[Path]) -> Dict[str, int]:
    """Bytes of the .pte, the stripped pte_run and the shared libraries it loads."""
    out = {"model.pte": (folder / "model.pte").stat().st_size}
    if build is not None and (build / "pte_run").exists():
        with tempfile.TemporaryDirectory() as tmp:
            stripped = Path(tmp) / "pte_run"
            subprocess.run(["strip", "-o", str(stripped), str(build / "pte_run")], check=True)
            out["pte_run (stripped)"] = stripped.stat().st_size
        ldd = subprocess.run(["ldd", str(build / "pte_run")], capture_output=True, text=True, check=True).stdout
        for line in ldd.splitlines():
            if "libexecutorch" in line and "=>" in line:
                path = Path(line.split("=>")[1].split("(")[0].strip())
                out[path.name] = path.resolve().stat().st_size
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny LSTM, one short round")
    p.add_argument("--build", help="the build folder of serving/cpp/executorch (pte_run, pte_bench); C++ rows skipped without")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "executorch"))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch's threads for eager (default 1: one step gains nothing from more)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = torch.nn.LSTM(8, 16, 2).eval() if args.quick else torch.nn.LSTM(64, 256, 2).eval()
    rounds, seconds = (1, 0.05) if args.quick else (args.rounds, 0.3)
    build = Path(args.build) if args.build else None
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = export_folder(LSTM.from_torch(ref), Path(tmp) / "out", artifacts=("executorch",))
        rows = per_call_us(python_calls(ref, folder.path), rounds, seconds)
        cpp = cpp_row(folder.path, build, 200 if args.quick else 20000)
        if cpp is not None:
            rows["pte_bench (C++)"] = cpp
        bytes_ = sizes(folder.path, build)
    wb = weight_bytes(LSTMConfig.of(LSTM.from_torch(ref)))
    floor_us = wb / (copy_bandwidth(wb, torch.get_num_threads())["best_gbs"] * 1e9) * 1e6
    eager = rows["eager nn.LSTM"]["median_us"]
    for row in rows.values():
        row["vs_eager"], row["vs_floor"] = row["median_us"] / eager, row["median_us"] / floor_us
    result = {"lstm": repr(ref), "chunk": 1, "batch": 1, "threads": torch.get_num_threads(), "weight_bytes": wb,
              "floor_us": floor_us, "aims": AIMS, "rows": rows, "bytes": bytes_}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['lstm']}, one T=1 chunk, batch 1; floor {floor_us:.1f} µs ({wb} weight bytes)")
    for name, row in rows.items():
        print(f"  {name:28s} {row['median_us']:9.1f} µs  ({row['p10_us']:.1f}-{row['p90_us']:.1f})  {row['vs_eager']:.2f}x eager  {row['vs_floor']:.2f}x floor")
    for name, n in bytes_.items():
        print(f"  {name:40s} {n / 1e6:8.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
