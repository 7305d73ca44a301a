"""The library's TorchScript calls, with torch's deprecation of TorchScript handled in one place.

Since torch 2.10 ``torch.jit.script``, ``save`` and ``load`` warn that TorchScript is
deprecated (a ``FutureWarning`` from 2.14), and an upcoming release turns the warnings
into ``RuntimeError``s. The library calls TorchScript only through :func:`script`,
:func:`save` and :func:`load`, so:

* in the Python API torch's warnings pass through untouched: users filter them as they like;
* inside :func:`quiet` (the CLI runs its commands there) exactly these warnings are filtered
  at these call sites, and the CLI says once, in its own words, what it used;
* a refusal (torch raising instead of warning) becomes :class:`~deploy_lstm.errors.RuntimeUnavailable`
  naming ``model.pt2`` (AOTInductor) as the successor, so an export skips ``model.ts`` with
  the reason and keeps every other artifact.

Nothing here scripts anything at import.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

from deploy_lstm.errors import RuntimeUnavailable

__all__ = ["DEPRECATION", "SUCCESSOR", "quiet", "script", "save", "load", "lazy_script"]

#: torch's deprecation messages for TorchScript, as 2.10-2.14 word them (warnings and, to come, errors)
DEPRECATION = r"`?torch\.jit\.\w+`? is deprecated"
#: what to use instead, in the library's words
SUCCESSOR = "model.pt2 (AOTInductor, --artifacts ...,aoti) is its successor for C++"

_used: contextvars.ContextVar[Optional[List[str]]] = contextvars.ContextVar("deploy_lstm_torchscript_used", default=None)


@contextlib.contextmanager
def quiet() -> Iterator[List[str]]:
    """Filter torch's TorchScript deprecation warnings at the library's own calls inside the
    block; yields the list of TorchScript calls made (for one note after the block)."""
    used: List[str] = []
    token = _used.set(used)
    try:
        yield used
    finally:
        _used.reset(token)


@contextlib.contextmanager
def _call(what: str) -> Iterator[None]:
    used = _used.get()
    try:
        if used is None:
            yield
        else:
            used.append(what)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=DEPRECATION)
                yield
    except RuntimeError as e:
        if re.search(DEPRECATION, str(e)) is None:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeUnavailable(
            f"torch {torch.__version__} refuses {what} (TorchScript is deprecated upstream: {first}); {SUCCESSOR}"
        ) from e


def script(obj: Any) -> Any:
    """``torch.jit.script(obj)``; a refusal by torch is a ``RuntimeUnavailable``."""
    with _call("torch.jit.script"):
        return torch.jit.script(obj)


def save(module: Any, path: str, **kwargs: Any) -> None:
    """``torch.jit.save``; a refusal by torch is a ``RuntimeUnavailable``."""
    with _call("torch.jit.save"):
        torch.jit.save(module, path, **kwargs)


def load(path: str, **kwargs: Any) -> Any:
    """``torch.jit.load``; a refusal by torch is a ``RuntimeUnavailable``."""
    with _call("torch.jit.load"):
        return torch.jit.load(path, **kwargs)


def lazy_script(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` scripted on its first call, not at import (``@torch.jit.script`` would script,
    and warn, whenever the module is imported)."""
    cache: Dict[str, Any] = {}

    def scripted(*args: Any) -> Any:
        if "fn" not in cache:
            cache["fn"] = script(fn)
        return cache["fn"](*args)

    scripted.__name__ = fn.__name__
    scripted.__doc__ = fn.__doc__
    scripted.__wrapped__ = fn  # type: ignore[attr-defined]
    return scripted
