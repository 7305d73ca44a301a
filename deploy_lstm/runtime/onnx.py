"""onnxruntime: sessions over exported ONNX files (OnnxLSTM), their runner (OnnxRunner, the
"onnx" and "onnx-int8" kinds of an export folder) and chunk-by-chunk streams (OnnxStream)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple
import numpy as np
import onnxruntime as ort
from deploy_lstm.runtime.base import Runner, as_numpy
from deploy_lstm.runtime.feeds import (
    Arrays, ORT_TYPES, bare_feeds, check_feeds, chunk_steps, full_lengths, state_array, stream_input_error,
)
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, TensorSpec
from deploy_lstm.formats.metadata import ArtifactMetadata
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.errors import ArtifactError, ConfigError, LSTMInputError, RuntimeUnavailable


def providers_for(device: str) -> List[str]:
    """onnxruntime providers for ``device`` ("cpu" or "cuda").

    Raises:
        RuntimeUnavailable: CUDA asked for but this onnxruntime build or machine lacks it.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeUnavailable(
                "device='cuda' asked for, but onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu on a machine "
                "with CUDA, or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def cuda_available() -> bool:
    try:
        providers_for("cuda")
    except RuntimeUnavailable:
        return False
    return True


class OnnxLSTM:
    """An onnxruntime session over a ``deploy_lstm`` ONNX export.

    Args:
        path: the ``.onnx`` file.
        device: "cpu" or "cuda" (CUDA execution provider, falling back to CPU for
            nodes it lacks).
        intra_op_num_threads: onnxruntime's intra-op thread pool (0 = its default).
        inter_op_num_threads: onnxruntime's inter-op thread pool (0 = its default).
        session_options: a prepared ``onnxruntime.SessionOptions`` (overrides threads).

    For a bare LSTM export (graph inputs ``input``, ``h0``, ``c0`` [, ``lengths``]),
    :meth:`__call__` fills zero ``h0``/``c0`` and checks every input first.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        session_options: Optional[object] = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"no ONNX model at {self.path}")
        self.providers = providers_for(device)
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.intra_op_num_threads = intra_op_num_threads
            session_options.inter_op_num_threads = inter_op_num_threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options, providers=self.providers
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ArtifactError(f"onnxruntime cannot load {self.path}: {str(e).splitlines()[0]}") from e
        self.metadata: Dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        meta = ArtifactMetadata.from_strings(self.metadata, source=str(self.path))
        self.io: Optional[IOSpec] = meta.io
        #: the configuration of a bare LSTM export (None for a whole model)
        self.config: Optional[LSTMConfig] = meta.config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def has_lengths(self) -> bool:
        return contract.LENGTHS in self.input_names

    def __call__(
        self,
        input: np.ndarray,
        h0: Optional[np.ndarray] = None,
        c0: Optional[np.ndarray] = None,
        lengths: Optional[np.ndarray] = None,
    ) -> Arrays:
        """Run a bare LSTM export: returns (output, hn, cn) as numpy arrays.

        Raises:
            LSTMInputError: an input does not fit the exported model.
        """
        if self.io is None or self.config is None:
            raise LSTMInputError(
                f"{self.path} is not a bare deploy_lstm LSTM export (no {contract.META_CONFIG} "
                "metadata); use run() with a feed dict"
            )
        feeds = bare_feeds(self.config, self.io, self.path.name, input, h0, c0, lengths)
        if self.has_lengths and contract.LENGTHS not in feeds:
            feeds[contract.LENGTHS] = full_lengths(self.config, feeds[contract.INPUT])
        out = self.run(feeds)
        return out[contract.OUTPUT], out[contract.HN], out[contract.CN]

    def stream(
        self, batch: int = 1, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None
    ) -> "OnnxStream":
        """A stateful stream over this bare LSTM export: see :class:`OnnxStream`.

        Args:
            batch: sequences per step (fixed for the stream's life; ``reset`` keeps it).
            h0: initial hidden state, (num_layers, batch, proj_size or hidden_size); zeros when omitted.
            c0: initial cell state, (num_layers, batch, hidden_size); zeros when omitted.

        Raises:
            LSTMInputError: not a bare LSTM export, a bidirectional one, or a bad state.
        """
        return OnnxStream(self, batch, h0, c0)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run any export with a feed dict; names, ranks, dtypes and static sizes are checked first."""
        check_feeds(self.inputs, feeds, self.path.name)
        outs = self.session.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return dict(zip(self.output_names, outs))

    @property
    def inputs(self) -> Tuple[TensorSpec, ...]:
        """The graph inputs: from the I/O contract, or read off the session."""
        return self.io.inputs if self.io is not None else _specs(self.session.get_inputs())

    @property
    def outputs(self) -> Tuple[TensorSpec, ...]:
        """The graph outputs: from the I/O contract, or read off the session."""
        return self.io.outputs if self.io is not None else _specs(self.session.get_outputs())


def _specs(nodes: List["ort.NodeArg"]) -> Tuple[TensorSpec, ...]:
    """onnxruntime's inputs or outputs as tensor specs (symbolic sizes as dynamic axis names)."""
    return tuple(
        TensorSpec(n.name, tuple(d if isinstance(d, int) else str(d) for d in n.shape), ORT_TYPES.get(n.type, n.type))
        for n in nodes
    )


class OnnxRunner(Runner):
    """The runner of an ONNX artifact (kinds "onnx" and "onnx-int8"): an :class:`OnnxLSTM`
    behind the :class:`~deploy_lstm.runtime.base.Runner` interface.

    Args:
        path: the ``.onnx`` file.
        kind: the artifact kind it is ("onnx", or "onnx-int8" for a quantized model).
        device: as for :class:`OnnxLSTM`.
        intra_op_num_threads: as for :class:`OnnxLSTM`.
        inter_op_num_threads: as for :class:`OnnxLSTM`.
        session_options: as for :class:`OnnxLSTM`.

    Its :meth:`stream` is an :class:`OnnxStream` (onnxruntime I/O binding, the state never copied).

    Raises:
        ArtifactError: the file is missing or onnxruntime cannot load it.
        RuntimeUnavailable: ``device="cuda"`` where onnxruntime has no CUDA.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str = "onnx",
        device: str = "cpu",
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        session_options: Optional[object] = None,
    ) -> None:
        self.session = OnnxLSTM(
            path, device=device, intra_op_num_threads=intra_op_num_threads,
            inter_op_num_threads=inter_op_num_threads, session_options=session_options,
        )
        self.kind = kind
        self.path = self.session.path
        self.device = device
        self.io = self.session.io if self.session.io is not None else IOSpec(self.session.inputs, self.session.outputs)
        self.config = self.session.config

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return self.session.run(feeds)

    def stream(self, batch: int = 1, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None) -> "OnnxStream":
        """A stateful stream over onnxruntime's I/O binding: see :class:`OnnxStream` and :meth:`Runner.stream`."""
        self.check_streamable()
        return OnnxStream(self.session, batch, None if h0 is None else as_numpy(h0), None if c0 is None else as_numpy(c0))


class _Chunk:
    """Preallocated buffers and the two I/O bindings of one chunk length T."""

    def __init__(self, stream: "OnnxStream", steps: int) -> None:
        cfg, N = stream.config, stream.batch
        self.steps = steps
        x_shape = (N, steps, cfg.input_size) if cfg.batch_first else (steps, N, cfg.input_size)
        y_shape = (N, steps, cfg.real_hidden_size) if cfg.batch_first else (steps, N, cfg.real_hidden_size)
        self.x = stream._buffer(x_shape, stream.dtype)  # (np.ndarray | None, OrtValue): the input
        self.y = stream._buffer(y_shape, stream.dtype)  # the output
        lengths = stream._buffer((N,), np.dtype(np.int64)) if stream.lstm.has_lengths else None
        if lengths is not None:
            lengths[1].update_inplace(np.full((N,), steps, dtype=np.int64))
        # bindings[k]: the state in buffers k, out into buffers 1 - k (ping-pong: no copy of the state)
        self.bindings = []
        for k in (0, 1):
            b = stream.lstm.session.io_binding()
            b.bind_ortvalue_input(contract.INPUT, self.x[1])
            b.bind_ortvalue_input(contract.H0, stream._h[k][1])
            b.bind_ortvalue_input(contract.C0, stream._c[k][1])
            if lengths is not None:
                b.bind_ortvalue_input(contract.LENGTHS, lengths[1])
            b.bind_ortvalue_output(contract.OUTPUT, self.y[1])
            b.bind_ortvalue_output(contract.HN, stream._h[1 - k][1])
            b.bind_ortvalue_output(contract.CN, stream._c[1 - k][1])
            self.bindings.append(b)
        self.lengths = lengths  # kept alive with the bindings


class OnnxStream:
    """A bare LSTM export run chunk by chunk (or step by step), carrying (h, c).

    Made by :meth:`OnnxLSTM.stream`.  Concatenating the outputs of :meth:`push` along the
    time axis equals one :class:`OnnxLSTM` call on the whole sequence.

    What is preallocated: the state as two pairs of onnxruntime values (h, c), bound as
    the input of one call and the output of the same call into the other pair, then
    swapped (ping-pong: the state is never copied); per chunk length T, the input and
    output buffers, ``lengths`` (when the graph has it) and the two I/O bindings, made on
    the first chunk of that length and reused.  A call copies the chunk into the bound
    input (``OrtValue.update_inplace``) and runs ``run_with_iobinding``: no feed dict, no
    output allocation.  On ``device="cuda"`` the state and buffers live on the GPU and
    only the input and output cross (that path is written but not tested here).

    Not thread-safe: one stream per sequence (or per batch of sequences).

    Raises:
        LSTMInputError: not a bare LSTM export, bidirectional, or a bad initial state.
    """

    def __init__(self, lstm: OnnxLSTM, batch: int, h0: Optional[np.ndarray], c0: Optional[np.ndarray]) -> None:
        if lstm.config is None or lstm.io is None:
            raise LSTMInputError(
                f"{lstm.path.name} is not a bare deploy_lstm LSTM export (no {contract.META_CONFIG} metadata): "
                "a stream needs the graph inputs input, h0, c0 and outputs output, hn, cn"
            )
        if lstm.config.bidirectional:
            raise LSTMInputError(
                f"{lstm.path.name} is bidirectional: the reverse direction of a chunk needs the steps after it, "
                "so it cannot stream; run it on whole sequences"
            )
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise LSTMInputError(f"expected batch >= 1 (sequences per step), got {batch!r}")
        self.lstm = lstm
        self.config: LSTMConfig = lstm.config
        self.batch = int(batch)
        self.dtype = np.dtype(lstm.io.inputs[0].dtype)
        self.device = "cuda" if lstm.providers[0] == "CUDAExecutionProvider" else "cpu"
        cfg, N = self.config, self.batch
        self._h_shape = (cfg.num_layers, N, cfg.real_hidden_size)
        self._c_shape = (cfg.num_layers, N, cfg.hidden_size)
        self._h = [self._buffer(self._h_shape, self.dtype) for _ in (0, 1)]
        self._c = [self._buffer(self._c_shape, self.dtype) for _ in (0, 1)]
        self._chunks: Dict[int, _Chunk] = {}
        self._x_step_shape = (N, cfg.input_size)
        self._current = 0  # which pair of state buffers holds the state
        self.steps = 0  # time steps pushed since the last reset
        self.reset(h0, c0)

    def _buffer(self, shape: Tuple[int, ...], dtype: np.dtype) -> Tuple[Optional[np.ndarray], "ort.OrtValue"]:
        """(numpy array sharing the memory or None on a GPU, OrtValue) of ``shape``."""
        if self.device == "cpu":
            array = np.zeros(shape, dtype=dtype)
            return array, ort.OrtValue.ortvalue_from_numpy(array, "cpu", 0)  # shares `array`'s memory
        return None, ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype.type, "cuda", 0)

    def _chunk(self, steps: int) -> _Chunk:
        chunk = self._chunks.get(steps)
        if chunk is None:
            chunk = self._chunks[steps] = _Chunk(self, steps)
        return chunk

    def reset(self, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None) -> None:
        """Start again from ``(h0, c0)`` (zeros when omitted), same batch size.

        Raises:
            LSTMInputError: a state of another shape or dtype.
        """
        for name, value, shape, pair in ((contract.H0, h0, self._h_shape, self._h), (contract.C0, c0, self._c_shape, self._c)):
            value = state_array(name, None if value is None else as_numpy(value), shape, self.dtype)
            pair[0][1].update_inplace(np.ascontiguousarray(value))
        self._current = 0
        self.steps = 0

    @property
    def state(self) -> Tuple[np.ndarray, np.ndarray]:
        """Copies of the carried (h, c): (num_layers, batch, P), (num_layers, batch, H)."""
        k = self._current
        return self._h[k][1].numpy().copy(), self._c[k][1].numpy().copy()

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step: ``x`` (batch, input_size) in, the output (batch, P) out.

        Returns:
            A read-only view of the stream's output buffer on the CPU, overwritten by the
            next call: copy it to keep it (a new array on a GPU).

        Raises:
            LSTMInputError: ``x`` of another shape or dtype.
        """
        if not isinstance(x, np.ndarray):
            x = as_numpy(x)  # a torch tensor (its memory shared)
        if x.shape != self._x_step_shape or x.dtype != self.dtype:
            raise stream_input_error(x, self._x_step_shape, "one time step", self.config, self.batch, self.dtype)
        chunk = self._chunks.get(1) or self._chunk(1)
        chunk.x[1].update_inplace(x if x.flags.c_contiguous else np.ascontiguousarray(x))  # (N, I) into (1, N, I)
        self._run(chunk)
        y = chunk.y[0]
        if y is None:
            return chunk.y[1].numpy().reshape(self._x_step_shape[0], -1)
        out = y.reshape(self._x_step_shape[0], -1)
        out.flags.writeable = False
        return out

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Run a chunk of T steps, (T, batch, input_size) or (batch, T, input_size) with
        ``batch_first``; returns its output (a new array), the state carried on.

        Raises:
            LSTMInputError: a chunk of another batch size, feature size, rank or dtype.
        """
        x = chunk if isinstance(chunk, np.ndarray) else as_numpy(chunk)
        c = self._chunk(chunk_steps(x, self.config, self.batch, self.dtype))
        c.x[1].update_inplace(np.ascontiguousarray(x))
        self._run(c)
        return c.y[0].copy() if c.y[0] is not None else c.y[1].numpy()

    def _run(self, chunk: _Chunk) -> None:
        k = self._current
        self.lstm.session.run_with_iobinding(chunk.bindings[k])
        self._current = 1 - k
        self.steps += chunk.steps
