"""Swapping torch.nn LSTMs for deploy_lstm's inside any model, and back: one module-tree walker."""

from __future__ import annotations

from typing import Callable, Dict, Optional
from torch import nn
from deploy_lstm.nn.lstm import LSTM, LSTMCell


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
