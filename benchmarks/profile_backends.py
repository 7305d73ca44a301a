"""Profiles behind benchmarks/results/ANALYSIS.md (run alone: it times things).

    python benchmarks/profile_backends.py [--layers 1] [--bidirectional] [--proj 0] [--batch 32] [--steps 128]

1. onnxruntime's profiler (SessionOptions.enable_profiling) on our dynamo and
   TorchScript exports and on nn.LSTM's own export: time per node.
2. torch.profiler on nn.LSTM eager, deploy_lstm eager and deploy_lstm TorchScript:
   top ops by self CPU time, and op calls per time step.
"""

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from deploy_lstm import LSTM, export_onnx, export_torchscript
from deploy_lstm.bench.backends import export_nn_lstm
from deploy_lstm.formats.contract import C0, H0, INPUT
from deploy_lstm.errors import DeployLSTMError


def ort_profile(path: Path, feeds: dict, threads: int, runs: int = 20) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    so.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, feeds)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict = collections.defaultdict(float)
    total = 0.0
    for ev in trace:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per_op[ev["args"]["op_name"]] += ev["dur"] / runs / 1e3
        if ev.get("cat") == "Session" and ev["name"] == "model_run":
            total += ev["dur"]
    return {"model_run_ms": total / len([e for e in trace if e.get("name") == "model_run"]) / 1e3,
            "ms_per_op_type": dict(sorted(per_op.items(), key=lambda kv: -kv[1]))}


def torch_profile(fn, steps: int, label: str, top: int = 8) -> str:
    for _ in range(3):
        fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    calls = sum(e.count for e in events if e.key.startswith("aten::") and e.cpu_time_total > 0)
    return f"### {label} ({calls / steps:.1f} aten calls per step)\n" + events.table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--proj", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = LSTM(64, 256, a.layers, bidirectional=a.bidirectional, proj_size=a.proj).eval()
    nn_lstm = m.to_torch().eval()
    D = 2 if a.bidirectional else 1
    P = a.proj or 256
    x = np.random.default_rng(0).standard_normal((a.steps, a.batch, 64)).astype(np.float32)
    h0 = np.zeros((a.layers * D, a.batch, P), np.float32)
    c0 = np.zeros((a.layers * D, a.batch, 256), np.float32)
    feeds = {INPUT: x, H0: h0, C0: c0}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {"ours (dynamo)": export_onnx(m, tmp / "d.onnx"), "ours (torchscript)": export_onnx(m, tmp / "t.onnx", exporter="torchscript")}
        try:
            paths["nn.LSTM export"] = export_nn_lstm(nn_lstm, tmp / "nn.onnx")
        except DeployLSTMError as e:  # projection: no export
            print(f"nn.LSTM export: n/a ({e})")
        for name, path in paths.items():
            print(f"## onnxruntime profile, {name}: {json.dumps(ort_profile(path, feeds, a.threads))}")
        ts = torch.jit.load(str(export_torchscript(m, tmp / "m.ts")))
        xt, ht, ct = (torch.from_numpy(v) for v in (x, h0, c0))
        with torch.inference_mode():
            print(torch_profile(lambda: nn_lstm(xt, (ht, ct)), a.steps, "nn.LSTM eager"))
            print(torch_profile(lambda: m(xt, (ht, ct)), a.steps, "deploy_lstm eager"))
            print(torch_profile(lambda: ts(xt, (ht, ct), None), a.steps, "deploy_lstm TorchScript"))


if __name__ == "__main__":
    main()
