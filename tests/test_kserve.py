"""KServe's own Python clients (the ``kserve`` SDK 0.21) against a real ``deploy-lstm serve``.

The SDK is large (kubernetes, pandas: ~450 MB), so it lives in a venv of its own
(``kserve_env`` in conftest.py; ``.ci/run`` makes it) and its clients run there as a
subprocess: :data:`CLIENT` drives the server with ``InferenceRESTClient`` (``RESTConfig(
protocol="v2")``, JSON and binary tensors) and ``InferenceGRPCClient``, and saves what it got.
The outputs are compared here with ``torch.nn.LSTM`` holding the folder's weights.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator

import numpy as np
import pytest
import torch
from torch import nn

import deploy_lstm
from deploy_lstm.pipeline import export_folder

INPUT_SIZE, HIDDEN, LAYERS = 5, 7, 2

#: KServe's clients, run by the KServe venv's python: CLIENT HTTP_URL GRPC_URL OUT.npz; prints a JSON of the answers
CLIENT = r'''
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

http_url, grpc_url, out = sys.argv[1:4]
rng = np.random.default_rng(0)
OUTPUTS = ("output", "hn", "cn")


def request(x, binary):
    i = InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    wanted = [RequestedOutput(n, {"binary_data": binary}) for n in OUTPUTS]
    return InferRequest(model_name="lstm", infer_inputs=[i], request_id="kserve-test", request_outputs=wanted)


async def main():
    found, arrays = {}, {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    base = f"http://{http_url}"
    found["rest_live"] = await rest.is_server_live(base)
    found["rest_ready"] = await rest.is_server_ready(base)
    found["rest_model_ready"] = await rest.is_model_ready(base, "lstm")
    found["rest_stream_ready"] = await rest.is_model_ready(base, "lstm_stream")
    found["rest_unknown_ready"] = await rest.is_model_ready(base, "nope")
    for wire, binary, T, N in (("json", False, 6, 2), ("binary", True, 9, 3)):
        x = rng.standard_normal((T, N, 5)).astype(np.float32)
        answer = await rest.infer(base, request(x, binary), model_name="lstm")
        arrays[f"{wire}_input"] = x
        for o in answer.outputs:
            arrays[f"{wire}_{o.name}"] = o.as_numpy()
        found[f"{wire}_outputs"] = sorted(o.name for o in answer.outputs)
    await rest.close()

    grpc = InferenceGRPCClient(grpc_url, retries=0)
    found["grpc_live"] = await grpc.is_server_live()
    found["grpc_ready"] = await grpc.is_server_ready()
    found["grpc_model_ready"] = await grpc.is_model_ready("lstm")
    x = rng.standard_normal((4, 1, 5)).astype(np.float32)
    i = InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    answer = await grpc.infer(InferRequest(model_name="lstm", infer_inputs=[i], request_id="kserve-grpc"))
    arrays["grpc_input"] = x
    for o in answer.outputs:
        arrays[f"grpc_{o.name}"] = o.as_numpy()
    found["grpc_outputs"] = sorted(o.name for o in answer.outputs)
    await grpc.close()
    np.savez(out, **arrays)
    print(json.dumps(found))


asyncio.run(main())
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("kserve") / "lstm"
    export_folder(deploy_lstm.LSTM(INPUT_SIZE, HIDDEN, num_layers=LAYERS), out, artifacts=["onnx"], devices=("cpu",))
    return out


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[Dict[str, str]]:
    """``deploy-lstm serve FOLDER --name lstm`` on free loopback ports (as tests/test_server.py starts it)."""
    port, grpc_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy_lstm.cli", "serve", str(folder), "--name", "lstm", "--port", str(port),
         "--grpc-port", str(grpc_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"deploy-lstm serve exited with {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("deploy-lstm serve not ready after 90 s")
            time.sleep(0.1)
        yield {"http": f"127.0.0.1:{port}", "grpc": f"127.0.0.1:{grpc_port}"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def expected(folder: Path, x: np.ndarray) -> Dict[str, np.ndarray]:
    """torch.nn.LSTM with the folder's weights, in float64, from zero state."""
    ref = nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=LAYERS)
    ref.load_state_dict(deploy_lstm.load(folder).state_dict())
    with torch.no_grad():
        y, (h, c) = ref.double()(torch.from_numpy(x.astype(np.float64)))
    return {"output": y.float().numpy(), "hn": h.float().numpy(), "cn": c.float().numpy()}


@pytest.mark.slow
def test_kserve_clients_against_deploy_lstm_serve(server: Dict[str, str], folder: Path, kserve_env: Callable[[], Path],
                                                  tmp_path: Path) -> None:
    """REST (JSON and binary tensors) and gRPC inference equal nn.LSTM; server liveness and
    readiness over both (REST reads a JSON body: ``{"live": true}``, ``{"ready": true}``);
    model readiness, an unknown model not ready."""
    script, out = tmp_path / "kserve_client.py", tmp_path / "answers.npz"
    script.write_text(CLIENT)
    done = subprocess.run([str(kserve_env()), str(script), server["http"], server["grpc"], str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "rest_live": True, "rest_ready": True, "rest_model_ready": True, "rest_stream_ready": True, "rest_unknown_ready": False,
        "json_outputs": ["cn", "hn", "output"], "binary_outputs": ["cn", "hn", "output"],
        "grpc_live": True, "grpc_ready": True, "grpc_model_ready": True, "grpc_outputs": ["cn", "hn", "output"],
    }
    arrays = np.load(out)
    for wire in ("json", "binary", "grpc"):
        want = expected(folder, arrays[f"{wire}_input"])
        for name, value in want.items():
            got = arrays[f"{wire}_{name}"]
            assert got.shape == value.shape, (wire, name, got.shape, value.shape)
            np.testing.assert_allclose(got, value, rtol=0, atol=1e-5, err_msg=f"{wire} {name}")
