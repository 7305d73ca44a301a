"""The Open Inference Protocol (KServe v2, as Triton speaks it): requests and responses.

Pure data: JSON bodies with the binary tensor data extension in, numpy arrays out,
and back.  No HTTP, no gRPC, no onnxruntime here: ``http_server.py`` and
``grpc_server.py`` move bytes, ``engine.py`` runs the model.

An HTTP body is a JSON header, optionally followed by raw tensors; the header's
length comes in ``Inference-Header-Content-Length``.  An input with
``parameters.binary_data_size`` takes that many bytes from the tail, in input order
(little-endian, row-major).  An output is sent binary when the request asks for it
(per output ``parameters.binary_data``, or ``parameters.binary_data_output`` for all).

Everything here comes from the network and is checked before it is used: each field's type
(a wrong type is a 400, never a 500), parameter values (scalars; sequence ids of at most
:data:`MAX_SEQUENCE_ID_BYTES`), shapes (at most :data:`MAX_RANK` dimensions, and at most
the body limit in bytes), and the JSON itself (:mod:`~deploy_lstm.serve.bounded_json`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import ctypes
import math
import reprlib
import secrets
import zlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from deploy_lstm.errors import DeployLSTMError, InvalidRequest, ModelNotFound, ServerBusy
from deploy_lstm.serve import bounded_json
from deploy_lstm.serve.bounded_json import RequestTooLarge

__all__ = [
    "INLINE_BYTES", "decode_inline", "encode_inline", "decode_and_release",
    "DATATYPES",
    "InferRequest",
    "RequestedOutput",
    "datatype_of",
    "dtype_of",
    "decode_http",
    "decode_http_body",
    "encode_http",
    "encode_http_body",
    "check_parameters",
    "check_size",
    "check_sequence_id",
    "show",
    "MAX_REQUEST_BYTES",
    "MAX_SEQUENCE_ID_BYTES",
    "MAX_RANK",
    "decompress",
    "compress",
    "sequence_key",
    "HEADER_LENGTH",
    "EXTENSIONS",
    "RequestTooLarge",
    "status_of",
]

HEADER_LENGTH = "inference-header-content-length"

MAX_REQUEST_BYTES = 64 << 20  # the default body limit (--max-request-bytes): HTTP after inflating, gRPC per message
MAX_SEQUENCE_ID_BYTES = 128  # a string sequence id's UTF-8 bytes, at most: Triton's limit on string correlation ids
MAX_RANK = 32  # dimensions of a tensor, at most (numpy's own limit)
_INT64, _UINT64 = 1 << 63, 1 << 64

#: the v2 extensions the server implements (GET /v2, ServerMetadata)
EXTENSIONS = ["binary_tensor_data", "model_configuration", "sequence", "model_repository(index)", "statistics"]

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


def dtype_of(datatype: Any, what: str) -> np.dtype:
    """The numpy dtype of a v2 datatype.

    Raises:
        InvalidRequest: an unknown datatype (or BYTES), or not a string.
    """
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidRequest(f"{what}: unsupported datatype {show(datatype)}; expected one of {', '.join(DATATYPES)}")
    return DATATYPES[datatype]


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 3, 80, 80, 8, 8


def show(value: Any) -> str:
    """A client's value in an error message: its repr, cut short (no recursion, no megabytes echoed back)."""
    if type(value) is str and len(value) <= _SHORT.maxstring:  # a tensor's name, on every request: repr is reprlib's answer
        return repr(value)
    return _SHORT.repr(value)


def check_sequence_id(value: Any) -> Optional[SequenceId]:
    """A ``sequence_id`` parameter: None (or Triton's 0 / "") for a stateless request, else the id.

    Raises:
        InvalidRequest: not an integer or a string, an integer outside 64 bits, or a string
            longer than :data:`MAX_SEQUENCE_ID_BYTES` bytes.
    """
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f"sequence_id must be an integer or a string, got {type(value).__name__} {show(value)}")
    if isinstance(value, int) and not -_INT64 <= value < _UINT64:
        raise InvalidRequest(f"sequence_id must fit in 64 bits (int64 or uint64), got {show(value)}")
    if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > MAX_SEQUENCE_ID_BYTES:
        raise InvalidRequest(
            f"a string sequence_id is at most {MAX_SEQUENCE_ID_BYTES} bytes (as in Triton), got "
            f"{len(value.encode('utf-8', 'surrogatepass'))}: {show(value)}"
        )
    return value


#: parameters with a meaning here, and the type each must have (others: any scalar, ignored)
_BOOLEANS = ("sequence_start", "sequence_end", "binary_data_output", "binary_data")


def check_parameters(value: Any, what: str) -> Dict[str, Any]:
    """A ``parameters`` object: string keys, scalar values, the known ones of their type.

    Raises:
        InvalidRequest: naming the parameter, the type expected and the value that came.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} parameters must be a JSON object, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(item, (str, int, float)) and item is not None:
            raise InvalidRequest(f"{what} parameter {show(key)} must be a string, number or boolean, got {type(item).__name__}")
        if key in _BOOLEANS and not isinstance(item, bool):
            raise InvalidRequest(f"{what} parameter {key} must be a boolean, got {type(item).__name__} {show(item)}")
        if key == "binary_data_size" and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
            raise InvalidRequest(f"{what}: binary_data_size must be a non-negative integer, got {show(item)}")
    check_sequence_id(value.get("sequence_id"))
    return value


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
        return check_sequence_id(self.parameters.get("sequence_id"))

    def flag(self, name: str) -> bool:
        value = self.parameters.get(name, False)
        if not isinstance(value, bool):
            raise InvalidRequest(f"{name} must be a boolean, got {type(value).__name__} {show(value)}")
        return value


def sequence_key(value: SequenceId) -> Tuple[str, SequenceId]:
    """Integer and string sequence ids are distinct, as in Triton (7 is not "7")."""
    return ("int" if isinstance(value, int) else "str", value)


# -- errors ---------------------------------------------------------------------------------


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


def decompress(body: bounded_json.Buffer, encoding: Optional[str], limit: int) -> bounded_json.Buffer:
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
            raise RequestTooLarge(f"request body inflates past this server's limit of {limit} bytes (--max-request-bytes)")
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


def _shape(value: Any, what: str) -> Tuple[int, ...]:
    if (
        not isinstance(value, list) or len(value) > MAX_RANK
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < _INT64 for d in value)
    ):
        raise InvalidRequest(f"{what}: shape must be a list of at most {MAX_RANK} non-negative integers, got {show(value)}")
    return tuple(value)


def check_size(shape: Tuple[int, ...], dtype: np.dtype, max_bytes: int, what: str) -> int:
    """The element count of ``shape``, once its bytes are known to fit in ``max_bytes``.

    Raises:
        RequestTooLarge: the tensor would be larger than the body limit.
    """
    count = math.prod(shape)
    # an empty tensor is refused too when its other dimensions could not fit: numpy cannot even
    # shape an empty array as (0, 3, 2**31, 2**31) ("array is too big"), a ValueError, not a 400
    if math.prod(d for d in shape if d) * dtype.itemsize > max_bytes:
        raise RequestTooLarge(
            f"{what}: shape {list(shape)} of {datatype_of(dtype)} has dimensions whose product is over this "
            f"server's limit of {max_bytes} bytes (--max-request-bytes), although it holds no value"
        )
    if count * dtype.itemsize > max_bytes:
        raise RequestTooLarge(
            f"{what}: shape {list(shape)} of {datatype_of(dtype)} is {count * dtype.itemsize} bytes, over this "
            f"server's limit of {max_bytes} (--max-request-bytes)"
        )
    return count


def _split(body: bounded_json.Buffer, header_length: Optional[str]) -> Tuple[bounded_json.Buffer, memoryview]:
    """(JSON header, binary tail) of an HTTP body."""
    if header_length is None:
        return body, memoryview(b"")
    n = int(header_length) if header_length.strip().isascii() and header_length.strip().isdigit() else -1
    if not 0 < n <= len(body):
        raise InvalidRequest(f"Inference-Header-Content-Length is {show(header_length)}, but the body has {len(body)} bytes")
    return body[:n], memoryview(body)[n:]


def _http_input(item: Any, i: int, parsed: bounded_json.BoundedJSON, tail: memoryview, offset: int,
                max_bytes: int) -> Tuple[str, np.ndarray, int]:
    """One entry of ``inputs``: (name, array, offset of the next binary tensor in ``tail``)."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidRequest(f"inputs[{i}] must be an object with a 'name' string")
    name = item["name"]
    what = f"input {show(name)}"
    shape = _shape(item.get("shape"), what)
    datatype = item.get("datatype")
    dtype = dtype_of(datatype, what)
    params = check_parameters(item.get("parameters"), what)
    count = check_size(shape, dtype, max_bytes, what)
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if size != count * dtype.itemsize:
            raise InvalidRequest(
                f"{what}: binary_data_size is {size} bytes, but shape {list(shape)} of {datatype} needs {count * dtype.itemsize}"
            )
        if offset + size > len(tail):
            raise InvalidRequest(f"{what}: expected {size} bytes of binary data, only {len(tail) - offset} left in the body")
        array = np.frombuffer(tail[offset:offset + size], dtype=dtype.newbyteorder("<")).astype(dtype)
        return name, array.reshape(shape), offset + size
    if "data" not in item:
        raise InvalidRequest(f"{what} has neither 'data' nor parameters.binary_data_size")
    data = item["data"]
    if isinstance(data, list) and len(data) not in (count, shape[0] if shape else 1):
        raise InvalidRequest(f"{what}: shape {list(shape)} needs {count} values, data has {len(data)}")
    if not isinstance(data, (list, int, float, str)) or (isinstance(data, str) and not parsed.is_marker(data)):
        raise InvalidRequest(f"{what}: data must be a JSON array of numbers, got {type(data).__name__}")
    array = parsed.array(data, dtype, count, what, datatype)
    if array.size != count:
        raise InvalidRequest(f"{what}: shape {list(shape)} needs {count} values, data has {array.size}")
    return name, array.reshape(shape), offset


def _requested_outputs(value: Any) -> Optional[List[RequestedOutput]]:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest(f"'outputs' must be a list, got {type(value).__name__}")
    outputs = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequest(f"outputs[{i}] must be an object with a 'name' string")
        params = check_parameters(item.get("parameters"), f"output {show(item['name'])}")
        outputs.append(RequestedOutput(item["name"], params.get("binary_data", False)))
    return outputs


def decode_http(body: bounded_json.Buffer, header_length: Optional[str], *, max_bytes: int = MAX_REQUEST_BYTES) -> InferRequest:
    """Parse an HTTP infer body (JSON, or JSON + binary tensors), within ``max_bytes`` (the body limit).

    Raises:
        InvalidRequest: malformed JSON or framing, a field of the wrong type, a tensor whose
            data does not fit its shape and datatype; the message says what was expected.
        RequestTooLarge: a tensor, or the JSON's values, over what the limit allows.
    """
    header, tail = _split(body, header_length)
    parsed = bounded_json.parse(header, max_bytes)
    doc = parsed.doc
    if not isinstance(doc, dict):
        raise InvalidRequest(f"request must be a JSON object, got {type(doc).__name__}")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("request needs a non-empty 'inputs' list")
    inputs: Dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        name, array, offset = _http_input(item, i, parsed, tail, offset, max_bytes)
        if name in inputs:
            raise InvalidRequest(f"input {show(name)} is given twice")
        inputs[name] = array
    if offset != len(tail):
        raise InvalidRequest(f"the body has {len(tail) - offset} bytes of binary data no input claims")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"request 'id' must be a string, got {type(request_id).__name__}")
    parameters = check_parameters(doc.get("parameters"), "request")
    return InferRequest(inputs, request_id, _requested_outputs(doc.get("outputs")), parameters)


def decode_http_body(body: bounded_json.Buffer, encoding: Optional[str], header_length: Optional[str], max_bytes: int) -> InferRequest:
    """Inflate and parse an HTTP infer body: the work one request costs, to run off the event loop."""
    return decode_http(decompress(body, encoding, max_bytes), header_length, max_bytes=max_bytes)


_JSON_CHUNK = 1 << 16  # output values turned into JSON text per step


def _json_array(value: np.ndarray) -> bytes:
    """A flat JSON array of ``value``'s elements, built a chunk at a time (the GIL is free between chunks)."""
    flat = value.reshape(-1)
    parts = (json.dumps(flat[i:i + _JSON_CHUNK].tolist(), allow_nan=True, separators=(",", ":"))[1:-1]
             for i in range(0, flat.size, _JSON_CHUNK))
    return ("[" + ",".join(parts) + "]").encode()


def encode_http(
    model: str, version: str, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> Tuple[bytes, Optional[int]]:
    """The HTTP response body for ``outputs``; (body, JSON header length if binary data follows)."""
    binary_of = {o.name: o.binary for o in request.outputs} if request.outputs is not None else {}
    marker = secrets.token_hex(16)  # where each output's JSON data goes: a string no client can put in the id
    described, tail, texts = [], [], {}
    for name, value in outputs.items():
        value = np.ascontiguousarray(value)
        entry: Dict[str, Any] = {"name": name, "datatype": datatype_of(value.dtype), "shape": list(value.shape)}
        if binary_of.get(name, request.binary_output):
            data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            tail.append(data)
        else:
            entry["data"] = f"{marker}{len(texts)}"
            texts[json.dumps(entry["data"]).encode()] = _json_array(value)
        described.append(entry)
    doc: Dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        doc["id"] = request.id
    header = json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()
    for placeholder, text in texts.items():
        header = header.replace(placeholder, text, 1)
    if not tail:
        return header, None
    return b"".join([header, *tail]), len(header)


def encode_http_body(model: str, version: str, request: InferRequest, outputs: Mapping[str, np.ndarray],
                     accept_encoding: Optional[str]) -> Tuple[bytes, Optional[int], Optional[str]]:
    """(body, JSON header length or None, Content-Encoding or None) of a response: to run off the event loop."""
    payload, header_length = encode_http(model, version, request, outputs)
    payload, encoding = compress(payload, accept_encoding)
    return payload, header_length, encoding


#: A body this small (and not compressed) is decoded on the event loop, and an answer this small
#: (binary data, or this few JSON values; not compressed) encoded there: ~0.02 ms each for the
#: serving benchmark's requests, where the hop to a worker thread and back (which must take the
#: GIL back) cost 0.03 ms on a quiet machine and ~0.25 ms a hop on a busy one (cProfile of the
#: server under one client: ThreadPoolExecutor.submit).  Larger or compressed bodies still go
#: to the worker threads, so that none keeps the event loop from the other requests.
INLINE_BYTES = 256 << 10
INLINE_JSON_VALUES = 1024


def decode_inline(body_bytes: int, encoding: Optional[str]) -> bool:
    """Is :func:`decode_http_body` of this body cheap enough for the event loop?"""
    return body_bytes <= INLINE_BYTES and (encoding or "identity").strip().lower() == "identity"


def encode_inline(request: InferRequest, outputs: Mapping[str, np.ndarray], accept_encoding: Optional[str]) -> bool:
    """Is :func:`encode_http_body` of this answer cheap enough for the event loop?"""
    compressed = any(e in (accept_encoding or "").lower() for e in ("gzip", "deflate"))  # as compress() would (conservatively)
    if compressed or sum(v.nbytes for v in outputs.values()) > INLINE_BYTES:
        return False
    binary_of = {o.name: o.binary for o in request.outputs} if request.outputs is not None else {}
    as_json = sum(v.size for name, v in outputs.items() if not binary_of.get(name, request.binary_output))
    return as_json <= INLINE_JSON_VALUES


def _malloc_trim() -> Callable[[int], int]:
    """glibc's ``malloc_trim`` (a no-op elsewhere)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return lambda pad: 0


_TRIM = _malloc_trim()


def decode_and_release(decode: Callable[..., InferRequest], *args: Any) -> InferRequest:
    """``decode(*args)`` for a large or compressed body (on a worker thread), then give the
    freed pages back to the system.

    Inflating or decoding a large body allocates in glibc's per-thread arenas, and a freed chunk
    below the 32 MiB mmap ceiling stays resident: after a run of gzip bombs (refused at the
    limit, as they should be) the server kept up to two bodies' worth of memory it no longer
    used.  ``malloc_trim(0)`` returns it, at a cost of about a millisecond, paid only here.
    """
    try:
        return decode(*args)
    finally:
        _TRIM(0)
