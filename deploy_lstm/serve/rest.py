"""The v2 HTTP/REST endpoints (as ``tritonclient.http`` calls them), on Starlette.

Routes move bytes between HTTP and :mod:`~deploy_lstm.serve.protocol`/:mod:`~deploy_lstm.serve.model`;
every error becomes ``{"error": "..."}`` with the status of :func:`status_of`.  The work a
body costs (inflating, parsing, encoding the answer) runs on a small pool of worker threads,
never on the event loop, so one large or hostile request does not keep the others waiting;
the pool's size bounds how many bodies are being decoded at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, Callable, Dict, List, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy_lstm.errors import InvalidRequest, ModelNotFound
from deploy_lstm.serve import bounded_json, statistics
from deploy_lstm.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics, model_label
from deploy_lstm.serve.registry import NOT_READY, ControlError, Registry, check_load_parameters
from deploy_lstm.serve.protocol import (
    EXTENSIONS,
    HEADER_LENGTH,
    RequestTooLarge,
    decode_http_body,
    decode_and_release,
    decode_inline,
    encode_http_body,
    encode_inline,
    show,
    status_of,
)
from deploy_lstm.version import __version__

__all__ = ["http_app", "HTTPFrontEnd", "DECODE_THREADS"]

log = logging.getLogger("deploy_lstm.server")

DECODE_THREADS = 2  # bodies decoded at once (each may cost a few times --max-request-bytes while it is)
INDEX_BODY_BYTES = 64 << 10  # a repository index or load request is {"ready": true} or {"parameters": {}}: plenty


class HTTPFrontEnd:
    """The routes of one server: thin handlers around a :class:`Registry` and the protocol's codecs."""

    def __init__(self, registry: Registry, metrics: ServerMetrics, max_request_bytes: int,
                 worker: Optional[concurrent.futures.Executor] = None) -> None:
        self.registry = registry
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.worker = worker or concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="deploy-lstm-decode")
        self.state: Dict[str, Any] = {"ready": True}  # the server sets False while draining

    async def offload(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)

    def error(self, e: BaseException, name: str = "", version: str = "") -> JSONResponse:
        if isinstance(e, ControlError):
            status, message = e.status, str(e)
        else:
            status, _, message = status_of(e)
        if status == 500 and not isinstance(e, ControlError):
            log.exception("request failed", exc_info=e)
        self.metrics.errors.labels(model_label(name, self.registry.names()) if name else "", "http", str(status), version).inc()
        return JSONResponse({"error": message}, status_code=status)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "deploy-lstm", "version": __version__, "extensions": EXTENSIONS})

    async def live(self, request: Request) -> Response:
        """200 with ``{"live": true}``: tritonclient reads the status only (Triton's own body is
        empty), KServe's ``InferenceRESTClient`` reads the JSON (KServe's ModelServer sends it)."""
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        """200 ``{"ready": true}``, or 503 ``{"ready": false}`` while draining (as :meth:`live`)."""
        ready = bool(self.state["ready"])
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    def describe(self, what: str) -> Callable[[Request], Any]:
        """A GET handler for a model's ``metadata`` or ``config``."""
        async def handler(request: Request) -> Response:
            try:
                name = request.path_params["model"]
                served = self.registry.resolve(name, request.path_params.get("version"))
                return JSONResponse(getattr(served, what)(name))
            except Exception as e:
                return self.error(e)

        return handler

    async def model_ready(self, request: Request) -> Response:
        try:
            ready = self.registry.ready(request.path_params["model"], request.path_params.get("version"))
        except ModelNotFound as e:
            return self.error(e)
        if not ready:  # a model of the repository that is not loaded: tritonserver's answer
            return JSONResponse({"error": NOT_READY}, status_code=400)
        return Response(status_code=200 if self.state["ready"] else 503)

    async def repository_index(self, request: Request) -> Response:
        try:
            ready_only = _ready_only(await read_body(request, INDEX_BODY_BYTES))
        except InvalidRequest as e:
            return self.error(e)
        models = self.registry.index(ready_only)
        if not self.state["ready"]:  # draining: nothing takes requests any more
            models = [{**m, "state": "UNAVAILABLE"} if "state" in m else m for m in models if not ready_only]
        return JSONResponse(models)

    def control(self, action: str) -> Callable[[Request], Any]:
        """``POST v2/repository/models/{model}/load`` or ``/unload`` (Triton's answers: 200 and an empty body)."""
        async def handler(request: Request) -> Response:
            name = request.path_params["model"]
            try:
                self.registry.check_control()
                _load_parameters(await read_body(request, INDEX_BODY_BYTES))
                await getattr(self.registry, action)(name)
            except Exception as e:
                return self.error(e)
            return Response(status_code=200)

        return handler

    async def infer(self, request: Request) -> Response:
        t0 = time.perf_counter()
        name = request.path_params["model"]
        label, version = model_label(name, self.registry.names()), ""
        headers = request.headers
        try:
            served = self.registry.resolve(name, request.path_params.get("version"))
            version = served.version
            with served.taking():
                body = await read_body(request, self.max_request_bytes)
                decoding = (body, headers.get("content-encoding"), headers.get(HEADER_LENGTH), self.max_request_bytes)
                if decode_inline(len(body), decoding[1]):  # a small body: cheaper here than a hop to a worker
                    infer_request = decode_http_body(*decoding)
                else:
                    infer_request = await self.offload(decode_and_release, decode_http_body, *decoding)
                del decoding
                del body
                outputs = await served.infer(infer_request, name)
                encoding_args = (name, version, infer_request, outputs, headers.get("accept-encoding"))
                if encode_inline(infer_request, outputs, encoding_args[-1]):
                    payload, header_length, encoding = encode_http_body(*encoding_args)
                else:
                    payload, header_length, encoding = await self.offload(encode_http_body, *encoding_args)
        except Exception as e:
            self.metrics.requests.labels(label, "http", "error", version).inc()
            return self.error(e, name, version)
        answer_headers = {}
        if header_length is not None:
            answer_headers["Inference-Header-Content-Length"] = str(header_length)
        if encoding is not None:
            answer_headers["Content-Encoding"] = encoding
        media = "application/json" if header_length is None else "application/octet-stream"
        self.metrics.requests.labels(label, "http", "ok", version).inc()
        self.metrics.latency.labels(label, "http", version).observe(time.perf_counter() - t0)
        return Response(payload, media_type=media, headers=answer_headers)

    async def stats(self, request: Request) -> Response:
        """Triton's statistics extension: ``GET v2/models[/{model}[/versions/{version}]]/stats``."""
        params = request.path_params
        try:
            chosen = statistics.select(statistics.loaded(self.registry), params.get("model", ""), params.get("version", ""))
        except InvalidRequest as e:
            return self.error(e)
        return JSONResponse(statistics.http_json(chosen))

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", str(exc))
        return JSONResponse({"error": f"{detail}: {request.method} {show(request.url.path)}"}, status_code=status)

    def routes(self) -> List[Route]:
        routes = [
            Route("/v2", self.server_metadata),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{model}/load", self.control("load"), methods=["POST"]),
            Route("/v2/repository/models/{model}/unload", self.control("unload"), methods=["POST"]),
            Route("/metrics", self.prometheus),
            Route("/v2/models/stats", self.stats),  # before /v2/models/{model}, which "stats" would match
        ]
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            routes += [
                Route(prefix, self.describe("metadata")),
                Route(prefix + "/ready", self.model_ready),
                Route(prefix + "/stats", self.stats),
                Route(prefix + "/config", self.describe("config")),
                Route(prefix + "/infer", self.infer, methods=["POST"]),
            ]
        return routes


def http_app(registry: Registry, metrics: ServerMetrics, *, max_request_bytes: int,
             worker: Optional[concurrent.futures.Executor] = None) -> Starlette:
    """The Starlette application serving ``registry``'s models; ``app.state.serving`` is ``{"ready": bool}``."""
    front = HTTPFrontEnd(registry, metrics, max_request_bytes, worker)
    app = Starlette(routes=front.routes(), exception_handlers={HTTPException: front.not_found})
    app.state.serving = front.state
    return app


def _ready_only(body: bytearray) -> bool:
    """The ``ready`` flag of a repository index request body (``{}`` or ``{"ready": true}``)."""
    if not body.strip():
        return False
    doc = bounded_json.parse(body, INDEX_BODY_BYTES).doc
    if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
        raise InvalidRequest('repository index body must be a JSON object like {"ready": true}')
    return doc.get("ready", False)


def _load_parameters(body: bytearray) -> None:
    """Check a load/unload request body: ``{}`` or ``{"parameters": {...}}``.  Models load from the
    repository on disk only: a ``config`` override or ``file:`` contents are refused.

    Raises:
        InvalidRequest: another body, or a parameter this server does not take.
    """
    if not body.strip():
        return
    doc = bounded_json.parse(body, INDEX_BODY_BYTES).doc
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters", {}), dict) or set(doc) - {"parameters"}:
        raise InvalidRequest('a load/unload request body must be a JSON object like {"parameters": {}}')
    check_load_parameters(doc.get("parameters", {}))


async def read_body(request: Request, limit: int) -> bytearray:
    """The request's body, refused (413) as soon as it is known to exceed ``limit`` bytes
    (a bytearray, grown in place: no second copy of the whole body is made to join it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes, over this server's limit of {limit} (--max-request-bytes)")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise RequestTooLarge(f"request body over this server's limit of {limit} bytes (--max-request-bytes)")
        body += chunk
    return body
