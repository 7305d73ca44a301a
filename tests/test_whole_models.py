"""Whole models as users have them: nested and keyword inputs, tied and shared modules,
several LSTMs, torch.export's own dynamic_shapes, and the errors that come before tracing."""

from __future__ import annotations

import copy
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import deploy_lstm as dl
from deploy_lstm.exporters import signature as signature_mod
from deploy_lstm.formats.metadata import read_torchscript_metadata

EXPORTERS = ["dynamo", "torchscript"]


class LanguageModel(nn.Module):
    """pytorch/examples' word language model: forward(input, hidden) with hidden = (h0, c0)."""

    def __init__(self, ntoken: int = 30, nhid: int = 12, nlayers: int = 2, tie: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, nhid)
        self.rnn = nn.LSTM(nhid, nhid, nlayers)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, input: Tensor, hidden: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        output, hidden = self.rnn(self.encoder(input), hidden)
        return self.decoder(output), hidden


LM_CALL = dict(
    input_names=["input", "h0", "c0"],
    output_names=["logits", "hn", "cn"],
    dynamic_axes={"input": {0: "sequence", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"},
                  "logits": {0: "sequence", 1: "batch"}, "hn": {1: "batch"}, "cn": {1: "batch"}},
)


def lm_example() -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    return torch.randint(0, 30, (7, 3)), (torch.zeros(2, 3, 12), torch.zeros(2, 3, 12))


@pytest.fixture(scope="module")
def lm() -> Tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    original = LanguageModel().eval()
    return original, dl.swap_lstms(copy.deepcopy(original))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_language_model_with_nested_state_exports_and_validates(lm, tmp_path, exporter) -> None:  # type: ignore[no-untyped-def]
    original, model = lm
    example = lm_example()
    path = dl.export_onnx(model, tmp_path / "lm.onnx", example_inputs=example, exporter=exporter, **LM_CALL)
    report = dl.validate(model, path, example_inputs=example, devices=("cpu",), **LM_CALL)
    assert report.passed, report.table()
    assert {c.output for c in report.checks} == {"logits", "hn", "cn"}
    # and directly against the original nn.LSTM model at a new shape
    x, h0, c0 = torch.randint(0, 30, (11, 2)), torch.randn(2, 2, 12), torch.randn(2, 2, 12)
    got = dl.OnnxLSTM(path).run({"input": x.numpy(), "h0": h0.numpy(), "c0": c0.numpy()})
    with torch.no_grad():
        logits, (hn, cn) = original(x, (h0, c0))
    for name, want in (("logits", logits), ("hn", hn), ("cn", cn)):
        np.testing.assert_allclose(got[name], want.numpy(), atol=1e-5, rtol=0)


def test_language_model_torchscript_and_aoti(lm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, model = lm
    example = lm_example()
    ts = dl.export_torchscript(model, tmp_path / "lm.ts")
    report = dl.validate(model, torchscript_path=ts, example_inputs=example, **LM_CALL)
    assert report.passed and "torchscript" in {c.backend for c in report.checks}, report.table()


@pytest.mark.slow
def test_language_model_aoti(lm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, model = lm
    example = lm_example()
    pt2 = dl.export_aoti(model, tmp_path / "lm.pt2", example_inputs=example, **LM_CALL)
    report = dl.validate(model, aoti_path=pt2, example_inputs=example, **LM_CALL)
    assert report.passed and "aotinductor" in {c.backend for c in report.checks}, report.table()


def test_export_folder_computes_the_signature_once(lm, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The pipeline computes the model's signature once and hands it to every exporter and
    to validation (it used to be recomputed per exporter and again for validation)."""
    _, model = lm
    computed = []
    whole_model_signature = signature_mod._whole_model_signature
    monkeypatch.setattr(signature_mod, "_whole_model_signature", lambda *a: computed.append(1) or whole_model_signature(*a))
    spec = dl.ModelSpec(model, lm_example(), **LM_CALL)
    folder, report = dl.export_folder(spec, tmp_path / "out", factory="tests:unused", artifacts=("onnx", "torchscript"), devices=("cpu",))
    assert report.passed, report.table()
    assert len(computed) == 1
    assert folder.io.input_names == ["input", "h0", "c0"]
    assert read_torchscript_metadata(folder.file("torchscript")).io == folder.io == dl.OnnxLSTM(folder.file("onnx")).io


def test_a_signature_is_the_models_own_and_comes_alone(lm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, model = lm
    sig = signature_mod.signature(model, example_inputs=lm_example(), **LM_CALL)
    with pytest.raises(dl.ExportError, match=r"signature= was computed for another model"):
        dl.export_onnx(copy.deepcopy(model), tmp_path / "m.onnx", signature=sig)
    with pytest.raises(dl.ExportError, match=r"give signature= or lengths and the graph arguments"):
        dl.export_aoti(model, tmp_path / "m.pt2", signature=sig, example_inputs=lm_example())
    assert not list(tmp_path.iterdir())


def test_swap_keeps_ties_and_sharing() -> None:
    torch.manual_seed(0)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = LanguageModel()
            self.shared = self.lm.rnn  # the same nn.LSTM at two places

    model = Twice()
    params_before = {id(p) for p in model.parameters()}
    dl.swap_lstms(model)
    assert isinstance(model.lm.rnn, dl.LSTM) and model.shared is model.lm.rnn
    assert model.lm.decoder.weight is model.lm.encoder.weight
    assert {id(p) for p in model.parameters()} == params_before  # the very same Parameter objects
    # one training step updates the tied weight once, like the original would
    reference = copy.deepcopy(model)
    dl.restore_lstms(reference)
    assert isinstance(reference.lm.rnn, nn.LSTM) and reference.shared is reference.lm.rnn
    assert reference.lm.decoder.weight is reference.lm.encoder.weight
    x = torch.randint(0, 30, (5, 2))
    for m in (model, reference):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        logits, _ = m.lm(x, (torch.zeros(2, 2, 12), torch.zeros(2, 2, 12)))
        logits.square().mean().backward()
        opt.step()
    for (name, a), (_, b) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


class EncoderDecoder(nn.Module):
    """A bidirectional LSTM feeding a unidirectional one, an LSTMCell on top; dict in, dict out."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.LSTM(4, 6, bidirectional=True, batch_first=True)
        self.dec = nn.LSTM(12, 5, batch_first=True)
        self.cell = nn.LSTMCell(5, 5)

    def forward(self, batch: Dict[str, Tensor], scale: Tensor) -> Dict[str, Tensor]:
        y, _ = self.enc(batch["x"])
        y, (h, c) = self.dec(y, (batch["h0"], batch["c0"]))
        h1, c1 = self.cell(y[:, -1], (h[0], c[0]))
        return {"y": y * scale, "h": h1, "c": c1}


def encdec_example() -> Tuple[Tuple, Dict]:  # type: ignore[type-arg]
    batch = {"x": torch.randn(3, 7, 4), "h0": torch.randn(1, 3, 5), "c0": torch.randn(1, 3, 5)}
    return (batch,), {"scale": torch.tensor(2.0)}


ENCDEC_CALL = dict(
    input_names=["x", "h0", "c0", "scale"],  # pytree order: args (dict by insertion), then kwargs
    output_names=["y", "h", "c"],
    dynamic_axes={"x": {0: "batch", 1: "sequence"}, "h0": {1: "batch"}, "c0": {1: "batch"},
                  "y": {0: "batch", 1: "sequence"}, "h": {0: "batch"}, "c": {0: "batch"}},
)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_several_lstms_dict_inputs_and_keywords(tmp_path, exporter) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = dl.swap_lstms(EncoderDecoder().eval())
    args, kwargs = encdec_example()
    path = dl.export_onnx(model, tmp_path / "m.onnx", example_inputs=args, example_kwargs=kwargs, exporter=exporter, **ENCDEC_CALL)
    report = dl.validate(model, path, example_inputs=args, example_kwargs=kwargs, devices=("cpu",), **ENCDEC_CALL)
    assert report.passed, report.table()
    assert {c.output for c in report.checks} == {"y", "h", "c"}


def test_torch_export_dynamic_shapes_form(lm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, model = lm
    T, N = torch.export.Dim("sequence"), torch.export.Dim("batch")
    shapes = ({0: T, 1: N}, ({1: N}, {1: N}))  # nested like (input, (h0, c0))
    path = dl.export_onnx(model, tmp_path / "lm.onnx", example_inputs=lm_example(), dynamic_shapes=shapes,
                          input_names=LM_CALL["input_names"], output_names=LM_CALL["output_names"])
    io = dl.OnnxLSTM(path).io
    assert io is not None and io.inputs[0].shape == ("sequence", "batch") and io.inputs[1].shape == (2, "batch", 12)
    report = dl.validate(model, path, example_inputs=lm_example(), dynamic_shapes=shapes, devices=("cpu",),
                         input_names=LM_CALL["input_names"], output_names=LM_CALL["output_names"])
    assert report.passed, report.table()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_names=["input", "h0"]), r"expected 3 input names \(one per flattened input tensor\), got 2"),
        (dict(dynamic_axes={"hidden": {0: "batch"}}), r"dynamic_axes names 'hidden', which is not a graph input or output; inputs: \['input_0', 'input_1', 'input_2'\]"),
        (dict(input_names=["input", "h0", "c0"], dynamic_axes={"h0": {3: "batch"}}), r"dynamic_axes\['h0'\] names axis 3, but 'h0' has rank 3 \(shape \[2, 3, 12\]\)"),
        (dict(example_inputs=(torch.zeros(7, 3),)), r"the model does not run on its example inputs: TypeError"),
        (dict(example_inputs=(torch.randint(0, 30, (7, 3)), "state")), r"must hold only tensors .* got str"),
        (dict(dynamic_shapes=({0: torch.export.Dim("T")},)), r"dynamic_shapes has 1 entries where the inputs have 3 tensors"),
    ],
    ids=["name-count", "unknown-name", "axis-beyond-rank", "does-not-run", "not-a-tensor", "dynamic-shapes-count"],
)
def test_names_and_axes_are_checked_before_tracing(lm, tmp_path, monkeypatch, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    _, model = lm
    traced = []
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: traced.append(1))
    call = {"example_inputs": lm_example(), **kwargs}
    with pytest.raises(dl.ExportError, match=message):
        dl.export_onnx(model, tmp_path / "m.onnx", **call)
    assert not traced and not list(tmp_path.iterdir())


def test_no_lstm_to_export_and_unswapped_lstm(tmp_path) -> None:
    with pytest.raises(dl.ExportError, match=r"rnn is a torch.nn.LSTM.*swap_lstms"):
        dl.export_onnx(LanguageModel(), tmp_path / "m.onnx", example_inputs=lm_example())
    head = nn.Linear(4, 2)
    for export in (lambda p: dl.export_onnx(head, p, example_inputs=(torch.zeros(3, 4),)),
                   lambda p: dl.export_torchscript(head, p),
                   lambda p: dl.export_aoti(head, p, example_inputs=(torch.zeros(3, 4),))):
        with pytest.raises(dl.ExportError, match=r"Linear holds no deploy_lstm.LSTM or LSTMCell \(and no torch.nn.LSTM to swap\)"):
            export(tmp_path / "m.out")
    assert not list(tmp_path.iterdir())


class CellLoop(nn.Module):
    """An LSTMCell run in a Python loop over the time axis: tracing would freeze T."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = c = x.new_zeros(x.size(1), 5)
        for t in range(x.size(0)):
            h, c = self.cell(x[t], (h, c))
        return h


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_python_time_loop_is_refused_with_the_recipe(tmp_path, exporter) -> None:
    model = dl.swap_lstms(CellLoop())
    with pytest.raises(dl.ExportError, match=r"cell runs 7 times when 'sequence' is 7 and 8 times when it is 8.*export/export_seq2seq.py"):
        dl.export_onnx(model, tmp_path / "m.onnx", example_inputs=(torch.randn(7, 3, 4),), exporter=exporter,
                       dynamic_axes={"input_0": {0: "sequence", 1: "batch"}})
    # a loop over a static axis (or no dynamic axes) is the user's choice and exports
    dl.export_onnx(model, tmp_path / "m.onnx", example_inputs=(torch.randn(7, 3, 4),), exporter=exporter,
                   dynamic_axes={"input_0": {1: "batch"}})
