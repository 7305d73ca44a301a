"""Feeds checked against the I/O contract before a runtime sees them: a feed dict
(:func:`check_feeds`), and a bare LSTM's positional ``(input, h0, c0, lengths)`` with
nn.LSTM's defaults (:func:`bare_feeds`); a stream's state and chunks (:func:`state_array`,
:func:`chunk_steps`)."""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple
import numpy as np
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, TensorSpec
from deploy_lstm.errors import LSTMInputError
from deploy_lstm.nn.config import LSTMConfig


Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


def check_feeds(expected: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray], what: str) -> None:
    """Every input of ``expected`` is fed once with its rank, dtype and static sizes.

    Raises:
        LSTMInputError: naming the input and what was expected and what came.
    """
    names = [t.name for t in expected]
    unknown = sorted(set(feeds) - set(names))
    missing = [n for n in names if n not in feeds]
    if unknown or missing:
        raise LSTMInputError(
            f"{what} expects inputs {names}, got {sorted(feeds)}"
            + (f" (unknown: {unknown})" if unknown else "")
            + (f" (missing: {missing})" if missing else "")
        )
    sizes: Dict[str, Tuple[int, str]] = {}  # dynamic axis name -> (size, where it was seen)
    for spec in expected:
        value = np.asarray(feeds[spec.name])
        if value.ndim != len(spec.shape):
            raise LSTMInputError(f"expected {spec.name} of rank {len(spec.shape)} {shape_str(spec.shape)}, got shape {value.shape}")
        if value.dtype != np.dtype(spec.dtype):
            raise LSTMInputError(f"expected {spec.name} of dtype {spec.dtype}, got {value.dtype}")
        for i, (d, got) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(d, int) and d != got:
                raise LSTMInputError(f"expected {spec.name} of shape {shape_str(spec.shape)}, got {value.shape} (axis {i})")
            if isinstance(d, str):
                seen = sizes.setdefault(d, (got, f"{spec.name} axis {i}"))
                if seen[0] != got:
                    # AOTInductor would run anyway and read past the smaller tensor
                    raise LSTMInputError(
                        f"inputs disagree on {d!r}: {seen[1]} is {seen[0]}, {spec.name} axis {i} is {got} "
                        f"(shapes: {spec.name} {value.shape})"
                    )


ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
}


def shape_str(shape: Sequence[object]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def full_lengths(config: LSTMConfig, input: np.ndarray) -> np.ndarray:
    """``lengths`` = T for every sequence of a bare LSTM's ``input`` (what "no lengths" means)."""
    N, T = (input.shape[0], input.shape[1]) if config.batch_first else (input.shape[1], input.shape[0])
    return np.full((N,), T, dtype=np.int64)


def bare_feeds(
    config: LSTMConfig,
    io: IOSpec,
    what: str,
    input: np.ndarray,
    h0: Optional[np.ndarray] = None,
    c0: Optional[np.ndarray] = None,
    lengths: Optional[np.ndarray] = None,
) -> Dict[str, np.ndarray]:
    """The feeds of a bare LSTM artifact from nn.LSTM's arguments, each checked.

    ``h0``/``c0`` default to zeros; ``lengths`` is fed only when given (the caller fills
    full lengths where the artifact needs them).  ``what`` names the artifact in messages.

    Raises:
        LSTMInputError: an input of another rank, dtype or size than ``config`` and ``io``
            expect, lengths outside 1..T, or lengths for an artifact without that input.
    """
    x = np.asarray(input)
    spec = io.inputs[0]
    if x.ndim != 3:
        raise LSTMInputError(f"expected input of rank 3 with shape {shape_str(spec.shape)}, got shape {x.shape}")
    if x.dtype != np.dtype(spec.dtype):
        raise LSTMInputError(f"expected input of dtype {spec.dtype}, got {x.dtype}; convert with x.astype(np.{spec.dtype})")
    if x.shape[2] != config.input_size:
        raise LSTMInputError(
            f"expected input of shape {shape_str(spec.shape)} with {config.input_size} features, got shape {x.shape}"
        )
    N, T = (x.shape[0], x.shape[1]) if config.batch_first else (x.shape[1], x.shape[0])
    if N < 1 or T < 1:
        raise LSTMInputError(f"expected batch >= 1 and sequence >= 1, got batch {N}, sequence {T} (input shape {x.shape})")
    feeds = {contract.INPUT: np.ascontiguousarray(x)}
    for name, value, size in ((contract.H0, h0, config.real_hidden_size), (contract.C0, c0, config.hidden_size)):
        want = (config.num_states, N, size)
        value = np.zeros(want, dtype=x.dtype) if value is None else np.asarray(value)
        if value.shape != want:
            raise LSTMInputError(f"expected {name} of shape {want}, got {value.shape}")
        if value.dtype != x.dtype:
            raise LSTMInputError(f"expected {name} of dtype {x.dtype} (the input's), got {value.dtype}")
        feeds[name] = np.ascontiguousarray(value)
    if lengths is None:
        return feeds
    if contract.LENGTHS not in io.input_names:
        raise LSTMInputError(f"{what} was exported without a lengths input; re-export with lengths=True")
    lengths = np.asarray(lengths)
    if lengths.dtype != np.int64 or lengths.shape != (N,):
        raise LSTMInputError(f"expected lengths of dtype int64 and shape ({N},), got {lengths.dtype} of shape {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > T:
        raise LSTMInputError(
            f"lengths must lie in 1..{T} (the sequence length), got values from {lengths.min()} to {lengths.max()}"
        )
    feeds[contract.LENGTHS] = lengths
    return feeds


# --- streams: the state and the chunks of a bare LSTM run chunk by chunk -----------------------


def state_array(name: str, value: Optional[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A stream's initial ``h0``/``c0``: ``value`` (zeros when None) checked against ``shape`` and ``dtype``.

    Raises:
        LSTMInputError: a state of another shape or dtype.
    """
    value = np.zeros(shape, dtype=dtype) if value is None else np.asarray(value)
    if value.shape != shape or value.dtype != dtype:
        raise LSTMInputError(
            f"expected {name} of shape {shape} (num_layers, batch, size) and dtype {dtype}, "
            f"got shape {value.shape} and dtype {value.dtype}"
        )
    return value


def chunk_steps(x: np.ndarray, config: LSTMConfig, batch: int, dtype: np.dtype) -> int:
    """The time steps T of a stream's chunk: (T, batch, input_size), or (batch, T, input_size) with ``batch_first``.

    Raises:
        LSTMInputError: a chunk of another batch size, feature size, rank or dtype.
    """
    T = x.shape[1 if config.batch_first else 0] if x.ndim == 3 else 0
    want = (batch, T, config.input_size) if config.batch_first else (T, batch, config.input_size)
    if x.ndim != 3 or x.shape != want or T < 1 or x.dtype != dtype:
        layout = "(batch, T, input_size)" if config.batch_first else "(T, batch, input_size)"
        shown = want if T >= 1 else tuple("T" if i == (1 if config.batch_first else 0) else d for i, d in enumerate(want))
        raise stream_input_error(x, shown, f"a chunk {layout}", config, batch, dtype)
    return T


def stream_input_error(
    x: np.ndarray, want: Tuple[object, ...], what: str, config: LSTMConfig, batch: int, dtype: np.dtype
) -> LSTMInputError:
    """The error for a stream input ``x`` that is not ``want`` of the stream's dtype (a chunk or one step)."""
    if x.dtype != dtype:
        return LSTMInputError(f"expected {what} of dtype {dtype}, got {x.dtype}; convert with x.astype(np.{dtype})")
    axis = 0 if (len(want) == 2 or config.batch_first) else 1
    if x.ndim == len(want) and x.shape[-1] == config.input_size and x.shape[axis] != batch:
        return LSTMInputError(
            f"this stream carries state for batch {batch}, got {what} of shape {x.shape} "
            f"(batch {x.shape[axis]}); open another stream with stream(batch={x.shape[axis]})"
        )
    return LSTMInputError(f"expected {what} of shape {shape_str(want)}, got shape {x.shape}")
