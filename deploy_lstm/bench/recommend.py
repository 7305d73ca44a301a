"""Which artifact to run, per target: the fastest one that passed validation, as measured.

``deploy-lstm bench DIR`` times an export folder's artifacts against the eager
``torch.nn`` model on this machine; :func:`recommend` turns those timings into one
choice per target, and ``bench`` records it in the folder's manifest
(``"recommendation"``).  ``deploy-lstm serve`` and the C++ runner (``deploy_lstm_run
DIR``) run what it names unless told otherwise (``--artifact``).

The rules:

* a target chooses among the artifacts it can run (:data:`TARGETS`): Python any of
  them, C++ the TorchScript archive or the AOTInductor package, the server (an
  onnxruntime engine) the ONNX models;
* an artifact is a candidate only if the folder's validation report shows every one of
  its checks passed, and it was timed at every shape of the run;
* its score is the geometric mean over shapes of its time / the eager ``torch.nn``
  model's (one slow shape is not hidden by an average of times);
* the "device" target runs ``model.pte`` (ExecuTorch, fixed chunk and batch), which is
  not timed over the shapes: its score is its time for one chunk / eager ``nn.LSTM``'s on
  the same chunk (``res["device"]``, from :func:`deploy_lstm.bench.device.time_chunk`);
  a folder without a ``model.pte`` has no "device" entry;
* the int8 model computes something else (within its own tolerance): it is
  recommended only when asked (``allow_int8``); otherwise the entry says what it would
  have gained;
* so do the bf16 artifacts (:data:`BF16_KINDS`, LSTMs in bfloat16 behind a float32
  boundary, validated at their own tolerance): recommended only with ``allow_bf16``;
  otherwise the entry says what the fastest of them would have gained.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["TARGETS", "recommend", "to_markdown"]

#: per target, the artifact kinds it can run, in order of preference on a tie
TARGETS: Dict[str, Tuple[str, ...]] = {
    "python": ("onnx", "torchscript", "aoti", "onnx-int8", "aoti-bf16", "torchscript-bf16"),
    "cpp": ("torchscript", "aoti", "aoti-bf16", "torchscript-bf16"),
    "server": ("onnx", "onnx-int8"),
    "device": ("executorch",),
}

#: the reduced-precision kinds, each chosen only when allowed: {kind: the flag that allows it}
INT8_KINDS = ("onnx-int8",)
BF16_KINDS = ("aoti-bf16", "torchscript-bf16")

#: kinds timed per chunk (``res["device"]``), not over the benchmark's shapes
PER_CHUNK = ("executorch",)

#: targets recommended only for a folder holding one of their kinds
OPTIONAL_TARGETS = ("device",)

#: the validation report's backend name of each artifact kind
VALIDATED_AS: Dict[str, str] = {
    "onnx": "onnxruntime-cpu",
    "torchscript": "torchscript",
    "aoti": "aotinductor",
    "onnx-int8": "onnxruntime-int8",
    "executorch": "executorch",
    "aoti-bf16": "aotinductor-bf16",
    "torchscript-bf16": "torchscript-bf16",
}

def _case_name(case: Mapping[str, Any]) -> str:
    return f"{case['config']} | {case['shape']}" if "config" in case else str(case["shape"])


def _validation(report: Optional[Mapping[str, Any]]) -> Dict[str, Optional[bool]]:
    """{kind: all checks passed} for the kinds the report checked."""
    out: Dict[str, Optional[bool]] = {}
    for check in (report or {}).get("checks", []):
        for kind, name in VALIDATED_AS.items():
            if check.get("backend") == name:
                out[kind] = bool(out.get(kind, True)) and bool(check.get("passed"))
    return out


def _timed(cases: Sequence[Mapping[str, Any]], artifacts: Sequence[str], labels: Mapping[str, str], ratio_key: str
           ) -> Tuple[Dict[str, Tuple[str, Dict[str, float]]], Dict[str, str]]:
    """({kind: (label, {case: ratio})}, {kind: why it was not timed}) of the folder's artifacts.

    The first label seen timing a kind stands for it (a bare LSTM's matrix times "onnx" under
    one exporter's label only).
    """
    timed: Dict[str, Tuple[str, Dict[str, float]]] = {}
    reasons: Dict[str, str] = {}
    for case in cases:
        for label, r in case["results"].items():
            kind = labels.get(label)
            if kind is None or kind not in artifacts:
                continue
            if ratio_key in r:
                entry = timed.setdefault(kind, (label, {}))
                if entry[0] == label:
                    entry[1][_case_name(case)] = r[ratio_key]
            elif "reason" in r and kind not in timed:
                reasons.setdefault(kind, f"not timed: {r['reason']}")
    return timed, reasons


def recommend(
    res: Mapping[str, Any], artifacts: Sequence[str], report: Optional[Mapping[str, Any]], labels: Mapping[str, str],
    *, allow_int8: bool = False, allow_bf16: bool = False,
) -> Dict[str, Any]:
    """One recommendation per target from a benchmark of an export folder.

    Args:
        res: what :func:`deploy_lstm.bench.measure` (a bare LSTM) or
            :func:`deploy_lstm.bench.benchmark_model` returned for the folder.
        artifacts: the folder's artifact kinds.
        report: the folder's validation report (its manifest's ``report``).
        labels: {benchmark backend label: the artifact kind it times}
            (``deploy_lstm.bench.ARTIFACT_LABELS``); other labels are references.
        allow_int8: let the int8 model be recommended.
        allow_bf16: let a bf16 artifact be recommended.

    Returns:
        ``{"measured", "machine", "threads", "baseline", "shapes", "targets": {target:
        {"artifact", "backend", "ratio", "ratios", "why", "others"}}}``; ``artifact``
        is None where no candidate qualified (``why`` says which rule excluded each).
    """
    cases = res["cases"]
    ratio_key = "ratio_vs_nn" if cases and "config" in cases[0] else "ratio_vs_original"
    timed, reasons = _timed(cases, artifacts, labels, ratio_key)
    device = res.get("device")
    if device and "executorch" in artifacts:
        if device.get("ratio") is not None:
            timed["executorch"] = (device["label"], {f"chunk={device['chunk']} batch={device['batch']}": device["ratio"]})
        else:
            reasons["executorch"] = "not timed: " + "; ".join(str(r.get("reason")) for r in device["results"].values() if "reason" in r)
    shapes = [_case_name(c) for c in cases]
    validated = _validation(report)
    scores: Dict[str, float] = {}
    for kind, (label, ratios) in timed.items():
        if len(ratios) < len(shapes) and kind not in PER_CHUNK:
            reasons[kind] = f"timed at {len(ratios)} of {len(shapes)} shapes"
        elif validated.get(kind) is None:
            reasons[kind] = "not in the folder's validation report"
        elif not validated[kind]:
            reasons[kind] = "failed validation"
        else:
            scores[kind] = math.exp(sum(math.log(v) for v in ratios.values()) / len(ratios))
    for kind in artifacts:
        if kind in VALIDATED_AS and kind not in scores:
            reasons.setdefault(kind, "not timed")
    targets: Dict[str, Any] = {}
    for target, kinds in TARGETS.items():
        if target in OPTIONAL_TARGETS and not set(kinds) & set(artifacts):
            continue
        usable = [k for k in kinds if k in scores and _allowed(k, allow_int8, allow_bf16)]
        others: Dict[str, Any] = {
            k: (round(scores[k], 4) if k in scores else reasons.get(k, "not in the folder")) for k in kinds if k in artifacts
        }
        if not usable:
            why = "; ".join(f"{k}: {v}" if not isinstance(v, float) else f"{k}: {v:.2f}x, not allowed (bench --allow-"
                            f"{'int8' if k in INT8_KINDS else 'bf16'})" for k, v in others.items()) or "the folder has none of " + ", ".join(kinds)
            targets[target] = {"artifact": None, "backend": None, "ratio": None, "ratios": {}, "why": f"no candidate ({why})",
                               "others": others}
            continue
        best = min(usable, key=lambda k: (scores[k], kinds.index(k)))
        label, ratios = timed[best]
        over = f"one chunk, {next(iter(ratios))}" if best in PER_CHUNK else f"geometric mean over {len(ratios)} shapes"
        why = f"fastest of {', '.join(usable)} that passed validation: {scores[best]:.2f}x the eager torch.nn model ({over})"
        why += _would_gain(kinds, scores, best, allow_int8, allow_bf16)
        targets[target] = {"artifact": best, "backend": label, "ratio": round(scores[best], 4),
                           "ratios": {k: round(v, 4) for k, v in ratios.items()}, "why": why, "others": others}
    machine = res.get("machine", {})
    return {
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
        "threads": res.get("settings", {}).get("threads"),
        "baseline": "torch.nn.LSTM eager" if ratio_key == "ratio_vs_nn" else "the model with torch.nn LSTMs, eager",
        "allow_int8": allow_int8,
        "allow_bf16": allow_bf16,
        "shapes": shapes,
        "targets": targets,
    }


def _allowed(kind: str, allow_int8: bool, allow_bf16: bool) -> bool:
    return (allow_int8 or kind not in INT8_KINDS) and (allow_bf16 or kind not in BF16_KINDS)


def _would_gain(kinds: Sequence[str], scores: Mapping[str, float], best: str, allow_int8: bool, allow_bf16: bool) -> str:
    """What each reduced precision not allowed would have gained over ``best``: "" when nothing."""
    out = ""
    if not allow_int8 and "onnx-int8" in kinds and "onnx-int8" in scores and scores["onnx-int8"] < scores[best]:
        out += (f"; the int8 model would be {scores['onnx-int8']:.2f}x ({scores[best] / scores['onnx-int8']:.2f}x faster) at its "
                "own accuracy: bench --allow-int8 to let it be chosen")
    bf16 = [k for k in BF16_KINDS if k in kinds and k in scores]
    fastest = min(bf16, key=lambda k: scores[k], default=None)
    if not allow_bf16 and fastest is not None and scores[fastest] < scores[best]:
        out += (f"; the bf16 artifact {fastest} would be {scores[fastest]:.2f}x ({scores[best] / scores[fastest]:.2f}x faster) "
                "at its own accuracy (bfloat16 LSTMs): bench --allow-bf16 to let it be chosen")
    return out


def to_markdown(rec: Mapping[str, Any]) -> str:
    """The recommendation as a table: target, artifact, ratio, why."""
    lines: List[str] = [
        "## Recommendation (recorded in the folder's manifest.json)", "",
        f"Per target, the fastest artifact that passed validation on this machine; ratio = geometric mean over the shapes "
        f"of its time / {rec['baseline']}'s.", "",
        "| target | artifact | ratio | why |", "|---|---|---|---|",
    ]
    for target, entry in rec["targets"].items():
        ratio = f"{entry['ratio']:.2f}x" if entry["ratio"] is not None else "-"
        lines.append(f"| {target} | {entry['artifact'] or 'none'} | {ratio} | {entry['why']} |")
    return "\n".join(lines) + "\n"
