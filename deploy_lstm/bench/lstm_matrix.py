"""The bare-LSTM benchmark: every backend on the same weights, inputs and thread count, in one process.

Backends per LSTM configuration (:mod:`deploy_lstm.bench.backends`): ``torch.nn.LSTM``
eager (the baseline of every ratio), ``deploy_lstm`` eager, ``deploy_lstm`` TorchScript
reloaded from file (the static loop and ``fused=True``), onnxruntime on our export
(dynamo and TorchScript exporters), onnxruntime on ``nn.LSTM``'s own
``torch.onnx.export(dynamo=False)``, onnxruntime on the int8 (``quantize_int8``)
model, and the bf16 artifacts (``precision="bf16"``: AOTInductor and TorchScript, each
with its error against float32 ``nn.LSTM`` on the case's inputs, :mod:`deploy_lstm.bench.bf16`).
A backend that cannot be built or run is recorded as data (``Unavailable``:
backend, reason, stage).

Shapes: ``stream`` (one step per call, carrying (h, c)), or a whole sequence (N, T)
per call.  How each case is timed: :mod:`deploy_lstm.bench.timing`.  GFLOP/s are
reported against a measured reference: the best of a large float32 ``torch.mm`` and of
the fastest float32 backend (:data:`FLOP_FORMULA` gives the count).  The CPU other
processes used while each case was timed is recorded (from ``/proc/stat``), so a
perturbed run shows itself.

The project's own targets and verdicts are not here: ``benchmarks/targets.py``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from deploy_lstm.bench.backends import BACKENDS, BF16_BACKENDS, NN, NOT_FLOAT32, Shape, Sources, build_backends, make_inputs
from deploy_lstm.bench.bf16 import case_error
from deploy_lstm.bench.report import config_name
from deploy_lstm.bench.timing import SGEMM_N, Call, Timed, Unavailable, machine, measure_quietly, sgemm_reference
from deploy_lstm.check.tolerance import bf16_tolerance
from deploy_lstm.errors import ConfigError
from deploy_lstm.nn.config import LSTMConfig

__all__ = ["FLOP_FORMULA", "FULL_SHAPES", "QUICK_SHAPES", "matrix", "flops", "benchmark", "case_result", "results_of"]

#: what :func:`flops` counts
FLOP_FORMULA = (
    "multiply-adds x 2; gate nonlinearities and the cell update are O(H) per step and left out. "
    "Per layer and direction: 2*4H*(I_l + P)*T*N (+ 2*H*P*T*N with a projection), "
    "I_l = input_size for layer 0, else D*P; P = proj_size or H; D = directions."
)

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


def _check_settings(threads: int, rounds: int, warmup: int, block_ms: float, max_calls: int, pause_ms: float,
                    retries: int, max_interference: float) -> None:
    if retries < 0 or not 0 <= max_interference <= 1:
        raise ConfigError(f"expected retries >= 0 and 0 <= max_interference <= 1; got {retries}, {max_interference}")
    if rounds < 1 or warmup < 0 or max_calls < 1 or block_ms < 0 or pause_ms < 0:
        raise ConfigError(
            f"expected rounds >= 1, warmup >= 0, max_calls >= 1, block_ms >= 0, pause_ms >= 0; got rounds={rounds}, "
            f"warmup={warmup}, max_calls={max_calls}, block_ms={block_ms}, pause_ms={pause_ms}"
        )
    if threads < 1:
        raise ConfigError(f"expected threads >= 1, got {threads}")


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
    bf16: bool = True,
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
        bf16: time the bf16 artifacts too (their error against float32 nn.LSTM beside them).
        log: progress lines.
        checkpoint: called with the results so far after each configuration.

    Returns:
        ``{"machine", "settings", "reference", "flop_formula", "backends", "cases"}``;
        each case's ``results`` maps every backend to its timing
        (``median_ms``, ``p10_ms``, ``p90_ms``, ``ratio_vs_nn``, ``gflops``,
        ``reference_fraction``, ...) or to an ``Unavailable`` as a dict.
    """
    threads = threads or os.cpu_count() or 1
    _check_settings(threads, rounds, warmup, block_ms, max_calls, pause_ms, retries, max_interference)
    sources = sources or Sources()
    settings = {"threads": threads, "rounds": rounds, "warmup": warmup, "block_ms": block_ms, "max_calls": max_calls,
                "pause_ms": pause_ms, "bf16": bf16, "retries": retries, "max_interference": max_interference, "configs": len(configs),
                "shapes": [s.name for s in shapes], "folder": str(sources.folder) if sources.folder else None}
    quiet = dict(retries=retries, max_interference=max_interference, retry_wait_s=retry_wait_s, rounds=rounds,
                 warmup=warmup, block_s=block_ms / 1e3, max_calls=max_calls, pause_s=pause_ms / 1e3)
    info, cases, graphs = machine(), [], {}
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sgemm = [sgemm_reference(pause_s=pause_ms / 1e3)]
        log(f"reference: {SGEMM_N}x{SGEMM_N} float32 torch.mm at {sgemm[0]['gflops']:.1f} GFLOP/s ({threads} threads)")

        def results() -> Dict[str, Any]:
            return results_of(info, {**settings, "wall_s": round(time.perf_counter() - t_start, 1)}, sgemm, cases, graphs)

        with tempfile.TemporaryDirectory(prefix="deploy-lstm-bench-") as tmp:
            for k, cfg in enumerate(configs):
                log(f"[{k + 1}/{len(configs)}] {config_name(cfg)}")
                workdir = Path(tmp) / str(k)
                workdir.mkdir()
                cases += _run_config(cfg, shapes, workdir, threads, sources, rng, graphs, log, bf16=bf16, **quiet)
                gc.collect()  # this configuration's onnxruntime sessions are gone with _run_config's frame
                if checkpoint is not None:
                    checkpoint(results())
        sgemm.append(sgemm_reference(pause_s=pause_ms / 1e3))
        return results()
    finally:
        torch.set_num_threads(previous_threads)


def _run_config(
    cfg: LSTMConfig, shapes: Sequence[Shape], workdir: Path, threads: int, sources: Sources, rng: np.random.Generator,
    graphs: Dict[str, Any], log: Callable[[str], None], bf16: bool = True, **quiet: Any,
) -> List[Dict[str, Any]]:
    """Build one configuration's backends, time every shape (:func:`measure_quietly`), and let the sessions go."""
    built, graphs[config_name(cfg)], int8_accuracy, model = build_backends(cfg, workdir, threads, sources, log, bf16=bf16)
    cases = []
    with torch.inference_mode():
        for shape in shapes:
            inp = make_inputs(cfg, shape, rng)
            res: Timed = {}
            calls: Dict[str, Call] = {}
            for name in BACKENDS:
                b = built.get(name, Unavailable(name, "not built"))
                if isinstance(b, Unavailable):
                    res[name] = b
                else:
                    calls[name] = b(inp)
            errors = bf16_errors(calls, model, shape.steps)  # before timing: one call each
            measured, interference = measure_quietly(calls, log=log, label=shape.name, **quiet)
            res.update(measured)
            cases.append(case_result(cfg, shape, {n: res[n] for n in BACKENDS}))
            if int8_accuracy is not None:
                cases[-1]["int8_error"] = int8_accuracy
            if errors:
                cases[-1]["bf16_error"] = errors
            cases[-1]["interference"] = interference
            log(f"  {shape.name}: " + ", ".join(f"{n}={r['median_ms']:.2f}ms" for n, r in cases[-1]["results"].items() if "median_ms" in r))
    return cases


def bf16_errors(calls: Dict[str, Call], model: Any, steps: int) -> Dict[str, Dict[str, Any]]:
    """{bf16 backend: its error against nn.LSTM float32 on these inputs (:func:`~deploy_lstm.bench.bf16.case_error`)
    and ``atol``, the export rule's tolerance at ``steps``} for the bf16 backends among ``calls``."""
    names = [n for n in BF16_BACKENDS if n in calls]
    if not names or NN not in calls:
        return {}
    want = calls[NN]()
    try:
        atol: Optional[float] = bf16_tolerance(model, sequence=steps)
    except Exception:  # a model the rule does not cover: the error is still shown, without a tolerance
        atol = None
    return {n: {**case_error(calls[n](), want), "atol": atol} for n in names}


def case_result(cfg: LSTMConfig, shape: Shape, res: Timed) -> Dict[str, Any]:
    """One (configuration, shape): every backend's timing with its GFLOP/s and ratio to ``nn.LSTM``, or why it has none."""
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


def _reference(sgemm: List[Dict[str, Any]], cases: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The measured reference (the best sgemm or the fastest float32 backend); sets every timing's fraction of it."""
    gemm = max(sgemm, key=lambda s: s["gflops"])
    timed = [(r["gflops"], n, c) for c in cases for n, r in c["results"].items() if "gflops" in r and n not in NOT_FLOAT32]
    best = max(timed, key=lambda t: t[0], default=None)
    ref = max(gemm["gflops"], best[0] if best else 0.0)
    for c in cases:
        for n, r in c["results"].items():
            if "gflops" in r:
                r["reference_fraction"] = None if n in NOT_FLOAT32 else r["gflops"] / ref
    return {
        "gflops": ref,
        "source": "sgemm" if best is None or gemm["gflops"] >= best[0] else "backend",
        "sgemm": {**gemm, "runs_gflops": [s["gflops"] for s in sgemm]},
        "fastest_backend": {"gflops": best[0], "backend": best[1], "case": f"{best[2]['config']} | {best[2]['shape']}"} if best else None,
    }


def _interference(cases: List[Dict[str, Any]], settings: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The CPU other processes used over the whole run (weighted by each case's wall time), the worst case, the retries."""
    seen = [c["interference"] for c in cases if c.get("interference")]
    if not seen:
        return None
    capacity = sum(i["wall_s"] for i in seen)
    worst = max((c for c in cases if c.get("interference")), key=lambda c: c["interference"]["other_share"])
    return {
        "other_share": sum(i["other_share"] * i["wall_s"] for i in seen) / max(capacity, 1e-9),
        "steal_share": sum(i["steal_share"] * i["wall_s"] for i in seen) / max(capacity, 1e-9),
        "worst_share": worst["interference"]["other_share"],
        "worst_case": f"{worst['config']} | {worst['shape']}",
        "cases_over_limit": sum(i["other_share"] > settings["max_interference"] for i in seen),
        "cases_retried": sum(len(i.get("attempts", ())) > 1 for i in seen),
    }


def results_of(info: Dict[str, Any], settings: Dict[str, Any], sgemm: List[Dict[str, Any]], cases: List[Dict[str, Any]],
               graphs: Dict[str, Any]) -> Dict[str, Any]:
    """The results dict, with the measured reference and every timing's fraction of it."""
    reference = _reference(sgemm, cases)
    interference = _interference(cases, settings)
    settings = {**settings, "configs_done": len({c["config"] for c in cases}), "interference": interference}
    return {"machine": info, "settings": settings, "reference": reference, "flop_formula": FLOP_FORMULA,
            "backends": list(BACKENDS), "graphs": graphs, "cases": cases}
