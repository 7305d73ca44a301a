"""Feeds checked against the I/O contract before a runtime sees them."""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple
import numpy as np
import deploy_lstm.nn.ops  # noqa: F401 -- registers deploy_lstm::fused_lstm, which fused AOTInductor packages call
from deploy_lstm.formats.contract import TensorSpec
from deploy_lstm.errors import LSTMInputError


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
