"""Benchmarks: every backend on the same weights, inputs and thread count, in one process.

Backends per LSTM configuration: ``torch.nn.LSTM`` eager (the baseline of every
ratio), ``deploy_lstm`` eager, ``deploy_lstm`` TorchScript reloaded from file,
onnxruntime on our export (dynamo and TorchScript exporters), onnxruntime on
``nn.LSTM``'s own ``torch.onnx.export(dynamo=False)``, and onnxruntime on the int8
(``quantize_int8``) model.  A backend that cannot be built is recorded as ``n/a``
with the reason.

Shapes: ``stream`` (N=1, one step per call, carrying (h, c)), or a whole sequence
(N, T) per call.  Each backend: warm-up calls, then repeats; median and p10/p90.

FLOPs counted (multiply-adds x 2; gate nonlinearities and the cell update are
O(H) per step and left out)::

    per layer and direction: 2*4H*(I_l + P)*T*N  (+ 2*H*P*T*N with a projection)
    I_l = input_size for layer 0, else D*P;  P = proj_size or H;  D = directions

Peak: cores x GHz x fp32 FLOP/cycle/core read from lscpu/cpuinfo -- an estimate,
not a measurement (see :func:`machine`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .contract import LSTMConfig
from .model import LSTM

__all__ = ["Shape", "benchmark", "machine", "flops", "to_markdown", "plot", "write_results", "add_arguments", "run"]

NN = "nn.LSTM eager"
BACKENDS = [
    NN,
    "deploy_lstm eager",
    "deploy_lstm torchscript",
    "deploy_lstm torchscript (fused)",
    "ort: ours (dynamo)",
    "ort: ours (torchscript)",
    "ort: nn.LSTM export",
    "ort: ours int8",
]


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str  # "stream" or "N=.. T=.."
    batch: int  # N
    steps: int  # T: sequence length, or steps streamed one at a time
    stream: bool = False  # one call per step, carrying (h, c)


FULL_SHAPES = [Shape("stream N=1 x64", 1, 64, True), Shape("N=1 T=128", 1, 128), Shape("N=32 T=128", 32, 128), Shape("N=8 T=1024", 8, 1024)]
QUICK_SHAPES = [Shape("stream N=1 x4", 1, 4, True), Shape("N=1 T=8", 1, 8), Shape("N=4 T=8", 4, 8)]


def matrix(quick: bool) -> List[LSTMConfig]:
    """The configurations: 1 and 3 layers, uni/bidirectional, with/without projection."""
    I, H, P = (8, 16, 8) if quick else (64, 256, 128)
    return [
        LSTMConfig(I, H, num_layers=L, bidirectional=bi, proj_size=p)
        for p in (0, P) for L in (1, 3) for bi in (False, True)
    ]


def flops(cfg: LSTMConfig, N: int, T: int) -> float:
    """Multiply-add FLOPs of one forward pass (formula in the module docstring)."""
    H, P, D = cfg.hidden_size, cfg.real_hidden_size, cfg.num_directions
    total = 0.0
    for layer in range(cfg.num_layers):
        I = cfg.input_size if layer == 0 else D * P
        per_dir = 2 * 4 * H * (I + P) + (2 * H * P if cfg.proj_size else 0)
        total += D * per_dir * T * N
    return total


def machine() -> Dict[str, Any]:
    """CPU, core count, clock, an estimated fp32 peak, and library versions."""
    import onnxruntime

    info: Dict[str, str] = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
    except (OSError, subprocess.CalledProcessError):
        pass
    flags = set(info.get("Flags", "").split())
    ghz = None
    try:
        mhz = [float(ln.split(":")[1]) for ln in open("/proc/cpuinfo") if ln.startswith("cpu MHz")]
        ghz = round(max(mhz) / 1000, 3) if mhz else None
    except OSError:
        pass
    # fp32 FLOP/cycle/core = 2 (FMA) x lanes x FMA units.  AMD Zen 4 (family 25, model >= 16)
    # runs AVX-512 on two 256-bit FMA pipes: 2*8*2 = 32.  Intel server AVX-512: 2*16*2 = 64.
    zen4 = info.get("Vendor ID") == "AuthenticAMD" and info.get("CPU family") == "25"
    if "avx512f" in flags:
        per_cycle, why = (32, "AVX-512 on 2x256-bit FMA pipes (AMD Zen 4)") if zen4 else (64, "AVX-512, 2 FMA units")
    elif "fma" in flags:
        per_cycle, why = 32, "AVX2 FMA, 2 units"
    else:
        per_cycle, why = 8, "SSE, no FMA"
    cores = os.cpu_count() or 1
    return {
        "cpu": info.get("Model name", platform.processor()),
        "vendor": info.get("Vendor ID"),
        "family_model": f"{info.get('CPU family')}/{info.get('Model')}",
        "cores": cores,
        "ghz": ghz,
        "flop_per_cycle_per_core": per_cycle,
        "peak_gflops_estimate": round(cores * ghz * per_cycle, 1) if ghz else None,
        "peak_assumption": f"{cores} cores x {ghz} GHz (cpuinfo, no turbo) x {per_cycle} fp32 FLOP/cycle ({why}); an estimate",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


# --- building the backends -----------------------------------------------------------


class _NNWrapper(nn.Module):
    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, input, h0, c0):  # type: ignore[no-untyped-def]
        output, (hn, cn) = self.lstm(input, (h0, c0))
        return output, hn, cn


def _export_nn(lstm: nn.LSTM, path: Path) -> Path:
    """``nn.LSTM``'s own legacy ONNX export, with dynamic batch and sequence."""
    S, H, P = lstm.num_layers * (2 if lstm.bidirectional else 1), lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    args = (torch.zeros(5, 3, lstm.input_size), torch.zeros(S, 3, P), torch.zeros(S, 3, H))
    seq = {0: "sequence", 1: "batch"}
    axes = {"input": seq, "output": seq, "h0": {1: "batch"}, "c0": {1: "batch"}, "hn": {1: "batch"}, "cn": {1: "batch"}}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_NNWrapper(lstm).eval(), args, str(path), dynamo=False, opset_version=17,
                          input_names=["input", "h0", "c0"], output_names=["output", "hn", "cn"], dynamic_axes=axes)
    return path


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"


def _torch_fn(module: Callable, inputs: Tuple[torch.Tensor, ...], shape: Shape, native: bool) -> Callable[[], Any]:
    x, h0, c0 = inputs
    call = (lambda x, h, c: module(x, (h, c))) if native else (lambda x, h, c: module(x, (h, c), None))

    if not shape.stream:
        return lambda: call(x, h0, c0)

    def stream() -> None:
        h, c = h0, c0
        for t in range(shape.steps):
            _, (h, c) = call(x[t : t + 1], h, c)

    return stream


def _ort_fn(session: Any, inputs: Tuple[np.ndarray, ...], shape: Shape) -> Callable[[], Any]:
    x, h0, c0 = inputs
    run = session.run
    lengths = "lengths" in {i.name for i in session.get_inputs()}  # an export with lengths: full lengths
    extra = lambda T: {"lengths": np.full(x.shape[1], T, np.int64)} if lengths else {}  # noqa: E731
    if not shape.stream:
        feeds = {"input": x, "h0": h0, "c0": c0, **extra(x.shape[0])}
        return lambda: run(None, feeds)
    steps = [np.ascontiguousarray(x[t : t + 1]) for t in range(shape.steps)]
    one = extra(1)

    def stream() -> None:
        h, c = h0, c0
        for xt in steps:
            _, h, c = run(None, {"input": xt, "h0": h, "c0": c, **one})[:3]

    return stream


def build(cfg: LSTMConfig, workdir: Path, threads: int, artifacts: Optional[Dict[str, Path]] = None, log: Callable[[str], None] = print):  # type: ignore[no-untyped-def]
    """{backend: torch module | ort session | "n/a: reason"} for one configuration.

    ``artifacts`` ({"onnx": path, "ts": path}) benchmarks given files instead of exporting.
    """
    import onnxruntime as ort

    from .onnx_export import export_onnx, read_metadata
    from .quantize import quantize_int8
    from .torchscript import export_torchscript

    torch.manual_seed(0)
    ours = LSTM(**dataclasses.asdict(cfg)).eval()
    if cfg.batch_first:
        raise ValueError("the benchmark feeds time-major (T, N, F) inputs; got batch_first=True, use batch_first=False")
    if artifacts and artifacts.get("weights"):
        from safetensors.torch import load_file

        ours.load_state_dict(load_file(str(artifacts["weights"])))
    elif artifacts and artifacts.get("ts"):
        ours.load_state_dict(torch.jit.load(str(artifacts["ts"]), map_location="cpu").state_dict())
    reference = ours.to_torch().eval()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    built: Dict[str, Any] = {NN: reference, "deploy_lstm eager": ours}

    def attempt(name: str, make: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            built[name] = make()
            log(f"  built {name} in {time.perf_counter() - t0:.1f}s")
        except Exception as e:  # recorded in the results, not raised
            built[name] = f"n/a: {_reason(e)}"
            log(f"  {name}: {built[name]}")

    def session(path: Path) -> Callable[[], Any]:
        # opened just before its timing block: idle worker pools of sessions opened early
        # stalled the torch backends timed first (seconds per call, measured)
        return lambda: ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    def ts(fused: bool) -> Any:
        if artifacts and artifacts.get("ts"):  # an export folder: its model.ts, whichever it is
            if fused:
                return "n/a: an export folder holds one model.ts (timed as deploy_lstm torchscript)"
            path = artifacts["ts"]
        else:
            path = export_torchscript(ours, workdir / f"model-{'fused' if fused else 'loop'}.ts", fused=fused)
        return torch.jit.load(str(path), map_location="cpu").eval()

    attempt("deploy_lstm torchscript", lambda: ts(False))  # the static loop
    attempt("deploy_lstm torchscript (fused)", lambda: ts(True))  # aten::lstm inside TorchScript
    onnx_paths: Dict[str, Path] = {}
    if artifacts and artifacts.get("onnx"):
        exporter = read_metadata(artifacts["onnx"]).get("deploy_lstm.exporter", "dynamo")
        onnx_paths[exporter] = Path(artifacts["onnx"])
    for exporter in ("dynamo", "torchscript"):
        name = f"ort: ours ({exporter})"
        if artifacts and artifacts.get("onnx") and exporter not in onnx_paths:
            built[name] = "n/a: not in the export folder"
            continue

        def ours_session(exporter: str = exporter) -> Any:
            if exporter not in onnx_paths:
                onnx_paths[exporter] = export_onnx(ours, workdir / f"{exporter}.onnx", exporter=exporter)
            return session(onnx_paths[exporter])

        attempt(name, ours_session)
    attempt("ort: nn.LSTM export", lambda: session(_export_nn(reference, workdir / "nn_lstm.onnx")))
    src = next(iter(onnx_paths.values()), None)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" warning
    try:
        attempt("ort: ours int8", lambda: session(quantize_int8(src, workdir / "int8.onnx")) if src else "n/a: no ONNX export")
    finally:
        root.setLevel(level)
    return built


# --- timing --------------------------------------------------------------------------


def _time(fn: Callable[[], Any], warmup: int, repeats: int, budget_s: float) -> Dict[str, Any]:
    for _ in range(warmup):
        fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = np.percentile(times, [10, 25, 75, 90])
    return {"median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[3], "iqr_ms": q[2] - q[1], "repeats": len(times)}


def benchmark(
    configs: Sequence[LSTMConfig],
    shapes: Sequence[Shape],
    *,
    threads: Optional[int] = None,
    warmup: int = 3,
    repeats: int = 15,
    budget_s: float = 3.0,
    artifacts: Optional[Dict[str, Path]] = None,
    log: Callable[[str], None] = print,
    checkpoint: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    """Time every backend on every (configuration, shape); returns the results as a dict.

    Args:
        threads: torch.set_num_threads and onnxruntime intra_op_num_threads (default: all cores).
        warmup: untimed calls first (TorchScript's profiling executor optimizes after 2).
        repeats: timed calls at most; fewer (at least 3) once ``budget_s`` is spent.
        checkpoint: called with the results so far after each configuration.
    """
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    info = machine()
    peak = info["peak_gflops_estimate"]
    cases: List[Dict[str, Any]] = []
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploy-lstm-bench-") as tmp, torch.inference_mode():
        for k, cfg in enumerate(configs):
            log(f"[{k + 1}/{len(configs)}] {_cfg_name(cfg)}")
            workdir = Path(tmp) / str(k)
            workdir.mkdir()
            with torch.inference_mode(False):
                built = build(cfg, workdir, threads, artifacts, log)
            gc.collect()
            time.sleep(0.5)  # let the exporters' threads go idle before timing
            data = []
            for shape in shapes:
                N, T = shape.batch, shape.steps
                x = rng.standard_normal((T, N, cfg.input_size)).astype(np.float32)
                h0 = rng.standard_normal((cfg.num_states, N, cfg.real_hidden_size)).astype(np.float32)
                c0 = rng.standard_normal((cfg.num_states, N, cfg.hidden_size)).astype(np.float32)
                data.append(((x, h0, c0), tuple(torch.from_numpy(a) for a in (x, h0, c0))))
            results: List[Dict[str, Any]] = [{} for _ in shapes]
            # backend by backend, each over every shape; an onnxruntime session is closed after
            # its block, so its idle (spinning) workers never share the cores with another backend
            for name in BACKENDS:
                b = built.pop(name, "n/a: not built")
                if name.startswith("ort") and not isinstance(b, str):
                    try:
                        b = b()
                    except Exception as e:  # e.g. onnxruntime rejects the graph
                        b = f"n/a: {_reason(e)}"
                for shape, (arrays, tensors), res in zip(shapes, data, results):
                    if isinstance(b, str):
                        res[name] = {"na": b[5:] if b.startswith("n/a: ") else b}
                        continue
                    if name.startswith("ort"):
                        fn = _ort_fn(b, arrays, shape)
                    else:
                        fn = _torch_fn(b, tensors, shape, native=name == NN)
                    try:
                        r = _time(fn, warmup, repeats, budget_s)
                    except Exception as e:
                        res[name] = {"na": _reason(e)}
                        continue
                    gflop = flops(cfg, shape.batch, shape.steps) / 1e9
                    r["gflops"] = gflop / (r["median_ms"] / 1e3)
                    r["peak_fraction"] = r["gflops"] / peak if peak else None
                    res[name] = r
                b = fn = None  # noqa: F841 (drop the session before the next backend)
                gc.collect()
            for shape, res in zip(shapes, results):
                base = res[NN].get("median_ms")
                for r in res.values():
                    if "median_ms" in r and base:
                        r["ratio_vs_nn"] = r["median_ms"] / base
                cases.append({"config": _cfg_name(cfg), "config_dict": dataclasses.asdict(cfg), "shape": shape.name,
                              "batch": shape.batch, "steps": shape.steps, "stream": shape.stream,
                              "gflop": flops(cfg, shape.batch, shape.steps) / 1e9, "results": res})
                log(f"  {shape.name}: " + ", ".join(f"{n}={r['median_ms']:.2f}ms" for n, r in res.items() if "median_ms" in r))
            if checkpoint is not None:
                checkpoint(_results(info, threads, warmup, repeats, budget_s, t_start, cases, len(configs)))
    return _results(info, threads, warmup, repeats, budget_s, t_start, cases, len(configs))


def _results(info, threads, warmup, repeats, budget_s, t_start, cases, n_configs):  # type: ignore[no-untyped-def]
    settings = {"threads": threads, "warmup": warmup, "repeats": repeats, "budget_s": budget_s,
                "wall_s": round(time.perf_counter() - t_start, 1), "configs_done": len({c["config"] for c in cases}),
                "configs": n_configs}
    return {"machine": info, "settings": settings, "flop_formula": __doc__.split("FLOPs counted")[1].split("Peak:")[0].strip(),
            "backends": BACKENDS, "cases": cases, "targets": targets(cases), "targets_p10": targets(cases, "p10_ms")}


def _cfg_name(cfg: LSTMConfig) -> str:
    s = f"L{cfg.num_layers} {'bi' if cfg.bidirectional else 'uni'} H{cfg.hidden_size}"
    return s + (f" P{cfg.proj_size}" if cfg.proj_size else "")


# --- targets, reports ----------------------------------------------------------------


def targets(cases: Sequence[Dict[str, Any]], stat: str = "median_ms") -> List[Dict[str, Any]]:
    """Each issue #6 target checked on every case it applies to (same-run ratios of ``stat``)."""
    out: List[Dict[str, Any]] = []

    def check(target: str, case: Dict[str, Any], num: str, den: str, limit: float, invert: bool = False) -> None:
        a, b = case["results"].get(num, {}), case["results"].get(den, {})
        if stat not in a or stat not in b:
            return
        ratio = b[stat] / a[stat] if invert else a[stat] / b[stat]
        met = ratio >= limit if invert else ratio <= limit
        out.append({"target": target, "case": f"{case['config']} | {case['shape']}", "ratio": ratio, "limit": limit, "met": met})

    for c in cases:
        proj = c["config_dict"]["proj_size"] > 0
        for ex in ("dynamo", "torchscript"):
            ours = f"ort: ours ({ex})"
            if proj:
                check(f"{ours} <= 1.3x nn.LSTM eager (projection)", c, ours, NN, 1.3)
            else:
                check(f"{ours} <= 1.0x nn.LSTM eager", c, ours, NN, 1.0)
                check(f"{ours} <= 1.05x ort: nn.LSTM export", c, ours, "ort: nn.LSTM export", 1.05)
        for ts in ("deploy_lstm torchscript", "deploy_lstm torchscript (fused)"):
            label = "torchscript" + (" (fused)" if "fused" in ts else " (loop)")
            if c["batch"] == 1:
                check(f"{label} <= 1.5x nn.LSTM eager at N=1", c, ts, NN, 1.5)
            if c["batch"] == 32:
                check(f"{label} <= 1.2x nn.LSTM eager at N=32", c, ts, NN, 1.2)
        if c["batch"] == 32:
            check("int8 >= 1.5x faster than fp32 ort (dynamo) at N=32", c, "ort: ours int8", "ort: ours (dynamo)", 1.5, invert=True)
    return out


def to_markdown(res: Dict[str, Any]) -> str:
    m, s = res["machine"], res["settings"]
    lines = [
        "# deploy-lstm benchmark", "",
        f"Machine: {m['cpu']} ({m['vendor']} family/model {m['family_model']}), {m['cores']} cores @ {m['ghz']} GHz; "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, Python {m['python']}.",
        f"Threads: {s['threads']} (torch and onnxruntime intra-op); warm-up {s['warmup']}, up to {s['repeats']} repeats "
        f"(at least 3; fewer once {s['budget_s']} s are spent per backend and case); wall time {s['wall_s']} s.",
        f"Configurations measured: {s.get('configs_done', '?')}/{s.get('configs', '?')} (mode: {s.get('mode', '?')}).",
        f"Peak estimate: {m['peak_gflops_estimate']} GFLOP/s = {m['peak_assumption']}.", "",
        "Cells: median ms (ratio to nn.LSTM eager) [p10-p90 ms]. `stream` = one call per step carrying (h, c), "
        "time for all steps. GFLOP/s and % of peak for the fastest backend.", "",
    ]
    names = [n for n in res["backends"]]
    lines.append("| config | shape | " + " | ".join(names) + " | best GFLOP/s (% peak) |")
    lines.append("|---|---|" + "---|" * (len(names) + 1))
    for c in res["cases"]:
        cells = []
        for n in names:
            r = c["results"].get(n, {"na": "?"})
            cells.append(f"n/a ({r['na'][:40]})" if "na" in r else
                         f"{r['median_ms']:.2f} ({r.get('ratio_vs_nn', float('nan')):.2f}x) [{r['p10_ms']:.2f}-{r['p90_ms']:.2f}]")
        timed = [r for r in c["results"].values() if "gflops" in r]
        best = max(timed, key=lambda r: r["gflops"]) if timed else None
        peak = f" ({100 * best['peak_fraction']:.0f}%)" if best and best.get("peak_fraction") else ""
        lines.append(f"| {c['config']} | {c['shape']} | " + " | ".join(cells) + f" | {best['gflops']:.1f}{peak} |" if best else " | - |")
    for key, title in (("targets", "medians"), ("targets_p10", "p10, less sensitive to interference")):
        lines += ["", f"## Targets (same-run ratios of {title})", "",
                  "| target | met | worst case | worst ratio | limit |", "|---|---|---|---|---|"]
        by: Dict[str, List[Dict[str, Any]]] = {}
        for t in res.get(key, []):
            by.setdefault(t["target"], []).append(t)
        for name, ts in by.items():
            inv = name.startswith("int8")
            worst = min(ts, key=lambda t: t["ratio"]) if inv else max(ts, key=lambda t: t["ratio"])
            met = sum(t["met"] for t in ts)
            lines.append(f"| {name} | {met}/{len(ts)} {'MET' if met == len(ts) else 'MISSED'} | {worst['case']} "
                         f"| {worst['ratio']:.2f}x | {worst['limit']}x |")
    lines += ["", "FLOPs: " + res["flop_formula"].replace("\n", " ").replace("::", ":")]
    return "\n".join(lines) + "\n"


def plot(res: Dict[str, Any], path: Path) -> Optional[Path]:
    """Horizontal grouped bars: median latency per backend per case (log scale); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cases, names = res["cases"], res["backends"]
    fig, ax = plt.subplots(figsize=(11, 0.9 + 0.55 * len(cases)))
    width = 0.8 / len(names)
    for j, n in enumerate(names):
        ys = [i + j * width for i in range(len(cases))]
        xs = [c["results"].get(n, {}).get("median_ms", 0) for c in cases]
        ax.barh(ys, xs, height=width, label=n)
    ax.set_yticks([i + 0.4 - width / 2 for i in range(len(cases))])
    ax.set_yticklabels([f"{c['config']} | {c['shape']}" for c in cases], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log); missing bar = n/a")
    ax.set_title(f"deploy-lstm, {res['machine']['cpu']}, {res['settings']['threads']} threads", pad=48)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=4)  # above the bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(res: Dict[str, Any], out: Path, stem: str = "results") -> Dict[str, Optional[Path]]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` in ``out``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, Optional[Path]] = {}
    for ext, text in (("json", json.dumps(res, indent=1, default=float)), ("md", to_markdown(res))):
        p = out / f"{stem}.{ext}"
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)
        paths[ext] = p
    png = out / f"{stem}.png"
    tmp = out / f".{stem}.tmp.png"
    paths["png"] = plot(res, tmp)
    if paths["png"]:
        os.replace(tmp, png)
        paths["png"] = png
    return paths


# --- command line --------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``deploy-lstm bench`` (and ``benchmarks/run.py``)."""
    parser.add_argument("dir", nargs="?", type=Path, help="an export folder (model.onnx, model.ts, config.json) to benchmark")
    parser.add_argument("--config", help="one LSTM configuration: JSON or key=value,... (e.g. input_size=64,hidden_size=256)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few repeats")
    mode.add_argument("--full", action="store_true", help="the full matrix (default when neither is given)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for results.{json,md,png}")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: all cores)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per backend and case (max)")


def _parse_config(text: str) -> LSTMConfig:
    text = text.strip()
    if text.startswith("{"):
        return LSTMConfig.from_dict(json.loads(text))
    d: Dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.replace(" ", ",").split(","))):
        k, sep, v = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value in --config, got {item!r}")
        d[k] = json.loads(v.lower()) if v.lower() in ("true", "false") else (float(v) if "." in v else int(v))
    return LSTMConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the arguments describe and write the results; returns an exit code."""
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    artifacts = None
    if args.dir is not None:
        cfg_path = args.dir / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"expected an export folder with config.json, got {args.dir}")
        d = json.loads(cfg_path.read_text())
        if d.get("kind", "lstm") != "lstm":
            raise ValueError(f"expected an export of a bare LSTM (config.json kind 'lstm'), got kind {d.get('kind')!r}")
        configs = [LSTMConfig.from_dict(d.get("lstm", d))]
        names = (("onnx", "model.onnx"), ("ts", "model.ts"), ("weights", "weights.safetensors"))
        artifacts = {k: args.dir / f for k, f in names if (args.dir / f).is_file()}
    elif args.config:
        configs = [_parse_config(args.config)]
    else:
        configs = matrix(args.quick)
    repeats = args.repeats or (3 if args.quick else 7)
    mode = "quick" if args.quick else "full"

    def save(res: Dict[str, Any]) -> Dict[str, Optional[Path]]:
        res["settings"]["mode"] = mode
        return write_results(res, args.out)

    res = benchmark(configs, shapes, threads=args.threads, warmup=1 if args.quick else 2, repeats=repeats,
                    budget_s=0.5 if args.quick else 1.0, artifacts=artifacts, checkpoint=save)
    paths = save(res)
    print(to_markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths.values() if p))
    return 0
