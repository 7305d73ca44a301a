"""AOTInductor export of a bare ``deploy_lstm.LSTM``: one ``.pt2`` package for Python or C++.

The layers trace as ``scan`` (:func:`deploy_lstm.tracing.traceable` with
``native_lstm=False``), so the package keeps a dynamic sequence length and batch
size.  Load it with ``torch._inductor.aoti_load_package(path)(input, h0, c0[, lengths])``
or, in C++, ``torch::inductor::AOTIModelPackageLoader`` (see ``serving/cpp/aoti``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import contract
from .errors import ExportError
from .exporting import atomic_path, check_exportable, export_errors, quiet_exporter, signature
from .model import LSTM
from .tracing import traceable
from .version import __version__

__all__ = ["export_aoti"]


def export_aoti(model: LSTM, path: str | os.PathLike, lengths: bool = False) -> Path:
    """Compile ``model`` with AOTInductor into a ``.pt2`` package, atomically.

    The package takes ``input``, ``h0``, ``c0`` [, ``lengths``] and returns
    ``output``, ``hn``, ``cn``, with dynamic sequence length and batch size; its
    metadata holds the configuration and the I/O contract (``contract.META_*``).

    Args:
        model: a bare ``deploy_lstm.LSTM`` (compiled in eval mode; ``model`` is not changed).
        path: the ``.pt2`` file to write.
        lengths: add the int64 ``lengths`` (batch,) input.

    Returns:
        The path written.

    Raises:
        ExportError: not a ``deploy_lstm.LSTM``, a path that cannot be written, or a
            failed export/compile (the message carries the cause).
    """
    check_exportable(model, "export fixes the sequence length")
    if not isinstance(model, LSTM):
        raise ExportError(f"expected a bare deploy_lstm.LSTM, got {type(model).__name__}")
    sig = signature(model, lengths=lengths)
    assert sig.bare is not None
    metadata = {
        contract.META_CONFIG: sig.bare.to_json(),
        contract.META_IO: sig.io.to_json(),
        contract.META_VERSION: __version__,
        contract.META_TORCH: torch.__version__,
    }
    with atomic_path(path) as tmp, export_errors(f"AOTInductor export of {sig.bare}"), quiet_exporter():
        copied, _ = traceable(model, "scan", native_lstm=False)
        graph = sig.wrap(copied).eval()
        program = torch.export.export(graph, sig.args, dynamic_shapes=sig.dynamic_shapes())
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": metadata}
        )
    return Path(path)
