"""Memory: the peak resident set of each runtime session and of each export, and artifact sizes.

A process's peak resident set only grows, so each measurement runs in a fresh Python
process (``python -m deploy_lstm.bench.memory``): it imports everything first, notes
its resident set, resets the kernel's high-water mark (``/proc/self/clear_refs``), then
loads one artifact and runs it (or exports one), and reports the new peak.  The figure
that matters is the peak *added* by that step over the imported, idle process; the
interpreter with torch and onnxruntime imported is reported once beside it.

Linux only (``/proc``); elsewhere the measurement is recorded as unavailable.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from deploy_lstm.bench.whole_model import folder_signature
from deploy_lstm.check.harness import FeedsFn, example_arrays, module_fn, random_inputs, runner_fn
from deploy_lstm.exporters.aoti import export_aoti
from deploy_lstm.exporters.int8 import quantize_int8
from deploy_lstm.exporters.onnx import export_onnx
from deploy_lstm.exporters.torchscript import export_torchscript
from deploy_lstm.formats.contract import LENGTHS
from deploy_lstm.formats.folder import FILES
from deploy_lstm.runtime.folder import RunnableFolder, load
from deploy_lstm.runtime.torchscript import TorchScriptRunner

__all__ = ["measure_memory", "memory_markdown", "SESSIONS", "EXPORTS"]

#: what a session measurement loads: the eager model or one of the folder's artifacts
SESSIONS = ("eager", "torchscript", "onnx", "aoti", "onnx-int8")
#: what an export measurement writes (into a scratch folder, from the folder's weights)
EXPORTS = ("onnx", "torchscript", "aoti", "onnx-int8")

_MiB = 1024 * 1024


def _status() -> Dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    """Set VmHWM back to the current resident set (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def _session_step(folder: RunnableFolder, kind: str, batch: int, sequence: int) -> Callable[[], Any]:
    """Load one artifact through its runner (``eager``: the model already in this process) and run it 3 times."""
    sig = folder_signature(folder)
    feeds = random_inputs(sig.io, batch, sequence, np.random.default_rng(0), examples=example_arrays(sig), lengths="random")
    if kind == "eager":  # the weights are already in this process: measure the model's own run
        load_run: Callable[[], FeedsFn] = lambda: module_fn(sig.module, sig)
    elif kind == "torchscript":  # a whole model's input structure is read first: the factory's model is not the artifact's
        tree = folder.input_tree()
        load_run = lambda: runner_fn(TorchScriptRunner(folder.file(kind), io=folder.io, tree=tree))
    else:
        options = {"intra_op_num_threads": 1} if kind in ("onnx", "onnx-int8") else {}
        load_run = lambda: runner_fn(folder.runner(kind, **options))
    return lambda: [run(feeds) for run in [load_run()] for _ in range(3)]


def _export_step(folder: RunnableFolder, kind: str, out: Path) -> Callable[[], Any]:
    """Write one artifact from the folder's model, as the folder's own was written."""
    spec = folder.model_spec()
    bare = folder.config is not None
    whole = {} if bare else spec.call_arguments()
    lengths = bare and LENGTHS in folder.io.input_names
    details = folder.artifacts[kind].details if folder.has(kind) else {}
    if kind == "onnx":
        opset = {"opset": details["opset"]} if details.get("opset") else {}
        return lambda: export_onnx(spec.model, out, lengths=lengths, exporter=details.get("exporter", "dynamo"), **opset, **whole)
    if kind == "torchscript":
        return lambda: export_torchscript(spec.model, out, fused=details.get("fused"), **whole)
    if kind == "aoti":
        return lambda: export_aoti(spec.model, out, lengths=lengths, **whole)
    return lambda: quantize_int8(folder.file("onnx"), out)


def _child(what: str, folder_path: str, kind: str, batch: int, sequence: int) -> Dict[str, Any]:
    """Run in a fresh process: load and run (``session``) or export (``export``) one artifact."""
    torch.set_num_threads(1)
    folder = load(folder_path)
    with tempfile.TemporaryDirectory(prefix="deploy-lstm-mem-") as tmp:
        if what == "session":
            step = _session_step(folder, kind, batch, sequence)
        else:
            step = _export_step(folder, kind, Path(tmp) / FILES[kind])
        with torch.inference_mode() if what == "session" else torch.no_grad():
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            before = _status()["VmRSS"]
            _reset_peak()
            step()
            after = _status()
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # AOTInductor compiles in child processes (the C++ compiler): the largest one's peak, beside ours.
    # The kernel keeps one maximum over all children ever waited for: count it only if this step raised it.
    children = children_after * 1024 if children_after > children_before else 0
    return {"before_bytes": before, "peak_bytes": after["VmHWM"], "added_bytes": after["VmHWM"] - before,
            "children_peak_bytes": children}


def _spawn(what: str, folder: Path, kind: str, batch: int, sequence: int, timeout_s: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "deploy_lstm.bench.memory", what, str(folder), kind, str(batch), str(sequence)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"reason": f"timed out after {timeout_s:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"reason": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def measure_memory(
    folder_path: str | Path, *, batch: int = 8, sequence: int = 128, sessions: Sequence[str] = SESSIONS,
    exports: Sequence[str] = EXPORTS, timeout_s: float = 300.0, log: Callable[[str], None] = lambda _: None,
) -> Dict[str, Any]:
    """Peak memory of each session and export of the folder's artifacts, each in a fresh process.

    Returns:
        ``{"shape", "artifacts": {kind: bytes}, "sessions": {kind: {...}}, "exports": {kind: {...}}}``;
        each measurement is ``{"before_bytes", "peak_bytes", "added_bytes"}`` or ``{"reason"}``.
    """
    folder = load(folder_path)
    if not Path("/proc/self/clear_refs").exists():
        why = {"reason": "needs Linux /proc (VmHWM, clear_refs)"}
        return {"shape": {"batch": batch, "sequence": sequence}, "artifacts": {k: a.bytes for k, a in folder.artifacts.items()},
                "sessions": {k: why for k in sessions}, "exports": {k: why for k in exports}}
    res: Dict[str, Any] = {"shape": {"batch": batch, "sequence": sequence},
                           "artifacts": {k: a.bytes for k, a in folder.artifacts.items()}, "sessions": {}, "exports": {}}
    for what, kinds in (("session", sessions), ("export", exports)):
        for kind in kinds:
            if kind != "eager" and not folder.has(kind):
                continue
            log(f"  memory: {what} {kind}")
            res[f"{what}s"][kind] = _spawn(what, Path(folder_path), kind, batch, sequence, timeout_s)
    return res


def memory_markdown(mem: Mapping[str, Any]) -> str:
    """A table per artifact: its size, the peak its session adds, the peak its export adds."""
    shape = mem["shape"]
    lines = [
        "## Memory", "",
        f"Peak resident memory added over an idle process with torch and onnxruntime imported (one fresh process per cell): "
        f"a session = load the artifact and run it 3 times at batch {shape['batch']}, sequence {shape['sequence']}, 1 thread; "
        f"an export = write the artifact from the folder's weights "
        f"(AOTInductor also runs the C++ compiler: the largest child process's peak is given beside it).",
        "",
        "| artifact | file size | session peak added | export peak added |", "|---|---|---|---|",
    ]

    def cell(m: Optional[Mapping[str, Any]]) -> str:
        if m is None:
            return "-"
        if "added_bytes" not in m:
            return f"n/a ({m['reason']})"
        child = m.get("children_peak_bytes") or 0
        return f"{m['added_bytes'] / _MiB:.1f} MiB" + (f" (+ {child / _MiB:.0f} MiB in a child process)" if child > _MiB else "")

    idle = next((m["before_bytes"] for m in mem["sessions"].values() if "before_bytes" in m), None)
    for kind in ("eager",) + tuple(k for k in mem["artifacts"] if k != "weights"):
        size = mem["artifacts"].get("weights" if kind == "eager" else kind)
        label = "eager (weights.safetensors)" if kind == "eager" else kind
        lines.append(f"| {label} | {size / _MiB:.2f} MiB | {cell(mem['sessions'].get(kind))} | "
                     f"{cell(mem['exports'].get(kind)) if kind != 'eager' else '-'} |")
    if idle is not None:
        lines += ["", f"The idle process itself (Python, torch, onnxruntime, the eager model and its inputs): {idle / _MiB:.0f} MiB."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="one memory measurement in this fresh process (used by deploy-lstm bench)")
    p.add_argument("what", choices=("session", "export"))
    p.add_argument("folder")
    p.add_argument("kind", choices=sorted(set(SESSIONS) | set(EXPORTS)))
    p.add_argument("batch", type=int)
    p.add_argument("sequence", type=int)
    a = p.parse_args(argv)
    print(json.dumps(_child(a.what, a.folder, a.kind, a.batch, a.sequence)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
