"""The served model: an onnxruntime session behind a dynamic batcher and a sequence store.

Knows nothing of HTTP or gRPC (``http_server.py``, ``grpc_server.py`` do): it takes
:class:`~deploy_lstm.protocol.InferRequest` objects and returns numpy outputs.

* **Dynamic batching.**  Requests are queued; the batcher takes what is queued (up to
  ``max_batch`` rows; while traffic is concurrent it waits up to ``max_delay_ms`` for
  more), groups requests whose tensors agree except along the batch and sequence axes,
  pads each group's sequences to its longest with the ``lengths`` input, runs one
  session call per group and splits the outputs back.  A group is closed once padding
  would exceed ``max_padding`` padded steps per real step, so a long request does not
  make short ones pay for its length without limit.  Padding is used only when the
  graph has a ``lengths`` input and a probe at start-up shows that padded rows give
  the same outputs as unpadded ones; otherwise only equal lengths are batched.
* **Streaming.**  A request with ``sequence_id`` is one chunk of a stream: the server
  holds the state outputs (``hn``, ``cn``: :func:`~deploy_lstm.contract.state_pairs`)
  of each live sequence and feeds them as the next chunk's ``h0``, ``c0``.  Chunks of
  different sequences are batched together; chunks of one sequence run in order.
  Sequences expire after ``sequence_idle_s``; at most ``max_sequences`` are live.
  The state lives in this process only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import time
from collections import OrderedDict
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, TensorSpec, batch_axis, sequence_axis, state_pairs
from deploy_lstm.errors import ConfigError, InvalidRequest, ModelNotFound, ServerBusy
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.serve.metrics import ServerMetrics
from deploy_lstm.serve.protocol import InferRequest, SequenceId, datatype_of, sequence_key
from deploy_lstm.runtime.onnx import OnnxLSTM
from deploy_lstm.runtime.feeds import check_feeds

__all__ = ["ServeOptions", "ServedModel", "Batcher", "Sequences", "plan_batches", "STREAM_SUFFIX", "VERSION"]

STREAM_SUFFIX = "_stream"  # the stateful model's name: "<name>_stream", as in the Triton repository
VERSION = "1"
PLATFORM = "onnxruntime_onnx"
SERVABLE = ("onnx", "onnx-int8")  # the artifact kinds the onnxruntime engine runs


@dataclasses.dataclass
class ServeOptions:
    """How a model is served (the ``deploy-lstm serve`` options)."""

    name: Optional[str] = None  # model name; default: the folder's name
    provider: str = "cpu"  # onnxruntime execution provider: "cpu" or "cuda"
    max_batch: int = 32  # rows per executed batch, and the most one request may carry
    max_delay_ms: float = 2.0  # how long a batch waits for more requests under concurrent traffic
    max_padding: float = 0.5  # padded time steps allowed per real time step in one batch
    max_sequence_length: int = 10_000  # time steps per request
    max_sequences: int = 1024  # live streaming sequences
    sequence_idle_s: float = 60.0  # a sequence idle this long is dropped
    threads: int = 0  # onnxruntime intra-op threads (0: its default)
    allow_nonfinite: bool = False  # accept NaN/inf in float inputs
    artifact: Optional[str] = None  # "onnx" or "onnx-int8"; default: what `deploy-lstm bench` recommended, else "onnx"

    def check(self) -> None:
        if self.artifact not in (None,) + SERVABLE:
            raise ConfigError(f"artifact must be one of {', '.join(SERVABLE)}, got {self.artifact!r}")
        for field, low in (("max_batch", 1), ("max_sequence_length", 1), ("max_sequences", 1)):
            if getattr(self, field) < low:
                raise ConfigError(f"{field} must be >= {low}, got {getattr(self, field)}")
        for field in ("max_delay_ms", "max_padding", "sequence_idle_s"):
            if not getattr(self, field) >= 0:
                raise ConfigError(f"{field} must be >= 0, got {getattr(self, field)}")


def choose_artifact(folder: ExportFolder, asked: Optional[str]) -> Tuple[str, str]:
    """(artifact kind, why) the server runs: ``asked``, else the folder's recommendation for
    the server target (``deploy-lstm bench DIR``), else ``onnx``.

    Raises:
        ArtifactError: the asked artifact is not in the folder.
    """
    if asked is not None:
        folder.file(asked)  # raises, naming what the folder has
        return asked, "asked with --artifact"
    kind = folder.recommended("server")
    if kind in SERVABLE:
        rec = folder.recommendation or {}
        ratio = rec["targets"]["server"].get("ratio")
        at = f" at {ratio:.2f}x the eager model" if isinstance(ratio, (int, float)) else ""
        return kind, f"recommended by deploy-lstm bench on {rec.get('measured', '?')}{at}"
    return "onnx", "no recommendation recorded (deploy-lstm bench DIR records one)"


@dataclasses.dataclass(eq=False)
class Item:
    """One request's feeds, waiting for a batch."""

    feeds: Dict[str, np.ndarray]
    rows: int  # its batch size
    steps: int  # its sequence length (0: no sequence axis)
    key: Hashable  # requests with equal keys may share a batch
    future: Optional[asyncio.Future] = None
    enqueued: float = 0.0


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


class Batcher:
    """Queues items and runs them in batches on one worker thread (see the module docstring)."""

    def __init__(self, model: "ServedModel") -> None:
        self.model = model
        self.queue: "asyncio.Queue[Item]" = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="deploy-lstm-onnxruntime")
        self.concurrent = False  # the last batch held more than one request
        self.task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="deploy-lstm-batcher")

    async def submit(self, item: Item) -> Dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        item.enqueued = time.perf_counter()
        self.queue.put_nowait(item)
        return await item.future

    async def _collect(self, backlog: List[Item]) -> List[Item]:
        """What the next batch is planned from: the backlog and the queue (waiting for a first
        item, and up to ``max_delay_ms`` for more while traffic is concurrent)."""
        opts = self.model.options
        pending = list(backlog)
        if not pending:
            pending.append(await self.queue.get())
        rows = sum(i.rows for i in pending)
        deadline = time.perf_counter() + opts.max_delay_ms / 1000.0
        while rows < opts.max_batch or not self.queue.empty():
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
            batches = plan_batches(pending, self.model.options.max_batch, self.model.options.max_padding)
            batch = min(batches, key=lambda b: min(i.enqueued for i in b))
            backlog = [i for b in batches if b is not batch for i in b]
            try:
                outs: List[Any] = await loop.run_in_executor(self.executor, self.model.run_batch, batch)
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
        self.executor.shutdown(wait=True)


@dataclasses.dataclass(eq=False)
class Stream:
    """A live sequence: its state between chunks."""

    key: Tuple[str, SequenceId]
    state: Optional[Dict[str, np.ndarray]] = None  # state input name -> value; None: zeros
    rows: Optional[int] = None  # batch size fixed by the first chunk
    last_used: float = 0.0
    busy: int = 0  # chunks queued or running
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class Sequences:
    """The live sequences of one model, bounded in number and idle time."""

    def __init__(self, max_live: int, idle_s: float, on_change: Any = None, on_expire: Any = None) -> None:
        self.max_live = max_live
        self.idle_s = idle_s
        self.live: Dict[Tuple[str, SequenceId], Stream] = {}
        self.gone: "OrderedDict[Tuple[str, SequenceId], str]" = OrderedDict()  # recently ended: why
        self._on_change = on_change or (lambda n: None)
        self._on_expire = on_expire or (lambda: None)

    def open(self, sequence_id: SequenceId, start: bool) -> Stream:
        """The stream of a chunk; a new one when ``start``.

        Raises:
            InvalidRequest: not started, ended or expired.
            ServerBusy: ``max_live`` sequences are live already.
        """
        self.expire()
        key = sequence_key(sequence_id)
        stream = self.live.get(key)
        if stream is None:
            if not start:
                why = self.gone.get(key, "never started")
                raise InvalidRequest(
                    f"sequence {sequence_id!r} is not live ({why}); send its first chunk with sequence_start=true"
                )
            if len(self.live) >= self.max_live:
                raise ServerBusy(
                    f"{self.max_live} sequences are live, the most this server holds; end one with "
                    f"sequence_end=true, wait for idle ones to expire ({self.idle_s:g} s), or retry later"
                )
            stream = self.live[key] = Stream(key)
            self.gone.pop(key, None)
            self._on_change(len(self.live))
        stream.last_used = time.monotonic()
        return stream

    def end(self, stream: Stream, why: str) -> None:
        if self.live.get(stream.key) is stream:
            del self.live[stream.key]
            self.gone[stream.key] = why
            while len(self.gone) > 4 * self.max_live:
                self.gone.popitem(last=False)
            self._on_change(len(self.live))

    def expire(self) -> None:
        now = time.monotonic()
        for stream in [s for s in self.live.values() if s.busy == 0 and now - s.last_used > self.idle_s]:
            self.end(stream, f"expired after {self.idle_s:g} s idle")
            self._on_expire()


class ServedModel:
    """An export folder served by onnxruntime: metadata, config, and :meth:`infer`.

    Raises:
        ArtifactError: the folder has no ONNX model, or onnxruntime cannot load it.
        RuntimeUnavailable: ``provider="cuda"`` where CUDA is not available.
    """

    def __init__(self, folder: ExportFolder, options: ServeOptions, metrics: Optional[ServerMetrics] = None) -> None:
        options.check()
        self.folder = folder
        self.options = options
        self.name = options.name or folder.path.resolve().name
        self.metrics = metrics or ServerMetrics()
        self.artifact, self.artifact_why = choose_artifact(folder, options.artifact)
        self.session = OnnxLSTM(folder.file(self.artifact), device=options.provider, intra_op_num_threads=options.threads)
        self.io: IOSpec = folder.io
        self.batch_axes = {t.name: batch_axis(t) for t in self.io.inputs + self.io.outputs}
        self.sequence_axes = {t.name: sequence_axis(t) for t in self.io.inputs + self.io.outputs}
        self.states = state_pairs(self.io)
        self.state_inputs = {i for i, _ in self.states}
        self.state_outputs = {o for _, o in self.states}
        self.optional = {n for n in self.state_inputs if self._fillable(self.io.input(n))}  # type: ignore[arg-type]
        if self._lengths_spec() is not None:
            self.optional.add(contract.LENGTHS)
        self.stream_refusal = self._stream_refusal()
        self.stream_name = self.name + STREAM_SUFFIX if self.stream_refusal is None else None
        self.batchable = all(self.batch_axes[t.name] is not None for t in self.io.inputs + self.io.outputs)
        self.pads = False
        self.pads = self._lengths_spec() is not None and self.batchable and self._probe_padding()
        self.batcher: Optional[Batcher] = None
        self.sequences = Sequences(
            options.max_sequences, options.sequence_idle_s,
            on_change=self.metrics.live_sequences.labels(self.name).set,
            on_expire=self.metrics.expired_sequences.labels(self.name).inc,
        )

    # -- what the model is -------------------------------------------------------------

    def names(self) -> List[str]:
        return [self.name] + ([self.stream_name] if self.stream_name else [])

    def check_name(self, name: str, version: Optional[str] = None) -> bool:
        """True for the stream model's name.

        Raises:
            ModelNotFound: not a name or version served here.
        """
        if name not in self.names():
            raise ModelNotFound(f"unknown model {name!r}; this server serves {', '.join(repr(n) for n in self.names())}")
        if version not in (None, "", VERSION):
            raise ModelNotFound(f"model {name!r} has no version {version!r}; it has version {VERSION!r}")
        return name == self.stream_name

    def inputs(self, stream: bool) -> List[TensorSpec]:
        return [t for t in self.io.inputs if not (stream and t.name in self.state_inputs)]

    def outputs(self, stream: bool) -> List[TensorSpec]:
        return [t for t in self.io.outputs if not (stream and t.name in self.state_outputs)]

    def metadata(self, name: str) -> Dict[str, Any]:
        """The v2 model metadata (-1 for a dynamic axis)."""
        stream = self.check_name(name)

        def tensors(specs: List[TensorSpec]) -> List[Dict[str, Any]]:
            return [{"name": t.name, "datatype": datatype_of(t.dtype), "shape": _dims(t)} for t in specs]

        return {
            "name": name, "versions": [VERSION], "platform": PLATFORM,
            "inputs": tensors(self.inputs(stream)), "outputs": tensors(self.outputs(stream)),
        }

    def config(self, name: str) -> Dict[str, Any]:
        """Triton's model configuration (its JSON form) of what this server does.

        Shapes are whole (``max_batch_size`` 0: the batch axis is inside ``dims``); the
        batcher's settings are in ``parameters`` and ``dynamic_batching``/``sequence_batching``.
        """
        stream = self.check_name(name)
        opts = self.options

        def tensors(specs: List[TensorSpec]) -> List[Dict[str, Any]]:
            out = []
            for t in specs:
                entry: Dict[str, Any] = {"name": t.name, "data_type": "TYPE_" + datatype_of(t.dtype), "dims": _dims(t)}
                if t.name in self.optional and not (stream and t.name in self.state_inputs):
                    entry["optional"] = True
                out.append(entry)
            return out

        config: Dict[str, Any] = {
            "name": name, "platform": PLATFORM, "backend": "onnxruntime", "max_batch_size": 0,
            "input": tensors(self.inputs(stream)), "output": tensors(self.outputs(stream)),
            "parameters": {
                key: {"string_value": str(value)} for key, value in (
                    ("max_batch", opts.max_batch), ("max_delay_ms", opts.max_delay_ms),
                    ("max_padding", opts.max_padding), ("pads_mixed_lengths", self.pads),
                    ("max_sequence_length", opts.max_sequence_length),
                )
            },
        }
        if stream:
            config["sequence_batching"] = {
                "max_sequence_idle_microseconds": int(opts.sequence_idle_s * 1e6),
                "state": [
                    {
                        "input_name": i, "output_name": o, "data_type": "TYPE_" + datatype_of(self.io.input(i).dtype),  # type: ignore[union-attr]
                        "dims": _dims(self.io.input(i)),  # type: ignore[arg-type]
                    }
                    for i, o in self.states
                ],
            }
        else:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": int(opts.max_delay_ms * 1000)}
        return config

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the batcher, and the sweep that drops idle sequences, on the running event loop."""
        self.batcher = Batcher(self)
        self.batcher.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="deploy-lstm-sequence-sweep")

    async def _sweep(self) -> None:
        """Idle sequences go even when no request comes (their state is freed, the gauge drops)."""
        while True:
            await asyncio.sleep(min(max(self.options.sequence_idle_s / 2, 0.1), 5.0))
            self.sequences.expire()

    async def close(self) -> None:
        sweeper = getattr(self, "_sweeper", None)
        if sweeper is not None:
            sweeper.cancel()
        if self.batcher is not None:
            await self.batcher.close()

    async def infer(self, request: InferRequest, name: str) -> Dict[str, np.ndarray]:
        """Run one request (batched with others); the outputs it asks for, by name.

        Raises:
            ModelNotFound, InvalidRequest, LSTMInputError, ServerBusy: see the messages.
        """
        stream = self.check_name(name)
        sequence_id = request.sequence_id
        start, end = request.flag("sequence_start"), request.flag("sequence_end")
        if sequence_id is None and (stream or start or end):
            raise InvalidRequest(
                f"model {name!r} is stateful: every request needs a sequence_id parameter (and sequence_start=true on the first chunk)"
                if stream else "sequence_start/sequence_end need a sequence_id parameter"
            )
        outputs = [o.name for o in self.outputs(stream)]
        wanted = outputs if request.outputs is None else [o.name for o in request.outputs]
        unknown = [n for n in wanted if n not in outputs]
        if unknown:
            raise InvalidRequest(f"unknown output(s) {unknown}; model {name!r} has outputs {outputs}")
        if self.batcher is None:
            raise ServerBusy(f"model {name!r} is not running")
        if sequence_id is None:
            out = await self.batcher.submit(self.prepare(request.inputs, stream=False))
            return {n: out[n] for n in wanted}
        if self.stream_refusal is not None:
            raise InvalidRequest(f"model {name!r} cannot stream: {self.stream_refusal}")
        sequence = self.sequences.open(sequence_id, start)
        sequence.busy += 1
        try:
            async with sequence.lock:
                if start:
                    sequence.state, sequence.rows = None, None
                elif self.sequences.live.get(sequence.key) is not sequence:
                    raise InvalidRequest(f"sequence {sequence_id!r} ended while this chunk waited for the one before")
                try:
                    item = self.prepare(request.inputs, stream=True, state=sequence.state, rows=sequence.rows, name=name)
                    out = await self.batcher.submit(item)
                except BaseException:
                    if start:  # a sequence whose first chunk failed never started
                        self.sequences.end(sequence, "its first chunk failed")
                    raise
                sequence.state = {i: out[o] for i, o in self.states}
                sequence.rows, sequence.last_used = item.rows, time.monotonic()
                if end:
                    self.sequences.end(sequence, "ended by sequence_end")
        finally:
            sequence.busy -= 1
        return {n: out[n] for n in wanted}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], *, stream: bool, state: Optional[Dict[str, np.ndarray]] = None,
        rows: Optional[int] = None, name: Optional[str] = None,
    ) -> Item:
        """Check a request's tensors and fill the optional ones (zero state, full lengths).

        Raises:
            InvalidRequest, LSTMInputError: naming the tensor, what was expected and what came.
        """
        name = name or self.name
        feeds = dict(inputs)
        if stream:
            sent = sorted(set(feeds) & self.state_inputs)
            if sent:
                raise InvalidRequest(
                    f"the server carries {sent} between the chunks of a sequence; send only "
                    f"{[t.name for t in self.inputs(True)]}"
                )
        allowed = [t.name for t in self.inputs(stream)]
        unknown = sorted(set(feeds) - set(allowed))
        if unknown:
            raise InvalidRequest(f"unknown input(s) {unknown}; model {name!r} takes {allowed}")
        rows_, steps = self._extent(feeds, name)
        if rows is not None and rows_ != rows:
            raise InvalidRequest(f"a sequence keeps the batch size of its first chunk ({rows}); this chunk has {rows_}")
        for spec in self.io.inputs:
            if spec.name in feeds:
                continue
            if stream and state is not None and spec.name in state:
                feeds[spec.name] = state[spec.name]
            elif spec.name == contract.LENGTHS and spec.name in self.optional:
                feeds[spec.name] = np.full((rows_,), steps, dtype=np.int64)
            elif spec.name in self.optional:
                feeds[spec.name] = np.zeros(_concrete(spec, rows_), dtype=spec.dtype)
        check_feeds(self.io.inputs, feeds, f"model {name!r}")
        if rows_ < 1 or (steps < 1 and any(s is not None for s in self.sequence_axes.values())):
            raise InvalidRequest(f"model {name!r} needs batch >= 1 and sequence >= 1, got batch {rows_}, sequence {steps}")
        for spec in self.io.inputs:
            value = feeds[spec.name]
            if spec.name == contract.LENGTHS and steps and value.size and (value.min() < 1 or value.max() > steps):
                raise InvalidRequest(
                    f"lengths must lie in 1..{steps} (the sequence length), got values from {value.min()} to {value.max()}"
                )
            if np.issubdtype(value.dtype, np.floating) and not self.options.allow_nonfinite:
                bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
                if bad:
                    raise InvalidRequest(f"input {spec.name!r} has {bad} NaN/inf value(s); expected finite numbers")
        key = tuple(
            (n, tuple(d for i, d in enumerate(v.shape) if i != self.batch_axes[n] and not (self.pads and i == self.sequence_axes[n])))
            for n, v in sorted(feeds.items())
        ) if self.batchable else object()  # unbatchable: a key of its own
        return Item(feeds, rows_, steps, key)

    def _extent(self, feeds: Mapping[str, np.ndarray], name: str) -> Tuple[int, int]:
        """(batch size, sequence length) of a request, checked against the limits."""
        rows = steps = 0
        for spec in self.io.inputs:
            value = feeds.get(spec.name)
            if value is None or value.ndim != len(spec.shape):
                continue  # check_feeds reports it
            b, s = self.batch_axes[spec.name], self.sequence_axes[spec.name]
            rows = max(rows, value.shape[b] if b is not None else 1)
            steps = max(steps, value.shape[s] if s is not None else 0)
        if rows > self.options.max_batch:
            raise InvalidRequest(f"batch of {rows} rows, over this server's limit of {self.options.max_batch} (--max-batch)")
        if steps > self.options.max_sequence_length:
            raise InvalidRequest(
                f"sequence of {steps} steps, over this server's limit of {self.options.max_sequence_length} "
                "(--max-sequence-length); stream it in chunks with sequence_id"
            )
        return rows, steps

    def run_batch(self, items: Sequence[Item], record: bool = True) -> List[Dict[str, np.ndarray]]:
        """One session call for a group of items (on the worker thread); their outputs, split."""
        name, now = self.name, time.perf_counter()
        steps = max(i.steps for i in items)
        feeds = {}
        for spec in self.io.inputs:
            parts = [self._pad(spec.name, i.feeds[spec.name], steps) for i in items]
            feeds[spec.name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=self.batch_axes[spec.name])  # type: ignore[arg-type]
        t0 = time.perf_counter()
        out = self.session.run(feeds)
        rows = sum(i.rows for i in items)
        if record:
            real = sum(i.rows * i.steps for i in items)
            for item in items:
                self.metrics.queue.labels(name).observe(now - item.enqueued)
            self.metrics.compute.labels(name).observe(time.perf_counter() - t0)
            self.metrics.batch_requests.labels(name).observe(len(items))
            self.metrics.batch_rows.labels(name).observe(rows)
            self.metrics.padding.labels(name).observe((rows * steps - real) / real if real else 0.0)
        if len(items) == 1:
            return [out]
        results: List[Dict[str, np.ndarray]] = [{} for _ in items]
        for spec in self.io.outputs:
            value, b, s = out[spec.name], self.batch_axes[spec.name], self.sequence_axes[spec.name]
            offset = 0
            for k, item in enumerate(items):
                index: List[Any] = [slice(None)] * value.ndim
                index[b] = slice(offset, offset + item.rows)  # type: ignore[index]
                if s is not None and self.pads:
                    index[s] = slice(0, item.steps)
                results[k][spec.name] = value[tuple(index)]
                offset += item.rows
        return results

    # -- helpers -----------------------------------------------------------------------

    def _pad(self, name: str, value: np.ndarray, steps: int) -> np.ndarray:
        s = self.sequence_axes[name]
        if not self.pads or s is None or value.shape[s] == steps:
            return value
        widths = [(0, 0)] * value.ndim
        widths[s] = (0, steps - value.shape[s])
        return np.pad(value, widths)

    def _lengths_spec(self) -> Optional[TensorSpec]:
        spec = self.io.input(contract.LENGTHS)
        if spec is None or len(spec.shape) != 1 or batch_axis(spec) != 0 or spec.dtype != "int64":
            return None
        return spec

    def _fillable(self, spec: TensorSpec) -> bool:
        return all(isinstance(d, int) or i == batch_axis(spec) for i, d in enumerate(spec.shape))

    def _stream_refusal(self) -> Optional[str]:
        if not self.states:
            return "its graph has no state inputs and outputs (h0 -> hn, c0 -> cn)"
        if not all(i in self.optional for i, _ in self.states):
            return "its state inputs have dynamic axes other than the batch"
        configs = [contract.LSTMConfig.from_dict(json.loads(self.session.metadata[contract.META_CONFIG]))] if (
            contract.META_CONFIG in self.session.metadata
        ) else [contract.LSTMConfig.from_dict(c) for c in json.loads(self.session.metadata.get(contract.META_LSTMS, "{}")).values()]
        if any(c.bidirectional for c in configs):
            return "it is bidirectional: the reverse direction of a chunk needs the steps after it"
        return None

    def _probe_padding(self) -> bool:
        """Do padded rows give the outputs of the same rows alone?  (Run once, at start-up.)"""
        rng = np.random.default_rng(0)
        items = []
        for steps in (2, 5):
            feeds = {}
            for spec in self.io.inputs:
                if spec.name in self.optional:
                    continue
                shape = [1 if i == self.batch_axes[spec.name] else steps if i == self.sequence_axes[spec.name] else d
                         for i, d in enumerate(spec.shape)]
                if any(isinstance(d, str) for d in shape):
                    return False  # a second dynamic axis: nothing to pad along safely
                dtype = np.dtype(spec.dtype)
                feeds[spec.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
            items.append(self.prepare(feeds, stream=False))
        alone = [self.run_batch([i], record=False)[0] for i in items]
        self.pads = True
        try:
            together = self.run_batch(items, record=False)
        finally:
            self.pads = False
        for a, t in zip(alone, together):
            for k in a:
                if a[k].shape != t[k].shape or not np.allclose(a[k], t[k], rtol=1e-4, atol=1e-5):
                    return False
        return True


def _dims(spec: TensorSpec) -> List[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def _concrete(spec: TensorSpec, rows: int) -> Tuple[int, ...]:
    return tuple(rows if isinstance(d, str) else d for d in spec.shape)
