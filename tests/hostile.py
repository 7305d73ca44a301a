"""Hostile HTTP requests for ``deploy-lstm serve``, each with the status and message it must get.

Shared by ``test_server_hostile.py`` (each case alone, and mixed into valid traffic) and
``benchmarks/soak.py`` (minutes of them).  The cases come from issue 19's attack on the server:
fields of the wrong type, deep nesting, decompression bombs, JSON that would cost far more
than its size, oversized ids and shapes; none may be a 500, stall the server or bloat it.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import json
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Sequence, Tuple

INPUT_SIZE = 5  # the served model's features (tests/test_server.py's folder)
DEEP = 100_000  # nesting levels of the deep cases


@dataclasses.dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    status: int
    message: str  # a part of the {"error": ...} the server must answer
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    model: str = "lstm"
    heavy: bool = False  # costs megabytes: measured for memory, sent less often


def body(inputs: List[Dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


X = {"name": "input", "shape": [2, 1, INPUT_SIZE], "datatype": "FP32", "data": [0.5] * (2 * INPUT_SIZE)}


def _gzip(text: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing, best compression
    return packer.compress(text) + packer.flush()


def wrong_types() -> List[Hostile]:
    """A field of the wrong type: each is the client's mistake, a 400, never a 500."""
    cases = [
        ("datatype list", {**X, "datatype": ["FP32"]}, "unsupported datatype ['FP32']"),
        ("datatype object", {**X, "datatype": {"a": 1}}, "unsupported datatype {'a': 1}"),
        ("datatype null", {**X, "datatype": None}, "unsupported datatype None"),
        ("name number", {**X, "name": 5}, "must be an object with a 'name' string"),
        ("shape string", {**X, "shape": "2,1,5"}, "shape must be a list of at most 32 non-negative integers"),
        ("shape of booleans", {**X, "shape": [True, 1, 5]}, "shape must be a list"),
        ("shape of floats", {**X, "shape": [2.0, 1, 5]}, "shape must be a list"),
        ("shape past int64", {**X, "shape": [2 ** 70, 0]}, "shape must be a list"),
        ("shape of rank 40", {**X, "shape": [1] * 40, "data": [0.5]}, "shape must be a list of at most 32"),
        ("parameters list", {**X, "parameters": [1]}, "parameters must be a JSON object, got list"),
        ("parameter object", {**X, "parameters": {"p": {"q": 1}}}, "parameter 'p' must be a string, number or boolean"),
        ("binary_data_size string", {**X, "parameters": {"binary_data_size": "40"}}, "binary_data_size must be a non-negative integer"),
        ("binary_data_size boolean", {**X, "parameters": {"binary_data_size": True}}, "binary_data_size must be a non-negative integer"),
        ("data object", {**X, "data": {"a": 1}}, "data must be a JSON array of numbers, got dict"),
        ("data string", {**X, "data": "0.5"}, "data must be a JSON array of numbers, got str"),
        ("data of objects", {**X, "data": [{}] * 10}, "data is not FP32"),
        ("data of nulls", {**X, "data": [None] * 10}, "NaN/inf value(s)"),  # numpy reads null as NaN
    ]
    out = [Hostile(f"wrong type: {n}", body([item]), 400, m) for n, item, m in cases]
    out += [
        Hostile("wrong type: inputs object", json.dumps({"inputs": X}).encode(), 400, "non-empty 'inputs' list"),
        Hostile("wrong type: body list", b"[1]", 400, "request must be a JSON object, got list"),
        Hostile("wrong type: outputs object", body([X], outputs={"name": "output"}), 400, "'outputs' must be a list"),
        Hostile("wrong type: output name", body([X], outputs=[{"name": ["output"]}]), 400, "outputs[0] must be an object with a 'name' string"),
        Hostile("wrong type: binary_data string", body([X], outputs=[{"name": "output", "parameters": {"binary_data": "yes"}}]),
                400, "binary_data must be a boolean"),
        Hostile("wrong type: id number", body([X], id=7), 400, "request 'id' must be a string, got int"),
        Hostile("wrong type: sequence_start string", body([X], parameters={"sequence_id": 3, "sequence_start": "true"}),
                400, "sequence_start must be a boolean"),
        Hostile("wrong type: binary_data_output number", body([X], parameters={"binary_data_output": 1}), 400,
                "binary_data_output must be a boolean"),
        Hostile("wrong type: sequence_id list", body([X], parameters={"sequence_id": [1]}), 400,
                "parameter 'sequence_id' must be a string, number or boolean"),
        Hostile("wrong type: header length", body([X]), 400, "Inference-Header-Content-Length is '1e3'",
                {"Inference-Header-Content-Length": "1e3"}),
    ]
    return out


def deep_nesting() -> List[Hostile]:
    """Nesting 100,000 levels deep: in the data, the parameters, the whole body."""
    deep = "[" * DEEP + "]" * DEEP
    return [
        Hostile("deep: data", f'{{"inputs":[{{"name":"input","shape":[1],"datatype":"FP32","data":{deep}}}]}}'.encode(),
                400, "nested deeper than 64 levels"),
        Hostile("deep: parameters", ('{"inputs":[],"parameters":{"p":' + "{\"a\":" * DEEP + "1" + "}" * DEEP + "}}").encode(),
                400, "nested deeper than 64 levels"),
        Hostile("deep: body", deep.encode(), 400, "nested deeper than 64 levels"),
    ]


def oversized(limit: int) -> List[Hostile]:
    """Bodies that cost more than the limit allows, once inflated, parsed or converted: 413."""
    empties = b"[" + b"[]," * ((limit - 2) // 3 - 1) + b"[]]"  # just under the limit: 1/3 of its bytes are arrays
    assert len(empties) <= limit
    floats = b",".join([b"0.12345"] * (limit // 8 - 64))  # 8 bytes a value: the most values the limit allows
    return [
        Hostile("bomb: inflates past the limit", _gzip(b" " * (limit + 1)), 413, "inflates past this server's limit",
                {"Content-Encoding": "gzip"}, heavy=True),
        Hostile("bomb: inflates to just under the limit of [],[],...", _gzip(empties), 413, "arrays and objects, over this server's limits",
                {"Content-Encoding": "gzip"}, heavy=True),
        Hostile("JSON: the most values the limit allows, in one tensor", body([{**X, "shape": [limit // 8 - 64]}]).replace(
            b'"data": [' + b", ".join([b"0.5"] * 10) + b"]", b'"data": [' + floats + b"]"), 400, "expected input of rank 3",
                heavy=True),
        Hostile("JSON: a megabyte id", body([X], id="i" * (1 << 20)), 413, "bytes of JSON outside the tensors' data arrays"),
        Hostile("shape: declares more than the limit", body([{**X, "shape": [limit, 1, INPUT_SIZE]}]), 413,
                f"over this server's limit of {limit}"),
        Hostile("shape: declares 2**62 elements", body([{**X, "shape": [2 ** 31, 2 ** 31, 1]}]), 413, "over this server's limit"),
        Hostile("body: over the limit, declared", b"{" * (limit + 1), 413, f"over this server's limit of {limit}", heavy=True),
    ]


def misc() -> List[Hostile]:
    """Ids over their limit, made-up model names (which must not become metric labels)."""
    return [
        Hostile("sequence id: 129 bytes", body([X], parameters={"sequence_id": "s" * 129, "sequence_start": True}), 400,
                "at most 128"),
        Hostile("sequence id: 8 MiB", body([X], parameters={"sequence_id": "s" * (8 << 20), "sequence_start": True}), 413,
                "bytes of JSON outside the tensors' data arrays", heavy=True),
        Hostile("sequence id: past uint64", body([X], parameters={"sequence_id": 2 ** 64, "sequence_start": True}), 400,
                "sequence_id must"),
        Hostile("model: made up", body([X]), 404, "unknown model 'made-up-model'", model="made-up-model"),
    ]


def all_cases(limit: int) -> List[Hostile]:
    return wrong_types() + deep_nesting() + oversized(limit) + misc()


def bomb_gzip(size: int) -> bytes:
    """The issue's bomb: a small gzip body inflating to ``size`` bytes of ``[],[],...``."""
    return gzip.compress(b"[" + b"[]," * ((size - 2) // 3 - 1) + b"[]]", 9)


# -- traffic: valid clients checked against the oracle, hostile ones beside them ---------------


@dataclasses.dataclass
class Tally:
    valid: int = 0  # valid requests answered right
    wrong: List[str] = dataclasses.field(default_factory=list)  # valid requests answered wrong, or failed
    hostile: int = 0  # hostile requests that got their status and message
    unexpected: List[str] = dataclasses.field(default_factory=list)  # hostile requests that did not


class Traffic:
    """Valid clients (tritonclient over HTTP and gRPC, single requests and streams in chunks, every
    answer compared with ``expect``) and hostile ones (:func:`all_cases`), side by side for a while."""

    def __init__(self, http_url: str, grpc_url: str, expect: Callable[[Any], Any], cases: Sequence[Hostile],
                 valid_threads: int = 8, hostile_threads: int = 2, seed: int = 0) -> None:
        import numpy as np

        self.http_url, self.grpc_url, self.cases = http_url, grpc_url, list(cases)
        self.valid_threads, self.hostile_threads = valid_threads, hostile_threads
        rng = np.random.default_rng(seed)
        self.inputs = [rng.standard_normal((int(t), 1, INPUT_SIZE)).astype(np.float32) for t in rng.integers(4, 40, 24)]
        self.wants = [expect(x) for x in self.inputs]
        self.tally = Tally()
        self.lock = threading.Lock()

    def run(self, seconds: float) -> Tally:
        deadline = time.monotonic() + seconds
        workers = [threading.Thread(target=self._valid, args=(k, deadline)) for k in range(self.valid_threads)]
        workers += [threading.Thread(target=self._hostile, args=(k, deadline)) for k in range(self.hostile_threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return self.tally

    def _valid(self, k: int, deadline: float) -> None:
        import numpy as np
        import tritonclient.grpc as tgrpc
        import tritonclient.http as thttp

        use_grpc, streams = k % 2 == 1, k % 4 >= 2
        client = tgrpc.InferenceServerClient(self.grpc_url) if use_grpc else thttp.InferenceServerClient(self.http_url)
        module = tgrpc if use_grpc else thttp

        def infer(model: str, x: Any, **kw: Any) -> Any:
            tensor = module.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            return client.infer(model, [tensor], **kw).as_numpy("output")

        n = 0
        while time.monotonic() < deadline:
            i = (k * 7 + n) % len(self.inputs)
            x, want = self.inputs[i], self.wants[i]
            try:
                if streams:
                    cuts = range(0, x.shape[0], 4)
                    sid = f"traffic-{k}-{n}"
                    got = np.concatenate([infer("lstm_stream", x[a:a + 4], sequence_id=sid, sequence_start=a == 0,
                                                sequence_end=a + 4 >= x.shape[0]) for a in cuts])
                else:
                    got = infer("lstm", x)
                ok = got.shape == want.shape and float(np.max(np.abs(got - want))) <= 1e-5
                with self.lock:
                    if ok:
                        self.tally.valid += 1
                    else:
                        self.tally.wrong.append(f"client {k}: wrong answer, max diff {np.max(np.abs(got - want))}")
            except Exception as e:  # counted: every valid request must be answered
                with self.lock:
                    self.tally.wrong.append(f"client {k}: {type(e).__name__}: {e}")
            n += 1

    def _hostile(self, k: int, deadline: float) -> None:
        n = k
        while time.monotonic() < deadline:
            case = self.cases[n % len(self.cases)]
            n += self.hostile_threads
            try:
                status, message = post(self.http_url, f"/v2/models/{case.model}/infer", case.body, case.headers)
                fine = status == case.status and case.message in message
            except Exception as e:  # a hostile request must get its answer too
                status, message, fine = -1, f"{type(e).__name__}: {e}", False
            with self.lock:
                if fine:
                    self.tally.hostile += 1
                else:
                    self.tally.unexpected.append(f"{case.name}: {status} {message[:200]}")


def post(url: str, path: str, data: bytes, headers: Dict[str, str], timeout: float = 60) -> Tuple[int, str]:
    """A raw HTTP POST: (status, the "error" of a JSON answer, or "")."""
    host, port = url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    try:
        doc = json.loads(text)
    except ValueError:
        return response.status, text[:200].decode("latin-1")
    return response.status, doc.get("error", "") if isinstance(doc, dict) else ""


def server_memory(pid: int) -> Tuple[int, int]:
    """(resident bytes now, peak resident bytes) of a process, from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["VmRSS"][0]) * 1024, int(fields["VmHWM"][0]) * 1024


def reset_peak(pid: int) -> None:
    """Make the process's peak resident size its current one (Linux: clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
