"""The device target's timing: one chunk of an export folder's ``model.pte`` against eager ``torch.nn.LSTM``.

An ExecuTorch program runs a fixed chunk of a fixed batch (its manifest's ``details``), so
it is not timed over the benchmark's shapes: :func:`time_chunk` times its ``forward`` on
one chunk, state in and out as a stream runs it, beside ``nn.LSTM`` eager on the same
chunk and state, interleaved (:func:`deploy_lstm.bench.timing.measure_case`).  The ratio
of the two is what :func:`deploy_lstm.bench.recommend.recommend` scores the "device" target by.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

import torch

from deploy_lstm.bench.backends import NN
from deploy_lstm.bench.timing import Unavailable, measure_case
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.runtime.folder import RunnableFolder

__all__ = ["PTE_CHUNK", "time_chunk"]

#: the label of a model.pte's per-chunk timing
PTE_CHUNK = "executorch (.pte), one chunk"


def time_chunk(folder: ExportFolder, *, rounds: int = 5) -> Dict[str, Any]:
    """Time one chunk of ``folder``'s ``model.pte`` and of eager ``nn.LSTM`` on it.

    Returns:
        ``{"label", "chunk", "batch", "results": {label: timing}, "ratio"}``, ``ratio`` the
        program's median / nn.LSTM's (None when either could not run: ``results`` says why).
    """
    runner = RunnableFolder.of(folder).runner("executorch")
    cfg = folder.config
    ours = LSTM(**dataclasses.asdict(cfg))
    ours.load_state_dict(folder.state_dict())
    ref = ours.to_torch().eval()
    g = torch.Generator().manual_seed(0)
    time_first = (runner.batch, runner.chunk) if cfg.batch_first else (runner.chunk, runner.batch)
    x = torch.randn(*time_first, cfg.input_size, generator=g)
    h = torch.randn(cfg.num_layers, runner.batch, cfg.real_hidden_size, generator=g)
    c = torch.randn(cfg.num_layers, runner.batch, cfg.hidden_size, generator=g)

    def eager() -> Any:
        with torch.no_grad():
            return ref(x, (h, c))

    calls = {NN: eager, PTE_CHUNK: lambda: runner.forward.execute([x, h, c])}
    timed = measure_case(calls, rounds=rounds, warmup=3, block_s=0.02, max_calls=500, pause_s=0.01)
    results = {k: (v.to_dict() if isinstance(v, Unavailable) else v) for k, v in timed.items()}
    ok = all("median_ms" in results[k] for k in calls)
    ratio = results[PTE_CHUNK]["median_ms"] / results[NN]["median_ms"] if ok else None
    return {"label": PTE_CHUNK, "chunk": runner.chunk, "batch": runner.batch, "results": results, "ratio": ratio}
