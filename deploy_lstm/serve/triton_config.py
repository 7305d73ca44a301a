"""Triton's model configuration, built in one place: typed settings in, Triton's own
``model_config_pb2.ModelConfig`` (from ``tritonclient``) out.

Both consumers read the same message: the repository writer writes it as
``config.pbtxt`` (:func:`to_text`) and the server answers it on its config endpoint,
as Triton's JSON over HTTP (:func:`to_json`) and as the message itself over gRPC.
Built field by field through the protobuf and serialised with ``text_format`` /
``json_format``, as pytriton does: never a string template.  :func:`parse_text` reads
a ``config.pbtxt`` back.

Dims follow Triton: with ``max_batch_size > 0`` the batch axis is left out of
``dims``; with ``max_batch_size`` 0 it is inside; ``-1`` is a dynamic axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as pb

from deploy_lstm.errors import ArtifactError
from deploy_lstm.formats.contract import TensorSpec

__all__ = [
    "VERSION", "TRITON_DTYPES", "START", "END", "CORRID",
    "TritonTensor", "ImplicitState", "SequenceBatching", "TritonConfig",
    "data_type", "tensors_of", "to_text", "to_json", "parse_text",
]

VERSION = "1"  # the version of a model without versions (an export folder on its own)

#: numpy dtype name -> Triton data type
TRITON_DTYPES: Dict[str, str] = {
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int16": "TYPE_INT16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
}

#: control inputs of a stream model (Triton's sequence batcher fills them per request)
START = "START"  # int32 (N, 1): 1 on a sequence's first request
END = "END"  # int32 (N, 1): 1 on its last request
CORRID = "CORRID"  # uint64 (N, 1): the correlation ID (tritonclient's integer sequence_id is a uint64)

_Control = pb.ModelSequenceBatching.Control
_64_BIT = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
           FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def data_type(dtype: str) -> int:
    """Triton's ``DataType`` of a numpy dtype name ("float32" -> TYPE_FP32)."""
    return pb.DataType.Value(TRITON_DTYPES[dtype])


@dataclasses.dataclass(frozen=True)
class TritonTensor:
    """An input or output of a model configuration."""

    name: str
    dtype: str  # numpy dtype name
    dims: Tuple[int, ...]  # -1: dynamic
    optional: bool = False  # an input the client may leave out

    @classmethod
    def of(cls, spec: TensorSpec, *, batch_first: bool = False, optional: bool = False) -> "TritonTensor":
        """The tensor of a contract spec: whole (``max_batch_size`` 0), or, ``batch_first``,
        a batch-first spec with the batch left out (``max_batch_size > 0``)."""
        shape = spec.shape[1:] if batch_first else spec.shape
        return cls(spec.name, spec.dtype, tuple(d if isinstance(d, int) else -1 for d in shape), optional)

    def model_input(self) -> pb.ModelInput:
        return pb.ModelInput(name=self.name, data_type=data_type(self.dtype), dims=self.dims, optional=self.optional)

    def model_output(self) -> pb.ModelOutput:
        return pb.ModelOutput(name=self.name, data_type=data_type(self.dtype), dims=self.dims)


@dataclasses.dataclass(frozen=True)
class ImplicitState:
    """A state pair the sequence batcher carries from one request of a sequence to the next."""

    input: TritonTensor  # the state input (its name, dtype and dims)
    output_name: str  # the state output fed back as ``input`` on the next request
    zero_start: bool = False  # an ``initial_state`` of zeros, named "<input>_zero"

    def proto(self) -> pb.ModelSequenceBatching.State:
        dtype = data_type(self.input.dtype)
        state = pb.ModelSequenceBatching.State(
            input_name=self.input.name, output_name=self.output_name, data_type=dtype, dims=self.input.dims
        )
        if self.zero_start:
            state.initial_state.add(name=f"{self.input.name}_zero", data_type=dtype, dims=self.input.dims, zero_data=True)
        return state


@dataclasses.dataclass(frozen=True)
class SequenceBatching:
    """A stateful model's scheduling: sequences, their state, their controls."""

    idle_us: int  # a sequence idle this long is dropped
    states: Tuple[ImplicitState, ...] = ()
    controls: bool = False  # START and END (int32 0/1) and CORRID (uint64) control inputs
    max_candidates: Optional[int] = None  # the "oldest" strategy with this many candidate sequences
    queue_delay_us: int = 0  # the oldest strategy's max_queue_delay_microseconds

    def proto(self) -> pb.ModelSequenceBatching:
        seq = pb.ModelSequenceBatching(max_sequence_idle_microseconds=self.idle_us, state=[s.proto() for s in self.states])
        if self.max_candidates is not None:
            seq.oldest.max_candidate_sequences = self.max_candidates
            seq.oldest.max_queue_delay_microseconds = self.queue_delay_us
        if self.controls:
            for name, kind in ((START, _Control.CONTROL_SEQUENCE_START), (END, _Control.CONTROL_SEQUENCE_END)):
                seq.control_input.add(name=name, control=[_Control(kind=kind, int32_false_true=[0, 1])])
            corrid = _Control(kind=_Control.CONTROL_SEQUENCE_CORRID, data_type=pb.TYPE_UINT64)
            seq.control_input.add(name=CORRID, control=[corrid])
        return seq


@dataclasses.dataclass(frozen=True)
class TritonConfig:
    """What a model configuration says; :meth:`proto` is Triton's ``ModelConfig`` of it.

    Exactly one of ``queue_delay_us`` (dynamic batching) and ``sequence`` (sequence
    batching) is set, or neither.
    """

    name: str
    inputs: Tuple[TritonTensor, ...]
    outputs: Tuple[TritonTensor, ...]
    max_batch_size: int = 0  # 0: dims hold the batch axis
    backend: str = "onnxruntime"
    platform: str = ""
    instances: int = 0  # model instances on CPU (instance_group); 0: Triton's default
    queue_delay_us: Optional[int] = None  # dynamic batching's max_queue_delay_microseconds
    sequence: Optional[SequenceBatching] = None
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    all_versions: bool = False  # version_policy { all {} }: every version folder loads (Triton's default: the latest)

    def proto(self) -> pb.ModelConfig:
        assert self.queue_delay_us is None or self.sequence is None, "dynamic or sequence batching, not both"
        config = pb.ModelConfig(
            name=self.name, platform=self.platform, backend=self.backend, max_batch_size=self.max_batch_size,
            input=[t.model_input() for t in self.inputs], output=[t.model_output() for t in self.outputs],
        )
        if self.instances:
            config.instance_group.add(count=self.instances, kind=pb.ModelInstanceGroup.KIND_CPU)
        if self.queue_delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = self.queue_delay_us
        if self.sequence is not None:
            config.sequence_batching.CopyFrom(self.sequence.proto())
        for key, value in self.parameters.items():
            config.parameters[key].string_value = value
        if self.all_versions:
            config.version_policy.all.SetInParent()
        return config


def to_text(config: pb.ModelConfig) -> str:
    """``config.pbtxt``: protobuf text format, repeated numbers as ``[a, b]``."""
    return text_format.MessageToString(config, use_short_repeated_primitives=True)


def to_json(config: pb.ModelConfig) -> Dict[str, Any]:
    """Triton's JSON form of a configuration (its model config endpoint): protobuf field
    names, every field without presence printed, and the 64-bit integers (``dims``, the
    microsecond settings) as JSON numbers where protobuf's JSON writes strings."""
    doc = json_format.MessageToDict(config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    _numbers_for_64_bit(config, doc)
    return doc


def _numbers_for_64_bit(message: Message, doc: Dict[str, Any]) -> None:
    """Turn ``json_format``'s strings for 64-bit integer fields back into numbers, in place."""
    for field in message.DESCRIPTOR.fields:
        if field.name not in doc:
            continue
        value = doc[field.name]
        if field.type in _64_BIT:
            doc[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            entries = getattr(message, field.name)
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    for key, sub in entries.items():
                        _numbers_for_64_bit(sub, value[str(key)])
                elif value_field.type in _64_BIT:
                    doc[field.name] = {k: int(v) for k, v in value.items()}
            elif isinstance(value, list):  # a repeated message field
                for sub, sub_doc in zip(entries, value):
                    _numbers_for_64_bit(sub, sub_doc)
            else:
                _numbers_for_64_bit(entries, value)


def parse_text(text: str, where: str = "config.pbtxt") -> pb.ModelConfig:
    """A ``config.pbtxt`` parsed as Triton's ``ModelConfig``.

    Raises:
        ArtifactError: the text does not parse (unknown field or enum value, bad syntax).
    """
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ArtifactError(f"{where} does not parse as a Triton ModelConfig: {e}") from e
    return config


def tensors_of(specs: Sequence[TensorSpec], *, batch_first: bool = False) -> Tuple[TritonTensor, ...]:
    """:meth:`TritonTensor.of` for each spec."""
    return tuple(TritonTensor.of(s, batch_first=batch_first) for s in specs)
