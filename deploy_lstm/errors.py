"""Exception types shared by the whole package."""

from __future__ import annotations


class LSTMInputError(ValueError, RuntimeError):
    """Bad input to an LSTM: the message says what was expected and what came.

    It derives from ``ValueError`` (the house rule for bad input) and from
    ``RuntimeError`` (what ``torch.nn.LSTM`` raises for most of the same checks),
    so code written against ``nn.LSTM`` that catches ``RuntimeError`` keeps working.
    """


class ExportError(ValueError):
    """An export was asked for something it cannot do (opset, exporter, model, path)."""
