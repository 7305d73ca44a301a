"""The memory floor of a streaming step: the bytes of weights one step reads, and how fast this
machine copies bytes (shared by benchmarks/streaming.py and benchmarks/executorch_stream.py)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

from deploy_lstm.nn.config import LSTMConfig


def weight_bytes(cfg: LSTMConfig, itemsize: int = 4, int8: bool = False) -> int:
    """Bytes of the parameters one step reads (int8: W and R at 1 byte, biases float32)."""
    P, H = cfg.real_hidden_size, cfg.hidden_size
    total = 0
    for layer in range(cfg.num_layers):
        I = cfg.input_size if layer == 0 else P * cfg.num_directions
        matrices = 4 * H * (I + P) + (H * P if cfg.proj_size else 0)
        biases = 8 * H if cfg.bias else 0
        total += cfg.num_directions * (matrices * (1 if int8 else itemsize) + biases * itemsize)
    return total


def _best_time(fn: Callable[[], Any], seconds: float, pause_s: float) -> Tuple[float, float]:
    """(median, best) seconds per call over about ``seconds`` of calls, after an idle pause."""
    fn()
    time.sleep(pause_s)
    times: List[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def copy_bandwidth(nbytes: int, threads: int, seconds: float = 0.3, pause_s: float = 0.05) -> Dict[str, Any]:
    """GB/s of copying ``nbytes`` (bytes read per second, medians), torch and numpy."""
    n = max(nbytes // 4, 1)
    src_t, dst_t = torch.rand(n), torch.empty(n)
    src_n, dst_n = src_t.numpy().copy(), np.empty(n, np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t_torch, best_torch = _best_time(lambda: dst_t.copy_(src_t), seconds, pause_s)
    finally:
        torch.set_num_threads(previous)
    t_np, best_np = _best_time(lambda: np.copyto(dst_n, src_n), seconds, pause_s)
    gbs = {"torch_copy": n * 4 / t_torch / 1e9, "numpy_copy": n * 4 / t_np / 1e9}
    return {
        "bytes": n * 4, "threads": threads, "gbs": gbs, "best_gbs": max(gbs.values()),
        "best_of_calls_gbs": {"torch_copy": n * 4 / best_torch / 1e9, "numpy_copy": n * 4 / best_np / 1e9},
    }
