"""The one interface every artifact runner has: named feeds in, named outputs out, or
positionally in the I/O contract's order; a stream where the artifact can carry state.

A runner knows its artifact's I/O contract (:class:`~deploy_lstm.formats.contract.IOSpec`).
Subclasses implement :meth:`Runner.run`; calling a runner positionally, with numpy
arrays or torch tensors, fills the optional inputs of a bare LSTM (zero ``h0``/``c0``,
full ``lengths``) and returns the outputs in contract order, as the type it was given.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from deploy_lstm.errors import ConfigError, LSTMInputError
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec
from deploy_lstm.nn.config import LSTMConfig

Feeds = Mapping[str, np.ndarray]


class Runner(abc.ABC):
    """One artifact, ready to run.

    Attributes:
        kind: the artifact kind ("onnx", "onnx-int8", "torchscript", "aoti", ...).
        path: the artifact's file.
        io: its I/O contract (flat input and output names, shapes, dtypes).
        config: the configuration of a bare LSTM export; None for a whole model.
    """

    kind: str
    path: Path
    io: IOSpec
    config: Optional[LSTMConfig]

    @property
    def input_names(self) -> List[str]:
        return self.io.input_names

    @property
    def output_names(self) -> List[str]:
        return self.io.output_names

    @property
    def has_lengths(self) -> bool:
        return contract.LENGTHS in self.io.input_names

    @abc.abstractmethod
    def run(self, feeds: Feeds) -> Dict[str, np.ndarray]:
        """Run with a feed dict of every graph input; returns every output by name.

        Raises:
            LSTMInputError: a feed does not fit the contract (name, rank, dtype, size).
        """

    def __call__(self, *inputs: Any) -> Tuple[Any, ...]:
        """Run with the contract's inputs, positionally (numpy arrays or torch tensors).

        A bare LSTM takes ``input`` and optionally ``h0``, ``c0`` (zeros when omitted or
        None) and ``lengths`` (the full sequence length when omitted); a whole model takes
        every graph input.  Returns the outputs in contract order, as torch tensors when
        any input was one, else as numpy arrays.
        """
        names = self.io.input_names
        if len(inputs) > len(names):
            raise LSTMInputError(f"expected at most {len(names)} inputs ({', '.join(names)}), got {len(inputs)}")
        as_torch = any(_is_torch(x) for x in inputs)
        given = {n: _to_numpy(x) for n, x in zip(names, inputs) if x is not None}
        feeds = self._with_defaults(given)
        out = self.run(feeds)
        values = tuple(out[n] for n in self.io.output_names)
        if as_torch:
            import torch  # only when the caller passed torch tensors (torch is then loaded)

            return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in values)
        return values

    def _with_defaults(self, given: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The feeds with a bare LSTM's optional inputs filled in."""
        missing = [n for n in self.io.input_names if n not in given]
        if not missing:
            return given
        cfg = self.config
        if cfg is None or contract.INPUT not in given:
            raise LSTMInputError(f"missing inputs {missing}; expected {', '.join(self.io.input_names)} in that order")
        x = given[contract.INPUT]
        if x.ndim != 3:
            raise LSTMInputError(f"expected input of rank 3, got shape {x.shape}")
        N, T = (x.shape[0], x.shape[1]) if cfg.batch_first else (x.shape[1], x.shape[0])
        feeds = dict(given)
        if contract.H0 in missing:
            feeds[contract.H0] = np.zeros((cfg.num_states, N, cfg.real_hidden_size), dtype=x.dtype)
        if contract.C0 in missing:
            feeds[contract.C0] = np.zeros((cfg.num_states, N, cfg.hidden_size), dtype=x.dtype)
        if contract.LENGTHS in missing:
            feeds[contract.LENGTHS] = np.full((N,), T, dtype=np.int64)
        return feeds

    def stream(self, batch: int = 1, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None) -> Any:
        """A stateful stream: chunks in, outputs out, the state carried between chunks.

        Raises:
            ConfigError: this artifact cannot carry state (a whole model, a bidirectional LSTM).
        """
        raise ConfigError(f"a {self.kind} runner of {self.path.name} cannot stream")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
