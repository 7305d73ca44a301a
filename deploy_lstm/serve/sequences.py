"""Streaming sequences: the state a stream carries between its chunks, bounded.

A request with a ``sequence_id`` is one chunk of a stream.  :class:`Sequences` holds the
live streams of one model (:class:`Stream`: its state between chunks, the batch size
fixed by its first chunk), at most ``max_live`` of them, each dropped after
``idle_s`` without a chunk.  It also remembers why recently ended sequences ended, so a
late chunk is told ("ended by sequence_end", "expired after 60 s idle") rather than
"never started"; that memory is bounded in entries (4 x ``max_live``) and in bytes
(:data:`ENDED_BYTES`), so ids cannot grow it.

Sequence ids are checked as the protocol checks them
(:func:`~deploy_lstm.serve.protocol.check_sequence_id`: a 64-bit integer, or a string of
at most :data:`~deploy_lstm.serve.protocol.MAX_SEQUENCE_ID_BYTES` UTF-8 bytes, Triton's
limit); an integer and a string are distinct ids (7 is not "7").
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from deploy_lstm.errors import InvalidRequest, ServerBusy
from deploy_lstm.serve.protocol import SequenceId, check_sequence_id, sequence_key, show

__all__ = ["SequenceKey", "ENDED_BYTES", "Stream", "Sequences"]

SequenceKey = Tuple[str, SequenceId]

#: what the memory of ended sequences may hold (ids and reasons), in bytes
ENDED_BYTES = 1 << 20
_ENTRY_OVERHEAD = 128  # the ordered dict's entry and link, and the key tuple, per ended sequence (CPython 3.11, 64-bit)


@dataclasses.dataclass(eq=False)
class Stream:
    """A live sequence: its state between chunks."""

    key: SequenceKey
    state: Optional[Dict[str, np.ndarray]] = None  # state input name -> value; None: zeros
    rows: Optional[int] = None  # batch size fixed by the first chunk
    last_used: float = 0.0
    busy: int = 0  # chunks queued or running
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


def _ended_size(key: SequenceKey, why: str) -> int:
    """What remembering one ended sequence costs, in bytes."""
    return sys.getsizeof(key[1]) + sys.getsizeof(why) + _ENTRY_OVERHEAD


class Sequences:
    """The live sequences of one model, bounded in number and idle time.

    Args:
        max_live: the most live sequences.
        idle_s: a sequence without a chunk this long expires.
        on_change: called with the number of live sequences when it changes.
        on_expire: called once per expired sequence.
        ended_bytes: what the memory of ended sequences may hold (see the module docstring).
    """

    def __init__(self, max_live: int, idle_s: float, on_change: Optional[Callable[[int], Any]] = None,
                 on_expire: Optional[Callable[[], Any]] = None, ended_bytes: int = ENDED_BYTES) -> None:
        self.max_live = max_live
        self.idle_s = idle_s
        self.ended_bytes = ended_bytes
        self.live: Dict[SequenceKey, Stream] = {}
        self.gone: "OrderedDict[SequenceKey, str]" = OrderedDict()  # recently ended: why
        self.gone_bytes = 0  # what ``gone`` holds, by _ended_size
        self._on_change = on_change or (lambda n: None)
        self._on_expire = on_expire or (lambda: None)

    def open(self, sequence_id: SequenceId, start: bool) -> Stream:
        """The stream of a chunk; a new one when ``start``.

        Raises:
            InvalidRequest: a bad id; not started, ended or expired.
            ServerBusy: ``max_live`` sequences are live already.
        """
        check_sequence_id(sequence_id)  # the store's own bound, whichever transport the id came by
        self.expire()
        key = sequence_key(sequence_id)
        stream = self.live.get(key)
        if stream is None:
            if not start:
                why = self.gone.get(key, "never started")
                raise InvalidRequest(
                    f"sequence {show(sequence_id)} is not live ({why}); send its first chunk with sequence_start=true"
                )
            if len(self.live) >= self.max_live:
                raise ServerBusy(
                    f"{self.max_live} sequences are live, the most this server holds; end one with "
                    f"sequence_end=true, wait for idle ones to expire ({self.idle_s:g} s), or retry later"
                )
            stream = self.live[key] = Stream(key)
            self._forget(key)
            self._on_change(len(self.live))
        stream.last_used = time.monotonic()
        return stream

    def end(self, stream: Stream, why: str) -> None:
        if self.live.get(stream.key) is stream:
            del self.live[stream.key]
            self._remember(stream.key, why)
            self._on_change(len(self.live))

    def end_all(self, why: str) -> None:
        """End every live sequence (its model is unloaded or replaced): a later chunk is told ``why``."""
        for stream in list(self.live.values()):
            self.end(stream, why)

    def remember(self, keys: "list[SequenceKey]", why: str) -> None:
        """Answer a chunk of any of ``keys`` (sequences of a model this one replaced) with ``why``."""
        for key in keys:
            if key not in self.live:
                self._remember(key, why)

    def expire(self) -> None:
        now = time.monotonic()
        for stream in [s for s in self.live.values() if s.busy == 0 and now - s.last_used > self.idle_s]:
            self.end(stream, f"expired after {self.idle_s:g} s idle")
            self._on_expire()

    def _remember(self, key: SequenceKey, why: str) -> None:
        """Remember why ``key`` ended, the oldest memories going first past either bound."""
        self._forget(key)
        size = _ended_size(key, why)
        if size > self.ended_bytes:
            return
        self.gone[key] = why
        self.gone_bytes += size
        while len(self.gone) > 4 * self.max_live or self.gone_bytes > self.ended_bytes:
            old, old_why = self.gone.popitem(last=False)
            self.gone_bytes -= _ended_size(old, old_why)

    def _forget(self, key: SequenceKey) -> None:
        why = self.gone.pop(key, None)
        if why is not None:
            self.gone_bytes -= _ended_size(key, why)
