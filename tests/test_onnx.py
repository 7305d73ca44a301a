"""ONNX export (issue #3): every configuration, both exporters, validated in onnxruntime.

Models are exported once per session (the fixture below) at the export example
(batch 3, sequence 7) and always run at other shapes.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import deploy_lstm as dl
from deploy_lstm.formats import contract
from deploy_lstm.exporters.onnx import OPSETS, graph_ops, read_metadata
from deploy_lstm.runtime.onnx import OnnxLSTM, cuda_available
from deploy_lstm.errors import RuntimeUnavailable

EXAMPLE_T = 7  # the sequence length export_onnx traces with

# (id, constructor kwargs, lengths input, dtype). input 5, hidden 6, proj 4: no size is 7.
CONFIGS = [
    ("2l-bidir-lengths", dict(num_layers=2, bidirectional=True), True, torch.float32),
    ("1l-batchfirst-nobias", dict(batch_first=True, bias=False), False, torch.float32),
    ("proj-bidir-bf-lengths", dict(proj_size=4, bidirectional=True, batch_first=True), True, torch.float32),
    ("proj-2l", dict(proj_size=4, num_layers=2), False, torch.float32),
    ("f64-bidir-lengths", dict(bidirectional=True), True, torch.float64),
]
EXPORTERS = ["dynamo", "torchscript"]


def make_lstm(kwargs: dict, dtype: torch.dtype, seed: int = 0) -> dl.LSTM:
    torch.manual_seed(seed)
    return dl.LSTM(5, 6, dtype=dtype, **kwargs).eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """{(config id, exporter): (model, path)} — each exported once, lazily."""
    root = tmp_path_factory.mktemp("onnx")
    cache: dict = {}

    def get(cid: str, exporter: str):
        key = (cid, exporter)
        if key not in cache:
            _, kwargs, lengths, dtype = next(c for c in CONFIGS if c[0] == cid)
            model = make_lstm(kwargs, dtype)
            path = dl.export_onnx(model, root / f"{cid}-{exporter}.onnx", exporter=exporter, lengths=lengths)
            cache[key] = (model, path)
        return cache[key]

    return get


def dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in vi.type.tensor_type.shape.dim]


def all_value_infos(g: onnx.GraphProto):
    yield from list(g.input) + list(g.output) + list(g.value_info)
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_value_infos(a.g)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("cid", [c[0] for c in CONFIGS])
def test_matches_nn_lstm_at_other_shapes(exported, cid, exporter):
    model, path = exported(cid, exporter)
    report = dl.validate(model, path, devices=("cpu",))
    assert report.passed, "\n" + report.table()
    backends = {c.backend for c in report.checks}
    refs = {c.reference for c in report.checks if c.backend == "onnxruntime-cpu"}
    assert "onnxruntime-cpu" in backends and refs == {"deploy_lstm eager", "torch.nn.LSTM"}
    assert {c.output for c in report.checks if c.backend == "onnxruntime-cpu"} == {"output", "hn", "cn"}
    # every case differs from the export example, and lengths were exercised when exported
    assert all(f"sequence={EXAMPLE_T} " not in c + " " for c in report.cases)
    assert any("lengths" in c for c in report.cases) == OnnxLSTM(path).has_lengths


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("cid", [c[0] for c in CONFIGS])
def test_graph_is_dynamic_and_uses_the_right_op(exported, cid, exporter):
    model, path = exported(cid, exporter)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    io = dl.lstm_io(dl.LSTMConfig.of(model), lengths=OnnxLSTM(path).has_lengths, dtype="x")
    for vi in list(proto.graph.input) + list(proto.graph.output):
        spec = next(t for t in io.inputs + io.outputs if t.name == vi.name)
        assert dims(vi) == list(spec.shape), f"{vi.name}: {dims(vi)} != {spec.shape}"
    # no value anywhere, subgraphs included, carries the example's sequence length
    for vi in all_value_infos(proto.graph):
        assert EXAMPLE_T not in dims(vi), f"{vi.name} has a fixed dimension {dims(vi)}"
    ops = graph_ops(proto)
    native = model.proj_size == 0 and model.weight_ih_l0.dtype == torch.float32
    if native:
        assert ops.get("LSTM") == model.num_layers and "Scan" not in ops and "Loop" not in ops
    else:
        loop = "Scan" if exporter == "dynamo" else "Loop"
        assert "LSTM" not in ops
        assert ops.get(loop) == model.num_layers * model.num_directions


def test_native_op_has_initializer_weights_in_onnx_gate_order(exported):
    model, path = exported("2l-bidir-lengths", "torchscript")
    proto = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "LSTM")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == b"bidirectional" and attrs["hidden_size"] == 6
    assert "layout" not in attrs or attrs["layout"] == 0  # onnxruntime rejects layout=1
    W = inits[node.input[1]]
    H = 6
    i, f, g, o = model.weight_ih_l0.detach().numpy().reshape(4, H, -1)
    np.testing.assert_array_equal(W[0], np.concatenate([i, o, f, g]))  # ONNX order i, o, f, c


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_metadata_round_trips(exported, exporter):
    model, path = exported("proj-bidir-bf-lengths", exporter)
    meta = read_metadata(path)
    assert meta.config == dl.LSTMConfig.of(model) and meta.lstms is None
    assert (meta.version, meta.torch, meta.exporter) == (dl.__version__, torch.__version__, exporter)
    assert meta.io.input_names == ["input", "h0", "c0", "lengths"]
    # the strings on disk, as the C++ readers see them
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(props[contract.META_CONFIG]) == model.config()
    assert props == meta.to_strings()
    session = OnnxLSTM(path)
    assert session.config == dl.LSTMConfig.of(model)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("end", ["min", "max"])
@pytest.mark.parametrize("proj", [0, 4])
def test_opset_range_ends(tmp_path, exporter, end, proj):
    lo, hi = OPSETS[exporter]
    opset = lo if end == "min" else hi
    model = make_lstm(dict(bidirectional=True, proj_size=proj), torch.float32)
    path = dl.export_onnx(model, tmp_path / "m.onnx", exporter=exporter, opset=opset, lengths=True)
    proto = onnx.load(str(path))
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == opset
    report = dl.validate(model, path, devices=("cpu",), cases=((1, 1), (2, 9)))
    assert report.passed, "\n" + report.table()


def test_scan_and_loop_paths_selectable_for_native_configs(tmp_path):
    model = make_lstm(dict(num_layers=2, bidirectional=True), torch.float32)
    for exporter, loop in (("dynamo", "Scan"), ("torchscript", "Loop")):
        path = dl.export_onnx(model, tmp_path / f"{exporter}.onnx", exporter=exporter, native_lstm=False, lengths=True)
        assert "LSTM" not in graph_ops(onnx.load(str(path))) and loop in graph_ops(onnx.load(str(path)))
        report = dl.validate(model, path, devices=("cpu",), cases=((2, 1), (3, 11)))
        assert report.passed, "\n" + report.table()


class Tagger(nn.Module):
    """embedding -> LSTM -> linear, the shape of most real users' models."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 5)
        self.rnn = nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        if isinstance(self.rnn, dl.LSTM):
            out, _ = self.rnn(x, lengths=lengths)
        else:  # the original nn.LSTM model: packed sequences
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        return self.head(out)


AXES = {"tokens": {0: "batch", 1: "sequence"}, "lengths": {0: "batch"}, "logits": {0: "batch", 1: "sequence"}}


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_whole_model_exports_and_matches(tmp_path, exporter):
    torch.manual_seed(0)
    original = Tagger().eval()
    swapped = dl.swap_lstms(Tagger().eval())
    swapped.load_state_dict(original.state_dict())
    tokens = torch.randint(0, 20, (3, 7))
    path = dl.export_onnx(
        swapped,
        tmp_path / "tagger.onnx",
        example_inputs=(tokens, torch.tensor([7, 2, 5])),
        input_names=["tokens", "lengths"],
        output_names=["logits"],
        dynamic_axes=AXES,
        exporter=exporter,
    )
    meta = read_metadata(path)
    assert set(meta.lstms) == {"rnn"}
    assert meta.config is None  # that key is a bare LSTM's
    report = dl.validate(
        swapped, path, example_inputs=(tokens, torch.tensor([7, 2, 5])), input_names=["tokens", "lengths"],
        output_names=["logits"], dynamic_axes=AXES, devices=("cpu",),
    )
    assert report.passed, report.table()
    assert {c.output for c in report.checks} == {"logits"}
    assert {c.backend for c in report.checks} == {"deploy_lstm eager", "onnxruntime-cpu"}
    session = OnnxLSTM(path)
    for N, T in ((1, 1), (4, 12), (2, 30)):
        tok = torch.randint(0, 20, (N, T))
        lengths = torch.randint(1, T + 1, (N,))
        lengths[0] = T
        got = session.run({"tokens": tok.numpy(), "lengths": lengths.numpy()})["logits"]
        with torch.no_grad():
            want = original(tok, lengths).numpy()
            ours = swapped(tok, lengths).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(ours, want, atol=1e-5, rtol=0)


def test_runtime_fills_zero_state(exported):
    model, path = exported("1l-batchfirst-nobias", "dynamo")
    x = np.random.default_rng(1).standard_normal((2, 9, 5)).astype(np.float32)
    out, hn, cn = OnnxLSTM(path)(x)
    with torch.no_grad():
        ro, (rh, rc) = model.to_torch()(torch.from_numpy(x))
    np.testing.assert_allclose(out, ro.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(hn, rh.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(cn, rc.numpy(), atol=1e-5, rtol=0)


def test_external_data_when_weights_are_large(tmp_path, monkeypatch):
    import deploy_lstm.exporters.onnx as ox

    monkeypatch.setattr(ox, "_GB2", 1000)  # pretend 1 kB is the protobuf limit
    torch.manual_seed(0)
    model = dl.LSTM(16, 64, num_layers=2).eval()  # weights over onnx's 1 kB external-data threshold
    path = dl.export_onnx(model, tmp_path / "big.onnx", exporter="torchscript")
    assert (tmp_path / "big.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert dl.validate(model, path, devices=("cpu",), cases=((2, 3),)).passed


# --- errors: before any work, and nothing half-written ----------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(exporter="tflite"), r"unknown exporter 'tflite'; expected one of \['dynamo', 'torchscript'\]"),
        (dict(exporter="dynamo", opset=17), r"opset 17 is not supported by the dynamo exporter; expected 18\.\.23"),
        (dict(exporter="torchscript", opset=21), r"opset 21 is not supported by the torchscript exporter; expected 11\.\.20"),
    ],
)
def test_bad_exporter_or_opset(tmp_path, kwargs, match):
    with pytest.raises(dl.ExportError, match=match):
        dl.export_onnx(make_lstm({}, torch.float32), tmp_path / "m.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unexportable_models(tmp_path):
    with pytest.raises(dl.ExportError, match=r"the model itself is a torch.nn.LSTM.*swap_lstms"):
        dl.export_onnx(nn.LSTM(3, 4), tmp_path / "m.onnx")
    with pytest.raises(dl.ExportError, match=r"rnn is a torch.nn.LSTM.*swap_lstms"):
        dl.export_onnx(Tagger(), tmp_path / "m.onnx", example_inputs=(torch.zeros(1, 2, dtype=torch.long),))
    with pytest.raises(dl.ExportError, match=r"expected a torch.nn.Module, got str"):
        dl.export_onnx("model.pt", tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(dl.ExportError, match=r"needs example_inputs"):
        dl.export_onnx(dl.swap_lstms(Tagger()), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_paths(tmp_path):
    model = make_lstm({}, torch.float32)
    with pytest.raises(dl.ExportError, match=r"folder .*missing does not exist"):
        dl.export_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(dl.ExportError, match=r"it is a directory"):
        dl.export_onnx(model, tmp_path)


def test_failed_export_leaves_nothing(tmp_path):
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = dl.LSTM(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing() or torch.compiler.is_compiling():  # runs eagerly, fails in the exporter
                raise RuntimeError("boom inside forward")
            return self.rnn(x)[0]

    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous good model")
    for exporter in EXPORTERS:
        with pytest.raises(dl.ExportError, match=rf"(?s){exporter} exporter.*failed.*boom inside forward"):
            dl.export_onnx(Broken(), target, example_inputs=(torch.zeros(2, 2, 3),), exporter=exporter)
    assert target.read_bytes() == b"previous good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s(np.zeros((7, 5), np.float32)), r"expected input of rank 3 with shape \(sequence, batch, 5\), got shape \(7, 5\)"),
        (lambda s: s(np.zeros((7, 2, 4), np.float32)), r"with 5 features, got shape \(7, 2, 4\)"),
        (lambda s: s(np.zeros((7, 2, 5), np.float64)), r"expected input of dtype float32, got float64"),
        (lambda s: s(np.zeros((7, 2, 5), np.float32), h0=np.zeros((4, 3, 6), np.float32)), r"expected h0 of shape \(4, 2, 6\), got \(4, 3, 6\)"),
        (lambda s: s(np.zeros((7, 2, 5), np.float32), lengths=np.array([7, 0])), r"lengths must lie in 1\.\.7.*from 0 to 7"),
        (lambda s: s(np.zeros((7, 2, 5), np.float32), lengths=np.array([7, 8])), r"lengths must lie in 1\.\.7.*from 7 to 8"),
        (lambda s: s(np.zeros((7, 2, 5), np.float32), lengths=np.array([7, 1], np.int32)), r"lengths of dtype int64 and shape \(2,\), got int32"),
        (lambda s: s(np.zeros((0, 2, 5), np.float32)), r"expected batch >= 1 and sequence >= 1"),
        (lambda s: s.run({"x": np.zeros((7, 2, 5), np.float32)}), r"expects inputs \['input', 'h0', 'c0', 'lengths'\], got \['x'\] \(unknown: \['x'\]\)"),
        (lambda s: s.run({"input": np.zeros((7, 2, 5), np.float32), "h0": np.zeros((4, 3, 6), np.float32),
                          "c0": np.zeros((4, 2, 6), np.float32), "lengths": np.full(2, 7)}),
         r"inputs disagree on 'batch': input axis 1 is 2, h0 axis 1 is 3"),
    ],
)
def test_runtime_input_errors(exported, call, match):
    _, path = exported("2l-bidir-lengths", "torchscript")
    with pytest.raises(dl.LSTMInputError, match=match):
        call(OnnxLSTM(path))


def test_lengths_given_to_a_model_without_them(exported):
    _, path = exported("1l-batchfirst-nobias", "torchscript")
    with pytest.raises(dl.LSTMInputError, match=r"exported without a lengths input; re-export with lengths=True"):
        OnnxLSTM(path)(np.zeros((2, 3, 5), np.float32), lengths=np.array([3, 3]))


def test_missing_file():
    with pytest.raises(dl.ArtifactError, match=r"no ONNX model at .*nowhere.onnx"):
        OnnxLSTM("nowhere.onnx")


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA: the CUDA path is tested instead")
def test_cuda_requested_but_missing(exported):
    _, path = exported("2l-bidir-lengths", "torchscript")
    with pytest.raises(RuntimeUnavailable, match=r"no CUDAExecutionProvider.*install onnxruntime-gpu"):
        OnnxLSTM(path, device="cuda")
    report = dl.validate(exported("2l-bidir-lengths", "torchscript")[0], path, cases=((1, 2),))
    assert "onnxruntime-cuda" in report.skipped and report.passed


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu and a CUDA device; none on this machine")
@pytest.mark.parametrize("cid", ["2l-bidir-lengths", "proj-2l"])
def test_cuda_execution_provider(exported, cid):
    model, path = exported(cid, "dynamo")
    report = dl.validate(model, path, devices=("cuda",))
    assert report.passed and any(c.backend == "onnxruntime-cuda" for c in report.checks), report.table()
