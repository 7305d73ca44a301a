"""Benchmark reports: the results of the benchmarks as markdown, a chart and files.

The bare-LSTM matrix (:func:`to_markdown`, :func:`plot`, :func:`write_results`) and the
whole model (:func:`model_markdown`, :func:`write_model_results`).  matplotlib (the
optional ``bench`` extra) is imported only when a chart is drawn.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.formats.files import atomic_path
from deploy_lstm.bench.backends import ORT_DYNAMO, ORT_INT8
from deploy_lstm.bench.bf16 import bf16_markdown
from deploy_lstm.bench.timing import Unavailable
from deploy_lstm.check.int8 import INT8_WORTH_IT, int8_advice
from deploy_lstm.formats import strict_json

__all__ = [
    "config_name",
    "to_markdown",
    "plot",
    "write_results",
    "matplotlib_missing",
    "model_markdown",
    "write_model_results",
]


def matplotlib_missing() -> Optional[Unavailable]:
    """Why no chart can be drawn (matplotlib, the optional ``bench`` extra, is missing), or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return Unavailable("chart", "matplotlib is not installed; pip install 'deploy-lstm[bench]'")
    return None


def config_name(cfg: LSTMConfig) -> str:
    s = f"L{cfg.num_layers} {'bi' if cfg.bidirectional else 'uni'} H{cfg.hidden_size}"
    s += (f" P{cfg.proj_size}" if cfg.proj_size else "") + (" batch_first" if cfg.batch_first else "")
    return s + (f" {cfg.cell}" if cfg.cell != "lstm" else "")


# --- reports -------------------------------------------------------------------------


def to_markdown(res: Dict[str, Any], sections: Sequence[str] = ()) -> str:
    """The results as markdown: method, latency table, what was not measured; ``sections`` appended."""
    m, s, ref = res["machine"], res["settings"], res["reference"]
    gemm, fast = ref["sgemm"], ref["fastest_backend"]
    when = "at the start and at the end" if len(gemm["runs_gflops"]) > 1 else "at the start"
    lines = [
        "# deploy-lstm benchmark", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}, Python {m['python']}.",
        f"Threads: {s['threads']} (torch, and onnxruntime intra-op). Configurations measured: "
        f"{s['configs_done']}/{s['configs']}{' (mode: ' + s['mode'] + ')' if s.get('mode') else ''}; wall time {s['wall_s']} s.",
        f"Method: per configuration and shape, untimed warm-up calls per backend ({s['warmup']}), then {s['rounds']} "
        f"interleaved rounds: in each round every backend in turn (order rotated each round) idles {s['pause_ms']:g} ms, "
        f"then runs a block of individually timed calls (about {s['block_ms']:g} ms, 1 to {s['max_calls']} calls). "
        "Median and p10-p90 over every call of every round.",
        f"Reference: {ref['gflops']:.1f} GFLOP/s, the best of a {gemm['n']}x{gemm['n']} float32 torch.mm "
        f"({gemm['gflops']:.1f} GFLOP/s at {gemm['threads']} thread(s), best of the runs {when})"
        + (f" and the fastest float32 backend ({fast['gflops']:.1f} GFLOP/s: {fast['backend']}, {fast['case']})." if fast else "."),
    ]
    inter = s.get("interference")
    if inter:
        limit = 100 * s["max_interference"]
        lines.append(
            f"Interference: other processes used {100 * inter['other_share']:.1f}% of the machine's CPU while the kept "
            f"measurements ran (hypervisor steal {100 * inter['steal_share']:.1f}%); worst case {inter['worst_case']} at "
            f"{100 * inter['worst_share']:.1f}%. {inter['cases_retried']} case(s) measured again for exceeding {limit:g}% "
            f"(up to {s['retries']} times, least disturbed kept); {inter['cases_over_limit']} still above {limit:g}%."
        )
    if s.get("folder"):
        lines.append(f"Artifacts: the export folder {s['folder']} (backends it has no file for are n/a).")
    lines += [
        "", "Cells: median ms (ratio to nn.LSTM eager) [p10-p90 ms]. `stream` = one call per step carrying (h, c), "
        "time for all steps. Last column: GFLOP/s of the fastest float32 backend and its % of the reference "
        "(int8 and bf16 compute in lower precision: their float-equivalent GFLOP/s are in results.json, outside the reference).", "",
    ]
    names = list(res["backends"])
    lines.append("| config | shape | " + " | ".join(names) + " | best GFLOP/s (% of ref) |")
    lines.append("|---|---|" + "---|" * (len(names) + 1))
    missing: Dict[Tuple[str, str], List[str]] = {}
    for c in res["cases"]:
        cells = []
        for n in names:
            r = c["results"].get(n)
            if r is None or "median_ms" not in r:
                reason = r["reason"] if r else "not measured"
                missing.setdefault((n, reason), []).append(f"{c['config']} ({c['shape']})")
                cells.append("n/a")
                continue
            ratio = f" ({r['ratio_vs_nn']:.2f}x)" if "ratio_vs_nn" in r else ""
            cells.append(f"{r['median_ms']:.2f}{ratio} [{r['p10_ms']:.2f}-{r['p90_ms']:.2f}]")
        timed = [r for r in c["results"].values() if r.get("reference_fraction") is not None]
        best = max(timed, key=lambda r: r["gflops"], default=None)
        last = f"{best['gflops']:.1f} ({100 * best['reference_fraction']:.0f}%)" if best else "-"
        lines.append(f"| {c['config']} | {c['shape']} | " + " | ".join(cells) + f" | {last} |")
    if missing:
        lines += ["", "## Not measured", "", "| backend | reason | cases |", "|---|---|---|"]
        for (n, reason), where in missing.items():
            lines.append(f"| {n} | {reason.replace('|', '/')} | {len(where)}: {', '.join(where[:3])}{', ...' if len(where) > 3 else ''} |")
    chart = res.get("chart")
    if chart and not chart.get("written"):
        lines += ["", f"No chart: {chart['reason']}."]
    lines += ["", "FLOPs: " + res["flop_formula"]]
    lines += int8_markdown(res)
    lines += bf16_markdown(res)
    for section in sections:
        lines += ["", section.rstrip("\n")]
    return "\n".join(lines) + "\n"


def int8_markdown(res: Dict[str, Any], fp32: str = ORT_DYNAMO, int8: str = ORT_INT8) -> List[str]:
    """int8's speed beside its accuracy, per case, with :func:`~deploy_lstm.check.int8.int8_advice`'s verdict."""
    rows = []
    for c in res["cases"]:
        a, b, err = c["results"].get(fp32, {}), c["results"].get(int8, {}), c.get("int8_error")
        if "median_ms" not in a or "median_ms" not in b or not err:
            continue
        speedup = a["median_ms"] / b["median_ms"]
        verdict = int8_advice(speedup, err["max_abs"], err["mean_abs"], err["scale"]).split(":")[0]
        rows.append(f"| {c['config']} | {c['shape']} | {a['median_ms']:.2f} | {b['median_ms']:.2f} | {speedup:.2f}x | "
                    f"{err['max_abs']:.1e} ({100 * err['rel']:.1f}%) | {err['mean_abs']:.1e} | {verdict} |")
    if not rows:
        return []
    shapes = ", ".join(f"N={s['batch']} T={s['sequence']}" for s in next(c for c in res["cases"] if c.get("int8_error"))["int8_error"]["shapes"])
    return ["", "## int8: speed and accuracy", "",
            f"Speedup = {fp32} / {int8} (same run). Error = |int8 - float32| over every output on onnxruntime, standard-normal "
            f"inputs and state at {shapes} (`deploy_lstm.check.int8.int8_error`; % of the float32 output's max |y|). "
            f"Worth it at >= {INT8_WORTH_IT:g}x (`deploy_lstm.check.int8.INT8_WORTH_IT`); below that, ship model.onnx.", "",
            "| config | shape | float32 ms | int8 ms | speedup | max abs error | mean abs error | verdict |",
            "|---|---|---|---|---|---|---|---|", *rows]


def plot(res: Dict[str, Any], path: Path) -> Union[Path, Unavailable]:
    """Horizontal grouped bars: median latency per backend per case (log scale).

    Returns the path written, or an :class:`Unavailable` (backend ``"chart"``) saying
    why not (matplotlib, the optional ``bench`` extra, is not installed).
    """
    missing = matplotlib_missing()
    if missing is not None:
        return missing
    import matplotlib  # optional: pip install "deploy-lstm[bench]"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases, names = res["cases"], res["backends"]
    fig, ax = plt.subplots(figsize=(11, 0.9 + 0.55 * max(len(cases), 1)))
    width = 0.8 / len(names)
    for j, n in enumerate(names):
        ys = [i + j * width for i in range(len(cases))]
        xs = [c["results"].get(n, {}).get("median_ms", 0) for c in cases]
        ax.barh(ys, xs, height=width, label=n)
    ax.set_yticks([i + 0.4 - width / 2 for i in range(len(cases))])
    ax.set_yticklabels([f"{c['config']} | {c['shape']}" for c in cases], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"median latency, ms (log; {res['settings']['rounds']} interleaved rounds); missing bar = n/a")
    ax.set_title(f"deploy-lstm, {res['machine']['cpu']}, {res['settings']['threads']} threads", pad=48)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=4)  # above the bars
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def write_results(res: Dict[str, Any], out: Path, stem: str = "results", sections: Sequence[str] = ()) -> Dict[str, Optional[Path]]:
    """``<stem>.png``, ``<stem>.json`` and ``<stem>.md`` in ``out``, each written atomically.

    The chart comes first so that, without matplotlib, the reason is recorded in the
    JSON and markdown (``res["chart"]``); its path is then None.  ``sections`` are
    markdown appended to ``<stem>.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{stem}.png"
    chart: Union[Path, Unavailable] = png
    missing = matplotlib_missing()
    if missing is not None:
        chart = missing
    else:
        with atomic_path(png) as tmp:
            plot(res, tmp)
    res["chart"] = {"file": png.name, "written": True} if isinstance(chart, Path) else {"file": png.name, "written": False, "reason": chart.reason}
    paths: Dict[str, Optional[Path]] = {"png": png if isinstance(chart, Path) else None}
    for ext, text in (("json", strict_json.dumps(res, "the results", nonfinite="null", indent=1) + "\n"), ("md", to_markdown(res, sections))):
        p = out / f"{stem}.{ext}"
        with atomic_path(p) as tmp:
            tmp.write_text(text)
        paths[ext] = p
    return paths


# --- a whole model ------------------------------------------------------------------------


def model_markdown(res: Dict[str, Any], sections: Sequence[str] = ()) -> str:
    """``bench.benchmark_model``'s results: backend × shape, median ms (ratio to the original)."""
    s, m = res["settings"], res["machine"]
    lines = [
        "# deploy-lstm benchmark: whole model", "",
        f"Model: {json.dumps(res['model'])} from {s['folder']}.",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}; {s['threads']} threads; "
        f"{s['rounds']} interleaved rounds, {s['pause_ms']:g} ms idle before each timed block.", "",
        "Cells: median ms (ratio to the original model with torch.nn LSTMs) [p10-p90 ms].", "",
        "| backend | " + " | ".join(c["shape"] for c in res["cases"]) + " |",
        "|---|" + "---|" * len(res["cases"]),
    ]
    for name in res["backends"]:
        cells = []
        for c in res["cases"]:
            r = c["results"].get(name, {})
            if "median_ms" not in r:
                cells.append(f"n/a ({r.get('reason', 'not measured')})")
            else:
                ratio = f" ({r['ratio_vs_original']:.2f}x)" if "ratio_vs_original" in r else ""
                cells.append(f"{r['median_ms']:.3f}{ratio} [{r['p10_ms']:.3f}-{r['p90_ms']:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [s.rstrip("\n") + "\n" for s in sections]).rstrip("\n") + "\n"


def write_model_results(res: Dict[str, Any], out: Path, stem: str = "results", sections: Sequence[str] = ()) -> Dict[str, Path]:
    """``<stem>.json`` and ``<stem>.md`` of a whole-model benchmark in ``out``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, text in (("json", strict_json.dumps(res, "the results", nonfinite="null", indent=1) + "\n"), ("md", model_markdown(res, sections))):
        paths[ext] = out / f"{stem}.{ext}"
        with atomic_path(paths[ext]) as tmp:
            tmp.write_text(text)
    return paths
