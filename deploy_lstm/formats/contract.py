"""The I/O contract of an exported LSTM: names, shapes, dynamic axes, dtypes, and the metadata keys.

Declared once here and used by the exporters, the runtimes, validation, the CLI and
the serving code paths.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple, Union

from deploy_lstm.errors import ArtifactError
from deploy_lstm.formats import strict_json
from deploy_lstm.nn.config import LSTMConfig

# the graph names of a bare LSTM (nn.LSTM's vocabulary), and its two dynamic axes
INPUT = "input"
H0 = "h0"
C0 = "c0"
LENGTHS = "lengths"
OUTPUT = "output"
HN = "hn"
CN = "cn"
BATCH = "batch"
SEQUENCE = "sequence"

#: metadata keys written into exported artifacts, encoded and decoded only by
#: deploy_lstm.formats.metadata.ArtifactMetadata (ONNX metadata_props, TorchScript's
#: extra file, AOTInductor metadata); the C++ readers use the same keys
META_CONFIG = "deploy_lstm.config"  # a bare LSTM's configuration (LSTMConfig JSON)
META_LSTMS = "deploy_lstm.lstms"  # a whole model's {submodule: LSTMConfig JSON}
META_IO = "deploy_lstm.io"  # the graph's IOSpec JSON
META_VERSION = "deploy_lstm.version"  # the deploy_lstm that wrote the artifact
META_TORCH = "torch.version"  # the torch that wrote it
META_EXPORTER = "deploy_lstm.exporter"  # ONNX: "dynamo" or "torchscript"
META_ROUTES = "deploy_lstm.lstm_ops"  # {submodule: "native" | "scan" | "loop" | "fused"}
META_QUANTIZED = "deploy_lstm.quantized"  # "int8-dynamic" on a quantized model

Dim = Union[int, str]


@dataclasses.dataclass
class ModelSpec:
    """A whole model and how to call it: what a ``MODULE:CALLABLE`` model factory returns.

    ``input_names``/``output_names`` name the flattened tensors of ``example_inputs``
    and of the outputs; ``dynamic_axes`` ({name: {axis: dim name}}) marks the axes
    that vary.  Validation varies dims whose name contains "batch" as the batch size
    and every other dynamic dim as the sequence length.
    """

    model: Any  # torch.nn.Module
    example_inputs: Tuple[Any, ...]  # positional arguments: tensors, or tuples/lists/dicts of them
    input_names: Optional[List[str]] = None
    output_names: Optional[List[str]] = None
    dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None
    example_kwargs: Optional[Dict[str, Any]] = None  # keyword arguments, after the positional ones

    def call_arguments(self) -> Dict[str, Any]:
        """The keyword arguments of ``export_onnx``/``export_aoti``/``validate`` that describe this model."""
        return dict(
            example_inputs=self.example_inputs, example_kwargs=self.example_kwargs, input_names=self.input_names,
            output_names=self.output_names, dynamic_axes=self.dynamic_axes,
        )


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: a name, a shape (str = dynamic axis), a dtype."""

    name: str
    shape: Tuple[Dim, ...]
    dtype: str  # numpy dtype name: "float32", "float64", "int64"

    def dynamic_axes(self) -> Dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """An artifact's flat graph inputs and outputs, in call order (the manifest's ``io``)."""

    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> Dict[str, Dict[int, str]]:
        """``torch.onnx.export(dynamic_axes=...)`` for every tensor with one."""
        return {t.name: t.dynamic_axes() for t in self.inputs + self.outputs if t.dynamic_axes()}

    def input(self, name: str) -> Optional[TensorSpec]:
        return next((t for t in self.inputs if t.name == name), None)

    def to_json(self) -> str:
        return strict_json.dumps(dataclasses.asdict(self), "an I/O contract")

    @classmethod
    def from_json(cls, text: str, where: str = "I/O contract") -> "IOSpec":
        """Decode :meth:`to_json` (strict JSON, every field type-checked).

        Raises:
            ArtifactError: not strict JSON or not an I/O contract.
        """
        return cls.from_dict(strict_json.loads(text, where), where)

    @classmethod
    def from_dict(cls, d: Any, where: str = "I/O contract") -> "IOSpec":
        """An ``IOSpec`` from its decoded JSON object, every field type-checked.

        Raises:
            ArtifactError: a member missing or of the wrong type.
        """

        def specs(side: str) -> Tuple[TensorSpec, ...]:
            items = strict_json.field(d, side, list, where)
            out = []
            for i, item in enumerate(items):
                at = f"{where}: {side}[{i}]"
                shape = strict_json.field(item, "shape", list, at)
                if not all(isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool) and s >= 0) for s in shape):
                    raise ArtifactError(f"{at}: 'shape' must hold sizes >= 0 and dynamic axis names, got {shape}")
                out.append(TensorSpec(strict_json.field(item, "name", str, at), tuple(shape), strict_json.field(item, "dtype", str, at)))
            return tuple(out)

        return cls(specs("inputs"), specs("outputs"))



class NamedIO:
    """Something that carries an I/O contract as ``io`` (a signature, a runner): its flat
    input and output names, in the order a positional call takes and returns them."""

    io: IOSpec

    @property
    def input_names(self) -> List[str]:
        return self.io.input_names

    @property
    def output_names(self) -> List[str]:
        return self.io.output_names


def lstm_io(config: LSTMConfig, lengths: bool = False, dtype: str = "float32") -> IOSpec:
    """The graph inputs/outputs of a bare exported LSTM.

    ``input``/``output`` follow ``batch_first``; ``h0``/``c0``/``hn``/``cn`` are
    (num_layers * num_directions, batch, size) as in ``nn.LSTM``.
    """
    seq_batch: Tuple[Dim, Dim] = (BATCH, SEQUENCE) if config.batch_first else (SEQUENCE, BATCH)
    S, P, H = config.num_states, config.real_hidden_size, config.hidden_size
    out_features = config.num_directions * P
    inputs = [
        TensorSpec(INPUT, seq_batch + (config.input_size,), dtype),
        TensorSpec(H0, (S, BATCH, P), dtype),
        TensorSpec(C0, (S, BATCH, H), dtype),
    ]
    if lengths:
        inputs.append(TensorSpec(LENGTHS, (BATCH,), "int64"))
    outputs = [
        TensorSpec(OUTPUT, seq_batch + (out_features,), dtype),
        TensorSpec(HN, (S, BATCH, P), dtype),
        TensorSpec(CN, (S, BATCH, H), dtype),
    ]
    return IOSpec(tuple(inputs), tuple(outputs))


def batch_axis(spec: TensorSpec) -> Optional[int]:
    """The axis of ``spec`` that is the batch: the dynamic dim whose name contains "batch"."""
    return next((i for i, d in enumerate(spec.shape) if isinstance(d, str) and BATCH in d), None)


def sequence_axis(spec: TensorSpec) -> Optional[int]:
    """The axis of ``spec`` that is the time: any other dynamic dim (the validation convention)."""
    return next((i for i, d in enumerate(spec.shape) if isinstance(d, str) and BATCH not in d), None)


def state_pairs(io: IOSpec) -> List[Tuple[str, str]]:
    """The (state input, state output) pairs a stream carries from one chunk to the next.

    nn.LSTM's naming: an input ``<p>h0``/``<p>c0`` pairs with the output ``<p>hn``/``<p>cn``
    of the same shape, dtype and batch axis (``h0`` -> ``hn`` and ``c0`` -> ``cn`` for a bare
    LSTM; ``dec_h0`` -> ``dec_hn`` in a whole model).
    """
    pairs = []
    for t in io.inputs:
        if not t.name.endswith(("h0", "c0")):
            continue
        out_name = t.name[:-1] + "n"
        out = next((o for o in io.outputs if o.name == out_name), None)
        if out is not None and out.shape == t.shape and out.dtype == t.dtype and batch_axis(t) is not None:
            pairs.append((t.name, out_name))
    return pairs
