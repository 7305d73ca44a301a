"""AOTInductor packages vs nn.LSTM eager: the ``scan`` route (before) and the ``fused`` route (after).

    python benchmarks/aoti_speed.py                   # 5 shapes, about 6 minutes on 2 cores
    python benchmarks/aoti_speed.py --quick           # tiny sizes, smoke run
    python benchmarks/aoti_speed.py --max-load 1.5    # wait until the 1-min load average is <= 1.5

Per shape: one ``deploy_lstm.LSTM`` and ``nn.LSTM`` with the same weights; two packages of it,
``export_aoti(..., fused=False)`` (every LSTM as ``scan``) and ``export_aoti(...)`` (the
``fused`` route, ``deploy_lstm::fused_lstm``); each checked against nn.LSTM at the timed shape.
Timing as ``deploy_lstm.bench``: 2 threads, warm-up, then interleaved rounds in which every
backend in turn (order rotated) idles 50 ms and runs a block of individually timed calls;
median and p10-p90 over every call.  A short torch.profiler summary of one shape follows.
Writes results.json and results.md to benchmarks/results/aoti/ (or ``--out``).  Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from torch import Tensor

import deploy_lstm
from deploy_lstm import LSTM
from deploy_lstm.formats import contract

OUT = Path(__file__).resolve().parent / "results" / "aoti"
THREADS = 2
ROUNDS = 7
BLOCK_S = 0.04  # a timed block: about 40 ms of calls ...
MAX_CALLS = 50  # ... at most this many
IDLE_S = 0.05  # idle before each timed block: the previous runtime's spinning threads go quiet
BACKENDS = ("nn.LSTM eager", "aoti scan (before)", "aoti fused (after)")

# (name, LSTM keyword arguments, N, T): the configurations and shapes of benchmarks/results/results.md
FULL = [
    ("L1 uni H256, N=1 T=128", dict(hidden_size=256), 1, 128),
    ("L1 bi H256, N=32 T=128", dict(hidden_size=256, bidirectional=True), 32, 128),
    ("L3 uni H256, N=32 T=128", dict(hidden_size=256, num_layers=3), 32, 128),
    ("L3 uni H256, N=8 T=1024", dict(hidden_size=256, num_layers=3), 8, 1024),
    ("L1 uni H256 P128, N=32 T=128", dict(hidden_size=256, proj_size=128), 32, 128),
]
QUICK = [("L1 uni H16, N=2 T=8", dict(hidden_size=16), 2, 8), ("L2 bi H16 P8, N=3 T=8", dict(hidden_size=16, num_layers=2, bidirectional=True, proj_size=8), 3, 8)]
INPUT_SIZE = 64
PROFILE_CASE = "L3 uni H256, N=32 T=128"


def wait_for_quiet(max_load: float, timeout_s: float = 900.0) -> float:
    """Sleep while the 1-minute load average is above ``max_load``; return the last reading."""
    start = time.monotonic()
    load = os.getloadavg()[0]
    while load > max_load and time.monotonic() - start < timeout_s:
        print(f"1-min load {load:.2f} > {max_load}: waiting", flush=True)
        time.sleep(15)
        load = os.getloadavg()[0]
    return load


def busy_jiffies() -> Tuple[int, int]:
    """(CPU jiffies busy on the machine, jiffies of this process) from /proc: their difference
    over a case is what other processes took meanwhile."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = sum(int(v) for v in Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:13])  # utime, stime
    return busy, own


def make_case(kwargs: Dict[str, Any], N: int, T: int, seed: int) -> Tuple[LSTM, torch.nn.LSTM, Tuple[Tensor, Tensor, Tensor]]:
    torch.manual_seed(seed)
    model = LSTM(INPUT_SIZE, **kwargs).eval()
    ref = model.to_torch().eval()
    D, L = model.num_directions, model.num_layers
    P = model.proj_size or model.hidden_size
    x = torch.randn(T, N, INPUT_SIZE)  # (T, N, I)
    h0 = torch.randn(L * D, N, P)  # (L*D, N, P)
    c0 = torch.randn(L * D, N, model.hidden_size)  # (L*D, N, H)
    return model, ref, (x, h0, c0)


def time_backends(fns: Dict[str, Callable[[], Any]], rounds: int) -> Dict[str, List[float]]:
    """Interleaved rounds, order rotated each round, 50 ms idle before each timed block; ms per call."""
    names = list(fns)
    times: Dict[str, List[float]] = {n: [] for n in names}
    for n in names:  # warm-up
        for _ in range(2):
            fns[n]()
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(IDLE_S)
            block_start = time.perf_counter()
            calls = 0
            while calls < MAX_CALLS and (calls == 0 or time.perf_counter() - block_start < BLOCK_S):
                t0 = time.perf_counter()
                fns[n]()
                times[n].append((time.perf_counter() - t0) * 1e3)
                calls += 1
    return times


def summary(ms: Sequence[float]) -> Dict[str, float]:
    q = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) >= 2 else [ms[0]] * 9
    return {"median_ms": statistics.median(ms), "p10_ms": q[0], "p90_ms": q[-1], "calls": len(ms)}


def profile_top(fn: Callable[[], Any], calls: int = 5, top: int = 8) -> List[Dict[str, Any]]:
    """torch.profiler key averages over ``calls`` calls: the ``top`` ops by self CPU time."""
    fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [
        {"op": e.key, "calls": e.count // calls, "self_cpu_ms_per_call": e.self_cpu_time_total / 1e3 / calls}
        for e in rows
    ]


def max_err(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    return max((g - w).abs().max().item() for g, w in zip(got, want))


def run(cases: List[Tuple[str, Dict[str, Any], int, int]], rounds: int, max_load: float, work: Path) -> Dict[str, Any]:
    torch.set_num_threads(THREADS)
    # No pool of compile worker processes left behind to compete with the timed calls.
    torch._inductor.config.compile_threads = 1
    results: Dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": THREADS,
                    "torch": torch.__version__, "python": platform.python_version()},
        "method": f"{rounds} interleaved rounds, order rotated, {IDLE_S * 1e3:.0f} ms idle before each timed block "
                  f"(about {BLOCK_S * 1e3:.0f} ms, up to {MAX_CALLS} calls); median and p10-p90 over every call; "
                  "torch.inference_mode; package called as aoti_load_package(path)(x, h0, c0)",
        "cases": [],
    }
    packages = {}
    for i, (name, kwargs, N, T) in enumerate(cases):  # compile everything before timing anything
        model, _, _ = make_case(kwargs, N, T, seed=i)
        for route, fused in (("scan", False), ("fused", True)):
            path = work / f"case{i}-{route}.pt2"
            t0 = time.perf_counter()
            deploy_lstm.export_aoti(model, path, fused=fused)
            compile_s = time.perf_counter() - t0
            runner = torch._inductor.aoti_load_package(str(path))
            routes = json.loads(runner.get_metadata()[contract.META_ROUTES])
            assert set(routes.values()) == {route}, routes
            packages[(i, route)] = (path, compile_s)
            print(f"compiled {name} [{route}] in {compile_s:.1f} s", flush=True)
    results["load_before_timing"] = wait_for_quiet(max_load)
    results["loadavg_start"] = os.getloadavg()
    print(f"1-min load before timing: {results['loadavg_start'][0]:.2f}", flush=True)
    for i, (name, kwargs, N, T) in enumerate(cases):
        for attempt in range(3):  # a case disturbed by other processes (> 10% of the machine) is measured again
            case = measure_case(i, name, kwargs, N, T, rounds, packages)
            print(f"  other processes: {case['other_cpu_pct']:.1f}% of the machine", flush=True)
            if case["other_cpu_pct"] <= 10:
                break
        results["cases"].append(case)
    results["loadavg_end"] = os.getloadavg()
    return results


def measure_case(i: int, name: str, kwargs: Dict[str, Any], N: int, T: int, rounds: int,
                 packages: Dict[Tuple[int, str], Tuple[Path, float]]) -> Dict[str, Any]:
    _, ref, (x, h0, c0) = make_case(kwargs, N, T, seed=i)
    scan = torch._inductor.aoti_load_package(str(packages[(i, "scan")][0]))
    fused = torch._inductor.aoti_load_package(str(packages[(i, "fused")][0]))
    with torch.inference_mode():
        want = ref(x, (h0, c0))
        want = (want[0], *want[1])
        errs = {"scan": max_err(scan(x, h0, c0), want), "fused": max_err(fused(x, h0, c0), want)}
        fns = {
            BACKENDS[0]: lambda: ref(x, (h0, c0)),
            BACKENDS[1]: lambda: scan(x, h0, c0),
            BACKENDS[2]: lambda: fused(x, h0, c0),
        }
        busy0, own0, t0 = *busy_jiffies(), time.monotonic()
        times = time_backends(fns, rounds)
        busy1, own1, t1 = *busy_jiffies(), time.monotonic()
        profile = profile_top_all(fns) if name == PROFILE_CASE else None
    stats = {b: summary(t) for b, t in times.items()}
    base = stats[BACKENDS[0]]["median_ms"]
    for s in stats.values():
        s["ratio_vs_eager"] = s["median_ms"] / base
    case = {"name": name, "config": kwargs, "N": N, "T": T, "input_size": INPUT_SIZE, "backends": stats,
            "max_abs_err_vs_nn_lstm": errs,
            "compile_s": {r: packages[(i, r)][1] for r in ("scan", "fused")}}
    hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    case["other_cpu_pct"] = max(0.0, 100 * (busy1 - busy0 - (own1 - own0)) / hz / ((t1 - t0) * cores))
    if profile is not None:
        case["profile"] = profile
    print(f"{name}: " + ", ".join(f"{b} {s['median_ms']:.2f} ms ({s['ratio_vs_eager']:.2f}x)" for b, s in stats.items()),
          flush=True)
    return case


def profile_top_all(fns: Dict[str, Callable[[], Any]]) -> Dict[str, List[Dict[str, Any]]]:
    return {b: profile_top(fn) for b, fn in fns.items()}


def to_markdown(res: Dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# AOTInductor: scan route (before) vs fused route (after)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, Python {m['python']}; {m['threads']} threads.",
        f"Method: {res['method']}.",
        f"Load average (1, 5, 15 min) at the start of timing: {', '.join(f'{v:.2f}' for v in res['loadavg_start'])}; "
        f"at the end: {', '.join(f'{v:.2f}' for v in res['loadavg_end'])}.",
        f"Input size {INPUT_SIZE}; float32; packages exported at T=7 N=3, timed at the shape shown (dynamic T and N).",
        "",
        "Cells: median ms (ratio to nn.LSTM eager) [p10-p90 ms].",
        "",
        "| config, shape | " + " | ".join(BACKENDS) + " | max abs err vs nn.LSTM (scan / fused) | compile s (scan / fused) | other processes' CPU |",
        "|---" * (len(BACKENDS) + 4) + "|",
    ]
    for c in res["cases"]:
        cells = [
            f"{s['median_ms']:.2f} ({s['ratio_vs_eager']:.2f}x) [{s['p10_ms']:.2f}-{s['p90_ms']:.2f}]"
            for s in (c["backends"][b] for b in BACKENDS)
        ]
        err, comp = c["max_abs_err_vs_nn_lstm"], c["compile_s"]
        lines.append(f"| {c['name']} | " + " | ".join(cells)
                     + f" | {err['scan']:.1e} / {err['fused']:.1e} | {comp['scan']:.1f} / {comp['fused']:.1f} | {c['other_cpu_pct']:.1f}% |")
    for c in res["cases"]:
        if "profile" not in c:
            continue
        lines += ["", f"## Profile: {c['name']} (torch.profiler key averages, top ops by self CPU time, per call)", ""]
        for b, rows in c["profile"].items():
            lines += [f"**{b}**", "", "| op | calls per call | self CPU ms per call |", "|---|---|---|"]
            lines += [f"| `{r['op']}` | {r['calls']} | {r['self_cpu_ms_per_call']:.3f} |" for r in rows]
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds: a smoke run")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where results.json/results.md go (default {OUT})")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait before timing while the 1-min load is above this")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aoti_speed-") as work:
        res = run(QUICK if args.quick else FULL, 2 if args.quick else ROUNDS, args.max_load, Path(work))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = to_markdown(res)
    (args.out / "results.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
