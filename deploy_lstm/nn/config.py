"""The configuration of an LSTM stack: nn.LSTM's constructor arguments plus the cell variant."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict
from deploy_lstm.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """Constructor arguments of an LSTM (the ``nn.LSTM`` vocabulary)."""

    input_size: int  # features per step of the input
    hidden_size: int  # features of the cell state c
    num_layers: int = 1  # stacked layers
    bias: bool = True  # bias_ih/bias_hh present
    batch_first: bool = False  # (N, T, F) instead of (T, N, F)
    dropout: float = 0.0  # between layers, training only
    bidirectional: bool = False  # add a reverse direction per layer
    proj_size: int = 0  # LSTMP projection of h; 0 = none
    cell: str = "lstm"  # "lstm" (nn.LSTM's), "peephole", "layernorm" or "cell_gated"

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def real_hidden_size(self) -> int:
        """Features of h: proj_size when projecting, else hidden_size."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def num_states(self) -> int:
        """First dimension of h0/c0/hn/cn: num_layers * num_directions."""
        return self.num_layers * self.num_directions

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict) -> "LSTMConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ConfigError(f"unknown LSTM config keys {sorted(unknown)}; expected {sorted(fields)}")
        missing = {"input_size", "hidden_size"} - set(d)
        if missing:
            raise ConfigError(f"an LSTM config needs {sorted(missing)}; got {sorted(d)}")
        return cls(**d)

    @classmethod
    def of(cls, lstm: object) -> "LSTMConfig":
        """The configuration of an ``nn.LSTM`` or ``deploy_lstm.LSTM``."""
        return cls(
            input_size=int(lstm.input_size),  # type: ignore[attr-defined]
            hidden_size=int(lstm.hidden_size),  # type: ignore[attr-defined]
            num_layers=int(lstm.num_layers),  # type: ignore[attr-defined]
            bias=bool(lstm.bias),  # type: ignore[attr-defined]
            batch_first=bool(lstm.batch_first),  # type: ignore[attr-defined]
            dropout=float(lstm.dropout),  # type: ignore[attr-defined]
            bidirectional=bool(lstm.bidirectional),  # type: ignore[attr-defined]
            proj_size=int(lstm.proj_size),  # type: ignore[attr-defined]
            cell=str(getattr(lstm, "cell", "lstm")),
        )
