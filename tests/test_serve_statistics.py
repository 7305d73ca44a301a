"""Triton's statistics extension (``deploy_lstm.serve.statistics``): the figures and their two
renderings, checked against the shape and semantics the real tritonserver 2.51 reports
(captured with a Python-backend model; see docs/guides/statistics.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
import types
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

import deploy_lstm
from deploy_lstm.errors import InvalidRequest
from deploy_lstm.serve import statistics as st
from deploy_lstm.serve.model import ServeOptions
from deploy_lstm.serve.process import ServerAddress, run_server
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


def test_a_huge_unknown_name_is_not_echoed_back(models: Dict[str, Dict[str, st.VersionStatistics]]) -> None:
    with pytest.raises(InvalidRequest) as e:
        st.select(models, "x" * 1_000_000)
    assert len(str(e.value)) < 200


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


# -- through a real server: deploy-lstm serve on a repository, driven by tritonclient -----------------------------

VERSIONS = {"a": ("1", "2"), "b": ("1",)}  # the repository: a/1, a/2 and b (unversioned: version 1)
FEATURES = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InProcessServer:
    """``run_server`` on loopback in a thread of this process (its models reachable, so a test
    can make one fail), stopped like SIGTERM stops it."""

    def __init__(self, path: Path) -> None:
        self.address = ServerAddress(port=_free_port(), grpc_port=_free_port(), grace_s=2.0,
                                     model_control_mode="explicit", load_models=("*",))
        self.url, self.grpc_url = f"127.0.0.1:{self.address.port}", f"127.0.0.1:{self.address.grpc_port}"
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.registry: Any = None
        self.error: Optional[BaseException] = None

        def ready(registry: Any) -> None:
            self.registry = registry
            self.started.set()

        async def main() -> None:
            self.stop_event = asyncio.Event()
            await run_server(path, ServeOptions(max_delay_ms=20.0), self.address, stop=self.stop_event, on_ready=ready)

        def run() -> None:
            try:
                self.loop.run_until_complete(main())
            except BaseException as e:  # reported by the fixture
                self.error = e
            finally:
                self.started.set()

        self.thread = threading.Thread(target=run, name="deploy-lstm-test-server", daemon=True)
        self.thread.start()
        self.started.wait(120)
        if self.registry is None:
            raise RuntimeError(f"server did not start: {self.error!r}")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)

    def get(self, path: str) -> Tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://{self.url}/{path}", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a /metrics series' samples whose labels include ``labels``."""
        total = 0.0
        for family in text_string_to_metric_families(urllib.request.urlopen(f"http://{self.url}/metrics").read().decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One small LSTM exported once, copied as a/1, a/2 and b."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("stats")
    folder = root / "lstm"
    deploy_lstm.export_folder(deploy_lstm.LSTM(FEATURES, 4), folder, artifacts=["onnx"])
    repo = root / "repo"
    for name, versions in VERSIONS.items():
        for v in versions:
            shutil.copytree(folder, repo / name / v if name == "a" else repo / name)
    s = InProcessServer(repo)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def clients(server: InProcessServer) -> Iterator[Dict[str, Any]]:
    made = {"http": thttp.InferenceServerClient(server.url, concurrency=4), "grpc": tgrpc.InferenceServerClient(server.grpc_url)}
    yield made
    for c in made.values():
        c.close()


def _x(rows: int, steps: int = 4) -> np.ndarray:
    return np.random.default_rng(rows * 10 + steps).standard_normal((steps, rows, FEATURES), dtype=np.float32)


def _send(clients: Dict[str, Any], protocol: str, model: str, x: np.ndarray, version: str = "", **kw: Any) -> Any:
    module = thttp if protocol == "http" else tgrpc
    tensor = module.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return clients[protocol].infer(model, [tensor], model_version=version, **kw)


def _stats(clients: Dict[str, Any], model: str, version: str) -> Dict[str, Any]:
    """One version's statistics over HTTP, checked equal to gRPC's (whose JSON writes uint64 as strings)."""
    over_http = clients["http"].get_inference_statistics(model, version)["model_stats"]
    over_grpc = clients["grpc"].get_inference_statistics(model, version, as_json=True)["model_stats"]
    assert len(over_http) == len(over_grpc) == 1
    h, g = over_http[0], json.loads(json.dumps(over_grpc[0]))
    assert (h["name"], h["version"]) == (g["name"], g["version"]) == (model, version)
    for key in ("inference_count", "execution_count", "last_inference"):
        assert h[key] == int(g.get(key, 0)), key
    for key, d in h["inference_stats"].items():
        assert (d["count"], d["ns"]) == tuple(int(g["inference_stats"].get(key, {}).get(k, 0)) for k in ("count", "ns")), key
    assert [b["batch_size"] for b in h["batch_stats"]] == [int(b["batch_size"]) for b in g.get("batch_stats", [])]
    return h


def _check_sums(s: Dict[str, Any]) -> None:
    """What holds for every version without failures: rows, executions, per-request records."""
    i = s["inference_stats"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in s["batch_stats"]) == s["inference_count"]
    assert sum(b["compute_infer"]["count"] for b in s["batch_stats"]) == s["execution_count"]
    assert i["queue"]["count"] == i["compute_infer"]["count"] == i["success"]["count"]
    assert i["success"]["ns"] >= i["queue"]["ns"] + i["compute_infer"]["ns"] / s["execution_count"] > 0
    assert sorted(b["batch_size"] for b in s["batch_stats"]) == [b["batch_size"] for b in s["batch_stats"]]


@pytest.mark.slow
def test_counts_equal_the_requests_sent(server: InProcessServer, clients: Dict[str, Any]) -> None:
    """Per model and version, over HTTP and gRPC: requests and rows sent one by one and at once;
    requests refused before they are queued are in no statistic; /metrics counts the same."""
    sent = {("a", "1"): [1, 2, 3], ("a", "2"): [2, 2, 5, 1, 1, 3], ("b", "1"): [4]}
    for (model, version), rows in sent.items():
        for k, r in enumerate(rows[:3]):  # one by one, over both protocols
            _send(clients, ("http", "grpc")[k % 2], model, _x(r), version if version != "2" else "")  # "": the latest
    with ThreadPoolExecutor(3) as pool:  # at once: they may share batches
        list(pool.map(lambda r: _send(clients, "grpc", "a", _x(r), "2"), sent[("a", "2")][3:]))
    for protocol in ("http", "grpc"):
        with pytest.raises(InferenceServerException):
            _send(clients, protocol, "a", _x(2, steps=4)[..., :2], "1")  # 2 features for 3: refused, not counted
    before_last = time.time_ns() // 1_000_000
    _send(clients, "http", "b", _x(2), "1")
    sent[("b", "1")].append(2)
    for (model, version), rows in sent.items():
        s = _stats(clients, model, version)
        assert (s["inference_count"], s["inference_stats"]["success"]["count"]) == (sum(rows), len(rows))
        assert s["inference_stats"]["fail"] == {"count": 0, "ns": 0}
        _check_sums(s)
        assert server.metric("deploy_lstm_requests_total", model=model, version=version, outcome="ok") == len(rows)
        assert server.metric("deploy_lstm_batch_rows_sum", model=model, version=version) == sum(rows)
        assert server.metric("deploy_lstm_batch_requests_count", model=model, version=version) == s["execution_count"]
    assert _stats(clients, "b", "1")["last_inference"] >= before_last
    assert server.metric("deploy_lstm_request_errors_total", model="a", version="1") == 2

    everything = clients["http"].get_inference_statistics()["model_stats"]
    assert [(m["name"], m["version"]) for m in everything] == [
        ("a", "1"), ("a", "2"), ("a_stream", "1"), ("a_stream", "2"), ("b", "1"), ("b_stream", "1")]
    both = clients["http"].get_inference_statistics("a")["model_stats"]
    assert [m["version"] for m in both] == ["1", "2"]


@pytest.mark.slow
def test_stream_has_statistics_of_its_own(server: InProcessServer, clients: Dict[str, Any]) -> None:
    before = _stats(clients, "b", "1")
    for k in range(3):
        _send(clients, "grpc", "b_stream", _x(2, steps=3), sequence_id=77, sequence_start=k == 0, sequence_end=k == 2)
    s = _stats(clients, "b_stream", "1")
    assert (s["inference_count"], s["inference_stats"]["success"]["count"]) == (6, 3)
    _check_sums(s)
    assert server.metric("deploy_lstm_requests_total", model="b_stream", version="1", outcome="ok") == 3
    assert _stats(clients, "b", "1")["inference_count"] == before["inference_count"]


@pytest.mark.slow
def test_failed_executions(server: InProcessServer, clients: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that raises while it runs: fail per request, the execution counted, no inference (as tritonserver)."""
    served = server.registry.resolve("a", "1")
    before = _stats(clients, "a", "1")

    def broken(feeds: Any) -> Any:
        raise RuntimeError("the runner broke")

    monkeypatch.setattr(served.runner, "run", broken)
    for protocol in ("http", "grpc"):
        with pytest.raises(InferenceServerException, match="the runner broke"):
            _send(clients, protocol, "a", _x(2), "1")
    monkeypatch.undo()
    s = _stats(clients, "a", "1")
    assert s["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"] + 2
    assert s["inference_stats"]["fail"]["ns"] > before["inference_stats"]["fail"]["ns"]
    assert s["execution_count"] == before["execution_count"] + 2
    for key in ("inference_count", "last_inference"):
        assert s[key] == before[key], key
    assert s["inference_stats"]["success"] == before["inference_stats"]["success"]
    _send(clients, "http", "a", _x(2), "1")  # the model serves on
    assert _stats(clients, "a", "1")["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1


@pytest.mark.slow
def test_stats_of_an_unknown_model_over_the_wire(server: InProcessServer, clients: Dict[str, Any]) -> None:
    for args, message in ((("nope",), "requested model 'nope' is not available"),
                          (("a", "7"), "requested model version is not available for model 'a'")):
        for protocol, code in (("http", "400"), ("grpc", "StatusCode.INVALID_ARGUMENT")):
            with pytest.raises(InferenceServerException) as e:
                clients[protocol].get_inference_statistics(*args)
            assert (e.value.message(), str(e.value.status())) == (message, code)
    assert server.get("v2/models/nope/stats") == (400, {"error": "requested model 'nope' is not available"})
    status, body = server.get("v2/models/a/versions/1/stats")
    assert status == 200 and [(m["name"], m["version"]) for m in body["model_stats"]] == [("a", "1")]
    assert all(type(v) is int for v in body["model_stats"][0]["inference_stats"]["success"].values())
    assert "statistics" in clients["http"].get_server_metadata()["extensions"]


@pytest.mark.slow
def test_unloaded_is_not_available_and_a_reload_starts_from_zero(server: InProcessServer, clients: Dict[str, Any]) -> None:
    """As tritonserver: an unloaded model's statistics are its error, a loaded one's start at zero."""
    _send(clients, "http", "b", _x(1), "1")
    assert _stats(clients, "b", "1")["inference_count"] > 0
    clients["http"].unload_model("b")
    for protocol in ("http", "grpc"):
        with pytest.raises(InferenceServerException, match="requested model 'b' is not available"):
            clients[protocol].get_inference_statistics("b")
    assert [m["name"] for m in clients["http"].get_inference_statistics()["model_stats"]] == ["a", "a", "a_stream", "a_stream"]
    clients["grpc"].load_model("b")
    s = _stats(clients, "b", "1")
    assert (s["inference_count"], s["execution_count"], s["batch_stats"]) == (0, 0, [])
