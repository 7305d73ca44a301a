"""Streaming steps against the memory floor (issue 13): one time step per call, state carried.

    flock /tmp/bench.lock python benchmarks/streaming.py            # L1 and L2, H=256, I=64, N=1 and 8
    python benchmarks/streaming.py --quick --out /tmp/s             # smoke: tiny sizes, one round

A step of an LSTM reads every weight once: at N=1 it is a matrix-vector product per
layer, bound by how fast the weights stream from cache.  So each backend's per-step
median is set against

* **weight bytes**: the bytes of the LSTM's parameters (nn.LSTM's ``weight_ih``,
  ``weight_hh``, ``bias_ih``, ``bias_hh`` [, ``weight_hr``] of every layer; int8: its
  int8 W and R plus the float biases), read once per step;
* **copy bandwidth**: bytes per second of copying a buffer (``dst.copy_(src)`` in torch
  with the benchmark's threads, ``np.copyto`` on one thread; the faster counts), each
  byte read once and written once, counting the bytes read.  In cache: a buffer of the
  weights' size (it fits in L2 + L3 here); DRAM: a 256 MB buffer;
* **floor** = weight bytes / in-cache copy bandwidth: the time to stream the weights
  once at the speed this machine copies them.  A GEMV does not write what it reads, so
  a kernel can beat this floor (ratios below 1 are possible);
* **achieved GB/s** = weight bytes / median step time, and **ratio** = median / floor,
  judged against the issue's targets at N=1: <= 1.5 for onnxruntime with I/O binding, <= 2 for
  the TorchScript step and the C++ ``LstmStream`` (at N=8 a step is compute-bound: reported only).

Timing: ``deploy_lstm.bench.timing.measure_case`` (interleaved rounds, 50 ms idle pause before
each timed block) on the Python backends; the C++ program ``stream_bench`` runs in its
own process after them with the same pause discipline (its own rounds), while this
process sleeps.  Results: ``benchmarks/results/streaming/results.{json,md,png}``.

The ExecuTorch rows (issue 21), at N=1 (a ``model.pte`` has a fixed batch; the device is one
stream), built by ``benchmarks/executorch_stream.py``: the program's ``forward`` through
``executorch.runtime``, the runner's stream, and the C++ ``pte_bench`` (``--pte-build DIR``, the
build folder of ``serving/cpp/executorch``), beside the same floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort
import torch

from deploy_lstm import LSTM
from deploy_lstm.bench.report import config_name, matplotlib_missing
from deploy_lstm.bench.timing import Call, Unavailable, machine, measure_case
from deploy_lstm.nn.config import LSTMConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_floor import copy_bandwidth, weight_bytes  # noqa: E402 -- the floor, shared with executorch_stream.py
from deploy_lstm.formats.files import atomic_path
from deploy_lstm.exporters.onnx import export_onnx
from deploy_lstm.exporters.int8 import quantize_int8
from deploy_lstm.runtime.onnx import OnnxLSTM
from deploy_lstm.exporters.torchscript import export_torchscript
from deploy_lstm.pipeline import export_folder

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "streaming"

NN = "nn.LSTM eager"
EAGER = "deploy_lstm eager forward"
TS_FORWARD = "TorchScript forward"
TS_STEP = "TorchScript step_"
ORT_RUN = "ort session.run"
ORT_STREAM = "ort OnnxStream"
ORT_INT8 = "ort int8 OnnxStream"
CPP_STEP = "C++ LstmStream.step"
CPP_PUSH = "C++ LstmStream.push"
PTE_METHOD = "ExecuTorch .pte forward"  # model.pte's method through executorch.runtime (issue 21)
PTE_STREAM = "ExecuTorch runner stream"  # deploy_lstm.load(DIR).runner("executorch").stream().push
PTE_CPP = "C++ pte_bench"  # serving/cpp/executorch's pte_bench, no libtorch
PTE_ROWS = (PTE_METHOD, PTE_STREAM, PTE_CPP)
BACKENDS = [NN, EAGER, TS_FORWARD, TS_STEP, ORT_RUN, ORT_STREAM, ORT_INT8, CPP_STEP, CPP_PUSH, *PTE_ROWS]
#: the issue's targets: ratio to the floor at most this
TARGETS = {ORT_STREAM: 1.5, TS_STEP: 2.0, CPP_STEP: 2.0}
INT8_BACKENDS = frozenset({ORT_INT8})


@dataclasses.dataclass(frozen=True)
class Case:
    config: LSTMConfig
    batch: int


def cases(quick: bool) -> List[Case]:
    if quick:
        return [Case(LSTMConfig(8, 16, 1), 1), Case(LSTMConfig(8, 16, 2), 2)]
    out = []
    for layers in (1, 2):
        for batch in (1, 8):
            out.append(Case(LSTMConfig(64, 256, layers), batch))
    return out










# --- the backends ----------------------------------------------------------------------


def _torch_step(call: Callable[[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]], Any], x: torch.Tensor,
                h0: torch.Tensor, c0: torch.Tensor) -> Call:
    """One step of a module called like nn.LSTM on a (1, N, I) chunk, carrying (h, c)."""
    state = [(h0.clone(), c0.clone())]

    def run() -> None:
        _, hc = call(x, state[0])
        state[0] = hc

    return run


def build(case: Case, workdir: Path, threads: int, stream_bench: Optional[Path], quick: bool,
          log: Callable[[str], None], pte_build: Optional[Path] = None) -> Tuple[Dict[str, Call], Dict[str, Any], List[Any]]:
    """({backend: one-step runner}, {backend: Unavailable or C++ result}, objects to keep alive)."""
    cfg, N = case.config, case.batch
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = LSTM(**dataclasses.asdict(cfg)).eval()
    reference = ours.to_torch().eval()
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((1, N, cfg.input_size)).astype(np.float32)
    h_np = np.zeros((cfg.num_layers, N, cfg.real_hidden_size), np.float32)
    c_np = np.zeros((cfg.num_layers, N, cfg.hidden_size), np.float32)
    x, h0, c0 = (torch.from_numpy(a) for a in (x_np, h_np, c_np))
    runners: Dict[str, Call] = {}
    other: Dict[str, Any] = {}
    keep: List[Any] = []

    def attempt(name: str, make: Callable[[], Call]) -> None:
        try:
            runners[name] = make()
        except Exception as e:  # recorded, not raised
            other[name] = Unavailable.of(name, e)
            log(f"  {name}: n/a ({other[name].reason})")

    attempt(NN, lambda: _torch_step(lambda x, hc: reference(x, hc), x, h0, c0))
    attempt(EAGER, lambda: _torch_step(lambda x, hc: ours(x, hc, None), x, h0, c0))
    ts_path = export_torchscript(ours, workdir / "model.pt")
    scripted = torch.jit.load(str(ts_path), map_location="cpu").eval()  # reloaded from disk
    attempt(TS_FORWARD, lambda: _torch_step(lambda x, hc: scripted(x, hc, None), x, h0, c0))

    def ts_step() -> Call:
        h, c = h0.clone(), c0.clone()
        x1 = x[0]
        scripted.prepare_step()
        return lambda: scripted.step_(x1, h, c)

    attempt(TS_STEP, ts_step)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    onnx_path = export_onnx(ours, workdir / "model.onnx")
    session = OnnxLSTM(onnx_path, session_options=so)
    keep.append(session)

    def ort_run() -> Call:
        names = session.output_names
        state = [h_np.copy(), c_np.copy()]
        run = session.session.run

        def step() -> None:
            _, state[0], state[1] = run(names, {"input": x_np, "h0": state[0], "c0": state[1]})

        return step

    attempt(ORT_RUN, ort_run)

    def ort_stream(sess: OnnxLSTM) -> Call:
        stream = sess.stream(N)
        keep.append(stream)
        x1 = x_np[0]
        return lambda: stream.step(x1)

    attempt(ORT_STREAM, lambda: ort_stream(session))

    def int8() -> Call:
        path = quantize_int8(onnx_path, workdir / "int8.onnx")
        sess = OnnxLSTM(path, session_options=so)
        keep.append(sess)
        return ort_stream(sess)

    attempt(ORT_INT8, int8)
    pte_rows(reference, workdir, N, pte_build, attempt, other)
    if stream_bench is None:
        for name in (CPP_STEP, CPP_PUSH):
            other[name] = Unavailable(name, "stream_bench is not built (pass --stream-bench or build serving/cpp)")
    else:
        other["_cpp"] = {"path": str(stream_bench), "model": str(ts_path)}
    return runners, other, keep


def _executorch_stream() -> Any:
    """benchmarks/executorch_stream.py, imported when the .pte rows are built (it imports this
    module's floor, so not at the top)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import executorch_stream

    return executorch_stream


def pte_rows(reference: torch.nn.LSTM, workdir: Path, batch: int, pte_build: Optional[Path],
             attempt: Callable[[str, Callable[[], Call]], None], other: Dict[str, Any]) -> None:
    """The .pte rows (issue 21), built by benchmarks/executorch_stream.py, at batch 1 only: the
    device's stream (a model.pte has a fixed batch; the device target is one stream)."""
    if batch != 1:
        for name in PTE_ROWS:
            other[name] = Unavailable(name, "timed at N=1 only, the device's stream (a model.pte has a fixed batch)")
        return
    made: Dict[str, Any] = {}

    def calls() -> Dict[str, Call]:
        if "calls" not in made:
            folder, _ = export_folder(LSTM.from_torch(reference), workdir / "pte", artifacts=("executorch",))
            made["folder"] = folder.path
            made["calls"] = _executorch_stream().python_calls(reference, folder.path)
        return made["calls"]

    attempt(PTE_METHOD, lambda: calls()["pte method (Python)"])
    attempt(PTE_STREAM, lambda: calls()["pte runner stream (Python)"])
    if "folder" not in made:
        other[PTE_CPP] = Unavailable(PTE_CPP, "model.pte was not exported (see the Python rows)")
    elif pte_build is None or not (pte_build / "pte_bench").is_file():
        other[PTE_CPP] = Unavailable(PTE_CPP, "pte_bench is not built (pass --pte-build, the build folder of serving/cpp/executorch)")
    else:
        other["_pte_cpp"] = {"build": pte_build, "folder": made["folder"]}


def run_pte_bench(pte: Dict[str, Any], quick: bool) -> Dict[str, Any]:
    """pte_bench's per-chunk timing (executorch_stream.cpp_row), as measure_case reports a row."""
    row = _executorch_stream().cpp_row(pte["folder"], pte["build"], 200 if quick else 20000)
    return {"median_ms": row["median_us"] / 1e3, "p10_ms": row["p10_us"] / 1e3, "p90_ms": row["p90_us"] / 1e3}


def run_stream_bench(binary: Path, model: str, batch: int, threads: int, rounds: int, pause_ms: float,
                     quick: bool) -> Dict[str, Any]:
    block = 20 if quick else 200
    cmd = [str(binary), model, "--batch", str(batch), "--threads", str(threads), "--rounds", str(rounds),
           "--block", str(block), "--warmup", "5" if quick else "50", "--pause-ms", str(int(pause_ms))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"stream_bench failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return json.loads(proc.stdout)


def find_stream_bench(given: Optional[str]) -> Optional[Path]:
    if given:
        return Path(given)
    for candidate in (REPO / "serving" / "cpp" / "build" / "stream_bench", Path("/tmp/dl-build-s/stream_bench")):
        if candidate.is_file():
            return candidate
    found = shutil.which("stream_bench")
    return Path(found) if found else None


# --- measuring ---------------------------------------------------------------------------


def measure(quick: bool, rounds: int, threads: int, pause_ms: float, stream_bench: Optional[Path],
            log: Callable[[str], None] = print, pte_build: Optional[Path] = None) -> Dict[str, Any]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    results: List[Dict[str, Any]] = []
    try:
        sizes = sorted({weight_bytes(c.config) for c in cases(quick)})
        bandwidth = {
            "in_cache": {str(b): copy_bandwidth(b, threads, 0.05 if quick else 0.3, pause_ms / 1e3) for b in sizes},
            "dram": copy_bandwidth(256 * 2**20 if not quick else 32 * 2**20, threads, 0.2 if quick else 1.0, pause_ms / 1e3),
        }
        log("copy bandwidth (GB/s, bytes read): " + ", ".join(
            f"{int(k) / 1e6:.2f} MB {v['best_gbs']:.1f}" for k, v in bandwidth["in_cache"].items()
        ) + f"; DRAM {bandwidth['dram']['best_gbs']:.1f}")
        with tempfile.TemporaryDirectory(prefix="deploy-lstm-streaming-") as tmp:
            for k, case in enumerate(cases(quick)):
                cfg = case.config
                log(f"[{k + 1}/{len(cases(quick))}] {config_name(cfg)} I{cfg.input_size} N={case.batch}")
                workdir = Path(tmp) / str(k)
                workdir.mkdir()
                runners, other, keep = build(case, workdir, threads, stream_bench, quick, log, pte_build)
                # no_grad for every Python backend (the committed results); under inference_mode the
                # TorchScript step_ runs ~10% faster (its in-place updates skip version counters)
                with torch.no_grad():
                    timed = measure_case(
                        runners, rounds=rounds, warmup=5 if quick else 50, block_s=0.01 if quick else 0.04,
                        max_calls=20 if quick else 400, pause_s=pause_ms / 1e3,
                    )
                pte = other.pop("_pte_cpp", None)
                if pte is not None:
                    time.sleep(pause_ms / 1e3)
                    try:
                        timed[PTE_CPP] = run_pte_bench(pte, quick)
                    except Exception as e:
                        other[PTE_CPP] = Unavailable.of(PTE_CPP, e, stage="run")
                cpp = other.pop("_cpp", None)
                if cpp is not None:
                    time.sleep(pause_ms / 1e3)
                    try:
                        out = run_stream_bench(Path(cpp["path"]), cpp["model"], case.batch, threads, rounds, pause_ms, quick)
                        for name, key in ((CPP_STEP, "step"), (CPP_PUSH, "push")):
                            s = out[key]
                            timed[name] = {"median_ms": s["median_us"] / 1e3, "p10_ms": s["p10_us"] / 1e3,
                                           "p90_ms": s["p90_us"] / 1e3, "samples": s["calls"], "uses_step": out["uses_step"]}
                    except Exception as e:
                        for name in (CPP_STEP, CPP_PUSH):
                            other[name] = Unavailable.of(name, e, stage="run")
                del keep, runners
                gc.collect()
                results.append(_case_result(case, {**timed, **other}, bandwidth))
                log("  " + ", ".join(
                    f"{n}={r['median_us']:.1f}us" for n, r in results[-1]["results"].items() if "median_us" in r
                ))
    finally:
        torch.set_num_threads(previous)
    return {
        "machine": machine(),
        "settings": {"threads": threads, "rounds": rounds, "pause_ms": pause_ms, "quick": quick,
                     "stream_bench": str(stream_bench) if stream_bench else None,
                     "pte_build": str(pte_build) if pte_build else None,
                     "wall_s": round(time.perf_counter() - t_start, 1)},
        "definitions": {
            "weight_bytes": "bytes of the LSTM's parameters (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr of every "
                            "layer), each read once per step; int8: W and R at 1 byte, biases float32",
            "copy_bandwidth": "bytes read per second by dst.copy_(src) (torch, benchmark threads) or np.copyto (one "
                              "thread), the faster of the two, median call; each byte is read once and written once",
            "floor": "weight bytes / in-cache copy bandwidth (a buffer of the weights' size)",
            "achieved_gbs": "weight bytes / median step time",
            "ratio": "median step time / floor",
        },
        "targets": {k: v for k, v in TARGETS.items()},
        "bandwidth": bandwidth,
        "backends": BACKENDS,
        "cases": results,
    }


def _case_result(case: Case, timed: Dict[str, Any], bandwidth: Dict[str, Any]) -> Dict[str, Any]:
    cfg = case.config
    wb = weight_bytes(cfg)
    cache_gbs = bandwidth["in_cache"][str(wb)]["best_gbs"]
    floor_us = wb / (cache_gbs * 1e9) * 1e6
    out: Dict[str, Any] = {}
    for name in BACKENDS:
        r = timed.get(name, Unavailable(name, "not built"))
        if isinstance(r, Unavailable):
            out[name] = r.to_dict()
            continue
        nbytes = weight_bytes(cfg, int8=True) if name in INT8_BACKENDS else wb
        floor = nbytes / (cache_gbs * 1e9) * 1e6
        median_us = r["median_ms"] * 1e3
        entry = {"median_us": median_us, "p10_us": r["p10_ms"] * 1e3, "p90_us": r["p90_ms"] * 1e3,
                 "weight_bytes": nbytes, "achieved_gbs": nbytes / (median_us / 1e6) / 1e9, "floor_us": floor,
                 "ratio_to_floor": median_us / floor, "samples": r.get("samples")}
        if "uses_step" in r:
            entry["uses_step"] = r["uses_step"]
        if name in TARGETS and case.batch == 1:  # the case: one stream, bound by reading the weights
            entry["target"] = TARGETS[name]
            entry["met"] = entry["ratio_to_floor"] <= TARGETS[name]
        out[name] = entry
    return {"config": config_name(cfg), "config_dict": dataclasses.asdict(cfg), "batch": case.batch,
            "weight_bytes": wb, "in_cache_copy_gbs": cache_gbs, "floor_us": floor_us, "results": out}


# --- reports -----------------------------------------------------------------------------


def to_markdown(res: Dict[str, Any]) -> str:
    m, s = res["machine"], res["settings"]
    lines = [
        "# Streaming steps against the memory floor",
        "",
        f"{m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}. {s['threads']} threads, "
        f"{s['rounds']} interleaved rounds, {s['pause_ms']:g} ms idle before each timed block; wall {s['wall_s']} s.",
        "",
        "One time step per call (T=1), state carried. " + res["definitions"]["floor"].capitalize() + "; "
        + res["definitions"]["copy_bandwidth"] + ". Weight bytes: " + res["definitions"]["weight_bytes"] + ".",
        "",
        "Copy bandwidth (GB/s, bytes read): "
        + "; ".join(f"{int(k) / 1e6:.2f} MB in cache: torch {v['gbs']['torch_copy']:.1f}, numpy {v['gbs']['numpy_copy']:.1f}"
                    for k, v in res["bandwidth"]["in_cache"].items())
        + f"; DRAM ({res['bandwidth']['dram']['bytes'] / 2**20:.0f} MB): torch {res['bandwidth']['dram']['gbs']['torch_copy']:.1f}, "
          f"numpy {res['bandwidth']['dram']['gbs']['numpy_copy']:.1f}.",
        "",
    ]
    for case in res["cases"]:
        lines += [
            f"## {case['config']} I{case['config_dict']['input_size']}, N={case['batch']}: "
            f"{case['weight_bytes'] / 1e6:.2f} MB of weights, floor {case['floor_us']:.1f} us "
            f"(in-cache copy {case['in_cache_copy_gbs']:.1f} GB/s)",
            "",
        ]
        if case["batch"] > 1:
            lines += [f"With {case['batch']} rows a step is a small GEMM per layer, not a GEMV: compute, not the weights' "
                      "bandwidth, bounds it, so the memory floor is shown for scale and no target is judged.", ""]
        lines += [
            "| backend | median us | p10-p90 us | GB/s | x floor | target |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in case["results"].items():
            if "median_us" not in r:
                lines.append(f"| {name} | n/a: {r['reason']} | | | | |")
                continue
            target = ""
            if "target" in r:
                target = f"<= {r['target']:g}: {'met' if r['met'] else 'missed'}"
            note = " (int8 bytes)" if name in INT8_BACKENDS else ""
            lines.append(
                f"| {name} | {r['median_us']:.1f} | {r['p10_us']:.1f}-{r['p90_us']:.1f} | {r['achieved_gbs']:.1f}{note} "
                f"| {r['ratio_to_floor']:.2f} | {target} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(res: Dict[str, Any], path: Path) -> Optional[str]:
    missing = matplotlib_missing()
    if missing is not None:
        return missing.reason
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases_ = res["cases"]
    fig, axes = plt.subplots(1, len(cases_), figsize=(4.2 * len(cases_), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases_):
        names = [n for n, r in case["results"].items() if "median_us" in r]
        values = [case["results"][n]["ratio_to_floor"] for n in names]
        ax.barh(range(len(names)), values, color=["tab:green" if case["results"][n].get("met", True) else "tab:red" for n in names])
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.axvline(1.5, color="tab:orange", lw=0.8, ls="--")
        ax.axvline(2.0, color="tab:red", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("step time / floor")
        ax.set_title(f"{case['config']} N={case['batch']}\nfloor {case['floor_us']:.0f} us", fontsize=8)
        ax.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return None


def write(res: Dict[str, Any], out: Path) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    why = plot(res, out / "results.png")
    if why is None:
        written.append(out / "results.png")
    else:
        res["chart"] = why
    for name, text in (("results.json", json.dumps(res, indent=1)), ("results.md", to_markdown(res))):
        with atomic_path(out / name) as tmp:
            Path(tmp).write_text(text + "\n")
        written.append(out / name)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (a smoke test)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where results.{{json,md,png}} go (default {OUT})")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; --quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch, onnxruntime and C++ intra-op threads")
    parser.add_argument("--pause-ms", type=float, default=50.0, help="idle time before each timed block")
    parser.add_argument("--stream-bench", default=None, help="the stream_bench binary (default: look in serving/cpp/build, /tmp/dl-build-s)")
    parser.add_argument("--pte-build", type=Path, default=None,
                        help="the build folder of serving/cpp/executorch (pte_bench) for the C++ .pte row")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 7)
    res = measure(args.quick, rounds, args.threads, args.pause_ms, find_stream_bench(args.stream_bench), pte_build=args.pte_build)
    paths = write(res, args.out)
    print(to_markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
