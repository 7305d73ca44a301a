"""Benchmark harness and int8 quantization: structure and accuracy, never timings."""

from __future__ import annotations

import argparse
import json

import onnx
import pytest
import torch

from deploy_lstm import LSTM, export_onnx, validate
from deploy_lstm import bench
from deploy_lstm.contract import LSTMConfig
from deploy_lstm.onnx_export import graph_ops
from deploy_lstm.quantize import QUANTIZED_LSTM, quantize_int8

#: int8 weights (per-tensor dynamic quantization): documented tolerance for the quantized model
INT8_ATOL = 5e-2


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = LSTMConfig(4, 8, num_layers=1, bidirectional=True)
    shapes = [bench.Shape("stream N=1 x2", 1, 2, True), bench.Shape("N=2 T=3", 2, 3)]
    res = bench.benchmark([cfg], shapes, threads=1, warmup=1, repeats=2, budget_s=0.1, log=lambda s: None)
    return res, bench.write_results(res, out), out


def test_bench_json_structure(smoke):
    res, paths, _ = smoke
    data = json.loads(paths["json"].read_text())
    assert set(data) >= {"machine", "settings", "flop_formula", "backends", "cases", "targets"}
    assert {"cpu", "cores", "torch", "onnxruntime", "peak_gflops_estimate"} <= set(data["machine"])
    assert [c["shape"] for c in data["cases"]] == ["stream N=1 x2", "N=2 T=3"]
    for case in data["cases"]:
        assert set(case["results"]) == set(bench.BACKENDS)
        assert case["results"][bench.NN]["ratio_vs_nn"] == pytest.approx(1.0)
        for name, r in case["results"].items():
            assert ("na" in r) or {"median_ms", "p10_ms", "p90_ms", "repeats", "ratio_vs_nn", "gflops"} <= set(r), name
    assert all({"target", "case", "ratio", "limit", "met"} <= set(t) for t in data["targets"])


def test_bench_markdown_and_chart(smoke):
    res, paths, _ = smoke
    md = paths["md"].read_text()
    assert "## Targets" in md and "| config | shape |" in md
    assert all(name in md for name in bench.BACKENDS)
    if paths["png"] is not None:  # matplotlib is the optional `bench` extra
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flops_formula():
    cfg = LSTMConfig(64, 256, num_layers=2, bidirectional=True, proj_size=128)
    per_dir_l0 = 2 * 4 * 256 * (64 + 128) + 2 * 256 * 128
    per_dir_l1 = 2 * 4 * 256 * (2 * 128 + 128) + 2 * 256 * 128
    assert bench.flops(cfg, 3, 5) == 2 * (per_dir_l0 + per_dir_l1) * 3 * 5


def test_cli_arguments(tmp_path):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--quick", "--config", "input_size=4,hidden_size=8", "--out", str(tmp_path)])
    assert args.quick and bench._parse_config(args.config) == LSTMConfig(4, 8)
    assert bench._parse_config('{"input_size": 4, "hidden_size": 8, "bidirectional": true}').bidirectional


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_int8_quantization(tmp_path, exporter):
    torch.manual_seed(0)
    model = LSTM(16, 32, num_layers=2, bidirectional=True).eval()
    src = export_onnx(model, tmp_path / "model.onnx", exporter=exporter)
    dst = quantize_int8(src, tmp_path / "int8.onnx")
    ops = graph_ops(onnx.load(str(dst)))
    assert ops.get(QUANTIZED_LSTM) == 2 and "LSTM" not in ops, ops
    report = validate(model, extra_onnx={"onnxruntime-int8": (dst, INT8_ATOL)}, devices=())
    assert report.passed, report.table()
    assert max(c.max_abs for c in report.checks if c.backend == "onnxruntime-int8") > 0
