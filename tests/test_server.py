"""``deploy-lstm serve``, started for real on loopback and driven by the real Triton clients.

Every output is compared with torch.nn.LSTM holding the folder's weights: requests
alone, batched with others of different lengths, and streamed in chunks.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException
from torch import nn

import deploy_lstm
from deploy_lstm.cli import main
from deploy_lstm.pipeline import export_folder
from deploy_lstm.serve.protocol import datatype_of
from deploy_lstm.runtime.onnx import cuda_available

INPUT_SIZE, HIDDEN, LAYERS = 5, 7, 2
CLIENT = Path(__file__).resolve().parents[1] / "serving" / "client.py"  # the README's client script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m deploy_lstm.cli serve FOLDER ...`` on free loopback ports."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.port, self.grpc_port = _free_port(), _free_port()
        self.url, self.grpc_url = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.grpc_port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy_lstm.cli", "serve", str(folder), "--port", str(self.port),
             "--grpc-port", str(self.grpc_port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=1).status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready in 90 s")

    def http(self, **kwargs: Any) -> thttp.InferenceServerClient:
        return thttp.InferenceServerClient(self.url, **kwargs)

    def grpc(self) -> tgrpc.InferenceServerClient:
        return tgrpc.InferenceServerClient(self.grpc_url)

    def post(self, path: str, body: bytes, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
        """A raw HTTP POST: (status, JSON body, headers)."""
        req = urllib.request.Request(f"http://{self.url}{path}", data=body, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null"), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), dict(e.headers)

    def get(self, path: str) -> Tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.url}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metric(self, line_start: str) -> float:
        text = self.get("/metrics")[1].decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lstm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("serve") / "lstm"
    export_folder(deploy_lstm.LSTM(INPUT_SIZE, HIDDEN, num_layers=LAYERS), out, artifacts=["onnx"], lengths=True)
    return out


@pytest.fixture(scope="module")
def oracle(lstm_folder: Path) -> nn.LSTM:
    ref = nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=LAYERS)
    ref.load_state_dict(deploy_lstm.load(lstm_folder).state_dict())
    return ref.double().eval()


@pytest.fixture(scope="module")
def server(lstm_folder: Path) -> Any:
    s = Server(lstm_folder, "--name", "lstm", "--max-batch", "32", "--max-sequence-length", "600")
    yield s
    assert s.stop() == 0, s.proc.stderr.read()  # type: ignore[union-attr]


def expected(oracle: nn.LSTM, x: np.ndarray, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None,
             lengths: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """nn.LSTM's output, hn, cn (packed when ``lengths`` is given; zeros past each length).

    Run in float64 (the oracle is ``oracle.double()``), then rounded to float32: more exact than
    the float32 server, and free of oneDNN's per-shape set-up (~0.1 s for each new shape here).
    """
    def f64(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float64))

    hx = None if h0 is None else (f64(h0), f64(c0))  # type: ignore[arg-type]
    with torch.no_grad():
        if lengths is None:
            y, (h, c) = oracle(f64(x), hx)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(f64(x), torch.from_numpy(lengths), enforce_sorted=False)
            yp, (h, c) = oracle(packed, hx)
            y, _ = nn.utils.rnn.pad_packed_sequence(yp, total_length=x.shape[0])
    return {"output": y.float().numpy(), "hn": h.float().numpy(), "cn": c.float().numpy()}


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def http_input(name: str, value: np.ndarray, binary: bool = True) -> thttp.InferInput:
    i = thttp.InferInput(name, list(value.shape), datatype_of(value.dtype))
    i.set_data_from_numpy(value, binary_data=binary)
    return i


def grpc_input(name: str, value: np.ndarray) -> tgrpc.InferInput:
    i = tgrpc.InferInput(name, list(value.shape), datatype_of(value.dtype))
    i.set_data_from_numpy(value)
    return i


def sequence(rng: np.random.Generator, steps: int, batch: int = 1) -> np.ndarray:
    return rng.standard_normal((steps, batch, INPUT_SIZE)).astype(np.float32)


# -- what the clients see ---------------------------------------------------------------------


def test_health_metadata_config_index_over_http(server: Server) -> None:
    c = server.http()
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("lstm") and c.is_model_ready("lstm", "1") and c.is_model_ready("lstm_stream")
    assert not c.is_model_ready("nope")
    meta = c.get_server_metadata()
    assert meta["name"] == "deploy-lstm" and "binary_tensor_data" in meta["extensions"]
    m = c.get_model_metadata("lstm")
    assert m["versions"] == ["1"]
    assert {t["name"]: t["shape"] for t in m["inputs"]} == {
        "input": [-1, -1, INPUT_SIZE], "h0": [LAYERS, -1, HIDDEN], "c0": [LAYERS, -1, HIDDEN], "lengths": [-1]}
    assert [t["datatype"] for t in m["outputs"]] == ["FP32"] * 3
    stream = c.get_model_metadata("lstm_stream")
    assert [t["name"] for t in stream["inputs"]] == ["input", "lengths"]  # the state is the server's
    assert [t["name"] for t in stream["outputs"]] == ["output"]
    for name in ("lstm", "lstm_stream"):
        config = c.get_model_config(name)
        parsed = json_format.ParseDict(config, model_config_pb2.ModelConfig())  # Triton's own schema
        assert parsed.name == name
    assert json_format.ParseDict(c.get_model_config("lstm_stream"), model_config_pb2.ModelConfig()).sequence_batching.state[0].input_name == "h0"
    assert c.get_model_repository_index() == [
        {"name": "lstm", "version": "1", "state": "READY"}, {"name": "lstm_stream", "version": "1", "state": "READY"}]
    status, _ = server.get("/v2/models/nope")
    assert status == 404


def test_health_metadata_config_index_over_grpc(server: Server) -> None:
    g = server.grpc()
    assert g.is_server_live() and g.is_server_ready() and g.is_model_ready("lstm") and not g.is_model_ready("nope")
    assert g.get_server_metadata().name == "deploy-lstm"
    m = g.get_model_metadata("lstm")
    assert [(t.name, list(t.shape)) for t in m.inputs][0] == ("input", [-1, -1, INPUT_SIZE])
    config = g.get_model_config("lstm_stream").config
    assert [s.output_name for s in config.sequence_batching.state] == ["hn", "cn"]
    assert [m.name for m in g.get_model_repository_index().models] == ["lstm", "lstm_stream"]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as e:
        g.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (False, False), (True, False), (False, True)])
def test_http_infer_json_and_binary(server: Server, oracle: nn.LSTM, binary_in: bool, binary_out: bool) -> None:
    rng = np.random.default_rng(1)
    x = sequence(rng, 9, 3)
    h0 = rng.standard_normal((LAYERS, 3, HIDDEN)).astype(np.float32)
    c0 = rng.standard_normal((LAYERS, 3, HIDDEN)).astype(np.float32)
    outputs = [thttp.InferRequestedOutput(n, binary_data=binary_out) for n in ("output", "hn", "cn")]
    r = server.http().infer("lstm", [http_input("input", x, binary_in), http_input("h0", h0, binary_in), http_input("c0", c0, binary_in)],
                            outputs=outputs, request_id="r-1")
    want = expected(oracle, x, h0, c0)
    for name in ("output", "hn", "cn"):
        close(r.as_numpy(name), want[name])
    assert r.get_response()["id"] == "r-1"


def test_http_defaults_requested_outputs_lengths_and_versions(server: Server, oracle: nn.LSTM) -> None:
    rng = np.random.default_rng(2)
    x = sequence(rng, 11, 4)
    lengths = np.array([11, 3, 7, 1], dtype=np.int64)
    c = server.http()
    r = c.infer("lstm", [http_input("input", x), http_input("lengths", lengths)], model_version="1",
                outputs=[thttp.InferRequestedOutput("hn")])
    assert r.as_numpy("output") is None  # only what was asked for
    close(r.as_numpy("hn"), expected(oracle, x, lengths=lengths)["hn"])
    r = c.infer("lstm", [http_input("input", x)])  # h0, c0 zeros, full lengths
    for name, value in expected(oracle, x).items():
        close(r.as_numpy(name), value)


@pytest.mark.parametrize("request_compression,response_compression", [("gzip", None), ("deflate", "gzip"), (None, "deflate")])
def test_http_compressed_bodies(server: Server, oracle: nn.LSTM, request_compression: Optional[str], response_compression: Optional[str]) -> None:
    x = sequence(np.random.default_rng(3), 6, 2)
    r = server.http().infer("lstm", [http_input("input", x)], request_compression_algorithm=request_compression,
                            response_compression_algorithm=response_compression)
    close(r.as_numpy("output"), expected(oracle, x)["output"])


def test_grpc_infer(server: Server, oracle: nn.LSTM) -> None:
    rng = np.random.default_rng(4)
    x = sequence(rng, 8, 2)
    lengths = np.array([8, 5], dtype=np.int64)
    r = server.grpc().infer("lstm", [grpc_input("input", x), grpc_input("lengths", lengths)], request_id="g1")
    want = expected(oracle, x, lengths=lengths)
    for name in ("output", "hn", "cn"):
        close(r.as_numpy(name), want[name])
    assert r.get_response().id == "g1"


# -- batching and streaming -------------------------------------------------------------------


def test_concurrent_requests_of_mixed_lengths_are_batched_and_each_equals_running_alone(server: Server, oracle: nn.LSTM) -> None:
    rng = np.random.default_rng(5)
    requests = [sequence(rng, int(t), int(b)) for t, b in zip(rng.integers(1, 60, 96), rng.integers(1, 3, 96))]
    wants = [expected(oracle, x) for x in requests]
    batches_before = server.metric("deploy_lstm_batch_requests_count")
    requests_before = server.metric("deploy_lstm_batch_requests_sum")
    padding_before = server.metric("deploy_lstm_padding_ratio_sum")
    barrier = threading.Barrier(16)

    def client(k: int) -> None:
        c = server.http()
        barrier.wait()
        for i in range(k, len(requests), 16):
            r = c.infer("lstm", [http_input("input", requests[i])])
            for name in ("output", "hn", "cn"):
                close(r.as_numpy(name), wants[i][name])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    batches = server.metric("deploy_lstm_batch_requests_count") - batches_before
    served = server.metric("deploy_lstm_batch_requests_sum") - requests_before
    assert served == len(requests)
    assert batches < len(requests), "no two requests ever shared a batch"
    assert server.metric("deploy_lstm_padding_ratio_sum") > padding_before, "mixed lengths were never padded together"


def _chunks(x: np.ndarray, cuts: Sequence[int]) -> List[np.ndarray]:
    edges = [0, *cuts, x.shape[0]]
    return [x[a:b] for a, b in zip(edges, edges[1:])]


def test_http_streaming_interleaved_sequences_equal_whole_sequences(server: Server, oracle: nn.LSTM) -> None:
    rng = np.random.default_rng(6)
    streams = {11: sequence(rng, 13), "user-a": sequence(rng, 13, 2), 12: sequence(rng, 13)}
    cuts = {11: [4, 5, 11], "user-a": [1, 9, 12], 12: [6, 7, 8]}
    got: Dict[Any, List[np.ndarray]] = {k: [] for k in streams}
    c = server.http()
    for step in range(4):
        for sid, x in streams.items():
            chunk = _chunks(x, cuts[sid])[step]
            r = c.infer("lstm_stream", [http_input("input", chunk)], sequence_id=sid, sequence_start=step == 0, sequence_end=step == 3)
            got[sid].append(r.as_numpy("output"))
    for sid, x in streams.items():
        close(np.concatenate(got[sid]), expected(oracle, x)["output"])


def test_streaming_on_the_base_model_returns_the_state(server: Server, oracle: nn.LSTM) -> None:
    x = sequence(np.random.default_rng(7), 10, 2)
    c = server.http()
    c.infer("lstm", [http_input("input", x[:6])], sequence_id=99, sequence_start=True)
    r = c.infer("lstm", [http_input("input", x[6:])], sequence_id=99, sequence_end=True)
    want = expected(oracle, x)
    close(r.as_numpy("hn"), want["hn"])
    close(r.as_numpy("cn"), want["cn"])


def test_grpc_stream_interleaved_sequences_are_batched_and_equal_whole_sequences(server: Server, oracle: nn.LSTM) -> None:
    rng = np.random.default_rng(8)
    streams = {k: sequence(rng, 12) for k in range(1, 9)}  # 8 sequences, chunks of 4 steps sent back to back
    results: "queue.Queue[Any]" = queue.Queue()
    g = server.grpc()
    g.start_stream(callback=lambda result, error: results.put((result, error)))
    batches_before = server.metric("deploy_lstm_batch_requests_count")
    for step in range(3):
        for sid, x in streams.items():
            g.async_stream_infer("lstm_stream", [grpc_input("input", x[4 * step:4 * step + 4])], request_id=f"{sid}/{step}",
                                 sequence_id=sid, sequence_start=step == 0, sequence_end=step == 2)
    got: Dict[str, np.ndarray] = {}
    for _ in range(24):
        result, error = results.get(timeout=30)
        assert error is None, error
        got[result.get_response().id] = result.as_numpy("output")
    g.stop_stream()
    for sid, x in streams.items():
        close(np.concatenate([got[f"{sid}/{s}"] for s in range(3)]), expected(oracle, x)["output"])
    assert server.metric("deploy_lstm_batch_requests_count") - batches_before < 24, "chunks of different sequences never shared a batch"


def test_grpc_stream_reports_errors_per_request_and_keeps_going(server: Server, oracle: nn.LSTM) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    g = server.grpc()
    g.start_stream(callback=lambda result, error: results.put((result, error)))
    x = sequence(np.random.default_rng(9), 5)
    g.async_stream_infer("lstm_stream", [grpc_input("input", x)], request_id="bad", sequence_id=12345)  # never started
    g.async_stream_infer("lstm_stream", [grpc_input("input", x)], request_id="good", sequence_id=12346, sequence_start=True, sequence_end=True)
    outcomes = [results.get(timeout=30) for _ in range(2)]
    g.stop_stream()
    errors = [e for _, e in outcomes if e is not None]
    assert len(errors) == 1 and "sequence 12345 is not live (never started)" in str(errors[0])
    good = [r for r, e in outcomes if e is None][0]
    close(good.as_numpy("output"), expected(oracle, x)["output"])


@pytest.mark.slow
def test_load_32_clients_mixed_lengths_and_streams_no_errors(server: Server, oracle: nn.LSTM) -> None:
    """32 clients x 50 requests (a quarter of the clients stream in chunks): every answer checked."""
    rng = np.random.default_rng(10)
    plans = []
    for k in range(32):
        if k % 4 == 0:
            x = sequence(rng, 50 * 4)
            plans.append(("stream", x, expected(oracle, x)["output"]))
        else:
            xs = [sequence(rng, int(t)) for t in rng.integers(1, 80, 50)]
            plans.append(("single", xs, [expected(oracle, x)["output"] for x in xs]))
    errors: List[str] = []

    def client(k: int) -> int:
        kind, data, want = plans[k]
        c = server.http() if k % 2 else None
        g = server.grpc() if c is None else None

        def infer(name: str, x: np.ndarray, **kw: Any) -> np.ndarray:
            if c is not None:
                return c.infer(name, [http_input("input", x)], **kw).as_numpy("output")
            return g.infer(name, [grpc_input("input", x)], **kw).as_numpy("output")  # type: ignore[union-attr]

        try:
            if kind == "stream":
                parts = [infer("lstm_stream", data[4 * i:4 * i + 4], sequence_id=1000 + k, sequence_start=i == 0, sequence_end=i == 49)
                         for i in range(50)]
                close(np.concatenate(parts), want)
            else:
                for x, w in zip(data, want):
                    close(infer("lstm", x), w)
        except Exception as e:  # collected and reported below
            errors.append(f"client {k}: {type(e).__name__}: {e}")
        return 50

    with ThreadPoolExecutor(32) as pool:
        assert sum(pool.map(client, range(32))) == 1600
    assert not errors, errors[:3]


@pytest.mark.slow
def test_the_readme_client_script_against_deploy_lstm_serve(tmp_path: Path) -> None:
    """serving/client.py, unchanged but for the URL (test_triton.py runs it against tritonserver)."""
    torch.manual_seed(3)
    folder, _ = export_folder(deploy_lstm.LSTM(4, 6, batch_first=True), tmp_path / "bf", artifacts=["onnx"], lengths=True)
    ref = nn.LSTM(4, 6, batch_first=True)
    ref.load_state_dict(folder.state_dict())
    s = Server(folder.path, "--name", "lstm")
    try:
        for url, flags in ((s.url, []), (s.grpc_url, ["--grpc"])):
            out = tmp_path / "client.npz"
            done = subprocess.run([sys.executable, str(CLIENT), "--url", url, "--model", "lstm", "--save", str(out), *flags],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            saved = np.load(out)
            with torch.no_grad():
                want = ref(torch.from_numpy(saved["input"]))[0].numpy()
            close(saved["output"], want)
            close(saved["streamed"], want)
    finally:
        assert s.stop() == 0


# -- bad input --------------------------------------------------------------------------------


def _body(inputs: List[Dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


X = {"name": "input", "shape": [2, 1, INPUT_SIZE], "datatype": "FP32", "data": [0.5] * (2 * INPUT_SIZE)}
BAD_HTTP = [
    ("malformed JSON", b"{not json", {}, 400, "not valid JSON"),
    ("no inputs", b"{}", {}, 400, "non-empty 'inputs'"),
    ("unknown input", _body([X, {**X, "name": "inp"}]), {}, 400, "unknown input(s) ['inp']; model 'lstm' takes ['input', 'h0', 'c0', 'lengths']"),
    ("wrong datatype", _body([{**X, "datatype": "FP64"}]), {}, 400, "expected input of dtype float32, got float64"),
    ("unknown datatype", _body([{**X, "datatype": "BYTES"}]), {}, 400, "unsupported datatype 'BYTES'"),
    ("wrong features", _body([{**X, "shape": [2, 2, 2], "data": [0.0] * 8}]), {}, 400, "expected input of shape (sequence, batch, 5), got (2, 2, 2)"),
    ("wrong rank", _body([{**X, "shape": [2, INPUT_SIZE]}]), {}, 400, "expected input of rank 3"),
    ("data count", _body([{**X, "data": [0.0] * 3}]), {}, 400, "needs 10 values, data has 3"),
    ("non-numeric data", _body([{**X, "data": ["a"] * 10}]), {}, 400, "data is not FP32"),
    ("NaN", _body([{**X, "data": [float("nan")] + [0.0] * 9}]), {}, 400, "input 'input' has 1 NaN/inf value(s)"),
    ("state batch mismatch", _body([X, {"name": "h0", "shape": [LAYERS, 3, HIDDEN], "datatype": "FP32", "data": [0.0] * (LAYERS * 3 * HIDDEN)}]),
     {}, 400, "inputs disagree on 'batch'"),
    ("lengths out of range", _body([X, {"name": "lengths", "shape": [1], "datatype": "INT64", "data": [3]}]), {}, 400, "lengths must lie in 1..2"),
    ("unknown output", _body([X], outputs=[{"name": "y"}]), {}, 400, "unknown output(s) ['y']; model 'lstm' has outputs ['output', 'hn', 'cn']"),
    ("binary framing: header length past the body", _body([X]), {"Inference-Header-Content-Length": "99999"}, 400, "but the body has"),
    ("binary framing: missing bytes", _body([{**{k: v for k, v in X.items() if k != "data"}, "parameters": {"binary_data_size": 40}}]),
     {"Inference-Header-Content-Length": str(len(_body([{**{k: v for k, v in X.items() if k != "data"}, "parameters": {"binary_data_size": 40}}])))},
     400, "expected 40 bytes of binary data, only 0 left"),
    ("binary size disagrees with shape", _body([{**{k: v for k, v in X.items() if k != "data"}, "parameters": {"binary_data_size": 8}}]),
     {}, 400, "binary_data_size is 8 bytes, but shape [2, 1, 5] of FP32 needs 40"),
    ("bad gzip", b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    ("unknown encoding", _body([X]), {"Content-Encoding": "br"}, 400, "unsupported Content-Encoding 'br'"),
    ("sequence not started", _body([X], parameters={"sequence_id": 777}), {}, 400, "sequence 777 is not live (never started)"),
    ("sequence_start without id", _body([X], parameters={"sequence_start": True}), {}, 400, "need a sequence_id"),
    ("sequence id of a bad type", _body([X], parameters={"sequence_id": 1.5}), {}, 400, "sequence_id must be an integer or a string"),
    ("batch over the limit", _body([{**X, "shape": [1, 33, INPUT_SIZE], "data": [0.0] * 33 * INPUT_SIZE}]), {}, 400, "batch of 33 rows, over this server's limit of 32"),
    ("sequence over the limit", _body([{**X, "shape": [601, 1, INPUT_SIZE], "data": [0.0] * 601 * INPUT_SIZE}]), {}, 400,
     "sequence of 601 steps, over this server's limit of 600"),
]


@pytest.mark.parametrize("body,headers,status,message", [c[1:] for c in BAD_HTTP], ids=[c[0] for c in BAD_HTTP])
def test_http_bad_input_gets_its_status_and_message_and_the_server_keeps_serving(
    server: Server, oracle: nn.LSTM, body: bytes, headers: Dict[str, str], status: int, message: str
) -> None:
    got_status, doc, _ = server.post("/v2/models/lstm/infer", body, headers)
    assert got_status == status
    assert set(doc) == {"error"} and message in doc["error"], doc
    x = sequence(np.random.default_rng(11), 3)
    close(server.http().infer("lstm", [http_input("input", x)]).as_numpy("output"), expected(oracle, x)["output"])


def test_http_errors_for_unknown_models_versions_routes_and_stream_misuse(server: Server) -> None:
    assert server.post("/v2/models/nope/infer", _body([X]))[:2] == (404, {"error": "unknown model 'nope'; this server serves 'lstm', 'lstm_stream'"})
    assert server.post("/v2/models/lstm/versions/2/infer", _body([X]))[:2] == (404, {"error": "model 'lstm' has no version '2'; it has version '1'"})
    status, doc, _ = server.post("/v2/nothing/here", b"")
    assert status == 404 and "error" in doc
    status, doc, _ = server.post("/v2/models/lstm_stream/infer", _body([X]))
    assert status == 400 and "model 'lstm_stream' is stateful: every request needs a sequence_id" in doc["error"]
    status, doc, _ = server.post("/v2/models/lstm_stream/infer", _body([X, {**X, "name": "h0"}], parameters={"sequence_id": 5, "sequence_start": True}))
    assert status == 400 and "the server carries ['h0'] between the chunks of a sequence; send only ['input', 'lengths']" in doc["error"]
    status, doc, _ = server.post("/v2/models/lstm_stream/infer", _body([X], parameters={"sequence_id": 5}))
    assert status == 400 and "sequence 5 is not live (its first chunk failed)" in doc["error"]
    status, doc, _ = server.post("/v2/models/lstm/infer", _body([X, {"name": "h0", "shape": [LAYERS, 1, HIDDEN], "datatype": "FP32",
                                  "data": [0.0] * LAYERS * HIDDEN}], parameters={"sequence_id": 5, "sequence_start": True}))
    assert status == 400 and "the server carries ['h0'] between the chunks of a sequence" in doc["error"]


def test_http_sequence_keeps_its_batch_size_and_ended_sequences_are_refused(server: Server) -> None:
    c = server.http()
    x = sequence(np.random.default_rng(12), 4, 2)
    c.infer("lstm_stream", [http_input("input", x)], sequence_id="s-batch", sequence_start=True)
    with pytest.raises(InferenceServerException, match=r"keeps the batch size of its first chunk \(2\); this chunk has 1"):
        c.infer("lstm_stream", [http_input("input", x[:, :1])], sequence_id="s-batch")
    c.infer("lstm_stream", [http_input("input", x)], sequence_id="s-batch", sequence_end=True)
    with pytest.raises(InferenceServerException, match=r"sequence 's-batch' is not live \(ended by sequence_end\)"):
        c.infer("lstm_stream", [http_input("input", x)], sequence_id="s-batch")


def test_http_body_over_the_limit_is_413(lstm_folder: Path) -> None:
    s = Server(lstm_folder, "--name", "small", "--max-request-bytes", "2000", "--grpc-port", "0")
    try:
        status, doc, _ = s.post("/v2/models/small/infer", _body([{**X, "shape": [100, 1, INPUT_SIZE], "data": [0.0] * 500}]))
        assert status == 413 and "over this server's limit of 2000" in doc["error"]
        bomb = gzip.compress(b" " * 10_000)  # inflates past the limit
        status, doc, _ = s.post("/v2/models/small/infer", bomb, {"Content-Encoding": "gzip"})
        assert status == 413 and "inflates past this server's limit of 2000 bytes" in doc["error"]  # as the README promises
        assert s.post("/v2/models/small/infer", zlib.compress(_body([X])), {"Content-Encoding": "deflate"})[0] == 200
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("case,message,code", [
    ("unknown input", "unknown input(s) ['inp']", "INVALID_ARGUMENT"),
    ("wrong datatype", "expected input of dtype float32, got float64", "INVALID_ARGUMENT"),
    ("raw size", "bytes of raw contents, but shape", "INVALID_ARGUMENT"),
    ("unknown model", "unknown model 'nope'", "NOT_FOUND"),
    ("not started", "sequence 'zz' is not live (never started)", "INVALID_ARGUMENT"),
])
def test_grpc_bad_input_gets_its_code_and_message(server: Server, oracle: nn.LSTM, case: str, message: str, code: str) -> None:
    g = server.grpc()
    x = sequence(np.random.default_rng(13), 3)
    model, kwargs, inputs = "lstm", {}, [grpc_input("input", x)]
    if case == "unknown input":
        inputs = [grpc_input("inp", x)]
    elif case == "wrong datatype":
        inputs = [grpc_input("input", x.astype(np.float64))]
    elif case == "raw size":
        inputs = [grpc_input("input", x)]
        inputs[0].set_shape([4, 1, INPUT_SIZE])  # tritonclient checks the shape against the data: make it lie afterwards
    elif case == "unknown model":
        model = "nope"
    else:
        kwargs = {"sequence_id": "zz"}
    with pytest.raises(InferenceServerException) as e:
        g.infer(model, inputs, **kwargs)
    assert message in str(e.value) and e.value.status() == f"StatusCode.{code}"
    close(g.infer("lstm", [grpc_input("input", x)]).as_numpy("output"), expected(oracle, x)["output"])


# -- limits, expiry, shutdown -----------------------------------------------------------------


def test_sequences_expire_and_their_number_is_bounded(lstm_folder: Path) -> None:
    s = Server(lstm_folder, "--name", "m", "--max-sequences", "2", "--sequence-idle-s", "1", "--grpc-port", "0")
    try:
        c = s.http()
        x = sequence(np.random.default_rng(14), 2)
        c.infer("m_stream", [http_input("input", x)], sequence_id=1, sequence_start=True)
        c.infer("m_stream", [http_input("input", x)], sequence_id=2, sequence_start=True)
        assert s.metric('deploy_lstm_live_sequences{model="m",version="1"}') == 2
        with pytest.raises(InferenceServerException, match="2 sequences are live, the most this server holds") as e:
            c.infer("m_stream", [http_input("input", x)], sequence_id=3, sequence_start=True)
        assert e.value.status() == "503"
        c.infer("m_stream", [http_input("input", x)], sequence_id=2, sequence_end=True)
        c.infer("m_stream", [http_input("input", x)], sequence_id=3, sequence_start=True)  # a slot was freed
        time.sleep(2.0)
        assert s.metric('deploy_lstm_live_sequences{model="m",version="1"}') == 0  # swept with no request coming
        with pytest.raises(InferenceServerException, match=r"sequence 1 is not live \(expired after 1 s idle\)"):
            c.infer("m_stream", [http_input("input", x)], sequence_id=1)
        assert s.metric('deploy_lstm_expired_sequences_total{model="m",version="1"}') == 2
        assert s.metric('deploy_lstm_live_sequences{model="m",version="1"}') == 0
    finally:
        assert s.stop() == 0


def test_shutdown_answers_the_requests_in_flight(lstm_folder: Path, oracle: nn.LSTM) -> None:
    s = Server(lstm_folder, "--name", "m", "--max-batch", "1")
    x = sequence(np.random.default_rng(15), 400, 1)
    want = expected(oracle, x)["output"]
    answers: "queue.Queue[Any]" = queue.Queue()

    def call() -> None:
        try:
            answers.put(s.http().infer("m", [http_input("input", x)]).as_numpy("output"))
        except Exception as e:
            answers.put(e)

    threads = [threading.Thread(target=call) for _ in range(6)]  # queued one by one behind each other
    for t in threads:
        t.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert s.stop() == 0
    got = [answers.get_nowait() for _ in range(6)]
    for value in got:
        assert not isinstance(value, Exception), value
        close(value, want)
    with pytest.raises(Exception):
        s.http().is_server_live()


def test_serve_refuses_a_folder_it_cannot_serve(tmp_path: Path, lstm_folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(tmp_path)]) == 2
    assert f"{tmp_path} has no manifest.json" in capsys.readouterr().err
    assert main(["serve", str(lstm_folder), "--max-batch", "0"]) == 2
    assert "max_batch must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.skipif(cuda_available(), reason="CUDA is available here: the CUDA provider serves instead of being refused")
def test_serve_on_cuda_without_cuda_is_refused_with_the_reason(lstm_folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(lstm_folder), "--provider", "cuda"]) == 2
    assert "onnxruntime has no CUDAExecutionProvider" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu and a CUDA device")
def test_serve_on_cuda(lstm_folder: Path, oracle: nn.LSTM) -> None:
    s = Server(lstm_folder, "--name", "m", "--provider", "cuda", "--grpc-port", "0")
    try:
        x = sequence(np.random.default_rng(16), 20, 3)
        close(s.http().infer("m", [http_input("input", x)]).as_numpy("output"), expected(oracle, x)["output"])
    finally:
        assert s.stop() == 0
