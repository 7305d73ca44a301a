"""The v2 gRPC service (as ``tritonclient.grpc`` calls it), on ``grpc.aio``.

The messages and the service are Triton's own, from the stubs in the ``tritonclient``
wheel (``service_pb2``, ``service_pb2_grpc``, ``model_config_pb2``).  Requests become
:class:`~deploy_lstm.protocol.InferRequest` objects; errors get the code of
:func:`~deploy_lstm.protocol.status_of`.  ``ModelStreamInfer`` runs the requests of a
stream concurrently (chunks of different sequences batch together; chunks of one
sequence still run in order) and answers each as it completes, with its request id.
Decoding and encoding run on the worker threads the HTTP side uses (never on the event
loop); model names are metric labels only when served here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, AsyncIterator, Dict, Mapping, Optional

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from deploy_lstm.serve.model import VERSION
from deploy_lstm.serve.registry import ControlError, Registry, check_load_parameters
from deploy_lstm.errors import InvalidRequest, ModelNotFound
from deploy_lstm.serve import statistics
from deploy_lstm.serve.metrics import ServerMetrics, model_label
from deploy_lstm.serve.protocol import (
    EXTENSIONS,
    INLINE_BYTES,
    MAX_RANK,
    MAX_REQUEST_BYTES,
    InferRequest,
    RequestedOutput,
    check_parameters,
    check_size,
    datatype_of,
    dtype_of,
    show,
    status_of,
)
from deploy_lstm.version import __version__

__all__ = ["InferenceServicer", "decode_grpc", "encode_grpc", "unwrap_parameters", "SHUTTING_DOWN"]

log = logging.getLogger("deploy_lstm.server")

#: InferTensorContents field holding each datatype, for requests that do not send raw bytes
_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
SHUTTING_DOWN = ("the server is shutting down: this stream's requests so far were answered, later ones were not "
                 "taken; send them to a server that is up")
_CONTENTS_CHUNK = 1 << 16  # repeated values turned into numpy per step (the GIL is free between steps)


def unwrap_parameters(parameters: Mapping[str, Any]) -> Dict[str, Any]:
    """``InferParameter`` protobuf values -> plain Python values."""
    out = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def decode_grpc(request: Any, max_bytes: int = MAX_REQUEST_BYTES) -> InferRequest:
    """A ``ModelInferRequest`` -> :class:`InferRequest`.

    Raises:
        InvalidRequest: raw contents that do not fit their shape, tensors without data,
            parameters of the wrong type, a sequence id over its limit.
        RequestTooLarge: a tensor over ``max_bytes``.
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(f"{len(request.inputs)} inputs but {len(raw)} raw_input_contents; send one per input")
    inputs: Dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name, shape = tensor.name, tuple(tensor.shape)
        what = f"input {show(name)}"
        if name in inputs:
            raise InvalidRequest(f"{what} is given twice")
        if any(d < 0 for d in shape) or len(shape) > MAX_RANK:
            raise InvalidRequest(f"{what}: shape must be at most {MAX_RANK} non-negative integers, got {show(list(shape))}")
        dtype = dtype_of(tensor.datatype, what)
        check_parameters(unwrap_parameters(tensor.parameters), what)
        count = check_size(shape, dtype, max_bytes, what)
        if raw:
            data = raw[i]
            if len(data) != count * dtype.itemsize:
                raise InvalidRequest(
                    f"{what}: {len(data)} bytes of raw contents, but shape {list(shape)} of "
                    f"{tensor.datatype} needs {count * dtype.itemsize}"
                )
            inputs[name] = np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        else:
            values = getattr(tensor.contents, _CONTENTS.get(tensor.datatype, "fp32_contents"))
            if len(values) != count:
                raise InvalidRequest(f"{what}: shape {list(shape)} needs {count} values, contents has {len(values)}")
            parts = [np.asarray(values[k:k + _CONTENTS_CHUNK], dtype=dtype) for k in range(0, count, _CONTENTS_CHUNK)]
            inputs[name] = (np.concatenate(parts) if parts else np.zeros(0, dtype)).reshape(shape)
    outputs = [RequestedOutput(o.name, True) for o in request.outputs] or None
    parameters = check_parameters(unwrap_parameters(request.parameters), "request")
    return InferRequest(inputs, request.id or None, outputs, parameters)


def encode_grpc(name: str, request: InferRequest, outputs: Mapping[str, np.ndarray], version: str = VERSION) -> Any:
    response = service_pb2.ModelInferResponse(model_name=name, model_version=version, id=request.id or "")
    for key, value in outputs.items():
        value = np.ascontiguousarray(value)
        response.outputs.add(name=key, datatype=datatype_of(value.dtype), shape=list(value.shape))
        response.raw_output_contents.append(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
    return response


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Triton's ``GRPCInferenceService`` for the models of a :class:`Registry`."""

    def __init__(self, registry: Registry, metrics: ServerMetrics, state: Dict[str, Any], *,
                 max_request_bytes: int = MAX_REQUEST_BYTES, worker: Optional[concurrent.futures.Executor] = None) -> None:
        self.registry = registry
        self.metrics = metrics
        self.state = state  # {"ready": bool}, shared with the HTTP app
        self.max_request_bytes = max_request_bytes
        self.worker = worker  # None: asyncio's default executor
        self.stopping = asyncio.Event()  # set when the server starts shutting down: streams end

    def label(self, name: str) -> str:
        return model_label(name, self.registry.names()) if name else ""

    def count_error(self, error: BaseException, name: str, version: str = "") -> tuple:
        """Log a 500, count the error; its (HTTP status, gRPC code name, message)."""
        if isinstance(error, ControlError):
            status, code, message = error.status, error.code, str(error)
        else:
            status, code, message = status_of(error)
            if status == 500:
                log.exception("request failed", exc_info=error)
        version = getattr(error, "served_version", version)
        self.metrics.errors.labels(self.label(name), "grpc", str(status), version).inc()
        return status, code, message

    async def _abort(self, context: Any, error: BaseException, name: str = "") -> None:
        _, code, message = self.count_error(error, name)
        await context.abort(getattr(grpc.StatusCode, code), message)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.state["ready"])

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            ready = self.registry.ready(request.name, request.version)
        except ModelNotFound:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=ready and self.state["ready"])

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(name="deploy-lstm", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            meta = self.registry.resolve(request.name, request.version).metadata(request.name)
        except Exception as e:
            await self._abort(context, e)
        return json_format.ParseDict(meta, service_pb2.ModelMetadataResponse())

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        try:
            served = self.registry.resolve(request.name, request.version)
            config = json_format.ParseDict(served.config(request.name), model_config_pb2.ModelConfig())
        except Exception as e:
            await self._abort(context, e)
        return service_pb2.ModelConfigResponse(config=config)

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        models = self.registry.index(request.ready)
        if not self.state["ready"]:  # draining: nothing takes requests any more
            models = [{**m, "state": "UNAVAILABLE"} if "state" in m else m for m in models if not request.ready]
        return service_pb2.RepositoryIndexResponse(models=[service_pb2.RepositoryIndexResponse.ModelIndex(**m) for m in models])

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        try:
            self.registry.check_control()
            check_load_parameters(request.parameters)
            await self.registry.load(request.model_name)
        except Exception as e:
            await self._abort(context, e)
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        try:
            self.registry.check_control()
            await self.registry.unload(request.model_name)
        except Exception as e:
            await self._abort(context, e)
        return service_pb2.RepositoryModelUnloadResponse()

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        """Triton's statistics extension (an empty name: every model and version loaded)."""
        try:
            chosen = statistics.select(statistics.loaded(self.registry), request.name, request.version)
        except InvalidRequest as e:
            await self._abort(context, e)
        return statistics.grpc_response(chosen)

    async def _infer(self, request: Any) -> Any:
        t0 = time.perf_counter()
        name, version = request.model_name, ""
        loop = asyncio.get_running_loop()
        try:
            served = self.registry.resolve(name, request.model_version)
            version = served.version
            with served.taking():
                # small messages are decoded and encoded here: cheaper than a hop to a worker (protocol.INLINE_BYTES)
                if request.ByteSize() <= INLINE_BYTES:
                    infer_request = decode_grpc(request, self.max_request_bytes)
                else:
                    infer_request = await loop.run_in_executor(self.worker, decode_and_release, decode_grpc, request, self.max_request_bytes)
                outputs = await served.infer(infer_request, name)
                if sum(v.nbytes for v in outputs.values()) <= INLINE_BYTES:
                    response = encode_grpc(name, infer_request, outputs, version)
                else:
                    response = await loop.run_in_executor(self.worker, encode_grpc, name, infer_request, outputs, version)
        except Exception as e:
            self.metrics.requests.labels(self.label(name), "grpc", "error", version).inc()
            e.served_version = version  # type: ignore[attr-defined]  # the errors metric's version label
            raise
        self.metrics.requests.labels(self.label(name), "grpc", "ok", version).inc()
        self.metrics.latency.labels(self.label(name), "grpc", version).observe(time.perf_counter() - t0)
        return response

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        try:
            return await self._infer(request)
        except Exception as e:
            await self._abort(context, e, request.model_name)

    async def ModelStreamInfer(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        """A bidirectional stream of requests, answered as each completes.  Once the server is
        stopping (:attr:`stopping`), the stream takes no more requests, answers those it took,
        and ends with UNAVAILABLE saying so, rather than being cut when the grace period ends."""
        loop = asyncio.get_running_loop()
        done: "asyncio.Queue[Any]" = asyncio.Queue()
        pending = 0

        async def answer(request: Any) -> None:
            try:
                response = service_pb2.ModelStreamInferResponse(infer_response=await self._infer(request))
            except Exception as e:
                _, _, message = self.count_error(e, request.model_name)
                # the client matches an error to its request by the id in infer_response
                response = service_pb2.ModelStreamInferResponse(
                    error_message=message,
                    infer_response=service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id),
                )
            await done.put(response)

        async def read() -> None:
            nonlocal pending
            async for request in request_iterator:
                pending += 1
                loop.create_task(answer(request))
            await done.put(None)  # the client closed its side

        reader = loop.create_task(read())
        stopping = loop.create_task(self.stopping.wait())
        closed = cut = False
        try:
            while not closed or pending:
                getter = loop.create_task(done.get())
                await asyncio.wait({getter} if closed else {getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():  # the server is stopping: take no more requests
                    getter.cancel()
                    reader.cancel()
                    closed = cut = True
                    continue
                item = getter.result()
                if item is None:
                    closed = True
                    continue
                pending -= 1
                yield item
        finally:
            reader.cancel()
            stopping.cancel()
        if cut:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
