"""Dynamic batching: requests queued, planned into batches, joined, run once, split back.

* :func:`plan_batches` groups waiting requests: equal keys (their tensors agree except
  along the batch axis, and the sequence axis when mixed lengths are padded), at most
  ``max_rows`` rows, and a group is closed once padding would exceed ``max_padding``
  padded steps per real step, so a long request does not make short ones pay for its
  length without limit.
* :class:`Batcher` queues requests and runs the planned batches on one worker thread:
  it takes what is queued (up to ``max_batch`` rows; while traffic is concurrent it
  waits up to ``max_delay_ms`` for more), runs the batch holding the oldest request,
  and re-plans with what arrived meanwhile.
* :class:`Layout` knows each tensor's batch and sequence axes: it joins a batch's feeds
  (padding sequences to the longest) and splits the outputs back per request.

Knows nothing of the model it batches for: the batcher is given the function that runs
a batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import time
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["Item", "plan_batches", "Batcher", "Layout", "torch_thread"]

@functools.lru_cache(maxsize=None)
def torch_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The process's one thread for runners that execute torch code (TorchScript, AOTInductor).

    torch's CPU kernels run fast only on the thread that first ran one: measured here
    (torch 2.13, 2 cores), ``nn.LSTM(64, 256, 2)`` at T=70 took 1.7 ms per call on the first
    calling thread and 8.3 ms on any other thread, for as long as both lived (an AOTInductor
    package: 2.1 vs 9.6 ms).  So every torch-backed model of a server, its start-up probe
    included, runs on this one thread; onnxruntime keeps a thread per model.
    """
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="deploy-lstm-torch")

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass(eq=False)
class Item:
    """One request's feeds, waiting for a batch."""

    feeds: Arrays
    rows: int  # its batch size
    steps: int  # its sequence length (0: no sequence axis)
    key: Hashable  # requests with equal keys may share a batch
    future: Optional[asyncio.Future] = None
    enqueued: float = 0.0
    model: str = ""  # the model name it was sent to (NAME or NAME_stream): its statistics


def plan_batches(items: Sequence[Item], max_rows: int, max_padding: float) -> List[List[Item]]:
    """Group items into batches: equal keys, at most ``max_rows`` rows, and padded steps
    at most ``max_padding`` per real step (longest first, greedy)."""
    by_key: Dict[Hashable, List[Item]] = {}
    for item in items:
        by_key.setdefault(item.key, []).append(item)
    batches: List[List[Item]] = []
    for group in by_key.values():
        group.sort(key=lambda i: -i.steps)
        current: List[Item] = []
        rows = cells = longest = 0
        for item in group:
            if current:
                fits = rows + item.rows <= max_rows
                padded = (rows + item.rows) * longest
                real = cells + item.rows * item.steps
                if fits and padded <= (1.0 + max_padding) * real:
                    current.append(item)
                    rows, cells = rows + item.rows, real
                    continue
                batches.append(current)
            current, rows, cells, longest = [item], item.rows, item.rows * item.steps, item.steps
        batches.append(current)
    return batches


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each tensor's batch and sequence axes are (None: it has none), and whether a
    batch pads sequences of mixed lengths to its longest."""

    batch_axes: Mapping[str, Optional[int]]
    sequence_axes: Mapping[str, Optional[int]]
    pads: bool = False

    def key(self, feeds: Mapping[str, np.ndarray]) -> Hashable:
        """What must agree between requests sharing a batch: every shape but the batch axis
        (and the sequence axis when padding)."""
        return tuple(
            (n, tuple(d for i, d in enumerate(v.shape) if i != self.batch_axes[n] and not (self.pads and i == self.sequence_axes[n])))
            for n, v in sorted(feeds.items())
        )

    def join(self, items: Sequence[Item], names: Sequence[str]) -> Arrays:
        """One feed per input name: the items' feeds padded to the longest and concatenated."""
        steps = max(i.steps for i in items)
        feeds = {}
        for name in names:
            parts = [self._pad(name, i.feeds[name], steps) for i in items]
            feeds[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=self.batch_axes[name])  # type: ignore[arg-type]
        return feeds

    def split(self, out: Arrays, items: Sequence[Item], names: Sequence[str]) -> List[Arrays]:
        """Each item's rows (and, when padded, its own steps) of a batch's outputs."""
        if len(items) == 1:
            return [out]
        results: List[Arrays] = [{} for _ in items]
        for name in names:
            value, b, s = out[name], self.batch_axes[name], self.sequence_axes[name]
            offset = 0
            for k, item in enumerate(items):
                index: List[Any] = [slice(None)] * value.ndim
                index[b] = slice(offset, offset + item.rows)  # type: ignore[index]
                if s is not None and self.pads:
                    index[s] = slice(0, item.steps)
                results[k][name] = value[tuple(index)]
                offset += item.rows
        return results

    def _pad(self, name: str, value: np.ndarray, steps: int) -> np.ndarray:
        s = self.sequence_axes[name]
        if not self.pads or s is None or value.shape[s] == steps:
            return value
        widths = [(0, 0)] * value.ndim
        widths[s] = (0, steps - value.shape[s])
        return np.pad(value, widths)


RunBatch = Callable[[Sequence[Item]], List[Arrays]]


class Batcher:
    """Queues items and runs them in batches on one worker thread (see the module docstring).

    Args:
        run: runs one planned batch (on the worker thread); the outputs per item.
        max_batch, max_delay_ms, max_padding: the serving options of those names.
        executor: the one-thread executor that runs the batches (default: one of its own);
            :func:`torch_thread` for runners that execute torch code.
    """

    def __init__(self, run: RunBatch, max_batch: int, max_delay_ms: float, max_padding: float,
                 executor: Optional[concurrent.futures.ThreadPoolExecutor] = None) -> None:
        self.run = run
        self.max_batch, self.max_delay_ms, self.max_padding = max_batch, max_delay_ms, max_padding
        self.queue: "asyncio.Queue[Item]" = asyncio.Queue()
        self.shared_executor = executor is not None  # not shut down by this batcher
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="deploy-lstm-runner")
        self.concurrent = False  # the last batch held more than one request
        self.task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="deploy-lstm-batcher")

    async def submit(self, item: Item) -> Arrays:
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        item.enqueued = time.perf_counter()
        self.queue.put_nowait(item)
        return await item.future

    async def _collect(self, backlog: List[Item]) -> List[Item]:
        """What the next batch is planned from: the backlog and the queue (waiting for a first
        item, and up to ``max_delay_ms`` for more while traffic is concurrent)."""
        pending = list(backlog)
        if not pending:
            pending.append(await self.queue.get())
        rows = sum(i.rows for i in pending)
        deadline = time.perf_counter() + self.max_delay_ms / 1000.0
        while rows < self.max_batch or not self.queue.empty():
            if not self.queue.empty():
                item = self.queue.get_nowait()
            else:
                timeout = deadline - time.perf_counter()
                if backlog or not self.concurrent or timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
            pending.append(item)
            rows += item.rows
        return pending

    async def _loop(self) -> None:
        """Plan batches from everything waiting, run the one holding the oldest request, re-plan
        with what arrived meanwhile: new requests join the batches still waiting, and no request
        waits behind more than the batches planned before it arrived (bounded p99)."""
        loop = asyncio.get_running_loop()
        backlog: List[Item] = []
        while True:
            pending = [i for i in await self._collect(backlog) if i.future is not None and not i.future.done()]  # cancelled: drop
            if not pending:
                backlog = []
                continue
            self.concurrent = len(pending) > 1
            batches = plan_batches(pending, self.max_batch, self.max_padding)
            batch = min(batches, key=lambda b: min(i.enqueued for i in b))
            backlog = [i for b in batches if b is not batch for i in b]
            try:
                outs: List[Any] = await loop.run_in_executor(self.executor, self.run, batch)
            except Exception as e:  # the batch failed: its requests get the error, the loop goes on
                outs = [e] * len(batch)
            for item, out in zip(batch, outs):
                if item.future.done():  # type: ignore[union-attr]
                    continue
                if isinstance(out, Exception):
                    item.future.set_exception(out)  # type: ignore[union-attr]
                else:
                    item.future.set_result(out)  # type: ignore[union-attr]

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if not self.shared_executor:
            self.executor.shutdown(wait=True)
