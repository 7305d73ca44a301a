"""The models a server serves: an export folder, or a repository of them, with versions.

``deploy-lstm serve PATH`` takes an export folder (one model, version ``1``) or a
repository (:func:`scan`): ``REPO/NAME/`` (an export folder: version ``1``) or
``REPO/NAME/1``, ``REPO/NAME/2``, ... (versioned).  Every version found is loaded; a
request without a version goes to the highest READY one.  Each loaded version is a
:class:`ModelVersion` holding its :class:`~deploy_lstm.serve.model.ServedModel` (its
own runner, batcher and sequences; ``NAME_stream`` as for one folder).

Model control is Triton's (``--model-control-mode``): ``none`` loads every model at start
and refuses load/unload requests; ``explicit`` loads the ``--load-model`` names (``*``:
all) and lets clients load and unload.  :meth:`Registry.load` opens a model's versions
off the event loop, then swaps them in, then drains the versions they replace (a reload
has no window of errors); :meth:`Registry.unload` takes a model out of routing at once,
lets the requests it took finish, and ends its live sequences.  A version that fails to
load (a bad checksum, a broken folder) is UNAVAILABLE with the reason, the others serve.
Errors and statuses are tritonserver 2.51's (measured, see the serving-repository guide).

A repository may hold :data:`CONFIG_FILE` (:func:`read_config`): the artifact served by
default and per-model overrides (artifact, batching options).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from deploy_lstm.errors import ConfigError, DeployLSTMError, InvalidRequest, ModelNotFound
from deploy_lstm.formats.folder import MANIFEST
from deploy_lstm.runtime.folder import load as load_folder
from deploy_lstm.serve.model import SERVABLE, STREAM_SUFFIX, ServedModel, ServeOptions
from deploy_lstm.serve.metrics import ServerMetrics

__all__ = [
    "CONFIG_FILE", "MODES", "RepositoryConfig", "read_config", "scan", "ModelVersion", "Registry", "ControlError",
    "NOT_ALLOWED", "NOT_READY", "check_load_parameters",
]

log = logging.getLogger("deploy_lstm.server")

CONFIG_FILE = "deploy-lstm-serve.json"  # a repository's own serving configuration, at its root
MODES = ("none", "explicit")  # --model-control-mode, as Triton's
#: tritonserver's answers (2.51, measured), copied so clients see what they already handle
NOT_ALLOWED = "explicit model load / unload is not allowed if polling is enabled"
NOT_READY = "Model version not ready"
#: the per-model keys of the config file, and the ServeOptions field each sets
_MODEL_KEYS = {"artifact": str, "max_batch": int, "max_delay_ms": (int, float), "max_padding": (int, float)}


class ControlError(DeployLSTMError):
    """A refused load/unload request, with Triton's HTTP status and gRPC code."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


# -- the repository on disk ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RepositoryConfig:
    """:data:`CONFIG_FILE`: ``{"artifact": KIND, "models": {NAME: {"artifact": KIND, "max_batch": N, ...}}}``."""

    artifact: Optional[str] = None
    models: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def options(self, base: ServeOptions, name: str) -> ServeOptions:
        """The options of model ``name``: ``base`` (the command line), the file's default artifact
        unless ``--artifact`` was given, then the model's own entry."""
        changes: Dict[str, Any] = {"name": name}
        if base.artifact is None and self.artifact is not None:
            changes["artifact"] = self.artifact
        own = self.models.get(name, {})
        changes.update({k: v for k, v in own.items() if k != "artifact" or base.artifact is None})  # --artifact wins
        return dataclasses.replace(base, **changes)


def read_config(root: Path) -> RepositoryConfig:
    """The repository's :data:`CONFIG_FILE` (strict JSON), or the empty config when absent.

    Raises:
        ConfigError: not JSON, an unknown key, a value of the wrong type or an unknown artifact kind.
    """
    path = root / CONFIG_FILE
    if not path.is_file():
        return RepositoryConfig()
    where = str(path)

    def constant(value: str) -> Any:
        raise ConfigError(f"{where}: {value} is not JSON; write a number")

    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or set(doc) - {"artifact", "models"}:
        extra = sorted(set(doc) - {"artifact", "models"}) if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f'{where}: expected an object with "artifact" and/or "models", got {extra}')
    artifact = doc.get("artifact")
    _check_artifact(artifact, f"{where}: artifact")
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f'{where}: "models" must be an object of model name -> settings, got {type(models).__name__}')
    for name, entry in models.items():
        what = f"{where}: models.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{what} must be an object, got {type(entry).__name__}")
        for key, value in entry.items():
            want = _MODEL_KEYS.get(key)
            if want is None:
                raise ConfigError(f"{what}: unknown key {key!r}; expected {', '.join(_MODEL_KEYS)}")
            if isinstance(value, bool) or not isinstance(value, want):
                raise ConfigError(f"{what}.{key} must be {'a string' if want is str else 'a number'}, got {value!r}")
        _check_artifact(entry.get("artifact"), f"{what}.artifact")
        ServeOptions(**{k: v for k, v in entry.items() if k != "artifact"}).check()
    return RepositoryConfig(artifact, models)


def _check_artifact(kind: Any, what: str) -> None:
    if kind is not None and kind not in SERVABLE:
        raise ConfigError(f"{what} must be one of {', '.join(SERVABLE)}, got {kind!r}")


def check_load_parameters(parameters: Any) -> None:
    """Models load from the repository on disk only: a ``config`` override or ``file:`` contents are refused.

    Raises:
        InvalidRequest: naming the parameters refused.
    """
    taken = [k for k in parameters if k == "config" or str(k).startswith("file:")]
    if taken:
        raise InvalidRequest(f"this server loads models from its repository on disk only; it does not take {taken}")


def is_folder(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def scan(root: Path) -> Dict[str, Dict[str, Path]]:
    """The repository's models: name -> version -> export folder (a model folder without
    versions is version ``1``; a folder holding neither is listed with no versions)."""
    found: Dict[str, Dict[str, Path]] = {}
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if is_folder(child):
            found[child.name] = {"1": child}
            continue
        versions = {d.name: d for d in child.iterdir() if d.is_dir() and d.name.isdigit() and int(d.name) > 0}
        found[child.name] = dict(sorted(versions.items(), key=lambda kv: int(kv[0])))
    return found


def _rss() -> Optional[int]:
    """This process's resident memory in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# -- the models in memory -------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ModelVersion:
    """One (model, version): its state in the index, and once loaded its served model.

    ``served`` is where the version's runner, batcher, sequences and batch timings live
    (:meth:`~deploy_lstm.serve.model.ServedModel._record` is called once per executed batch).
    """

    name: str
    version: str
    path: Path
    state: str = "UNAVAILABLE"  # READY, LOADING, UNLOADING, UNAVAILABLE (Triton's names)
    reason: str = ""
    served: Optional[ServedModel] = None
    memory_bytes: Optional[int] = None  # RSS gained while it loaded
    error: Optional[BaseException] = None  # why it failed to load

    def entry(self) -> Dict[str, str]:
        out = {"name": self.name, "version": self.version, "state": self.state}
        if self.reason:
            out["reason"] = self.reason
        return out


class Registry:
    """The models of one server, their versions and states; routing and model control.

    Args:
        path: an export folder, or a repository of them.
        options: the command line's serving options (a single folder's name among them).
        mode: ``"none"`` or ``"explicit"``.
        startup: what ``explicit`` loads at start (``*``: everything).
    """

    def __init__(self, path: Path, options: ServeOptions, metrics: ServerMetrics, mode: str = "none",
                 startup: Tuple[str, ...] = ()) -> None:
        if mode not in MODES:
            raise ConfigError(f"--model-control-mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a directory: give an export folder or a repository of them")
        self.single = is_folder(self.path)
        options.check()
        if not self.single and options.name:
            raise ConfigError(f"--name applies to an export folder; the models of the repository {self.path} are named by their folders")
        if not self.single and not scan(self.path):
            raise ConfigError(
                f"{self.path} has no {MANIFEST} and no model folders: give an export folder (deploy-lstm export) "
                "or a repository of them (REPO/NAME/ or REPO/NAME/1, REPO/NAME/2, ...)"
            )
        self.options, self.metrics, self.mode, self.startup = options, metrics, mode, tuple(startup)
        self.config = RepositoryConfig() if self.single else read_config(self.path)
        self.models: Dict[str, Dict[str, ModelVersion]] = {}  # name -> version -> ModelVersion
        self.known: Dict[str, bool] = {}  # names seen in the repository (the index lists them)
        self._lock = asyncio.Lock()  # one load/unload at a time
        self._draining: List["asyncio.Task[None]"] = []
        self._ended: Dict[str, Tuple[List[Any], str]] = {}  # name -> (sequence keys, why) of a model unloaded
        if options.threads == 0 and not self.single:
            # several onnxruntime sessions in one process: one intra-op thread each instead of a pool of
            # one thread per core per session (see the serving-repository guide for the measurement)
            self.options = dataclasses.replace(options, threads=1)

    # -- discovery ---------------------------------------------------------------------------

    def _folders(self) -> Dict[str, Dict[str, Path]]:
        if self.single:
            name = self.options.name or self.path.resolve().name
            return {name: {"1": self.path}}
        return scan(self.path)

    def _model_options(self, name: str) -> ServeOptions:
        return self.options if self.single else self.config.options(self.options, name)

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the mode loads at start (``none``: everything; ``explicit``: ``startup``)."""
        folders = self._folders()
        for name in folders:
            self.known[name] = True
        wanted = list(folders) if self.mode == "none" or "*" in self.startup or self.single else list(self.startup)
        for name in wanted:
            if name not in folders:
                raise ConfigError(f"--load-model {name!r}: no such model in {self.path} (it has: {', '.join(folders) or 'none'})")
            try:
                await self.load(name, control=False)
            except ControlError as e:
                if not self.single:  # a single folder's error is the command's (raised below)
                    log.error("%s", e)
        if self.single and not self.ready_versions():
            raise next(iter(self.models.values()))["1"].error  # type: ignore[misc]  # as `serve FOLDER` always did

    async def close(self) -> None:
        for versions in self.models.values():
            for mv in versions.values():
                if mv.served is not None:
                    await mv.served.close()
        for task in self._draining:
            task.cancel()

    # -- routing -----------------------------------------------------------------------------

    def ready_versions(self) -> List[ModelVersion]:
        return [mv for versions in self.models.values() for mv in versions.values() if mv.state == "READY"]

    def names(self) -> List[str]:
        """The model names served now (streams included): the only ``model`` metric labels."""
        return [n for mv in self.ready_versions() for n in mv.served.names()]  # type: ignore[union-attr]

    def resolve(self, name: str, version: Optional[str] = None) -> ServedModel:
        """The served model a request for ``name`` (and ``version``; default: the latest READY) goes to.

        Raises:
            ModelNotFound: no such model or version, or none of its versions is READY.
        """
        base = name
        if name not in self.models and name.endswith(STREAM_SUFFIX):
            base = name[: -len(STREAM_SUFFIX)]
        versions = self.models.get(base)
        if versions is None:
            served = sorted(set(self.names()))
            listed = ", ".join(repr(n) for n in served[:20]) + (", ..." if len(served) > 20 else "")
            raise ModelNotFound(f"unknown model {name!r}; this server serves {listed or 'no model'}")
        ready = {v: mv for v, mv in versions.items() if mv.state == "READY"}
        if not ready:
            raise ModelNotFound(f"Request for unknown model: {name!r} has no available versions")
        if version:
            mv = ready.get(version)
            if mv is None:
                have = ", ".join(repr(v) for v in ready)
                raise ModelNotFound(f"model {name!r} has no version {version!r}; it has version {have}")
        else:
            mv = ready[max(ready, key=int)]
        served = mv.served
        assert served is not None
        served.check_name(name, mv.version)
        return served

    def ready(self, name: str, version: Optional[str] = None) -> bool:
        """Is ``name`` (``version``) READY?  False for a known model that is not.

        Raises:
            ModelNotFound: a name this repository never had.
        """
        try:
            self.resolve(name, version)
            return True
        except ModelNotFound:
            base = name[: -len(STREAM_SUFFIX)] if name.endswith(STREAM_SUFFIX) else name
            if name in self.known or base in self.known:
                return False
            raise

    # -- the repository extension -----------------------------------------------------------

    def index(self, ready_only: bool = False) -> List[Dict[str, str]]:
        """Triton's repository index: every (model, version) with state and reason; a model never
        loaded is listed by name only (as tritonserver does)."""
        out: List[Dict[str, str]] = []
        for name in sorted(set(self.known) | set(self.models)):
            versions = self.models.get(name)
            if not versions:
                if not ready_only:
                    out.append({"name": name})
                continue
            for mv in versions.values():
                if ready_only and mv.state != "READY":
                    continue
                out.append(mv.entry())
                if mv.served is not None and mv.served.stream_name:
                    out.append({**mv.entry(), "name": mv.served.stream_name})
        return out

    def check_control(self) -> None:
        if self.mode != "explicit":
            raise ControlError(NOT_ALLOWED, 503, "UNAVAILABLE")

    async def load(self, name: str, control: bool = True) -> None:
        """Load (or reload) every version of ``name`` from disk: open them off the event loop, swap
        them in, then drain the versions they replace.

        Raises:
            ControlError: not in explicit mode; no such model; a version failed to load.
        """
        if control:
            self.check_control()
        async with self._lock:
            folders = self._folders()
            if name.endswith(STREAM_SUFFIX) and name not in folders and name[: -len(STREAM_SUFFIX)] in folders:
                name = name[: -len(STREAM_SUFFIX)]
            if name not in folders or not folders[name]:
                raise ControlError(f"failed to load {name!r}, failed to poll from model repository", 500, "INTERNAL")
            self.known[name] = True
            old = dict(self.models.get(name, {}))  # a copy: the index shows the new versions LOADING meanwhile
            fresh: Dict[str, ModelVersion] = {}
            for version, path in folders[name].items():
                mv = fresh[version] = ModelVersion(name, version, path, state="LOADING")
                if old.get(version) is None or old[version].state != "READY":
                    self.models.setdefault(name, {})[version] = mv  # the index shows it LOADING
                await self._open(mv)
            failed = [mv for mv in fresh.values() if mv.state != "READY"]
            keep = {v: mv for v, mv in old.items() if mv.state == "READY" and v in fresh and fresh[v].state != "READY"}
            self.models[name] = {**fresh, **keep}  # the swap: a version that failed to reload keeps serving
            for version, mv in old.items():
                if mv.served is not None and keep.get(version) is not mv:
                    what = "reloaded" if version in fresh else "removed from the repository"
                    self._drain(mv, f"model {name!r} version {version} was {what}", fresh.get(version))
        if failed:
            detail = "".join(f"version {mv.version} is at UNAVAILABLE state: {mv.reason};\n" for mv in failed)
            raise ControlError(f"load failed for model {name!r}: {detail}", 400, "INVALID_ARGUMENT")

    async def _open(self, mv: ModelVersion) -> None:
        """Open one version's folder and served model (on a thread), then start it on this loop."""
        options = self._model_options(mv.name)

        def build() -> Tuple[ServedModel, Optional[int]]:
            before = _rss()
            served = ServedModel(load_folder(mv.path), options, self.metrics, version=mv.version)
            after = _rss()
            return served, (after - before if before is not None and after is not None else None)

        try:
            served, grown = await asyncio.get_running_loop().run_in_executor(None, build)
        except Exception as e:  # a broken folder is a state, not a crash: the others keep serving
            mv.error = e
            mv.state, mv.reason = "UNAVAILABLE", f"{type(e).__name__}: {e}" if not isinstance(e, DeployLSTMError) else str(e)
            if not self.single:
                log.error("model %r version %s failed to load: %s", mv.name, mv.version, mv.reason)
            return
        served.start()
        keys, why = self._ended.pop(mv.name, ([], ""))
        served.sequences.remember(keys, why)
        mv.served, mv.memory_bytes, mv.state, mv.reason = served, grown, "READY", ""
        if grown is not None:
            self.metrics.model_memory.labels(mv.name, mv.version).set(max(grown, 0))
        self.metrics.model_loaded.labels(mv.name, mv.version).set(1)
        for limit in served.limits():
            log.warning("model %r version %s (%s): %s", mv.name, mv.version, served.artifact, limit)
        log.info("loaded model %r version %s from %s (%s, %s)", mv.name, mv.version, mv.path, served.artifact, served.artifact_why)

    async def unload(self, name: str) -> None:
        """Take ``name`` out of routing now; its requests in flight finish, then it closes.
        Unloading a model that is not loaded succeeds (as tritonserver).

        Raises:
            ControlError: not in explicit mode.
        """
        self.check_control()
        async with self._lock:
            if name not in self.models and name.endswith(STREAM_SUFFIX):
                name = name[: -len(STREAM_SUFFIX)]
            for mv in self.models.get(name, {}).values():
                if mv.served is not None:
                    self._drain(mv, f"model {name!r} version {mv.version} was unloaded")

    def _drain(self, mv: ModelVersion, why: str, successor: Optional[ModelVersion] = None) -> None:
        """UNLOADING until the requests it took are answered, then closed and UNAVAILABLE ("unloaded").
        Its live sequences end; a later chunk of one is told ``why`` (by ``successor`` after a reload)."""
        served, mv.served = mv.served, None
        assert served is not None
        why = f"{why}; its sequences ended, start them again"
        keys = list(served.sequences.live)
        if successor is not None and successor.served is not None:
            successor.served.sequences.remember(keys, why)
        else:  # told by the model's next load (every version's sequences, the last reason)
            self._ended[mv.name] = (self._ended.get(mv.name, ([], ""))[0] + keys, why)
        self.metrics.model_loaded.labels(mv.name, mv.version).set(0)
        self.metrics.model_memory.labels(mv.name, mv.version).set(0)
        if self.models.get(mv.name, {}).get(mv.version) is mv:
            mv.state, mv.reason = "UNLOADING", ""

        async def drain() -> None:
            while served.inflight:
                await asyncio.sleep(0.01)
            served.sequences.end_all(why)
            await served.close()
            if mv.state == "UNLOADING":
                mv.state, mv.reason = "UNAVAILABLE", "unloaded"

        task = asyncio.get_running_loop().create_task(drain())
        self._draining = [t for t in self._draining if not t.done()] + [task]
