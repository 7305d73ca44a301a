"""What every exporter shares: quiet exporter logging and one error family for export failures."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from typing import Iterator
import torch
from deploy_lstm.errors import ExportError, RuntimeUnavailable


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _FromQuantization(logging.Filter):
    """Drops onnxruntime.quantization's advice, which it logs on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or "quantization" not in record.pathname


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporters' chatter (progress lines, deprecation notes, TracerWarnings).

    Loggers are lowered to ERROR for the duration and restored; the root logger's
    level is never touched (onnxruntime.quantization's root-logger advice is filtered).
    """
    names = ["torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._export", "onnxruntime.quantization"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    root_filter = _FromQuantization()
    logging.getLogger().addFilter(root_filter)
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated.*")
            warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"The feature will be removed\. Please remove usage of this function", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*scan.*prototype.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used", category=UserWarning)
            yield
    finally:
        logging.getLogger().removeFilter(root_filter)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def export_errors(what: str) -> Iterator[None]:
    """Re-raise any failure inside as ``ExportError("{what} failed: {cause}")``, cause kept."""
    try:
        yield
    except (ExportError, RuntimeUnavailable):  # RuntimeUnavailable: this torch refuses the route (nn.jit)
        raise
    except Exception as e:
        cause = _ANSI.sub("", str(e))  # the dynamo exporter colours its text
        raise ExportError(f"{what} failed: {cause}") from e
