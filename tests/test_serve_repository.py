"""``deploy-lstm serve REPO``: a repository of models and versions, driven by the real Triton clients.

One repository: ``en`` (versions 1 and 2, different weights), ``de`` (an unversioned folder with
an ONNX model and an AOTInductor ``.pt2``; the repository's config file serves the ``.pt2``),
``fr`` (not loaded at start; served from its TorchScript file).  Every answer is compared with torch.nn.LSTM holding the same
weights.  An explicit-mode server is loaded, unloaded, reloaded and given a new folder while
traffic runs; a none-mode server refuses load/unload with tritonserver's answers.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from torch import nn
from tritonclient.utils import InferenceServerException

import deploy_lstm
from deploy_lstm.errors import ConfigError
from deploy_lstm.pipeline import export_folder
from deploy_lstm.serve.registry import CONFIG_FILE, read_config, scan

from test_server import Server, grpc_input, http_input  # noqa: E402  (the same launcher and inputs)

INPUT_SIZE, HIDDEN = 3, 4
LATEST = {"en": "2", "de": "1", "fr": "1"}  # what a request without a version gets
pytestmark = pytest.mark.slow


def _export(path: Path, seed: int, artifacts: Tuple[str, ...] = ("onnx",)) -> None:
    torch.manual_seed(seed)
    export_folder(deploy_lstm.LSTM(INPUT_SIZE, HIDDEN), path, artifacts=list(artifacts), lengths=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    _export(root / "en" / "1", 1)
    _export(root / "en" / "2", 2)
    _export(root / "de", 3, ("onnx", "aoti"))
    _export(root / "fr", 4, ("onnx", "torchscript"))
    (root / CONFIG_FILE).write_text(json.dumps(
        {"artifact": "onnx", "models": {"de": {"artifact": "aoti", "max_batch": 16}, "fr": {"artifact": "torchscript"}}}))
    return root


def oracle(folder: Path) -> nn.LSTM:
    ref = nn.LSTM(INPUT_SIZE, HIDDEN)
    ref.load_state_dict(deploy_lstm.load(folder).state_dict())
    return ref.double().eval()


@pytest.fixture(scope="module")
def oracles(repo: Path) -> Dict[Tuple[str, str], nn.LSTM]:
    return {("en", "1"): oracle(repo / "en" / "1"), ("en", "2"): oracle(repo / "en" / "2"),
            ("de", "1"): oracle(repo / "de"), ("fr", "1"): oracle(repo / "fr")}


def want(ref: nn.LSTM, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref(torch.from_numpy(x.astype(np.float64)))[0].float().numpy()


def check(got: np.ndarray, ref: nn.LSTM, x: np.ndarray) -> None:
    np.testing.assert_allclose(got, want(ref, x), rtol=0, atol=1e-5)


def x_of(rng: np.random.Generator, steps: int = 4, batch: int = 1) -> np.ndarray:
    return rng.standard_normal((steps, batch, INPUT_SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def server(repo: Path) -> Any:
    s = Server(repo, "--model-control-mode", "explicit", "--load-model", "en", "--load-model", "de")
    yield s
    assert s.stop() == 0, s.proc.stderr.read()  # type: ignore[union-attr]


def states(c: thttp.InferenceServerClient) -> Dict[Tuple[str, str], str]:
    return {(m["name"], m.get("version", "")): m.get("state", "") for m in c.get_model_repository_index()}


def test_config_file_is_checked(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text('{"artifact": "onnx", "models": {"a": {"max_batch": NaN}}}')
    with pytest.raises(ConfigError, match="NaN is not JSON"):
        read_config(tmp_path)
    for doc, match in (({"artefact": "onnx"}, "expected an object with"), ({"artifact": "pt"}, "artifact must be one of"),
                       ({"models": {"a": {"max_batchs": 3}}}, "unknown key 'max_batchs'"),
                       ({"models": {"a": {"max_batch": "3"}}}, "max_batch must be a number"),
                       ({"models": {"a": {"max_batch": 0}}}, "max_batch must be >= 1")):
        (tmp_path / CONFIG_FILE).write_text(json.dumps(doc))
        with pytest.raises(ConfigError, match=match):
            read_config(tmp_path)


def test_index_versions_and_routing(server: Server, repo: Path, oracles: Dict[Tuple[str, str], nn.LSTM]) -> None:
    assert scan(repo) == {"de": {"1": repo / "de"}, "en": {"1": repo / "en" / "1", "2": repo / "en" / "2"}, "fr": {"1": repo / "fr"}}
    c, g = server.http(), server.grpc()
    index = c.get_model_repository_index()
    assert {"name": "fr"} in index  # not loaded: by name only, as tritonserver lists it
    assert states(c)[("en", "1")] == states(c)[("en", "2")] == states(c)[("de", "1")] == "READY"
    assert [m.name for m in g.get_model_repository_index().models] == [m["name"] for m in index]
    x = x_of(np.random.default_rng(0))
    for version, key in (("", ("en", "2")), ("1", ("en", "1")), ("2", ("en", "2"))):
        r = c.infer("en", [http_input("input", x)], model_version=version)
        assert r.get_response()["model_version"] == key[1]
        check(r.as_numpy("output"), oracles[key], x)
        rg = g.infer("en", [grpc_input("input", x)], model_version=version)
        assert rg.get_response().model_version == key[1]
        check(rg.as_numpy("output"), oracles[key], x)
    assert not np.allclose(want(oracles[("en", "1")], x), want(oracles[("en", "2")], x))  # the routing is visible
    with pytest.raises(InferenceServerException, match="has no version '3'") as e:
        c.infer("en", [http_input("input", x)], model_version="3")
    assert e.value.status() == "404"
    assert c.get_model_metadata("en", "1")["versions"] == ["1"]
    assert not c.is_model_ready("fr") and c.is_model_ready("en", "1") and c.is_model_ready("en_stream", "2")


def test_aoti_from_the_config_file_equals_nn_lstm(server: Server, oracles: Dict[Tuple[str, str], nn.LSTM]) -> None:
    c, g = server.http(), server.grpc()
    config = c.get_model_config("de")
    assert config["platform"] == "pytorch_aoti" and config["parameters"]["artifact"]["string_value"] == "aoti"
    assert config["parameters"]["max_batch"]["string_value"] == "16"  # the config file's per-model override
    rng = np.random.default_rng(1)
    for steps, batch in ((3, 1), (7, 2)):  # not the export's shapes
        x = x_of(rng, steps, batch)
        check(c.infer("de", [http_input("input", x)]).as_numpy("output"), oracles[("de", "1")], x)
        check(g.infer("de", [grpc_input("input", x)]).as_numpy("output"), oracles[("de", "1")], x)
    # streamed in chunks through the .pt2: the state carried equals one whole pass
    x = x_of(rng, 6)
    outs = [c.infer("de_stream", [http_input("input", x[k:k + 2])], sequence_id=9, sequence_start=k == 0,
                    sequence_end=k == 4).as_numpy("output") for k in (0, 2, 4)]
    check(np.concatenate(outs), oracles[("de", "1")], x)
    assert 'deploy_lstm_model_memory_bytes{model="de",version="1"}' in server.get("/metrics")[1].decode()


class Traffic:
    """Threads sending requests to models that stay loaded; every answer checked, every error kept."""

    def __init__(self, server: Server, oracles: Dict[Tuple[str, str], nn.LSTM], targets: List[Tuple[str, str, str]],
                 refusal: str = "") -> None:
        self.server, self.oracles, self.targets, self.refusal = server, oracles, targets, refusal
        self.stop = threading.Event()
        self.errors: List[str] = []
        self.counts = self.refused = 0
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(len(targets))]

    def run(self, k: int) -> None:
        name, version, protocol = self.targets[k]
        rng = np.random.default_rng(100 + k)
        client = self.server.http() if protocol == "http" else self.server.grpc()
        inputs = http_input if protocol == "http" else grpc_input
        while not self.stop.is_set():
            x = x_of(rng, int(rng.integers(1, 6)), int(rng.integers(1, 3)))
            try:
                got = client.infer(name, [inputs("input", x)], model_version=version).as_numpy("output")
                np.testing.assert_allclose(got, want(self.oracles[(name, version or LATEST[name])], x), rtol=0, atol=1e-5)
                self.counts += 1
            except Exception as e:  # noqa: BLE001 - every failure is the test's finding
                if self.refusal and self.refusal in str(e):  # the one answer allowed (a model being unloaded)
                    self.refused += 1
                else:
                    self.errors.append(f"{name} v{version or 'latest'} {protocol}: {e}")

    def __enter__(self) -> "Traffic":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_load_unload_reload_and_add_under_traffic(server: Server, repo: Path, oracles: Dict[Tuple[str, str], nn.LSTM],
                                                  tmp_path: Path) -> None:
    c, g = server.http(), server.grpc()
    rng = np.random.default_rng(2)
    x = x_of(rng)
    with Traffic(server, oracles, [("en", "", "http"), ("en", "1", "grpc"), ("de", "", "http")]) as traffic:
        c.load_model("fr")
        assert c.get_model_metadata("fr")["platform"] == "pytorch_libtorch"  # TorchScript, from the config file
        check(c.infer("fr", [http_input("input", x)]).as_numpy("output"), oracles[("fr", "1")], x)
        c.infer("fr_stream", [http_input("input", x)], sequence_id=5, sequence_start=True)
        # unloaded while requests for it run: each is answered right, or refused as tritonserver does, nothing else
        with Traffic(server, oracles, [("fr", "", "http"), ("fr", "", "grpc")], "has no available versions") as fr:
            time.sleep(0.3)
            g.unload_model("fr")
            time.sleep(0.3)
        assert fr.errors == [] and fr.counts > 0 and fr.refused > 0, (fr.counts, fr.refused, fr.errors[:5])
        assert states(c)[("fr", "1")] == "UNAVAILABLE"
        assert [m for m in c.get_model_repository_index() if m["name"] == "fr"][0]["reason"] == "unloaded"
        for client, inputs, status in ((c, http_input, "404"), (g, grpc_input, "StatusCode.NOT_FOUND")):
            with pytest.raises(InferenceServerException, match="Request for unknown model: 'fr' has no available versions") as e:
                client.infer("fr", [inputs("input", x)])
            assert e.value.status() == status
        g.load_model("fr")  # loaded again: the unloaded model's sequence is told why it ended
        with pytest.raises(InferenceServerException, match="sequence 5 is not live \\(model 'fr' version 1 was unloaded"):
            c.infer("fr_stream", [http_input("input", x)], sequence_id=5)
        c.load_model("en")  # a reload under traffic: new versions opened, swapped in, old ones drained
        # a folder added after start-up
        _export(repo / "it", 5)
        c.load_model("it")
        check(g.infer("it", [grpc_input("input", x)]).as_numpy("output"), oracle(repo / "it"), x)
        time.sleep(0.3)
    assert traffic.errors == [] and traffic.counts > 20, (traffic.counts, traffic.errors[:5])
    m = server.get("/metrics")[1].decode()
    assert 'deploy_lstm_requests_total{model="en",outcome="ok",protocol="grpc",version="1"}' in m


def test_a_broken_folder_is_unavailable_and_the_others_serve(server: Server, repo: Path,
                                                            oracles: Dict[Tuple[str, str], nn.LSTM]) -> None:
    c, g = server.http(), server.grpc()
    shutil.copytree(repo / "fr", repo / "bad")
    (repo / "bad" / "model.onnx").write_bytes(b"not the exported model")
    with pytest.raises(InferenceServerException, match="load failed for model 'bad': version 1 is at UNAVAILABLE state: .*checksum") as e:
        c.load_model("bad")
    assert e.value.status() == "400"
    with pytest.raises(InferenceServerException, match="load failed for model 'bad'") as e:
        g.load_model("bad")
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    bad = [m for m in c.get_model_repository_index() if m["name"] == "bad"][0]
    assert bad["state"] == "UNAVAILABLE" and "checksum" in bad["reason"]
    with pytest.raises(InferenceServerException, match="failed to load 'nope', failed to poll from model repository") as e:
        c.load_model("nope")
    assert e.value.status() == "500"
    c.unload_model("nope")  # as tritonserver: unloading what is not loaded succeeds
    x = x_of(np.random.default_rng(3))
    check(c.infer("en", [http_input("input", x)]).as_numpy("output"), oracles[("en", "2")], x)


def test_none_mode_refuses_load_and_unload_and_artifact_aoti(repo: Path, oracles: Dict[Tuple[str, str], nn.LSTM],
                                                             tmp_path: Path) -> None:
    small = tmp_path / "repo"
    shutil.copytree(repo / "de", small / "de")
    (small / CONFIG_FILE).write_text(json.dumps({"models": {"de": {"artifact": "onnx"}}}))  # --artifact wins over it
    s = Server(small, "--artifact", "aoti")
    try:
        c = s.http()
        with pytest.raises(InferenceServerException, match="explicit model load / unload is not allowed if polling is enabled") as e:
            c.unload_model("de")
        assert e.value.status() == "503"
        with pytest.raises(InferenceServerException, match="explicit model load / unload is not allowed") as e:
            s.grpc().load_model("de")
        assert e.value.status() == "StatusCode.UNAVAILABLE"
        assert c.get_model_metadata("de")["platform"] == "pytorch_aoti"
        x = x_of(np.random.default_rng(4), 9, 3)
        check(c.infer("de", [http_input("input", x)]).as_numpy("output"), oracles[("de", "1")], x)
    finally:
        assert s.stop() == 0
