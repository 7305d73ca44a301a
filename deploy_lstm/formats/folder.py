"""The export folder: what ``deploy-lstm export`` writes, and the only code that reads it.

A folder holds ``manifest.json``, ``weights.safetensors`` and the artifacts
(``model.onnx``, ``model.ts``, ``model.pt2``, ``model.int8.onnx``, ``model.pte``, and
the bf16 siblings ``model.bf16.pt2``, ``model.bf16.ts``).  The manifest
says what made them and what they take:

* ``format`` and ``format_version`` (:data:`FORMAT_VERSION`);
* ``model``: ``{"kind": "lstm", "config": {...}}`` for a bare LSTM, or
  ``{"kind": "factory", "factory": "module:callable"}`` for a whole model rebuilt
  by that callable (which returns a :class:`~deploy_lstm.formats.contract.ModelSpec`);
* ``io``: the graph inputs and outputs (:class:`~deploy_lstm.formats.contract.IOSpec`);
* ``artifacts``: per kind, its file, SHA-256, size and how it was made;
* ``versions`` (deploy_lstm, torch, onnx, onnxruntime, Python) and the
  validation ``report``;
* ``recommendation`` (once ``deploy-lstm bench DIR`` ran): per target ("python",
  "cpp", "server") the artifact to run, written by :mod:`deploy_lstm.bench.recommend` and
  read by ``deploy-lstm serve`` and the C++ runner.

:func:`load` reads the manifest as untrusted input (:mod:`~deploy_lstm.formats.manifest`:
strict JSON, every field type-checked, every file kept inside the folder), then checks
every checksum; :meth:`ExportFolder.create` stages a new folder and moves it into place
only when everything was written.  Manifests are written as strict JSON: a non-finite
measurement (a benchmark ratio, a max difference) is written as ``null``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from deploy_lstm.errors import ArtifactError, ConfigError
from deploy_lstm.formats.contract import IOSpec, ModelSpec
from deploy_lstm.formats.manifest import FORMAT, FORMAT_VERSION, MANIFEST, check_manifest, encode_manifest, member_path, read_manifest
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.version import __version__

__all__ = ["ExportFolder", "FolderWriter", "Artifact", "load", "load_model_spec", "writable_parent", "FORMAT_VERSION", "FILES"]

#: the file of each artifact kind
FILES: Dict[str, str] = {
    "weights": "weights.safetensors",
    "onnx": "model.onnx",
    "torchscript": "model.ts",
    "aoti": "model.pt2",
    "onnx-int8": "model.int8.onnx",
    "executorch": "model.pte",
    "aoti-bf16": "model.bf16.pt2",  # LSTMs in bfloat16, float32 in and out (deploy_lstm.exporters.bf16)
    "torchscript-bf16": "model.bf16.ts",
}


#: manifest entries that describe the artifacts: written once, by export
_FIXED_ENTRIES = frozenset({"format", "format_version", "created", "model", "io", "artifacts", "versions", "report"})


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One file of the folder and how it was made."""

    kind: str  # a key of FILES
    file: str  # name inside the folder
    sha256: str
    bytes: int
    details: Dict[str, Any]  # exporter, opset, routes, fused, atol, ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def writable_parent(out: Path, what: str) -> Path:
    """The nearest existing folder at or above ``out``, where a staging folder for ``out`` can go.

    Raises:
        ArtifactError: ``out`` exists and is not a folder, or that folder is not writable.
    """
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out} exists and is not a folder; give {what} folder")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArtifactError(f"cannot write {what} at {out}: {parent} is not writable")
    return parent


def load_model_spec(factory: str) -> ModelSpec:
    """Call a ``"module:callable"`` model factory; it returns a ``ModelSpec``
    (or a ``(model, example_inputs)`` pair).

    Raises:
        ConfigError: the reference is malformed, cannot be imported, or returns something else.
    """
    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected a model factory as MODULE:CALLABLE (e.g. deploy_lstm.demo:export_spec), got {factory!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import {module_name!r} for the model factory {factory!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{module_name} has no callable {attr!r} (model factory {factory!r})")
    spec = fn()
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], nn.Module):
        spec = ModelSpec(spec[0], tuple(spec[1]) if isinstance(spec[1], (tuple, list)) else (spec[1],))
    if not isinstance(spec, ModelSpec) or not isinstance(spec.model, nn.Module):
        raise ConfigError(
            f"the model factory {factory!r} must return a deploy_lstm.ModelSpec or (model, example_inputs), "
            f"got {type(spec).__name__}"
        )
    return spec


class ExportFolder:
    """A folder written by ``deploy-lstm export`` (use :func:`load` or :meth:`create`)."""

    def __init__(self, path: Path, manifest: Dict[str, Any]) -> None:
        """Raises ArtifactError when ``manifest`` does not check (:func:`~deploy_lstm.formats.manifest.check_manifest`)."""
        check_manifest(manifest, path)
        self.path = path
        self.manifest = manifest
        self.format_version: int = manifest["format_version"]
        self.model: Dict[str, Any] = manifest["model"]
        self.io = IOSpec.from_dict(manifest["io"], f"{path / MANIFEST}: io")
        self.versions: Dict[str, str] = manifest.get("versions", {})
        self.report: Optional[Dict[str, Any]] = manifest.get("report")
        self.artifacts: Dict[str, Artifact] = {k: Artifact(kind=k, **v) for k, v in manifest["artifacts"].items()}
        self.recommendation: Optional[Dict[str, Any]] = manifest.get("recommendation")

    # -- reading ------------------------------------------------------------------------

    @property
    def config(self) -> Optional[LSTMConfig]:
        """The configuration of a bare LSTM export; None for a whole model."""
        return LSTMConfig.from_dict(self.model["config"]) if self.model["kind"] == "lstm" else None

    def has(self, kind: str) -> bool:
        return kind in self.artifacts

    def file(self, kind: str) -> Path:
        """The path of an artifact, e.g. ``folder.file("onnx")``.

        Raises:
            ArtifactError: the folder has no artifact of that kind.
        """
        if kind not in self.artifacts:
            have = ", ".join(sorted(self.artifacts)) or "none"
            raise ArtifactError(f"{self.path} has no {kind} artifact (it has: {have}); re-export with it")
        return member_path(self.path, self.artifacts[kind].file, f"{self.manifest_path}: artifacts.{kind}.file")

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def recommended(self, target: str) -> Optional[str]:
        """The artifact kind ``deploy-lstm bench`` recommended for ``target`` ("python",
        "cpp", "server") on the machine it ran on, if it did and that artifact is here."""
        entry = ((self.recommendation or {}).get("targets") or {}).get(target) or {}
        kind = entry.get("artifact")
        return kind if isinstance(kind, str) and kind in self.artifacts else None

    def record(self, key: str, value: Any) -> None:
        """Set a top-level entry of ``manifest.json`` (e.g. ``"recommendation"``), atomically:
        the new manifest is written beside the old one and moved over it.  Entries that
        describe the artifacts (``artifacts``, ``io``, ``model``, ...) cannot be changed here.

        Raises:
            ArtifactError: ``key`` is one of those, or the folder cannot be written.
        """
        if key in _FIXED_ENTRIES:
            raise ArtifactError(f"manifest entry {key!r} describes the artifacts; re-export the folder to change it")
        text, manifest = encode_manifest({**self.manifest, key: value}, self.path)
        target = self.manifest_path
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.path, prefix=".manifest-", suffix=".tmp", delete=False) as f:
                f.write(text)
            os.replace(f.name, target)
        except OSError as e:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(f.name)
            raise ArtifactError(f"cannot update {target}: {e}") from None
        self.manifest = manifest
        if key == "recommendation":
            self.recommendation = manifest[key]

    def state_dict(self) -> Dict[str, Tensor]:
        return dict(load_file(str(self.file("weights"))))

    def model_spec(self) -> ModelSpec:
        """The eager model with the folder's weights, in eval mode, and how to call it.

        A bare LSTM is rebuilt from its configuration (``example_inputs`` empty: its
        graph signature is the contract's); a whole model by its factory.
        """
        if self.model["kind"] == "lstm":
            spec = ModelSpec(LSTM(**dataclasses.asdict(self.config)), ())  # type: ignore[arg-type]
        else:
            spec = load_model_spec(self.model["factory"])
        try:
            spec.model.load_state_dict(self.state_dict(), strict=True)
        except RuntimeError as e:
            raise ArtifactError(f"the weights in {self.path} do not fit the model: {str(e).splitlines()[0]}") from e
        spec.model.eval()
        return spec

    def verify(self) -> None:
        """Every artifact exists with the size and SHA-256 the manifest records.

        Raises:
            ArtifactError: naming the file that is missing or changed.
        """
        for kind, a in self.artifacts.items():
            path = self.file(kind)
            if not path.is_file():
                raise ArtifactError(f"{path} is listed in {MANIFEST} but missing")
            try:
                matches = path.stat().st_size == a.bytes and _sha256(path) == a.sha256
            except OSError as e:
                raise ArtifactError(f"{path} is listed in {MANIFEST} but cannot be read: {e}") from None
            if not matches:
                raise ArtifactError(
                    f"{path} does not match its checksum in {MANIFEST} (changed after export?); "
                    "re-export the folder"
                )

    # -- writing ------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: str | os.PathLike) -> Iterator["FolderWriter"]:
        """Stage a new export folder; on success move it into ``path``.

        The artifacts are written into a staging folder beside ``path``; when the
        block ends without an error they are moved in, then the manifest last.  On
        an error nothing in ``path`` changes.
        """
        out = Path(path)
        parent = writable_parent(out, "an export folder")
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parent))
        try:
            writer = FolderWriter(out, staging)
            yield writer
            writer._commit()
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class FolderWriter:
    """Collects the files and facts of a new folder (from :meth:`ExportFolder.create`)."""

    def __init__(self, out: Path, staging: Path) -> None:
        self.out = out
        self.staging = staging
        self.model: Optional[Dict[str, Any]] = None
        self.io: Optional[IOSpec] = None
        self.report: Optional[Dict[str, Any]] = None
        self._details: Dict[str, Dict[str, Any]] = {}
        self.folder: Optional[ExportFolder] = None

    def path(self, kind: str) -> Path:
        """Where to write the artifact of ``kind`` (in the staging folder)."""
        if kind not in FILES:
            raise ConfigError(f"unknown artifact kind {kind!r}; expected one of {sorted(FILES)}")
        return self.staging / FILES[kind]

    def add(self, kind: str, **details: Any) -> Path:
        """Record that the artifact of ``kind`` was written to :meth:`path`."""
        if not self.path(kind).is_file():
            raise ArtifactError(f"internal: {kind} was not written to {self.path(kind)}")
        self._details[kind] = details
        return self.path(kind)

    def save_weights(self, model: nn.Module) -> None:
        # Tied weights (a decoder sharing the embedding's) appear under two names with one
        # storage, which safetensors refuses: the second name gets its own copy; loading
        # both into the tied model gives the same values.
        tensors, seen = {}, set()
        for k, v in model.state_dict().items():
            v = v.detach().cpu().contiguous()
            key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
            tensors[k] = v.clone() if key in seen else v
            seen.add(key)
        # safetensors.save_file creates its file 0600; open() gives the umask's permissions
        data = save(tensors)
        self.path("weights").write_bytes(data)
        self.add("weights")

    def lstm(self, config: LSTMConfig) -> None:
        self.model = {"kind": "lstm", "config": dataclasses.asdict(config)}

    def factory(self, factory: str) -> None:
        self.model = {"kind": "factory", "factory": factory}

    def manifest(self) -> Dict[str, Any]:
        if self.model is None or self.io is None:
            raise ArtifactError("internal: a folder needs its model and io before it is written")
        artifacts = {}
        for kind, details in self._details.items():
            path = self.path(kind)
            artifacts[kind] = {"file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size, "details": details}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": self.model,
            "io": dataclasses.asdict(self.io),
            "artifacts": artifacts,
            "versions": _versions(),
            "report": self.report,
        }

    def _commit(self) -> None:
        text, manifest = encode_manifest(self.manifest(), self.staging)
        (self.staging / MANIFEST).write_text(text)
        self.out.mkdir(parents=True, exist_ok=True)
        old = self.out / MANIFEST
        if old.exists():
            old.unlink()  # no manifest ever describes a half-moved folder
        for kind in self._details:
            os.replace(self.path(kind), self.out / FILES[kind])
        os.replace(self.staging / MANIFEST, self.out / MANIFEST)
        self.folder = ExportFolder(self.out, manifest)


def _versions() -> Dict[str, str]:
    versions = {"deploy_lstm": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for name in ("onnx", "onnxruntime"):
        with contextlib.suppress(Exception):
            versions[name] = importlib.import_module(name).__version__
    return versions


def load(path: str | os.PathLike, verify: bool = True) -> ExportFolder:
    """Open an export folder written by ``deploy-lstm export``.

    The manifest is untrusted input until checked: strict JSON, every field's type, and
    every file it names inside the folder (:mod:`~deploy_lstm.formats.manifest`).

    Args:
        verify: check every artifact's size and SHA-256 against the manifest.

    Raises:
        ArtifactError: no such folder, no manifest (or one of another format or
            version, malformed, or naming a file outside the folder), or an artifact
            missing or changed.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; expected one written by 'deploy-lstm export'")
    result = ExportFolder(folder, read_manifest(folder))
    if verify:
        result.verify()
    return result
