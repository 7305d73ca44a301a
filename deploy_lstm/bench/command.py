"""Benchmarks: every backend on the same weights, inputs and thread count, in one process.

Backends per LSTM configuration: ``torch.nn.LSTM`` eager (the baseline of every
ratio), ``deploy_lstm`` eager, ``deploy_lstm`` TorchScript reloaded from file (the
static loop and ``fused=True``), onnxruntime on our export (dynamo and TorchScript
exporters), onnxruntime on ``nn.LSTM``'s own ``torch.onnx.export(dynamo=False)``,
and onnxruntime on the int8 (``quantize_int8``) model.  A backend that cannot be
built or run is recorded as data (:class:`Unavailable`: backend, reason, stage).

Shapes: ``stream`` (one step per call, carrying (h, c)), or a whole sequence (N, T)
per call.

How it times (a 2-core machine shares its cores between runtimes; see :func:`benchmark`):
for each (configuration, shape), warm-up calls, then rounds; in each round every
backend in turn sleeps briefly (so the previous runtime's spinning worker threads go
idle) and runs a timed block of calls.  Median and p10/p90 are over every call of
every round.  GFLOP/s are reported against a measured reference: the best of a large
float32 ``torch.mm`` and of the fastest float32 backend (:data:`FLOP_FORMULA` gives
the count).
The CPU other processes used while each case was timed is recorded (from
``/proc/stat``), so a perturbed run shows itself.

The project's own targets and verdicts are not here: ``benchmarks/targets.py``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from deploy_lstm.formats.contract import LENGTHS
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.errors import ConfigError
from deploy_lstm.nn.swap import restore_lstms
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.exporters.signature import signature
from deploy_lstm.formats.folder import ExportFolder, load
from deploy_lstm.runtime.aoti import AotiPackage
from deploy_lstm.runtime.onnx import OnnxLSTM
from deploy_lstm.check.validate import TorchLSTMGraph, artifact_runner, inputs_at, module_runner
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.bench import recommend
from deploy_lstm.bench.memory import measure_memory, memory_markdown
from deploy_lstm.bench.backends import (
    BACKENDS,
    EAGER,
    NN,
    NOT_FLOAT32,
    ORT_DYNAMO,
    ORT_INT8,
    ORT_NN,
    ORT_TS,
    TS_FUSED,
    TS_LOOP,
    TS_USER,
    AOTI,
    ARTIFACT_OF,
    Runner,
    Shape,
    Sources,
    build_backends,
    export_nn_lstm,
    make_inputs,
)
from deploy_lstm.bench.report import (
    Unavailable,
    config_name,
    model_markdown,
    plot,
    to_markdown,
    write_model_results,
    write_results,
)

__all__ = [
    "Shape",
    "Unavailable",
    "BACKENDS",
    "NN",
    "EAGER",
    "TS_LOOP",
    "TS_FUSED",
    "TS_USER",
    "AOTI",
    "ORT_DYNAMO",
    "ORT_TS",
    "ORT_NN",
    "ORT_INT8",
    "FLOP_FORMULA",
    "NOT_FLOAT32",
    "matrix",
    "flops",
    "machine",
    "sgemm_reference",
    "export_nn_lstm",
    "benchmark",
    "benchmark_model",
    "model_markdown",
    "write_model_results",
    "MODEL_CASES",
    "ARTIFACT_LABELS",
    "parse_config",
    "measure",
    "to_markdown",
    "plot",
    "write_results",
    "add_arguments",
    "run",
]

#: what :func:`flops` counts
FLOP_FORMULA = (
    "multiply-adds x 2; gate nonlinearities and the cell update are O(H) per step and left out. "
    "Per layer and direction: 2*4H*(I_l + P)*T*N (+ 2*H*P*T*N with a projection), "
    "I_l = input_size for layer 0, else D*P; P = proj_size or H; D = directions."
)

#: the reference GEMM: (n x n) @ (n x n) float32
SGEMM_N = 2048


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
    """Multiply-add FLOPs of one forward pass (see :data:`FLOP_FORMULA`)."""
    H, P, D = cfg.hidden_size, cfg.real_hidden_size, cfg.num_directions
    total = 0.0
    for layer in range(cfg.num_layers):
        I = cfg.input_size if layer == 0 else D * P
        per_dir = 2 * 4 * H * (I + P) + (2 * H * P if cfg.proj_size else 0)
        total += D * per_dir * T * N
    return total


def machine() -> Dict[str, Any]:
    """CPU model (from lscpu), core count and library versions."""
    info: Dict[str, str] = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": info.get("Model name") or platform.processor() or "unknown",
        "vendor": info.get("Vendor ID"),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }


def sgemm_reference(n: int = SGEMM_N, calls: int = 5, pause_s: float = 0.05) -> Dict[str, Any]:
    """GFLOP/s of an (n x n) @ (n x n) float32 ``torch.mm`` at torch's current thread count.

    The best of ``calls`` timed calls (after two untimed ones): what this machine's
    BLAS reaches on a large GEMM, one half of the measured reference.
    """
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    with torch.inference_mode():
        for _ in range(2):
            torch.mm(a, b)
        time.sleep(pause_s)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
    return {"n": n, "threads": torch.get_num_threads(), "gflops": 2 * n**3 / min(times) / 1e9, "calls": calls}


# --- timing --------------------------------------------------------------------------


def _cpu_probe() -> Optional[Tuple[float, float, float, float]]:
    """(wall s, machine busy CPU s, steal s, this process's CPU s) now; None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return time.perf_counter(), (user + nice + system + irq + softirq) / tick, steal / tick, time.process_time()


def _foreign_cpu(before: Optional[Tuple[float, ...]], after: Optional[Tuple[float, ...]]) -> Optional[Dict[str, float]]:
    """CPU other processes used between two probes, as seconds and as a share of all cores."""
    if before is None or after is None:
        return None
    wall, busy, steal, own = (a - b for a, b in zip(after, before))
    capacity = max(wall, 1e-9) * (os.cpu_count() or 1)
    other = max(0.0, busy - own)
    return {"wall_s": wall, "other_cpu_s": other, "other_share": other / capacity, "steal_share": steal / capacity}


def _stats(times_ms: List[float]) -> Dict[str, float]:
    p10, p25, p75, p90 = np.percentile(times_ms, [10, 25, 75, 90])
    return {"median_ms": statistics.median(times_ms), "p10_ms": float(p10), "p90_ms": float(p90), "iqr_ms": float(p75 - p25)}


def _measure_case(
    runners: Dict[str, Runner], *, rounds: int, warmup: int, block_s: float, max_calls: int, pause_s: float
) -> Dict[str, Union[Dict[str, Any], Unavailable]]:
    """Time every runner on one (configuration, shape), interleaved.

    Warm-up: ``warmup`` untimed calls per runner, then one timed call that sizes its
    block.  Then ``rounds`` rounds; in each, every runner in turn (the order rotated
    by one each round) sleeps ``pause_s`` and runs a block of individually timed calls
    lasting about ``block_s`` (1..``max_calls`` calls).
    """
    out: Dict[str, Union[Dict[str, Any], Unavailable]] = {}
    calls: Dict[str, int] = {}
    samples: Dict[str, List[float]] = {}
    per_round: Dict[str, List[float]] = {}
    for name, fn in runners.items():
        try:
            time.sleep(pause_s)
            for _ in range(warmup):
                fn()
            t0 = time.perf_counter()
            fn()
            est = time.perf_counter() - t0
        except Exception as e:  # e.g. onnxruntime rejects the inputs
            out[name] = Unavailable.of(name, e, stage="run")
            continue
        calls[name] = max(1, min(max_calls, math.ceil(block_s / max(est, 1e-6))))
        samples[name], per_round[name] = [], []
    order = list(calls)
    for r in range(rounds):
        k = r % len(order) if order else 0
        for name in order[k:] + order[:k]:
            if name in out:
                continue
            fn, block = runners[name], []
            time.sleep(pause_s)  # let the previous runtime's worker threads go idle
            try:
                for _ in range(calls[name]):
                    t0 = time.perf_counter()
                    fn()
                    block.append((time.perf_counter() - t0) * 1e3)
            except Exception as e:
                out[name] = Unavailable.of(name, e, stage="run")
                continue
            samples[name] += block
            per_round[name].append(statistics.median(block))
    for name in order:
        if name not in out:
            out[name] = {**_stats(samples[name]), "rounds": len(per_round[name]), "calls_per_round": calls[name],
                         "samples": len(samples[name]), "round_medians_ms": per_round[name]}
    return out


def benchmark(
    configs: Sequence[LSTMConfig],
    shapes: Sequence[Shape],
    *,
    threads: Optional[int] = None,
    rounds: int = 7,
    warmup: int = 2,
    block_ms: float = 40.0,
    max_calls: int = 50,
    pause_ms: float = 50.0,
    retries: int = 2,
    max_interference: float = 0.05,
    retry_wait_s: float = 5.0,
    sources: Optional[Sources] = None,
    log: Callable[[str], None] = print,
    checkpoint: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    """Time every backend on every (configuration, shape); returns the results as a dict.

    Per configuration the backends are built (exports, TorchScript loads, onnxruntime
    sessions), every shape is timed in interleaved rounds, and the sessions are closed.

    Args:
        threads: torch.set_num_threads and onnxruntime intra_op_num_threads (default:
            all cores); torch's setting is restored afterwards.
        rounds: rounds per (configuration, shape); every backend runs one block per round.
        warmup: untimed calls per backend and shape first (TorchScript's profiling
            executor optimizes after 2).
        block_ms: a block repeats calls until about this long (at most ``max_calls``).
        pause_ms: idle time before each timed block, so the previous runtime's spinning
            worker threads do not compete for the cores.
        retries, max_interference, retry_wait_s: a (configuration, shape) during which
            other processes used more than ``max_interference`` of the CPU (from
            ``/proc/stat``) is measured again, up to ``retries`` times after
            ``retry_wait_s``; the least disturbed attempt is kept.
        log: progress lines.
        checkpoint: called with the results so far after each configuration.

    Returns:
        ``{"machine", "settings", "reference", "flop_formula", "backends", "cases"}``;
        each case's ``results`` maps every backend to its timing
        (``median_ms``, ``p10_ms``, ``p90_ms``, ``ratio_vs_nn``, ``gflops``,
        ``reference_fraction``, ...) or to an :class:`Unavailable` as a dict.
    """
    if retries < 0 or not 0 <= max_interference <= 1:
        raise ConfigError(f"expected retries >= 0 and 0 <= max_interference <= 1; got {retries}, {max_interference}")
    if rounds < 1 or warmup < 0 or max_calls < 1 or block_ms < 0 or pause_ms < 0:
        raise ConfigError(
            f"expected rounds >= 1, warmup >= 0, max_calls >= 1, block_ms >= 0, pause_ms >= 0; got rounds={rounds}, "
            f"warmup={warmup}, max_calls={max_calls}, block_ms={block_ms}, pause_ms={pause_ms}"
        )
    threads = threads or os.cpu_count() or 1
    if threads < 1:
        raise ConfigError(f"expected threads >= 1, got {threads}")
    sources = sources or Sources()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    settings = {"threads": threads, "rounds": rounds, "warmup": warmup, "block_ms": block_ms, "max_calls": max_calls,
                "pause_ms": pause_ms, "retries": retries, "max_interference": max_interference, "configs": len(configs), "shapes": [s.name for s in shapes],
                "folder": str(sources.folder) if sources.folder else None}
    info = machine()
    cases: List[Dict[str, Any]] = []
    graphs: Dict[str, Any] = {}
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    pause_s = pause_ms / 1e3
    try:
        sgemm = [sgemm_reference(pause_s=pause_s)]
        log(f"reference: {SGEMM_N}x{SGEMM_N} float32 torch.mm at {sgemm[0]['gflops']:.1f} GFLOP/s ({threads} threads)")

        def results() -> Dict[str, Any]:
            return _results(info, {**settings, "wall_s": round(time.perf_counter() - t_start, 1)}, sgemm, cases, graphs)

        with tempfile.TemporaryDirectory(prefix="deploy-lstm-bench-") as tmp:
            for k, cfg in enumerate(configs):
                log(f"[{k + 1}/{len(configs)}] {config_name(cfg)}")
                workdir = Path(tmp) / str(k)
                workdir.mkdir()
                cases += _run_config(cfg, shapes, workdir, threads, sources, rng, graphs, log, retries=retries,
                                     max_interference=max_interference, retry_wait_s=retry_wait_s, rounds=rounds,
                                     warmup=warmup, block_s=block_ms / 1e3, max_calls=max_calls, pause_s=pause_s)
                gc.collect()  # this configuration's onnxruntime sessions are gone with _run_config's frame
                if checkpoint is not None:
                    checkpoint(results())
        sgemm.append(sgemm_reference(pause_s=pause_s))
        return results()
    finally:
        torch.set_num_threads(previous_threads)


def _run_config(
    cfg: LSTMConfig, shapes: Sequence[Shape], workdir: Path, threads: int, sources: Sources, rng: np.random.Generator,
    graphs: Dict[str, Any], log: Callable[[str], None], *, retries: int, max_interference: float, retry_wait_s: float,
    **timing: Any,
) -> List[Dict[str, Any]]:
    """Build one configuration's backends, time every shape, and let the sessions go.

    A shape during which other processes used more than ``max_interference`` of the
    CPU is measured again (up to ``retries`` times, after ``retry_wait_s``); the least
    disturbed attempt is kept and every attempt's share recorded.
    """
    built, graphs[config_name(cfg)], int8_accuracy = build_backends(cfg, workdir, threads, sources, log)
    cases = []
    with torch.inference_mode():
        for shape in shapes:
            inp = make_inputs(cfg, shape, rng)
            res: Dict[str, Union[Dict[str, Any], Unavailable]] = {}
            runners: Dict[str, Runner] = {}
            for name in BACKENDS:
                b = built.get(name, Unavailable(name, "not built"))
                if isinstance(b, Unavailable):
                    res[name] = b
                else:
                    runners[name] = b(inp)
            attempts: List[Tuple[float, Dict[str, Any], Optional[Dict[str, float]]]] = []
            for attempt in range(1 + retries):
                if attempt:
                    log(f"  {shape.name}: other processes used {attempts[-1][0]:.0%} of the CPU; measuring again in {retry_wait_s:g} s")
                    time.sleep(retry_wait_s)
                before = _cpu_probe()
                measured = _measure_case(runners, **timing)
                interference = _foreign_cpu(before, _cpu_probe())
                attempts.append((interference["other_share"] if interference else 0.0, measured, interference))
                if interference is None or interference["other_share"] <= max_interference:
                    break
            _, measured, interference = min(attempts, key=lambda a: a[0])
            res.update(measured)
            cases.append(_case(cfg, shape, {n: res[n] for n in BACKENDS}))
            if int8_accuracy is not None:
                cases[-1]["int8_error"] = int8_accuracy
            cases[-1]["interference"] = interference and {**interference, "attempts": [round(a[0], 4) for a in attempts]}
            log(f"  {shape.name}: " + ", ".join(f"{n}={r['median_ms']:.2f}ms" for n, r in cases[-1]["results"].items() if "median_ms" in r))
    return cases


def _case(cfg: LSTMConfig, shape: Shape, res: Dict[str, Union[Dict[str, Any], Unavailable]]) -> Dict[str, Any]:
    gflop = flops(cfg, shape.batch, shape.steps) / 1e9
    results: Dict[str, Dict[str, Any]] = {}
    base = res[NN]
    for name, r in res.items():
        if isinstance(r, Unavailable):
            results[name] = r.to_dict()
            continue
        r = dict(r, gflops=gflop / (r["median_ms"] / 1e3))
        if not isinstance(base, Unavailable):
            r["ratio_vs_nn"] = r["median_ms"] / base["median_ms"]
        results[name] = r
    return {"config": config_name(cfg), "config_dict": dataclasses.asdict(cfg), "shape": shape.name, "batch": shape.batch,
            "steps": shape.steps, "stream": shape.stream, "gflop": gflop, "results": results}


def _results(info: Dict[str, Any], settings: Dict[str, Any], sgemm: List[Dict[str, Any]], cases: List[Dict[str, Any]],
             graphs: Dict[str, Any]) -> Dict[str, Any]:
    """The results dict, with the measured reference and every timing's fraction of it."""
    gemm = max(sgemm, key=lambda s: s["gflops"])
    timed = [(r["gflops"], n, c) for c in cases for n, r in c["results"].items() if "gflops" in r and n not in NOT_FLOAT32]
    best = max(timed, key=lambda t: t[0], default=None)
    ref = max(gemm["gflops"], best[0] if best else 0.0)
    for c in cases:
        for n, r in c["results"].items():
            if "gflops" in r:
                r["reference_fraction"] = None if n in NOT_FLOAT32 else r["gflops"] / ref
    reference = {
        "gflops": ref,
        "source": "sgemm" if best is None or gemm["gflops"] >= best[0] else "backend",
        "sgemm": {**gemm, "runs_gflops": [s["gflops"] for s in sgemm]},
        "fastest_backend": {"gflops": best[0], "backend": best[1], "case": f"{best[2]['config']} | {best[2]['shape']}"} if best else None,
    }
    seen = [c["interference"] for c in cases if c.get("interference")]
    capacity = sum(i["wall_s"] for i in seen)
    interference = None
    if seen:
        worst = max((c for c in cases if c.get("interference")), key=lambda c: c["interference"]["other_share"])
        interference = {
            "other_share": sum(i["other_share"] * i["wall_s"] for i in seen) / max(capacity, 1e-9),
            "steal_share": sum(i["steal_share"] * i["wall_s"] for i in seen) / max(capacity, 1e-9),
            "worst_share": worst["interference"]["other_share"],
            "worst_case": f"{worst['config']} | {worst['shape']}",
            "cases_over_limit": sum(i["other_share"] > settings["max_interference"] for i in seen),
            "cases_retried": sum(len(i.get("attempts", ())) > 1 for i in seen),
        }
    settings = {**settings, "configs_done": len({c["config"] for c in cases}), "interference": interference}
    return {"machine": info, "settings": settings, "reference": reference, "flop_formula": FLOP_FORMULA,
            "backends": list(BACKENDS), "graphs": graphs, "cases": cases}


# --- command line --------------------------------------------------------------------

_FIELD_TYPES: Dict[str, Any] = typing.get_type_hints(LSTMConfig)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_config(text: str) -> LSTMConfig:
    """``--config``: JSON (``{"input_size": 64, ...}``) or ``key=value,...`` in ``nn.LSTM``'s names.

    Raises:
        ConfigError: not key=value, an unknown or repeated key, a value of the wrong
            type, or a configuration ``nn.LSTM`` refuses.
    """
    example = "e.g. --config input_size=64,hidden_size=256,num_layers=2,bidirectional=true"
    text = text.strip()
    if not text:
        raise ConfigError(f"--config is empty; {example}")
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--config is not valid JSON ({e}); {example}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"--config JSON must be an object, got {type(d).__name__}")
    else:
        d = {}
        for item in filter(None, (s.strip() for s in text.replace(" ", ",").split(","))):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise ConfigError(f"--config: expected key=value, got {item!r}; {example}")
            if key in d:
                raise ConfigError(f"--config: {key} is given twice")
            d[key] = _parse_value(key, value) if key in _FIELD_TYPES else value
    cfg = LSTMConfig.from_dict(d)  # ConfigError naming unknown or missing keys
    for key, want in _FIELD_TYPES.items():
        if not _type_ok(getattr(cfg, key), want):
            raise ConfigError(f"--config: {key} must be {want.__name__}, got {getattr(cfg, key)!r}")
    try:
        LSTM(**dataclasses.asdict(cfg), device="meta")  # nn.LSTM's own checks, no memory
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--config: {e}") from None
    return cfg


def _type_ok(value: Any, want: type) -> bool:
    if want is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # bool is an int subclass; True is not a size
        return False
    return isinstance(value, (int, float)) if want is float else isinstance(value, want)


def _parse_value(key: str, value: str) -> Any:
    want = _FIELD_TYPES[key]
    if want is bool:
        if value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"--config: {key} expects true or false, got {value!r}")
    try:
        return want(value)
    except ValueError:
        raise ConfigError(f"--config: {key} expects {'an integer' if want is int else 'a number'}, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``deploy-lstm bench`` (and ``benchmarks/run.py``)."""
    parser.add_argument("dir", nargs="?", type=Path, help="an export folder (from 'deploy-lstm export' of a bare LSTM) to benchmark")
    parser.add_argument("--config", help="one LSTM configuration: key=value,... (e.g. input_size=64,hidden_size=256) or JSON")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few rounds")
    mode.add_argument("--full", action="store_true", help="the full matrix (default when neither is given)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for results.{json,md,png}")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: all cores)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per configuration and shape (default 7; --quick 3)")
    parser.add_argument("--allow-int8", action="store_true",
                        help="let the int8 model be recommended (by default only artifacts exact to float32 tolerance are)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the memory measurements of an export folder (a fresh process per artifact: about 5 s each)")
    parser.add_argument("--no-record", dest="record", action="store_false",
                        help="do not record the recommendation in the export folder")
    parser.add_argument("--retries", type=int, default=None,
                        help="measure a case again when other processes used over 5%% of the CPU meanwhile (default 2; --quick 0)")


def _folder_sources(path: Path) -> Tuple[LSTMConfig, Sources]:
    folder = load(path)
    cfg = folder.config
    if cfg is None:
        raise ConfigError(f"deploy-lstm bench needs the export of a bare LSTM; {path} holds a whole model")
    weights = folder.state_dict()
    odd = sorted({str(t.dtype).replace("torch.", "") for t in weights.values()} - {"float32"})
    if odd:
        raise ConfigError(f"deploy-lstm bench times float32 models; the weights in {path} are {', '.join(odd)}")
    sources = Sources(weights=weights, folder=path)
    if folder.has("onnx"):
        sources.onnx = (folder.artifacts["onnx"].details.get("exporter", "dynamo"), folder.file("onnx"))
    if folder.has("torchscript"):
        sources.torchscript = (bool(folder.artifacts["torchscript"].details.get("fused", False)), folder.file("torchscript"))
    if folder.has("onnx-int8"):
        sources.int8 = folder.file("onnx-int8")
    if folder.has("aoti"):
        sources.aoti = folder.file("aoti")
    return cfg, sources


def measure(args: argparse.Namespace, checkpoint: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Run the benchmark the parsed arguments describe; returns the results.

    Raises:
        ConfigError: bad ``--config``, ``--threads`` or ``--rounds``, or a folder that is
            not a bare LSTM export; ArtifactError: an unreadable export folder.
    """
    if args.dir is not None and args.config:
        raise ConfigError("give an export folder or --config, not both")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {args.rounds}")
    if args.retries is not None and args.retries < 0:
        raise ConfigError(f"--retries must be at least 0, got {args.retries}")
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    sources = None
    if args.dir is not None:
        cfg, sources = _folder_sources(args.dir)
        configs = [cfg]
    elif args.config:
        configs = [parse_config(args.config)]
    else:
        configs = matrix(args.quick)
    mode = "quick" if args.quick else "full"

    def save(res: Dict[str, Any]) -> None:
        res["settings"]["mode"] = mode
        if checkpoint is not None:
            checkpoint(res)

    res = benchmark(
        configs, shapes, threads=args.threads, rounds=args.rounds or (3 if args.quick else 7),
        warmup=1 if args.quick else 2, block_ms=10.0 if args.quick else 40.0, sources=sources,
        retries=args.retries if args.retries is not None else (0 if args.quick else 2),
        log=lambda line: print(line, file=sys.stderr, flush=True), checkpoint=save,
    )
    res["settings"]["mode"] = mode
    return res


# --- a whole model, from its export folder -----------------------------------------------

#: (batch, sequence) shapes a whole model is timed at: one stream, one batch
MODEL_CASES: Tuple[Tuple[int, int], ...] = ((1, 32), (16, 64))
ORIGINAL = "original (torch.nn LSTMs) eager"
#: the whole-model benchmark's backend label of each artifact kind
MODEL_BACKENDS = {"torchscript": "torchscript", "onnx": "onnxruntime", "aoti": "aotinductor", "onnx-int8": "onnxruntime-int8"}
#: every benchmark label that times an export folder's artifact -> its kind (what recommend needs)
ARTIFACT_LABELS = {**ARTIFACT_OF, **{label: kind for kind, label in MODEL_BACKENDS.items()}}


def benchmark_model(
    folder: ExportFolder, cases: Sequence[Tuple[int, int]] = MODEL_CASES, *, threads: Optional[int] = None,
    rounds: int = 7, warmup: int = 2, block_ms: float = 40.0, max_calls: int = 50, pause_ms: float = 50.0, seed: int = 0,
) -> Dict[str, Any]:
    """Time an export folder's artifacts against its model in eager mode, interleaved.

    For a whole model or a bare LSTM (``deploy-lstm export --bench``; the bare-LSTM
    matrix of shapes and extra backends is :func:`benchmark`).  Backends: the model
    holding ``torch.nn`` LSTMs (the baseline of every ratio), the
    ``deploy_lstm`` model, and every artifact of the folder (TorchScript, onnxruntime,
    AOTInductor, int8).  Inputs at each (batch, sequence) are made as validation makes
    them (every dynamic axis resized; integer inputs in the example's range).

    Returns:
        ``{"machine", "settings", "model", "backends", "cases"}``; each case maps every
        backend to its timing (``median_ms``, ``p10_ms``, ``p90_ms``, ``ratio_vs_original``)
        or to an :class:`Unavailable` as a dict.
    """
    threads = threads or os.cpu_count() or 1
    spec = folder.model_spec()
    if folder.config is not None:  # a bare LSTM: nn.LSTM (packed with lengths) is the original
        sig = signature(spec.model, lengths=LENGTHS in folder.io.input_names)
        original: nn.Module = TorchLSTMGraph(spec.model.to_torch().eval())
    else:
        sig = signature(spec.model, **spec.call_arguments())
        original = restore_lstms(copy.deepcopy(spec.model)).eval()
    so_threads = dict(intra_op_num_threads=threads, inter_op_num_threads=1)
    runners: Dict[str, Runner] = {ORIGINAL: module_runner(original, sig), EAGER: module_runner(sig.module, sig)}
    scripted = (lambda m: BareLSTM(m)) if folder.config is not None else (lambda m: m)
    makers: Dict[str, Tuple[str, Callable[[], Runner]]] = {
        "torchscript": (MODEL_BACKENDS["torchscript"], lambda: module_runner(scripted(torch.jit.load(str(folder.file("torchscript")), map_location="cpu")), sig)),
        "onnx": (MODEL_BACKENDS["onnx"], lambda: artifact_runner(OnnxLSTM(folder.file("onnx"), **so_threads))),
        "aoti": (MODEL_BACKENDS["aoti"], lambda: artifact_runner(AotiPackage(folder.file("aoti")))),
        "onnx-int8": (MODEL_BACKENDS["onnx-int8"], lambda: artifact_runner(OnnxLSTM(folder.file("onnx-int8"), **so_threads))),
    }
    built: Dict[str, Union[Runner, Unavailable]] = {}
    for kind, (name, make) in makers.items():
        if folder.has(kind):
            try:
                built[name] = make()
            except Exception as e:  # recorded in the results
                built[name] = Unavailable.of(name, e)
    runners.update({k: r for k, r in built.items() if not isinstance(r, Unavailable)})
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    out_cases = []
    try:
        with torch.inference_mode():
            for N, T in cases:
                feeds = inputs_at(sig, N, T, rng, use_lengths=True)  # every input the artifacts take
                timed = _measure_case(
                    {name: (lambda r=r: r(feeds)) for name, r in runners.items()}, rounds=rounds, warmup=warmup,
                    block_s=block_ms / 1e3, max_calls=max_calls, pause_s=pause_ms / 1e3,
                )
                base = timed.get(ORIGINAL)
                results: Dict[str, Any] = {}
                for name, r in {**timed, **{k: v for k, v in built.items() if isinstance(v, Unavailable)}}.items():
                    if isinstance(r, Unavailable):
                        results[name] = r.to_dict()
                    else:
                        ratio = {"ratio_vs_original": r["median_ms"] / base["median_ms"]} if isinstance(base, dict) else {}
                        results[name] = {**r, **ratio}
                out_cases.append({"shape": f"N={N} T={T}", "batch": N, "sequence": T, "results": results})
    finally:
        torch.set_num_threads(previous)
    return {
        "machine": machine(),
        "settings": {"threads": threads, "rounds": rounds, "warmup": warmup, "block_ms": block_ms, "pause_ms": pause_ms,
                     "folder": str(folder.path)},
        "model": folder.model,
        "backends": list(runners) + [k for k, v in built.items() if isinstance(v, Unavailable)],
        "cases": out_cases,
    }


def record_recommendation(folder: ExportFolder, res: Dict[str, Any], *, allow_int8: bool = False,
                          write: bool = True) -> Dict[str, Any]:
    """Recommend an artifact per target from ``res`` (a benchmark of ``folder``), store it in
    ``res["recommendation"]`` and, with ``write``, in the export folder (``ExportFolder.record``)."""
    rec = recommend.recommend(res, list(folder.artifacts), folder.report, ARTIFACT_LABELS, allow_int8=allow_int8)
    res["recommendation"] = rec
    if write:
        folder.record("recommendation", rec)
    return rec


def run(args: argparse.Namespace) -> int:
    """``deploy-lstm bench``: measure, write ``results.{json,md,png}`` to ``--out``, print the table.

    On an export folder it ends with a recommendation per target (:mod:`deploy_lstm.recommend`),
    recorded in the export folder unless ``--no-record``.
    """
    folder = load(args.dir) if args.dir is not None and not args.config else None
    sections: List[str] = []

    def memory(res: Dict[str, Any]) -> None:  # after the timings: its processes would disturb them
        if folder is not None and args.memory:
            log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
            res["memory"] = measure_memory(folder.path, log=log)
            sections.append(memory_markdown(res["memory"]))

    if folder is not None and folder.config is None:  # a whole model: its artifacts at two shapes
        res = benchmark_model(folder, threads=args.threads, rounds=args.rounds or (3 if args.quick else 7))
        rec = record_recommendation(folder, res, allow_int8=args.allow_int8, write=args.record)
        sections.append(recommend.to_markdown(rec))
        memory(res)
        paths = write_model_results(res, args.out, sections=sections)
        print(model_markdown(res, sections))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0

    def save(res: Dict[str, Any]) -> None:
        write_results(res, args.out)

    res = measure(args, checkpoint=save)
    if folder is not None:
        rec = record_recommendation(folder, res, allow_int8=args.allow_int8, write=args.record)
        sections.append(recommend.to_markdown(rec))
        memory(res)
    paths = write_results(res, args.out, sections=sections)
    print(to_markdown(res, sections))
    print("wrote " + ", ".join(str(p) for p in paths.values() if p))
    if folder is not None and args.record:
        print(f"recorded the recommendation in the export folder {folder.path}")
    return 0
