"""deploy-lstm: a scriptable, exportable drop-in for torch.nn.LSTM.

``import deploy_lstm`` loads only the modules (``deploy_lstm.nn``); the exporters,
onnxruntime and the export folder load on first use of their names.

The rooms, and the one direction their imports run::

    cli -> {pipeline, bench, serve} -> check -> {exporters, runtime} -> formats -> nn -> errors

``nn``: the modules; ``formats``: what is written and read; ``exporters``: ONNX,
TorchScript, AOTInductor, int8; ``runtime``: one runner per artifact kind; ``check``:
the harness and validation; ``serve``: the inference server and the Triton repository;
``bench``: the benchmark and the recommendation.
"""

from __future__ import annotations

import importlib
from typing import Any

from deploy_lstm.formats.contract import IOSpec, ModelSpec, TensorSpec, lstm_io
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.swap import restore_lstms, swap_lstms
from deploy_lstm import errors
from deploy_lstm.errors import *  # noqa: F403 -- the error family, listed once in errors.__all__
from deploy_lstm.nn import LSTM, LSTMCell
from deploy_lstm.version import __version__

#: public names loaded on first use: {name: module}
_LAZY = {
    "export_onnx": "exporters.onnx",
    "export_torchscript": "exporters.torchscript",
    "export_aoti": "exporters.aoti",
    "quantize_int8": "exporters.int8",
    "OnnxLSTM": "runtime.onnx",
    "AotiPackage": "runtime.aoti",
    "validate": "check.validate",
    "validate_folder": "check.folder",
    "ValidationReport": "check.validate",
    "ExportFolder": "formats.folder",
    "load": "runtime.folder",
    "Runner": "runtime.base",
    "lstm_from_onnx": "formats.onnx_import",
    "export_folder": "pipeline",
}

__all__ = [
    "LSTM",
    "LSTMCell",
    "swap_lstms",
    "restore_lstms",
    "LSTMConfig",
    "IOSpec",
    "TensorSpec",
    "ModelSpec",
    "lstm_io",
    *errors.__all__,
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
