"""A Triton Inference Server model repository (and a KServe manifest) from an export folder,
or from a repository of them.

:func:`write_repository` writes, for one export folder::

    <repo>/<name>/config.pbtxt            backend "onnxruntime", dynamic batching
    <repo>/<name>/1/model.onnx            batch-first graph, zero initial state inside (bare LSTM)
    <repo>/<name>_stream/config.pbtxt     sequence batching; (h, c) carried by Triton as implicit state
    <repo>/<name>_stream/1/model.onnx     batch-first graph: input, h0, c0, START, END, CORRID -> output, hn, cn
    <repo>/kserve.yaml                    a KServe InferenceService (serving.kserve.io/v1beta1) for the repository

:func:`write_model_repository` does the same for every model and version of a repository as
``deploy-lstm serve`` reads it (``SRC/NAME/`` an export folder, or ``SRC/NAME/1``,
``SRC/NAME/2``, ...: :func:`deploy_lstm.serve.registry.scan`): each version becomes Triton's
numbered version folder (``<repo>/<name>/2/model.onnx``, ``<repo>/<name>_stream/2/model.onnx``)
under one ``config.pbtxt`` per model, with ``version_policy { all {} }`` when there are several,
so that every version loads (Triton's default loads only the latest).

Triton puts the batch dimension first on every tensor of a model with
``max_batch_size > 0`` (state included), so both graphs are exported again from the
folder's eager model, each tensor's batch axis moved to 0
(:mod:`~deploy_lstm.serve.batch_first`).  Before anything is moved into ``repo`` each
graph is run in onnxruntime at shapes other than the export example and compared with
the eager model through the check harness (:mod:`deploy_lstm.check.harness`, its
tolerance rule), the stream graph chunk by chunk the way Triton's sequence batcher drives
it; each ``config.pbtxt`` is built by the one configuration builder
(:mod:`~deploy_lstm.serve.triton_config`) and checked against its graph
(:func:`~deploy_lstm.serve.config_check.check_config`).

The one module of ``serve`` that exports and checks: the server itself needs neither.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import torch

from deploy_lstm.check.harness import cell_variants, example_arrays, exceeding, max_diffs, module_fn, random_inputs
from deploy_lstm.check.tolerance import float_atol
from deploy_lstm.errors import ArtifactError, ConfigError, ExportError
from deploy_lstm.exporters.onnx import export_onnx
from deploy_lstm.exporters.signature import Signature, lstm_configs, signature
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import TensorSpec
from deploy_lstm.formats.folder import ExportFolder, load, writable_parent
from deploy_lstm.runtime.onnx import OnnxRunner
from deploy_lstm.serve.batch_first import BatchFirst, add_unused_inputs, batch_first, batch_of, example
from deploy_lstm.serve.config_check import check_config
from deploy_lstm.serve.triton_layout import KSERVE_FILE, TritonModel, TritonRepository, move_in, sanitise, source_models, stage_kserve, staging
from deploy_lstm.serve.triton_config import (
    CORRID, END, START, TRITON_DTYPES, VERSION, ImplicitState, SequenceBatching, TritonConfig, TritonTensor, tensors_of, to_text,
)

__all__ = [
    "write_repository", "write_model_repository", "TritonRepository", "TritonModel", "TRITON_DTYPES", "check_config",
    "START", "END", "CORRID",
]

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class _Settings:
    """How the models are scheduled (``write_repository``'s arguments of those names)."""

    max_batch: int
    max_queue_delay_us: int
    sequence_idle_us: int
    instances: int
    all_versions: bool = False  # the model has several versions: Triton loads all of them

    def check(self) -> None:
        for key in ("max_batch", "instances", "sequence_idle_us"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if not isinstance(self.max_queue_delay_us, int) or self.max_queue_delay_us < 0:
            raise ConfigError(f"max_queue_delay_us must be an integer >= 0, got {self.max_queue_delay_us!r}")


# --- what is written --------------------------------------------------------------------------


def folder_signature(folder: ExportFolder) -> Signature:
    """The signature of ``folder``'s eager model: a bare LSTM as (input, h0, c0) -> (output,
    hn, cn) (``lengths`` not offered), a whole model as its factory calls it.

    Raises:
        ArtifactError: the factory's example does not have the manifest's inputs.
        ConfigError: a tensor without a batch axis (Triton needs the batch first on every tensor).
    """
    spec = folder.model_spec()
    if folder.config is not None:
        sig = signature(spec.model)
    else:
        sig = signature(spec.model, **spec.call_arguments())
        if sig.io.input_names != folder.io.input_names:
            raise ArtifactError(
                f"{folder.path}: the model factory's example has inputs {sig.io.input_names}, the manifest "
                f"{folder.io.input_names}; re-export the folder"
            )
    missing = [t.name for t in sig.io.inputs + sig.io.outputs if contract.batch_axis(t) is None]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no batch axis (a dynamic axis named "
            "'batch'); Triton with max_batch_size > 0 puts the batch first on every tensor. Export the folder "
            "with a 'batch' dynamic axis on every input and output"
        )
    return sig


@dataclasses.dataclass
class _Plan:
    """The two models of one folder: the signature, batch-first tensors, state pairs, tolerance."""

    sig: Signature
    name: str
    exporter: str
    opset: Optional[int]
    native_lstm: bool

    def __post_init__(self) -> None:
        self.ins = [batch_first(t) for t in self.sig.io.inputs]
        self.outs = [batch_first(t) for t in self.sig.io.outputs]
        self.pairs = contract.state_pairs(self.sig.io)
        self.states = {i for i, _ in self.pairs} | {o for _, o in self.pairs}
        self.zeros = [i for i, _ in self.pairs] if self.sig.bare is not None else []  # h0/c0 of a bare LSTM: zeros inside
        self.atol = float_atol(self.sig.io, cell_variants(self.sig.model))
        self.examples = example_arrays(self.sig)

    @property
    def stream_name(self) -> str:
        return f"{self.name}_stream"

    @property
    def model_inputs(self) -> List[TensorSpec]:
        return [t for t in self.ins if t.name not in self.zeros]

    def stream_tensors(self) -> Tuple[List[TensorSpec], List[TensorSpec]]:
        """What a stream client sends and gets: the tensors but the carried state."""
        return [t for t in self.ins if t.name not in self.states], [t for t in self.outs if t.name not in self.states]

    def cannot_stream(self) -> Optional[str]:
        if not self.pairs:
            return "the model has no state pair (an input h0/c0 with an output hn/cn of the same shape)"
        if any(c["bidirectional"] for c in lstm_configs(self.sig.model).values()):
            return "a bidirectional LSTM reads the sequence backwards from its end: chunks cannot reproduce it"
        return None

    def export(self, module: torch.nn.Module, path: Path, inputs: Sequence[TensorSpec], example_inputs: List[torch.Tensor]) -> None:
        axes = {t.name: t.dynamic_axes() for t in list(inputs) + self.outs if t.dynamic_axes()}
        export_onnx(
            module, path, exporter=self.exporter, opset=self.opset, native_lstm=self.native_lstm, example_inputs=(example_inputs,),
            input_names=[t.name for t in inputs], output_names=[t.name for t in self.outs], dynamic_axes=axes,
        )

    def eager(self, feeds: Arrays) -> Arrays:
        """The eager model on feeds in its own layout; outputs batch-first."""
        out = module_fn(self.sig.module, self.sig)(feeds)
        return {t.name: _to_first(t, out[t.name]) for t in self.sig.io.outputs}


def _to_first(spec: TensorSpec, a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, batch_of(spec), 0))


def _dynamic_config(plan: _Plan, s: _Settings) -> TritonConfig:
    return TritonConfig(
        plan.name, tensors_of(plan.model_inputs, batch_first=True), tensors_of(plan.outs, batch_first=True),
        max_batch_size=s.max_batch, instances=s.instances, queue_delay_us=s.max_queue_delay_us, all_versions=s.all_versions,
    )


def _stream_config(plan: _Plan, s: _Settings) -> TritonConfig:
    by_name = {t.name: t for t in plan.ins}
    states = tuple(ImplicitState(TritonTensor.of(by_name[i], batch_first=True), o, zero_start=True) for i, o in plan.pairs)
    sequence = SequenceBatching(s.sequence_idle_us, states, controls=True, max_candidates=s.max_batch, queue_delay_us=s.max_queue_delay_us)
    ins, outs = plan.stream_tensors()
    return TritonConfig(
        plan.stream_name, tensors_of(ins, batch_first=True), tensors_of(outs, batch_first=True),
        max_batch_size=s.max_batch, instances=s.instances, sequence=sequence, all_versions=s.all_versions,
    )


# --- numbers: the graphs against the eager model -------------------------------------------------


def _check_values(what: str, got: Arrays, want: Arrays, atol: float) -> None:
    bad = exceeding(max_diffs(got, want), atol)
    if bad:
        raise ExportError(
            f"{what}: values not close enough to the eager model, max diff "
            + ", ".join(f"{k}: {v:.3g}" for k, v in bad.items()) + f" (atol: {atol})"
        )


def _check_dynamic(plan: _Plan, path: Path) -> None:
    """The dynamic graph equals the eager model at shapes other than the export example."""
    runner = OnnxRunner(path)
    rng = np.random.default_rng(1)
    for N, T in ((2, 5), (1, 11)):
        feeds = random_inputs(plan.sig.io, N, T, rng, examples=plan.examples)
        for z in plan.zeros:
            feeds[z] = np.zeros_like(feeds[z])
        got = runner.run({t.name: _to_first(t, feeds[t.name]) for t in plan.sig.io.inputs if t.name not in plan.zeros})
        _check_values(f"the Triton model {plan.name!r} at batch {N}, sequence {T}", got, plan.eager(feeds), plan.atol)


def _check_stream(plan: _Plan, path: Path) -> Optional[str]:
    """Run the stream graph chunk by chunk as the sequence batcher does and compare with the
    eager model on the whole sequences.

    Returns:
        None, or why the model cannot be streamed (its outputs over chunks differ from the
        whole sequence: the model is not causal in its state).

    Raises:
        ExportError: the graph differs from the eager model on one whole chunk (a bug).
    """
    runner = OnnxRunner(path)
    rng = np.random.default_rng(2)
    N, chunks = 2, (3, 1, 4)
    feeds = random_inputs(plan.sig.io, N, sum(chunks), rng, examples=plan.examples)
    for s, _ in plan.pairs:
        feeds[s] = np.zeros_like(feeds[s])
    want = plan.eager(feeds)
    first = {t.name: _to_first(t, feeds[t.name]) for t in plan.sig.io.inputs}
    seq_in = {t.name: contract.sequence_axis(batch_first(t)) for t in plan.sig.io.inputs}

    def run(lo: int, hi: int, carried: Arrays, start: bool) -> Arrays:
        step = {n: carried[n] if n in carried else (a if seq_in[n] is None else np.take(a, range(lo, hi), seq_in[n])) for n, a in first.items()}
        step[START] = np.full((N, 1), int(start), np.int32)
        step[END] = np.full((N, 1), int(hi == sum(chunks)), np.int32)
        step[CORRID] = np.arange(1, N + 1, dtype=np.uint64)[:, None]
        return runner.run(step)

    # one chunk holding everything, from garbage state that START must discard
    garbage = {s: rng.standard_normal(first[s].shape).astype(first[s].dtype) for s, _ in plan.pairs}
    whole = run(0, sum(chunks), garbage, True)
    _check_values(f"the Triton model {plan.stream_name!r} on whole sequences (one chunk, from START)", whole, want, plan.atol)
    # chunk by chunk, the state out fed back in
    carried, pieces, lo = dict(garbage), [], 0
    for i, size in enumerate(chunks):
        got = run(lo, lo + size, carried, i == 0)
        carried = {s_in: got[s_out] for s_in, s_out in plan.pairs}
        pieces.append(got)
        lo += size
    chunked = {}
    for t in plan.sig.io.outputs:
        axis = contract.sequence_axis(batch_first(t))
        chunked[t.name] = pieces[-1][t.name] if axis is None else np.concatenate([p[t.name] for p in pieces], axis)
    bad = exceeding(max_diffs(chunked, want), plan.atol)
    if bad:
        return (
            "the model's outputs over chunks differ from the whole sequence (max diff "
            + ", ".join(f"{k}: {v:.3g}" for k, v in bad.items())
            + f", atol {plan.atol}): it is not causal in its state, so a stream of chunks cannot reproduce it"
        )
    return None


# --- the repository -------------------------------------------------------------------------------


def _stage_graph(stage: Path, config: TritonConfig, version: str, onnx_tmp: Path) -> None:
    """Stage ``<name>/config.pbtxt`` and ``<name>/<version>/model.onnx``, the config checked against the graph."""
    folder = stage / config.name
    (folder / version).mkdir(parents=True)
    os.replace(onnx_tmp, folder / version / "model.onnx")
    text = to_text(config.proto())
    (folder / "config.pbtxt").write_text(text)
    check_config(text, folder / version / "model.onnx")


def _stage_dynamic(plan: _Plan, settings: _Settings, stage: Path, examples: List[torch.Tensor], version: str) -> None:
    """Export, check and stage the dynamic batching model."""
    path = stage / "tmp" / "dynamic.onnx"
    graph = BatchFirst(plan.sig.module, plan.sig.tree, plan.sig.io, zeros=plan.zeros).eval()
    plan.export(graph, path, plan.model_inputs, [e for t, e in zip(plan.ins, examples) if t.name not in plan.zeros])
    _check_dynamic(plan, path)
    _stage_graph(stage, _dynamic_config(plan, settings), version, path)


def _stage_stream(plan: _Plan, settings: _Settings, stage: Path, examples: List[torch.Tensor], version: str) -> Optional[str]:
    """Export, check and stage the stream model; None, or why there is none."""
    path = stage / "tmp" / "stream.onnx"
    graph = BatchFirst(plan.sig.module, plan.sig.tree, plan.sig.io, reset=[i for i, _ in plan.pairs]).eval()
    start = torch.zeros(examples[0].size(0), 1, dtype=torch.int32)
    plan.export(graph, path, plan.ins + [TensorSpec(START, (contract.BATCH, 1), "int32")], examples + [start])
    add_unused_inputs(path, {END: onnx.TensorProto.INT32, CORRID: onnx.TensorProto.UINT64})
    skipped = _check_stream(plan, path)
    if skipped is None:
        _stage_graph(stage, _stream_config(plan, settings), version, path)
    return skipped


def _same_config(plans: Dict[str, _Plan], make: Callable[[_Plan], TritonConfig]) -> None:
    """Every version has the same configuration: Triton reads one ``config.pbtxt`` per model.

    Raises:
        ConfigError: naming the first version that differs and the tensors of both.
    """
    configs = {v: make(p) for v, p in plans.items()}
    (first, want), *others = configs.items()
    for version, got in others:
        if to_text(got.proto()) != to_text(want.proto()):
            def shown(c: TritonConfig) -> str:
                return ", ".join(f"{t.name} {t.dtype} {list(t.dims)}" for t in c.inputs + c.outputs)
            raise ConfigError(
                f"model {want.name!r}: version {version} ({shown(got)}) does not have the tensors of version {first} "
                f"({shown(want)}); Triton reads one config.pbtxt per model, so its versions must agree. Serve it "
                "under another name"
            )


def _stage_model(plans: Dict[str, _Plan], settings: _Settings, stage: Path) -> Optional[str]:
    """Stage every version of one model and of its stream twin; None, or why there is no stream model."""
    many = len(plans) > 1
    settings = dataclasses.replace(settings, all_versions=many)
    _same_config(plans, lambda p: _dynamic_config(p, settings))
    reasons = [(v, p.cannot_stream()) for v, p in plans.items()]
    skipped = next((f"version {v}: {r}" if many else r for v, r in reasons if r is not None), None)
    if skipped is None:
        _same_config(plans, lambda p: _stream_config(p, settings))
    for version, plan in plans.items():
        gen = torch.Generator().manual_seed(0)
        examples = [example(t, plan.examples[t.name], gen) for t in plan.ins]
        _stage_dynamic(plan, settings, stage, examples, version)
        if skipped is None:
            reason = _stage_stream(plan, settings, stage, examples, version)
            if reason is not None:
                skipped = f"version {version}: {reason}" if many else reason
                shutil.rmtree(stage / plan.stream_name, ignore_errors=True)
    return skipped


def _plan(folder: ExportFolder, name: str) -> _Plan:
    details = folder.artifacts["onnx"].details
    return _Plan(folder_signature(folder), name, details.get("exporter", "dynamo"), details.get("opset"), details.get("native_lstm", True))


def _write(models: Dict[str, Dict[str, ExportFolder]], repo: Path, settings: _Settings, overwrite: bool,
           kserve_name: Optional[str], storage_uri: Optional[str]) -> List[TritonRepository]:
    """Stage every model (name -> version -> folder), then move them all in; see :func:`write_repository`."""
    settings.check()
    for versions in models.values():
        for folder in versions.values():
            folder.file("onnx")  # ArtifactError naming what the folder has
    writable_parent(repo, "a model repository")
    taken = [n for name in models for n in (name, f"{name}_stream") if (repo / n).exists()]
    if taken and not overwrite:
        raise ArtifactError(f"{repo} already holds {', '.join(taken)}; pick another name or pass overwrite=True (--overwrite)")
    plans = {name: {v: _plan(f, name) for v, f in versions.items()} for name, versions in models.items()}
    stage = staging(repo, next(iter(models)) if len(models) == 1 else "models")
    written = []
    try:
        for name, versions in plans.items():
            written.append((name, versions, _stage_model(versions, settings, stage)))
        stage_kserve(stage, repo, kserve_name, storage_uri)
        repo.mkdir(parents=True, exist_ok=True)
        move_in(stage, repo, [n for name, _, skipped in written for n in [name] + ([f"{name}_stream"] if skipped is None else [])])
        os.replace(stage / KSERVE_FILE, repo / KSERVE_FILE)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    out = []
    for name, versions, skipped in written:
        plan, numbers = next(iter(versions.values())), tuple(versions)
        stream = TritonModel.at(repo, plan.stream_name, *plan.stream_tensors(), plan.pairs, numbers) if skipped is None else None
        model = TritonModel.at(repo, name, plan.model_inputs, plan.outs, versions=numbers)
        out.append(TritonRepository(repo, model, stream, skipped, repo / KSERVE_FILE))
    return out


def write_repository(
    folder: ExportFolder,
    repo: str | os.PathLike,
    *,
    name: Optional[str] = None,
    max_batch: int = 32,
    max_queue_delay_us: int = 2000,
    sequence_idle_us: int = 60_000_000,
    instances: int = 1,
    storage_uri: Optional[str] = None,
    kserve_name: Optional[str] = None,
    overwrite: bool = False,
) -> TritonRepository:
    """Write a Triton model repository (and a KServe manifest) serving ``folder``'s model.

    Two models, both ``backend: "onnxruntime"`` with every tensor batch-first:

    * ``<name>``: dynamic batching.  A bare LSTM takes ``input`` (N, T, input_size) and
      returns ``output`` (N, T, D*P), ``hn`` (N, S, P), ``cn`` (N, S, H) from a zero initial
      state (S = num_layers * num_directions); a whole model takes and returns its own
      tensors, each with its batch axis moved first.
    * ``<name>_stream``: sequence batching; a sequence arrives in chunks (``sequence_id``,
      ``sequence_start``, ``sequence_end``) and Triton carries each state pair
      (:func:`~deploy_lstm.formats.contract.state_pairs`, e.g. h0/hn and c0/cn) from chunk
      to chunk as implicit state, zero at START.  The client sends ``input`` and gets
      ``output``.  Skipped (reason in :attr:`TritonRepository.stream_skipped`) for a model
      without state pairs, with a bidirectional LSTM, or whose chunked outputs differ from
      the whole sequence.

    ``<repo>/kserve.yaml``: an ``InferenceService`` (``serving.kserve.io/v1beta1``; JSON,
    which is YAML) whose predictor runs ``kserve-tritonserver`` on the repository.

    Everything is staged beside ``repo`` and moved in only when every graph matched the
    eager model (onnxruntime, at shapes other than the export's, within the check
    harness's tolerance) and every config parsed as a Triton ``ModelConfig`` matching its
    graph.  Other models already in ``repo`` are left alone.

    Args:
        folder: an export folder (:func:`deploy_lstm.load`) with an ``onnx`` artifact;
            its exporter, opset and native_lstm settings are reused.
        repo: the model repository folder (created if missing).
        name: the model name; default: the folder's directory name, sanitised.
        max_batch: ``max_batch_size`` of both models (and the stream's candidate sequences).
        max_queue_delay_us: how long a batcher waits to fill a batch.
        sequence_idle_us: a stream sequence idle this long is dropped (its state freed).
        instances: model instances (``instance_group`` on CPU).
        storage_uri: the manifest's ``storageUri`` (e.g. ``s3://bucket/repo``); default the
            repository's ``file://`` URI, to be replaced where the repository is uploaded.
        kserve_name: the InferenceService's name; default the repository's directory name.
        overwrite: replace ``<name>`` and ``<name>_stream`` if they exist (else refuse).

    Returns:
        The :class:`TritonRepository` written.

    Raises:
        ArtifactError: the folder has no onnx artifact; ``repo`` is not a writable folder;
            a model of that name exists (without ``overwrite``); a config that does not fit its graph.
        ConfigError: bad settings, or a tensor without a batch axis.
        ExportError: an export failed, or a graph does not match the eager model.
    """
    settings = _Settings(max_batch, max_queue_delay_us, sequence_idle_us, instances)
    model = sanitise(name if name is not None else folder.path.resolve().name)
    return _write({model: {VERSION: folder}}, Path(repo), settings, overwrite, kserve_name, storage_uri)[0]


def write_model_repository(
    source: str | os.PathLike,
    repo: str | os.PathLike,
    *,
    max_batch: int = 32,
    max_queue_delay_us: int = 2000,
    sequence_idle_us: int = 60_000_000,
    instances: int = 1,
    storage_uri: Optional[str] = None,
    kserve_name: Optional[str] = None,
    overwrite: bool = False,
) -> List[TritonRepository]:
    """:func:`write_repository` for every model and version of a repository of export folders.

    ``source`` is laid out as ``deploy-lstm serve`` reads a repository: ``source/NAME/`` an
    export folder (version 1), or ``source/NAME/1``, ``source/NAME/2``, ... (its versions).
    Each model NAME (sanitised) gets ``<repo>/NAME/config.pbtxt`` and one version folder per
    version, ``<repo>/NAME/<version>/model.onnx`` (and the same for ``NAME_stream``, written
    only when every version can stream), each version's graphs exported from that version's
    eager model and checked against it.  The versions of a model must have the same tensors
    (one ``config.pbtxt``); with several, the config says ``version_policy { all {} }``.
    One ``kserve.yaml`` for the whole repository.  Nothing is moved into ``repo`` unless every
    model and version was written and checked; the other arguments are :func:`write_repository`'s.

    Returns:
        One :class:`TritonRepository` per model, in name order.

    Raises:
        ArtifactError: ``source`` holds no model, a model folder holds neither an export
            folder nor versions, a folder is broken or has no onnx artifact, two names
            collide, or any reason of :func:`write_repository`.
        ConfigError: bad settings; versions of one model with different tensors.
        ExportError: as :func:`write_repository`.
    """
    models = {name: {v: load(path) for v, path in versions.items()} for name, versions in source_models(Path(source)).items()}
    settings = _Settings(max_batch, max_queue_delay_us, sequence_idle_us, instances)
    return _write(models, Path(repo), settings, overwrite, kserve_name, storage_uri)
