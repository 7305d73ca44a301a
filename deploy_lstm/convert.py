"""Weight conversion between ``torch.nn`` LSTMs, ``deploy_lstm`` LSTMs and ONNX.

Pure functions, but for :func:`load_checkpoint`, which reads a weights file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from .errors import CheckpointError
from .model import LSTM, LSTMCell

__all__ = [
    "swap_lstms",
    "restore_lstms",
    "onnx_gate_order",
    "from_onnx_gate_order",
    "onnx_weights",
    "lstm_from_state_dict",
    "load_checkpoint",
]


def swap_lstms(model: nn.Module) -> nn.Module:
    """Replace every ``nn.LSTM`` and ``nn.LSTMCell`` inside ``model`` in place.

    The replacements take over the very ``Parameter`` objects of the modules they
    replace, so parameters tied to other modules stay tied, and an optimizer made
    before the swap keeps updating them.  An LSTM used at several places becomes
    one ``deploy_lstm`` module used at all of them.  Device, dtype and training flag
    are kept, so outputs are unchanged, and the model becomes scriptable and
    exportable.  A bare ``nn.LSTM`` or ``nn.LSTMCell`` passed as ``model`` is
    converted and returned.

    Returns:
        ``model`` itself (or its replacement when ``model`` is an LSTM).
    """
    return _replace_tree(model, {nn.LSTM: LSTM.from_torch, nn.LSTMCell: LSTMCell.from_torch})


def restore_lstms(model: nn.Module) -> nn.Module:
    """The inverse of :func:`swap_lstms`: back to ``torch.nn`` modules, in place, sharing
    parameters and modules the same way.  Variant cells (``cell="peephole"``, ...), which
    ``torch.nn`` does not have, stay as they are."""

    def back(m: nn.Module) -> nn.Module:
        return m.to_torch() if m.cell == "lstm" else m  # type: ignore[operator]

    return _replace_tree(model, {LSTM: back, LSTMCell: back})


def _replace_tree(model: nn.Module, convert: Dict[type, Callable[..., nn.Module]]) -> nn.Module:
    """Replace, in place, each module of a class in ``convert`` by ``convert[cls](module)``."""
    memo: Dict[int, nn.Module] = {}

    def replacement(m: nn.Module) -> Optional[nn.Module]:
        fn = next((f for cls, f in convert.items() if isinstance(m, cls)), None)
        if fn is None:
            return None
        if id(m) not in memo:
            new = fn(m)
            for name, param in m.named_parameters(recurse=False):
                setattr(new, name, param)  # the same Parameter objects: ties and optimizers survive
            memo[id(m)] = new
        return memo[id(m)]

    def visit(m: nn.Module, seen: set) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        for name, child in list(m._modules.items()):
            if child is None:
                continue
            new = replacement(child)
            if new is not None:
                m._modules[name] = new
            else:
                visit(child, seen)

    top = replacement(model)
    if top is not None:
        return top
    visit(model, set())
    return model


def onnx_gate_order(w: Tensor, hidden_size: int) -> Tensor:
    """Reorder gate blocks along dim 0 from PyTorch's (i, f, g, o) to ONNX's (i, o, f, c)."""
    i, f, g, o = w.split(hidden_size, dim=0)
    return torch.cat([i, o, f, g], dim=0)


def from_onnx_gate_order(w: Tensor, hidden_size: int) -> Tensor:
    """Reorder gate blocks along dim 0 from ONNX's (i, o, f, c) back to PyTorch's (i, f, g, o)."""
    i, o, f, c = w.split(hidden_size, dim=0)
    return torch.cat([i, f, c, o], dim=0)


def onnx_weights(lstm: LSTM | nn.LSTM) -> Dict[int, Tuple[Tensor, Tensor, Tensor]]:
    """ONNX ``LSTM`` inputs ``W``, ``R``, ``B`` for each layer of a projection-free LSTM.

    Returns:
        {layer: (W (D, 4H, I), R (D, 4H, H), B (D, 8H))}, gates in ONNX order, biases
        ``[Wb, Rb]`` (zeros when the LSTM has no bias), directions forward then reverse.
    """
    if lstm.proj_size > 0:
        raise ValueError("the ONNX LSTM operator has no projection; proj_size must be 0")
    H = lstm.hidden_size
    dirs = ["", "_reverse"] if lstm.bidirectional else [""]
    out: Dict[int, Tuple[Tensor, Tensor, Tensor]] = {}
    for layer in range(lstm.num_layers):
        Ws, Rs, Bs = [], [], []
        for sfx in dirs:
            w_ih = getattr(lstm, f"weight_ih_l{layer}{sfx}")
            w_hh = getattr(lstm, f"weight_hh_l{layer}{sfx}")
            Ws.append(onnx_gate_order(w_ih, H))
            Rs.append(onnx_gate_order(w_hh, H))
            if lstm.bias:
                b_ih = getattr(lstm, f"bias_ih_l{layer}{sfx}")
                b_hh = getattr(lstm, f"bias_hh_l{layer}{sfx}")
                Bs.append(torch.cat([onnx_gate_order(b_ih, H), onnx_gate_order(b_hh, H)]))
            else:
                Bs.append(w_ih.new_zeros(8 * H))
        out[layer] = (torch.stack(Ws), torch.stack(Rs), torch.stack(Bs))
    return out


# --- checkpoints: a state dict in, an LSTM with its configuration read from the keys out --

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
