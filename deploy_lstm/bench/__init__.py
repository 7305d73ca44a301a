"""The benchmark room: how fast each artifact runs on this machine, and which one to run.

``deploy-lstm bench`` times every backend of a bare LSTM against ``torch.nn.LSTM``
(:mod:`~deploy_lstm.bench.lstm_matrix`), or an export folder's artifacts against its eager
model (:mod:`~deploy_lstm.bench.whole_model`), and recommends the fastest validated artifact
per target (:mod:`~deploy_lstm.bench.recommend`), recorded in the folder's manifest
(read back by ``ExportFolder.recommended``: the server and the C++ runner never import
this room).  The modules, by job:

* :mod:`~deploy_lstm.bench.command`: the command line and the glue between the others;
* :mod:`~deploy_lstm.bench.timing`: how a case is timed (interleaved rounds, idle
  pauses, the CPU other processes used), the machine and its sgemm reference;
* :mod:`~deploy_lstm.bench.backends`: what is timed, and how each backend is built;
* :mod:`~deploy_lstm.bench.lstm_matrix`, :mod:`~deploy_lstm.bench.whole_model`: the two benchmarks;
* :mod:`~deploy_lstm.bench.bf16`: the bf16 artifacts' error beside their speed, and a verdict;
* :mod:`~deploy_lstm.bench.memory`: peak memory per session and export, in fresh processes;
* :mod:`~deploy_lstm.bench.report`: markdown, the chart (matplotlib, only when drawn), files;
* :mod:`~deploy_lstm.bench.recommend`: the choice per target, a pure function of the results.

This face loads its modules on first use of a name, so ``import deploy_lstm.bench``
(and ``python -m deploy_lstm.bench.memory``) stays light.
"""

from __future__ import annotations

from typing import Any

#: the room's public names: {name: the module that defines it}
_FACE = {
    **dict.fromkeys(["add_arguments", "run", "measure", "parse_config", "record_recommendation"], "command"),
    **dict.fromkeys(["Call", "Unavailable", "SGEMM_N", "machine", "sgemm_reference", "measure_case", "measure_quietly"], "timing"),
    **dict.fromkeys(["NN", "EAGER", "TS_LOOP", "TS_FUSED", "TS_USER", "AOTI", "ORT_DYNAMO", "ORT_TS", "ORT_NN", "ORT_INT8",
                     "AOTI_BF16", "TS_BF16", "BF16_BACKENDS", "BACKENDS", "NOT_FLOAT32", "ARTIFACT_OF", "Shape", "Sources", "make_inputs", "export_nn_lstm"], "backends"),
    **dict.fromkeys(["FLOP_FORMULA", "FULL_SHAPES", "QUICK_SHAPES", "matrix", "flops", "benchmark"], "lstm_matrix"),
    **dict.fromkeys(["MODEL_CASES", "ORIGINAL", "MODEL_BACKENDS", "ARTIFACT_LABELS", "folder_signature", "benchmark_model"], "whole_model"),
    **dict.fromkeys(["BF16_WORTH_IT", "bf16_advice", "bf16_markdown"], "bf16"),
    **dict.fromkeys(["measure_memory", "memory_markdown"], "memory"),
    **dict.fromkeys(["config_name", "to_markdown", "plot", "write_results", "model_markdown", "write_model_results"], "report"),
}

__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from deploy_lstm.bench import backends, bf16, command, lstm_matrix, memory, report, timing, whole_model

    modules = {"backends": backends, "bf16": bf16, "command": command, "lstm_matrix": lstm_matrix, "memory": memory,
               "report": report, "timing": timing, "whole_model": whole_model}
    value = getattr(modules[_FACE[name]], name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_FACE))
