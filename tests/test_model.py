"""deploy_lstm.LSTM against the oracle torch.nn.LSTM: values, gradients, names, init."""

from __future__ import annotations

import itertools
import re
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from deploy_lstm import LSTM

# The oracle (nn.LSTM on CPU) says it falls back from oneDNN for projections: not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)

# Constructor configs: every option appears with several others; odd sizes included.
# (input_size, hidden_size, num_layers, bidirectional, proj_size, bias, batch_first)
CONFIGS = [
    (3, 4, 1, False, 0, True, False),
    (3, 4, 2, True, 0, True, True),
    (3, 5, 3, True, 2, False, False),
    (2, 3, 3, False, 2, True, True),
    (4, 3, 2, False, 1, False, False),
    (3, 4, 1, True, 3, False, True),
    (1, 1, 1, False, 0, True, False),  # input_size=1, hidden_size=1
    (1, 2, 2, True, 1, True, True),  # projection with hidden 2
    (1, 1, 3, True, 0, False, True),
]
CONFIG_IDS = [
    f"I{i}-H{h}-L{n}-{'bi' if b else 'uni'}-P{p}-{'bias' if bb else 'nobias'}-{'bf' if bf else 'tm'}"
    for i, h, n, b, p, bb, bf in CONFIGS
]

T, N = 5, 4
# Unsorted, includes 1 and the full length T.
LENGTHS = torch.tensor([3, 5, 1, 4], dtype=torch.int64)


def make_pair(cfg, dtype=torch.float32, seed=0):
    """(ours, nn.LSTM) with identical weights."""
    i, h, n, bi, p, b, bf = cfg
    torch.manual_seed(seed)
    ref = nn.LSTM(i, h, n, bias=b, batch_first=bf, bidirectional=bi, proj_size=p, dtype=dtype)
    return LSTM.from_torch(ref), ref


def make_input(cfg, dtype, batched=True, seed=1):
    i, h, n, bi, p, b, bf = cfg
    g = torch.Generator().manual_seed(seed)
    shape = ((N, T, i) if bf else (T, N, i)) if batched else (T, i)
    return torch.randn(shape, generator=g, dtype=dtype)


def make_hx(cfg, dtype, batched=True, seed=2):
    i, h, n, bi, p, b, bf = cfg
    g = torch.Generator().manual_seed(seed)
    L = n * (2 if bi else 1)
    batch = (N,) if batched else ()
    h0 = torch.randn((L, *batch, p if p > 0 else h), generator=g, dtype=dtype)
    c0 = torch.randn((L, *batch, h), generator=g, dtype=dtype)
    return h0, c0


DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("use_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_parity_batched(cfg, use_hx, use_lengths, dtype, assert_lstm_parity):
    ours, ref = make_pair(cfg, dtype)
    x = make_input(cfg, dtype)
    hx = make_hx(cfg, dtype) if use_hx else None
    lengths = LENGTHS if use_lengths else None
    assert_lstm_parity(ours, ref, x, hx, lengths)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("use_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_parity_unbatched(cfg, use_hx, dtype, assert_lstm_parity):
    ours, ref = make_pair(cfg, dtype)
    x = make_input(cfg, dtype, batched=False)
    hx = make_hx(cfg, dtype, batched=False) if use_hx else None
    assert_lstm_parity(ours, ref, x, hx)


# Full product over the cheap constructor axes, float64, with hx and lengths.
CHEAP = list(itertools.product([1, 2], [False, True], [0, 2], [False, True], [False, True]))


@pytest.mark.parametrize(
    "num_layers,bidirectional,proj_size,bias,batch_first",
    CHEAP,
    ids=[f"L{a}-{'bi' if b else 'uni'}-P{c}-b{int(d)}-bf{int(e)}" for a, b, c, d, e in CHEAP],
)
def test_parity_product(num_layers, bidirectional, proj_size, bias, batch_first, assert_lstm_parity):
    cfg = (2, 3, num_layers, bidirectional, proj_size, bias, batch_first)
    ours, ref = make_pair(cfg, torch.float64)
    assert_lstm_parity(
        ours, ref, make_input(cfg, torch.float64), make_hx(cfg, torch.float64), LENGTHS
    )


@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[2]], ids=[CONFIG_IDS[1], CONFIG_IDS[2]])
def test_unbatched_lengths(cfg, tol):
    """Unbatched input with a 0-D or (1,) length equals nn.LSTM on the truncated sequence."""
    dtype = torch.float64
    ours, ref = make_pair(cfg, dtype)
    x = make_input(cfg, dtype, batched=False)
    h0, c0 = make_hx(cfg, dtype, batched=False)
    want_out, (want_h, want_c) = ref(x[:3], (h0, c0))
    want_out = torch.cat([want_out, want_out.new_zeros(T - 3, want_out.size(1))])
    for lengths in (torch.tensor(3), torch.tensor([3])):
        out, (h_n, c_n) = ours(x, (h0, c0), lengths)
        torch.testing.assert_close(out, want_out, **tol(dtype))
        torch.testing.assert_close(h_n, want_h, **tol(dtype))
        torch.testing.assert_close(c_n, want_c, **tol(dtype))


def test_lengths_all_full_equals_no_lengths():
    cfg = CONFIGS[2]
    ours, _ = make_pair(cfg)
    x = make_input(cfg, torch.float32)
    a = ours(x)
    b = ours(x, None, torch.full((N,), T, dtype=torch.int64))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


# -- names, shapes, init, state dicts ----------------------------------------------


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_names_shapes_and_init(cfg):
    i, h, n, bi, p, b, bf = cfg
    kw = dict(num_layers=n, bias=b, batch_first=bf, bidirectional=bi, proj_size=p)
    torch.manual_seed(123)
    ref = nn.LSTM(i, h, **kw)
    torch.manual_seed(123)
    ours = LSTM(i, h, **kw)
    want = [(k, v.shape) for k, v in ref.named_parameters()]
    got = [(k, v.shape) for k, v in ours.named_parameters()]
    assert got == want
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == [
        [tuple(w.shape) for w in ws] for ws in ref.all_weights
    ]
    for (k, a), (_, b_) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a, b_, atol=0, rtol=0, msg=lambda m, k=k: f"{k}: {m}")
    # Same RNG consumption: the next draw agrees too.
    torch.manual_seed(7)
    ref.reset_parameters()
    torch.manual_seed(7)
    ours.reset_parameters()
    torch.testing.assert_close(dict(ours.named_parameters()), dict(ref.named_parameters()))
    assert repr(ours).split("(", 1)[1] == repr(ref).split("(", 1)[1]


@pytest.mark.parametrize("cfg", CONFIGS[:4], ids=CONFIG_IDS[:4])
def test_load_state_dict_strict_both_ways(cfg, assert_lstm_parity):
    i, h, n, bi, p, b, bf = cfg
    kw = dict(num_layers=n, bias=b, batch_first=bf, bidirectional=bi, proj_size=p)
    torch.manual_seed(0)
    ref = nn.LSTM(i, h, **kw)
    ours = LSTM(i, h, **kw)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert_lstm_parity(ours, ref, make_input(cfg, torch.float32))
    torch.manual_seed(1)
    ours2 = LSTM(i, h, **kw)
    ref2 = nn.LSTM(i, h, **kw)
    ref2.load_state_dict(ours2.state_dict(), strict=True)
    assert list(ours2.state_dict()) == list(ref2.state_dict())
    assert_lstm_parity(ours2, ref2, make_input(cfg, torch.float32), make_hx(cfg, torch.float32))


def test_from_torch_to_torch_round_trip():
    ref = nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2, dtype=torch.float64).eval()
    ours = LSTM.from_torch(ref)
    assert not ours.training
    assert ours.weight_ih_l0.dtype == torch.float64
    back = ours.to_torch()
    assert type(back) is nn.LSTM and not back.training
    torch.testing.assert_close(back.state_dict(), ref.state_dict(), atol=0, rtol=0)
    assert ours.config() == {
        "input_size": 3,
        "hidden_size": 5,
        "num_layers": 2,
        "bias": True,
        "batch_first": False,
        "dropout": 0.0,
        "bidirectional": True,
        "proj_size": 2,
        "cell": "lstm",
    }
    with pytest.raises(TypeError, match="expected a torch.nn.LSTM, got GRU"):
        LSTM.from_torch(nn.GRU(3, 5))


def test_to_dtype_and_param_reassignment_follow_weights():
    """``.double()`` and assigning a new Parameter must be seen by forward."""
    torch.manual_seed(0)
    ref = nn.LSTM(2, 3, 2)
    ours = LSTM.from_torch(ref)
    ours.double()
    ref.double()
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-10, rtol=0)
    new = nn.Parameter(torch.randn_like(ref.weight_hh_l1))
    ours.weight_hh_l1 = new
    ref.weight_hh_l1 = nn.Parameter(new.detach().clone())
    torch.testing.assert_close(ours(x), ref(x), atol=1e-10, rtol=0)


def test_weight_deleted_then_set_again():
    """``del m.weight_hh_l0; m.weight_hh_l0 = w`` (what weight-norm tools do), with a
    ``.to()`` in between and a plain tensor for ``w``: eager, ``_flat_weights`` and
    TorchScript all follow, as nn.LSTM's forward does."""
    torch.manual_seed(0)
    ref = nn.LSTM(2, 3, 2)
    ours = LSTM.from_torch(ref)
    x = torch.randn(4, 2, 2)
    w = ref.weight_hh_l0.detach() * 0.5
    for m in (ours, ref):
        del m.weight_hh_l0
        assert not hasattr(m, "weight_hh_l0")
        m.to(torch.float32)  # _apply while a weight is absent
        m.weight_hh_l0 = w.clone()  # a plain tensor, not a Parameter
    assert ours._flat_weights[1] is ours.weight_hh_l0
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.jit.script(ours)(x), ref(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("where", ["input", "h0", "c0", "weights"])
def test_device_mismatch_message_matches_nn_lstm(where):
    """A tensor on another device ('meta' stands in for a GPU here) gives nn.LSTM's
    error, word for word: aten::lstm checks the states, then the parameters."""
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4)
    ours = LSTM.from_torch(ref)
    x, h, c = torch.randn(5, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)
    if where == "input":
        x = x.to("meta")
        hx = None
    else:
        hx = (h.to("meta"), c) if where == "h0" else (h, c.to("meta")) if where == "c0" else (h, c)
    if where == "weights":
        ref.to("meta")
        ours.to("meta")
    with pytest.raises(RuntimeError) as want:
        ref(x, hx)
    with pytest.raises(RuntimeError, match=re.escape(str(want.value))):
        ours(x, hx)


@pytest.mark.parametrize("name", ["weight_hh_l0", "weight_ih_l1"])
def test_parametrizations_weight_norm(name):
    """``torch.nn.utils.parametrizations.weight_norm`` on an LSTM weight: same values and
    gradients as nn.LSTM under it, and after ``remove_parametrizations`` the weight is a
    Parameter again, seen by ``_flat_weights`` and so by TorchScript."""
    parametrize = torch.nn.utils.parametrize
    torch.manual_seed(0)
    ref = nn.LSTM(2, 3, 2)
    ours = LSTM.from_torch(ref)
    x = torch.randn(4, 2, 2)
    want = ref(x)
    for m in (ours, ref):
        torch.nn.utils.parametrizations.weight_norm(m, name=name)
    got = ours(x)
    torch.testing.assert_close(got, ref(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)  # the same weight, reparametrized
    for m in (ours, ref):
        m(x)[0].sum().backward()
    for k in ("original0", "original1"):  # weight_norm's g and v
        torch.testing.assert_close(
            getattr(getattr(ours.parametrizations, name), k).grad,
            getattr(getattr(ref.parametrizations, name), k).grad,
            atol=1e-5, rtol=0,
        )
    for m in (ours, ref):
        parametrize.remove_parametrizations(m, name)
    weight = getattr(ours, name)
    assert isinstance(weight, nn.Parameter)
    assert ours._flat_weights[ours._flat_weights_names.index(name)] is weight
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.jit.script(ours)(x), ref(x), atol=1e-6, rtol=0)


# -- PackedSequence (eager only) --------------------------------------------------


@pytest.mark.parametrize("enforce_sorted", [False, True], ids=["unsorted", "sorted"])
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[2], CONFIGS[3]], ids=CONFIG_IDS[1:4])
@pytest.mark.parametrize("use_hx", [False, True], ids=["nohx", "hx"])
def test_packed_sequence(cfg, enforce_sorted, use_hx, tol):
    dtype = torch.float64
    ours, ref = make_pair(cfg, dtype)
    bf = cfg[-1]
    x = make_input(cfg, dtype).requires_grad_(True)
    lengths = torch.tensor([5, 4, 3, 1]) if enforce_sorted else LENGTHS
    hx = make_hx(cfg, dtype) if use_hx else None
    pack = lambda: pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=enforce_sorted)
    got, (gh, gc) = ours(pack(), hx)
    want, (wh, wc) = ref(pack(), hx)
    assert type(got) is type(want)
    torch.testing.assert_close(got.data, want.data, **tol(dtype))
    torch.testing.assert_close(got.batch_sizes, want.batch_sizes, atol=0, rtol=0)
    if enforce_sorted:
        assert got.sorted_indices is None and got.unsorted_indices is None
    else:
        torch.testing.assert_close(got.sorted_indices, want.sorted_indices, atol=0, rtol=0)
        torch.testing.assert_close(got.unsorted_indices, want.unsorted_indices, atol=0, rtol=0)
    torch.testing.assert_close(gh, wh, **tol(dtype))
    torch.testing.assert_close(gc, wc, **tol(dtype))
    g_ours = torch.autograd.grad(got.data.sum() + gh.sum(), x)[0]
    g_ref = torch.autograd.grad(want.data.sum() + wh.sum(), x)[0]
    torch.testing.assert_close(g_ours, g_ref, **tol(dtype))


# -- dropout ------------------------------------------------------------------------


def _dropout_pair(num_layers, p, bidirectional=False):
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, num_layers, dropout=p, bidirectional=bidirectional)
    return LSTM.from_torch(ref), ref


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [2, 3])
def test_dropout_one_zeroes_between_layers_only(num_layers, bidirectional):
    """dropout=1.0 in training is deterministic: layers > 0 see zeros, the last is not dropped."""
    ours, ref = _dropout_pair(num_layers, 1.0, bidirectional)
    ours.train()
    ref.train()
    x = torch.randn(5, 2, 3)
    got, (gh, gc) = ours(x)
    want, (wh, wc) = ref(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(gh, wh, atol=1e-5, rtol=0)
    torch.testing.assert_close(gc, wc, atol=1e-5, rtol=0)
    # The last layer's output is not dropped: it is non-zero (its own bias drives it).
    assert got.abs().max() > 0
    # Layer 1 saw zeros: its output does not depend on x.
    got2, _ = ours(torch.randn(5, 2, 3) * 10)
    torch.testing.assert_close(got2, got, atol=0, rtol=0)


def test_dropout_is_identity_in_eval_and_random_in_train():
    ours, ref = _dropout_pair(2, 0.5)
    ours.eval()
    ref.eval()
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
    no_dropout = LSTM.from_torch(nn.LSTM(3, 4, 2)).eval()
    no_dropout.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), no_dropout(x), atol=0, rtol=0)
    ours.train()
    torch.manual_seed(0)
    a = ours(x)[0]
    torch.manual_seed(1)
    b = ours(x)[0]
    assert not torch.equal(a, b), "dropout in training should depend on the RNG"
    assert not torch.allclose(a, no_dropout(x)[0])


def test_dropout_warning_matches_nn_lstm():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1") as ours_w:
        LSTM(3, 4, 1, dropout=0.3)
    with pytest.warns(UserWarning) as ref_w:
        nn.LSTM(3, 4, 1, dropout=0.3)
    assert [str(w.message) for w in ours_w] == [str(w.message) for w in ref_w]
    assert ours_w[0].filename == __file__, "stacklevel should point at the caller"
    with pytest.warns(UserWarning):
        ref = nn.LSTM(3, 4, 1, dropout=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LSTM(3, 4, 2, dropout=0.3)
        LSTM.from_torch(ref)  # nn.LSTM already warned; converting must not warn again


def test_set_layer_stack_runs_in_eager_mode_after_the_checks():
    """The documented hook the exporters set on their copy: forward's checks and layouts stay
    the module's, the stack gets the time-major call; None and scripting give the own stack."""
    torch.manual_seed(0)
    m = LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(2, 5, 3)  # (N, T, I)
    lengths = torch.tensor([5, 3])
    want = m(x, None, lengths)
    seen = []

    class Zeros(nn.Module):
        @torch.jit.ignore  # a Python-only stack: scripting the LSTM compiles its own
        def forward(self, x, h0, c0, weights, lengths):  # type: ignore[no-untyped-def]
            seen.append((tuple(x.shape), tuple(h0.shape), len(weights), lengths.tolist()))
            return x.new_zeros(x.size(0), x.size(1), 8), torch.zeros_like(h0), torch.zeros_like(c0)

    m.set_layer_stack(Zeros())
    out, (h_n, c_n) = m(x, None, lengths)
    assert seen == [((5, 2, 3), (4, 2, 4), 16, [5, 3])]  # time-major, zeros for the omitted state
    assert out.shape == (2, 5, 8) and not out.any() and not h_n.any() and not c_n.any()
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size"):
        m(torch.randn(2, 5, 7))
    assert len(seen) == 1
    torch.testing.assert_close(torch.jit.script(m)(x, None, lengths), want, atol=1e-5, rtol=0)  # aten::lstm
    m.set_layer_stack(None)
    assert "layer_stack" not in dict(m.named_children())
    torch.testing.assert_close(m(x, None, lengths), want, atol=0, rtol=0)
