"""``deploy-lstm serve`` under attack (issue 19), started for real on loopback.

Every hostile request gets its 4xx and message (never a 500), leaves the server live and
correct, costs at most a small multiple of ``--max-request-bytes`` in memory, and does not
keep ``/v2/health/live`` waiting; made-up model names do not become metric labels; sequence
ids are bounded; shutdown ends in-flight gRPC calls and streams with a clear status.  A
Hypothesis fuzz of both decoders, and a load of valid traffic with hostile traffic mixed in.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import grpc
import hypothesis.strategies as st
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from hypothesis import HealthCheck, assume, given, settings
from torch import nn
from tritonclient.grpc import service_pb2, service_pb2_grpc

import hostile
from deploy_lstm.errors import InvalidRequest
from deploy_lstm.serve.grpc_service import SHUTTING_DOWN, decode_grpc
from deploy_lstm.serve.protocol import DATATYPES, InferRequest, decode_http, status_of
from test_server import (  # noqa: F401  (lstm_folder, oracle, server: fixtures)
    Server, close, expected, grpc_input, http_input, lstm_folder, oracle, sequence, server,
)

MiB = 1 << 20
LIMIT = 16 * MiB  # the limited server's --max-request-bytes
MEMORY_MULTIPLE = 3.0  # the worst request may cost this many times the body limit, at most


@pytest.fixture(scope="module")
def limited(lstm_folder: Path) -> Any:
    s = Server(lstm_folder, "--name", "lstm", "--max-request-bytes", str(LIMIT))
    yield s
    assert s.stop() == 0, s.proc.stderr.read()  # type: ignore[union-attr]


def send(s: Server, case: hostile.Hostile) -> Tuple[int, str]:
    return hostile.post(s.url, f"/v2/models/{case.model}/infer", case.body, case.headers)


def still_right(s: Server, oracle: nn.LSTM) -> None:
    x = sequence(np.random.default_rng(19), 3)
    close(s.http().infer("lstm", [http_input("input", x)]).as_numpy("output"), expected(oracle, x)["output"])
    close(s.grpc().infer("lstm", [grpc_input("input", x)]).as_numpy("output"), expected(oracle, x)["output"])


LIGHT = hostile.wrong_types() + hostile.deep_nesting() + [c for c in hostile.misc() if not c.heavy]


@pytest.mark.parametrize("case", LIGHT, ids=[c.name for c in LIGHT])
def test_a_hostile_request_gets_its_4xx_and_the_server_stays_right(server: Server, oracle: nn.LSTM, case: hostile.Hostile) -> None:
    status, message = send(server, case)
    assert (status, case.message in message) == (case.status, True), message
    still_right(server, oracle)


def test_the_costly_requests_get_413_within_a_small_multiple_of_the_limit_in_memory(limited: Server, oracle: nn.LSTM) -> None:
    """Each heavy case alone, the server's peak resident size reset before it: its growth is
    the request's cost.  (The README states the multiple measured at the default limit.)"""
    costs = {}
    for case in hostile.oversized(LIMIT) + [c for c in hostile.misc() if c.heavy]:
        time.sleep(0.2)  # the previous request's memory is freed
        rss, _ = hostile.server_memory(limited.proc.pid)
        hostile.reset_peak(limited.proc.pid)
        status, message = send(limited, case)
        assert (status, case.message in message) == (case.status, True), (case.name, message)
        costs[case.name] = (hostile.server_memory(limited.proc.pid)[1] - rss) / LIMIT
    worst = max(costs, key=costs.get)  # type: ignore[arg-type]
    assert costs[worst] <= MEMORY_MULTIPLE, f"{worst} cost {costs[worst]:.2f} x the limit: {costs}"
    still_right(limited, oracle)


def test_the_issues_bomb_does_not_keep_health_checks_waiting(server: Server, oracle: nn.LSTM) -> None:
    """65 KB of gzip inflating to just under 64 MiB of [],[],...: the event loop froze ~10 s."""
    bomb = hostile.bomb_gzip(64 * MiB - 64)
    latencies: List[float] = []
    answers: "queue.Queue[Tuple[int, str]]" = queue.Queue()
    sender = threading.Thread(target=lambda: answers.put(
        hostile.post(server.url, "/v2/models/lstm/infer", bomb, {"Content-Encoding": "gzip"})))
    sender.start()
    while sender.is_alive():
        t0 = time.perf_counter()
        assert server.get("/v2/health/live")[0] == 200
        latencies.append(time.perf_counter() - t0)
        time.sleep(0.02)
    status, message = answers.get()
    assert status == 413 and "over this server's limits" in message, message
    assert max(latencies) < 1.0, f"health checks waited up to {max(latencies):.2f} s"
    still_right(server, oracle)


def test_made_up_model_names_share_one_metrics_label(server: Server) -> None:
    g = server.grpc()
    for k in range(30):
        assert hostile.post(server.url, f"/v2/models/made-up-{k}/infer", hostile.body([hostile.X]), {})[0] == 404
        with pytest.raises(Exception, match="unknown model"):
            g.infer(f"made-up-grpc-{k}", [grpc_input("input", np.zeros((1, 1, 5), np.float32))])
    text = server.get("/metrics")[1].decode()
    assert "made-up" not in text
    assert 'deploy_lstm_request_errors_total{code="404",model="_unknown",protocol="http",version=""} ' in text
    assert 'deploy_lstm_request_errors_total{code="404",model="_unknown",protocol="grpc",version=""} ' in text


def test_sequence_ids_are_at_most_128_bytes_over_both_transports(server: Server, oracle: nn.LSTM) -> None:
    x = sequence(np.random.default_rng(20), 4)
    for client, tensor in ((server.http(), http_input("input", x)), (server.grpc(), grpc_input("input", x))):
        r = client.infer("lstm_stream", [tensor], sequence_id="q" * 128, sequence_start=True, sequence_end=True)
        close(r.as_numpy("output"), expected(oracle, x)["output"])
        with pytest.raises(Exception, match="at most 128") as e:
            client.infer("lstm_stream", [tensor], sequence_id="q" * 129, sequence_start=True)
        assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")


def _raw_grpc(s: Server, **fields: Any) -> Any:
    """A ModelInfer call with a hand-made message (what tritonclient would not send)."""
    request = service_pb2.ModelInferRequest(model_name="lstm", **fields)
    with grpc.insecure_channel(s.grpc_url) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


@pytest.mark.parametrize("fields,message", [
    ({"parameters": {"sequence_id": service_pb2.InferParameter(double_param=1.5)}}, "sequence_id must be an integer or a string"),
    ({"parameters": {"sequence_start": service_pb2.InferParameter(string_param="true")}}, "sequence_start must be a boolean"),
    ({"parameters": {"sequence_id": service_pb2.InferParameter(string_param="q" * 129)}}, "at most 128"),
    ({"inputs": [service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1] * 40)]}, "at most 32"),
    ({"inputs": [service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1 << 31, 1 << 31])]},
     "over this server's limit"),
    ({"inputs": [service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="[FP32]", shape=[1])]}, "unsupported datatype"),
])
def test_grpc_fields_of_the_wrong_type_or_size_are_refused(server: Server, oracle: nn.LSTM, fields: Dict[str, Any], message: str) -> None:
    if "inputs" not in fields:
        x = sequence(np.random.default_rng(21), 2)
        fields["inputs"] = [service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))]
        fields["raw_input_contents"] = [x.tobytes()]
    with pytest.raises(grpc.RpcError) as e:
        _raw_grpc(server, **fields)
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED) and message in e.value.details()
    still_right(server, oracle)


# -- shutdown ---------------------------------------------------------------------------------------


class SlowProxy:
    """A loopback TCP proxy passing client -> server bytes at ``rate`` bytes/s: an upload in progress."""

    def __init__(self, port: int, rate: float) -> None:
        self.port_to, self.rate = port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port_to))
            threading.Thread(target=self._pump, args=(client, upstream, self.rate), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, rate: Optional[float]) -> None:
        try:
            while data := source.recv(16384 if rate is None else max(1, int(rate / 50))):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.xfail(reason="open: under CPU load the upload in flight at SIGTERM sometimes fails (issue 19's "
                          "'Stream removed'); passes alone", strict=False)
def test_a_grpc_request_still_uploading_at_sigterm_is_answered(lstm_folder: Path, oracle: nn.LSTM) -> None:
    s = Server(lstm_folder, "--name", "lstm", "--max-sequence-length", "100000", "--grace-s", "20")
    proxy = SlowProxy(s.grpc_port, rate=400_000)
    x = sequence(np.random.default_rng(22), 50_000)  # 1 MB: 2.5 s to upload
    answers: "queue.Queue[Any]" = queue.Queue()

    def call() -> None:
        try:
            answers.put(tgrpc.InferenceServerClient(f"127.0.0.1:{proxy.port}").infer("lstm", [grpc_input("input", x)]))
        except Exception as e:
            answers.put(e)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)
    s.proc.send_signal(signal.SIGTERM)
    caller.join(60)
    assert s.stop() == 0
    answer = answers.get_nowait()
    assert not isinstance(answer, Exception), (answer.status(), answer.message())
    close(answer.as_numpy("output"), expected(oracle, x)["output"])


def test_an_open_grpc_stream_at_sigterm_is_answered_then_ended_with_a_clear_status(lstm_folder: Path, oracle: nn.LSTM) -> None:
    s = Server(lstm_folder, "--name", "lstm", "--grace-s", "30")
    x = sequence(np.random.default_rng(23), 6)
    outgoing: "queue.Queue[Any]" = queue.Queue()

    def requests() -> Any:
        while (item := outgoing.get()) is not None:
            yield item

    channel = grpc.insecure_channel(s.grpc_url)
    replies = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(requests())
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))
    outgoing.put(service_pb2.ModelInferRequest(model_name="lstm", id="before", inputs=[tensor], raw_input_contents=[x.tobytes()]))
    first = next(replies)
    assert first.error_message == "" and first.infer_response.id == "before"
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as e:
        next(replies)  # the client keeps its side open: the server ends the stream
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and e.value.details() == SHUTTING_DOWN
    assert time.monotonic() - t0 < 10, "the stream was held until the grace period ran out"
    outgoing.put(None)
    channel.close()
    assert s.stop() == 0
    got = np.frombuffer(first.infer_response.raw_output_contents[0], np.float32).reshape(6, 1, -1)
    close(got, expected(oracle, x)["output"])


# -- fuzz ----------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=8,
)
PARAMETERS = st.dictionaries(
    st.sampled_from(["sequence_id", "sequence_start", "sequence_end", "binary_data_output", "binary_data",
                     "binary_data_size", "priority"]), JSON | st.integers(-3, 200) | st.booleans(), max_size=3) | JSON


@st.composite
def http_bodies(draw: Any) -> Tuple[bytes, Optional[str]]:
    """A v2 JSON body whose fields are each valid, or of a random type or value; perhaps a binary tail."""
    shape = draw(st.just([2, 1, 5]) | st.lists(st.integers(-2, 40), max_size=4) | JSON)
    item: Dict[str, Any] = {
        "name": draw(st.sampled_from(["input", "h0", "lengths"]) | JSON),
        "shape": shape,
        "datatype": draw(st.sampled_from([*DATATYPES, "BYTES"]) | JSON),
        "data": draw(st.lists(st.floats(width=32) | st.integers(-3, 3), max_size=12) | JSON),
        "parameters": draw(PARAMETERS),
    }
    for key in draw(st.lists(st.sampled_from(sorted(item)), max_size=2, unique=True)):
        del item[key]
    doc = {"inputs": draw(st.just([item]) | st.lists(JSON, max_size=2) | JSON),
           "outputs": draw(st.none() | st.lists(st.fixed_dictionaries({"name": st.text(max_size=6), "parameters": PARAMETERS})) | JSON),
           "parameters": draw(PARAMETERS), "id": draw(st.none() | st.text(max_size=6) | JSON)}
    header = json.dumps(doc).encode()
    tail = draw(st.binary(max_size=64))
    length = draw(st.none() | st.just(str(len(header))) | st.text(max_size=4))
    return (header + tail if length is not None else header), length


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(http_bodies() | st.tuples(st.binary(max_size=200), st.none() | st.text(max_size=4)))
def test_fuzz_the_http_decoder_refuses_with_invalid_request_only(body_and_length: Tuple[bytes, Optional[str]]) -> None:
    body, length = body_and_length
    try:
        request = decode_http(body, length, max_bytes=1 << 16)
        assert isinstance(request, InferRequest)
        request.sequence_id, request.binary_output, request.flag("sequence_start")  # noqa: B018  (they check too)
    except InvalidRequest as e:
        assert 400 <= status_of(e)[0] < 500


@st.composite
def grpc_requests(draw: Any) -> Any:
    def parameter() -> Any:
        choice = draw(st.sampled_from(["bool_param", "int64_param", "string_param", "double_param", "uint64_param"]))
        value = {"bool_param": st.booleans(), "int64_param": st.integers(-(2 ** 63), 2 ** 63 - 1), "string_param": st.text(max_size=200),
                 "double_param": st.floats(), "uint64_param": st.integers(0, 2 ** 64 - 1)}[choice]
        return service_pb2.InferParameter(**{choice: draw(value)})

    tensors = []
    for _ in range(draw(st.integers(0, 2))):
        tensor = service_pb2.ModelInferRequest.InferInputTensor(
            name=draw(st.sampled_from(["input", "h0"]) | st.text(max_size=4)),
            datatype=draw(st.sampled_from([*DATATYPES, "BYTES"]) | st.text(max_size=4)),
            shape=draw(st.lists(st.integers(-2, 6) | st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=4)),
            parameters={k: parameter() for k in draw(st.lists(st.sampled_from(["binary_data_size", "x"]), max_size=2))},
        )
        tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
        tensor.contents.int64_contents.extend(draw(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=4)))
        tensors.append(tensor)
    raw = draw(st.none() | st.lists(st.binary(max_size=64), max_size=3))
    return service_pb2.ModelInferRequest(
        model_name="lstm", inputs=tensors, raw_input_contents=raw or [], id=draw(st.text(max_size=4)),
        parameters={k: parameter() for k in draw(st.lists(st.sampled_from(["sequence_id", "sequence_start", "sequence_end", "y"]), max_size=3))},
    )


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(grpc_requests())
def test_fuzz_the_grpc_decoder_refuses_with_invalid_request_only(request: Any) -> None:
    try:
        decoded = decode_grpc(request, max_bytes=1 << 16)
        decoded.sequence_id, decoded.flag("sequence_end")  # noqa: B018
    except InvalidRequest as e:
        assert 400 <= status_of(e)[0] < 500


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(http_bodies(), grpc_requests())
def test_fuzz_live_requests_over_both_transports_are_never_a_500(server: Server, http: Tuple[bytes, Optional[str]], rpc: Any) -> None:
    body, length = http
    # a header value with a bare CR or LF cannot be sent at all (http.client refuses it before any
    # byte leaves): not a request the server can see
    assume(length is None or not any(c in length for c in "\r\n"))
    status, message = hostile.post(server.url, "/v2/models/lstm/infer", body, {} if length is None else {
        "Inference-Header-Content-Length": length.encode("utf-8").decode("latin-1")})
    assert status < 500, message
    try:
        with grpc.insecure_channel(server.grpc_url) as channel:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(rpc, timeout=30)
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), e.details()


def test_after_the_fuzz_the_server_is_live_and_right(server: Server, oracle: nn.LSTM) -> None:
    assert server.http().is_server_live() and server.grpc().is_server_live()
    still_right(server, oracle)


# -- load ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_load_valid_traffic_with_hostile_traffic_mixed_in_gets_every_answer_right(server: Server, oracle: nn.LSTM) -> None:
    rss_before, _ = hostile.server_memory(server.proc.pid)
    cases = [c for c in hostile.all_cases(64 * MiB) if not c.heavy] + [
        hostile.Hostile("the issue's bomb", hostile.bomb_gzip(64 * MiB - 64), 413, "over this server's limits", {"Content-Encoding": "gzip"})]
    traffic = hostile.Traffic(server.url, server.grpc_url, lambda x: expected(oracle, x)["output"], cases,
                              valid_threads=8, hostile_threads=3)
    tally = traffic.run(25.0)
    assert not tally.wrong, tally.wrong[:5]
    assert not tally.unexpected, tally.unexpected[:5]
    assert tally.valid > 100 and tally.hostile > 100, tally
    assert hostile.server_memory(server.proc.pid)[0] - rss_before < 2 * 64 * MiB
    still_right(server, oracle)


@pytest.mark.parametrize("shape", [[0, 3, 1753380096, 1753446017], [1753380096, 0, 1753446017]])
def test_an_empty_tensor_with_impossible_dimensions_is_a_413_not_a_500(shape: List[int]) -> None:
    """Found by the gRPC decoder fuzz: numpy cannot shape an empty array as (0, 3, 2**31, 2**31)
    and raised ValueError (an INTERNAL error) instead of refusing the request."""
    request = service_pb2.ModelInferRequest(model_name="lstm")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "BOOL"
    tensor.shape.extend(shape)
    with pytest.raises(InvalidRequest, match="although it holds no value") as e:
        decode_grpc(request, max_bytes=1 << 16)
    assert status_of(e.value)[0] == 413
