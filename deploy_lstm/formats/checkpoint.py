"""Checkpoints: reading state dicts (.pt, .safetensors) and building LSTMs from them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor
from deploy_lstm.errors import CheckpointError
from deploy_lstm.nn.lstm import LSTM


#: a key that marks a variant cell's weights, and the cell
_CELL_KEYS = (("weight_ph_l0", "peephole"), ("ln_ih_weight_l0", "layernorm"), ("weight_ch_l0", "cell_gated"))


_KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<kind>weight_ih|weight_hh|weight_ch|bias_ih|bias_hh|bias_ch|weight_hr|weight_ph|ln_(?:ih|hh|c)_(?:weight|bias))_l(?P<layer>\d+)(?P<rev>_reverse)?$"
)


def load_checkpoint(path: str | os.PathLike) -> Dict[str, Tensor]:
    """A flat {name: tensor} from ``torch.save`` (loaded with ``weights_only=True``) or ``.safetensors``.

    A ``{"state_dict": {...}}`` training checkpoint is unwrapped.

    Raises:
        CheckpointError: the file is missing, unreadable, a pickle carrying code, or
            not a dict of tensors.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a .pt/.pth or .safetensors file")
    if path.suffix == ".safetensors":
        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {e}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, IndexError, ...
        msg = str(e)
        code = re.search(r"unsupported GLOBAL ([\w.]+)", msg, re.IGNORECASE)
        if code:
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle that carries code ({code.group(1)}), not just "
                "weights; save model.state_dict() (or a .safetensors file) instead"
            ) from None
        why = re.search(r"Unsupported operand \d+|invalid load key[^\n]*|failed finding central directory", msg)
        text = why.group(0) if why else (msg.splitlines()[0][:120] if msg else type(e).__name__)
        raise CheckpointError(f"checkpoint {path} is not a readable torch.save file ({text})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a common training-checkpoint wrapper
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state_dict (a dict of tensors); got {type(obj).__name__}")
    return dict(obj)


def lstm_prefixes(state: Mapping[str, Tensor]) -> List[str]:
    """Key prefixes under which ``state`` holds an LSTM (``""`` for a bare one)."""
    return sorted({m["prefix"] for k in state if (m := _KEY.match(k)) and m["kind"] == "weight_ih" and m["layer"] == "0"})


def lstm_from_state_dict(
    state: Mapping[str, Tensor],
    prefix: Optional[str] = None,
    batch_first: bool = False,
    expect: Optional[Mapping[str, object]] = None,
) -> LSTM:
    """Build the ``deploy_lstm.LSTM`` whose weights ``state`` holds, in eval mode.

    The configuration is read from key names and shapes: ``input_size`` and
    ``hidden_size`` from ``weight_ih_l0``, ``num_layers`` from the highest layer,
    ``bias``, ``bidirectional``, ``proj_size`` and the cell from which keys exist
    (``weight_ph_l0``: "peephole"; ``ln_ih_weight_l0``: "layernorm"; ``weight_ch_l0``:
    "cell_gated").  ``batch_first`` is not in the weights: give it.

    Args:
        state: a state dict holding one LSTM, or several under different prefixes.
        prefix: the key prefix of the LSTM to take (e.g. ``"encoder.rnn."``); needed
            when ``state`` holds more than one.
        expect: configuration values the caller asserts ({"num_layers": 2, ...});
            each must agree with the weights.

    Raises:
        CheckpointError: no LSTM, several without a prefix, a prefix that matches
            none, a contradicted expectation, or weights that do not form one LSTM.
    """
    prefixes = lstm_prefixes(state)
    if prefix is None:
        if not prefixes:
            sample = ", ".join(list(state)[:5])
            raise CheckpointError(f"the checkpoint holds no LSTM: no key ends in 'weight_ih_l0' (keys: {sample}...)")
        if len(prefixes) > 1:
            raise CheckpointError(
                f"the checkpoint holds {len(prefixes)} LSTMs; pick one with --prefix, one of: "
                f"{', '.join(repr(p) for p in prefixes)}"
            )
        prefix = prefixes[0]
    elif prefix not in prefixes:
        known = ", ".join(repr(p) for p in prefixes) or "none"
        raise CheckpointError(f"--prefix {prefix!r} matches no LSTM in the checkpoint; LSTM prefixes found: {known}")
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and _KEY.match(k[len(prefix):])}
    w = sub["weight_ih_l0"]
    inferred = {
        "input_size": int(w.shape[1]),
        "hidden_size": int(w.shape[0]) // 4,
        "num_layers": 1 + max(int(_KEY.match(k)["layer"]) for k in sub),  # type: ignore[index]
        "bias": "bias_ih_l0" in sub,
        "bidirectional": "weight_ih_l0_reverse" in sub,
        "proj_size": int(sub["weight_hr_l0"].shape[0]) if "weight_hr_l0" in sub else 0,
        "cell": next((cell for key, cell in _CELL_KEYS if key in sub), "lstm"),
    }
    for key, value in (expect or {}).items():
        if value is not None and inferred[key] != value:
            raise CheckpointError(f"--{key.replace('_', '-')} {value} contradicts the weights, which say {key}={inferred[key]}")
    model = LSTM(**inferred, batch_first=batch_first, dtype=w.dtype)  # type: ignore[arg-type]
    try:
        model.load_state_dict(sub, strict=True)
    except RuntimeError as e:
        lines = str(e).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(e)
        what = "nn.LSTM" if inferred["cell"] == "lstm" else f"deploy_lstm.LSTM(cell={inferred['cell']!r})"
        raise CheckpointError(f"the weights under prefix {prefix!r} do not form one {what}: {first}") from None
    return model.eval()
