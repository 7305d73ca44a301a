"""int8 quantization: structure, measured error, the tolerance rule, a broken model failing it, advice.

The tolerance is ``int8_tolerance(model)`` = INT8_ATOL_FACTOR x int8_step(model), derived from
measurements (benchmarks/results/int8/); these tests check the rule, that real int8 models
pass it, and that models broken by a few quantization steps or a wrong scale do not.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from deploy_lstm import LSTM, export_onnx, validate
from deploy_lstm.errors import ConfigError
from deploy_lstm.exporters.onnx import graph_ops
from deploy_lstm.check.int8 import (
    INT8_ATOL_FACTOR,
    INT8_WORTH_IT,
    int8_advice,
    int8_error,
    int8_expectation,
    int8_step,
    int8_tolerance,
)
from deploy_lstm.exporters.int8 import QUANTIZED_LSTM, quantize_int8

INT8 = "onnxruntime-int8"


def _int8_max(report) -> float:
    return max(c.max_abs for c in report.checks if c.backend == INT8)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_int8_quantization(tmp_path, exporter):
    torch.manual_seed(0)
    model = LSTM(16, 32, num_layers=2, bidirectional=True).eval()
    src = export_onnx(model, tmp_path / "model.onnx", exporter=exporter)
    dst = quantize_int8(src, tmp_path / "int8.onnx")
    ops = graph_ops(onnx.load(str(dst)))
    assert ops.get(QUANTIZED_LSTM) == 2 and "LSTM" not in ops, ops
    report = validate(model, extra_onnx={INT8: (dst, int8_tolerance(model))}, devices=())
    assert report.passed, report.table()
    # lossy, and of the size the rule predicts: 0.49-1.22 x int8_step measured at these shapes
    assert 0.2 * int8_step(model) < _int8_max(report) < 2 * int8_step(model)


# --- the tolerance rule ------------------------------------------------------------------------


def test_int8_step_is_the_weights_step_times_sqrt_fan_in():
    model = LSTM(4, 8, num_layers=2, bidirectional=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(0.01)
        model.weight_hh_l1_reverse[0, 0] = 0.254  # the largest weight: layer 1, fan-in 2*8 + 8
        model.weight_ih_l0[0, 0] = -0.508  # larger, but layer 0's fan-in is 4 + 8
    expected = max(0.254 / 127 * math.sqrt(16 + 8), 0.508 / 127 * math.sqrt(4 + 8))
    assert int8_step(model) == pytest.approx(expected)
    assert int8_tolerance(model) == pytest.approx(INT8_ATOL_FACTOR * expected)
    # nn.LSTM and a whole model around the LSTM give the same step
    assert int8_step(model.to_torch()) == pytest.approx(expected)
    assert int8_step(nn.Sequential(model, nn.Linear(16, 1))) == pytest.approx(expected)
    with torch.no_grad():  # linear in the weights' scale
        for p in model.parameters():
            p.mul_(2)
    assert int8_step(model) == pytest.approx(2 * expected)


def test_int8_step_counts_the_projection_and_refuses_a_model_without_lstm():
    model = LSTM(4, 8, proj_size=2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.0)
        model.weight_hr_l0[0, 0] = 1.27  # fan-in hidden_size = 8
    assert int8_step(model) == pytest.approx(0.01 * math.sqrt(8))
    with pytest.raises(ConfigError, match="no int8 tolerance to derive"):
        int8_step(nn.Linear(3, 3))


def _perturbed(model: LSTM, steps: float) -> LSTM:
    """``model`` with every weight moved by ``steps`` int8 steps (its tensor's max|W|/127), random signs."""
    bad = LSTM(**{k: getattr(model, k) for k in ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size")}).eval()
    bad.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, w in bad.named_parameters():
            if name.startswith("weight"):
                w += steps * w.abs().max() / 127 * (torch.randint(0, 2, w.shape, generator=g) * 2 - 1)
    return bad


def _rescaled(path, dst, factor: float):
    """The int8 model with every quantization scale multiplied by ``factor`` (a wrong scale)."""
    m = onnx.load(str(path))
    scaled = 0
    for init in m.graph.initializer:
        if init.name.endswith("_scale"):
            init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) * factor).astype(np.float32), init.name))
            scaled += 1
    assert scaled, "no scale initializers found"
    onnx.save(m, str(dst))
    return dst


@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(proj_size=8)], ids=["L2-bi", "P8"])
def test_a_broken_int8_model_fails_the_tolerance_the_real_one_passes(tmp_path, kw):
    torch.manual_seed(0)
    model = LSTM(16, 32, **kw).eval()
    tol = int8_tolerance(model)
    real = quantize_int8(export_onnx(model, tmp_path / "m.onnx"), tmp_path / "q.onnx")
    # weights off by 4 int8 steps: what a quantizer with the wrong rounding or a stale copy gives
    off = quantize_int8(export_onnx(_perturbed(model, 4), tmp_path / "off.onnx"), tmp_path / "off.int8.onnx")
    wrong_scale = _rescaled(real, tmp_path / "scale.onnx", 1.1)  # int8 scales 10% off
    report = validate(model, extra_onnx={INT8: (real, tol), "off by 4 steps": (off, tol), "scale x1.1": (wrong_scale, tol)}, devices=())
    failed = {c.backend for c in report.failures()}
    assert failed == {"off by 4 steps", "scale x1.1"}, report.table()


# --- int8_error --------------------------------------------------------------------------------


def test_int8_error_measures_against_float32(tmp_path):
    torch.manual_seed(0)
    model = LSTM(8, 16, num_layers=2).eval()
    fp32 = export_onnx(model, tmp_path / "m.onnx")
    int8 = quantize_int8(fp32, tmp_path / "q.onnx")
    err = int8_error(fp32, int8, [(1, 8), (3, 5)], np.random.default_rng(0))
    assert set(err) == {"max_abs", "mean_abs", "rel", "scale", "shapes"}
    assert [(s["batch"], s["sequence"]) for s in err["shapes"]] == [(1, 8), (3, 5)]
    assert err["max_abs"] == max(s["max_abs"] for s in err["shapes"])
    assert 0 < err["mean_abs"] < err["max_abs"] <= int8_tolerance(model)
    assert err["rel"] == pytest.approx(err["max_abs"] / err["scale"]) and 0 < err["rel"] < 0.05
    assert int8_error(fp32, int8, [(1, 8), (3, 5)], np.random.default_rng(0)) == err  # seeded: reproducible
    same = int8_error(fp32, fp32, [(2, 3)])
    assert same["max_abs"] == 0 and same["mean_abs"] == 0


# --- advice ------------------------------------------------------------------------------------


def test_int8_advice_follows_the_measured_speedup():
    assert int8_advice(2.2, 9e-3, 7e-4, 0.8).startswith("worth it: 2.20x faster than float32 onnxruntime for max error 9.0e-03 (1.1%")
    assert int8_advice(INT8_WORTH_IT, 9e-3, 7e-4).startswith("worth it")
    slow = int8_advice(1.31, 9e-3, 7e-4)
    assert slow.startswith(f"not worth it: only 1.31x faster than float32 onnxruntime (< {INT8_WORTH_IT:g}x)") and "ship model.onnx" in slow
    worth, why = int8_expectation(LSTM(4, 8, proj_size=4))
    assert not worth and "projection" in why and "deploy-lstm bench DIR" in why
    worth, why = int8_expectation(nn.Sequential(LSTM(4, 256)))
    assert worth and "deploy-lstm bench DIR" in why
    worth, why = int8_expectation(nn.Sequential(nn.Linear(4, 4), LSTM(4, 48, num_layers=2)))  # the demo's size
    assert not worth and "at hidden size 48" in why and "deploy-lstm bench DIR" in why


# --- the CLI summary ---------------------------------------------------------------------------


def test_cli_prints_int8_error_and_says_when_int8_does_not_pay(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "lstmp.pt"
    lstm = nn.LSTM(8, 32, proj_size=8)
    torch.save(lstm.state_dict(), ckpt)
    out = tmp_path / "o"
    run = lambda *a: subprocess.run([sys.executable, "-m", "deploy_lstm.cli", *a], capture_output=True, text=True, timeout=600)
    r = run("export", str(ckpt), "--out", str(out), "--quantize", "int8", "--artifacts", "onnx")
    assert r.returncode == 0, r.stderr
    assert "int8 vs float32 (onnxruntime, random inputs at N=1 T=128, N=32 T=128): max abs error " in r.stdout
    assert f"validated at atol {int8_tolerance(lstm):.1e}" in r.stdout
    assert "int8 is probably not worth it: with a projection" in r.stdout and "deploy-lstm bench DIR" in r.stdout
    r = run("validate", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["int8"]
    assert summary["expected_worth_it"] is False and 0 < summary["mean_abs"] < summary["max_abs"] < summary["atol"]
    assert summary["atol"] == pytest.approx(int8_tolerance(lstm))
