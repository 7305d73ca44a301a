"""PyTorch's own nn.LSTM / nn.LSTMCell tests, run against deploy_lstm.

Sources (read, then copied here; each case names its origin):

* ``test/test_nn.py`` of pytorch/pytorch at commit
  74f2fa66feec00335f72813782f4802e80bff4cb (comments: ``test/test_nn.py@74f2fa66``);
* ``torch/testing/_internal/common_modules.py`` of the installed torch 2.13.0
  (``torch.version.git_version`` cf30153c4c131c8164ee7798e5022d810682e2cb; comments:
  ``common_modules.py@cf30153c``, ``CM`` in docstrings), and how PyTorch's
  ``test/test_modules.py`` uses its entries (test_forward, test_pickle, test_errors,
  test_non_contiguous_tensors).

Each ported body is PyTorch's, assertions unchanged; ``nn.LSTM`` / ``nn.LSTMCell``
become ``deploy_lstm.LSTM`` / ``deploy_lstm.LSTMCell`` where the original builds the
module under test, and an oracle stays ``torch.nn``.  Lines that exercise only
``nn.RNN`` / ``nn.GRU`` are dropped.  A case that had to change to run here (a CUDA
device replaced by the CPU, an ``nn.RNN`` body run on an LSTM) says "adapted" and how.
CUDA-only cases are ported and skipped here (no GPU), with the reason.

Not ported, with why: test_RNN_dropout (expected values of a ReLU ``nn.RNN`` with unit
weights; no LSTM analogue), test_cudnn_weight_format (asserts cuDNN's "weights are not
part of single contiguous chunk of memory" warning: deploy_lstm never uses cuDNN's flat
weight buffer), test_cudnn_rnn_dropout_states_device and
test_projections_errors_on_gru_and_rnn (nn.RNN / nn.GRU only).

Why not import PyTorch's test helpers: ``torch.testing._internal.common_utils`` (and so
``common_modules``) needs ``expecttest``, which is not installed, and importing it
changes process-wide state (``torch.backends.disable_global_flags()``, a patched
``torch._C.ScriptFunction.__call__``) that the rest of this suite would then run under.
So the few helpers the ported bodies call (``assertEqual``, ``gradcheck``,
``set_default_dtype``, ``dtype2prec_DONTUSE``, the module-DB records) are copied below
with PyTorch's semantics.
"""

from __future__ import annotations

import ast
import inspect
import io
import numbers
import random
import re
import tempfile
import textwrap
import unittest
import warnings
from copy import deepcopy
from functools import partial, wraps
from itertools import product
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils
from torch import nn
from torch.testing import make_tensor

import deploy_lstm
from deploy_lstm import LSTMInputError

pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning"),
    # the ported test_rnn_weight_norm / test_RNN_cudnn_weight_norm use the old API on purpose
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
]

TEST_CUDA = torch.cuda.is_available()
TEST_MULTIGPU = TEST_CUDA and torch.cuda.device_count() >= 2
TEST_WITH_ROCM = torch.version.hip is not None
NO_GPU = "CUDA-only in PyTorch; no GPU here"
NO_MULTIGPU = "needs two GPUs in PyTorch; no GPU here"

# ``getattr(dl, mode)`` stands in for the original ``getattr(nn, mode)``.
dl = SimpleNamespace(LSTM=deploy_lstm.LSTM, LSTMCell=deploy_lstm.LSTMCell)


# -- PyTorch's test helpers, copied (common_utils of torch 2.13.0) --------------------

# common_utils.dtype2prec_DONTUSE
dtype2prec_DONTUSE = {torch.float: 1e-5, torch.double: 1e-5, torch.half: 1e-2, torch.bfloat16: 1e-1}


def gradcheck(fn: Callable, inputs: Any, **kwargs: Any) -> bool:
    """common_utils.gradcheck: autograd.gradcheck with batched grad and fast mode on by default."""
    for key, value in {"check_batched_grad": True, "fast_mode": True}.items():
        kwargs[key] = kwargs[key] if kwargs.get(key) is not None else value
    return torch.autograd.gradcheck(fn, inputs, **kwargs)


def gradgradcheck(fn: Callable, inputs: Any, grad_outputs: Any = None, **kwargs: Any) -> bool:
    """common_utils.gradgradcheck, with the same defaults as ``gradcheck``."""
    for key, value in {"check_batched_grad": True, "fast_mode": True}.items():
        kwargs[key] = kwargs[key] if kwargs.get(key) is not None else value
    return torch.autograd.gradgradcheck(fn, inputs, grad_outputs, **kwargs)


def set_default_dtype(dtype: torch.dtype) -> Callable:
    """common_utils.set_default_dtype, as a decorator: the default dtype for one test."""

    def decorator(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            saved = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.set_default_dtype(saved)

        return wrapper

    return decorator


def _as_pair(x: Any, y: Any) -> Tuple[Any, Any, bool]:
    """Tensor vs number/sequence compares as two tensors (PyTorch's TensorLikePair)."""
    like = (numbers.Number, list, tuple, torch.Size)
    if isinstance(x, torch.Tensor) and isinstance(y, like) and not isinstance(y, torch.Tensor):
        return x, torch.as_tensor(y, device=x.device), False
    if isinstance(y, torch.Tensor) and isinstance(x, like) and not isinstance(x, torch.Tensor):
        return torch.as_tensor(x, device=y.device), y, False
    return x, y, True


SEED = 1234  # common_utils.SEED: every PyTorch test starts from it


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """common_utils.TestCase.setUp: ``set_rng_seed(SEED)`` before each test."""
    random.seed(SEED)
    torch.manual_seed(SEED)


class TestCase(unittest.TestCase):
    """The assertions of PyTorch's ``common_utils.TestCase`` the ported bodies use.

    ``assertEqual`` compares tensors, numbers and (nested) sequences of them with
    ``torch.testing.assert_close`` -- the comparison PyTorch's own is built on, with
    its dtype-based default tolerances, ``equal_nan=True`` and ``exact_dtype``.
    """

    def setUp(self) -> None:
        random.seed(SEED)
        torch.manual_seed(SEED)

    def assertEqual(  # type: ignore[override]
        self,
        x: Any,
        y: Any,
        msg: Optional[str] = None,
        *,
        atol: Optional[float] = None,
        rtol: Optional[float] = None,
        exact_dtype: bool = True,
    ) -> None:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            x, y, same_kind = _as_pair(x, y)
            torch.testing.assert_close(
                x, y, atol=atol, rtol=rtol, equal_nan=True,
                check_dtype=exact_dtype and same_kind, msg=msg,
            )
        elif isinstance(x, numbers.Number) and isinstance(y, numbers.Number):
            # PyTorch's RelaxedNumberPair: 1 == 1.0
            torch.testing.assert_close(x, y, atol=atol, rtol=rtol, equal_nan=True, check_dtype=False, msg=msg)
        elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            super().assertEqual(len(x), len(y), msg)
            for a, b in zip(x, y):
                self.assertEqual(a, b, msg, atol=atol, rtol=rtol, exact_dtype=exact_dtype)
        else:
            super().assertEqual(x, y, msg)

    def assertNotEqual(  # type: ignore[override]
        self, x: Any, y: Any, msg: Optional[str] = None, *, atol: Optional[float] = None,
        rtol: Optional[float] = None,
    ) -> None:
        try:
            self.assertEqual(x, y, atol=atol, rtol=rtol)
        except AssertionError:
            return
        raise AssertionError(msg or f"expected the two values to differ, both are {x!r}")


# -- test/test_nn.py@74f2fa66: class TestNN ----------------------------------------------------------------


class TestNN(TestCase):
    """Cases of ``TestNN`` in test/test_nn.py that build an nn.LSTM / nn.LSTMCell."""

    # test/test_nn.py@74f2fa66 TestNN.test_rnn_weight_norm
    def test_rnn_weight_norm(self):
        def check_weight_norm(l, name, num_params):
            # This Module has 4 or 5 parameters called:
            # 'weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0', weight_hr_l0

            # Applying weight norm on one of them causes it to become a tensor
            l = torch.nn.utils.weight_norm(l, name=name)
            self.assertEqual(
                sum(isinstance(p, torch.nn.Parameter) for p in l._flat_weights),
                num_params - 1,
            )

            # Removing the weight norm reparametrization restores the Parameter
            l = torch.nn.utils.remove_weight_norm(l, name=name)
            self.assertEqual(
                sum(isinstance(p, torch.nn.Parameter) for p in l._flat_weights),
                num_params,
            )

            # Make sure that, upon removal of the reparametrization, the
            # `._parameters` and `.named_parameters` contain the right params.
            # Specifically, the original weight ('weight_ih_l0') should be placed
            # back in the parameters, while the reparametrization components
            # ('weight_ih_l0_v' and 'weight_ih_l0_g') should be removed.
            self.assertTrue(name in l._parameters)
            self.assertIsNotNone(l._parameters[name])
            self.assertTrue(name + '_v' not in l._parameters)
            self.assertTrue(name + '_g' not in l._parameters)
            self.assertTrue(name in dict(l.named_parameters()))
            self.assertIsNotNone(dict(l.named_parameters())[name])
            self.assertTrue(name + '_v' not in dict(l.named_parameters()))
            self.assertTrue(name + '_g' not in dict(l.named_parameters()))

        check_weight_norm(dl.LSTM(32, 32), 'weight_ih_l0', 4)
        check_weight_norm(dl.LSTM(32, 32, proj_size=16), 'weight_hr_l0', 5)

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_cell_no_broadcasting (the nn.LSTMCell lines)
    def test_RNN_cell_no_broadcasting(self):
        def test(cell_module, input, hx, input_size, hidden_size):
            cell = cell_module(input_size, hidden_size)
            self.assertRaises(RuntimeError, lambda: cell(input, hx))

        def test_all(hidden_size, bad_hx, good_hx, input_size, input):
            test(dl.LSTMCell, input, (bad_hx, good_hx), input_size, hidden_size)
            test(dl.LSTMCell, input, (good_hx, bad_hx), input_size, hidden_size)

        hidden_size = 20
        input_size = 10
        input = torch.randn(3, input_size)
        bad_hx = torch.randn(1, hidden_size)
        good_hx = torch.randn(3, hidden_size)

        # Test hidden/input batch size broadcasting
        test_all(hidden_size, bad_hx, good_hx, input_size, input)

        # Test hx's hidden_size vs module's hidden_size broadcasting
        bad_hx = torch.randn(3, 1)
        test_all(hidden_size, bad_hx, good_hx, input_size, input)

        # Test input's input_size vs module's input_size broadcasting
        bad_input = torch.randn(3, 1)
        test_all(hidden_size, good_hx, good_hx, input_size, bad_input)

    # test/test_nn.py@74f2fa66 TestNN.test_LSTM_cell
    def test_LSTM_cell(self):
        # this is just a smoke test; these modules are implemented through
        # autograd so no Jacobian test is needed
        for bias in (True, False):
            input = torch.randn(3, 10)
            hx = torch.randn(3, 20)
            cx = torch.randn(3, 20)
            lstm = dl.LSTMCell(10, 20, bias=bias)
            for _ in range(6):
                hx, cx = lstm(input, (hx, cx))

            (hx + cx).sum().backward()

    # test/test_nn.py@74f2fa66 TestNN.test_LSTM_cell_forward_input_size
    def test_LSTM_cell_forward_input_size(self):
        input = torch.randn(3, 11)
        hx = torch.randn(3, 20)
        cx = torch.randn(3, 20)
        lstm = dl.LSTMCell(10, 20)
        self.assertRaises(Exception, lambda: lstm(input, (hx, cx)))

    # test/test_nn.py@74f2fa66 TestNN.test_LSTM_cell_forward_hidden_size
    def test_LSTM_cell_forward_hidden_size(self):
        input = torch.randn(3, 10)
        hx = torch.randn(3, 21)
        cx = torch.randn(3, 20)
        lstm = dl.LSTMCell(10, 20)
        self.assertRaises(Exception, lambda: lstm(input, (hx, cx)))
        self.assertRaises(Exception, lambda: lstm(input, (cx, hx)))

    # test/test_nn.py@74f2fa66 TestNN.test_pack_sequence_batch_sizes_throw
    @pytest.mark.cuda
    @unittest.skipIf(not TEST_CUDA, NO_GPU)
    def test_pack_sequence_batch_sizes_throw(self):
        with self.assertRaisesRegex(ValueError, r"batch_sizes should always be on CPU"):
            m = dl.LSTM(3, 4, bidirectional=True, num_layers=2).to('cuda')
            a = torch.rand(5, 3, device='cuda')
            b = torch.tensor([1, 1, 1, 1, 1], device='cuda')
            input = nn.utils.rnn.PackedSequence(a, b)

    # test/test_nn.py@74f2fa66 TestNN.test_cudnn_forward_exception (its nn.LSTM entries;
    # despite the name it runs on the CPU)
    def test_cudnn_forward_exception(self):
        rnns = [
            (dl.LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
            (dl.LSTM(10, 20, batch_first=True, proj_size=10), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        ]
        x_wrong = torch.randn(2, 3, 3)
        x_right = torch.randn(2, 3, 10)
        for rnn, hidden in rnns:
            self.assertRaisesRegex(RuntimeError, "Expected hidden.*size.*got", rnn, x_right, hidden)
            self.assertRaisesRegex(RuntimeError, re.escape("input.size(-1) must be equal to input_size"), rnn, x_wrong)

    # test/test_nn.py@74f2fa66 TestNN.test_cudnn_weight_tying (its nn.LSTM entries; upstream
    # also wraps it in @tf32_on_and_off, a CUDA setting)
    @pytest.mark.cuda
    @unittest.skipIf(not TEST_CUDA, NO_GPU)
    def test_cudnn_weight_tying(self):
        rnns = [
            dl.LSTM(10, 20, batch_first=True, bidirectional=True),
            dl.LSTM(10, 20, batch_first=True, bidirectional=True, proj_size=10),
        ]
        for rnn in rnns:
            rnn.bias_ih_l0_reverse = rnn.bias_ih_l0
            rnn.cuda()
            input = torch.randn(5, 4, 10, requires_grad=True, device="cuda")
            hx = torch.randn(2, 5, 20, requires_grad=True, device="cuda")
            all_vars = [input, hx] + list(rnn.parameters())
            opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
            opt.zero_grad()
            if isinstance(rnn, dl.LSTM):
                # LSTM with projections has different hx size
                if rnn.proj_size > 0:
                    hx = torch.randn(2, 5, 10, requires_grad=True, device="cuda")
                    all_vars[1] = hx
                cx = torch.randn(2, 5, 20, requires_grad=True, device="cuda")
                all_vars[2:2] = [cx]
                hx = (hx, cx)

            with warnings.catch_warnings(record=True) as w:
                output = rnn(input, hx)
            output[0].sum().backward()

            opt.step()
            with warnings.catch_warnings(record=True) as w:
                output_cuda = rnn(input, hx)
            rnn.cpu()
            hx = (hx[0].cpu(), hx[1].cpu()) if isinstance(rnn, dl.LSTM) else hx.cpu()
            output_cpu = rnn(input.cpu(), hx)
            self.assertEqual(output_cuda, output_cpu)

    # test/test_nn.py@74f2fa66 TestNN.test_rnn_args_check (mode 'LSTM')
    def test_rnn_args_check(self):
        input_size = 3
        hidden_size = 5
        num_layers = 2
        batch_size = 4
        seq_len = 6
        num_directions = 1
        bad_size = 7  # prime number so that no size can divide it.

        def test(input_shape, hidden_shape, mode):
            for input, hidden in get_inputs(input_shape, hidden_shape, mode):
                model = getattr(dl, mode)(input_size, hidden_size, num_layers)
                self.assertRaises(RuntimeError, lambda: model(input, hidden))

        correct_input_shape = (seq_len, batch_size, input_size)
        correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)

        def update_shape(shape, dim, new_dim_size):
            new_shape = list(shape)
            new_shape[dim] = new_dim_size
            return tuple(new_shape)

        def get_inputs(input_shape, hidden_shape, mode):
            '''returns list( tuple(input, hidden) )
            where input, hidden are inputs to a model'''
            input = torch.randn(input_shape)
            hidden = torch.randn(hidden_shape)
            if mode != 'LSTM':
                return [(input, hidden)]
            if hidden_shape == correct_hidden_shape:
                return [(input, (hidden, hidden))]
            good_hidden = torch.randn(correct_hidden_shape)
            return [
                (input, (hidden, good_hidden)),
                (input, (good_hidden, hidden)),
            ]

        rnn_modes = ['LSTM']
        for mode in rnn_modes:
            # Incorrect input batch size
            input_shape = update_shape(correct_input_shape, 1, bad_size)
            hidden_shape = correct_hidden_shape
            test(input_shape, hidden_shape, mode)

            # Incorrect hidden batch size
            input_shape = correct_input_shape
            hidden_shape = update_shape(correct_hidden_shape, 1, bad_size)
            test(input_shape, hidden_shape, mode)

            # Incorrect input size
            input_shape = update_shape(correct_input_shape, 2, bad_size)
            hidden_shape = correct_hidden_shape
            test(input_shape, hidden_shape, mode)

            # Incorrect hidden size
            input_shape = correct_input_shape
            hidden_shape = update_shape(correct_hidden_shape, 2, bad_size)
            test(input_shape, hidden_shape, mode)

            # Incorrect hidden[0]
            input_shape = correct_input_shape
            hidden_shape = update_shape(correct_hidden_shape, 0, bad_size)
            test(input_shape, hidden_shape, mode)

    # test/test_nn.py@74f2fa66 TestNN.test_projections_lstm_args_check
    def test_projections_lstm_args_check(self):
        input_size = 3
        hidden_size = 5
        proj_size = 2
        num_layers = 2
        batch_size = 4
        seq_len = 6
        num_directions = 1
        bad_size = 7  # prime number so that no size can divide it.

        def test(input_shape, hidden_h_shape, hidden_c_shape):
            for input, hidden in get_inputs(input_shape, hidden_h_shape, hidden_c_shape):
                model = dl.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
                self.assertRaises(RuntimeError, lambda: model(input, hidden))

        correct_input_shape = (seq_len, batch_size, input_size)
        correct_hidden_h_shape = (num_layers * num_directions, batch_size, proj_size)
        correct_hidden_c_shape = (num_layers * num_directions, batch_size, hidden_size)

        def update_shape(shape, dim, new_dim_size):
            new_shape = list(shape)
            new_shape[dim] = new_dim_size
            return tuple(new_shape)

        def get_inputs(input_shape, hidden_h_shape, hidden_c_shape):
            '''returns list( tuple(input, hidden) )
            where input, hidden are inputs to a model'''
            input = torch.randn(input_shape)
            hidden_h = torch.randn(hidden_h_shape)
            hidden_c = torch.randn(hidden_c_shape)
            return [(input, (hidden_h, hidden_c))]

        # Incorrect input batch size
        input_shape = update_shape(correct_input_shape, 1, bad_size)
        test(input_shape, correct_hidden_h_shape, correct_hidden_c_shape)

        # Incorrect hidden batch size
        input_shape = correct_input_shape
        hidden_h_shape = update_shape(correct_hidden_h_shape, 1, bad_size)
        hidden_c_shape = update_shape(correct_hidden_c_shape, 1, bad_size)
        test(input_shape, hidden_h_shape, hidden_c_shape)

        # Incorrect input size
        input_shape = update_shape(correct_input_shape, 2, bad_size)
        test(input_shape, correct_hidden_h_shape, correct_hidden_c_shape)

        # Incorrect hidden size
        input_shape = correct_input_shape
        hidden_h_shape = update_shape(correct_hidden_h_shape, 2, bad_size)
        hidden_c_shape = update_shape(correct_hidden_c_shape, 2, bad_size)
        test(input_shape, hidden_h_shape, hidden_c_shape)

        # Incorrect hidden[0]
        input_shape = correct_input_shape
        hidden_h_shape = update_shape(correct_hidden_h_shape, 0, bad_size)
        hidden_c_shape = update_shape(correct_hidden_c_shape, 0, bad_size)
        test(input_shape, hidden_h_shape, hidden_c_shape)

        # Incorrect proj size = hidden size
        input_shape = correct_input_shape
        hidden_h_shape = update_shape(correct_hidden_h_shape, 0, hidden_size)
        hidden_c_shape = correct_hidden_c_shape
        test(input_shape, hidden_h_shape, hidden_c_shape)

        # Incorrect proj size != hidden size
        input_shape = correct_input_shape
        hidden_h_shape = update_shape(correct_hidden_h_shape, 0, bad_size)
        hidden_c_shape = correct_hidden_c_shape
        test(input_shape, hidden_h_shape, hidden_c_shape)

        # Incorrect cell size != hidden size
        input_shape = correct_input_shape
        hidden_h_shape = correct_hidden_h_shape
        hidden_c_shape = update_shape(correct_hidden_c_shape, 0, bad_size)
        test(input_shape, hidden_h_shape, hidden_c_shape)

    # test/test_nn.py@74f2fa66 TestNN.test_rnn_check_device (mode 'LSTM')
    @pytest.mark.cuda
    @unittest.skipIf(not TEST_MULTIGPU, NO_MULTIGPU)
    def test_rnn_check_device(self):
        import copy
        input_size = 3
        hidden_size = 5
        num_layers = 2
        batch_size = 4
        seq_len = 6
        num_directions = 1

        correct_input_shape = (seq_len, batch_size, input_size)
        correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)
        rnn_modes = ['LSTM']

        for mode in rnn_modes:
            model = getattr(dl, mode)(input_size, hidden_size, num_layers)
            model_cuda = copy.deepcopy(model).to('cuda:0')
            input = torch.randn(correct_input_shape)
            hidden = torch.randn(correct_hidden_shape)

            # input and weights are not at the same device
            with self.assertRaisesRegex(RuntimeError,
                                        "Input and parameter tensors are not at the same device"):
                model(input.to('cuda:0'))
            with self.assertRaisesRegex(RuntimeError,
                                        "Input and parameter tensors are not at the same device"):
                model_cuda(input)

            # input and hiddens are not at the same device
            with self.assertRaisesRegex(RuntimeError,
                                        r"Input and hidden tensors are not at the same device"):
                if mode == 'LSTM':
                    model(input, (hidden.to('cuda:0'), hidden.to('cuda:0')))
                else:
                    model(input, (hidden.to('cuda:0')))
            with self.assertRaisesRegex(RuntimeError,
                                        r"Input and hidden tensors are not at the same device"):
                if mode == 'LSTM':
                    model_cuda(input.to('cuda:0'), (hidden, hidden))
                else:
                    model_cuda(input.to('cuda:0'), (hidden))

            # hidden tensors are not at the same CUDA device
            if mode == 'LSTM':
                with self.assertRaisesRegex(RuntimeError,
                                            "Input and hidden tensors are not at the same device"):
                    model(input.to('cuda:0'), (hidden.to('cuda:0'), hidden.to('cuda:1')))

    # test/test_nn.py@74f2fa66 TestNN.test_projections_lstm_check_device
    @pytest.mark.cuda
    @unittest.skipIf(not TEST_MULTIGPU, NO_MULTIGPU)
    def test_projections_lstm_check_device(self):
        input_size = 3
        hidden_size = 5
        proj_size = 2
        num_layers = 2
        batch_size = 4
        seq_len = 6
        num_directions = 1

        correct_input_shape = (seq_len, batch_size, input_size)
        correct_hidden_h_shape = (num_layers * num_directions, batch_size, proj_size)
        correct_hidden_c_shape = (num_layers * num_directions, batch_size, hidden_size)

        model = dl.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
        input = torch.randn(correct_input_shape)
        hidden_h = torch.randn(correct_hidden_h_shape)
        hidden_c = torch.randn(correct_hidden_c_shape)

        # input and weights are not at the same device
        with self.assertRaisesRegex(RuntimeError,
                                    "Input and parameter tensors are not at the same device"):
            model(input.to('cuda:0'))

        # input and hiddens are not at the same device
        with self.assertRaisesRegex(RuntimeError,
                                    r"Input and hidden tensors are not at the same device"):
            model(input, (hidden_h.to('cuda:0'), hidden_c.to('cuda:0')))

        # hidden tensors are not at the same CUDA device
        with self.assertRaisesRegex(RuntimeError,
                                    "Input and hidden tensors are not at the same device"):
            model(input.to('cuda:0'), (hidden_h.to('cuda:0'), hidden_c.to('cuda:1')))

    # test/test_nn.py@74f2fa66 TestNN.test_rnn_initial_hidden_state (mode 'LSTM')
    def test_rnn_initial_hidden_state(self):
        rnn_modes = ['LSTM']
        for mode in rnn_modes:
            rnn = getattr(dl, mode)(30, 20, 2)
            input = torch.randn(10, 32, 30)
            hidden = torch.zeros(2, 32, 20)

            if mode == 'LSTM':
                hidden = (hidden, hidden)
            output1, hidden1 = rnn(input, hidden)
            output2, hidden2 = rnn(input)
            self.assertEqual(output1, output2)
            self.assertEqual(hidden1, hidden2)

    # test/test_nn.py@74f2fa66 TestNN.test_projections_lstm_initial_hidden_state
    def test_projections_lstm_initial_hidden_state(self):
        for bidir in [False, True]:
            rnn = dl.LSTM(30, 20, 2, bidirectional=bidir, proj_size=10)
            num_dirs = 2 if bidir else 1
            input = torch.randn(10, 32, 30)
            hidden_h = torch.zeros(2 * num_dirs, 32, 10)
            hidden_c = torch.zeros(2 * num_dirs, 32, 20)
            hidden = (hidden_h, hidden_c)
            output1, hidden1 = rnn(input, hidden)
            output2, hidden2 = rnn(input)
            self.assertEqual(output1, output2)
            self.assertEqual(hidden1, hidden2)

    # test/test_nn.py@74f2fa66 TestNN._test_RNN_cpu_vs_cudnn, adapted: the "cudnn" side is
    # deploy_lstm.LSTM on the CPU (cuda=False), the "cpu" side the nn.LSTM oracle; is_lstm
    # also accepts deploy_lstm.LSTM; nn.RNN/GRU dropped.
    def _test_RNN_cpu_vs_cudnn(self, dropout, dtype=torch.double):

        def forward_backward(cuda, rnn, input_val, grad_output, weights_val, hx_val, grad_hy,
                             cx_val=None, grad_cy=None):
            is_lstm = isinstance(rnn, (nn.LSTM, dl.LSTM))

            for x_layer, y_layer in zip(rnn.all_weights, weights_val):
                for x, y in zip(x_layer, y_layer):
                    x.data.copy_(y.data)

            if isinstance(input_val, rnn_utils.PackedSequence):
                input = rnn_utils.PackedSequence(
                    input_val.data.data.requires_grad_(True), input_val.batch_sizes)
                input_var = input.data
            else:
                input = input_val.clone().requires_grad_(True)
                input_var = input
            if is_lstm:
                if cx_val is None:
                    hx = (hx_val.clone().requires_grad_(True),
                          hx_val.add(1).requires_grad_(True))
                else:
                    hx = (hx_val.clone().requires_grad_(True),
                          cx_val.add(1).requires_grad_(True))
            else:
                hx = hx_val.clone().requires_grad_(True)

            if cuda:
                rnn.cuda()
                input_var.data = input_var.data.cuda()
                if is_lstm:
                    hx[0].data = hx[0].data.cuda()
                    hx[1].data = hx[1].data.cuda()
                else:
                    hx.data = hx.data.cuda()
                grad_hy = grad_hy.cuda()
                if grad_cy is not None:
                    grad_cy = grad_cy.cuda()
                grad_output = grad_output.cuda()

            output, hy = rnn(input, hx)

            if isinstance(output, rnn_utils.PackedSequence):
                output = output.data

            if is_lstm:
                if grad_cy is None:
                    torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_hy + 1])
                else:
                    torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_cy + 1])
            else:
                torch.autograd.backward([output, hy], [grad_output, grad_hy])

            return {'output': output.data,
                    'hy': hy[0].data if is_lstm else hy.data,
                    'weights': rnn.all_weights,
                    'grad_input': input_var.grad.data,
                    'grad_hx': hx[0].grad.data if is_lstm else hx.grad.data,
                    'cy': hy[1].data if is_lstm else None,
                    'grad_cx': hx[1].grad.data if is_lstm else None}

        input_size = 10
        hidden_size = 6
        proj_size = 3
        num_layers = 2
        seq_length = 7
        batch = 6

        def make_noncontig(tensor):
            ndim = tensor.dim()
            return torch.stack([tensor.clone().zero_(), tensor], ndim).select(ndim, 1)

        def compare_cpu_gpu(outputs_cpu, outputs_gpu):
            self.assertEqual(list(outputs_cpu.keys()), list(outputs_gpu.keys()))
            for key in outputs_cpu.keys():
                if key != 'weights':
                    self.assertEqual(outputs_cpu[key], outputs_gpu[key], atol=5e-5, rtol=0, msg=key)

            # check grad weights separately, as nested dict
            for cpu_layer_weight, gpu_layer_weight in zip(outputs_cpu['weights'], outputs_gpu['weights']):
                for (cpu_weight, gpu_weight) in zip(cpu_layer_weight, gpu_layer_weight):
                    self.assertEqual(cpu_weight.grad.data, gpu_weight.grad.data, atol=5e-5, rtol=0)

        for module, module_gpu in ((nn.LSTM, dl.LSTM),):
            for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor \
                    in product((True, False), repeat=6):

                num_directions = 2 if bidirectional else 1
                if batch_first:
                    input_val = torch.randn(batch, seq_length, input_size, dtype=dtype)
                    grad_output = torch.randn(batch, seq_length, hidden_size * num_directions, dtype=dtype)
                else:
                    input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
                    grad_output = torch.randn(seq_length, batch, hidden_size * num_directions, dtype=dtype)

                hx_val = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)
                grad_hy = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)

                if not contig:
                    grad_output = make_noncontig(grad_output)
                    grad_hy = make_noncontig(grad_hy)
                    input_var = make_noncontig(input_val)
                    hx_val = make_noncontig(hx_val)

                if variable_len:
                    lengths = [7, 5, 5, 2, 1, 1]
                    if lens_as_tensor:
                        lengths = torch.tensor(lengths, dtype=torch.long)
                    input_val = rnn_utils.pack_padded_sequence(input_val, lengths, batch_first=batch_first)
                    grad_output = rnn_utils.pack_padded_sequence(grad_output, lengths, batch_first=batch_first).data

                rnn = module(input_size,
                             hidden_size,
                             num_layers,
                             bias=bias,
                             dropout=dropout,
                             bidirectional=bidirectional,
                             batch_first=batch_first).to(dtype)

                outputs_cpu = forward_backward(
                    False, rnn, input_val, grad_output, rnn.all_weights, hx_val, grad_hy)

                rnn_gpu = module_gpu(input_size,
                                     hidden_size,
                                     num_layers,
                                     bias=bias,
                                     dropout=dropout,
                                     bidirectional=bidirectional,
                                     batch_first=batch_first).to(dtype)

                outputs_gpu = forward_backward(
                    False, rnn_gpu, input_val, grad_output, rnn.all_weights, hx_val, grad_hy)

                compare_cpu_gpu(outputs_cpu, outputs_gpu)

        # checking LSTM with projections
        for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor \
                in product((True, False), repeat=6):
            num_directions = 2 if bidirectional else 1
            if batch_first:
                input_val = torch.randn(batch, seq_length, input_size, dtype=dtype)
                grad_output = torch.randn(batch, seq_length, proj_size * num_directions, dtype=dtype)
            else:
                input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
                grad_output = torch.randn(seq_length, batch, proj_size * num_directions, dtype=dtype)

            hx_val = torch.randn(num_layers * num_directions, batch, proj_size, dtype=dtype)
            cx_val = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)
            grad_hy = torch.randn(num_layers * num_directions, batch, proj_size, dtype=dtype)
            grad_cy = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)

            if not contig:
                grad_output = make_noncontig(grad_output)
                grad_hy = make_noncontig(grad_hy)
                grad_cy = make_noncontig(grad_cy)
                input_var = make_noncontig(input_val)
                hx_val = make_noncontig(hx_val)
                cx_val = make_noncontig(cx_val)

            if variable_len:
                lengths = [7, 5, 5, 2, 1, 1]
                if lens_as_tensor:
                    lengths = torch.tensor(lengths, dtype=torch.long)
                input_val = rnn_utils.pack_padded_sequence(input_val, lengths, batch_first=batch_first)
                grad_output = rnn_utils.pack_padded_sequence(grad_output, lengths, batch_first=batch_first).data

            rnn = nn.LSTM(input_size,
                          hidden_size,
                          num_layers,
                          bias=bias,
                          dropout=dropout,
                          bidirectional=bidirectional,
                          batch_first=batch_first,
                          proj_size=proj_size).to(dtype)

            outputs_cpu = forward_backward(
                False, rnn, input_val, grad_output, rnn.all_weights,
                hx_val, grad_hy, cx_val, grad_cy)

            rnn_gpu = dl.LSTM(input_size,
                              hidden_size,
                              num_layers,
                              bias=bias,
                              dropout=dropout,
                              bidirectional=bidirectional,
                              batch_first=batch_first,
                              proj_size=proj_size).to(dtype)

            outputs_gpu = forward_backward(
                False, rnn_gpu, input_val, grad_output, rnn.all_weights,
                hx_val, grad_hy, cx_val, grad_cy)
            compare_cpu_gpu(outputs_cpu, outputs_gpu)

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_cpu_vs_cudnn_no_dropout (CPU parts, see above)
    def test_RNN_cpu_vs_cudnn_no_dropout(self):
        dtype = torch.double
        self._test_RNN_cpu_vs_cudnn(0, dtype)

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_cpu_vs_cudnn_with_dropout (CPU parts, see above)
    def test_RNN_cpu_vs_cudnn_with_dropout(self):
        # Because of dropout randomness, can only compare dropout=0 and dropout=1
        self._test_RNN_cpu_vs_cudnn(1)

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_cudnn_weight_norm, adapted: `m.cuda()` and
    # `input.cuda()` became `.to("cpu")` (no GPU here); `.to()` still runs the module's _apply.
    def test_RNN_cudnn_weight_norm(self):
        input_size = 10
        hidden_size = 6
        num_layers = 2
        seq_length = 7
        batch = 6

        # runs on CPU to acquire expected output
        def check_weight_norm(m, name):
            input = torch.randn(seq_length, batch, input_size)
            expected_output = m(input)

            # adds weight normalization
            m = torch.nn.utils.weight_norm(m, name=name)

            # moves to CUDA
            m = m.to("cpu")
            input = input.to("cpu")

            # otherwise, subsequent warnings will be hidden, and further tests rely on them
            warnings.simplefilter("always")
            self.assertEqual(m(input), expected_output)

            # remove weight norm
            m = torch.nn.utils.remove_weight_norm(m, name=name)
            self.assertEqual(m(input), expected_output)

        check_weight_norm(dl.LSTM(input_size, hidden_size, num_layers), 'weight_hh_l0')
        check_weight_norm(dl.LSTM(input_size, hidden_size, num_layers, proj_size=3), 'weight_hr_l0')

    # test/test_nn.py@74f2fa66 TestNN.test_partial_flat_weights, adapted: `m.cuda()` became
    # `m.to("cpu")`, and `.cuda()`/`.cpu()` on tensors `.to("cpu")` (no GPU here).
    def test_partial_flat_weights(self):
        input_size = 10
        hidden_size = 6
        num_layers = 2

        m = dl.LSTM(input_size, hidden_size, num_layers)
        inp = torch.randn(3, 2, 10)
        out_expected = m(inp)
        # deletes an attribute of original LSTM
        weight_orig = m.weight_hh_l0
        del m.weight_hh_l0
        self.assertFalse(hasattr(m, "weight_hh_l0"))
        # verifies that moving to CUDA with only some attributes defined
        # does not throw an error
        m.to("cpu")
        # recompute the weight and make sure that module can be used
        m.weight_hh_l0 = weight_orig.to("cpu")
        inp = inp.to("cpu")
        # otherwise, subsequent warnings will be hidden, and further tests rely on them
        warnings.simplefilter("always")
        self.assertEqual(m(inp)[0].to("cpu"), out_expected[0])

    # test/test_nn.py@74f2fa66 TestNN.test_error_RNN_seq_len_zero (module nn.LSTM, device 'cpu';
    # PyTorch skips the whole test without cuDNN, but its CPU part needs none)
    @set_default_dtype(torch.double)
    def test_error_RNN_seq_len_zero(self):
        # checking error message when RNN has seq_len = 0
        for module in (dl.LSTM,):
            for bidirectional in [True, False]:
                for device in ['cpu']:
                    input = torch.ones(0, 10, 5)
                    rnn = module(5, 6, bidirectional=bidirectional)
                    if device == 'cuda':
                        rnn.cuda()
                        input = input.cuda()

                    with self.assertRaisesRegex(RuntimeError, "Expected sequence length to be larger than 0 in RNN"):
                        rnn(input)

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_input_size_zero (module nn.LSTM, device 'cpu')
    @pytest.mark.xfail(
        raises=LSTMInputError, strict=True,
        reason="deliberate: deploy_lstm.LSTM refuses an empty batch (LSTMInputError); "
        "nn.LSTM returns empty outputs",
    )
    def test_RNN_input_size_zero(self):
        for module in (dl.LSTM,):
            for device in ['cpu']:
                input = torch.zeros((5, 0, 3))
                rnn = module(input_size=3, hidden_size=4)
                if device == 'cuda':
                    rnn.cuda()
                    input = input.cuda()
                outs = rnn(input)
                self.assertEqual(outs[0].shape, torch.Size([5, 0, 4]))
                # Check that backward does not cause a hard error
                outs[0].sum().backward()

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_dropout_state, adapted: nn.RNN(100, 100, 2,
    # bias=False, dropout=p, nonlinearity='relu') became deploy_lstm.LSTM(100, 100, 2,
    # bias=False, dropout=p) and hx a pair; CPU only (cuda=False).  The original builds no
    # LSTM, but its assertions (dropout only in training, state survives torch.save) hold.
    def test_RNN_dropout_state(self):
        for p in (0, 0.1234):
            for train in (True, False):
                for cuda in (False,):
                    rnn = dl.LSTM(100, 100, 2, bias=False, dropout=p)
                    if cuda:
                        rnn.cuda()

                    if train:
                        rnn.train()
                    else:
                        rnn.eval()
                    input = torch.rand(1, 1, 100)
                    hx = (torch.rand(2, 1, 100), torch.rand(2, 1, 100))
                    if cuda:
                        input = input.cuda()
                        hx = hx.cuda()

                    output1, hy1 = rnn(input, hx)
                    output2, hy2 = rnn(input, hx)

                    buf = io.BytesIO()
                    rnn_pickle = torch.save(rnn, buf)
                    buf.seek(0)
                    # weights_only=False as this is legacy code that saves the model
                    rnn2 = torch.load(buf, weights_only=False)
                    rnn2.flatten_parameters()
                    output3, hy3 = rnn2(input, hx)

                    if p == 0 or not train:
                        self.assertEqual(output1, output2)
                        self.assertEqual(output1, output3)
                        self.assertEqual(hy1, hy2)
                        self.assertEqual(hy1, hy3)
                    else:
                        self.assertNotEqual(output1, output2)
                        self.assertNotEqual(output1, output3)
                        self.assertNotEqual(hy1, hy2)
                        self.assertNotEqual(hy1, hy3)

    # test/test_nn.py@74f2fa66 TestNN.test_RNN_change_dropout, adapted: nn.RNN(100, 100, 2,
    # dropout=0, nonlinearity='relu') became deploy_lstm.LSTM(100, 100, 2, dropout=0); CPU only.
    @set_default_dtype(torch.double)
    def test_RNN_change_dropout(self):
        for train, cuda in product((True, False), (False,)):
            rnn = dl.LSTM(100, 100, 2, dropout=0)
            input = torch.rand(3, 2, 100)
            if cuda:
                input.data = input.data.cuda()
                rnn.cuda()

            if train:
                rnn.train()
            else:
                rnn.eval()

            prev_output = None
            for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
                rnn.dropout = p
                output1, hy1 = rnn(input)
                output2, hy2 = rnn(input)

                if p == 0 or p == 1 or not train:
                    self.assertEqual(output1, output2)
                    self.assertEqual(hy1, hy2)
                else:
                    self.assertNotEqual(output1, output2)
                    self.assertNotEqual(hy1, hy2)

                if prev_output is not None:
                    if not train:
                        self.assertEqual(output1.data, prev_output)
                        self.assertEqual(output2.data, prev_output)
                    else:
                        self.assertNotEqual(output1.data, prev_output)
                        self.assertNotEqual(output2.data, prev_output)
                prev_output = output1.data


# -- test/test_nn.py@74f2fa66: class TestNNDeviceType, instantiated for the CPU -----------------------------


class TestNNDeviceTypeCPU(TestCase):
    """Cases of ``TestNNDeviceType`` in test/test_nn.py that build an LSTM, with
    ``device='cpu'`` and the dtype PyTorch's ``@dtypes`` gives the CPU."""

    device = "cpu"

    # test/test_nn.py@74f2fa66 TestNNDeviceType.test_rnn_fused, adapted: PyTorch runs it only
    # on CUDA, comparing nn (CPU) with nn on the device; here the "device" module is
    # deploy_lstm.LSTM on the CPU and the CPU module the nn.LSTM oracle; nn.GRU dropped.
    def _test_rnn_fused(self, device, dtype):

        def copy_rnn(rnn1, rnn2):
            for x_layer, y_layer in zip(rnn1.all_weights, rnn2.all_weights):
                for x, y in zip(x_layer, y_layer):
                    x.data.copy_(y.data)

        def check_rnn_grads(rnn1, rnn2):
            for x_layer, y_layer in zip(rnn1.all_weights, rnn2.all_weights):
                for x, y in zip(x_layer, y_layer):
                    self.assertEqual(x.grad, y.grad, atol=5e-5, rtol=0)

        input_size = 10
        hidden_size = 6
        num_layers = 2
        seq_length = 7
        batch = 6
        input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
        grad_output = torch.randn(seq_length, batch, hidden_size, dtype=dtype)
        hx_val = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
        grad_hy = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
        with torch.backends.cudnn.flags(enabled=False, allow_tf32=None):
            for module, module_device in ((nn.LSTM, dl.LSTM),):
                for bias in (True, False):
                    rnn = module(input_size, hidden_size, num_layers, bias=bias).to(dtype)
                    rnn_device = module_device(input_size, hidden_size, num_layers, bias=bias).to(device, dtype)
                    copy_rnn(rnn, rnn_device)

                    is_lstm = isinstance(rnn, nn.LSTM)
                    if is_lstm:
                        hx = (hx_val.clone().requires_grad_(True),
                              hx_val.clone().add(1).requires_grad_(True))
                        hx_device = (hx_val.clone().to(device).requires_grad_(True),
                                     hx_val.clone().to(device).add(1).requires_grad_(True))
                    else:
                        hx = hx_val.clone().requires_grad_(True)
                        hx_device = hx_val.clone().to(device).requires_grad_(True)

                    inp = input_val.clone().requires_grad_(True)
                    inp_cu = input_val.clone().to(device).requires_grad_(True)
                    output1, hy1 = rnn(inp, hx)
                    output2, hy2 = rnn_device(inp_cu, hx_device)
                    if is_lstm:
                        torch.autograd.backward(
                            [output1, hy1[0], hy1[1]], [grad_output, grad_hy, grad_hy + 1]
                        )
                        torch.autograd.backward(
                            [output2, hy2[0], hy2[1]],
                            [grad_output.to(device), grad_hy.to(device), (grad_hy + 1).to(device)]
                        )
                    else:
                        torch.autograd.backward([output1, hy1], [grad_output, grad_hy])
                        torch.autograd.backward([output2, hy2], [grad_output.to(device), grad_hy.to(device)])

                    self.assertEqual(output1, output2)
                    self.assertEqual(hy1, hy2)

                    check_rnn_grads(rnn, rnn_device)
                    self.assertEqual(inp.grad, inp_cu.grad)
                    if is_lstm:
                        self.assertEqual(hx[0].grad, hx_device[0].grad)
                        self.assertEqual(hx[1].grad, hx_device[1].grad)
                    else:
                        self.assertEqual(hx.grad, hx_device.grad)

    # @dtypes(torch.float, torch.double)
    def test_rnn_fused_cpu_float32(self):
        self._test_rnn_fused(self.device, torch.float)

    def test_rnn_fused_cpu_float64(self):
        self._test_rnn_fused(self.device, torch.double)

    # test/test_nn.py@74f2fa66 TestNNDeviceType.test_variable_sequence (@dtypes(torch.float) on the CPU)
    def test_variable_sequence_cpu_float32(self, device="cpu", dtype=torch.float):
        def pad(var, length):
            if var.size(0) == length:
                return var
            return torch.cat([var, var.new_zeros(length - var.size(0), *var.size()[1:])])

        def maybe_index_tuple(maybe_tuple_of_tensors, index):
            if maybe_tuple_of_tensors is None:
                return None
            return tuple(maybe_tuple_of_tensors[j][:, index:index + 1, :].contiguous()
                         for j in range(2))

        def check_lengths(lengths, enforce_sorted, use_default_hiddens, proj_size):
            input_size = 3
            hidden_size = 4
            num_layers = 2
            bidirectional = True

            max_length = max(lengths)
            x_leaf = torch.randn(max_length, len(lengths), input_size, device=device,
                                 dtype=dtype, requires_grad=True)
            num_directions = 2 if bidirectional else 1
            lstm = dl.LSTM(input_size, hidden_size, bidirectional=bidirectional,
                           num_layers=num_layers, proj_size=proj_size).to(device, dtype)
            lstm2 = deepcopy(lstm).to(device, dtype)
            x = x_leaf

            hidden0 = None
            if not use_default_hiddens:
                real_hidden_size = hidden_size if proj_size == 0 else proj_size
                hidden0 = (torch.randn(num_directions * num_layers, len(lengths), real_hidden_size,
                                       device=device, dtype=dtype),
                           torch.randn(num_directions * num_layers, len(lengths), hidden_size,
                                       device=device, dtype=dtype))

            # Compute sequences separately
            seq_outs = []
            seq_hiddens = []
            for i, l in enumerate(lengths):
                hidden_i = maybe_index_tuple(hidden0, i)
                out, hid = lstm2(x[:l, i:i + 1], hidden_i)
                out_pad = pad(out, max_length)
                seq_outs.append(out_pad)
                seq_hiddens.append(hid)
            seq_out = torch.cat(seq_outs, 1)
            seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens))

            # Use packed format
            packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
            packed_out, packed_hidden = lstm(packed, hidden0)
            unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)

            # Check forward
            prec = dtype2prec_DONTUSE[dtype]
            self.assertEqual(packed_hidden, seq_hidden, atol=prec, rtol=0)
            self.assertEqual(unpacked, seq_out, atol=prec, rtol=0)
            self.assertEqual(unpacked_len, lengths, atol=prec, rtol=0)

            # Check backward
            seq_out.sum().backward()
            grad_x = x_leaf.grad.data.clone()
            x_leaf.grad.data.zero_()
            unpacked.sum().backward()

            self.assertEqual(x_leaf.grad, grad_x, atol=dtype2prec_DONTUSE[dtype], rtol=0)
            for p1, p2 in zip(lstm.parameters(), lstm2.parameters()):
                prec = dtype2prec_DONTUSE[dtype]
                if dtype == torch.float16:
                    prec = 4e-2
                elif dtype == torch.float32:
                    prec = 2e-4
                self.assertEqual(p1.grad, p2.grad, atol=prec, rtol=0)

        tests = [
            # enforce_sorted, lengths
            [True, [5]],
            [False, [5]],
            [True, [10, 10, 6, 2, 2, 1, 1]],
            [False, [10, 10, 6, 2, 2, 1, 1]],
            [False, [2, 1, 3, 2, 10, 5, 3]],
        ]

        for enforce_sorted, seq_lens, in tests:
            for use_default_hiddens in (True, False):
                for proj_size in [0, 2]:
                    check_lengths(seq_lens, enforce_sorted, use_default_hiddens, proj_size)

    # test/test_nn.py@74f2fa66 TestNNDeviceType._test_rnn_retain_variables (the nn.LSTM entry)
    def _test_rnn_retain_variables(self, device, dtype):
        rnns = [dl.LSTM(10, 20, num_layers=2).to(device, dtype)]
        for rnn in rnns:
            input = torch.randn(5, 6, 10, device=device, dtype=dtype, requires_grad=True)
            output = rnn(input)
            output[0].sum().backward(retain_graph=True)
            grads = [input.grad.data.clone()] + [p.grad.data.clone() for p in rnn.parameters()]
            for _ in range(4):
                rnn.zero_grad()
                input.grad.data.zero_()
                output[0].sum().backward(retain_graph=True)
                grads2 = [input.grad.data] + [p.grad.data for p in rnn.parameters()]
                self.assertEqual(grads, grads2)

    # test/test_nn.py@74f2fa66 TestNNDeviceType.test_rnn_retain_variables (@dtypes(torch.double) on the CPU)
    def test_rnn_retain_variables_cpu_float64(self, device="cpu", dtype=torch.double):
        self._test_rnn_retain_variables(device, dtype)

    # test/test_nn.py@74f2fa66 TestNNDeviceType.test_lstmcell_backward_only_one_output_grad,
    # adapted: PyTorch runs it only on CUDA (@onlyCUDA); the check (#11872) is device-free,
    # so it runs on the CPU.
    def test_lstmcell_backward_only_one_output_grad_cpu_float64(self, device="cpu", dtype=torch.double):
        # checks that undefined gradients doesn't hamper the backward
        # see #11872
        l = dl.LSTMCell(2, 3).to(device).to(dtype=dtype)
        s = torch.randn(1, 2, device=device, dtype=dtype, requires_grad=True)
        for i in range(2):
            out = l(s)[i]
            out.sum().backward()
            self.assertFalse(s.grad is None or s.grad.abs().sum().item() == 0)

    # test/test_nn.py@74f2fa66 TestNNDeviceType._test_rnn_mod (its cuDNN double-backward check
    # sits under `if inp.is_cuda`, so it does not run on the CPU)
    def _test_rnn_mod(self, mod, inp):
        def flatten_out(mod, inp):
            out = mod(inp)
            return tuple([t if isinstance(t, torch.Tensor) else tt for t in out for tt in t])
        gradcheckfunc = partial(flatten_out, mod)
        with torch.backends.cudnn.flags(enabled=False):
            gradcheck(gradcheckfunc, inp, check_batched_grad=False)
            gradgradcheck(gradcheckfunc, inp, check_batched_grad=False)

        if inp.is_cuda and not TEST_WITH_ROCM:
            # Assert that we have good error message around unsupported CuDNN double backward
            # NB: we trigger double backward using .backward() instead of autograd.grad due to
            # https://github.com/pytorch/pytorch/issues/37874
            with torch.backends.cudnn.flags(enabled=True):
                result = gradcheckfunc(inp)
                result[0].sum().backward(create_graph=True)
                grad0 = next(mod.parameters()).grad
                with self.assertRaisesRegex(RuntimeError,
                                            "please disable the CuDNN backend temporarily"):
                    grad0.sum().backward()

                # Here we avoid the backward(create_graph=True) memory leak
                # described in https://github.com/pytorch/pytorch/issues/7343
                for param in mod.parameters():
                    param.grad = None
                inp.grad = None

    # test/test_nn.py@74f2fa66 TestNNDeviceType.test_LSTM_grad_and_gradgrad (@dtypes(torch.double))
    def test_LSTM_grad_and_gradgrad_cpu_float64(self, device="cpu", dtype=torch.double):
        hsize = 4
        inp = torch.rand(1, 3, hsize, device=device, dtype=dtype, requires_grad=True)
        for bias in [True, False]:
            mod = dl.LSTM(hsize, hsize, bias=bias).to(device).to(dtype)
            self._test_rnn_mod(mod, inp)

    # test/test_nn.py@74f2fa66 TestNNDeviceType.test_LSTM_differentiable_backward_using_oneDNN (@onlyCPU)
    def test_LSTM_differentiable_backward_using_oneDNN(self):
        batch = 10
        seq_len = 12
        input = 3
        Net = dl.LSTM(input, 3, 20, batch_first=True)
        import copy
        Net_clone = copy.deepcopy(Net)
        x = torch.rand(batch, seq_len, input)
        x1 = x.clone().requires_grad_(True)
        x2 = x.clone().requires_grad_(True)

        torch._C._set_mkldnn_enabled(False)
        out1, _ = Net(x1)
        der_out1 = torch.autograd.grad(out1, x1,
                                       grad_outputs=torch.ones_like(out1),
                                       retain_graph=True,
                                       create_graph=True)[0]
        loss1 = der_out1.sum()
        loss1.backward(retain_graph=True)

        torch._C._set_mkldnn_enabled(True)
        out2, _ = Net(x2)
        der_out2 = torch.autograd.grad(out2, x2,
                                       grad_outputs=torch.ones_like(out2),
                                       retain_graph=True,
                                       create_graph=True)[0]
        loss2 = der_out2.sum()
        loss2.backward(retain_graph=True)
        assert torch.allclose(der_out1, der_out2)
        assert torch.allclose(x1.grad, x2.grad)


# -- CM: the module DB entries for nn.LSTM and nn.LSTMCell ---------------------------
#
# The records below stand in for CM's FunctionInput / ModuleInput / ErrorModuleInput;
# the sample functions are CM's, with their bodies unchanged.


class FunctionInput:
    """CM.FunctionInput: the positional and keyword arguments of one call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


class ModuleInput(NamedTuple):
    """CM.ModuleInput (the fields LSTM's samples use)."""

    constructor_input: FunctionInput
    forward_input: Optional[FunctionInput] = None
    reference_fn: Optional[Callable] = None


class ModuleErrorEnum:
    """CM.ModuleErrorEnum."""

    CONSTRUCTION_ERROR = 0
    FORWARD_ERROR = 1


class ErrorModuleInput(NamedTuple):
    """CM.ErrorModuleInput."""

    module_error_input: ModuleInput
    error_on: int = ModuleErrorEnum.CONSTRUCTION_ERROR
    error_type: type = RuntimeError
    error_regex: str = ""


class freeze_rng_state:
    """common_utils.freeze_rng_state (CPU): the RNG state is restored on exit."""

    def __enter__(self) -> None:
        self.state = torch.get_rng_state()

    def __exit__(self, *exc: Any) -> None:
        torch.set_rng_state(self.state)


# torch/testing/_internal/common_modules.py@cf30153c no_batch_dim_reference_lstm
def no_batch_dim_reference_lstm(m, p, *args, **kwargs):
    """Reference function for LSTM supporting no batch dimensions.

    Unbatched inputs are unsqueezed to form a
    single batch input before passing them to the module.
    The output is squeezed to compare with the
    output of unbatched input to the module.
    """
    if len(args) == 1:
        inp, = args
        h = None
    elif len(args) == 2:
        inp, h = args
        h = (h[0].unsqueeze(1), h[1].unsqueeze(1))

    batch_dim = 0 if kwargs['batch_first'] else 1
    kwargs.pop('batch_first')
    inp = inp.unsqueeze(batch_dim)
    single_batch_input_args = (inp, h)
    with freeze_rng_state():
        output = m(*single_batch_input_args, **kwargs)
        return (output[0].squeeze(batch_dim), (output[1][0].squeeze(1), output[1][1].squeeze(1)))


# torch/testing/_internal/common_modules.py@cf30153c no_batch_dim_reference_lstmcell
def no_batch_dim_reference_lstmcell(m, p, *args, **kwargs):
    """Reference function for LSTMCell supporting no batch dimensions.

    The module is passed the input and target in batched form with a single item.
    The output is squeezed to compare with the no-batch input.
    """
    inp, (h, c) = args
    single_batch_input_args = (inp.unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
    with freeze_rng_state():
        output = m(*single_batch_input_args, **kwargs)
        return (output[0].squeeze(0), output[1].squeeze(0))


# torch/testing/_internal/common_modules.py@cf30153c module_inputs_torch_nn_LSTMCell
def module_inputs_torch_nn_LSTMCell(module_info, device, dtype, requires_grad, training, **kwargs):
    # Currently all samples below are for validating the no-batch-dim support.
    make_input = partial(make_tensor, device=device, dtype=dtype, requires_grad=requires_grad)
    samples = (
        ModuleInput(
            constructor_input=FunctionInput(5, 10),
            forward_input=FunctionInput(make_input(5), (make_input(10), make_input(10))),
            reference_fn=no_batch_dim_reference_lstmcell,
        ),
        ModuleInput(
            constructor_input=FunctionInput(5, 10, bias=True),
            forward_input=FunctionInput(make_input(5), (make_input(10), make_input(10))),
            reference_fn=no_batch_dim_reference_lstmcell,
        ),
    )

    return samples


# torch/testing/_internal/common_modules.py@cf30153c module_inputs_torch_nn_LSTM
def module_inputs_torch_nn_LSTM(module_info, device, dtype, requires_grad, training, **kwargs):
    # Currently all samples below are for validating the no-batch-dim support.
    make_input = partial(make_tensor, device=device, dtype=dtype, requires_grad=requires_grad)
    bias = (False, True)
    batch_first = (False, True)
    bidirectional = (False, True)
    proj_sizes = (0, 2)

    samples = []
    prod_gen = product(bias, batch_first, bidirectional, proj_sizes)

    for args in prod_gen:
        b, b_f, bidir, proj_size = args
        hidden_size = 3
        cons_args = {'input_size': 2, 'hidden_size': hidden_size, 'num_layers': 2, 'proj_size': proj_size,
                     'batch_first': b_f, 'bias': b, 'bidirectional': bidir}
        cons_args_hidden = {'input_size': 2, 'hidden_size': hidden_size, 'num_layers': 2, 'proj_size': proj_size,
                            'batch_first': b_f, 'bias': b, 'bidirectional': bidir}

        samples.append(
            ModuleInput(
                constructor_input=FunctionInput(**cons_args),
                forward_input=FunctionInput(make_input((2, 2))),
                reference_fn=partial(no_batch_dim_reference_lstm, batch_first=b_f),
            )
        )

        h_out = proj_size if proj_size > 0 else hidden_size
        hx = (make_input((4 if bidir else 2, h_out)), make_input((4 if bidir else 2, hidden_size)))
        samples.append(
            ModuleInput(
                constructor_input=FunctionInput(**cons_args_hidden),
                forward_input=FunctionInput(make_input((3, 2)), hx),
                reference_fn=partial(no_batch_dim_reference_lstm, batch_first=b_f),
            )
        )


    return samples


# torch/testing/_internal/common_modules.py@cf30153c module_error_inputs_torch_nn_LSTMCell
def module_error_inputs_torch_nn_LSTMCell(module_info, device, dtype, requires_grad, training, **kwargs):
    make_input = partial(make_tensor, device=device, dtype=dtype, requires_grad=requires_grad)
    samples = [
        ErrorModuleInput(
            ModuleInput(
                constructor_input=FunctionInput(10, 20),
                forward_input=FunctionInput(make_input(3, 11), (make_input(3, 20), make_input(3, 20))),
            ),
            error_on=ModuleErrorEnum.FORWARD_ERROR,
            error_type=RuntimeError,
            error_regex="input has inconsistent input_size: got 11 expected 10"
        ),
        ErrorModuleInput(
            ModuleInput(
                constructor_input=FunctionInput(10, 20),
                forward_input=FunctionInput(make_input(3, 10), (make_input(3, 21), make_input(3, 21))),
            ),
            error_on=ModuleErrorEnum.FORWARD_ERROR,
            error_type=RuntimeError,
            error_regex="hidden0 has inconsistent hidden_size: got 21, expected 20"
        ),
        ErrorModuleInput(
            ModuleInput(
                constructor_input=FunctionInput(10, 20),
                forward_input=FunctionInput(make_input(3, 10), (make_input(5, 20), make_input(5, 20))),
            ),
            error_on=ModuleErrorEnum.FORWARD_ERROR,
            error_type=RuntimeError,
            error_regex="Input batch size 3 doesn't match hidden0 batch size 5"
        ),
        ErrorModuleInput(
            ModuleInput(
                constructor_input=FunctionInput(10, 20),
                forward_input=FunctionInput(make_input(3, 10), (make_input(3, 1, 1, 20), make_input(3, 1, 1, 20))),
            ),
            error_on=ModuleErrorEnum.FORWARD_ERROR,
            error_type=ValueError,
            error_regex="Expected hx\\[0\\] to be 1D or 2D, got 4D instead"
        ),
    ]
    return samples


# torch/testing/_internal/common_modules.py@cf30153c module_error_inputs_torch_nn_RNN_GRU
# (nn.LSTM's module_error_inputs_func)
def module_error_inputs_torch_nn_RNN_GRU(module_info, device, dtype, requires_grad, training, **kwargs):
    # use float64 for dtype mismatch test if current dtype is float32, otherwise use float32
    # MPS doesn't support float64, so use float16 instead
    # Extract device type from device string (e.g., 'mps:0' -> 'mps')
    device_type = device.split(':')[0] if isinstance(device, str) else device.type
    if dtype == torch.float32:
        mismatched_dtype = torch.float16 if device_type == 'mps' else torch.float64
    else:
        mismatched_dtype = torch.float32
    make_input = partial(make_tensor, device=device, dtype=mismatched_dtype, requires_grad=requires_grad)

    samples = [
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(10, 0, 1)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=ValueError,
            error_regex="hidden_size must be greater than zero"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(10, 10, 0)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=ValueError,
            error_regex="num_layers must be greater than zero"
        ),
        # Test dtype mismatch error message
        ErrorModuleInput(
            ModuleInput(
                constructor_input=FunctionInput(3, 5, dtype=dtype, device=device),
                forward_input=FunctionInput(make_input((2, 4, 3))),
            ),
            error_on=ModuleErrorEnum.FORWARD_ERROR,
            error_type=ValueError,
            error_regex=(r"RNN input dtype .* does not match weight dtype .* "
                         r"Convert input: input\.to\(.*\), or convert model: model\.to\(.*\)")
        ),
        # Test bias parameter type validation
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5, bias=0)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="bias should be of type bool, got: int"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5, bias=1)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="bias should be of type bool, got: int"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5, bias="True")),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="bias should be of type bool, got: str"
        ),
        # Test batch_first parameter type validation
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5, batch_first=0)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="batch_first should be of type bool, got: int"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5, batch_first=1)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="batch_first should be of type bool, got: int"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5, batch_first="False")),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="batch_first should be of type bool, got: str"
        ),
        # Test input_size parameter type validation
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3.0, 5)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="input_size should be of type int, got: float"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput("10", 5)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="input_size should be of type int, got: str"
        ),
        # Test input_size parameter value validation
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(0, 5)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=ValueError,
            error_regex="input_size must be greater than zero"
        ),
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(-1, 5)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=ValueError,
            error_regex="input_size must be greater than zero"
        ),
        # Test hidden_size parameter type validation
        ErrorModuleInput(
            ModuleInput(constructor_input=FunctionInput(3, 5.0)),
            error_on=ModuleErrorEnum.CONSTRUCTION_ERROR,
            error_type=TypeError,
            error_regex="hidden_size should be of type int, got: float"
        ),
    ]
    return samples


class ModuleInfo(NamedTuple):
    """The parts of CM.ModuleInfo used here: the oracle class, ours, the sample functions."""

    module_cls: type
    ours: type
    module_inputs_func: Callable
    module_error_inputs_func: Callable


# torch/testing/_internal/common_modules.py@cf30153c module_db entries
# ModuleInfo(torch.nn.LSTMCell, ...) and ModuleInfo(torch.nn.LSTM, train_and_eval_differ=True, ...).
# Their skips and decorators apply to MPS and CUDA only.
MODULE_DB = [
    ModuleInfo(nn.LSTMCell, dl.LSTMCell, module_inputs_torch_nn_LSTMCell, module_error_inputs_torch_nn_LSTMCell),
    ModuleInfo(nn.LSTM, dl.LSTM, module_inputs_torch_nn_LSTM, module_error_inputs_torch_nn_RNN_GRU),
]
DB_IDS = ["LSTMCell", "LSTM"]
FLOATING = [torch.float32, torch.float64]  # the dtypes test_modules.py runs a ModuleInfo with


def _tensors(obj: Any) -> List[torch.Tensor]:
    """The tensors in a nested tuple/list, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _map(obj: Any, fn: Callable) -> Any:
    """``obj`` with each tensor ``t`` replaced by ``fn(t)``."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(o, fn) for o in obj)
    return obj


def _pair(info: ModuleInfo, module_input: ModuleInput, dtype: torch.dtype, training: bool):
    """(ours, oracle): the oracle built from the sample, ours with its weights copied."""
    args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    ref = info.module_cls(*args, **kwargs).to(dtype).train(training)
    ours = info.ours(*args, **kwargs).to(dtype).train(training)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def _samples(info: ModuleInfo, dtype: torch.dtype, training: bool, requires_grad: bool):
    return info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=requires_grad, training=training
    )


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", FLOATING, ids=["f32", "f64"])
@pytest.mark.parametrize("info", MODULE_DB, ids=DB_IDS)
def test_module_db_forward(info, dtype, training):
    """CM samples through test_modules.py's test_forward: output equals the sample's
    reference_fn; and here also the oracle's output with the same weights."""
    asserts = TestCase()
    for module_input in _samples(info, dtype, training, requires_grad=False):
        ours, ref = _pair(info, module_input, dtype, training)
        args, kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
        with freeze_rng_state():
            outputs = ours(*args, **kwargs)
            # test_modules.py test_forward: compare outputs to the reference if one is specified
            ref_outputs = module_input.reference_fn(ours, list(ours.parameters()), *args, **kwargs)
            asserts.assertEqual(outputs, ref_outputs)
        asserts.assertEqual(outputs, ref(*args, **kwargs))


@pytest.mark.parametrize("contiguous", [True, False], ids=["contig", "noncontig"])
@pytest.mark.parametrize("dtype", FLOATING, ids=["f32", "f64"])
@pytest.mark.parametrize("info", MODULE_DB, ids=DB_IDS)
def test_module_db_backward(info, dtype, contiguous):
    """CM samples with requires_grad=True (test_modules.py's test_grad and
    test_non_contiguous_tensors use them so): the gradients of a random functional of
    the outputs, w.r.t. every input and parameter, equal the oracle's."""
    asserts = TestCase()

    def noncontig(t: torch.Tensor) -> torch.Tensor:
        # test_modules.py test_non_contiguous_tensors: _make_non_contiguous
        out = torch.repeat_interleave(t, 2, dim=-1)[..., ::2].detach()
        out.requires_grad = t.requires_grad
        return out

    for module_input in _samples(info, dtype, training=True, requires_grad=True):
        ours, ref = _pair(info, module_input, dtype, training=True)
        args = module_input.forward_input.args
        if not contiguous:
            args = _map(args, noncontig)
            assert not all(t.is_contiguous() for t in _tensors(args))
        grads = []
        for module in (ours, ref):
            inputs = _map(args, lambda t: t.detach().requires_grad_(True))  # strides kept
            assert contiguous or not all(t.is_contiguous() for t in _tensors(inputs))
            outputs = _tensors(module(*inputs))
            gen = torch.Generator().manual_seed(0)
            loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
            wrt = _tensors(inputs) + list(module.parameters())
            grads.append(torch.autograd.grad(loss, wrt))
        asserts.assertEqual(grads[0], grads[1])


@pytest.mark.parametrize("info", MODULE_DB, ids=DB_IDS)
def test_module_db_pickle(info):
    """CM samples through test_modules.py's test_pickle: a torch.save'd module gives the same output."""
    asserts = TestCase()
    for module_input in _samples(info, torch.float32, training=False, requires_grad=False):
        ours, _ = _pair(info, module_input, torch.float32, training=False)
        args = module_input.forward_input.args
        output = ours(*args)
        with tempfile.TemporaryFile() as f:
            torch.save(ours, f)
            f.seek(0)
            m_copy = torch.load(f, weights_only=False)
            asserts.assertEqual(output, m_copy(*args))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", FLOATING, ids=["f32", "f64"])
@pytest.mark.parametrize("info", MODULE_DB, ids=DB_IDS)
def test_module_db_errors(info, dtype, training):
    """CM error inputs through test_modules.py's test_errors: the same exception type
    and message regex -- checked on the oracle too, so a stale copy of the DB shows."""
    asserts = TestCase()
    error_inputs = info.module_error_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=False, training=training
    )
    assert error_inputs
    for module_cls in (info.module_cls, info.ours):
        for error_input in error_inputs:
            module_input = error_input.module_error_input
            c_args, c_kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
            if error_input.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
                with asserts.assertRaisesRegex(error_input.error_type, error_input.error_regex):
                    m = module_cls(*c_args, **c_kwargs)
            elif error_input.error_on == ModuleErrorEnum.FORWARD_ERROR:
                m = module_cls(*c_args, **c_kwargs)
                fw_args, fw_kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
                with asserts.assertRaisesRegex(error_input.error_type, error_input.error_regex):
                    m(*fw_args, **fw_kwargs)
            else:
                raise NotImplementedError(f"Unknown error type {error_input.error_on}")


CM_COPIES = [
    no_batch_dim_reference_lstm,
    no_batch_dim_reference_lstmcell,
    module_inputs_torch_nn_LSTMCell,
    module_inputs_torch_nn_LSTM,
    module_error_inputs_torch_nn_LSTMCell,
    module_error_inputs_torch_nn_RNN_GRU,
]


@pytest.mark.parametrize("fn", CM_COPIES, ids=[f.__name__ for f in CM_COPIES])
def test_module_db_copies_match_installed_torch(fn):
    """The CM functions above are the installed torch's, statement for statement (read as
    source, not imported): after a torch upgrade this fails until they are copied again."""
    path = Path(torch.__file__).parent / "testing" / "_internal" / "common_modules.py"
    theirs = {
        node.name: ast.dump(node)
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    ours = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    assert fn.__name__ in theirs, f"{fn.__name__} is gone from {path}"
    assert ast.dump(ours) == theirs[fn.__name__], f"{fn.__name__} differs from {path}"
