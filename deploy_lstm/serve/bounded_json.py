"""JSON from the network, parsed within bounds: nesting depth, value count, memory and time.

``json.loads`` on a hostile body is unbounded in three ways: it recurses once per nesting
level (100,000 levels: ``RecursionError``), it builds a Python object per value (64 MiB of
``[],[],...`` becomes 21 million lists, ~1.4 GB), and it holds the GIL for the whole parse
(seconds, during which the event loop answers nobody).  :func:`parse` bounds all three:

1. a count of ``,``, ``[`` and ``{`` (C speed) bounds the values before anything is built;
2. a vectorised scan (numpy, chunk by chunk) finds the brackets outside strings, checks the
   nesting depth and pairs each bracket with its match;
3. every array longer than :data:`CHUNK_BYTES` none of whose elements is that long (a
   tensor's ``data``, typically) is cut out and replaced by a marker; what is left, the
   skeleton, must be small, and ``json.loads`` parses it;
4. a marked array is parsed only when asked for, with its dtype known and its value count
   checked against the declared shape first: :data:`CHUNK_BYTES` at a time, each piece
   turned into a numpy array at once, so the Python objects alive at any moment are those of
   one piece, and the GIL is released between pieces.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np

from deploy_lstm.errors import InvalidRequest

__all__ = ["MAX_DEPTH", "CHUNK_BYTES", "SKELETON_BYTES", "BoundedJSON", "RequestTooLarge", "parse"]

MAX_DEPTH = 64  # nesting levels: a v2 body needs 3 + the tensor's rank (numpy's rank is at most 32)
CHUNK_BYTES = 256 << 10  # JSON text parsed by one json.loads call, at most (about)
SKELETON_BYTES = 1 << 20  # the JSON outside the large arrays (names, shapes, parameters), at most
VALUE_BYTES = 8  # at most one JSON value per this many bytes of the body limit
CONTAINER_BYTES = 32  # at most one array or object per this many bytes of the body limit

Buffer = Union[bytes, bytearray]  # a body as read (bytearray) or inflated (bytes): parsed without a copy
_QUOTE, _BACKSLASH, _COMMA = 34, 92, 44
_STRUCTURAL = np.zeros(256, np.bool_)
_STRUCTURAL[[ord("["), ord("{"), ord("]"), ord("}"), _COMMA]] = True
_DELTA = np.zeros(256, np.int8)
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1


class RequestTooLarge(InvalidRequest):
    """A body over the server's limits (its size, inflated or not, or what its JSON would cost): HTTP 413."""


def _scan(text: Buffer, start: int, end: int) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of ``text[start:end]``: (positions, bytes, depth after each) of the structural
    characters (``[]{},``) outside strings; depth counts from 0 at ``start``, which must lie
    outside a string."""
    data = np.frombuffer(text, np.uint8, end - start, start)
    quotes = 0  # real (unescaped) quotes seen so far: odd inside a string
    last_plain = -1  # position (relative to start) of the last byte that is not a backslash
    depth = 0
    for s in range(0, len(data), CHUNK_BYTES):
        chunk = data[s:s + CHUNK_BYTES]
        local = np.arange(len(chunk), dtype=np.int64)
        plain = np.maximum.accumulate(np.where(chunk == _BACKSLASH, -1, local + s))
        np.maximum(plain, last_plain, out=plain)
        q = np.flatnonzero(chunk == _QUOTE)
        before = np.concatenate(([last_plain], plain[:-1]))[q]  # last plain byte before each quote
        real = q[(q + s - 1 - before) % 2 == 0]  # a quote after an even run of backslashes
        at = np.flatnonzero(_STRUCTURAL[chunk])
        at = at[(np.searchsorted(real, at) + quotes) % 2 == 0]
        byte = chunk[at]
        after = np.cumsum(_DELTA[byte], dtype=np.int64) + depth
        quotes += len(real)
        last_plain = int(plain[-1])
        if len(after):
            depth = int(after[-1])
        yield at + (start + s), byte, after


class BoundedJSON:
    """A parsed body: :attr:`doc` (the skeleton, large arrays as markers) and :meth:`array`."""

    def __init__(self, text: Buffer, doc: Any, marker: str, spans: List[Tuple[int, int]]) -> None:
        self.text = text
        self.doc = doc
        self.marker = marker  # "<random>:" + span index: a string no client can guess
        self.spans = spans  # (position of "[", position of "]") of each cut-out array

    def is_marker(self, value: str) -> bool:
        """Is ``value`` the marker of a cut-out array (not a string the client sent)?"""
        return bool(self.spans) and value.startswith(self.marker)

    def array(self, value: Any, dtype: np.dtype, count: int, what: str, datatype: str) -> np.ndarray:
        """``value`` (a JSON array, perhaps with markers inside) as a numpy array of ``dtype``.

        Raises:
            InvalidRequest: values that are not numbers of that dtype, more values than
                ``count``, or arrays that do not nest regularly.
        """
        try:
            if not self.spans:
                return np.asarray(value, dtype=dtype)
            budget = [max(count, 1)]  # values the marked arrays may still hold, all together
            return np.asarray(self._resolve(value, dtype, budget, what), dtype=dtype)
        except (TypeError, ValueError, OverflowError) as e:
            if isinstance(e, InvalidRequest):
                raise
            raise InvalidRequest(f"{what}: data is not {datatype}: {e}") from None

    def _resolve(self, value: Any, dtype: np.dtype, budget: List[int], what: str) -> Any:
        if isinstance(value, list):
            return [self._resolve(v, dtype, budget, what) for v in value]
        if isinstance(value, str) and self.is_marker(value):
            open_at, close_at = self.spans[int(value[len(self.marker):])]
            budget[0] -= self.text.count(b",", open_at, close_at) + 1
            if budget[0] < 0:
                raise InvalidRequest(f"{what}: data has more values than its shape holds")
            return self._parse_span(open_at, close_at, dtype, what)
        return value

    def _parse_span(self, open_at: int, close_at: int, dtype: np.dtype, what: str) -> np.ndarray:
        """The array ``text[open_at..close_at]`` (no element longer than CHUNK_BYTES), a piece at a
        time, each piece copied into the result as soon as it is parsed."""
        cuts, children = [open_at], 1
        for at, byte, after in _scan(self.text, open_at + 1, close_at):
            commas = at[(byte == _COMMA) & (after == 0)]  # between two elements of this array
            children += len(commas)
            if len(commas) and commas[0] - cuts[-1] >= CHUNK_BYTES // 2:
                cuts.append(int(commas[0]))
        cuts.append(close_at)
        longest = max(b - a for a, b in zip(cuts, cuts[1:]))
        if longest > 4 * CHUNK_BYTES:
            raise InvalidRequest(f"{what}: data holds an element of about {longest} bytes; its elements are numbers or arrays")
        out: Optional[np.ndarray] = None
        filled = 0
        for a, b in zip(cuts, cuts[1:]):
            piece = np.asarray(json.loads(b"[" + self.text[a + 1:b] + b"]"), dtype=dtype)
            if out is None:
                out = np.empty((children if len(piece) else 0,) + piece.shape[1:], dtype)
            if piece.shape[1:] != out.shape[1:] or filled + len(piece) > len(out):
                raise InvalidRequest(f"{what}: data is not arrays that nest regularly")
            out[filled:filled + len(piece)] = piece
            filled += len(piece)
        assert out is not None and filled == len(out), (filled, None if out is None else out.shape)
        return out


def parse(text: Buffer, max_bytes: int) -> BoundedJSON:
    """Parse ``text`` (at most ``max_bytes``, the server's body limit) within bounds.

    Raises:
        RequestTooLarge: more values or containers than the limit allows, or a skeleton over
            :data:`SKELETON_BYTES`.
        InvalidRequest: not JSON, or nested deeper than :data:`MAX_DEPTH`.
    """
    values = text.count(b",") + text.count(b"[") + text.count(b"{") + 1
    containers = text.count(b"[") + text.count(b"{")
    if values > max(max_bytes // VALUE_BYTES, 1024) or containers > max(max_bytes // CONTAINER_BYTES, 1024):
        raise RequestTooLarge(
            f"JSON of up to {values} values in {containers} arrays and objects, over this server's limits of "
            f"{max_bytes // VALUE_BYTES} and {max_bytes // CONTAINER_BYTES} (--max-request-bytes / {VALUE_BYTES} "
            f"and / {CONTAINER_BYTES}); send large tensors as binary data (parameters.binary_data_size)"
        )
    # a small body with few brackets can neither hold a large array nor nest deeper than MAX_DEPTH:
    # the vectorised scan (~0.1 ms of numpy calls on a 300-byte v2 header) is skipped for it
    spans = [] if len(text) <= CHUNK_BYTES and containers <= MAX_DEPTH else _large_arrays(text)
    marker = secrets.token_hex(16) + ":"
    parts, at = [], 0
    for k, (a, b) in enumerate(spans):
        parts += [text[at:a], json.dumps(marker + str(k)).encode()]
        at = b + 1
    skeleton = b"".join(parts + [text[at:]]) if spans else text
    if len(skeleton) > SKELETON_BYTES:
        raise RequestTooLarge(
            f"{len(skeleton)} bytes of JSON outside the tensors' data arrays, over this server's limit of {SKELETON_BYTES}"
        )
    try:
        doc = json.loads(skeleton)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidRequest(f"request is not valid JSON: {e}") from None
    return BoundedJSON(text, doc, marker, spans)


def _large_arrays(text: Buffer) -> List[Tuple[int, int]]:
    """(open, close) of each array longer than CHUNK_BYTES that holds no such array, in order.

    Raises:
        InvalidRequest: nesting deeper than MAX_DEPTH, or brackets that do not pair.
    """
    at_parts, open_parts, level_parts = [], [], []
    for at, byte, after in _scan(text, 0, len(text)):
        if len(after) and (after.max() > MAX_DEPTH or after.min() < 0):
            if after.min() < 0:
                raise InvalidRequest("request is not valid JSON: a closing bracket without its opening one")
            raise InvalidRequest(f"request JSON is nested deeper than {MAX_DEPTH} levels")
        keep = byte != _COMMA
        opening = _DELTA[byte[keep]] > 0
        at_parts.append(at[keep])
        open_parts.append(opening)
        level_parts.append(np.where(opening, after[keep], after[keep] + 1))  # an opening and its closing share a level
    if not at_parts or len(text) <= CHUNK_BYTES:
        return []
    at, opening, level = np.concatenate(at_parts), np.concatenate(open_parts), np.concatenate(level_parts)
    order = np.lexsort((at, level))  # by level, then position: at each level, opening and closing alternate
    if len(order) % 2:
        return []  # unbalanced: json.loads says where
    first, second = order[0::2], order[1::2]
    if not (opening[first].all() and not opening[second].any() and (level[first] == level[second]).all()):
        return []
    a, b = at[first], at[second]
    raw = np.frombuffer(text, np.uint8)
    if not (raw[b].astype(np.int16) - raw[a] == 2).all():  # "[" 91 -> "]" 93, "{" 123 -> "}" 125
        return []
    square = raw[a] == ord("[")
    large = np.flatnonzero(square & (b - a > CHUNK_BYTES))
    a, b = a[large], b[large]
    order = np.argsort(a)
    a, b = a[order], b[order]
    innermost = np.ones(len(a), np.bool_)
    innermost[:-1] = a[1:] > b[:-1]  # spans nest properly: the next large span starts inside, or after
    return [(int(x), int(y)) for x, y in zip(a[innermost], b[innermost])]
