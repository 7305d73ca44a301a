"""TorchScript archives (.ts) loaded in Python: :class:`TorchScriptRunner`, the runner of the "torchscript" kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
import torch.utils._pytree as pytree

from deploy_lstm.errors import ArtifactError, RuntimeUnavailable
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec
from deploy_lstm.formats.metadata import TORCHSCRIPT_METADATA_FILE, ArtifactMetadata
from deploy_lstm.nn import jit
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.feeds import check_feeds

__all__ = ["TorchScriptRunner"]


class TorchScriptRunner(Runner):
    """A scripted model written by :func:`deploy_lstm.export_torchscript`, reloaded from disk.

    A bare LSTM runs as the graph ``(input, h0, c0[, lengths]) -> (output, hn, cn)``;
    ``lengths`` may be left out of :meth:`run` (the scripted LSTM then runs every
    sequence whole).  A whole model's scripted ``forward`` takes the user's structured
    inputs: the flat inputs are rebuilt into that structure with ``tree`` (the pytree
    spec of ``(args, kwargs)`` of its example call), or passed positionally when there
    is no ``tree``.

    Args:
        path: the ``.ts`` archive.
        io: the I/O contract to run by; default: the archive's (a whole model exported
            with its call), or for a bare LSTM its configuration's without ``lengths``.
        tree: a whole model's input structure (``torch.utils._pytree.TreeSpec``).

    Raises:
        ArtifactError: the file is missing, does not load, or (a whole model) carries no
            I/O contract and none was given.
    """

    kind = "torchscript"  # "torchscript-bf16" for a bf16 archive (see :attr:`precision`)
    optional_inputs = frozenset({contract.LENGTHS})

    def __init__(self, path: str | os.PathLike, *, io: Optional[IOSpec] = None, tree: Optional[Any] = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"no TorchScript archive at {self.path}")
        extra = {TORCHSCRIPT_METADATA_FILE: ""}
        try:
            self.module = jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        except RuntimeUnavailable:
            raise  # this torch refuses TorchScript: the folder's other artifacts still run
        except Exception as e:  # torch raises RuntimeError, ValueError, ... for a file that is not an archive
            raise ArtifactError(f"torch.jit.load cannot load {self.path}: {str(e).splitlines()[0]}") from e
        text = extra[TORCHSCRIPT_METADATA_FILE]
        meta = ArtifactMetadata.from_json(text, str(self.path)) if text else ArtifactMetadata()
        self.config = meta.config
        #: "bf16" when the archive's LSTMs run in bfloat16 behind a float32 boundary (kind "torchscript-bf16")
        self.precision = meta.precision
        if io is None and meta.io is None and self.config is not None:
            param = next(self.module.parameters(), None)
            dtype = str(param.dtype).replace("torch.", "") if param is not None else "float32"
            io = contract.lstm_io(self.config, dtype="float32" if meta.precision == "bf16" else dtype)
        if io is None and meta.io is None:
            raise ArtifactError(
                f"{self.path} carries no {contract.META_IO} metadata (export_torchscript was not given the model's "
                "call); pass io=, or re-export it with example_inputs"
            )
        self.io = io if io is not None else meta.io  # type: ignore[assignment]
        if meta.precision == "bf16":
            self.kind = "torchscript-bf16"
        self.tree = tree
        self._graph = BareLSTM(self.module) if self.config is not None else self.module

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run with a feed dict; inputs are checked against the contract first."""
        required = [t for t in self.io.inputs if t.name not in self.optional_inputs or t.name in feeds or self.config is None]
        check_feeds(required, feeds, self.path.name)
        flat = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in required]
        with torch.no_grad():
            if self.config is not None:
                out = self._graph(*flat)
            elif self.tree is not None:
                args, kwargs = pytree.tree_unflatten(flat, self.tree)
                out = self.module(*args, **kwargs)
            else:
                out = self.module(*flat)
        return {n: t.numpy() for n, t in zip(self.output_names, pytree.tree_flatten(out)[0])}
