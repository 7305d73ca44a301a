"""Swapping torch.nn LSTMs for deploy_lstm's inside any model, and back, through the one
module-tree walker (:func:`replace_modules`), which the exporters also use to copy a
model's tree."""

from __future__ import annotations

import copy as copy_module
from typing import Callable, Dict, Optional

import torch
from torch import nn

from deploy_lstm.nn.cell import LSTMCell
from deploy_lstm.nn.lstm import LSTM

__all__ = ["swap_lstms", "restore_lstms", "replace_modules", "shallow_copy"]


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
    return replace_modules(model, _sharing_parameters({nn.LSTM: LSTM.from_torch, nn.LSTMCell: LSTMCell.from_torch}))


def restore_lstms(model: nn.Module) -> nn.Module:
    """The inverse of :func:`swap_lstms`: back to ``torch.nn`` modules, in place, sharing
    parameters and modules the same way.  Variant cells (``cell="peephole"``, ...), which
    ``torch.nn`` does not have, stay as they are."""

    def back(m: nn.Module) -> nn.Module:
        return m.to_torch() if m.cell == "lstm" else m  # type: ignore[operator]

    return replace_modules(model, _sharing_parameters({LSTM: back, LSTMCell: back}))


def replace_modules(
    model: nn.Module, replace: Callable[[nn.Module], Optional[nn.Module]], copy: bool = False
) -> nn.Module:
    """Walk ``model``'s module tree once, replacing modules.

    Each module ``m`` (``model`` itself included) for which ``replace(m)`` is not None
    becomes that replacement, and what is below it is not walked.  ``replace`` is called
    once per module: a module used at several places gets one replacement, used at all
    of them.  Script modules are kept as they are.

    Args:
        model: the root of the tree.
        replace: ``m -> replacement or None``.
        copy: ``False``: change the tree in place.  ``True``: leave ``model`` unchanged
            and build a new tree in which every module not replaced is a
            :func:`shallow_copy` (sharing parameters, buffers and attributes).

    Returns:
        The new root: ``model`` (in place) or its copy, or the root's replacement.
    """
    memo: Dict[int, nn.Module] = {}

    def visit(m: nn.Module) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        new = replace(m)
        if new is None and isinstance(m, torch.jit.ScriptModule):
            new = m
        if new is not None:
            memo[id(m)] = new
            return new
        new = shallow_copy(m) if copy else m
        memo[id(m)] = new  # before the children: a module below itself is walked once
        for name, child in list(m._modules.items()):
            if child is not None:
                replaced = visit(child)
                if replaced is not child or copy:
                    new._modules[name] = replaced
        return new

    return visit(model)


def shallow_copy(module: nn.Module) -> nn.Module:
    """A new module of ``module``'s class sharing its parameters, buffers, children and
    other attributes, with containers of its own (parameter, buffer and module dicts,
    hooks, lists such as ``_flat_weights``), so what is set on the copy stays there:
    ``copy.copy(module)`` without its ``__getstate__``, which parametrized modules refuse."""
    cls = type(module)
    new = cls.__new__(cls)
    new.__dict__.update(
        {k: copy_module.copy(v) if isinstance(v, (dict, set, list)) else v for k, v in module.__dict__.items()}
    )
    return new


def _sharing_parameters(convert: Dict[type, Callable[..., nn.Module]]) -> Callable[[nn.Module], Optional[nn.Module]]:
    """A ``replace`` for :func:`replace_modules`: ``convert[cls](m)`` for a module of a
    class in ``convert``, holding ``m``'s very Parameter objects (ties and optimizers survive)."""

    def replace(m: nn.Module) -> Optional[nn.Module]:
        fn = next((f for cls, f in convert.items() if isinstance(m, cls)), None)
        if fn is None:
            return None
        new = fn(m)
        for name, param in m.named_parameters(recurse=False):
            setattr(new, name, param)
        return new

    return replace
