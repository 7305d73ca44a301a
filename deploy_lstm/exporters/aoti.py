"""AOTInductor export of a ``deploy_lstm.LSTM`` or a whole model: one ``.pt2`` package for Python or C++.

Each LSTM traces as one of two routes (:func:`deploy_lstm.tracing.traceable`), both
keeping the sequence length and batch size dynamic:

* ``fused`` (default where it fits: ``cell="lstm"``, any layers, directions,
  projection, dtype, lengths): one call of the custom op ``deploy_lstm::fused_lstm``,
  which runs aten's LSTM kernel, as fast as ``nn.LSTM``.  The process that runs the
  package must have the op registered: in Python, importing ``deploy_lstm.tracing``
  (which this module does) registers it; in C++, link ``serving/cpp/aoti``'s
  ``deploy_lstm_ops`` library (as ``aoti_run`` does).
* ``scan``: each direction as ``torch._higher_order_ops.scan`` (a while loop in the
  compiled code, 2-3x slower than eager): the cell variants, or everything with
  ``fused=False``.  Needs nothing but libtorch.

The route each LSTM took is in the package metadata (``contract.META_ROUTES``).
Load a package with ``torch._inductor.aoti_load_package(path)(input, h0, c0[, lengths])``
or, in C++, ``torch::inductor::AOTIModelPackageLoader`` (see ``serving/cpp/aoti``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from typing_extensions import Unpack

import torch
from torch import nn

from deploy_lstm.formats import contract
from deploy_lstm.exporters.signature import GraphArgs, check_exportable, lstm_configs, signature
from deploy_lstm.formats.files import atomic_path, check_target
from deploy_lstm.exporters.common import export_errors, quiet_exporter
from deploy_lstm.exporters.standins import traceable
from deploy_lstm.version import __version__

__all__ = ["export_aoti"]


def export_aoti(
    model: nn.Module,
    path: str | os.PathLike,
    lengths: bool = False,
    fused: bool = True,
    **graph: Unpack[GraphArgs],
) -> Path:
    """Compile ``model`` with AOTInductor into a ``.pt2`` package, atomically.

    A bare LSTM's package takes ``input``, ``h0``, ``c0`` [, ``lengths``] and returns
    ``output``, ``hn``, ``cn``; a whole model's takes its flattened inputs (same
    arguments as :func:`deploy_lstm.export_onnx`).  Dynamic axes stay dynamic; the
    metadata holds the configuration and the I/O contract (``contract.META_*``).

    Args:
        model: a ``deploy_lstm.LSTM`` or a model containing some (compiled in eval
            mode; ``model`` is not changed).
        path: the ``.pt2`` file to write.
        lengths: bare LSTM: add the int64 ``lengths`` (batch,) input.
        fused: run each LSTM with ``cell="lstm"`` through ``deploy_lstm::fused_lstm``
            (aten's kernel; C++ needs the op library); ``False``: ``scan`` everywhere
            (slower, plain libtorch).
        **graph: a whole model's call and names, as for ``export_onnx`` (:class:`GraphArgs`).

    Returns:
        The path written.

    Raises:
        ExportError: an unconverted ``nn.LSTM``, names or axes that do not fit, a path
            that cannot be written, or a failed export/compile (with its cause).
    """
    check_exportable(model, "export fixes the sequence length")
    path = Path(path)
    check_target(path)
    sig = signature(model, lengths=lengths, **graph)
    configs = lstm_configs(model)
    metadata = {
        contract.META_IO: sig.io.to_json(),
        contract.META_VERSION: __version__,
        contract.META_TORCH: torch.__version__,
    }
    if sig.bare is not None:
        metadata[contract.META_CONFIG] = sig.bare.to_json()
    else:
        metadata[contract.META_LSTMS] = json.dumps(configs, sort_keys=True)
    with atomic_path(path) as tmp, export_errors(f"AOTInductor export of {type(model).__name__}"), quiet_exporter():
        copied, routes = traceable(model, "scan", native_lstm=False, fused=fused)
        metadata[contract.META_ROUTES] = json.dumps(routes, sort_keys=True)  # {submodule: "fused" | "scan"}
        graph = sig.wrap(copied).eval()
        program = torch.export.export(graph, sig.args, kwargs=sig.kwargs or None, dynamic_shapes=sig.dynamic_shapes())
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": metadata}
        )
    return path
