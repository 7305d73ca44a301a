"""From a model to a validated export folder: what ``deploy-lstm export`` runs.

:func:`export_folder` exports the artifacts asked for into a staging folder,
validates them against the eager model and ``torch.nn.LSTM``, and writes the
folder (:class:`~deploy_lstm.formats.folder.ExportFolder`) with the report in its manifest.
The model's :class:`~deploy_lstm.exporters.signature.Signature` is computed once and
handed to every exporter and to validation.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence, Tuple, Union

from torch import nn

from deploy_lstm.check.bf16 import bf16_error, bf16_speed, speed_verdict
from deploy_lstm.check.harness import runner_fn
from deploy_lstm.check.tolerance import BF16_RULE, INT8_ATOL_FACTOR, bf16_tolerance, int8_tolerance
from deploy_lstm.check import executorch as executorch_check
from deploy_lstm.check.validate import BACKEND_NAMES, DEFAULT_CASES, Opened, ValidationReport, validate
from deploy_lstm.errors import ConfigError, RuntimeUnavailable
from deploy_lstm.exporters.aoti import export_aoti
from deploy_lstm.exporters.bf16 import PRECISIONS
from deploy_lstm.exporters.executorch import details as executorch_details
from deploy_lstm.exporters.executorch import export_executorch
from deploy_lstm.exporters.int8 import quantize_int8
from deploy_lstm.exporters.onnx import checked_opset, export_onnx, read_metadata
from deploy_lstm.exporters.signature import Signature, check_exportable, signature
from deploy_lstm.exporters.torchscript import export_torchscript
from deploy_lstm.formats.contract import ModelSpec
from deploy_lstm.formats.folder import ExportFolder, FolderWriter
from deploy_lstm.formats.metadata import INT8_DYNAMIC
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.aoti import AotiPackage
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.executorch import ExecutorchRunner
from deploy_lstm.runtime.torchscript import TorchScriptRunner

__all__ = ["export_folder", "ARTIFACTS", "BF16_KINDS"]

ARTIFACTS = ("onnx", "torchscript", "aoti", "executorch")

#: the bf16 artifact kind beside each float32 kind that has one (``precision="bf16"``)
BF16_KINDS: Dict[str, str] = {"aoti": "aoti-bf16", "torchscript": "torchscript-bf16"}

Progress = Callable[[str], ContextManager[None]]


def export_folder(
    model: Union[LSTM, ModelSpec],
    out: str | os.PathLike,
    *,
    factory: Optional[str] = None,
    artifacts: Sequence[str] = ("onnx", "torchscript"),
    exporter: str = "dynamo",
    opset: Optional[int] = None,
    lengths: bool = False,
    native_lstm: bool = True,
    torchscript: str = "fused",
    quantize: Optional[str] = None,
    atol: Optional[float] = None,
    int8_atol: Optional[float] = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    progress: Optional[Progress] = None,
    pte_chunk: int = 1,
    pte_batch: int = 1,
    precision: str = "float32",
    bf16_atol: Optional[float] = None,
    force_bf16: bool = False,
) -> Tuple[ExportFolder, ValidationReport]:
    """Export, validate and write an export folder atomically.

    The model's signature (flattened inputs, names, dynamic axes) is computed once,
    here, and handed to every exporter and to validation.

    Args:
        model: a bare ``deploy_lstm.LSTM``, or a whole model as a ``ModelSpec``.
        out: the folder (created; its files are replaced only when all succeeded).
        factory: for a whole model, the ``"module:callable"`` that rebuilds it
            (recorded so ``deploy-lstm validate`` can rebuild the model).
        artifacts: a subset of ``ARTIFACTS``.
        exporter: the ONNX exporter (see :func:`export_onnx`).
        opset: the ONNX opset (see :func:`export_onnx`).
        native_lstm: the ONNX ``LSTM`` node where it fits (see :func:`export_onnx`).
        lengths: bare LSTM: add the ``lengths`` input.
        torchscript: ``"fused"`` (aten::lstm) or ``"loop"`` for ``model.ts``.
        quantize: ``"int8"`` adds ``model.int8.onnx`` (needs ``onnx``), validated at ``int8_atol``.
        atol: tolerance of the float artifacts (default 1e-5 float32, 1e-10 float64).
        int8_atol: tolerance of ``model.int8.onnx``; default :func:`~deploy_lstm.check.tolerance.int8_tolerance`
            of the model (``INT8_ATOL_FACTOR`` x the weights' int8 step x sqrt(fan-in): measured, see there).
        progress: ``progress(text)`` returns a context manager around each step.
        pte_chunk: ``model.pte``'s time steps per call (bare LSTM only).
        pte_batch: ``model.pte``'s sequences per call (bare LSTM only).

    Returns:
        (the folder written, the validation report).

    Raises:
        ConfigError: a combination that cannot be made; ExportError from the exporters.
    """
    step = progress or (lambda _text: contextlib.nullcontext())
    _check_choices(artifacts, torchscript, quantize, precision)
    module, whole = _model_and_call(model, factory, lengths)
    opset = checked_opset(exporter, opset) if "onnx" in artifacts else opset
    sig = signature(check_exportable(module, "export fixes the sequence length or fails"), lengths=lengths, **whole)
    with ExportFolder.create(out) as w:
        w.save_weights(module)
        if whole:
            w.factory(factory)  # type: ignore[arg-type]
        else:
            w.lstm(LSTMConfig.of(module))
        skipped: Dict[str, str] = {}
        paths = _export_artifacts(w, sig, step, artifacts, exporter, opset, native_lstm, torchscript, skipped)
        extra = _add_int8(w, step, paths["onnx"], module, int8_atol) if quantize else {}
        bf16: Opened = _add_bf16(w, sig, step, paths, bf16_atol, force_bf16, skipped, torchscript == "fused") if precision == "bf16" else {}
        with step("validating against the eager model and torch.nn.LSTM"):
            report = validate(
                module, paths.get("onnx"), paths.get("torchscript"), atol=atol, devices=devices,
                extra_onnx=extra, aoti_path=paths.get("aoti"), signature=sig, extra_runners=bf16,
            )
        if "executorch" in artifacts:
            report = _add_pte(w, sig, step, report, lengths=lengths, chunk=pte_chunk, batch=pte_batch, atol=atol)
        report.skipped.update(skipped)  # the report (and with it the manifest) says what was not made, and why
        w.io = sig.io
        w.report = report.to_dict()
    assert w.folder is not None
    return w.folder, report


def _check_choices(artifacts: Sequence[str], torchscript: str, quantize: Optional[str], precision: str = "float32") -> None:
    """Refuse, before any work, a combination ``export_folder`` cannot make."""
    bad = [a for a in artifacts if a not in ARTIFACTS]
    if bad or not artifacts:
        raise ConfigError(f"artifacts {list(artifacts)!r}: expected a non-empty subset of {', '.join(ARTIFACTS)}")
    if torchscript not in ("fused", "loop"):
        raise ConfigError(f"torchscript={torchscript!r}: expected 'fused' or 'loop'")
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize={quantize!r}: expected None or 'int8'")
    if quantize and "onnx" not in artifacts:
        raise ConfigError("int8 quantization needs the onnx artifact")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not set(artifacts) & set(BF16_KINDS):
        raise ConfigError(
            f"precision='bf16' adds bf16 artifacts beside {' and '.join(BF16_KINDS)} (onnxruntime has no bf16 LSTM "
            f"kernel on the CPU); artifacts {list(artifacts)!r} has neither: add aoti or torchscript"
        )


def _model_and_call(model: Union[LSTM, ModelSpec], factory: Optional[str], lengths: bool) -> Tuple[nn.Module, Dict[str, Any]]:
    """The module to export and, for a whole model, its call (``GraphArgs``; empty for a bare LSTM)."""
    if isinstance(model, ModelSpec):
        if factory is None:
            raise ConfigError("a whole model needs its factory ('module:callable') so the folder can be validated again")
        if lengths:
            raise ConfigError("lengths is for a bare LSTM; a whole model takes its own inputs")
        return model.model, model.call_arguments()
    if isinstance(model, LSTM):
        return model, {}
    raise ConfigError(f"expected a deploy_lstm.LSTM or a ModelSpec, got {type(model).__name__}")


def _add_pte(
    w: FolderWriter, sig: Signature, step: Progress, report: ValidationReport, *,
    lengths: bool, chunk: int, batch: int, atol: Optional[float],
) -> ValidationReport:
    """Export ``model.pte`` (ExecuTorch, XNNPACK) of a bare LSTM at ``chunk`` steps of ``batch`` sequences;
    returns ``report`` with its checks: chained chunks against torch.nn.LSTM on whole sequences."""
    if lengths:
        raise ConfigError("model.pte streams whole chunks: it has no lengths input; export executorch without --lengths")
    with step(f"exporting model.pte (ExecuTorch + XNNPACK, chunk {chunk}, batch {batch})"):
        path = export_executorch(sig.model, w.path("executorch"), chunk=chunk, batch=batch)  # type: ignore[arg-type]
    w.add("executorch", **executorch_details(chunk, batch))
    with step("validating model.pte chunk by chunk against torch.nn.LSTM"):
        runner = ExecutorchRunner(path, LSTMConfig.of(sig.model), chunk=chunk, batch=batch)
        return executorch_check.merged(report, executorch_check.validate_executorch(sig, runner, atol=atol))


def _add_int8(
    w: FolderWriter, step: Progress, onnx_path: Path, module: nn.Module, int8_atol: Optional[float]
) -> Dict[str, Tuple[Path, float]]:
    """``model.int8.onnx`` from ``model.onnx``, with its tolerance and the rule it came from."""
    with step("quantizing model.int8.onnx (onnxruntime dynamic int8)"):
        quantize_int8(onnx_path, w.path("onnx-int8"))
    if int8_atol is None:
        int8_atol, rule = int8_tolerance(module), f"{INT8_ATOL_FACTOR:g} x int8_step (weights' int8 step x sqrt(fan-in))"
    else:
        rule = "given"
    w.add("onnx-int8", scheme=INT8_DYNAMIC, atol=int8_atol, atol_rule=rule)
    return {"onnxruntime-int8": (w.path("onnx-int8"), int8_atol)}


def _export_artifacts(
    w: FolderWriter, sig: Signature, step: Progress, artifacts: Sequence[str],
    exporter: str, opset: Optional[int], native_lstm: bool, torchscript: str, skipped: Dict[str, str],
) -> Dict[str, Path]:
    """Export each artifact asked for into the staging folder, all from the one signature;
    one this torch refuses to make goes into ``skipped`` with the reason."""
    module, paths = sig.model, {}
    if "onnx" in artifacts:
        with step(f"exporting model.onnx ({exporter} exporter)"):
            paths["onnx"] = export_onnx(
                module, w.path("onnx"), exporter=exporter, opset=opset, native_lstm=native_lstm, signature=sig
            )
        routes = read_metadata(paths["onnx"]).routes
        w.add("onnx", exporter=exporter, opset=opset, native_lstm=native_lstm, routes=routes)
    if "torchscript" in artifacts:
        try:
            with step(f"exporting model.ts (TorchScript, {torchscript})"):
                paths["torchscript"] = export_torchscript(module, w.path("torchscript"), fused=torchscript == "fused", signature=sig)
        except RuntimeUnavailable as e:  # this torch refuses TorchScript (nn.jit): the other artifacts go on
            skipped["torchscript"] = str(e)
        else:
            # a variant cell has no aten kernel: it runs the static loop whatever was asked
            cells = {m.cell for m in module.modules() if isinstance(m, LSTM)}
            w.add("torchscript", fused=torchscript == "fused" and cells <= {"lstm"})
    if "aoti" in artifacts:
        with step("compiling model.pt2 (AOTInductor; about 10 s)"):
            paths["aoti"] = export_aoti(module, w.path("aoti"), signature=sig)
        w.add("aoti")
    return paths


def _bf16_runner(kind: str, path: Path, sig: Signature) -> Runner:
    return AotiPackage(path) if kind.startswith("aoti") else TorchScriptRunner(path, io=sig.io, tree=sig.tree)


def _add_bf16(
    w: FolderWriter, sig: Signature, step: Progress, paths: Dict[str, Path],
    atol: Optional[float], force: bool, skipped: Dict[str, str], fused: bool,
) -> Opened:
    """The bf16 sibling of each float32 ``aoti``/``torchscript`` artifact written: exported, timed
    against that sibling, measured against float32 and recorded; returns {backend name: (runner,
    tolerance)} for validation.  One slower at every batch measured is dropped into ``skipped`` unless ``force``."""
    module, opened = sig.model, {}
    if atol is None:
        atol, rule = bf16_tolerance(module, max(T for _, T in DEFAULT_CASES)), BF16_RULE
    else:
        rule = "given"
    for kind, kind16 in BF16_KINDS.items():
        if kind not in paths:
            continue
        with step(f"exporting {w.path(kind16).name} (bf16 {kind})"):
            if kind == "aoti":
                export_aoti(module, w.path(kind16), signature=sig, precision="bf16")
            else:
                export_torchscript(module, w.path(kind16), fused=fused, signature=sig, precision="bf16")
        runner = _bf16_runner(kind16, w.path(kind16), sig)
        with step(f"timing {w.path(kind16).name} against {paths[kind].name} at batch 1 and 32"):
            speed = bf16_speed(sig, runner_fn(runner), runner_fn(_bf16_runner(kind, paths[kind], sig)))
        verdict = speed_verdict(speed, paths[kind].name)
        if len(speed["slower_at"]) == len(speed["shapes"]) and not force:
            w.path(kind16).unlink()
            skipped[BACKEND_NAMES[kind16]] = f"not written: {verdict} (no fast bf16 path here; force_bf16 / --force-bf16 writes it)"
            continue
        error = bf16_error(sig, runner_fn(runner))
        w.add(kind16, precision="bf16", boundary="float32", atol=atol, atol_rule=rule,
              max_abs=error["max_abs"], mean_abs=error["mean_abs"], error=error,
              speed=dict(speed, baseline=paths[kind].name), speed_note=verdict)
        opened[BACKEND_NAMES[kind16]] = (runner, atol)
    return opened
