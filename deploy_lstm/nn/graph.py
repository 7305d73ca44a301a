"""Graph wrappers: a bare LSTM as a module of flat tensors, the form every exporter and check calls."""

from __future__ import annotations

from typing import Optional
from torch import Tensor, nn


class BareLSTM(nn.Module):
    """Graph signature of a bare LSTM: (input, h0, c0[, lengths]) -> (output, hn, cn)."""

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, input: Tensor, h0: Tensor, c0: Tensor, lengths: Optional[Tensor] = None):  # type: ignore[no-untyped-def]
        output, (hn, cn) = self.lstm(input, (h0, c0), lengths)
        return output, hn, cn
