"""This project's performance targets (issues #6, #13 and #22) and their verdicts on a benchmark run.

The library's benchmark (``deploy_lstm.bench``) measures and reports; whether the
numbers are good enough for this project is decided here.  Every target is a
same-run ratio of two backends on the cases it applies to, checked on medians and
on p10 (less sensitive to interference).  A case where a target applies but one of
its backends was not measured counts as missed, with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from deploy_lstm.bench.backends import (AOTI, BF16_BACKENDS, NN, ORT_DYNAMO, ORT_INT8, ORT_NN, ORT_TS, TS_FUSED, TS_LOOP,
                                        TS_USER)

Case = Dict[str, Any]

#: the statistics verdicts are computed on, and how the markdown titles them
STATS = {"median_ms": "medians", "p10_ms": "p10, less sensitive to interference"}


def _proj(c: Case) -> bool:
    return c["config_dict"]["proj_size"] > 0


@dataclasses.dataclass(frozen=True)
class Target:
    """``backend`` takes at most ``limit`` x the time of ``baseline`` (or, with ``speedup``,
    ``baseline`` takes at least ``limit`` x the time of ``backend``) on every case ``applies`` to.
    A tuple of backends stands for the fastest of them measured in the case."""

    name: str
    backend: Union[str, Tuple[str, ...]]
    baseline: str
    limit: float
    applies: Callable[[Case], bool]
    speedup: bool = False

    def check(self, case: Case, stat: str) -> Dict[str, Any]:
        where = f"{case['config']} ({case['shape']})"
        backend = self.backend
        if isinstance(backend, tuple):  # the fastest of them (the first when none was measured)
            backend = min(backend, key=lambda n: case["results"].get(n, {}).get(stat, float("inf")))
        a, b = case["results"].get(backend, {}), case["results"].get(self.baseline, {})
        out: Dict[str, Any] = {"target": self.name, "case": where, "limit": self.limit}
        if stat not in a or stat not in b:
            gone = a if stat not in a else b
            name = backend if stat not in a else self.baseline
            return {**out, "ratio": None, "met": False, "missing": f"{name}: {gone.get('reason', 'not measured')}"}
        ratio = b[stat] / a[stat] if self.speedup else a[stat] / b[stat]
        return {**out, "ratio": ratio, "met": ratio >= self.limit if self.speedup else ratio <= self.limit}


def _targets() -> List[Target]:
    out: List[Target] = []
    for ours, exporter in ((ORT_DYNAMO, "dynamo"), (ORT_TS, "torchscript")):
        out += [
            Target(f"{ours} <= 1.0x {NN}", ours, NN, 1.0, lambda c: not _proj(c)),
            Target(f"{ours} <= 1.05x {ORT_NN}", ours, ORT_NN, 1.05, lambda c: not _proj(c)),
            Target(f"{ours} <= 1.3x {NN} (projection)", ours, NN, 1.3, _proj),
        ]
    for ts, label in ((TS_LOOP, "torchscript (loop)"), (TS_FUSED, "torchscript (fused)")):
        out += [
            Target(f"{label} <= 1.5x {NN} at N=1", ts, NN, 1.5, lambda c: c["batch"] == 1),
            Target(f"{label} <= 1.2x {NN} at N=32", ts, NN, 1.2, lambda c: c["batch"] == 32),
        ]
    # issue 13: the artifacts picked for speed run at the speed of nn.LSTM's kernel, at every shape
    out.append(Target(f"{AOTI} <= 1.1x {NN}", AOTI, NN, 1.1, lambda c: True))
    out.append(Target(f"{TS_USER} <= 1.2x {NN}", TS_USER, NN, 1.2, lambda c: True))
    out.append(Target(f"int8 >= 1.5x faster than {ORT_DYNAMO} at N=32", ORT_INT8, ORT_DYNAMO, 1.5,
                      lambda c: c["batch"] == 32, speedup=True))
    # issue 22: the fastest bf16 artifact at <= 0.7x float32 eager nn.LSTM without projection, N=1 and N=32
    out.append(Target(f"fastest bf16 artifact <= 0.7x {NN} (no projection, N=1 and N=32)", BF16_BACKENDS, NN, 0.7,
                      lambda c: not _proj(c) and c["batch"] in (1, 32) and not c.get("stream")))
    return out


TARGETS: List[Target] = _targets()


def check(cases: Sequence[Case], stat: str = "median_ms") -> List[Dict[str, Any]]:
    """Every target on every case it applies to: ``{target, case, ratio, limit, met[, missing]}``."""
    return [t.check(c, stat) for t in TARGETS for c in cases if t.applies(c)]


def verdicts(res: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """``{stat: check(res["cases"], stat)}`` for each of :data:`STATS`."""
    return {stat: check(res["cases"], stat) for stat in STATS}


def to_markdown(verdicts: Dict[str, List[Dict[str, Any]]]) -> str:
    """One table per statistic: each target, how many cases met it, the worst case."""
    lines: List[str] = []
    for stat, title in STATS.items():
        lines += [f"## Targets (same-run ratios of {title})", "",
                  "| target | met | worst case | worst ratio | limit |", "|---|---|---|---|---|"]
        by: Dict[str, List[Dict[str, Any]]] = {}
        for v in verdicts.get(stat, []):
            by.setdefault(v["target"], []).append(v)
        for t in TARGETS:
            vs = by.get(t.name)
            if not vs:
                continue
            met = sum(v["met"] for v in vs)
            verdict = f"{met}/{len(vs)} {'MET' if met == len(vs) else 'MISSED'}"
            missing = [v for v in vs if v["ratio"] is None]
            if missing:
                lines.append(f"| {t.name} | {verdict} | {missing[0]['case']} | not measured ({missing[0]['missing']}) | {t.limit}x |")
                continue
            worst = (min if t.speedup else max)(vs, key=lambda v: v["ratio"])
            lines.append(f"| {t.name} | {verdict} | {worst['case']} | {worst['ratio']:.2f}x | {t.limit}x |")
        lines.append("")
    return "\n".join(lines)
