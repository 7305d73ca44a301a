"""An export folder's ``manifest.json``, read as untrusted input and written as strict JSON.

Whoever can write a folder controls what a server started on it loads, but a
manifest is still checked before anything trusts it:

* it is strict JSON (:mod:`~deploy_lstm.formats.strict_json`): a key twice in one
  object, ``NaN`` or ``Infinity`` is refused, as the C++ folder reader refuses them;
* every field has the type the format says (:func:`check_manifest`), so a malformed
  manifest is one :class:`~deploy_lstm.errors.ArtifactError` naming the field, never a
  ``TypeError`` later;
* every file it names stays inside its folder (:func:`member_path`): no absolute
  path, no ``..``, no NUL, no symlink leading out.

Written manifests hold measurements (validation errors, benchmark ratios); a
non-finite one is written as ``null`` (:func:`encode_manifest`), since C++ cannot read
``Infinity`` or ``NaN``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Dict, Tuple

from deploy_lstm.errors import ArtifactError
from deploy_lstm.formats import strict_json
from deploy_lstm.formats.contract import IOSpec
from deploy_lstm.formats.metadata import decode_config
from deploy_lstm.version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "read_manifest", "check_manifest", "member_path", "encode_manifest"]

FORMAT = "deploy-lstm-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARTIFACT_MEMBERS = {"file": str, "sha256": str, "bytes": int, "details": dict}


def member_path(folder: Path, name: Any, where: str) -> Path:
    """The path of the file ``name`` inside ``folder``, refused if it could lead outside.

    Args:
        folder: the export folder.
        name: the file name the manifest gives (a relative path inside the folder).
        where: the manifest field, for messages.

    Raises:
        ArtifactError: ``name`` is not a non-empty string, holds a NUL, is absolute,
            has a ``..`` part, or resolves (through symlinks) outside ``folder``.
    """
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{where}: a file name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ArtifactError(f"{where}: the file name {name!r} holds a NUL character")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive or name.startswith("\\"):
        raise ArtifactError(f"{where}: the file name {name!r} is absolute; a manifest names files inside its folder")
    if ".." in re.split(r"[/\\]", name):
        raise ArtifactError(f"{where}: the file name {name!r} leads out of the folder ('..'); a manifest names files inside it")
    root = folder.resolve()
    resolved = (root / name).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise ArtifactError(f"{where}: {name!r} resolves to {resolved}, outside the folder {root} (a symlink leading out?)")
    return folder / name


def _check_model(model: Any, where: str) -> None:
    kind = strict_json.field(model, "kind", str, where)
    if kind == "lstm":
        decode_config(strict_json.field(model, "config", dict, where), f"{where}.config")
    elif kind == "factory":
        strict_json.field(model, "factory", str, where)
    else:
        raise ArtifactError(f"{where}: 'kind' must be \"lstm\" or \"factory\", got {kind!r}")


def _check_artifacts(folder: Path, artifacts: Dict[str, Any], where: str) -> None:
    for kind, entry in artifacts.items():
        at = f"{where}.{kind}"
        for member, kind_of in _ARTIFACT_MEMBERS.items():
            strict_json.field(entry, member, kind_of, at)
        unknown = sorted(set(entry) - set(_ARTIFACT_MEMBERS))
        if unknown:
            raise ArtifactError(f"{at}: unknown members {unknown}; an artifact has {sorted(_ARTIFACT_MEMBERS)}")
        if not _SHA256.fullmatch(entry["sha256"]):
            raise ArtifactError(f"{at}: 'sha256' must be 64 lowercase hex digits, got {entry['sha256'][:80]!r}")
        if entry["bytes"] < 0:
            raise ArtifactError(f"{at}: 'bytes' must be >= 0, got {entry['bytes']}")
        member_path(folder, entry["file"], f"{at}.file")
        if entry["details"].get("precision") == "bf16":
            _check_bf16_details(entry["details"], f"{at}.details")


#: a bf16 artifact's recorded error and tolerance (deploy_lstm.check.bf16): a number, or null (non-finite)
_BF16_NUMBERS = ("atol", "max_abs", "mean_abs")


def _check_bf16_details(details: Dict[str, Any], where: str) -> None:
    """A bf16 artifact says what it computes in and how close to float32 it is: ``boundary``,
    ``atol_rule`` (strings), ``atol``, ``max_abs``, ``mean_abs`` (numbers or null), ``speed`` (an object)."""
    for key in ("boundary", "atol_rule"):
        strict_json.field(details, key, str, where)
    for key in _BF16_NUMBERS:
        strict_json.field(details, key, (float, type(None)), where)
    strict_json.field(details, "speed", dict, where)


def _check_recommendation(recommendation: Any, where: str) -> None:
    if recommendation is None:
        return
    targets = strict_json.field(recommendation, "targets", dict, where, required=False, default={})
    for target, entry in targets.items():
        strict_json.field(entry, "artifact", (str, type(None)), f"{where}.targets.{target}", required=False)


def check_manifest(manifest: Any, folder: Path) -> None:
    """Every field of a decoded manifest has the type the format says, and every file
    stays inside ``folder``.

    ``format`` and ``format_version`` are checked first, so a manifest of another
    format or version says so rather than failing on a field.

    Raises:
        ArtifactError: naming the first field that is missing, of the wrong type, or
            a file that would lead out of the folder.
    """
    where = str(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{where} is not a deploy-lstm manifest (format {got!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ArtifactError(
            f"{folder} was written in export format version {version}; this deploy-lstm {__version__} reads "
            f"version {FORMAT_VERSION}: re-export it with this version"
        )
    strict_json.field(manifest, "created", str, where, required=False)
    _check_model(strict_json.field(manifest, "model", dict, where), f"{where}: model")
    IOSpec.from_dict(strict_json.field(manifest, "io", dict, where), f"{where}: io")
    _check_artifacts(folder, strict_json.field(manifest, "artifacts", dict, where), f"{where}: artifacts")
    versions = strict_json.field(manifest, "versions", dict, where, required=False, default={})
    for name in versions:
        strict_json.field(versions, name, str, f"{where}: versions")
    strict_json.field(manifest, "report", (dict, type(None)), where, required=False)
    _check_recommendation(strict_json.field(manifest, "recommendation", (dict, type(None)), where, required=False), f"{where}: recommendation")


def read_manifest(folder: Path) -> Dict[str, Any]:
    """The manifest of ``folder``, decoded as strict JSON and checked (:func:`check_manifest`).

    Raises:
        ArtifactError: no manifest, not strict JSON, or a field that does not check.
    """
    path = folder / MANIFEST
    if not path.is_file():
        hint = " (it has a config.json: written by deploy-lstm 0.1 before manifests; re-export it)" if (folder / "config.json").is_file() else ""
        raise ArtifactError(f"{folder} has no {MANIFEST}; expected a folder written by 'deploy-lstm export'{hint}")
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"{path} is not readable: {e}") from None
    manifest = strict_json.loads(text, str(path))
    check_manifest(manifest, folder)
    return manifest


def encode_manifest(manifest: Dict[str, Any], folder: Path) -> Tuple[str, Dict[str, Any]]:
    """The text of ``manifest.json`` for ``manifest``, and the manifest :func:`read_manifest`
    will read back from it, checked, so no manifest is written that would be refused.

    The text is strict JSON; a non-finite measurement is written as ``null`` (``None``
    in the manifest read back).

    Raises:
        ArtifactError: the manifest does not check (:func:`check_manifest`).
    """
    text = strict_json.dumps(manifest, MANIFEST, nonfinite="null", indent=2, sort_keys=True) + "\n"
    decoded = strict_json.loads(text, str(folder / MANIFEST))
    check_manifest(decoded, folder)
    return text, decoded
