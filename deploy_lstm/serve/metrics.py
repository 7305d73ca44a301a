"""The server's Prometheus metrics, in a registry of their own (one per server).

Every per-model series carries the model's ``version`` label (a repository serves several).

Label values come from the server, never straight from a request: a model name in a URL or
a gRPC message is a label only if the server serves that model (:func:`model_label`), so
requests for made-up names cannot grow ``/metrics`` without end.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST", "UNKNOWN_MODEL", "model_label"]

UNKNOWN_MODEL = "_unknown"  # the one label value of every model name this server does not serve


def model_label(name: str, served: Iterable[str]) -> str:
    """The ``model`` label of a request for ``name``: the name if it is served here, else :data:`UNKNOWN_MODEL`."""
    return name if name in served else UNKNOWN_MODEL

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServerMetrics:
    """What ``GET /metrics`` shows: requests, errors, batches, queueing, padding, sequences."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "deploy_lstm_requests", "Inference requests answered, by model, protocol and outcome",
            ["model", "protocol", "outcome", "version"], registry=r,
        )
        self.errors = Counter(
            "deploy_lstm_request_errors", "Requests refused or failed, by model, protocol and status code",
            ["model", "protocol", "code", "version"], registry=r,
        )
        self.latency = Histogram(
            "deploy_lstm_request_seconds", "Time from a decoded request to its encoded response",
            ["model", "protocol", "version"], buckets=_LATENCY, registry=r,
        )
        self.queue = Histogram(
            "deploy_lstm_queue_seconds", "Time a request waited for its batch to start", ["model", "version"],
            buckets=_LATENCY, registry=r,
        )
        self.compute = Histogram(
            "deploy_lstm_compute_seconds", "Runner time per batch (onnxruntime, torch, executorch)", ["model", "version"], buckets=_LATENCY, registry=r,
        )
        self.batch_requests = Histogram(
            "deploy_lstm_batch_requests", "Requests per executed batch", ["model", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r,
        )
        self.batch_rows = Histogram(
            "deploy_lstm_batch_rows", "Rows (batch entries) per executed batch", ["model", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )
        self.padding = Histogram(
            "deploy_lstm_padding_ratio", "Padded time steps / real time steps per executed batch", ["model", "version"],
            buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0), registry=r,
        )
        self.live_sequences = Gauge(
            "deploy_lstm_live_sequences", "Streaming sequences whose state the server holds", ["model", "version"], registry=r,
        )
        self.expired_sequences = Counter(
            "deploy_lstm_expired_sequences", "Sequences dropped after their idle timeout", ["model", "version"], registry=r,
        )
        self.model_memory = Gauge(
            "deploy_lstm_model_memory_bytes",
            "Resident memory the process gained while the model version loaded (runner opened, start-up probe run)",
            ["model", "version"], registry=r,
        )
        self.model_loaded = Gauge(
            "deploy_lstm_model_ready", "1 while the model version is READY, else 0", ["model", "version"], registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
