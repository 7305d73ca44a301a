"""ExecuTorch programs (.pte) run in Python: :class:`ExecutorchRunner`, the runner of the "executorch" kind.

A ``model.pte`` from :func:`deploy_lstm.exporters.executorch.export_executorch` has fixed
shapes: ``forward`` runs a chunk of ``chunk`` steps of ``batch`` sequences, ``step``
(when ``chunk > 1``) one step.  The runner takes a sequence of any length by running
its whole chunks through ``forward`` and the remainder through ``step``, carrying
``(hn, cn)`` from call to call, so a call equals ``nn.LSTM`` on the whole sequence.
Needs the ``executorch`` package (``pip install deploy-lstm[executorch]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np
import torch

from deploy_lstm.errors import ArtifactError, LSTMInputError, RuntimeUnavailable
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import lstm_io
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.feeds import check_feeds

__all__ = ["ExecutorchRunner", "STEP_METHOD"]

#: the one-step method a program exported with chunk > 1 has beside ``forward``
STEP_METHOD = "step"


def _runtime() -> Any:
    """ExecuTorch's Python runtime, or RuntimeUnavailable saying how to install it."""
    try:
        from executorch.runtime import Runtime
    except ImportError as e:
        raise RuntimeUnavailable(f"running a .pte needs the executorch package: pip install 'deploy-lstm[executorch]' ({e})") from None
    return Runtime.get()


class ExecutorchRunner(Runner):
    """A ``model.pte`` of a bare LSTM, run by ExecuTorch's runtime (XNNPACK delegate).

    A :class:`~deploy_lstm.runtime.base.Runner`: ``runner(x)`` or ``runner(x, h0, c0)``
    over any number of steps, ``runner.run(feeds)``, ``runner.stream()`` (state carried).

    Args:
        path: the ``.pte``.
        config: the LSTM's configuration (the export folder's).
        chunk: time steps of ``forward``; batch: sequences per call (the manifest's
            ``details.chunk`` and ``details.batch``).

    Raises:
        ArtifactError: no such file, not a program, or methods of other shapes than
            ``chunk``/``batch`` say.
        RuntimeUnavailable: executorch is not installed.
    """

    kind = "executorch"

    def __init__(self, path: str | os.PathLike, config: LSTMConfig, chunk: int = 1, batch: int = 1) -> None:
        self.path = Path(path)
        self.config = config
        self.io = lstm_io(config)
        self.chunk, self.batch = int(chunk), int(batch)
        if not self.path.is_file():
            raise ArtifactError(f"no ExecuTorch program at {self.path}")
        try:
            program = _runtime().load_program(str(self.path))
            names = set(program.method_names)
            self.forward = program.load_method("forward")
            self.step = program.load_method(STEP_METHOD) if self.chunk > 1 else self.forward
        except (RuntimeError, ValueError) as e:
            raise ArtifactError(f"cannot load the ExecuTorch program {self.path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        want = {"forward", STEP_METHOD} if self.chunk > 1 else {"forward"}
        if not want <= names:
            raise ArtifactError(f"{self.path} has methods {sorted(names)}, expected {sorted(want)} for chunk={self.chunk}; re-export it")
        self._check_shapes()

    def _check_shapes(self) -> None:
        """``forward``'s input is (chunk, batch, input_size) (batch-major with batch_first), as the manifest says."""
        shape = tuple(self.forward.metadata.input_tensor_meta(0).sizes())
        cfg = self.config
        want = (self.batch, self.chunk, cfg.input_size) if cfg.batch_first else (self.chunk, self.batch, cfg.input_size)
        if shape != want:
            raise ArtifactError(f"{self.path}: forward takes input {shape}, the manifest says {want} (chunk={self.chunk}, batch={self.batch}); re-export it")

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run a sequence of any length: whole chunks through ``forward``, the rest one step at a time.

        Raises:
            LSTMInputError: a feed that does not fit the contract, another batch size
                than the program's, or no time steps.
        """
        check_feeds(self.io.inputs, feeds, self.path.name)
        x = np.ascontiguousarray(feeds[contract.INPUT])
        time_axis = 1 if self.config.batch_first else 0
        N, T = x.shape[1 - time_axis], x.shape[time_axis]
        if N != self.batch or T < 1:
            raise LSTMInputError(
                f"{self.path.name} runs batch {self.batch} (exported so: --pte-batch), any number >= 1 of steps; "
                f"got input {tuple(x.shape)} (batch {N}, {T} steps)"
            )
        h = torch.from_numpy(np.ascontiguousarray(feeds[contract.H0]))
        c = torch.from_numpy(np.ascontiguousarray(feeds[contract.C0]))
        pieces: List[np.ndarray] = []
        start = 0
        while start < T:
            length = self.chunk if T - start >= self.chunk else 1
            method = self.forward if length == self.chunk else self.step
            piece = torch.from_numpy(np.ascontiguousarray(x.take(range(start, start + length), axis=time_axis)))
            y, h, c = (t.clone() for t in method.execute([piece, h, c]))  # outputs live in the method's buffers
            pieces.append(y.numpy())
            start += length
        return {contract.OUTPUT: np.concatenate(pieces, axis=time_axis), contract.HN: h.numpy(), contract.CN: c.numpy()}
