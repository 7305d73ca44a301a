"""The whole-model benchmark: an export folder's artifacts against its model in eager mode.

For a whole model or a bare LSTM (``deploy-lstm export --bench``, ``deploy-lstm bench
DIR`` of a whole model); the bare-LSTM matrix of shapes and extra backends is
:mod:`deploy_lstm.bench.lstm_matrix`.  Timed as every case is (:mod:`deploy_lstm.bench.timing`).
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from deploy_lstm.bench.backends import ARTIFACT_OF
from deploy_lstm.bench.timing import Call, Unavailable, machine, measure_case
from deploy_lstm.check.harness import EAGER, TORCH, Feeds, example_arrays, module_fn, random_inputs, reference_models
from deploy_lstm.errors import ConfigError
from deploy_lstm.exporters.signature import Signature, signature
from deploy_lstm.formats.contract import LENGTHS
from deploy_lstm.formats.folder import ExportFolder
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.nn.swap import restore_lstms
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.folder import RunnableFolder
from deploy_lstm.runtime.folder import load as runnable_folder

__all__ = ["MODEL_CASES", "ORIGINAL", "MODEL_BACKENDS", "ARTIFACT_LABELS", "BindFeeds", "folder_signature", "benchmark_model"]

#: (batch, sequence) shapes a whole model is timed at: one stream, one batch
MODEL_CASES: Tuple[Tuple[int, int], ...] = ((1, 32), (16, 64))
ORIGINAL = "original (torch.nn LSTMs) eager"
#: the whole-model benchmark's backend label of each artifact kind
MODEL_BACKENDS = {"torchscript": "torchscript", "onnx": "onnxruntime", "aoti": "aotinductor", "onnx-int8": "onnxruntime-int8",
                  "aoti-bf16": "aotinductor-bf16", "torchscript-bf16": "torchscript-bf16"}
#: every benchmark label that times an export folder's artifact -> its kind (what recommend needs)
ARTIFACT_LABELS = {**ARTIFACT_OF, **{label: kind for kind, label in MODEL_BACKENDS.items()}}

#: a backend of the whole-model benchmark: binds one case's feeds, returns the call that is timed
BindFeeds = Callable[[Feeds], Call]


def folder_signature(folder: ExportFolder) -> Signature:
    """The signature of the folder's model, rebuilt from its weights (a bare LSTM) or its factory (a whole model)."""
    spec = folder.model_spec()
    if folder.config is not None:
        return signature(spec.model, lengths=LENGTHS in folder.io.input_names)
    return signature(spec.model, **spec.call_arguments())


def _references(folder: ExportFolder) -> Tuple[Signature, Dict[str, BindFeeds]]:
    """(the model's signature, {ORIGINAL: the model holding torch.nn LSTMs, EAGER: the deploy_lstm model}, called on feeds).

    torch.nn has no variant cells: a whole model keeps them in its original (its plain LSTMs
    are restored); a bare LSTM with one has no original.

    Raises:
        ConfigError: a bare LSTM with a variant cell.
    """
    sig = folder_signature(folder)
    refs = reference_models(sig)  # a bare LSTM's original: nn.LSTM (lengths through a packed batch)
    original = refs.get(TORCH)
    if original is None and sig.bare is not None:
        raise ConfigError(f"the LSTM in {folder.path} has the {folder.config.cell!r} cell, which torch.nn.LSTM has not: "
                          "there is no original to time its artifacts against; deploy-lstm bench DIR times it against "
                          "nn.LSTM's plain cell")
    if original is None:
        original = restore_lstms(copy.deepcopy(sig.model)).eval()
    return sig, {ORIGINAL: _module(original, sig), EAGER: _module(refs[EAGER], sig)}


def _module(module: nn.Module, sig: Signature) -> BindFeeds:
    """A torch module called as the graph (:func:`~deploy_lstm.check.harness.module_fn`) on one case's feeds."""
    run = module_fn(module, sig)
    return lambda feeds: lambda: run(feeds)


def _runner(runner: Runner) -> BindFeeds:
    """A runner's ``run`` on the feeds it takes, picked out once per case (outside the timer)."""

    def bind(feeds: Feeds) -> Call:
        fed = {n: feeds[n] for n in runner.input_names if n in feeds}
        return lambda: runner.run(fed)

    return bind


def _artifacts(folder: ExportFolder, sig: Signature, threads: int) -> Dict[str, Union[BindFeeds, Unavailable]]:
    """{backend label: the folder's artifact, opened through its runner | why it could not be}.

    ONNX models and AOTInductor packages are timed through their runner's ``run`` (feed checks
    included, as a Python user calls them); a TorchScript archive's module, loaded by its
    runner, is called as the graph, like the eager references.
    """
    runnable = folder if isinstance(folder, RunnableFolder) else runnable_folder(folder.path, verify=False)  # verified when loaded
    graph = BareLSTM if folder.config is not None else (lambda m: m)
    threaded = dict(intra_op_num_threads=threads, inter_op_num_threads=1)
    makers: Dict[str, Callable[[], BindFeeds]] = {
        "torchscript": lambda: _module(graph(runnable.runner("torchscript").module), sig),
        "onnx": lambda: _runner(runnable.runner("onnx", **threaded)),
        "aoti": lambda: _runner(runnable.runner("aoti")),
        "onnx-int8": lambda: _runner(runnable.runner("onnx-int8", **threaded)),
        "aoti-bf16": lambda: _runner(runnable.runner("aoti-bf16")),
        "torchscript-bf16": lambda: _module(graph(runnable.runner("torchscript-bf16").module), sig),
    }
    built: Dict[str, Union[BindFeeds, Unavailable]] = {}
    for kind, make in makers.items():
        if folder.has(kind):
            name = MODEL_BACKENDS[kind]
            try:
                built[name] = make()
            except Exception as e:  # recorded in the results
                built[name] = Unavailable.of(name, e)
    return built


def _with_ratios(timed: Dict[str, Any], unavailable: Dict[str, Unavailable]) -> Dict[str, Any]:
    """Every backend's timing with its ratio to the original, or why it has none, as dicts."""
    base = timed.get(ORIGINAL)
    results: Dict[str, Any] = {}
    for name, r in {**timed, **unavailable}.items():
        if isinstance(r, Unavailable):
            results[name] = r.to_dict()
        else:
            ratio = {"ratio_vs_original": r["median_ms"] / base["median_ms"]} if isinstance(base, dict) else {}
            results[name] = {**r, **ratio}
    return results


def benchmark_model(
    folder: ExportFolder, cases: Sequence[Tuple[int, int]] = MODEL_CASES, *, threads: Optional[int] = None,
    rounds: int = 7, warmup: int = 2, block_ms: float = 40.0, max_calls: int = 50, pause_ms: float = 50.0, seed: int = 0,
) -> Dict[str, Any]:
    """Time an export folder's artifacts against its model in eager mode, interleaved.

    Backends: the model holding ``torch.nn`` LSTMs (the baseline of every ratio), the
    ``deploy_lstm`` model, and every artifact of the folder (TorchScript, onnxruntime,
    AOTInductor, int8).  Inputs at each (batch, sequence) are made as validation makes
    them (every dynamic axis resized; integer inputs in the example's range).

    Returns:
        ``{"machine", "settings", "model", "backends", "cases"}``; each case maps every
        backend to its timing (``median_ms``, ``p10_ms``, ``p90_ms``, ``ratio_vs_original``)
        or to an ``Unavailable`` as a dict.
    """
    threads = threads or os.cpu_count() or 1
    sig, backends = _references(folder)
    built = _artifacts(folder, sig, threads)
    unavailable = {k: b for k, b in built.items() if isinstance(b, Unavailable)}
    backends.update({k: b for k, b in built.items() if not isinstance(b, Unavailable)})
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    out_cases = []
    try:
        with torch.inference_mode():
            for N, T in cases:
                # every input the artifacts take
                feeds = random_inputs(sig.io, N, T, rng, examples=example_arrays(sig), lengths="random")
                timed = measure_case(
                    {name: bind(feeds) for name, bind in backends.items()}, rounds=rounds, warmup=warmup,
                    block_s=block_ms / 1e3, max_calls=max_calls, pause_s=pause_ms / 1e3,
                )
                out_cases.append({"shape": f"N={N} T={T}", "batch": N, "sequence": T, "results": _with_ratios(timed, unavailable)})
    finally:
        torch.set_num_threads(previous)
    return {
        "machine": machine(),
        "settings": {"threads": threads, "rounds": rounds, "warmup": warmup, "block_ms": block_ms, "pause_ms": pause_ms,
                     "folder": str(folder.path)},
        "model": folder.model,
        "backends": list(backends) + list(unavailable),
        "cases": out_cases,
    }
