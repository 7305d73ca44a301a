"""Graph wrappers: a bare LSTM as a module of flat tensors, the form every exporter, runner and check calls."""

from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BareLSTM(nn.Module):
    """The graph signature of a bare LSTM: ``(input, h0, c0[, lengths]) -> (output, hn, cn)``.

    Wraps a ``deploy_lstm.LSTM`` (eager or scripted: it takes ``lengths`` itself) or a
    ``torch.nn.LSTM``, which has no ``lengths`` argument: given ``lengths``, the batch
    goes through ``pack_padded_sequence`` and back, so padded steps give zeros and
    ``hn``/``cn`` hold each sequence's last real step, as ``deploy_lstm.LSTM`` does.
    Without ``lengths`` an ``nn.LSTM`` is called plainly, so tracing it (e.g.
    ``torch.onnx.export``) sees no packing.
    """

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        self.lstm = lstm
        #: torch.nn.LSTM (no lengths argument: lengths go through a packed batch)
        self.packs = isinstance(lstm, nn.LSTM)

    def forward(
        self, input: Tensor, h0: Tensor, c0: Tensor, lengths: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor, Tensor]:
        if not self.packs:
            output, (hn, cn) = self.lstm(input, (h0, c0), lengths)
            return output, hn, cn
        if lengths is None:
            output, (hn, cn) = self.lstm(input, (h0, c0))
            return output, hn, cn
        batch_first = self.lstm.batch_first
        packed = pack_padded_sequence(input, lengths, batch_first=batch_first, enforce_sorted=False)
        out, (hn, cn) = self.lstm(packed, (h0, c0))
        output, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=input.size(1 if batch_first else 0))
        return output, hn, cn
