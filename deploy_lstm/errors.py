"""The library's exceptions: one family under :class:`DeployLSTMError`.

Every error a user can cause (bad input, a model or path an exporter cannot take,
an unreadable checkpoint or export folder, a runtime missing here) is a
``DeployLSTMError``; the CLI turns each into one line on stderr and exit code 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "DeployLSTMError",
    "LSTMInputError",
    "ExportError",
    "CheckpointError",
    "ArtifactError",
    "ConfigError",
    "RuntimeUnavailable",
    "InvalidRequest",
    "ModelNotFound",
    "ServerBusy",
]


class DeployLSTMError(Exception):
    """Base class of every error this library raises on purpose."""


class LSTMInputError(DeployLSTMError, ValueError, RuntimeError):
    """Bad input to an LSTM: the message says what was expected and what came.

    It derives from ``ValueError`` (the house rule for bad input) and from
    ``RuntimeError`` (what ``torch.nn.LSTM`` raises for most of the same checks),
    so code written against ``nn.LSTM`` that catches ``RuntimeError`` keeps working.
    """


class ExportError(DeployLSTMError, ValueError):
    """An export was asked for something it cannot do (opset, exporter, model, path)."""


class CheckpointError(DeployLSTMError, ValueError):
    """A checkpoint that cannot be read, or whose weights do not form the LSTM asked for."""


class ArtifactError(DeployLSTMError, ValueError):
    """An export folder or artifact that cannot be used: missing, tampered, or of another format."""


class ConfigError(DeployLSTMError, ValueError):
    """A configuration (an LSTM's, a benchmark's, a model factory's) that does not make sense."""


class RuntimeUnavailable(DeployLSTMError, RuntimeError):
    """A requested runtime or execution provider (e.g. CUDA) is not available here."""


# -- serving: each maps to one HTTP status and one gRPC code (deploy_lstm.server) -------------


class InvalidRequest(DeployLSTMError, ValueError):
    """A malformed or unsatisfiable inference request: HTTP 400, gRPC INVALID_ARGUMENT."""


class ModelNotFound(DeployLSTMError, LookupError):
    """A request for a model or version this server does not serve: HTTP 404, gRPC NOT_FOUND."""


class ServerBusy(DeployLSTMError, RuntimeError):
    """The server cannot take the request now (too many live sequences, shutting down):
    HTTP 503, gRPC UNAVAILABLE.  The client may retry later."""
