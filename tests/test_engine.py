"""The served model without a transport: batch planning, padding probe, streaming rules.

The server tests (test_server.py) drive the same engine through HTTP and gRPC.
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from tritonclient.grpc import model_config_pb2

import deploy_lstm
from deploy_lstm.formats.contract import ModelSpec
from deploy_lstm.demo import export_spec
from deploy_lstm.serve.batching import Item, plan_batches
from deploy_lstm.serve.model import ServedModel, ServeOptions
from deploy_lstm.errors import InvalidRequest
from deploy_lstm.pipeline import export_folder
from deploy_lstm.serve.protocol import MAX_SEQUENCE_ID_BYTES, InferRequest, sequence_key
from deploy_lstm.serve.sequences import ENDED_BYTES, Sequences, Stream
from deploy_lstm.errors import ServerBusy


@settings(max_examples=200, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 300)), min_size=1, max_size=40),
    max_rows=st.integers(1, 16),
    max_padding=st.sampled_from([0.0, 0.25, 0.5, 2.0]),
)
def test_plan_batches_bounds_rows_and_padding(shapes: List[Tuple[int, int]], max_rows: int, max_padding: float) -> None:
    items = [Item({}, rows, steps, key=None) for rows, steps in shapes]
    batches = plan_batches(items, max_rows, max_padding)
    assert sorted(id(i) for b in batches for i in b) == sorted(id(i) for i in items)  # each item once
    for batch in batches:
        if len(batch) == 1:
            continue  # an item alone is always allowed
        rows = sum(i.rows for i in batch)
        real = sum(i.rows * i.steps for i in batch)
        assert rows <= max_rows
        assert rows * max(i.steps for i in batch) <= (1 + max_padding) * real + 1e-9


def test_a_long_request_does_not_make_short_ones_pay_for_its_length() -> None:
    items = [Item({}, 1, 1000, key=None)] + [Item({}, 1, 10, key=None) for _ in range(8)]
    batches = plan_batches(items, 32, 0.5)
    assert [len(b) for b in batches] == [1, 8]


def test_requests_with_different_keys_never_share_a_batch() -> None:
    a, b = Item({}, 1, 10, key="a"), Item({}, 1, 10, key="b")
    assert plan_batches([a, b], 32, 0.5) == [[a], [b]]


# -- the sequence store ----------------------------------------------------------------------


def _end_many(store: Sequences, ids: List[Any]) -> None:
    for sid in ids:
        store.end(store.open(sid, start=True), "ended by sequence_end")


def test_ended_sequences_are_remembered_within_a_byte_bound() -> None:
    """Ids of the longest length allowed, ended by the thousand: the memory of why they ended
    stays under ENDED_BYTES (measured, not only counted) and keeps the latest."""
    store = Sequences(max_live=1024, idle_s=60.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _end_many(store, [f"{i:08d}".ljust(MAX_SEQUENCE_ID_BYTES, "x") for i in range(20_000)])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0 < store.gone_bytes <= ENDED_BYTES and grown <= 1.25 * ENDED_BYTES, (store.gone_bytes, grown)
    assert len(store.gone) < 4 * store.max_live  # the byte bound, not the count, held it
    late = f"{19_999:08d}".ljust(MAX_SEQUENCE_ID_BYTES, "x")
    with pytest.raises(InvalidRequest, match=r"is not live \(ended by sequence_end\)"):
        store.open(late, start=False)


def test_the_byte_bound_holds_for_ids_of_any_length() -> None:
    """The store's own bound, whatever the decoder lets through: 64 ids of 1 MiB, ended
    (issue 19: 100 ids of 8 MiB kept 798 MB for good)."""
    store = Sequences(max_live=1024, idle_s=60.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(64):
            stream = Stream(sequence_key(str(i) * (1 << 20)))
            store.live[stream.key] = stream  # past open(), which refuses such ids
            store.end(stream, "ended by sequence_end")
            del stream
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.gone_bytes <= ENDED_BYTES and grown <= 1.25 * ENDED_BYTES, (store.gone_bytes, grown)


@pytest.mark.parametrize("sid,match", [
    ("x" * (MAX_SEQUENCE_ID_BYTES + 1), r"at most 128 bytes \(as in Triton\), got 129"),
    ("\u00e9" * 65, r"at most 128 bytes \(as in Triton\), got 130"),
    (1 << 64, r"must fit in 64 bits"),
    (-(1 << 63) - 1, r"must fit in 64 bits"),
])
def test_sequence_ids_triton_would_refuse_are_refused(sid: Any, match: str) -> None:
    store = Sequences(max_live=4, idle_s=60.0)
    with pytest.raises(InvalidRequest, match=match) as e:
        store.open(sid, start=True)
    assert len(str(e.value)) < 200 and not store.live  # the id is not echoed whole
    _end_many(store, ["y" * MAX_SEQUENCE_ID_BYTES, (1 << 64) - 1, -(1 << 63)])  # the limits themselves are ids


def test_live_sequences_are_bounded_in_number() -> None:
    store = Sequences(max_live=2, idle_s=60.0)
    store.open(1, start=True), store.open("1", start=True)  # 1 and "1" are two sequences
    with pytest.raises(ServerBusy, match="2 sequences are live"):
        store.open(2, start=True)


# -- served models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("engine")
    torch.manual_seed(0)
    export_folder(deploy_lstm.LSTM(3, 4, bidirectional=True), root / "bi", artifacts=["onnx"], lengths=True)
    export_folder(export_spec(), root / "demo", factory="deploy_lstm.demo:export_spec", artifacts=["onnx"])
    export_folder(_pooled_spec(), root / "pooled", factory="unused:factory", artifacts=["onnx"])
    return {"bi": root / "bi", "demo": root / "demo", "pooled": root / "pooled"}


class Pooled(nn.Module):
    """A whole model with a lengths input whose output depends on the padded steps (a plain mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = deploy_lstm.LSTM(3, 4, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        y, _ = self.rnn(x)
        return y.mean(dim=1) + 0 * lengths.unsqueeze(1)  # ignores lengths: padding changes it


def _pooled_spec() -> ModelSpec:
    return ModelSpec(
        Pooled().eval(), (torch.randn(2, 5, 3), torch.tensor([5, 3])), input_names=["input", "lengths"],
        output_names=["pooled"], dynamic_axes={"input": {0: "batch", 1: "sequence"}, "lengths": {0: "batch"}, "pooled": {0: "batch"}},
    )


def _run(model: ServedModel, requests: List[Tuple[InferRequest, str]]) -> List[Any]:
    async def main() -> List[Any]:
        model.start()
        try:
            return await asyncio.gather(*(model.infer(r, n) for r, n in requests), return_exceptions=True)
        finally:
            await model.close()

    return asyncio.run(main())


def test_the_config_endpoint_answers_tritons_json(folders: Dict[str, Path]) -> None:
    """Triton's JSON form of the one configuration builder's ModelConfig: proto field names,
    fields without presence printed, 64-bit integers as numbers (not protobuf's strings)."""
    model = ServedModel(deploy_lstm.load(folders["demo"]), ServeOptions(name="demo"))
    for name in ("demo", "demo_stream"):
        doc = model.config(name)
        assert json_format.ParseDict(doc, model_config_pb2.ModelConfig()) == model.triton_config(name).proto()
        assert doc["name"] == name and doc["max_batch_size"] == 0 and doc["backend"] == "onnxruntime"
        assert doc["input"][0]["dims"] == [-1, -1, 1] and doc["input"][0]["data_type"] == "TYPE_FP32"  # the batch inside
    assert model.config("demo")["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    seq = model.config("demo_stream")["sequence_batching"]
    assert seq["max_sequence_idle_microseconds"] == 60_000_000
    assert [(s["input_name"], s["output_name"], s["dims"]) for s in seq["state"]] == [("h0", "hn", [2, -1, 48]), ("c0", "cn", [2, -1, 48])]
    assert "dynamic_batching" not in model.config("demo_stream") and "sequence_batching" not in model.config("demo")


def test_padding_is_refused_when_the_probe_shows_it_changes_outputs(folders: Dict[str, Path]) -> None:
    model = ServedModel(deploy_lstm.load(folders["pooled"]), ServeOptions())
    assert not model.pads and model.optional == {"lengths"}
    assert model.stream_name is None and "no state inputs and outputs" in model.stream_refusal  # type: ignore[operator]


def test_a_bidirectional_model_serves_but_does_not_stream(folders: Dict[str, Path]) -> None:
    model = ServedModel(deploy_lstm.load(folders["bi"]), ServeOptions(name="bi"))
    assert model.pads and model.stream_name is None and model.names() == ["bi"]
    x = np.random.default_rng(0).standard_normal((6, 1, 3)).astype(np.float32)
    [ok, refused] = _run(model, [(InferRequest({"input": x}), "bi"), (InferRequest({"input": x}, parameters={"sequence_id": 1, "sequence_start": True}), "bi")])
    with torch.no_grad():
        want = deploy_lstm.load(folders["bi"]).model_spec().model(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(ok["output"], want, rtol=0, atol=1e-5)
    assert isinstance(refused, InvalidRequest)
    assert "cannot stream: it is bidirectional: the reverse direction of a chunk needs the steps after it" in str(refused)


def test_a_whole_model_streams_and_batches_equal_lengths(folders: Dict[str, Path]) -> None:
    """The demo forecaster (x, h0, c0) -> (y, hn, cn), batch-first, no lengths input."""
    folder = deploy_lstm.load(folders["demo"])
    model = ServedModel(folder, ServeOptions(name="demo"))
    assert not model.pads and model.stream_name == "demo_stream" and model.states == [("h0", "hn"), ("c0", "cn")]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, t, 1)).astype(np.float32) for t in (8, 8, 8, 5)]
    whole = rng.standard_normal((1, 12, 1)).astype(np.float32)
    requests = [(InferRequest({"input": x}), "demo") for x in xs]
    results = _run(model, requests)
    eager = folder.model_spec().model
    with torch.no_grad():
        for x, got in zip(xs, results):
            np.testing.assert_allclose(got["output"], eager(torch.from_numpy(x), *_zeros(eager, 1))[0].numpy(), rtol=0, atol=1e-5)
        want = eager(torch.from_numpy(whole), *_zeros(eager, 1))[0].numpy()
    model = ServedModel(folder, ServeOptions(name="demo"))
    parts = _run_stream(model, [whole[:, :5], whole[:, 5:9], whole[:, 9:]])
    np.testing.assert_allclose(np.concatenate(parts, axis=1), want, rtol=0, atol=1e-5)


def _zeros(model: nn.Module, batch: int) -> Tuple[Tensor, Tensor]:
    lstm = model.lstm  # type: ignore[attr-defined]
    shape = (lstm.num_layers, batch, lstm.hidden_size)
    return torch.zeros(shape), torch.zeros(shape)


def _run_stream(model: ServedModel, chunks: List[np.ndarray]) -> List[np.ndarray]:
    async def main() -> List[np.ndarray]:
        model.start()
        try:
            out = []
            for k, chunk in enumerate(chunks):
                params = {"sequence_id": "s", "sequence_start": k == 0, "sequence_end": k == len(chunks) - 1}
                out.append((await model.infer(InferRequest({"input": chunk}, parameters=params), "demo_stream"))["output"])
            return out
        finally:
            await model.close()

    return asyncio.run(main())


@pytest.mark.parametrize("cell", ["peephole", "layernorm", "cell_gated"])
def test_a_variant_cell_serves_batches_and_streams(tmp_path: Path, cell: str) -> None:
    """The server needs nothing of a cell but its ONNX graph: mixed lengths padded, chunks carried."""
    torch.manual_seed(0)
    folder, _ = export_folder(deploy_lstm.LSTM(3, 4, cell=cell), tmp_path / cell, artifacts=["onnx"], lengths=True)
    eager = folder.model_spec().model
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((t, 1, 3)).astype(np.float32) for t in (9, 6, 7)]
    model = ServedModel(folder, ServeOptions(name="v"))
    assert model.pads and model.stream_name == "v_stream"
    results = _run(model, [(InferRequest({"input": x}), "v") for x in xs])
    with torch.no_grad():
        for x, got in zip(xs, results):
            np.testing.assert_allclose(got["output"], eager(torch.from_numpy(x))[0].numpy(), rtol=0, atol=1e-5)
        want = eager(torch.from_numpy(xs[0]))[0].numpy()
    parts = _run_stream(ServedModel(folder, ServeOptions(name="demo")), [xs[0][:4], xs[0][4:]])
    np.testing.assert_allclose(np.concatenate(parts), want, rtol=0, atol=1e-5)


def test_a_torch_backed_model_runs_its_probe_and_batches_on_the_one_torch_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's kernels stay fast only on the thread that first ran one (serve.batching.torch_thread):
    a TorchScript (or AOTInductor) model's start-up probe and every batch run there, not on the
    loader's thread or a batcher thread of its own.  Answers still equal nn.LSTM."""
    torch.manual_seed(3)
    lstm = deploy_lstm.LSTM(3, 5)
    export_folder(lstm, tmp_path / "ts", artifacts=["torchscript"], lengths=True)
    threads: List[str] = []
    runner_type = type(deploy_lstm.load(tmp_path / "ts").runner("torchscript"))
    run = runner_type.run

    def recording(self: Any, feeds: Any) -> Any:
        threads.append(threading.current_thread().name)
        return run(self, feeds)

    monkeypatch.setattr(runner_type, "run", recording)
    model = ServedModel(deploy_lstm.load(tmp_path / "ts"), ServeOptions(name="ts", artifact="torchscript"))
    assert model.pads and threads, "the padding probe ran through the runner"
    x = np.random.default_rng(0).standard_normal((7, 1, 3)).astype(np.float32)
    [out] = _run(model, [(InferRequest({"input": x}), "ts")])
    with torch.no_grad():
        want = torch.nn.LSTM(3, 5).eval()
        want.load_state_dict(lstm.state_dict())
        np.testing.assert_allclose(out["output"], want(torch.from_numpy(x))[0].numpy(), rtol=0, atol=1e-5)
    assert len(threads) >= 3 and set(t.rsplit("_", 1)[0] for t in threads) == {"deploy-lstm-torch"}, threads
