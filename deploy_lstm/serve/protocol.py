"""The Open Inference Protocol (KServe v2, as Triton speaks it): requests and responses.

Pure data: JSON bodies with the binary tensor data extension in, numpy arrays out,
and back.  No HTTP, no gRPC, no onnxruntime here: ``http_server.py`` and
``grpc_server.py`` move bytes, ``engine.py`` runs the model.

An HTTP body is a JSON header, optionally followed by raw tensors; the header's
length comes in ``Inference-Header-Content-Length``.  An input with
``parameters.binary_data_size`` takes that many bytes from the tail, in input order
(little-endian, row-major).  An output is sent binary when the request asks for it
(per output ``parameters.binary_data``, or ``parameters.binary_data_output`` for all).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import zlib
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from deploy_lstm.errors import DeployLSTMError, InvalidRequest, ModelNotFound, ServerBusy

__all__ = [
    "DATATYPES",
    "InferRequest",
    "RequestedOutput",
    "datatype_of",
    "dtype_of",
    "decode_http",
    "encode_http",
    "decompress",
    "compress",
    "sequence_key",
    "HEADER_LENGTH",
    "EXTENSIONS",
    "RequestTooLarge",
    "status_of",
]

HEADER_LENGTH = "inference-header-content-length"

#: the v2 extensions the server implements (GET /v2, ServerMetadata)
EXTENSIONS = ["binary_tensor_data", "model_configuration", "sequence", "model_repository(index)"]

#: v2 datatype -> numpy dtype (BYTES, the string tensor, is not an LSTM's)
DATATYPES: Dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {v: k for k, v in DATATYPES.items()}

SequenceId = Union[int, str]


def datatype_of(dtype: Union[str, np.dtype]) -> str:
    """The v2 datatype of a numpy dtype ("float32" -> "FP32")."""
    return _NAMES[np.dtype(dtype)]


def dtype_of(datatype: str, what: str) -> np.dtype:
    """The numpy dtype of a v2 datatype.

    Raises:
        InvalidRequest: an unknown datatype (or BYTES).
    """
    if datatype not in DATATYPES:
        raise InvalidRequest(f"{what}: unsupported datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")
    return DATATYPES[datatype]


@dataclasses.dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclasses.dataclass
class InferRequest:
    """One inference request, transport-neutral."""

    inputs: Dict[str, np.ndarray]
    id: Optional[str] = None
    outputs: Optional[List[RequestedOutput]] = None  # None: every output
    parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def binary_output(self) -> bool:
        """Outputs not named in ``outputs`` go binary (``binary_data_output``)."""
        return bool(self.parameters.get("binary_data_output", False))

    @property
    def sequence_id(self) -> Optional[SequenceId]:
        """The stream this chunk belongs to; None (or Triton's 0 / "") for a stateless request."""
        value = self.parameters.get("sequence_id")
        if value is None or value == 0 or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidRequest(f"sequence_id must be an integer or a string, got {type(value).__name__} {value!r}")
        return value

    def flag(self, name: str) -> bool:
        value = self.parameters.get(name, False)
        if not isinstance(value, bool):
            raise InvalidRequest(f"{name} must be a boolean, got {type(value).__name__} {value!r}")
        return value


def sequence_key(value: SequenceId) -> Tuple[str, SequenceId]:
    """Integer and string sequence ids are distinct, as in Triton (7 is not "7")."""
    return ("int" if isinstance(value, int) else "str", value)


# -- errors ---------------------------------------------------------------------------------


class RequestTooLarge(InvalidRequest):
    """A body over the server's limit: HTTP 413."""


def status_of(error: BaseException) -> tuple:
    """(HTTP status, gRPC status code name, message) of an error: the one table."""
    if isinstance(error, RequestTooLarge):
        return 413, "RESOURCE_EXHAUSTED", str(error)
    if isinstance(error, ModelNotFound):
        return 404, "NOT_FOUND", str(error)
    if isinstance(error, ServerBusy):
        return 503, "UNAVAILABLE", str(error)
    if isinstance(error, (DeployLSTMError, ValueError)):  # InvalidRequest, LSTMInputError: the client's input
        return 400, "INVALID_ARGUMENT", str(error)
    return 500, "INTERNAL", f"internal error: {type(error).__name__}: {error}"


# -- bodies ---------------------------------------------------------------------------------


def decompress(body: bytes, encoding: Optional[str], limit: int) -> bytes:
    """Undo ``Content-Encoding`` gzip/deflate, refusing to inflate past ``limit`` bytes.

    Raises:
        InvalidRequest: an unknown encoding, a corrupt stream, or too large once inflated.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidRequest(f"unsupported Content-Encoding {encoding!r}; expected gzip, deflate or none")
    # wbits 47: zlib or gzip framing, detected; -15: raw deflate (some clients send that as "deflate")
    for wbits in ((47,) if encoding == "gzip" else (47, -15)):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as e:
            error = e
            continue
        if len(out) > limit:
            raise InvalidRequest(f"request body inflates past the limit of {limit} bytes")
        if not inflater.eof:
            raise InvalidRequest(f"{encoding} request body is truncated")
        return out
    raise InvalidRequest(f"request body is not valid {encoding} data: {error}")


def compress(body: bytes, accept_encoding: Optional[str]) -> Tuple[bytes, Optional[str]]:
    """Compress a response as the client accepts (gzip before deflate); (body, encoding or None)."""
    accepted = {e.split(";")[0].strip().lower() for e in (accept_encoding or "").split(",")}
    if "gzip" in accepted:
        return gzip.compress(body, compresslevel=1), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 1), "deflate"
    return body, None


def _parameters(value: Any, what: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} parameters must be a JSON object, got {type(value).__name__}")
    return value


def _shape(value: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise InvalidRequest(f"{what}: shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def decode_http(body: bytes, header_length: Optional[str]) -> InferRequest:
    """Parse an HTTP infer body (JSON, or JSON + binary tensors).

    Raises:
        InvalidRequest: malformed JSON or framing, a tensor whose data does not fit its
            shape and datatype; the message says what was expected.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise InvalidRequest(f"Inference-Header-Content-Length is {n}, but the body has {len(body)} bytes")
        header, tail = body[:n], memoryview(body)[n:]
    else:
        header, tail = body, memoryview(b"")
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidRequest(f"request is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest(f"request must be a JSON object, got {type(doc).__name__}")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("request needs a non-empty 'inputs' list")
    inputs: Dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequest(f"inputs[{i}] must be an object with a 'name'")
        name = item["name"]
        if name in inputs:
            raise InvalidRequest(f"input {name!r} is given twice")
        shape = _shape(item.get("shape"), f"input {name!r}")
        dtype = dtype_of(item.get("datatype"), f"input {name!r}")  # type: ignore[arg-type]
        params = _parameters(item.get("parameters"), f"input {name!r}")
        count = math.prod(shape)
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0:
                raise InvalidRequest(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
            if size != count * dtype.itemsize:
                raise InvalidRequest(
                    f"input {name!r}: binary_data_size is {size} bytes, but shape {list(shape)} of "
                    f"{item['datatype']} needs {count * dtype.itemsize}"
                )
            if offset + size > len(tail):
                raise InvalidRequest(
                    f"input {name!r}: expected {size} bytes of binary data, only {len(tail) - offset} left in the body"
                )
            inputs[name] = np.frombuffer(tail[offset:offset + size], dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
            offset += size
        else:
            if "data" not in item:
                raise InvalidRequest(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
            try:
                array = np.asarray(item["data"], dtype=dtype)
            except (TypeError, ValueError, OverflowError) as e:
                raise InvalidRequest(f"input {name!r}: data is not {item['datatype']}: {e}") from None
            if array.size != count:
                raise InvalidRequest(f"input {name!r}: shape {list(shape)} needs {count} values, data has {array.size}")
            inputs[name] = array.reshape(shape)
    if offset != len(tail):
        raise InvalidRequest(f"the body has {len(tail) - offset} bytes of binary data no input claims")
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise InvalidRequest("'outputs' must be a list")
        outputs = []
        for i, item in enumerate(doc["outputs"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidRequest(f"outputs[{i}] must be an object with a 'name'")
            params = _parameters(item.get("parameters"), f"output {item['name']!r}")
            outputs.append(RequestedOutput(item["name"], bool(params.get("binary_data", False))))
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"request 'id' must be a string, got {type(request_id).__name__}")
    return InferRequest(inputs, request_id, outputs, _parameters(doc.get("parameters"), "request"))


def encode_http(
    model: str, version: str, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> Tuple[bytes, Optional[int]]:
    """The HTTP response body for ``outputs``; (body, JSON header length if binary data follows)."""
    binary_of = {o.name: o.binary for o in request.outputs} if request.outputs is not None else {}
    described, tail = [], []
    for name, value in outputs.items():
        value = np.ascontiguousarray(value)
        entry: Dict[str, Any] = {"name": name, "datatype": datatype_of(value.dtype), "shape": list(value.shape)}
        if binary_of.get(name, request.binary_output):
            data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            tail.append(data)
        else:
            entry["data"] = value.reshape(-1).tolist()
        described.append(entry)
    doc: Dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        doc["id"] = request.id
    header = json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()
    if not tail:
        return header, None
    return b"".join([header, *tail]), len(header)
