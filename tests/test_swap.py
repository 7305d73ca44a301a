"""swap_lstms / restore_lstms on a user model: outputs, flags, dtype, scripting; the one
module-tree walker under them (replace_modules), in place and as the exporters' copy."""

from __future__ import annotations

from typing import Tuple

import pytest
import torch
from torch import Tensor, nn

from deploy_lstm import LSTM, LSTMCell, restore_lstms, swap_lstms
from deploy_lstm.nn.swap import replace_modules


class Model(nn.Module):
    """embedding -> 2-layer bidirectional nn.LSTM -> nn.LSTMCell step -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(13, 4)
        self.encoder = nn.LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(6, 5), nn.Tanh())])
        self.cell = nn.LSTMCell(5, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        out, (h_n, c_n) = self.encoder(self.embed(tokens))  # (N, T, 6)
        for block in self.blocks:
            out = block(out)  # (N, T, 5)
        h, c = self.cell(out[:, -1], None)  # (N, 3)
        return self.head(h), c_n


def _model(dtype=torch.float32) -> Model:
    torch.manual_seed(0)
    return Model().to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_swap_keeps_outputs_flags_dtype(dtype, training):
    model = _model(dtype).train(training)
    tokens = torch.randint(0, 13, (3, 7))
    want = model(tokens)
    names = [k for k, _ in model.named_parameters()]
    assert swap_lstms(model) is model
    assert type(model.encoder) is LSTM and type(model.cell) is LSTMCell
    assert [k for k, _ in model.named_parameters()] == names
    assert model.encoder.training is training and model.cell.training is training
    assert model.encoder.weight_ih_l0.dtype == dtype and model.cell.weight_ih.dtype == dtype
    assert model.encoder.weight_ih_l0.device == torch.device("cpu")
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(model(tokens), want, atol=atol, rtol=0)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(tokens), want, atol=atol, rtol=0)
    # restore round-trips to torch.nn with identical weights and outputs
    assert restore_lstms(model) is model
    assert type(model.encoder) is nn.LSTM and type(model.cell) is nn.LSTMCell
    assert model.encoder.training is training
    torch.testing.assert_close(model(tokens), want, atol=atol, rtol=0)
    torch.testing.assert_close(model.state_dict(), _model(dtype).state_dict(), atol=0, rtol=0)


def test_swap_nested_containers_and_bare_modules():
    seq = nn.Sequential(nn.LSTM(2, 3), nn.ModuleDict({"c": nn.LSTMCell(2, 3)}))
    swap_lstms(seq)
    assert type(seq[0]) is LSTM and type(seq[1]["c"]) is LSTMCell
    restore_lstms(seq)
    assert type(seq[0]) is nn.LSTM and type(seq[1]["c"]) is nn.LSTMCell
    bare = nn.LSTM(2, 3, proj_size=1).eval()
    swapped = swap_lstms(bare)
    assert type(swapped) is LSTM and not swapped.training and swapped.proj_size == 1
    assert type(restore_lstms(swapped)) is nn.LSTM
    assert type(swap_lstms(nn.LSTMCell(2, 3))) is LSTMCell
    assert type(restore_lstms(LSTMCell(2, 3))) is nn.LSTMCell


def test_swap_leaves_other_modules_alone():
    gru = nn.GRU(2, 3)
    model = nn.Sequential(gru, nn.Linear(3, 3))
    swap_lstms(model)
    assert model[0] is gru


def test_swap_keeps_dropout_without_rewarning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(3, 4, num_layers=3, dropout=1.0))
    x = torch.randn(5, 2, 3)
    want = model(x)  # train mode, dropout=1.0: deterministic
    swap_lstms(model)
    assert model[0].dropout == 1.0
    torch.testing.assert_close(model(x), want, atol=1e-5, rtol=0)


def test_an_lstm_used_twice_becomes_one_module():
    model = nn.Sequential(nn.LSTM(2, 3))
    model.append(model[0])
    swap_lstms(model)
    assert type(model[0]) is LSTM and model[1] is model[0]
    restore_lstms(model)
    assert type(model[0]) is nn.LSTM and model[1] is model[0]


def test_replace_modules_as_a_copy_leaves_the_model_alone():
    """The walker as the exporters use it: a new tree sharing parameters, one replacement
    per module however often it is used, script modules kept, the model unchanged."""
    torch.manual_seed(0)
    shared = LSTM(3, 3)
    scripted = torch.jit.script(nn.Linear(3, 3))
    model = nn.Sequential(shared, nn.ModuleDict({"again": shared, "s": scripted}), nn.Linear(3, 2))
    before = list(model.modules())
    replaced: list = []

    def replace(m: nn.Module):  # type: ignore[no-untyped-def]
        if isinstance(m, nn.Linear):
            replaced.append(m)
            return nn.Identity()
        return None

    copy = replace_modules(model, replace, copy=True)
    assert list(model.modules()) == before and type(model[2]) is nn.Linear
    assert copy is not model and type(copy[2]) is nn.Identity and replaced == [model[2]]
    assert copy[0] is copy[1]["again"] and copy[0] is not shared
    assert copy[0].weight_ih_l0 is shared.weight_ih_l0  # the same Parameter, not a copy
    assert copy[1]["s"] is scripted
    copy.eval()
    assert shared.training and model.training  # flags set on the copy stay in the copy


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none here")
def test_swap_keeps_cuda_device():
    model = _model().cuda()
    tokens = torch.randint(0, 13, (3, 7), device="cuda")
    want = model(tokens)
    swap_lstms(model)
    assert model.encoder.weight_ih_l0.is_cuda and model.cell.weight_ih.is_cuda
    torch.testing.assert_close(model(tokens), want, atol=1e-5, rtol=0)
