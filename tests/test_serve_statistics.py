"""Triton's statistics extension (``deploy_lstm.serve.statistics``): the figures and their two
renderings, checked against the shape and semantics the real tritonserver 2.51 reports
(captured with a Python-backend model; see docs/guides/statistics.md)."""

from __future__ import annotations

import threading
from typing import Dict

import pytest
from google.protobuf import json_format
from tritonclient.grpc import service_pb2

from deploy_lstm.errors import InvalidRequest
from deploy_lstm.serve import statistics as st
from deploy_lstm.serve.protocol import status_of

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
    s.record_execution([(1, 100), (2, 150), (3, 200)], start_ns=1_000, end_ns=1_600, times=st.BatchTimes(10, 500, 20))
    s.record_execution([(2, 2_000)], start_ns=2_050, end_ns=2_300, times=st.BatchTimes(1, 200, 2))
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
    s.record_execution([(3, 100), (1, 300)], start_ns=400, end_ns=1_000, times=None)
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
            s.record_execution([(1, 0), (2, 0)], 1, 2, st.BatchTimes(1, 1, 1))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = s.snapshot()
    assert (got["inference_count"], got["execution_count"]) == (4 * 2000 * 3, 4 * 2000)
    assert got["inference_stats"]["success"]["count"] == 4 * 2000 * 2


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
    s.record_execution([(2, 5), (4, 9)], start_ns=20, end_ns=90, times=st.BatchTimes(3, 40, 7))
    s.record_execution([(1, 95)], start_ns=100, end_ns=130, times=None)
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
