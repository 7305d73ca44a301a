"""TorchScript artifacts: script a model, save it atomically with its configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from torch import nn
from typing_extensions import Unpack

from deploy_lstm.exporters.bf16 import check_precision, with_bf16
from deploy_lstm.exporters.common import export_errors
from deploy_lstm.exporters.signature import GraphArgs, Signature, check_exportable, export_signature
from deploy_lstm.exporters.standins import module_tree_copy, with_fused
from deploy_lstm.formats.files import atomic_path
from deploy_lstm.formats.metadata import TORCHSCRIPT_METADATA_FILE as METADATA_FILE
from deploy_lstm.formats.metadata import ArtifactMetadata
from deploy_lstm.nn import jit
from deploy_lstm.nn.lstm import LSTM

__all__ = ["export_torchscript", "METADATA_FILE"]


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike,
    fused: Optional[bool] = None,
    *,
    precision: str = "float32",
    signature: Optional[Signature] = None,
    **graph: Unpack[GraphArgs],
) -> Path:
    """Script ``model`` (in eval mode) and save it to ``path`` atomically.

    ``fused``: when given, every ``deploy_lstm.LSTM`` inside is scripted with that
    implementation (``True``: aten::lstm, nn.LSTM's kernel; ``False``: the static
    loop).  A variant cell (``cell="peephole"``, ...) has no aten kernel: it always
    runs the static loop.  ``model`` itself is not changed: a copy of its module tree, sharing its
    parameters, is scripted.

    The archive carries :data:`METADATA_FILE` (``_extra_files``; written and read by
    :class:`~deploy_lstm.formats.metadata.ArtifactMetadata`): the bare LSTM's
    configuration (``deploy_lstm.config``) or a whole model's {submodule:
    configuration} (``deploy_lstm.lstms``), and the versions that made it, so tools
    can check inputs without the Python source.  Given a whole model's call
    (``**graph``, as for ``export_onnx``: ``example_inputs``, names, axes; or its
    ``signature``, computed once by the caller), it also carries the I/O contract
    (``deploy_lstm.io``): the C++ runner then names its outputs and checks every
    input's dtype, rank and sizes before running.

    ``precision="bf16"``: every LSTM runs in bfloat16 behind a float32 boundary
    (:mod:`deploy_lstm.exporters.bf16`); the archive takes and returns float32 as the float32
    one does, and its metadata says ``precision``.

    Raises:
        ExportError: the model does not script, or ``path`` cannot be written.
    """
    what = "scripted form has no forward"
    if signature is not None or (graph and not isinstance(model, LSTM)):
        sig = export_signature(model, what, signature, **graph)
        io = None if sig.bare is not None else sig.io  # a bare LSTM scripts as (input, (h0, c0)), not the flat graph
    else:
        check_exportable(model, what)
        io = None
    bf16 = check_precision(precision) == "bf16"
    metadata = ArtifactMetadata.describe(model, io=io, precision="bf16" if bf16 else None)
    with atomic_path(path) as tmp:
        with export_errors(f"torch.jit.script of {type(model).__name__}"):
            if bf16:
                copied = with_bf16(model, lambda m: with_fused(m, _fused(m, fused)))
            else:
                copied = module_tree_copy(
                    model, lambda m: with_fused(m, _fused(m, fused)) if isinstance(m, LSTM) else None
                )
            scripted = jit.script(copied)
        jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: metadata.to_json()})
    return Path(path)


def _fused(lstm: LSTM, fused: Optional[bool]) -> bool:
    """Whether ``lstm`` runs aten::lstm in the scripted model: only nn.LSTM's cell can."""
    return (lstm.script_fused if fused is None else bool(fused)) and lstm.cell == "lstm"
