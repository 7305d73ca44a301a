"""int8 beside float32 on onnxruntime: speed and accuracy, and whether int8 is worth it.

    flock /tmp/bench.lock python benchmarks/int8.py           # the 8 benchmark configurations, ~2 minutes on 2 cores
    python benchmarks/int8.py --quick --out /tmp/int8           # tiny sizes, smoke run

Per configuration of ``deploy_lstm.bench.lstm_matrix.matrix`` (1 and 3 layers, uni/bidirectional, H256,
with and without P128; weights seeded as the main benchmark seeds them): ``export_onnx``
(dynamo) and ``quantize_int8``; then per shape (N=1 and N=32, T=128)

* speed: float32 and int8 onnxruntime timed by ``deploy_lstm.bench``'s timer (2 threads,
  warm-up, interleaved rounds, 50 ms idle before each timed block; median per call);
* accuracy: ``int8_error`` (max and mean |int8 - float32| over every output, standard-normal
  inputs and state), its ratio to ``int8_step`` and the tolerance ``int8_tolerance``;
* verdict: ``int8_advice`` (worth it at >= ``INT8_WORTH_IT`` x).

Then the demo forecaster: held-out RMSE/MAE (validation series of its training, seeds
1,000,000..1,000,127: never trained on) of float32 and int8 onnxruntime, and the same
step-size ratio.  Writes results.json and results.md to benchmarks/results/int8/.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import onnxruntime as ort
import torch

from deploy_lstm import LSTM, export_onnx
from deploy_lstm.bench.backends import Shape, make_inputs, ort_call
from deploy_lstm.bench.lstm_matrix import matrix
from deploy_lstm.bench.report import config_name
from deploy_lstm.bench.timing import machine, measure_case
from deploy_lstm.demo import INPUT_NAMES, evaluate, export_spec, session_step
from deploy_lstm.demo.train import VAL_SEED0
from deploy_lstm.check.int8 import INT8_ATOL_FACTOR, INT8_WORTH_IT, int8_advice, int8_error, int8_step, int8_tolerance
from deploy_lstm.exporters.int8 import quantize_int8
from deploy_lstm.runtime.onnx import OnnxRunner

OUT = Path(__file__).resolve().parent / "results" / "int8"
THREADS = 2
TIMING = dict(rounds=7, warmup=2, block_s=0.04, max_calls=50, pause_s=0.05)  # as deploy_lstm.bench
FULL_SHAPES = [Shape("N=1 T=128", 1, 128), Shape("N=32 T=128", 32, 128)]
QUICK_SHAPES = [Shape("N=1 T=8", 1, 8), Shape("N=4 T=8", 4, 8)]
N_HELD_OUT = 128  # the demo's validation series (train.py: n_val)


def options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.log_severity_level = 3
    return so


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=options(), providers=["CPUExecutionProvider"])


def measure_config(cfg: Any, shapes: List[Shape], workdir: Path, rng: np.random.Generator, timing: Dict[str, Any]) -> List[Dict[str, Any]]:
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the main benchmark's weights (deploy_lstm.bench.backends.build_backends)
        model = LSTM(**dataclasses.asdict(cfg)).eval()
    fp32 = export_onnx(model, workdir / "model.onnx", exporter="dynamo")
    int8 = quantize_int8(fp32, workdir / "model.int8.onnx")
    step, tol = int8_step(model), int8_tolerance(model)
    runners = {"fp32": ort_call(OnnxRunner(fp32, session_options=options())),
               "int8": ort_call(OnnxRunner(int8, kind="onnx-int8", session_options=options()))}
    rows = []
    for shape in shapes:
        inp = make_inputs(cfg, shape, rng)
        timed = measure_case({k: make(inp) for k, make in runners.items()}, **timing)
        err = int8_error(fp32, int8, [(shape.batch, shape.steps)], rng)
        f, q = timed["fp32"]["median_ms"], timed["int8"]["median_ms"]  # type: ignore[index]
        speedup = f / q
        rows.append({
            "config": config_name(cfg), "shape": shape.name, "batch": shape.batch, "steps": shape.steps,
            "projection": cfg.proj_size > 0, "fp32_ms": f, "int8_ms": q, "speedup": speedup,
            "fp32_p10_ms": timed["fp32"]["p10_ms"], "int8_p10_ms": timed["int8"]["p10_ms"],  # type: ignore[index]
            "max_abs": err["max_abs"], "mean_abs": err["mean_abs"], "rel": err["rel"], "scale": err["scale"],
            "int8_step": step, "ratio_to_step": err["max_abs"] / step, "tolerance": tol,
            "worth_it": speedup >= INT8_WORTH_IT, "verdict": int8_advice(speedup, err["max_abs"], err["mean_abs"], err["scale"]),
        })
        print(f"  {shape.name}: fp32 {f:.2f} ms, int8 {q:.2f} ms ({speedup:.2f}x); max {err['max_abs']:.2e} "
              f"mean {err['mean_abs']:.2e} ({err['max_abs'] / step:.2f} x step)", flush=True)
    return rows


def feeds_runner(sess: ort.InferenceSession, feeds: Dict[str, np.ndarray]) -> Any:
    return lambda: sess.run(None, feeds)


def measure_demo(workdir: Path, quick: bool, shapes: List[Shape], rng: np.random.Generator, timing: Dict[str, Any]) -> Dict[str, Any]:
    spec = export_spec()
    fp32 = export_onnx(spec.model, workdir / "demo.onnx", **spec.call_arguments())
    int8 = quantize_int8(fp32, workdir / "demo.int8.onnx")
    seeds = list(range(VAL_SEED0, VAL_SEED0 + (8 if quick else N_HELD_OUT)))
    held_out = {name: evaluate(session_step(session(p)), seeds)["model"] for name, p in (("fp32", fp32), ("int8", int8))}
    err = int8_error(fp32, int8)
    step = int8_step(spec.model)
    speed = []
    sessions = {"fp32": session(fp32), "int8": session(int8)}
    for shape in shapes:
        x = rng.standard_normal((shape.batch, shape.steps, 1)).astype(np.float32)  # (N, T, 1)
        h0 = np.zeros((spec.model.num_layers, shape.batch, spec.model.hidden_size), np.float32)
        feeds = dict(zip(INPUT_NAMES, (x, h0, h0.copy())))
        timed = measure_case({k: feeds_runner(v, feeds) for k, v in sessions.items()}, **timing)
        f, q = timed["fp32"]["median_ms"], timed["int8"]["median_ms"]  # type: ignore[index]
        speed.append({"shape": shape.name, "fp32_ms": f, "int8_ms": q, "speedup": f / q})
        print(f"  demo {shape.name}: fp32 {f:.3f} ms, int8 {q:.3f} ms ({f / q:.2f}x)", flush=True)
    return {"speed": speed, "held_out_series": len(seeds), "seeds": [seeds[0], seeds[-1]], "fp32": held_out["fp32"], "int8": held_out["int8"],
            "rmse_change": held_out["int8"]["rmse"] / held_out["fp32"]["rmse"] - 1,
            "max_abs": err["max_abs"], "mean_abs": err["mean_abs"], "rel": err["rel"], "scale": err["scale"],
            "int8_step": step, "ratio_to_step": err["max_abs"] / step, "tolerance": int8_tolerance(spec.model)}


def markdown(res: Dict[str, Any]) -> str:
    rows, demo, s = res["rows"], res["demo"], res["settings"]
    out = [
        "# int8 beside float32 (onnxruntime)", "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores; onnxruntime {res['machine']['onnxruntime']}, "
        f"torch {res['machine']['torch']}. Threads: {THREADS}. "
        f"Wall time {s['wall_s']:.0f} s (mode: {s['mode']}).",
        "Method: per configuration the dynamo export and its `quantize_int8` (onnxruntime dynamic int8: int8 weights, "
        "per-call uint8 activations); both timed by `deploy_lstm.bench`'s timer (warm-up, 7 interleaved rounds, "
        "50 ms idle before each timed block, median per call). Error: `int8_error`, max and mean |int8 - float32| over "
        "every output (output, h_n, c_n) on standard-normal inputs and state; % = max error / max |float32 output|. "
        f"`x step` = max error / `int8_step` (the weights' int8 step x sqrt(fan-in)); tolerance = {INT8_ATOL_FACTOR:g} x step. "
        f"Verdict: worth it at >= {INT8_WORTH_IT:g}x.", "",
        "| config | shape | fp32 ms | int8 ms | speedup | max abs | mean abs | max % | x step | tolerance | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| {r['config']} | {r['shape']} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['speedup']:.2f}x | "
                   f"{r['max_abs']:.1e} | {r['mean_abs']:.1e} | {r['rel']:.1%} | {r['ratio_to_step']:.2f} | {r['tolerance']:.1e} | "
                   f"{'worth it' if r['worth_it'] else '**not worth it**'} |")
    sp = [r["speedup"] for r in rows if r["projection"]]
    sn = [r["speedup"] for r in rows if not r["projection"]]
    out += ["", f"Speedup of int8 over float32 onnxruntime: {min(sn):.2f}-{max(sn):.2f}x without projection, "
            f"{min(sp):.2f}-{max(sp):.2f}x with projection. Max error {min(r['max_abs'] for r in rows):.1e}-"
            f"{max(r['max_abs'] for r in rows):.1e} ({max(r['rel'] for r in rows):.1%} of the output scale at worst), "
            f"{max(r['ratio_to_step'] for r in rows):.2f} x step at worst.", ""]
    f, q = demo["fp32"], demo["int8"]
    out += [
        "## The demo forecaster: held-out error", "",
        f"{demo['held_out_series']} held-out series (its validation seeds {demo['seeds'][0]}..{demo['seeds'][1]}, never trained on), "
        "12-step autoregressive forecast after 96 observed steps, on onnxruntime.", "",
        "| model | RMSE | MAE |", "|---|---|---|",
        f"| float32 | {f['rmse']:.5f} | {f['mae']:.5f} |",
        f"| int8 | {q['rmse']:.5f} | {q['mae']:.5f} |", "",
        f"RMSE change {demo['rmse_change']:+.2%}. Raw output error on random inputs: max {demo['max_abs']:.1e} "
        f"({demo['rel']:.1%} of the output scale), mean {demo['mean_abs']:.1e}; {demo['ratio_to_step']:.2f} x step; "
        f"tolerance {demo['tolerance']:.1e}.", "",
        "Speed (hidden 48, 2 layers): " + "; ".join(f"{r['shape']}: float32 {r['fp32_ms']:.3f} ms, int8 {r['int8_ms']:.3f} ms "
                                                   f"({r['speedup']:.2f}x)" for r in demo["speed"]) + ".", "",
    ]
    return "\n".join(out)


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    p.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = p.parse_args(argv)
    torch.set_num_threads(THREADS)
    timing = dict(TIMING, rounds=1, warmup=1) if args.quick else TIMING
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deploy-lstm-int8-") as tmp:
        for k, cfg in enumerate(matrix(args.quick)):
            print(f"[{k + 1}/8] {config_name(cfg)}", flush=True)
            workdir = Path(tmp) / str(k)
            workdir.mkdir()
            rows += measure_config(cfg, shapes, workdir, rng, timing)
            gc.collect()
        demo = measure_demo(Path(tmp), args.quick, shapes, rng, timing)
    res = {"machine": machine(),
           "settings": {"mode": "quick" if args.quick else "full", "threads": THREADS, **timing,
                        "wall_s": time.perf_counter() - t0, "worth_it": INT8_WORTH_IT, "atol_factor": INT8_ATOL_FACTOR},
           "rows": rows, "demo": demo}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
