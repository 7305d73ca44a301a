"""The one interface every artifact runner has: named feeds in, named outputs out, or
positionally in the I/O contract's order; a stream where the artifact can carry state.

A runner knows its artifact's I/O contract (:class:`~deploy_lstm.formats.contract.IOSpec`).
Subclasses implement :meth:`Runner.run`; calling a runner positionally, with numpy
arrays or torch tensors, fills the optional inputs of a bare LSTM (zero ``h0``/``c0``,
full ``lengths``) and returns the outputs in contract order, as the type it was given.
:meth:`Runner.stream` runs a bare unidirectional LSTM chunk by chunk
(:class:`CarriedStream`: each call's ``hn``/``cn`` become the next call's ``h0``/``c0``).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Tuple

import numpy as np

from deploy_lstm.errors import ConfigError, LSTMInputError
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, NamedIO
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.runtime.feeds import bare_feeds, chunk_steps, full_lengths, state_array, stream_input_error

__all__ = ["Runner", "CarriedStream", "Feeds", "as_numpy"]

Feeds = Mapping[str, np.ndarray]


class Runner(NamedIO, abc.ABC):
    """One artifact, ready to run.

    Attributes:
        kind: the artifact kind ("onnx", "onnx-int8", "torchscript", "aoti").
        path: the artifact's file.
        io: its I/O contract (flat input and output names, shapes, dtypes).
        config: the configuration of a bare LSTM export; None for a whole model.
        optional_inputs: inputs :meth:`run` may be fed without (the artifact has its own
            default), e.g. a scripted bare LSTM's ``lengths``.
    """

    kind: str
    path: Path
    io: IOSpec
    config: Optional[LSTMConfig]
    optional_inputs: ClassVar[FrozenSet[str]] = frozenset()


    @property
    def has_lengths(self) -> bool:
        """Whether the artifact takes a bare LSTM's ``lengths``."""
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
        None) and ``lengths`` (the full sequence length when omitted), as ``nn.LSTM``'s
        ``lstm(input, (h0, c0))`` would; a whole model takes every graph input.  Returns
        the outputs in contract order, as torch tensors when any input was one, else as
        numpy arrays.  No gradients flow through an artifact.

        Raises:
            LSTMInputError: too many or too few inputs, or one that does not fit the
                contract (the message says what was expected and what came).
        """
        as_torch = any(_is_torch(x) for x in inputs)
        arrays = [None if x is None else as_numpy(x) for x in inputs]
        out = self.run(self._feeds(arrays))
        values = tuple(out[n] for n in self.io.output_names)
        if as_torch:
            import torch  # only when the caller passed torch tensors (torch is then loaded)

            return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in values)
        return values

    def _feeds(self, arrays: List[Optional[np.ndarray]]) -> Dict[str, np.ndarray]:
        """The feed dict of positional inputs (a bare LSTM's defaults filled in)."""
        names = self.io.input_names
        if self.config is not None:
            if not 1 <= len(arrays) <= 4 or arrays[0] is None:
                raise LSTMInputError(
                    f"expected input, then optionally h0, c0, lengths (nn.LSTM's order), got {len(arrays)} inputs"
                    + (" with input None" if arrays and arrays[0] is None else "")
                )
            feeds = bare_feeds(self.config, self.io, self.path.name, *arrays)
            if self.has_lengths and contract.LENGTHS not in feeds and contract.LENGTHS not in self.optional_inputs:
                feeds[contract.LENGTHS] = full_lengths(self.config, feeds[contract.INPUT])
            return feeds
        given = [n for n, a in zip(names, arrays) if a is not None]
        if len(arrays) != len(names) or len(given) != len(names):
            raise LSTMInputError(
                f"{self.path.name} expects {len(names)} inputs ({', '.join(names)}) in that order, "
                f"got {len(arrays)}" + (f" with {len(arrays) - len(given)} None" if len(given) < len(arrays) else "")
            )
        return dict(zip(names, arrays))  # type: ignore[arg-type]

    def check_streamable(self) -> LSTMConfig:
        """The configuration of a bare unidirectional LSTM, which can stream.

        Raises:
            ConfigError: a whole model or a bidirectional LSTM (which cannot).
        """
        cfg = self.config
        if cfg is None:
            raise ConfigError(
                f"{self.path.name} is a whole model: a stream carries a bare LSTM's (h, c) from chunk to chunk; "
                "run the whole model on whole sequences, or export its LSTM alone to stream it"
            )
        if cfg.bidirectional:
            raise ConfigError(
                f"{self.path.name} is bidirectional: the reverse direction of a chunk needs the steps after it, "
                "so it cannot stream; run it on whole sequences"
            )
        return cfg

    def stream(self, batch: int = 1, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None) -> Any:
        """A stateful stream: chunks in, outputs out, the state carried between chunks.

        Every stream has ``push(chunk)`` (T steps: ``(T, batch, input_size)``, or
        ``(batch, T, input_size)`` with ``batch_first``), ``step(x)`` (one step,
        ``(batch, input_size)``), ``reset(h0, c0)``, ``state`` and ``steps``; numpy
        arrays in (torch tensors are converted) and out.  Pushing the chunks of a sequence
        one after another gives the output of one call on the whole sequence.

        Args:
            batch: sequences per step (fixed for the stream's life).
            h0: initial hidden state, (num_layers, batch, proj_size or hidden_size); zeros when omitted.
            c0: initial cell state, (num_layers, batch, hidden_size); zeros when omitted.

        Raises:
            ConfigError: this artifact cannot carry state (a whole model, a bidirectional LSTM).
            LSTMInputError: a bad batch size or initial state.
        """
        self.check_streamable()
        return CarriedStream(self, batch, h0, c0)


class CarriedStream:
    """A bare unidirectional LSTM run chunk by chunk through any :class:`Runner`: each
    call's ``hn``/``cn`` are the next call's ``h0``/``c0``.

    Made by :meth:`Runner.stream` for the runners that have no faster way (TorchScript,
    AOTInductor; onnxruntime binds its state instead, see ``OnnxStream``).  Not thread-safe:
    one stream per sequence (or per batch of sequences).
    """

    def __init__(self, runner: Runner, batch: int, h0: Optional[Any], c0: Optional[Any]) -> None:
        self.config = runner.check_streamable()
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise LSTMInputError(f"expected batch >= 1 (sequences per step), got {batch!r}")
        self.runner = runner
        self.batch = int(batch)
        self.dtype = np.dtype(runner.io.inputs[0].dtype)
        cfg = self.config
        self._h_shape = (cfg.num_layers, self.batch, cfg.real_hidden_size)
        self._c_shape = (cfg.num_layers, self.batch, cfg.hidden_size)
        self.reset(h0, c0)

    def reset(self, h0: Optional[Any] = None, c0: Optional[Any] = None) -> None:
        """Start again from ``(h0, c0)`` (zeros when omitted), same batch size.

        Raises:
            LSTMInputError: a state of another shape or dtype.
        """
        self._h, self._c = (
            np.array(state_array(name, None if value is None else as_numpy(value), shape, self.dtype))  # a copy
            for name, value, shape in ((contract.H0, h0, self._h_shape), (contract.C0, c0, self._c_shape))
        )
        self.steps = 0  # time steps pushed since the last reset

    @property
    def state(self) -> Tuple[np.ndarray, np.ndarray]:
        """Copies of the carried (h, c): (num_layers, batch, P), (num_layers, batch, H)."""
        return self._h.copy(), self._c.copy()

    def push(self, chunk: Any) -> np.ndarray:
        """Run a chunk of T steps; returns its output, the state carried on.

        Raises:
            LSTMInputError: a chunk of another batch size, feature size, rank or dtype.
        """
        x = as_numpy(chunk)
        T = chunk_steps(x, self.config, self.batch, self.dtype)
        feeds = {contract.INPUT: np.ascontiguousarray(x), contract.H0: self._h, contract.C0: self._c}
        if self.runner.has_lengths and contract.LENGTHS not in self.runner.optional_inputs:
            feeds[contract.LENGTHS] = full_lengths(self.config, x)
        out = self.runner.run(feeds)
        self._h, self._c = out[contract.HN], out[contract.CN]
        self.steps += T
        return out[contract.OUTPUT]

    def step(self, x: Any) -> np.ndarray:
        """One time step: ``x`` (batch, input_size) in, the output (batch, P) out.

        Raises:
            LSTMInputError: ``x`` of another shape or dtype.
        """
        x = as_numpy(x)
        want = (self.batch, self.config.input_size)
        if x.shape != want or x.dtype != self.dtype:
            raise stream_input_error(x, want, "one time step", self.config, self.batch, self.dtype)
        chunk = x[:, None] if self.config.batch_first else x[None]
        y = self.push(chunk)
        return y[:, 0] if self.config.batch_first else y[0]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def as_numpy(x: Any) -> np.ndarray:
    """A numpy array of a numpy array, a torch tensor (detached, on the CPU: shares its memory) or a sequence."""
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
