"""The v2 HTTP/REST endpoints (as ``tritonclient.http`` calls them), on Starlette.

Routes move bytes between HTTP and :mod:`~deploy_lstm.protocol`/:mod:`~deploy_lstm.engine`;
every error becomes ``{"error": "..."}`` with the status of :func:`status_of`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy_lstm.serve.model import VERSION, ServedModel
from deploy_lstm.errors import InvalidRequest, ModelNotFound
from deploy_lstm.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from deploy_lstm.serve.protocol import (
    EXTENSIONS,
    HEADER_LENGTH,
    RequestTooLarge,
    compress,
    decode_http,
    decompress,
    encode_http,
    status_of,
)
from deploy_lstm.version import __version__

__all__ = ["http_app"]

log = logging.getLogger("deploy_lstm.server")



def http_app(model: ServedModel, metrics: ServerMetrics, *, max_request_bytes: int) -> Starlette:
    """The Starlette application serving ``model``."""
    state: Dict[str, Any] = {"ready": True}

    def error(e: BaseException, name: Optional[str] = None) -> JSONResponse:
        status, _, message = status_of(e)
        if status == 500:
            log.exception("request failed", exc_info=e)
        metrics.errors.labels(name or "", "http", str(status)).inc()
        return JSONResponse({"error": message}, status_code=status)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "deploy-lstm", "version": __version__, "extensions": EXTENSIONS})

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        return Response(status_code=200 if state["ready"] else 503)

    def describe(what: Any) -> Any:  # GET a model's metadata or config
        async def handler(request: Request) -> Response:
            try:
                name = request.path_params["model"]
                model.check_name(name, request.path_params.get("version"))
                return JSONResponse(what(name))
            except Exception as e:
                return error(e)

        return handler

    async def model_ready(request: Request) -> Response:
        try:
            model.check_name(request.path_params["model"], request.path_params.get("version"))
        except ModelNotFound as e:
            return error(e)
        return Response(status_code=200 if state["ready"] else 503)

    async def repository_index(request: Request) -> Response:
        body = await request.body()
        ready_only = False
        if body.strip():
            try:
                ready_only = bool(json.loads(body).get("ready", False))
            except (ValueError, AttributeError):
                return error(InvalidRequest("repository index body must be a JSON object like {\"ready\": true}"))
        state_name = "READY" if state["ready"] else "UNAVAILABLE"
        models = [{"name": n, "version": VERSION, "state": state_name} for n in model.names()]
        return JSONResponse([m for m in models if not ready_only or m["state"] == "READY"])

    async def infer(request: Request) -> Response:
        t0 = time.perf_counter()
        name = request.path_params["model"]
        try:
            model.check_name(name, request.path_params.get("version"))
            body = await _read_body(request, max_request_bytes)
            body = decompress(body, request.headers.get("content-encoding"), max_request_bytes)
            infer_request = decode_http(body, request.headers.get(HEADER_LENGTH))
            outputs = await model.infer(infer_request, name)
            payload, header_length = encode_http(name, VERSION, infer_request, outputs)
        except Exception as e:
            metrics.requests.labels(name, "http", "error").inc()
            return error(e, name)
        payload, encoding = compress(payload, request.headers.get("accept-encoding"))
        headers = {}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = str(header_length)
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        media = "application/json" if header_length is None else "application/octet-stream"
        metrics.requests.labels(name, "http", "ok").inc()
        metrics.latency.labels(name, "http").observe(time.perf_counter() - t0)
        return Response(payload, media_type=media, headers=headers)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", str(exc))
        return JSONResponse({"error": f"{detail}: {request.method} {request.url.path}"}, status_code=status)

    routes = [
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/metrics", prometheus),
    ]
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        routes += [
            Route(prefix, describe(model.metadata)),
            Route(prefix + "/ready", model_ready),
            Route(prefix + "/config", describe(model.config)),
            Route(prefix + "/infer", infer, methods=["POST"]),
        ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.serving = state  # {"ready": bool}: the server sets False while draining
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes, over this server's limit of {limit} (--max-request-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body over this server's limit of {limit} bytes (--max-request-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)
