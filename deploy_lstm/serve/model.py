"""The served model: an export folder's artifact behind a dynamic batcher and a sequence store.

Knows nothing of HTTP or gRPC (``rest.py``, ``grpc_service.py`` do): it takes
:class:`~deploy_lstm.serve.protocol.InferRequest` objects and returns numpy outputs.

* **Dynamic batching** (:mod:`~deploy_lstm.serve.batching`).  Requests are queued and
  run in batches; mixed lengths are padded with the ``lengths`` input only when the
  graph has one and a probe at start-up shows that padded rows give the same outputs
  as unpadded ones; otherwise only equal lengths are batched.
* **Streaming** (:mod:`~deploy_lstm.serve.sequences`).  A request with ``sequence_id`` is
  one chunk of a stream: the server holds the state outputs (``hn``, ``cn``:
  :func:`~deploy_lstm.formats.contract.state_pairs`) of each live sequence and feeds
  them as the next chunk's ``h0``, ``c0``.  Chunks of different sequences are batched
  together; chunks of one sequence run in order.  The state lives in this process only.
* **What it is** (metadata, and Triton's model configuration from
  :mod:`~deploy_lstm.serve.triton_config`): shapes are whole, the batch axis inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from deploy_lstm.errors import ConfigError, InvalidRequest, ModelNotFound, ServerBusy
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, TensorSpec, batch_axis, sequence_axis, state_pairs
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.formats.metadata import read_onnx_metadata
from deploy_lstm.runtime.feeds import check_feeds
from deploy_lstm.runtime.folder import RUNNER_KINDS, RunnableFolder
from deploy_lstm.serve.batching import Batcher, Item, Layout, torch_thread
from deploy_lstm.serve.metrics import ServerMetrics
from deploy_lstm.serve.protocol import InferRequest, datatype_of, show
from deploy_lstm.serve.sequences import Sequences, Stream
from deploy_lstm.serve.statistics import BatchTimes, VersionStatistics, record_batch
from deploy_lstm.serve.triton_config import VERSION, ImplicitState, SequenceBatching, TritonConfig, TritonTensor, to_json

__all__ = ["ServeOptions", "ServedModel", "choose_artifact", "STREAM_SUFFIX", "VERSION"]

STREAM_SUFFIX = "_stream"  # the stateful model's name: "<name>_stream", as in the Triton repository
SERVABLE = RUNNER_KINDS  # the artifact kinds the server runs, each through its runner (folder.runner(kind))
TORCH_KINDS = ("torchscript", "aoti", "torchscript-bf16", "aoti-bf16")  # run on serve.batching.torch_thread()
#: Triton's platform name of each kind (the metadata's "platform"); kinds Triton has no backend for get their own name
PLATFORMS = {"onnx": "onnxruntime_onnx", "onnx-int8": "onnxruntime_onnx", "torchscript": "pytorch_libtorch",
             "aoti": "pytorch_aoti", "executorch": "executorch"}


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
    artifact: Optional[str] = None  # a runner kind (SERVABLE); default: what `deploy-lstm bench` recommended, else "onnx"

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


class ServedModel:
    """An export folder served through its artifact's runner (``folder.runner(kind)``:
    onnxruntime, with the ``provider`` and ``threads`` options): metadata, config, and :meth:`infer`.

    Raises:
        ArtifactError: the folder has no ONNX model, or onnxruntime cannot load it.
        RuntimeUnavailable: ``provider="cuda"`` where CUDA is not available.
    """

    def __init__(self, folder: ExportFolder, options: ServeOptions, metrics: Optional[ServerMetrics] = None,
                 version: str = VERSION) -> None:
        options.check()
        self.folder = folder
        self.options = options
        self.name = options.name or folder.path.resolve().name
        self.version = version
        self.metrics = metrics or ServerMetrics()
        self.artifact, self.artifact_why = choose_artifact(folder, options.artifact)
        self.platform = PLATFORMS.get(self.artifact, self.artifact)
        runnable = folder if isinstance(folder, RunnableFolder) else RunnableFolder(folder.path, folder.manifest)
        if self.artifact.startswith("onnx"):
            self.runner = runnable.runner(self.artifact, device=options.provider, intra_op_num_threads=options.threads)
        elif options.provider != "cpu":
            raise ConfigError(f"--provider {options.provider} applies to onnxruntime; the {self.artifact} artifact runs on the CPU")
        else:
            self.runner = runnable.runner(self.artifact)
        self.io: IOSpec = self.runner.io
        tensors = self.io.inputs + self.io.outputs
        self.states = state_pairs(self.io)
        self.state_inputs = {i for i, _ in self.states}
        self.state_outputs = {o for _, o in self.states}
        self.optional = {n for n in self.state_inputs if self._fillable(self.io.input(n))}  # type: ignore[arg-type]
        if self._lengths_spec() is not None:
            self.optional.add(contract.LENGTHS)
        self.stream_refusal = self._stream_refusal()
        self.stream_name = self.name + STREAM_SUFFIX if self.stream_refusal is None else None
        self.layout = Layout({t.name: batch_axis(t) for t in tensors}, {t.name: sequence_axis(t) for t in tensors})
        self.batchable = all(a is not None for a in self.layout.batch_axes.values())
        # an ExecuTorch program runs the batch size it was exported with (--pte-batch): no batching
        self.fixed_batch: Optional[int] = getattr(self.runner, "batch", None) if self.artifact == "executorch" else None
        if self.fixed_batch is not None:
            self.batchable = False
        if self._lengths_spec() is not None and self.batchable and self._on_runner_thread(self._probe_padding):
            self.layout = dataclasses.replace(self.layout, pads=True)
        self.batcher: Optional[Batcher] = None
        self.inflight = 0  # requests taken and not yet answered (the registry drains them before unloading)
        self.sequences = Sequences(
            options.max_sequences, options.sequence_idle_s,
            on_change=self.metrics.live_sequences.labels(self.name, version).set,
            on_expire=self.metrics.expired_sequences.labels(self.name, version).inc,
        )
        #: Triton's statistics of NAME and NAME_stream at this version (:mod:`~deploy_lstm.serve.statistics`)
        self.statistics = {n: VersionStatistics(n, version) for n in self.names()}

    def limits(self) -> List[str]:
        """What this artifact cannot do here, said at load time (log, config parameters)."""
        said = []
        if self.fixed_batch is not None:
            said.append(f"no dynamic batching: the {self.artifact} program runs batch {self.fixed_batch} (exported so); "
                        f"requests of {self.fixed_batch} row(s) run one at a time")
        elif not self.batchable:
            said.append(f"no dynamic batching: the {self.artifact} artifact has a fixed batch size; requests run one at a time")
        if self.stream_refusal is not None:
            said.append(f"no streaming: {self.stream_refusal}")
        return said

    @property
    def pads(self) -> bool:
        """Batches pad mixed lengths (the start-up probe showed padding leaves outputs alone)."""
        return self.layout.pads

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
        if version not in (None, "", self.version):
            raise ModelNotFound(f"model {name!r} has no version {version!r}; it has version {self.version!r}")
        return name == self.stream_name

    def inputs(self, stream: bool) -> List[TensorSpec]:
        return [t for t in self.io.inputs if not (stream and t.name in self.state_inputs)]

    def outputs(self, stream: bool) -> List[TensorSpec]:
        return [t for t in self.io.outputs if not (stream and t.name in self.state_outputs)]

    def metadata(self, name: str) -> Dict[str, Any]:
        """The v2 model metadata (-1 for a dynamic axis)."""
        stream = self.check_name(name)

        def tensors(specs: List[TensorSpec]) -> List[Dict[str, Any]]:
            return [{"name": t.name, "datatype": datatype_of(t.dtype), "shape": list(TritonTensor.of(t).dims)} for t in specs]

        return {
            "name": name, "versions": [self.version], "platform": self.platform,
            "inputs": tensors(self.inputs(stream)), "outputs": tensors(self.outputs(stream)),
        }

    def triton_config(self, name: str) -> TritonConfig:
        """Triton's model configuration of what this server does for ``name``.

        Shapes are whole (``max_batch_size`` 0: the batch axis is inside ``dims``); the
        batcher's settings are in ``parameters`` and ``dynamic_batching``/``sequence_batching``.
        """
        stream = self.check_name(name)
        opts = self.options
        inputs = tuple(TritonTensor.of(t, optional=t.name in self.optional) for t in self.inputs(stream))
        parameters = {
            "max_batch": opts.max_batch, "max_delay_ms": opts.max_delay_ms, "max_padding": opts.max_padding,
            "pads_mixed_lengths": self.pads, "max_sequence_length": opts.max_sequence_length,
            "artifact": self.artifact, "dynamic_batching": self.batchable, "streaming": self.stream_refusal is None,
        }
        sequence = SequenceBatching(
            idle_us=int(opts.sequence_idle_s * 1e6),
            states=tuple(ImplicitState(TritonTensor.of(self.io.input(i)), o) for i, o in self.states),  # type: ignore[arg-type]
        ) if stream else None
        return TritonConfig(
            name, inputs, tuple(TritonTensor.of(t) for t in self.outputs(stream)), platform=self.platform,
            queue_delay_us=None if stream else int(opts.max_delay_ms * 1000), sequence=sequence,
            parameters={k: str(v) for k, v in parameters.items()},
        )

    def config(self, name: str) -> Dict[str, Any]:
        """:meth:`triton_config` in Triton's JSON form (its HTTP config endpoint's answer)."""
        return to_json(self.triton_config(name).proto())

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the batcher, and the sweep that drops idle sequences, on the running event loop."""
        opts = self.options
        self.batcher = Batcher(self.run_batch, opts.max_batch, opts.max_delay_ms, opts.max_padding,
                               executor=torch_thread() if self.artifact in TORCH_KINDS else None)
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

    @contextlib.contextmanager
    def taking(self) -> Iterator[None]:
        """Count a request in flight from the moment it is routed here until it is answered
        (an unload waits for these before it closes the model)."""
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

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
        elif self.stream_refusal is not None:
            raise InvalidRequest(f"model {name!r} cannot stream: {self.stream_refusal}")
        else:
            sequence = self.sequences.open(sequence_id, start)
            out = await self._chunk(sequence, request.inputs, name, start, end)
        return {n: out[n] for n in wanted}

    async def _chunk(self, sequence: Stream, inputs: Mapping[str, np.ndarray], name: str, start: bool, end: bool) -> Dict[str, np.ndarray]:
        """Run one chunk of a live sequence after the chunks before it, and carry its state."""
        assert self.batcher is not None
        sequence.busy += 1
        try:
            async with sequence.lock:
                if start:
                    sequence.state, sequence.rows = None, None
                elif self.sequences.live.get(sequence.key) is not sequence:
                    raise InvalidRequest(f"sequence {show(sequence.key[1])} ended while this chunk waited for the one before")
                try:
                    item = self.prepare(inputs, stream=True, state=sequence.state, rows=sequence.rows, name=name)
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
        return out

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
        if self.fixed_batch is not None and rows_ != self.fixed_batch:
            raise InvalidRequest(
                f"model {name!r} serves an {self.artifact} program of batch {self.fixed_batch} (exported with --pte-batch "
                f"{self.fixed_batch}); this request has batch {rows_}"
            )
        if rows is not None and rows_ != rows:
            raise InvalidRequest(f"a sequence keeps the batch size of its first chunk ({rows}); this chunk has {rows_}")
        self._fill(feeds, rows_, steps, state if stream else None)
        check_feeds(self.io.inputs, feeds, f"model {name!r}")
        if rows_ < 1 or (steps < 1 and any(s is not None for s in self.layout.sequence_axes.values())):
            raise InvalidRequest(f"model {name!r} needs batch >= 1 and sequence >= 1, got batch {rows_}, sequence {steps}")
        self._check_values(feeds, steps)
        key = self.layout.key(feeds) if self.batchable else object()  # unbatchable: a key of its own
        return Item(feeds, rows_, steps, key, model=name)

    def _fill(self, feeds: Dict[str, np.ndarray], rows: int, steps: int, state: Optional[Dict[str, np.ndarray]]) -> None:
        """Feed what the request left out: a stream's carried state, full lengths, zeros."""
        for spec in self.io.inputs:
            if spec.name in feeds:
                continue
            if state is not None and spec.name in state:
                feeds[spec.name] = state[spec.name]
            elif spec.name == contract.LENGTHS and spec.name in self.optional:
                feeds[spec.name] = np.full((rows,), steps, dtype=np.int64)
            elif spec.name in self.optional:
                feeds[spec.name] = np.zeros(tuple(rows if isinstance(d, str) else d for d in spec.shape), dtype=spec.dtype)

    def _check_values(self, feeds: Mapping[str, np.ndarray], steps: int) -> None:
        """Lengths within the sequence, and finite floats unless ``allow_nonfinite``."""
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

    def _extent(self, feeds: Mapping[str, np.ndarray], name: str) -> Tuple[int, int]:
        """(batch size, sequence length) of a request, checked against the limits."""
        rows = steps = 0
        for spec in self.io.inputs:
            value = feeds.get(spec.name)
            if value is None or value.ndim != len(spec.shape):
                continue  # check_feeds reports it
            b, s = self.layout.batch_axes[spec.name], self.layout.sequence_axes[spec.name]
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
        """One artifact call for a group of items (on the worker thread); their outputs, split."""
        now = time.perf_counter()
        try:
            feeds = self.layout.join(items, [t.name for t in self.io.inputs])
            t0 = time.perf_counter()
            out = self.runner.run(feeds)
            t1 = time.perf_counter()
            split = self.layout.split(out, items, [t.name for t in self.io.outputs])
        except BaseException:
            if record:  # Triton's statistics count a failed execution, and its requests as failed
                record_batch(self.statistics, items, now, time.perf_counter(), None)
            raise
        if record:
            t2 = time.perf_counter()
            self._record(items, now, t1 - t0)
            record_batch(self.statistics, items, now, t2, BatchTimes(t0 - now, t1 - t0, t2 - t1))
        return split

    def _record(self, items: Sequence[Item], now: float, compute_s: float) -> None:
        """A batch's timings (``now``: when it was taken from the queue; ``compute_s``: the runner's call)."""
        m, name = self.metrics, (self.name, self.version)
        rows, steps = sum(i.rows for i in items), max(i.steps for i in items)
        real = sum(i.rows * i.steps for i in items)
        for item in items:
            m.queue.labels(*name).observe(now - item.enqueued)
        m.compute.labels(*name).observe(compute_s)
        m.batch_requests.labels(*name).observe(len(items))
        m.batch_rows.labels(*name).observe(rows)
        m.padding.labels(*name).observe((rows * steps - real) / real if real else 0.0)

    # -- what the graph allows -------------------------------------------------------------

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
        if self.runner.config is not None:
            configs = [self.runner.config]
        elif self.folder.has("onnx"):  # a whole model: the configurations of the LSTMs inside, from the ONNX metadata
            configs = list((read_onnx_metadata(self.folder.file("onnx")).lstms or {}).values())
        else:
            return "a whole model without its ONNX file, where the LSTMs inside are described"
        if any(c.bidirectional for c in configs):
            return "it is bidirectional: the reverse direction of a chunk needs the steps after it"
        return None

    def _on_runner_thread(self, probe: Callable[[], bool]) -> bool:
        """Run a start-up probe where the batches will run: a torch-backed runner on
        :func:`~deploy_lstm.serve.batching.torch_thread` (the thread torch first runs on stays the fast one)."""
        return torch_thread().submit(probe).result() if self.artifact in TORCH_KINDS else probe()

    def _probe_padding(self) -> bool:
        """Do padded rows give the outputs of the same rows alone?  (Run once, at start-up.)"""
        rng = np.random.default_rng(0)
        items = []
        for steps in (2, 5):
            feeds = {}
            for spec in self.io.inputs:
                if spec.name in self.optional:
                    continue
                shape = [1 if i == self.layout.batch_axes[spec.name] else steps if i == self.layout.sequence_axes[spec.name] else d
                         for i, d in enumerate(spec.shape)]
                if any(isinstance(d, str) for d in shape):
                    return False  # a second dynamic axis: nothing to pad along safely
                dtype = np.dtype(spec.dtype)
                feeds[spec.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
            items.append(self.prepare(feeds, stream=False))
        alone = [self.run_batch([i], record=False)[0] for i in items]
        unpadded = self.layout
        self.layout = dataclasses.replace(unpadded, pads=True)
        try:
            together = self.run_batch(items, record=False)
        finally:
            self.layout = unpadded
        for a, t in zip(alone, together):
            for k in a:
                if a[k].shape != t[k].shape or not np.allclose(a[k], t[k], rtol=1e-4, atol=1e-5):
                    return False
        return True
