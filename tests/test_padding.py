"""One mask rule in every backend: values past a sequence's length never reach the result.

Padding is often NaN or inf.  With ``lengths``, ``nn.LSTM`` on a packed batch never
sees it; every backend must give that same result, finite.  (The C++ runner and
AOTInductor are checked the same way in test_cpp.py and test_aoti.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import deploy_lstm as dl
from deploy_lstm.formats.metadata import read_onnx_metadata
from deploy_lstm.exporters.standins import with_fused

N, T = 4, 9
LENGTHS = torch.tensor([9, 3, 1, 6])

# (id, constructor config, dtype): native op where it fits, Scan/Loop otherwise.
CONFIGS = [
    ("native-bidir-2l", dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True), torch.float32),
    ("proj-bidir-batch_first", dict(input_size=4, hidden_size=6, proj_size=3, bidirectional=True, batch_first=True), torch.float32),
    ("float64-2l", dict(input_size=4, hidden_size=5, num_layers=2), torch.float64),
]


def _inputs(model: dl.LSTM, pad_past_lengths):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    dt = model.weight_ih_l0.dtype
    shape = (N, T, model.input_size) if model.batch_first else (T, N, model.input_size)
    x = pad_past_lengths(torch.randn(shape, generator=g, dtype=dt), LENGTHS, model.batch_first)
    S, P = model.num_layers * model.num_directions, model.proj_size or model.hidden_size
    return x, torch.randn(S, N, P, generator=g, dtype=dt), torch.randn(S, N, model.hidden_size, generator=g, dtype=dt)


def _oracle(model: dl.LSTM, x, h0, c0):  # type: ignore[no-untyped-def]
    ref = model.to_torch().eval()
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(x, LENGTHS, batch_first=model.batch_first, enforce_sorted=False)
        out, (hn, cn) = ref(packed, (h0, c0))
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=model.batch_first, total_length=T)
    return out, hn, cn


def _check(got, want, dtype) -> None:  # type: ignore[no-untyped-def]
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    for name, a, b in zip(("output", "hn", "cn"), got, want):
        a = torch.as_tensor(a)
        assert torch.isfinite(a).all(), f"{name} holds NaN/inf from the padding"
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.fixture(scope="module", params=CONFIGS, ids=[c[0] for c in CONFIGS])
def model(request):  # type: ignore[no-untyped-def]
    _, cfg, dtype = request.param
    torch.manual_seed(0)
    return dl.LSTM(**cfg, dtype=dtype).eval()


@pytest.mark.parametrize("fused", [False, True], ids=["loop", "fused"])
def test_eager_and_scripted(model, pad_past_lengths, tmp_path, fused) -> None:  # type: ignore[no-untyped-def]
    x, h0, c0 = _inputs(model, pad_past_lengths)
    want = _oracle(model, x, h0, c0)
    path = dl.export_torchscript(model, tmp_path / "m.ts", fused=fused)
    for run in (with_fused(model, fused), torch.jit.load(str(path))):
        with torch.no_grad():
            out, (hn, cn) = run(x, (h0, c0), LENGTHS)
        _check((out, hn, cn), want, x.dtype)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("native_lstm", [True, False], ids=["native-where-it-fits", "scan-loop"])
def test_onnxruntime(model, pad_past_lengths, tmp_path, exporter, native_lstm) -> None:  # type: ignore[no-untyped-def]
    path = dl.export_onnx(model, tmp_path / "m.onnx", lengths=True, exporter=exporter, native_lstm=native_lstm)
    routes = set(read_onnx_metadata(path).routes.values())
    expected_route = "native" if native_lstm and model.proj_size == 0 and model.weight_ih_l0.dtype == torch.float32 else (
        "scan" if exporter == "dynamo" else "loop")
    assert routes == {expected_route}
    x, h0, c0 = _inputs(model, pad_past_lengths)
    got = dl.OnnxLSTM(path)(x.numpy(), h0.numpy(), c0.numpy(), LENGTHS.numpy())
    _check(got, _oracle(model, x, h0, c0), x.dtype)


def test_padding_really_is_there(model, pad_past_lengths) -> None:  # type: ignore[no-untyped-def]
    """The inputs above do hold NaN and inf, and without lengths they poison the result."""
    x, h0, c0 = _inputs(model, pad_past_lengths)
    assert np.isnan(x.numpy()).any() and np.isinf(x.numpy()).any()
    with torch.no_grad():
        out, _ = model(x, (h0, c0))
    assert not torch.isfinite(out).all()
