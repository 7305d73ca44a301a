"""TorchScript artifacts: script a model, save it atomically with its configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from typing_extensions import Unpack

from deploy_lstm.formats import contract
from deploy_lstm.exporters.signature import GraphArgs, check_exportable, lstm_configs, signature
from deploy_lstm.formats.files import atomic_path
from deploy_lstm.exporters.common import export_errors
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.exporters.standins import module_tree_copy, with_fused
from deploy_lstm.version import __version__

__all__ = ["export_torchscript", "METADATA_FILE"]

#: the extra file inside the archive holding the artifact's metadata (contract.META_* keys)
METADATA_FILE = "deploy_lstm_config.json"


def export_torchscript(
    model: nn.Module, path: str | os.PathLike, fused: Optional[bool] = None, **graph: Unpack[GraphArgs]
) -> Path:
    """Script ``model`` (in eval mode) and save it to ``path`` atomically.

    ``fused``: when given, every ``deploy_lstm.LSTM`` inside is scripted with that
    implementation (``True``: aten::lstm, nn.LSTM's kernel; ``False``: the static
    loop).  A variant cell (``cell="peephole"``, ...) has no aten kernel: it always
    runs the static loop.  ``model`` itself is not changed: a copy of its module tree, sharing its
    parameters, is scripted.

    The archive carries ``deploy_lstm_config.json`` (``_extra_files``): the bare
    LSTM's configuration (``deploy_lstm.config``) or a whole model's {submodule:
    configuration} (``deploy_lstm.lstms``), and the versions that made it, so tools
    can check inputs without the Python source.  Given a whole model's call
    (``**graph``, as for ``export_onnx``: ``example_inputs``, names, axes), it also
    carries the I/O contract (``deploy_lstm.io``): the C++ runner then names its
    outputs and checks every input's dtype, rank and sizes before running.

    Raises:
        ExportError: the model does not script, or ``path`` cannot be written.
    """
    check_exportable(model, "scripted form has no forward")

    configs = lstm_configs(model)
    meta = {contract.META_VERSION: __version__, contract.META_TORCH: torch.__version__}
    if isinstance(model, LSTM):
        meta[contract.META_CONFIG] = json.dumps(configs[""], sort_keys=True)
    else:
        meta[contract.META_LSTMS] = json.dumps(configs, sort_keys=True)
        if graph:
            meta[contract.META_IO] = signature(model, **graph).io.to_json()
    with atomic_path(path) as tmp:
        with export_errors(f"torch.jit.script of {type(model).__name__}"):
            copied = module_tree_copy(
                model, lambda m: with_fused(m, _fused(m, fused)) if isinstance(m, LSTM) else None
            )
            scripted = torch.jit.script(copied)
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta, sort_keys=True)})
    return Path(path)


def _fused(lstm: LSTM, fused: Optional[bool]) -> bool:
    """Whether ``lstm`` runs aten::lstm in the scripted model: only nn.LSTM's cell can."""
    return (lstm.script_fused if fused is None else bool(fused)) and lstm.cell == "lstm"
