"""AOTInductor export of a ``deploy_lstm.LSTM`` or a whole model: one ``.pt2`` package for Python or C++.

Each LSTM traces as one of two routes (:func:`~deploy_lstm.exporters.standins.traceable`), both
keeping the sequence length and batch size dynamic:

* ``fused`` (default where it fits: ``cell="lstm"``, any layers, directions,
  projection, dtype, lengths): one call of the custom op ``deploy_lstm::fused_lstm``,
  which runs aten's LSTM kernel, as fast as ``nn.LSTM``.  The process that runs the
  package must have the op registered: in Python, importing ``deploy_lstm.nn.ops``
  (which this module and the runtime do) registers it; in C++, link ``serving/cpp/aoti``'s
  ``deploy_lstm_ops`` library (as ``aoti_run`` does).
* ``scan``: each direction as ``torch._higher_order_ops.scan`` (a while loop in the
  compiled code, 2-3x slower than eager): the cell variants, or everything with
  ``fused=False``.  Needs nothing but libtorch.

The route each LSTM took is in the package metadata (``contract.META_ROUTES``).
Load a package with ``torch._inductor.aoti_load_package(path)(input, h0, c0[, lengths])``
or, in C++, ``torch::inductor::AOTIModelPackageLoader`` (see ``serving/cpp/aoti``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from typing_extensions import Unpack

import torch
from torch import nn

import deploy_lstm.nn.ops  # noqa: F401 -- registers deploy_lstm::fused_lstm, which the fused route calls
from deploy_lstm.exporters.bf16 import check_precision, with_bf16
from deploy_lstm.exporters.common import export_errors, quiet_exporter
from deploy_lstm.exporters.signature import GraphArgs, Signature, export_signature
from deploy_lstm.exporters.standins import traceable
from deploy_lstm.formats.files import atomic_path, check_target
from deploy_lstm.formats.metadata import ArtifactMetadata

__all__ = ["export_aoti"]


def export_aoti(
    model: nn.Module,
    path: str | os.PathLike,
    lengths: bool = False,
    fused: bool = True,
    *,
    precision: str = "float32",
    signature: Optional[Signature] = None,
    **graph: Unpack[GraphArgs],
) -> Path:
    """Compile ``model`` with AOTInductor into a ``.pt2`` package, atomically.

    A bare LSTM's package takes ``input``, ``h0``, ``c0`` [, ``lengths``] and returns
    ``output``, ``hn``, ``cn``; a whole model's takes its flattened inputs (same
    arguments as :func:`deploy_lstm.export_onnx`).  Dynamic axes stay dynamic; the
    metadata (:class:`~deploy_lstm.formats.metadata.ArtifactMetadata`) holds the
    configuration, the I/O contract and the route each LSTM took.

    Args:
        model: a ``deploy_lstm.LSTM`` or a model containing some (compiled in eval
            mode; ``model`` is not changed).
        path: the ``.pt2`` file to write.
        lengths: bare LSTM: add the int64 ``lengths`` (batch,) input.
        fused: run each LSTM with ``cell="lstm"`` through ``deploy_lstm::fused_lstm``
            (aten's kernel; C++ needs the op library); ``False``: ``scan`` everywhere
            (slower, plain libtorch).
        precision: ``"bf16"``: every LSTM runs in bfloat16 behind a float32 boundary
            (:mod:`deploy_lstm.exporters.bf16`); the package takes and returns float32 as the
            float32 one does, and says ``precision`` in its metadata.
        signature: ``model``'s signature when the caller computed it already (then no
            ``lengths`` or ``**graph``), as for ``export_onnx``.
        **graph: a whole model's call and names, as for ``export_onnx`` (:class:`GraphArgs`).

    Returns:
        The path written.

    Raises:
        ExportError: an unconverted ``nn.LSTM``, names or axes that do not fit, a path
            that cannot be written, or a failed export/compile (with its cause).
    """
    sig = export_signature(model, "export fixes the sequence length", signature, lengths=lengths, **graph)
    bf16 = check_precision(precision) == "bf16"
    path = Path(path)
    check_target(path)
    with atomic_path(path) as tmp, export_errors(f"AOTInductor export of {type(model).__name__}"), quiet_exporter():
        copied, routes = traceable(model, "scan", native_lstm=False, fused=fused)  # {submodule: "fused" | "scan"}
        metadata = ArtifactMetadata.describe(model, io=sig.io, routes=routes, precision="bf16" if bf16 else None).to_strings()
        graph_module = sig.wrap(with_bf16(copied) if bf16 else copied).eval()
        program = torch.export.export(graph_module, sig.args, kwargs=sig.kwargs or None, dynamic_shapes=sig.dynamic_shapes())
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": metadata}
        )
    return path
