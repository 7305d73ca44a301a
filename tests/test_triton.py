"""The Triton model repository: what write_repository writes, the stream graph driven the way
Triton's sequence batcher drives it, and a real tritonserver (from nvidia-pytriton) serving the
repository unchanged through the Python-based ``onnxruntime`` stand-in backend
(serving/triton/backends/onnxruntime/model.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

import deploy_lstm as dl
from deploy_lstm.serve import repository as triton
from deploy_lstm.formats.folder import load_model_spec

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "serving" / "triton" / "backends" / "onnxruntime" / "model.py"
CLIENT = ROOT / "serving" / "client.py"  # the README's client script
ATOL = 1e-5

# (name, LSTM arguments): batch_first False and 2 layers; a projection; batch_first with one layer
BARE = {
    "lstm": dict(input_size=5, hidden_size=7, num_layers=2),
    "proj": dict(input_size=4, hidden_size=6, proj_size=3, batch_first=True),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, dl.ExportFolder]:
    """Export folders (onnx only): two bare LSTMs and the demo forecaster (a whole model)."""
    root = tmp_path_factory.mktemp("folders")
    out = {}
    for i, (name, kw) in enumerate(BARE.items()):
        torch.manual_seed(i)
        out[name], _ = dl.export_folder(dl.LSTM(**kw), root / name, artifacts=["onnx"], devices=("cpu",))
    factory = "deploy_lstm.demo:export_spec"
    out["demo"], _ = dl.export_folder(load_model_spec(factory), root / "demo", factory=factory, artifacts=["onnx"], devices=("cpu",))
    return out


@pytest.fixture(scope="module")
def repo(folders: Dict[str, dl.ExportFolder], tmp_path_factory: pytest.TempPathFactory) -> Dict[str, triton.TritonRepository]:
    """One repository holding every folder's models (as a real deployment would)."""
    path = tmp_path_factory.mktemp("triton") / "models"
    return {name: triton.write_repository(f, path, max_batch=8, max_queue_delay_us=5000) for name, f in folders.items()}


# --- eager references, written here independently of deploy_lstm.serve.repository -------------


def eager_bare(folder: dl.ExportFolder, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The folder's LSTM on batch-first x (N, T, F) from zero state: (output (N,T,.), hn (N,S,P), cn (N,S,H))."""
    model = folder.model_spec().model
    xt = torch.from_numpy(x)
    with torch.no_grad():
        out, (hn, cn) = model(xt if model.batch_first else xt.transpose(0, 1))
    out = out if model.batch_first else out.transpose(0, 1)
    return out.numpy(), hn.transpose(0, 1).numpy(), cn.transpose(0, 1).numpy()


def eager_demo(folder: dl.ExportFolder, x: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> Tuple[np.ndarray, ...]:
    """The forecaster on x (N, T, 1) and batch-first states (N, L, H): (y, hn, cn) batch-first."""
    model = folder.model_spec().model
    with torch.no_grad():
        y, hn, cn = model(torch.from_numpy(x), torch.from_numpy(h0).transpose(0, 1).contiguous(),
                          torch.from_numpy(c0).transpose(0, 1).contiguous())
    return y.numpy(), hn.transpose(0, 1).numpy(), cn.transpose(0, 1).numpy()


def feature_size(folder: dl.ExportFolder) -> int:
    return folder.config.input_size if folder.config is not None else 1


def check_streams(folder: dl.ExportFolder, seqs: Dict[int, np.ndarray], got: Dict[int, List[np.ndarray]]) -> None:
    """Each sequence's chunks, concatenated, equal the eager model on the whole sequence (zero state)."""
    for corrid, x in seqs.items():
        if folder.config is not None:
            want = eager_bare(folder, x)[0]
        else:
            zero = np.zeros((1, 2, 48), np.float32)
            want = eager_demo(folder, x, zero, zero)[0]
        np.testing.assert_allclose(np.concatenate(got[corrid], axis=1), want, atol=ATOL, rtol=0, err_msg=f"sequence {corrid}")


# --- 1. what is written ---------------------------------------------------------------------------


def _graph_dims(vi: onnx.ValueInfoProto) -> List[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("name", list(BARE))
def test_bare_lstm_repository(repo: Dict[str, triton.TritonRepository], folders: Dict[str, dl.ExportFolder], name: str) -> None:
    r, cfg = repo[name], folders[name].config
    S, P, H, D = cfg.num_states, cfg.real_hidden_size, cfg.hidden_size, cfg.num_directions
    config = _parse(r.model.config)
    assert config.name == name and config.backend == "onnxruntime" and config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [-1, cfg.input_size])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("output", [-1, D * P]), ("hn", [S, P]), ("cn", [S, H])]
    graph = onnx.load(str(r.model.onnx)).graph
    for vi, t in zip(list(graph.input) + list(graph.output), list(config.input) + list(config.output)):
        assert vi.name == t.name and _graph_dims(vi) == [-1] + list(t.dims)
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and t.data_type == model_config_pb2.TYPE_FP32

    assert r.stream is not None and r.stream_skipped is None
    stream = _parse(r.stream.config)
    seq = stream.sequence_batching
    assert stream.name == f"{name}_stream" and not stream.HasField("dynamic_batching")
    assert [t.name for t in stream.input] == ["input"] and [t.name for t in stream.output] == ["output"]
    assert [(s.input_name, s.output_name, list(s.dims)) for s in seq.state] == [("h0", "hn", [S, P]), ("c0", "cn", [S, H])]
    assert [s.initial_state[0].name for s in seq.state] == ["h0_zero", "c0_zero"]
    assert all(s.initial_state[0].zero_data and list(s.initial_state[0].dims) == list(s.dims) for s in seq.state)
    kinds = {ci.name: (ci.control[0].kind, ci.control[0].data_type) for ci in seq.control_input}
    Control = model_config_pb2.ModelSequenceBatching.Control
    assert kinds == {"START": (Control.CONTROL_SEQUENCE_START, 0), "END": (Control.CONTROL_SEQUENCE_END, 0),
                     "CORRID": (Control.CONTROL_SEQUENCE_CORRID, model_config_pb2.TYPE_UINT64)}
    assert seq.oldest.max_candidate_sequences == 8 and seq.max_sequence_idle_microseconds == 60_000_000
    g = onnx.load(str(r.stream.onnx)).graph
    assert {vi.name: _graph_dims(vi) for vi in g.input} == {
        "input": [-1, -1, cfg.input_size], "h0": [-1, S, P], "c0": [-1, S, H], "START": [-1, 1], "END": [-1, 1], "CORRID": [-1, 1]}
    assert {vi.name: _graph_dims(vi) for vi in g.output} == {"output": [-1, -1, D * P], "hn": [-1, S, P], "cn": [-1, S, H]}
    assert triton.check_config(r.stream.config.read_text(), r.stream.onnx).name == f"{name}_stream"


def test_whole_model_repository(repo: Dict[str, triton.TritonRepository]) -> None:
    """The demo forecaster: input (N, T, 1) stays, h0/c0 (L, N, H) become (N, L, H)."""
    r = repo["demo"]
    config = _parse(r.model.config)
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [-1, 1]), ("h0", [2, 48]), ("c0", [2, 48])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("output", [-1, 1]), ("hn", [2, 48]), ("cn", [2, 48])]
    assert r.stream is not None
    stream = _parse(r.stream.config)
    assert [t.name for t in stream.input] == ["input"]
    assert [(s.input_name, s.output_name) for s in stream.sequence_batching.state] == [("h0", "hn"), ("c0", "cn")]


def test_kserve_manifest(repo: Dict[str, triton.TritonRepository]) -> None:
    r = repo["lstm"]
    text = r.kserve.read_text()
    try:
        import yaml  # noqa: PLC0415 -- optional: the manifest is JSON, which every YAML parser reads
        manifest = yaml.safe_load(text)
    except ImportError:
        manifest = json.loads(text)
    assert r.kserve == r.repo / "kserve.yaml"
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == "models"
    model = manifest["spec"]["predictor"]["model"]
    assert model == {"modelFormat": {"name": "triton"}, "protocolVersion": "v2", "runtime": "kserve-tritonserver",
                     "storageUri": r.repo.resolve().as_uri()}


def test_options_reach_the_configs(folders: Dict[str, dl.ExportFolder], tmp_path: Path) -> None:
    r = triton.write_repository(folders["lstm"], tmp_path / "r", name="My LSTM/v2", max_batch=4, instances=2,
                                sequence_idle_us=5_000_000, storage_uri="s3://bucket/models", kserve_name="Speech_LSTM")
    assert r.model.name == "My_LSTM_v2" and r.stream is not None and r.stream.name == "My_LSTM_v2_stream"
    config, stream = _parse(r.model.config), _parse(r.stream.config)
    assert config.max_batch_size == 4 and [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    assert stream.sequence_batching.max_sequence_idle_microseconds == 5_000_000
    manifest = json.loads(r.kserve.read_text())
    assert manifest["metadata"]["name"] == "speech-lstm"
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == "s3://bucket/models"


def test_bidirectional_has_no_stream_model(tmp_path: Path) -> None:
    folder, _ = dl.export_folder(dl.LSTM(3, 4, bidirectional=True), tmp_path / "bi", artifacts=["onnx"], devices=("cpu",))
    r = triton.write_repository(folder, tmp_path / "repo")
    assert r.stream is None and "bidirectional" in (r.stream_skipped or "")
    assert sorted(p.name for p in r.repo.iterdir()) == ["bi", "kserve.yaml"]
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    got = ort.InferenceSession(str(r.model.onnx)).run(None, {"input": x})
    for g, w in zip(got, eager_bare(folder, x)):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)


def test_config_check_catches_mismatches(repo: Dict[str, triton.TritonRepository]) -> None:
    r = repo["lstm"]
    good = r.stream.config.read_text()
    parsed = triton.check_config(good, r.stream.onnx)

    def edited(edit: Any) -> str:
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(parsed)
        edit(config)
        return text_format.MessageToString(config)

    def unfeed_end(c: Any) -> None:
        del c.sequence_batching.control_input[[ci.name for ci in c.sequence_batching.control_input].index("END")]

    bad = {
        "dims": (edited(lambda c: c.sequence_batching.state[0].dims.__setitem__(1, 8)), r"state input 'h0'"),
        "dtype": (good.replace("TYPE_UINT64", "TYPE_INT64"), r"CORRID.*TYPE_INT64, graph TYPE_UINT64"),
        "swapped state": (edited(lambda c: setattr(c.sequence_batching.state[0], "output_name", "cn")),
                          r"state 'h0' -> 'cn': the contract pairs 'h0' with 'hn'"),
        "unknown enum": (good.replace("KIND_CPU", "KIND_TPU"), r"does not parse"),
        "unfed input": (edited(unfeed_end), r"graph inputs \['END'\] are not fed"),
        "same initial name": (good.replace('"c0_zero"', '"h0_zero"'), r"initial_state names must be distinct"),
        "batch in dims": (edited(lambda c: c.input[0].dims.insert(0, -1)), r"input 'input': dims \[-1, -1, 5\] \(rank 4 with the batch\)"),
    }
    for what, (text, match) in bad.items():
        assert text != good, what
        with pytest.raises(dl.ArtifactError, match=match):
            triton.check_config(text, r.stream.onnx)


# --- 2. the stream graph as Triton's sequence batcher drives it (no server) ----------------------


class SequenceBatcher:
    """What Triton's sequence batcher + implicit state do around the stream model: per correlation
    ID the state output is kept and fed back as the state input; zeros at START; dropped at END."""

    def __init__(self, path: Path, states: List[Tuple[str, str]]) -> None:
        self.session = ort.InferenceSession(str(path))
        self.names = [o.name for o in self.session.get_outputs()]
        self.shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.states = states
        self.store: Dict[int, Dict[str, np.ndarray]] = {}

    def batch(self, requests: List[Tuple[int, np.ndarray, bool, bool]]) -> List[Dict[str, np.ndarray]]:
        """One Triton batch: (corrid, x (1, T, F), start, end) per request, equal T."""
        feeds: Dict[str, List[np.ndarray]] = {n: [] for n in self.shapes}
        for corrid, x, start, end in requests:
            feeds["input"].append(x)
            for s_in, _ in self.states:
                shape = [1] + [int(d) for d in self.shapes[s_in][1:]]
                # garbage where the state is fresh: START must zero it inside the graph
                carried = self.store.get(corrid, {}).get(s_in)
                feeds[s_in].append(np.full(shape, 9.0, np.float32) if start or carried is None else carried)
            feeds["START"].append(np.array([[int(start)]], np.int32))
            feeds["END"].append(np.array([[int(end)]], np.int32))
            feeds["CORRID"].append(np.array([[corrid]], np.uint64))
        out = dict(zip(self.names, self.session.run(None, {n: np.concatenate(v) for n, v in feeds.items()})))
        results = []
        for i, (corrid, _, _, end) in enumerate(requests):
            row = {n: v[i:i + 1] for n, v in out.items()}
            if end:
                self.store.pop(corrid, None)
            else:
                self.store[corrid] = {s_in: row[s_out] for s_in, s_out in self.states}
            results.append(row)
        return results


@pytest.mark.parametrize("name", [*BARE, "demo"])
def test_stream_graph_over_interleaved_chunks(repo: Dict[str, triton.TritonRepository], folders: Dict[str, dl.ExportFolder], name: str) -> None:
    r, folder = repo[name], folders[name]
    F = feature_size(folder)
    rng = np.random.default_rng(3)
    # three sequences; each batch holds chunks of equal length from different sequences
    lengths = {11: 9, 22: 7, 33: 3}
    seqs = {c: rng.standard_normal((1, T, F)).astype(np.float32) for c, T in lengths.items()}
    plan = [  # (corrid, lo, hi) per request; one inner list per Triton batch
        [(11, 0, 4), (22, 0, 4)],
        [(33, 0, 2), (11, 4, 6), (22, 4, 6)],
        [(11, 6, 7), (33, 2, 3), (22, 6, 7)],
        [(11, 7, 9)],
    ]
    batcher = SequenceBatcher(r.stream.onnx, list(r.stream.states))
    got: Dict[int, List[np.ndarray]] = {c: [] for c in seqs}
    for batch in plan:
        requests = [(c, seqs[c][:, lo:hi], lo == 0, hi == lengths[c]) for c, lo, hi in batch]
        for (c, _, _), out in zip(batch, batcher.batch(requests)):
            got[c].append(out["output"])
    assert batcher.store == {}  # every sequence ended
    check_streams(folder, seqs, got)


# --- 4. bad input -----------------------------------------------------------------------------------


def _tree(path: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(path.rglob("*"))}


def test_folder_without_onnx(tmp_path: Path) -> None:
    folder, _ = dl.export_folder(dl.LSTM(3, 4), tmp_path / "ts", artifacts=["torchscript"], devices=("cpu",))
    with pytest.raises(dl.ArtifactError, match=r"has no onnx artifact \(it has: torchscript, weights\)"):
        triton.write_repository(folder, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts"]  # no staging left behind


def test_occupied_and_unusable_repo_paths(folders: Dict[str, dl.ExportFolder], repo: Dict[str, triton.TritonRepository], tmp_path: Path) -> None:
    path = repo["lstm"].repo
    before = _tree(path)
    with pytest.raises(dl.ArtifactError, match=r"already holds lstm, lstm_stream; pick another name or pass overwrite=True"):
        triton.write_repository(folders["lstm"], path)
    assert _tree(path) == before
    file = tmp_path / "repo.txt"
    file.write_text("not a folder")
    with pytest.raises(dl.ArtifactError, match=r"exists and is not a folder"):
        triton.write_repository(folders["lstm"], file)
    assert file.read_text() == "not a folder"
    with pytest.raises(dl.ConfigError, match=r"max_batch must be a positive integer, got 0"):
        triton.write_repository(folders["lstm"], tmp_path / "r", max_batch=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo.txt"]


def test_unwritable_repo(folders: Dict[str, dl.ExportFolder], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable here")
        with pytest.raises(dl.ArtifactError, match=r"cannot write the model repository .* is not writable"):
            triton.write_repository(folders["lstm"], locked / "repo")
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_a_failed_move_restores_the_old_models(folders: Dict[str, dl.ExportFolder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """overwrite=True replaces both models or neither: the second move fails (as a full disk
    would), the first is rolled back and the old models are back, byte for byte."""
    path = tmp_path / "repo"
    triton.write_repository(folders["proj"], path, name="m")
    before = _tree(path)
    real = os.replace
    calls = []

    def flaky(src: os.PathLike, dst: os.PathLike) -> None:
        calls.append(Path(dst))
        if Path(dst) == path / "m_stream" and calls.count(path / "m_stream") == 1:  # the new one; the rollback works
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(triton.os, "replace", flaky)
    with pytest.raises(dl.ArtifactError, match=r"cannot move the models into .*No space left on device"):
        triton.write_repository(folders["lstm"], path, name="m", overwrite=True)
    monkeypatch.undo()
    assert path / "m_stream" in calls and _tree(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no staging left behind


# --- 3. a real tritonserver --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tritonserver(repo_path: Path, work: Path, env_python: Path) -> Iterator[Dict[str, str]]:
    """tritonserver 2.51 from nvidia-pytriton on ``repo_path``, with a backend directory of
    Triton's Python backend (+ the stub for this Python) and the onnxruntime stand-in."""
    # only the wheel's files are used (the binary, the Python backend and its stubs), not its Python API;
    # they live in a venv of their own (nvidia-pytriton pins numpy<2), whose python the stub runs
    site = Path(subprocess.run([str(env_python), "-c", "import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent.parent)"],
                               check=True, capture_output=True, text=True).stdout.strip())
    home = site / "pytriton" / "tritonserver"
    libs = site / "nvidia_pytriton.libs"
    backends = work / "backends"
    shutil.copytree(home / "backends" / "python", backends / "python")
    shutil.copy(home / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub",
                backends / "python")
    (backends / "onnxruntime").mkdir()
    shutil.copy(STAND_IN, backends / "onnxruntime" / "model.py")
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    env = dict(os.environ)
    env["PATH"] = f"{env_python.parent}{os.pathsep}{env.get('PATH', '')}"  # the stub runs `python` from PATH
    env["LD_LIBRARY_PATH"] = os.pathsep.join([sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH", "")])
    log = work / "tritonserver.log"
    cmd = [str(home / "bin" / "tritonserver"), f"--model-repository={repo_path}", f"--backend-directory={backends}",
           f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--exit-timeout-secs=5",
           "--strict-readiness=true"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                text = log.read_text(errors="replace")
                if "successfully loaded" in text or "failed to load" in text or "Invalid argument" in text:
                    pytest.fail(f"tritonserver exited (code {proc.returncode}); log:\n{text[-4000:]}")
                pytest.skip(f"tritonserver cannot start on this machine (exit {proc.returncode}):\n{text[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tritonserver not ready after 90 s; log:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.1)
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "log": str(log)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(
    repo: Dict[str, triton.TritonRepository], tmp_path_factory: pytest.TempPathFactory, triton_env: Callable[[], Path]
) -> Iterator[Dict[str, str]]:
    """tritonserver on the repository of every folder's models."""
    with tritonserver(next(iter(repo.values())).repo, tmp_path_factory.mktemp("tritonserver"), triton_env()) as s:
        yield s


@pytest.fixture(scope="module")
def clients(server: Dict[str, str]) -> Iterator[Dict[str, Tuple[Any, Any]]]:
    """{protocol: (tritonclient module, client)}; closed before the server stops (an open
    HTTP connection makes tritonserver wait out its exit timeout)."""
    made = _clients(server)
    yield made
    for _, client in made.values():
        client.close()


def _clients(server: Dict[str, str]) -> Dict[str, Tuple[Any, Any]]:
    return {"http": (httpclient, httpclient.InferenceServerClient(server["http"])),
            "grpc": (grpcclient, grpcclient.InferenceServerClient(server["grpc"]))}


def _infer(module, client, model: str, feeds: Dict[str, np.ndarray], outputs: List[str], **kw) -> Dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    inputs = []
    for name, a in feeds.items():
        i = module.InferInput(name, list(a.shape), "FP32")
        i.set_data_from_numpy(a)
        inputs.append(i)
    result = client.infer(model, inputs, outputs=[module.InferRequestedOutput(n) for n in outputs], **kw)
    return {n: result.as_numpy(n) for n in outputs}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_serves_the_repository(server: Dict[str, str], clients: Dict[str, Tuple[Any, Any]], repo: Dict[str, triton.TritonRepository], protocol: str) -> None:
    module, client = clients[protocol]
    assert client.is_server_ready()
    for name, r in repo.items():
        assert client.is_model_ready(r.model.name), name
        assert client.is_model_ready(r.stream.name), name
    meta = clients["http"][1].get_model_metadata("lstm")
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [("input", [-1, -1, 5])]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_dynamic_model_equals_eager(server: Dict[str, str], clients: Dict[str, Tuple[Any, Any]], repo: Dict[str, triton.TritonRepository], folders: Dict[str, dl.ExportFolder], protocol: str) -> None:
    module, client = clients[protocol]
    rng = np.random.default_rng(5)
    for name in BARE:
        x = rng.standard_normal((3, 6, feature_size(folders[name]))).astype(np.float32)
        got = _infer(module, client, name, {"input": x}, ["output", "hn", "cn"])
        for key, want in zip(("output", "hn", "cn"), eager_bare(folders[name], x)):
            np.testing.assert_allclose(got[key], want, atol=ATOL, rtol=0, err_msg=f"{name} {key}")
    x = rng.standard_normal((2, 9, 1)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, 2, 48)).astype(np.float32), rng.standard_normal((2, 2, 48)).astype(np.float32)
    got = _infer(module, client, "demo", {"input": x, "h0": h0, "c0": c0}, ["output", "hn", "cn"])
    for key, want in zip(("output", "hn", "cn"), eager_demo(folders["demo"], x, h0, c0)):
        np.testing.assert_allclose(got[key], want, atol=ATOL, rtol=0, err_msg=f"demo {key}")


@pytest.mark.slow
def test_concurrent_requests_of_different_lengths(server: Dict[str, str], folders: Dict[str, dl.ExportFolder]) -> None:
    """Threads send at once; the dynamic batcher batches the equal-length ones together."""
    rng = np.random.default_rng(6)
    jobs = [rng.standard_normal((1 + i % 2, (3, 8, 5)[i % 3], 5)).astype(np.float32) for i in range(12)]
    results: Dict[int, Dict[str, np.ndarray]] = {}
    errors: List[str] = []
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        try:
            module, client = _clients(server)["http" if i % 2 else "grpc"]
            barrier.wait()
            try:
                results[i] = _infer(module, client, "lstm", {"input": jobs[i]}, ["output", "hn"])
            finally:
                client.close()
        except Exception as e:  # recorded and asserted below
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, x in enumerate(jobs):
        out, hn, _ = eager_bare(folders["lstm"], x)
        np.testing.assert_allclose(results[i]["output"], out, atol=ATOL, rtol=0, err_msg=f"job {i}")
        np.testing.assert_allclose(results[i]["hn"], hn, atol=ATOL, rtol=0, err_msg=f"job {i}")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", [*BARE, "demo"])
def test_stream_model_over_chunks(server: Dict[str, str], clients: Dict[str, Tuple[Any, Any]], folders: Dict[str, dl.ExportFolder], protocol: str, name: str) -> None:
    """Two sequences sent interleaved in chunks with sequence_id/start/end equal the whole-sequence result."""
    module, client = clients[protocol]
    folder = folders[name]
    F = feature_size(folder)
    rng = np.random.default_rng(7)
    base = {"http": 100, "grpc": 200}[protocol] + 10 * list(folders).index(name)
    seqs = {base + 1: rng.standard_normal((1, 10, F)).astype(np.float32), base + 2: rng.standard_normal((1, 6, F)).astype(np.float32)}
    chunks = {base + 1: [(0, 3), (3, 4), (4, 10)], base + 2: [(0, 2), (2, 6)]}
    order = [(base + 1, 0), (base + 2, 0), (base + 1, 1), (base + 2, 1), (base + 1, 2)]
    got: Dict[int, List[np.ndarray]] = {c: [] for c in seqs}
    for corrid, k in order:
        lo, hi = chunks[corrid][k]
        out = _infer(module, client, f"{name}_stream", {"input": seqs[corrid][:, lo:hi]}, ["output"], sequence_id=corrid,
                     sequence_start=k == 0, sequence_end=k == len(chunks[corrid]) - 1)
        got[corrid].append(out["output"])
    check_streams(folder, seqs, got)


@pytest.mark.slow
def test_server_enforces_the_config(server: Dict[str, str], clients: Dict[str, Tuple[Any, Any]]) -> None:
    """Triton's own shape check, from the generated config: a wrong feature size is refused."""
    module, client = clients["http"]
    with pytest.raises(InferenceServerException, match=r"unexpected shape for input 'input'"):
        _infer(module, client, "lstm", {"input": np.zeros((1, 4, 6), np.float32)}, ["output"])
    assert "successfully loaded 'lstm_stream'" in Path(server["log"]).read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_readme_client_script_against_triton(server: Dict[str, str], folders: Dict[str, dl.ExportFolder], protocol: str, tmp_path: Path) -> None:
    """serving/client.py, unchanged but for the URL (test_server.py runs it against deploy-lstm serve)."""
    out = tmp_path / "client.npz"
    cmd = [sys.executable, str(CLIENT), "--url", server[protocol], "--model", "proj", "--save", str(out)] + (["--grpc"] if protocol == "grpc" else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    saved = np.load(out)
    want = eager_bare(folders["proj"], saved["input"])[0]
    np.testing.assert_allclose(saved["output"], want, atol=ATOL, rtol=0)
    np.testing.assert_allclose(saved["streamed"], want, atol=ATOL, rtol=0)


# --- 5. a repository of models and versions (deploy-lstm triton REPO) ---------------------------------

#: the source repository: alpha has two versions (same shapes, other weights), beta is one export folder
SOURCE = {("alpha", "1"): (dict(input_size=3, hidden_size=4), 10), ("alpha", "2"): (dict(input_size=3, hidden_size=4), 11),
          ("beta", None): (dict(input_size=2, hidden_size=5), 12)}


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """REPO/alpha/1, REPO/alpha/2 (versions), REPO/beta (an export folder), as deploy-lstm serve reads them."""
    root = tmp_path_factory.mktemp("source") / "repo"
    for (name, version), (kw, seed) in SOURCE.items():
        torch.manual_seed(seed)
        dl.export_folder(dl.LSTM(**kw), root / name / (version or ""), artifacts=["onnx"], devices=("cpu",))
    return root


@pytest.fixture(scope="module")
def versioned(source_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, str]:
    """``deploy-lstm triton REPO --repo OUT``: (OUT, what it printed)."""
    from deploy_lstm.cli import main  # noqa: PLC0415

    out = tmp_path_factory.mktemp("versioned") / "models"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["triton", str(source_repo), "--repo", str(out), "--max-batch", "4"]) == 0
    return out, stdout.getvalue()


def oracle(source_repo: Path, name: str, version: Optional[str], x: np.ndarray) -> Dict[str, np.ndarray]:
    """torch.nn.LSTM with the weights of that version, on batch-first x; batch-first outputs (zero state)."""
    folder = dl.load(source_repo / name / (version or ""))
    kw = SOURCE[(name, version)][0]
    ref = torch.nn.LSTM(kw["input_size"], kw["hidden_size"])
    ref.load_state_dict(folder.state_dict())
    with torch.no_grad():
        y, (h, c) = ref(torch.from_numpy(x).transpose(0, 1))
    return {"output": y.transpose(0, 1).numpy(), "hn": h.transpose(0, 1).numpy(), "cn": c.transpose(0, 1).numpy()}


def test_repository_of_models_and_versions(versioned: Tuple[Path, str], source_repo: Path) -> None:
    """Every model and version written: Triton's numbered version folders under one config per
    model (version_policy all when there are several), stream twins alike, each version's graph
    equal to nn.LSTM with that version's weights."""
    out, printed = versioned
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "alpha_stream", "beta", "beta_stream", "kserve.yaml"]
    for name, versions in (("alpha", ["1", "2"]), ("beta", ["1"])):
        for model in (name, f"{name}_stream"):
            config = _parse(out / model / "config.pbtxt")
            assert config.name == model and config.max_batch_size == 4
            assert config.version_policy.HasField("all") == (len(versions) > 1), model
            assert sorted(p.name for p in (out / model).iterdir()) == sorted(versions + ["config.pbtxt"]), model
            for v in versions:
                triton.check_config((out / model / "config.pbtxt").read_text(), out / model / v / "model.onnx")
    assert "wrote " + str(out / "alpha") + " (dynamic batching, up to 4 per batch; versions 1, 2)" in printed
    x = np.random.default_rng(8).standard_normal((2, 7, 3)).astype(np.float32)
    answers = {}
    for v in ("1", "2"):
        session = ort.InferenceSession(str(out / "alpha" / v / "model.onnx"))
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x})))
        for key, want in oracle(source_repo, "alpha", v, x).items():
            np.testing.assert_allclose(got[key], want, atol=ATOL, rtol=0, err_msg=f"alpha version {v} {key}")
        answers[v] = got["output"]
    assert np.abs(answers["1"] - answers["2"]).max() > 1e-3  # two versions, two sets of weights


def test_repository_refusals(source_repo: Path, tmp_path: Path) -> None:
    from deploy_lstm.cli import main  # noqa: PLC0415

    mixed = tmp_path / "mixed"
    shutil.copytree(source_repo / "alpha" / "1", mixed / "m" / "1")
    shutil.copytree(source_repo / "beta", mixed / "m" / "2")
    with pytest.raises(dl.ConfigError, match=r"model 'm': version 2 \(input float32 \[-1, 2\].*\) does not have the tensors of "
                                              r"version 1 \(input float32 \[-1, 3\].*one config.pbtxt per model"):
        triton.write_model_repository(mixed, tmp_path / "out")
    (tmp_path / "empty" / "lost").mkdir(parents=True)
    with pytest.raises(dl.ArtifactError, match=r"lost is neither an export folder \(no manifest.json\) nor a folder of versions"):
        triton.write_model_repository(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["triton", str(source_repo), "--repo", str(tmp_path / "out"), "--name", "x"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mixed"]  # nothing written, no staging left


@pytest.mark.slow
def test_tritonserver_serves_every_version(versioned: Tuple[Path, str], source_repo: Path, tmp_path: Path,
                                           triton_env: Callable[[], Path]) -> None:
    """The real tritonserver loads both versions of alpha (and their stream twins) and beta; a
    request routed to a version (tritonclient's model_version) answers as nn.LSTM with that
    version's weights; without a version, the latest answers."""
    out, _ = versioned
    rng = np.random.default_rng(9)
    with tritonserver(out, tmp_path, triton_env()) as s:
        made = _clients(s)
        try:
            for protocol, (module, client) in made.items():
                for model, version in (("alpha", "1"), ("alpha", "2"), ("alpha_stream", "1"), ("alpha_stream", "2"), ("beta", "1")):
                    assert client.is_model_ready(model, version), (protocol, model, version)
                assert not client.is_model_ready("alpha", "3")
                x = rng.standard_normal((2, 6, 3)).astype(np.float32)
                for asked, version in (("1", "1"), ("2", "2"), ("", "2")):
                    got = _infer(module, client, "alpha", {"input": x}, ["output", "hn", "cn"], model_version=asked)
                    for key, want in oracle(source_repo, "alpha", version, x).items():
                        np.testing.assert_allclose(got[key], want, atol=ATOL, rtol=0, err_msg=f"{protocol} alpha {asked!r} {key}")
                xb = rng.standard_normal((1, 5, 2)).astype(np.float32)
                got = _infer(module, client, "beta", {"input": xb}, ["output"])
                np.testing.assert_allclose(got["output"], oracle(source_repo, "beta", None, xb)["output"], atol=ATOL, rtol=0)
                # version 1 of the stream twin, in two chunks
                corrid = {"http": 501, "grpc": 502}[protocol]
                chunks = [_infer(module, client, "alpha_stream", {"input": x[:1, lo:hi]}, ["output"], model_version="1",
                                 sequence_id=corrid, sequence_start=lo == 0, sequence_end=hi == 6)["output"] for lo, hi in ((0, 2), (2, 6))]
                want = oracle(source_repo, "alpha", "1", x[:1])["output"]
                np.testing.assert_allclose(np.concatenate(chunks, axis=1), want, atol=ATOL, rtol=0, err_msg=f"{protocol} stream v1")
        finally:
            for _, client in made.values():
                client.close()
