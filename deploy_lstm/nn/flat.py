"""The flat-weights base of ``LSTM`` and ``LSTMCell``: one list of weights, in
``nn.LSTM``'s order, kept in step with the parameters, as ``nn.RNNBase`` keeps it.

TorchScript reads that list (``_flat_weights``); eager code reads the parameters by
name, so weight-norm and parametrize tools that replace a weight are seen at once.
"""

# No `from __future__ import annotations`: TorchScript must see real annotation objects.
import math
from typing import List, Optional

import torch
from torch import Tensor, nn

__all__ = ["FlatWeights", "reset_uniform"]


class FlatWeights(nn.Module):
    """Keeps ``_flat_weights`` (what TorchScript reads) in step with the parameters named
    ``_flat_weights_names``, as nn.RNNBase does."""

    def _init_flat_weights(self) -> None:
        # Fix: an absent weight (deleted, not yet set again) is None, as in nn.RNNBase,
        # so ``.to()`` / ``.double()`` in between no longer raise AttributeError.
        self._flat_weights = [
            getattr(self, name) if hasattr(self, name) else None  # type: ignore[misc]
            for name in self._flat_weights_names
        ]

    def _keep_flat_weight(self, name: str, value: Optional[Tensor]) -> None:
        """Mirror weight ``name`` into ``_flat_weights`` (what TorchScript reads)."""
        names = self.__dict__.get("_flat_weights_names")
        if names is not None and name in names and "_flat_weights" in self.__dict__:
            self._flat_weights[names.index(name)] = value  # type: ignore[call-overload]

    def __setattr__(self, attr: str, value: object) -> None:
        self._keep_flat_weight(attr, value)  # type: ignore[arg-type]
        super().__setattr__(attr, value)

    def __delattr__(self, attr: str) -> None:
        # Fix: a deleted weight is absent (None) until it is set again, as weight-norm
        # tools do: ``del m.weight_hh_l0; m.weight_hh_l0 = w``.
        super().__delattr__(attr)
        self._keep_flat_weight(attr, None)

    def register_parameter(self, name: str, param: Optional[nn.Parameter]) -> None:
        # Fix: torch.nn.utils.parametrize restores a weight with register_parameter,
        # which bypasses __setattr__.
        super().register_parameter(name, param)
        self._keep_flat_weight(name, param)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        ret = super()._apply(fn, recurse)
        self._init_flat_weights()
        return ret

    def _weights(self) -> List[Tensor]:
        """The weights in flat order: ``_flat_weights`` once scripted; in eager mode read
        by name, so a parametrized or weight-normed weight is computed now."""
        if torch.jit.is_scripting():
            weights = self._flat_weights
        else:  # an else branch: TorchScript skips it (a name read at run time does not compile)
            weights = [getattr(self, name) for name in self._flat_weights_names]
        return weights


def reset_uniform(module: nn.Module, hidden_size: int) -> None:
    """nn.LSTM's initialisation: Uniform(-1/sqrt(H), 1/sqrt(H)) over ``parameters()``;
    layer norm weights 1 and biases 0, as nn.LayerNorm."""
    stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    with torch.no_grad():
        for name, weight in module.named_parameters():
            if name.startswith("ln_"):
                weight.fill_(1.0 if "_weight" in name else 0.0)
            else:
                nn.init.uniform_(weight, -stdv, stdv)
