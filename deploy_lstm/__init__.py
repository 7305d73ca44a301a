"""deploy-lstm: a scriptable, exportable drop-in for torch.nn.LSTM.

``import deploy_lstm`` loads only the module and its weight conversion; the
exporters, onnxruntime and the artifact folder load on first use of their names.

Layout, one way: weights (``convert``) -> module (``recurrence``, ``model``) ->
tracing (``tracing``) -> exporters (``exporting``, ``onnx_export``, ``torchscript``,
``aoti``, ``quantize``) -> artifact folder (``folder``) -> runtimes (``runtime``,
``validation``) -> entry points (``pipeline``, ``cli``, ``bench``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .contract import IOSpec, LSTMConfig, ModelSpec, TensorSpec, lstm_io
from .convert import restore_lstms, swap_lstms
from . import errors
from .errors import *  # noqa: F403 -- the error family, listed once in errors.__all__
from .model import LSTM, LSTMCell
from .version import __version__

#: public names loaded on first use: {name: module}
_LAZY = {
    "export_onnx": "onnx_export",
    "export_torchscript": "torchscript",
    "export_aoti": "aoti",
    "quantize_int8": "quantize",
    "OnnxLSTM": "runtime",
    "AotiPackage": "runtime",
    "validate": "validation",
    "validate_folder": "validation",
    "ValidationReport": "validation",
    "ExportFolder": "folder",
    "load": "folder",
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
