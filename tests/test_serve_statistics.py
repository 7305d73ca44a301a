"""Triton's statistics extension (``deploy_lstm.serve.statistics``): the figures and their two
renderings, checked against the shape and semantics the real tritonserver 2.51 reports
(captured with a Python-backend model; see docs/guides/statistics.md)."""

from __future__ import annotations

import threading
import types
from typing import Dict

import pytest
from google.protobuf import json_format
from tritonclient.grpc import service_pb2

from deploy_lstm.errors import InvalidRequest
from deploy_lstm.serve import statistics as st
from deploy_lstm.serve.protocol import status_of

NS = 1e-9  # the tests' times are whole ns, given in seconds as the server gives them

#: a model_stats entry of tritonserver 2.51 for a version that served nothing (its HTTP JSON)
TRITON_IDLE = {
    "name": "batched", "version": "1", "last_inference": 0, "inference_count": 0, "execution_count": 0,
    "inference_stats": {k: {"count": 0, "ns": 0} for k in (
        "success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")},
    "response_stats": {}, "batch_stats": [], "memory_usage": [],
}


def test_an_idle_version_is_reported_as_triton_reports_it() -> None:
    got = st.VersionStatistics("batched", "1").snapshot()
    assert got == TRITON_IDLE
    assert list(got) == list(TRITON_IDLE) and list(got["inference_stats"]) == list(TRITON_IDLE["inference_stats"])


def test_one_batch_of_three_requests() -> None:
    """Triton's semantics: rows count inferences, a batch one execution, each request the batch's compute."""
    s = st.VersionStatistics("m", "2")
    s.record_execution([(1, 100 * NS), (2, 150 * NS), (3, 200 * NS)], 1_000 * NS, 1_600 * NS, st.BatchTimes(10 * NS, 500 * NS, 20 * NS))
    s.record_execution([(2, 2_000 * NS)], 2_050 * NS, 2_300 * NS, st.BatchTimes(1 * NS, 200 * NS, 2 * NS))
    got = s.snapshot()
    assert (got["inference_count"], got["execution_count"]) == (8, 2)
    i = got["inference_stats"]
    assert i["success"] == {"count": 4, "ns": (1500 + 1450 + 1400) + 300}
    assert i["queue"] == {"count": 4, "ns": (900 + 850 + 800) + 50}
    assert i["compute_infer"] == {"count": 4, "ns": 3 * 500 + 200}
    assert i["compute_input"] == {"count": 4, "ns": 3 * 10 + 1}
    assert i["fail"] == {"count": 0, "ns": 0}
    assert got["batch_stats"] == [
        {"batch_size": 2, "compute_input": {"count": 1, "ns": 1}, "compute_infer": {"count": 1, "ns": 200},
         "compute_output": {"count": 1, "ns": 2}},
        {"batch_size": 6, "compute_input": {"count": 1, "ns": 10}, "compute_infer": {"count": 1, "ns": 500},
         "compute_output": {"count": 1, "ns": 20}},
    ]
    assert got["last_inference"] > 1_700_000_000_000  # ms since the epoch


def test_a_failed_batch() -> None:
    """As tritonserver: fail count and time per request, the execution counted, nothing else."""
    s = st.VersionStatistics("m", "1")
    s.record_execution([(3, 100 * NS), (1, 300 * NS)], 400 * NS, 1_000 * NS, None)
    got = s.snapshot()
    assert got["inference_stats"]["fail"] == {"count": 2, "ns": 900 + 700}
    assert (got["inference_count"], got["execution_count"], got["last_inference"]) == (0, 1, 0)
    assert all(got["inference_stats"][k] == {"count": 0, "ns": 0} for k in ("success", "queue", "compute_infer"))
    assert [b["batch_size"] for b in got["batch_stats"]] == [4]
    assert got["batch_stats"][0]["compute_infer"] == {"count": 1, "ns": 0}


def test_concurrent_recording_loses_nothing() -> None:
    s = st.VersionStatistics("m", "1")

    def work() -> None:
        for _ in range(2000):
            s.record_execution([(1, 0.0), (2, 0.0)], NS, 2 * NS, st.BatchTimes(NS, NS, NS))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = s.snapshot()
    assert (got["inference_count"], got["execution_count"]) == (4 * 2000 * 3, 4 * 2000)
    assert got["inference_stats"]["success"]["count"] == 4 * 2000 * 2


def test_a_batch_shared_by_a_model_and_its_stream() -> None:
    """Requests for NAME and NAME_stream may share a batch: each model records its own rows."""
    item = lambda model, rows: types.SimpleNamespace(model=model, rows=rows, enqueued=0.0)  # noqa: E731
    tables = [{n: st.VersionStatistics(n, "1") for n in ("m", "m_stream")}, {"m": st.VersionStatistics("m", "2")}]
    st.record_batch(tables[0], [item("m", 2), item("m_stream", 1), item("m", 3)], 1e-6, 2e-6, st.BatchTimes(0, 1e-6, 0))
    models = st.collect(tables)
    assert {n: sorted(v) for n, v in models.items()} == {"m": ["1", "2"], "m_stream": ["1"]}
    got = {n: s.snapshot() for n, s in tables[0].items()}
    assert [(b["batch_size"], b["compute_infer"]) for b in got["m"]["batch_stats"]] == [(5, {"count": 1, "ns": 1000})]
    assert [b["batch_size"] for b in got["m_stream"]["batch_stats"]] == [1]
    assert (got["m"]["inference_count"], got["m_stream"]["inference_count"]) == (5, 1)
    assert models["m"]["2"].snapshot()["execution_count"] == 0


@pytest.fixture
def models() -> Dict[str, Dict[str, st.VersionStatistics]]:
    return {name: {v: st.VersionStatistics(name, v) for v in versions}
            for name, versions in (("b", ["10", "2"]), ("a", ["1"]), ("b_stream", ["2"]))}


def test_select(models: Dict[str, Dict[str, st.VersionStatistics]]) -> None:
    key = lambda chosen: [(s.name, s.version) for s in chosen]  # noqa: E731
    assert key(st.select(models)) == [("a", "1"), ("b", "2"), ("b", "10"), ("b_stream", "2")]
    assert key(st.select(models, "b")) == [("b", "2"), ("b", "10")]
    assert key(st.select(models, "b", "10")) == [("b", "10")]


@pytest.mark.parametrize("name, version, message", [
    ("nope", "", "requested model 'nope' is not available"),
    ("nope", "1", "requested model 'nope' is not available"),
    ("b", "7", "requested model version is not available for model 'b'"),
])
def test_unknown_model_or_version_is_tritons_error(models: Dict[str, Dict[str, st.VersionStatistics]],
                                                  name: str, version: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        st.select(models, name, version)
    assert status_of(e.value) == (400, "INVALID_ARGUMENT", message)


def test_grpc_response_carries_the_http_figures() -> None:
    s = st.VersionStatistics("m", "3")
    s.record_execution([(2, 5 * NS), (4, 9 * NS)], 20 * NS, 90 * NS, st.BatchTimes(3 * NS, 40 * NS, 7 * NS))
    s.record_execution([(1, 95 * NS)], 100 * NS, 130 * NS, None)
    response = st.grpc_response([s])
    assert isinstance(response, service_pb2.ModelStatisticsResponse)
    # tritonclient.grpc's get_inference_statistics(as_json=True) form: uint64 as strings, zeros left out
    as_json = json_format.MessageToDict(response, preserving_proto_field_name=True)
    http = st.http_json([s])["model_stats"][0]

    def numbers(d: object) -> object:
        if isinstance(d, dict):
            kept = {k: numbers(v) for k, v in d.items()}
            return {k: v for k, v in kept.items() if v not in (0, {}, [])}
        if isinstance(d, list):
            return [numbers(v) for v in d]
        return int(d) if isinstance(d, str) and d.isdigit() else d

    expected = numbers({k: v for k, v in http.items() if k not in ("response_stats", "memory_usage")})
    assert numbers(as_json["model_stats"][0]) == expected
