"""One runner per artifact kind: ``deploy_lstm.load(DIR).runner(kind)`` for every kind a folder
can hold, called as users call nn.LSTM (numpy or torch, with and without h0/c0/lengths), at
shapes other than the export's, against ``torch.nn.LSTM`` holding the same weights; streams
chained chunk by chunk; a whole model; bad inputs; and validation through the runners."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import deploy_lstm as dl
from deploy_lstm.check import validate as validate_mod
from deploy_lstm.formats.contract import ModelSpec
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.folder import RunnableFolder

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")

KINDS = ("onnx", "onnx-int8", "torchscript", "aoti")  # the bare folder's; "executorch" has its own folder (no lengths)
BARE = dict(input_size=5, hidden_size=8, num_layers=2, batch_first=True)  # the folder holding every kind
ATOL = 1e-5  # float32


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare LSTM with lengths, every artifact kind (the AOTInductor compile takes ~30 s)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("runners") / "bare"
    dl.export_folder(
        dl.LSTM(**BARE), out, artifacts=["onnx", "torchscript", "aoti"], lengths=True, quantize="int8", devices=("cpu",)
    )
    return out


@pytest.fixture(scope="module")
def bidirectional(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("runners") / "bi"
    dl.export_folder(dl.LSTM(3, 6, proj_size=4, bidirectional=True), out, artifacts=["onnx", "torchscript"], devices=("cpu",))
    return out


@pytest.fixture(scope="module")
def pte(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare LSTM as model.pte: chunks of 4 steps of 2 sequences (a fixed-shape program)."""
    pytest.importorskip("executorch.runtime", reason="the executorch kind needs pip install 'deploy-lstm[executorch]'")
    torch.manual_seed(7)
    out = tmp_path_factory.mktemp("runners") / "pte"
    dl.export_folder(dl.LSTM(**BARE), out, artifacts=["executorch", "onnx"], pte_chunk=4, pte_batch=2, devices=("cpu",))
    return out


class Tagger(nn.Module):
    """A whole model whose forward takes structured inputs: ``(x, (h0, c0))``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = dl.LSTM(4, 6, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        y, (h, c) = self.rnn(x, state)
        return self.head(y), (h, c)


def tagger_spec() -> ModelSpec:
    """The model factory of the whole-model folder (``test_runners:tagger_spec``)."""
    torch.manual_seed(2)
    x, h0, c0 = torch.randn(3, 7, 4), torch.zeros(1, 3, 6), torch.zeros(1, 3, 6)
    batch = {1: "batch"}
    axes = {"x": {0: "batch", 1: "sequence"}, "y": {0: "batch", 1: "sequence"}, "h0": batch, "c0": batch, "hn": batch, "cn": batch}
    return ModelSpec(Tagger().eval(), (x, (h0, c0)), ["x", "h0", "c0"], ["y", "hn", "cn"], axes)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runners") / "whole"
    dl.export_folder(tagger_spec(), out, factory=f"{__name__}:tagger_spec", artifacts=["onnx", "torchscript"], devices=("cpu",))
    return out


def _oracle(folder: Path) -> nn.LSTM:
    """torch.nn.LSTM holding the folder's weights."""
    return dl.load(folder).model_spec().model.to_torch().eval()


def _nn_lstm(lstm: nn.LSTM, x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], lengths: Optional[Tensor]) -> Tuple[Tensor, ...]:
    """What torch.nn.LSTM returns; with lengths, on a packed batch padded back to T."""
    hx = None if h0 is None else (h0, c0)
    with torch.no_grad():
        if lengths is None:
            y, (hn, cn) = lstm(x, hx)
            return y, hn, cn
        packed = pack_padded_sequence(x, lengths, batch_first=lstm.batch_first, enforce_sorted=False)
        y, (hn, cn) = lstm(packed, hx)
        y, _ = pad_packed_sequence(y, batch_first=lstm.batch_first, total_length=x.size(1 if lstm.batch_first else 0))
        return y, hn, cn


def _atol(folder: Path, kind: str) -> float:
    """float32's, or the tolerance the folder recorded for its int8 model."""
    return float(dl.load(folder).artifacts[kind].details["atol"]) if kind == "onnx-int8" else ATOL


def _inputs(N: int, T: int, seed: int = 3) -> Dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = T
    return {
        "x": torch.randn(N, T, BARE["input_size"], generator=g),
        "h0": torch.randn(BARE["num_layers"], N, BARE["hidden_size"], generator=g),
        "c0": torch.randn(BARE["num_layers"], N, BARE["hidden_size"], generator=g),
        "lengths": lengths,
    }


# --- every kind, called as nn.LSTM is --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("args", ["x", "x,h0,c0", "x,h0,c0,lengths", "x,None,None,lengths"])
@pytest.mark.parametrize("N,T", [(1, 1), (4, 11)])
def test_runner_equals_nn_lstm(bare: Path, kind: str, as_torch: bool, args: str, N: int, T: int) -> None:
    runner = dl.load(bare).runner(kind)
    assert isinstance(runner, Runner) and runner.kind == kind
    inp = _inputs(N, T)
    given = [None if a == "None" else inp[a] for a in args.split(",")]
    got = runner(*[v if as_torch or v is None else v.numpy() for v in given])
    h0, c0 = (given[1], given[2]) if len(given) > 2 else (None, None)
    want = _nn_lstm(_oracle(bare), inp["x"], h0, c0, given[3] if len(given) > 3 else None)
    assert len(got) == 3
    for name, g, w in zip(("output", "hn", "cn"), got, want):
        assert isinstance(g, torch.Tensor if as_torch else np.ndarray), f"{name}: {type(g).__name__}"
        torch.testing.assert_close(torch.as_tensor(g), w, atol=_atol(bare, kind), rtol=0, msg=lambda m, n=name: f"{kind} {n}: {m}")


@pytest.mark.parametrize("kind", KINDS)
def test_run_takes_a_feed_dict_by_contract_name(bare: Path, kind: str) -> None:
    runner = dl.load(bare).runner(kind)
    inp = _inputs(2, 6)
    feeds = {"input": inp["x"].numpy(), **{k: inp[k].numpy() for k in ("h0", "c0", "lengths")}}
    out = runner.run(feeds)
    assert list(out) == ["output", "hn", "cn"] == runner.output_names
    want = _nn_lstm(_oracle(bare), inp["x"], inp["h0"], inp["c0"], inp["lengths"])
    np.testing.assert_allclose(out["hn"], want[1].numpy(), atol=_atol(bare, kind), rtol=0)


# --- streams --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stream_of_chained_chunks_equals_the_whole_sequence(bare: Path, kind: str) -> None:
    runner = dl.load(bare).runner(kind)
    inp = _inputs(3, 10)
    x, h0, c0 = inp["x"].numpy(), inp["h0"].numpy(), inp["c0"].numpy()
    stream = runner.stream(batch=3, h0=torch.from_numpy(h0), c0=c0)  # torch or numpy state
    pieces = [stream.push(x[:, :4]), stream.push(torch.from_numpy(x[:, 4:5])), stream.step(x[:, 5]).copy()[:, None]]
    pieces.append(stream.push(x[:, 6:]))
    assert stream.steps == 10
    whole = runner(x, h0, c0)
    # int8 quantizes each call's activations with their own scale: chunks differ from the whole
    # run as two int8 runs do; the float kinds agree to rounding
    atol = _atol(bare, kind) if kind == "onnx-int8" else ATOL
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole[0], atol=atol, rtol=0)
    hn, cn = stream.state
    np.testing.assert_allclose(hn, whole[1], atol=atol, rtol=0)
    np.testing.assert_allclose(cn, whole[2], atol=atol, rtol=0)
    if kind != "onnx-int8":  # against nn.LSTM too
        np.testing.assert_allclose(hn, _nn_lstm(_oracle(bare), inp["x"], inp["h0"], inp["c0"], None)[1].numpy(), atol=ATOL, rtol=0)
    stream.reset()
    assert stream.steps == 0
    np.testing.assert_allclose(stream.push(x[:, :2]), runner(x[:, :2])[0], atol=atol, rtol=0)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_stream_is_refused_for_bidirectional_and_whole_models(bidirectional: Path, whole: Path, kind: str) -> None:
    with pytest.raises(dl.ConfigError, match=r"bidirectional: the reverse direction of a chunk needs the steps after it"):
        dl.load(bidirectional).runner(kind).stream()
    with pytest.raises(dl.ConfigError, match=r"is a whole model: a stream carries a bare LSTM's \(h, c\)"):
        dl.load(whole).runner(kind).stream()


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_stream_refuses_a_chunk_of_another_batch(bare: Path, kind: str) -> None:
    stream = dl.load(bare).runner(kind).stream(batch=2)
    with pytest.raises(dl.LSTMInputError, match=r"carries state for batch 2, got a chunk .* \(batch 3\)"):
        stream.push(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(dl.LSTMInputError, match=r"expected one time step of dtype float32, got float64"):
        stream.step(np.zeros((2, 5)))
    with pytest.raises(dl.LSTMInputError, match=r"expected h0 of shape \(2, 2, 8\) .* got shape \(2, 3, 8\)"):
        stream.reset(np.zeros((2, 3, 8), np.float32))


# --- ExecuTorch: a fixed batch, any number of steps --------------------------------------------------------


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("T", [1, 4, 11])
def test_executorch_runner_equals_nn_lstm(pte: Path, as_torch: bool, T: int) -> None:
    runner = dl.load(pte).runner("executorch")
    inp = _inputs(2, T)
    for args in ((inp["x"],), (inp["x"], inp["h0"], inp["c0"])):
        got = runner(*(a if as_torch else a.numpy() for a in args))
        want = _nn_lstm(_oracle(pte), *args, *(None, None)[: 3 - len(args)], None)
        for g_, w in zip(got, want):
            assert isinstance(g_, torch.Tensor if as_torch else np.ndarray)
            torch.testing.assert_close(torch.as_tensor(g_), w, atol=ATOL, rtol=0)


def test_executorch_stream_and_its_fixed_batch(pte: Path) -> None:
    runner = dl.load(pte).runner("executorch")
    inp = _inputs(2, 9)
    x = inp["x"].numpy()
    stream = runner.stream(batch=2)
    y = np.concatenate([stream.push(x[:, :5]), stream.step(x[:, 5])[:, None], stream.push(x[:, 6:])], axis=1)
    np.testing.assert_allclose(y, runner(x)[0], atol=ATOL, rtol=0)
    with pytest.raises(dl.LSTMInputError, match=r"runs batch 2 .* got input \(3, 9, 5\) \(batch 3, 9 steps\)"):
        runner(np.zeros((3, 9, 5), np.float32))
    report = dl.validate_folder(dl.load(pte), devices=("cpu",), cases=((1, 3),))
    assert report.passed and "executorch" in {c.backend for c in report.checks}, report.table()


# --- a bidirectional LSTM with projection, and a whole model ----------------------------------------------


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_bidirectional_projected_runner_equals_nn_lstm(bidirectional: Path, kind: str) -> None:
    g = torch.Generator().manual_seed(4)
    x, h0, c0 = torch.randn(9, 2, 3, generator=g), torch.randn(2, 2, 4, generator=g), torch.randn(2, 2, 6, generator=g)
    got = dl.load(bidirectional).runner(kind)(x, h0, c0)
    for g_, w in zip(got, _nn_lstm(_oracle(bidirectional), x, h0, c0, None)):
        torch.testing.assert_close(g_, w, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_whole_model_runner_takes_the_flat_inputs(whole: Path, kind: str, as_torch: bool) -> None:
    """The scripted forward takes (x, (h0, c0)): the runner rebuilds that structure from the flat inputs."""
    runner = dl.load(whole).runner(kind)
    assert runner.config is None and runner.input_names == ["x", "h0", "c0"]
    g = torch.Generator().manual_seed(5)
    x, h0, c0 = torch.randn(2, 13, 4, generator=g), torch.randn(1, 2, 6, generator=g), torch.randn(1, 2, 6, generator=g)
    got = runner(*((x, h0, c0) if as_torch else (x.numpy(), h0.numpy(), c0.numpy())))
    reference = dl.restore_lstms(dl.load(whole).model_spec().model).eval()  # torch.nn.LSTM inside
    assert isinstance(reference.rnn, nn.LSTM) and not isinstance(reference.rnn, dl.LSTM)
    with torch.no_grad():
        y, (hn, cn) = reference(x, (h0, c0))
    for name, g_, w in zip(("y", "hn", "cn"), got, (y, hn, cn)):
        assert isinstance(g_, torch.Tensor if as_torch else np.ndarray)
        torch.testing.assert_close(torch.as_tensor(g_), w, atol=ATOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_whole_model_needs_every_input(whole: Path, kind: str) -> None:
    runner = dl.load(whole).runner(kind)
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(dl.LSTMInputError, match=r"expects 3 inputs \(x, h0, c0\) in that order, got 1"):
        runner(x)
    with pytest.raises(dl.LSTMInputError, match=r"expected h0 of dtype float32, got float64"):
        runner(x, np.zeros((1, 2, 6)), np.zeros((1, 2, 6), np.float32))


# --- bad inputs: expected and got -------------------------------------------------------------------------


BAD = [
    ((np.zeros((2, 4, 3), np.float32),), r"expected input of shape \(batch, sequence, 5\) with 5 features, got shape \(2, 4, 3\)"),
    ((np.zeros((2, 4, 5)),), r"expected input of dtype float32, got float64"),
    ((np.zeros((4, 5), np.float32),), r"expected input of rank 3 .* got shape \(4, 5\)"),
    ((np.zeros((2, 4, 5), np.float32), np.zeros((2, 3, 8), np.float32)), r"expected h0 of shape \(2, 2, 8\), got \(2, 3, 8\)"),
    ((np.zeros((2, 4, 5), np.float32), None, None, np.array([4, 5])), r"lengths must lie in 1..4 .* from 4 to 5"),
    ((np.zeros((2, 4, 5), np.float32), None, None, np.array([4, 2], np.int32)), r"expected lengths of dtype int64 and shape \(2,\), got int32"),
    ((np.zeros((2, 4, 5), np.float32),) * 5, r"expected input, then optionally h0, c0, lengths .* got 5 inputs"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args,message", BAD, ids=[m.split(" ")[1] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_input_is_refused_with_expected_and_got(bare: Path, kind: str, args: tuple, message: str) -> None:
    with pytest.raises(dl.LSTMInputError, match=message):
        dl.load(bare).runner(kind)(*args)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_feed_dict_is_refused(bare: Path, kind: str) -> None:
    runner = dl.load(bare).runner(kind)
    with pytest.raises(dl.LSTMInputError, match=r"expects inputs .* got \['input'\] .*missing: \['h0', 'c0'"):
        runner.run({"input": np.zeros((2, 4, 5), np.float32)})


def test_lengths_to_an_artifact_without_them(bidirectional: Path) -> None:
    x = np.zeros((3, 2, 3), np.float32)
    with pytest.raises(dl.LSTMInputError, match=r"model.onnx was exported without a lengths input; re-export with lengths=True"):
        dl.load(bidirectional).runner("onnx")(x, None, None, np.array([3, 3]))


# --- choosing the runner --------------------------------------------------------------------------------


def test_load_is_the_runnable_folder(bare: Path) -> None:
    folder = dl.load(bare)
    assert isinstance(folder, RunnableFolder) and isinstance(folder, dl.ExportFolder)
    assert dl.Runner is Runner


def test_default_kind_is_the_recommended_python_artifact_else_onnx(bare: Path, tmp_path: Path) -> None:
    assert dl.load(bare).runner().kind == "onnx"
    copy = tmp_path / "copy"
    shutil.copytree(bare, copy)
    dl.load(copy).record("recommendation", {"targets": {"python": {"artifact": "torchscript"}}})
    assert dl.load(copy).runner().kind == "torchscript"


def test_unknown_and_missing_kinds_list_what_the_folder_has(bare: Path, bidirectional: Path) -> None:
    with pytest.raises(dl.ArtifactError, match=r"no artifact kind 'tflite' .*; it has: onnx, onnx-int8, torchscript, aoti"):
        dl.load(bare).runner("tflite")
    with pytest.raises(dl.ArtifactError, match=r"has no aoti artifact; it has: onnx, torchscript"):
        dl.load(bidirectional).runner("aoti")
    with pytest.raises(dl.ArtifactError, match=r"no artifact kind 'weights'"):
        dl.load(bare).runner("weights")


def test_options_are_the_kinds_own(bare: Path) -> None:
    runner = dl.load(bare).runner("onnx", intra_op_num_threads=1, inter_op_num_threads=1)
    assert runner.session.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(dl.ConfigError, match=r"the torchscript runner takes no options; got device"):
        dl.load(bare).runner("torchscript", device="cpu")
    with pytest.raises(dl.ConfigError, match=r"the onnx runner takes device, .*; got threads"):
        dl.load(bare).runner("onnx", threads=2)
    from deploy_lstm.runtime.onnx import cuda_available

    if not cuda_available():
        with pytest.raises(dl.RuntimeUnavailable, match=r"no CUDAExecutionProvider"):
            dl.load(bare).runner("onnx", device="cuda")


# --- validation opens artifacts through the runners --------------------------------------------------------


def test_validate_folder_runs_every_artifact_through_its_runner(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []
    real = RunnableFolder.runner

    def spy(self: RunnableFolder, kind: Optional[str] = None, **options: object) -> Runner:
        opened.append(kind)
        return real(self, kind, **options)

    monkeypatch.setattr(RunnableFolder, "runner", spy)
    report = dl.validate_folder(dl.load(bare), devices=("cpu",), cases=((2, 5),))
    assert report.passed, report.table()
    assert sorted(opened) == sorted(KINDS)
    assert {c.backend for c in report.checks} == {"deploy_lstm eager", "onnxruntime-cpu", "onnxruntime-int8", "torchscript", "aotinductor"}
    assert report.cases == ["batch=2 sequence=5", "batch=2 sequence=5 lengths"]


def test_validation_table_names_every_column(bare: Path) -> None:
    report = dl.validate_folder(dl.load(bare), devices=("cpu",), cases=((1, 3),))
    header, rule, first = report.table().splitlines()[:3]
    assert header.split() == ["backend", "vs", "output", "max", "abs", "max", "rel", "tol", "ok"]
    assert len(rule.split()) == 7 and first.endswith("✓")
    failing = validate_mod.ValidationReport(
        [validate_mod.Check("onnxruntime-cpu", "torch.nn.LSTM", "output", 1.0, 1.0, 1e-5, "batch=1 sequence=3")], [], {}, {}
    )
    assert failing.table().splitlines()[2].endswith("✗")


def test_validate_takes_the_exports_signature(tmp_path: Path) -> None:
    from deploy_lstm.exporters.signature import signature

    torch.manual_seed(6)
    model = dl.LSTM(3, 4, num_layers=2)
    path = dl.export_onnx(model, tmp_path / "m.onnx", lengths=True)
    sig = signature(model, lengths=True)
    report = dl.validate(model, path, devices=("cpu",), cases=((2, 3),), signature=sig)
    assert report.passed, report.table()
    assert report.cases == ["batch=2 sequence=3", "batch=2 sequence=3 lengths"]  # lengths from the signature
    spec = tagger_spec()
    path = dl.export_onnx(spec.model, tmp_path / "w.onnx", **spec.call_arguments())
    whole_sig = signature(spec.model, **spec.call_arguments())
    assert dl.validate(spec.model, path, devices=("cpu",), cases=((2, 3),), signature=whole_sig).passed
