"""``deploy-lstm serve``: one process, one event loop, HTTP (uvicorn) and gRPC (grpc.aio).

Both front ends share one :class:`~deploy_lstm.serve.registry.Registry` (the models and
versions served: each its runner, batcher and sequence store) and one pool of threads that
decode and encode bodies.
On SIGTERM/SIGINT the server stops taking connections and requests, answers the requests
in flight (``grace_s``: a request still uploading may finish within it), ends open gRPC
streams with UNAVAILABLE once their requests are answered, then exits; what is still
running when the grace period ends is cancelled (HTTP: the connection closes; gRPC:
UNAVAILABLE "Cancelling all calls").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import grpc
import uvicorn
from tritonclient.grpc import service_pb2_grpc

from deploy_lstm.serve.model import ServeOptions
from deploy_lstm.serve.registry import Registry
from deploy_lstm.serve.grpc_service import InferenceServicer
from deploy_lstm.serve.metrics import ServerMetrics
from deploy_lstm.serve.protocol import MAX_REQUEST_BYTES
from deploy_lstm.serve.rest import DECODE_THREADS, http_app

try:  # uvloop: a faster event loop (Linux, macOS), in the [serve] extra where it installs
    import uvloop
except ImportError:  # pragma: no cover - Windows, or installed without it
    uvloop = None

__all__ = ["ServerAddress", "serve", "run_server"]

log = logging.getLogger("deploy_lstm.server")


@dataclasses.dataclass(frozen=True)
class ServerAddress:
    host: str = "127.0.0.1"
    port: int = 8000  # HTTP
    grpc_port: int = 8001  # gRPC; 0 disables it
    max_request_bytes: int = MAX_REQUEST_BYTES  # largest request body (HTTP, after inflating) or message (gRPC)
    grace_s: float = 10.0  # how long shutdown waits for the requests in flight
    model_control_mode: str = "none"  # Triton's: "none" (all at start, no load/unload) or "explicit"
    load_models: Tuple[str, ...] = ()  # what "explicit" loads at start ("*": all)


class _Uvicorn(uvicorn.Server):
    """uvicorn, without its own signal handling: :func:`run_server` owns the signals
    (uvicorn's re-raises them when it returns, which would end the process before gRPC drains)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_server(
    path: Path, options: ServeOptions, address: ServerAddress,
    stop: Optional[asyncio.Event] = None, on_ready: Optional[Callable[[Registry], None]] = None,
) -> None:
    """Serve the export folder or repository at ``path`` until ``stop`` is set (or SIGTERM/SIGINT,
    when ``stop`` is None)."""
    loop = asyncio.get_running_loop()
    metrics = ServerMetrics()
    registry = Registry(Path(path), options, metrics, address.model_control_mode, address.load_models)
    try:
        await registry.start()
    except BaseException:
        await registry.close()
        raise
    worker = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="deploy-lstm-decode")
    app = http_app(registry, metrics, max_request_bytes=address.max_request_bytes, worker=worker)
    state: Dict[str, Any] = app.state.serving
    http = _Uvicorn(uvicorn.Config(
        app, host=address.host, port=address.port, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=address.grace_s, access_log=False,  # type: ignore[arg-type]  # a float works
    ))
    rpc = servicer = None
    if address.grpc_port:
        limit = address.max_request_bytes
        rpc = grpc.aio.server(options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
        servicer = InferenceServicer(registry, metrics, state, max_request_bytes=limit, worker=worker)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, rpc)
        rpc.add_insecure_port(f"{address.host}:{address.grpc_port}")
        await rpc.start()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    async def shutdown() -> None:
        await stop.wait()  # type: ignore[union-attr]
        log.warning("shutting down: finishing the requests in flight (up to %g s)", address.grace_s)
        state["ready"] = False
        http.should_exit = True
        if rpc is not None:
            servicer.stopping.set()  # type: ignore[union-attr]
            await rpc.stop(address.grace_s)

    stopper = loop.create_task(shutdown())
    serving = loop.create_task(http.serve())
    while not http.started and not serving.done():
        await asyncio.sleep(0.01)
    if http.started and on_ready is not None:
        on_ready(registry)
    try:
        await serving  # returns once should_exit is set and the HTTP requests in flight are answered
        if not stopper.done():
            stop.set()  # uvicorn ended on its own (e.g. the port was taken): stop gRPC too
        await stopper
    finally:
        await registry.close()
        worker.shutdown(wait=False)


def serve(path: Path, options: ServeOptions, address: ServerAddress, announce: bool = True) -> None:
    """Serve the export folder or repository at ``path`` until SIGTERM/SIGINT (``deploy-lstm serve``)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def ready(registry: Registry) -> None:
        if not announce:
            return
        grpc_at = f", gRPC on {address.host}:{address.grpc_port}" if address.grpc_port else ""
        print(f"serving {registry.path} (model control: {address.model_control_mode}): "
              f"HTTP on http://{address.host}:{address.port}{grpc_at}", flush=True)
        for mv in registry.ready_versions():
            model = mv.served
            assert model is not None
            padding = "pads mixed lengths" if model.pads else "batches equal lengths only (export with --lengths to pad)"
            if not model.batchable:
                padding = "no dynamic batching (a fixed batch size)"
            stream = f"; streams as {model.stream_name!r}" if model.stream_name else f"; no streaming ({model.stream_refusal})"
            print(
                f"  {model.name!r} version {mv.version} from {model.folder.path / model.folder.artifacts[model.artifact].file} "
                f"({model.artifact_why}): batches up to {model.options.max_batch} rows, {padding}{stream}",
                flush=True,
            )

    main = run_server(path, options, address, on_ready=ready)
    if uvloop is not None:
        uvloop.run(main)
    else:
        asyncio.run(main)
