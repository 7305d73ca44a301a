"""TorchScript artifacts: script a model, save it atomically with its configuration."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from .contract import LSTMConfig
from .errors import ExportError
from .model import LSTM

__all__ = ["export_torchscript", "load_config"]

#: name of the extra file inside the archive that holds the LSTM configuration(s)
CONFIG_FILE = "deploy_lstm_config.json"


def export_torchscript(model: nn.Module, path: str | os.PathLike, fused: Optional[bool] = None) -> Path:
    """Script ``model`` and save it to ``path`` atomically.

    ``fused``: when given, every ``deploy_lstm.LSTM`` inside is scripted with that
    implementation (``True``: aten::lstm, nn.LSTM's kernel; ``False``: the static
    loop); the modules' own flags are restored afterwards.

    The archive carries ``deploy_lstm_config.json`` (``_extra_files``): the bare
    LSTM's configuration, or {submodule: configuration} for a whole model, so C++
    and other tools can check inputs without the Python source.

    Raises:
        ExportError: the model does not script, or ``path`` cannot be written.
    """
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ExportError(f"cannot write TorchScript to {path}: need a file path in an existing, writable folder")
    for name, m in model.named_modules():
        if isinstance(m, (nn.LSTM, nn.LSTMCell)) and not isinstance(m, LSTM):
            raise ExportError(
                f"{name or 'the model itself'} is a torch.nn.{type(m).__name__}, which does not "
                "script; convert it first: model = deploy_lstm.swap_lstms(model)"
            )
    if isinstance(model, LSTM):
        config: object = LSTMConfig.of(model).__dict__
    else:
        config = {n: LSTMConfig.of(m).__dict__ for n, m in model.named_modules() if isinstance(m, LSTM)}
    was_training = model.training
    lstms = [m for m in model.modules() if isinstance(m, LSTM)]
    flags = [m.fused for m in lstms]
    try:
        for m in lstms:
            m.fused = m.fused if fused is None else bool(fused)
        scripted = torch.jit.script(model.eval())
    except Exception as e:
        raise ExportError(f"torch.jit.script failed for {type(model).__name__}: {e}") from e
    finally:
        model.train(was_training)
        for m, flag in zip(lstms, flags):
            m.fused = flag
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ts", dir=path.parent)
    os.close(fd)
    try:
        torch.jit.save(scripted, tmp, _extra_files={CONFIG_FILE: json.dumps(config, sort_keys=True)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_config(path: str | os.PathLike) -> Dict[str, object]:
    """The configuration stored in a TorchScript archive written by :func:`export_torchscript`."""
    extra = {CONFIG_FILE: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[CONFIG_FILE]) if extra[CONFIG_FILE] else {}
