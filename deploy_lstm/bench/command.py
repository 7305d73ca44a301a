"""``deploy-lstm bench``: its arguments, and the glue from them to the benchmark, the report and the recommendation.

Without a folder it runs the bare-LSTM matrix (:mod:`deploy_lstm.bench.lstm_matrix`) over
``--config`` or the default configurations; on an export folder it times the folder's
artifacts (a bare LSTM through the matrix, a whole model through
:mod:`deploy_lstm.bench.whole_model`), recommends one per target
(:mod:`deploy_lstm.bench.recommend`) and records it in the folder, then measures memory
(:mod:`deploy_lstm.bench.memory`).  Reports: :mod:`deploy_lstm.bench.report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from deploy_lstm.bench import recommend
from deploy_lstm.bench.backends import Sources
from deploy_lstm.bench.lstm_matrix import FULL_SHAPES, QUICK_SHAPES, benchmark, matrix
from deploy_lstm.bench.memory import measure_memory, memory_markdown
from deploy_lstm.bench.device import time_chunk
from deploy_lstm.bench.whole_model import ARTIFACT_LABELS, benchmark_model
from deploy_lstm.bench.report import model_markdown, to_markdown, write_model_results, write_results
from deploy_lstm.errors import ConfigError
from deploy_lstm.formats.folder import ExportFolder, load
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.lstm import LSTM

__all__ = ["parse_config", "add_arguments", "measure", "record_recommendation", "run"]


_FIELD_TYPES: Dict[str, Any] = typing.get_type_hints(LSTMConfig)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_config(text: str) -> LSTMConfig:
    """``--config``: JSON (``{"input_size": 64, ...}``) or ``key=value,...`` in ``nn.LSTM``'s names.

    Raises:
        ConfigError: not key=value, an unknown or repeated key, a value of the wrong
            type, or a configuration ``nn.LSTM`` refuses.
    """
    example = "e.g. --config input_size=64,hidden_size=256,num_layers=2,bidirectional=true"
    text = text.strip()
    if not text:
        raise ConfigError(f"--config is empty; {example}")
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--config is not valid JSON ({e}); {example}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"--config JSON must be an object, got {type(d).__name__}")
    else:
        d = {}
        for item in filter(None, (s.strip() for s in text.replace(" ", ",").split(","))):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise ConfigError(f"--config: expected key=value, got {item!r}; {example}")
            if key in d:
                raise ConfigError(f"--config: {key} is given twice")
            d[key] = _parse_value(key, value) if key in _FIELD_TYPES else value
    cfg = LSTMConfig.from_dict(d)  # ConfigError naming unknown or missing keys
    for key, want in _FIELD_TYPES.items():
        if not _type_ok(getattr(cfg, key), want):
            raise ConfigError(f"--config: {key} must be {want.__name__}, got {getattr(cfg, key)!r}")
    try:
        LSTM(**dataclasses.asdict(cfg), device="meta")  # nn.LSTM's own checks, no memory
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--config: {e}") from None
    return cfg


def _type_ok(value: Any, want: type) -> bool:
    if want is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # bool is an int subclass; True is not a size
        return False
    return isinstance(value, (int, float)) if want is float else isinstance(value, want)


def _parse_value(key: str, value: str) -> Any:
    want = _FIELD_TYPES[key]
    if want is bool:
        if value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"--config: {key} expects true or false, got {value!r}")
    try:
        return want(value)
    except ValueError:
        raise ConfigError(f"--config: {key} expects {'an integer' if want is int else 'a number'}, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``deploy-lstm bench`` (and ``benchmarks/run.py``)."""
    parser.add_argument("dir", nargs="?", type=Path, help="an export folder (from 'deploy-lstm export' of a bare LSTM) to benchmark")
    parser.add_argument("--config", help="one LSTM configuration: key=value,... (e.g. input_size=64,hidden_size=256) or JSON")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few rounds")
    mode.add_argument("--full", action="store_true", help="the full matrix (default when neither is given)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for results.{json,md,png}")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: all cores)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per configuration and shape (default 7; --quick 3)")
    parser.add_argument("--allow-int8", action="store_true",
                        help="let the int8 model be recommended (by default only artifacts exact to float32 tolerance are)")
    parser.add_argument("--allow-bf16", action="store_true",
                        help="let a bf16 artifact (model.bf16.pt2, model.bf16.ts) be recommended (by default only artifacts "
                             "exact to float32 tolerance are; the recommendation says what bf16 would gain)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the memory measurements of an export folder (a fresh process per artifact: about 5 s each)")
    parser.add_argument("--no-record", dest="record", action="store_false",
                        help="do not record the recommendation in the export folder")
    parser.add_argument("--retries", type=int, default=None,
                        help="measure a case again when other processes used over 5%% of the CPU meanwhile (default 2; --quick 0)")


def _folder_sources(path: Path) -> Tuple[LSTMConfig, Sources]:
    folder = load(path)
    cfg = folder.config
    if cfg is None:
        raise ConfigError(f"deploy-lstm bench needs the export of a bare LSTM; {path} holds a whole model")
    weights = folder.state_dict()
    odd = sorted({str(t.dtype).replace("torch.", "") for t in weights.values()} - {"float32"})
    if odd:
        raise ConfigError(f"deploy-lstm bench times float32 models; the weights in {path} are {', '.join(odd)}")
    sources = Sources(weights=weights, folder=path)
    if folder.has("onnx"):
        sources.onnx = (folder.artifacts["onnx"].details.get("exporter", "dynamo"), folder.file("onnx"))
    if folder.has("torchscript"):
        sources.torchscript = (bool(folder.artifacts["torchscript"].details.get("fused", False)), folder.file("torchscript"))
    if folder.has("onnx-int8"):
        sources.int8 = folder.file("onnx-int8")
    if folder.has("aoti"):
        sources.aoti = folder.file("aoti")
    if folder.has("aoti-bf16"):
        sources.aoti_bf16 = folder.file("aoti-bf16")
    if folder.has("torchscript-bf16"):
        sources.torchscript_bf16 = folder.file("torchscript-bf16")
    return cfg, sources


def measure(args: argparse.Namespace, checkpoint: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Run the benchmark the parsed arguments describe; returns the results.

    Raises:
        ConfigError: bad ``--config``, ``--threads`` or ``--rounds``, or a folder that is
            not a bare LSTM export; ArtifactError: an unreadable export folder.
    """
    if args.dir is not None and args.config:
        raise ConfigError("give an export folder or --config, not both")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {args.rounds}")
    if args.retries is not None and args.retries < 0:
        raise ConfigError(f"--retries must be at least 0, got {args.retries}")
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    sources = None
    if args.dir is not None:
        cfg, sources = _folder_sources(args.dir)
        configs = [cfg]
    elif args.config:
        configs = [parse_config(args.config)]
    else:
        configs = matrix(args.quick)
    mode = "quick" if args.quick else "full"

    def save(res: Dict[str, Any]) -> None:
        res["settings"]["mode"] = mode
        if checkpoint is not None:
            checkpoint(res)

    res = benchmark(
        configs, shapes, threads=args.threads, rounds=args.rounds or (3 if args.quick else 7),
        warmup=1 if args.quick else 2, block_ms=10.0 if args.quick else 40.0, sources=sources,
        retries=args.retries if args.retries is not None else (0 if args.quick else 2),
        log=_log, checkpoint=save,
    )
    res["settings"]["mode"] = mode
    return res


def record_recommendation(folder: ExportFolder, res: Dict[str, Any], *, allow_int8: bool = False, allow_bf16: bool = False,
                          write: bool = True) -> Dict[str, Any]:
    """Recommend an artifact per target from ``res`` (a benchmark of ``folder``), store it in
    ``res["recommendation"]`` and, with ``write``, in the export folder (``ExportFolder.record``)."""
    rec = recommend.recommend(res, list(folder.artifacts), folder.report, ARTIFACT_LABELS, allow_int8=allow_int8,
                                allow_bf16=allow_bf16)
    res["recommendation"] = rec
    if write:
        folder.record("recommendation", rec)
    return rec


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _decide(folder: ExportFolder, res: Dict[str, Any], args: argparse.Namespace) -> List[str]:
    """Recommend and record (unless ``--no-record``), then measure memory (after the timings:
    its processes would disturb them); returns the report's sections."""
    if folder.has("executorch") and folder.config is not None:  # the device target's timing: one chunk of model.pte against nn.LSTM
        res["device"] = time_chunk(folder, rounds=args.rounds or (3 if args.quick else 7))
    rec = record_recommendation(folder, res, allow_int8=args.allow_int8,
                               allow_bf16=getattr(args, "allow_bf16", False), write=args.record)
    sections = [recommend.to_markdown(rec)]
    if args.memory:
        res["memory"] = measure_memory(folder.path, log=_log)
        sections.append(memory_markdown(res["memory"]))
    return sections


def run(args: argparse.Namespace) -> int:
    """``deploy-lstm bench``: measure, write ``results.{json,md,png}`` to ``--out``, print the table.

    On an export folder it ends with a recommendation per target (:mod:`deploy_lstm.bench.recommend`),
    recorded in the export folder unless ``--no-record``.
    """
    folder = load(args.dir) if args.dir is not None and not args.config else None
    if folder is not None and folder.config is None:  # a whole model: its artifacts at two shapes
        res = benchmark_model(folder, threads=args.threads, rounds=args.rounds or (3 if args.quick else 7))
        sections = _decide(folder, res, args)
        paths = write_model_results(res, args.out, sections=sections)
        print(model_markdown(res, sections))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0
    res = measure(args, checkpoint=lambda res: write_results(res, args.out))
    sections = _decide(folder, res, args) if folder is not None else []
    paths = write_results(res, args.out, sections=sections)
    print(to_markdown(res, sections))
    print("wrote " + ", ".join(str(p) for p in paths.values() if p))
    if folder is not None and args.record:
        print(f"recorded the recommendation in the export folder {folder.path}")
    return 0
