"""Triton's statistics extension: per model and version, what the server did, as Triton reports it.

One :class:`VersionStatistics` per served (model name, version), fed once per executed batch
by the batch's runner (:meth:`VersionStatistics.record_execution`: a few integer additions
under a lock, on the worker thread) and read by ``GET v2/models[/NAME[/versions/V]]/stats``
and gRPC ``ModelStatistics`` (:func:`http_json`, :func:`grpc_response`).

What each figure means follows the real tritonserver (2.51, measured; see
``docs/guides/statistics.md``):

* ``inference_count``: batch rows of the successful requests (a request of 3 rows counts 3);
  ``execution_count``: executed batches, failed ones included.
* ``inference_stats.success`` / ``fail``: requests whose batch ran / raised, with their time
  from entering the queue to their outputs (or error).  A request refused before it is queued
  (a bad shape, an unknown input, NaN) is in neither: ``/metrics`` counts those errors.
* ``queue``: per successful request, the time from entering the queue to the start of its
  batch; ``compute_input`` / ``compute_infer`` / ``compute_output``: per successful request,
  the whole batch's time joining (and padding) the feeds, in the runner, splitting the outputs.
* ``batch_stats``: per executed batch size (this model's rows in the batch), executions and
  their compute times, failed executions included.
* ``last_inference``: when the last successful request finished, ms since the epoch (0: never).
* ``cache_hit`` / ``cache_miss``: always zero (this server has no response cache).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from tritonclient.grpc import service_pb2

from deploy_lstm.errors import InvalidRequest
from deploy_lstm.serve.protocol import show

__all__ = ["DURATIONS", "VersionStatistics", "BatchTimes", "record_batch", "collect", "loaded", "select", "http_json", "grpc_response", "not_available"]

#: the ``inference_stats`` durations, in Triton's order
DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")
_PHASES = ("compute_input", "compute_infer", "compute_output")


class BatchTimes(NamedTuple):
    """The three compute phases of one executed batch, in seconds."""

    compute_input: float  # joining (and padding) the requests' feeds
    compute_infer: float  # the runner's call
    compute_output: float  # splitting the outputs back per request


class VersionStatistics:
    """The statistics of one (model name, version); thread-safe.

    Args:
        name: the model name (``NAME`` or ``NAME_stream``).
        version: the version, a string as in Triton.
    """

    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, str(version)
        self._lock = threading.Lock()
        self._last_inference_ms = 0
        self._inference_count = 0
        self._execution_count = 0
        self._durations: Dict[str, List[int]] = {k: [0, 0] for k in DURATIONS}  # [count, ns]
        self._batches: Dict[int, List[int]] = {}  # batch size -> [executions, input ns, infer ns, output ns]

    def record_execution(self, requests: Sequence[Tuple[int, float]], start: float, end: float,
                         times: Optional[BatchTimes]) -> None:
        """One executed batch's share for this model (times from ``time.perf_counter()``, in s).

        Args:
            requests: (rows, when it entered the queue) of each request of this model in the batch.
            start: when the batch started: the end of its requests' queueing.
            end: when its outputs were split back (or it failed).
            times: the batch's compute phases; None when the batch failed (its requests are
                ``fail``; the execution still counts, as in Triton).
        """
        if not requests:
            return
        rows = sum(r for r, _ in requests)
        wall_ms = time.time_ns() // 1_000_000
        with self._lock:
            d = self._durations
            self._execution_count += 1
            batch = self._batches.setdefault(rows, [0, 0, 0, 0])
            batch[0] += 1
            if times is None:
                for _, enqueued in requests:
                    d["fail"][0] += 1
                    d["fail"][1] += _ns(end - enqueued)
                return
            phases = [_ns(t) for t in times]
            for i, ns in enumerate(phases):
                batch[1 + i] += ns
            self._inference_count += rows
            self._last_inference_ms = max(self._last_inference_ms, wall_ms)
            for _, enqueued in requests:
                for key, ns in zip(("success", "queue") + _PHASES, [_ns(end - enqueued), _ns(start - enqueued)] + phases):
                    d[key][0] += 1
                    d[key][1] += ns

    def snapshot(self) -> Dict[str, Any]:
        """Triton's HTTP JSON of this version (``model_stats`` entry): integers, batch sizes ascending."""
        with self._lock:
            durations = {k: {"count": c, "ns": ns} for k, (c, ns) in self._durations.items()}
            batches = sorted((size, list(v)) for size, v in self._batches.items())
            head = (self._last_inference_ms, self._inference_count, self._execution_count)
        return {
            "name": self.name, "version": self.version, "last_inference": head[0],
            "inference_count": head[1], "execution_count": head[2], "inference_stats": durations,
            "response_stats": {},
            "batch_stats": [
                {"batch_size": size, **{p: {"count": v[0], "ns": v[1 + i]} for i, p in enumerate(_PHASES)}}
                for size, v in batches
            ],
            "memory_usage": [],
        }


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def record_batch(statistics: Mapping[str, VersionStatistics], items: Iterable[Any], start: float, end: float,
                 times: Optional[BatchTimes]) -> None:
    """Record one executed batch for each model with requests in it (a batch may hold requests for
    ``NAME`` and ``NAME_stream``: each records an execution of its own rows).

    Args:
        statistics: model name -> its statistics.
        items: the batch's :class:`~deploy_lstm.serve.batching.Item` objects (``model``, ``rows``, ``enqueued``).
    """
    by_model: Dict[str, List[Tuple[int, float]]] = {}
    for item in items:
        by_model.setdefault(item.model, []).append((item.rows, item.enqueued))
    for model, requests in by_model.items():
        stats = statistics.get(model)
        if stats is not None:
            stats.record_execution(requests, start, end, times)


def collect(tables: Iterable[Mapping[str, VersionStatistics]]) -> Dict[str, Dict[str, VersionStatistics]]:
    """model name -> version -> statistics, from each loaded version's table (name -> statistics)."""
    out: Dict[str, Dict[str, VersionStatistics]] = {}
    for table in tables:
        for name, stats in table.items():
            out.setdefault(name, {})[stats.version] = stats
    return out


def loaded(registry: Any) -> Dict[str, Dict[str, VersionStatistics]]:
    """:func:`collect` of a :class:`~deploy_lstm.serve.registry.Registry`'s READY versions (Triton
    reports the versions loaded; a version loading or unloading is not listed)."""
    return collect(mv.served.statistics for mv in registry.ready_versions())


def not_available(name: str, version: Optional[str] = None) -> InvalidRequest:
    """Triton's error for statistics of a model or version it does not have (HTTP 400, gRPC INVALID_ARGUMENT)."""
    if version:
        return InvalidRequest(f"requested model version is not available for model {show(name)}")
    return InvalidRequest(f"requested model {show(name)} is not available")  # show: a client's name, cut short


def select(models: Mapping[str, Mapping[str, VersionStatistics]], name: str = "",
           version: str = "") -> List[VersionStatistics]:
    """The statistics a request names: every model and version (``name`` empty), every version
    of ``name``, or one version; by name, then version (numerically where it can).

    Args:
        models: model name -> version -> statistics, of the models loaded now.

    Raises:
        InvalidRequest: Triton's "requested model 'X' is not available" (or "... version ...").
    """
    if not name:
        names = sorted(models)
    elif name in models:
        names = [name]
    else:
        raise not_available(name)
    chosen = []
    for n in names:
        versions = models[n]
        if version and n == name:
            if version not in versions:
                raise not_available(name, version)
            chosen.append(versions[version])
        else:
            chosen += [versions[v] for v in sorted(versions, key=_version_order)]
    return chosen


def _version_order(version: str) -> Tuple[int, Any]:
    return (0, int(version)) if version.isdigit() else (1, version)


def http_json(stats: Iterable[VersionStatistics]) -> Dict[str, Any]:
    """``{"model_stats": [...]}``, the body of Triton's HTTP statistics endpoint."""
    return {"model_stats": [s.snapshot() for s in stats]}


def grpc_response(stats: Iterable[VersionStatistics]) -> Any:
    """The ``ModelStatisticsResponse`` of Triton's gRPC ``ModelStatistics``."""
    response = service_pb2.ModelStatisticsResponse()
    for s in stats:
        snap = s.snapshot()
        entry = response.model_stats.add(
            name=snap["name"], version=snap["version"], last_inference=snap["last_inference"],
            inference_count=snap["inference_count"], execution_count=snap["execution_count"],
        )
        for key in DURATIONS:
            getattr(entry.inference_stats, key).CopyFrom(service_pb2.StatisticDuration(**snap["inference_stats"][key]))
        for batch in snap["batch_stats"]:
            b = entry.batch_stats.add(batch_size=batch["batch_size"])
            for phase in _PHASES:
                getattr(b, phase).CopyFrom(service_pb2.StatisticDuration(**batch[phase]))
    return response
