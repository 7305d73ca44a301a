"""JSON that both languages read alike: strict numbers, no duplicate keys, typed fields.

Every JSON this library writes (manifests, artifact metadata) goes through
:func:`dumps`, and every JSON it reads from an artifact or a folder through
:func:`loads`, because the C++ readers (``serving/cpp``) accept only what the JSON
standard does:

* no ``NaN``/``Infinity``: Python's ``json`` writes them by default and C++ cannot
  read the file at all.  A non-finite *measurement* (a benchmark ratio, a max
  difference of an artifact that produced NaN) is written as ``null`` (``nonfinite="null"``);
  anywhere else it is refused (``nonfinite="refuse"``, the default) with the path of
  the value.
* no duplicate keys: C++ readers keep the first, Python's ``json`` the last, so a
  file with duplicates would mean two things; both languages refuse it.

:func:`field` reads one member of a decoded object with its type checked, so a
malformed file is an :class:`~deploy_lstm.errors.ArtifactError` naming the field,
never a ``TypeError`` further on.
"""

from __future__ import annotations

import json
import math
from typing import Any, List, Tuple, Type, Union

from deploy_lstm.errors import ArtifactError

__all__ = ["loads", "dumps", "field", "JSON_TYPE_NAMES"]

#: what the messages call each Python type a JSON value decodes to
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}


def _refuse_duplicates(where: str) -> Any:
    def hook(pairs: List[Tuple[str, Any]]) -> dict:
        obj: dict = {}
        for key, value in pairs:
            if key in obj:
                raise ArtifactError(f"{where} has the key {key!r} twice in one object; a key may appear once")
            obj[key] = value
        return obj

    return hook


def _refuse_constant(where: str) -> Any:
    def hook(name: str) -> Any:
        raise ArtifactError(f"{where} holds {name}, which is not JSON (C++ readers refuse it); write null or a finite number")

    return hook


def loads(text: Union[str, bytes], where: str) -> Any:
    """Decode strict JSON: duplicate keys and ``NaN``/``Infinity`` are refused.

    Args:
        text: the JSON text.
        where: what the text is, for messages (e.g. ``"/m/manifest.json"``).

    Raises:
        ArtifactError: not JSON, a key twice in one object, or a non-finite constant.
    """
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicates(where), parse_constant=_refuse_constant(where))
    except RecursionError:
        raise ArtifactError(f"{where} is nested too deeply to be an artifact's JSON") from None
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
        if isinstance(e, ArtifactError):
            raise
        raise ArtifactError(f"{where} is not readable JSON: {e}") from None


def _finite(value: Any, where: str, path: str, nonfinite: str) -> Any:
    """``value`` with every non-finite float replaced by None (``"null"``) or refused (``"refuse"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        if nonfinite == "null":
            return None
        raise ArtifactError(f"{where}: {path or 'the value'} is {value}, which JSON cannot hold (C++ readers refuse it)")
    if isinstance(value, dict):
        return {k: _finite(v, where, f"{path}.{k}" if path else str(k), nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, where, f"{path}[{i}]", nonfinite) for i, v in enumerate(value)]
    return value


def dumps(value: Any, where: str, *, nonfinite: str = "refuse", indent: Union[int, None] = None, sort_keys: bool = False) -> str:
    """Encode ``value`` as strict JSON (``allow_nan=False``).

    Args:
        value: dicts, lists, tuples, strings, numbers, booleans, None.
        where: what is being written, for messages.
        nonfinite: ``"refuse"`` (default) raises on NaN/Infinity; ``"null"`` writes them
            as ``null``: only for measurements, where null reads as "no finite value".
        indent, sort_keys: as for ``json.dumps``.

    Raises:
        ArtifactError: a non-finite number with ``nonfinite="refuse"``, naming where it is.
    """
    if nonfinite not in ("refuse", "null"):
        raise ValueError(f"nonfinite={nonfinite!r}: expected 'refuse' or 'null'")
    return json.dumps(_finite(value, where, "", nonfinite), indent=indent, sort_keys=sort_keys, allow_nan=False)


def field(obj: Any, key: str, types: Union[Type, Tuple[Type, ...]], where: str, *, required: bool = True, default: Any = None) -> Any:
    """``obj[key]``, checked to be one of ``types`` (``bool`` is never taken for ``int``).

    Args:
        obj: a decoded JSON object (checked to be a dict too).
        key: the member to read.
        types: the accepted Python types (``float`` also accepts an integer).
        where: the object's place, for messages (e.g. ``"manifest.json: artifacts.onnx"``).
        required: whether a missing member is an error; else ``default`` is returned.

    Raises:
        ArtifactError: ``obj`` is not an object, the member is missing, or of another type.
    """
    if not isinstance(obj, dict):
        raise ArtifactError(f"{where}: expected an object, got {JSON_TYPE_NAMES.get(type(obj), type(obj).__name__)}")
    if key not in obj:
        if required:
            raise ArtifactError(f"{where}: the member {key!r} is missing")
        return default
    value = obj[key]
    wanted = types if isinstance(types, tuple) else (types,)
    if float in wanted and int not in wanted:
        wanted = wanted + (int,)
    if isinstance(value, bool) and bool not in wanted:
        ok = False
    else:
        ok = isinstance(value, wanted)
    if not ok:
        names = " or ".join(JSON_TYPE_NAMES.get(t, t.__name__) for t in (types if isinstance(types, tuple) else (types,)))
        got = JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise ArtifactError(f"{where}: {key!r} must be {names}, got {got} ({json.dumps(value)[:60]})")
    return value
