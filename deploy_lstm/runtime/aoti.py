"""AOTInductor packages (.pt2) loaded in Python: :class:`AotiPackage`, the runner of the "aoti" kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping
import numpy as np
import torch
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.feeds import check_feeds
import deploy_lstm.nn.ops  # noqa: F401 -- registers deploy_lstm::fused_lstm, which fused AOTInductor packages call
from deploy_lstm.formats import contract
from deploy_lstm.formats.metadata import ArtifactMetadata
from deploy_lstm.errors import ArtifactError


class AotiPackage(Runner):
    """An AOTInductor ``.pt2`` written by :func:`deploy_lstm.export_aoti`, run on numpy arrays
    fed by the flat input names of its I/O contract (a bare LSTM or a whole model).

    A :class:`~deploy_lstm.runtime.base.Runner`: ``package(x)`` or ``package(x, h0, c0)``
    with numpy arrays or torch tensors, ``package.run(feeds)``, ``package.stream()``.

    Raises:
        ArtifactError: the file is missing, not a package, or carries no I/O contract.
    """

    kind = "aoti"  # "aoti-bf16" for a bf16 package (see :attr:`precision`)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"no AOTInductor package at {self.path}")
        try:
            #: the loaded package (torch._inductor's AOTICompiledModel)
            self.compiled = torch._inductor.aoti_load_package(str(self.path))
        except Exception as e:
            raise ArtifactError(f"cannot load the AOTInductor package {self.path}: {str(e).splitlines()[0]}") from e
        meta = ArtifactMetadata.from_strings(self.compiled.get_metadata(), source=str(self.path))
        if meta.io is None:
            raise ArtifactError(f"{self.path} carries no {contract.META_IO} metadata; re-export it with deploy_lstm")
        self.io = meta.io
        self.config = meta.config
        #: "bf16" when the package's LSTMs run in bfloat16 behind a float32 boundary (kind "aoti-bf16")
        self.precision = meta.precision
        if meta.precision == "bf16":
            self.kind = "aoti-bf16"

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run with a feed dict; inputs are checked against the package's contract first."""
        check_feeds(self.io.inputs, feeds, self.path.name)
        outs = self.run_tensors([torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names])
        return {n: t.numpy() for n, t in zip(self.output_names, outs)}

    def run_tensors(self, flat: List[torch.Tensor]) -> List[torch.Tensor]:
        """Run on the flat input tensors in contract order, unchecked, as a Python user of the
        ``.pt2`` calls it (no numpy round trip); returns the flat outputs.  ``flat`` is consumed
        (AOTInductor's boxed calling convention empties the list)."""
        return self.compiled.loader.boxed_run(flat)  # flat in, flat out: any input structure

    @property
    def runner(self) -> Any:
        """The loaded package, by its former name (now :attr:`compiled`)."""
        return self.compiled
