"""The files of a Triton model repository as :mod:`~deploy_lstm.serve.repository` writes them:
what was written (:class:`TritonRepository`), the models of a source repository
(:func:`source_models`), model names, the staging folder beside the repository, the move
into it, and the KServe manifest.

Nothing here exports or checks a model: the writer stages every model it makes under one
folder beside the repository (same file system, so each move is a rename) and moves them in
only when all of them were checked, replacing old model folders of the same names as a whole
(every version) and putting the old ones back if a move fails.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from deploy_lstm.errors import ArtifactError
from deploy_lstm.formats import strict_json
from deploy_lstm.formats.contract import TensorSpec
from deploy_lstm.serve.registry import scan
from deploy_lstm.serve.triton_config import VERSION

__all__ = [
    "KSERVE_FILE", "TritonModel", "TritonRepository", "source_models", "sanitise", "staging", "move_in", "stage_kserve", "kserve_name",
]

KSERVE_FILE = "kserve.yaml"
STREAM = "_stream"  # the stream twin's suffix


@dataclasses.dataclass(frozen=True)
class TritonModel:
    """One model of the repository."""

    name: str  # the Triton model name (its folder in the repository)
    path: Path  # <repo>/<name>
    config: Path  # <repo>/<name>/config.pbtxt
    onnx: Path  # <repo>/<name>/<latest version>/model.onnx
    inputs: Tuple[TensorSpec, ...]  # what a client sends (batch-first; state and controls excluded)
    outputs: Tuple[TensorSpec, ...]  # what a client gets back
    states: Tuple[Tuple[str, str], ...] = ()  # (state input, state output) carried by Triton, stream model only
    versions: Tuple[str, ...] = (VERSION,)  # the version folders written, ascending

    @classmethod
    def at(cls, repo: Path, name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
           states: Sequence[Tuple[str, str]] = (), versions: Sequence[str] = (VERSION,)) -> "TritonModel":
        path = repo / name
        return cls(name, path, path / "config.pbtxt", path / versions[-1] / "model.onnx", tuple(inputs), tuple(outputs),
                   tuple(states), tuple(versions))

    def graph(self, version: str) -> Path:
        """``<repo>/<name>/<version>/model.onnx``."""
        return self.path / version / "model.onnx"


@dataclasses.dataclass(frozen=True)
class TritonRepository:
    """What the writer wrote for one model (its versions, its stream twin)."""

    repo: Path  # the model repository (give it to ``tritonserver --model-repository``)
    model: TritonModel  # dynamic batching, one request = whole sequences
    stream: Optional[TritonModel]  # sequence batching with implicit (h, c) state; None when skipped
    stream_skipped: Optional[str]  # why there is no stream model
    kserve: Path  # <repo>/kserve.yaml, the InferenceService manifest (JSON, which is YAML)


def source_models(source: Path) -> Dict[str, Dict[str, Path]]:
    """The models of a repository of export folders, as ``deploy-lstm serve`` reads it
    (:func:`deploy_lstm.serve.registry.scan`): Triton name (sanitised) -> version -> folder.

    Raises:
        ArtifactError: not a folder; no model; a model folder with neither a manifest nor
            versions; two names that collide in Triton (with each other or a stream twin).
    """
    if not source.is_dir():
        raise ArtifactError(f"{source} is not a folder: expected a repository of export folders (NAME/ or NAME/1, NAME/2, ...)")
    found = scan(source)
    if not found:
        raise ArtifactError(f"{source} holds no model: expected export folders {source}/NAME/ or versions {source}/NAME/1, NAME/2, ...")
    models: Dict[str, Dict[str, Path]] = {}
    for name, versions in found.items():
        if not versions:
            raise ArtifactError(f"{source / name} is neither an export folder (no manifest.json) nor a folder of versions (1/, 2/, ...)")
        triton = sanitise(name)
        if triton in models:
            raise ArtifactError(f"{source}: two models would be named {triton!r} in Triton (names are sanitised to A-Z a-z 0-9 _ . -)")
        models[triton] = versions
    twins = sorted(n for n in models if n.endswith(STREAM) and n[: -len(STREAM)] in models)
    if twins:
        raise ArtifactError(f"{source}: model {twins[0]!r} has the name of {twins[0][:-len(STREAM)]!r}'s stream model; rename it")
    return models


def sanitise(name: str) -> str:
    """A Triton model name (a folder name) from any text: letters, digits, ``_.-``."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    return clean or "model"


def staging(repo: Path, name: str) -> Path:
    """A folder beside the repository (same file system: the moves are renames), never inside
    it, where a polling tritonserver could see a half-written model."""
    parent = repo.parent if os.access(repo.parent, os.W_OK | os.X_OK) and repo.parent.exists() else repo
    if parent == repo:
        repo.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{repo.name}.{name}.staging-", dir=parent))
    (stage / "tmp").mkdir()
    return stage


def move_in(stage: Path, repo: Path, names: Sequence[str]) -> None:
    """Move the staged model folders into ``repo``; an old folder of the same name is replaced
    and restored if any move fails.

    Raises:
        ArtifactError: a move failed (the old models are back).
    """
    old = stage / "old"
    old.mkdir()
    moved: List[str] = []
    try:
        for n in names:
            if (repo / n).exists():
                os.replace(repo / n, old / n)
            os.replace(stage / n, repo / n)
            moved.append(n)
    except OSError as e:
        for n in moved:
            os.replace(repo / n, stage / n)
        for n in names:
            if (old / n).exists():
                os.replace(old / n, repo / n)
        raise ArtifactError(f"cannot move the models into {repo}: {e}") from e


def _kserve(service: str, storage_uri: str) -> Dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": service},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "triton"},
                    "protocolVersion": "v2",
                    "runtime": "kserve-tritonserver",
                    "storageUri": storage_uri,
                }
            }
        },
    }


def stage_kserve(stage: Path, repo: Path, name: Optional[str], storage_uri: Optional[str]) -> None:
    """Stage ``kserve.yaml``: an InferenceService (JSON, which is YAML) running ``kserve-tritonserver``
    on the repository (``storage_uri``, default its ``file://`` URI) named ``name`` (default the
    repository folder's name)."""
    service = kserve_name(name if name is not None else repo.resolve().name)
    uri = storage_uri if storage_uri is not None else repo.resolve().as_uri()
    (stage / KSERVE_FILE).write_text(strict_json.dumps(_kserve(service, uri), KSERVE_FILE, indent=2) + "\n")


def kserve_name(name: str) -> str:
    """A Kubernetes resource name (DNS-1035 label): lower case, digits, '-'; starts with a letter."""
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not clean or not clean[0].isalpha():
        clean = f"m-{clean}".rstrip("-")
    return clean[:63].rstrip("-")
