"""AOTInductor export of a bare ``deploy_lstm.LSTM``: one ``.pt2`` package for Python or C++.

The layers trace as ``torch._higher_order_ops.scan`` (``export_layers(..., "dynamo",
native_lstm=False)``), so the package keeps a dynamic sequence length and batch size.
Load it with ``torch._inductor.aoti_load_package(path)(input, h0, c0[, lengths])`` or,
in C++, ``torch::inductor::AOTIModelPackageLoader`` (see ``serving/cpp/aoti``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from . import contract
from .contract import LSTMConfig
from .errors import ExportError
from .model import LSTM
from .onnx_export import _BareLSTM, _check_target, _dynamic_shapes, _example_for, export_layers

__all__ = ["export_aoti"]


@contextlib.contextmanager
def _bind_batch_in_scan() -> Iterator[None]:
    """Make every scan step close over the batch size, so the batch can stay dynamic.

    torch 2.13 workaround: Inductor's ``decompose_scan_to_while_loop`` pass sizes the
    stacked outputs from symbols bound only by SymInt scan operands, so a batch symbol
    that appears only in tensor shapes fails with ``InductorError: KeyError: s15``
    (no upstream issue found).  A step that uses the batch SymInt gets it lifted as an
    operand; the reshape itself is a no-op.
    """
    # the package re-exports the function under the module's name: fetch the module itself
    scan_mod = importlib.import_module("torch._higher_order_ops.scan")

    original = scan_mod.scan

    def scan(combine_fn: Callable[..., Any], init: Any, xs: Any, **kwargs: Any) -> Any:
        n = init[0].size(0)  # carry (h (N, H), c (N, H)): the batch SymInt

        def step(carry: Any, x: Any) -> Any:
            new_carry, y = combine_fn(carry, x)
            return new_carry, y.reshape(n, *y.shape[1:])  # (N, H)

        return original(step, init, xs, **kwargs)

    scan_mod.scan = scan
    try:
        yield
    finally:
        scan_mod.scan = original


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
        with export_layers(graph, "dynamo", native_lstm=False), _bind_batch_in_scan():
            ep = torch.export.export(graph, args, dynamic_shapes=dynamic_shapes)
        tmp = tmpdir / path.name
        torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp))
        os.replace(tmp, path)
    except Exception as e:  # keep the cause, say what failed
        cause = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        raise ExportError(f"AOTInductor export of {cfg} failed: {cause}") from e
    finally:
        model.train(was_training)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
