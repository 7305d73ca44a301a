"""AOTInductor export of a bare ``deploy_lstm.LSTM``: one ``.pt2`` package for Python or C++.

The layers trace as ``torch._higher_order_ops.scan`` (``export_layers(..., "dynamo",
native_lstm=False)``), so the package keeps a dynamic sequence length and batch size.
Load it with ``torch._inductor.aoti_load_package(path)(input, h0, c0[, lengths])`` or,
in C++, ``torch::inductor::AOTIModelPackageLoader`` (see ``serving/cpp/aoti``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
import torch

from . import contract
from .contract import LSTMConfig
from .errors import ExportError
from .model import LSTM
from .onnx_export import _BareLSTM, _check_target, _dynamic_shapes, _example_for, _quiet_exporter, export_layers

__all__ = ["export_aoti"]


def export_aoti(model: LSTM, path: str | os.PathLike, lengths: bool = False) -> Path:
    """Compile ``model`` with AOTInductor into a ``.pt2`` package, atomically.

    The package takes ``input``, ``h0``, ``c0`` [, ``lengths``] and returns
    ``output``, ``hn``, ``cn``, with dynamic sequence length and batch size.

    Args:
        model: a bare ``deploy_lstm.LSTM`` (compiled in eval mode; the caller's mode is kept).
        path: the ``.pt2`` file to write.
        lengths: add the int64 ``lengths`` (batch,) input.

    Returns:
        The path written.

    Raises:
        ExportError: not a ``deploy_lstm.LSTM``, a path that cannot be written, or a
            failed export/compile (the message carries the cause).
    """
    if not isinstance(model, LSTM):
        raise ExportError(f"expected a deploy_lstm.LSTM, got {type(model).__name__}; convert with deploy_lstm.swap_lstms")
    path = Path(path)
    _check_target(path)
    cfg = LSTMConfig.of(model)
    weights = model.weight_ih_l0
    io = contract.lstm_io(cfg, lengths=lengths, dtype=str(weights.dtype).replace("torch.", ""))
    graph = _BareLSTM(model)
    args = _example_for(cfg, weights.dtype, weights.device, lengths)
    dynamic_shapes = _dynamic_shapes(graph, io.input_names, io.dynamic_axes(), len(args))

    was_training = model.training
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        graph.eval()  # dropout off: the artifact is for inference
        with export_layers(graph, "dynamo", native_lstm=False), _quiet_exporter():
            ep = torch.export.export(graph, args, dynamic_shapes=dynamic_shapes)
        tmp = tmpdir / path.name
        metadata = {contract.META_CONFIG: cfg.to_json(), contract.META_IO: io.to_json(), contract.META_TORCH: torch.__version__}
        with _quiet_exporter():
            torch._inductor.aoti_compile_and_package(
                ep, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": metadata}
            )
        os.replace(tmp, path)
    except Exception as e:  # keep the cause, say what failed
        cause = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        raise ExportError(f"AOTInductor export of {cfg} failed: {cause}") from e
    finally:
        model.train(was_training)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
