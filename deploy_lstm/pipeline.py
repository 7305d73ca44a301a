"""From a model to a validated export folder: what ``deploy-lstm export`` runs.

:func:`export_folder` exports the artifacts asked for into a staging folder,
validates them against the eager model and ``torch.nn.LSTM``, and writes the
folder (:class:`~deploy_lstm.folder.ExportFolder`) with the report in its manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable, ContextManager, Optional, Sequence, Tuple, Union

from deploy_lstm.formats import contract
from deploy_lstm.exporters.aoti import export_aoti
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.formats.contract import ModelSpec
from deploy_lstm.errors import ConfigError
from deploy_lstm.exporters.signature import check_exportable, signature
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.exporters.onnx import DEFAULT_OPSET, export_onnx, read_metadata
from deploy_lstm.check.int8 import INT8_ATOL_FACTOR, int8_tolerance
from deploy_lstm.exporters.int8 import quantize_int8
from deploy_lstm.exporters.torchscript import export_torchscript
from deploy_lstm.check.validate import ValidationReport, validate

__all__ = ["export_folder", "ARTIFACTS"]

ARTIFACTS = ("onnx", "torchscript", "aoti")

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
) -> Tuple[ExportFolder, ValidationReport]:
    """Export, validate and write an export folder atomically.

    Args:
        model: a bare ``deploy_lstm.LSTM``, or a whole model as a ``ModelSpec``.
        out: the folder (created; its files are replaced only when all succeeded).
        factory: for a whole model, the ``"module:callable"`` that rebuilds it
            (recorded so ``deploy-lstm validate`` can rebuild the model).
        artifacts: a subset of ``ARTIFACTS``.
        exporter, opset, native_lstm: the ONNX export (see :func:`export_onnx`).
        lengths: bare LSTM: add the ``lengths`` input.
        torchscript: ``"fused"`` (aten::lstm) or ``"loop"`` for ``model.ts``.
        quantize: ``"int8"`` adds ``model.int8.onnx`` (needs ``onnx``), validated at ``int8_atol``.
        atol: tolerance of the float artifacts (default 1e-5 float32, 1e-10 float64).
        int8_atol: tolerance of ``model.int8.onnx``; default :func:`~deploy_lstm.quantize.int8_tolerance`
            of the model (``INT8_ATOL_FACTOR`` x the weights' int8 step x sqrt(fan-in): measured, see there).
        progress: ``progress(text)`` returns a context manager around each step.

    Returns:
        (the folder written, the validation report).

    Raises:
        ConfigError: a combination that cannot be made; ExportError from the exporters.
    """
    step = progress or (lambda _text: contextlib.nullcontext())
    bad = [a for a in artifacts if a not in ARTIFACTS]
    if bad or not artifacts:
        raise ConfigError(f"artifacts {list(artifacts)!r}: expected a non-empty subset of {', '.join(ARTIFACTS)}")
    if torchscript not in ("fused", "loop"):
        raise ConfigError(f"torchscript={torchscript!r}: expected 'fused' or 'loop'")
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize={quantize!r}: expected None or 'int8'")
    if quantize and "onnx" not in artifacts:
        raise ConfigError("int8 quantization needs the onnx artifact")
    if isinstance(model, ModelSpec):
        spec, bare = model, None
        if factory is None:
            raise ConfigError("a whole model needs its factory ('module:callable') so the folder can be validated again")
        if lengths:
            raise ConfigError("lengths is for a bare LSTM; a whole model takes its own inputs")
        whole = spec.call_arguments()
        module = spec.model
    elif isinstance(model, LSTM):
        bare, module, whole = model, model, {}
    else:
        raise ConfigError(f"expected a deploy_lstm.LSTM or a ModelSpec, got {type(model).__name__}")

    check_exportable(module, "export fixes the sequence length or fails")  # before any work
    opset = DEFAULT_OPSET.get(exporter) if opset is None else opset
    with ExportFolder.create(out) as w:
        w.save_weights(module)
        if bare is not None:
            w.lstm(LSTMConfig.of(bare))
        else:
            w.factory(factory)  # type: ignore[arg-type]
        paths = {}
        if "onnx" in artifacts:
            with step(f"exporting model.onnx ({exporter} exporter)"):
                paths["onnx"] = export_onnx(
                    module, w.path("onnx"), lengths=lengths, exporter=exporter, opset=opset,
                    native_lstm=native_lstm, **whole,  # type: ignore[arg-type]
                )
            routes = json.loads(read_metadata(paths["onnx"])[contract.META_ROUTES])
            w.add("onnx", exporter=exporter, opset=opset, native_lstm=native_lstm, routes=routes)
        if "torchscript" in artifacts:
            with step(f"exporting model.ts (TorchScript, {torchscript})"):
                paths["torchscript"] = export_torchscript(
                    module, w.path("torchscript"), fused=torchscript == "fused", **whole  # type: ignore[arg-type]
                )
            # a variant cell has no aten kernel: it runs the static loop whatever was asked
            cells = {m.cell for m in module.modules() if isinstance(m, LSTM)}
            w.add("torchscript", fused=torchscript == "fused" and cells <= {"lstm"})
        if "aoti" in artifacts:
            with step("compiling model.pt2 (AOTInductor; about 10 s)"):
                paths["aoti"] = export_aoti(module, w.path("aoti"), lengths=lengths, **whole)  # type: ignore[arg-type]
            w.add("aoti")
        extra = {}
        if quantize:
            with step("quantizing model.int8.onnx (onnxruntime dynamic int8)"):
                quantize_int8(paths["onnx"], w.path("onnx-int8"))
            if int8_atol is None:
                int8_atol, rule = int8_tolerance(module), f"{INT8_ATOL_FACTOR:g} x int8_step (weights' int8 step x sqrt(fan-in))"
            else:
                rule = "given"
            w.add("onnx-int8", scheme="int8-dynamic", atol=int8_atol, atol_rule=rule)
            extra["onnxruntime-int8"] = (w.path("onnx-int8"), int8_atol)
        with step("validating against the eager model and torch.nn.LSTM"):
            report = validate(
                module, paths.get("onnx"), paths.get("torchscript"), atol=atol, devices=devices,
                extra_onnx=extra, aoti_path=paths.get("aoti"), **whole,  # type: ignore[arg-type]
            )
        w.io = signature(module, lengths=lengths, **whole).io  # type: ignore[arg-type]
        w.report = report.to_dict()
    assert w.folder is not None
    return w.folder, report
