"""Running exported artifacts: onnxruntime sessions and AOTInductor packages.

:class:`OnnxLSTM` wraps an onnxruntime ``InferenceSession`` of an export: provider
choice, zero initial state for a bare LSTM, every input checked against the I/O
contract before onnxruntime sees it, numpy in and out.  :class:`AotiPackage` does
the same for an AOTInductor ``.pt2``.  Validation (``validation.py``) runs both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort
import torch

from . import contract
from . import tracing  # noqa: F401 -- registers deploy_lstm::fused_lstm, which fused AOTInductor packages call
from .contract import IOSpec, LSTMConfig, TensorSpec
from .errors import ArtifactError, ConfigError, LSTMInputError, RuntimeUnavailable

__all__ = ["OnnxLSTM", "AotiPackage", "providers_for", "cuda_available", "check_feeds"]

Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


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
        intra_op_num_threads, inter_op_num_threads: onnxruntime thread pools (0 = its
            default).
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
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: Dict[str, str] = dict(meta)
        self.io: Optional[IOSpec] = IOSpec.from_json(meta[contract.META_IO]) if contract.META_IO in meta else None
        #: the configuration of a bare LSTM export (None for a whole model)
        self.config: Optional[LSTMConfig] = (
            LSTMConfig.from_dict(json.loads(meta[contract.META_CONFIG])) if contract.META_CONFIG in meta else None
        )
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
        cfg, io = self.config, self.io
        x = np.asarray(input)
        spec = io.inputs[0]
        if x.ndim != 3:
            raise LSTMInputError(f"expected input of rank 3 with shape {_shape_str(spec.shape)}, got shape {x.shape}")
        if x.dtype != np.dtype(spec.dtype):
            raise LSTMInputError(f"expected input of dtype {spec.dtype}, got {x.dtype}; convert with x.astype(np.{spec.dtype})")
        if x.shape[2] != cfg.input_size:
            raise LSTMInputError(
                f"expected input of shape {_shape_str(spec.shape)} with {cfg.input_size} features, got shape {x.shape}"
            )
        N, T = (x.shape[0], x.shape[1]) if cfg.batch_first else (x.shape[1], x.shape[0])
        if N < 1 or T < 1:
            raise LSTMInputError(f"expected batch >= 1 and sequence >= 1, got batch {N}, sequence {T} (input shape {x.shape})")
        feeds = {contract.INPUT: np.ascontiguousarray(x)}
        for name, value, size in ((contract.H0, h0, cfg.real_hidden_size), (contract.C0, c0, cfg.hidden_size)):
            want = (cfg.num_states, N, size)
            if value is None:
                value = np.zeros(want, dtype=x.dtype)
            value = np.asarray(value)
            if value.shape != want:
                raise LSTMInputError(f"expected {name} of shape {want}, got {value.shape}")
            if value.dtype != x.dtype:
                raise LSTMInputError(f"expected {name} of dtype {x.dtype} (the input's), got {value.dtype}")
            feeds[name] = np.ascontiguousarray(value)
        if lengths is not None and not self.has_lengths:
            raise LSTMInputError(
                f"{self.path.name} was exported without a lengths input; re-export with lengths=True"
            )
        if self.has_lengths:
            if lengths is None:
                lengths = np.full((N,), T, dtype=np.int64)
            lengths = np.asarray(lengths)
            if lengths.dtype != np.int64 or lengths.shape != (N,):
                raise LSTMInputError(
                    f"expected lengths of dtype int64 and shape ({N},), got {lengths.dtype} of shape {lengths.shape}"
                )
            if lengths.min() < 1 or lengths.max() > T:
                raise LSTMInputError(
                    f"lengths must lie in 1..{T} (the sequence length), got values from {lengths.min()} to {lengths.max()}"
                )
            feeds[contract.LENGTHS] = lengths
        out = self.run(feeds)
        return out[contract.OUTPUT], out[contract.HN], out[contract.CN]

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run any export with a feed dict; names, ranks, dtypes and static sizes are checked first."""
        check_feeds(self.inputs, feeds, self.path.name)
        outs = self.session.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return dict(zip(self.output_names, outs))

    @property
    def inputs(self) -> Tuple[TensorSpec, ...]:
        """The graph inputs: from the I/O contract, or read off the session."""
        if self.io is not None:
            return self.io.inputs
        return tuple(
            TensorSpec(i.name, tuple(d if isinstance(d, int) else str(d) for d in i.shape), _ORT_TYPES.get(i.type, i.type))
            for i in self.session.get_inputs()
        )


class AotiPackage:
    """An AOTInductor ``.pt2`` written by :func:`deploy_lstm.export_aoti`, run on numpy arrays
    fed by the flat input names of its I/O contract (a bare LSTM or a whole model).

    Raises:
        ArtifactError: the file is missing, not a package, or carries no I/O contract.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"no AOTInductor package at {self.path}")
        try:
            self.runner = torch._inductor.aoti_load_package(str(self.path))
        except Exception as e:
            raise ArtifactError(f"cannot load the AOTInductor package {self.path}: {str(e).splitlines()[0]}") from e
        meta = self.runner.get_metadata()
        if contract.META_IO not in meta:
            raise ArtifactError(f"{self.path} carries no {contract.META_IO} metadata; re-export it with deploy_lstm")
        self.io = IOSpec.from_json(meta[contract.META_IO])
        self.config = LSTMConfig.from_dict(json.loads(meta[contract.META_CONFIG])) if contract.META_CONFIG in meta else None
        self.input_names = self.io.input_names
        self.output_names = self.io.output_names

    @property
    def has_lengths(self) -> bool:
        return contract.LENGTHS in self.input_names

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run with a feed dict; inputs are checked against the package's contract first."""
        check_feeds(self.io.inputs, feeds, self.path.name)
        flat = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        outs = self.runner.loader.boxed_run(flat)  # flat in, flat out: any input structure
        return {n: t.numpy() for n, t in zip(self.output_names, outs)}


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
            raise LSTMInputError(f"expected {spec.name} of rank {len(spec.shape)} {_shape_str(spec.shape)}, got shape {value.shape}")
        if value.dtype != np.dtype(spec.dtype):
            raise LSTMInputError(f"expected {spec.name} of dtype {spec.dtype}, got {value.dtype}")
        for i, (d, got) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(d, int) and d != got:
                raise LSTMInputError(f"expected {spec.name} of shape {_shape_str(spec.shape)}, got {value.shape} (axis {i})")
            if isinstance(d, str):
                seen = sizes.setdefault(d, (got, f"{spec.name} axis {i}"))
                if seen[0] != got:
                    # AOTInductor would run anyway and read past the smaller tensor
                    raise LSTMInputError(
                        f"inputs disagree on {d!r}: {seen[1]} is {seen[0]}, {spec.name} axis {i} is {got} "
                        f"(shapes: {spec.name} {value.shape})"
                    )


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
}


def _shape_str(shape: Sequence[object]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
